/**
 * `DataServer`: serves one ChunkStore on a Listener. Each accepted connection carries either one write
 * pipeline hop (its first message is `setup`) or a sequence of reads (`read`). The protocol is described in
 * protocol.ts; this file keeps its rules:
 *
 * - A packet is forwarded downstream as soon as it arrives (same buffer, no copy) and appended locally in
 *   parallel; local store calls run one at a time in seq order. Packets that arrive while an append is on
 *   the disk wait, and go to the store together in the next call (up to appendBatchBytesMax:
 *   ChunkStore.appendPieces, one O_DIRECT pwritev on NodeDisk), so a hop does not leave the disk idle
 *   between a write's completion and the next one's start, and pays the per-call costs once per batch.
 * - Invariant: the ack for seq s is sent upstream only after the local append of s (and its fsync, with
 *   `sync`) finished AND the downstream ack for s arrived, and acks leave in seq order.
 * - Invariant: at most inflightPacketsMax packets wait in a hop; at that count the upstream connection is
 *   paused (its socket is no longer read), so backpressure reaches the writer.
 * - The first failure ends the hop: a `failure` naming the first failing replica goes upstream, both
 *   connections close, no later store call is made for the pipeline.
 * - Buffer ownership (pool.ts): a packet's payload arrives in a pooled buffer; the hop holds one reference
 *   for the forward write (released when the downstream socket has written it) and one for the local append
 *   (released when the store call settled, or was skipped after a failure), so the buffer is recycled only
 *   after both. A read's spans come from the server's read pool and are released once the socket wrote them.
 */
import assert from 'node:assert/strict';
import type { Registry } from 'prom-client';
import type { Logger } from '../../raft/node-api.ts';
import { silentLogger } from '../../raft/node-api.ts';
import { firstMismatch } from '../block-crcs.ts';
import type { DataBug } from '../bugs.ts';
import { noDataBugs } from '../bugs.ts';
import type { AppendPiece, ChunkStore } from '../types.ts';
import { appendAll, checksumBlockBytes, chunkSizeBytesMax, readSpanBytes } from '../types.ts';
import type { DataConnection, DataNetwork, Dialer, Listener } from './connection.ts';
import { DataPlaneError, toDataPlaneError } from './errors.ts';
import type { DataPlaneLimits } from './limits.ts';
import { resolveLimits } from './limits.ts';
import { DataPlaneMetrics } from './metrics.ts';
import type { PooledBuffer } from './pool.ts';
import { BufferPool } from './pool.ts';
import type {
  ChainLink,
  FailureMessage,
  LocalReadMessage,
  Message,
  PacketMessage,
  ReadMessage,
  ReplicaAck,
  SealMessage,
  SetupMessage,
} from './protocol.ts';
import { errorMessage } from './protocol.ts';
import type { StallWatch } from './stall.ts';
import { StallTimer } from './stall.ts';

