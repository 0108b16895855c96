/**
 * The chunkserver's link to the metadata leader (GFS §4.1's HeartBeat messages): registers, heartbeats with
 * capacity and use, reports the replicas it holds (in full at start and when the leader asks; the changes
 * otherwise), and carries out the commands in the replies (delete a replica; copy one to another server).
 *
 * Runs on injected edges only — a `Clock` with timers, a `MetadataLink`, a `ChunkStore`, an `IdStore`, a
 * `copyReplica` function — so the simulator can run this same code. One exchange with the leader is in
 * flight at a time; what has to be sent is decided anew before each one, from the agent's state:
 *
 *   not registered → register; else full report wanted → full report; else changes older than
 *   `reportDelayMs` → one incremental report; else heartbeat due → heartbeat; else a bad replica due →
 *   ReportBadReplica (see reportBad).
 *
 * A failed exchange (leader unknown, cluster down, a timeout) is retried after a bounded exponential backoff;
 * nothing here rejects unhandled. Only a registration the cluster refuses for good (an id it does not know,
 * a bad address or rack) is fatal: reported through `onFatal`.
 *
 * Identity: the id the leader allocates is saved (IdStore: a small file in the data dir) before it is used,
 * and a restart registers with it, so the server keeps its identity and its replicas count. A server whose
 * data dir lost the id file (a new or wiped disk) registers as a new server: its old id is declared dead by
 * the leader and its chunks re-replicated, which is right, since the replicas went with the disk.
 *
 * Disk faults (`noteDiskError`, called by the ObservedStore around the data server's store, by the scrubber's
 * `onCorrupt`, and here for a copy's read; each failure once):
 * - DISK_FULL: logged at warn, counted; for `diskErrorWindowMs` after it the heartbeat reports the disk as full
 *   (used = capacity), so the leader places no new chunk here; a heartbeat goes out at once.
 * - IO_ERROR: logged at error, counted. A read that failed IO_ERROR is retried as a whole-replica verify
 *   (`readErrorVerifies` times, `readErrorVerifyIntervalMs` apart, so the checks span a disk's bad moment
 *   instead of falling inside it): if every verify fails too, the replica is reported bad like a corrupt one
 *   (ReportBadReplica: the leader re-replicates from a good copy and orders this one deleted, or keeps it
 *   while it is the only listed copy; see reportBad); a transient error reports nothing.
 *   Meanwhile the replica stays; readers fail over to other replicas.
 * - `diskErrorsUnhealthyMin` I/O errors within `diskErrorWindowMs` mark the disk unhealthy (error log, gauge
 *   rfs_chunkserver_disk_healthy 0): the heartbeat reports it full, so it gets no new chunks, until the
 *   window holds fewer errors again (logged at warn). Replicas already here keep serving.
 * - With a `freeBytes` source the heartbeat reports used = capacity − (free − diskReserveBytes) when that is
 *   more than the replicas' bytes: a disk filled by anything (other files, sidecars) stops taking new chunks
 *   while a chunk's worth of room is left, instead of failing them mid-write.
 */
import type { Logger } from 'pino';
import { assert } from '../raft/errors.ts';
import type { RandomSource } from '../raft/config.ts';
import type { Clock, TimerHandle } from '../raft/node-api.ts';
import type { ChunkserverMetrics, MetadataRequestKind } from './metrics.ts';
import { recordChecksumFailure, recordDiskError, recordHeartbeatFailure, recordReReplication, setBadReplicas, setDiskHealth, setReplicasHeld } from './metrics.ts';
import type { ChunkStore, ReplicaInfo, StoreUsage } from './types.ts';
import { ChunkStoreError, checksumBlockBytes, chunkSizeBytesMax } from './types.ts';

// ---------------------------------------------------------------------------------------------- the link

export interface RegisterRequest {
  /** 0: a new chunkserver. */
  readonly id: number;
  readonly address: string;
  readonly rack: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

export interface ReportedReplica {
  readonly handle: number;
  readonly version: number;
  readonly lengthBytes: number;
  /** Whether the replica is sealed (its length final and durable): only then can a copy be listed. */
  readonly sealed: boolean;
  /** CRC32C of its bytes, when sealed (the leader's lease recovery records it). */
  readonly checksum?: number | undefined;
}

export interface ChunkReportRequest {
  readonly id: number;
  readonly full: boolean;
  /** More messages of this full report follow (a full report larger than reportChunksMax; see the proto). */
  readonly fullMore?: boolean;
  readonly chunks: readonly ReportedReplica[];
  /** Incremental reports only: handles no longer held. */
  readonly removed: readonly number[];
}

export type AgentCommand =
  | { readonly kind: 'replicate'; readonly handle: number; readonly version: number; readonly target: number; readonly targetAddress: string }
  | { readonly kind: 'delete'; readonly handle: number; readonly version: number }
  /**
   * The leader's lease recovery of an unsealed chunk whose writer vanished. Without `lengthBytes`: report the
   * replica as it is now. With it: cut the unsealed replica (at `version` or below, holding at least that
   * much) to `lengthBytes`, raise it to `version`, seal it (durable), and report it.
   */
  | { readonly kind: 'recover'; readonly handle: number; readonly version: number; readonly lengthBytes?: number | undefined };

export interface CommandsReply {
  readonly commands: readonly AgentCommand[];
  readonly fullReportWanted: boolean;
}

/**
 * The chunkserver side of the metadata service (src/rpc/metadata.proto): one exchange with the leader, found
 * by following redirects. Rejects with `MetadataLinkError` (the service's error code, or UNAVAILABLE when no
 * server answered); the agent retries, so an implementation does not.
 */
export interface MetadataLink {
  register(request: RegisterRequest): Promise<{ readonly id: number }>;
  heartbeat(request: { readonly id: number; readonly capacityBytes: number; readonly usedBytes: number }): Promise<CommandsReply>;
  chunkReport(request: ChunkReportRequest): Promise<CommandsReply>;
  /**
   * This server's replica of `handle` at `version` is bad (ReportBadReplica): the leader's outcome, one of
   * BadReplicaOutcome. ESTALE (the chunk moved on) and ENOENT (gone) reject like any service error.
   */
  reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }>;
}

export class MetadataLinkError extends Error {
  constructor(
    /** The metadata service's error code (ENOENT, EINVAL, NOT_LEADER, UNAVAILABLE, TIMEOUT, ...). */
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'MetadataLinkError';
  }
}

// ---------------------------------------------------------------------------------------------- identity

/** Where the chunkserver's id lives (a file in the data dir in production: see server.ts `fileIdStore`). */
export interface IdStore {
  /** The saved id, or undefined when none was saved (a new or wiped data dir). */
  load(): Promise<number | undefined>;
  /** Saves the id durably before it is used. */
  save(id: number): Promise<void>;
}

