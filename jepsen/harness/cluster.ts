/**
 * The cluster under test: 5 metadata servers and 3 chunkservers, each a separate OS process
 * (`node --import tsx src/cli/rfs.ts metadata|chunkserver …`) started inside its own network namespace
 * (`ip netns exec <ns> …`, which execs, so the child's pid is the server's). Every server binds its own
 * address, so all use the same ports. Logs go to `<logDir>/<name>.log` (appended across restarts, with a
 * marker line per start).
 *
 * The nemeses act through this object: `kill` (SIGKILL), `pause`/`resume` (SIGSTOP/SIGCONT), `start`
 * (optionally with a skewed clock through libfaketime), `wipe` (delete a server's data dir).
 * Children get a stdin pipe and `--stop-on-stdin-end`, so a harness that dies leaves no server running
 * (a paused one stops once resumed; the next run's leftover cleanup resumes and kills it).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { unaryCall } from '../../src/metadata/proto.ts';
import { plantedBugsEnvFor } from '../../src/cli/planted-bugs.ts';
import { netNode } from './net.ts';
import type { NetNode } from './net.ts';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const cliPath = join(repoRoot, 'src', 'cli', 'rfs.ts');
export const metadataClientPort = 7001;
export const metadataMetricsPort = 7011;
export const metadataRaftPort = 7021;
export const chunkserverDataPort = 7101;
export const chunkserverMetricsPort = 7111;
/** libfaketime as Debian installs it (`apt-get install -y faketime libfaketime`); the MT build for threads. */
export const libfaketimePath = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const statusTimeoutMs = 2_000;
const pollMs = 250;
const exitWaitMs = 10_000;

export type ServerKind = 'metadata' | 'chunkserver';

export interface Server {
  readonly name: string;
  readonly kind: ServerKind;
  /** Metadata: Raft id 1..5. Chunkserver: 1..3. */
  readonly id: number;
  readonly net: NetNode;
  readonly dataDir: string;
  readonly logPath: string;
  /** Metadata: client gRPC address. Chunkserver: data plane address. */
  readonly address: string;
}

export interface ClusterOptions {
  readonly dataDir: string;
  readonly logDir: string;
  readonly metadataServers?: number;
  readonly chunkservers?: number;
  readonly logLevel?: string;
  readonly heartbeatMs?: number;
  /** Planted bugs switched on in every server process (src/cli/planted-bugs.ts); default none. */
  readonly bugs?: readonly string[];
}

interface Running {
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  paused: boolean;
  readonly skewSeconds: number;
}

export class ClusterError extends Error {
  constructor(
    readonly code: 'NOT_READY' | 'UNKNOWN_SERVER' | 'NO_FAKETIME',
    message: string,
  ) {
    super(message);
    this.name = 'ClusterError';
  }
}

export class Cluster {
  readonly metadata: readonly Server[];
  readonly chunkservers: readonly Server[];
  readonly servers: readonly Server[];
  private readonly running = new Map<string, Running>();
  private readonly logLevel: string;
  private readonly heartbeatMs: number | undefined;
  private readonly peers: string;
  private stopping = false;
  private readonly bugEnv: Readonly<Record<string, string>>;

  constructor(options: ClusterOptions) {
    const metadataCount = options.metadataServers ?? 5;
    const chunkserverCount = options.chunkservers ?? 3;
    this.logLevel = options.logLevel ?? 'info';
    this.heartbeatMs = options.heartbeatMs;
    this.bugEnv = plantedBugsEnvFor(options.bugs ?? []);
    mkdirSync(options.logDir, { recursive: true });
    const make = (kind: ServerKind, id: number, index: number): Server => {
      const name = kind === 'metadata' ? `meta${id}` : `cs${id}`;
      const net = netNode(name, index);
      const port = kind === 'metadata' ? metadataClientPort : chunkserverDataPort;
      return { name, kind, id, net, dataDir: join(options.dataDir, name), logPath: join(options.logDir, `${name}.log`), address: `${net.address}:${port}` };
    };
    this.metadata = Array.from({ length: metadataCount }, (_, k) => make('metadata', k + 1, k + 1));
    this.chunkservers = Array.from({ length: chunkserverCount }, (_, k) => make('chunkserver', k + 1, metadataCount + k + 1));
    this.servers = [...this.metadata, ...this.chunkservers];
    this.peers = this.metadata.map((m) => `${m.id}=${m.address}/${metadataRaftPort}`).join(',');
  }

  get metadataAddresses(): string[] {
    return this.metadata.map((m) => m.address);
  }

  server(name: string): Server {
    const s = this.servers.find((x) => x.name === name);
    if (s === undefined) throw new ClusterError('UNKNOWN_SERVER', `no server ${name}`);
    return s;
  }

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  isPaused(name: string): boolean {
    return this.running.get(name)?.paused ?? false;
  }

  skewOf(name: string): number {
    return this.running.get(name)?.skewSeconds ?? 0;
  }

  pid(name: string): number | undefined {
    return this.running.get(name)?.process.pid;
  }

  private args(s: Server): string[] {
    const a = s.net.address;
    if (s.kind === 'metadata') {
      return ['metadata', '--id', String(s.id), '--peers', this.peers, '--data-dir', s.dataDir, '--metrics', `${a}:${metadataMetricsPort}`, '--log-level', this.logLevel];
    }
    return [
      'chunkserver', '--data-dir', s.dataDir, '--metadata', this.metadataAddresses.join(','), '--rack', `rack${s.id}`, '--listen', s.address,
      '--metrics', `${a}:${chunkserverMetricsPort}`, '--log-level', this.logLevel,
      ...(this.heartbeatMs !== undefined ? ['--heartbeat-ms', String(this.heartbeatMs)] : []),
    ];
  }

