/**
 * Reads of the applied state: stat, readdir, chunk locations, the chunkserver registry. They never change
 * anything; the state machine runs them between batches, so each sees one consistent applied state.
 * Failures are results (ENOENT, ENOTDIR, EINVAL, ...), as for commands.
 */
import { assert } from '../raft/errors.ts';
import { FsError } from './errors.ts';
import * as keys from './keys.ts';
import { Table } from './keys.ts';
import type { KvReader } from './kv.ts';
import type { FsmLimits } from './limits.ts';
import { Overlay, successor } from './overlay.ts';
import { checkName, fromUtf8, parsePath } from './paths.ts';
import type { Chunkserver, ChunkserverState, Lease, Placement } from './records.ts';
import * as rec from './records.ts';
import { isLinked, resolve } from './namespace.ts';
import { noFsmBugs } from './bugs.ts';
import { Txn } from './txn.ts';
import type { ApplyHints } from './txn.ts';

export interface StatInfo {
  readonly id: number;
  readonly type: 'dir' | 'file';
  readonly mode: number;
  readonly owner: string;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly generation: number;
  readonly replication: number;
  readonly chunkSizeBytes: number;
  /** Files: how its chunks are stored; directories: the default for new entries. */
  readonly compression: 'none' | 'lz4';
  /** Directories: number of entries. */
  readonly childCount: number;
  /** Files: sum of the sealed chunks' lengths. */
  readonly lengthBytes: number;
  readonly chunkCount: number;
  readonly complete: boolean;
  /** The lease record, if any (live or expired: compare `expiresMs` with the current time). */
  readonly lease: Lease | null;
}

export interface DirEntry {
  readonly name: string;
  readonly id: number;
  readonly type: 'dir' | 'file';
}

export interface ReaddirPage {
  readonly entries: readonly DirEntry[];
  /** Pass as `cursor` for the next page; null when this page ends the directory. */
  readonly nextCursor: string | null;
}

export interface ChunkInfo {
  readonly handle: number;
  readonly fileId: number;
  readonly index: number;
  readonly version: number;
  readonly replicas: readonly number[];
  readonly sealed: boolean;
  readonly lengthBytes: number;
  readonly checksum: number;
}

export interface ChunkPage {
  readonly fileId: number;
  readonly lengthBytes: number;
  readonly chunkCount: number;
  readonly complete: boolean;
  readonly chunks: readonly ChunkInfo[];
  /** Chunk index to continue from; null when this page ends the file. */
  readonly nextIndex: number | null;
}

export interface ChunkserverInfo {
  readonly id: number;
  readonly address: string;
  readonly rack: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly state: ChunkserverState;
  readonly generation: number;
  readonly registeredMs: number;
  readonly updatedMs: number;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Pass as `after` for the next page; null when this page is the last. */
  readonly nextAfter: number | null;
}

export interface PageOptions {
  readonly limit?: number | undefined;
}

/** Read-only access through the same typed accessors the commands use. */
export function readTxn(kv: KvReader, limits: FsmLimits, hints?: ApplyHints): Txn {
  return new Txn(new Overlay(kv), 0, 0, limits, noFsmBugs, hints);
}

export async function stat(txn: Txn, path: string): Promise<StatInfo> {
  const node = await resolve(txn, parsePath(path, txn.limits));
  const lease = node.type === 'file' ? await txn.lease(node.id) : undefined;
  return {
    id: node.id,
    type: node.type,
    mode: node.mode,
    owner: node.owner,
    mtimeMs: node.mtimeMs,
    ctimeMs: node.ctimeMs,
    generation: node.generation,
    replication: node.replication,
    chunkSizeBytes: node.chunkSizeBytes,
    compression: node.compression ?? 'none',
    childCount: node.childCount,
    lengthBytes: node.lengthBytes,
    chunkCount: node.chunkCount,
    complete: node.complete,
    lease: lease ?? null,
  };
}

