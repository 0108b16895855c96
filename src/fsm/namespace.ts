/**
 * Namespace commands: mkdir, create, setattr, rename, unlink, rmdir, deleteRecursive.
 *
 * Order of checks in every command (so results are predictable, and the model test can mirror them):
 * path syntax (EINVAL, ENAMETOOLONG), argument values (EINVAL), path resolution (ENOENT, ENOTDIR), the
 * `ifGeneration` precondition (EPRECONDITION), then the command's own rules.
 *
 * Deleted inodes are detached from the tree at once and queued for reclamation (gc.ts), which removes their
 * descendants, chunk lists and placement records a bounded number of keys at a time.
 */
import { assert } from '../raft/errors.ts';
import type { Op } from './commands.ts';
import { FsError } from './errors.ts';
import { enqueue } from './gc.ts';
import type { InodeType } from './keys.ts';
import type { PathComponent } from './paths.ts';
import { checkName, isStrictDescendant, joinPath, nameChars, parsePath, samePath } from './paths.ts';
import type { Inode } from './records.ts';
import { RECOVERY_HOLDER, ROOT_ID } from './records.ts';
import type { NewChunk } from './writers.ts';
import { addFirstChunk } from './writers.ts';
import type { NotCached, Txn } from './txn.ts';
import { notCached } from './txn.ts';
import * as v from './validate.ts';

type OpOf<T extends Op['type']> = Extract<Op, { type: T }>;

/** What mkdir, create and rename return. */
export interface InodeRef {
  readonly id: number;
  readonly generation: number;
}

/**
 * What create returns when it also grants the writer's lease: besides the inode, what the writer needs to
 * start (the attributes it inherited, and the lease's expiry), so that opening a file for writing is one
 * command and no read after it.
 */
export interface CreatedForWriting extends InodeRef {
  readonly chunkSizeBytes: number;
  readonly compression: 'none' | 'lz4';
  readonly leaseExpiresMs: number;
  /** The file's first chunk and its replicas, when the create was asked to add it (firstChunkCandidates) and could. */
  readonly firstChunk?: NewChunk & { readonly replicas: readonly number[] };
}

