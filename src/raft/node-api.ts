/**
 * The injected edges of a Raft member: clock, transport and state machine. The driver (node.ts) is pure
 * code over these interfaces; the simulator and the real server each provide an implementation.
 */
import type { ConfState, Entry, Message, NodeId, Role, Snapshot, SnapshotMetadata } from './types.ts';

export interface Clock {
  /** Milliseconds on this node's monotonic clock (may drift from other nodes' clocks). */
  nowMs(): number;
  /** Calls `fn` once after `delayMs` on this clock. */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}
export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface Transport {
  /** Best effort, unordered, may drop or duplicate: Raft tolerates all of that. */
  send(message: Message): void;
}

/**
 * The replicated state machine. Must be deterministic: same entries in, same state and results out.
 * Implement `apply` (synchronous, one entry at a time) or `applyBatch` (all committed entries of a Ready
 * at once, possibly asynchronous: e.g. one atomic write of the batch and the applied index to disk).
 * The driver waits for a returned promise before it applies anything else.
 */
export interface StateMachine {
  /** Applies one committed Normal entry (never called for no-ops or conf changes) and returns its result. */
  apply?(entry: Entry): unknown;
  /**
   * Applies committed entries in order, including no-ops and conf changes (so the applied index can be
   * recorded with them), and returns one result per entry.
   */
  applyBatch?(entries: readonly Entry[]): readonly unknown[] | Promise<readonly unknown[]>;
  /**
   * Byte-array snapshots (a state machine small enough to hold in memory): a consistent snapshot of
   * everything applied so far, kept whole in the log store and sent in chunks by the core.
   */
  snapshot?(): Uint8Array | Promise<Uint8Array>;
  /** Replaces the whole state with a byte-array snapshot's. */
  restore?(snapshot: Snapshot): void | Promise<void>;
  /**
   * Streamed snapshots (a durable state machine, with `appliedIndex`): the state is never held whole in
   * memory. The log store keeps snapshot metadata only (compaction copies nothing); a lagging follower is
   * sent a point-in-time stream of the leader's state machine. Implement both methods, or neither.
   *
   * `openSnapshot` fixes its point in time when called (synchronously): the state as of appliedIndex(). The
   * driver calls it between two batches and labels the stream with that index's term and configuration.
   * The driver pulls the stream chunk by chunk and closes it early with `return()` when it gives up.
   */
  openSnapshot?(): AsyncIterator<Uint8Array>;
  /**
   * Consumes a stream produced by a peer's `openSnapshot`, labelled `metadata`, and installs it atomically:
   * once the whole stream arrived and was verified (its applied index must equal metadata.index), it calls
   * `beforeInstall()`, which may reject to refuse the install; then it switches to the new state durably and
   * resolves. Any failure before the switch (a bad or aborted stream, a refusal) rejects and leaves the old
   * state. A crash at any point leaves either the old state or the new one, whole.
   */
  installSnapshot?(metadata: SnapshotMetadata, chunks: AsyncIterable<Uint8Array>, beforeInstall: () => Promise<void>): Promise<void>;
  /**
   * For a durable state machine: the index of the last entry it applied, as it survived on its own disk.
   * At start the driver then restores the log's snapshot only if the state machine is behind it, and
   * re-delivers only entries after this index.
   */
  appliedIndex?(): number;
  /**
   * For a durable state machine: the term of the entry at appliedIndex() (0 if it does not know). At start,
   * when the state machine is ahead of the log's durable commit index (a change of commit alone is not
   * synced) and the log holds an entry with this index and term, that entry and everything before it are
   * the committed prefix the state machine applied (Log Matching), so the driver trusts the log up to it.
   */
  appliedTerm?(): number;
  /**
   * For a durable state machine whose store writes lazily (the Raft log being the durable record): makes
   * everything applied so far durable. The driver calls it before it records a local snapshot and compacts
   * the log below it, so the state machine is never behind the log's snapshot after a machine crash.
   */
  sync?(): Promise<void>;
  /**
   * Optional hint: these entries were just appended to the log (proposed by this leader or received from
   * it) and will probably be applied soon. A disk-backed state machine may warm its read cache meanwhile,
   * in parallel with the log write and the replication round trip. Must not change any state or result,
   * and must not throw (failures are its own to swallow).
   */
  readAhead?(entries: readonly Entry[]): void;
}

export interface NodeStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly role: Role;
  readonly lead: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly confState: ConfState;
  /** Per-follower replication progress, on the leader only. */
  readonly progress: ReadonlyMap<NodeId, { match: number; next: number; state: string; isLearner: boolean }>;
}

export interface ProposalResult {
  readonly index: number;
  readonly term: number;
  /** What StateMachine.apply returned for this entry (undefined for conf changes). */
  readonly result: unknown;
}

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