export interface DataServerOptions {
  /**
   * This chunkserver's id (setups name it as their target; acks and failures carry it), or a function
   * giving it: a new chunkserver learns its id when it registers, after its data server listens. Until
   * then (undefined) every setup is refused with WRONG_SERVER.
   */
  readonly id: number | (() => number | undefined);
  readonly store: ChunkStore;
  readonly network: DataNetwork;
  /** Where to listen, `host:port` (port 0 picks one on TCP). */
  readonly address: string;
  readonly limits?: Partial<DataPlaneLimits>;
  /** Open connections at most (pipeline hops and readers); more are refused with BUSY. */
  readonly connectionsMax?: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Planted bugs (the simulator's self-test only; see ../bugs.ts). */
  readonly bugs?: ReadonlySet<DataBug>;
  /**
   * Short-circuit local reads offered (protocol.ts `local-read`): the token file a local client checks.
   * Absent: every `local-read` is answered LOCAL_READS_OFF.
   */
  readonly localReads?: LocalReadToken;
  /**
   * A hop fails its pipeline with TIMEOUT, naming its downstream neighbour, when that neighbour owes it a
   * setup-ack or an acknowledgement and sends nothing for `stall.ms` × the replicas after this hop
   * (stall.ts); a read whose reader takes nothing for readSendStallUnits × `stall.ms` loses its connection.
   * Absent: no timer (the simulator, whose network delivers or breaks every exchange).
   */
  readonly stall?: StallWatch;
  /**
   * A pipeline hop that owes its upstream nothing (set up, every packet acknowledged, no seal) and hears
   * nothing from it for `pipelineIdle.ms` (pipelineIdleMsDefault) ends the pipeline with TIMEOUT: its writer
   * stopped without closing (a live writer sends keepalives while idle). Absent: no timer (the simulator).
   */
  readonly pipelineIdle?: StallWatch;
}

export interface LocalReadToken {
  readonly tokenPath: string;
  readonly token: string;
}

export const defaultConnectionsMax = 1024;
/**
 * Packets a read keeps in flight from the store ahead of the one being sent (each at most packetBytesMax
 * plus two checksum blocks of memory): a few, so the disk has a queue to work on and one slow read does not
 * stall the stream.
 */
export const readAheadPiecesMax = 4;
/**
 * A read waiting for its connection's send queue to drain (the reader takes nothing: a stopped process,
 * whose kernel still acknowledges and answers keepalive, or a stuck one) gives up after this many stall units
 * (2 × `stall.ms`: 20 s with the chunkserver's default unit) without a data frame written out, and destroys
 * the connection, freeing its slot, its read-ahead and its send queue. Longer than the reader's own stall
 * timeout (readStallMsDefault, 15 s), so a live reader, which drops a connection that starves it, is never
 * cut off by this side first.
 */
export const readSendStallUnits = 2;

export class DataServer {
  readonly metrics: DataPlaneMetrics;
  /** Buffers the store reads into for reads served (a packet plus the checksum blocks either side). */
  readonly readPool: BufferPool;
  private listener: Listener | null = null;
  private readonly connections = new Set<DataConnection>();
  private readonly hops = new Set<PipelineHop>();
  private stopped = false;

  private constructor(
    private readonly idOf: () => number | undefined,
    readonly store: ChunkStore,
    readonly dialer: Dialer,
    readonly limits: DataPlaneLimits,
    readonly logger: Logger,
    registry: Registry | undefined,
    readonly connectionsMax: number,
    readonly bugs: ReadonlySet<DataBug>,
    readonly localReads: LocalReadToken | undefined,
    readonly stall: StallWatch | undefined,
    readonly pipelineIdle: StallWatch | undefined,
  ) {
    if (!Number.isSafeInteger(connectionsMax) || connectionsMax < 1)
      throw new RangeError(`connectionsMax must be a positive integer, got ${connectionsMax}`);
    this.metrics = new DataPlaneMetrics(registry);
    this.readPool = new BufferPool(limits.packetBytesMax + 2 * checksumBlockBytes);
  }

  static async start(options: DataServerOptions): Promise<DataServer> {
    const id = options.id;
    const server = new DataServer(
      typeof id === 'number' ? () => id : id,
      options.store,
      options.network,
      resolveLimits(options.limits),
      options.logger ?? silentLogger,
      options.registry,
      options.connectionsMax ?? defaultConnectionsMax,
      options.bugs ?? noDataBugs,
      options.localReads,
      options.stall,
      options.pipelineIdle,
    );
    server.listener = await options.network.listen(options.address, (connection) => server.accept(connection));
    return server;
  }

  /** This chunkserver's id; 0 while it is not known yet. */
  get id(): number {
    return this.idOf() ?? 0;
  }

  get address(): string {
    assert.ok(this.listener !== null);
    return this.listener.address;
  }

  /** Connections counted against connectionsMax now (tests). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Pipeline hops in progress (for tests: each holds at most inflightPacketsMax packets). */
  activeHops(): readonly { readonly queuedPackets: number; readonly queuedPacketsMaxSeen: number }[] {
    return [...this.hops];
  }

  /** Stops listening and breaks every open connection (their peers see CONNECTION_LOST). */
  async close(): Promise<void> {
    this.stopped = true;
    // A TCP listener's close waits until every accepted socket has closed; it destroys those whose connection
    // is over (ended here: BUSY, a protocol error, a finished or failed hop) and this destroys the open ones.
    const closing = this.listener?.close();
    for (const connection of [...this.connections]) connection.destroy();
    for (const hop of [...this.hops]) hop.abandon();
    await closing;
  }

