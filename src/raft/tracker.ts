/**
 * What the leader knows of each member: replication progress and flow control, plus the membership
 * configuration and the votes of an election in progress.
 */
import type { ConfState, NodeId, Snapshot } from './types.ts';
import { assert } from './errors.ts';
import { jointCommitted, jointVoteResult, type VoteResult } from './quorum.ts';

/**
 * The in-flight window of append messages to one follower: a FIFO of (last index, bytes) with caps on
 * count and bytes. Acknowledging index i frees every message whose last index <= i.
 */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(
    readonly messagesMax: number,
    readonly bytesMax: number,
  ) {}

  add(lastIndex: number, bytes: number): void {
    assert(!this.full(), 'inflights overflow');
    const previous = this.lastIndexes[this.lastIndexes.length - 1];
    assert(previous === undefined || lastIndex > previous, 'inflight indexes must increase');
    this.lastIndexes.push(lastIndex);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  freeLE(index: number): void {
    let n = 0;
    while (n < this.lastIndexes.length && this.lastIndexes[n]! <= index) {
      this.bytes -= this.sizes[n]!;
      n++;
    }
    if (n > 0) {
      this.lastIndexes.splice(0, n);
      this.sizes.splice(0, n);
    }
  }

  /** Frees the oldest message's slot: lets one more message through a window whose acks were lost. */
  freeFirstOne(): void {
    const first = this.lastIndexes[0];
    if (first !== undefined) this.freeLE(first);
  }

  full(): boolean {
    return this.lastIndexes.length >= this.messagesMax || this.bytes >= this.bytesMax;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** A snapshot being streamed to one follower in chunks. */
export interface SnapshotTransfer {
  readonly snapshot: Snapshot;
  /** Bytes sent so far; bytes the follower confirmed. Invariant: ackedBytes <= sentBytes <= size. */
  sentBytes: number;
  ackedBytes: number;
}

/**
 * Replication progress of one member, as seen by the leader.
 * Invariant: 0 <= match < next.
 */
export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: one append was sent since the last heartbeat response; wait before sending more. */
  probeSent = false;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** The leader-local tick at which the latest heartbeat this member acknowledged was sent (lease reads). */
  ackedHeartbeatTick = -1;
  /** The largest commit index sent to this member (so the leader can tell it a newer one promptly). */
  sentCommit = 0;
  snapshotTransfer: SnapshotTransfer | null = null;
  readonly inflights: Inflights;

  constructor(
    next: number,
    inflightMessagesMax: number,
    inflightBytesMax: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const snapIndex = this.snapshotTransfer?.snapshot.metadata.index ?? 0;
      this.next = Math.max(this.match + 1, snapIndex + 1);
    } else {
      this.next = this.match + 1;
    }
    this.resetState('probe');
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.resetState('replicate');
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.resetState('snapshot');
    this.snapshotTransfer = { snapshot, sentBytes: 0, ackedBytes: 0 };
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.snapshotTransfer = null;
    this.inflights.reset();
  }

  /** An append acknowledged up to `index`. Returns whether match moved. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** An append of entries ending at `lastIndex` (of `bytes`) was sent: optimistic pipelining. */
  sentEntries(lastIndex: number, entryCount: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entryCount > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /**
   * A rejection of an append at `rejected` with the follower's hint. Returns whether the rejection
   * was fresh (not a stale duplicate) and next moved back.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}

/** The membership configuration as sets, plus the per-member progress and election votes. */
export class ProgressTracker {
  voters: Set<NodeId> = new Set();
  votersOutgoing: Set<NodeId> = new Set();
  learners: Set<NodeId> = new Set();
  learnersNext: Set<NodeId> = new Set();
  autoLeave = false;
  progress: Map<NodeId, Progress> = new Map();
  votes: Map<NodeId, boolean> = new Map();

  constructor(
    private readonly inflightMessagesMax: number,
    private readonly inflightBytesMax: number,
  ) {}

  confState(): ConfState {
    const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
    return {
      voters: sorted(this.voters),
      votersOutgoing: sorted(this.votersOutgoing),
      learners: sorted(this.learners),
      learnersNext: sorted(this.learnersNext),
      autoLeave: this.autoLeave,
    };
  }

  isJoint(): boolean {
    return this.votersOutgoing.size > 0;
  }

  isVoter(id: NodeId): boolean {
    return this.voters.has(id) || this.votersOutgoing.has(id);
  }

  isMember(id: NodeId): boolean {
    return this.isVoter(id) || this.learners.has(id) || this.learnersNext.has(id);
  }

  /** Every member id, sorted, so iteration order (and therefore message order) is deterministic. */
  memberIds(): NodeId[] {
    return [...this.progress.keys()].sort((a, b) => a - b);
  }

  /** Sets the configuration and creates or drops progress entries to match (new ones start at `next`). */
  applyConf(conf: ConfState, next: number): void {
    this.voters = new Set(conf.voters);
    this.votersOutgoing = new Set(conf.votersOutgoing);
    this.learners = new Set(conf.learners);
    this.learnersNext = new Set(conf.learnersNext);
    this.autoLeave = conf.autoLeave;
    for (const id of this.progress.keys()) {
      if (!this.isMember(id)) this.progress.delete(id);
    }
    const all = [...this.voters, ...this.votersOutgoing, ...this.learners, ...this.learnersNext];
    for (const id of all) {
      const isLearner = !this.isVoter(id);
      const existing = this.progress.get(id);
      if (existing === undefined) {
        const p = new Progress(next, this.inflightMessagesMax, this.inflightBytesMax, isLearner);
        this.progress.set(id, p);
      } else {
        existing.isLearner = isLearner;
      }
    }
  }

  resetProgress(next: number, selfId: NodeId, selfMatch: number): void {
    for (const [id, p] of [...this.progress]) {
      const fresh = new Progress(next, this.inflightMessagesMax, this.inflightBytesMax, p.isLearner);
      if (id === selfId) {
        fresh.match = selfMatch;
        fresh.next = Math.max(next, selfMatch + 1);
        fresh.state = 'replicate';
      }
      this.progress.set(id, fresh);
    }
  }

  /** The largest index replicated on a (joint) quorum of voters. */
  committed(): number {
    const acked = (id: NodeId) => this.progress.get(id)?.match ?? 0;
    const c = jointCommitted([...this.voters], [...this.votersOutgoing], acked);
    return c === Number.POSITIVE_INFINITY ? 0 : c;
  }

  /** The latest leader tick such that a (joint) quorum acknowledged a heartbeat sent at or after it. */
  quorumAckedHeartbeatTick(): number {
    const acked = (id: NodeId) => this.progress.get(id)?.ackedHeartbeatTick ?? -1;
    const c = jointCommitted([...this.voters], [...this.votersOutgoing], acked);
    return c === Number.POSITIVE_INFINITY ? -1 : c;
  }

  /** Whether a (joint) quorum of voters has been active since the last reset. */
  quorumActive(selfId: NodeId): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, p] of this.progress) {
      if (this.isVoter(id)) votes.set(id, id === selfId || p.recentActive);
    }
    return jointVoteResult([...this.voters], [...this.votersOutgoing], votes) === 'won';
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  voteResult(): VoteResult {
    return jointVoteResult([...this.voters], [...this.votersOutgoing], this.votes);
  }

  /** Whether `acks` forms a (joint) quorum of voters. */
  hasQuorum(acks: ReadonlySet<NodeId>): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const id of acks) votes.set(id, true);
    return jointVoteResult([...this.voters], [...this.votersOutgoing], votes) === 'won';
  }
}
