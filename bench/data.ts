/**
 * npm run bench:data [-- --size-mib 1024] [--chunk-mib 64] [--no-kill] [--warmup-mib N] [--cpu-prof DIR] [--no-direct-io]
 *
 * The data path against the disk's physical limit, in one run on this machine:
 *  - limit: the same bytes written three times (three files written concurrently, as three replicas
 *    would be), fsync after every chunk's worth, once through the page cache and once with O_DIRECT from
 *    aligned memory; the faster of the two is the write limit. Then one copy of each read back (the faster is the
 *    read limit); the page cache is dropped before every timed read when /proc/sys/vm/drop_caches is
 *    writable (root), else noted. On this VM a read also depends on whether the host caches the virtual
 *    disk's blocks (bench/reread.ts), so a control line reads one chunkserver's replica files plainly, as
 *    the limit reads its files, just before rfs's read. Measured before and after rfs's phases
 *    (the shared disk's speed drifts), rfs compared with their mean;
 *  - rfs: a 3-server metadata cluster and 3 chunkservers (separate processes, real store: fsync when a chunk
 *    is sealed), one client in this process writes the file with replication 3 through the pipeline, then
 *    reads it back (caches dropped the same way).
 * Prints MB/s for both and the ratio rfs/limit. Then (unless --no-kill) it SIGKILLs one chunkserver, starts a
 * fresh one on an empty disk, and reports how long until every chunk has three copies again (this includes
 * the leader noticing the death: heartbeatTimeoutMs, 10 s by default).
 * CPU is also split by process kind (client, metadata, chunkservers; user and system time), which says
 * where the CPU goes without a profiler. `--cpu-prof DIR`: the chunkservers and metadata servers run with node's
 * --cpu-prof and are stopped by SIGTERM at the end so their profiles are written to DIR (the write phase's
 * span on the monotonic clock, which V8's profiles use, is printed to stderr) (run the bench itself under
 * `node --cpu-prof --import tsx bench/data.ts` for the client's).
 * `RFS_BENCH_NODE_ARGS="…"` (environment): extra node flags for the servers, e.g. `--log-deopt --logfile=DIR/v8-%p.log`.
 * `--no-direct-io`: the chunkservers write through the page cache (`rfs chunkserver --no-direct-io`).
 * `--warmup-mib N`: before the timed phases, write, read and delete an N MiB file, so the processes' JIT has
 * compiled the data path (steady state) and the timed write is not the first thing their code does.
 * `--read-passes N`: after the timed read (the table's), N−1 more passes of the local read, each followed by
 * the control, caches dropped before each: how much of the read is the host's cache of the disk (later
 * passes find the blocks warm) and how much is rfs (a warm rfs read against the warm control).
 * `--small-files N [--small-file-mib 8]`: after the read phases, N files of that size written one after the
 * other through the same client, then each read back through a read session (as a service writing and
 * reading many files does): MB/s and the client's CPU per GB, where a writer's and a session's fresh buffers
 * show (src/client/spare-buffers.ts), and the mean time per file spent opening, writing and closing.
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FileClient } from '../src/client/connect.ts';
import type { ReadSourceStats } from '../src/client/connect.ts';
import { freePort, processCpuSeconds, readFilesPlainly, sleep, waitFor } from './util.ts';

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'chunk-mib': { type: 'string', default: '64' },
    'no-kill': { type: 'boolean', default: false },
    'no-direct-io': { type: 'boolean', default: false },
    'warmup-mib': { type: 'string', default: '0' },
    'read-passes': { type: 'string', default: '1' },
    'small-files': { type: 'string', default: '0' },
    'small-file-mib': { type: 'string', default: '8' },
    dir: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const MiB = 1024 * 1024;
/** Rates are in MB/s, 1 MB = 10^6 bytes (as bench:dataplane); the ratio does not depend on the unit. */
const MB = 1e6;
const sizeBytes = Number(args['size-mib']) * MiB;
const chunkBytes = Number(args['chunk-mib']) * MiB;
const writeBlockBytes = 4 * MiB;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

type ProcessKind = 'client' | 'metadata' | 'chunkserver';
const children: { readonly child: ChildProcess; readonly kind: ProcessKind }[] = [];
let workDir = '';
const profileDir = args['cpu-prof'];

