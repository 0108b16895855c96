/**
 * A seed's scenario: every knob of a run (cluster size, timing, network and disk behaviour, which faults are
 * switched on and how often) derived from the seed alone. Faults are "swarm" sampled: each kind is on or off
 * per seed, so some runs hammer one fault kind while others mix them, which finds more bugs than one fixed
 * blend (Groce et al., "Swarm Testing", ISSTA 2012).
 */
import type { PlantedBug, ReadMode } from '../../src/raft/config.ts';
import type { FsmBug } from '../../src/fsm/bugs.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { DataBug } from '../../src/chunkserver/bugs.ts';
import type { NetworkProfile, PartitionKind } from './network.ts';
import type { Prng } from './prng.ts';

export const supportedClusterSizes = [1, 3, 5] as const;
export type ClusterSize = (typeof supportedClusterSizes)[number];

/**
 * raft: clients write and read a key-value map; metadata: whole metadata servers (see metadata.ts); data: real
 * chunkservers and the client data path around metadata servers (see data.ts).
 */
export const workloadKinds = ['raft', 'metadata', 'data'] as const;
export type WorkloadKind = (typeof workloadKinds)[number];

export interface SimOptions {
  /** Cluster sizes to draw from; default [3, 5]. */
  readonly clusterSizes?: readonly ClusterSize[];
  readonly bugs?: ReadonlySet<PlantedBug>;
  /** Prints every event run. */
  readonly trace?: (line: string) => void;
  /** Collects notable events (elections, faults, membership) for a replay summary. */
  readonly timeline?: (line: string) => void;
  /** Overrides LIVENESS_DEADLINE_MS (tests use a tiny one to see the liveness check fail). */
  readonly livenessDeadlineMs?: number;
  /** Default raft. */
  readonly workload?: WorkloadKind;
  /** Planted bugs of the metadata state machine (metadata workload only). */
  readonly fsmBugs?: ReadonlySet<FsmBug>;
  /** Planted bugs of the chunk manager (metadata workload only). */
  readonly placementBugs?: ReadonlySet<PlacementBug>;
  /** Planted bugs of the chunkserver data path (data workload only). */
  readonly dataBugs?: ReadonlySet<DataBug>;
}

export interface DiskProfile {
  readonly syncMinMs: number;
  readonly syncMaxMs: number;
  /** Probability that an fsync is slow (a busy device): the window where acknowledged-but-unsynced data sits. */
  readonly slowSyncProbability: number;
  readonly slowSyncMaxMs: number;
  readonly tornWriteProbability: number;
}

export interface FaultPlan {
  readonly crash: boolean;
  readonly pause: boolean;
  readonly partition: boolean;
  readonly membership: boolean;
  /**
   * Crash a newly elected leader shortly after it wins, sometimes: short reigns leave divergent uncommitted
   * tails and catch a leader in the middle of replicating an old tail (Raft §5.4.2).
   */
  readonly leaderChurn: boolean;
  readonly leaderChurnProbability: number;
  readonly leaderChurnDelayMaxMs: number;
  /** Flip a bit in one node's synced log while it is down (at most one node per run). */
  readonly corruption: boolean;
  /** Mean time between fault injections. */
  readonly meanIntervalMs: number;
  readonly crashDowntimeMaxMs: number;
  readonly pauseMaxMs: number;
  readonly partitionMaxMs: number;
  readonly partitionKinds: readonly PartitionKind[];
  /** Whether messages to a paused process wait in its socket buffer (true) or are lost (false). */
  readonly pausedNodeKeepsMessages: boolean;
  /** Mean time between membership operations. */
  readonly membershipMeanIntervalMs: number;
}

export interface WorkloadProfile {
  readonly clients: number;
  readonly keys: number;
  readonly readFraction: number;
  /** Probability that a read goes to a random node rather than the presumed leader. */
  readonly readAnyNodeFraction: number;
  readonly thinkTimeMaxMs: number;
  readonly operationTimeoutMs: number;
}