/** One page of a directory in byte-wise name order, after `cursor` (a name; exclusive). Stable under changes. */
export async function readdir(
  txn: Txn,
  path: string,
  options: PageOptions & { readonly cursor?: string | undefined },
): Promise<ReaddirPage> {
  const components = parsePath(path, txn.limits);
  const limit = pageLimit(options.limit, txn.limits.readdirPageEntriesMax);
  const after = options.cursor === undefined ? undefined : checkName(options.cursor, txn.limits);
  const dir = await resolve(txn, components);
  if (dir.type !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
  const range = keys.prefixRange(Table.dirent, dir.id);
  const gte = after === undefined ? range.gte : successor(keys.direntKey(dir.id, after.bytes));
  const found = await txn.view.scan({ gte, lt: range.lt, limit: limit + 1 });
  const entries = found.slice(0, limit).map(({ key, value }) => {
    const { id, type } = keys.readDirent(value);
    return { name: fromUtf8(keys.direntName(key)), id, type };
  });
  return { entries, nextCursor: found.length > limit ? entries[entries.length - 1]!.name : null };
}

/** Chunk locations of the file at `path`, from chunk index `fromIndex`. */
export async function chunkLocations(
  txn: Txn,
  path: string,
  options: PageOptions & { readonly fromIndex?: number | undefined },
): Promise<ChunkPage> {
  const components = parsePath(path, txn.limits);
  const limit = pageLimit(options.limit, txn.limits.chunkPageEntriesMax);
  const fromIndex = options.fromIndex ?? 0;
  if (!Number.isSafeInteger(fromIndex) || fromIndex < 0)
    throw new FsError('EINVAL', 'fromIndex is not a non-negative integer');
  const file = await resolve(txn, components);
  if (file.type !== 'file') throw new FsError('EISDIR', `is a directory: ${path}`);
  const found = await txn.view.scan({
    gte: keys.chunkListKey(file.id, fromIndex),
    lt: keys.prefixRange(Table.chunkList, file.id).lt,
    limit: limit + 1,
  });
  const chunks: ChunkInfo[] = [];
  for (const { value } of found.slice(0, limit)) {
    const handle = keys.readU64(value, 0);
    const p = await txn.placement(handle);
    assert(p !== undefined, `chunk ${handle} of live file ${file.id} has no placement record`);
    chunks.push(chunkInfo(p));
  }
  const last = chunks[chunks.length - 1];
  return {
    fileId: file.id,
    lengthBytes: file.lengthBytes,
    chunkCount: file.chunkCount,
    complete: file.complete,
    chunks,
    nextIndex: found.length > limit && last !== undefined ? last.index + 1 : null,
  };
}

export async function chunk(txn: Txn, handle: number): Promise<ChunkInfo> {
  return chunkInfo(await txn.mustPlacement(handle));
}

/** Every placement record in handle order (for the leader's re-replication scans). */
export async function scanChunks(
  txn: Txn,
  options: PageOptions & { readonly after?: number | undefined },
): Promise<Page<ChunkInfo>> {
  const limit = pageLimit(options.limit, txn.limits.chunkPageEntriesMax);
  const found = await scanAfter(txn, Table.placement, options.after, limit);
  return pageOf(found, limit, ({ key, value }) => chunkInfo(rec.decodePlacement(keys.readU64(key, 1), value)), (c) => c.handle);
}

/** A page of `found` (at most limit + 1 pairs from scanAfter): its first `limit` decoded, and where the next one starts. */
function pageOf<T>(found: readonly { key: Uint8Array; value: Uint8Array }[], limit: number, decode: (pair: { key: Uint8Array; value: Uint8Array }) => T, idOf: (item: T) => number): Page<T> {
  const items = found.slice(0, limit).map(decode);
  return { items, nextAfter: found.length > limit ? idOf(items[items.length - 1]!) : null };
}

export async function chunkserver(txn: Txn, id: number): Promise<ChunkserverInfo> {
  const c = await txn.chunkserver(id);
  if (c === undefined) throw new FsError('ENOENT', `no chunkserver ${id}`);
  return chunkserverInfo(c);
}

export async function listChunkservers(
  txn: Txn,
  options: PageOptions & { readonly after?: number | undefined },
): Promise<Page<ChunkserverInfo>> {
  const limit = pageLimit(options.limit, txn.limits.chunkserverPageEntriesMax);
  const found = await scanAfter(txn, Table.chunkserver, options.after, limit);
  const items = found
    .slice(0, limit)
    .map(({ key, value }) => chunkserverInfo(rec.decodeChunkserver(keys.readU64(key, 1), value)));
  return { items, nextAfter: found.length > limit ? items[items.length - 1]!.id : null };
}

async function scanAfter(txn: Txn, table: Table, after: number | undefined, limit: number) {
  if (after !== undefined && (!Number.isSafeInteger(after) || after < 0))
    throw new FsError('EINVAL', 'after is not a non-negative integer');
  const range = keys.prefixRange(table);
  const gte = after === undefined ? range.gte : successor(keys.prefixRange(table, after).gte);
  return txn.view.scan({ gte, lt: range.lt, limit: limit + 1 });
}

/** A requested page size: 1..max (larger requests are clamped to max; none means max). */
function pageLimit(limit: number | undefined, max: number): number {
  if (limit === undefined) return max;
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new FsError('EINVAL', `page limit ${limit} is not a positive integer`);
  return Math.min(limit, max);
}

function chunkInfo(p: Placement): ChunkInfo {
  return {
    handle: p.handle,
    fileId: p.fileId,
    index: p.index,
    version: p.version,
    replicas: p.replicas,
    sealed: p.sealed,
    lengthBytes: p.lengthBytes,
    checksum: p.checksum,
  };
}

function chunkserverInfo(c: Chunkserver): ChunkserverInfo {
  return { ...c };
}

/** A placement record with what the leader's chunk manager needs of its file. */
export interface ChunkHealthInfo extends ChunkInfo {
  /** The file's target replication factor. */
  readonly replication: number;
  /** Whether the file is still in the tree (a chunk of a deleted file is garbage). */
  readonly fileLive: boolean;
}

/** Every placement record in handle order with its file's replication factor and liveness (the chunk manager's scans). */
export async function scanChunkHealth(
  txn: Txn,
  options: PageOptions & { readonly after?: number | undefined },
): Promise<Page<ChunkHealthInfo>> {
  const limit = pageLimit(options.limit, txn.limits.chunkPageEntriesMax);
  const found = await scanAfter(txn, Table.placement, options.after, limit);
  const files: FileHealthMemo = new Map();
  const items: ChunkHealthInfo[] = [];
  for (const { key, value } of found.slice(0, limit)) items.push(await healthOf(txn, rec.decodePlacement(keys.readU64(key, 1), value), files));
  return { items, nextAfter: found.length > limit ? items[items.length - 1]!.handle : null };
}

/** Files' replication and liveness, read once per file (a scan meets a file's chunks together). */
type FileHealthMemo = Map<number, { replication: number; fileLive: boolean }>;

async function healthOf(txn: Txn, p: rec.Placement, files: FileHealthMemo): Promise<ChunkHealthInfo> {
  let file = files.get(p.fileId);
  if (file === undefined) {
    const inode = await txn.inode(p.fileId);
    file = {
      replication: inode?.replication ?? 0,
      fileLive: inode !== undefined && inode.type === 'file' && (await isLinked(txn, inode)),
    };
    files.set(p.fileId, file);
  }
  return { ...chunkInfo(p), ...file };
}

/**
 * The given chunks as scanChunkHealth reports them (undefined: no placement record), read now: the chunk
 * manager's view follows the store's changes through it (placement/view.ts).
 */
export async function chunksHealth(txn: Txn, handles: Iterable<number>): Promise<Map<number, ChunkHealthInfo | undefined>> {
  const files: FileHealthMemo = new Map();
  const out = new Map<number, ChunkHealthInfo | undefined>();
  for (const handle of handles) {
    const p = await txn.placement(handle);
    out.set(handle, p === undefined ? undefined : await healthOf(txn, p, files));
  }
  return out;
}

/** One file's lease record, live or expired (the chunk manager's lease recovery). */
export interface LeaseInfo {
  readonly fileId: number;
  readonly holder: string;
  readonly expiresMs: number;
}

/** Every lease record in file-id order, a page at a time. */
export async function scanLeases(
  txn: Txn,
  options: PageOptions & { readonly after?: number | undefined },
): Promise<Page<LeaseInfo>> {
  const limit = pageLimit(options.limit, txn.limits.chunkPageEntriesMax);
  const found = await scanAfter(txn, Table.lease, options.after, limit);
  return pageOf(found, limit, ({ key, value }) => ({ fileId: keys.readU64(key, 1), ...rec.decodeLease(value) }), (l) => l.fileId);
}
