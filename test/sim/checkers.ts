/**
 * The invariant checkers. They see the cluster only through observations (status polls, synced disk
 * writes, state-machine applies and restores, client operations) and keep just enough global state to
 * check each observation in O(1) or O(new entries): they run after every simulator event.
 *
 * A checker never throws into the code under test: the first violation is recorded and the simulator stops.
 */
import type { LoadedLog, LogWrite } from '../../src/storage/log-store.ts';
import type { NodeStatus } from '../../src/raft/node-api.ts';
import type { ConfState, Entry, HardState, NodeId, SnapshotMetadata } from '../../src/raft/types.ts';
import { EntryType, NONE } from '../../src/raft/types.ts';
import { DurableLogMirror } from './durable-log.ts';
import { hashBytes } from './hash.ts';
import { decodeCommand, type KvObserver } from './kv.ts';

export const violationKinds = [
  /** Two leaders in one term, a vote changed within a term, or a durable term went backwards. */
  'election-safety',
  /** Two durable log entries with the same (index, term) differ, in content or in the entry before them. */
  'log-matching',
  /** A leader lacks an entry that was committed before it was elected. */
  'leader-completeness',
  /** A leader advanced its commit index to an entry of an earlier term by counting replicas (Raft §5.4.2). */
  'commit-rule',
  /** Two nodes applied different entries at one index, a committed entry changed, or applies went backwards. */
  'state-machine-safety',
  /** A state machine restored from a snapshot differs from the state every node had at that index. */
  'snapshot-consistency',
  /** A leader reported an entry committed while fewer than a quorum held it on disk. */
  'commit-durability',
  /** An acknowledged write is not what ends up applied at its index. */
  'acked-write-lost',
  /** A read missed an earlier acknowledged write or read, or returned a value that was never the state. */
  'linearizability',
  /** A restarted node lost state that was synced before its crash. */
  'durability',
  /** A log store loaded a corrupted record instead of reporting it. */
  'corruption-undetected',
  /** Metadata workload: a node's (or the model's) namespace is not a tree (checkNamespaceInvariants). */
  'namespace-invariant',
  /** Metadata workload: a retried (clientId, seq) was applied again, or answered other than its first result. */
  'exactly-once',
  /** Metadata workload: the chunk manager ordered a copy onto a server that already is a replica of the chunk. */
  'chunk-placement',
  /** Metadata workload, after healing: a sealed chunk of a live file stayed below its replication factor. */
  'chunk-replication',
  /** Metadata workload, after healing: a server kept a sealed chunk at a version below the current one. */
  'chunk-stale-replica',
  /** After healing: a live file whose writer is gone (lease released or expired) kept an unsealed chunk, or (data workload) a recovered file is not a prefix of what its writer wrote. */
  'lease-recovery',
  /**
   * The chunk manager's view, kept up to date by the store's writes (src/placement/view.ts ViewTracker), differs
   * from a whole read of the same store state.
   */
  'view-incremental',
  /** Data workload: a writer received an ack for bytes a replica of its chain did not hold. */
  'data-pipeline-ack',
  /** Data workload: a replica served a read at a version other than the one it holds. */
  'data-stale-replica',
  /** Data workload: a read during the run returned bytes other than the ones written there. */
  'data-read-correct',
  /** Data workload, after healing: a replica listed for a sealed chunk fails verification (a flip not repaired). */
  'data-corruption-repaired',
  /** Data workload, after healing: an acknowledged file (or a listed replica of it) does not read back exactly. */
  'data-durability',
  /** After healing, the cluster did not elect a leader and commit a proposal everywhere in time. */
  'liveness',
  /** An exception escaped the code under test. */
  'node-crash',
] as const;
export type ViolationKind = (typeof violationKinds)[number];

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
  readonly atMs: number;
}

/** The bounds a client operation must respect, captured when it is invoked (real-time order). */
export interface OperationFloor {
  /** Highest log index of a write acknowledged before the invocation. */
  readonly ackedIndex: number;
  /** Highest state index observed by a read that completed before the invocation. */
  readonly observedIndex: number;
}

/** A leader is checked for every committed entry in this window below the highest commit; log matching covers the rest. */
export const LEADER_COMPLETENESS_WINDOW_ENTRIES = 256;

interface LeaderPoll {
  readonly term: number;
  readonly commit: number;
  readonly confState: ConfState;
}

