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
import { Raft, snapshotChunksInflightMax, type RaftInitialState } from './raft.ts';
import {
  isStreamedSnapshotMessage,
  SnapshotReceiver,
  SnapshotSender,
  SnapshotTransferAborted,
  type IncomingSnapshot,
  type SnapshotStreamLimits,
} from './snapshot-stream.ts';
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
  /** ... or after entries of this many bytes in all were applied (bounds the log held in memory). */
  readonly snapshotEveryBytes?: number;
  /** Entries kept below a snapshot so slightly lagging followers catch up from the log. */
  readonly snapshotKeepEntries?: number;
  /** A linearizable read not confirmed within this time is rejected with ReadDropped. */
  readonly readTimeoutMs?: number;
  readonly logger?: Logger;
  /**
   * Called when the node stops itself after an unrecoverable error (a failed fsync, a broken invariant, a log
   * write pending for `logWriteStallFatalMs`). Called at most once.
   */
  readonly onFatal?: (error: unknown) => void;
  /**
   * A log write (LogStore.save or compact) pending this long, in clock milliseconds, stops the node with
   * RaftError 'LogWriteStalled' (onFatal). Default `defaultLogWriteStallFatalMs`.
   */
  readonly logWriteStallFatalMs?: number;
  /**
   * Called with the node's status whenever its role, term or leader changed (and once at start): for
   * logging and metrics, so nothing has to poll `status()`. Called synchronously from the driver, after the
   * core input that made the change; it must not throw, nor call back into the node.
   */
  readonly onRoleChange?: (status: NodeStatus) => void;
}

export const defaultSnapshotEveryEntries = 10_000;
export const defaultSnapshotEveryBytes = 32 * 1024 * 1024;
export const defaultSnapshotKeepEntries = 1_000;
export const defaultReadTimeoutMs = 5_000;
/** A streamed snapshot transfer resends its unacknowledged window after this many election timeouts without an ack. */
export const snapshotResendElectionTimeouts = 1;
/** A streamed snapshot transfer without progress for this many election timeouts is abandoned (and retried). */
export const snapshotStallElectionTimeouts = 4;

/**
 * A log write pending this long (ms) is a hung disk: the node stops itself (onFatal, RaftError 'LogWriteStalled').
 * While one write is pending the loop sends no heartbeat, acknowledgement or apply, so the member is useless
 * to the cluster anyway; stopped, it gives up its ports and its supervisor can restart or replace it. Far above
 * any sync a working disk takes (the simulator's slowest is ~60 ms; a loaded SSD's worst seconds).
 */
export const defaultLogWriteStallFatalMs = 30_000;
/** A log write pending this many election timeouts is logged (once) as slow; the watchdog checks this often. */
export const logWriteSlowWarnElectionTimeouts = 1;

/** Counters of streamed snapshot transfers (streaming state machines only). */
export interface SnapshotStreamStats {
  /** Transfers this node started as leader; of those, abandoned (stalled, refused, superseded). */
  sendsStarted: number;
  sendsFailed: number;
  chunksSent: number;
  bytesSent: number;
  resends: number;
  /** Transfers this node received; installed; aborted before the install. */
  receivesStarted: number;
  installs: number;
  receivesAborted: number;
}
/** Proposals batched into one append, at most. */
export const proposalBatchMax = 4_096;
/** Committed entries handed to the applier but not yet applied, at most (beyond it the loop waits). */
export const applyQueueEntriesMax = 8_192;
/**
 * Appended entries handed to StateMachine.readAhead, at most per Ready. Read-ahead pays off where the apply
 * would otherwise wait on store reads: few entries at a time (low concurrency, where latency is round trips).
 * A large append is skipped: its apply reads ahead anyway, and decoding every command twice costs CPU.
 */
export const readAheadEntriesMax = 64;
/**
 * Read-ahead only for entries the applier will reach soon: at most this far past what the state machine has
 * applied. A member far behind (a follower catching up) would read entries minutes before applying them: the
 * reads would be evicted from the store's cache by then, and they compete with the apply's own reads.
 */
