/**
 * Loading the chunk manager's ClusterView from the state machine's store (read-only, page by page). The
 * store may apply batches between pages, so the view can mix states a few entries apart; every decision the
 * manager takes on it is re-checked by the state machine (versions, generations), so that is harmless.
 */
import type { KvBatch, KvReader } from '../fsm/kv.ts';
import * as keys from '../fsm/keys.ts';
import { Table } from '../fsm/keys.ts';
import type { FsmLimits } from '../fsm/limits.ts';
import { chunksHealth, listChunkservers, readTxn, scanChunkHealth, scanLeases } from '../fsm/queries.ts';
import type { Txn } from '../fsm/txn.ts';
import type { ChunkView, ClusterView, LeaseView, ServerView } from './manager.ts';
import type { PlacementBug } from './bugs.ts';
import { noPlacementBugs } from './bugs.ts';
import type { FsResult } from '../fsm/errors.ts';

export function loadClusterView(kv: KvReader, limits: FsmLimits): Promise<ClusterView> {
  return readWholeView(kv, limits);
}

/** A view whose maps its owner may change (the ViewTracker keeps one). */
interface MutableView {
  readonly servers: Map<number, ServerView>;
  readonly chunks: Map<number, ChunkView>;
  readonly leases: Map<number, LeaseView>;
  nextChunkHandle: number;
}

async function readWholeView(kv: KvReader, limits: FsmLimits): Promise<MutableView> {
  const txn = readTxn(kv, limits);
  const servers = await loadServers(txn);
  const chunks = new Map<number, ChunkView>();
  // Read before the scan: a chunk added while we scan has a handle at or above this, so the manager never
  // mistakes it for a reclaimed one.
  const nextChunkHandle = (await txn.meta()).nextChunkHandle;
  for (let after: number | undefined; ; ) {
    const page = await scanChunkHealth(txn, { after });
    for (const c of page.items) chunks.set(c.handle, c);
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }
  const leases = new Map<number, LeaseView>();
  for (let after: number | undefined; ; ) {
    const page = await scanLeases(txn, { after });
    for (const l of page.items) leases.set(l.fileId, { holder: l.holder, expiresMs: l.expiresMs });
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }
  return { servers, chunks, nextChunkHandle, leases };
}

async function loadServers(txn: Txn): Promise<Map<number, ServerView>> {
  const servers = new Map<number, ServerView>();
  for (let after: number | undefined; ; ) {
    const page = await listChunkservers(txn, { after });
    for (const s of page.items) {
      servers.set(s.id, {
        id: s.id,
        address: s.address,
        rack: s.rack,
        state: s.state,
        capacityBytes: s.capacityBytes,
        usedBytes: s.usedBytes,
        generation: s.generation,
      });
    }
    if (page.nextAfter === null) break;
    after = page.nextAfter;
  }
  return servers;
}

/**
 * One chunk as the manager sees chunks (placement, its file's replication factor and liveness), read from the
 * store now: for leader decisions about one chunk that cannot wait for the next view (a writer's new
 * pipeline, a reader's bad replica). ENOENT for an unknown handle or a chunk of a deleted file.
 */
export async function loadChunkView(kv: KvReader, limits: FsmLimits, handle: number): Promise<FsResult<ChunkView>> {
  const page = await scanChunkHealth(readTxn(kv, limits), { after: handle - 1, limit: 1 });
  const c = page.items[0];
  if (c === undefined || c.handle !== handle) return { ok: false, code: 'ENOENT', message: `no chunk ${handle}` };
  if (!c.fileLive) return { ok: false, code: 'ENOENT', message: `chunk ${handle} belongs to a deleted file` };
  return { ok: true, value: c };
}

/** What the store's writes since the last load changed, as far as the chunk manager's view is concerned. */
interface Changes {
  /** Something not described changed (a snapshot installed, a failed write), or nothing is loaded yet. */
  wide: boolean;
  servers: boolean;
  /** Placement records written or deleted. */
  readonly chunks: Set<number>;
  /** Inodes written or deleted: a file's replication factor, or its deletion, is in its chunks' views. */
  readonly inodes: Set<number>;
  /** Inodes queued for reclamation (detached from the tree): a directory's files all leave it. */
  readonly detached: Set<number>;
  /** Lease records written or deleted, by file id. */
  readonly leases: Set<number>;
}

