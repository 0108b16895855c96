/**
 * File commands: ls, mkdir, put, get, cat, rm, mv, stat, du, chmod, touch, setrep.
 *
 * put and get stream: put reads the local file in `localReadBytes` pieces and hands each to the FileWriter
 * (which copies it into its staging buffer, so memory stays at the writer's bound); get reads `readPieceBytes`
 * ranges, at most `readsInflightMax` at a time, and waits for the local stream to drain before asking for
 * more. Memory is bounded by those constants whatever the file size.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat as localStat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, posix } from 'node:path';
import { finished } from 'node:stream/promises';
import type { StatInfo } from '../../metadata/client.ts';
import { createForWriter } from '../../client/connect.ts';
import { listAllChunkservers } from './cluster.ts';
import { MetadataError } from '../../metadata/client.ts';
import { FileWriter } from '../../client/file-writer.ts';
import type { Context, Connection } from './context.ts';
import { CliError, exitCodes, toCliError } from './errors.ts';
import type { ExitCode } from './errors.ts';
import { humanBytes, humanSeconds, isoTime, ProgressBar, table } from './format.ts';

const MiB = 1024 * 1024;
/** Bytes read from the local file per piece handed to the writer. */
export const localReadBytes = 1 * MiB;
/** Bytes per range read from rfs. */
export const readPieceBytes = 8 * MiB;
/** Range reads in flight at once (get, cat): memory is at most this many pieces. */
export const readsInflightMax = 2;