function rfs(kind: ProcessKind, argv: string[]): ChildProcess {
  const profile = profileDir !== undefined && kind !== 'client' ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  // Extra node flags for the servers, e.g. RFS_BENCH_NODE_ARGS="--log-deopt --logfile=/tmp/v8-%p.log".
  const extra = (process.env['RFS_BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(process.execPath, [...profile, ...extra, '--import', 'tsx', 'src/cli/rfs.ts', ...argv, '--log-level', 'warn'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push({ child, kind });
  return child;
}

/** CPU seconds (user and system) by process kind. */
type CpuSplit = Record<ProcessKind, { user: number; system: number }>;

/**
 * CPU seconds used so far by this process and every child still running (children from /proc/<pid>/stat,
 * processCpuSeconds), by kind. Robust under load, unlike MB/s.
 */
async function cpuSplit(): Promise<CpuSplit> {
  const own = process.cpuUsage();
  const split: CpuSplit = { client: { user: own.user / 1e6, system: own.system / 1e6 }, metadata: { user: 0, system: 0 }, chunkserver: { user: 0, system: 0 } };
  for (const { child, kind } of children) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    try {
      const { user, system } = await processCpuSeconds(child.pid);
      split[kind].user += user;
      split[kind].system += system;
    } catch {
      // The child exited meanwhile.
    }
  }
  return split;
}

function combine(a: CpuSplit, b: CpuSplit, sign: 1 | -1): CpuSplit {
  const part = (k: ProcessKind): { user: number; system: number } => ({ user: a[k].user + sign * b[k].user, system: a[k].system + sign * b[k].system });
  return { client: part('client'), metadata: part('metadata'), chunkserver: part('chunkserver') };
}
const minus = (a: CpuSplit, b: CpuSplit): CpuSplit => combine(a, b, -1);

function totalOf(split: CpuSplit): number {
  return Object.values(split).reduce((sum, p) => sum + p.user + p.system, 0);
}

/** One line: CPU seconds per GB by kind, user+system. */
function describeSplit(split: CpuSplit, gb: number): string {
  return (Object.entries(split) as [ProcessKind, { user: number; system: number }][])
    .map(([kind, p]) => `${kind} ${(p.user / gb).toFixed(2)}u+${(p.system / gb).toFixed(2)}s`)
    .join(', ');
}

/** System calls (reads and writes of any kind: /proc/<pid>/io) and context switches (all threads) so far. */
interface KernelCounts {
  syscalls: number;
  switches: number;
}

/** KernelCounts of the running children of one kind, summed. */
async function kernelCounts(kind: ProcessKind): Promise<KernelCounts> {
  const counts: KernelCounts = { syscalls: 0, switches: 0 };
  for (const { child } of children.filter((c) => c.kind === kind)) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    try {
      const io = await readFile(`/proc/${child.pid}/io`, 'utf8');
      for (const m of io.matchAll(/^sysc[rw]: (\d+)$/gm)) counts.syscalls += Number(m[1]);
      for (const task of await readdir(`/proc/${child.pid}/task`)) {
        try {
          const status = await readFile(`/proc/${child.pid}/task/${task}/status`, 'utf8');
          for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) counts.switches += Number(m[1]);
        } catch {
          // This thread exited meanwhile (a thread-pool or V8 helper thread): the others still count.
        }
      }
    } catch {
      // The child exited meanwhile.
    }
  }
  return counts;
}

let cachesDroppable = true;
async function dropCaches(): Promise<void> {
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3');
  } catch {
    cachesDroppable = false;
  }
}