  private accept(connection: DataConnection): void {
    if (this.stopped) {
      connection.destroy();
      return;
    }
    if (this.connections.size >= this.connectionsMax) {
      // Each connection holds bounded memory; the count of them is bounded here.
      this.metrics.connectionErrors.inc({ code: 'BUSY' });
      this.logger.warn({ peer: connection.remoteAddress, connectionsMax: this.connectionsMax }, 'data connection refused');
      connection.start({ onMessage: () => {}, onClose: () => {} });
      connection.send(errorMessage(new DataPlaneError('BUSY', `at ${this.connectionsMax} connections`)));
      connection.end();
      return;
    }
    this.connections.add(connection);
    let session: PipelineHop | ReadSession | null = null;
    connection.start({
      onMessage: (message, lease) => {
        if (session === null) {
          if (message.type === 'setup') {
            const hop = new PipelineHop(this, connection, message);
            this.hops.add(hop);
            session = hop;
            hop.begin();
            return;
          }
          if (message.type === 'read' || message.type === 'local-read') session = new ReadSession(this, connection);
        }
        if (session === null) {
          this.protocolError(connection, `a connection must start with setup, read or local-read, got ${message.type}`);
          return;
        }
        session.onMessage(message, lease ?? null);
      },
      onClose: (error) => {
        this.connections.delete(connection);
        if (error !== null) {
          this.metrics.connectionErrors.inc({ code: error.code });
          if (error.code !== 'CONNECTION_LOST')
            this.logger.warn({ peer: connection.remoteAddress, code: error.code, detail: error.detail }, 'data connection failed');
        }
        session?.onUpstreamClosed();
      },
    });
  }

  /** Reports a protocol violation to the peer and closes its connection. */
  protocolError(connection: DataConnection, detail: string): void {
    const error = new DataPlaneError('PROTOCOL_ERROR', detail);
    this.logger.warn({ peer: connection.remoteAddress, detail }, 'data protocol error');
    connection.send(errorMessage(error));
    connection.end();
  }

  /** @internal */
  forgetHop(hop: PipelineHop): void {
    this.hops.delete(hop);
  }
}

interface PendingEntry {
  readonly seq: number;
  readonly payloadBytes: number;
  local: ReplicaAck | null;
  /** The downstream replicas' acks for seq (stays null when this hop is the chain's end). */
  downstream: readonly ReplicaAck[] | null;
}

type HopState = 'setting-up' | 'ready' | 'sealing' | 'done' | 'failed';

/**
 * Bytes of received packets a hop hands to its store in one call, at most (the packets that queued while the
 * previous append was on the disk): a few packets, so the first of a batch is not held back long. bench:data,
 * 2026-11-28, three paired runs: writes 223–235 against 164–209 MB/s, the chunkservers' CPU 3.9–4.8 against
 * 4.7–5.6 s per GB (BENCHMARKS.md).
 */
export const appendBatchBytesMax = 4 * 1024 * 1024;

/** A received packet waiting for its local append, with the reference to its buffer that the append holds. */
interface QueuedAppend {
  readonly packet: PacketMessage;
  readonly entry: PendingEntry;
  readonly lease: { release(): void } | undefined;
}

class PipelineHop {
  private state: HopState = 'setting-up';
  private downstream: DataConnection | null = null;
  private readonly next: ChainLink | undefined;
  private nextSeq = 0;
  private nextOffset: number;
  /** Unacknowledged packets in seq order: at most inflightPacketsMax. */
  private readonly pending: PendingEntry[] = [];
  /** The next seq the downstream must acknowledge. */
  private downstreamAckSeq = 0;
  private localReady = false;
  /** The downstream acknowledged the seal (only the seal entry has no payload). */
  private downstreamSealed = false;
  private downstreamSetup: readonly ReplicaAck[] | null = null;
  /** Watches the downstream neighbour while it owes something (stall.ts). */
  private readonly downstreamStall: StallTimer;
  /** Watches the upstream while this hop owes it nothing (set up, nothing pending, no seal): see DataServerOptions.pipelineIdle. */
  private readonly upstreamIdle: StallTimer;
  /** Store calls for this pipeline run one after another on this chain. */
  private localWork: Promise<void> = Promise.resolve();
  /** Packets received and not yet handed to the store, in seq order. */
  private readonly toAppend: QueuedAppend[] = [];
  /** A batch append is on `localWork` and has not started: packets queued now join it. */
  private appendWaiting = false;
  queuedPacketsMaxSeen = 0;

