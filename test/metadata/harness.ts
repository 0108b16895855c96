/** Shared helpers of the metadata server tests: free ports, temp dirs, raw calls, polling. */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { freeLayoutPort } from '../../src/cluster/local.ts';
import { MetadataServer } from '../../src/metadata/server.ts';
import type { MetadataServerOptions, PeerAddress } from '../../src/metadata/server.ts';
import { unaryCall } from '../../src/metadata/proto.ts';
import type { WireReply, WireRequest } from '../../src/metadata/proto.ts';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Ports stablePort handed out in this process: two picks before either server binds are never the same. */
const stablePortsTaken = new Set<number>();

/**
 * A port free now and below the kernel's ephemeral range, for a server that binds it later, or again after a
 * restart (src/cluster/local.ts freeLayoutPort, as `npm start` picks its ports). A port from freePort() is in
 * the ephemeral range: until the server binds it, any outgoing connection on the machine (this test's own
 * clients dialing the server that is not up yet, another test file's) may be given it as its local port, and
 * the bind fails with EADDRINUSE (a clean-clone CI run of test/chunkserver/agent-outage.test.ts did).
 */
export async function stablePort(): Promise<number> {
  const port = await freeLayoutPort('127.0.0.1', stablePortsTaken);
  stablePortsTaken.add(port);
  return port;
}

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `fn` until it returns a value. `detail`, when given, is appended to the error of a failed wait (the
 * timeout, or an error `fn` threw): what the caller can show about why, such as a child process's output.
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
  detail?: () => string,
): Promise<T> {
  const fail = (message: string, cause?: unknown): Error =>
    new Error(detail === undefined ? message : `${message}; ${detail()}`, cause === undefined ? undefined : { cause });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined;
    try {
      v = await fn();
    } catch (error) {
      if (detail === undefined) throw error;
      throw fail((error as Error).message, error);
    }
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** One raw unary call (no redirects, no retries). */
export function rawCall(address: string, method: string, request: WireRequest, timeoutMs = 5_000): Promise<WireReply> {
  return unaryCall(address, method, request, timeoutMs);
}

export interface InProcessCluster {
  readonly servers: Map<number, MetadataServer>;
  readonly peers: Map<number, PeerAddress>;
  readonly addresses: string[];
  leader(): Promise<MetadataServer>;
  /** Addresses for a new server `id` (added to `peers`), not started yet. */
  reserve(id: number): Promise<PeerAddress>;
  /** Starts server `id` (reserved first) in join mode: no founding voters, waits to be added. */
  startJoiner(id: number): Promise<MetadataServer>;
  /** Stops one server (it stays stopped). */
  stopServer(id: number): Promise<void>;
  close(): Promise<void>;
}

/** `options`: extra server options (chunk manager settings, a logger, ...) for every server. */
export async function startInProcessCluster(size: number, options: Partial<MetadataServerOptions> = {}): Promise<InProcessCluster> {
  // A port found free may be taken by a parallel test file before a server binds it: then every server
  // started so far is stopped (so nothing keeps the process alive) and the cluster starts again on new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startInProcessClusterOnce(size, options);
    } catch (error) {
      if (attempt >= 5 || !/EADDRINUSE|No address added/.test(String((error as Error).message))) throw error;
    }
  }
}

async function startInProcessClusterOnce(size: number, options: Partial<MetadataServerOptions>): Promise<InProcessCluster> {
  const peers = new Map<number, PeerAddress>();
  for (let id = 1; id <= size; id++) {
    peers.set(id, { client: `127.0.0.1:${await freePort()}`, raft: `127.0.0.1:${await freePort()}` });
  }
  const tmp = await tempDir('rfs-metadata-');
  const logger = options.logger ?? pino({ level: 'silent' });
  const servers = new Map<number, MetadataServer>();
  const started = await Promise.allSettled(
    [...peers.keys()].map(async (id) => {
      servers.set(id, await MetadataServer.start({ ...options, id, peers, dataDir: join(tmp.dir, `m${id}`), logger }));
    }),
  );
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all([...servers.values()].map((s) => s.stop()));
    await tmp.remove();
    throw failed.reason;
  }
  return {
    servers,
    peers,
    addresses: [...peers.values()].map((p) => p.client),
    leader: () =>
      waitFor('a leader', () => [...servers.values()].find((s) => s.node.status().role === 'leader')),
    async reserve(id) {
      const p = { client: `127.0.0.1:${await freePort()}`, raft: `127.0.0.1:${await freePort()}` };
      peers.set(id, p);
      return p;
    },
    async startJoiner(id) {
      const s = await MetadataServer.start({ ...options, id, peers: new Map(peers), dataDir: join(tmp.dir, `m${id}`), logger, join: true });
      servers.set(id, s);
      return s;
    },
    async stopServer(id) {
      await servers.get(id)?.stop();
      servers.delete(id);
    },
    async close() {
      for (const s of servers.values()) await s.stop();
      await tmp.remove();
    },
  };
}
