/**
 * A whole rfs cluster on one machine: metadata servers and chunkservers as child processes
 * (`node --import tsx src/cli/rfs.ts …`), each with its data under one folder. `npm start` runs it
 * (src/cluster/main.ts); tests use `startLocalCluster({ dir, basePort: 0 })` for free ports.
 *
 * Port layout from `basePort` B (default 7001), k = 0, 1, … (at most `serversPerKindMax` of each kind):
 *   metadata k:    client B+k (7001…), metrics B+10+k (7011…), Raft B+20+k (7021…)
 *   chunkserver k: data B+100+k (7101…), metrics B+110+k (7111…)
 * With basePort 0 every port is a free one. The layout is saved in `<dir>/cluster.json` on first start and
 * reused on every restart of the same dir (a chunkserver's address is part of its registration).
 *
 * Lifecycle: every port is checked free first (a busy one is a PORT_IN_USE error naming it); the children
 * start; `startLocalCluster` resolves once a leader leads all metadata members and every chunkserver is live.
 * A child that exits before that fails the start (with its last log lines). After that, an unexpected exit
 * is reported (`onEvent`) and, with `restart`, the child is started again after `restartDelayMs`, up to
 * `quickCrashesMax` crashes in a row that each came within `quickCrashMs` of a start. `stop()` sends
 * SIGTERM to every child, SIGKILL to those still running after `stopTimeoutMs`, and resolves once all have
 * exited. Children also stop when their stdin closes, so even a SIGKILLed parent leaves no server running.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { unaryCall } from '../metadata/proto.ts';
import { allEnvNames } from '../cli/config.ts';
import { parseLogLine } from './log-format.ts';
import type { LogRecord } from './log-format.ts';

export const serversPerKindMax = 9;
export const defaultBasePort = 7001;
/** Log lines kept per child for the report of its death. */
export const lastLinesMax = 20;
/** Log lines per child in a NOT_READY error. */
const notReadyLinesMax = 3;
const layoutFileName = 'cluster.json';
const layoutVersion = 1;
const repoRoot = resolve(import.meta.dirname, '..', '..');
const cliPath = join(repoRoot, 'src', 'cli', 'rfs.ts');
const pollMs = 100;
const probeTimeoutMs = 1_000;

export type LocalClusterErrorCode = 'PORT_IN_USE' | 'LAYOUT_MISMATCH' | 'CHILD_EXITED' | 'NOT_READY' | 'STOPPED';

export class LocalClusterError extends Error {
  constructor(
    readonly code: LocalClusterErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LocalClusterError';
  }
}

export interface LocalClusterOptions {
  /** Data folder; created if missing, kept by `stop()`. */
  readonly dir: string;
  readonly metadataServers?: number;
  readonly chunkservers?: number;
  /** First port of the layout; 0: free ports. Default: the saved layout's, else 7001. */
  readonly basePort?: number;
  /** Address every server binds and advertises. Default 127.0.0.1. */
  readonly host?: string;
  /** Children's pino level. Default 'info'. */
  readonly logLevel?: string;
  /** Chunkservers' heartbeat interval (ms). Default: the chunkserver's (2000). */
  readonly heartbeatMs?: number;
  /** Every log line of every child, parsed. Default: dropped. */
  readonly onLog?: (record: LogRecord) => void;
  /** Children dying, restarting, giving up. */
  readonly onEvent?: (event: ClusterEvent) => void;
  /** Restart a child that exits unexpectedly after the cluster is ready. Default false. */
  readonly restart?: boolean;
  readonly restartDelayMs?: number;
  readonly quickCrashMs?: number;
  readonly quickCrashesMax?: number;
  /** Default 60 000. */
  readonly readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL (ms). Default 10 000. */
  readonly stopTimeoutMs?: number;
  /** Aborting during start-up stops the children and rejects with STOPPED (Ctrl-C before ready). */
  readonly signal?: AbortSignal;
}

export type ClusterEvent =
  | { readonly type: 'exited'; readonly name: string; readonly code: number | null; readonly signal: string | null; readonly lastLines: readonly string[] }
  | { readonly type: 'restarting'; readonly name: string; readonly inMs: number; readonly attempt: number }
  | { readonly type: 'gave-up'; readonly name: string; readonly crashes: number };

export interface MetadataEndpoint {
  readonly id: number;
  readonly name: string;
  /** Client (gRPC) address. */
  readonly address: string;
  readonly raftAddress: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
}

export interface ChunkserverEndpoint {
  readonly name: string;
  /** Data plane (TCP) address. */
  readonly address: string;
  readonly rack: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
}

