/**
 * An in-process Raft transport: a hub that endpoints connect to. It behaves like the gRPC transport minus the
 * sockets: messages are encoded with the codec when sent (oversized ones refused), everything one endpoint
 * sends to one peer in an event-loop turn travels as one batch, delivered on setImmediate, and the receiver
 * decodes and validates exactly as the gRPC server does. Switches cut links for tests: block one direction,
 * isolate a node, partition the members into groups.
 */
import { encodeMessage } from '../raft/codec.ts';
import type { Logger, Transport } from '../raft/node-api.ts';
import { silentLogger } from '../raft/node-api.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { deliverBatch } from './inbound.ts';
import type { InboundContext } from './inbound.ts';
import { TransportCounters, checkLimits } from './transport-stats.ts';
import type { StatsSource, TransportStats } from './transport-stats.ts';

export interface LocalTransportLimits {
  /** An encoded Raft message larger than this is refused (never sent) and counted. */
  readonly messageBytesMax: number;
  /** Encoded bytes sent to one peer within one turn, at most; messages past it are dropped. */
  readonly peerQueueBytesMax: number;
  /** Messages in one batch, at most. */
  readonly batchMessagesMax: number;
}

export const defaultLocalTransportLimits: LocalTransportLimits = {
  messageBytesMax: 16 * 1024 * 1024,
  peerQueueBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 1_024,
};

export interface LocalRaftHubOptions {
  readonly limits?: Partial<LocalTransportLimits>;
  readonly logger?: Logger;
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}

export class LocalRaftHub {
  readonly limits: LocalTransportLimits;
  readonly logger: Logger;
  private readonly endpoints = new Map<NodeId, LocalRaftTransport>();
  /** Every id that ever connected: the default peer set of an endpoint. */
  private readonly members = new Set<NodeId>();
  private readonly blocked = new Set<string>();
  private readonly isolated = new Set<NodeId>();
  private groups: Map<NodeId, number> | null = null;

  constructor(options: LocalRaftHubOptions = {}) {
    this.limits = { ...defaultLocalTransportLimits, ...options.limits };
    checkLimits(this.limits);
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Connects endpoint `id` (a fresh one: a restarted node reconnects with the same id after the old
   * endpoint stopped). `deliver` receives its validated inbound messages.
   */
  connect(
    id: NodeId,
    deliver: (message: Message) => void,
    options: { limits?: Partial<LocalTransportLimits>; logger?: Logger } = {},
  ): LocalRaftTransport {
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new RangeError(`id must be a positive integer, got ${id}`);
    if (this.endpoints.has(id)) throw new Error(`endpoint ${id} is already connected`);
    const limits = { ...this.limits, ...options.limits };
    checkLimits(limits);
    const endpoint = new LocalRaftTransport(this, id, deliver, limits, options.logger ?? this.logger);
    this.endpoints.set(id, endpoint);
    this.members.add(id);
    return endpoint;
  }

  /** Drops every message from `from` to `to` (one direction) until unblocked or healed. */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(linkKey(from, to));
  }

  unblock(from: NodeId, to: NodeId): void {
    this.blocked.delete(linkKey(from, to));
  }

  /** Cuts a node off from everyone, both directions. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Only members of the same group talk; a member in no group is cut off from all grouped ones. */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    this.groups = new Map();
    groups.forEach((g, i) => g.forEach((id) => this.groups!.set(id, i)));
  }

  /** Clears every switch. */
  heal(): void {
    this.blocked.clear();
    this.isolated.clear();
    this.groups = null;
  }

  /** Whether a message from `from` to `to` would pass the switches now. */
  linkUp(from: NodeId, to: NodeId): boolean {
    if (this.blocked.has(linkKey(from, to)) || this.isolated.has(from) || this.isolated.has(to)) return false;
    if (this.groups !== null) {
      const a = this.groups.get(from);
      const b = this.groups.get(to);
      if (a !== b) return false;
    }
    return true;
  }

  /**
   * Hands raw message bytes to endpoint `to` as a batch claimed to come from `from`, bypassing the sender's
   * checks (tests of inbound validation). Returns how many were delivered.
   */
  injectRaw(from: NodeId, to: NodeId, messages: readonly Uint8Array[]): number {
    const endpoint = this.endpoints.get(to);
    if (endpoint === undefined) throw new Error(`no endpoint ${to}`);
    return endpoint.receiveBatch(from, messages);
  }

  /** The live endpoint with this id, if any. */
  endpoint(id: NodeId): LocalRaftTransport | undefined {
    return this.endpoints.get(id);
  }

  isMember(id: NodeId): boolean {
    return this.members.has(id);
  }

  /** @internal Called by an endpoint's stop(). */
  detach(endpoint: LocalRaftTransport): void {
    if (this.endpoints.get(endpoint.id) === endpoint) this.endpoints.delete(endpoint.id);
  }
}