export type AgentErrorCode =
  | 'UNKNOWN_ID' // the metadata cluster does not know the saved id (another cluster's data dir?)
  | 'ID_MISMATCH' // the saved id is not the one the operator expects
  | 'REGISTRATION_REFUSED' // the cluster refused our address or rack
  | 'BAD_ID_FILE' // the saved id cannot be read
  | 'STOPPED';

export class AgentError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'AgentError';
  }
}

// ---------------------------------------------------------------------------------------------- options

/** Copies `handle` at exactly `version` to chunkserver `targetId` at `targetAddress` (the data plane). */
export type CopyReplica = (copy: {
  readonly handle: number;
  readonly version: number;
  readonly targetId: number;
  readonly targetAddress: string;
  /** Aborted when the agent stops. */
  readonly signal: AbortSignal;
}) => Promise<void>;

export interface AgentLimits {
  /** Between two heartbeats. The leader's heartbeatTimeoutMs (10 s by default) must be several of these. */
  readonly heartbeatIntervalMs: number;
  /**
   * A full report at least this often, even unasked: the leader judges a replica (stale, garbage) only when it
   * is reported, so one reported before the leader knew better (a version bump it had not loaded yet) is
   * judged again here at the latest.
   */
  readonly fullReportIntervalMs: number;
  /** Replicas (or removed handles) in one report message; a larger full report goes in several messages. */
  readonly reportChunksMax: number;
  /**
   * Unreported changes kept, at most; past it they are dropped for one full report, which covers them all (it
   * replaces what the leader knows this server holds). Bounds memory while the leader is unreachable.
   */
  readonly pendingChangesMax: number;
  /** Changes wait this long before an incremental report, so that changes close together share one. */
  readonly reportDelayMs: number;
  /** Copies for the leader running at once. */
  readonly replicationsInflightMax: number;
  /** Copies waiting for a slot; further orders are dropped (the leader orders again after its timeout). */
  readonly replicationsQueuedMax: number;
  /** Deletes waiting to run; further orders are dropped (the next report makes the leader order them again). */
  readonly deletesQueuedMax: number;
  /**
   * Lease recovery orders (a query of an unsealed replica, or a seal at the agreed length) waiting to run;
   * further orders are dropped (the leader orders again after its answer wait).
   */
  readonly recoveriesQueuedMax: number;
  /** How long a DISK_FULL keeps the disk reported full, and the window in which I/O errors are counted. */
  readonly diskErrorWindowMs: number;
  /** I/O errors within diskErrorWindowMs that mark the disk unhealthy. */
  readonly diskErrorsUnhealthyMin: number;
  /** Free bytes kept in reserve: with less free the heartbeat reports the disk full (one chunk by default). */
  readonly diskReserveBytes: number;
  /** Whole-replica verifies after a read failed IO_ERROR; the replica is reported bad only if all fail. */
  readonly readErrorVerifies: number;
  /** Time between those verifies (the first runs at once). */
  readonly readErrorVerifyIntervalMs: number;
  /**
   * A bad replica this server reported and still holds is reported again this often: the leader's memory of
   * bad replicas does not survive a change of leader, and a replica kept as the only listed copy is dropped
   * once another copy is listed.
   */
  readonly badReplicaReportIntervalMs: number;
  /** Backoff after a failed exchange: starts here, doubles per failure ... */
  readonly retryDelayMsMin: number;
  /** ... up to here. */
  readonly retryDelayMsMax: number;
}

/**
 * Bytes of one reported replica on the wire at most (src/rpc/metadata.proto ReportedChunk, one entry of the
 * repeated `chunks`): the entry's tag and length prefix (1 + 1: the body is under 128 bytes), then each field's
 * one-byte tag and its varint at the field's largest value: `handle` and `version` are JavaScript safe
 * integers (below 2^53, so at most 8 varint bytes; uint64 allows 10, but no larger value is ever sent),
 * `length_bytes` at most chunkSizeBytesMax (below 2^28: 4 bytes), `sealed` 1 byte, `checksum` a uint32 (5).
 * 33 bytes. (It was 20, from before `sealed` and `checksum` were reported: reportChunksMax could reach 3273,
 * a report of up to 108 KB the server refuses.) A removed handle (an incremental report's packed `removed`)
 * takes at most 8 bytes, less than a replica.
 */
export const reportedReplicaBytesMax = 1 + 1 + (1 + 8) + (1 + 8) + (1 + 4) + (1 + 1) + (1 + 5);
assert(chunkSizeBytesMax < 2 ** 28, 'a reported length fits a 4-byte varint');
/** The request size the metadata server accepts (src/metadata/server.ts requestBytesMax): a report must fit. */
export const reportMessageBytesMax = 64 * 1024;
/**
 * Room for the other fields of a report message: `id` (1 + 8), `full` and `full_more` (2 + 2), the tag and
 * length prefix of `removed` (1 + 3): 17 bytes, with room to spare.
 */
const reportOverheadBytes = 64;

export const defaultAgentLimits: AgentLimits = {
  heartbeatIntervalMs: 2_000,
  fullReportIntervalMs: 60 * 60 * 1_000,
  reportChunksMax: 1_900, // the most that fits is 1984 (checkAgentLimits): 2000 did not, at the worst case
  reportDelayMs: 50,
  pendingChangesMax: 100_000,
  replicationsInflightMax: 2,
  replicationsQueuedMax: 256,
  deletesQueuedMax: 4_096,
  recoveriesQueuedMax: 1_024,
  retryDelayMsMin: 100,
  retryDelayMsMax: 2_000,
  diskErrorWindowMs: 60_000,
  diskErrorsUnhealthyMin: 5,
  diskReserveBytes: 64 * 1024 * 1024,
  readErrorVerifies: 3,
  readErrorVerifyIntervalMs: 10_000,
  badReplicaReportIntervalMs: 30_000,
};

/** The store operations whose disk errors the agent is told of. */
export type StoreOperation = 'create' | 'append' | 'sync' | 'bumpVersion' | 'seal' | 'read' | 'verify' | 'delete' | 'copy';

/** Disk health as the agent judges it (see the module comment). */
export interface DiskHealth {
  readonly healthy: boolean;
  /** A DISK_FULL within diskErrorWindowMs. */
  readonly full: boolean;
  /** I/O errors within diskErrorWindowMs. */
  readonly ioErrorsRecent: number;
  /** Free bytes at the last heartbeat, if a source is known. */
  readonly freeBytes: number | undefined;
}

/** The errno name in an OS error message ("EIO", "ENOSPC"), or the store code's usual one. */
export function errnoOf(error: ChunkStoreError): string {
  return /\b(E[A-Z0-9]{2,})\b/.exec(error.detail)?.[1] ?? (error.code === 'DISK_FULL' ? 'ENOSPC' : 'EIO');
}

