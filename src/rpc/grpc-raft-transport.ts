/**
 * Raft traffic between metadata servers over gRPC (raft.proto, service RaftTransport).
 *
 * Outbound, per peer: one long-lived client stream (Send), opened when there is something to send. Every
 * message sent to a peer in one event-loop turn is encoded at once (so oversized ones are refused on the
 * spot) and queued; at the end of the turn the queue is written as RaftBatch frames of at most
 * batchMessagesMax messages / batchBytesMax bytes. Writes stop while the stream's buffer is full (write()
 * returned false) and resume on 'drain'; meanwhile the queue grows up to peerQueueBytesMax, and messages
 * past that are dropped (Raft retransmits). Batches are written only once the receiver has accepted the
 * stream (its initial metadata arrived), so messages for a peer that is down stay queued instead of being
 * written into a dead call (a stream not accepted within connectTimeoutMs is abandoned). A broken stream is
 * opened again after a backoff that doubles from reconnectDelayMsMin to reconnectDelayMsMax and resets once a
 * stream is accepted; a stream the peer rejected (wrong cluster, duplicate id) waits the maximum. gRPC
 * keepalive pings notice a dead peer (or a dead sender, on the server side) within keepaliveTimeMs +
 * keepaliveTimeoutMs.
 *
 * Inbound: startServer() serves RaftTransport. Each batch is validated: a batch that does not parse, has
 * no valid sender, changes sender mid-stream, claims this node's own id or carries another cluster's id
 * ends the stream with a typed status (INVALID_ARGUMENT / FAILED_PRECONDITION); within a valid batch each
 * message that is oversized, does not decode, is not addressed to this node or does not come from the
 * batch's sender is dropped alone. Everything dropped is counted (stats()) and logged, rate-limited.
 *
 * Transport.send never throws and never blocks: it is best effort, as Raft expects.
 */
import * as grpc from '@grpc/grpc-js';
import { encodeMessage } from '../raft/codec.ts';
import type { Logger, Transport } from '../raft/node-api.ts';
import { silentLogger } from '../raft/node-api.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { deliverBatch } from './inbound.ts';
import type { InboundContext } from './inbound.ts';
import { invalidBatch, raftSendMethod, raftTransportService, u64Bits } from './raft-proto.ts';
import type { InboundBatch, SendAckWire, U64Bits } from './raft-proto.ts';
import { TransportCounters, checkLimits } from './transport-stats.ts';
import type { DropReason, StatsSource, TransportStats } from './transport-stats.ts';

export interface GrpcTransportLimits {
  /** An encoded Raft message larger than this is refused (outbound: never sent; inbound: dropped). */
  readonly messageBytesMax: number;
  /** Encoded bytes queued for one peer, at most; messages past it are dropped. */
  readonly peerQueueBytesMax: number;
  /** Messages in one RaftBatch frame, at most. */
  readonly batchMessagesMax: number;
  /** Encoded message bytes in one RaftBatch frame, at most (a frame always holds at least one message). */
  readonly batchBytesMax: number;
  /** Backoff before opening a broken stream again: starts at the minimum, doubles up to the maximum. */
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
  /** A stream the receiver has not accepted (sent its initial metadata) within this is abandoned and retried. */
  readonly connectTimeoutMs: number;
  /** A keepalive ping is sent after this much time without traffic... */
  readonly keepaliveTimeMs: number;
  /** ...and the connection is closed if its acknowledgement does not come within this. */
  readonly keepaliveTimeoutMs: number;
}

export const defaultGrpcTransportLimits: GrpcTransportLimits = {
  messageBytesMax: 16 * 1024 * 1024,
  peerQueueBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 1_024,
  batchBytesMax: 4 * 1024 * 1024,
  reconnectDelayMsMin: 50,
  reconnectDelayMsMax: 2_000,
  connectTimeoutMs: 5_000,
  keepaliveTimeMs: 10_000,
  keepaliveTimeoutMs: 5_000,
};