interface LogLink {
  readonly prevTerm: number | null;
  readonly dataHash: number;
  readonly nodeId: NodeId;
}

interface AppliedRecord {
  readonly term: number;
  readonly dataHash: number;
  readonly nodeId: NodeId;
}

interface AckedWrite {
  readonly term: number;
  readonly dataHash: number;
  readonly description: string;
}

/** Every value each key ever had, by the index of the entry that wrote it. Appended in index order. */
class ReferenceState {
  private readonly history = new Map<string, { indices: number[]; values: string[] }>();

  record(index: number, key: string, value: string): void {
    let h = this.history.get(key);
    if (h === undefined) {
      h = { indices: [], values: [] };
      this.history.set(key, h);
    }
    h.indices.push(index);
    h.values.push(value);
  }

  keys(): IterableIterator<string> {
    return this.history.keys();
  }

  /** The value of `key` once every entry up to `index` has been applied. */
  valueAt(key: string, index: number): string | undefined {
    const h = this.history.get(key);
    if (h === undefined) return undefined;
    // Binary search for the last write at or below `index`.
    let lo = 0;
    let hi = h.indices.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((h.indices[mid] as number) <= index) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? undefined : h.values[found];
  }
}

export interface CheckerStats {
  statusPolls: number;
  leadersObserved: number;
  entriesCommitted: number;
  entriesApplied: number;
  snapshotsRestored: number;
  durableWrites: number;
  writesAcked: number;
  readsChecked: number;
}

export class InvariantChecker implements KvObserver {
  private firstViolation: Violation | null = null;
  readonly stats: CheckerStats = {
    statusPolls: 0,
    leadersObserved: 0,
    entriesCommitted: 0,
    entriesApplied: 0,
    snapshotsRestored: 0,
    durableWrites: 0,
    writesAcked: 0,
    readsChecked: 0,
  };

  // Election safety.
  private readonly leaderByTerm = new Map<number, NodeId>();

  // Log matching: (index, term) -> the link every durable copy of that entry must agree on.
  private readonly links = new Map<number, Map<number, LogLink>>();
  private readonly mirrors = new Map<NodeId, DurableLogMirror>();
  private readonly corruptionInjected = new Set<NodeId>();

  // Commits: committedTerm[i] is the term of the committed entry at i (0 when no poll has seen it yet).
  private readonly committedTerm: number[] = [0];
  /**
   * commitTermSeen[i]: the lowest term of a node seen with a commit index ≥ i. The term in which entry i was
   * committed is at most this (a node learns of a commit from a leader of that term or a later one).
   */
  private readonly commitTermSeen: number[] = [0];
  private commitMax = 0;
  private readonly commitSeen = new Map<NodeId, number>();
  /** Per node: what the last poll that found it leading saw. */
  private readonly leaderCommitSeen = new Map<NodeId, LeaderPoll>();

  // State machine safety.
  private readonly applied = new Map<number, AppliedRecord>();
  private appliedMax = 0;
  private readonly reference = new ReferenceState();

  // Client-visible guarantees.
  private readonly acked = new Map<number, AckedWrite>();
  private ackedIndexMax = 0;
  private observedIndexMax = 0;

  constructor(private readonly nowMs: () => number) {}

  get violation(): Violation | null {
    return this.firstViolation;
  }

  get highestCommit(): number {
    return this.commitMax;
  }

  get highestAckedIndex(): number {
    return this.ackedIndexMax;
  }

  /** Records a violation (the first one wins). Public so that the runner can report liveness and crashes. */
  fail(kind: ViolationKind, message: string): void {
    if (this.firstViolation === null) this.firstViolation = { kind, message, atMs: this.nowMs() };
  }

  mirror(nodeId: NodeId): DurableLogMirror {
    let m = this.mirrors.get(nodeId);
    if (m === undefined) {
      m = new DurableLogMirror();
      this.mirrors.set(nodeId, m);
    }
    return m;
  }

  markCorruptionInjected(nodeId: NodeId): void {
    this.corruptionInjected.add(nodeId);
  }

  // ---- Status polls: election safety, commit tracking, leader completeness, commit durability ----

  /** A fresh incarnation of a node starts over: its commit index comes from its disk again. */
  onRestart(nodeId: NodeId): void {
    this.commitSeen.delete(nodeId);
    this.leaderCommitSeen.delete(nodeId);
  }

