/**
 * The Raft core: a pure, deterministic state machine (the shape of etcd-io/raft).
 *
 * Inputs: step(message), tick(), propose(), proposeConfChange(), readIndex(), transferLeadership(),
 * createSnapshot(), compact(). Output: a Ready batch taken with ready() and acknowledged with advance().
 * No I/O, no timers, no clock, no ambient randomness: time is counted in ticks, randomness is injected.
 *
 * Messages from a leader that carry log data (app, snap) may leave before the leader persists its own
 * entries (Raft thesis §10.2.1); everything else (votes, acknowledgements) only after the persist.
 * The leader counts itself toward commitment only for entries it has persisted (advance()).
 */
import type { RaftConfig } from './config.ts';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  MessageType,
  NodeId,
  ReadState,
  Ready,
  Role,
  Snapshot,
  SnapshotMetadata,
  SoftState,
} from './types.ts';
import { EntryType, NONE } from './types.ts';
import { assert, NotLeaderError, RaftError } from './errors.ts';
import { NO_TERM, RaftLog } from './log.ts';
import { ProgressTracker, type Progress } from './tracker.ts';
import { applyConfChange } from './confchange.ts';
import { decodeConfChange, encodeConfChange } from './codec.ts';
import { concatBytes } from './bytes.ts';

/** Snapshot chunks in flight to one follower, at most. */
export const snapshotChunksInflightMax = 4;

const transferContext = new Uint8Array([0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72]); // "transfer"

/** What a restarting member recovered from its durable log. */
export interface RaftInitialState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
}