/** A buffer of `writeBlockBytes` pseudo-random bytes (not compressible, not all zero). */
function block(seed: number): Buffer {
  const b = Buffer.allocUnsafe(writeBlockBytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}
const blocks = [block(1), block(2), block(3), block(4)];
const blockAt = (i: number): Buffer => blocks[i % blocks.length]!;

/**
 * The blocks again, in page-aligned memory (a WebAssembly.Memory: Node buffers carry no alignment guarantee),
 * for the limit's O_DIRECT writes.
 */
const alignedBlocks = (() => {
  const memory = Buffer.from(new (globalThis as unknown as { WebAssembly: { Memory: new (size: { initial: number }) => { buffer: ArrayBuffer } } }).WebAssembly.Memory({ initial: (blocks.length * writeBlockBytes) / 65536 }).buffer);
  return blocks.map((b, i) => {
    const view = memory.subarray(i * writeBlockBytes, (i + 1) * writeBlockBytes);
    b.copy(view);
    return view;
  });
})();

interface Limit {
  /** The faster of the two ways to write (the disk's limit is what the best way gets). */
  readonly writeMBs: number;
  readonly cachedWriteMBs: number;
  readonly directWriteMBs: number;
  /** The faster of the two files read back. */
  readonly readMBs: number;
  readonly cachedReadMBs: number;
  readonly directReadMBs: number;
}

/**
 * The three files written concurrently in 4 MiB blocks, fsync after every chunk's worth: through the page
 * cache, or with O_DIRECT from aligned memory (as rfs's chunkservers write by default, src/chunkserver/disk.ts).
 */
async function writeThree(files: string[], direct: boolean): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    files.map(async (f) => {
      const h = await open(f, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | (direct ? constants.O_DIRECT : 0), 0o644);
      let sinceSync = 0;
      for (let off = 0, i = 0; off < sizeBytes; off += writeBlockBytes, i++) {
        const length = Math.min(writeBlockBytes, sizeBytes - off);
        // An O_DIRECT length must be aligned: a size that is not a multiple of 4 KiB ends through the cache.
        if (direct && length % 4096 !== 0) {
          await h.close();
          const tail = await open(f, 'r+');
          await tail.write(blockAt(i), 0, length, off);
          await tail.sync();
          await tail.close();
          return;
        }
        await h.write(direct ? alignedBlocks[i % alignedBlocks.length]! : blockAt(i), 0, length, off);
        sinceSync += writeBlockBytes;
        if (sinceSync >= chunkBytes) {
          await h.sync();
          sinceSync = 0;
        }
      }
      await h.sync();
      await h.close();
    }),
  );
  return sizeBytes / MB / ((performance.now() - t0) / 1000);
}

async function physicalLimit(): Promise<Limit> {
  const cachedFiles = [0, 1, 2].map((i) => join(workDir, `plain-cached${i}`));
  const directFiles = [0, 1, 2].map((i) => join(workDir, `plain-direct${i}`));
  const cachedWriteMBs = await writeThree(cachedFiles, false);
  let directWriteMBs = 0;
  try {
    directWriteMBs = await writeThree(directFiles, true);
  } catch (error) {
    process.stderr.write(`limit: O_DIRECT writes failed here (${(error as Error).message}); the limit is the cached one\n`);
  }
  // One copy of each read back, page cache dropped: on this VM a file written with O_DIRECT has read back
  // slower than one written through the cache, so the read limit is the faster of the two as well.
  const readBack = async (file: string): Promise<number> => {
    await dropCaches();
    const { bytes, seconds } = await readFilesPlainly([file], writeBlockBytes);
    return bytes / MB / seconds;
  };
  const cachedReadMBs = await readBack(cachedFiles[0]!);
  const directReadMBs = directWriteMBs > 0 ? await readBack(directFiles[0]!) : 0;
  for (const f of [...cachedFiles, ...directFiles]) await rm(f, { force: true });
  return {
    writeMBs: Math.max(cachedWriteMBs, directWriteMBs),
    cachedWriteMBs,
    directWriteMBs,
    readMBs: Math.max(cachedReadMBs, directReadMBs),
    cachedReadMBs,
    directReadMBs,
  };
}

/**
 * Reads the replica data files in `dir` of the chunks `handles` (in handle order) as the limit reads its
 * files; MB/s. Only the file's own chunks: another replica there (a chunk the writer allocated ahead and
 * abandoned) may be deleted by the leader's garbage collection at any moment.
 */
async function readReplicaFilesPlainly(dir: string, handles: ReadonlySet<number>): Promise<number> {
  const names = (await readdir(dir))
    .filter((n) => n.endsWith('.data') && handles.has(parseInt(n, 10)))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  const { bytes, seconds } = await readFilesPlainly(names.map((n) => join(dir, n)), writeBlockBytes);
  return bytes / MB / seconds;
}

