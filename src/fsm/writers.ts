/**
 * Writers and placement: file leases, the chunk list of a file, chunk placement records, and the
 * chunkserver registry.
 *
 * Leases: one writer per file. A lease is (holder, expiresMs) in stamped time; it is live while
 * expiresMs > now. A live lease held by someone else blocks acquisition (ELEASE); an expired one (its holder
 * vanished) can be taken over by anyone. Renewal needs the same holder and a live lease; once expired, the
 * holder must acquire again (which succeeds unless someone else took over). Lease records are separate from
 * the inode, so lease traffic does not change a file's generation; chunk commands that change the file
 * (addChunk, sealChunk, completeFile) do.
 *
 * Placement (GFS style): a chunk's version starts at 1 and is bumped by every new write pipeline, so a
 * replica that missed a pipeline keeps a lower version and is recognised as stale. A command naming an old
 * version fails with ESTALE. Sealing fixes the chunk's length and checksum for good.
 */
import { assert } from '../raft/errors.ts';
import type { ChunkSeal, Op } from './commands.ts';
import { FsError } from './errors.ts';
import { isLinked, resolve } from './namespace.ts';
import type { PathComponent } from './paths.ts';
import { joinPath, parsePath } from './paths.ts';
import type { Chunkserver, Inode, Placement } from './records.ts';
import { RECOVERY_HOLDER } from './records.ts';
import type { Txn } from './txn.ts';
import * as v from './validate.ts';

type OpOf<T extends Op['type']> = Extract<Op, { type: T }>;

/** The file at the path, after the precondition (so the order is: resolve, precondition, type). */
async function resolveFile(
  txn: Txn,
  path: readonly PathComponent[],
  ifGeneration: number | undefined,
): Promise<Inode> {
  const node = await resolve(txn, path);
  v.checkGeneration(node.generation, ifGeneration);
  if (node.type !== 'file') throw new FsError('EISDIR', `is a directory: ${joinPath(path)}`);
  return node;
}

/** ELEASE unless `holder` holds a live lease on the file. */
async function requireLease(txn: Txn, file: Inode, holder: string): Promise<void> {
  const lease = await txn.lease(file.id);
  if (lease === undefined) throw new FsError('ELEASE', `no lease on file ${file.id}`);
  if (lease.holder !== holder) throw new FsError('ELEASE', `file ${file.id} is leased to ${lease.holder}`);
  if (lease.expiresMs <= txn.nowMs)
    throw new FsError('ELEASE', `lease of ${holder} on file ${file.id} expired`);
}

/**
 * The lease, and the file's chunk count under it: a writer appending to the file names its next allocation's
 * index from it (addChunk's `index`), and no other writer can add chunks while the lease lives.
 */
export async function acquireLease(
  txn: Txn,
  op: OpOf<'acquireLease'>,
): Promise<{ expiresMs: number; chunkCount: number; chunkSizeBytes: number; compression: 'none' | 'lz4' }> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  v.checkLeaseDuration(op.durationMs, txn.limits);
  const file = await resolveFile(txn, path, op.ifGeneration);
  const lease = await txn.lease(file.id);
  if (lease?.holder === RECOVERY_HOLDER && lease.expiresMs > txn.nowMs) {
    throw new FsError('ELEASE', `${op.path} is being recovered: its last writer vanished, and the leader is sealing its last chunk`);
  }
  if (lease !== undefined && lease.holder !== op.holder && lease.expiresMs > txn.nowMs) {
    throw new FsError('ELEASE', `${op.path} is leased to ${lease.holder}`);
  }
  // Chunks a vanished writer left unsealed are the leader's to recover (their length is not known here).
  if (file.unsealedChunks > 0 && lease?.holder !== op.holder) {
    throw new FsError('ELEASE', `${op.path} has ${file.unsealedChunks} chunks its last writer left unsealed: the leader recovers them shortly`);
  }
  const expiresMs = txn.nowMs + op.durationMs;
  txn.putLease(file.id, { holder: op.holder, expiresMs });
  // What an appending writer needs besides: its chunks go after chunkCount, at the file's chunk size.
  return { expiresMs, chunkCount: file.chunkCount, chunkSizeBytes: file.chunkSizeBytes, compression: file.compression ?? 'none' };
}

