/**
 * Differential property test of the client library against `node:fs/promises`: one random sequence of
 * namespace and file operations is applied to rfs (RfsClient against a real in-process cluster,
 * test/client/fs-harness.ts) and to a fresh local temporary directory, and after every step the outcomes
 * must agree: success or failure, the error code on failure (an rfs failure must be an RfsError), and what
 * reads return (file bytes, stat's kind and size, readdir's names and kinds, what handle reads return).
 * After every change, failed ones included (nothing may be half-applied), both trees must list the same
 * entries with the same sizes; at the end of each sequence, the same bytes too.
 *
 * Paths come from a tiny alphabet ({a,b,c}, then {a,b} below, 1 to 3 levels) and each sequence starts with a
 * few mkdir -p / writeFile steps, so existing targets, missing parents, file/dir clashes and renames into a
 * directory's own subtree or onto its ancestors happen all the time. Data is 0-300 bytes, and rarely just
 * over a chunk (the harness's chunks are 1 MiB) so chunk boundaries are crossed too.
 *
 * The only differences allowed are rfs's documented ones (docs/CLIENT.md, "What is different from a local
 * disk"), each allowed where it is named:
 *  - rfs files are append-only: handles are never written at a position other than their end, and never
 *    opened 'r+'/'w+' (rfs refuses those with EINVAL by design), so neither is generated;
 *  - a handle's write at the end advances its position in rfs but not in Node (pwrite): see `run`,
 *    'writeHandle';
 *  - Node's `rm` of a directory without `recursive` fails with its own code ERR_FS_EISDIR, rfs with EISDIR:
 *    see `normalizeNodeError`;
 *  - `open(dir, 'r')` fails at once in rfs (EISDIR) while Node opens it and fails the first read (EISDIR):
 *    see `documentedDifference`.
 * A failure shows the failing step (or the two trees), every step before it with both sides' outcomes,
 * fast-check's seed and path, and the command that replays it (RFS_DIFF_SEED, RFS_DIFF_PATH). RFS_DIFF_RUNS
 * sets the number of sequences.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { connect, RfsError } from '../../src/index.ts';
import type { RfsClient } from '../../src/index.ts';
import { MiB, startTestCluster } from './fs-harness.ts';
import { pattern } from './pattern.ts';

/**
 * Sequences: `numRuns` of them, each 0 to `opsMax` operations long (uniform, so 30 on average; no minimum,
 * so that a failing sequence shrinks to the few steps that matter).
 */
const numRuns = Number(process.env['RFS_DIFF_RUNS'] ?? 50);
const opsMax = 60;
/** Steps that build a tree first (at most; see `sequenceArb`). */
const setupMax = 10;

// ------------------------------------------------------------------ operations

/** Bytes to write: `pattern(len, seed)`, as a Buffer or (asString) as its base64 text. */
interface Data {
  readonly len: number;
  readonly seed: number;
  readonly asString: boolean;
}

type Path = readonly string[];
type WriteFlag = 'w' | 'wx' | 'a' | 'ax';

type Op =
  | { readonly op: 'mkdir'; readonly path: Path; readonly recursive: boolean }
  | { readonly op: 'writeFile'; readonly path: Path; readonly data: Data; readonly flag: WriteFlag | undefined }
  | { readonly op: 'appendFile'; readonly path: Path; readonly data: Data }
  | { readonly op: 'readFile' | 'stat' | 'unlink' | 'rmdir'; readonly path: Path }
  | { readonly op: 'readdir'; readonly path: Path; readonly withFileTypes: boolean; readonly recursive: boolean }
  | { readonly op: 'copyFile'; readonly path: Path; readonly to: Path; readonly exclusive: boolean }
  | { readonly op: 'rename'; readonly path: Path; readonly to: Path }
  | { readonly op: 'rm'; readonly path: Path; readonly recursive: boolean; readonly force: boolean }
  /** open(flag), write each part (at the handle's end: null, or `bytesWritten` when `atEnd`), close. */
  | { readonly op: 'writeHandle'; readonly path: Path; readonly flag: WriteFlag; readonly parts: readonly { data: Data; atEnd: boolean }[] }
  /** open('r'), read each (length bytes at position, null: the handle's position), close. */
  | { readonly op: 'readHandle'; readonly path: Path; readonly reads: readonly { position: number | null; length: number }[] };