/** Walks from the root. ENOENT for a missing component, ENOTDIR for a file in the middle of the path. */
export async function resolve(txn: Txn, path: readonly PathComponent[]): Promise<Inode> {
  const known = walkNow(txn, path, path.length);
  if (known !== notCached) return txn.hints.inodes.decode(known.id, known.bytes);
  let node = await txn.mustInode(ROOT_ID);
  for (const c of path) {
    if (node.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${node.name}`);
    const entry = await txn.lookup(node.id, c);
    if (entry === undefined) throw new FsError('ENOENT', `no such file or directory: ${c.name}`);
    node = await txn.mustInode(entry.id);
  }
  return node;
}

export interface ParentLookup {
  readonly parent: Inode;
  readonly name: PathComponent;
  /** The inode at the path, if any. */
  readonly target: Inode | undefined;
}

/** Resolves everything but the last component (which must exist as a directory). Path must not be root. */
export async function resolveParent(txn: Txn, path: readonly PathComponent[]): Promise<ParentLookup> {
  assert(path.length > 0, 'resolveParent of the root');
  const known = resolveParentNow(txn, path);
  if (known !== notCached) return known;
  const parent = await resolve(txn, path.slice(0, -1));
  if (parent.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${parent.name}`);
  const name = path[path.length - 1]!;
  const entry = await txn.lookup(parent.id, name);
  return { parent, name, target: entry === undefined ? undefined : await txn.mustInode(entry.id) };
}

/**
 * The walk of resolve(path.slice(0, levels)) when every record on it is known without I/O (Txn.getNow):
 * the same reads in the same order, so the same answer or the same error, without a promise per level; the
 * directories on the way are read-only records (InodeMemo.peek). Gives the inode reached with the bytes it
 * was read from, or notCached as soon as a record is not known (the caller then walks with reads).
 */
function walkNow(
  txn: Txn,
  path: readonly PathComponent[],
  levels: number,
): { readonly id: number; readonly bytes: Uint8Array; readonly node: Inode } | NotCached {
  let id = ROOT_ID;
  let bytes = txn.inodeBytesNow(id);
  if (bytes === notCached) return notCached;
  if (bytes === undefined) assert(false, `inode ${id} is referenced but missing`);
  for (let i = 0; i < levels; i++) {
    const node = txn.hints.inodes.peek(id, bytes);
    if (node.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${node.name}`);
    const c = path[i]!;
    const entry = txn.lookupNow(node.id, c);
    if (entry === notCached) return notCached;
    if (entry === undefined) throw new FsError('ENOENT', `no such file or directory: ${c.name}`);
    id = entry.id;
    bytes = txn.inodeBytesNow(id);
    if (bytes === notCached) return notCached;
    if (bytes === undefined) assert(false, `inode ${id} is referenced but missing`);
  }
  return { id, bytes, node: txn.hints.inodes.peek(id, bytes) };
}

/** resolveParent without I/O, or notCached (see walkNow). */
function resolveParentNow(txn: Txn, path: readonly PathComponent[]): ParentLookup | NotCached {
  const at = walkNow(txn, path, path.length - 1);
  if (at === notCached) return notCached;
  if (at.node.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${at.node.name}`);
  const name = path[path.length - 1]!;
  const entry = txn.lookupNow(at.id, name);
  if (entry === notCached) return notCached;
  let target: Inode | undefined;
  if (entry !== undefined) {
    const found = txn.inodeNow(entry.id);
    if (found === notCached) return notCached;
    if (found === undefined) assert(false, `inode ${entry.id} is referenced but missing`);
    target = found;
  }
  return { parent: txn.hints.inodes.decode(at.id, at.bytes), name, target };
}

interface Attrs {
  readonly mode: number;
  readonly owner: string;
  readonly replication: number;
  readonly chunkSizeBytes: number;
  readonly compression: 'none' | 'lz4';
}

/** A new inode linked into `parent` under `name` (which must be free). `parent` is updated and stored. */
export async function link(
  txn: Txn,
  parent: Inode,
  name: PathComponent,
  type: InodeType,
  attrs: Attrs,
): Promise<Inode> {
  const id = txn.allocateNow('nextInodeId');
  return linkAs(txn, typeof id === 'number' ? id : await id, parent, name, type, attrs);
}

/** link() with the new inode's id allocated already. */
function linkAs(txn: Txn, id: number, parent: Inode, name: PathComponent, type: InodeType, attrs: Attrs): Inode {
  const node = putNewInode(txn, id, parent, name, type, attrs);
  parent.childCount += 1;
  touchDir(txn, parent);
  return node;
}

/** Stores a new inode `id` and its entry in `parent` (the caller updates `parent`). */
function putNewInode(
  txn: Txn,
  id: number,
  parent: Inode,
  name: PathComponent,
  type: InodeType,
  attrs: Attrs,
): Inode {
  const node: Inode = {
    id,
    type,
    parent: parent.id,
    name: name.name,
    mode: attrs.mode,
    owner: attrs.owner,
    mtimeMs: txn.nowMs,
    ctimeMs: txn.nowMs,
    generation: 0,
    replication: attrs.replication,
    chunkSizeBytes: attrs.chunkSizeBytes,
    childCount: 0,
    lengthBytes: 0,
    chunkCount: 0,
    unsealedChunks: 0,
    complete: type === 'file',
    ...(attrs.compression === 'lz4' ? { compression: 'lz4' as const } : {}),
  };
  txn.putInode(node);
  txn.putEntry(parent.id, name, id, type);
  return node;
}

/** Removes `name` from `parent` (the caller disposes of the inode). `parent` is updated and stored. */
export function unlinkEntry(txn: Txn, parent: Inode, name: PathComponent): void {
  txn.deleteEntry(parent.id, name);
  if (parent.childCount <= 0) assert(false, `directory ${parent.id} child count underflow`);
  parent.childCount -= 1;
  touchDir(txn, parent);
}

function touchDir(txn: Txn, dir: Inode): void {
  dir.mtimeMs = txn.nowMs;
  dir.ctimeMs = txn.nowMs;
  txn.putInode(dir);
}

/**
 * Queues a detached inode for reclamation, and drops its lease now so a writer of a deleted file cannot
 * go on (descendants of a deleted directory are caught by `isLinked`).
 */
export async function discard(txn: Txn, node: Inode): Promise<void> {
  await enqueue(txn, node.id);
  txn.deleteLease(node.id);
}

/** Whether `node` is still in the tree: every step up to the root is a live directory entry. */
export async function isLinked(txn: Txn, node: Inode): Promise<boolean> {
  let cur = node;
  while (cur.id !== ROOT_ID) {
    const entry = await txn.lookup(cur.parent, { chars: nameChars(cur.name) });
    if (entry === undefined || entry.id !== cur.id) return false;
    const up = await txn.inode(cur.parent);
    if (up === undefined) return false;
    cur = up;
  }
  return true;
}

export async function mkdir(txn: Txn, op: OpOf<'mkdir'>): Promise<InodeRef> {
  const path = parsePath(op.path, txn.limits);
  checkAttrs(txn, op);
  if (op.parents === true) return mkdirParents(txn, op, path);
  if (path.length === 0) {
    v.checkGeneration((await resolve(txn, path)).generation, op.ifGeneration);
    throw new FsError('EEXIST', 'the root exists');
  }
  const { parent, name, target } = await resolveParent(txn, path);
  v.checkGeneration(target?.generation, op.ifGeneration);
  if (target !== undefined) throw new FsError('EEXIST', `exists: ${op.path}`);
  const node = await link(txn, parent, name, 'dir', inherit(op, parent, v.DEFAULT_DIR_MODE));
  return { id: node.id, generation: node.generation };
}

/** mkdir -p: existing directories along the path are fine; a file anywhere is ENOTDIR (EEXIST at the end). */
async function mkdirParents(txn: Txn, op: OpOf<'mkdir'>, path: readonly PathComponent[]): Promise<InodeRef> {
  // First a read-only walk, to check the precondition against the final target before changing anything.
  let node = await txn.mustInode(ROOT_ID);
  let depth = 0;
  for (; depth < path.length; depth++) {
    if (node.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${node.name}`);
    const entry = await txn.lookup(node.id, path[depth]!);
    if (entry === undefined) break;
    node = await txn.mustInode(entry.id);
  }
  const exists = depth === path.length;
  v.checkGeneration(exists ? node.generation : undefined, op.ifGeneration);
  if (exists) {
    if (node.type !== 'dir') throw new FsError('EEXIST', `exists and is not a directory: ${op.path}`);
    return { id: node.id, generation: node.generation };
  }
  for (; depth < path.length; depth++)
    node = await link(txn, node, path[depth]!, 'dir', inherit(op, node, v.DEFAULT_DIR_MODE));
  return { id: node.id, generation: node.generation };
}

export async function create(txn: Txn, op: OpOf<'create'>): Promise<InodeRef | CreatedForWriting> {
  const path = parsePath(op.path, txn.limits);
  checkAttrs(txn, op);
  if (op.lease !== undefined) {
    v.checkLabel('lease holder', op.lease.holder, txn.limits);
    v.checkLeaseDuration(op.lease.durationMs, txn.limits);
  }
  if (op.firstChunkCandidates !== undefined) {
    if (op.lease === undefined) throw new FsError('EINVAL', 'a first chunk needs the writer lease');
    v.checkReplicaList(op.firstChunkCandidates, txn.limits);
  }
  if (path.length === 0) throw new FsError('EISDIR', 'the root is a directory');
  // resolveParent's own first step, here without a promise (a create is the most common command).
  const known = resolveParentNow(txn, path);
  const { parent, name, target } = known !== notCached ? known : await resolveParent(txn, path);
  v.checkGeneration(target?.generation, op.ifGeneration);
  let attrs = inherit(op, parent, v.DEFAULT_FILE_MODE);
  if (target !== undefined) {
    if (target.type === 'dir') throw new FsError('EISDIR', `is a directory: ${op.path}`);
    if (op.exclusive !== false) throw new FsError('EEXIST', `exists: ${op.path}`);
    const lease = await txn.lease(target.id);
    // A file under lease recovery may be replaced: its recovery then ends (the old inode is reclaimed).
    if (lease !== undefined && lease.expiresMs > txn.nowMs && lease.holder !== op.lease?.holder && lease.holder !== RECOVERY_HOLDER) {
      throw new FsError('ELEASE', `${op.path} is being written by ${lease.holder}`);
    }
    // Truncation replaces the inode (as HDFS overwrite does): the old one and its chunks are reclaimed.
    attrs = inherit(op, target, target.mode);
    unlinkEntry(txn, parent, name);
    await discard(txn, target);
  }
  const id = txn.allocateNow('nextInodeId');
  const node = linkAs(txn, typeof id === 'number' ? id : await id, parent, name, 'file', attrs);
  if (op.lease !== undefined) {
    node.complete = false;
    txn.putInode(node);
    const leaseExpiresMs = txn.nowMs + op.lease.durationMs;
    txn.putLease(node.id, { holder: op.lease.holder, expiresMs: leaseExpiresMs });
    const firstChunk = op.firstChunkCandidates === undefined ? undefined : await addFirstChunk(txn, node, op.firstChunkCandidates);
    const created = { id: node.id, generation: node.generation, chunkSizeBytes: node.chunkSizeBytes, compression: node.compression ?? 'none', leaseExpiresMs } as const;
    return firstChunk === undefined ? created : { ...created, firstChunk };
  }
  return { id: node.id, generation: node.generation };
}

/** createMany (see commands.ts): each name linked as a new empty file; any failure fails the whole op. */
export async function createMany(
  txn: Txn,
  op: OpOf<'createMany'>,
): Promise<{ created: number; firstId: number }> {
  const path = parsePath(op.dir, txn.limits);
  checkAttrs(txn, op);
  const names = op.names.map((n) => checkName(n, txn.limits));
  if (new Set(op.names).size !== op.names.length)
    throw new FsError('EINVAL', 'createMany: a name appears twice');
  const dir = await resolve(txn, path);
  if (dir.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${op.dir}`);
  v.checkGeneration(dir.generation, op.ifGeneration);
  const attrs = inherit(op, dir, v.DEFAULT_FILE_MODE);
  // The same records as one link() per name, with the counter and the directory written once.
  const meta = await txn.meta();
  const firstId = meta.nextInodeId;
  meta.nextInodeId += names.length;
  txn.putMeta(meta);
  for (const [i, name] of names.entries()) {
    if ((await txn.lookup(dir.id, name)) !== undefined)
      throw new FsError('EEXIST', `exists: ${joinPath([...path, name])}`);
    putNewInode(txn, firstId + i, dir, name, 'file', attrs);
  }
  dir.childCount += names.length;
  touchDir(txn, dir);
  return { created: names.length, firstId };
}

export async function setattr(txn: Txn, op: OpOf<'setattr'>): Promise<InodeRef> {
  const path = parsePath(op.path, txn.limits);
  v.checkMode(op.mode);
  v.checkReplication(op.replication, txn.limits);
  v.checkLabel('owner', op.owner, txn.limits, true);
  v.checkCompression(op.compression);
  const node = await resolve(txn, path);
  v.checkGeneration(node.generation, op.ifGeneration);
  if (op.mode !== undefined) node.mode = op.mode;
  if (op.mtimeMs !== undefined) node.mtimeMs = op.mtimeMs;
  if (op.owner !== undefined) node.owner = op.owner;
  if (op.replication !== undefined) node.replication = op.replication;
  if (op.compression === 'lz4') node.compression = 'lz4';
  else if (op.compression === 'none') delete node.compression;
  node.ctimeMs = txn.nowMs;
  txn.putInode(node);
  return { id: node.id, generation: node.generation };
}

/**
 * rename(2) semantics without hard links or symlinks: a file may replace a file, a directory may replace an
 * empty directory; renaming onto itself does nothing; a directory cannot move under itself (EINVAL); the root
 * can neither move nor be replaced (EINVAL). `ifGeneration` guards the destination (0: must not exist).
 * Errors in Linux's order: both parents resolve (ENOENT, ENOTDIR) before the source must exist (ENOENT); a
 * directory moved under itself (EINVAL) and the destination an ancestor of the source (ENOTEMPTY, whatever
 * the source is) come before the destination's type is compared with the source's.
 */
export async function rename(txn: Txn, op: OpOf<'rename'>): Promise<InodeRef> {
  const from = parsePath(op.from, txn.limits);
  const to = parsePath(op.to, txn.limits);
  if (from.length === 0 || to.length === 0) throw new FsError('EINVAL', 'cannot rename the root');
  const src = await resolveParent(txn, from);
  const dst = await resolveParent(txn, to);
  if (src.target === undefined) throw new FsError('ENOENT', `no such file or directory: ${op.from}`);
  v.checkGeneration(dst.target?.generation, op.ifGeneration);
  const node = src.target;
  if (samePath(from, to)) return { id: node.id, generation: node.generation };
  if (node.type === 'dir' && isStrictDescendant(to, from))
    throw new FsError('EINVAL', `cannot move ${op.from} under itself`);
  if (isStrictDescendant(from, to)) throw new FsError('ENOTEMPTY', `directory not empty: ${op.to} (it holds ${op.from})`);
  const replaced = dst.target;
  if (replaced !== undefined) {
    if (node.type === 'dir' && replaced.type !== 'dir')
      throw new FsError('ENOTDIR', `not a directory: ${op.to}`);
    if (node.type === 'file' && replaced.type === 'dir')
      throw new FsError('EISDIR', `is a directory: ${op.to}`);
    if (replaced.type === 'dir' && replaced.childCount > 0)
      throw new FsError('ENOTEMPTY', `directory not empty: ${op.to}`);
  }
  // One object per directory, so that a rename within one directory updates its record once.
  const srcParent = src.parent;
  const dstParent = dst.parent.id === srcParent.id ? srcParent : dst.parent;
  unlinkEntry(txn, srcParent, src.name);
  if (replaced === undefined) {
    dstParent.childCount += 1;
    touchDir(txn, dstParent);
  } else {
    touchDir(txn, dstParent);
    // Planted bug (simulator self-test): the replaced inode is left behind, unreachable.
    if (!txn.bugs.has('fsm-non-atomic-rename')) await dispose(txn, replaced);
  }
  txn.putEntry(dstParent.id, dst.name, node.id, node.type);
  node.parent = dstParent.id;
  node.name = dst.name.name;
  node.ctimeMs = txn.nowMs;
  txn.putInode(node);
  return { id: node.id, generation: node.generation };
}

export async function unlink(txn: Txn, op: OpOf<'unlink'>): Promise<Record<string, never>> {
  const path = parsePath(op.path, txn.limits);
  if (path.length === 0) throw new FsError('EISDIR', 'the root is a directory');
  const { parent, name, target } = await resolveParent(txn, path);
  if (target === undefined) throw new FsError('ENOENT', `no such file or directory: ${op.path}`);
  v.checkGeneration(target.generation, op.ifGeneration);
  if (target.type === 'dir') throw new FsError('EISDIR', `is a directory: ${op.path}`);
  unlinkEntry(txn, parent, name);
  await dispose(txn, target);
  return {};
}

export async function rmdir(txn: Txn, op: OpOf<'rmdir'>): Promise<Record<string, never>> {
  const path = parsePath(op.path, txn.limits);
  if (path.length === 0) throw new FsError('EINVAL', 'cannot remove the root');
  const { parent, name, target } = await resolveParent(txn, path);
  if (target === undefined) throw new FsError('ENOENT', `no such file or directory: ${op.path}`);
  v.checkGeneration(target.generation, op.ifGeneration);
  if (target.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${op.path}`);
  if (target.childCount > 0) throw new FsError('ENOTEMPTY', `directory not empty: ${op.path}`);
  unlinkEntry(txn, parent, name);
  await dispose(txn, target);
  return {};
}

/** Removes a file or a whole subtree at once: detached now, reclaimed in bounded steps afterwards. */
export async function deleteRecursive(txn: Txn, op: OpOf<'deleteRecursive'>): Promise<Record<string, never>> {
  const path = parsePath(op.path, txn.limits);
  if (path.length === 0) throw new FsError('EINVAL', 'cannot remove the root');
  const { parent, name, target } = await resolveParent(txn, path);
  if (target === undefined) throw new FsError('ENOENT', `no such file or directory: ${op.path}`);
  v.checkGeneration(target.generation, op.ifGeneration);
  unlinkEntry(txn, parent, name);
  await dispose(txn, target);
  return {};
}

/** A detached inode: an empty directory goes at once, anything else through the reclamation queue. */
async function dispose(txn: Txn, node: Inode): Promise<void> {
  if (node.type === 'dir' && node.childCount === 0) txn.deleteInode(node.id);
  else await discard(txn, node);
}

function checkAttrs(txn: Txn, op: OpOf<'mkdir'> | OpOf<'create'> | OpOf<'createMany'>): void {
  v.checkMode(op.mode);
  v.checkReplication(op.replication, txn.limits);
  v.checkChunkSize(op.chunkSizeBytes, txn.limits);
  v.checkLabel('owner', op.owner, txn.limits, true);
  v.checkCompression(op.compression);
}

/** Attributes of a new inode: the command's, else `from`'s (the parent directory, or the replaced file). */
function inherit(
  op: OpOf<'mkdir'> | OpOf<'create'> | OpOf<'createMany'>,
  from: Inode,
  defaultMode: number,
): Attrs {
  return {
    mode: op.mode ?? defaultMode,
    owner: op.owner ?? (from.type === 'file' ? from.owner : ''),
    replication: op.replication ?? from.replication,
    chunkSizeBytes: op.chunkSizeBytes ?? from.chunkSizeBytes,
    compression: op.compression === 'lz4' || op.compression === 'none' ? op.compression : (from.compression ?? 'none'),
  };
}