/** Crashes loudly on limits that contradict each other (checked once, at construction). */
export function checkAgentLimits(l: AgentLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw new RangeError(`agent limit ${k} must be a positive integer`);
  }
  if (l.reportChunksMax * reportedReplicaBytesMax + reportOverheadBytes > reportMessageBytesMax) {
    throw new RangeError(`reportChunksMax ${l.reportChunksMax} does not fit a ${reportMessageBytesMax}-byte report`);
  }
  if (l.retryDelayMsMin > l.retryDelayMsMax) throw new RangeError('retryDelayMsMin must not exceed retryDelayMsMax');
  // A backoff longer than a heartbeat interval would make a recovered leader wait for us needlessly.
  if (l.retryDelayMsMax > l.heartbeatIntervalMs) throw new RangeError('retryDelayMsMax must not exceed heartbeatIntervalMs');
}

export interface MetadataAgentOptions {
  /** The data plane's address ('host:port') other chunkservers and clients reach this server at. */
  readonly address: string;
  readonly rack: string;
  readonly store: ChunkStore;
  readonly link: MetadataLink;
  readonly idStore: IdStore;
  readonly clock: Clock;
  readonly copyReplica: CopyReplica;
  readonly logger: Logger;
  /** Jitter for retry delays (so servers restarted together do not retry in step). None when absent. */
  readonly random?: RandomSource;
  readonly metrics?: ChunkserverMetrics;
  /** The id the operator expects (`--id`): a saved id that differs is refused (ID_MISMATCH). */
  readonly expectedId?: number;
  readonly limits?: Partial<AgentLimits>;
  /** A registration the cluster refused for good; the agent has stopped. */
  readonly onFatal?: (error: AgentError) => void;
  /** Free bytes on the data disk (FileChunkStore.freeBytes), for the heartbeat's room (see diskReserveBytes). */
  readonly freeBytes?: () => Promise<number>;
}

export interface AgentStatus {
  readonly id: number | null;
  readonly registered: boolean;
  /** Failed exchanges since the last success. */
  readonly consecutiveFailures: number;
  readonly heartbeatsSent: number;
  readonly fullReportsSent: number;
  readonly incrementalReportsSent: number;
  /** Changes noted and not reported yet. */
  readonly pendingChanges: number;
  readonly deletesDone: number;
  readonly copiesInflight: number;
  readonly copiesQueued: number;
  readonly copiesDone: number;
  readonly copiesFailed: number;
  /** Clock time of the last successful exchange, or null. */
  readonly lastContactMs: number | null;
  readonly disk: DiskHealth;
  /** Replicas reported bad after I/O errors on read. */
  readonly unreadableReplicasReported: number;
}

/** A replica found bad here, reported to the leader while held at `version` (MetadataAgent.reportBad). */
interface BadReplica {
  readonly version: number;
  /** When it is next reported. */
  dueMs: number;
  reports: number;
  /** The leader's last answer was last_replica: kept as the only listed copy. */
  lastCopy: boolean;
}

interface CopyOrder {
  readonly handle: number;
  readonly version: number;
  readonly target: number;
  readonly targetAddress: string;
}

/** Failures logged at warn level: the first, then one in this many (the rest at debug). */
const failureLogEvery = 20;

export class MetadataAgent {
  private readonly limits: AgentLimits;
  private address: string;
  private stopped = false;
  private started = false;
  /** The saved id is loaded (loadId); exchanges begin once the agent has also started. */
  private loaded = false;
  private id: number | null = null;
  /** Allocated by the leader but not saved yet (the save failed): saved before anything else. */
  private unsavedId: number | null = null;
  private savedId: number | undefined = undefined;
  private needFullReport = true;
  /** Counts full-report requests, so one arriving while a full report is sent is not lost. */
  private fullReportEpoch = 0;
  /** Handles changed since last reported → a change sequence number (a newer change must be re-sent). */
  private readonly pending = new Map<number, number>();
  private changeSeq = 0;
  /** When the oldest unreported change becomes due, or null with nothing pending. */
  private reportDueMs: number | null = null;
  private heartbeatDueMs = 0;
  private fullReportDueMs = Infinity;
  /** Full reports are at least reportDelayMs apart (a leader asking again at once cannot make us loop). */
  private fullReportEarliestMs = 0;
  private failures = 0;
  private retryAtMs = 0;
  private lastUsage: StoreUsage = { capacityBytes: 0, usedBytes: 0 };
  private lastContactMs: number | null = null;
  private timer: TimerHandle | null = null;
  private timerDueMs = Infinity;
  private busy: Promise<void> | null = null;
  private readonly deleteQueue: { handle: number; version: number }[] = [];
  /**
   * Unsealed replicas a lease recovery query found corrupt from some block on: reported this long (the bytes
   * before the bad block), so recovery agrees on no length that takes the bad block in. Forgotten once sealed
   * or gone.
   */
  private readonly verifiedLengths = new Map<number, number>();
  /** Lease recovery commands not yet done (one at a time: a query verifies the replica, a seal syncs). */
  private readonly sealQueue: { handle: number; version: number; lengthBytes: number | undefined }[] = [];
  private sealing: Promise<void> | null = null;
  private deleting: Promise<void> | null = null;
  private readonly copyQueue: CopyOrder[] = [];
  private readonly copiesRunning = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();
  private readonly registeredWaiters: { resolve: (id: number) => void; reject: (e: unknown) => void }[] = [];
  /** Clock times of the I/O errors within diskErrorWindowMs, oldest first (at most diskErrorsUnhealthyMin kept). */
  private readonly ioErrorTimesMs: number[] = [];
  private diskFullAtMs = -Infinity;
  private diskUnhealthy = false;
  private lastFreeBytes: number | undefined = undefined;
  /** Handles whose read error is being re-verified (one check per handle at a time). */
  private readonly verifying = new Set<number>();
  /** Replicas found bad here, reported to the leader while held at that version (see reportBad). */
  private readonly bad = new Map<number, BadReplica>();
  private readonly counts = {
    unreadable: 0,
    heartbeats: 0,
    fullReports: 0,
    incrementalReports: 0,
    deletes: 0,
    copiesDone: 0,
    copiesFailed: 0,
  };

  constructor(private readonly options: MetadataAgentOptions) {
    this.limits = { ...defaultAgentLimits, ...options.limits };
    checkAgentLimits(this.limits);
    this.address = options.address;
  }

  /** The address to register, when it is known only after construction (a data server on port 0). */
  setAddress(address: string): void {
    assert(!this.started, 'the address is fixed once the agent started');
    this.address = address;
  }

