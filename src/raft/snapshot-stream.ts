/**
 * Streamed snapshots between durable state machines (config.snapshotStreaming): the leader's driver reads a
 * point-in-time stream of its state machine and sends it in bounded chunks with a window of
 * `snapshotChunksInflightMax` unacknowledged chunks; the follower's driver feeds the chunks, in order, into
 * its state machine's installSnapshot() as they arrive and acknowledges each one once the state machine has
 * taken it. Neither side ever holds more than the window (plus one chunk of the source) in memory.
 *
 * Wire format (the core's 'snap' / 'snapResp' messages, marked with `snapshotStreamContext`):
 *   snap:     index = transfer attempt id (unique per leader and term), snapshot = { metadata, offset (bytes),
 *             totalBytes: 0 on every chunk but the last, which carries the stream's total, data }
 *   snapResp: commit = attempt id, rejectHint = metadata.index, index = bytes taken by the state machine
 *             (accept) or bytes received, from where the leader must resend (reject: a gap); logTerm = 1
 *             with reject at 0 when the follower does not know the attempt (it restarted or gave it up, or
 *             the chunk overtook the first one). A reject below what was acknowledged is stale and ignored.
 * Liveness: the leader abandons a transfer after `stallMs` without any answer for the attempt other than
 * "unknown" (a slow follower still answers resends with its position), the follower after `stallMs`
 * without a chunk or the state machine taking one.
 * The follower tells the leader the transfer is complete with an ordinary appResp from its core, once the
 * state machine installed the state and the core took its metadata (Raft.installStreamedSnapshot).
 *
 * Pure: no timers and no clock of its own; the driver calls onTick() with its clock's time.
 */
import type { Message, NodeId, SnapshotMetadata } from './types.ts';

/** Marks 'snap' and 'snapResp' messages of a streamed transfer ("stream"). */
export const snapshotStreamContext = new Uint8Array([0x73, 0x74, 0x72, 0x65, 0x61, 0x6d]);

export interface SnapshotStreamLimits {
  /** Bytes of snapshot data per message, at most (config.snapshotChunkBytes). */
  readonly chunkBytes: number;
  /** Chunks sent and not yet acknowledged, per follower, at most. */
  readonly chunksInflightMax: number;
  /**
   * Without a new acknowledgement for this long, the leader resends its window, in ms; the wait doubles with
   * every resend that brings no acknowledgement (a follower may just be slow to take chunks), up to stallMs/2.
   */
  readonly resendMs: number;
  /** Without progress for this long, a transfer is abandoned (leader) or aborted (follower), in ms. */
  readonly stallMs: number;
}

/** snapResp.logTerm of a follower's "I do not know this attempt" answer. */
const unknownAttemptMark = 1;

export class SnapshotTransferAborted extends Error {
  readonly code = 'ESNAPABORTED';
  constructor(reason: string) {
    super(`snapshot transfer aborted: ${reason}`);
    this.name = 'SnapshotTransferAborted';
  }
}

export function isStreamedSnapshotMessage(m: Message): boolean {
  const c = m.context;
  if ((m.type !== 'snap' && m.type !== 'snapResp') || c === null || c.byteLength !== snapshotStreamContext.byteLength) return false;
  for (let i = 0; i < c.byteLength; i++) if (c[i] !== snapshotStreamContext[i]) return false;
  return true;
}

function message(partial: Partial<Message> & Pick<Message, 'type' | 'from' | 'to' | 'term'>): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: snapshotStreamContext,
    snapshot: null,
    ...partial,
  };
}

interface Piece {
  readonly offset: number;
  readonly data: Uint8Array;
}

export interface SenderEnv {
  readonly from: NodeId;
  send(m: Message): void;
  /** The transfer is abandoned (already closed): the driver tells the core. */
  onFailure(reason: string): void;
}

export interface SnapshotSenderStats {
  chunksSent: number;
  bytesSent: number;
  resends: number;
}

