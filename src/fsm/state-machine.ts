/**
 * The replicated metadata state machine: committed Raft entries in, deterministic results out, state in an
 * ordered key-value store (kv.ts, key layout in keys.ts).
 *
 * Applying. `applyBatch(entries)` applies committed entries in log order. Each command runs in its own
 * overlay over a batch overlay over the store: a command sees the writes of earlier commands of the batch; a
 * command that fails leaves no writes (its result, an FsFailure, is still a deterministic outcome); and the
 * whole batch, applied index included, reaches the store in ONE atomic `kv.write` (a batch of bulk commands
 * in several, each covering whole entries with its own applied index: applyStoreWriteKeysMax). A crash
 * therefore loses whole entries or nothing, and `appliedIndex()` (read from the store at open) says exactly
 * which entries are in the state, so Raft redelivers the rest.
 *
 * Determinism. The state machine reads no clock and no randomness. Time is the leader-stamped `nowMs` of
 * each command, clamped to never run backwards (Meta.clockMs). New ids (inodes, chunk handles, chunkservers,
 * client sessions) come from counters in the replicated state. Generations are log indexes. Housekeeping
 * after every command (session expiry, reclamation of deleted inodes) depends only on the command sequence,
 * never on how entries were grouped into batches, so all replicas hold identical keys at each index.
 *
 * Snapshots. `snapshotChunks()` streams the store's point-in-time view (which includes the applied index)
 * in frames of at most `snapshotChunkBytes`; `restoreFromChunks()` validates and installs a stream
 * atomically (a bad or truncated stream leaves the old state) and returns the snapshot's applied index.
 */
import { assert } from '../raft/errors.ts';
import type { FsmBug } from './bugs.ts';
import { noFsmBugs } from './bugs.ts';
import type { Entry } from '../raft/types.ts';
import { EntryType } from '../raft/types.ts';
import type { Command, Op } from './commands.ts';
import { decodeCommand } from './commands.ts';
import type { FsResult } from './errors.ts';
import { asResult, CommandDecodeError, failure, SnapshotFormatError, StateFormatError } from './errors.ts';
import { reclaim } from './gc.ts';
import * as keys from './keys.ts';
import type { Kv, KvBatch, KvPair } from './kv.ts';
import { compareBytes } from './kv.ts';
import type { FsmLimits } from './limits.ts';
import { defaultFsmLimits } from './limits.ts';
import { RwLock } from './lock.ts';
import * as ns from './namespace.ts';
import { Overlay } from './overlay.ts';
import { prefetchBatch } from './prefetch.ts';
import * as q from './queries.ts';
import * as rec from './records.ts';
import { expireIdleSessions, openSession, runInSession, sessionsMayExpire } from './sessions.ts';
import { decodeSnapshot, encodeSnapshot } from './snapshot.ts';
import { ApplyHints, notCached, Txn } from './txn.ts';
import { DEFAULT_DIR_MODE } from './validate.ts';
import * as w from './writers.ts';

/**
 * Buffered keys after which an apply batch is written to the store (with the applied index so far) and goes
 * on in a fresh overlay. Bounds the heap one batch holds and the time between two store writes, which are
 * also the event loop's only chances to run timers and I/O during an apply: reads served from the cache
 * resolve as microtasks. A driver batch of bulk creates (26 createMany of 1000 names, ~52,000 keys) in one
 * piece stalled the event loop for 2.7-5.2 s on a loaded 2-core machine (0.7-2 s when written in pieces),
 * far past an election timeout (500 ms): a leader's catch-up ticks then run before the followers' queued
 * acknowledgements, and check-quorum deposes it. Batches of single creates (a few keys each) stay whole.
 */
export const applyStoreWriteKeysMax = 2_048;