/**
 * Reads the whole file back as the limit does: sequentially, `writeBlockBytes` (4 MiB) per read, into one
 * buffer reused for every read, through one read session (what a reading file handle uses: the chunk list
 * fetched once, sequential reads read ahead, src/client/read-session.ts). The buffer is touched before the
 * timer starts. The timed pass only reads; a second, untimed pass through a new session reads the file again
 * the same way and checks every byte against what was written (the bench's own work, not the file
 * system's).
 */
const readBuffer = Buffer.alloc(Math.min(writeBlockBytes, sizeBytes));
async function readPhase(client: FileClient): Promise<{ seconds: number; split: CpuSplit; stats: ReadSourceStats }> {
  const stats0 = client.readStats();
  readBuffer.fill(0);
  const c0 = await cpuSplit();
  const r0 = performance.now();
  const session = client.openForReading('/bench/file');
  for (let off = 0; off < sizeBytes; off += writeBlockBytes) {
    const want = Math.min(writeBlockBytes, sizeBytes - off);
    const count = await session.readInto(off, readBuffer.subarray(0, want));
    if (count !== want) throw new Error(`read ${count} bytes at ${off}`);
  }
  session.close();
  const seconds = (performance.now() - r0) / 1000;
  const split = minus(await cpuSplit(), c0);
  const stats1 = client.readStats();
  const stats = { localBytes: stats1.localBytes - stats0.localBytes, networkBytes: stats1.networkBytes - stats0.networkBytes, localFallbacks: stats1.localFallbacks - stats0.localFallbacks };
  // The check, untimed.
  const check = client.openForReading('/bench/file');
  let mismatches = 0;
  for (let off = 0, i = 0; off < sizeBytes; off += writeBlockBytes, i++) {
    const want = Math.min(writeBlockBytes, sizeBytes - off);
    const count = await check.readInto(off, readBuffer.subarray(0, want));
    if (count !== want || !readBuffer.subarray(0, want).equals(blockAt(i).subarray(0, want))) mismatches++;
  }
  check.close();
  if (mismatches > 0) throw new Error(`${mismatches} blocks read back differ`);
  return { seconds, split, stats };
}

