/**
 * The driver: runs the pure Raft core against injected edges (log store, transport, clock, state machine).
 * The simulator and the real metadata server both use this exact code; only the edges differ.
 *
 * Loop: every input (tick, message, proposal, read) is stepped into the core, then `kick()` takes at most
 * one Ready at a time: send leader traffic, persist (one atomic synced write), send acknowledgements,
 * hand committed entries to the applier, advance. Proposals arriving in one microtask turn are batched
 * into one append, and proposals arriving while a Ready is processed wait for it and go out together (one
 * append message per follower, one log write: group commit).
 *
 * Applying is pipelined with the loop: the applier feeds the state machine the committed entries in log
 * order, merging whatever queued up during the previous (possibly asynchronous) apply into one batch, while
 * the loop already persists and replicates later entries. The core counts an entry as applied once it is
 * handed over; the driver's own `smApplied` is what the state machine has really applied, and everything
 * that depends on state-machine contents waits for it: read barriers, snapshots (taken only when the
 * applier is idle, so the core's applied index and the state machine's agree), installing a leader's
 * snapshot (after the queue drains). At most `applyQueueEntriesMax` entries wait, else the loop waits.
 */
import { raftConfig, type RaftConfig } from './config.ts';
import { AssertionError, NotLeaderError, RaftError, assert } from './errors.ts';
import { NO_TERM } from './log.ts';
import type { Clock, Logger, NodeStatus, ProposalResult, StateMachine, TimerHandle, Transport } from './node-api.ts';
import { silentLogger } from './node-api.ts';
import { Raft, type RaftInitialState } from './raft.ts';
import type { ConfChange, Entry, HardState, Message, NodeId, Ready, Snapshot } from './types.ts';
import { EntryType } from './types.ts';
import type { LogStore } from '../storage/log-store.ts';

export interface RaftNodeOptions {
  readonly config: Partial<RaftConfig> & Pick<RaftConfig, 'id' | 'random'>;
  readonly logStore: LogStore;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly stateMachine: StateMachine;
  /** One Raft tick, in clock milliseconds. */
  readonly tickMs: number;
  /** Founding members, used only when the log store is empty. A member added later starts with none. */
  readonly initialVoters?: readonly NodeId[];
  /** Take a state-machine snapshot and compact the log after this many applied entries. */
  readonly snapshotEveryEntries?: number;
  /** Entries kept below a snapshot so slightly lagging followers catch up from the log. */
  readonly snapshotKeepEntries?: number;
  /** A linearizable read not confirmed within this time is rejected with ReadDropped. */
  readonly readTimeoutMs?: number;
  readonly logger?: Logger;
  /** Called when the node stops itself after an unrecoverable error (a failed fsync, a broken invariant). */
  readonly onFatal?: (error: unknown) => void;
}

export const defaultSnapshotEveryEntries = 10_000;
export const defaultSnapshotKeepEntries = 1_000;
export const defaultReadTimeoutMs = 5_000;
/** Proposals batched into one append, at most. */
export const proposalBatchMax = 4_096;
/** Committed entries handed to the applier but not yet applied, at most (beyond it the loop waits). */
export const applyQueueEntriesMax = 8_192;
/** Entries per state-machine applyBatch call, at most. */
export const applyBatchEntriesMax = 4_096;

interface PendingProposal {
  readonly term: number;
  readonly resolve: (r: ProposalResult) => void;
  readonly reject: (e: Error) => void;
}

interface ReadWaiter {
  readonly resolve: (index: number) => void;
  readonly reject: (e: Error) => void;
}

interface ReadBatch {
  readonly key: string;
  readonly waiters: ReadWaiter[];
  index: number | null;
  timer: TimerHandle | null;
}