export async function renewLease(txn: Txn, op: OpOf<'renewLease'>): Promise<{ expiresMs: number }> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  v.checkLeaseDuration(op.durationMs, txn.limits);
  const file = await resolveFile(txn, path, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  const expiresMs = txn.nowMs + op.durationMs;
  txn.putLease(file.id, { holder: op.holder, expiresMs });
  return { expiresMs };
}

/**
 * Releases the holder's lease, live or expired (nobody else took it over): a writer giving up. The file is
 * left as lease recovery would leave it: complete at once when no chunk is unsealed (its sealed chunks are
 * what was written); else the leader's lease recovery seals what the replicas agree on, then completes it.
 */
export async function releaseLease(txn: Txn, op: OpOf<'releaseLease'>): Promise<Record<string, never>> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  const file = await resolveFile(txn, path, op.ifGeneration);
  const lease = await txn.lease(file.id);
  if (lease === undefined || lease.holder !== op.holder)
    throw new FsError('ELEASE', `${op.holder} holds no lease on ${op.path}`);
  txn.deleteLease(file.id);
  if (!file.complete && file.unsealedChunks === 0) {
    file.complete = true;
    file.ctimeMs = txn.nowMs;
    txn.putInode(file);
  }
  return {};
}

export interface NewChunk {
  readonly handle: number;
  readonly index: number;
  readonly version: number;
}

export async function addChunk(txn: Txn, op: OpOf<'addChunk'>): Promise<NewChunk> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  v.checkReplicaList(op.replicas, txn.limits);
  const file = await resolveFile(txn, path, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  if (op.index !== undefined && op.index !== file.chunkCount) return await allocatedBefore(txn, file, op.index, op.path);
  await requireChunkservers(txn, op.replicas);
  if (file.chunkCount >= txn.limits.fileChunksMax)
    throw new FsError('EINVAL', `file has ${txn.limits.fileChunksMax} chunks already`);
  return await appendChunk(txn, file, op.replicas);
}

/**
 * create's first chunk (see the create op's firstChunkCandidates): on the first `file.replication` candidates
 * when there are that many and each is a registered chunkserver; else none (undefined), and the file is
 * created all the same. `file` is the new, empty file under its writer's lease; the caller checked the list.
 * The answer names the replicas (the session table keeps it, so a retry answers the same pipeline).
 */
export async function addFirstChunk(txn: Txn, file: Inode, candidates: readonly number[]): Promise<(NewChunk & { readonly replicas: number[] }) | undefined> {
  assert(file.chunkCount === 0, `file ${file.id} is new but has ${file.chunkCount} chunks`);
  if (candidates.length < file.replication) return undefined;
  const replicas = candidates.slice(0, file.replication);
  for (const id of replicas) if ((await txn.chunkserver(id)) === undefined) return undefined;
  return { ...(await appendChunk(txn, file, replicas)), replicas };
}

/** A new unsealed chunk at the end of the file, at version 1 on `replicas` (checked by the caller). */
async function appendChunk(txn: Txn, file: Inode, replicas: readonly number[]): Promise<NewChunk> {
  const handle = await txn.allocate('nextChunkHandle');
  const index = file.chunkCount;
  txn.putChunkListEntry(file.id, index, handle);
  txn.putPlacement({
    handle,
    fileId: file.id,
    index,
    version: 1,
    replicas: [...replicas],
    sealed: false,
    lengthBytes: 0,
    checksum: 0,
  });
  file.chunkCount += 1;
  file.unsealedChunks += 1;
  file.complete = false;
  file.mtimeMs = txn.nowMs;
  file.ctimeMs = txn.nowMs;
  txn.putInode(file);
  return { handle, index, version: 1 };
}

