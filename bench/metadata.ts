/**
 * npm run bench:metadata [-- --seconds N] [--clients 1,64,256] [--files N] [--no-etcd] [--no-batch] [--no-reads]
 *
 * Metadata operations per second of a local 3-server rfs metadata cluster against a local 3-member etcd
 * cluster, both on loopback, both with their default durability (rfs: RocksDB, every Raft write synced;
 * etcd: WAL fsync), both driven over @grpc/grpc-js from this process:
 *   - writes: rfs `Create` of an empty file (unique paths spread over 16 directories) against etcd `Put`
 *     of the same key with an empty value;
 *   - reads: rfs `Stat` (linearizable, the default) of a file created earlier against etcd `Range` of one
 *     key with serializable=false (linearizable).
 * rfs writes go through one SubmitBatcher shared by all of the process's sessions (src/metadata/client.ts),
 * as a production client library does: each logical client keeps its own session and one create
 * outstanding, and the creates queued while earlier Submit calls are in flight travel together in one call
 * (no timer; one client alone sends one create per call). `--no-batch` sends one unary Create per
 * operation instead (the figures before client batching). etcd puts stay one unary Put each.
 * Each row runs C concurrent clients (each keeps one operation outstanding) for --seconds and prints
 * ops/s, p50 and p99 latency of both, the ratio rfs/etcd of ops/s, and the CPU time all three servers of
 * each system spent per operation (µs; from /proc/<pid>/stat, so it holds up on a busy machine), and the
 * CPU time this process, the load generator (`drv`), spent per operation of each system: it shares the
 * machine's cores with the servers.
 *
 * The rfs servers are separate processes (`node --import tsx src/cli/rfs.ts metadata …`), the etcd members
 * are `etcd` processes (Debian's etcd-server; installed with apt-get when missing). Free loopback ports,
 * temporary data directories; every process and directory is removed at the end, also on error or Ctrl-C.
 *
 * --files N (optional): instead of the comparison, builds a tree of N empty files (1000 per directory, each
 * directory filled by one batched CreateMany) in the rfs cluster with 16 concurrent clients, and reports the
 * rate and each server's peak RSS (VmHWM); every 10 s, each server's RSS and its own commit and applied index
 * (a member applying far behind the commit index shows there).
 * --server-logs DIR (optional): each rfs server's output (pino JSON, at --server-log-level, default warn) is
 * kept in DIR/<name>.log, which outlives the run (the data directories do not).
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { ensureDebianPackages } from '../jepsen/harness/apt.ts';
import { createWriteStream, mkdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { MetadataClient, SubmitBatcher } from '../src/metadata/client.ts';
import { freePort, processCpuSeconds, sleep, waitFor } from './util.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    clients: { type: 'string', default: '1,64,256' },
    files: { type: 'string' },
    'no-etcd': { type: 'boolean', default: false },
    'no-batch': { type: 'boolean', default: false },
    /** Creates only (e.g. to profile the write path with RFS_BENCH_NODE_ARGS="--cpu-prof …"). */
    'no-reads': { type: 'boolean', default: false },
    'server-logs': { type: 'string' },
    'server-log-level': { type: 'string', default: 'warn' },
  },
});
const runSeconds = Number(args.seconds);
const clientCounts = (args.clients ?? '1,64,256').split(',').map(Number);
const dirsPerRun = 16;

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

// ---------------------------------------------------------------------------------------------- cleanup

const children: ChildProcess[] = [];
const tempDirs: string[] = [];
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------- helpers

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}


/** Where servers' output goes (--server-logs), and at which level. */
const serverLogs = { dir: args['server-logs'], level: args['server-log-level'] ?? 'warn' };