const name = fc.constantFrom('a', 'b', 'c');
/** Deeper levels draw from fewer names, so that deep paths exist (and clash) often enough. */
const deepName = fc.constantFrom('a', 'b');
/** 1 to 3 components: 3 + 6 + 12 paths. */
const pathArb: fc.Arbitrary<Path> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(name) },
  { weight: 4, arbitrary: fc.tuple(name, deepName) },
  { weight: 2, arbitrary: fc.tuple(name, deepName, deepName) },
);
/** Readdir also lists the sequence's own root (the empty path). */
const dirPathArb: fc.Arbitrary<Path> = fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 6, arbitrary: pathArb });
const dataArb: fc.Arbitrary<Data> = fc.record({
  len: fc.oneof(
    { weight: 60, arbitrary: fc.integer({ min: 0, max: 300 }) },
    // Rare: past a chunk boundary (1 MiB chunks).
    { weight: 2, arbitrary: fc.integer({ min: MiB - 50, max: MiB + 300 }) },
  ),
  seed: fc.integer({ min: 1, max: 1000 }),
  asString: fc.boolean(),
});
const writeFlagArb = fc.constantFrom<WriteFlag>('w', 'wx', 'a', 'ax');
/** rename: any two paths, or into the source's own subtree, or onto one of its ancestors. */
const renameArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('rename' as const), path: pathArb, to: pathArb }) },
  {
    weight: 1,
    arbitrary: fc.tuple(pathArb, fc.array(deepName, { minLength: 1, maxLength: 2 })).map(([p, more]): Op => ({ op: 'rename', path: p, to: [...p, ...more] })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(pathArb, fc.array(deepName, { minLength: 1, maxLength: 2 }))
      .map(([p, more]): Op => ({ op: 'rename', path: [...p, ...more], to: p })),
  },
);
const positionArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(null) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 400 }) },
  { weight: 1, arbitrary: fc.integer({ min: MiB - 200, max: MiB + 400 }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: pathArb, recursive: fc.boolean() }) },
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant('writeFile' as const), path: pathArb, data: dataArb, flag: fc.option(writeFlagArb, { nil: undefined }) }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('appendFile' as const), path: pathArb, data: dataArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('readFile' as const), path: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('stat' as const), path: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: dirPathArb, withFileTypes: fc.boolean(), recursive: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('copyFile' as const), path: pathArb, to: pathArb, exclusive: fc.boolean() }) },
  { weight: 5, arbitrary: renameArb },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('unlink' as const, 'rmdir' as const), path: pathArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('rm' as const), path: pathArb, recursive: fc.boolean(), force: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('writeHandle' as const),
      path: pathArb,
      flag: writeFlagArb,
      parts: fc.array(fc.record({ data: dataArb, atEnd: fc.boolean() }), { maxLength: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('readHandle' as const),
      path: pathArb,
      reads: fc.array(fc.record({ position: positionArb, length: fc.integer({ min: 0, max: 400 }) }), { maxLength: 3 }),
    }),
  },
);

function bytesOf(d: Data): Buffer {
  return pattern(d.len, d.seed);
}
function payload(d: Data): Buffer | string {
  return d.asString ? bytesOf(d).toString('base64') : bytesOf(d);
}
/** Bytes as compared: the length and a digest (a 1 MiB file compares without printing it). */
function digest(b: Uint8Array): string {
  return `${b.length}B:${createHash('sha256').update(b).digest('hex').slice(0, 12)}`;
}

