/**
 * Loading the chunk manager's ClusterView from the state machine's store (read-only, page by page). The
 * store may apply batches between pages, so the view can mix states a few entries apart; every decision the
 * manager takes on it is re-checked by the state machine (versions, generations), so that is harmless.
 */
import type { KvReader } from '../fsm/kv.ts';
import type { FsmLimits } from '../fsm/limits.ts';
import { listChunkservers, readTxn, scanChunkHealth, scanLeases } from '../fsm/queries.ts';
import type { ChunkView, ClusterView, LeaseView, ServerView } from './manager.ts';
import type { FsResult } from '../fsm/errors.ts';

export async function loadClusterView(kv: KvReader, limits: FsmLimits): Promise<ClusterView> {
  const txn = readTxn(kv, limits);
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