/**
 * Changed records (chunks, inodes, leases) kept between loads, at most; past it they are dropped for one whole
 * read, which covers them all. Bounds the memory of a member that stops loading (a follower keeps noting its
 * writes). A leader loads about once a second, so only more than this many files created or changed in a second
 * (each create writes its file's and its directory's inode) costs it a whole read.
 */
export const viewChangesKeptMax = 100_000;

const noChanges = (wide: boolean): Changes => ({ wide, servers: false, chunks: new Set(), inodes: new Set(), detached: new Set(), leases: new Set() });

/**
 * The chunk manager's view kept up to date by the store's writes, instead of read whole on every pass: the
 * leader's manager asks for the view after every pass that applied something (about once a second under
 * load), and a whole read costs about 10 µs of CPU per chunk (BENCHMARKS.md, bench/view-load.ts): a fifth of
 * a core at 20,000 chunks, and at 100,000 a read (about 2 s) outlasts the pass interval.
 *
 * The state machine hands every store write of applied entries to `noteWrite` (its `onStoreWrite` option)
 * before its applied index moves past it. `load` reads again only what those writes touched:
 * - a placement record: that chunk;
 * - an inode, written or deleted: its file's chunks in the view (its replication factor, or its end);
 * - an inode queued for reclamation: a file's chunks (the file left the tree); a directory left the tree
 *   with everything under it: the whole view is read again (a directory's deletion is rare, and its files'
 *   inodes are not written until the reclamation reaches them);
 * - a lease record: that lease; a chunkserver record: the server list (one record per server);
 * - the meta record's nextChunkHandle is read on every load.
 * A snapshot installed, a failed store write, or the first load: the whole view.
 *
 * The view is as consistent as a whole read: every record is read after the write that changed it was
 * noted, so it is at least as new as the applied index taken before the load (the simulator compares it
 * with a whole read at every pass where nothing was applied in between: the `view-incremental` check).
 * The maps the returned view holds are updated in place, each load's updates in one synchronous step after
 * its reads: a caller holding an earlier view sees the newer maps (with that view's older nextChunkHandle,
 * which only makes a handle it has not seen look newer than the view), never a half-applied load.
 */
export class ViewTracker {
  private changes = noChanges(true);
  private view: MutableView | null = null;
  /** Handles in the view by file id (a file's chunks, for its inode's changes). */
  private byFile = new Map<number, Set<number>>();
  private loading: Promise<unknown> = Promise.resolve();
  /** Whole reads so far (tests, metrics). */
  wholeLoads = 0;
  /** Loads that read only what changed. */
  partialLoads = 0;

  constructor(
    private readonly bugs: ReadonlySet<PlacementBug> = noPlacementBugs,
    private readonly changesKeptMax = viewChangesKeptMax,
  ) {}

  /** The state machine's onStoreWrite. */
  noteWrite(write: KvBatch | 'unknown'): void {
    const c = this.changes;
    if (write === 'unknown') {
      c.wide = true;
      return;
    }
    if (c.wide) return;
    for (const { key, value } of write.puts) {
      if (key[0] !== Table.garbage) this.noteKey(key);
      else if (!this.bugs.has('view-ignore-file-changes')) c.detached.add(keys.readU64(value, 0));
    }
    for (const key of write.deletes) this.noteKey(key);
    if (c.chunks.size + c.inodes.size + c.detached.size + c.leases.size > this.changesKeptMax) this.changes = noChanges(true);
  }

  private noteKey(key: Uint8Array): void {
    const c = this.changes;
    switch (key[0]) {
      case Table.placement:
        c.chunks.add(keys.readU64(key, 1));
        break;
      case Table.inode:
        if (!this.bugs.has('view-ignore-file-changes')) c.inodes.add(keys.readU64(key, 1));
        break;
      case Table.lease:
        c.leases.add(keys.readU64(key, 1));
        break;
      case Table.chunkserver:
        c.servers = true;
        break;
      default:
    }
  }