function showPath(p: Path): string {
  return `/${p.join('/')}`;
}
function showData(d: Data): string {
  return `${d.len}B#${d.seed}${d.asString ? '(base64 text)' : ''}`;
}
function showOp(o: Op): string {
  switch (o.op) {
    case 'mkdir':
      return `mkdir ${showPath(o.path)}${o.recursive ? ' {recursive}' : ''}`;
    case 'writeFile':
      return `writeFile ${showPath(o.path)} ${showData(o.data)}${o.flag !== undefined ? ` {flag: ${o.flag}}` : ''}`;
    case 'appendFile':
      return `appendFile ${showPath(o.path)} ${showData(o.data)}`;
    case 'readdir':
      return `readdir ${showPath(o.path)}${o.withFileTypes ? ' {withFileTypes}' : ''}${o.recursive ? ' {recursive}' : ''}`;
    case 'copyFile':
      return `copyFile ${showPath(o.path)} -> ${showPath(o.to)}${o.exclusive ? ' COPYFILE_EXCL' : ''}`;
    case 'rename':
      return `rename ${showPath(o.path)} -> ${showPath(o.to)}`;
    case 'rm':
      return `rm ${showPath(o.path)} ${JSON.stringify({ recursive: o.recursive, force: o.force })}`;
    case 'writeHandle':
      return `open ${showPath(o.path)} '${o.flag}', write [${o.parts.map((p) => `${showData(p.data)}${p.atEnd ? '@end' : ''}`).join(', ')}], close`;
    case 'readHandle':
      return `open ${showPath(o.path)} 'r', read [${o.reads.map((r) => `${r.length}@${r.position ?? 'cur'}`).join(', ')}], close`;
    default:
      return `${o.op} ${showPath(o.path)}`;
  }
}

// ------------------------------------------------------------------ the two sides

