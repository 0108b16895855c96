/**
 * What the simulator knows about each planted bug of the Raft core: a one-line description for --list-bugs,
 * and the invariants whose violation counts as catching it (the first violation a run reports must be one
 * of them). Typed as a Record over PlantedBug, so a bug added to src/raft/config.ts without an entry here
 * fails to compile.
 */
import type { FsmBug } from '../../src/fsm/bugs.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { DataBug } from '../../src/chunkserver/bugs.ts';
import type { PlantedBug } from '../../src/raft/config.ts';
import type { ViolationKind } from './checkers.ts';

export interface PlantedBugInfo {
  readonly description: string;
  /** The checker designed to catch it first. */
  readonly primaryViolation: ViolationKind;
  /** Every violation that is a faithful symptom of this bug. */
  readonly expectedViolations: readonly ViolationKind[];
}

export const plantedBugCatalog: Readonly<Record<PlantedBug, PlantedBugInfo>> = {
  'commit-earlier-term': {
    description: 'a leader counts replicas of an earlier-term entry toward commit (Raft §5.4.2, Figure 8)',
    primaryViolation: 'commit-rule',
    expectedViolations: ['commit-rule', 'leader-completeness', 'state-machine-safety', 'acked-write-lost', 'linearizability'],
  },
  'ack-before-persist': {
    description: 'a follower acknowledges appended entries and votes before they are persisted',
    primaryViolation: 'commit-durability',
    expectedViolations: [
      'commit-durability',
      'election-safety',
      'leader-completeness',
      'state-machine-safety',
      'acked-write-lost',
      'linearizability',
    ],
  },
  'double-vote': {
    description: 'a node grants a second vote in the same term',
    primaryViolation: 'election-safety',
    expectedViolations: ['election-safety', 'log-matching', 'leader-completeness', 'state-machine-safety'],
  },
  'read-without-quorum': {
    description: 'reads are served from local state without ReadIndex or a lease',
    primaryViolation: 'linearizability',
    expectedViolations: ['linearizability'],
  },
  'prevote-skip-log-check': {
    description: 'pre-votes (and so votes) are granted without the up-to-date log check (Raft §5.4.1)',
    primaryViolation: 'leader-completeness',
    expectedViolations: ['leader-completeness', 'state-machine-safety', 'acked-write-lost', 'commit-rule', 'linearizability'],
  },
  'commit-without-quorum': {
    description: 'a leader commits and acknowledges what it persisted itself, without a quorum',
    primaryViolation: 'commit-durability',
    expectedViolations: [
      'commit-rule',
      'commit-durability',
      'leader-completeness',
      'state-machine-safety',
      'acked-write-lost',
      'linearizability',
      // A follower that "committed" such an entry asserts when the next leader's log overwrites it.
      'node-crash',
    ],
  },
};

/** The planted bugs of the metadata state machine (src/fsm/bugs.ts), caught by the metadata workload. */
export const fsmBugCatalog: Readonly<Record<FsmBug, PlantedBugInfo>> = {
  'fsm-non-atomic-rename': {
    description: 'metadata: rename onto an existing target leaves the replaced inode behind, unreachable',
    primaryViolation: 'state-machine-safety',
    expectedViolations: ['state-machine-safety', 'namespace-invariant', 'exactly-once', 'linearizability'],
  },
  'fsm-no-session-dedup': {
    description: 'metadata: session stamps are ignored, so a retried (clientId, seq) is applied again',
    primaryViolation: 'exactly-once',
    expectedViolations: ['state-machine-safety', 'exactly-once', 'linearizability'],
  },
  'fsm-session-index-frozen': {
    description: "metadata: a session's by-use index entry never moves after opening, so it lags the session's use without bound",
    primaryViolation: 'namespace-invariant',
    expectedViolations: ['namespace-invariant', 'state-machine-safety'],
  },
};