export interface Scenario {
  readonly seed: number;
  readonly clusterSize: ClusterSize;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readMode: ReadMode;
  readonly clockDriftBoundPermille: number;
  /** Whether clocks drift at all (within the bound) in this run. */
  readonly clockDrift: boolean;
  /**
   * Replication flow control. Small limits make a new leader replicate an old tail in several messages,
   * which opens the window of Raft §5.4.2 (Figure 8): a quorum holding old-term entries but not the new
   * leader's own entry.
   */
  readonly appendMessageBytesMax: number;
  readonly inflightMessagesMax: number;
  readonly snapshotEveryEntries: number;
  /** Applied entry bytes that also trigger a snapshot (RaftNode's snapshotEveryBytes; 32 MiB in production). */
  readonly snapshotEveryBytes: number;
  readonly snapshotKeepEntries: number;
  /**
   * Bytes per snapshot message. The metadata workload streams snapshots of a small state: small chunks make a
   * transfer many messages long, so loss, duplication, reordering and faults land in the middle of it.
   */
  readonly snapshotChunkBytes: number;
  /** Virtual time with faults and the workload running; the heal phase follows. */
  readonly faultPhaseMs: number;
  readonly network: NetworkProfile;
  /** The network during the heal phase: no partitions, little loss. */
  readonly healNetwork: NetworkProfile;
  readonly disk: DiskProfile;
  readonly faults: FaultPlan;
  readonly workload: WorkloadProfile;
  readonly bugs: ReadonlySet<PlantedBug>;
  readonly workloadKind: WorkloadKind;
  readonly fsmBugs: ReadonlySet<FsmBug>;
  readonly placementBugs: ReadonlySet<PlacementBug>;
  readonly dataBugs: ReadonlySet<DataBug>;
}

/**
 * Per-follower append windows (messages in flight) drawn per seed. Small windows are legitimate settings and
 * find flow-control stalls fast (a replicate-state follower whose window filled with lost appends must still
 * be probed again).
 */
export const inflightWindowChoices: readonly number[] = [256, 256, 8, 2];

/** The heal phase must elect a leader and commit a proposal on every live member within this much virtual time. */
export const LIVENESS_DEADLINE_MS = 10_000;