/** What both sides offer: node:fs/promises' shape, which RfsClient follows. */
interface Handle {
  write(data: Uint8Array, offset: number, length: number, position: number | null): Promise<unknown>;
  read(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}
interface Side {
  readonly name: string;
  /** The path of `p` below this sequence's root. */
  at(p: Path): string;
  mkdir(path: string, options: { recursive: boolean }): Promise<unknown>;
  writeFile(path: string, data: Buffer | string, options: { flag?: WriteFlag }): Promise<void>;
  appendFile(path: string, data: Buffer | string): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  stat(path: string): Promise<{ isFile(): boolean; isDirectory(): boolean; size: number }>;
  readdir(path: string, recursive: boolean): Promise<string[]>;
  readdirTypes(path: string, recursive: boolean): Promise<{ name: string; parentPath: string; isFile(): boolean; isDirectory(): boolean }[]>;
  copyFile(from: string, to: string, mode: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  rm(path: string, options: { recursive: boolean; force: boolean }): Promise<void>;
  open(path: string, flag: WriteFlag | 'r'): Promise<Handle>;
  /** The code a failure is compared by. */
  code(error: unknown): string;
}

function rfsSide(fs: RfsClient, root: string): Side {
  return {
    name: 'rfs',
    at: (p) => (p.length === 0 ? root : `${root}/${p.join('/')}`),
    mkdir: (p, o) => fs.mkdir(p, o),
    writeFile: (p, d, o) => fs.writeFile(p, d, o),
    appendFile: (p, d) => fs.appendFile(p, d),
    readFile: (p) => fs.readFile(p),
    stat: (p) => fs.stat(p),
    readdir: (p, recursive) => fs.readdir(p, { recursive }),
    readdirTypes: (p, recursive) => fs.readdir(p, { withFileTypes: true, recursive }),
    copyFile: (a, b, mode) => fs.copyFile(a, b, mode),
    rename: (a, b) => fs.rename(a, b),
    unlink: (p) => fs.unlink(p),
    rmdir: (p) => fs.rmdir(p),
    rm: (p, o) => fs.rm(p, o),
    open: (p, f) => fs.open(p, f),
    // Every failure must be a typed RfsError with a stable code.
    code: (e) => (e instanceof RfsError ? e.code : `not an RfsError: ${String(e)}`),
  };
}

function nodeSide(root: string): Side {
  return {
    name: 'node',
    at: (p) => join(root, ...p),
    mkdir: (p, o) => nodeFs.mkdir(p, o),
    writeFile: (p, d, o) => nodeFs.writeFile(p, d, o),
    appendFile: (p, d) => nodeFs.appendFile(p, d),
    readFile: (p) => nodeFs.readFile(p),
    stat: (p) => nodeFs.stat(p),
    readdir: (p, recursive) => nodeFs.readdir(p, { recursive }),
    readdirTypes: (p, recursive) => nodeFs.readdir(p, { withFileTypes: true, recursive }),
    copyFile: async (a, b, mode) => {
      // Documented difference (docs/CLIENT.md): a directory copied onto an existing file fails with EISDIR on
      // both, but Node (libuv) has already truncated the destination and then unlinks it; rfs leaves it as it was.
      const [src, dst] = await Promise.all([nodeFs.stat(a).catch(() => null), nodeFs.stat(b).catch(() => null)]);
      if (src?.isDirectory() === true && dst?.isFile() === true && (mode & fsConstants.COPYFILE_EXCL) === 0)
        throw Object.assign(new Error(`EISDIR: copyfile '${a}' -> '${b}'`), { code: 'EISDIR' });
      return nodeFs.copyFile(a, b, mode);
    },
    rename: (a, b) => nodeFs.rename(a, b),
    unlink: (p) => nodeFs.unlink(p),
    rmdir: (p) => nodeFs.rmdir(p),
    rm: (p, o) => nodeFs.rm(p, o),
    open: (p, f) => nodeFs.open(p, f),
    code: normalizeNodeError,
  };
}

/**
 * Node's error code, as rfs is documented to report the same failure (docs/CLIENT.md, "Errors"):
 * Node's `rm` of a directory without `recursive` throws its own ERR_FS_EISDIR (whose errno is EISDIR);
 * rfs reports the errno-style code EISDIR.
 */
function normalizeNodeError(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  if (code === 'ERR_FS_EISDIR') return 'EISDIR';
  return typeof code === 'string' ? code : `no code: ${String(e)}`;
}

// ------------------------------------------------------------------ running a step on one side

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly code: string };

async function run(side: Side, o: Op): Promise<unknown> {
  const p = side.at(o.path);
  switch (o.op) {
    case 'mkdir':
      await side.mkdir(p, { recursive: o.recursive });
      return null;
    case 'writeFile':
      await side.writeFile(p, payload(o.data), o.flag === undefined ? {} : { flag: o.flag });
      return null;
    case 'appendFile':
      await side.appendFile(p, payload(o.data));
      return null;
    case 'readFile':
      return digest(await side.readFile(p));
    case 'stat': {
      const st = await side.stat(p);
      // A directory's size is the file system's own business (0 in rfs, a block in ext4).
      return st.isFile() ? { kind: 'file', size: st.size } : { kind: st.isDirectory() ? 'dir' : 'other' };
    }
    case 'readdir':
      // Sorted: the order of a recursive listing is each side's own (Node's is not specified).
      if (!o.withFileTypes) return (await side.readdir(p, o.recursive)).sort();
      return (await side.readdirTypes(p, o.recursive))
        .map((d) => `${relative(p, join(d.parentPath, d.name))}:${d.isFile() ? 'file' : d.isDirectory() ? 'dir' : 'other'}`)
        .sort();
    case 'copyFile':
      await side.copyFile(p, side.at(o.to), o.exclusive ? fsConstants.COPYFILE_EXCL : 0);
      return null;
    case 'rename':
      await side.rename(p, side.at(o.to));
      return null;
    case 'unlink':
      await side.unlink(p);
      return null;
    case 'rmdir':
      await side.rmdir(p);
      return null;
    case 'rm':
      await side.rm(p, { recursive: o.recursive, force: o.force });
      return null;
    case 'writeHandle': {
      const h = await side.open(p, o.flag);
      let written = 0;
      let positioned = false;
      return closing(h, async () => {
        for (const part of o.parts) {
          const bytes = bytesOf(part.data);
          // Documented difference (docs/CLIENT.md, "File handles"): an rfs write at the end moves the handle's
          // position as a write without a position does; Node's positional write leaves the position where it
          // was, so a later position-less write would write over those bytes (which rfs cannot do). After a
          // positional write, Node is therefore given the end explicitly.
          const position = part.atEnd || (side.name === 'node' && positioned) ? written : null;
          positioned ||= part.atEnd;
          await h.write(bytes, 0, bytes.length, position);
          written += bytes.length;
        }
        return null;
      });
    }
    case 'readHandle': {
      const h = await side.open(p, 'r');
      return closing(h, async () => {
        const got: string[] = [];
        for (const r of o.reads) {
          const buffer = Buffer.alloc(r.length);
          const { bytesRead } = await h.read(buffer, 0, r.length, r.position);
          got.push(digest(buffer.subarray(0, bytesRead)));
        }
        return got;
      });
    }
  }
}

/** Runs `fn` on an open handle and closes it; the first failure is the outcome. */
async function closing<T>(h: Handle, fn: () => Promise<T>): Promise<T> {
  let value: T;
  try {
    value = await fn();
  } catch (error) {
    await h.close().catch(() => undefined);
    throw error;
  }
  await h.close();
  return value;
}

async function outcome(side: Side, o: Op): Promise<Outcome> {
  try {
    return { ok: true, value: await run(side, o) };
  } catch (error) {
    return { ok: false, code: side.code(error) };
  }
}

/**
 * The one documented difference in outcomes (docs/CLIENT.md, "What is different from a local disk"):
 * `open(dir, 'r')` fails at once in rfs with EISDIR, while Node opens a directory and fails its first read
 * with EISDIR. So a handle step with no reads on a directory succeeds in Node only. (`nodePath` is checked to
 * be a directory, so an rfs EISDIR for a file still fails the test.)
 */
async function documentedDifference(o: Op, r: Outcome, n: Outcome, nodePath: string): Promise<boolean> {
  if (o.op === 'readHandle' && o.reads.length === 0 && !r.ok && r.code === 'EISDIR' && n.ok)
    return (await nodeFs.stat(nodePath)).isDirectory();
  return false;
}

function showOutcome(r: Outcome): string {
  return r.ok ? `ok${r.value === null ? '' : ` ${JSON.stringify(r.value)}`}` : r.code;
}

/**
 * The whole tree below `p`, one line per entry in name order: a directory as 'path/', a file with its size
 * (stat), or with `bytes` the digest of what readFile returns.
 */
async function listing(side: Side, bytes: boolean, p: Path = []): Promise<string[]> {
  const out: string[] = [];
  for (const d of (await side.readdirTypes(side.at(p), false)).sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))) {
    const child = [...p, d.name];
    if (d.isDirectory()) out.push(`${showPath(child)}/`, ...(await listing(side, bytes, child)));
    else if (!d.isFile()) out.push(`${showPath(child)} (neither file nor directory)`);
    else if (bytes) out.push(`${showPath(child)} ${digest(await side.readFile(side.at(child)))}`);
    else out.push(`${showPath(child)} ${(await side.stat(side.at(child))).size}B`);
  }
  return out;
}