export interface LocalCluster {
  readonly dir: string;
  readonly metadata: readonly MetadataEndpoint[];
  readonly chunkservers: readonly ChunkserverEndpoint[];
  /** The metadata client addresses (what a client connects to). */
  readonly metadataAddresses: readonly string[];
  /** The leader when the cluster became ready. */
  readonly leaderId: number;
  /** Chunkserver ids by name, as registered with the metadata service. */
  readonly chunkserverIds: ReadonlyMap<string, number>;
  /** The live child process of a server (`meta1`, `cs2`), e.g. to kill it in a test. */
  child(name: string): ChildProcess | undefined;
  /** Pids of every child started so far (including exited ones). */
  pids(): number[];
  stop(): Promise<void>;
}

interface Layout {
  readonly version: number;
  readonly host: string;
  readonly basePort: number;
  readonly metadata: readonly { id: number; client: number; raft: number; metrics: number }[];
  readonly chunkservers: readonly { data: number; metrics: number }[];
}

function count(value: number | undefined, fallback: number, what: string): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n < 1 || n > serversPerKindMax) throw new RangeError(`${what}: 1 to ${serversPerKindMax}, not ${n}`);
  return n;
}

/**
 * Ports a free-port layout (`basePort` 0) picks from: below Linux's default ephemeral range (32768-60999).
 * A port the OS hands out for listen(0) comes from that range, where every outgoing connection also takes its
 * local port, so between the pick and the child's listen some connection could take it (a clean-clone CI run
 * saw a chunkserver fail EADDRINUSE that way while other tests ran); ports below the range are handed out only
 * on request.
 */
const layoutPortMin = 20_000;
const layoutPortMax = 32_000;
/** Random tries below the range before falling back to one the OS picks. */
const layoutPortTries = 64;

/**
 * A port free on `host` now, not one of `taken`: below the ephemeral range when one there is free. Also the
 * tests' `stablePort` (test/metadata/harness.ts), for servers they start, stop and start on chosen ports.
 */
export async function freeLayoutPort(host: string, taken: ReadonlySet<number>): Promise<number> {
  for (let i = 0; i < layoutPortTries; i++) {
    const port = layoutPortMin + Math.floor(Math.random() * (layoutPortMax - layoutPortMin));
    if (taken.has(port)) continue;
    try {
      await checkPortFree(host, port);
      return port;
    } catch {
      // in use: try another
    }
  }
  for (;;) {
    const port = await freePort(host);
    if (!taken.has(port)) return port;
  }
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => resolvePort(port));
    });
  });
}

/** Rejects with PORT_IN_USE if something listens on host:port. */
export async function checkPortFree(host: string, port: number): Promise<void> {
  await new Promise<void>((resolveCheck, reject) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') {
        reject(new LocalClusterError('PORT_IN_USE', `port ${port} in use — is another rfs cluster running? stop it or use --base-port`));
      } else reject(e);
    });
    s.listen(port, host, () => s.close(() => resolveCheck()));
  });
}

async function newLayout(host: string, basePort: number, metadataCount: number, chunkserverCount: number): Promise<Layout> {
  const taken = new Set<number>();
  const port = async (offset: number): Promise<number> => {
    if (basePort !== 0) return basePort + offset;
    const picked = await freeLayoutPort(host, taken);
    taken.add(picked);
    return picked;
  };
  const metadata = [];
  for (let k = 0; k < metadataCount; k++) metadata.push({ id: k + 1, client: await port(k), metrics: await port(10 + k), raft: await port(20 + k) });
  const chunkservers = [];
  for (let k = 0; k < chunkserverCount; k++) chunkservers.push({ data: await port(100 + k), metrics: await port(110 + k) });
  return { version: layoutVersion, host, basePort, metadata, chunkservers };
}

async function loadLayout(dir: string): Promise<Layout | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, layoutFileName), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const layout = JSON.parse(text) as Layout;
  if (layout.version !== layoutVersion || !Array.isArray(layout.metadata) || !Array.isArray(layout.chunkservers)) {
    throw new LocalClusterError('LAYOUT_MISMATCH', `${join(dir, layoutFileName)}: not a layout this version understands`);
  }
  return layout;
}