export interface MetadataStateMachineOptions {
  /** Overrides of the named limits; every replica of a group must use the same ones. */
  readonly limits?: Partial<FsmLimits>;
  /** Planted bugs to switch on: for the simulator's self-tests only (see bugs.ts). */
  readonly bugs?: ReadonlySet<FsmBug>;
  /**
   * Called after each store write of applied entries has landed, with the write, before appliedIndex() moves
   * past it; with 'unknown' when the store changed in a way not described (a snapshot installed) or may have
   * (a write that failed). The chunk manager's view follows the store through it (placement/view.ts).
   */
  readonly onStoreWrite?: (write: KvBatch | 'unknown') => void;
}

/** One applied entry's outcome: a command's result, or undefined for an empty or membership entry. */
export type ApplyResult = FsResult | undefined;

export class MetadataStateMachine {
  private applied: number;
  /** Term of the entry at `applied` (0: unknown, a store written before terms were recorded, or the empty state). */
  private appliedTermValue: number;
  private readonly lock = new RwLock();
  private readonly hints = new ApplyHints();

  private constructor(
    private readonly kv: Kv,
    readonly limits: FsmLimits,
    applied: { index: number; term: number },
    private readonly bugs: ReadonlySet<FsmBug> = noFsmBugs,
    private readonly onStoreWrite: (write: KvBatch | 'unknown') => void = () => undefined,
  ) {
    this.applied = applied.index;
    this.appliedTermValue = applied.term;
  }

  /** Opens the state kept in `kv`, initialising an empty store (root directory, applied index 0). */
  static async open(kv: Kv, options: MetadataStateMachineOptions = {}): Promise<MetadataStateMachine> {
    const limits = { ...defaultFsmLimits, ...options.limits };
    checkLimits(limits);
    let appliedBytes = await kv.get(keys.appliedKey);
    if (appliedBytes === undefined) {
      const existing = await kv.scan({ limit: 1 });
      assert(existing.length === 0, 'the store holds data but no applied index');
      await kv.write(initialState(limits));
      appliedBytes = keys.u64Bytes(0);
    }
    const meta = await kv.get(keys.metaKey);
    assert(meta !== undefined, 'the store has an applied index but no meta record');
    rec.decodeMeta(meta); // throws StateFormatError for a store of another format
    return new MetadataStateMachine(kv, limits, keys.readApplied(appliedBytes), options.bugs ?? noFsmBugs, options.onStoreWrite);
  }

  /** Index of the last entry whose effects are in the store. */
  appliedIndex(): number {
    return this.applied;
  }

  /** Term of the entry at appliedIndex() (0 if unknown): with the index, it names the log prefix applied. */
  appliedTerm(): number {
    return this.appliedTermValue;
  }

  /**
   * Applies committed entries (ascending indexes, all above appliedIndex()) and returns one result per entry.
   * Calls are serialised. The effects reach the store in one atomic write with the applied index, or in
   * several for a large batch (applyStoreWriteKeysMax), each covering whole entries; a failing store write
   * rejects and leaves the state as of the last write that succeeded (appliedIndex() says which).
   */
  applyBatch(entries: readonly Entry[]): Promise<ApplyResult[]> {
    return this.lock.exclusive(async () => {
      if (entries.length === 0) return [];
      let last = this.applied;
      for (const e of entries) {
        if (e.index <= last) assert(false, `entry ${e.index} applied out of order (after ${last})`);
        last = e.index;
      }
      const decoded = entries.map(decodeEntry);
      let batch = new Overlay(this.kv);
      /** Entries before this one were read ahead; `walkedAll`: every path of their group was found. */
      let prefetchedTo = 0;
      let walkedAll = true;
      const readAhead = async (from: number): Promise<void> => {
        prefetchedTo = prefetchGroupEnd(decoded, from);
        walkedAll = await prefetchBatch(
          this.kv,
          decoded.slice(from, prefetchedTo).map((d) => d?.command),
          this.limits,
          this.hints,
        );
      };
      await readAhead(0); // first: it fetches the meta record too
      let fresh = await this.storedNextInodeId();
      const results: ApplyResult[] = [];
      for (let i = 0; i < entries.length; i++) {
        if (i >= prefetchedTo) await readAhead(i);
        results.push(await this.applyEntry(batch, fresh, entries[i]!, decoded[i]));
        const index = entries[i]!.index;
        if (index === last || batch.size >= applyStoreWriteKeysMax) {
          await this.writeThrough(batch, index, entries[i]!.term);
          batch = new Overlay(this.kv);
          if (index !== last) {
            fresh = await this.storedNextInodeId();
            // A directory the read-ahead did not find may be in the store now (made earlier in the batch, so
            // no longer fresh): read the rest ahead again, so its new names cost one round trip, not one each.
            if (!walkedAll) prefetchedTo = i + 1;
          }
        }
      }
      return results;
    });
  }