  constructor(
    private readonly server: DataServer,
    private readonly upstream: DataConnection,
    private readonly setup: SetupMessage,
  ) {
    this.next = setup.chain[0];
    this.nextOffset = setup.offset;
    const next = this.next;
    this.downstreamStall = new StallTimer(server.stall, setup.chain.length, (ms) => {
      if (next !== undefined) this.fail(1, next.id, new DataPlaneError('TIMEOUT', `no answer from downstream ${next.address} for ${ms} ms`));
    });
    this.upstreamIdle = new StallTimer(server.pipelineIdle, 1, (ms) => {
      this.fail(0, server.id, new DataPlaneError('TIMEOUT', `an idle pipeline: nothing from its writer for ${ms} ms (no keepalive)`));
    });
  }

  /** Restarts the idle watch when this hop owes its upstream nothing, else stops it. */
  private noteUpstreamIdle(): void {
    this.upstreamIdle.progress(this.state === 'ready' && this.pending.length === 0);
  }

  /** The hop has finished or failed (read through a getter: handlers change the state). */
  private get over(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  /** The downstream replica owes this hop its setup-ack, or an acknowledgement of a forwarded packet or seal. */
  private get downstreamOwes(): boolean {
    return this.next !== undefined && (this.downstreamSetup === null || this.downstreamAckSeq < this.nextSeq);
  }

  get queuedPackets(): number {
    return this.pending.length;
  }

  begin(): void {
    const { setup, server } = this;
    if (setup.targetId !== server.id) {
      this.fail(0, server.id, new DataPlaneError('WRONG_SERVER', `setup for ${setup.targetId} reached ${server.id}`));
      return;
    }
    if (setup.mode === 'create' && (setup.offset !== 0 || setup.fromVersion !== 0)) {
      this.fail(0, server.id, new DataPlaneError('PROTOCOL_ERROR', 'create starts at offset 0 from version 0'));
      return;
    }
    if (setup.mode === 'resume' && setup.fromVersion >= setup.version) {
      this.fail(0, server.id, new DataPlaneError('STALE_VERSION', 'resume must raise the version'));
      return;
    }
    this.runLocal(async () => {
      await this.prepareReplica();
      this.localReady = true;
      this.maybeAckSetup();
    });
    if (this.next !== undefined) void this.connectDownstream(this.next);
  }

  onMessage(message: Message, lease: PooledBuffer | null): void {
    switch (message.type) {
      case 'packet':
        this.onPacket(message, lease);
        this.upstreamIdle.disarm();
        return;
      case 'seal':
        this.onSeal(message);
        this.upstreamIdle.disarm();
        return;
      case 'keepalive':
        if (this.over) return;
        this.downstream?.send(message);
        this.noteUpstreamIdle();
        return;
      default:
        this.violation(`unexpected ${message.type} from upstream`);
    }
  }

  /** The upstream went away: nobody waits for this pipeline any more. */
  onUpstreamClosed(): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.abandon();
  }

  abandon(): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.state = 'failed';
    this.downstreamStall.disarm();
    this.upstreamIdle.disarm();
    this.server.metrics.pipelines.inc({ outcome: 'abandoned' });
    this.downstream?.destroy();
    this.upstream.destroy();
    this.server.forgetHop(this);
  }

  private async prepareReplica(): Promise<void> {
    const { store } = this.server;
    const { handle, version, mode, fromVersion, offset } = this.setup;
    const createOptions = this.setup.compression === undefined ? {} : { compression: this.setup.compression };
    if (mode === 'create') {
      await store.create(handle, version, createOptions);
      return;
    }
    const info = store.info(handle);
    // A create pipeline that failed during setup leaves replicas past the failure without the chunk; nothing
    // was acknowledged then, so resuming at offset 0 starts the replica afresh at the new version.
    if (info === undefined && offset === 0) {
      await store.create(handle, version, createOptions);
      return;
    }
    // A retried setup of the same resume finds the replica already raised and cut (or, sealed before the
    // failure that led to the resume, raised at its sealed length): nothing to do.
    if (info !== undefined && info.version === version && info.lengthBytes === offset) return;
    // A resume that failed while being set up may have raised this replica already (between fromVersion and
    // version): raise it from there. The store still refuses it if it holds fewer than `offset` bytes.
    const from = info !== undefined && info.version > fromVersion && info.version < version ? info.version : fromVersion;
    await store.bumpVersion(handle, from, version, offset);
  }