export function makeScenario(seed: number, random: Prng, options: SimOptions): Scenario {
  const sizes = options.clusterSizes ?? [3, 5];
  const clusterSize = random.pick(sizes);
  const checkQuorum = random.chance(0.85);
  const readMode: ReadMode = checkQuorum && random.chance(0.35) ? 'lease' : 'read-index';
  const network: NetworkProfile = {
    lossProbability: random.pick([0, 0, 0.01, 0.05, 0.15]),
    duplicateProbability: random.pick([0, 0.01, 0.05]),
    delayMinMs: random.floatBetween(0.05, 1),
    delayMaxMs: random.floatBetween(1, 8),
    slowProbability: random.pick([0, 0.01, 0.05]),
    slowDelayMaxMs: random.floatBetween(20, 150),
  };
  const healNetwork: NetworkProfile = {
    ...network,
    lossProbability: Math.min(network.lossProbability, 0.01),
    slowProbability: Math.min(network.slowProbability, 0.01),
  };
  const faultKinds = swarm(random);
  return {
    seed,
    clusterSize,
    tickMs: 10,
    electionTicks: random.pick([10, 10, 15, 20]),
    heartbeatTicks: random.pick([1, 1, 2, 3]),
    preVote: random.chance(0.85),
    checkQuorum,
    readMode,
    clockDriftBoundPermille: 100,
    clockDrift: random.chance(0.7),
    appendMessageBytesMax: random.pick([1024 * 1024, 1024 * 1024, 256, 24]),
    inflightMessagesMax: random.pick(inflightWindowChoices),
    snapshotEveryEntries: random.pick([20, 50, 200, 10_000]),
    snapshotKeepEntries: random.pick([0, 5, 50]),
    // Its own stream, so the other draws stay as they were: mostly the production default, sometimes small
    // enough that snapshots follow the bytes applied rather than the entry count.
    snapshotEveryBytes: random.split('snapshot-bytes').pick([32 * 1024 * 1024, 32 * 1024 * 1024, 16 * 1024, 2048]),
    // Drawn from its own stream, so the other draws (and the raft workload's traces) stay as they were.
    snapshotChunkBytes: options.workload === 'metadata' ? random.split('snapshot-chunk').pick([256 * 1024, 4096, 512, 64]) : 256 * 1024,
    faultPhaseMs: random.intBetween(2_000, 8_000),
    network,
    healNetwork,
    disk: {
      syncMinMs: random.floatBetween(0.05, 0.5),
      syncMaxMs: random.floatBetween(0.5, 5),
      slowSyncProbability: random.pick([0, 0.02, 0.1]),
      slowSyncMaxMs: random.floatBetween(10, 60),
      tornWriteProbability: random.pick([0, 0.5, 1]),
    },
    faults: {
      crash: faultKinds.crash,
      pause: faultKinds.pause,
      partition: faultKinds.partition,
      membership: faultKinds.membership,
      leaderChurn: faultKinds.leaderChurn,
      leaderChurnProbability: random.floatBetween(0.2, 0.8),
      leaderChurnDelayMaxMs: random.floatBetween(2, 40),
      corruption: clusterSize >= 3 && faultKinds.crash && random.chance(0.25),
      meanIntervalMs: random.floatBetween(100, 800),
      crashDowntimeMaxMs: random.floatBetween(50, 1_500),
      pauseMaxMs: random.floatBetween(20, 800),
      partitionMaxMs: random.floatBetween(100, 2_000),
      partitionKinds: partitionKindsFor(random),
      pausedNodeKeepsMessages: random.chance(0.5),
      membershipMeanIntervalMs: random.floatBetween(200, 1_500),
    },
    workload: {
      clients: random.intBetween(1, 4),
      keys: random.intBetween(1, 5),
      readFraction: random.floatBetween(0.2, 0.6),
      readAnyNodeFraction: random.pick([0, 0.2, 0.5]),
      thinkTimeMaxMs: random.floatBetween(0, 30),
      operationTimeoutMs: random.intBetween(200, 1_000),
    },
    bugs: options.bugs ?? new Set(),
    workloadKind: options.workload ?? 'raft',
    fsmBugs: options.fsmBugs ?? new Set(),
    placementBugs: options.placementBugs ?? new Set(),
    dataBugs: options.dataBugs ?? new Set(),
  };
}

interface FaultKinds {
  crash: boolean;
  pause: boolean;
  partition: boolean;
  membership: boolean;
  leaderChurn: boolean;
}

/** A calm scenario for scripted runs (the demo): a healthy network and disks, no random faults or clients. */
export function quietScenario(seed: number, clusterSize: ClusterSize): Scenario {
  const network: NetworkProfile = {
    lossProbability: 0,
    duplicateProbability: 0,
    delayMinMs: 0.5,
    delayMaxMs: 3,
    slowProbability: 0,
    slowDelayMaxMs: 3,
  };
  return {
    seed,
    clusterSize,
    tickMs: 10,
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: true,
    checkQuorum: true,
    readMode: 'read-index',
    clockDriftBoundPermille: 100,
    clockDrift: true,
    appendMessageBytesMax: 1024 * 1024,
    inflightMessagesMax: 256,
    snapshotEveryEntries: 10_000,
    snapshotEveryBytes: 32 * 1024 * 1024,
    snapshotKeepEntries: 1_000,
    snapshotChunkBytes: 256 * 1024,
    faultPhaseMs: 0,
    network,
    healNetwork: network,
    disk: { syncMinMs: 0.2, syncMaxMs: 1, slowSyncProbability: 0, slowSyncMaxMs: 1, tornWriteProbability: 0 },
    faults: {
      crash: false,
      pause: false,
      partition: false,
      membership: false,
      leaderChurn: false,
      leaderChurnProbability: 0,
      leaderChurnDelayMaxMs: 0,
      corruption: false,
      meanIntervalMs: 1_000,
      crashDowntimeMaxMs: 0,
      pauseMaxMs: 0,
      partitionMaxMs: 0,
      partitionKinds: ['isolate'],
      pausedNodeKeepsMessages: true,
      membershipMeanIntervalMs: 1_000,
    },
    workload: { clients: 0, keys: 1, readFraction: 0, readAnyNodeFraction: 0, thinkTimeMaxMs: 0, operationTimeoutMs: 1_000 },
    bugs: new Set(),
    workloadKind: 'raft',
    fsmBugs: new Set(),
    placementBugs: new Set(),
    dataBugs: new Set(),
  };
}

