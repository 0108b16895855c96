/**
 * `PipelineWriter`: the client end of a write pipeline (protocol.ts). It streams one chunk to the first
 * replica of a chain in packets, keeps at most inflightPacketsMax unacknowledged packets (so `write`
 * waits while the slowest replica is behind), and counts as written only what came back acknowledged,
 * which means every replica holds it.
 *
 * Buffers: `write(data)` sends views of `data`, never copies; the caller must not modify `data` until it is
 * acknowledged (`ackedLengthBytes` covers it, `flush()` resolved) or the writer failed.
 *
 * Failure: the first failure (a replica's typed error, a lost connection, a protocol error) ends the
 * writer; every pending and later call rejects with the same `PipelineFailedError`, which names the first
 * failing replica (`failedIndex` in the chain, `failedId`) and the bytes acknowledged by every replica
 * (`ackedLengthBytes`; nothing past it may be assumed written). The caller then obtains a new version
 * from the metadata leader and resumes with the survivors from `ackedLengthBytes` (mode `resume`).
 */
import assert from 'node:assert/strict';
import { checksumBlockBytes, chunkSizeBytesMax } from '../types.ts';
import { gridCrcs, gridPieceCount } from '../block-crcs.ts';
import type { Compression } from '../types.ts';
import type { DataConnection, Dialer } from './connection.ts';
import type { DataPlaneErrorCode } from './errors.ts';
import { DataPlaneError, toDataPlaneError } from './errors.ts';
import type { DataPlaneLimits } from './limits.ts';
import { packetBytesMin, resolveLimits } from './limits.ts';
import type { ChainLink, Message, ReplicaAck } from './protocol.ts';
import type { StallWatch } from './stall.ts';
import { KeepaliveTimer, StallTimer } from './stall.ts';

export class PipelineFailedError extends DataPlaneError {
  constructor(
    code: DataPlaneErrorCode,
    detail: string,
    /** Position in the chain of the first replica that failed. */
    readonly failedIndex: number,
    readonly failedId: number,
    /** Bytes of this writer acknowledged by every replica. */
    readonly ackedBytes: number,
    /** The replicas' common acknowledged length: the writer's start offset plus `ackedBytes`. */
    readonly ackedLengthBytes: number,
  ) {
    super(code, `replica ${failedId} (chain position ${failedIndex}): ${detail}`);
    this.name = 'PipelineFailedError';
  }
}

export interface SealedReplica {
  readonly id: number;
  readonly lengthBytes: number;
  readonly checksum: number;
}

export interface PipelineWriterOptions {
  readonly handle: number;
  readonly version: number;
  /** The replicas in pipeline order; the writer dials the first. */
  readonly chain: readonly ChainLink[];
  /** `create` a new replica, or `resume` after a version bump (then `fromVersion` and `offset` are set). */
  readonly mode?: 'create' | 'resume';
  readonly fromVersion?: number;
  readonly offset?: number;
  /** `lz4`: the replicas store the chunk compressed (sent in the setup; the bytes sent stay logical). */
  readonly compression?: Compression;
  /** Payload bytes per packet (packetBytesMin..packetBytesMax); default 1 MiB (defaultPacketBytes). */
  readonly packetBytes?: number;
  readonly limits?: Partial<DataPlaneLimits>;
  /** Called after each acknowledgement with the new acknowledged length (tests, progress). */
  readonly onAck?: (ackedLengthBytes: number) => void;
  /**
   * Fails the pipeline with TIMEOUT (naming the first replica) when an owed setup-ack or acknowledgement
   * does not come for `stall.ms` × the chain's length (stall.ts; the hops after it watch their own
   * downstream for less, so a silent replica further down is named by its upstream neighbour first).
   * Absent: no timer (the simulator).
   */
  readonly stall?: StallWatch;
  /**
   * While the pipeline is idle (set up, nothing unacknowledged, not sealed), a `keepalive` is sent every
   * `keepalive.ms` (pipelineKeepaliveMsDefault), so the hops, which end a pipeline whose writer is silent
   * for their pipelineIdleMs, know this one is still wanted. Absent: none (the simulator).
   */
  readonly keepalive?: StallWatch;
  /**
   * Gives up when aborted, at any point (the dial, the setup, a write, the seal): the connection is closed at
   * once and every pending and later call rejects with ABORTED, as `abort()` does. An owner that must stop at
   * once, not after a stall timeout (a chunkserver's copy, when its agent stops), passes one.
   */
  readonly signal?: AbortSignal;
}

