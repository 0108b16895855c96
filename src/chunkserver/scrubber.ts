/**
 * The background scrubber: re-reads replicas, least recently verified first, at a bounded rate, so bit
 * rot in cold chunks is found before a client needs the bytes. A bad replica (CHECKSUM_MISMATCH) is
 * reported once per replica version through `onCorrupt`; the agent tells the metadata leader, which
 * re-replicates from a good copy and deletes this one.
 *
 * An I/O error is not a verdict on the bytes: it goes to `onCorrupt` too (the agent counts it and
 * re-verifies the replica, deleting it only if the error persists), but the replica stays on the scrubber's
 * rounds, due again `ioErrorRetryMs` later. (Marking it reported instead, as once done, exempted a replica
 * that then verified from scrubbing for as long as it kept its version: a bit flipped in it afterwards was
 * never found. Simulator seed 30240 of the data workload.)
 *
 * Reads go through `ChunkStore.read`, which verifies every block it touches, one slice at a time; between
 * slices the scrubber waits on the injected clock so that, from its start, bytes read by time t never
 * exceed `scrubBytesPerSecond * t + sliceBytes`. A replica being written (unsealed, by default) is never
 * scrubbed: its tail changes under the reader and the write path verifies it anyway.
 *
 * Time comes only from the injected `Clock` (src/raft/node-api.ts), so the simulator drives it.
 */
import type { Logger } from 'pino';
import { assert } from '../raft/errors.ts';
import type { Clock, TimerHandle } from '../raft/node-api.ts';
import type { ChunkStore, ReplicaInfo } from './types.ts';
import { ChunkStoreError, checksumBlockBytes } from './types.ts';

/** Bytes per scrub read (a whole number of checksum blocks). */
export const scrubSliceBytesDefault = 1024 * 1024;
/** A replica verified more recently than this is not scrubbed again. */
export const scrubRescanIntervalMsDefault = 14 * 24 * 3600 * 1000;
/** Longest wait before looking again for work when nothing is due. */
export const scrubIdleMsMax = 60 * 1000;
/** A replica whose scrub read failed IO_ERROR is scrubbed again this long after (at most the rescan interval). */
export const scrubIoErrorRetryMsDefault = 10 * 60 * 1000;

export interface ScrubberOptions {
  readonly scrubBytesPerSecond: number;
  readonly sliceBytes?: number;
  readonly rescanIntervalMs?: number;
  /** After a scrub read failed IO_ERROR, the replica is due again this long after; default scrubIoErrorRetryMsDefault, at most rescanIntervalMs. */
  readonly ioErrorRetryMs?: number;
  /** Longest wait before looking again for work when nothing is due; default scrubIdleMsMax. */
  readonly idleMsMax?: number;
  /** Whether a replica is being written (never scrubbed then). Default: unsealed. */
  readonly isBeingWritten?: (replica: ReplicaInfo) => boolean;
  /** A replica that failed verification (CHECKSUM_MISMATCH) or could not be read (IO_ERROR). */
  readonly onCorrupt: (replica: ReplicaInfo, error: ChunkStoreError) => void;
  readonly logger?: Logger;
}

export interface ScrubberStats {
  bytesVerified: number;
  replicasVerified: number;
  corruptReported: number;
  /** Scrubs cut short by an I/O error (the replica stays on the rounds). */
  ioErrors: number;
}

/** What the scrubber knows of a handle: at which version, and when it is due to be scrubbed again. */
interface Seen {
  version: number;
  dueMs: number;
}

export class Scrubber {
  readonly stats: ScrubberStats = { bytesVerified: 0, replicasVerified: 0, corruptReported: 0, ioErrors: 0 };
  private readonly sliceBytes: number;
  private readonly rescanIntervalMs: number;
  private readonly ioErrorRetryMs: number;
  private readonly isBeingWritten: (replica: ReplicaInfo) => boolean;
  /** When each handle is due again (after a verification or an I/O error), at the version then seen. */
  private readonly seen = new Map<number, Seen>();
  /** Replicas reported bad, by handle: the version reported. Not scrubbed or reported again at that version. */
  private readonly reported = new Map<number, number>();
  /** Earliest clock time the next slice may be read (the rate bound). */
  private nextReadMs: number | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private pending: { handle: TimerHandle; wake: () => void } | undefined;

