/**
 * Typed access to the state for one command (or one query): reads go through an overlay, writes are
 * buffered in it. A command's Txn sits on its own overlay so that a failing command is dropped whole.
 */
import { assert } from '../raft/errors.ts';
import type { FsmBug } from './bugs.ts';
import { noFsmBugs } from './bugs.ts';
import { FsError } from './errors.ts';
import * as keys from './keys.ts';
import type { InodeType } from './keys.ts';
import type { FsmLimits } from './limits.ts';
import { Overlay } from './overlay.ts';
import type { PathComponent } from './paths.ts';
import type { Chunkserver, Inode, Lease, Meta, Placement, Session } from './records.ts';
import * as rec from './records.ts';

type Counter = 'nextInodeId' | 'nextChunkHandle' | 'nextChunkserverId' | 'nextClientId';

/**
 * Facts about the stored state that the state machine keeps in memory to skip store scans. Each is a bound
 * that stays true as commands apply (it may only be loose, never wrong), so using one never changes a
 * result or a key: it only spares a scan that would have found nothing. Reset to "unknown" whenever the
 * store may no longer match (a failed batch write, a snapshot restore).
 */
export class ApplyHints {
  /** Every session's by-use entry (Session.indexedMs) is >= this (-Infinity: unknown). */
  sessionUseFloorMs = -Infinity;
  /**
   * Per session (client id): no result is stored at a sequence above this (a session missing here: unknown).
   * Known for the sessions opened since the hints were last reset, and raised as their results are stored:
   * a new command's result slot is then known to be empty without a store read (a retry's is still read).
   * At most one entry per live session (evicted sessions are dropped).
   */
  readonly resultsAtMost = new Map<number, number>();
  readonly inodes = new InodeMemo();
  readonly sessions = new SessionMemo();
  /** The meta record last read or written, with its bytes (see InodeMemo: a hit is checked against them). */
  private metaMemo: { readonly bytes: Uint8Array; readonly meta: Meta } | undefined;

  reset(): void {
    this.sessionUseFloorMs = -Infinity;
    this.resultsAtMost.clear();
    this.inodes.clear();
    this.sessions.clear();
    this.metaMemo = undefined;
  }

  /** The meta record `bytes` hold: a private copy of the memo's when they are its bytes, else decoded. */
  decodeMeta(bytes: Uint8Array): Meta {
    return rec.copyMeta(this.peekMeta(bytes));
  }

  /** decodeMeta(bytes), but the memo's own record: the caller must not change it (spares a copy). */
  peekMeta(bytes: Uint8Array): Meta {
    const hit = this.metaMemo;
    if (hit !== undefined && sameBytes(hit.bytes, bytes)) return hit.meta;
    const meta = rec.decodeMeta(bytes);
    this.metaMemo = { bytes, meta };
    return meta;
  }

  /** Notes that `bytes` encode `meta` (just encoded from it), so reading them back needs no decode. */
  rememberMeta(bytes: Uint8Array, meta: Meta): void {
    this.metaMemo = { bytes, meta: rec.copyMeta(meta) };
  }

  /** Whether the result slot (client, seq) is known to be empty. */
  resultKnownAbsent(clientId: number, seq: number): boolean {
    const atMost = this.resultsAtMost.get(clientId);
    return atMost !== undefined && seq > atMost;
  }
}

/** Inodes remembered by InodeMemo, at most (then it starts afresh): ~200 bytes each. */
export const inodeMemoEntriesMax = 4_096;

/**
 * Decoded inodes, each with the bytes it was decoded from. A read whose bytes are the same (same array, or
 * equal content) gets a copy of the decoded record instead of a msgpack decode: the directories on the paths
 * of a batch (root, parents) are read by every command. Hits are checked against the bytes, so the memo
 * never changes what a read returns, only its cost (replicas may hold different memos).
 */
export class InodeMemo {
  private readonly entries = new Map<number, { readonly bytes: Uint8Array; readonly inode: Inode }>();