/** Per message in a frame: a one-byte tag and a length varint of at most 5 bytes; plus the two uint64 fields. */
const FRAME_OVERHEAD_PER_MESSAGE = 6;
const FRAME_OVERHEAD_FIXED = 32;
const MESSAGE_BYTES_LIMIT = 1024 * 1024 * 1024;

/** The largest RaftBatch frame these limits can produce: the gRPC message length limit on both sides. */
export function frameBytesMax(limits: GrpcTransportLimits): number {
  return (
    Math.max(limits.messageBytesMax, limits.batchBytesMax) +
    limits.batchMessagesMax * FRAME_OVERHEAD_PER_MESSAGE +
    FRAME_OVERHEAD_FIXED
  );
}

export type PeerAddresses = ReadonlyMap<NodeId, string>;

export interface GrpcRaftTransportOptions {
  /** This member's Raft id. */
  readonly id: NodeId;
  /** The Raft group's id (uint64); batches from another cluster are rejected. */
  readonly clusterId: bigint | number | string;
  /** Peer id → 'host:port'. This node's own id, if present, is ignored. */
  readonly peers: PeerAddresses;
  /** Inbound messages, validated, one at a time (the server wires it to RaftNode.receive). */
  readonly deliver: (message: Message) => void;
  readonly logger?: Logger;
  readonly limits?: Partial<GrpcTransportLimits>;
  /** Defaults to insecure (plaintext) credentials. */
  readonly channelCredentials?: grpc.ChannelCredentials;
  readonly serverCredentials?: grpc.ServerCredentials;
}

function normaliseClusterId(id: bigint | number | string): string {
  let value: bigint;
  try {
    value = BigInt(id);
  } catch {
    throw new RangeError(`cluster id must be an unsigned 64-bit integer, got ${String(id)}`);
  }
  if (value < 0n || value >= 1n << 64n)
    throw new RangeError(`cluster id must be an unsigned 64-bit integer, got ${String(id)}`);
  return value.toString();
}

function isNodeId(id: unknown): id is NodeId {
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0;
}

/** A uint64 field from proto-loader (a decimal string) as a node id, or null. */
function parseNodeId(x: unknown): NodeId | null {
  const n = typeof x === 'string' && /^[0-9]{1,16}$/.test(x) ? Number(x) : typeof x === 'number' ? x : NaN;
  return isNodeId(n) ? n : null;
}

function statusError(code: grpc.status, details: string): grpc.ServerErrorResponse {
  return Object.assign(new Error(details), { code, details });
}

/** A FIFO of encoded messages with O(1) push and shift. */
class ByteQueue {
  private items: Uint8Array[] = [];
  private head = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(b: Uint8Array): void {
    this.items.push(b);
    this.bytes += b.byteLength;
  }

  peek(): Uint8Array | undefined {
    return this.items[this.head];
  }

  shift(): Uint8Array | undefined {
    const b = this.items[this.head];
    if (b === undefined) return undefined;
    this.items[this.head] = EMPTY;
    this.head++;
    this.bytes -= b.byteLength;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return b;
  }

  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    return n;
  }
}
const EMPTY = new Uint8Array(0);

type PeerState = 'idle' | 'connecting' | 'open' | 'backoff' | 'closed';

/** The outbound side of one peer: its queue, its stream and its reconnect backoff. */
class PeerLink {
  readonly queue = new ByteQueue();
  private client: grpc.Client | null = null;
  private call: grpc.ClientWritableStream<unknown> | null = null;
  private state: PeerState = 'idle';
  private writable = true;
  private backoffTimer: ReturnType<typeof setTimeout> | null = null;
  private acceptTimer: ReturnType<typeof setTimeout> | null = null;
  private backoffMs: number;
  private failedSinceOpen = false;
  private everOpened = false;