/** An rfs path, absolute and normalised ('a/b/' -> '/a/b'). */
export function rfsPath(p: string): string {
  const n = posix.normalize(`/${p}`);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** Stat, or null when the path does not exist. */
async function statOrNull(conn: Connection, path: string): Promise<StatInfo | null> {
  try {
    return await conn.metadata.stat(path);
  } catch (error) {
    if (error instanceof MetadataError && error.code === 'ENOENT') return null;
    throw error;
  }
}

function modeString(type: 'dir' | 'file', mode: number): string {
  const bits = 'rwxrwxrwx';
  let s = type === 'dir' ? 'd' : '-';
  for (let i = 0; i < 9; i++) s += (mode & (1 << (8 - i))) !== 0 ? bits[i] : '-';
  return s;
}

function statJson(path: string, s: StatInfo): Record<string, unknown> {
  return { path, ...s, mode: s.mode, modeOctal: s.mode.toString(8).padStart(4, '0') };
}

// ---------------------------------------------------------------- ls

interface Listed {
  readonly path: string;
  readonly name: string;
  readonly type: 'dir' | 'file';
  readonly id: number;
  readonly stat?: StatInfo;
}

export async function ls(ctx: Context, args: { paths: string[]; long: boolean; recursive: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const roots = args.paths.length === 0 ? ['/'] : args.paths.map(rfsPath);
  const groups: { dir: string; entries: Listed[] }[] = [];
  for (const root of roots) {
    const info = await conn.metadata.stat(root).catch((e: unknown) => {
      throw toCliError(e, root);
    });
    if (info.type === 'file') {
      groups.push({ dir: root, entries: [{ path: root, name: basename(root), type: 'file', id: info.id, stat: info }] });
      continue;
    }
    const pending = [root];
    while (pending.length > 0) {
      const dir = pending.shift()!;
      const entries: Listed[] = [];
      for (const e of await conn.metadata.readdir(dir)) {
        const path = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
        const listed: Listed = { path, name: e.name, type: e.type, id: e.id };
        entries.push(args.long ? { ...listed, stat: await conn.metadata.stat(path) } : listed);
        if (args.recursive && e.type === 'dir') pending.push(path);
      }
      groups.push({ dir, entries });
    }
  }
  if (ctx.options.json) {
    ctx.json({
      entries: groups.flatMap((g) =>
        g.entries.map((e) => ({ path: e.path, name: e.name, type: e.type, id: e.id, ...(e.stat !== undefined ? { stat: statJson(e.path, e.stat) } : {}) })),
      ),
    });
    return exitCodes.ok;
  }
  const headers = groups.length > 1;
  groups.forEach((g, i) => {
    if (headers) ctx.out(`${i > 0 ? '\n' : ''}${g.dir}:`);
    if (!args.long) {
      for (const e of g.entries) ctx.out(e.type === 'dir' ? `${e.name}/` : e.name);
      return;
    }
    if (g.entries.length === 0) return;
    ctx.out(
      table(
        ['MODE', 'REPL', 'SIZE', 'CHUNKS', 'MODIFIED', 'NAME'],
        g.entries.map((e) => {
          const s = e.stat!;
          return [
            modeString(e.type, s.mode),
            e.type === 'file' ? s.replication : '-',
            e.type === 'file' ? s.lengthBytes : '-',
            e.type === 'file' ? s.chunkCount : '-',
            isoTime(s.mtimeMs),
            e.type === 'dir' ? `${e.name}/` : e.type === 'file' && !s.complete ? `${e.name} (open)` : e.name,
          ];
        }),
      ),
    );
  });
  return exitCodes.ok;
}

// ---------------------------------------------------------------- mkdir, mv, stat

export async function mkdir(ctx: Context, args: { paths: string[]; parents: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const made: { path: string; id: number }[] = [];
  for (const raw of args.paths) {
    const path = rfsPath(raw);
    try {
      const ref = await conn.metadata.mkdir(path, { parents: args.parents });
      made.push({ path, id: ref.id });
    } catch (error) {
      // mkdir -p of an existing directory is not an error (as with POSIX mkdir -p).
      if (args.parents && error instanceof MetadataError && error.code === 'EEXIST' && (await statOrNull(conn, path))?.type === 'dir') continue;
      throw toCliError(error, path);
    }
  }
  if (ctx.options.json) ctx.json({ created: made });
  return exitCodes.ok;
}

export async function mv(ctx: Context, args: { from: string; to: string }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const from = rfsPath(args.from);
  let to = rfsPath(args.to);
  // Into an existing directory, as POSIX mv does.
  const target = await statOrNull(conn, to);
  if (target?.type === 'dir') to = posix.join(to, basename(from));
  try {
    await conn.metadata.rename(from, to);
  } catch (error) {
    throw toCliError(error, `${from} -> ${to}`);
  }
  if (ctx.options.json) ctx.json({ from, to });
  return exitCodes.ok;
}

export async function stat(ctx: Context, args: { paths: string[] }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const out: Record<string, unknown>[] = [];
  for (const raw of args.paths) {
    const path = rfsPath(raw);
    const s = await conn.metadata.stat(path).catch((e: unknown) => {
      throw toCliError(e, path);
    });
    out.push(statJson(path, s));
    if (ctx.options.json) continue;
    const lines: [string, string][] = [
      ['path', path],
      ['type', s.type === 'dir' ? 'directory' : 'file'],
      ['id', String(s.id)],
      ['mode', `${s.mode.toString(8).padStart(4, '0')} (${modeString(s.type, s.mode)})`],
      ['owner', s.owner === '' ? '-' : s.owner],
      ['modified', isoTime(s.mtimeMs)],
      ['changed', isoTime(s.ctimeMs)],
      ['generation', String(s.generation)],
    ];
    if (s.type === 'dir') lines.push(['entries', String(s.childCount)]);
    lines.push(['replication', String(s.replication)], ['chunk size', `${s.chunkSizeBytes} (${humanBytes(s.chunkSizeBytes)})`]);
    if (s.type === 'file') lines.push(['size', `${s.lengthBytes} (${humanBytes(s.lengthBytes)})`], ['chunks', String(s.chunkCount)], ['complete', s.complete ? 'yes' : 'no (open for writing, or abandoned)']);
    if (out.length > 1) ctx.out('');
    ctx.out(lines.map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`).join('\n'));
  }
  if (ctx.options.json) ctx.json(args.paths.length === 1 ? out[0] : out);
  return exitCodes.ok;
}

// ---------------------------------------------------------------- rm

export async function rm(ctx: Context, args: { paths: string[]; recursive: boolean; force: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const removed: string[] = [];
  const failed: CliError[] = [];
  for (const raw of args.paths) {
    const path = rfsPath(raw);
    try {
      const s = await statOrNull(conn, path);
      if (s === null) {
        if (args.force) continue;
        throw new MetadataError('ENOENT', path);
      }
      if (s.type === 'dir') {
        if (!args.recursive) throw new CliError(exitCodes.user, `${path}: is a directory (EISDIR); use rm -r`, 'EISDIR');
        if (path === '/') throw new CliError(exitCodes.user, '/: refusing to remove the root directory', 'EINVAL');
        await conn.metadata.mutate('DeleteRecursive', { path });
      } else {
        await conn.metadata.unlink(path);
      }
      removed.push(path);
    } catch (error) {
      if (args.force && error instanceof MetadataError && error.code === 'ENOENT') continue;
      const e = toCliError(error, path);
      if (e.exitCode === exitCodes.unreachable || e.exitCode === exitCodes.internal) throw e;
      failed.push(e);
    }
  }
  if (ctx.options.json) ctx.json({ removed, failed: failed.map((e) => ({ message: e.message, code: e.code ?? null })) });
  for (const e of failed) ctx.warn(e.message);
  if (failed.length === 0) return exitCodes.ok;
  return removed.length > 0 ? exitCodes.partial : failed[0]!.exitCode;
}

// ---------------------------------------------------------------- du

interface Usage {
  path: string;
  bytes: number;
  /** Bytes times each file's replication factor: what the chunkservers hold. */
  storedBytes: number;
  files: number;
  dirs: number;
}

export async function du(ctx: Context, args: { paths: string[]; summarize: boolean; human: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const roots = args.paths.length === 0 ? ['/'] : args.paths.map(rfsPath);
  const rows: Usage[] = [];
  // Post-order walk: a directory's total is printed after its subdirectories', as du does.
  const walk = async (path: string, info: StatInfo, depth: number): Promise<Usage> => {
    if (info.type === 'file') return { path, bytes: info.lengthBytes, storedBytes: info.lengthBytes * info.replication, files: 1, dirs: 0 };
    const total: Usage = { path, bytes: 0, storedBytes: 0, files: 0, dirs: 1 };
    for (const e of await conn.metadata.readdir(path)) {
      const child = path === '/' ? `/${e.name}` : `${path}/${e.name}`;
      const u = await walk(child, await conn.metadata.stat(child), depth + 1);
      total.bytes += u.bytes;
      total.storedBytes += u.storedBytes;
      total.files += u.files;
      total.dirs += u.dirs;
    }
    if (!args.summarize || depth === 0) rows.push(total);
    return total;
  };
  for (const root of roots) {
    const info = await conn.metadata.stat(root).catch((e: unknown) => {
      throw toCliError(e, root);
    });
    const u = await walk(root, info, 0);
    if (info.type === 'file') rows.push(u);
  }
  if (ctx.options.json) {
    ctx.json({ entries: rows });
    return exitCodes.ok;
  }
  const size = (n: number): string => (args.human ? humanBytes(n) : String(n));
  ctx.out(rows.map((r) => `${size(r.bytes).padEnd(args.human ? 10 : 12)}${r.path}`).join('\n'));
  return exitCodes.ok;
}

// ---------------------------------------------------------------- chmod, touch, setrep

/** How often setrep -w looks at the chunks' copies, and how often it says what it still waits for. */
export const setrepPollMs = 500;
export const setrepProgressMs = 10_000;

/** `root`, and with `recursive` everything below it (directories before their contents). */
async function* treeOf(conn: Connection, root: string, info: StatInfo, recursive: boolean): AsyncGenerator<{ path: string; type: 'dir' | 'file' }> {
  yield { path: root, type: info.type };
  if (!recursive || info.type !== 'dir') return;
  const pending = [root];
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for (const e of await conn.metadata.readdir(dir)) {
      const path = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      yield { path, type: e.type };
      if (e.type === 'dir') pending.push(path);
    }
  }
}

/** Applies `change` to each path (and with `recursive` to everything below); stops at the first failure. */
async function changeEach(conn: Connection, rawPaths: readonly string[], recursive: boolean, change: (path: string) => Promise<unknown>): Promise<{ path: string; type: 'dir' | 'file' }[]> {
  const changed: { path: string; type: 'dir' | 'file' }[] = [];
  for (const raw of rawPaths) {
    const root = rfsPath(raw);
    let at = root;
    try {
      const info = await conn.metadata.stat(root);
      for await (const p of treeOf(conn, root, info, recursive)) {
        at = p.path;
        await change(p.path);
        changed.push(p);
      }
    } catch (error) {
      throw toCliError(error, at);
    }
  }
  return changed;
}

export async function chmod(ctx: Context, args: { mode: string; paths: string[]; recursive: boolean }): Promise<ExitCode> {
  if (!/^[0-7]{1,4}$/.test(args.mode)) throw new CliError(exitCodes.usage, `mode ${JSON.stringify(args.mode)}: give octal digits (e.g. 644, 0755)`, 'EINVAL');
  const mode = Number.parseInt(args.mode, 8);
  const conn = await ctx.connect();
  const changed = await changeEach(conn, args.paths, args.recursive, (path) => conn.metadata.setattr(path, { mode }));
  if (ctx.options.json) ctx.json({ mode: mode.toString(8).padStart(4, '0'), changed: changed.map((c) => c.path) });
  return exitCodes.ok;
}

export async function touch(ctx: Context, args: { paths: string[]; noCreate: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const created: string[] = [];
  const touched: string[] = [];
  for (const raw of args.paths) {
    const path = rfsPath(raw);
    const outcome = await touchOne(conn, path, args.noCreate).catch((error: unknown) => {
      throw toCliError(error, path);
    });
    if (outcome === 'created') created.push(path);
    else if (outcome === 'touched') touched.push(path);
  }
  if (ctx.options.json) ctx.json({ created, touched });
  return exitCodes.ok;
}

function isMetadataCode(error: unknown, code: string): boolean {
  return error instanceof MetadataError && error.code === code;
}

/** Sets `path`'s mtime to now, or creates it empty; with `noCreate` a missing path is skipped (touch -c). */
async function touchOne(conn: Connection, path: string, noCreate: boolean): Promise<'touched' | 'created' | 'skipped'> {
  const setNow = (): Promise<unknown> => conn.metadata.setattr(path, { mtimeMs: Date.now() });
  try {
    await setNow();
    return 'touched';
  } catch (error) {
    if (!isMetadataCode(error, 'ENOENT')) throw error;
  }
  if (noCreate) return 'skipped';
  try {
    await conn.metadata.create(path, { exclusive: true });
    return 'created';
  } catch (error) {
    if (!isMetadataCode(error, 'EEXIST')) throw error;
  }
  await setNow(); // created by someone else meanwhile: touch it
  return 'touched';
}

/**
 * Sealed chunks of `path` whose listed copies on live chunkservers are not `replication` yet (every page of
 * its chunk list), and those with no live copy at all (which cannot come back by copying).
 */
async function chunksNotAt(conn: Connection, path: string, replication: number, live: ReadonlySet<number>): Promise<{ short: number; lost: number }> {
  let short = 0;
  let lost = 0;
  let fromIndex: number | null = 0;
  while (fromIndex !== null) {
    const page = await conn.metadata.chunkLocations(path, { fromIndex });
    for (const c of page.chunks) {
      if (!c.sealed) continue;
      const copies = c.replicas.filter((r) => live.has(r.id)).length;
      if (copies !== replication || c.replicas.length !== copies) short++;
      if (copies === 0) lost++;
    }
    fromIndex = page.nextIndex;
  }
  return { short, lost };
}

export async function setrep(ctx: Context, args: { replication: number; paths: string[]; recursive: boolean; wait: boolean }): Promise<ExitCode> {
  const n = args.replication;
  if (!Number.isSafeInteger(n) || n < 1) throw new CliError(exitCodes.usage, `replication ${String(n)}: give a whole number of copies, at least 1`, 'EINVAL');
  const conn = await ctx.connect();
  if (args.wait) {
    const live = (await listAllChunkservers(ctx)).filter((c) => c.state === 'live').length;
    if (n > live)
      throw new CliError(exitCodes.user, `only ${live} live chunkserver(s): ${n} copies of a chunk cannot be placed, so -w would wait for ever (nothing changed; run without -w, or add chunkservers)`, 'EINVAL');
  }
  const changed = await changeEach(conn, args.paths, args.recursive, (path) => conn.metadata.setattr(path, { replication: n }));
  const files = changed.filter((c) => c.type === 'file').map((c) => c.path);
  const started = Date.now();
  if (args.wait) {
    let waiting = files;
    let lastSaid = started;
    while (waiting.length > 0) {
      const left: string[] = [];
      let chunks = 0;
      const live = new Set((await listAllChunkservers(ctx)).filter((c) => c.state === 'live').map((c) => c.id));
      for (const path of waiting) {
        const { short, lost } = await chunksNotAt(conn, path, n, live).catch((error: unknown) => {
          if (error instanceof MetadataError && error.code === 'ENOENT') return { short: 0, lost: 0 }; // deleted meanwhile: nothing to wait for
          throw toCliError(error, path);
        });
        if (lost > 0)
          throw new CliError(exitCodes.user, `${path}: ${lost} chunk(s) have no copy on a live chunkserver, so ${n} copies cannot be made (rfsctl fsck ${path} tells more); the factor is set`, 'EIO');
        if (short > 0) left.push(path);
        chunks += short;
      }
      waiting = left;
      if (waiting.length === 0) break;
      if (Date.now() - lastSaid >= setrepProgressMs) {
        ctx.warn(`waiting: ${chunks} chunk(s) of ${waiting.length} file(s) not yet at ${n} copies`);
        lastSaid = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, setrepPollMs));
    }
  }
  if (ctx.options.json) ctx.json({ replication: n, changed: changed.map((c) => c.path), ...(args.wait ? { waitedMs: Date.now() - started } : {}) });
  else if (args.wait) ctx.out(`${files.length} file(s) at ${n} copies after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return exitCodes.ok;
}

// ---------------------------------------------------------------- put

let holderCount = 0;

export async function put(
  ctx: Context,
  args: { local: string; target: string; replication: number | undefined; chunkMib: number | undefined; noClobber: boolean },
): Promise<ExitCode> {
  const fromStdin = args.local === '-';
  let sizeBytes: number | undefined;
  if (!fromStdin) {
    const local = await localStat(args.local).catch((e: unknown) => {
      throw toCliError(e, args.local);
    });
    if (!local.isFile()) throw new CliError(exitCodes.user, `${args.local}: not a regular file`, 'EINVAL');
    sizeBytes = local.size;
  }
  const conn = await ctx.connect();
  let path = rfsPath(args.target);
  if (args.target.endsWith('/') || (await statOrNull(conn, path))?.type === 'dir') {
    if (fromStdin) throw new CliError(exitCodes.user, `${path}: is a directory (EISDIR); name the file to write from stdin`, 'EISDIR');
    path = posix.join(path, basename(args.local));
  }
  const chunkSizeBytes = args.chunkMib === undefined ? undefined : Math.round(args.chunkMib * MiB);
  const replication = args.replication;
  const metadata = {
    ...conn.ops,
    // The file's own replication factor and chunk size, when given (else the parent directory's).
    createFile: (p: string, o: { exclusive: boolean; lease: { holder: string; durationMs: number } }) =>
      createForWriter(conn.metadata, p, { exclusive: o.exclusive, ...(replication !== undefined ? { replication } : {}), ...(chunkSizeBytes !== undefined ? { chunkSizeBytes } : {}) }, o.lease),
  };
  const startMs = Date.now();
  const bar = new ProgressBar(ctx.io.stderr, `put ${path}`, sizeBytes, ctx.options.progress ?? ctx.io.stderr.isTTY === true);
  let writer: FileWriter;
  try {
    writer = await FileWriter.open(path, { metadata, data: conn.data, holder: `rfsctl:${hostname()}:${process.pid}:${++holderCount}`, exclusive: args.noClobber });
  } catch (error) {
    throw toCliError(error, path);
  }
  let written = 0;
  const source = fromStdin ? ctx.io.stdin : createReadStream(args.local, { highWaterMark: localReadBytes });
  // Ctrl-C: abort the writer (its lease is released at once, not left to expire) and stop reading.
  let interrupted = false;
  const onInterrupt = (): void => {
    interrupted = true;
    void writer.abort();
    if ('destroy' in source && typeof source.destroy === 'function') (source as NodeJS.ReadableStream & { destroy(): void }).destroy();
  };
  process.once('SIGINT', onInterrupt);
  try {
    // One piece at a time: the next is read only after the writer took this one (backpressure to the disk).
    for await (const piece of source) {
      const bytes = typeof piece === 'string' ? Buffer.from(piece) : (piece as Buffer);
      await writer.write(bytes);
      written += bytes.length;
      bar.advance(bytes.length);
    }
    await writer.close();
  } catch (error) {
    bar.abandon();
    await writer.abort().catch(() => undefined);
    if (interrupted) throw new CliError(exitCodes.interrupted, `${path}: interrupted after ${written} bytes; the file keeps a prefix of them (put it again, or rm it)`, 'EINTR');
    throw toCliError(error, fromStdin ? path : `${args.local} -> ${path}`);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
  bar.finish();
  const seconds = (Date.now() - startMs) / 1000;
  if (ctx.options.json) ctx.json({ path, bytes: written, seconds });
  else ctx.out(`${path}: ${written} bytes (${humanBytes(written)}) written in ${humanSeconds(seconds)}`);
  return exitCodes.ok;
}

// ---------------------------------------------------------------- get, cat

/** Streams the file at `path` to `sink`, `readPieceBytes` at a time; returns the bytes copied. */
async function copyOut(conn: Connection, path: string, lengthBytes: number, sink: NodeJS.WritableStream, bar: ProgressBar): Promise<number> {
  let copied = 0;
  let next = 0;
  const inflight: Promise<Buffer>[] = [];
  const issue = (): void => {
    while (inflight.length < readsInflightMax && next < lengthBytes) {
      const length = Math.min(readPieceBytes, lengthBytes - next);
      const piece = conn.reader.read(path, next, length);
      piece.catch(() => undefined); // awaited below in order; this only keeps an early rejection from being unhandled
      inflight.push(piece);
      next += length;
    }
  };
  issue();
  while (inflight.length > 0) {
    const piece = await inflight.shift()!;
    if (piece.length === 0) break; // shorter than its stat said (truncated meanwhile)
    copied += piece.length;
    bar.advance(piece.length);
    issue();
    if (!sink.write(piece)) await once(sink, 'drain');
  }
  return copied;
}

async function fileToRead(conn: Connection, path: string): Promise<StatInfo> {
  const s = await conn.metadata.stat(path).catch((e: unknown) => {
    throw toCliError(e, path);
  });
  if (s.type === 'dir') throw new CliError(exitCodes.user, `${path}: is a directory (EISDIR)`, 'EISDIR');
  return s;
}

export async function get(ctx: Context, args: { source: string; local: string }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const path = rfsPath(args.source);
  const info = await fileToRead(conn, path);
  if (args.local === '-') return cat(ctx, { paths: [args.source] });
  let local = args.local;
  const existing = await localStat(local).catch(() => null);
  if (existing?.isDirectory() === true || local.endsWith('/')) local = posix.join(local, basename(path));
  const startMs = Date.now();
  const bar = new ProgressBar(ctx.io.stderr, `get ${path}`, info.lengthBytes, ctx.options.progress ?? ctx.io.stderr.isTTY === true);
  // Written under a temporary name and renamed at the end: a failed get leaves no truncated file behind.
  const partial = `${local}.rfsctl-partial-${process.pid}`;
  const sink = createWriteStream(partial);
  let copied: number;
  try {
    await once(sink, 'open');
    copied = await copyOut(conn, path, info.lengthBytes, sink, bar);
    sink.end();
    await finished(sink);
    await rename(partial, local);
  } catch (error) {
    bar.abandon();
    sink.destroy();
    await unlink(partial).catch(() => undefined);
    throw toCliError(error, `${path} -> ${local}`);
  }
  bar.finish();
  const seconds = (Date.now() - startMs) / 1000;
  if (ctx.options.json) ctx.json({ path, local, bytes: copied, seconds });
  else ctx.out(`${local}: ${copied} bytes (${humanBytes(copied)}) read in ${humanSeconds(seconds)}`);
  return exitCodes.ok;
}

export async function cat(ctx: Context, args: { paths: string[] }): Promise<ExitCode> {
  const conn = await ctx.connect();
  for (const raw of args.paths) {
    const path = rfsPath(raw);
    const info = await fileToRead(conn, path);
    const bar = new ProgressBar(ctx.io.stderr, path, info.lengthBytes, false);
    try {
      await copyOut(conn, path, info.lengthBytes, ctx.io.stdout, bar);
    } catch (error) {
      // The reader of our stdout went away (`rfsctl cat /f | head`): stop quietly, as cat does.
      if ((error as { code?: unknown }).code === 'EPIPE') return exitCodes.ok;
      throw toCliError(error, path);
    }
  }
  return exitCodes.ok;
}