interface PendingRead {
  readonly key: string;
  readonly context: Uint8Array;
  readonly from: NodeId;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

interface SnapshotReceive {
  readonly index: number;
  readonly term: number;
  readonly chunks: Uint8Array[];
  received: number;
}

interface OutstandingReady {
  readonly lastEntry: Entry | null;
  readonly snapshotIndex: number | null;
  readonly committedEntries: readonly Entry[];
}

function contextKey(context: Uint8Array): string {
  let s = '';
  for (const b of context) s += String.fromCharCode(b);
  return s;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Messages only a leader sends, which may leave before the leader's own persist. */
const leaderReplicationTypes: ReadonlySet<MessageType> = new Set(['app', 'heartbeat', 'snap', 'timeoutNow']);

export class Raft {
  readonly id: NodeId;
  term: number;
  vote: NodeId;
  lead: NodeId = NONE;
  role: Role = 'follower';
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;

  /** Monotonic count of ticks since start (the leader's lease clock). */
  private ticks = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private campaignHeld = false;
  /**
   * Ticks since a leader was last heard from. With lease reads it starts at 0, so a restarted member still
   * honours a lease it may have granted before the crash; otherwise the member may vote at once.
   */
  private ticksSinceLeaderContact: number;
  private leadTransferee: NodeId = NONE;
  /** Index of the latest conf change proposed by this leader; no new one until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private committedInTerm = false;
  /** Set once this leader sent TimeoutNow: its lease may be overtaken by a forced election. */
  private leaseRevoked = false;
  private readonly pendingReads: PendingRead[] = [];
  private readonly readsAwaitingCommitInTerm: { context: Uint8Array; from: NodeId }[] = [];
  private snapshotReceive: SnapshotReceive | null = null;
  /** Streaming mode: followers that now need a snapshot streamed (taken by the driver). */
  private snapshotRequests: NodeId[] = [];
  /** Streaming mode: snapshot chunk messages from the current leader, for the driver's receiver. */
  private streamedChunks: Message[] = [];

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private outstanding: OutstandingReady | null = null;

  constructor(
    readonly config: RaftConfig,
    initial: RaftInitialState,
  ) {
    this.id = config.id;
    this.ticksSinceLeaderContact = config.readMode === 'lease' ? 0 : config.electionTicks;
    const hs = initial.hardState;
    this.term = hs.term;
    this.vote = hs.vote;
    this.log = new RaftLog(initial.snapshot, initial.entries, hs.commit, config.applied);
    this.tracker = new ProgressTracker(config.inflightMessagesMax, config.inflightBytesMax);
    this.tracker.applyConf(initial.snapshot?.metadata.confState ?? { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, this.log.lastIndex() + 1);
    // Conf changes already applied by the state machine are not re-delivered: replay their effect.
    for (let i = this.log.snapshotIndex() + 1; i <= this.log.applied; i++) {
      const e = this.log.entryAt(i);
      if (e.type === EntryType.ConfChange) this.applyConfChangeEntry(e);
    }
    this.becomeFollower(this.term, NONE);
    this.prevSoftState = { lead: this.lead, role: this.role };
    this.prevHardState = hs;
  }

  // ===================== inputs =====================

  /**
   * `n` ticks of time went by while this member could not run (its process was stalled: a long GC or apply,
   * SIGSTOP). The lease clocks (`ticks`, and the time since a leader was heard from) advance by all of it, so
   * a lease never outlives its bound; the timers that judge other members' silence (election timeout,
   * check-quorum) do not, because the messages those members sent meanwhile are still queued, unread. They
   * are judged one full timeout after the stall instead: a leader does not step down, nor a follower
   * campaign, merely because it stopped itself.
   */
  stalled(n: number): void {
    assert(Number.isSafeInteger(n) && n >= 0, `stalled ticks ${n}`);
    this.ticks += n;
    if (this.role !== 'leader') this.ticksSinceLeaderContact += n;
  }

  tick(): void {
    this.ticks++;
    if (this.role !== 'leader') this.ticksSinceLeaderContact++;
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  /**
   * Held (by the driver, while this member's state machine lags far behind its commit index): the election
   * timeout is longer by `campaignHoldTicks`, so a member that could serve at once wins the election first;
   * this one still campaigns if none did. Votes are unaffected; only liveness is.
   */
  holdCampaign(held: boolean): void {
    this.campaignHeld = held;
  }

  private tickElection(): void {
    this.electionElapsed++;
    const timeout = this.randomizedElectionTimeout + (this.campaignHeld ? this.campaignHoldTicks() : 0);
    if (this.promotable() && this.electionElapsed >= timeout) {
      this.electionElapsed = 0;
      this.campaign(this.config.preVote ? 'preElection' : 'election');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) {
        const active = this.tracker.quorumActive(this.id);
        for (const p of this.tracker.progress.values()) p.recentActive = false;
        if (!active) {
          this.becomeFollower(this.term, NONE);
          return;
        }
      }
      if (this.leadTransferee !== NONE) this.leadTransferee = NONE; // transfer timed out
      if (!this.tracker.isVoter(this.id)) this.handOverLeadership(); // retry the hand-over
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.lastPendingReadContext());
    }
  }

  step(m: Message): void {
    if (m.to !== this.id) return;
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const force = sameBytes(m.context, transferContext);
        const inLease = this.config.checkQuorum && this.ticksSinceLeaderContact < this.config.electionTicks;
        // A member that heard from a leader recently ignores campaigns: this protects lease reads
        // and keeps a partitioned member from disrupting a healthy cluster.
        if (!force && inLease) return;
      }
      if (m.type === 'preVote') {
        // Never change term on a pre-vote request.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // A granted pre-vote carries the future term; the real election will move to it.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if (m.type === 'app' || m.type === 'heartbeat') {
        // A stale leader: answer with our term so it steps down. It may never hear a vote request: with
        // check-quorum or pre-vote the voters do not move terms on campaigns, and a leader that was removed
        // from the configuration hears no campaign at all (it kept leading to hand over, and the member it
        // handed over to leads a configuration without it). Without this answer such a leader led its old
        // term forever, and the clients and chunkservers it answered waited on it (sim seed 1175).
        this.send({ type: 'appResp', to: m.from });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', to: m.from, term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'vote':
      case 'preVote':
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        return;
      case 'candidate':
      case 'preCandidate':
        this.stepCandidate(m);
        return;
      case 'follower':
        this.stepFollower(m);
        return;
    }
  }

  private handleVoteRequest(m: Message): void {
    const isPre = m.type === 'preVote';
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (isPre && m.term > this.term) ||
      (!isPre && this.config.bugs.has('double-vote'));
    const skipLogCheck = this.config.bugs.has('prevote-skip-log-check');
    const upToDate = (skipLogCheck || this.log.isUpToDate(m.index, m.logTerm)) && !this.yieldsNothingTo(m);
    const respType = isPre ? 'preVoteResp' : 'voteResp';
    if (canVote && upToDate) {
      // A pre-vote answer carries the term the candidate will campaign in.
      this.send({ type: respType, to: m.from, term: m.term });
      if (!isPre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  /**
   * A pre-candidate asked for a pre-vote by another pre-candidate with the same log (both timers fired within
   * a message's flight of each other) grants it only to a higher id. Without the tie-break each granted the
   * other's, both campaigned in the same term, each voted for itself, and the vote split: the next election
   * timeout (0.5–0.95 s at the server's defaults) decided it, which broke the 2 s failover target
   * (test/metadata/failover.test.ts, about one run in ten). With it, exactly one of the two gets the other's
   * pre-vote. Any other log order is settled by the up-to-date check as before. Liveness only.
   */
  private yieldsNothingTo(m: Message): boolean {
    return (
      m.type === 'preVote' &&
      this.role === 'preCandidate' &&
      m.logTerm === this.log.lastTerm() &&
      m.index === this.log.lastIndex() &&
      m.from < this.id
    );
  }

  // ----- leader -----

  private stepLeader(m: Message): void {
    if (m.type === 'readIndex') {
      this.handleReadIndexRequest(m.from, m.context ?? new Uint8Array(0));
      return;
    }
    if (m.type === 'transferLeader') {
      this.handleTransfer(m.index);
      return;
    }
    const pr = this.tracker.progress.get(m.from);
    if (pr === undefined) return;
    switch (m.type) {
      case 'appResp':
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return;
      case 'heartbeatResp':
        this.handleHeartbeatResponse(m, pr);
        return;
      case 'snapResp':
        pr.recentActive = true;
        this.handleSnapshotResponse(m, pr);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      let probeIndex = m.rejectHint;
      if (m.logTerm > 0) probeIndex = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, probeIndex)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      if (wasPaused && !pr.isPaused()) this.maybeSendAppend(m.from, false);
      return;
    }
    if (pr.state === 'probe') {
      pr.becomeReplicate();
    } else if (pr.state === 'snapshot') {
      // Done once the follower holds the snapshot, or (it declined it) once the log can serve it again.
      const snapIndex = pr.snapshotTransfer?.snapshot.metadata.index ?? 0;
      if (pr.match >= snapIndex || pr.match + 1 >= this.log.firstIndex()) pr.becomeReplicate();
    } else {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else {
      // Keep the pipeline full: send as many batches as flow control allows.
      while (this.maybeSendAppend(m.from, false)) {
        /* loop */
      }
      // A follower that just caught up learns the commit index now, not at the next heartbeat.
      if (pr.sentCommit < Math.min(this.log.committed, pr.match)) this.maybeSendAppend(m.from, true);
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.probeSent = false;
    pr.ackedHeartbeatTick = Math.max(pr.ackedHeartbeatTick, m.index);
    // Acks may have been lost: free one slot so the pipeline makes progress (a gap is then rejected and
    // the follower probed).
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.state === 'snapshot') {
      // A streamed transfer is paced and resent by the driver's sender.
      if (!this.config.snapshotStreaming) this.resendStalledSnapshot(m.from, pr);
    } else if (pr.match < this.log.lastIndex()) {
      this.maybeSendAppend(m.from, true);
    }
    if (m.context !== null && m.context.byteLength > 0) this.ackRead(m.from, m.context);
  }

  private handleSnapshotResponse(m: Message, pr: Progress): void {
    // Streamed transfers are acknowledged to the driver's sender, not to the core.
    if (this.config.snapshotStreaming) return;
    const t = pr.snapshotTransfer;
    if (pr.state !== 'snapshot' || t === null || t.snapshot.metadata.index !== m.rejectHint) return;
    if (m.reject) {
      t.sentBytes = Math.min(m.index, t.snapshot.data.byteLength);
      t.ackedBytes = t.sentBytes;
    } else {
      t.ackedBytes = Math.max(t.ackedBytes, Math.min(m.index, t.sentBytes));
    }
    this.sendSnapshotChunks(m.from, pr);
  }

  private lastStalledAck = new Map<NodeId, number>();

  /** A snapshot transfer whose acknowledgements stopped between two heartbeats resumes from the last ack. */
  private resendStalledSnapshot(to: NodeId, pr: Progress): void {
    const t = pr.snapshotTransfer;
    if (t === null) return;
    const previous = this.lastStalledAck.get(to);
    this.lastStalledAck.set(to, t.ackedBytes);
    if (previous === t.ackedBytes) {
      t.sentBytes = t.ackedBytes;
      this.sendSnapshotChunks(to, pr);
    }
  }

  // ----- candidate -----

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshotChunk(m);
        return;
      case 'voteResp':
      case 'preVoteResp': {
        const expected = this.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
        if (m.type !== expected) return;
        this.tracker.recordVote(m.from, !m.reject);
        const result = this.tracker.voteResult();
        if (result === 'won') {
          if (this.role === 'preCandidate') this.campaign('election');
          else this.becomeLeader();
        } else if (result === 'lost') {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return;
    }
  }

  // ----- follower -----

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.heardFromLeader(m.from);
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.heardFromLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.heardFromLeader(m.from);
        this.handleSnapshotChunk(m);
        return;
      case 'timeoutNow':
        if (this.promotable()) this.campaign('transfer');
        return;
      case 'transferLeader':
        if (this.lead !== NONE) this.send({ type: 'transferLeader', to: this.lead, index: m.index });
        return;
      case 'readIndexResp':
        if (m.context !== null) this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  private heardFromLeader(from: NodeId): void {
    this.electionElapsed = 0;
    this.ticksSinceLeaderContact = 0;
    this.lead = from;
  }

  /**
   * An append whose entries do not follow (index, logTerm) contiguously with terms in [logTerm, term]
   * cannot come from a correct leader: it is dropped, never asserted on.
   */
  private wellFormedAppend(m: Message): boolean {
    let previousTerm = m.logTerm;
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.index !== m.index + 1 + i || e.term < previousTerm || e.term > m.term) return false;
      previousTerm = e.term;
    }
    return true;
  }

  private handleAppend(m: Message): void {
    if (!this.wellFormedAppend(m)) return;
    if (m.index < this.log.committed) {
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== null) {
      this.send({ type: 'appResp', to: m.from, index: lastNew });
      return;
    }
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({
      type: 'appResp',
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term === NO_TERM ? 0 : hint.term,
    });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: 'heartbeatResp', to: m.from, index: m.index, context: m.context });
  }