  constructor(
    readonly id: NodeId,
    readonly address: string,
    private readonly owner: GrpcRaftTransport,
  ) {
    this.backoffMs = owner.limits.reconnectDelayMsMin;
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  /** Writes queued messages if the stream is open and writable; opens the stream if it is not there yet. */
  flush(): void {
    if (this.state === 'closed' || this.queue.length === 0) return;
    if (this.state === 'idle') this.open();
    if (this.state !== 'open' || this.call === null) return;
    const call = this.call;
    const { batchMessagesMax, batchBytesMax } = this.owner.limits;
    while (this.writable && this.queue.length > 0) {
      const messages: Uint8Array[] = [];
      let bytes = 0;
      for (let next = this.queue.peek(); next !== undefined; next = this.queue.peek()) {
        if (
          messages.length >= batchMessagesMax ||
          (messages.length > 0 && bytes + next.byteLength > batchBytesMax)
        )
          break;
        messages.push(next);
        bytes += next.byteLength;
        this.queue.shift();
      }
      this.owner.counters.batchSent(this.id, messages.length, bytes);
      this.writable = call.write({ from: this.owner.id, clusterId: this.owner.clusterIdBits, messages });
      if (!this.writable) this.owner.counters.stall(this.id);
    }
  }

  /**
   * Connects the channel (the HTTP/2 connection) now, without opening a stream, so the first message to
   * this peer — often a vote request right after a leader died — does not wait for a TCP and HTTP/2
   * handshake. gRPC keeps the connection up and re-dials a peer that is down with its own backoff.
   */
  warm(): void {
    if (this.state === 'closed') return;
    if (this.client === null) {
      this.client = new grpc.Client(this.address, this.owner.channelCredentials, this.owner.channelOptions);
    }
    this.client.getChannel().getConnectivityState(true);
  }

  private open(): void {
    if (this.client === null) {
      this.client = new grpc.Client(this.address, this.owner.channelCredentials, this.owner.channelOptions);
    }
    this.state = 'connecting';
    this.writable = true;
    if (this.everOpened) this.owner.counters.reconnect(this.id);
    this.everOpened = true;
    const call = this.client.makeClientStreamRequest<unknown, SendAckWire>(
      raftSendMethod.path,
      raftSendMethod.requestSerialize as (value: unknown) => Buffer,
      raftSendMethod.responseDeserialize,
      new grpc.Metadata(),
      {},
      (error) => this.onEnded(call, error),
    );
    this.call = call;
    call.on('metadata', () => this.onAccepted(call));
    call.on('drain', () => {
      if (this.call !== call) return;
      this.writable = true;
      this.flush();
    });
    // Failures arrive through the callback; a listener keeps an 'error' event from being unhandled.
    call.on('error', () => {});
    this.acceptTimer = setTimeout(() => {
      this.acceptTimer = null;
      if (this.call === call && this.state === 'connecting') call.cancel();
    }, this.owner.limits.connectTimeoutMs);
  }

  private clearAcceptTimer(): void {
    if (this.acceptTimer !== null) clearTimeout(this.acceptTimer);
    this.acceptTimer = null;
  }

  private onAccepted(call: grpc.ClientWritableStream<unknown>): void {
    if (this.call !== call || this.state !== 'connecting') return;
    this.clearAcceptTimer();
    this.state = 'open';
    this.backoffMs = this.owner.limits.reconnectDelayMsMin;
    if (this.failedSinceOpen) {
      this.owner.counters.log(
        'info',
        `up:${this.id}`,
        { self: this.owner.id, peer: this.id, address: this.address },
        'raft stream to peer re-established',
      );
    }
    this.failedSinceOpen = false;
    this.flush();
  }

  private onEnded(call: grpc.ClientWritableStream<unknown>, error: grpc.ServiceError | null): void {
    if (this.call !== call) return;
    this.clearAcceptTimer();
    this.call = null;
    this.writable = true;
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.owner.counters.streamError(this.id);
    const details = {
      self: this.owner.id,
      peer: this.id,
      address: this.address,
      code: error?.code,
      details: error?.details ?? 'stream ended',
    };
    if (error?.code === grpc.status.FAILED_PRECONDITION || error?.code === grpc.status.INVALID_ARGUMENT) {
      // A misconfiguration does not heal by retrying quickly: wait the longest.
      this.backoffMs = this.owner.limits.reconnectDelayMsMax;
      this.owner.counters.log(
        'error',
        `rejected:${this.id}`,
        details,
        'raft stream rejected by peer (cluster id or member id misconfigured?)',
      );
    } else if (wasOpen || !this.failedSinceOpen) {
      this.owner.counters.log(
        'warn',
        `down:${this.id}`,
        details,
        'raft stream to peer broken; reconnecting with backoff',
      );
    }
    this.failedSinceOpen = true;
    this.state = 'backoff';
    const jitter = 0.8 + 0.4 * Math.random();
    const delay = Math.round(this.backoffMs * jitter);
    this.backoffMs = Math.min(this.backoffMs * 2, this.owner.limits.reconnectDelayMsMax);
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = null;
      if (this.state !== 'backoff') return;
      this.state = 'idle';
      this.flush();
    }, delay);
  }

  /** Cancels the stream, closes the channel, and drops what is queued under `reason`. */
  close(reason: DropReason): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.backoffTimer !== null) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    this.clearAcceptTimer();
    const call = this.call;
    this.call = null;
    call?.cancel();
    this.client?.close();
    this.client = null;
    this.owner.counters.drop(reason, this.queue.clear(), this.id, { address: this.address });
  }
}