  onStatus(status: NodeStatus, termAt: (index: number) => number | null): void {
    this.stats.statusPolls++;
    const previous = this.leaderCommitSeen.get(status.id);
    const leadingSameTerm = status.role === 'leader' && previous !== undefined && previous.term === status.term;
    const before = leadingSameTerm ? previous : undefined;
    if (status.role === 'leader') {
      this.checkLeader(status, termAt);
      this.checkCommitRule(status, before, termAt);
      this.leaderCommitSeen.set(status.id, { term: status.term, commit: status.commit, confState: status.confState });
    } else {
      this.leaderCommitSeen.delete(status.id);
    }
    if (status.commit > (this.commitSeen.get(status.id) ?? 0)) this.checkCommit(status, before?.confState, termAt);
  }

  /**
   * Raft §5.4.2: a leader commits only entries of its own term by counting replicas (earlier ones commit
   * indirectly, with them). So while a node leads one term, each advance of its commit index lands on an
   * entry of that term.
   */
  private checkCommitRule(status: NodeStatus, before: LeaderPoll | undefined, termAt: (index: number) => number | null): void {
    if (before === undefined || status.commit <= before.commit) return;
    const term = termAt(status.commit);
    if (term !== null && term !== status.term) {
      this.fail(
        'commit-rule',
        `n${status.id}, leader of term ${status.term}, advanced its commit index from ${before.commit} to ${status.commit}, an entry of term ${term}`,
      );
    }
  }

  private checkLeader(status: NodeStatus, termAt: (index: number) => number | null): void {
    const known = this.leaderByTerm.get(status.term);
    if (known === status.id) return;
    if (known !== undefined) {
      this.fail('election-safety', `two leaders in term ${status.term}: n${known} and n${status.id}`);
      return;
    }
    this.leaderByTerm.set(status.term, status.id);
    this.stats.leadersObserved++;
    // Leader completeness (Raft §5.4.1): the new leader holds every entry committed in an earlier term. (A
    // candidate that was paused with its votes unread may become leader of a term the others have left;
    // it need not hold what they committed since, and it cannot commit anything.)
    const low = Math.max(1, this.commitMax - LEADER_COMPLETENESS_WINDOW_ENTRIES);
    for (let i = this.commitMax; i >= low; i--) {
      const expected = this.committedTerm[i] ?? 0;
      if (expected === 0) continue;
      if ((this.commitTermSeen[i] ?? Infinity) >= status.term) continue;
      const term = termAt(i);
      if (term === null && i < status.firstIndex) break; // compacted into a snapshot: it holds it
      if (term !== expected) {
        this.fail(
          'leader-completeness',
          `n${status.id} became leader of term ${status.term} without committed entry ${i} (term ${expected}); ` +
            `its log has ${term === null ? 'nothing' : `term ${term}`} there (log ${status.firstIndex}..${status.lastIndex})`,
        );
        return;
      }
    }
  }

  /** `confBefore`: the leader's configuration at the previous poll, when it was already leading this term. */
  private checkCommit(status: NodeStatus, confBefore: ConfState | undefined, termAt: (index: number) => number | null): void {
    const from = (this.commitSeen.get(status.id) ?? 0) + 1;
    this.commitSeen.set(status.id, status.commit);
    for (let i = from; i <= status.commit; i++) {
      const term = termAt(i);
      if (term === null) continue; // compacted on this node
      while (this.commitTermSeen.length <= i) this.commitTermSeen.push(Infinity);
      this.commitTermSeen[i] = Math.min(this.commitTermSeen[i]!, status.term);
      const expected = this.committedTerm[i] ?? 0;
      if (expected === 0) {
        this.committedTerm[i] = term;
        this.stats.entriesCommitted++;
      } else if (expected !== term) {
        this.fail(
          'state-machine-safety',
          `committed entry ${i} changed: n${status.id} has term ${term} committed there, earlier term ${expected}`,
        );
        return;
      }
    }
    if (status.commit > this.commitMax) {
      const previousMax = this.commitMax;
      this.commitMax = status.commit;
      for (let i = this.committedTerm.length; i <= status.commit; i++) this.committedTerm.push(0);
      // Only a leader's commit is checked against its own configuration: a follower may lag behind on
      // membership and judge by an older one.
      if (status.role === 'leader') this.checkCommitDurable(status, confBefore, previousMax);
    }
  }