  private handleSnapshotChunk(m: Message): void {
    if (this.config.snapshotStreaming) {
      this.handleStreamedChunk(m);
      return;
    }
    const chunk = m.snapshot;
    if (chunk === null || chunk.offset + chunk.data.byteLength > chunk.totalBytes) return;
    const meta = chunk.metadata;
    if (meta.index === 0 || meta.term === 0 || meta.term > m.term || meta.confState.voters.length === 0) return;
    if (meta.index <= this.log.committed) {
      this.snapshotReceive = null;
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
      return;
    }
    let r = this.snapshotReceive;
    if (chunk.offset === 0) {
      r = { index: meta.index, term: meta.term, chunks: [], received: 0 };
      this.snapshotReceive = r;
    }
    if (r === null || r.index !== meta.index || r.term !== meta.term || chunk.offset !== r.received) {
      const matches = r !== null && r.index === meta.index && r.term === meta.term;
      const received = matches ? r!.received : 0;
      // A duplicate of what we have is acknowledged; a gap asks the leader to resend from `received`.
      const reject = !matches || chunk.offset > received;
      this.send({ type: 'snapResp', to: m.from, index: received, reject, rejectHint: meta.index });
      return;
    }
    r.chunks.push(chunk.data);
    r.received += chunk.data.byteLength;
    if (r.received < chunk.totalBytes) {
      this.send({ type: 'snapResp', to: m.from, index: r.received, rejectHint: meta.index });
      return;
    }
    this.snapshotReceive = null;
    const data = concatBytes(r.chunks, r.received);
    if (this.restore({ metadata: meta, data })) {
      this.send({ type: 'appResp', to: m.from, index: this.log.lastIndex() });
    } else {
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
    }
  }