  decode(id: number, bytes: Uint8Array): Inode {
    const hit = this.entries.get(id);
    if (hit !== undefined && sameBytes(hit.bytes, bytes)) return rec.copyInode(hit.inode);
    const inode = rec.decodeInode(id, bytes);
    if (this.entries.size >= inodeMemoEntriesMax) this.entries.clear();
    // Callers change the records they read: the memo keeps its own copy.
    this.entries.set(id, { bytes, inode: rec.copyInode(inode) });
    return inode;
  }

  /**
   * Notes that `bytes` encode `inode` (just encoded from it), so reading them back needs no decode: a
   * directory changed by every create of a batch is then decoded once per batch, not once per create.
   */
  remember(inode: Inode, bytes: Uint8Array): void {
    if (this.entries.size >= inodeMemoEntriesMax) this.entries.clear();
    this.entries.set(inode.id, { bytes, inode: rec.copyInode(inode) });
  }

  /**
   * The inode `bytes` hold, as decode() would give it, but the memo's own record: the caller must not change
   * it (path walks read the directories on the way; spares a copy per level).
   */
  peek(id: number, bytes: Uint8Array): Inode {
    const hit = this.entries.get(id);
    if (hit !== undefined && sameBytes(hit.bytes, bytes)) return hit.inode;
    const inode = rec.decodeInode(id, bytes);
    if (this.entries.size >= inodeMemoEntriesMax) this.entries.clear();
    this.entries.set(id, { bytes, inode });
    return inode;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Session records remembered by SessionMemo, at most (then it starts afresh). */
export const sessionMemoEntriesMax = 4_096;

/**
 * Decoded session records with the bytes they came from, as InodeMemo keeps inodes: every command of a
 * session reads the record its previous command wrote, and a read of equal bytes gets a copy of the
 * record instead of a msgpack decode.
 */
export class SessionMemo {
  private readonly entries = new Map<number, { readonly bytes: Uint8Array; readonly session: Session }>();

  decode(clientId: number, bytes: Uint8Array): Session {
    const hit = this.entries.get(clientId);
    if (hit !== undefined && sameBytes(hit.bytes, bytes)) return rec.copySession(hit.session);
    const session = rec.decodeSession(clientId, bytes);
    this.set(clientId, bytes, rec.copySession(session));
    return session;
  }

  /** Notes that `bytes` encode `session` (just encoded from it). */
  remember(session: Session, bytes: Uint8Array): void {
    this.set(session.clientId, bytes, rec.copySession(session));
  }

  private set(clientId: number, bytes: Uint8Array, session: Session): void {
    if (this.entries.size >= sessionMemoEntriesMax) this.entries.clear();
    this.entries.set(clientId, { bytes, session });
  }

  clear(): void {
    this.entries.clear();
  }
}

/** What a read known without I/O returned: not known (see Txn.inodeNow). */
export const notCached: unique symbol = Symbol('notCached');
export type NotCached = typeof notCached;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Txn {
  constructor(
    readonly view: Overlay,
    /** Log index of the command; every record it changes gets this as its generation. */
    readonly index: number,
    /** Stamped time of the command (monotonic across commands). */
    readonly nowMs: number,
    readonly limits: FsmLimits,
    /** Planted bugs switched on (simulator self-tests only; empty otherwise). */
    readonly bugs: ReadonlySet<FsmBug> = noFsmBugs,
    /** In-memory bounds that spare scans (see ApplyHints); a fresh, unknown set by default. */
    readonly hints: ApplyHints = new ApplyHints(),
    /**
     * Inode ids from this one up are not in the store under `view` (they were allocated after the store's last
     * write: the store's nextInodeId), so neither their inodes nor their directories' entries are: reading them
     * needs only the buffered writes, not a store round trip. Infinity (the default): unknown, always read.
     */
    readonly freshInodesFrom = Infinity,
  ) {}

  /** A Txn whose writes stay apart until `commit()`. */
  child(): Txn {
    return new Txn(new Overlay(this.view), this.index, this.nowMs, this.limits, this.bugs, this.hints, this.freshInodesFrom);
  }

  /** Moves this child's writes into `parent`. */
  commitInto(parent: Txn): void {
    this.view.mergeInto(parent.view);
  }

  /**
   * The value view.get(key) would resolve to (null: absent), when the overlays or the store's read cache know
   * it without I/O (KvReader.getCached); notCached otherwise. The synchronous fast path of the reads below:
   * same answers, no promise.
   */
  getNow(keyString: string): Uint8Array | null | NotCached {
    const v = this.view.getCached(keyString);
    return v === undefined ? notCached : v;
  }

  /** meta(), when known without I/O (see getNow). */
  metaNow(): Meta | NotCached {
    const m = this.metaPeekNow();
    return m === notCached ? notCached : rec.copyMeta(m);
  }

  /** metaNow(), but a record the caller must not change (it may be shared with later reads). */
  metaPeekNow(): Meta | NotCached {
    const bytes = this.getNow(keys.metaKeyString);
    if (bytes === notCached) return notCached;
    assert(bytes !== null, 'meta record missing');
    return this.hints.peekMeta(bytes);
  }

  /**
   * inode(id), when known without I/O (see getNow). With `readOnly` the record may be shared with later
   * reads: the caller must not change it.
   */
  inodeNow(id: number, readOnly = false): Inode | undefined | NotCached {
    const bytes = this.inodeBytesNow(id);
    if (bytes === notCached || bytes === undefined) return bytes;
    return readOnly ? this.hints.inodes.peek(id, bytes) : this.hints.inodes.decode(id, bytes);
  }

  /** The stored bytes of inode `id` (undefined: no such inode), when known without I/O (see getNow). */
  inodeBytesNow(id: number): Uint8Array | undefined | NotCached {
    const key = keys.inodeKeyString(id);
    if (id >= this.freshInodesFrom) return this.view.getBuffered(key);
    const v = this.getNow(key);
    return v === null ? undefined : v;
  }

  /** lookup(dir, name), when known without I/O (see getNow). */
  lookupNow(dir: number, name: Pick<PathComponent, 'chars'>): { id: number; type: InodeType } | undefined | NotCached {
    const key = keys.direntKeyString(dir, name.chars);
    let bytes: Uint8Array | undefined;
    if (dir >= this.freshInodesFrom) bytes = this.view.getBuffered(key);
    else {
      const v = this.getNow(key);
      if (v === notCached) return notCached;
      bytes = v ?? undefined;
    }
    return bytes === undefined ? undefined : keys.readDirent(bytes);
  }

  async meta(): Promise<Meta> {
    const bytes = await this.view.getByKeyString(keys.metaKeyString, keys.metaKey);
    assert(bytes !== undefined, 'meta record missing');
    return this.hints.decodeMeta(bytes);
  }

  putMeta(m: Meta): void {
    const bytes = rec.encodeMeta(m);
    this.view.putByKeyString(keys.metaKeyString, bytes);
    this.hints.rememberMeta(bytes, m);
  }

  /** Hands out the next id of a counter (deterministic: same on every replica). */
  allocate(counter: Counter): Promise<number> {
    const m = this.metaNow();
    if (m !== notCached) return Promise.resolve(this.take(m, counter));
    return this.meta().then((read) => this.take(read, counter));
  }

  /** allocate(), without a promise when the meta record is known without I/O (see getNow). */
  allocateNow(counter: Counter): number | Promise<number> {
    const m = this.metaNow();
    return m === notCached ? this.allocate(counter) : this.take(m, counter);
  }

  private take(m: Meta, counter: Counter): number {
    const id = m[counter];
    m[counter] = id + 1;
    this.putMeta(m);
    return id;
  }

  async inode(id: number): Promise<Inode | undefined> {
    const key = keys.inodeKeyString(id);
    const bytes = id >= this.freshInodesFrom ? this.view.getBuffered(key) : await this.view.getByKeyString(key);
    return bytes === undefined ? undefined : this.hints.inodes.decode(id, bytes);
  }

  /** An inode a directory entry or a placement record points at: its absence is a broken invariant. */
  async mustInode(id: number): Promise<Inode> {
    const n = await this.inode(id);
    if (n === undefined) assert(false, `inode ${id} is referenced but missing`);
    return n;
  }

  /** Stores an inode; its generation becomes this command's index (it changed). */
  putInode(n: Inode): void {
    n.generation = this.index;
    const bytes = rec.encodeInode(n);
    this.view.putByKeyString(keys.inodeKeyString(n.id), bytes);
    this.hints.inodes.remember(n, bytes);
  }

  deleteInode(id: number): void {
    this.view.deleteByKeyString(keys.inodeKeyString(id));
  }

  /** `name`: the entry's name; only its key string (PathComponent.chars) is used. */
  async lookup(dir: number, name: Pick<PathComponent, 'chars'>): Promise<{ id: number; type: InodeType } | undefined> {
    // A directory created since the store's last write has no entries in the store: a bulk create into a
    // directory made earlier in the same batch (a follower catching up) reads no name from the store.
    const key = keys.direntKeyString(dir, name.chars);
    const bytes = dir >= this.freshInodesFrom ? this.view.getBuffered(key) : await this.view.getByKeyString(key);
    return bytes === undefined ? undefined : keys.readDirent(bytes);
  }

  putEntry(dir: number, name: PathComponent, child: number, type: InodeType): void {
    this.view.putByKeyString(keys.direntKeyString(dir, name.chars), keys.direntValue(child, type));
  }

  deleteEntry(dir: number, name: PathComponent): void {
    this.view.deleteByKeyString(keys.direntKeyString(dir, name.chars));
  }

  async lease(file: number): Promise<Lease | undefined> {
    const bytes = await this.view.getByKeyString(keys.leaseKeyString(file));
    return bytes === undefined ? undefined : rec.decodeLease(bytes);
  }

  putLease(file: number, lease: Lease): void {
    this.view.putByKeyString(keys.leaseKeyString(file), rec.encodeLease(lease));
  }

  deleteLease(file: number): void {
    this.view.deleteByKeyString(keys.leaseKeyString(file));
  }

  async placement(handle: number): Promise<Placement | undefined> {
    const bytes = await this.view.getByKeyString(keys.placementKeyString(handle));
    return bytes === undefined ? undefined : rec.decodePlacement(handle, bytes);
  }

  async mustPlacement(handle: number): Promise<Placement> {
    const p = await this.placement(handle);
    if (p === undefined) throw new FsError('ENOENT', `no chunk ${handle}`);
    return p;
  }

  putPlacement(p: Placement): void {
    this.view.putByKeyString(keys.placementKeyString(p.handle), rec.encodePlacement(p));
  }

  /** The handle at `index` of the file's chunk list, if any. */
  async chunkListEntry(file: number, index: number): Promise<number | undefined> {
    const bytes = await this.view.getByKeyString(keys.chunkListKeyString(file, index));
    return bytes === undefined ? undefined : keys.readU64(bytes, 0);
  }

  putChunkListEntry(file: number, index: number, handle: number): void {
    this.view.putByKeyString(keys.chunkListKeyString(file, index), keys.u64Bytes(handle));
  }

  deleteChunkListEntry(file: number, index: number): void {
    this.view.deleteByKeyString(keys.chunkListKeyString(file, index));
  }

  deletePlacement(handle: number): void {
    this.view.deleteByKeyString(keys.placementKeyString(handle));
  }

  async chunkserver(id: number): Promise<Chunkserver | undefined> {
    const bytes = await this.view.getByKeyString(keys.chunkserverKeyString(id));
    return bytes === undefined ? undefined : rec.decodeChunkserver(id, bytes);
  }

  deleteChunkserver(id: number): void {
    this.view.delete(keys.chunkserverKey(id));
  }

  /** Stores a chunkserver record; its generation becomes this command's index. */
  putChunkserver(c: Chunkserver): void {
    c.generation = this.index;
    this.view.putByKeyString(keys.chunkserverKeyString(c.id), rec.encodeChunkserver(c));
  }
}