// ------------------------------------------------------------------ the property

const cluster = await startTestCluster();
t.teardown(() => cluster.close());
const fs: RfsClient = await connect({ metadata: cluster.addresses, timeoutMs: 30_000 });
t.teardown(() => fs.close());
// The chunkservers take chunks up to 1 MiB (the root's default is 64 MiB): every sequence's root is below.
await fs.mkdir('/diff', { chunkSizeBytes: MiB });
const localBase = await nodeFs.mkdtemp(join(tmpdir(), 'rfs-diff-'));
t.teardown(() => nodeFs.rm(localBase, { recursive: true, force: true }));

let sequence = 0;
const stats = { steps: 0, chunkSpanning: 0, outcomes: new Map<string, number>() };

/** A difference between the two sides: what differs, and every step of the sequence up to it. */
class Divergence extends Error {
  constructor(
    readonly headline: string,
    readonly detail: readonly string[],
    readonly steps: readonly string[],
  ) {
    super(`${headline}\n  ${detail.join('\n  ')}\nsteps:\n  ${steps.join('\n  ')}`);
  }
}

const mutations: ReadonlySet<Op['op']> = new Set(['mkdir', 'writeFile', 'appendFile', 'rename', 'unlink', 'rmdir', 'rm', 'writeHandle']);

/**
 * A sequence: a few steps that build a tree (mkdir -p, writeFile), so that later steps find things to
 * clash with, then the random steps. Both parts are compared alike, and both shrink.
 */