interface Pending {
  messages: Uint8Array[];
  bytes: number;
}

export class LocalRaftTransport implements Transport, StatsSource {
  private readonly counters: TransportCounters;
  private readonly inbound: InboundContext;
  private peerSet: ReadonlySet<NodeId> | null = null;
  private pending = new Map<NodeId, Pending>();
  private flushScheduled = false;
  private stopped = false;

  constructor(
    private readonly hub: LocalRaftHub,
    readonly id: NodeId,
    deliver: (message: Message) => void,
    readonly limits: LocalTransportLimits,
    logger: Logger,
  ) {
    this.counters = new TransportCounters(id, logger, (peer) => this.knows(peer));
    this.inbound = {
      self: id,
      messageBytesMax: limits.messageBytesMax,
      counters: this.counters,
      deliver,
      stopped: () => this.stopped,
    };
  }

  send(message: Message): void {
    const to = message.to;
    if (this.stopped) {
      this.counters.drop('stopped', 1, null, { type: message.type, to });
      return;
    }
    if (!this.knows(to) || to === this.id) {
      this.counters.drop('unknown-peer', 1, null, { type: message.type, to });
      return;
    }
    if (message.from !== this.id) {
      this.counters.drop('sender-mismatch', 1, to, { type: message.type, from: message.from });
      return;
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(message);
    } catch (error) {
      this.counters.drop('unencodable', 1, to, { type: message.type, err: error });
      return;
    }
    if (bytes.byteLength > this.limits.messageBytesMax) {
      this.counters.drop('oversized', 1, to, {
        type: message.type,
        bytes: bytes.byteLength,
        messageBytesMax: this.limits.messageBytesMax,
      });
      return;
    }
    let p = this.pending.get(to);
    if (p === undefined) {
      p = { messages: [], bytes: 0 };
      this.pending.set(to, p);
    }
    if (p.bytes + bytes.byteLength > this.limits.peerQueueBytesMax) {
      this.counters.drop('queue-full', 1, to, { type: message.type, queuedBytes: p.bytes });
      return;
    }
    p.messages.push(bytes);
    p.bytes += bytes.byteLength;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    for (const [to, p] of pending) {
      for (let i = 0; i < p.messages.length; i += this.limits.batchMessagesMax) {
        if (this.stopped) {
          this.counters.drop('stopped', p.messages.length - i, to);
          break;
        }
        const batch = p.messages.slice(i, i + this.limits.batchMessagesMax);
        const target = this.hub.endpoint(to);
        if (target === undefined) {
          this.counters.drop('peer-down', batch.length, to);
          continue;
        }
        if (!this.hub.linkUp(this.id, to)) {
          this.counters.drop('partitioned', batch.length, to);
          continue;
        }
        let bytes = 0;
        for (const b of batch) bytes += b.byteLength;
        this.counters.batchSent(to, batch.length, bytes);
        target.receiveBatch(this.id, batch);
      }
    }
  }

  /** @internal The receiving side of a batch (validation shared with the gRPC server). */
  receiveBatch(from: NodeId, messages: readonly Uint8Array[]): number {
    if (this.stopped) return 0;
    this.counters.batchReceived(from);
    return deliverBatch(this.inbound, from, messages);
  }

  /** Whether `id` is in the peer set. */
  private knows(id: NodeId): boolean {
    return this.peerSet === null ? this.hub.isMember(id) : this.peerSet.has(id);
  }

  /** Restricts the peer set (membership changes); null means every endpoint that ever joined the hub. */
  setPeers(peers: Iterable<NodeId> | null): void {
    this.peerSet = peers === null ? null : new Set(peers);
    this.counters.prune();
  }

  stats(): TransportStats {
    const s = this.counters.stats();
    const peers = new Map(s.peers);
    for (const [id, p] of this.pending) {
      const ps = peers.get(id);
      if (ps !== undefined) peers.set(id, { ...ps, queuedMessages: p.messages.length, queuedBytes: p.bytes });
    }
    for (const [id, ps] of peers)
      peers.set(id, {
        ...ps,
        connected: this.hub.endpoint(id) !== undefined && this.hub.linkUp(this.id, id),
      });
    return { ...s, peers };
  }

  /** Leaves the hub: later messages to this id are dropped ('peer-down') until an endpoint connects again. */
  stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.hub.detach(this);
    }
    return Promise.resolve();
  }
}