  /**
   * Loads the saved id (ID_MISMATCH if it is not `expectedId`), so that `knownId` answers it from now on; the
   * chunkserver calls it before its data server listens (a restarted server serves under its id from its
   * first connection). `start` calls it if it has not run.
   */
  async loadId(): Promise<void> {
    if (this.loaded) return;
    const saved = await this.options.idStore.load();
    const expected = this.options.expectedId;
    if (saved !== undefined && expected !== undefined && saved !== expected) {
      throw new AgentError('ID_MISMATCH', `the data dir belongs to chunkserver ${saved}, not ${expected}`);
    }
    if (saved === undefined && expected !== undefined) {
      this.options.logger.warn(
        { expectedId: expected },
        'no chunkserver id saved in the data dir (a new or wiped disk): registering as a new chunkserver; the old id will be declared dead and its chunks re-replicated',
      );
    }
    this.savedId = saved;
    this.loaded = true;
  }

  /**
   * Loads the saved id (`loadId`, unless done) and starts the exchanges with the leader in the background;
   * resolves at once, without waiting for the metadata service (see `whenRegistered`).
   */
  async start(): Promise<void> {
    assert(!this.started, 'agent started twice');
    assert(this.address !== '', 'no address to register');
    this.started = true;
    await this.loadId();
    this.kick();
  }

  /**
   * The id to serve as: the registered one, else the one saved in the data dir (known once `start` loaded it),
   * else undefined (a new server, until it registers). A restarted server serves its replicas under its saved
   * id at once, while the metadata service may be out of reach; waiting for the registration refused every
   * pipeline and copy meanwhile (WRONG_SERVER).
   */
  knownId(): number | undefined {
    return this.id ?? this.savedId;
  }

  /** Resolves with the id once registered (rejects with STOPPED or a fatal error). */
  whenRegistered(): Promise<number> {
    if (this.id !== null) return Promise.resolve(this.id);
    if (this.stopped) return Promise.reject(new AgentError('STOPPED', 'the agent stopped'));
    return new Promise((resolve, reject) => this.registeredWaiters.push({ resolve, reject }));
  }

  /** A replica was created, written, bumped or sealed: reported in the next incremental report. */
  noteReplicaChanged(handle: number): void {
    this.note(handle);
  }

  /** A replica is gone: reported as removed in the next incremental report. */
  noteReplicaRemoved(handle: number): void {
    this.note(handle);
  }

  /**
   * A replica failed its checksums (a read or the scrubber): reported to the leader, which re-replicates from
   * a good copy and has this one deleted (see reportBad). Returns whether the replica is held. Never rejects.
   */
  reportCorrupt(handle: number): Promise<boolean> {
    if (this.options.metrics !== undefined) recordChecksumFailure(this.options.metrics);
    return Promise.resolve(this.reportBad(handle, 'corrupt replica'));
  }

  /**
   * A store operation failed DISK_FULL or IO_ERROR (other codes are ignored): logged, counted, and judged for
   * the disk's health; a read's IO_ERROR is re-verified and, if persistent, the replica reported bad. Never throws.
   */
  noteDiskError(op: StoreOperation, handle: number, error: unknown): void {
    if (!(error instanceof ChunkStoreError) || (error.code !== 'DISK_FULL' && error.code !== 'IO_ERROR')) return;
    if (this.stopped) return;
    const nowMs = this.options.clock.nowMs();
    const fields = { handle, version: this.options.store.info(handle)?.version ?? null, op, code: error.code, errno: errnoOf(error), detail: error.detail };
    if (this.options.metrics !== undefined) recordDiskError(this.options.metrics, error.code, op);
    if (error.code === 'DISK_FULL') {
      this.options.logger.warn(fields, 'disk full: the write fails (the client recovers onto other servers); reporting no room to the leader');
      this.diskFullAtMs = nowMs;
      this.heartbeatSoon();
      return;
    }
    this.options.logger.error(fields, 'I/O error on the data disk');
    this.ioErrorTimesMs.push(nowMs);
    if (this.ioErrorTimesMs.length > this.limits.diskErrorsUnhealthyMin) this.ioErrorTimesMs.shift();
    this.judgeDisk(nowMs);
    if (op === 'read' || op === 'verify') void this.checkUnreadable(handle);
  }

  /** The disk's health now (also refreshes the unhealthy flag as the error window slides). */
  diskHealth(): DiskHealth {
    const nowMs = this.options.clock.nowMs();
    this.judgeDisk(nowMs);
    return {
      healthy: !this.diskUnhealthy,
      full: nowMs - this.diskFullAtMs < this.limits.diskErrorWindowMs,
      ioErrorsRecent: this.ioErrorTimesMs.length,
      freeBytes: this.lastFreeBytes,
    };
  }

  private judgeDisk(nowMs: number): void {
    const times = this.ioErrorTimesMs;
    while (times.length > 0 && nowMs - (times[0] as number) >= this.limits.diskErrorWindowMs) times.shift();
    const unhealthy = times.length >= this.limits.diskErrorsUnhealthyMin;
    if (unhealthy === this.diskUnhealthy) return;
    this.diskUnhealthy = unhealthy;
    if (unhealthy) {
      this.options.logger.error(
        { ioErrors: times.length, windowMs: this.limits.diskErrorWindowMs },
        'data disk marked unhealthy after repeated I/O errors: reporting no room to the leader (no new chunks here)',
      );
      this.heartbeatSoon();
    } else {
      this.options.logger.warn({ windowMs: this.limits.diskErrorWindowMs }, 'data disk healthy again (no repeated I/O errors in the window)');
    }
    if (this.options.metrics !== undefined) setDiskHealth(this.options.metrics, !unhealthy, undefined);
  }

  /** The next exchange is a heartbeat, now (the leader hears of a full or unhealthy disk at once). */
  private heartbeatSoon(): void {
    this.heartbeatDueMs = Math.min(this.heartbeatDueMs, this.options.clock.nowMs());
    this.kick();
  }

  /**
   * A read failed IO_ERROR: re-verify the replica, readErrorVerifyIntervalMs apart; report it bad only if every
   * verify fails too. (Back to back, the verifies of a replica that was fine fell inside one spell of disk
   * errors, and it was deleted.)
   */
  private async checkUnreadable(handle: number): Promise<void> {
    if (this.verifying.has(handle)) return;
    this.verifying.add(handle);
    try {
      let lastError: unknown = undefined;
      for (let attempt = 0; attempt < this.limits.readErrorVerifies; attempt++) {
        if (attempt > 0) await this.pause(this.limits.readErrorVerifyIntervalMs);
        if (this.stopped || this.options.store.info(handle) === undefined) return;
        try {
          await this.options.store.verify(handle);
          this.options.logger.warn({ handle, attempt }, 'replica verifies after an I/O error on read: kept (transient error)');
          return;
        } catch (e) {
          lastError = e;
          if (e instanceof ChunkStoreError && e.code === 'NO_SUCH_REPLICA') return;
        }
      }
      this.counts.unreadable++;
      if (lastError instanceof ChunkStoreError && lastError.code === 'CHECKSUM_MISMATCH' && this.options.metrics !== undefined) {
        recordChecksumFailure(this.options.metrics);
      }
      this.reportBad(handle, `unreadable replica (${String(lastError)})`);
    } finally {
      this.verifying.delete(handle);
    }
  }