  private async connectDownstream(next: ChainLink): Promise<void> {
    let connection: DataConnection;
    try {
      connection = await this.server.dialer.dial(next.address);
    } catch (error) {
      this.fail(1, next.id, toDataPlaneError(error));
      return;
    }
    if (this.state === 'failed' || this.state === 'done') {
      connection.destroy();
      return;
    }
    this.downstream = connection;
    connection.start({
      onMessage: (message) => this.onDownstreamMessage(next, message),
      onClose: (error) => {
        // A downstream that acknowledged the seal has finished and closes cleanly: not a failure.
        if (this.state === 'done' || this.state === 'failed' || this.downstreamSealed) return;
        this.fail(1, next.id, new DataPlaneError('CONNECTION_LOST', error?.detail ?? `${next.address} closed the pipeline`));
      },
    });
    connection.send({ ...this.setup, targetId: next.id, chain: this.setup.chain.slice(1) });
    this.downstreamStall.arm();
  }

  private onDownstreamMessage(next: ChainLink, message: Message): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.handleDownstream(next, message);
    if (!this.over) this.downstreamStall.progress(this.downstreamOwes);
  }

  private handleDownstream(next: ChainLink, message: Message): void {
    switch (message.type) {
      case 'setup-ack':
        if (this.downstreamSetup !== null || message.replicas.length !== this.setup.chain.length) {
          this.fail(1, next.id, new DataPlaneError('PROTOCOL_ERROR', 'bad setup-ack from downstream'));
          return;
        }
        this.downstreamSetup = message.replicas;
        this.maybeAckSetup();
        return;
      case 'ack': {
        const entry = this.pending.find((e) => e.seq === message.seq);
        if (entry === undefined && message.seq === this.downstreamAckSeq && this.server.bugs.has('data-ack-before-last-replica')) {
          this.downstreamAckSeq += 1; // planted bug: this packet was acknowledged upstream already
          return;
        }
        if (message.seq !== this.downstreamAckSeq || entry === undefined || message.replicas.length !== this.setup.chain.length) {
          this.fail(1, next.id, new DataPlaneError('PROTOCOL_ERROR', `unexpected ack ${message.seq} from downstream`));
          return;
        }
        this.downstreamAckSeq += 1;
        entry.downstream = message.replicas;
        if (entry.payloadBytes === 0) this.downstreamSealed = true;
        this.maybeAck();
        return;
      }
      case 'failure':
        this.fail(message.index + 1, message.id, new DataPlaneError(message.code, message.detail));
        return;
      case 'error':
        this.fail(1, next.id, new DataPlaneError(message.code, message.detail));
        return;
      default:
        this.fail(1, next.id, new DataPlaneError('PROTOCOL_ERROR', `unexpected ${message.type} from downstream`));
    }
  }

  private maybeAckSetup(): void {
    if (this.state !== 'setting-up' || !this.localReady) return;
    if (this.next !== undefined && this.downstreamSetup === null) return;
    this.state = 'ready';
    this.upstream.send({ type: 'setup-ack', replicas: [{ id: this.server.id }, ...(this.downstreamSetup ?? [])] });
    this.noteUpstreamIdle();
  }

  private onPacket(packet: PacketMessage, lease: PooledBuffer | null): void {
    if (this.state === 'failed' || this.state === 'done') return;
    if (this.state !== 'ready') return this.violation(`packet ${packet.seq} before setup-ack or after seal`);
    if (packet.seq !== this.nextSeq) return this.violation(`packet seq ${packet.seq}, expected ${this.nextSeq}`);
    if (packet.offset !== this.nextOffset) return this.violation(`packet offset ${packet.offset}, expected ${this.nextOffset}`);
    const length = packet.payload.length;
    if (length === 0 || length > this.server.limits.packetBytesMax) return this.violation(`packet of ${length} bytes`);
    if (packet.offset + length > chunkSizeBytesMax) {
      this.fail(0, this.server.id, new DataPlaneError('TOO_LARGE', `packet ends past ${chunkSizeBytesMax}`));
      return;
    }
    // The chain's end checks the writer's CRCs against the bytes that reached it through every hop before it;
    // the hops before it trust them (block-crcs.ts). The failure names this replica: the writer goes on without
    // it, resending from its own buffers, and the leader restores the replication factor later. (The planted
    // bug data-skip-packet-crc skips the check.)
    if (packet.crcs !== undefined && this.next === undefined && !this.server.bugs.has('data-skip-packet-crc')) {
      const bad = firstMismatch(packet.offset, packet.payload, packet.crcs);
      if (bad >= 0) {
        this.fail(0, this.server.id, new DataPlaneError('CHECKSUM_MISMATCH', `packet ${packet.seq} at ${packet.offset}: piece ${bad} does not match the writer's CRC32C`));
        return;
      }
    }
    this.nextSeq += 1;
    this.nextOffset += length;
    this.server.metrics.bytesIn.inc({ kind: 'write' }, length);
    // Forward first, at once: the downstream replica's work overlaps ours.
    if (this.downstream !== null) {
      const forwarded = lease?.retain();
      this.downstream.send(packet, forwarded === undefined ? undefined : () => forwarded.release());
      this.downstreamStall.arm();
      this.server.metrics.bytesOut.inc({ kind: 'forward' }, length);
    }
    const entry: PendingEntry = { seq: packet.seq, payloadBytes: length, local: null, downstream: null };
    this.enqueue(entry);
    this.toAppend.push({ packet, entry, lease: lease?.retain() });
    this.scheduleAppend();
  }

  /** Puts a batch append on the local work chain unless one is waiting there already (see toAppend). */
  private scheduleAppend(): void {
    if (this.appendWaiting) return;
    this.appendWaiting = true;
    this.runLocal(
      () => this.appendQueued(),
      () => {
        // Skipped (the hop failed): the queued packets will never be appended; their buffers go back.
        if (this.state === 'failed') for (const queued of this.toAppend.splice(0)) queued.lease?.release();
      },
    );
  }

  /**
   * Appends every queued packet, in store calls of up to appendBatchBytesMax, acking each call's packets when
   * it is done. All of them, before returning: work queued on `localWork` after this task (a seal) must find
   * every packet received before it appended.
   */
  private async appendQueued(): Promise<void> {
    this.appendWaiting = false;
    const { handle, version } = this.setup;
    while (this.toAppend.length > 0 && this.state !== 'failed') {
      let bytes = 0;
      let count = 0;
      while (count < this.toAppend.length && (count === 0 || bytes + this.toAppend[count]!.packet.payload.length <= appendBatchBytesMax)) {
        bytes += this.toAppend[count]!.packet.payload.length;
        count++;
      }
      const batch = this.toAppend.splice(0, count);
      try {
        const pieces = batch.map(({ packet }): AppendPiece => (packet.crcs === undefined ? { data: packet.payload } : { data: packet.payload, blockCrcs: packet.crcs }));
        await appendAll(this.server.store, handle, version, batch[0]!.packet.offset, pieces);
        this.server.metrics.appendCalls.inc();
        this.server.metrics.appendedPackets.inc(batch.length);
        if (batch.some(({ packet }) => packet.sync)) await this.server.store.sync(handle);
        for (const { entry } of batch) entry.local = { id: this.server.id };
        this.maybeAck();
      } finally {
        for (const { lease } of batch) lease?.release();
      }
    }
  }

  private onSeal(seal: SealMessage): void {
    if (this.state === 'failed' || this.state === 'done') return;
    if (this.state !== 'ready') return this.violation('seal before setup-ack or twice');
    if (seal.seq !== this.nextSeq) return this.violation(`seal seq ${seal.seq}, expected ${this.nextSeq}`);
    if (seal.lengthBytes > this.nextOffset) return this.violation(`seal at ${seal.lengthBytes} past the ${this.nextOffset} bytes written`);
    this.state = 'sealing';
    this.nextSeq += 1;
    this.downstream?.send(seal);
    if (this.downstream !== null) this.downstreamStall.arm();
    const entry: PendingEntry = { seq: seal.seq, payloadBytes: 0, local: null, downstream: null };
    this.enqueue(entry);
    const { handle, version } = this.setup;
    this.runLocal(async () => {
      const info = await this.server.store.seal(handle, version, seal.lengthBytes);
      assert.ok(info.checksum !== undefined, 'a sealed replica has a checksum');
      entry.local = { id: this.server.id, lengthBytes: info.lengthBytes, checksum: info.checksum };
      this.maybeAck();
    });
  }

  private enqueue(entry: PendingEntry): void {
    this.pending.push(entry);
    this.queuedPacketsMaxSeen = Math.max(this.queuedPacketsMaxSeen, this.pending.length);
    // Invariant: a well-behaved upstream never exceeds the window; one that does is simply not read.
    if (this.pending.length >= this.server.limits.inflightPacketsMax) this.upstream.pause();
  }

  /** Sends the acks that are complete, in seq order (see the invariant at the top). */
  private maybeAck(): void {
    const chainEnd = this.next === undefined;
    while (this.state === 'ready' || this.state === 'sealing') {
      const head = this.pending[0];
      if (head === undefined || head.local === null) break;
      // Planted bug: a packet's ack leaves on the local append alone, naming the downstream replicas unheard.
      const early = head.payloadBytes > 0 && head.downstream === null && this.server.bugs.has('data-ack-before-last-replica');
      if (!chainEnd && head.downstream === null && !early) break;
      this.pending.shift();
      const downstream = early ? this.setup.chain.map((link) => ({ id: link.id })) : (head.downstream ?? []);
      this.upstream.send({ type: 'ack', seq: head.seq, replicas: [head.local, ...downstream] });
      if (this.state === 'sealing' && this.pending.length === 0) this.finish();
      else if (this.pending.length === 0) this.noteUpstreamIdle();
    }
    if (this.pending.length < this.server.limits.inflightPacketsMax && !this.upstream.closed) this.upstream.resume();
  }

  private finish(): void {
    this.state = 'done';
    this.downstreamStall.disarm();
    this.upstreamIdle.disarm();
    this.server.metrics.pipelines.inc({ outcome: 'sealed' });
    this.server.forgetHop(this);
    this.downstream?.end();
    this.upstream.end();
  }

  /**
   * Runs store work after the earlier work of this pipeline; a failure ends the pipeline. `done` runs once
   * the work settled or was skipped (the pipeline had failed), always.
   */
  private runLocal(work: () => Promise<void>, done?: () => void): void {
    this.localWork = this.localWork.then(async () => {
      try {
        if (this.state === 'failed') return;
        await work();
      } catch (error) {
        this.fail(0, this.server.id, toDataPlaneError(error));
      } finally {
        done?.();
      }
    });
  }

  private violation(detail: string): void {
    this.fail(0, this.server.id, new DataPlaneError('PROTOCOL_ERROR', detail));
  }

  /** Reports the first failing replica (`index` counted from this hop) upstream and ends the hop. */
  private fail(index: number, id: number, error: DataPlaneError): void {
    if (this.state === 'failed' || this.state === 'done') return;
    this.state = 'failed';
    this.downstreamStall.disarm();
    this.upstreamIdle.disarm();
    const failure: FailureMessage = { type: 'failure', index, id, code: error.code, detail: error.detail.slice(0, 1024) };
    this.server.metrics.pipelines.inc({ outcome: 'failed' });
    this.server.logger.warn(
      { handle: this.setup.handle, version: this.setup.version, index, replica: id, code: error.code, detail: error.detail },
      'write pipeline failed',
    );
    this.server.forgetHop(this);
    this.downstream?.destroy();
    this.upstream.send(failure);
    this.upstream.end();
  }
}