function swarm(random: Prng): FaultKinds {
  for (;;) {
    const kinds: FaultKinds = {
      crash: random.chance(0.6),
      pause: random.chance(0.4),
      partition: random.chance(0.6),
      membership: random.chance(0.4),
      leaderChurn: random.chance(0.3),
    };
    // A run with no fault at all teaches little; redraw (still a pure function of the seed).
    if (Object.values(kinds).some((on) => on)) return kinds;
  }
}

function partitionKindsFor(random: Prng): PartitionKind[] {
  const all: PartitionKind[] = ['isolate', 'halves', 'one-way', 'majorities-ring', 'bridge'];
  const chosen = all.filter(() => random.chance(0.6));
  return chosen.length > 0 ? chosen : [random.pick(all)];
}

export function describeScenario(s: Scenario): string {
  const faults = (['crash', 'pause', 'partition', 'membership', 'leaderChurn', 'corruption'] as const).filter((k) => s.faults[k]);
  return [
    `nodes=${s.clusterSize} tick=${s.tickMs}ms election=${s.electionTicks}t heartbeat=${s.heartbeatTicks}t preVote=${s.preVote} checkQuorum=${s.checkQuorum} read=${s.readMode}`,
    `drift=${s.clockDrift ? `±${s.clockDriftBoundPermille / 2}‰` : 'none'} appendMax=${s.appendMessageBytesMax}B inflight=${s.inflightMessagesMax} snapshotEvery=${s.snapshotEveryEntries}/${s.snapshotEveryBytes}B keep=${s.snapshotKeepEntries} chunk=${s.snapshotChunkBytes}B faultPhase=${s.faultPhaseMs}ms`,
    `net: loss=${s.network.lossProbability} dup=${s.network.duplicateProbability} delay=${s.network.delayMinMs.toFixed(2)}..${s.network.delayMaxMs.toFixed(2)}ms slow=${s.network.slowProbability}@${s.network.slowDelayMaxMs.toFixed(0)}ms`,
    `disk: sync=${s.disk.syncMinMs.toFixed(2)}..${s.disk.syncMaxMs.toFixed(2)}ms slow=${s.disk.slowSyncProbability}@${s.disk.slowSyncMaxMs.toFixed(0)}ms torn=${s.disk.tornWriteProbability}`,
    `faults: [${faults.join(',')}] every~${s.faults.meanIntervalMs.toFixed(0)}ms partitions=[${s.faults.partitionKinds.join(',')}] pausedKeepsMessages=${s.faults.pausedNodeKeepsMessages}`,
    `workload: ${s.workloadKind}${s.fsmBugs.size > 0 ? ` (fsm bugs ${[...s.fsmBugs].join(',')})` : ''}${s.placementBugs.size > 0 ? ` (placement bugs ${[...s.placementBugs].join(',')})` : ''}${s.dataBugs.size > 0 ? ` (data bugs ${[...s.dataBugs].join(',')})` : ''} clients=${s.workload.clients} keys=${s.workload.keys} reads=${s.workload.readFraction.toFixed(2)} readAny=${s.workload.readAnyNodeFraction} timeout=${s.workload.operationTimeoutMs}ms`,
  ].join('\n');
}