const setupArb: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant('mkdir' as const), path: pathArb, recursive: fc.constant(true) }),
    fc.record({ op: fc.constant('writeFile' as const), path: pathArb, data: dataArb, flag: fc.constant(undefined) }),
  ),
  { maxLength: setupMax },
);
const sequenceArb: fc.Arbitrary<Op[]> = fc
  .tuple(setupArb, fc.array(opArb, { maxLength: opsMax, size: 'max' }))
  .map(([setup, ops]) => [...setup, ...ops]);

const property = fc.asyncProperty(sequenceArb, async (ops) => {
  // A fresh root on each side for every sequence (shrinking runs included).
  sequence++;
  const rfsRoot = `/diff/s${sequence}`;
  const localRoot = join(localBase, `s${sequence}`);
  await fs.mkdir(rfsRoot);
  await nodeFs.mkdir(localRoot);
  const sides = [rfsSide(fs, rfsRoot), nodeSide(localRoot)] as const;
  const steps: string[] = [`(rfs ${rfsRoot}, node ${localRoot})`];
  try {
    for (const [i, o] of ops.entries()) {
      const [r, n] = [await outcome(sides[0], o), await outcome(sides[1], o)];
      const line = `${String(i).padStart(2)}. ${showOp(o)}: rfs ${showOutcome(r)}, node ${showOutcome(n)}`;
      steps.push(line);
      stats.steps++;
      const kind = `${o.op} ${n.ok ? 'ok' : n.code}`;
      stats.outcomes.set(kind, (stats.outcomes.get(kind) ?? 0) + 1);
      if (n.ok && (o.op === 'writeFile' || o.op === 'appendFile' ? o.data.len > MiB : o.op === 'writeHandle' && o.parts.some((p) => p.data.len > MiB))
      )
        stats.chunkSpanning++;
      if (JSON.stringify(r) !== JSON.stringify(n) && !(await documentedDifference(o, r, n, sides[1].at(o.path))))
        throw new Divergence(`step ${i} diverges`, [line], steps);
      // After every change, successful or not (a failed one must leave no trace): the same tree, sizes included.
      if (mutations.has(o.op)) {
        const [rl, nl] = [await listing(sides[0], false), await listing(sides[1], false)];
        if (JSON.stringify(rl) !== JSON.stringify(nl)) throw new Divergence(`the trees differ after step ${i}`, [`rfs:  ${rl.join(' | ')}`, `node: ${nl.join(' | ')}`], steps);
      }
    }
    const [rl, nl] = [await listing(sides[0], true), await listing(sides[1], true)];
    if (JSON.stringify(rl) !== JSON.stringify(nl))
      throw new Divergence('the trees differ at the end (bytes read back)', [`rfs:  ${rl.join(' | ')}`, `node: ${nl.join(' | ')}`], steps);
  } finally {
    await nodeFs.rm(localRoot, { recursive: true, force: true });
  }
});

void t.test('RfsClient agrees with node:fs/promises on random operation sequences', async (t) => {
  const started = Date.now();
  // To replay a failure: RFS_DIFF_SEED=<seed> RFS_DIFF_PATH=<path> npx tap test/client/fs-differential.test.ts
  const seed = process.env['RFS_DIFF_SEED'];
  const path = process.env['RFS_DIFF_PATH'];
  const details = await fc.check(property, {
    numRuns,
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
  });
  if (details.failed) {
    const e = details.errorInstance;
    const replay = `RFS_DIFF_SEED=${details.seed} RFS_DIFF_PATH=${details.counterexamplePath ?? ''} npx tap test/client/fs-differential.test.ts`;
    if (e instanceof Divergence) t.fail(e.headline, { diagnostic: true, divergence: e.detail, steps: e.steps, seed: details.seed, path: details.counterexamplePath, replay });
    else t.fail(`the property threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, { diagnostic: true, seed: details.seed, path: details.counterexamplePath, replay });
    t.comment(fc.defaultReportMessage(details) ?? '');
  } else t.pass(`${numRuns} sequences of up to ${opsMax} operations agree`);
  t.comment(
    `${details.numRuns} sequences, ${stats.steps} steps (${stats.chunkSpanning} writes past a chunk) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `outcomes (node's): ${[...stats.outcomes].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`,
  );
});