/**
 * 1 MiB: each packet is one store append (and, on the real disk, one O_DIRECT write of its aligned part), so
 * fewer, larger packets cost less per byte at every hop. bench:data, 2026-11-27: 256 KiB → 1 MiB took the
 * write from 13–16 to 9–10 CPU-s per GB (client and servers together) with direct writes.
 */
export const defaultPacketBytes = 1024 * 1024;

interface InflightPacket {
  readonly seq: number;
  readonly payloadBytes: number;
  readonly isSeal: boolean;
}

export class PipelineWriter {
  private nextSeq = 0;
  /** Bytes handed to the pipeline (sent or being sent). */
  private sentLengthBytes: number;
  private acked: number;
  private readonly inflight: InflightPacket[] = [];
  private failure: PipelineFailedError | null = null;
  private sealed = false;
  /** Waiters for a change (an ack or the failure). */
  private waiters: (() => void)[] = [];
  /** Serialises write() and seal() calls. */
  private tail: Promise<unknown> = Promise.resolve();
  private sealAck: readonly ReplicaAck[] | null = null;
  /** The setup-ack has arrived. */
  private ready = false;
  private readonly stall: StallTimer;
  /** Keepalives while idle (see PipelineWriterOptions.keepalive). */
  private readonly keepalive: KeepaliveTimer;
  /** Stops listening to options.signal (once the writer has ended: sealed or failed). */
  private unlisten: () => void = () => {};
  inflightPacketsMaxSeen = 0;

  private constructor(
    private readonly connection: DataConnection,
    private readonly options: PipelineWriterOptions,
    private readonly limits: DataPlaneLimits,
    private readonly packetBytes: number,
    readonly startOffset: number,
  ) {
    this.sentLengthBytes = startOffset;
    this.acked = startOffset;
    this.stall = new StallTimer(options.stall, options.chain.length, (ms) =>
      this.setFailure(this.failureAtFirst('TIMEOUT', `no acknowledgement from the pipeline for ${ms} ms`)),
    );
    this.keepalive = new KeepaliveTimer(options.keepalive, () => this.connection.send({ type: 'keepalive' }));
  }

  /** Keepalives run while the pipeline is set up, owes nothing, and is neither sealed nor failed. */
  private noteIdle(): void {
    this.keepalive.set(this.ready && this.inflight.length === 0 && !this.sealed && this.failure === null);
  }

  /** The chain owes an answer: the setup-ack, or an acknowledgement of a packet or the seal. */
  private get owed(): boolean {
    return !this.ready || this.inflight.length > 0;
  }