  /** The store's own nextInodeId (not a batch's): no inode id from it up is in the store. */
  private async storedNextInodeId(): Promise<number> {
    const bytes = await this.kv.get(keys.metaKey);
    assert(bytes !== undefined, 'meta record missing');
    return rec.decodeMeta(bytes).nextInodeId;
  }

  /** Writes a batch's effects with the index of its last entry, in one atomic store write. */
  private async writeThrough(batch: Overlay, index: number, term: number): Promise<void> {
    batch.putByKeyString(keys.appliedKeyString, keys.appliedValue(index, term));
    const write = batch.toBatch();
    try {
      await this.kv.write(write);
    } catch (error) {
      this.hints.reset(); // they may describe the batch's state, which the store does not hold
      this.onStoreWrite('unknown');
      throw error;
    }
    this.onStoreWrite(write);
    this.applied = index;
    this.appliedTermValue = term;
  }

  /**
   * Warms the store's read cache for entries not applied yet (see prefetch.ts): a hint, outside the lock, that
   * never changes state or results. A batch being applied meanwhile is harmless: the store caches nothing a
   * concurrent write may have changed. Errors (a closed store) are dropped: the apply reads what it needs.
   */
  readAhead(entries: readonly Entry[]): void {
    if (this.kv.prefetch === undefined) return;
    let decoded: (Command | undefined)[];
    try {
      decoded = entries.map((e) => decodeEntry(e)?.command);
    } catch {
      return; // the apply reports it
    }
    prefetchBatch(this.kv, decoded, this.limits, this.hints).catch(() => undefined);
  }

  private async applyEntry(
    batch: Overlay,
    freshInodesFrom: number,
    entry: Entry,
    decoded: Decoded | undefined,
  ): Promise<ApplyResult> {
    if (decoded === undefined) return undefined;
    const { command, decodeError } = decoded;
    const clock = advanceClock(batch, command?.nowMs ?? 0, this.limits, this.hints);
    const txn = new Txn(
      batch,
      entry.index,
      typeof clock === 'number' ? clock : await clock,
      this.limits,
      this.bugs,
      this.hints,
      freshInodesFrom,
    );
    let result: FsResult;
    if (command === undefined) result = failure('EBADMSG', decodeError);
    else if (command.session === undefined) result = await runOp(txn, command.op);
    else {
      const op = command.op;
      result = await runInSession(txn, command.session, () => runOp(txn, op));
    }
    // Both return at once in the common case: checked here first, without a promise each.
    if (sessionsMayExpire(txn)) await expireIdleSessions(txn);
    const m = txn.metaPeekNow();
    if (m === notCached || m.garbageCount > 0) await reclaim(txn, this.limits.reclaimKeysPerCommandMax);
    return result;
  }

  // Queries: each sees the state between two batches.

  stat(path: string): Promise<FsResult<q.StatInfo>> {
    return this.query((txn) => q.stat(txn, path));
  }