/**
 * addChunk naming an index other than the file's next: the file's last chunk when it is at that index, unsealed
 * and never written through (version 1), is the writer's own allocation whose answer it did not get (a leader
 * that stopped after committing it, a retry outside the session), answered again; anything else is EINVAL.
 */
async function allocatedBefore(txn: Txn, file: Inode, index: number, path: string): Promise<NewChunk> {
  if (index === file.chunkCount - 1) {
    const placement = await lastChunk(txn, file);
    if (!placement.sealed && placement.version === 1) return { handle: placement.handle, index, version: 1 };
  }
  throw new FsError('EINVAL', `chunk index ${index} asked for, but ${path} has ${file.chunkCount} chunks`);
}

/** The file's last chunk (it has one). */
async function lastChunk(txn: Txn, file: Inode): Promise<Placement> {
  const handle = await txn.chunkListEntry(file.id, file.chunkCount - 1);
  assert(handle !== undefined, `file ${file.id} has ${file.chunkCount} chunks but no list entry for the last`);
  return await txn.mustPlacement(handle);
}

/**
 * Takes one chunk out of the file (its list entry and placement; its replicas become orphans for garbage
 * collection) and out of the file's counts: its length if sealed, else the unsealed count. The caller drops
 * chunks from the end, so chunkCount stays the list's length.
 */
function dropChunk(txn: Txn, file: Inode, placement: Placement): void {
  txn.deleteChunkListEntry(file.id, placement.index);
  txn.deletePlacement(placement.handle);
  file.chunkCount -= 1;
  if (placement.sealed) file.lengthBytes -= placement.lengthBytes;
  else file.unsealedChunks -= 1;
}

/** Drops the file's last chunk, unsealed (abandonChunk, completeFile). */
function dropLastChunk(txn: Txn, file: Inode, placement: Placement): void {
  dropChunk(txn, file, placement);
  file.mtimeMs = txn.nowMs;
  file.ctimeMs = txn.nowMs;
}

/** The chunk and its file, which must still be in the tree (ENOENT for a chunk of a deleted file). */
async function chunkOfLiveFile(txn: Txn, handle: number): Promise<{ placement: Placement; file: Inode }> {
  const placement = await txn.mustPlacement(handle);
  const file = await txn.mustInode(placement.fileId);
  if (!(await isLinked(txn, file))) throw new FsError('ENOENT', `chunk ${handle} belongs to a deleted file`);
  return { placement, file };
}

function requireVersion(p: Placement, version: number): void {
  if (p.version !== version)
    throw new FsError('ESTALE', `chunk ${p.handle} is at version ${p.version}, not ${version}`);
}