async function main(): Promise<void> {
  workDir = await mkdtemp(join(args.dir ?? tmpdir(), 'rfs-bench-data-'));
  console.log(`bench:data: ${sizeBytes / MiB} MiB file, ${chunkBytes / MiB} MiB chunks, replication 3, in ${workDir}`);
  const limitBefore = await physicalLimit();

  // The cluster.
  const ids = [1, 2, 3];
  const ports = new Map<number, { client: number; raft: number }>();
  for (const id of ids) ports.set(id, { client: await freePort(), raft: await freePort() });
  const peers = ids.map((id) => `${id}=127.0.0.1:${ports.get(id)!.client}/${ports.get(id)!.raft}`).join(',');
  for (const id of ids) rfs('metadata', ['metadata', '--id', String(id), '--listen', `127.0.0.1:${ports.get(id)!.client}`, '--peers', peers, '--data-dir', join(workDir, `m${id}`)]);
  const addresses = ids.map((id) => `127.0.0.1:${ports.get(id)!.client}`);
  const startChunkserver = async (name: string, rack: string): Promise<{ child: ChildProcess; address: string }> => {
    const address = `127.0.0.1:${await freePort()}`;
    const child = rfs('chunkserver', ['chunkserver', '--data-dir', join(workDir, name), '--metadata', addresses.join(','), '--rack', rack, '--listen', address, '--heartbeat-ms', '1000', ...(args['no-direct-io'] ? ['--no-direct-io'] : [])]);
    return { child, address };
  };
  const chunkservers = [await startChunkserver('c1', 'r1'), await startChunkserver('c2', 'r2'), await startChunkserver('c3', 'r3')];
  const client = await waitFor('the metadata cluster', () => FileClient.connect(addresses, { retryDeadlineMs: 60_000 }), 60_000, 200);
  const liveServers = async (): Promise<number> => {
    const r = await client.metadata.call('ListChunkservers', {});
    return ((r['chunkservers'] ?? []) as { state: string }[]).filter((c) => c.state === 'live').length;
  };
  await waitFor('three live chunkservers', async () => ((await liveServers()) >= 3 ? true : undefined), 60_000, 200);
  // The leader's chunk manager reloads its view of the registry once a second: give it a pass.
  await sleep(3_000);
  await client.metadata.mutate('Mkdir', { path: '/bench', chunkSizeBytes: chunkBytes, replication: 3 });
  const warmupBytes = Number(args['warmup-mib']) * MiB;
  if (warmupBytes > 0) {
    // Steady state: the processes' JIT has compiled the data path before the timed phases (a server runs
    // for months; the timed write is otherwise the first thing its code does). Written, read, deleted.
    process.stderr.write(`warming up: ${warmupBytes / MiB} MiB written and read\n`);
    const w = await client.openWriter('/bench/warmup');
    for (let off = 0, i = 0; off < warmupBytes; off += writeBlockBytes, i++) await w.write(blockAt(i).subarray(0, Math.min(writeBlockBytes, warmupBytes - off)));
    await w.close();
    await client.readFile('/bench/warmup');
    await client.metadata.mutate('Unlink', { path: '/bench/warmup' });
  }

  // Progress on stderr, with the process ids, so a profiler (perf record -p) can attach to the phase.
  const pids = (kind: ProcessKind): string => children.filter((c) => c.kind === kind).map((c) => c.child.pid).join(',');
  process.stderr.write(`writing: client ${process.pid}, chunkservers ${pids('chunkserver')}, metadata ${pids('metadata')}\n`);
  const kernelW0 = await kernelCounts('chunkserver');
  const cpuW0 = await cpuSplit();
  const w0 = performance.now();
  const writer = await client.openWriter('/bench/file');
  for (let off = 0, i = 0; off < sizeBytes; off += writeBlockBytes, i++) await writer.write(blockAt(i).subarray(0, Math.min(writeBlockBytes, sizeBytes - off)));
  await writer.close();
  const writeS = (performance.now() - w0) / 1000;
  if (profileDir !== undefined) {
    const endUs = Math.round(Number(process.hrtime.bigint()) / 1000);
    process.stderr.write(`write phase: monotonic ${endUs - Math.round(writeS * 1e6)}-${endUs} µs\n`);
  }
  const writeSplit = minus(await cpuSplit(), cpuW0);
  const kernelW1 = await kernelCounts('chunkserver');
  const writeCpuS = totalOf(writeSplit);
  // A control for the reads (not the limit): one chunkserver's replica files of the file, read plainly as the
  // limit reads its files, caches dropped. These are the bytes rfs's local read reads, at their age and
  // place on the disk (the limit's plain files were written seconds before they are read).
  await dropCaches();
  const fileHandles = new Set<number>();
  for (let from: number | null = 0; from !== null; ) {
    const page = await client.metadata.chunkLocations('/bench/file', { fromIndex: from });
    for (const c of page.chunks) fileHandles.add(c.handle);
    from = page.nextIndex;
  }
  const replicaPlainMBs = await readReplicaFilesPlainly(join(workDir, 'c1', 'chunks'), fileHandles);
  await dropCaches();
  process.stderr.write('reading\n');
  // Two read phases: the client as configured by default (a replica on this host is read from its files,
  // short-circuit, src/client/local-read.ts), then a client with local reads off, every byte streamed from
  // a chunkserver over TCP (what a client on another host gets).
  const local = await readPhase(client);
  const extraPasses: string[] = [];
  for (let pass = 2; pass <= Number(args['read-passes']); pass++) {
    await dropCaches();
    const again = await readPhase(client);
    await dropCaches();
    const control = await readReplicaFilesPlainly(join(workDir, 'c1', 'chunks'), fileHandles);
    extraPasses.push(`read pass ${pass}: rfs ${(sizeBytes / MB / again.seconds).toFixed(1)} MB/s (${(totalOf(again.split) / (sizeBytes / 1e9)).toFixed(2)} CPU-s per GB), then the control ${control.toFixed(1)} MB/s`);
  }
  await dropCaches();
  process.stderr.write('reading over the network (local reads off)\n');
  const remoteClient = await FileClient.connect(addresses, { retryDeadlineMs: 60_000, localReads: false });
  const remote = await readPhase(remoteClient);
  remoteClient.close();
  const smallFiles = Number(args['small-files']);
  const smallFileBytes = Number(args['small-file-mib']) * MiB;
  let smallLine = '';
  if (smallFiles > 0) {
    process.stderr.write(`small files: ${smallFiles} of ${smallFileBytes / MiB} MiB\n`);
    await client.metadata.mutate('Mkdir', { path: '/bench/small', chunkSizeBytes: chunkBytes, replication: 3 });
    const gbSmall = (smallFiles * smallFileBytes) / 1e9;
    const perGb = (c: NodeJS.CpuUsage): string => `${(c.user / 1e6 / gbSmall).toFixed(2)}u+${(c.system / 1e6 / gbSmall).toFixed(2)}s`;
    const w0Small = process.cpuUsage();
    const t0Small = performance.now();
    // Where a small file's time goes, summed: opening (create and lease), the writes, closing (the last
    // chunk's seal on the replicas and at the leader, and completion).
    const smallMs = { open: 0, write: 0, close: 0 };
    for (let i = 0; i < smallFiles; i++) {
      const ta = performance.now();
      const w = await client.openWriter(`/bench/small/${i}`);
      const tb = performance.now();
      for (let off = 0, b = i; off < smallFileBytes; off += writeBlockBytes, b++) await w.write(blockAt(b).subarray(0, Math.min(writeBlockBytes, smallFileBytes - off)));
      const tc = performance.now();
      await w.close();
      smallMs.open += tb - ta;
      smallMs.write += tc - tb;
      smallMs.close += performance.now() - tc;
    }
    const writeMBs = (smallFiles * smallFileBytes) / MB / ((performance.now() - t0Small) / 1000);
    const writeCpu = process.cpuUsage(w0Small);
    await dropCaches();
    const r0Small = process.cpuUsage();
    const t1Small = performance.now();
    for (let i = 0; i < smallFiles; i++) {
      const session = client.openForReading(`/bench/small/${i}`);
      for (let off = 0; off < smallFileBytes; off += writeBlockBytes) await session.readInto(off, readBuffer.subarray(0, Math.min(writeBlockBytes, smallFileBytes - off)));
      session.close();
    }
    const readMBs = (smallFiles * smallFileBytes) / MB / ((performance.now() - t1Small) / 1000);
    const readCpu = process.cpuUsage(r0Small);
    smallLine = `small files (${smallFiles} × ${smallFileBytes / MiB} MiB through one client, one after another): write ${writeMBs.toFixed(1)} MB/s, client CPU ${perGb(writeCpu)} per GB; read ${readMBs.toFixed(1)} MB/s, client CPU ${perGb(readCpu)} per GB\n  per file written (means): open ${(smallMs.open / smallFiles).toFixed(1)} ms, writes ${(smallMs.write / smallFiles).toFixed(1)} ms, close ${(smallMs.close / smallFiles).toFixed(1)} ms`;
  }
  // The disk is shared and its speed drifts over minutes: the limit is measured again after rfs's phases, and
  // rfs is compared with the mean of the two (both printed).
  const limitAfter = await physicalLimit();
  const limit = { writeMBs: (limitBefore.writeMBs + limitAfter.writeMBs) / 2, readMBs: (limitBefore.readMBs + limitAfter.readMBs) / 2 };
  const ways = (l: Limit): string => `cached ${l.cachedWriteMBs.toFixed(1)}, O_DIRECT ${l.directWriteMBs.toFixed(1)}`;
  const readWays = (l: Limit): string => `written cached ${l.cachedReadMBs.toFixed(1)}, written O_DIRECT ${l.directReadMBs.toFixed(1)}`;
  const rfsWrite = sizeBytes / MB / writeS;
  console.log(`limit before rfs: write ${limitBefore.writeMBs.toFixed(1)} MB/s (${ways(limitBefore)}), read ${limitBefore.readMBs.toFixed(1)} MB/s (${readWays(limitBefore)})`);
  console.log(`limit after rfs: write ${limitAfter.writeMBs.toFixed(1)} MB/s (${ways(limitAfter)}), read ${limitAfter.readMBs.toFixed(1)} MB/s (${readWays(limitAfter)})`);
  console.log('(the table uses the mean of before and after; each limit is the faster way)');
  console.log(`page cache dropped before reads: ${cachesDroppable ? 'yes' : 'no (not root): reads may come from memory'}`);
  console.log('');
  console.log('  phase             limit MB/s   rfs MB/s   ratio');
  console.log(`  write             ${limit.writeMBs.toFixed(1).padStart(10)}   ${rfsWrite.toFixed(1).padStart(8)}   ${(rfsWrite / limit.writeMBs).toFixed(2)}`);
  for (const [name, phase] of [['read', local], ['read (network)', remote]] as const) {
    const mbs = sizeBytes / MB / phase.seconds;
    console.log(`  ${name.padEnd(16)}  ${limit.readMBs.toFixed(1).padStart(10)}   ${mbs.toFixed(1).padStart(8)}   ${(mbs / limit.readMBs).toFixed(2)}`);
  }
  const localMBs = sizeBytes / MB / local.seconds;
  console.log(`(control, not the limit: one chunkserver's replica files of the file read plainly as the limit reads, just before rfs's read: ${replicaPlainMBs.toFixed(1)} MB/s; rfs's read is ${(localMBs / replicaPlainMBs).toFixed(2)} of it)`);
  console.log('(limit write: the bytes written 3 times concurrently with fsync per chunk, through the page cache and with O_DIRECT, the faster counts; rfs: one client, replication 3)');
  for (const line of extraPasses) console.log(`(${line})`);
  if (smallLine !== '') console.log(smallLine);
  const mib = (n: number): string => (n / MiB).toFixed(0);
  console.log(`(read: ${mib(local.stats.localBytes)} MiB from local replica files, ${mib(local.stats.networkBytes)} MiB over TCP, ${local.stats.localFallbacks} fallbacks; read (network): ${mib(remote.stats.networkBytes)} MiB over TCP)`);
  const gb = sizeBytes / 1e9;
  console.log(`rfs CPU (client + every server process): write ${(writeCpuS / gb).toFixed(2)} s per GB, read ${(totalOf(local.split) / gb).toFixed(2)} s per GB, read (network) ${(totalOf(remote.split) / gb).toFixed(2)} s per GB; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`  write CPU s/GB by process (user+system): ${describeSplit(writeSplit, gb)}`);
  const perMiB = (n: number): string => (n / (sizeBytes / MiB)).toFixed(1);
  console.log(
    `  write, the three chunkservers together: ${perMiB(kernelW1.syscalls - kernelW0.syscalls)} system calls (reads and writes) ` +
      `and ${perMiB(kernelW1.switches - kernelW0.switches)} context switches per MiB`,
  );
  console.log(`  read CPU s/GB by process (user+system): ${describeSplit(local.split, gb)}`);
  console.log(`  read (network) CPU s/GB by process (user+system): ${describeSplit(remote.split, gb)}`);

  if (!args['no-kill']) {
    const k0 = performance.now();
    chunkservers[0]!.child.kill('SIGKILL');
    await startChunkserver('c4', 'r1');
    const chunks = async (): Promise<{ readonly replicas: readonly { readonly address: string }[] }[]> => {
      const out: { readonly replicas: readonly { readonly address: string }[] }[] = [];
      let from: number | null = 0;
      while (from !== null) {
        const page = await client.metadata.chunkLocations('/bench/file', { fromIndex: from });
        out.push(...page.chunks);
        from = page.nextIndex;
      }
      return out;
    };
    const victim = chunkservers[0]!.address;
    await waitFor(
      'three copies of every chunk',
      async () => {
        const all = await chunks();
        return all.every((c) => c.replicas.filter((r) => r.address !== victim).length >= 3) ? true : undefined;
      },
      30 * 60_000,
      200,
    );
    const s = (performance.now() - k0) / 1000;
    console.log(`re-replication after killing one chunkserver (a fresh one started): 3 copies of all ${Math.ceil(sizeBytes / chunkBytes)} chunks after ${s.toFixed(1)} s (includes the leader's dead-server timeout)`);
  }
  client.close();
}

try {
  await main();
} catch (e) {
  process.stderr.write(`bench:data failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
} finally {
  if (profileDir !== undefined) {
    // A clean stop writes the chunkservers' profiles.
    const live = children.filter(({ child }) => child.exitCode === null && child.signalCode === null);
    await Promise.all(live.map(({ child }) => new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    })));
  }
  for (const { child } of children) child.kill('SIGKILL');
  if (workDir !== '') await rm(workDir, { recursive: true, force: true });
}