  /**
   * The newest committed entry must be on disk on a quorum of the leader's configuration. A conf change
   * applied in the same event may have replaced that configuration since, so a quorum of the configuration
   * seen at the previous poll also counts.
   */
  private checkCommitDurable(status: NodeStatus, confBefore: ConfState | undefined, previousMax: number): void {
    const index = status.commit;
    const term = this.committedTerm[index] ?? 0;
    if (term === 0 || index <= previousMax) return;
    const shortfall = this.durableQuorumShortfall(status.confState, index, term);
    if (shortfall === null) return;
    if (confBefore !== undefined && this.durableQuorumShortfall(confBefore, index, term) === null) return;
    this.fail('commit-durability', `n${status.id} (leader, term ${status.term}) committed ${index} (term ${term}) but ${shortfall}`);
  }

  /** Null if a quorum of `conf` (each half, when joint) holds (index, term) on disk; else what is missing. */
  private durableQuorumShortfall(conf: ConfState, index: number, term: number): string | null {
    for (const voters of configHalves(conf)) {
      const have = voters.filter((v) => this.mirrors.get(v)?.holds(index, term) === true);
      if (have.length < Math.floor(voters.length / 2) + 1) {
        return `only [${have.map((v) => `n${v}`).join(',')}] of voters [${voters.map((v) => `n${v}`).join(',')}] have it on disk`;
      }
    }
    return null;
  }

  // ---- Durable writes: log matching, vote safety, durability across crashes ----

  onDurableLoad(nodeId: NodeId, loaded: LoadedLog): void {
    const mirror = this.mirror(nodeId);
    this.checkSyncedStateSurvived(nodeId, mirror, loaded);
    mirror.reset(loaded);
    const first = loaded.entries[0];
    let prevTerm: number | null =
      first !== undefined && first.index - 1 === mirror.snapshotIndex && mirror.snapshotIndex > 0 ? mirror.snapshotTerm : null;
    for (const entry of loaded.entries) {
      this.registerLink(nodeId, entry, prevTerm, 'loaded');
      prevTerm = entry.term;
    }
  }

  private checkSyncedStateSurvived(nodeId: NodeId, before: DurableLogMirror, loaded: LoadedLog): void {
    const hs = loaded.hardState;
    const synced = before.hardState;
    if (hs.term < synced.term || (hs.term === synced.term && synced.vote !== NONE && hs.vote !== synced.vote)) {
      this.fail(
        'durability',
        `n${nodeId} restarted with term ${hs.term} vote n${hs.vote}, but term ${synced.term} vote n${synced.vote} was synced`,
      );
      return;
    }
    // Every synced entry is still there, or was replaced by a newer leader's entry (an unsynced write that
    // happened to survive the crash), or was compacted into a snapshot.
    const loadedSnapshotIndex = loaded.snapshot?.metadata.index ?? 0;
    const loadedFirst = loaded.entries[0]?.index ?? loadedSnapshotIndex + 1;
    for (let i = Math.max(before.snapshotIndex + 1, loadedSnapshotIndex + 1); i <= before.lastIndex; i++) {
      const syncedTerm = before.termAt(i);
      if (syncedTerm === null) continue;
      const loadedTerm = loaded.entries[i - loadedFirst]?.term;
      if (loadedTerm === undefined) {
        if (i <= hs.commit) {
          this.fail('durability', `n${nodeId} restarted without its synced committed entry ${i} (term ${syncedTerm})`);
          return;
        }
        break; // a surviving unsynced truncation; what follows is gone too
      }
      if (loadedTerm < syncedTerm) {
        this.fail('durability', `n${nodeId} restarted with entry ${i} of term ${loadedTerm}, but term ${syncedTerm} was synced`);
        return;
      }
    }
  }

  onDurableSave(nodeId: NodeId, write: LogWrite): void {
    this.stats.durableWrites++;
    const mirror = this.mirror(nodeId);
    if (write.snapshot !== undefined) mirror.applySnapshot(write.snapshot.metadata);
    if (write.entries !== undefined && write.entries.length > 0) {
      mirror.appendEntries(write.entries, (entry, prevTerm) => this.registerLink(nodeId, entry, prevTerm, 'saved'));
    }
    if (write.hardState !== undefined) {
      this.checkHardState(nodeId, mirror.hardState, write.hardState);
      mirror.hardState = write.hardState;
    }
  }