  /** Waits `ms` on the injected clock; resolves at once when the agent stops. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const signal = this.abort.signal;
      const done = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const handle = this.options.clock.setTimer(ms, done);
      const onAbort = (): void => {
        this.options.clock.clearTimer(handle);
        done();
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A bad replica (corrupt, or unreadable after the re-verifies): reported to the leader (ReportBadReplica),
   * which decides, as it does for a reader's report. It is not deleted here: when it is the only listed copy
   * left (the others lost, or their servers down) its good blocks are all there is of the chunk, and a
   * replica deleted on its server's own verdict lost them. The leader re-replicates from a good copy, unlists
   * this one and orders its delete; it keeps it listed while no other usable copy is ("last_replica").
   * Reported again every badReplicaReportIntervalMs while this server holds it at that version. An unsealed
   * chunk belongs to its writer's pipeline: such a replica is deleted here (the writer resumes without it).
   * Returns whether the replica was held. Never rejects.
   */
  private reportBad(handle: number, what: string): boolean {
    const info = this.options.store.info(handle);
    if (info === undefined) return false;
    const known = this.bad.get(handle);
    if (known !== undefined && known.version === info.version) return true;
    this.options.logger.error({ handle, version: info.version }, `${what}: reporting it to the metadata leader, which re-replicates from a good copy and has it deleted`);
    this.bad.set(handle, { version: info.version, dueMs: this.options.clock.nowMs(), reports: 0, lastCopy: false });
    this.countBad();
    this.kick();
    return true;
  }

  /** The bad-replica gauge (metrics.ts setBadReplicas). */
  private countBad(): void {
    if (this.options.metrics === undefined) return;
    let lastCopy = 0;
    for (const entry of this.bad.values()) if (entry.lastCopy) lastCopy++;
    setBadReplicas(this.options.metrics, this.bad.size - lastCopy, lastCopy);
  }

  /** Reports the most overdue bad replica (see reportBad); service errors that settle it are handled here. */
  private async sendBadReport(id: number, nowMs: number): Promise<void> {
    let handle = 0;
    let entry: BadReplica | undefined;
    for (const [h, e] of this.bad) if (entry === undefined || e.dueMs < entry.dueMs) [handle, entry] = [h, e];
    if (entry === undefined) return;
    if (this.options.store.info(handle)?.version !== entry.version) {
      this.bad.delete(handle); // deleted (the leader's order) or moved on: nothing left to report
      this.countBad();
      return;
    }
    let outcome: string;
    try {
      ({ outcome } = await this.options.link.reportBadReplica({ handle, chunkserverId: id, version: entry.version }));
    } catch (e) {
      if (!(e instanceof MetadataLinkError) || !['ESTALE', 'ENOENT', 'EAGAIN'].includes(e.code)) throw e;
      if (e.code === 'EAGAIN') {
        entry.dueMs = nowMs + this.limits.badReplicaReportIntervalMs; // the leader's list of bad replicas is full
        return;
      }
      // The chunk moved to a newer version, or is gone: garbage collection deletes this replica.
      this.options.logger.warn({ handle, version: entry.version, code: e.code }, 'bad replica: the leader no longer lists the chunk at this version; left to garbage collection');
      this.bad.delete(handle);
      this.countBad();
      return;
    }
    if (outcome === 'unsealed') {
      this.options.logger.error({ handle, version: entry.version }, 'bad replica of an unsealed chunk: deleted here (its writer resumes without it)');
      try {
        await this.options.store.delete(handle, entry.version);
      } catch (e) {
        this.options.logger.error({ err: e, handle }, 'could not delete a bad replica');
      }
      this.note(handle); // reported as removed; note() also ends this replica's bad reports
      return;
    }
    entry.reports++;
    entry.dueMs = nowMs + this.limits.badReplicaReportIntervalMs;
    entry.lastCopy = outcome === 'last_replica';
    this.countBad();
    const fields = { handle, version: entry.version, outcome, reports: entry.reports };
    if (outcome === 'last_replica') this.options.logger.error(fields, 'bad replica kept: it is the only listed copy of the chunk (its good blocks still serve reads)');
    else this.options.logger.info(fields, 'bad replica reported to the metadata leader');
  }

  status(): AgentStatus {
    return {
      id: this.id,
      registered: this.id !== null,
      consecutiveFailures: this.failures,
      heartbeatsSent: this.counts.heartbeats,
      fullReportsSent: this.counts.fullReports,
      incrementalReportsSent: this.counts.incrementalReports,
      pendingChanges: this.pending.size,
      deletesDone: this.counts.deletes,
      copiesInflight: this.copiesRunning.size,
      copiesQueued: this.copyQueue.length,
      copiesDone: this.counts.copiesDone,
      copiesFailed: this.counts.copiesFailed,
      lastContactMs: this.lastContactMs,
      disk: this.diskHealth(),
      unreadableReplicasReported: this.counts.unreadable,
    };
  }

  /** Stops exchanging, aborts copies, and waits for what is running to settle. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer();
    this.abort.abort(new AgentError('STOPPED', 'the agent stopped'));
    this.copyQueue.length = 0;
    this.deleteQueue.length = 0;
    this.failRegisteredWaiters(new AgentError('STOPPED', 'the agent stopped before it registered'));
    this.sealQueue.length = 0;
    await Promise.allSettled([this.busy, this.deleting, this.sealing, ...this.copiesRunning.values()]);
  }

  // ------------------------------------------------------------------------------------------ scheduling

  private note(handle: number): void {
    assert(Number.isSafeInteger(handle) && handle >= 1, `handle ${handle}`);
    if (this.stopped) return;
    // Any change (written, bumped, sealed, copied in again, deleted) makes it another replica than the one
    // found bad: a good copy the leader placed here after the bad one was deleted is not reported.
    if (this.bad.delete(handle)) this.countBad();
    if (!this.pending.has(handle) && this.pending.size >= this.limits.pendingChangesMax) {
      this.pending.clear();
      this.reportDueMs = null;
      this.requestFullReport();
      this.kick();
      return;
    }
    this.pending.set(handle, ++this.changeSeq);
    this.reportDueMs ??= this.options.clock.nowMs() + this.limits.reportDelayMs;
    this.kick();
  }

  /** When the next exchange should happen. */
  private nextDueMs(nowMs: number): number {
    if (this.failures > 0) return this.retryAtMs;
    if (this.id === null || this.unsavedId !== null) return nowMs;
    if (this.needFullReport) return Math.max(nowMs, this.fullReportEarliestMs);
    return Math.min(this.reportDueMs ?? Infinity, this.heartbeatDueMs, this.fullReportDueMs, this.badReportDueMs());
  }