function launch(name: string, command: string, argv: string[], cwd: string): ChildProcess {
  const logDir = serverLogs.dir;
  const child = spawn(command, argv, { cwd, stdio: ['ignore', logDir === undefined ? 'ignore' : 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  if (logDir !== undefined) {
    mkdirSync(logDir, { recursive: true });
    const log = createWriteStream(join(logDir, `${name.replace(/\s+/g, '-')}.log`), { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  }
  child.once('exit', (code, signal) => {
    if (cleaning === undefined)
      process.stderr.write(`${name} exited (${code ?? signal}) unexpectedly:\n${stderr}\n`);
  });
  return child;
}

async function peakRssKiB(pid: number): Promise<number> {
  return (await rssKiB(pid)).peak;
}

/** Resident set size now (VmRSS) and at its peak (VmHWM) in KiB; NaN for a process that is gone. */
async function rssKiB(pid: number): Promise<{ now: number; peak: number }> {
  let status = '';
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return { now: NaN, peak: NaN };
  }
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
    return m ? Number(m[1]) : NaN;
  };
  return { now: field('VmRSS'), peak: field('VmHWM') };
}

const mib = (kib: number): string => (Number.isFinite(kib) ? (kib / 1024).toFixed(0) : '-');

// ---------------------------------------------------------------------------------------------- rfs

interface RfsCluster {
  readonly addresses: string[];
  readonly pids: Map<number, number>;
  readonly admin: MetadataClient;
}

async function startRfs(nodeArgs: readonly string[] = []): Promise<RfsCluster> {
  const dir = await tempDir('rfs-bench-metadata-');
  const ids = [1, 2, 3];
  const ports = new Map<number, { client: number; raft: number }>();
  for (const id of ids) ports.set(id, { client: await freePort(), raft: await freePort() });
  const peers = ids.map((id) => `${id}=127.0.0.1:${ports.get(id)!.client}/${ports.get(id)!.raft}`).join(',');
  const pids = new Map<number, number>();
  for (const id of ids) {
    const child = launch(
      `rfs metadata ${id}`,
      process.execPath,
      [
        // Extra node flags for the servers, e.g. RFS_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
        ...(process.env['RFS_BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
        ...nodeArgs,
        '--import',
        'tsx',
        'src/cli/rfs.ts',
        'metadata',
        '--id',
        String(id),
        '--listen',
        `127.0.0.1:${ports.get(id)!.client}`,
        '--peers',
        peers,
        '--data-dir',
        join(dir, `m${id}`),
        '--log-level',
        serverLogs.level,
      ],
      root,
    );
    pids.set(id, child.pid!);
  }
  const addresses = ids.map((id) => `127.0.0.1:${ports.get(id)!.client}`);
  // Generous: on a loaded machine (load average 30 on 2 cores) three servers took over 30 s to elect a leader.
  const admin = await waitFor(
    'rfs session',
    () => MetadataClient.connect(addresses, { retryDeadlineMs: 2_000 }),
    120_000,
  );
  await admin.mkdir('/bench', { parents: true });
  return { addresses, pids, admin };
}

/**
 * Each server's own view, from its ClusterStatus: `id role term commit/applied` (applied far below commit:
 * the member applies slower than the cluster commits; '-': no answer within 2 s).
 */
async function raftProgress(cluster: RfsCluster): Promise<string> {
  const views = await Promise.all(
    cluster.addresses.map(async (address, i) => {
      try {
        const st = await Promise.race([
          cluster.admin.clusterStatus(address),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2_000).unref()),
        ]);
        return `${String(st['id'])} ${String(st['role'])} t${String(st['term'])} ${String(st['commitIndex'])}/${String(st['appliedIndex'])}`;
      } catch {
        return `#${i + 1} -`;
      }
    }),
  );
  return `commit/applied: ${views.join(', ')}`;
}

async function rfsLeaderId(cluster: RfsCluster): Promise<number> {
  for (const address of cluster.addresses) {
    try {
      const status = await cluster.admin.clusterStatus(address);
      const leader = Number(status['leaderId']);
      if (leader > 0) return leader;
    } catch {
      // try the next
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------- etcd

type Callback<T> = (e: grpc.ServiceError | null, r?: T) => void;
interface KvStub extends grpc.Client {
  Put(req: { key: Buffer; value: Buffer }, opts: grpc.CallOptions, cb: Callback<unknown>): void;
  Range(
    req: { key: Buffer; serializable: boolean },
    opts: grpc.CallOptions,
    cb: Callback<{ kvs?: unknown[] }>,
  ): void;
}
interface MaintenanceStub extends grpc.Client {
  Status(
    req: object,
    opts: grpc.CallOptions,
    cb: Callback<{ header?: { memberId?: string }; leader?: string }>,
  ): void;
}

const etcdProto = grpc.loadPackageDefinition(
  loadSync(join(here, 'etcd-kv.proto'), { longs: String, keepCase: false, defaults: false }),
) as unknown as {
  etcdserverpb: {
    KV: new (address: string, creds: grpc.ChannelCredentials) => KvStub;
    Maintenance: new (address: string, creds: grpc.ChannelCredentials) => MaintenanceStub;
  };
};

function unary<T>(fn: (cb: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((e, r) => (e !== null ? reject(e) : resolve(r as T))));
}

function ensureEtcd(): boolean {
  return ensureDebianPackages(
    ['etcd-server'],
    () => spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0,
    (line) => process.stderr.write(`${line}\n`),
  );
}

interface EtcdCluster {
  readonly pids: number[];
  readonly leader: string;
  readonly version: string;
  readonly kv: KvStub;
}

async function startEtcd(): Promise<EtcdCluster> {
  const dir = await tempDir('rfs-bench-etcd-');
  const names = ['e1', 'e2', 'e3'];
  const ports = new Map<string, { client: number; peer: number }>();
  for (const n of names) ports.set(n, { client: await freePort(), peer: await freePort() });
  const initialCluster = names.map((n) => `${n}=http://127.0.0.1:${ports.get(n)!.peer}`).join(',');
  const pids: number[] = [];
  for (const n of names) {
    const { client, peer } = ports.get(n)!;
    const child = launch(
      `etcd ${n}`,
      'etcd',
      [
        '--name',
        n,
        '--data-dir',
        join(dir, n),
        '--listen-client-urls',
        `http://127.0.0.1:${client}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${client}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peer}`,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-token',
        'rfs-bench',
        '--initial-cluster-state',
        'new',
        '--logger',
        'zap',
        '--log-level',
        'error',
      ],
      dir,
    );
    pids.push(child.pid!);
  }
  const addresses = names.map((n) => `127.0.0.1:${ports.get(n)!.client}`);
  // Clients talk to the leader, as rfs clients do (a follower would forward each proposal: one more hop).
  const found = await waitFor('etcd leader', async () => {
    for (const address of addresses) {
      const m = new etcdProto.etcdserverpb.Maintenance(address, grpc.credentials.createInsecure());
      try {
        const s = await unary<{ header?: { memberId?: string }; leader?: string; version?: string }>((cb) =>
          m.Status({}, { deadline: Date.now() + 1_000 }, cb),
        );
        if (s.leader !== undefined && s.leader !== '0' && s.leader === s.header?.memberId)
          return { address, version: s.version ?? '?' };
      } finally {
        m.close();
      }
    }
    return undefined;
  });
  const kv = new etcdProto.etcdserverpb.KV(found.address, grpc.credentials.createInsecure());
  await waitFor('etcd put', () =>
    unary<unknown>((cb) =>
      kv.Put({ key: Buffer.from('/bench'), value: Buffer.alloc(0) }, { deadline: Date.now() + 2_000 }, cb),
    ),
  );
  return { pids, leader: found.address, version: found.version, kv };
}

// ---------------------------------------------------------------------------------------------- driver

interface Result {
  /** CPU time the servers (all three) spent per completed operation, in microseconds. */
  readonly cpuUsPerOp?: number;
  /**
   * CPU time this process (the load generator: clients, client library, gRPC) spent per completed
   * operation, in microseconds. It runs on the same cores as the servers.
   */
  readonly driverCpuUsPerOp?: number;
  readonly ops: number;
  readonly errors: number;
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly firstError?: string;
}

/** `clients` loops, each keeping one `op` outstanding, for `seconds`. */
async function drive(
  clients: number,
  seconds: number,
  op: (client: number, n: number) => Promise<void>,
): Promise<Result> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let n = 0; performance.now() < end; n++) {
        const t0 = performance.now();
        try {
          await op(client, n);
          latencies.push(performance.now() - t0);
        } catch (e) {
          errors++;
          firstError ??= e instanceof Error ? e.message : String(e);
        }
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return {
    ops: latencies.length,
    errors,
    opsPerSec: latencies.length / elapsed,
    p50: q(0.5),
    p99: q(0.99),
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

const filePath = (run: string, client: number, n: number): string =>
  `/bench/${run}/d${(client + n) % dirsPerRun}/c${client}-${n}`;

async function rfsWrites(cluster: RfsCluster, clients: number, created: string[]): Promise<Result> {
  const run = `w${clients}`;
  for (let d = 0; d < dirsPerRun; d++) await cluster.admin.mkdir(`/bench/${run}/d${d}`, { parents: true });
  // One session per client (sessions share the gRPC connection, as grpc-js pools subchannels), and one
  // batcher for all of them unless --no-batch.
  const batcher = args['no-batch'] ? undefined : new SubmitBatcher();
  const sessions = await Promise.all(
    Array.from({ length: clients }, () =>
      MetadataClient.connect(cluster.addresses, batcher === undefined ? {} : { batcher }),
    ),
  );
  try {
    const r = await drive(clients, runSeconds, async (client, n) => {
      const path = filePath(run, client, n);
      await sessions[client]!.create(path, { exclusive: true });
      created.push(path);
    });
    if (batcher !== undefined && batcher.calls > 0)
      process.stderr.write(`  (${clients} clients: ${(batcher.items / batcher.calls).toFixed(1)} creates per Submit call)\n`);
    return r;
  } finally {
    for (const s of sessions) s.close();
    batcher?.close();
  }
}

async function rfsReads(cluster: RfsCluster, clients: number, created: string[]): Promise<Result> {
  const sessions = await Promise.all(
    Array.from({ length: clients }, () => MetadataClient.connect(cluster.addresses)),
  );
  try {
    return await drive(clients, runSeconds, async (client) => {
      const path = created[Math.floor(Math.random() * created.length)]!;
      const info = await sessions[client]!.stat(path);
      if (info.type !== 'file') throw new Error(`${path}: not a file`);
    });
  } finally {
    for (const s of sessions) s.close();
  }
}

async function etcdWrites(etcd: EtcdCluster, clients: number, created: string[]): Promise<Result> {
  const run = `w${clients}`;
  const empty = Buffer.alloc(0);
  return drive(clients, runSeconds, async (client, n) => {
    const key = filePath(run, client, n);
    await unary<unknown>((cb) =>
      etcd.kv.Put({ key: Buffer.from(key), value: empty }, { deadline: Date.now() + 10_000 }, cb),
    );
    created.push(key);
  });
}

async function etcdReads(etcd: EtcdCluster, clients: number, created: string[]): Promise<Result> {
  return drive(clients, runSeconds, async () => {
    const key = created[Math.floor(Math.random() * created.length)]!;
    const r = await unary<{ kvs?: unknown[] }>((cb) =>
      etcd.kv.Range({ key: Buffer.from(key), serializable: false }, { deadline: Date.now() + 10_000 }, cb),
    );
    if ((r.kvs ?? []).length !== 1) throw new Error(`${key}: not found`);
  });
}

/** CPU milliseconds (user + system) the processes have used so far. */
async function cpuMs(pids: readonly number[]): Promise<number> {
  let seconds = 0;
  for (const pid of pids) {
    const { user, system } = await processCpuSeconds(pid);
    seconds += user + system;
  }
  return seconds * 1000;
}

/** Runs a measurement and adds the servers' CPU time per operation: robust to a busy machine. */
async function withCpu(pids: readonly number[], run: () => Promise<Result>): Promise<Result> {
  const before = await cpuMs(pids);
  const self0 = process.cpuUsage();
  const r = await run();
  const used = (await cpuMs(pids)) - before;
  const selfUsed = process.cpuUsage(self0);
  return {
    ...r,
    cpuUsPerOp: (used * 1000) / Math.max(1, r.ops),
    driverCpuUsPerOp: (selfUsed.user + selfUsed.system) / Math.max(1, r.ops),
  };
}

// ---------------------------------------------------------------------------------------------- output

const f0 = (x: number, w: number): string => (Number.isFinite(x) ? x.toFixed(0) : '-').padStart(w);
const f2 = (x: number, w: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-').padStart(w);

function row(op: string, clients: number, rfs: Result, etcd: Result | undefined): string {
  const e = etcd ?? { opsPerSec: NaN, p50: NaN, p99: NaN, ops: 0, errors: 0 };
  return (
    `  ${op.padEnd(13)}${String(clients).padStart(7)}` +
    `${f0(rfs.opsPerSec, 11)}${f2(rfs.p50, 9)}${f2(rfs.p99, 9)}` +
    `${f0(e.opsPerSec, 12)}${f2(e.p50, 9)}${f2(e.p99, 9)}` +
    `${f2(rfs.opsPerSec / e.opsPerSec, 8)}` +
    `${f0(rfs.cpuUsPerOp ?? NaN, 10)}${f0(e.cpuUsPerOp ?? NaN, 10)}` +
    `${f0(rfs.driverCpuUsPerOp ?? NaN, 9)}${f0(e.driverCpuUsPerOp ?? NaN, 10)}`
  );
}

function reportErrors(what: string, r: Result | undefined): void {
  if (r !== undefined && r.errors > 0)
    process.stderr.write(`  ${what}: ${r.errors} errors, first: ${r.firstError}\n`);
}

// ---------------------------------------------------------------------------------------------- main

async function compare(): Promise<void> {
  const withEtcd = !args['no-etcd'] && ensureEtcd();
  if (!withEtcd) process.stderr.write('etcd unavailable: printing rfs figures only\n');
  const rfs = await startRfs();
  const etcd = withEtcd ? await startEtcd() : undefined;
  console.log(
    `rfs metadata: 3 servers (separate processes, RocksDB, fsync on), leader ${await rfsLeaderId(rfs)}` +
      (etcd ? `; etcd ${etcd.version}: 3 members, clients on the leader ${etcd.leader}` : '; etcd: not run'),
  );
  console.log(
    `${runSeconds} s per cell, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}`,
  );
  console.log('');
  console.log(
    '  op           clients  rfs ops/s  p50 ms   p99 ms  etcd ops/s  p50 ms   p99 ms   ratio' +
      '  rfs CPU  etcd CPU  rfs drv  etcd drv',
  );
  for (const clients of clientCounts) {
    const rfsCreated: string[] = [];
    const etcdCreated: string[] = [];
    const rfsPids = [...rfs.pids.values()];
    const rw = await withCpu(rfsPids, () => rfsWrites(rfs, clients, rfsCreated));
    const ew = etcd ? await withCpu(etcd.pids, () => etcdWrites(etcd, clients, etcdCreated)) : undefined;
    console.log(row('create / put', clients, rw, ew));
    reportErrors('rfs create', rw);
    reportErrors('etcd put', ew);
    if (args['no-reads']) continue;
    const rr = await withCpu(rfsPids, () => rfsReads(rfs, clients, rfsCreated));
    const er = etcd ? await withCpu(etcd.pids, () => etcdReads(etcd, clients, etcdCreated)) : undefined;
    console.log(row('stat / get', clients, rr, er));
    reportErrors('rfs stat', rr);
    reportErrors('etcd get', er);
  }
  etcd?.kv.close();
  rfs.admin.close();
}

/**
 * How long a bulk-load step keeps retrying through leader changes: on a loaded machine elections came in
 * bursts of several seconds (a 10M-file run failed after 3 s of NOT_LEADER).
 */
const bulkRetryDeadlineMs = 60_000;

/** Retries an idempotent bulk-load step after a timeout or unavailability (a leader change), up to a deadline. */
async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + bulkRetryDeadlineMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline || !/UNAVAILABLE|TIMEOUT|DEADLINE|NOT_LEADER/.test(String(e))) throw e;
      await sleep(500);
    }
  }
}

/** The heap cap of the servers in the --files run (the documented production setting, see README). */
const treeHeapMiB = 256;

async function buildTree(files: number): Promise<void> {
  const rfs = await startRfs([`--max-old-space-size=${treeHeapMiB}`]);
  const leader = await rfsLeaderId(rfs);
  const perDir = 1000;
  const concurrency = 16;
  const dirs = Math.ceil(files / perDir);
  console.log(
    `rfs metadata: 3 servers, leader ${leader}; building ${files} files in ${dirs} directories ` +
      `(mkdir, then one CreateMany of up to ${perDir} names per directory; ${concurrency} clients; ` +
      `servers run with --max-old-space-size=${treeHeapMiB})`,
  );
  const start = performance.now();
  const sessions = await Promise.all(
    Array.from({ length: concurrency }, () => MetadataClient.connect(rfs.addresses)),
  );
  let next = 0;
  let done = 0;
  const progress = setInterval(() => {
    const s = (performance.now() - start) / 1000;
    // RSS now / peak of every server, leader first (a server that exited shows '-').
    const ids = [leader, ...[...rfs.pids.keys()].filter((id) => id !== leader)];
    void Promise.all([Promise.all(ids.map((id) => rssKiB(rfs.pids.get(id)!))), raftProgress(rfs)]).then(([rss, raft]) =>
      process.stderr.write(
        `  ${done} files, ${(done / s).toFixed(0)}/s, RSS now/peak MiB: ` +
          rss.map((r, i) => `${ids[i]}${i === 0 ? ' (leader)' : ''} ${mib(r.now)}/${mib(r.peak)}`).join(', ') +
          `; ${raft}\n`,
      ),
    );
  }, 10_000);
  try {
    await Promise.all(
      sessions.map(async (session) => {
        for (;;) {
          const d = next++;
          if (d >= dirs) return;
          const count = Math.min(perDir, files - d * perDir);
          await retrying(() => session.mkdir(`/tree/d${d}`, { parents: true }));
          await retrying(async () => {
            try {
              await session.createMany(
                `/tree/d${d}`,
                Array.from({ length: count }, (_, i) => `f${i}`),
              );
            } catch (e) {
              // A retry of a createMany whose first attempt was applied (outcome unknown to the client).
              if ((e as { code?: string }).code !== 'EEXIST') throw e;
              const st = await session.stat(`/tree/d${d}`);
              if (st.childCount !== count) throw e;
            }
          });
          done += count;
        }
      }),
    );
  } finally {
    clearInterval(progress);
    for (const s of sessions) s.close();
  }
  const seconds = (performance.now() - start) / 1000;
  const check = await rfs.admin.stat(`/tree/d${dirs - 1}`);
  console.log(
    `  ${files} files in ${seconds.toFixed(1)} s: ${(files / seconds).toFixed(0)} files/s (last dir has ${check.childCount} entries)`,
  );
  for (const [id, pid] of rfs.pids) {
    const kib = await peakRssKiB(pid);
    console.log(
      `  server ${id}${id === leader ? ' (leader)' : ''}: peak RSS (VmHWM) ${(kib / 1024).toFixed(0)} MiB`,
    );
  }
  rfs.admin.close();
}

try {
  if (args.files !== undefined) await buildTree(Number(args.files));
  else await compare();
} catch (e) {
  process.stderr.write(`bench:metadata failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