export class GrpcRaftTransport implements Transport, StatsSource {
  readonly id: NodeId;
  /** Decimal string of the uint64 cluster id. */
  readonly clusterId: string;
  /** The same, as sent (see U64Bits). */
  readonly clusterIdBits: U64Bits;
  readonly limits: GrpcTransportLimits;
  readonly counters: TransportCounters;
  readonly channelCredentials: grpc.ChannelCredentials;
  readonly channelOptions: grpc.ChannelOptions;
  private readonly logger: Logger;
  private readonly deliver: (message: Message) => void;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly dirty = new Set<PeerLink>();
  private flushScheduled = false;
  private server: grpc.Server | null = null;
  private stopped = false;
  private readonly inbound: InboundContext;

  constructor(private readonly options: GrpcRaftTransportOptions) {
    if (!isNodeId(options.id))
      throw new RangeError(`id must be a positive integer, got ${String(options.id)}`);
    this.id = options.id;
    this.clusterId = normaliseClusterId(options.clusterId);
    this.clusterIdBits = u64Bits(BigInt(this.clusterId));
    this.limits = { ...defaultGrpcTransportLimits, ...options.limits };
    checkLimits(this.limits, {
      messageBytesMax: MESSAGE_BYTES_LIMIT,
      batchBytesMax: MESSAGE_BYTES_LIMIT,
      batchMessagesMax: 1_000_000,
    });
    if (this.limits.reconnectDelayMsMin > this.limits.reconnectDelayMsMax) {
      throw new RangeError('reconnectDelayMsMin must be <= reconnectDelayMsMax');
    }
    this.logger = options.logger ?? silentLogger;
    this.deliver = options.deliver;
    // The configured peers keep their counters even if a membership change removes them later.
    const configured = new Set([...options.peers.keys()].filter((id) => id !== this.id));
    this.counters = new TransportCounters(
      this.id,
      this.logger,
      (id) => this.links.has(id) || configured.has(id),
    );
    this.channelCredentials = options.channelCredentials ?? grpc.credentials.createInsecure();
    const frameMax = frameBytesMax(this.limits);
    this.channelOptions = {
      'grpc.max_send_message_length': frameMax,
      'grpc.max_receive_message_length': 1024,
      'grpc.keepalive_time_ms': this.limits.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': this.limits.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': this.limits.reconnectDelayMsMin,
      'grpc.max_reconnect_backoff_ms': this.limits.reconnectDelayMsMax,
      // One channel per peer, not shared with other clients of the process: closing it closes its connection.
      'grpc.use_local_subchannel_pool': 1,
    };
    this.inbound = {
      self: this.id,
      messageBytesMax: this.limits.messageBytesMax,
      counters: this.counters,
      deliver: this.deliver,
      stopped: () => this.stopped,
    };
    this.setPeers(options.peers);
  }

  // ===================== outbound =====================