  /**
   * Streaming mode: a chunk from the current leader (term and leadership already checked by step). One of a
   * snapshot we do not need is answered with our commit index, which moves the leader's progress on;
   * otherwise the chunk goes to the driver's receiver, which feeds it to the state machine.
   */
  private handleStreamedChunk(m: Message): void {
    const chunk = m.snapshot;
    if (chunk === null) return;
    const meta = chunk.metadata;
    if (meta.index === 0 || meta.term === 0 || meta.term > m.term || meta.confState.voters.length === 0) return;
    if (!this.acceptsSnapshot(meta)) {
      if (this.log.matchTerm(meta.index, meta.term)) this.log.commitTo(meta.index);
      this.send({ type: 'appResp', to: m.from, index: this.log.committed });
      return;
    }
    this.streamedChunks.push(m);
  }

  /** Installs a snapshot from the leader if it is newer than what we have. Returns whether it did. */
  private restore(s: Snapshot): boolean {
    if (s.metadata.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.metadata.index, s.metadata.term)) {
      // We already have the entry: fast-forward the commit index instead.
      this.log.commitTo(s.metadata.index);
      return false;
    }
    this.log.restore(s);
    this.tracker.applyConf(s.metadata.confState, this.log.lastIndex() + 1);
    return true;
  }

  // ===================== streamed snapshots (driver API) =====================

  /** Streaming mode: the followers that need a snapshot streamed to them since the last call. */
  takeSnapshotRequests(): NodeId[] {
    const out = this.snapshotRequests;
    this.snapshotRequests = [];
    return out;
  }

  /** Streaming mode: the chunk messages from the current leader accepted since the last call, in arrival order. */
  takeStreamedChunks(): Message[] {
    const out = this.streamedChunks;
    this.streamedChunks = [];
    return out;
  }

  /**
   * The metadata of the state as of the applied index: what a point-in-time stream of the state machine
   * opened now (between two Readies) must be labelled with. Conf changes take effect when applied, so the
   * tracker's configuration is the one at the applied index.
   */
  snapshotMetadataAtApplied(): SnapshotMetadata {
    assert(this.outstanding === null, 'snapshot metadata requested while a Ready is outstanding');
    assert(this.canSnapshot(), `no snapshot metadata at applied index ${this.log.applied} now`);
    const index = this.log.applied;
    return { index, term: this.log.term(index), confState: this.tracker.confState() };
  }

  /** Whether a follower should take a snapshot with this metadata: newer than its commit, not already in its log. */
  acceptsSnapshot(meta: SnapshotMetadata): boolean {
    return meta.index > this.log.committed && !this.log.matchTerm(meta.index, meta.term);
  }

  /**
   * A streamed transfer to `to` failed or was abandoned: probe the follower again after its next heartbeat
   * response (a new snapshot is streamed if it still needs one).
   */
  reportSnapshotFailure(to: NodeId): void {
    if (this.role !== 'leader') return;
    const pr = this.tracker.progress.get(to);
    if (pr === undefined || pr.state !== 'snapshot') return;
    pr.snapshotTransfer = null;
    pr.becomeProbe();
    pr.probeSent = true;
  }

  /**
   * Streaming mode: the state machine has durably installed the state at `meta` (the driver checked
   * acceptsSnapshot() just before the switch, and no Ready was outstanding since). When the log holds that
   * entry already (a newer leader's appends raced with the install), the log is kept — it may hold
   * acknowledged entries after it — and commit and applied move up to it; otherwise the log is replaced by
   * the snapshot, which the next Ready persists (with empty data: the state lives in the state machine).
   */
  installStreamedSnapshot(meta: SnapshotMetadata, from: NodeId): void {
    assert(this.config.snapshotStreaming, 'installStreamedSnapshot needs snapshotStreaming');
    assert(this.outstanding === null, 'streamed snapshot installed while a Ready is outstanding');
    assert(meta.index > this.log.applied, `streamed snapshot at ${meta.index} is not above applied ${this.log.applied}`);
    if (this.log.matchTerm(meta.index, meta.term)) {
      this.log.commitTo(meta.index);
      this.log.appliedTo(meta.index);
      this.tracker.applyConf(meta.confState, this.log.lastIndex() + 1);
      this.send({ type: 'appResp', to: from, index: this.log.committed });
      return;
    }
    assert(meta.index > this.log.committed, `streamed snapshot at ${meta.index} below commit ${this.log.committed} and not in the log`);
    this.snapshotReceive = null;
    this.log.restore({ metadata: meta, data: new Uint8Array(0) });
    this.tracker.applyConf(meta.confState, this.log.lastIndex() + 1);
    this.send({ type: 'appResp', to: from, index: this.log.lastIndex() });
  }

  // ===================== local API =====================

  /** Appends proposals on the leader. Returns the index and term of the first; throws a RaftError otherwise. */
  propose(data: readonly Uint8Array[]): { index: number; term: number } {
    return this.appendProposal(data, EntryType.Normal);
  }

  private appendProposal(data: readonly Uint8Array[], type: EntryType): { index: number; term: number } {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead);
    if (this.leadTransferee !== NONE) {
      throw new RaftError('ProposalDropped', `leadership is being transferred to ${this.leadTransferee}`);
    }
    let bytes = 0;
    for (const d of data) bytes += d.byteLength;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedBytesMax) {
      throw new RaftError('ProposalDropped', 'too many uncommitted bytes; retry later');
    }
    const first = this.log.lastIndex() + 1;
    const entries: Entry[] = data.map((d, i) => ({ term: this.term, index: first + i, type, data: d }));
    this.appendEntries(entries);
    this.bcastAppend();
    return { index: first, term: this.term };
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead);
    if (this.pendingConfIndex > this.log.applied) {
      throw new RaftError('ConfChangeRejected', 'a membership change is still pending; retry once it is applied');
    }
    const outcome = applyConfChange(this.tracker.confState(), cc);
    if (!outcome.ok) throw new RaftError('ConfChangeRejected', outcome.reason);
    this.checkLearnersCaughtUp(cc);
    const result = this.appendProposal([encodeConfChange(cc)], EntryType.ConfChange);
    this.pendingConfIndex = result.index;
    return result;
  }

  /**
   * A learner is promoted only once caught up: a voter far behind would count toward quorums while it
   * cannot acknowledge anything, and could cost the cluster its availability.
   */
  private checkLearnersCaughtUp(cc: ConfChange): void {
    for (const change of cc.changes) {
      if (change.type !== 'addVoter' || !this.tracker.learners.has(change.nodeId)) continue;
      const match = this.tracker.progress.get(change.nodeId)?.match ?? 0;
      const lag = this.log.lastIndex() - match;
      if (lag > this.config.learnerPromotionLagEntriesMax) {
        throw new RaftError(
          'ConfChangeRejected',
          `learner ${change.nodeId} is not caught up (${lag} entries behind, at most ${this.config.learnerPromotionLagEntriesMax}); retry later`,
        );
      }
    }
  }

  /**
   * Requests a linearizable read point for `context` (unique per request). The answer arrives as a
   * ReadState in a later Ready. Returns false if the request was dropped (no leader known).
   */
  readIndex(context: Uint8Array): boolean {
    if (this.config.bugs.has('read-without-quorum')) {
      this.readStates.push({ index: this.log.committed, context });
      return true;
    }
    if (this.role === 'leader') {
      this.handleReadIndexRequest(this.id, context);
      return true;
    }
    if (this.lead === NONE) return false;
    this.send({ type: 'readIndex', to: this.lead, context });
    return true;
  }

  transferLeadership(to: NodeId): void {
    if (this.role === 'leader') this.handleTransfer(to);
    else if (this.lead !== NONE) this.send({ type: 'transferLeader', to: this.lead, index: to });
  }

  /** Starts an election now (tests, tooling). */
  campaignNow(): void {
    if (this.role !== 'leader' && this.promotable()) this.campaign(this.config.preVote ? 'preElection' : 'election');
  }

  /** Whether createSnapshot() may be called now: not while a snapshot from the leader is replacing the log. */
  canSnapshot(): boolean {
    return this.log.unstableSnapshot === null && this.log.term(this.log.applied) !== NO_TERM;
  }

  /** Records a state-machine snapshot taken at the applied index; the log may then be compacted up to it. */
  createSnapshot(data: Uint8Array): Snapshot {
    assert(this.canSnapshot(), `cannot snapshot at applied index ${this.log.applied} now`);
    const index = this.log.applied;
    const snapshot: Snapshot = {
      metadata: { index, term: this.log.term(index), confState: this.tracker.confState() },
      data,
    };
    this.log.setSnapshot(snapshot);
    return snapshot;
  }

  compact(index: number): void {
    this.log.compact(index);
  }

  // ===================== Ready =====================

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    const ss = this.softState();
    if (ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role) return true;
    const hs = this.hardState();
    const p = this.prevHardState;
    if (hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit) return true;
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    if (this.log.hasSnapshotToPersist() || this.log.entriesToPersist().length > 0) return true;
    return this.log.nextCommittedEntries(1).length > 0;
  }

  ready(): Ready {
    assert(this.outstanding === null, 'ready() called before advance() of the previous Ready');
    const ss = this.softState();
    const softChanged = ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role;
    const hs = this.hardState();
    const p = this.prevHardState;
    const hardChanged = hs.term !== p.term || hs.vote !== p.vote || hs.commit !== p.commit;
    const snapshot = this.log.hasSnapshotToPersist() ? this.log.unstableSnapshot : null;
    const entries = this.log.entriesToPersist();
    this.log.markPersisting(entries.length, snapshot !== null);
    const committedEntries = this.log.nextCommittedEntries(this.config.applyBatchBytesMax);
    const messages: Message[] = [];
    const messagesAfterPersist: Message[] = [];
    for (const m of this.msgs) {
      if (leaderReplicationTypes.has(m.type)) messages.push(m);
      else messagesAfterPersist.push(m);
    }
    const rd: Ready = {
      softState: softChanged ? ss : null,
      hardState: hardChanged ? hs : null,
      entries,
      snapshot,
      committedEntries,
      messages,
      messagesAfterPersist,
      readStates: this.readStates,
    };
    this.msgs = [];
    this.readStates = [];
    this.prevSoftState = ss;
    if (hardChanged) this.prevHardState = hs;
    this.outstanding = {
      lastEntry: entries[entries.length - 1] ?? null,
      snapshotIndex: snapshot?.metadata.index ?? null,
      committedEntries,
    };
    return rd;
  }

  /**
   * The caller persisted, sent and applied the last Ready. Conf changes among its committed entries take
   * effect now, in log order.
   */
  advance(): void {
    const o = this.outstanding;
    assert(o !== null, 'advance() without an outstanding Ready');
    this.outstanding = null;
    if (o.snapshotIndex !== null) {
      this.log.persisted(0, 0, o.snapshotIndex);
      if (this.log.applied < o.snapshotIndex) this.log.applied = o.snapshotIndex;
    }
    if (o.lastEntry !== null) this.log.persisted(o.lastEntry.index, o.lastEntry.term, null);
    for (const e of o.committedEntries) {
      this.log.appliedTo(e.index);
      if (e.type === EntryType.ConfChange) this.applyConfChangeEntry(e);
    }
    if (this.role === 'leader') {
      const self = this.tracker.progress.get(this.id);
      if (self !== undefined && self.maybeUpdate(this.log.stableLastIndex()) && this.maybeCommit()) this.bcastAppend();
      this.maybeAutoLeaveJoint();
    }
  }

  // ===================== role changes =====================

  /** Extra election-timeout ticks of a held member: two election timeouts, beyond any unheld member's. */
  private campaignHoldTicks(): number {
    return 2 * this.config.electionTicks;
  }

  private promotable(): boolean {
    return this.tracker.isVoter(this.id) && this.log.unstableSnapshot === null;
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.config.electionTicks + this.config.random.int(this.config.electionTicks);
    this.leadTransferee = NONE;
    this.tracker.votes.clear();
    this.tracker.resetProgress(this.log.lastIndex() + 1, this.id, this.log.stableLastIndex());
    this.pendingReads.length = 0;
    this.readsAwaitingCommitInTerm.length = 0;
    this.committedInTerm = false;
    this.leaseRevoked = false;
    this.uncommittedBytes = 0;
    this.lastStalledAck.clear();
  }

  private becomeFollower(term: number, lead: NodeId): void {
    if (term !== this.term) this.snapshotReceive = null;
    // A deposed leader has no leader to be loyal to: it may vote at once.
    if (this.role === 'leader') this.ticksSinceLeaderContact = this.config.electionTicks;
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition [leader -> preCandidate]');
    // A pre-candidate changes neither term nor vote.
    this.tracker.votes.clear();
    this.role = 'preCandidate';
    this.lead = NONE;
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition [leader -> candidate]');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', `invalid transition [${this.role} -> leader]`);
    this.reset(this.term);
    this.role = 'leader';
    this.lead = this.id;
    this.ticksSinceLeaderContact = 0;
    // An empty entry of our own term: committing it commits everything before it (§5.4.2).
    this.appendEntries([{ term: this.term, index: this.log.lastIndex() + 1, type: EntryType.Normal, data: new Uint8Array(0) }]);
    // Refuse conf changes until everything up to and including that entry is applied.
    this.pendingConfIndex = this.log.lastIndex();
    this.bcastAppend();
  }

  private campaign(kind: 'preElection' | 'election' | 'transfer'): void {
    let voteType: 'vote' | 'preVote';
    let term: number;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      voteType = 'preVote';
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'vote';
      term = this.term;
    }
    this.tracker.recordVote(this.id, true);
    if (this.tracker.voteResult() === 'won') {
      // A single-voter configuration wins at once.
      if (kind === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const context = kind === 'transfer' ? transferContext : null;
    for (const id of this.tracker.memberIds()) {
      if (id === this.id || !this.tracker.isVoter(id)) continue;
      this.send({ type: voteType, to: id, term, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), context });
    }
  }

  // ===================== replication =====================

  private appendEntries(entries: Entry[]): void {
    for (const e of entries) this.uncommittedBytes += e.data.byteLength;
    this.log.append(entries);
  }

  /** Recomputes the commit index from the quorum. Returns whether it moved. */
  private maybeCommit(): boolean {
    let index = this.tracker.committed();
    if (this.config.bugs.has('commit-without-quorum')) index = Math.max(index, this.tracker.progress.get(this.id)?.match ?? 0);
    if (index <= this.log.committed) return false;
    // Raft §5.4.2 (Figure 8): only an entry of the current term is committed by counting replicas.
    const term = this.log.term(index);
    if (term !== this.term && !this.config.bugs.has('commit-earlier-term')) return false;
    const before = this.log.committed;
    this.log.commitTo(index);
    for (let i = before + 1; i <= index; i++) this.uncommittedBytes -= this.log.entryAt(i).data.byteLength;
    if (this.uncommittedBytes < 0) this.uncommittedBytes = 0;
    if (!this.committedInTerm && term === this.term) {
      this.committedInTerm = true;
      const waiting = this.readsAwaitingCommitInTerm.splice(0);
      for (const r of waiting) this.handleReadIndexRequest(r.from, r.context);
    }
    return true;
  }

  private bcastAppend(): void {
    for (const id of this.tracker.memberIds()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  /** Sends an append (or starts a snapshot) to `to` if flow control allows. Returns whether it sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = prevTerm === NO_TERM ? null : this.log.slice(pr.next, this.log.lastIndex() + 1, this.config.appendMessageBytesMax);
    if (entries === null) {
      // The entries this follower needs were compacted away: stream the snapshot.
      const snapshot = this.log.snapshot;
      if (snapshot === null) assert(false, `log compacted below ${pr.next} without a snapshot`);
      pr.becomeSnapshot(snapshot);
      this.lastStalledAck.delete(to);
      if (this.config.snapshotStreaming) this.snapshotRequests.push(to);
      else this.sendSnapshotChunks(to, pr);
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of entries) bytes += e.data.byteLength;
    const last = entries[entries.length - 1];
    this.send({ type: 'app', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    pr.sentCommit = Math.max(pr.sentCommit, this.log.committed);
    pr.sentEntries(last?.index ?? prevIndex, entries.length, bytes);
    return true;
  }

  private sendSnapshotChunks(to: NodeId, pr: Progress): void {
    const t = pr.snapshotTransfer;
    if (t === null) return;
    const { snapshot } = t;
    const total = snapshot.data.byteLength;
    const windowBytes = this.config.snapshotChunkBytes * snapshotChunksInflightMax;
    do {
      if (t.sentBytes >= total && !(total === 0 && t.ackedBytes === 0 && t.sentBytes === 0)) break;
      if (t.sentBytes - t.ackedBytes >= windowBytes) break;
      const end = Math.min(total, t.sentBytes + this.config.snapshotChunkBytes);
      const data = snapshot.data.subarray(t.sentBytes, end);
      this.send({
        type: 'snap',
        to,
        snapshot: { metadata: snapshot.metadata, offset: t.sentBytes, totalBytes: total, data },
      });
      if (total === 0) break; // an empty snapshot is one empty chunk
      t.sentBytes = end;
    } while (t.sentBytes < total);
  }

  private bcastHeartbeat(context: Uint8Array | null): void {
    for (const id of this.tracker.memberIds()) {
      if (id === this.id) continue;
      const pr = this.tracker.progress.get(id)!;
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: 'heartbeat', to: id, commit, index: this.ticks, context });
      pr.sentCommit = Math.max(pr.sentCommit, commit);
    }
  }

  // ===================== reads =====================

  private leaseTicks(): number {
    const d = this.config.clockDriftBoundPermille;
    // A follower that acknowledged a heartbeat sent at leader tick T grants no vote for electionTicks of
    // its own ticks. With rates within (1 ± d/2000) of true time, the lease is safe while
    // (ticks - T) < electionTicks * (1000 - d) / (1000 + d); one tick of margin covers tick granularity.
    return Math.floor((this.config.electionTicks * (1000 - d)) / (1000 + d)) - 1;
  }

  private leaseValid(): boolean {
    if (this.leaseRevoked) return false;
    const self = this.tracker.progress.get(this.id);
    if (self !== undefined) self.ackedHeartbeatTick = this.ticks;
    const anchor = this.tracker.quorumAckedHeartbeatTick();
    return anchor >= 0 && this.ticks - anchor < this.leaseTicks();
  }

  private handleReadIndexRequest(from: NodeId, context: Uint8Array): void {
    if (!this.committedInTerm) {
      // The commit index of a new leader may lag until it commits an entry of its own term.
      this.readsAwaitingCommitInTerm.push({ context, from });
      return;
    }
    const index = this.log.committed;
    if (this.tracker.hasQuorum(new Set([this.id]))) {
      this.respondRead(from, context, index);
      return;
    }
    if (this.config.readMode === 'lease' && this.leaseValid()) {
      this.respondRead(from, context, index);
      return;
    }
    const key = contextKey(context);
    this.pendingReads.push({ key, context, from, index, acks: new Set([this.id]) });
    this.bcastHeartbeat(context);
  }

  /** A heartbeat echoing `context` was acknowledged: reads up to and including it are confirmed once a quorum has. */
  private ackRead(from: NodeId, context: Uint8Array): void {
    const key = contextKey(context);
    const position = this.pendingReads.findIndex((r) => r.key === key);
    if (position < 0) return;
    const read = this.pendingReads[position]!;
    read.acks.add(from);
    if (!this.tracker.hasQuorum(read.acks)) return;
    // Every earlier request was issued before this heartbeat, so it is confirmed too.
    const confirmed = this.pendingReads.splice(0, position + 1);
    for (const r of confirmed) this.respondRead(r.from, r.context, r.index);
  }

  private respondRead(from: NodeId, context: Uint8Array, index: number): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ type: 'readIndexResp', to: from, index, context });
  }

  private lastPendingReadContext(): Uint8Array | null {
    return this.pendingReads[this.pendingReads.length - 1]?.context ?? null;
  }

  // ===================== membership =====================

  private handleTransfer(target: NodeId): void {
    if (target === this.id || !this.tracker.voters.has(target)) return;
    if (this.leadTransferee === target) return;
    const pr = this.tracker.progress.get(target);
    if (pr === undefined) return;
    this.leadTransferee = target;
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.maybeSendAppend(target, true);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target may win a forced election at once, overriding followers' leases: ours ends here.
    this.leaseRevoked = true;
    this.send({ type: 'timeoutNow', to });
  }

  private applyConfChangeEntry(e: Entry): void {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch {
      // Only proposeConfChange writes these entries; an undecodable one is a no-op on every member alike.
      return;
    }
    const outcome = applyConfChange(this.tracker.confState(), cc);
    // A change that no longer applies (raced with another leader's) is a no-op on every member alike.
    if (!outcome.ok) return;
    this.switchToConfig(outcome.conf);
  }

  private switchToConfig(conf: ConfState): void {
    this.tracker.applyConf(conf, this.log.lastIndex() + 1);
    if (this.role !== 'leader') return;
    if (this.leadTransferee !== NONE && !this.tracker.voters.has(this.leadTransferee)) this.leadTransferee = NONE;
    if (!this.tracker.isVoter(this.id)) {
      // Removed or demoted. Stepping down at once could strand the cluster: the new voters may not yet know
      // the change committed, and may need this node's vote, which its longer log would refuse. So keep
      // leading (not counted in quorums) and hand over to the most caught-up voter.
      this.handOverLeadership();
    }
    if (this.maybeCommit()) this.bcastAppend();
    else this.bcastAppend();
  }

  /** A leader that is no longer a voter transfers leadership to the voter with the highest match. */
  private handOverLeadership(): void {
    if (this.leadTransferee !== NONE) return;
    let target: NodeId = NONE;
    let best = -1;
    for (const id of [...this.tracker.voters].sort((a, b) => a - b)) {
      const match = this.tracker.progress.get(id)?.match ?? 0;
      if (match > best) {
        best = match;
        target = id;
      }
    }
    if (target !== NONE) this.handleTransfer(target);
  }

  private maybeAutoLeaveJoint(): void {
    if (!this.tracker.isJoint() || !this.tracker.autoLeave) return;
    if (this.pendingConfIndex > this.log.applied || this.leadTransferee !== NONE) return;
    // Appended directly: leaving the joint configuration is never refused for flow-control reasons.
    const index = this.log.lastIndex() + 1;
    const data = encodeConfChange({ transition: 'auto', changes: [] });
    this.appendEntries([{ term: this.term, index, type: EntryType.ConfChange, data }]);
    this.pendingConfIndex = index;
    this.bcastAppend();
  }

  // ===================== helpers =====================

  private send(partial: Partial<Message> & { type: MessageType; to: NodeId }): void {
    const m: Message = {
      from: this.id,
      term: this.term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: null,
      snapshot: null,
      ...partial,
    };
    this.msgs.push(m);
  }

  /** A read-only view for status reporting. */
  status(): {
    term: number;
    vote: NodeId;
    role: Role;
    lead: NodeId;
    commit: number;
    applied: number;
    firstIndex: number;
    lastIndex: number;
    confState: ConfState;
    progress: Map<NodeId, { match: number; next: number; state: string; isLearner: boolean }>;
  } {
    const progress = new Map<NodeId, { match: number; next: number; state: string; isLearner: boolean }>();
    if (this.role === 'leader') {
      for (const [id, p] of this.tracker.progress) progress.set(id, { match: p.match, next: p.next, state: p.state, isLearner: p.isLearner });
    }
    return {
      term: this.term,
      vote: this.vote,
      role: this.role,
      lead: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      confState: this.tracker.confState(),
      progress,
    };
  }
}