/** The saved layout when there is one (it must match the options given), else a new one, saved. */
async function resolveLayout(dir: string, options: LocalClusterOptions): Promise<Layout> {
  const saved = await loadLayout(dir);
  const host = options.host ?? saved?.host ?? '127.0.0.1';
  if (saved !== undefined) {
    const mismatch = (what: string, have: unknown, want: unknown): LocalClusterError =>
      new LocalClusterError('LAYOUT_MISMATCH', `${dir} holds a cluster with ${what} ${String(have)}, not ${String(want)}: use a new data dir, or the same settings`);
    if (options.metadataServers !== undefined && options.metadataServers !== saved.metadata.length) throw mismatch('metadata servers', saved.metadata.length, options.metadataServers);
    if (options.chunkservers !== undefined && options.chunkservers !== saved.chunkservers.length) throw mismatch('chunkservers', saved.chunkservers.length, options.chunkservers);
    if (options.basePort !== undefined && options.basePort !== 0 && options.basePort !== saved.basePort) throw mismatch('base port', saved.basePort, options.basePort);
    if (host !== saved.host) throw mismatch('host', saved.host, host);
    return saved;
  }
  const layout = await newLayout(host, options.basePort ?? defaultBasePort, count(options.metadataServers, 3, 'metadataServers'), count(options.chunkservers, 3, 'chunkservers'));
  const path = join(dir, layoutFileName);
  await writeFile(`${path}.tmp`, `${JSON.stringify(layout, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
  return layout;
}

/** The environment of a child: no RFS_* setting leaks from ours (its flags say everything). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of allEnvNames()) delete env[name];
  return env;
}

interface Child {
  readonly name: string;
  readonly args: readonly string[];
  process: ChildProcess | null;
  exited: Promise<void>;
  startedAtMs: number;
  quickCrashes: number;
  readonly lastLines: string[];
  restartTimer: NodeJS.Timeout | null;
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const layout = await resolveLayout(dir, options);
  const host = layout.host;
  const at = (port: number): string => `${host.includes(':') ? `[${host}]` : host}:${port}`;
  for (const m of layout.metadata) for (const p of [m.client, m.raft, m.metrics]) await checkPortFree(host, p);
  for (const c of layout.chunkservers) for (const p of [c.data, c.metrics]) await checkPortFree(host, p);

  const logLevel = options.logLevel ?? 'info';
  const metadata: MetadataEndpoint[] = layout.metadata.map((m) => ({
    id: m.id,
    name: `meta${m.id}`,
    address: at(m.client),
    raftAddress: at(m.raft),
    metricsUrl: `http://${at(m.metrics)}/metrics`,
    dataDir: join(dir, `meta${m.id}`),
  }));
  const metadataAddresses = metadata.map((m) => m.address);
  const chunkservers: ChunkserverEndpoint[] = layout.chunkservers.map((c, k) => ({
    name: `cs${k + 1}`,
    address: at(c.data),
    rack: `rack${k + 1}`,
    metricsUrl: `http://${at(c.metrics)}/metrics`,
    dataDir: join(dir, `cs${k + 1}`),
  }));
  const peers = layout.metadata.map((m) => `${m.id}=${at(m.client)}/${m.raft}`).join(',');
  const children: Child[] = [
    ...metadata.map((m, k) => ({
      name: m.name,
      args: ['metadata', '--id', String(m.id), '--peers', peers, '--data-dir', m.dataDir, '--metrics', at(layout.metadata[k]!.metrics), '--log-level', logLevel],
    })),
    ...chunkservers.map((c, k) => ({
      name: c.name,
      args: [
        'chunkserver', '--data-dir', c.dataDir, '--metadata', metadataAddresses.join(','), '--rack', c.rack, '--listen', c.address,
        '--metrics', at(layout.chunkservers[k]!.metrics), '--log-level', logLevel,
        ...(options.heartbeatMs !== undefined ? ['--heartbeat-ms', String(options.heartbeatMs)] : []),
      ],
    })),
  ].map((c) => ({ ...c, process: null, exited: Promise.resolve(), startedAtMs: 0, quickCrashes: 0, lastLines: [], restartTimer: null }));

  const allPids: number[] = [];
  let ready = false;
  let stopping = false;
  let startupFailure: LocalClusterError | null = null;
  const restartDelayMs = options.restartDelayMs ?? 1_000;
  const quickCrashMs = options.quickCrashMs ?? 10_000;
  const quickCrashesMax = options.quickCrashesMax ?? 5;

  const remember = (child: Child, line: string): void => {
    child.lastLines.push(line);
    if (child.lastLines.length > lastLinesMax) child.lastLines.shift();
  };

  const launch = (child: Child): void => {
    const proc = spawn(process.execPath, ['--import', 'tsx', cliPath, ...child.args, '--stop-on-stdin-end'], {
      cwd: repoRoot,
      env: childEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.process = proc;
    child.startedAtMs = Date.now();
    if (proc.pid !== undefined) allPids.push(proc.pid);
    for (const [stream, name] of [[proc.stdout, 'stdout'], [proc.stderr, 'stderr']] as const) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        remember(child, line);
        options.onLog?.(parseLogLine(child.name, line, name, Date.now()));
      });
    }
    // A parent exiting closes this pipe; the child stops then (--stop-on-stdin-end). Errors: child gone.
    proc.stdin.on('error', () => {});
    child.exited = new Promise((resolveExit) => {
      proc.once('error', (e) => {
        remember(child, `spawn failed: ${e.message}`);
      });
      proc.once('close', (code, signal) => {
        child.process = null;
        resolveExit();
        onExit(child, code, signal);
      });
    });
  };

  const onExit = (child: Child, code: number | null, signal: string | null): void => {
    if (stopping) return;
    options.onEvent?.({ type: 'exited', name: child.name, code, signal, lastLines: [...child.lastLines] });
    if (!ready) {
      startupFailure ??= new LocalClusterError(
        'CHILD_EXITED',
        `${child.name} exited during start-up (${signal ?? `code ${code}`}); its last lines:\n${child.lastLines.join('\n')}`,
      );
      return;
    }
    if (options.restart !== true) return;
    child.quickCrashes = Date.now() - child.startedAtMs < quickCrashMs ? child.quickCrashes + 1 : 1;
    if (child.quickCrashes > quickCrashesMax) {
      options.onEvent?.({ type: 'gave-up', name: child.name, crashes: child.quickCrashes - 1 });
      return;
    }
    options.onEvent?.({ type: 'restarting', name: child.name, inMs: restartDelayMs, attempt: child.quickCrashes });
    child.restartTimer = setTimeout(() => {
      child.restartTimer = null;
      if (!stopping) launch(child);
    }, restartDelayMs);
  };

  /** SIGTERM to a group, SIGKILL to whoever is left after the timeout; resolves when all have exited. */
  const stopGroup = async (group: readonly Child[]): Promise<void> => {
    for (const child of group) child.process?.kill('SIGTERM');
    const all = Promise.all(group.map((c) => c.exited));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolveTimeout) => {
        timer = setTimeout(() => resolveTimeout(true), options.stopTimeoutMs ?? 10_000);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) for (const child of group) child.process?.kill('SIGKILL');
    await all;
  };

  // Chunkservers first, so they do not spend their last moments retrying a metadata service that is gone.
  const stop = async (): Promise<void> => {
    stopping = true;
    for (const child of children) {
      if (child.restartTimer !== null) clearTimeout(child.restartTimer);
      child.restartTimer = null;
    }
    await stopGroup(children.filter((c) => c.name.startsWith('cs')));
    await stopGroup(children.filter((c) => c.name.startsWith('meta')));
  };

  for (const child of children) launch(child);
  const onAbort = (): void => {
    startupFailure ??= new LocalClusterError('STOPPED', 'stopped during start-up');
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const { leaderId, chunkserverIds } = await waitReady(options.readyTimeoutMs ?? 60_000);
    ready = true;
    return {
      dir,
      metadata,
      chunkservers,
      metadataAddresses,
      leaderId,
      chunkserverIds,
      child: (name) => children.find((c) => c.name === name)?.process ?? undefined,
      pids: () => [...allPids],
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }

  async function waitReady(timeoutMs: number): Promise<{ leaderId: number; chunkserverIds: Map<string, number> }> {
    const deadline = Date.now() + timeoutMs;
    let waitingFor = 'a leader';
    for (;;) {
      if (startupFailure !== null) throw startupFailure;
      const leader = await findLeader();
      if (leader !== undefined) {
        waitingFor = `${chunkservers.length} live chunkservers`;
        const ids = await liveChunkservers(leader.address);
        if (ids !== undefined) return { leaderId: leader.id, chunkserverIds: ids };
      }
      if (Date.now() > deadline) {
        const tails = children.map((c) => `${c.name}:\n${c.lastLines.slice(-notReadyLinesMax).map((l) => `  ${l}`).join('\n')}`);
        throw new LocalClusterError('NOT_READY', `no ready cluster after ${timeoutMs} ms (waiting for ${waitingFor}); last lines:\n${tails.join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  async function findLeader(): Promise<MetadataEndpoint | undefined> {
    for (const m of metadata) {
      try {
        const s = await unaryCall(m.address, 'ClusterStatus', {}, probeTimeoutMs);
        const members = Array.isArray(s['members']) ? s['members'] : [];
        if (s['role'] === 'leader' && members.length === metadata.length) return m;
      } catch {
        // not up yet
      }
    }
    return undefined;
  }

  async function liveChunkservers(leaderAddress: string): Promise<Map<string, number> | undefined> {
    try {
      const r = await unaryCall(leaderAddress, 'ListChunkservers', {}, probeTimeoutMs);
      const list = (Array.isArray(r['chunkservers']) ? r['chunkservers'] : []) as { id: number | string; address: string; state: string }[];
      const ids = new Map<string, number>();
      for (const c of chunkservers) {
        const entry = list.find((e) => e.address === c.address && e.state === 'live');
        if (entry === undefined) return undefined;
        ids.set(c.name, Number(entry.id));
      }
      return ids;
    } catch {
      return undefined;
    }
  }
}