  /** When the next bad replica is due to be reported (Infinity: none). */
  private badReportDueMs(): number {
    let due = Infinity;
    for (const entry of this.bad.values()) due = Math.min(due, entry.dueMs);
    return due;
  }

  /** (Re)arms the timer for the next exchange; while one runs, it re-arms when done. */
  private kick(): void {
    if (this.stopped || !this.started || !this.loaded || this.busy !== null) return;
    const nowMs = this.options.clock.nowMs();
    const dueMs = Math.max(nowMs, this.nextDueMs(nowMs));
    if (this.timer !== null && this.timerDueMs <= dueMs) return;
    this.clearTimer();
    this.timerDueMs = dueMs;
    this.timer = this.options.clock.setTimer(dueMs - nowMs, () => {
      this.timer = null;
      this.timerDueMs = Infinity;
      this.runExchange();
    });
  }

  private clearTimer(): void {
    if (this.timer !== null) this.options.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerDueMs = Infinity;
  }

  private runExchange(): void {
    if (this.stopped || this.busy !== null) return;
    this.busy = this.exchange()
      .catch((e: unknown) => {
        // exchange() handles every expected failure; anything else is a bug, but the process must not die of
        // an unhandled rejection: log it loudly and keep retrying.
        this.options.logger.error({ err: e }, 'metadata agent: unexpected failure');
        this.onFailure('heartbeat', e);
      })
      .finally(() => {
        this.busy = null;
        this.kick();
      });
  }

  /** One exchange with the leader: what it is follows from the state (see the module comment). */
  private async exchange(): Promise<void> {
    const nowMs = this.options.clock.nowMs();
    if (nowMs >= this.fullReportDueMs) this.requestFullReport();
    let kind: MetadataRequestKind = 'heartbeat';
    try {
      if (this.id === null || this.unsavedId !== null) {
        kind = 'register';
        await this.register();
      } else if (this.needFullReport && nowMs >= this.fullReportEarliestMs) {
        kind = 'report';
        await this.sendFullReport(this.id);
      } else if (this.reportDueMs !== null && nowMs >= this.reportDueMs) {
        kind = 'report';
        await this.sendIncrementalReport(this.id);
      } else if (nowMs >= this.heartbeatDueMs) {
        await this.sendHeartbeat(this.id);
      } else if (this.badReportDueMs() <= nowMs) {
        // Last: one per exchange, so a disk failing with many replicas on it cannot hold back the heartbeats
        // (the leader would declare the server dead) or the reports of new replicas.
        kind = 'report';
        await this.sendBadReport(this.id, nowMs);
      } else {
        return;
      }
    } catch (e) {
      if (e instanceof AgentError) {
        this.fail(e);
        return;
      }
      this.onFailure(kind, e);
      return;
    }
    if (this.failures > 0) this.options.logger.info({ failures: this.failures }, 'metadata leader reachable again');
    this.failures = 0;
    this.lastContactMs = this.options.clock.nowMs();
  }

  private onFailure(kind: MetadataRequestKind, e: unknown): void {
    this.failures++;
    if (this.options.metrics !== undefined) recordHeartbeatFailure(this.options.metrics, kind);
    const exponent = Math.min(this.failures - 1, 30);
    const delayMs = Math.min(this.limits.retryDelayMsMax, this.limits.retryDelayMsMin * 2 ** exponent);
    const jitterMs = this.options.random === undefined ? 0 : this.options.random.int(Math.floor(delayMs / 2) + 1);
    this.retryAtMs = this.options.clock.nowMs() + delayMs - jitterMs;
    const fields = { err: e, request: kind, failures: this.failures, retryInMs: delayMs - jitterMs };
    if (this.failures === 1 || this.failures % failureLogEvery === 0) this.options.logger.warn(fields, 'metadata leader exchange failed; retrying');
    else this.options.logger.debug(fields, 'metadata leader exchange failed; retrying');
  }

  /** A fatal registration error: the agent stops and the owner is told. */
  private fail(error: AgentError): void {
    this.options.logger.error({ err: error }, 'metadata agent stopped');
    this.stopped = true;
    this.clearTimer();
    this.failRegisteredWaiters(error);
    this.options.onFatal?.(error);
  }

  private failRegisteredWaiters(error: unknown): void {
    for (const w of this.registeredWaiters.splice(0)) w.reject(error);
  }

  // ------------------------------------------------------------------------------------------ exchanges

  /**
   * Capacity and use as the leader should see them: the store's, raised to the whole capacity while the disk
   * is full or unhealthy, and to capacity − (free − diskReserveBytes) when free bytes are known (module comment).
   */
  private async usage(): Promise<StoreUsage> {
    try {
      this.lastUsage = await this.options.store.usage();
    } catch (e) {
      this.options.logger.warn({ err: e }, 'store usage unavailable; reporting the last known');
    }
    const capacityBytes = this.lastUsage.capacityBytes;
    let usedBytes = this.lastUsage.usedBytes;
    if (this.options.freeBytes !== undefined) {
      try {
        this.lastFreeBytes = await this.options.freeBytes();
        const roomBytes = Math.max(0, this.lastFreeBytes - this.limits.diskReserveBytes);
        usedBytes = Math.max(usedBytes, capacityBytes - roomBytes);
      } catch (e) {
        this.options.logger.warn({ err: e }, 'free disk space unavailable');
      }
    }
    const disk = this.diskHealth();
    if (disk.full || !disk.healthy) usedBytes = Math.max(usedBytes, capacityBytes);
    if (this.options.metrics !== undefined) setDiskHealth(this.options.metrics, disk.healthy, this.lastFreeBytes);
    return { capacityBytes, usedBytes };
  }

