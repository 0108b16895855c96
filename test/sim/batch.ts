/**
 * Runs many seeds, in this thread or spread over worker threads (each seed is independent and
 * deterministic, so the split changes nothing but the wall-clock time). Results come back in seed order.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PlantedBug } from '../../src/raft/config.ts';
import type { Violation } from './checkers.ts';
import type { FsmBug } from '../../src/fsm/bugs.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { DataBug } from '../../src/chunkserver/bugs.ts';
import type { ClusterSize, WorkloadKind } from './scenario.ts';
import { runSeed } from './simulation.ts';
import type { SnapshotStreamStats } from '../../src/raft/node.ts';

/** What one seed's run reports across a thread boundary (the full RunResult stays in the worker). */
export interface SeedSummary {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation?: Violation;
  readonly traceHash: string;
  readonly simulatedMs: number;
  readonly realMs: number;
  /** Snapshots installed by any node; streamed snapshot transfers (metadata workload). */
  readonly snapshotsRestored: number;
  readonly snapshotStreams: SnapshotStreamStats;
  /** Data workload: write-pipeline packets corrupted in flight (0 for the other workloads). */
  readonly packetsCorrupted: number;
}

export interface BatchOptions {
  readonly clusterSizes?: readonly ClusterSize[];
  readonly bugs?: readonly PlantedBug[];
  readonly workload?: WorkloadKind;
  readonly fsmBugs?: readonly FsmBug[];
  readonly placementBugs?: readonly PlacementBug[];
  readonly dataBugs?: readonly DataBug[];
  /** Worker threads; 1 runs in this thread. Default: the machine's available parallelism. */
  readonly jobs?: number;
}

/** The request a worker receives. */
export interface WorkerRequest {
  readonly seeds: readonly number[];
  readonly clusterSizes?: readonly ClusterSize[];
  readonly bugs?: readonly PlantedBug[];
  readonly workload?: WorkloadKind;
  readonly fsmBugs?: readonly FsmBug[];
  readonly placementBugs?: readonly PlacementBug[];
  readonly dataBugs?: readonly DataBug[];
}

export type WorkerReply = { readonly type: 'result'; readonly summary: SeedSummary } | { readonly type: 'done' };

export async function summarizeSeed(seed: number, request: Omit<WorkerRequest, 'seeds'>): Promise<SeedSummary> {
  const result = await runSeed(seed, {
    ...(request.clusterSizes !== undefined ? { clusterSizes: request.clusterSizes } : {}),
    ...(request.bugs !== undefined ? { bugs: new Set(request.bugs) } : {}),
    ...(request.workload !== undefined ? { workload: request.workload } : {}),
    ...(request.fsmBugs !== undefined ? { fsmBugs: new Set(request.fsmBugs) } : {}),
    ...(request.placementBugs !== undefined ? { placementBugs: new Set(request.placementBugs) } : {}),
    ...(request.dataBugs !== undefined ? { dataBugs: new Set(request.dataBugs) } : {}),
  });
  return {
    seed,
    ok: result.ok,
    ...(result.violation !== undefined ? { violation: result.violation } : {}),
    traceHash: result.traceHash,
    simulatedMs: result.simulatedMs,
    realMs: result.realMs,
    snapshotsRestored: result.stats.checks.snapshotsRestored,
    snapshotStreams: result.stats.cluster.snapshotStreams,
    packetsCorrupted: result.stats.data?.packetsCorrupted ?? 0,
  };
}

export function defaultJobs(): number {
  return availableParallelism();
}

/** Runs `seeds`, calling `onResult` in seed order as results become available. */
export async function runBatch(
  seeds: readonly number[],
  options: BatchOptions,
  onResult: (summary: SeedSummary) => void,
): Promise<void> {
  const jobs = Math.max(1, Math.min(options.jobs ?? defaultJobs(), seeds.length));
  const request = {
    ...(options.clusterSizes !== undefined ? { clusterSizes: options.clusterSizes } : {}),
    ...(options.bugs !== undefined ? { bugs: options.bugs } : {}),
    ...(options.workload !== undefined ? { workload: options.workload } : {}),
    ...(options.fsmBugs !== undefined ? { fsmBugs: options.fsmBugs } : {}),
    ...(options.placementBugs !== undefined ? { placementBugs: options.placementBugs } : {}),
    ...(options.dataBugs !== undefined ? { dataBugs: options.dataBugs } : {}),
  };
  if (jobs === 1) {
    for (const seed of seeds) onResult(await summarizeSeed(seed, request));
    return;
  }
  const inOrder = new SeedOrder(seeds, onResult);
  const shares: number[][] = Array.from({ length: jobs }, () => []);
  seeds.forEach((seed, i) => shares[i % jobs]?.push(seed));
  await Promise.all(shares.map((share) => runInWorker({ ...request, seeds: share }, (s) => inOrder.add(s))));
}

/** Releases results in the order of `seeds`, whatever order they arrive in. */
class SeedOrder {
  private next = 0;
  private readonly waiting = new Map<number, SeedSummary>();

  constructor(
    private readonly seeds: readonly number[],
    private readonly onResult: (summary: SeedSummary) => void,
  ) {}

  add(summary: SeedSummary): void {
    this.waiting.set(summary.seed, summary);
    for (;;) {
      const seed = this.seeds[this.next];
      const ready = seed === undefined ? undefined : this.waiting.get(seed);
      if (seed === undefined || ready === undefined) return;
      this.waiting.delete(seed);
      this.next++;
      this.onResult(ready);
    }
  }
}

function runInWorker(request: WorkerRequest, onSummary: (s: SeedSummary) => void): Promise<void> {
  // Worker threads do not inherit tsx's loader hooks: register them first, then load the worker module.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const workerModule = new URL('./worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(workerModule)}); })`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true, workerData: request });
    let done = false;
    worker.on('message', (reply: WorkerReply) => {
      if (reply.type === 'result') onSummary(reply.summary);
      else {
        done = true;
        void worker.terminate();
        resolve();
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (!done) reject(new Error(`simulator worker exited with code ${code} before finishing`));
    });
  });
}