export const readAheadDistanceEntriesMax = 2 * readAheadEntriesMax;
/**
 * Committed entries not yet applied past which a follower holds its campaign (`Raft.holdCampaign`): elected,
 * it would answer nothing until it had applied them all (measured under load: a follower 1,200 heavy entries
 * behind won an election and served nothing for over a minute while the up-to-date former leader waited).
 */
export const applyLagCampaignHoldEntries = 256;
/** Entries per state-machine applyBatch call, at most. */
export const applyBatchEntriesMax = 4_096;
/**
 * Bytes of entry data per state-machine applyBatch call, at most (a batch always takes at least one entry).
 * A state machine holds a whole batch's writes in memory until its one atomic store write, and that memory
 * follows the commands' size: the metadata state machine on RocksDB peaks at about 3 KB of heap per file
 * created, so a createMany of 1000 names (5 KB of data) costs ~3 MiB. A member catching up on a backlog (8192
 * entries may queue) would otherwise apply up to applyBatchEntriesMax of them at once: 4 million files,
 * gigabytes of heap. 128 KiB (26 bulk creates: ~76 MiB measured, or ~1500 single creates) fits a 256 MiB heap
 * next to the 64 MiB read cache.
 */
export const applyBatchDataBytesMax = 128 * 1024;

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
  /** onFatal was called (it is called once). */
  private fatalReported = false;
  private processing = false;
  /** Watchdogs of the log writes pending now (see watchLogWrite); cleared by stop(). */
  private readonly logWriteWatches = new Set<{ timer: TimerHandle | null }>();
  private readonly logWriteSlowWarnMs: number;
  private readonly logWriteStallFatalMs: number;
  private tickTimer: TimerHandle | null = null;
  private lastTickMs = 0;
  /** Role, term and leader last reported to onRoleChange (null: nothing reported yet). */
  private reportedRole: { role: string; term: number; lead: NodeId } | null = null;
  /**
   * Ticks a late timer catches up as ticks, at most: half an election timeout (a busy event loop). Time past
   * that is a stall (`Raft.stalled`).
   */
  private readonly catchUpTicksMax: number;
  private readonly proposals = new Map<number, PendingProposal>();
  private proposalQueue: { data: Uint8Array; type: EntryType; resolve: (r: ProposalResult) => void; reject: (e: Error) => void; confIndex?: boolean }[] = [];
  private proposalFlushScheduled = false;
  private readonly reads = new Map<string, ReadBatch>();
  private currentReadBatch: ReadBatch | null = null;
  private readSequence = 0;
  /**
   * Drawn from the injected randomness at construction, so each incarnation of a node names its reads apart:
   * a read context is `id:nonce:sequence`. With `id:sequence` alone, a node that restarted counted its reads
   * from 1 again, and a ReadIndex answer to its previous incarnation, delayed in the network, matched a new
   * read and served it an index older than writes acknowledged before it (a stale read; the simulator's
   * linearizability check caught it, metadata workload).
   */
  private readonly readNonce: string;
  private lastSnapshotIndex = 0;
  /** Bytes of entry data applied since the last snapshot (for snapshotEveryBytes). */
  private appliedBytesSinceSnapshot = 0;
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
  /** Whether snapshots are streamed from and into the state machine (it implements openSnapshot/installSnapshot). */
  private readonly streaming: boolean;
  private readonly snapshotLimits: SnapshotStreamLimits;
  private readonly senders = new Map<NodeId, SnapshotSender>();
  /** Followers waiting for a stream to be opened (once no Ready is in progress). */
  private readonly pendingSnapshotSends = new Set<NodeId>();
  private readonly receiver: SnapshotReceiver;
  private snapshotAttempt = 0;
  /** The latest streamed install, settled: installs run one at a time (a store restores one stream at a time). */
  private lastInstall: Promise<void> = Promise.resolve();
  /** Holders waiting for `processing` (a streamed install's final switch); handed over in order. */
  private readonly processingWaiters: (() => void)[] = [];
  private readonly streamStats: SnapshotStreamStats = {
    sendsStarted: 0, sendsFailed: 0, chunksSent: 0, bytesSent: 0, resends: 0, receivesStarted: 0, installs: 0, receivesAborted: 0,
  };

  constructor(private readonly options: RaftNodeOptions) {
    const sm = options.stateMachine;
    const streams = sm.openSnapshot !== undefined || sm.installSnapshot !== undefined;
    assert(!streams || (sm.openSnapshot !== undefined && sm.installSnapshot !== undefined), 'a streaming state machine implements openSnapshot and installSnapshot');
    assert(!streams || sm.appliedIndex !== undefined, 'a streaming state machine is durable: it implements appliedIndex');
    assert(streams || (sm.snapshot !== undefined && sm.restore !== undefined), 'a state machine implements snapshot and restore, or openSnapshot and installSnapshot');
    this.streaming = streams;
    this.config = raftConfig({ ...options.config, snapshotStreaming: streams });
    this.logger = options.logger ?? silentLogger;
    this.catchUpTicksMax = Math.max(1, Math.floor(this.config.electionTicks / 2));
    this.readNonce = `${this.config.random.int(2 ** 30).toString(36)}.${this.config.random.int(2 ** 30).toString(36)}`;
    assert(options.tickMs > 0, 'tickMs must be positive');
    this.logWriteSlowWarnMs = logWriteSlowWarnElectionTimeouts * this.config.electionTicks * options.tickMs;
    this.logWriteStallFatalMs = options.logWriteStallFatalMs ?? defaultLogWriteStallFatalMs;
    assert(this.logWriteStallFatalMs > 0, 'logWriteStallFatalMs must be positive');
    const stallMs = snapshotStallElectionTimeouts * this.config.electionTicks * options.tickMs;
    this.snapshotLimits = {
      chunkBytes: this.config.snapshotChunkBytes,
      chunksInflightMax: snapshotChunksInflightMax,
      resendMs: snapshotResendElectionTimeouts * this.config.electionTicks * options.tickMs,
      stallMs,
    };
    this.receiver = new SnapshotReceiver(
      { id: this.config.id, send: (m) => this.options.transport.send(m), begin: (t) => this.beginInstall(t) },
      stallMs,
    );
  }

  /** Counters of streamed snapshot transfers. */
  snapshotStreamStats(): SnapshotStreamStats {
    let chunksSent = this.streamStats.chunksSent;
    let bytesSent = this.streamStats.bytesSent;
    let resends = this.streamStats.resends;
    for (const s of this.senders.values()) {
      chunksSent += s.stats.chunksSent;
      bytesSent += s.stats.bytesSent;
      resends += s.stats.resends;
    }
    // Aborts by the receiver (leader change, stall, superseded, stop) plus installs the state machine failed.
    const receivesAborted = this.streamStats.receivesAborted + this.receiver.stats.transfersAborted;
    return { ...this.streamStats, chunksSent, bytesSent, resends, receivesAborted };
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
    let applied: number;
    if (this.streaming) {
      // The log keeps snapshot metadata only. Local snapshots are taken at an index the state machine has
      // durably applied, and a streamed one is persisted after the state machine installed it, so the state
      // machine is never behind the log's snapshot (index 1, the founding one, is the empty state).
      assert(durableApplied >= snapshotIndex || snapshotIndex === 1, `state machine at ${durableApplied} is behind the log's snapshot at ${snapshotIndex}`);
      // It may be ahead of the log: a crash between a streamed install and the persist of its metadata, or
      // of commit (a change of commit alone is not synced). The log is trusted only up to its durable
      // commit index; the entries up to the state machine's index are then re-committed by Raft as usual
      // and not applied again (see runApplier).
      applied = Math.max(snapshotIndex, Math.min(durableApplied, loaded.hardState.commit));
      // Unless the log holds the very entry the state machine applied last (same index and term): then the
      // log up to it is the committed prefix the state machine applied. Without this, a leader restarted
      // with its commit index behind its state machine could not stream a snapshot (it must be labelled with
      // the state machine's index, which the core has not applied) to a follower that needs one, and, with
      // that follower needed for a quorum, could never commit again.
      const appliedTerm = sm.appliedTerm?.() ?? 0;
      if (durableApplied > applied && appliedTerm > 0 && termAt(loaded, durableApplied) === appliedTerm) applied = durableApplied;
    } else {
      if (loaded.snapshot !== null && durableApplied < snapshotIndex) await sm.restore!(loaded.snapshot);
      // A durable state machine may be ahead of the snapshot, and of the commit index on disk (a change of
      // commit alone is not synced): whatever it applied was committed.
      applied = Math.max(snapshotIndex, durableApplied);
    }
    if (this.stopped) return;
    this.durableHardState = loaded.hardState;
    this.latestHardState = loaded.hardState;
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
      // A streaming state machine's snapshots are metadata only: its state lives in its own store.
      data: this.streaming ? new Uint8Array(0) : await this.options.stateMachine.snapshot!(),
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
    this.guard(() => {
      raft.step(message);
      if (this.streaming) this.routeStreamed(raft, message);
    });
  }

  /** Hands streamed chunks the core accepted to the receiver, and acknowledgements to the sender they answer. */
  private routeStreamed(raft: Raft, message: Message): void {
    const now = this.options.clock.nowMs();
    for (const m of raft.takeStreamedChunks()) this.receiver.onChunk(m, now);
    if (message.type === 'snapResp' && isStreamedSnapshotMessage(message) && raft.role === 'leader' && message.term === raft.term) {
      this.senders.get(message.from)?.onResponse(message, now);
    }
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
        const key = `${this.id}:${this.readNonce}:${this.readSequence}`;
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
    for (const s of this.senders.values()) s.close();
    this.senders.clear();
    this.receiver.abort('node stopped');
    for (const wake of this.processingWaiters.splice(0)) wake();
    // A log write still pending is not waited for (a hung disk's write may never settle).
    for (const w of this.logWriteWatches) if (w.timer !== null) this.options.clock.clearTimer(w.timer);
    this.logWriteWatches.clear();
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
      if (this.streaming) {
        const now = this.options.clock.nowMs();
        for (const s of [...this.senders.values()]) s.onTick(now);
        this.receiver.onTick(now);
      }
      this.kick();
    });
  }

  /**
   * Catches up with the clock: the whole tick periods that elapsed since the last tick. Up to
   * `catchUpTicksMax` of them are ticks (a timer that fired late); the rest is a stall (`Raft.stalled`: the
   * lease clocks advance, so a paused process does not under-count time; the timeouts on other members'
   * silence do not, since what they sent meanwhile is still unread). A check-quorum or election timeout that
   * fires in the catch-up therefore judges a window with at least half a timeout of running time in it.
   */
  private catchUpTicks(): void {
    const raft = this.raft;
    if (raft === null) return;
    const now = this.options.clock.nowMs();
    const elapsed = Math.floor((now - this.lastTickMs) / this.options.tickMs);
    if (elapsed <= 0) return;
    this.lastTickMs += elapsed * this.options.tickMs;
    raft.holdCampaign(raft.log.committed - this.smApplied > applyLagCampaignHoldEntries);
    const ticks = Math.min(elapsed, this.catchUpTicksMax);
    if (elapsed > ticks) raft.stalled(elapsed - ticks);
    for (let i = 0; i < ticks; i++) raft.tick();
  }

  /** Runs a core input, then processes whatever Ready it produced. */
  private guard(input: () => void): void {
    input();
    this.kick();
  }

  private kick(): void {
    const raft = this.raft;
    if (raft === null || this.stopped) return;
    // Core inputs end in a kick (and every tick kicks), so a change of role, term or leader is seen here.
    this.reportRoleChange(raft);
    if (this.streaming) this.serviceSnapshots(raft);
    if (this.processing) return;
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
    // Warm the state machine's cache for the new entries while they are persisted and replicated.
    if (
      rd.entries.length > 0 &&
      rd.entries.length <= readAheadEntriesMax &&
      rd.entries[rd.entries.length - 1]!.index - this.smApplied <= readAheadDistanceEntriesMax
    )
      this.options.stateMachine.readAhead?.(rd.entries);
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
    this.watchLogWrite(this.options.logStore.save(write), 'save').then(
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
      const entries = this.applyQueue.splice(0, applyBatchLength(this.applyQueue));
      // A streaming state machine may already hold entries Raft re-commits after a restart (see start()):
      // they are settled without being applied again.
      const holds = this.streaming ? sm.appliedIndex!() : 0;
      if (entries[0]!.index <= holds) {
        const held = entries.findIndex((e) => e.index > holds);
        const skipped = held < 0 ? entries : entries.slice(0, held);
        this.onApplied(skipped, skipped.map(() => undefined));
        if (held > 0) this.applyQueue.unshift(...entries.slice(held));
        continue;
      }
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
    for (const e of entries) this.appliedBytesSinceSnapshot += e.data.byteLength;
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
    if (this.snapshotDue(raft)) {
      this.takeSnapshot(raft);
      return;
    }
    this.releaseProcessing();
  }

  /** Nothing waits to be applied: the state machine holds exactly the entries handed to it. */
  private applierIdle(): boolean {
    return !this.applyRunning && this.applyQueue.length === 0;
  }

  /**
   * Whether to take a snapshot now: enough entries applied since the last one, and the applier idle, so the
   * state machine holds exactly the core's applied index (the caller holds `processing`).
   */
  private snapshotDue(raft: Raft): boolean {
    if (!this.applierIdle()) return false;
    const appliedSinceSnapshot = this.smApplied - this.lastSnapshotIndex;
    const due =
      appliedSinceSnapshot >= (this.options.snapshotEveryEntries ?? defaultSnapshotEveryEntries) ||
      (appliedSinceSnapshot > 0 && this.appliedBytesSinceSnapshot >= (this.options.snapshotEveryBytes ?? defaultSnapshotEveryBytes));
    if (!due || !raft.canSnapshot()) return false;
    if (raft.log.applied !== this.smApplied)
      assert(false, `core applied ${raft.log.applied} != state machine applied ${this.smApplied}`);
    return true;
  }

  /** Once the applier went idle: a snapshot that is due, and snapshot streams that wait for an idle applier. */
  private maybeSnapshot(): void {
    const raft = this.raft;
    if (raft === null || this.stopped || this.processing) return;
    if (this.snapshotDue(raft)) {
      this.processing = true;
      this.takeSnapshot(raft);
      return;
    }
    if (this.pendingSnapshotSends.size > 0) this.kick();
  }

  private takeSnapshot(raft: Raft): void {
    const compactTo = (index: number) => Math.max(0, index - (this.options.snapshotKeepEntries ?? defaultSnapshotKeepEntries));
    let snapshotIndex = 0;
    // A streaming state machine's snapshot is metadata only: nothing is copied.
    // Before the log is compacted below it, what the state machine applied must be durable (its store may
    // write lazily; see StateMachine.sync).
    const sm = this.options.stateMachine;
    Promise.resolve(this.streaming ? Promise.resolve(sm.sync?.()).then(() => new Uint8Array(0)) : sm.snapshot!())
      .then(async (data) => {
        // A snapshot from the leader may have started replacing the log meanwhile: then skip this one.
        if (this.stopped || !raft.canSnapshot()) return;
        const snapshot = raft.createSnapshot(data);
        snapshotIndex = snapshot.metadata.index;
        this.lastSnapshotIndex = snapshotIndex;
        this.appliedBytesSinceSnapshot = 0;
        await this.watchLogWrite(this.options.logStore.save({ snapshot }), 'snapshot save');
        if (this.stopped) return;
        const to = compactTo(snapshotIndex);
        if (to > 0) {
          raft.compact(to);
          await this.watchLogWrite(this.options.logStore.compact(to), 'compaction');
        }
        this.logger.info({ id: this.id, index: snapshotIndex, compactTo: to }, 'snapshot taken');
      })
      .then(
        () => {
          if (this.stopped) return;
          this.releaseProcessing();
        },
        (error: unknown) => this.fatal(error),
      );
  }

  private installSnapshot(snapshot: Snapshot): void | Promise<void> {
    this.lastSnapshotIndex = snapshot.metadata.index;
    this.appliedBytesSinceSnapshot = 0; // what was applied before it is in the snapshot
    // Proposals at or below the snapshot: whether they committed is not known here.
    for (const [index, p] of this.proposals) {
      if (index <= snapshot.metadata.index) {
        this.proposals.delete(index);
        p.reject(new RaftError('ProposalDropped', 'outcome unknown: replaced by a snapshot from the leader'));
      }
    }
    // A streamed snapshot was installed into the state machine before the core took its metadata.
    if (this.streaming) return;
    return this.options.stateMachine.restore!(snapshot);
  }

  // ===================== streamed snapshots =====================

  /**
   * Leader: closes transfers that are no longer wanted (leadership lost, the follower caught up or left) and,
   * between two Readies (so the state machine's applied index is the core's), opens a stream for each
   * follower that needs one. Follower: aborts a transfer from a leader that is no longer ours.
   */
  private serviceSnapshots(raft: Raft): void {
    const incoming = this.receiver.active;
    if (incoming !== null && !incoming.complete && (raft.term !== incoming.term || raft.lead !== incoming.from)) {
      this.receiver.abort('the leader changed');
    }
    for (const [to, s] of this.senders) {
      const pr = raft.tracker.progress.get(to);
      if (raft.role !== 'leader' || raft.term !== s.term || pr === undefined || pr.state !== 'snapshot') this.closeSender(to, s);
    }
    for (const to of raft.takeSnapshotRequests()) this.pendingSnapshotSends.add(to);
    // A stream carries the state at the core's applied index: open it only between Readys with the applier
    // idle (maybeSnapshot() comes back here when the applier drains).
    if (this.processing || !this.applierIdle() || this.pendingSnapshotSends.size === 0) return;
    for (const to of [...this.pendingSnapshotSends]) {
      this.pendingSnapshotSends.delete(to);
      this.startSender(raft, to);
    }
  }

  private closeSender(to: NodeId, s: SnapshotSender): void {
    s.close();
    if (this.senders.get(to) === s) this.senders.delete(to);
    this.streamStats.chunksSent += s.stats.chunksSent;
    this.streamStats.bytesSent += s.stats.bytesSent;
    this.streamStats.resends += s.stats.resends;
  }

  private startSender(raft: Raft, to: NodeId): void {
    const pr = raft.tracker.progress.get(to);
    if (raft.role !== 'leader' || pr === undefined || pr.state !== 'snapshot') return;
    const old = this.senders.get(to);
    if (old !== undefined) this.closeSender(to, old);
    const sm = this.options.stateMachine;
    if (sm.appliedIndex!() !== raft.log.applied || !raft.canSnapshot()) {
      // The stream must be labelled with the metadata of exactly the state it carries: try again later.
      raft.reportSnapshotFailure(to);
      return;
    }
    const metadata = raft.snapshotMetadataAtApplied();
    const source = sm.openSnapshot!();
    this.snapshotAttempt++;
    const sender: SnapshotSender = new SnapshotSender(to, raft.term, this.snapshotAttempt, metadata, source, this.snapshotLimits, {
      from: this.id,
      send: (m) => this.options.transport.send(m),
      onFailure: (reason) => {
        this.closeSender(to, sender);
        this.streamStats.sendsFailed++;
        this.logger.info({ id: this.id, to, index: metadata.index, reason }, 'snapshot transfer abandoned');
        this.raft?.reportSnapshotFailure(to);
        this.kick();
      },
    }, this.options.clock.nowMs());
    this.senders.set(to, sender);
    this.streamStats.sendsStarted++;
    this.logger.info({ id: this.id, to, index: metadata.index, term: metadata.term }, 'streaming a snapshot');
    sender.start();
  }

  /**
   * Follower: a new transfer begins; the state machine consumes its chunks as they arrive. Its final switch
   * happens while this driver holds `processing` (no Ready in progress, nothing applied meanwhile) and only
   * if the core still wants the snapshot; the core then takes the metadata in the same critical section.
   */
  private beginInstall(t: IncomingSnapshot): void {
    this.streamStats.receivesStarted++;
    let gatePassed = false;
    let holding = false;
    const beforeInstall = async (): Promise<void> => {
      await this.acquireProcessing();
      holding = true;
      // Entries handed over before the switch are applied to the old state first (no new ones come while
      // `processing` is held).
      await new Promise<void>((resolve) => this.whenApplier(() => this.applierIdle(), resolve));
      const raft = this.raft;
      if (this.stopped || raft === null) throw new SnapshotTransferAborted('node stopped');
      if (this.receiver.active !== t) throw new SnapshotTransferAborted('superseded');
      if (!raft.acceptsSnapshot(t.metadata)) throw new SnapshotTransferAborted('no longer needed: the log caught up');
      gatePassed = true;
    };
    // An install superseded just now may still be cleaning up what it wrote: start after it settled (the
    // chunks wait in the queue, unacknowledged, so the leader's window bounds them).
    const run = this.lastInstall.then(() => this.options.stateMachine.installSnapshot!(t.metadata, t.chunks, beforeInstall));
    this.lastInstall = run.then(
      () => undefined,
      () => undefined,
    );
    run.then(
      () => {
        if (this.stopped) return;
        const raft = this.raft!;
        assert(gatePassed, 'the state machine installed a snapshot without calling beforeInstall');
        this.receiver.finished(t, false);
        if (t.metadata.index > this.lastSnapshotIndex) {
          this.lastSnapshotIndex = t.metadata.index;
          this.appliedBytesSinceSnapshot = 0; // what was applied before it is in the snapshot
        }
        this.smApplied = Math.max(this.smApplied, t.metadata.index);
        this.streamStats.installs++;
        this.logger.info({ id: this.id, index: t.metadata.index, term: t.metadata.term }, 'streamed snapshot installed');
        try {
          raft.installStreamedSnapshot(t.metadata, t.from);
        } catch (error) {
          this.fatal(error);
          return;
        }
        this.releaseProcessing();
      },
      (error: unknown) => {
        if (this.stopped) return;
        if (gatePassed) {
          // The switch itself failed: the state machine's store is in doubt.
          this.fatal(error);
          return;
        }
        if (this.receiver.active === t) this.streamStats.receivesAborted++;
        this.receiver.finished(t, true);
        this.logger.info({ id: this.id, index: t.metadata.index, err: error }, 'streamed snapshot not installed');
        if (holding) this.releaseProcessing();
      },
    );
  }

  /** Waits until no Ready is in progress, then holds the driver (kick() does nothing until released). */
  private acquireProcessing(): Promise<void> {
    if (!this.processing) {
      this.processing = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.processingWaiters.push(resolve));
  }

  /** Ends the current holder's turn: hands `processing` to the next waiter, or processes the next Ready. */
  private releaseProcessing(): void {
    const next = this.processingWaiters.shift();
    if (next !== undefined && !this.stopped) {
      next();
      return;
    }
    this.processing = false;
    this.kick();
  }

  private settleProposals(entries: readonly Entry[], results: readonly unknown[]): void {
    if (results.length !== entries.length)
      assert(false, `state machine returned ${results.length} results for ${entries.length} entries`);
    entries.forEach((e, i) => {
      const p = this.proposals.get(e.index);
      if (p === undefined) return;
      this.proposals.delete(e.index);
      if (p.term === e.term) p.resolve({ index: e.index, term: e.term, result: results[i] });
      else p.reject(new RaftError('ProposalDropped', `entry ${e.index} was overwritten by a later leader`));
    });
  }

  private reportRoleChange(raft: Raft): void {
    const onRoleChange = this.options.onRoleChange;
    if (onRoleChange === undefined) return;
    const r = this.reportedRole;
    if (r !== null && r.role === raft.role && r.term === raft.term && r.lead === raft.lead) return;
    this.reportedRole = { role: raft.role, term: raft.term, lead: raft.lead };
    onRoleChange(this.status());
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

  /**
   * Watches a log write the loop waits for (it holds `processing`, so nothing is sent, acknowledged or
   * applied meanwhile): logs it once as slow after `logWriteSlowWarnMs`, and stops the node (fatal,
   * 'LogWriteStalled') once it has been pending `logWriteStallFatalMs`. The check runs every
   * `logWriteSlowWarnMs`; a check that fires more than half an election timeout late counts only that much of
   * the time since the previous one (the process itself was stalled, as in catchUpTicks), so a paused process
   * does not blame its disk. Returns `write`, settled as it settles.
   */
  private watchLogWrite(write: Promise<void>, what: string): Promise<void> {
    const clock = this.options.clock;
    const startedMs = clock.nowMs();
    const lateCountedMaxMs = (this.config.electionTicks * this.options.tickMs) / 2;
    const watch: { timer: TimerHandle | null } = { timer: null };
    let countedMs = 0;
    let warned = false;
    const arm = (lastCheckMs: number): void => {
      const delayMs = Math.min(this.logWriteSlowWarnMs, this.logWriteStallFatalMs - countedMs);
      watch.timer = clock.setTimer(delayMs, () => {
        watch.timer = null;
        if (this.stopped || !this.logWriteWatches.has(watch)) return;
        const now = clock.nowMs();
        countedMs += Math.min(now - lastCheckMs, delayMs + lateCountedMaxMs);
        if (countedMs >= this.logWriteStallFatalMs) {
          this.logWriteWatches.delete(watch);
          const limitMs = this.logWriteStallFatalMs;
          const message = `log ${what} pending for ${Math.round(countedMs)} ms (limit ${limitMs} ms): the log disk is not answering`;
          this.fatal(new RaftError('LogWriteStalled', message));
          return;
        }
        if (!warned && countedMs >= this.logWriteSlowWarnMs) {
          warned = true;
          this.logger.warn(
            { id: this.id, what, pendingMs: Math.round(countedMs), fatalMs: this.logWriteStallFatalMs },
            'log write slow: nothing is sent or applied until it completes',
          );
        }
        arm(now);
      });
    };
    this.logWriteWatches.add(watch);
    arm(startedMs);
    const done = (): void => {
      if (!this.logWriteWatches.delete(watch)) return;
      if (watch.timer !== null) clock.clearTimer(watch.timer);
      watch.timer = null;
      if (warned) this.logger.warn({ id: this.id, what, tookMs: clock.nowMs() - startedMs }, 'slow log write completed');
    };
    write.then(done, done);
    return write;
  }

  private fatal(error: unknown): void {
    if (this.fatalReported) {
      // After the node stopped itself, a late failure (e.g. the stalled write giving up) is no news.
      this.logger.warn({ id: this.id, err: error }, 'raft node: error after it stopped itself');
      return;
    }
    this.fatalReported = true;
    this.logger.error({ id: this.id, err: error }, 'raft node stopping after an unrecoverable error');
    this.stop();
    this.options.onFatal?.(error);
  }
}

/** The term of the entry at `index` in a loaded log (its snapshot's metadata included), or undefined. */
export function termAt(loaded: RaftInitialState, index: number): number | undefined {
  const first = loaded.entries[0]?.index;
  if (first !== undefined && index >= first && index - first < loaded.entries.length) {
    const e = loaded.entries[index - first]!;
    if (e.index !== index) assert(false, `loaded entries are not contiguous at ${index}`);
    return e.term;
  }
  return loaded.snapshot?.metadata.index === index ? loaded.snapshot.metadata.term : undefined;
}

/** How many entries at the head of the apply queue form the next batch: within both apply-batch limits, at least one. */
export function applyBatchLength(queue: readonly Entry[]): number {
  const count = Math.min(queue.length, applyBatchEntriesMax);
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    bytes += queue[i]!.data.byteLength;
    if (i > 0 && bytes > applyBatchDataBytesMax) return i;
  }
  return count;
}