  readdir(
    path: string,
    options: q.PageOptions & { readonly cursor?: string | undefined } = {},
  ): Promise<FsResult<q.ReaddirPage>> {
    return this.query((txn) => q.readdir(txn, path, options));
  }

  chunkLocations(
    path: string,
    options: q.PageOptions & { readonly fromIndex?: number | undefined } = {},
  ): Promise<FsResult<q.ChunkPage>> {
    return this.query((txn) => q.chunkLocations(txn, path, options));
  }

  chunk(handle: number): Promise<FsResult<q.ChunkInfo>> {
    return this.query((txn) => q.chunk(txn, handle));
  }

  scanChunks(
    options: q.PageOptions & { readonly after?: number | undefined } = {},
  ): Promise<FsResult<q.Page<q.ChunkInfo>>> {
    return this.query((txn) => q.scanChunks(txn, options));
  }

  chunkserver(id: number): Promise<FsResult<q.ChunkserverInfo>> {
    return this.query((txn) => q.chunkserver(txn, id));
  }

  listChunkservers(
    options: q.PageOptions & { readonly after?: number | undefined } = {},
  ): Promise<FsResult<q.Page<q.ChunkserverInfo>>> {
    return this.query((txn) => q.listChunkservers(txn, options));
  }

  private query<T>(fn: (txn: Txn) => Promise<T>): Promise<FsResult<T>> {
    return this.lock.shared(() => asResult(() => fn(q.readTxn(this.kv, this.limits, this.hints))));
  }

  /** Makes every applied batch durable (for a store that writes lazily; see Kv.sync). */
  async sync(): Promise<void> {
    await this.kv.sync?.();
  }

