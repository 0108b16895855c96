/**
 * The simulator's command line (`npm run sim -- ...`).
 *
 *   --seeds N [--start S]   run seeds S..S+N-1 (S defaults to 1)
 *   --seed S [--trace]      replay one seed: its scenario, a timeline of what happened, the verdict;
 *                           --trace also prints every event
 *   --list-bugs             the planted bugs, one line each
 *   --bug NAME              switch a planted bug on (a failing seed is then the expected outcome)
 *   --nodes 3,5             cluster sizes to draw from (1, 3, 5; default 3,5)
 *   --workload raft|metadata|data  the workload (default raft): a key-value map, whole metadata servers
 *                           (the metadata state machine over Raft; see metadata.ts), or real chunkservers
 *                           and the client data path around them (see data.ts)
 *   --jobs N                worker threads (default: available parallelism)
 *
 * Every failing seed prints one line: the violated invariant and the command that replays it. The last
 * line is exactly "N passed, M failed". Exit status 0 iff no seed failed.
 */
import { parseArgs } from 'node:util';
import { plantedBugs, type PlantedBug } from '../../src/raft/config.ts';
import { defaultJobs, runBatch, type SeedSummary } from './batch.ts';
import { fsmBugs, type FsmBug } from '../../src/fsm/bugs.ts';
import { placementBugs, type PlacementBug } from '../../src/placement/bugs.ts';
import { dataBugs, type DataBug } from '../../src/chunkserver/bugs.ts';
import { dataBugCatalog, fsmBugCatalog, placementBugCatalog, plantedBugCatalog } from './planted-bugs.ts';
import { describeScenario, supportedClusterSizes, workloadKinds, type ClusterSize, type WorkloadKind } from './scenario.ts';
import { runSeed, type RunResult } from './simulation.ts';
import { emptySnapshotStreamStats } from './cluster.ts';
import type { SnapshotStreamStats } from '../../src/raft/node.ts';

const DEFAULT_CLUSTER_SIZES: readonly ClusterSize[] = [3, 5];
const workloads = workloadKinds;

interface CliOptions {
  readonly seeds: number[];
  readonly replay: boolean;
  readonly trace: boolean;
  readonly bugs: PlantedBug[];
  readonly fsmBugs: FsmBug[];
  readonly placementBugs: PlacementBug[];
  readonly dataBugs: DataBug[];
  readonly workload: WorkloadKind;
  readonly clusterSizes: readonly ClusterSize[];
  readonly jobs: number;
}

class UsageError extends Error {}

function parseOptions(argv: readonly string[]): CliOptions | 'list-bugs' | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seeds: { type: 'string' },
      start: { type: 'string' },
      seed: { type: 'string' },
      trace: { type: 'boolean', default: false },
      'list-bugs': { type: 'boolean', default: false },
      bug: { type: 'string', multiple: true },
      nodes: { type: 'string' },
      workload: { type: 'string', default: 'raft' },
      jobs: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (values['list-bugs']) return 'list-bugs';
  if (!(workloads as readonly string[]).includes(values.workload)) {
    throw new UsageError(`unknown workload "${values.workload}"; known: ${workloads.join(', ')}`);
  }
  const workload = values.workload as WorkloadKind;
  const bugs: PlantedBug[] = [];
  const fsm: FsmBug[] = [];
  const placement: PlacementBug[] = [];
  const data: DataBug[] = [];
  for (const name of values.bug ?? []) {
    if ((plantedBugs as readonly string[]).includes(name)) bugs.push(name as PlantedBug);
    else if ((fsmBugs as readonly string[]).includes(name)) {
      if (workload !== 'metadata') throw new UsageError(`bug "${name}" needs --workload metadata`);
      fsm.push(name as FsmBug);
    } else if ((placementBugs as readonly string[]).includes(name)) {
      if (workload !== 'metadata' && workload !== 'data') throw new UsageError(`bug "${name}" needs --workload metadata or data`);
      placement.push(name as PlacementBug);
    } else if ((dataBugs as readonly string[]).includes(name)) {
      if (workload !== 'data') throw new UsageError(`bug "${name}" needs --workload data`);
      data.push(name as DataBug);
    } else throw new UsageError(`unknown bug "${name}"; see --list-bugs`);
  }
  const clusterSizes = values.nodes === undefined ? DEFAULT_CLUSTER_SIZES : parseClusterSizes(values.nodes);
  const jobs = values.jobs === undefined ? defaultJobs() : parsePositiveInteger('--jobs', values.jobs);
  if (values.seed !== undefined) {
    if (values.seeds !== undefined) throw new UsageError('--seed and --seeds exclude each other');
    return { seeds: [parseNonNegativeInteger('--seed', values.seed)], replay: true, trace: values.trace, bugs, fsmBugs: fsm, placementBugs: placement, dataBugs: data, workload, clusterSizes, jobs: 1 };
  }
  if (values.trace) throw new UsageError('--trace needs --seed');
  const count = values.seeds === undefined ? 1 : parsePositiveInteger('--seeds', values.seeds);
  const start = values.start === undefined ? 1 : parseNonNegativeInteger('--start', values.start);
  const seeds = Array.from({ length: count }, (_, i) => start + i);
  return { seeds, replay: false, trace: false, bugs, fsmBugs: fsm, placementBugs: placement, dataBugs: data, workload, clusterSizes, jobs };
}