export async function bumpChunkVersion(txn: Txn, op: OpOf<'bumpChunkVersion'>): Promise<{ version: number }> {
  v.checkLabel('lease holder', op.holder, txn.limits);
  v.checkReplicaList(op.replicas, txn.limits);
  const { placement, file } = await chunkOfLiveFile(txn, op.handle);
  v.checkGeneration(file.generation, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  requireVersion(placement, op.version);
  if (placement.sealed) throw new FsError('EINVAL', `chunk ${op.handle} is sealed`);
  await requireChunkservers(txn, op.replicas);
  placement.version += 1;
  placement.replicas = [...op.replicas];
  txn.putPlacement(placement);
  return { version: placement.version };
}

export async function sealChunk(txn: Txn, op: OpOf<'sealChunk'>): Promise<{ fileLengthBytes: number }> {
  v.checkLabel('lease holder', op.holder, txn.limits);
  checkSeal(op);
  const { placement, file } = await chunkOfLiveFile(txn, op.handle);
  v.checkGeneration(file.generation, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  seal(txn, file, placement, op);
  return { fileLengthBytes: file.lengthBytes };
}

function checkSeal(s: ChunkSeal): void {
  if (s.checksum > v.CHECKSUM_MAX) throw new FsError('EINVAL', 'checksum is not a CRC32C');
}

/** Fixes the chunk's length and checksum (the version must be current; once only); the file grows by it. */
function seal(txn: Txn, file: Inode, placement: Placement, s: ChunkSeal): void {
  requireVersion(placement, s.version);
  if (placement.sealed) throw new FsError('EINVAL', `chunk ${s.handle} is sealed already`);
  if (s.lengthBytes > file.chunkSizeBytes)
    throw new FsError('EINVAL', `length ${s.lengthBytes} exceeds the chunk size`);
  placement.sealed = true;
  placement.lengthBytes = s.lengthBytes;
  placement.checksum = s.checksum;
  txn.putPlacement(placement);
  file.unsealedChunks -= 1;
  file.lengthBytes += s.lengthBytes;
  file.mtimeMs = txn.nowMs;
  file.ctimeMs = txn.nowMs;
  txn.putInode(file);
}

/** Seals the file: every chunk must be sealed; the length is the sum of theirs. Releases the lease. */
export async function completeFile(
  txn: Txn,
  op: OpOf<'completeFile'>,
): Promise<{ lengthBytes: number; generation: number }> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  if (op.lastChunk !== undefined) checkSeal(op.lastChunk);
  const file = await resolveFile(txn, path, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  if (op.lastChunk !== undefined) {
    const last = op.lastChunk;
    const placement = await txn.placement(last.handle);
    // Only a chunk the writer wrote: among the file's first chunkCount chunks (not the one allocated ahead).
    const written = op.chunkCount ?? file.chunkCount;
    if (placement === undefined || placement.fileId !== file.id || placement.index >= written)
      throw new FsError('EINVAL', `chunk ${last.handle} is not among the ${written} chunks written to ${op.path}`);
    seal(txn, file, placement, last);
  }
  if (op.chunkCount !== undefined && op.chunkCount !== file.chunkCount) {
    const last = op.chunkCount + 1 === file.chunkCount ? await lastChunk(txn, file) : undefined;
    if (last === undefined || last.sealed)
      throw new FsError('EINVAL', `the writer wrote ${op.chunkCount} chunks, but ${op.path} has ${file.chunkCount}`);
    dropLastChunk(txn, file, last);
  }
  if (file.unsealedChunks > 0)
    throw new FsError('EINVAL', `${file.unsealedChunks} chunks of ${op.path} are not sealed`);
  file.complete = true;
  file.ctimeMs = txn.nowMs;
  txn.putInode(file);
  txn.deleteLease(file.id);
  return { lengthBytes: file.lengthBytes, generation: file.generation };
}

/**
 * Drops the file's last chunk, which must be unsealed (its writer allocated it ahead and wrote nothing to it;
 * only the writer can know that). Its chunk list entry and placement go; its replicas are orphans now, which
 * the leader's garbage collection deletes when their chunkservers report them.
 */
export async function abandonChunk(txn: Txn, op: OpOf<'abandonChunk'>): Promise<{ chunkCount: number }> {
  const path = parsePath(op.path, txn.limits);
  v.checkLabel('lease holder', op.holder, txn.limits);
  const file = await resolveFile(txn, path, op.ifGeneration);
  await requireLease(txn, file, op.holder);
  const placement = await txn.mustPlacement(op.handle);
  if (placement.fileId !== file.id) throw new FsError('EINVAL', `chunk ${op.handle} is not a chunk of ${op.path}`);
  if (placement.index !== file.chunkCount - 1) throw new FsError('EINVAL', `chunk ${op.handle} is not the last chunk of ${op.path}`);
  if (placement.sealed) throw new FsError('EINVAL', `chunk ${op.handle} is sealed`);
  dropLastChunk(txn, file, placement);
  txn.putInode(file);
  return { chunkCount: file.chunkCount };
}

/**
 * The leader's lease recovery begins (see the op): the lease passes to RECOVERY_HOLDER, or the file is
 * completed at once when no chunk is unsealed.
 */
export async function beginLeaseRecovery(
  txn: Txn,
  op: OpOf<'beginLeaseRecovery'>,
): Promise<{ completed: boolean; expiresMs: number }> {
  v.checkLeaseDuration(op.durationMs, txn.limits);
  const file = await txn.inode(op.file);
  if (file === undefined || !(await isLinked(txn, file))) throw new FsError('ENOENT', `no file ${op.file}`);
  if (file.type !== 'file') throw new FsError('EISDIR', `inode ${op.file} is a directory`);
  v.checkGeneration(file.generation, op.ifGeneration);
  const lease = await txn.lease(file.id);
  if (lease !== undefined && lease.holder !== RECOVERY_HOLDER && lease.expiresMs > txn.nowMs) {
    throw new FsError('ELEASE', `file ${file.id} is leased to ${lease.holder} until ${lease.expiresMs}`);
  }
  if (file.unsealedChunks === 0) {
    if (!file.complete) {
      file.complete = true;
      file.ctimeMs = txn.nowMs;
      txn.putInode(file);
    }
    if (lease !== undefined) txn.deleteLease(file.id);
    return { completed: true, expiresMs: 0 };
  }
  const expiresMs = txn.nowMs + op.durationMs;
  txn.putLease(file.id, { holder: RECOVERY_HOLDER, expiresMs });
  return { completed: false, expiresMs };
}

/** The leader's lease recovery of one chunk (see the op): sealed at the agreed length, or dropped at 0. */
export async function recoverChunk(
  txn: Txn,
  op: OpOf<'recoverChunk'>,
): Promise<{ completed: boolean; lengthBytes: number; chunkCount: number }> {
  if (op.checksum > v.CHECKSUM_MAX) throw new FsError('EINVAL', 'checksum is not a CRC32C');
  v.checkReplicaList(op.replicas, txn.limits, true);
  const { placement, file } = await chunkOfLiveFile(txn, op.handle);
  v.checkGeneration(file.generation, op.ifGeneration);
  const lease = await txn.lease(file.id);
  if (lease?.holder !== RECOVERY_HOLDER) throw new FsError('ELEASE', `file ${file.id} is not being recovered`);
  requireVersion(placement, op.version);
  if (placement.sealed) throw new FsError('EINVAL', `chunk ${op.handle} is sealed already`);
  if (op.lengthBytes > file.chunkSizeBytes) throw new FsError('EINVAL', `length ${op.lengthBytes} exceeds the chunk size`);
  if ((op.lengthBytes === 0) !== (op.replicas.length === 0))
    throw new FsError('EINVAL', 'a recovered chunk has replicas exactly when its length is not 0');
  await requireChunkservers(txn, op.replicas);
  let cut = file.chunkCount;
  if (op.lengthBytes > 0) {
    placement.sealed = true;
    placement.lengthBytes = op.lengthBytes;
    placement.checksum = op.checksum;
    placement.replicas = [...op.replicas];
    txn.putPlacement(placement);
    file.unsealedChunks -= 1;
    file.lengthBytes += op.lengthBytes;
    if (op.lengthBytes < file.chunkSizeBytes) cut = placement.index + 1;
  } else {
    cut = placement.index;
  }
  // A short chunk ends the file: what follows it (written ahead, or never) goes, so the file stays a prefix.
  while (file.chunkCount > cut) dropChunk(txn, file, await lastChunk(txn, file));
  assert(file.unsealedChunks >= 0 && file.lengthBytes >= 0, `file ${file.id}: recovery left negative counts`);
  const completed = file.unsealedChunks === 0;
  if (completed) {
    file.complete = true;
    txn.deleteLease(file.id);
  }
  file.mtimeMs = txn.nowMs;
  file.ctimeMs = txn.nowMs;
  txn.putInode(file);
  return { completed, lengthBytes: file.lengthBytes, chunkCount: file.chunkCount };
}

/** The leader's re-replication and rebalancing: a new replica set, same version (ESTALE if it moved on). */
export async function setChunkReplicas(txn: Txn, op: OpOf<'setChunkReplicas'>): Promise<{ version: number }> {
  v.checkReplicaList(op.replicas, txn.limits);
  const { placement, file } = await chunkOfLiveFile(txn, op.handle);
  v.checkGeneration(file.generation, op.ifGeneration);
  requireVersion(placement, op.version);
  await requireChunkservers(txn, op.replicas);
  placement.replicas = [...op.replicas];
  txn.putPlacement(placement);
  return { version: placement.version };
}

async function requireChunkservers(txn: Txn, ids: readonly number[]): Promise<void> {
  for (const id of ids) {
    if ((await txn.chunkserver(id)) === undefined) throw new FsError('ENOENT', `no chunkserver ${id}`);
  }
}

export interface ChunkserverRef {
  readonly id: number;
  readonly generation: number;
}

/**
 * Registers a new chunkserver (no id: one is allocated) or updates a known one. Re-registration brings a dead
 * server back to live; a decommissioning or decommissioned one stays so.
 */
export async function registerChunkserver(
  txn: Txn,
  op: OpOf<'registerChunkserver'>,
): Promise<ChunkserverRef> {
  v.checkLabel('address', op.address, txn.limits);
  v.checkLabel('rack', op.rack, txn.limits);
  if (op.id === undefined) {
    v.checkGeneration(undefined, op.ifGeneration);
    const id = await txn.allocate('nextChunkserverId');
    const c: Chunkserver = {
      id,
      address: op.address,
      rack: op.rack,
      capacityBytes: op.capacityBytes,
      usedBytes: op.usedBytes,
      state: 'live',
      generation: 0,
      registeredMs: txn.nowMs,
      updatedMs: txn.nowMs,
    };
    txn.putChunkserver(c);
    return { id, generation: c.generation };
  }
  const c = await txn.chunkserver(op.id);
  if (c === undefined) throw new FsError('ENOENT', `no chunkserver ${op.id}`);
  v.checkGeneration(c.generation, op.ifGeneration);
  c.address = op.address;
  c.rack = op.rack;
  c.capacityBytes = op.capacityBytes;
  c.usedBytes = op.usedBytes;
  if (c.state === 'dead') c.state = 'live';
  c.updatedMs = txn.nowMs;
  txn.putChunkserver(c);
  return { id: c.id, generation: c.generation };
}

export async function setChunkserverState(
  txn: Txn,
  op: OpOf<'setChunkserverState'>,
): Promise<ChunkserverRef> {
  const c = await txn.chunkserver(op.id);
  if (c === undefined) throw new FsError('ENOENT', `no chunkserver ${op.id}`);
  v.checkGeneration(c.generation, op.ifGeneration);
  c.state = op.state;
  c.updatedMs = txn.nowMs;
  txn.putChunkserver(c);
  return { id: c.id, generation: c.generation };
}

/**
 * Removes a dead or decommissioned chunkserver's record (an operator's `rfsctl chunkservers forget`). Neither
 * can be given a replica (placement, copies and re-listing take live or decommissioning servers only), and a
 * dead one becomes live again only by a registration, which changes its generation: so once the leader saw
 * no chunk listing it, none will before this applies under that generation (`ifGeneration`). Its id is
 * never handed out again (nextChunkserverId only grows); a chunkserver that comes back with it is told
 * ENOENT.
 */
export async function forgetChunkserver(txn: Txn, op: OpOf<'forgetChunkserver'>): Promise<{ id: number }> {
  const c = await txn.chunkserver(op.id);
  if (c === undefined) throw new FsError('ENOENT', `no chunkserver ${op.id}`);
  v.checkGeneration(c.generation, op.ifGeneration);
  if (c.state !== 'dead' && c.state !== 'decommissioned') throw new FsError('EINVAL', `chunkserver ${op.id} is ${c.state}: only a dead or decommissioned chunkserver can be forgotten`);
  txn.deleteChunkserver(op.id);
  return { id: op.id };
}