  /** Dials the chain's first replica and sets the pipeline up; rejects with PipelineFailedError. */
  static async open(dialer: Dialer, options: PipelineWriterOptions): Promise<PipelineWriter> {
    const limits = resolveLimits(options.limits);
    const packetBytes = options.packetBytes ?? Math.min(defaultPacketBytes, limits.packetBytesMax);
    if (!Number.isSafeInteger(packetBytes) || packetBytes < Math.min(packetBytesMin, limits.packetBytesMax) || packetBytes > limits.packetBytesMax)
      throw new RangeError(`packetBytes must be in [${packetBytesMin}, ${limits.packetBytesMax}], got ${packetBytes}`);
    const first = options.chain[0];
    if (first === undefined) throw new RangeError('the chain needs at least one replica');
    const mode = options.mode ?? 'create';
    const offset = options.offset ?? 0;
    const fromVersion = options.fromVersion ?? 0;
    const { signal } = options;
    let connection: DataConnection;
    try {
      connection = await dialUnlessAborted(dialer, first.address, signal);
    } catch (error) {
      const typed = toDataPlaneError(error);
      throw new PipelineFailedError(typed.code, typed.detail, 0, first.id, 0, offset);
    }
    const writer = new PipelineWriter(connection, options, limits, packetBytes, offset);
    if (signal !== undefined) {
      const onAbort = (): void => writer.abort(abortedDetail(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      writer.unlisten = () => signal.removeEventListener('abort', onAbort);
      if (signal.aborted) onAbort(); // between the dial's end and here
    }
    const setupAck = new Promise<void>((resolve) => writer.waiters.push(resolve));
    connection.start({
      onMessage: (message) => writer.onMessage(message),
      onClose: (error) => writer.onClose(error),
    });
    connection.send({
      type: 'setup',
      handle: options.handle,
      version: options.version,
      targetId: first.id,
      mode,
      fromVersion,
      offset,
      chain: options.chain.slice(1),
      ...(options.compression === 'lz4' ? { compression: 'lz4' as const } : {}),
    });
    writer.stall.arm();
    await setupAck;
    if (writer.failure !== null) throw writer.failure;
    return writer;
  }

  /** The replicas' common acknowledged length (start offset plus acknowledged bytes). */
  get ackedLengthBytes(): number {
    return this.acked;
  }

  get ackedBytes(): number {
    return this.acked - this.startOffset;
  }

  /** Packets sent and not yet acknowledged (at most inflightPacketsMax). */
  get inflightPackets(): number {
    return this.inflight.length;
  }

  get failed(): PipelineFailedError | null {
    return this.failure;
  }

  /**
   * Sends `data` as packets; resolves once every packet is handed to the connection (it waits while the
   * window is full), not when acknowledged (see `flush`). With `sync`, the last packet asks every replica
   * to fsync before acknowledging it. Every packet carries its CRC32Cs on the block grid (block-crcs.ts):
   * `crcs`, when given, are those of `data` at the current length (gridCrcs), computed by the caller, and
   * are used where packets start on the grid; otherwise the writer computes them.
   */
  write(data: Uint8Array, options: { sync?: boolean; crcs?: readonly number[] } = {}): Promise<void> {
    return this.serialise(() => this.send(data, options.sync ?? false, options.crcs));
  }

  /** Resolves once everything written so far is acknowledged by every replica. */
  flush(): Promise<void> {
    return this.serialise(() => this.waitUntil(() => this.inflight.length === 0));
  }

  /**
   * Seals every replica at `lengthBytes` (default: all written) and returns each replica's length and
   * checksum, in chain order. The connection closes after.
   */
  seal(lengthBytes?: number): Promise<SealedReplica[]> {
    return this.serialise(async () => {
      this.throwIfFailed();
      assert.ok(!this.sealed, 'seal() called twice');
      const length = lengthBytes ?? this.sentLengthBytes;
      if (!Number.isSafeInteger(length) || length < this.startOffset || length > this.sentLengthBytes)
        throw new RangeError(`seal length ${length} outside [${this.startOffset}, ${this.sentLengthBytes}]`);
      this.sealed = true;
      this.noteIdle();
      await this.waitForWindow();
      const seq = this.nextSeq++;
      this.inflight.push({ seq, payloadBytes: 0, isSeal: true });
      this.stall.arm();
      this.connection.send({ type: 'seal', seq, lengthBytes: length });
      await this.waitUntil(() => this.sealAck !== null);
      const replicas = this.sealAck ?? [];
      return replicas.map((r) => {
        assert.ok(r.checksum !== undefined && r.lengthBytes !== undefined);
        return { id: r.id, lengthBytes: r.lengthBytes, checksum: r.checksum };
      });
    });
  }

  /** Gives up (a caller's timeout): the pipeline is torn down and calls reject with ABORTED. */
  abort(detail = 'aborted by the writer'): void {
    const first = this.options.chain[0];
    assert.ok(first !== undefined);
    this.setFailure(new PipelineFailedError('ABORTED', detail, 0, first.id, this.ackedBytes, this.acked));
  }

  private serialise<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.tail.then(operation);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async send(data: Uint8Array, sync: boolean, crcs: readonly number[] | undefined): Promise<void> {
    this.throwIfFailed();
    if (this.sealed) throw new RangeError('write after seal');
    if (this.sentLengthBytes + data.length > chunkSizeBytesMax)
      throw new DataPlaneError('TOO_LARGE', `writing ${data.length} bytes at ${this.sentLengthBytes} passes ${chunkSizeBytesMax}`);
    // The caller's CRCs line up with packets when data starts on the grid and packets are whole blocks.
    const given =
      crcs !== undefined && this.sentLengthBytes % checksumBlockBytes === 0 && this.packetBytes % checksumBlockBytes === 0 ? crcs : undefined;
    assert.ok(given === undefined || given.length === gridPieceCount(this.sentLengthBytes, data.length), 'one CRC per piece of data on the grid');
    for (let start = 0; start < data.length; start += this.packetBytes) {
      await this.waitForWindow();
      const payload = data.subarray(start, Math.min(start + this.packetBytes, data.length));
      const seq = this.nextSeq++;
      const offset = this.sentLengthBytes;
      this.sentLengthBytes += payload.length;
      this.inflight.push({ seq, payloadBytes: payload.length, isSeal: false });
      this.stall.arm();
      this.keepalive.set(false);
      this.inflightPacketsMaxSeen = Math.max(this.inflightPacketsMaxSeen, this.inflight.length);
      const last = start + this.packetBytes >= data.length;
      const packetCrcs =
        given !== undefined ? given.slice(start / checksumBlockBytes, start / checksumBlockBytes + gridPieceCount(offset, payload.length)) : gridCrcs(offset, payload);
      if (!this.connection.send({ type: 'packet', seq, offset, sync: sync && last, payload, crcs: packetCrcs }))
        await this.connection.writable();
    }
  }

  /** Waits until a packet may be sent: fewer than inflightPacketsMax unacknowledged. */
  private waitForWindow(): Promise<void> {
    return this.waitUntil(() => this.inflight.length < this.limits.inflightPacketsMax);
  }

  private async waitUntil(condition: () => boolean): Promise<void> {
    for (;;) {
      this.throwIfFailed();
      if (condition()) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private onMessage(message: Message): void {
    if (this.failure !== null) return;
    switch (message.type) {
      case 'setup-ack':
        if (message.replicas.length !== this.options.chain.length) return this.violation('setup-ack lists the wrong replicas');
        this.ready = true;
        this.stall.progress(this.owed);
        this.noteIdle();
        this.wake();
        return;
      case 'ack':
        this.onAck(message.seq, message.replicas);
        if (this.failure === null) this.stall.progress(this.owed);
        this.noteIdle();
        return;
      case 'failure': {
        const link = this.options.chain[message.index];
        const id = link?.id ?? message.id;
        this.setFailure(new PipelineFailedError(message.code, message.detail, message.index, id, this.ackedBytes, this.acked));
        return;
      }
      case 'error':
        this.setFailure(this.failureAtFirst(message.code, message.detail));
        return;
      default:
        this.violation(`unexpected ${message.type}`);
    }
  }

  private onAck(seq: number, replicas: readonly ReplicaAck[]): void {
    const head = this.inflight[0];
    if (head === undefined || head.seq !== seq) return this.violation(`ack ${seq} out of order`);
    if (replicas.length !== this.options.chain.length || replicas.some((r, i) => r.id !== this.options.chain[i]?.id))
      return this.violation(`ack ${seq} does not list the chain's replicas`);
    this.inflight.shift();
    if (head.isSeal) {
      if (replicas.some((r) => r.checksum === undefined)) return this.violation('seal ack without checksums');
      this.sealAck = replicas;
      this.unlisten();
      this.connection.end();
    } else {
      this.acked += head.payloadBytes;
      this.options.onAck?.(this.acked);
    }
    this.wake();
  }

  private onClose(error: DataPlaneError | null): void {
    if (this.failure !== null || this.sealAck !== null) return;
    this.setFailure(this.failureAtFirst('CONNECTION_LOST', error?.detail ?? 'the first replica closed the pipeline'));
  }

  private failureAtFirst(code: DataPlaneErrorCode, detail: string): PipelineFailedError {
    const first = this.options.chain[0];
    assert.ok(first !== undefined);
    return new PipelineFailedError(code, detail, 0, first.id, this.ackedBytes, this.acked);
  }

  private violation(detail: string): void {
    this.setFailure(this.failureAtFirst('PROTOCOL_ERROR', detail));
  }

  private setFailure(failure: PipelineFailedError): void {
    if (this.failure !== null) return;
    this.failure = failure;
    this.stall.disarm();
    this.keepalive.set(false);
    this.unlisten();
    this.connection.destroy();
    this.wake();
  }
}

/** Why `signal` aborted, for an ABORTED error's detail. */
function abortedDetail(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  return `aborted: ${reason instanceof Error ? reason.message : String(reason)}`;
}

/**
 * `dialer.dial(address)`, rejecting with ABORTED as soon as `signal` aborts (a connection that comes up after
 * that is closed): the dial's own timeout (tcp.ts connectTimeoutMs) is seconds, an abort is now.
 */
function dialUnlessAborted(dialer: Dialer, address: string, signal: AbortSignal | undefined): Promise<DataConnection> {
  if (signal === undefined) return dialer.dial(address);
  if (signal.aborted) return Promise.reject(new DataPlaneError('ABORTED', abortedDetail(signal)));
  return new Promise((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      settled = true;
      reject(new DataPlaneError('ABORTED', abortedDetail(signal)));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    dialer.dial(address).then(
      (connection) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) connection.destroy();
        else resolve(connection);
      },
      (error: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