  onDurableCompact(nodeId: NodeId, index: number): void {
    this.mirror(nodeId).compact(index);
  }

  private checkHardState(nodeId: NodeId, previous: HardState, next: HardState): void {
    if (next.term < previous.term) {
      this.fail('election-safety', `n${nodeId} persisted term ${next.term} after term ${previous.term}`);
    } else if (next.term === previous.term && previous.vote !== NONE && next.vote !== previous.vote) {
      this.fail('election-safety', `n${nodeId} changed its vote in term ${next.term} from n${previous.vote} to n${next.vote}`);
    }
  }

  /**
   * Log matching (Raft §5.3) by induction: if every durable copy of entry (i, t) has the same content and
   * the same term at i - 1, then any two logs holding (i, t) agree on every entry up to i that both hold.
   * This is equivalent to comparing per-index chain hashes, and costs O(1) per entry.
   */
  private registerLink(nodeId: NodeId, entry: Entry, prevTerm: number | null, how: 'saved' | 'loaded'): void {
    let byTerm = this.links.get(entry.index);
    if (byTerm === undefined) {
      byTerm = new Map();
      this.links.set(entry.index, byTerm);
    }
    const dataHash = hashBytes(entry.data) ^ (entry.type === EntryType.ConfChange ? 0x5a5a5a5 : 0);
    const known = byTerm.get(entry.term);
    if (known === undefined) {
      byTerm.set(entry.term, { prevTerm, dataHash, nodeId });
      return;
    }
    const contentDiffers = known.dataHash !== dataHash;
    const prevDiffers = known.prevTerm !== null && prevTerm !== null && known.prevTerm !== prevTerm;
    if (!contentDiffers && !prevDiffers) {
      if (known.prevTerm === null && prevTerm !== null) byTerm.set(entry.term, { prevTerm, dataHash, nodeId });
      return;
    }
    const what = contentDiffers
      ? 'different content'
      : `a different previous term (${prevTerm} vs ${known.prevTerm})`;
    const kind = how === 'loaded' && this.corruptionInjected.has(nodeId) ? 'corruption-undetected' : 'log-matching';
    this.fail(kind, `entry (index ${entry.index}, term ${entry.term}) ${how} on n${nodeId} has ${what} than on n${known.nodeId}`);
  }

  // ---- State machine: safety, snapshots ----

  onApply(nodeId: NodeId, entry: Entry, lastIndexBefore: number): void {
    this.stats.entriesApplied++;
    if (entry.type !== EntryType.Normal || entry.data.length === 0) {
      this.fail('state-machine-safety', `n${nodeId} was asked to apply a ${entry.type === EntryType.Normal ? 'no-op' : 'conf change'} at ${entry.index}`);
      return;
    }
    if (entry.index <= lastIndexBefore) {
      this.fail('state-machine-safety', `n${nodeId} applied index ${entry.index} after index ${lastIndexBefore}`);
      return;
    }
    const committed = this.committedTerm[entry.index] ?? 0;
    if (committed !== 0 && committed !== entry.term) {
      this.fail('state-machine-safety', `n${nodeId} applied term ${entry.term} at ${entry.index}, where term ${committed} was committed`);
      return;
    }
    const dataHash = hashBytes(entry.data);
    const ack = this.acked.get(entry.index);
    if (ack !== undefined && (ack.term !== entry.term || ack.dataHash !== dataHash)) {
      this.fail('acked-write-lost', `n${nodeId} applied ${describeEntry(entry)} at ${entry.index}, where ${ack.description} was acknowledged`);
      return;
    }
    const known = this.applied.get(entry.index);
    if (known !== undefined) {
      if (known.term !== entry.term || known.dataHash !== dataHash) {
        this.fail(
          'state-machine-safety',
          `n${nodeId} applied ${describeEntry(entry)} at ${entry.index}, n${known.nodeId} applied term ${known.term} there`,
        );
      }
      return;
    }
    if (entry.index < this.appliedMax) {
      // The first apply of an index always comes in index order: whoever applied past it applied it too.
      this.fail('state-machine-safety', `n${nodeId} applied a command at ${entry.index} that nodes past it never applied`);
      return;
    }
    this.applied.set(entry.index, { term: entry.term, dataHash, nodeId });
    this.appliedMax = entry.index;
    const command = decodeCommand(entry.data);
    if (command !== null) this.reference.record(entry.index, command.key, command.value);
  }