export class RaftNode {
  private raft: Raft | null = null;
  private readonly config: RaftConfig;
  private readonly logger: Logger;
  private stopped = false;
  private processing = false;
  private tickTimer: TimerHandle | null = null;
  private lastTickMs = 0;
  private readonly maxCatchUpTicks: number;
  private readonly proposals = new Map<number, PendingProposal>();
  private proposalQueue: { data: Uint8Array; type: EntryType; resolve: (r: ProposalResult) => void; reject: (e: Error) => void; confIndex?: boolean }[] = [];
  private proposalFlushScheduled = false;
  private readonly reads = new Map<string, ReadBatch>();
  private currentReadBatch: ReadBatch | null = null;
  private readSequence = 0;
  private lastSnapshotIndex = 0;
  /** The newest hard state from the core, and the newest one handed to the log store. */
  private latestHardState: HardState | null = null;
  private durableHardState: HardState | null = null;
  /** Committed entries handed over by the loop, waiting for the state machine (in log order). */
  private applyQueue: Entry[] = [];
  /** An asynchronous applyBatch is running. */
  private applyRunning = false;
  /** Index of the last entry the state machine has applied (the core's applied index may be ahead). */
  private smApplied = 0;
  /** Callbacks waiting for the applier to catch up: run once `ready()` holds. */
  private applyWaiters: { ready: () => boolean; run: () => void }[] = [];

  constructor(private readonly options: RaftNodeOptions) {
    this.config = raftConfig(options.config);
    this.logger = options.logger ?? silentLogger;
    this.maxCatchUpTicks = 2 * this.config.electionTicks + 2;
    assert(options.tickMs > 0, 'tickMs must be positive');
  }

  get id(): NodeId {
    return this.config.id;
  }

  async start(): Promise<void> {
    let loaded: RaftInitialState = await this.options.logStore.load();
    if (this.stopped) return;
    const fresh = loaded.hardState.term === 0 && loaded.snapshot === null && loaded.entries.length === 0;
    if (fresh && this.options.initialVoters !== undefined && this.options.initialVoters.length > 0) {
      loaded = await this.bootstrap(this.options.initialVoters);
      if (this.stopped) return;
    }
    const sm = this.options.stateMachine;
    const snapshotIndex = loaded.snapshot?.metadata.index ?? 0;
    const durableApplied = sm.appliedIndex?.() ?? 0;
    if (loaded.snapshot !== null && durableApplied < snapshotIndex) await sm.restore(loaded.snapshot);
    if (this.stopped) return;
    this.durableHardState = loaded.hardState;
    this.latestHardState = loaded.hardState;
    // A durable state machine may be ahead of the snapshot, and of the commit index on disk (a change of
    // commit alone is not synced): whatever it applied was committed.
    const applied = Math.max(snapshotIndex, durableApplied);
    if (loaded.hardState.commit < applied) loaded = { ...loaded, hardState: { ...loaded.hardState, commit: applied } };
    this.lastSnapshotIndex = applied;
    this.smApplied = applied;
    this.raft = new Raft({ ...this.config, applied }, loaded);
    this.logger.info({ id: this.id, term: loaded.hardState.term, applied, lastIndex: this.raft.log.lastIndex() }, 'raft node started');
    this.lastTickMs = this.options.clock.nowMs();
    this.scheduleTick();
    this.kick();
  }