  private async register(): Promise<void> {
    if (this.unsavedId === null) {
      const usage = await this.usage();
      const saved = this.savedId;
      let reply: { readonly id: number };
      try {
        reply = await this.options.link.register({ id: saved ?? 0, address: this.address, rack: this.options.rack, ...usage });
      } catch (e) {
        if (e instanceof MetadataLinkError && e.code === 'ENOENT' && saved !== undefined) {
          throw new AgentError('UNKNOWN_ID', `the metadata cluster does not know chunkserver ${saved} (is the data dir from another cluster? ${e.detail})`);
        }
        if (e instanceof MetadataLinkError && e.code === 'EINVAL') throw new AgentError('REGISTRATION_REFUSED', e.detail);
        throw e;
      }
      assert(Number.isSafeInteger(reply.id) && reply.id >= 1, `registered id ${reply.id}`);
      assert(saved === undefined || reply.id === saved, `registered as ${saved}, answered ${reply.id}`);
      if (saved !== undefined) {
        if (this.options.store.list().length === 0) {
          // Not silent: the leader unlists what it thought was here (the full report lists nothing) and re-replicates.
          this.options.logger.warn(
            { chunkserver: saved },
            'registered with a saved id but the store holds no replicas (an emptied or replaced disk?): the leader re-replicates whatever it listed here',
          );
        }
        this.becomeRegistered(saved);
        return;
      }
      this.unsavedId = reply.id;
    }
    // Saved before use: a restart must come back as this id (a failed save is retried, never re-registered).
    const id = this.unsavedId;
    await this.options.idStore.save(id);
    this.savedId = id;
    this.unsavedId = null;
    this.becomeRegistered(id);
  }

  private becomeRegistered(id: number): void {
    this.id = id;
    this.needFullReport = true;
    this.heartbeatDueMs = this.options.clock.nowMs() + this.limits.heartbeatIntervalMs;
    this.options.logger.info({ chunkserver: id, address: this.address, rack: this.options.rack }, 'registered with the metadata leader');
    for (const w of this.registeredWaiters.splice(0)) w.resolve(id);
  }

  private async sendHeartbeat(id: number): Promise<void> {
    const usage = await this.usage();
    const sentMs = this.options.clock.nowMs();
    const reply = await this.options.link.heartbeat({ id, ...usage });
    // Only after success: a failed heartbeat stays due, so the retry is a heartbeat.
    this.heartbeatDueMs = sentMs + this.limits.heartbeatIntervalMs;
    this.counts.heartbeats++;
    this.handleReply(reply);
  }

  /**
   * Every replica held, reportChunksMax per message: the first message has `full`, each but the last has
   * `fullMore`, so the leader judges what the report lacks only once it has all of it.
   */
  private async sendFullReport(id: number): Promise<void> {
    const replicas = this.options.store.list();
    if (this.options.metrics !== undefined) setReplicasHeld(this.options.metrics, replicas.length);
    // Changes noted up to now are covered by this listing.
    const covered = new Map(this.pending);
    const epoch = this.fullReportEpoch;
    const max = this.limits.reportChunksMax;
    let wanted = false;
    for (let i = 0; i === 0 || i < replicas.length; i += max) {
      const chunks = replicas.slice(i, i + max).map((r) => this.reported(r));
      const fullMore = i + max < replicas.length;
      const reply = await this.options.link.chunkReport({ id, full: i === 0, ...(fullMore ? { fullMore } : {}), chunks, removed: [] });
      wanted = reply.fullReportWanted;
      this.handleReply({ commands: reply.commands, fullReportWanted: false });
    }
    this.counts.fullReports++;
    this.fullReportDueMs = this.options.clock.nowMs() + this.limits.fullReportIntervalMs;
    this.fullReportEarliestMs = this.options.clock.nowMs() + this.limits.reportDelayMs;
    this.needFullReport = wanted || this.fullReportEpoch !== epoch;
    this.settle(covered);
  }

  /** One message of the oldest changes: each reported as the store has it now (held → chunk, else removed). */
  private async sendIncrementalReport(id: number): Promise<void> {
    const batch = new Map<number, number>();
    const chunks: ReportedReplica[] = [];
    const removed: number[] = [];
    for (const [handle, seq] of this.pending) {
      if (batch.size >= this.limits.reportChunksMax) break;
      batch.set(handle, seq);
      const info = this.options.store.info(handle);
      if (info === undefined) removed.push(handle);
      else chunks.push(this.reported(info));
    }
    const reply = await this.options.link.chunkReport({ id, full: false, chunks, removed });
    this.counts.incrementalReports++;
    this.settle(batch);
    this.handleReply(reply);
  }

  /** Forgets changes that were reported, unless they changed again since. */
  private settle(reportedChanges: ReadonlyMap<number, number>): void {
    for (const [handle, seq] of reportedChanges) if (this.pending.get(handle) === seq) this.pending.delete(handle);
    if (this.pending.size === 0) this.reportDueMs = null;
    else if (this.reportDueMs === null) this.reportDueMs = this.options.clock.nowMs() + this.limits.reportDelayMs;
  }

  // ------------------------------------------------------------------------------------------ commands

  private requestFullReport(): void {
    this.needFullReport = true;
    this.fullReportEpoch++;
  }

  private handleReply(reply: CommandsReply): void {
    if (reply.fullReportWanted) this.requestFullReport();
    for (const command of reply.commands) {
      if (command.kind === 'delete') this.enqueueDelete(command.handle, command.version);
      else if (command.kind === 'recover') this.recover(command);
      else this.enqueueCopy(command);
    }
  }

  private enqueueDelete(handle: number, version: number): void {
    if (this.deleteQueue.some((d) => d.handle === handle && d.version >= version)) return;
    if (this.deleteQueue.length >= this.limits.deletesQueuedMax) {
      this.options.logger.warn({ handle, version }, 'delete queue full: order dropped (the leader orders it again)');
      return;
    }
    this.deleteQueue.push({ handle, version });
    this.deleting ??= this.runDeletes().finally(() => {
      this.deleting = null;
    });
  }

  /** Deletes one at a time (they are cheap; a burst of garbage must not flood the disk). */
  private async runDeletes(): Promise<void> {
    for (let d = this.deleteQueue.shift(); d !== undefined && !this.stopped; d = this.deleteQueue.shift()) {
      try {
        const removed = await this.options.store.delete(d.handle, d.version);
        if (removed) {
          this.verifiedLengths.delete(d.handle);
          this.counts.deletes++;
          this.options.logger.info({ handle: d.handle, versionAtMost: d.version }, 'replica deleted on the leader\'s order');
          this.note(d.handle);
        }
      } catch (e) {
        this.options.logger.warn({ err: e, handle: d.handle }, 'delete ordered by the leader failed');
      }
    }
  }

  /** A lease recovery command (see AgentCommand), queued; the report after it is the answer. */
  private recover(command: { readonly handle: number; readonly version: number; readonly lengthBytes?: number | undefined }): void {
    const { handle, version, lengthBytes } = command;
    if (this.sealQueue.some((q) => q.handle === handle && q.lengthBytes === lengthBytes)) return;
    if (this.sealQueue.length >= this.limits.recoveriesQueuedMax) {
      this.options.logger.warn({ handle, version }, 'lease recovery queue full: order dropped (the leader orders it again)');
      return;
    }
    this.sealQueue.push({ handle, version, lengthBytes });
    this.sealing ??= this.runRecoverySeals().finally(() => {
      this.sealing = null;
    });
  }