/** The planted bugs of the chunk manager (src/placement/bugs.ts), caught by the metadata workload's chunk checks. */
export const placementBugCatalog: Readonly<Record<PlacementBug, PlantedBugInfo>> = {
  'placement-rereplicate-onto-holder': {
    description: 'chunks: re-replication and rebalancing may copy a chunk onto a server that already holds it',
    primaryViolation: 'chunk-placement',
    expectedViolations: ['chunk-placement'],
  },
  'placement-count-dead-replicas': {
    description: 'chunks: replicas on dead servers count as live, so lost replicas are never replaced',
    primaryViolation: 'chunk-replication',
    // Lease recovery then waits for answers from dead servers too, so a file whose chunk only they held stays unrecovered.
    expectedViolations: ['chunk-replication', 'lease-recovery'],
  },
  'placement-keep-stale': {
    description: 'chunks: reported replicas at an old version are neither deleted nor unlisted',
    primaryViolation: 'chunk-stale-replica',
    expectedViolations: ['chunk-stale-replica', 'chunk-replication'],
  },
  'placement-keep-orphans': {
    description: 'chunks: reported replicas of chunks no file has any more (deleted, abandoned) are never deleted',
    primaryViolation: 'chunk-stale-replica',
    expectedViolations: ['chunk-stale-replica'],
  },
  'placement-gc-on-reports-only': {
    description: 'chunks: garbage is judged only when a chunkserver reports it (deleted files\' and surplus replicas wait for a full report)',
    primaryViolation: 'chunk-stale-replica',
    expectedViolations: ['chunk-stale-replica'],
  },
  'placement-skip-lease-recovery': {
    description: 'chunks: lease recovery never begins, so files whose writer vanished keep unsealed chunks',
    primaryViolation: 'lease-recovery',
    expectedViolations: ['lease-recovery'],
  },
  'view-ignore-file-changes': {
    description: "chunks: the leader's kept view ignores changes to files (a file's deletion, its new replication factor)",
    primaryViolation: 'view-incremental',
    // Chunks of deleted files then look live: their replicas are re-replicated instead of reclaimed.
    expectedViolations: ['view-incremental', 'chunk-stale-replica', 'chunk-replication', 'chunk-placement'],
  },
};

/** The planted bugs of the chunkserver data path (src/chunkserver/bugs.ts), caught by the data workload. */
export const dataBugCatalog: Readonly<Record<DataBug, PlantedBugInfo>> = {
  'data-ack-before-last-replica': {
    description: 'data: a pipeline hop acknowledges a packet before its downstream replicas acknowledged it',
    primaryViolation: 'data-pipeline-ack',
    expectedViolations: ['data-pipeline-ack', 'data-durability', 'data-read-correct'],
  },
  'data-skip-read-checksum': {
    description: 'data: the replica store reads without verifying block checksums, so flipped bits reach readers',
    primaryViolation: 'data-read-correct',
    expectedViolations: ['data-read-correct', 'data-durability', 'data-corruption-repaired'],
  },
  'data-reuse-stale-replica': {
    description: 'data: the replica store serves a read at any version it holds, so a stale replica answers after a version bump',
    primaryViolation: 'data-stale-replica',
    expectedViolations: ['data-stale-replica', 'data-read-correct', 'data-durability'],
  },
  'data-read-ahead-unchecked': {
    description: "data: a client read session copies out of its read-ahead after a jump without checking where the piece starts",
    primaryViolation: 'data-read-correct',
    expectedViolations: ['data-read-correct'],
  },
  'data-skip-packet-crc': {
    description: "data: the pipeline's last replica does not check the writer's packet CRCs, so a packet corrupted in flight is stored and acknowledged",
    // A corruption on the writer's link to the first hop leaves every replica bad under good-looking CRCs:
    // reads and the scrubber find them all corrupt, so an acknowledged file cannot be read back.
    primaryViolation: 'data-durability',
    expectedViolations: ['data-durability', 'data-corruption-repaired', 'data-read-correct'],
  },
};