/** Leader side: one transfer of one point-in-time stream to one follower. */
export class SnapshotSender {
  /** Pieces read and not yet acknowledged, in offset order; pieces[0..sent) have been sent. */
  private pieces: Piece[] = [];
  private sent = 0;
  private acked = 0;
  private readOffset = 0;
  private sourceDone = false;
  /** The stream's last piece, kept once sent: resent as a keepalive while the follower installs. */
  private lastPiece: Piece | null = null;
  private reading = false;
  private closed = false;
  private lastAckMs: number;
  /** When the follower last answered for this attempt (anything but "unknown attempt"). */
  private lastHeardMs: number;
  private lastResendMs: number;
  /** The current wait before a resend: resendMs, doubled per fruitless resend, reset by an acknowledgement. */
  private resendWaitMs: number;
  readonly stats: SnapshotSenderStats = { chunksSent: 0, bytesSent: 0, resends: 0 };

  constructor(
    readonly to: NodeId,
    readonly term: number,
    readonly attempt: number,
    readonly metadata: SnapshotMetadata,
    private readonly source: AsyncIterator<Uint8Array>,
    private readonly limits: SnapshotStreamLimits,
    private readonly env: SenderEnv,
    nowMs: number,
  ) {
    this.lastAckMs = nowMs;
    this.lastHeardMs = nowMs;
    this.lastResendMs = nowMs;
    this.resendWaitMs = limits.resendMs;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes acknowledged by the follower so far. */
  get ackedBytes(): number {
    return this.acked;
  }

  start(): void {
    this.pump();
  }

  /** A streamed snapResp from the follower (term already checked by the driver). */
  onResponse(m: Message, nowMs: number): void {
    if (this.closed || m.commit !== this.attempt || m.rejectHint !== this.metadata.index) return;
    const unknownAttempt = m.reject && m.logTerm === unknownAttemptMark;
    if (!unknownAttempt) this.lastHeardMs = nowMs;
    if (m.reject) {
      // Resend from the follower's position. One below the acknowledged bytes is stale (reordered, or sent
      // before the follower started this transfer): ignored. A follower that really lost the transfer (it
      // restarted, or its install failed) stops acknowledging, and the stall timeout starts over.
      const i = this.pieces.findIndex((p) => p.offset === m.index);
      if (m.index < this.acked || i < 0 || i > this.sent) return;
      this.sent = i;
      this.pump();
      return;
    }
    if (m.index <= this.acked) return;
    let dropped = 0;
    while (dropped < this.pieces.length && dropped < this.sent) {
      const p = this.pieces[dropped]!;
      if (p.offset + p.data.byteLength > m.index) break;
      dropped++;
    }
    if (dropped === 0) return;
    const last = this.pieces[dropped - 1]!;
    this.acked = last.offset + last.data.byteLength;
    this.pieces = this.pieces.slice(dropped);
    this.sent -= dropped;
    this.lastAckMs = nowMs;
    this.resendWaitMs = this.limits.resendMs;
    this.pump();
  }

  /** Resends an unacknowledged window after `resendMs` (backing off); gives up after `stallMs` without progress. */
  onTick(nowMs: number): void {
    if (this.closed) return;
    if (nowMs - this.lastHeardMs >= this.limits.stallMs) {
      this.fail(`no answer for ${nowMs - this.lastHeardMs} ms`);
      return;
    }
    if (nowMs - Math.max(this.lastAckMs, this.lastResendMs) < this.resendWaitMs) return;
    if (this.sent > 0) {
      this.lastResendMs = nowMs;
      this.backOff();
      this.stats.resends++;
      this.sent = 0;
      this.pump();
    } else if (this.pieces.length === 0 && this.lastPiece !== null) {
      // Everything acknowledged; the follower is installing. Its answer to the last piece again says it
      // still is (or, once it holds the snapshot, its core answers with its commit index, which ends the
      // transfer even if its first answer was lost); a follower that restarted answers "unknown attempt".
      this.lastResendMs = nowMs;
      this.backOff();
      this.sendPiece(this.lastPiece, true);
    }
  }

  /** Doubles the wait before the next resend, up to half the stall time (so a live follower is heard in time). */
  private backOff(): void {
    this.resendWaitMs = Math.max(this.limits.resendMs, Math.min(2 * this.resendWaitMs, this.limits.stallMs / 2));
  }

  /** Stops the transfer and releases the source (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pieces = [];
    this.lastPiece = null;
    const r = this.source.return?.();
    if (r !== undefined) r.catch(() => undefined);
  }

  private fail(reason: string): void {
    if (this.closed) return;
    this.close();
    this.env.onFailure(reason);
  }

  private pump(): void {
    if (this.closed) return;
    while (this.sent < this.pieces.length && this.sent < this.limits.chunksInflightMax) {
      const last = this.sent === this.pieces.length - 1;
      // The newest piece may be the stream's last: it waits until the source says whether it is.
      if (last && !this.sourceDone) break;
      this.sendPiece(this.pieces[this.sent]!, last);
      this.sent++;
    }
    const unsent = this.pieces.length - this.sent;
    if (!this.sourceDone && !this.reading && unsent <= 1 && this.sent < this.limits.chunksInflightMax) this.read();
  }

  private sendPiece(p: Piece, last: boolean): void {
    if (last) this.lastPiece = p;
    this.stats.chunksSent++;
    this.stats.bytesSent += p.data.byteLength;
    this.env.send(
      message({
        type: 'snap',
        from: this.env.from,
        to: this.to,
        term: this.term,
        index: this.attempt,
        snapshot: {
          metadata: this.metadata,
          offset: p.offset,
          totalBytes: last ? p.offset + p.data.byteLength : 0,
          data: p.data,
        },
      }),
    );
  }

  private read(): void {
    this.reading = true;
    this.source.next().then(
      (r) => {
        this.reading = false;
        if (this.closed) return;
        if (r.done === true) {
          this.sourceDone = true;
          // An empty stream still needs one (empty, last) chunk to complete the transfer.
          if (this.readOffset === 0) this.pieces.push({ offset: 0, data: new Uint8Array(0) });
        } else {
          const chunk = r.value;
          for (let at = 0; at < chunk.byteLength; at += this.limits.chunkBytes) {
            const data = chunk.subarray(at, Math.min(chunk.byteLength, at + this.limits.chunkBytes));
            this.pieces.push({ offset: this.readOffset, data });
            this.readOffset += data.byteLength;
          }
        }
        this.pump();
      },
      (error: unknown) => {
        this.reading = false;
        this.fail(`reading the state machine's snapshot failed: ${error instanceof Error ? error.message : String(error)}`);
      },
    );
  }
}

/**
 * An async iterable fed by messages: chunks are pushed as they arrive and taken by the state machine; taking
 * one calls `onTake` (the follower acknowledges it then). `fail` makes the consumer's next read throw.
 */
export class ChunkQueue implements AsyncIterable<Uint8Array> {
  private readonly items: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly onTake: (bytes: number) => void) {}

  push(chunk: Uint8Array): void {
    this.items.push(chunk);
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(error: Error): void {
    this.error ??= error;
    this.items.length = 0;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.error !== null) throw this.error;
      const next = this.items.shift();
      if (next !== undefined) {
        this.onTake(next.byteLength);
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** One transfer being received. */
export interface IncomingSnapshot {
  readonly from: NodeId;
  readonly term: number;
  readonly attempt: number;
  readonly metadata: SnapshotMetadata;
  readonly chunks: ChunkQueue;
  /** Bytes received in order; bytes taken by the state machine. */
  received: number;
  taken: number;
  complete: boolean;
  /** When a chunk last arrived in order or was taken by the state machine: a slow consumer is progress too. */
  lastProgressMs: number;
}

export interface ReceiverEnv {
  readonly id: NodeId;
  send(m: Message): void;
  /** A new transfer begins: the driver starts the state machine's installSnapshot() on `incoming.chunks`. */
  begin(incoming: IncomingSnapshot): void;
}

export interface SnapshotReceiverStats {
  transfersStarted: number;
  transfersAborted: number;
  duplicateChunks: number;
  gapChunks: number;
}

/** Follower side: at most one transfer at a time; a newer one (offset 0, another attempt) supersedes it. */
export class SnapshotReceiver {
  private current: IncomingSnapshot | null = null;
  /** The latest time seen (onChunk, onTick): takes happen between them. */
  private nowMs = 0;
  readonly stats: SnapshotReceiverStats = { transfersStarted: 0, transfersAborted: 0, duplicateChunks: 0, gapChunks: 0 };

  constructor(
    private readonly env: ReceiverEnv,
    private readonly stallMs: number,
  ) {}

  get active(): IncomingSnapshot | null {
    return this.current;
  }

  /** A streamed chunk the core accepted from the current leader (a snapshot newer than our commit). */
  onChunk(m: Message, nowMs: number): void {
    this.nowMs = nowMs;
    const c = m.snapshot;
    if (c === null) return;
    let t = this.current;
    const same =
      t !== null && t.from === m.from && t.term === m.term && t.attempt === m.index &&
      t.metadata.index === c.metadata.index && t.metadata.term === c.metadata.term;
    if (!same) {
      if (c.offset !== 0) {
        // A transfer we do not know (we restarted, or aborted it): the leader must start over.
        this.reply(m.from, m.term, m.index, c.metadata.index, 0, true, unknownAttemptMark);
        return;
      }
      this.abort('superseded by a new transfer');
      t = {
        from: m.from, term: m.term, attempt: m.index, metadata: c.metadata, received: 0, taken: 0, complete: false,
        lastProgressMs: nowMs, chunks: new ChunkQueue((bytes) => this.taken(t!, bytes)),
      };
      this.current = t;
      this.stats.transfersStarted++;
      this.env.begin(t);
    }
    t = t!;
    // Any chunk of the transfer shows the leader is still at it (a resend while our state machine is slow).
    t.lastProgressMs = nowMs;
    if (c.offset < t.received || t.complete) {
      this.stats.duplicateChunks++;
      this.reply(t.from, t.term, t.attempt, t.metadata.index, t.taken, false);
      return;
    }
    if (c.offset > t.received) {
      this.stats.gapChunks++;
      this.reply(t.from, t.term, t.attempt, t.metadata.index, t.received, true);
      return;
    }
    t.received += c.data.byteLength;
    if (c.data.byteLength > 0) t.chunks.push(c.data);
    if (c.totalBytes !== 0 || (c.offset === 0 && c.data.byteLength === 0)) {
      if (c.totalBytes !== t.received) {
        this.abort(`the last chunk says ${c.totalBytes} bytes, ${t.received} arrived`);
        return;
      }
      t.complete = true;
      t.chunks.end();
    }
  }

  /** Aborts a transfer that made no progress for `stallMs` (a complete one is being installed: it stays). */
  onTick(nowMs: number): void {
    this.nowMs = nowMs;
    const t = this.current;
    if (t !== null && !t.complete && nowMs - t.lastProgressMs >= this.stallMs) this.abort(`no progress for ${nowMs - t.lastProgressMs} ms`);
  }

  /** Aborts the current transfer, if any: the state machine's install fails and keeps the old state. */
  abort(reason: string): void {
    const t = this.current;
    if (t === null) return;
    this.current = null;
    this.stats.transfersAborted++;
    t.chunks.fail(new SnapshotTransferAborted(reason));
  }

  /** The transfer ended (installed, or failed in the state machine): forget it. */
  finished(t: IncomingSnapshot, failed: boolean): void {
    if (this.current !== t) return;
    this.current = null;
    // Tell the leader to start over rather than wait for its stall timeout.
    if (failed) this.reply(t.from, t.term, t.attempt, t.metadata.index, 0, true);
  }

  private taken(t: IncomingSnapshot, bytes: number): void {
    t.taken += bytes;
    t.lastProgressMs = Math.max(t.lastProgressMs, this.nowMs);
    if (this.current === t) this.reply(t.from, t.term, t.attempt, t.metadata.index, t.taken, false);
  }

  private reply(to: NodeId, term: number, attempt: number, snapshotIndex: number, index: number, reject: boolean, logTerm = 0): void {
    this.env.send(message({ type: 'snapResp', from: this.env.id, to, term, logTerm, commit: attempt, rejectHint: snapshotIndex, index, reject }));
  }
}