  private async runRecoverySeals(): Promise<void> {
    const store = this.options.store;
    for (let q = this.sealQueue.shift(); q !== undefined && !this.stopped; q = this.sealQueue.shift()) {
      const info = store.info(q.handle);
      const fields = { handle: q.handle, version: q.version, lengthBytes: q.lengthBytes, held: info === undefined ? null : { version: info.version, lengthBytes: info.lengthBytes, sealed: info.sealed } };
      try {
        if (q.lengthBytes === undefined) {
          if (info !== undefined && !info.sealed) await this.verifyUnsealed(q.handle, info.version, info.lengthBytes);
        } else if (info?.sealed === true && info.version === q.version && info.lengthBytes === q.lengthBytes) {
          // Sealed at it already (an earlier order, or the writer's own seal): the report says so.
        } else if (info === undefined || info.sealed || info.version > q.version || info.lengthBytes < q.lengthBytes) {
          // Not ours to seal at that length: the report of what we hold tells the leader.
          this.options.logger.warn(fields, 'lease recovery: replica cannot be sealed at the agreed length');
        } else {
          const lengthBytes = q.lengthBytes;
          if (info.version < q.version) await store.bumpVersion(q.handle, info.version, q.version, lengthBytes);
          await store.seal(q.handle, q.version, lengthBytes);
          this.options.logger.info(fields, 'lease recovery: replica sealed at the agreed length');
        }
      } catch (e) {
        this.options.logger.warn({ ...fields, err: e }, 'lease recovery: seal failed');
        this.noteDiskError('seal', q.handle, e);
      }
      this.note(q.handle);
    }
  }

  /** A replica as reported: an unsealed one found corrupt by a recovery query, only up to its bad block. */
  private reported(r: ReplicaInfo): ReportedReplica {
    if (r.sealed) this.verifiedLengths.delete(r.handle);
    return reported(r, this.verifiedLengths.get(r.handle));
  }

  /**
   * A lease recovery query: the unsealed replica's bytes are verified block by block before its length is
   * reported. Past the first bad block nothing was acknowledged (the chain's last replica checks every packet's
   * CRCs before its ack), but a writer that vanished never cut it back: the replica is reported only up to
   * that block (and a seal ordered there cuts it), so recovery never agrees on a length that takes in corrupt
   * bytes.
   */
  private async verifyUnsealed(handle: number, version: number, lengthBytes: number): Promise<void> {
    this.verifiedLengths.delete(handle);
    for (let offset = 0; offset < lengthBytes; offset += checksumBlockBytes) {
      try {
        await this.options.store.read(handle, version, offset, Math.min(checksumBlockBytes, lengthBytes - offset));
      } catch (e) {
        if (!(e instanceof ChunkStoreError && e.code === 'CHECKSUM_MISMATCH')) throw e;
        this.options.logger.warn({ handle, version, lengthBytes, badBlockOffset: offset }, 'lease recovery: unsealed replica corrupt from this block on (never acknowledged): reported only up to it');
        if (this.verifiedLengths.size < this.limits.pendingChangesMax) this.verifiedLengths.set(handle, offset);
        return;
      }
    }
  }

  private enqueueCopy(order: CopyOrder): void {
    const key = copyKey(order);
    if (this.copiesRunning.has(key) || this.copyQueue.some((c) => copyKey(c) === key)) return;
    if (!this.holds(order)) return;
    if (this.copyQueue.length >= this.limits.replicationsQueuedMax) {
      this.options.logger.warn({ handle: order.handle, target: order.target }, 'copy queue full: order dropped (the leader orders it again)');
      if (this.options.metrics !== undefined) recordReReplication(this.options.metrics, 'skipped');
      return;
    }
    this.copyQueue.push(order);
    this.startCopies();
  }

  private startCopies(): void {
    while (!this.stopped && this.copiesRunning.size < this.limits.replicationsInflightMax) {
      const order = this.copyQueue.shift();
      if (order === undefined) return;
      const key = copyKey(order);
      const run = this.copy(order).finally(() => {
        this.copiesRunning.delete(key);
        this.startCopies();
      });
      this.copiesRunning.set(key, run);
    }
  }

  /** Whether the replica to copy is held at the ordered version (checked when ordered and again when started). */
  private holds(order: CopyOrder): boolean {
    const held = this.options.store.info(order.handle)?.version;
    if (held === order.version) return true;
    this.options.logger.warn({ handle: order.handle, version: order.version, held: held ?? null }, 'copy ordered for a replica not held at that version: skipped');
    if (this.options.metrics !== undefined) recordReReplication(this.options.metrics, 'skipped');
    this.note(order.handle); // tell the leader what we do hold
    return false;
  }

  /** One copy; never rejects. A copy that fails is ordered again by the leader after its replication timeout. */
  private async copy(order: CopyOrder): Promise<void> {
    const log = this.options.logger;
    if (!this.holds(order)) return;
    try {
      await this.options.copyReplica({ handle: order.handle, version: order.version, targetId: order.target, targetAddress: order.targetAddress, signal: this.abort.signal });
      this.counts.copiesDone++;
      if (this.options.metrics !== undefined) recordReReplication(this.options.metrics, 'ok');
      log.info({ handle: order.handle, version: order.version, target: order.target }, 'replica copied on the leader\'s order');
    } catch (e) {
      this.counts.copiesFailed++;
      if (this.options.metrics !== undefined) recordReReplication(this.options.metrics, 'failed');
      if (this.stopped) return;
      if (e instanceof ChunkStoreError && e.code === 'CHECKSUM_MISMATCH') {
        await this.reportCorrupt(order.handle);
        return;
      }
      // Reading our replica for the copy failed: the same judgement as a client's read.
      if (e instanceof ChunkStoreError && e.code === 'IO_ERROR') this.noteDiskError('read', order.handle, e);
      log.warn({ err: e, handle: order.handle, target: order.target }, 'copy ordered by the leader failed');
    }
  }
}

function reported(r: ReplicaInfo, verifiedLengthBytes: number | undefined): ReportedReplica {
  const base = { handle: r.handle, version: r.version, lengthBytes: r.lengthBytes, sealed: r.sealed };
  if (r.sealed) return r.checksum !== undefined ? { ...base, checksum: r.checksum } : base;
  return verifiedLengthBytes !== undefined && verifiedLengthBytes < r.lengthBytes ? { ...base, lengthBytes: verifiedLengthBytes } : base;
}

function copyKey(c: CopyOrder): string {
  return `${c.handle}/${c.version}/${c.target}`;
}

/** Whether a store can tell the free bytes on its disk (FileChunkStore can; in-memory test stores cannot). */
export function hasFreeBytes(store: ChunkStore): store is ChunkStore & { freeBytes(): Promise<number> } {
  return typeof (store as { freeBytes?: unknown }).freeBytes === 'function';
}