interface ReadPiece {
  readonly position: number;
  readonly length: number;
  readonly bytes: Promise<Uint8Array>;
  /** The buffer the store reads into; released once the piece was sent (or the read failed). */
  readonly lease: PooledBuffer;
}

/** Reads on one connection, one at a time; an error answers the read and keeps the connection. */
class ReadSession {
  private busy = false;
  /** A read is waiting for the connection to take more (`writable()`). */
  private waitingToSend = false;
  /** Watches the reader while a read waits for it to take data (readSendStallUnits). */
  private readonly sendStall: StallTimer;

  constructor(
    private readonly server: DataServer,
    private readonly connection: DataConnection,
  ) {
    this.sendStall = new StallTimer(server.stall, readSendStallUnits, (ms) => {
      // onClose reports it (metrics and the log), and the read in progress ends with the connection.
      connection.destroy(new DataPlaneError('TIMEOUT', `the reader took no data for ${ms} ms`));
    });
  }

  onMessage(message: Message): void {
    if (message.type !== 'read' && message.type !== 'local-read')
      return this.server.protocolError(this.connection, `unexpected ${message.type} on a read connection`);
    if (this.busy) return this.server.protocolError(this.connection, 'a read while another is in progress');
    this.busy = true;
    void (message.type === 'read' ? this.serve(message) : this.serveLocal(message)).finally(() => {
      this.busy = false;
    });
  }