  send(message: Message): void {
    if (this.stopped) {
      this.counters.drop('stopped', 1, null, { type: message.type, to: message.to });
      return;
    }
    const link = this.links.get(message.to);
    if (link === undefined) {
      this.counters.drop('unknown-peer', 1, null, { type: message.type, to: message.to });
      return;
    }
    if (message.from !== this.id) {
      this.counters.drop('sender-mismatch', 1, message.to, { type: message.type, from: message.from });
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(message);
    } catch (error) {
      this.counters.drop('unencodable', 1, message.to, { type: message.type, err: error });
      return;
    }
    if (bytes.byteLength > this.limits.messageBytesMax) {
      this.counters.drop('oversized', 1, message.to, {
        type: message.type,
        bytes: bytes.byteLength,
        messageBytesMax: this.limits.messageBytesMax,
      });
      return;
    }
    if (link.queue.bytes + bytes.byteLength > this.limits.peerQueueBytesMax) {
      this.counters.drop('queue-full', 1, message.to, {
        type: message.type,
        queuedBytes: link.queue.bytes,
        peerQueueBytesMax: this.limits.peerQueueBytesMax,
      });
      return;
    }
    link.queue.push(bytes);
    this.markDirty(link);
  }

  private markDirty(link: PeerLink): void {
    this.dirty.add(link);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushDirty());
    }
  }

  private flushDirty(): void {
    this.flushScheduled = false;
    const links = [...this.dirty];
    this.dirty.clear();
    for (const link of links) link.flush();
  }

  /**
   * Replaces the peer set (membership changes). Removed peers' streams are closed and their queues dropped;
   * a peer whose address changed gets a new channel and keeps its queue; new peers' connections are dialled
   * at once, their streams opened on the first message.
   */
  setPeers(peers: PeerAddresses): void {
    if (this.stopped) return;
    for (const [id, address] of peers) {
      if (!isNodeId(id)) throw new RangeError(`peer id must be a positive integer, got ${String(id)}`);
      if (typeof address !== 'string' || address.length === 0)
        throw new RangeError(`peer ${id}: address must be 'host:port'`);
    }
    const moved = new Map<NodeId, PeerLink>();
    for (const [id, link] of this.links) {
      const address = peers.get(id);
      if (address === link.address) continue;
      if (address !== undefined && id !== this.id) moved.set(id, link);
      else link.close('peer-removed');
      this.links.delete(id);
      this.dirty.delete(link);
    }
    for (const [id, address] of peers) {
      if (id === this.id || this.links.has(id)) continue;
      const link = new PeerLink(id, address, this);
      this.links.set(id, link);
      this.counters.peer(id);
      link.warm();
      // A peer at a new address keeps the messages queued for it.
      const old = moved.get(id);
      if (old !== undefined) {
        for (let b = old.queue.shift(); b !== undefined; b = old.queue.shift()) link.queue.push(b);
        old.close('peer-removed');
        if (link.queue.length > 0) this.markDirty(link);
      }
    }
    this.counters.prune();
  }

  /** The current peer set. */
  peers(): PeerAddresses {
    return new Map([...this.links].map(([id, link]) => [id, link.address]));
  }

  stats(): TransportStats {
    const s = this.counters.stats();
    const peers = new Map(s.peers);
    for (const [id, link] of this.links) {
      const p = peers.get(id);
      if (p !== undefined)
        peers.set(id, {
          ...p,
          queuedMessages: link.queue.length,
          queuedBytes: link.queue.bytes,
          connected: link.connected,
        });
    }
    return { ...s, peers };
  }

  // ===================== inbound =====================

  /** Serves RaftTransport on `listen` ('host:port'; port 0 picks a free one). Resolves with the bound port. */
  startServer(listen: string): Promise<number> {
    if (this.stopped) return Promise.reject(new Error('transport stopped'));
    if (this.server !== null) return Promise.reject(new Error('server already started'));
    const frameMax = frameBytesMax(this.limits);
    const server = new grpc.Server({
      'grpc.max_receive_message_length': frameMax,
      'grpc.max_send_message_length': 1024,
      'grpc.keepalive_time_ms': this.limits.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': this.limits.keepaliveTimeoutMs,
    });
    server.addService(raftTransportService, {
      Send: (
        call: grpc.ServerReadableStream<InboundBatch, SendAckWire>,
        callback: grpc.sendUnaryData<SendAckWire>,
      ) => this.handleSend(call, callback),
    });
    this.server = server;
    return new Promise<number>((resolve, reject) => {
      server.bindAsync(
        listen,
        this.options.serverCredentials ?? grpc.ServerCredentials.createInsecure(),
        (error, port) => {
          if (error !== null) {
            if (this.server === server) this.server = null;
            server.forceShutdown();
            reject(error);
            return;
          }
          this.logger.info({ self: this.id, listen, port }, 'raft transport listening');
          resolve(port);
        },
      );
    });
  }

  private handleSend(
    call: grpc.ServerReadableStream<InboundBatch, SendAckWire>,
    callback: grpc.sendUnaryData<SendAckWire>,
  ): void {
    let done = false;
    let sender: NodeId | null = null;
    let batches = 0;
    let delivered = 0;
    const peerAddress = call.getPeer();
    const reject = (
      code: grpc.status,
      reason: DropReason,
      dropped: number,
      details: string,
      claimed: NodeId | null,
    ): void => {
      done = true;
      this.counters.streamRejected();
      this.counters.drop(reason, dropped, claimed, { remote: peerAddress, details });
      callback(statusError(code, details));
    };
    if (this.stopped) {
      done = true;
      callback(statusError(grpc.status.UNAVAILABLE, 'raft transport stopped'));
      return;
    }
    // Tells the sender the stream is accepted: it writes nothing before.
    call.sendMetadata(new grpc.Metadata());
    call.on('data', (batch: InboundBatch) => {
      if (done) return;
      if (this.stopped) {
        done = true;
        callback(statusError(grpc.status.UNAVAILABLE, 'raft transport stopped'));
        return;
      }
      if (batch === invalidBatch) {
        reject(grpc.status.INVALID_ARGUMENT, 'bad-batch', 1, 'frame is not a RaftBatch', sender);
        return;
      }
      const count = Array.isArray(batch.messages) ? batch.messages.length : 0;
      const from = parseNodeId(batch.from);
      if (from === null) {
        reject(
          grpc.status.INVALID_ARGUMENT,
          'bad-batch',
          count,
          `invalid sender id ${String(batch.from)}`,
          sender,
        );
        return;
      }
      if (batch.clusterId !== this.clusterId) {
        reject(
          grpc.status.FAILED_PRECONDITION,
          'wrong-cluster',
          count,
          `cluster id ${String(batch.clusterId)} is not this server's (${this.clusterId})`,
          from,
        );
        return;
      }
      if (from === this.id) {
        reject(
          grpc.status.FAILED_PRECONDITION,
          'bad-batch',
          count,
          `sender claims this server's own id ${from} (duplicate member id?)`,
          null,
        );
        return;
      }
      if (sender !== null && from !== sender) {
        reject(
          grpc.status.INVALID_ARGUMENT,
          'bad-batch',
          count,
          `sender changed from ${sender} to ${from} within one stream`,
          sender,
        );
        return;
      }
      sender = from;
      batches++;
      this.counters.batchReceived(from);
      delivered += deliverBatch(this.inbound, from, batch.messages);
    });
    call.on('end', () => {
      if (done) return;
      done = true;
      callback(null, { batches, messages: delivered });
    });
    call.on('error', (error) => {
      // Cancelled by the sender or its connection died: nothing to answer.
      done = true;
      this.logger.debug(
        { self: this.id, remote: peerAddress, sender, err: error },
        'inbound raft stream ended',
      );
    });
  }

  // ===================== lifecycle =====================

  /** Closes every stream and the server; queued messages are dropped. Final: a stopped transport stays stopped. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const link of this.links.values()) link.close('stopped');
    this.links.clear();
    this.dirty.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) {
      // Inbound streams are long-lived, so a graceful shutdown would wait for the senders: cut them.
      server.forceShutdown();
    }
    this.logger.info({ self: this.id }, 'raft transport stopped');
    await Promise.resolve();
  }
}