  /**
   * A founding member's log starts with a snapshot at index 1 holding the initial configuration, so a
   * member added later learns the configuration from the snapshot it is sent.
   */
  private async bootstrap(voters: readonly NodeId[]): Promise<RaftInitialState> {
    const snapshot: Snapshot = {
      metadata: {
        index: 1,
        term: 1,
        confState: { voters: [...voters].sort((a, b) => a - b), votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
      },
      data: await this.options.stateMachine.snapshot(),
    };
    const hardState = { term: 1, vote: 0, commit: 1 };
    await this.options.logStore.save({ snapshot, hardState });
    return { hardState, snapshot, entries: [] };
  }

  // ===================== inputs =====================

  receive(message: Message): void {
    const raft = this.raft;
    if (raft === null || this.stopped) return;
    this.catchUpTicks();
    this.guard(() => raft.step(message));
  }

  propose(data: Uint8Array): Promise<ProposalResult> {
    return this.enqueueProposal(data, EntryType.Normal);
  }

  proposeConfChange(change: ConfChange): Promise<ProposalResult> {
    const raft = this.raft;
    if (raft === null || this.stopped) return Promise.reject(new RaftError('Stopped', 'node is not running'));
    this.catchUpTicks();
    try {
      const { index, term } = raft.proposeConfChange(change);
      const promise = new Promise<ProposalResult>((resolve, reject) => this.proposals.set(index, { term, resolve, reject }));
      this.kick();
      return promise;
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * A linearizable read barrier: resolves with an index once this node has applied it; state read from the
   * state machine after that reflects every write acknowledged before read() was called.
   */
  read(): Promise<number> {
    const raft = this.raft;
    if (raft === null || this.stopped) return Promise.reject(new RaftError('Stopped', 'node is not running'));
    return new Promise<number>((resolve, reject) => {
      let batch = this.currentReadBatch;
      if (batch === null) {
        // Reads issued in one microtask turn share one ReadIndex round.
        this.readSequence++;
        const key = `${this.id}:${this.readSequence}`;
        batch = { key, waiters: [], index: null, timer: null };
        this.currentReadBatch = batch;
        this.reads.set(key, batch);
        const started = batch;
        void Promise.resolve().then(() => this.flushReadBatch(started));
      }
      batch.waiters.push({ resolve, reject });
    });
  }

  private flushReadBatch(batch: ReadBatch): void {
    if (this.currentReadBatch === batch) this.currentReadBatch = null;
    const raft = this.raft;
    if (raft === null || this.stopped) return;
    this.catchUpTicks();
    const context = new TextEncoder().encode(batch.key);
    let accepted = false;
    this.guard(() => {
      accepted = raft.readIndex(context);
    });
    if (!accepted) {
      this.failRead(batch, new NotLeaderError(raft.lead));
      return;
    }
    const timeoutMs = this.options.readTimeoutMs ?? defaultReadTimeoutMs;
    batch.timer = this.options.clock.setTimer(timeoutMs, () => {
      batch.timer = null;
      if (this.reads.get(batch.key) === batch) {
        this.failRead(batch, new RaftError('ReadDropped', `read not served within ${timeoutMs} ms`));
      }
    });
  }

  transferLeadership(to: NodeId): void {
    const raft = this.raft;
    if (raft === null || this.stopped) return;
    this.guard(() => raft.transferLeadership(to));
  }

  /** Starts an election at once (tooling and tests). */
  campaign(): void {
    const raft = this.raft;
    if (raft === null || this.stopped) return;
    this.guard(() => raft.campaignNow());
  }

  status(): NodeStatus {
    const raft = this.raft;
    if (raft === null) {
      return {
        id: this.id, term: 0, vote: 0, role: 'follower', lead: 0, commit: 0, applied: 0, firstIndex: 0, lastIndex: 0,
        confState: { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, progress: new Map(),
      };
    }
    return { id: this.id, ...raft.status(), applied: this.smApplied };
  }

  termAt(index: number): number | null {
    const t = this.raft?.log.term(index) ?? NO_TERM;
    return t === NO_TERM ? null : t;
  }

  /** Stops timers and rejects everything pending; later inputs are ignored. Models a crash when the disk is crashed too. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== null) this.options.clock.clearTimer(this.tickTimer);
    this.tickTimer = null;
    const stoppedError = new RaftError('Stopped', 'node stopped');
    for (const p of this.proposals.values()) p.reject(stoppedError);
    this.proposals.clear();
    for (const q of this.proposalQueue) q.reject(stoppedError);
    this.proposalQueue = [];
    for (const batch of [...this.reads.values()]) this.failRead(batch, stoppedError);
    this.applyQueue = [];
    this.applyWaiters = [];
  }

  // ===================== internals =====================

  private enqueueProposal(data: Uint8Array, type: EntryType): Promise<ProposalResult> {
    if (this.raft === null || this.stopped) return Promise.reject(new RaftError('Stopped', 'node is not running'));
    return new Promise<ProposalResult>((resolve, reject) => {
      this.proposalQueue.push({ data, type, resolve, reject });
      if (this.proposalQueue.length >= proposalBatchMax) {
        this.flushProposals();
      } else if (!this.proposalFlushScheduled && !this.processing) {
        // While a Ready is being persisted, proposals wait and go out together when it is done (kick()):
        // one append to each follower for many proposals, instead of one each.
        this.proposalFlushScheduled = true;
        void Promise.resolve().then(() => this.flushProposals());
      }
    });
  }

  private flushProposals(): void {
    this.proposalFlushScheduled = false;
    const raft = this.raft;
    const batch = this.proposalQueue;
    this.proposalQueue = [];
    if (raft === null || this.stopped || batch.length === 0) return;
    this.catchUpTicks();
    let first: { index: number; term: number };
    try {
      first = raft.propose(batch.map((p) => p.data));
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      const e = error instanceof Error ? error : new Error(String(error));
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => this.proposals.set(first.index + i, { term: first.term, resolve: p.resolve, reject: p.reject }));
    this.kick();
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = this.options.clock.setTimer(this.options.tickMs, () => {
      this.tickTimer = null;
      if (this.stopped) return;
      this.catchUpTicks();
      this.scheduleTick();
      this.kick();
    });
  }

  /**
   * Ticks as many times as whole tick periods have elapsed on the clock, so that a paused process does not
   * under-count time (the lease would otherwise outlive its safety bound).
   */
  private catchUpTicks(): void {
    const raft = this.raft;
    if (raft === null) return;
    const now = this.options.clock.nowMs();
    const elapsed = Math.floor((now - this.lastTickMs) / this.options.tickMs);
    if (elapsed <= 0) return;
    this.lastTickMs += elapsed * this.options.tickMs;
    // Past this many ticks every timeout has fired once; more would change nothing but cost.
    const count = Math.min(elapsed, this.maxCatchUpTicks);
    for (let i = 0; i < count; i++) raft.tick();
  }

  /** Runs a core input, then processes whatever Ready it produced. */
  private guard(input: () => void): void {
    input();
    this.kick();
  }

  private kick(): void {
    const raft = this.raft;
    if (raft === null || this.stopped || this.processing) return;
    if (this.proposalQueue.length > 0 && !this.proposalFlushScheduled) {
      this.flushProposals(); // proposals held back while the previous Ready was processed; it kicks again
      return;
    }
    if (!raft.hasReady()) return;
    const rd = raft.ready();
    this.processing = true;
    if (rd.softState !== null) this.onSoftStateChange();
    for (const m of rd.messages) this.options.transport.send(m);
    const ackEarly = this.config.bugs.has('ack-before-persist');
    if (ackEarly) for (const m of rd.messagesAfterPersist) this.options.transport.send(m);
    if (rd.hardState !== null) this.latestHardState = rd.hardState;
    const hs = this.latestHardState;
    const d = this.durableHardState;
    const hardStateChanged = hs !== null && (d === null || hs.term !== d.term || hs.vote !== d.vote || hs.commit !== d.commit);
    // Term and vote must be durable before any message leaves; the commit index need not be (it is
    // re-learned from the leader), so a change of commit alone rides along with the next write instead
    // of costing an fsync of its own.
    const termOrVoteChanged = hs !== null && (d === null || hs.term !== d.term || hs.vote !== d.vote);
    // Except before a membership change is applied: after a restart the member must still know the change
    // committed, or it would campaign in the old configuration and might need a vote that is gone.
    const appliesConfChange = rd.committedEntries.some((e) => e.type === EntryType.ConfChange);
    const mustPersist =
      termOrVoteChanged || rd.entries.length > 0 || rd.snapshot !== null || (appliesConfChange && hardStateChanged);
    if (!mustPersist) {
      this.afterPersist(rd, ackEarly);
      return;
    }
    const write = {
      ...(hardStateChanged ? { hardState: hs } : {}),
      ...(rd.entries.length > 0 ? { entries: rd.entries } : {}),
      ...(rd.snapshot !== null ? { snapshot: rd.snapshot } : {}),
    };
    if (hardStateChanged) this.durableHardState = hs;
    this.options.logStore.save(write).then(
      () => this.afterPersist(rd, ackEarly),
      (error: unknown) => this.fatal(error),
    );
  }

  private afterPersist(rd: Ready, alreadySent: boolean): void {
    if (this.stopped) return;
    try {
      if (!alreadySent) for (const m of rd.messagesAfterPersist) this.options.transport.send(m);
    } catch (error) {
      this.fatal(error);
      return;
    }
    const handOver = (): void => {
      this.enqueueApply(rd.committedEntries);
      this.whenApplier(
        () => this.applyQueue.length <= applyQueueEntriesMax,
        () => this.finishReady(rd),
      );
    };
    const snapshot = rd.snapshot;
    if (snapshot === null) {
      handOver();
      return;
    }
    // The leader's snapshot replaces the state: only once everything queued before it is applied.
    this.whenApplier(
      () => this.applyQueue.length === 0 && !this.applyRunning,
      () => {
        let restored: void | Promise<void>;
        try {
          restored = this.installSnapshot(snapshot);
        } catch (error) {
          this.fatal(error);
          return;
        }
        const done = (): void => {
          if (this.stopped) return;
          this.smApplied = Math.max(this.smApplied, snapshot.metadata.index);
          handOver();
        };
        if (restored instanceof Promise) restored.then(done, (error: unknown) => this.fatal(error));
        else done();
      },
    );
  }

  /** Runs `run` now if `ready()` holds, else once the applier has made it hold. */
  private whenApplier(ready: () => boolean, run: () => void): void {
    if (this.stopped) return;
    if (ready()) run();
    else this.applyWaiters.push({ ready, run });
  }

  private enqueueApply(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    for (const e of entries) this.applyQueue.push(e);
    this.runApplier();
  }

  /** Applies queued entries, one batch at a time; synchronous state machines are applied inline. */
  private runApplier(): void {
    const sm = this.options.stateMachine;
    for (;;) {
      if (this.applyRunning || this.stopped) return;
      this.releaseWaiters();
      // A released waiter may have continued the loop and started the applier itself.
      if (this.applyRunning || this.stopped) return;
      if (this.applyQueue.length === 0) break;
      const entries = this.applyQueue.splice(0, applyBatchEntriesMax);
      let results: readonly unknown[] | Promise<readonly unknown[]>;
      try {
        if (sm.applyBatch !== undefined) results = sm.applyBatch(entries);
        else {
          assert(sm.apply !== undefined, 'a state machine implements apply or applyBatch');
          results = entries.map((e) => (e.type === EntryType.Normal && e.data.byteLength > 0 ? sm.apply!(e) : undefined));
        }
      } catch (error) {
        this.fatal(error);
        return;
      }
      if (results instanceof Promise) {
        this.applyRunning = true;
        results.then(
          (r) => {
            this.applyRunning = false;
            if (this.stopped) return;
            this.onApplied(entries, r);
            this.runApplier();
          },
          (error: unknown) => this.fatal(error),
        );
        return;
      }
      this.onApplied(entries, results);
    }
    this.maybeSnapshot();
  }

  private releaseWaiters(): void {
    if (this.applyWaiters.length === 0) return;
    const waiting = this.applyWaiters;
    this.applyWaiters = [];
    for (const w of waiting) {
      if (this.stopped) return;
      if (w.ready()) w.run();
      else this.applyWaiters.push(w);
    }
  }

  private onApplied(entries: readonly Entry[], results: readonly unknown[]): void {
    this.smApplied = entries[entries.length - 1]!.index;
    this.settleProposals(entries, results);
    this.resolveReads(this.smApplied);
  }

  private finishReady(rd: Ready): void {
    if (this.stopped) return;
    const raft = this.raft!;
    try {
      for (const rs of rd.readStates) {
        const batch = this.reads.get(new TextDecoder().decode(rs.context));
        if (batch !== undefined && batch.index === null) batch.index = rs.index;
      }
      raft.advance();
      this.resolveReads(this.smApplied);
    } catch (error) {
      this.fatal(error);
      return;
    }
    this.processing = false;
    this.maybeSnapshot();
    this.kick();
  }

  /**
   * Takes a snapshot when enough entries were applied since the last one, at a moment when the loop is
   * between Readys and the applier is idle, so the state machine holds exactly the core's applied index.
   */
  private maybeSnapshot(): void {
    const raft = this.raft;
    if (raft === null || this.stopped || this.processing || this.applyRunning || this.applyQueue.length > 0) return;
    const appliedSinceSnapshot = this.smApplied - this.lastSnapshotIndex;
    if (appliedSinceSnapshot < (this.options.snapshotEveryEntries ?? defaultSnapshotEveryEntries) || !raft.canSnapshot()) return;
    assert(raft.log.applied === this.smApplied, `core applied ${raft.log.applied} != state machine applied ${this.smApplied}`);
    this.processing = true;
    this.takeSnapshot(raft);
  }

  private takeSnapshot(raft: Raft): void {
    const compactTo = (index: number) => Math.max(0, index - (this.options.snapshotKeepEntries ?? defaultSnapshotKeepEntries));
    let snapshotIndex = 0;
    Promise.resolve(this.options.stateMachine.snapshot())
      .then(async (data) => {
        // A snapshot from the leader may have started replacing the log meanwhile: then skip this one.
        if (this.stopped || !raft.canSnapshot()) return;
        const snapshot = raft.createSnapshot(data);
        snapshotIndex = snapshot.metadata.index;
        this.lastSnapshotIndex = snapshotIndex;
        await this.options.logStore.save({ snapshot });
        if (this.stopped) return;
        const to = compactTo(snapshotIndex);
        if (to > 0) {
          raft.compact(to);
          await this.options.logStore.compact(to);
        }
        this.logger.info({ id: this.id, index: snapshotIndex, compactTo: to }, 'snapshot taken');
      })
      .then(
        () => {
          if (this.stopped) return;
          this.processing = false;
          this.kick();
        },
        (error: unknown) => this.fatal(error),
      );
  }

  private installSnapshot(snapshot: Snapshot): void | Promise<void> {
    this.lastSnapshotIndex = snapshot.metadata.index;
    // Proposals at or below the snapshot: whether they committed is not known here.
    for (const [index, p] of this.proposals) {
      if (index <= snapshot.metadata.index) {
        this.proposals.delete(index);
        p.reject(new RaftError('ProposalDropped', 'outcome unknown: replaced by a snapshot from the leader'));
      }
    }
    return this.options.stateMachine.restore(snapshot);
  }

  private settleProposals(entries: readonly Entry[], results: readonly unknown[]): void {
    assert(results.length === entries.length, `state machine returned ${results.length} results for ${entries.length} entries`);
    entries.forEach((e, i) => {
      const p = this.proposals.get(e.index);
      if (p === undefined) return;
      this.proposals.delete(e.index);
      if (p.term === e.term) p.resolve({ index: e.index, term: e.term, result: results[i] });
      else p.reject(new RaftError('ProposalDropped', `entry ${e.index} was overwritten by a later leader`));
    });
  }

  private onSoftStateChange(): void {
    // Reads the core was confirming were dropped with the role change; reads with an index stay valid.
    for (const batch of [...this.reads.values()]) {
      if (batch.index === null && batch !== this.currentReadBatch) {
        this.failRead(batch, new RaftError('ReadDropped', 'leadership changed before the read was confirmed'));
      }
    }
  }

  private resolveReads(applied: number): void {
    for (const batch of [...this.reads.values()]) {
      if (batch.index !== null && batch.index <= applied) {
        this.reads.delete(batch.key);
        if (batch.timer !== null) this.options.clock.clearTimer(batch.timer);
        for (const w of batch.waiters) w.resolve(batch.index);
      }
    }
  }

  private failRead(batch: ReadBatch, error: Error): void {
    this.reads.delete(batch.key);
    if (batch.timer !== null) this.options.clock.clearTimer(batch.timer);
    batch.timer = null;
    for (const w of batch.waiters) w.reject(error);
    batch.waiters.length = 0;
  }

  private fatal(error: unknown): void {
    this.logger.error({ id: this.id, err: error }, 'raft node stopping after an unrecoverable error');
    this.stop();
    this.options.onFatal?.(error);
  }
}