  onUpstreamClosed(): void {
    this.sendStall.disarm();
  }

  /** A data frame was written out (or dropped with the connection): while a read waits, the reader lives. */
  private frameSent(): void {
    if (this.waitingToSend && !this.connection.closed) this.sendStall.progress(true);
  }

  /** Where a replica's files are, for a client on this host (protocol.ts, short-circuit local read). */
  private async serveLocal(request: LocalReadMessage): Promise<void> {
    const { store, localReads, metrics } = this.server;
    try {
      if (localReads === undefined || store.localPaths === undefined)
        throw new DataPlaneError('LOCAL_READS_OFF', 'this chunkserver offers no short-circuit local reads');
      const paths = await store.localPaths(request.handle, request.version);
      metrics.localReads.inc({ outcome: 'ok' });
      this.connection.send({ type: 'local-replica', ...paths, ...localReads });
    } catch (error) {
      const typed = toDataPlaneError(error);
      metrics.localReads.inc({ outcome: typed.code });
      this.connection.send(errorMessage(typed));
    }
  }

  private async serve(read: ReadMessage): Promise<void> {
    const { store, limits, metrics } = this.server;
    const { connection } = this;
    try {
      if (read.length > chunkSizeBytesMax || read.offset + read.length > chunkSizeBytesMax)
        throw new DataPlaneError('BAD_OFFSET', `range [${read.offset}, ${read.offset + read.length}) is past the chunk size`);
      if (read.length === 0) {
        await store.read(read.handle, read.version, read.offset, 0);
        connection.send({ type: 'data', offset: read.offset, last: true, payload: new Uint8Array(0) });
      }
      const end = read.offset + read.length;
      // Read-ahead: the store reads up to readAheadPiecesMax packets ahead of the one being sent, so the disk
      // sees several requests at once and the disk and the network overlap instead of taking turns. Each
      // piece is read into a buffer of the server's read pool, released once the socket wrote it (or once
      // the store is done with it when it was not sent).
      let readPosition = read.offset;
      const ahead: ReadPiece[] = [];
      const readAhead = (): void => {
        while (ahead.length < readAheadPiecesMax && readPosition < end) {
          const position = readPosition;
          const length = Math.min(limits.packetBytesMax, end - position);
          const lease = this.server.readPool.take(readSpanBytes(position, length));
          const bytes = store.read(read.handle, read.version, position, length, lease.bytes);
          bytes.catch(() => lease.release()); // awaited below, unless the connection closed first
          ahead.push({ position, length, bytes, lease });
          readPosition += length;
        }
      };
      try {
        readAhead();
        for (let piece = ahead.shift(); piece !== undefined && !connection.closed; piece = ahead.shift()) {
          const payload = await piece.bytes;
          assert.equal(payload.length, piece.length, 'the store returns exactly the bytes asked for');
          readAhead();
          const { position, length, lease } = piece;
          metrics.bytesOut.inc({ kind: 'read' }, length);
          const sent = (): void => {
            lease.release();
            this.frameSent();
          };
          if (!connection.send({ type: 'data', offset: position, last: position + length === end, payload }, sent)) {
            // The queue is full: the reader has to take some. A watch runs while it takes nothing.
            this.waitingToSend = true;
            this.sendStall.arm();
            try {
              await connection.writable();
            } finally {
              this.waitingToSend = false;
              this.sendStall.disarm();
            }
          }
        }
      } finally {
        // Pieces read ahead and never sent: their buffers come back once the store is done with them.
        for (const { bytes, lease } of ahead.splice(0)) void bytes.then(() => lease.release(), () => undefined);
      }
      metrics.reads.inc({ outcome: 'ok' });
    } catch (error) {
      const typed = toDataPlaneError(error);
      metrics.reads.inc({ outcome: typed.code });
      if (typed.code === 'CHECKSUM_MISMATCH' || typed.code === 'IO_ERROR')
        this.server.logger.error({ handle: read.handle, code: typed.code, detail: typed.detail }, 'read failed');
      connection.send(errorMessage(typed));
    }
  }
}
