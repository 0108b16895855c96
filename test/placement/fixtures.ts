/** Hand-built ClusterViews and a seeded random source for the chunk manager's unit tests. */
import type { ChunkserverState } from '../../src/fsm/records.ts';
import type { ChunkView, ClusterView, ServerView } from '../../src/placement/manager.ts';
import type { RandomSource } from '../../src/raft/config.ts';

export const GiB = 1024 * 1024 * 1024;

/** A small deterministic generator (mulberry32). */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return {
    int(maxExclusive: number): number {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const r = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      return Math.floor(r * maxExclusive);
    },
  };
}

export function server(id: number, rack: string, options: { state?: ChunkserverState; usedGiB?: number; capacityGiB?: number } = {}): ServerView {
  return {
    id,
    address: `cs${id}:7000`,
    rack,
    state: options.state ?? 'live',
    capacityBytes: (options.capacityGiB ?? 100) * GiB,
    usedBytes: (options.usedGiB ?? 0) * GiB,
    generation: 10 + id,
  };
}

export function chunk(handle: number, replicas: readonly number[], options: Partial<ChunkView> = {}): ChunkView {
  return {
    handle,
    fileId: 100 + handle,
    version: 1,
    replicas,
    sealed: true,
    lengthBytes: GiB,
    replication: 3,
    fileLive: true,
    ...options,
  };
}

export function view(servers: readonly ServerView[], chunks: readonly ChunkView[], nextChunkHandle?: number): ClusterView {
  return {
    servers: new Map(servers.map((s) => [s.id, s])),
    chunks: new Map(chunks.map((c) => [c.handle, c])),
    nextChunkHandle: nextChunkHandle ?? Math.max(0, ...chunks.map((c) => c.handle)) + 1,
  };
}