  constructor(
    private readonly store: ChunkStore,
    private readonly clock: Clock,
    private readonly options: ScrubberOptions,
  ) {
    this.sliceBytes = options.sliceBytes ?? scrubSliceBytesDefault;
    this.rescanIntervalMs = options.rescanIntervalMs ?? scrubRescanIntervalMsDefault;
    this.ioErrorRetryMs = Math.min(options.ioErrorRetryMs ?? scrubIoErrorRetryMsDefault, this.rescanIntervalMs);
    this.isBeingWritten = options.isBeingWritten ?? ((replica) => !replica.sealed);
    assert(options.scrubBytesPerSecond > 0, 'scrubBytesPerSecond > 0');
    assert(this.sliceBytes > 0 && this.sliceBytes % checksumBlockBytes === 0, 'sliceBytes is a whole number of blocks');
    assert(this.rescanIntervalMs >= 0, 'rescanIntervalMs >= 0');
    assert(this.ioErrorRetryMs >= 0, 'ioErrorRetryMs >= 0');
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run().catch((error: unknown) => {
      this.options.logger?.error({ error: String(error) }, 'scrubber stopped on an unexpected error');
      this.running = false;
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    const pending = this.pending;
    if (pending !== undefined) {
      this.clock.clearTimer(pending.handle);
      pending.wake();
    }
    await this.loop;
  }

  /**
   * The next replica to scrub: due, not being written, not reported bad; never-scrubbed ones first, then
   * the one due longest (least recently verified, as every verification makes a replica due the same
   * interval later).
   */
  pickNext(): ReplicaInfo | undefined {
    const now = this.clock.nowMs();
    let best: { replica: ReplicaInfo; dueMs: number } | undefined;
    for (const replica of this.store.list()) {
      if (this.reported.get(replica.handle) === replica.version || this.isBeingWritten(replica)) continue;
      const seen = this.seen.get(replica.handle);
      const dueMs = seen !== undefined && seen.version === replica.version ? seen.dueMs : -Infinity;
      if (dueMs > now) continue;
      if (best === undefined || dueMs < best.dueMs) best = { replica, dueMs };
    }
    return best?.replica;
  }

  /**
   * A replica of `handle` was created anew or removed: its verification history no longer applies (a copy
   * re-created at a version once reported bad must be scrubbed like any other).
   */
  forget(handle: number): void {
    this.seen.delete(handle);
    this.reported.delete(handle);
  }

  private async run(): Promise<void> {
    while (this.running) {
      const next = this.pickNext();
      if (next === undefined) {
        this.forgetDeleted();
        await this.sleep(this.idleMs());
        continue;
      }
      await this.scrubOne(next);
    }
  }

  private forgetDeleted(): void {
    for (const handle of [...this.seen.keys()]) if (this.store.info(handle) === undefined) this.seen.delete(handle);
    for (const handle of [...this.reported.keys()]) if (this.store.info(handle) === undefined) this.reported.delete(handle);
  }

  /** Until the earliest known replica is due again, at most scrubIdleMsMax. */
  private idleMs(): number {
    const now = this.clock.nowMs();
    let waitMs = this.options.idleMsMax ?? scrubIdleMsMax;
    for (const seen of this.seen.values()) waitMs = Math.min(waitMs, Math.max(1, seen.dueMs - now));
    return waitMs;
  }

  private async scrubOne(replica: ReplicaInfo): Promise<void> {
    const { handle, version } = replica;
    for (let offset = 0; offset < replica.lengthBytes; offset += this.sliceBytes) {
      await this.waitForRate();
      if (!this.running) return;
      const current = this.store.info(handle);
      // Changed since picked (deleted, re-versioned, reopened for writing): drop it, pickNext sees it anew.
      if (current === undefined || current.version !== version || this.isBeingWritten(current)) return;
      const length = Math.min(this.sliceBytes, replica.lengthBytes - offset);
      try {
        await this.store.read(handle, version, offset, length);
      } catch (error) {
        if (!(error instanceof ChunkStoreError)) throw error;
        if (error.code === 'CHECKSUM_MISMATCH') {
          this.report(current, error);
          return;
        }
        if (error.code === 'IO_ERROR') {
          this.ioError(current, error);
          return;
        }
        return; // NO_SUCH_REPLICA, STALE_VERSION, BAD_OFFSET: it changed under us.
      } finally {
        this.charge(length);
      }
      this.stats.bytesVerified += length;
    }
    this.seen.set(handle, { version, dueMs: this.clock.nowMs() + this.rescanIntervalMs });
    this.stats.replicasVerified++;
  }

  /** A scrub read failed IO_ERROR: the agent hears of it; the replica is due again ioErrorRetryMs later. */
  private ioError(replica: ReplicaInfo, error: ChunkStoreError): void {
    this.seen.set(replica.handle, { version: replica.version, dueMs: this.clock.nowMs() + this.ioErrorRetryMs });
    this.stats.ioErrors++;
    this.options.logger?.warn({ handle: replica.handle, version: replica.version, error: error.message }, 'scrubber: I/O error reading a replica; scrubbing it again later');
    this.tell(replica, error);
  }

  private report(replica: ReplicaInfo, error: ChunkStoreError): void {
    this.reported.set(replica.handle, replica.version);
    this.stats.corruptReported++;
    this.options.logger?.error({ handle: replica.handle, version: replica.version, error: error.message }, 'scrubber: bad replica');
    this.tell(replica, error);
  }

  private tell(replica: ReplicaInfo, error: ChunkStoreError): void {
    try {
      this.options.onCorrupt(replica, error);
    } catch (callbackError) {
      // The report is the caller's; its failure must not stop scrubbing.
      this.options.logger?.error({ handle: replica.handle, error: String(callbackError) }, 'scrubber: onCorrupt threw');
    }
  }

  private async waitForRate(): Promise<void> {
    const now = this.clock.nowMs();
    this.nextReadMs ??= now;
    if (this.nextReadMs > now) await this.sleep(this.nextReadMs - now);
  }

  /** Spends `bytes` of the budget: the next read waits bytes / rate after this one's turn. */
  private charge(bytes: number): void {
    const turnMs = Math.max(this.nextReadMs ?? 0, this.clock.nowMs());
    this.nextReadMs = turnMs + (bytes * 1000) / this.options.scrubBytesPerSecond;
  }

  private sleep(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.pending = undefined;
        resolve();
      };
      this.pending = { handle: this.clock.setTimer(ms, wake), wake };
    });
  }
}