  /** Starts the server if it is not running; `skewSeconds` ≠ 0 runs it under libfaketime with that offset. */
  start(name: string, options: { skewSeconds?: number } = {}): void {
    if (this.stopping || this.running.has(name)) return;
    const s = this.server(name);
    const skewSeconds = options.skewSeconds ?? 0;
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith('RFS_')) delete env[key];
    Object.assign(env, this.bugEnv);
    if (skewSeconds !== 0) {
      if (!existsSync(libfaketimePath)) throw new ClusterError('NO_FAKETIME', `clock skew needs libfaketime (${libfaketimePath}): apt-get install -y faketime libfaketime`);
      env['LD_PRELOAD'] = libfaketimePath;
      // A fixed offset from the real clock, for wall and monotonic clocks alike.
      env['FAKETIME'] = `${skewSeconds >= 0 ? '+' : ''}${skewSeconds}s`;
      env['FAKETIME_DONT_RESET'] = '1';
    }
    const log = openSync(s.logPath, 'a');
    writeSync(log, `=== jepsen: start ${name} at ${new Date().toISOString()}${skewSeconds !== 0 ? ` (clock skew ${skewSeconds} s)` : ''}\n`);
    const proc = spawn('ip', ['netns', 'exec', s.net.namespace, process.execPath, '--import', 'tsx', cliPath, ...this.args(s), '--stop-on-stdin-end'], {
      cwd: repoRoot,
      env,
      stdio: ['pipe', log, log],
    });
    closeSync(log);
    proc.stdin?.on('error', () => {});
    const exited = new Promise<void>((resolveExit) => {
      proc.once('error', () => resolveExit());
      proc.once('close', () => {
        if (this.running.get(name)?.process === proc) this.running.delete(name);
        resolveExit();
      });
    });
    this.running.set(name, { process: proc, exited, paused: false, skewSeconds });
  }

  /** SIGKILL; resolves once the process is gone. */
  async kill(name: string): Promise<void> {
    const r = this.running.get(name);
    if (r === undefined) return;
    r.process.kill('SIGKILL');
    await r.exited;
  }

  pause(name: string): void {
    const r = this.running.get(name);
    if (r === undefined || r.paused) return;
    r.process.kill('SIGSTOP');
    r.paused = true;
  }

  resume(name: string): void {
    const r = this.running.get(name);
    if (r === undefined || !r.paused) return;
    r.process.kill('SIGCONT');
    r.paused = false;
  }

  /** Deletes the server's data dir (it must not be running). */
  async wipe(name: string): Promise<void> {
    if (this.running.has(name)) throw new RangeError(`wipe of running ${name}`);
    await rm(this.server(name).dataDir, { recursive: true, force: true });
  }

  startAll(): void {
    for (const s of this.servers) this.start(s.name);
  }

  /** One status probe per metadata server; undefined when it does not answer. */
  async statuses(): Promise<Map<string, Record<string, unknown>>> {
    const out = new Map<string, Record<string, unknown>>();
    await Promise.all(
      this.metadata.map(async (m) => {
        if (!this.running.has(m.name) || this.isPaused(m.name)) return;
        try {
          out.set(m.name, await unaryCall(m.address, 'ClusterStatus', {}, statusTimeoutMs));
        } catch {
          // not answering
        }
      }),
    );
    return out;
  }

  /** The metadata server that says it leads, with the highest term among those that say so. */
  async leader(): Promise<Server | undefined> {
    let best: { server: Server; term: number } | undefined;
    for (const [name, s] of await this.statuses()) {
      const term = Number(s['term'] ?? 0);
      if (s['role'] === 'leader' && (best === undefined || term > best.term)) best = { server: this.server(name), term };
    }
    return best?.server;
  }

  /** Waits for a leader with every member, and `chunkserversLive` live chunkservers (default all). */
  async waitReady(timeoutMs: number, options: { chunkserversLive?: number; signal?: AbortSignal | undefined } = {}): Promise<Server> {
    const chunkserversLive = options.chunkserversLive ?? this.chunkservers.length;
    const deadline = Date.now() + timeoutMs;
    let waitingFor = 'a leader';
    for (;;) {
      if (options.signal?.aborted === true) throw new ClusterError('NOT_READY', `stopped while waiting for ${waitingFor}`);
      const leader = await this.leader();
      if (leader !== undefined) {
        waitingFor = `${chunkserversLive} live chunkservers`;
        try {
          const r = await unaryCall(leader.address, 'ClusterStatus', {}, statusTimeoutMs);
          if (Number(r['live_chunkservers'] ?? r['liveChunkservers'] ?? 0) >= chunkserversLive) return leader;
        } catch {
          // leader changed
        }
      }
      if (Date.now() > deadline) throw new ClusterError('NOT_READY', `cluster not ready after ${timeoutMs} ms (waiting for ${waitingFor}); see the server logs`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Resumes paused servers, then SIGKILLs every server; resolves when all have exited. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    const all = [...this.running.entries()];
    for (const [name] of all) this.resume(name);
    for (const [, r] of all) r.process.kill('SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all.map(([, r]) => r.exited)), new Promise((r) => (timer = setTimeout(r, exitWaitMs)))]);
    clearTimeout(timer);
  }

  /** Synchronous last resort (process 'exit' handler): CONT + KILL every child by pid. */
  killAllSync(): void {
    for (const r of this.running.values()) {
      for (const signal of ['SIGCONT', 'SIGKILL'] as const) {
        try {
          r.process.kill(signal);
        } catch {
          // gone
        }
      }
    }
  }
}