  /**
   * The state as of this call, as a stream of chunks of at most `snapshotChunkBytes` (see snapshot.ts). The
   * applied index is part of the state, so the stream is consistent with the index it was taken at; taken
   * between batches (as the driver does), that is appliedIndex().
   */
  snapshotChunks(): AsyncIterableIterator<Uint8Array> {
    const pairs = this.kv.snapshotIterator();
    let started = false;
    const tracked: AsyncIterableIterator<KvPair> = {
      next: () => {
        started = true;
        return pairs.next();
      },
      return: async (value?: unknown) => (await pairs.return?.(value)) ?? { done: true, value: undefined },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    const frames = encodeSnapshot(tracked, this.limits.snapshotChunkBytes);
    return {
      next: () => frames.next(),
      // Closing early must release the store's iterator (it pins the point-in-time view) even when the
      // encoder has not reached it yet: a store generator that never started would not see return().
      return: async () => {
        await frames.return(undefined);
        if (!started) await pairs.next();
        await pairs.return?.(undefined);
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * Replaces the whole state with a snapshot stream, atomically; returns the snapshot's applied index.
   * A malformed, truncated or corrupt stream rejects with SnapshotFormatError and leaves the old state.
   *
   * The stream is consumed as it arrives, without the state machine's lock: batches keep being applied to
   * the current state meanwhile, and queries keep reading it. Once the whole stream is verified,
   * `options.beforeInstall(applied)` (if given) may still refuse it by throwing; then the lock is taken and
   * the store switches to the new content in one step.
   */
  restoreFromChunks(
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: { readonly beforeInstall?: (applied: number) => Promise<void> | void } = {},
  ): Promise<number> {
    const found: { applied?: number; appliedTerm?: number; meta?: boolean; root?: boolean } = {};
    const held: { release: (() => void) | null } = { release: null };
    const lock = this.lock;
    async function* gated(): AsyncGenerator<KvPair> {
      yield* checkedSnapshotPairs(chunks, found);
      assert(found.applied !== undefined, 'a verified snapshot has an applied index');
      await options.beforeInstall?.(found.applied);
      // Taken before the store's switch (which follows the end of this stream) and held until it is done.
      held.release = await new Promise<() => void>((granted) => {
        void lock.exclusive(() => new Promise<void>((done) => granted(done)));
      });
    }
    const install = async (): Promise<number> => {
      try {
        await this.kv.restore(gated());
        this.hints.reset(); // they described the state before the switch
        assert(found.applied !== undefined, 'restored a snapshot without an applied index');
        this.applied = found.applied;
        this.appliedTermValue = found.appliedTerm ?? 0;
        return found.applied;
      } finally {
        this.onStoreWrite('unknown'); // installed, or refused part-way: either way, read it afresh
        held.release?.();
      }
    };
    return install();
  }
}

/**
 * Keys one read-ahead group of a batch fetches, at most (estimated: a bulk create's names plus a few keys per
 * command). A batch is read ahead group by group, each just before it is applied, and afresh after each of
 * its store writes; so what a group fetched is still in the store's cache when the group is applied.
 */
export const applyPrefetchKeysMax = 4_096;

/** The end (exclusive) of the read-ahead group starting at `start`: at least one entry. */
function prefetchGroupEnd(decoded: readonly (Decoded | undefined)[], start: number): number {
  let keys = 0;
  let i = start;
  for (; i < decoded.length; i++) {
    const op = decoded[i]?.command?.op;
    const cost = 4 + (op?.type === 'createMany' ? op.names.length : 0);
    if (i > start && keys + cost > applyPrefetchKeysMax) break;
    keys += cost;
  }
  return i;
}

/** A Normal entry's command, or why it does not decode; undefined for an empty or membership entry. */
interface Decoded {
  readonly command: Command | undefined;
  readonly decodeError: string;
}

function decodeEntry(entry: Entry): Decoded | undefined {
  if (entry.type !== EntryType.Normal || entry.data.length === 0) return undefined;
  try {
    return { command: decodeCommand(entry.data), decodeError: '' };
  } catch (e) {
    if (!(e instanceof CommandDecodeError)) throw e;
    return { command: undefined, decodeError: e.detail };
  }
}

/** Runs one op in its own overlay: kept (merged into `txn`) on success, dropped on failure. */
async function runOp(txn: Txn, op: Op): Promise<FsResult> {
  const child = txn.child();
  const result = await asResult(() => execute(child, op));
  if (result.ok) child.commitInto(txn);
  return result;
}

function execute(txn: Txn, op: Op): Promise<unknown> {
  switch (op.type) {
    case 'openSession':
      return openSession(txn);
    case 'mkdir':
      return ns.mkdir(txn, op);
    case 'create':
      return ns.create(txn, op);
    case 'createMany':
      return ns.createMany(txn, op);
    case 'setattr':
      return ns.setattr(txn, op);
    case 'rename':
      return ns.rename(txn, op);
    case 'unlink':
      return ns.unlink(txn, op);
    case 'rmdir':
      return ns.rmdir(txn, op);
    case 'deleteRecursive':
      return ns.deleteRecursive(txn, op);
    case 'acquireLease':
      return w.acquireLease(txn, op);
    case 'renewLease':
      return w.renewLease(txn, op);
    case 'releaseLease':
      return w.releaseLease(txn, op);
    case 'addChunk':
      return w.addChunk(txn, op);
    case 'bumpChunkVersion':
      return w.bumpChunkVersion(txn, op);
    case 'sealChunk':
      return w.sealChunk(txn, op);
    case 'completeFile':
      return w.completeFile(txn, op);
    case 'abandonChunk':
      return w.abandonChunk(txn, op);
    case 'beginLeaseRecovery':
      return w.beginLeaseRecovery(txn, op);
    case 'recoverChunk':
      return w.recoverChunk(txn, op);
    case 'setChunkReplicas':
      return w.setChunkReplicas(txn, op);
    case 'registerChunkserver':
      return w.registerChunkserver(txn, op);
    case 'setChunkserverState':
      return w.setChunkserverState(txn, op);
    case 'forgetChunkserver':
      return w.forgetChunkserver(txn, op);
  }
}

/** Stamped time never runs backwards: the state machine's now is the largest stamp seen so far. */
function advanceClock(view: Overlay, stampMs: number, limits: FsmLimits, hints: ApplyHints): number | Promise<number> {
  const txn = new Txn(view, 0, 0, limits, noFsmBugs, hints);
  const m = txn.metaPeekNow();
  if (m === notCached) return txn.meta().then((read) => advanceTo(txn, read, stampMs));
  return advanceTo(txn, m, stampMs);
}

/** `m` is only read: the record stored is a copy. */
function advanceTo(txn: Txn, m: Readonly<rec.Meta>, stampMs: number): number {
  if (stampMs <= m.clockMs) return m.clockMs;
  const advanced = rec.copyMeta(m);
  advanced.clockMs = stampMs;
  txn.putMeta(advanced);
  return stampMs;
}

/** Passes the snapshot's pairs through, checking that the state it carries can be opened. */
async function* checkedSnapshotPairs(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  found: { applied?: number; appliedTerm?: number; meta?: boolean; root?: boolean },
): AsyncGenerator<KvPair> {
  const rootKey = keys.inodeKey(rec.ROOT_ID);
  for await (const pair of decodeSnapshot(chunks)) {
    if (compareBytes(pair.key, keys.appliedKey) === 0) {
      if (pair.value.length !== keys.U64_BYTES && pair.value.length !== 2 * keys.U64_BYTES)
        throw new SnapshotFormatError('malformed applied index');
      ({ index: found.applied, term: found.appliedTerm } = keys.readApplied(pair.value));
    } else if (compareBytes(pair.key, keys.metaKey) === 0) {
      found.meta = guard(() => rec.decodeMeta(pair.value)) !== undefined;
    } else if (compareBytes(pair.key, rootKey) === 0) {
      found.root = guard(() => rec.decodeInode(rec.ROOT_ID, pair.value)).type === 'dir';
    }
    yield pair;
  }
  if (found.applied === undefined || found.meta !== true || found.root !== true) {
    throw new SnapshotFormatError('snapshot lacks the applied index, the meta record or the root directory');
  }
}

function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof StateFormatError) throw new SnapshotFormatError(`snapshot: ${e.message}`);
    throw new SnapshotFormatError('snapshot holds a malformed record');
  }
}

function initialState(limits: FsmLimits) {
  const root: rec.Inode = {
    id: rec.ROOT_ID,
    type: 'dir',
    parent: rec.ROOT_ID,
    name: '',
    mode: DEFAULT_DIR_MODE,
    owner: '',
    mtimeMs: 0,
    ctimeMs: 0,
    generation: 0,
    replication: limits.defaultReplication,
    chunkSizeBytes: limits.defaultChunkSizeBytes,
    childCount: 0,
    lengthBytes: 0,
    chunkCount: 0,
    unsealedChunks: 0,
    complete: false,
  };
  return {
    puts: [
      { key: keys.appliedKey, value: keys.u64Bytes(0) },
      { key: keys.metaKey, value: rec.encodeMeta(rec.initialMeta()) },
      { key: keys.inodeKey(rec.ROOT_ID), value: rec.encodeInode(root) },
    ],
    deletes: [],
  };
}

function checkLimits(l: FsmLimits): void {
  for (const [name, value] of Object.entries(l)) {
    assert(Number.isSafeInteger(value) && (value as number) >= 1, `limit ${name} must be a positive integer`);
  }
  assert(l.nameBytesMax <= l.pathBytesMax, 'nameBytesMax > pathBytesMax');
  assert(
    l.chunkSizeBytesMin <= l.defaultChunkSizeBytes && l.defaultChunkSizeBytes <= l.chunkSizeBytesMax,
    'default chunk size outside its bounds',
  );
  assert(l.defaultReplication <= l.replicationMax, 'defaultReplication > replicationMax');
}
