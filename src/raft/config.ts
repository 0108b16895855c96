/** Configuration of one Raft member, with named limits and their units. */
import type { NodeId } from './types.ts';
import { assert } from './errors.ts';

/** Planted bugs, off unless a test switches one on. Each must be caught by the simulator. */
export const plantedBugs = [
  /** Count replicas of an earlier-term entry toward commit (Raft §5.4.2, Figure 8). */
  'commit-earlier-term',
  /** A follower acknowledges appended entries and votes before they are persisted. */
  'ack-before-persist',
  /** Grant a second vote in the same term. */
  'double-vote',
  /** Serve reads from local state without ReadIndex or a lease. */
  'read-without-quorum',
  /**
   * Skip the up-to-date log check (Raft §5.4.1) when granting pre-votes; as in etcd, pre-vote and vote share
   * one check, so a candidate with a stale log can win the real election too.
   */
  'prevote-skip-log-check',
  /**
   * The leader commits (and so acknowledges) everything it has persisted itself, without waiting for a
   * quorum: an acknowledged write is lost when the leader is cut off or dies and another one is elected.
   */
  'commit-without-quorum',
] as const;
export type PlantedBug = (typeof plantedBugs)[number];

/** A source of randomness, injected so a seed replays a run exactly. */
export interface RandomSource {
  /** An integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
}

export type ReadMode = 'read-index' | 'lease';

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns (randomised in [n, 2n)). */
  readonly electionTicks: number;
  /** Ticks between leader heartbeats. */
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  /** A leader that has not heard from a quorum within an election timeout steps down. */
  readonly checkQuorum: boolean;
  /** How linearizable reads are confirmed. 'lease' needs checkQuorum. */
  readonly readMode: ReadMode;
  /** The stated bound on relative clock-rate drift between members, in parts per thousand (lease reads). */
  readonly clockDriftBoundPermille: number;
  /** Append messages in flight to one follower, at most. */
  readonly inflightMessagesMax: number;
  /** Bytes of entries in flight to one follower, at most. */
  readonly inflightBytesMax: number;
  /** Bytes of entries in one append message, at most (at least one entry is always sent). */
  readonly appendMessageBytesMax: number;
  /** Bytes of proposed but uncommitted entries the leader accepts before dropping proposals. */
  readonly uncommittedBytesMax: number;
  /** Bytes of snapshot data per snapshot message. */
  readonly snapshotChunkBytes: number;
  /** Committed entries handed to the application per Ready, at most (bytes). */
  readonly applyBatchBytesMax: number;
  /** A learner more than this many entries behind the leader's log is not promoted to voter. */
  readonly learnerPromotionLagEntriesMax: number;
  /**
   * Snapshots are streamed by the driver from and into a durable state machine (node.ts, snapshot-stream.ts)
   * instead of travelling inside the core as one byte array: the core then only marks a follower as needing
   * a snapshot, and installs the metadata of a snapshot the state machine has already installed.
   */
  readonly snapshotStreaming: boolean;
  /** The index already applied by the state machine at start (entries up to it are not re-delivered). */
  readonly applied: number;
  readonly random: RandomSource;
  readonly bugs: ReadonlySet<PlantedBug>;
}

export const defaultRaftConfig = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  readMode: 'read-index',
  clockDriftBoundPermille: 100,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  appendMessageBytesMax: 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  snapshotChunkBytes: 256 * 1024,
  applyBatchBytesMax: 4 * 1024 * 1024,
  learnerPromotionLagEntriesMax: 1_000,
  snapshotStreaming: false,
  applied: 0,
  bugs: new Set<PlantedBug>(),
} as const satisfies Omit<RaftConfig, 'id' | 'random'>;

export function raftConfig(
  partial: Partial<RaftConfig> & Pick<RaftConfig, 'id' | 'random'>,
): RaftConfig {
  const config: RaftConfig = { ...defaultRaftConfig, ...partial };
  validateRaftConfig(config);
  return config;
}

export function validateRaftConfig(c: RaftConfig): void {
  assert(Number.isInteger(c.id) && c.id > 0, `id must be a positive integer, got ${c.id}`);
  assert(c.heartbeatTicks >= 1, 'heartbeatTicks must be >= 1');
  assert(c.electionTicks > c.heartbeatTicks, 'electionTicks must be greater than heartbeatTicks');
  assert(c.inflightMessagesMax >= 1, 'inflightMessagesMax must be >= 1');
  assert(c.inflightBytesMax >= c.appendMessageBytesMax, 'inflightBytesMax must be >= appendMessageBytesMax');
  assert(c.snapshotChunkBytes >= 1, 'snapshotChunkBytes must be >= 1');
  assert(c.readMode !== 'lease' || c.checkQuorum, 'lease reads need checkQuorum');
  assert(c.clockDriftBoundPermille >= 0 && c.clockDriftBoundPermille < 500, 'clockDriftBoundPermille in [0, 500)');
}
