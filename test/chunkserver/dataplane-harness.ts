/** Shared fixtures of the data-plane tests: N data servers on memory stores, over TCP or in memory. */
import type { DataNetwork } from '../../src/chunkserver/dataplane/connection.ts';
import type { DataPlaneLimits } from '../../src/chunkserver/dataplane/limits.ts';
import { MemoryDataNetwork } from '../../src/chunkserver/dataplane/memory-network.ts';
import type { ChainLink } from '../../src/chunkserver/dataplane/protocol.ts';
import { DataServer } from '../../src/chunkserver/dataplane/server.ts';
import type { StallWatch } from '../../src/chunkserver/dataplane/stall.ts';
import { TcpDataNetwork } from '../../src/chunkserver/dataplane/tcp.ts';
import type { MemoryStoreHooks } from './memory-store.ts';
import { MemoryChunkStore } from './memory-store.ts';

export type TransportKind = 'tcp' | 'memory';
export const transportKinds: readonly TransportKind[] = ['tcp', 'memory'];

export interface Cluster {
  readonly kind: TransportKind;
  readonly network: DataNetwork;
  readonly servers: DataServer[];
  readonly stores: MemoryChunkStore[];
  /** The servers as a pipeline chain, in order (or the given indexes). */
  chain(indexes?: readonly number[]): ChainLink[];
  /** Makes server `index` unreachable: its listener stops and its connections break. */
  crash(index: number): Promise<void>;
  close(): Promise<void>;
}

export function makeNetwork(kind: TransportKind, limits: Partial<DataPlaneLimits> = {}): DataNetwork {
  return kind === 'tcp'
    ? new TcpDataNetwork(limits)
    : new MemoryDataNetwork({ scheduler: (task) => setImmediate(task), limits });
}

export async function startCluster(
  kind: TransportKind,
  count: number,
  options: {
    limits?: Partial<DataPlaneLimits>;
    hooks?: (index: number) => MemoryStoreHooks;
    connectionsMax?: number;
    /** The stores take a hop's batch as one call (MemoryChunkStore's `appendPieces` option). */
    appendPieces?: boolean;
    /** The servers' pipeline stall watch (DataServerOptions.stall). */
    stall?: StallWatch;
    /** The servers' idle-pipeline watch (DataServerOptions.pipelineIdle). */
    pipelineIdle?: StallWatch;
  } = {},
): Promise<Cluster> {
  const limits = options.limits ?? {};
  const network = makeNetwork(kind, limits);
  const servers: DataServer[] = [];
  const stores: MemoryChunkStore[] = [];
  for (let index = 0; index < count; index++) {
    const store = new MemoryChunkStore({ hooks: options.hooks?.(index) ?? {}, appendPieces: options.appendPieces ?? false });
    stores.push(store);
    servers.push(
      await DataServer.start({
        id: index + 1,
        store,
        network,
        address: kind === 'tcp' ? '127.0.0.1:0' : `cs-${index + 1}:7000`,
        limits,
        ...(options.connectionsMax === undefined ? {} : { connectionsMax: options.connectionsMax }),
        ...(options.stall === undefined ? {} : { stall: options.stall }),
        ...(options.pipelineIdle === undefined ? {} : { pipelineIdle: options.pipelineIdle }),
      }),
    );
  }
  return {
    kind,
    network,
    servers,
    stores,
    chain: (indexes = servers.map((_, i) => i)) =>
      indexes.map((i) => ({ id: servers[i]!.id, address: servers[i]!.address })),
    crash: async (index) => {
      const server = servers[index]!;
      if (network instanceof MemoryDataNetwork) network.breakConnections(server.address);
      await server.close();
    },
    close: async () => {
      for (const server of servers) await server.close();
    },
  };
}

/** Deterministic pseudo-random bytes (xorshift32), so a failing case can be replayed. */
export function patternBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = state & 0xff;
  }
  return out;
}

/** Polls `condition` on the event loop until it holds (or fails after `timeoutMs`). */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets pending I/O and scheduled tasks run for a while (a few event-loop turns and a short sleep). */
export async function settle(ms = 50): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** A promise's state without waiting for it. */
export function track<T>(promise: Promise<T>): { readonly done: boolean; readonly error: unknown; promise: Promise<T> } {
  const state = { done: false, error: undefined as unknown, promise };
  promise.then(
    () => {
      state.done = true;
    },
    (error: unknown) => {
      state.done = true;
      state.error = error;
    },
  );
  return state;
}