  onRestore(nodeId: NodeId, metadata: SnapshotMetadata, state: ReadonlyMap<string, string>): void {
    this.stats.snapshotsRestored++;
    const committed = this.committedTerm[metadata.index] ?? 0;
    if (committed !== 0 && committed !== metadata.term) {
      this.fail('snapshot-consistency', `n${nodeId} restored a snapshot at ${metadata.index} term ${metadata.term}; term ${committed} was committed there`);
      return;
    }
    const keys = new Set([...this.reference.keys(), ...state.keys()]);
    for (const key of keys) {
      const expected = this.reference.valueAt(key, metadata.index);
      const actual = state.get(key);
      if (actual !== expected) {
        this.fail(
          'snapshot-consistency',
          `n${nodeId} restored a snapshot at ${metadata.index} with ${key}=${String(actual)}; the state there has ${key}=${String(expected)}`,
        );
        return;
      }
    }
  }

  /** A state machine checked elsewhere (the metadata workload) restored a snapshot. */
  noteRestore(): void {
    this.stats.snapshotsRestored++;
  }

  /** A read checked elsewhere (the metadata workload) observed the state at `index`. */
  noteObserved(index: number): void {
    this.stats.readsChecked++;
    this.observedIndexMax = Math.max(this.observedIndexMax, index);
  }

  // ---- Client operations: acknowledged writes, linearizable reads ----

  /** Captures the real-time bounds for an operation being invoked now. */
  floorNow(): OperationFloor {
    return { ackedIndex: this.ackedIndexMax, observedIndex: this.observedIndexMax };
  }

  onWriteAcked(write: { key: string; value: string; data: Uint8Array; index: number; term: number; floor: OperationFloor }): void {
    this.stats.writesAcked++;
    const description = `write ${write.key}=${write.value} (index ${write.index}, term ${write.term})`;
    if (write.index <= write.floor.ackedIndex || write.index <= write.floor.observedIndex) {
      this.fail(
        'linearizability',
        `${description} was acknowledged at or below index ${Math.max(write.floor.ackedIndex, write.floor.observedIndex)}, ` +
          'which an operation completed before it was invoked had already reached',
      );
      return;
    }
    const dataHash = hashBytes(write.data);
    const known = this.applied.get(write.index);
    if (known !== undefined && (known.term !== write.term || known.dataHash !== dataHash)) {
      this.fail('acked-write-lost', `${description} was acknowledged, but n${known.nodeId} applied term ${known.term} there`);
      return;
    }
    this.acked.set(write.index, { term: write.term, dataHash, description });
    this.ackedIndexMax = Math.max(this.ackedIndexMax, write.index);
  }

  /**
   * A linearizable read: `readIndex` is what read() returned, `stateIndex` the index of the state the value
   * was read from (at least readIndex).
   */
  onReadCompleted(read: { nodeId: NodeId; key: string; value: string | undefined; readIndex: number; stateIndex: number; floor: OperationFloor }): void {
    this.stats.readsChecked++;
    const floor = Math.max(read.floor.ackedIndex, read.floor.observedIndex);
    if (read.readIndex < floor) {
      const what = read.floor.ackedIndex >= read.floor.observedIndex ? 'a write acknowledged' : 'a read completed';
      this.fail(
        'linearizability',
        `read of ${read.key} on n${read.nodeId} returned read index ${read.readIndex}, but ${what} before it was invoked reached index ${floor} (stale read)`,
      );
      return;
    }
    const expected = this.reference.valueAt(read.key, read.stateIndex);
    if (read.value !== expected) {
      this.fail(
        'linearizability',
        `read of ${read.key} on n${read.nodeId} at index ${read.stateIndex} returned ${String(read.value)}; the state there has ${String(expected)}`,
      );
      return;
    }
    this.observedIndexMax = Math.max(this.observedIndexMax, read.stateIndex);
  }
}

function configHalves(conf: ConfState): (readonly NodeId[])[] {
  return [conf.voters, conf.votersOutgoing].filter((half) => half.length > 0);
}

function describeEntry(entry: Entry): string {
  const command = decodeCommand(entry.data);
  return command === null ? `an undecodable entry (term ${entry.term})` : `${command.key}=${command.value} (term ${entry.term})`;
}