  /** The view as of the store now (see the class comment); loads run one at a time. */
  load(kv: KvReader, limits: FsmLimits): Promise<ClusterView> {
    const next = this.loading.then(() => this.loadNow(kv, limits));
    this.loading = next.catch(() => undefined);
    return next;
  }

  /** Drops the view (a member that stopped leading frees it); the next load reads everything. */
  reset(): void {
    this.view = null;
    this.byFile = new Map();
    this.changes = noChanges(true);
  }

  private async loadNow(kv: KvReader, limits: FsmLimits): Promise<ClusterView> {
    const changes = this.changes;
    this.changes = noChanges(false);
    try {
      const view = this.view === null || changes.wide ? await this.loadWhole(kv, limits) : await this.loadChanged(kv, limits, this.view, changes);
      return { servers: view.servers, chunks: view.chunks, leases: view.leases, nextChunkHandle: view.nextChunkHandle };
    } catch (error) {
      // Not read: those changes are still to be read (with any noted since).
      this.mergeBack(changes);
      throw error;
    }
  }

  private mergeBack(changes: Changes): void {
    const c = this.changes;
    c.wide ||= changes.wide;
    c.servers ||= changes.servers;
    for (const h of changes.chunks) c.chunks.add(h);
    for (const i of changes.inodes) c.inodes.add(i);
    for (const i of changes.detached) c.detached.add(i);
    for (const f of changes.leases) c.leases.add(f);
  }

  private async loadWhole(kv: KvReader, limits: FsmLimits): Promise<MutableView> {
    this.wholeLoads++;
    const view = await readWholeView(kv, limits);
    this.byFile = new Map();
    for (const c of view.chunks.values()) this.index(c);
    this.view = view;
    return view;
  }

  private async loadChanged(kv: KvReader, limits: FsmLimits, view: MutableView, changes: Changes): Promise<MutableView> {
    const txn = readTxn(kv, limits);
    // A directory that left the tree took its files' chunks with it: read everything.
    for (const id of changes.detached) {
      if ((await txn.inode(id))?.type === 'dir') return this.loadWhole(kv, limits);
    }
    this.partialLoads++;
    const handles = new Set(changes.chunks);
    for (const id of [...changes.inodes, ...changes.detached]) for (const h of this.byFile.get(id) ?? []) handles.add(h);
    // Read first (no await after the updates begin): the nextChunkHandle before the chunks, as a whole read does.
    const nextChunkHandle = (await txn.meta()).nextChunkHandle;
    const servers = changes.servers ? await loadServers(txn) : null;
    const chunks = await chunksHealth(txn, handles);
    const leases = new Map<number, LeaseView | undefined>();
    for (const file of changes.leases) {
      const l = await txn.lease(file);
      leases.set(file, l === undefined ? undefined : { holder: l.holder, expiresMs: l.expiresMs });
    }
    // Then every update at once.
    if (servers !== null) {
      view.servers.clear();
      for (const [id, s] of servers) view.servers.set(id, s);
    }
    for (const [handle, c] of chunks) {
      const old = view.chunks.get(handle);
      if (old !== undefined) this.unindex(old);
      if (c === undefined) view.chunks.delete(handle);
      else {
        view.chunks.set(handle, c);
        this.index(c);
      }
    }
    for (const [file, l] of leases) {
      if (l === undefined) view.leases.delete(file);
      else view.leases.set(file, l);
    }
    view.nextChunkHandle = nextChunkHandle;
    return view;
  }

  private unindex(c: ChunkView): void {
    const set = this.byFile.get(c.fileId);
    set?.delete(c.handle);
    if (set?.size === 0) this.byFile.delete(c.fileId);
  }

  private index(c: ChunkView): void {
    let set = this.byFile.get(c.fileId);
    if (set === undefined) {
      set = new Set();
      this.byFile.set(c.fileId, set);
    }
    set.add(c.handle);
  }
}