function parseClusterSizes(text: string): ClusterSize[] {
  const sizes = text.split(',').map((part) => parsePositiveInteger('--nodes', part.trim()));
  for (const size of sizes) {
    if (!(supportedClusterSizes as readonly number[]).includes(size)) {
      throw new UsageError(`--nodes: cluster size ${size} is not supported (${supportedClusterSizes.join(', ')})`);
    }
  }
  return sizes as ClusterSize[];
}

function parsePositiveInteger(flag: string, text: string): number {
  const n = parseNonNegativeInteger(flag, text);
  if (n === 0) throw new UsageError(`${flag} must be positive`);
  return n;
}

function parseNonNegativeInteger(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${flag} needs a non-negative integer, got "${text}"`);
  return Number(text);
}

function replayCommand(seed: number, options: CliOptions): string {
  const bugs = [...options.bugs, ...options.fsmBugs, ...options.placementBugs, ...options.dataBugs].map((bug) => ` --bug ${bug}`).join('');
  const workload = options.workload === 'raft' ? '' : ` --workload ${options.workload}`;
  const sameSizes =
    options.clusterSizes.length === DEFAULT_CLUSTER_SIZES.length && options.clusterSizes.every((s, i) => s === DEFAULT_CLUSTER_SIZES[i]);
  const nodes = sameSizes ? '' : ` --nodes ${options.clusterSizes.join(',')}`;
  return `npm run sim -- --seed ${seed}${workload}${bugs}${nodes}`;
}

function failureLine(summary: Pick<SeedSummary, 'seed' | 'violation'>, options: CliOptions): string {
  const v = summary.violation;
  const what = v === undefined ? 'unknown failure' : `[${v.kind}] at ${(v.atMs / 1000).toFixed(6)}s: ${v.message}`;
  return `FAIL seed ${summary.seed} ${what} | replay: ${replayCommand(summary.seed, options)}`;
}

function printThroughput(seedCount: number, simulatedMs: number, realMs: number): void {
  const seconds = realMs / 1000;
  console.log(
    `${seedCount} seeds in ${seconds.toFixed(1)}s: ${(seedCount / seconds).toFixed(2)} seeds/s, ` +
      `simulated/real time ${(simulatedMs / realMs).toFixed(1)}x (${(simulatedMs / 1000).toFixed(1)}s simulated)`,
  );
}

/** A self-overwriting progress line on stderr, only when it is a terminal. */
class ProgressLine {
  private static readonly intervalMs = 500;
  private lastMs = 0;
  private shown = false;

  constructor(private readonly total: number) {}

  update(done: number, failed: number): void {
    if (!process.stderr.isTTY) return;
    const now = performance.now();
    if (now - this.lastMs < ProgressLine.intervalMs) return;
    this.lastMs = now;
    this.shown = true;
    process.stderr.write(`\r${done}/${this.total} seeds, ${failed} failed `);
  }

  clear(): void {
    if (!this.shown) return;
    process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}

async function runMany(options: CliOptions): Promise<number> {
  let passed = 0;
  let failed = 0;
  let simulatedMs = 0;
  let restores = 0;
  let seedsWithStreams = 0;
  let packetsCorrupted = 0;
  let seedsWithCorruption = 0;
  const streams = emptySnapshotStreamStats();
  const startedMs = performance.now();
  const allBugs = [...options.bugs, ...options.fsmBugs, ...options.placementBugs, ...options.dataBugs];
  const bugNote = allBugs.length > 0 ? ` with planted bug ${allBugs.join(', ')}` : '';
  console.log(`running ${options.seeds.length} ${options.workload} seeds from ${options.seeds[0]}${bugNote} on ${options.jobs} thread(s)`);
  const progress = new ProgressLine(options.seeds.length);
  const batch = { clusterSizes: options.clusterSizes, bugs: options.bugs, workload: options.workload, fsmBugs: options.fsmBugs, placementBugs: options.placementBugs, dataBugs: options.dataBugs, jobs: options.jobs };
  await runBatch(options.seeds, batch, (summary) => {
    simulatedMs += summary.simulatedMs;
    restores += summary.snapshotsRestored;
    if (summary.snapshotStreams.installs > 0) seedsWithStreams++;
    packetsCorrupted += summary.packetsCorrupted;
    if (summary.packetsCorrupted > 0) seedsWithCorruption++;
    for (const k of Object.keys(streams) as (keyof typeof streams)[]) streams[k] += summary.snapshotStreams[k];
    if (summary.ok) passed++;
    else {
      failed++;
      progress.clear();
      console.log(failureLine(summary, options));
    }
    progress.update(passed + failed, failed);
  });
  progress.clear();
  printThroughput(options.seeds.length, simulatedMs, performance.now() - startedMs);
  console.log(`snapshots: ${restores} installed by lagging members; ${streamLine(streams)} (in ${seedsWithStreams} seeds)`);
  if (options.workload === 'data') console.log(`data: ${packetsCorrupted} write-pipeline packets corrupted in flight (in ${seedsWithCorruption} seeds)`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

async function replay(options: CliOptions): Promise<number> {
  const seed = options.seeds[0] ?? 1;
  const print = (line: string): void => console.log(line);
  const result: RunResult = await runSeed(seed, {
    clusterSizes: options.clusterSizes,
    bugs: new Set(options.bugs),
    workload: options.workload,
    fsmBugs: new Set(options.fsmBugs),
    placementBugs: new Set(options.placementBugs),
    dataBugs: new Set(options.dataBugs),
    timeline: print,
    ...(options.trace ? { trace: print } : {}),
  });
  const s = result.stats;
  console.log('--- summary');
  console.log(describeScenario(result.scenario));
  console.log(
    `events ${s.events} (dropped ${s.eventsDropped}); messages sent ${s.network.sent}, delivered ${s.network.delivered}, ` +
      `lost ${s.network.lost}, cut by partitions ${s.network.blocked}, duplicated ${s.network.duplicated}`,
  );
  console.log(
    `faults: ${s.cluster.crashes} crashes, ${s.cluster.restarts} restarts, ${s.cluster.pauses} pauses, ${s.faults.partitions} partitions, ` +
      `${s.faults.corruptions} corruptions (${s.cluster.corruptionsDetected} detected); membership: ${s.membership.applied}/${s.membership.proposed} changes applied, ` +
      `${s.membership.nodesAdded} nodes added, ${s.membership.nodesRetired} retired`,
  );
  console.log(
    `workload: ${s.workload.writesAcked}/${s.workload.writesInvoked} writes acknowledged, ${s.workload.readsOk}/${s.workload.readsInvoked} reads served, ` +
      `${s.workload.timeouts} timeouts; ${s.checks.leadersObserved} leaders, highest commit ${s.highestCommit}, ${s.checks.snapshotsRestored} snapshot restores`,
  );
  if (s.metadata !== undefined) {
    const m = s.metadata;
    console.log(
      `metadata: ${m.modelEntries} entries in the model, ${m.batchesChecked} node batches checked (${m.invariantChecks} namespace checks), ` +
        `${m.retriesDeduplicated} retries deduplicated, ${m.readsChecked} stat/readdir reads checked`,
    );
  }
  if (s.chunks !== undefined) {
    const c = s.chunks;
    console.log(
      `chunks: ${c.registrations} chunkservers registered, ${c.heartbeats} heartbeats (${c.fullReports} full reports), ${c.filesWritten} files written, ` +
        `${c.chunksSealed} chunks sealed (${c.pipelineBumps} new pipelines, ${c.chunksAbandoned} abandoned, ${c.recoverySeals} replicas sealed by lease recovery), ${c.filesDeleted} files deleted, ${c.replicationChanges} replication changes, ${c.copiesDone} copies, ${c.deletesDone} replica deletes; ` +
        `${c.chunkserverCrashes} chunkserver crashes (${c.disksLost} disks lost, ${c.permanentDeaths} for good, ${c.serversForgotten} of them forgotten); converged in ${c.convergedMs === null ? '-' : `${c.convergedMs.toFixed(0)}ms`}`,
    );
  }
  if (s.data !== undefined) {
    const d = s.data;
    console.log(
      `data: ${d.filesAcked}/${d.filesStarted} files acknowledged (${d.bytesAcked} bytes, ${d.filesFailed} failed, ${d.writersVanished} writers vanished), ${d.pipelineRecoveries} pipeline recoveries; ` +
        `${d.readsOk}/${d.readsDuringRun} reads during the run (${d.staleCacheReads} with stale locations, ${d.sessionReads} read sessions, ${d.replicaReadFailures} replica failovers); ` +
        `${d.chunkserverCrashes} chunkserver crashes (${d.disksWiped} disks wiped), ${d.bitFlips} bit flips (${d.corruptionsFound} corrupt replicas found), ` +
        `${d.packetsCorrupted} packets corrupted in flight (${d.pipelineChecksumFailures} pipelines failed CHECKSUM_MISMATCH), ` +
        `${d.connectionsBroken} connections broken, ${d.copiesDone} copies; after healing ${d.finalFilesRead} files and ${d.finalReplicaReads} replicas read back (and ${d.givenUpFilesRead} files whose writer gave up); ` +
        `converged in ${d.convergedMs === null ? '-' : `${d.convergedMs.toFixed(0)}ms`}`,
    );
  }
  console.log(`snapshot streams: ${streamLine(s.cluster.snapshotStreams)}`);
  console.log(`final: ${s.finalConfiguration}; healed in ${s.healMs === null ? '-' : `${s.healMs.toFixed(0)}ms`}`);
  console.log(`trace hash ${result.traceHash}`);
  if (!result.ok) console.log(failureLine(result, options));
  printThroughput(1, result.simulatedMs, result.realMs);
  console.log(`${result.ok ? 1 : 0} passed, ${result.ok ? 0 : 1} failed`);
  return result.ok ? 0 : 1;
}

function streamLine(s: SnapshotStreamStats): string {
  return (
    `${s.installs} streamed snapshots installed; ${s.sendsStarted} transfers started (${s.sendsFailed} abandoned and retried), ` +
    `${s.chunksSent} chunks sent (${s.resends} window resends), ${s.receivesStarted} received (${s.receivesAborted} aborted)`
  );
}

function listBugs(): void {
  const width = Math.max(...[...plantedBugs, ...fsmBugs, ...placementBugs, ...dataBugs].map((b) => b.length));
  for (const bug of plantedBugs) console.log(`${bug.padEnd(width)}  ${plantedBugCatalog[bug].description}`);
  for (const bug of fsmBugs) console.log(`${bug.padEnd(width)}  ${fsmBugCatalog[bug].description} (--workload metadata)`);
  for (const bug of placementBugs) console.log(`${bug.padEnd(width)}  ${placementBugCatalog[bug].description} (--workload metadata)`);
  for (const bug of dataBugs) console.log(`${bug.padEnd(width)}  ${dataBugCatalog[bug].description} (--workload data)`);
}

const usage = `usage: npm run sim -- [--seeds N [--start S] | --seed S [--trace] | --list-bugs] [--bug NAME] [--nodes 3,5] [--workload raft|metadata|data] [--jobs N]`;

async function main(argv: readonly string[]): Promise<number> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    console.error(usage);
    return 2;
  }
  if (options === 'help') {
    console.log(usage);
    return 0;
  }
  if (options === 'list-bugs') {
    listBugs();
    return 0;
  }
  return options.replay ? replay(options) : runMany(options);
}

process.exitCode = await main(process.argv.slice(2));
