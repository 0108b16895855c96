/**
 * Counters and limits shared by the Raft transports (gRPC between servers, in-process for tests), so the
 * metadata server exports the same metrics whichever transport it runs, and one conformance suite checks both.
 */
import type { Logger } from '../raft/node-api.ts';
import type { NodeId } from '../raft/types.ts';

/** Why a message was not sent or not delivered. Raft tolerates loss; every drop is counted under one reason. */
export const dropReasons = [
  /** Outbound: the encoded message is larger than messageBytesMax (never sent). Inbound: the same check. */
  'oversized',
  /** Outbound: the peer's queue already holds peerQueueBytesMax bytes. */
  'queue-full',
  /** Outbound: the destination is not in the peer set (or is this node). */
  'unknown-peer',
  /** Outbound: the message's `from` is not this node. Inbound: its `from` differs from its batch's sender. */
  'sender-mismatch',
  /** Outbound: the message could not be encoded. */
  'unencodable',
  /** Inbound: the bytes did not decode as a Raft message. */
  'undecodable',
  /** Inbound: the message's `to` is not this node. */
  'wrong-destination',
  /** Inbound: the messages of a batch for another cluster (the stream is rejected). */
  'wrong-cluster',
  /** Inbound: the messages of a batch that was not a valid RaftBatch or had no valid sender (stream rejected). */
  'bad-batch',
  /** The deliver callback threw for this message. */
  'deliver-error',
  /** Queued for a peer that setPeers removed or re-addressed. */
  'peer-removed',
  /** Sent after stop(), or still queued at stop(). */
  'stopped',
  /** In-process transport: the destination endpoint is stopped. */
  'peer-down',
  /** In-process transport: a drop/partition switch cut the link. */
  'partitioned',
] as const;
export type DropReason = (typeof dropReasons)[number];

export type DropCounts = Record<DropReason, number>;

export interface PeerTransportStats {
  /** Messages and encoded bytes handed to the peer's stream (or delivered, in-process), and the batches carrying them. */
  readonly messagesSent: number;
  readonly bytesSent: number;
  readonly batchesSent: number;
  /** Messages and encoded bytes received from the peer and delivered, and the batches that carried them. */
  readonly messagesReceived: number;
  readonly bytesReceived: number;
  readonly batchesReceived: number;
  /** Drops attributed to this peer (as destination or as sender). */
  readonly dropped: DropCounts;
  /** Messages and bytes waiting in the outbound queue now. */
  readonly queuedMessages: number;
  readonly queuedBytes: number;
  /** Whether an outbound stream to the peer is established now. */
  readonly connected: boolean;
  /** Outbound streams opened again after a broken one. */
  readonly reconnects: number;
  /** Outbound streams that ended with an error (including failed connection attempts). */
  readonly streamErrors: number;
  /** Times a write found the stream's buffer full, so sending paused until it drained (backpressure). */
  readonly stalls: number;
}

export interface TransportStats {
  readonly messagesSent: number;
  readonly bytesSent: number;
  readonly batchesSent: number;
  readonly messagesReceived: number;
  readonly bytesReceived: number;
  readonly batchesReceived: number;
  readonly reconnects: number;
  readonly streamErrors: number;
  readonly stalls: number;
  /** Inbound streams ended with an error status (wrong cluster, invalid batch). */
  readonly streamsRejected: number;
  readonly dropped: DropCounts;
  /** Per peer: only the ids of the transport's peer set (see TransportCounters). */
  readonly peers: ReadonlyMap<NodeId, PeerTransportStats>;
  /**
   * What batches claimed to come from ids outside the peer set (anyone can connect to the Raft port and
   * claim any id), counted together: one bucket, however many ids were claimed.
   */
  readonly unknownPeers: PeerTransportStats;
}

/** The common surface of the Raft transports beyond Transport.send. */
export interface StatsSource {
  stats(): TransportStats;
}

export function emptyDropCounts(): DropCounts {
  return Object.fromEntries(dropReasons.map((r) => [r, 0])) as DropCounts;
}

export function totalDropped(counts: DropCounts): number {
  let n = 0;
  for (const r of dropReasons) n += counts[r];
  return n;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type MutablePeerStats = Mutable<PeerTransportStats>;

/** Drops that point at a bug or a misconfiguration are warnings (a throwing deliver callback, an error). */
const dropLogLevel: Partial<Record<DropReason, 'warn' | 'error'>> = {
  oversized: 'warn',
  'queue-full': 'warn',
  'sender-mismatch': 'warn',
  unencodable: 'error',
  undecodable: 'warn',
  'wrong-destination': 'warn',
  'wrong-cluster': 'warn',
  'bad-batch': 'warn',
  'deliver-error': 'error',
};

/** Logs of one kind are written at most once per this many milliseconds; the rest are counted as suppressed. */
export const dropLogIntervalMs = 1_000;

function emptyPeerStats(): MutablePeerStats {
  return {
    messagesSent: 0,
    bytesSent: 0,
    batchesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    batchesReceived: 0,
    dropped: emptyDropCounts(),
    queuedMessages: 0,
    queuedBytes: 0,
    connected: false,
    reconnects: 0,
    streamErrors: 0,
    stalls: 0,
  };
}

/** The log-throttle key segment of every id outside the peer set. */
const UNKNOWN_PEER_KEY = 'unknown';

/**
 * The counters of one transport endpoint, and rate-limited logging of drops: a flood of bad input costs a
 * counter increment per message and at most one log line per reason and peer per second.
 *
 * Per-peer counters and log keys exist only for the ids `isKnown` accepts (the transport's peer set): the
 * Raft port is unauthenticated, and a batch may claim any sender id, so everything attributed to other ids
 * goes to one `unknownPeers` bucket and one log key per reason. prune() forgets the ids that left the peer
 * set (the transport calls it when the set changes). Memory is bounded by the peer set, not by the input.
 */
export class TransportCounters {
  private readonly peerStats = new Map<NodeId, MutablePeerStats>();
  private readonly unknownPeers = emptyPeerStats();
  private readonly dropped = emptyDropCounts();
  private readonly totals = {
    messagesSent: 0,
    bytesSent: 0,
    batchesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    batchesReceived: 0,
    reconnects: 0,
    streamErrors: 0,
    stalls: 0,
    streamsRejected: 0,
  };
  private readonly lastLog = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly self: NodeId,
    private readonly logger: Logger,
    /** Whether `id` is in the transport's peer set (gets counters of its own). */
    private readonly isKnown: (id: NodeId) => boolean,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** The counters of peer `id`, or the shared bucket of unknown ids. */
  peer(id: NodeId): MutablePeerStats {
    if (!this.isKnown(id)) return this.unknownPeers;
    let s = this.peerStats.get(id);
    if (s === undefined) {
      s = emptyPeerStats();
      this.peerStats.set(id, s);
    }
    return s;
  }

  /** Forgets the counters and log keys of ids no longer known (call after the peer set changed). */
  prune(): void {
    for (const id of this.peerStats.keys()) if (!this.isKnown(id)) this.peerStats.delete(id);
    for (const key of this.lastLog.keys()) {
      const peer = Number(key.slice(key.lastIndexOf(':') + 1));
      if (Number.isSafeInteger(peer) && peer > 0 && !this.isKnown(peer)) this.lastLog.delete(key);
    }
  }

  /** The log-key segment of `peer`: its id if known, else one shared segment. */
  private peerKey(peer: NodeId | null): string {
    if (peer === null) return '-';
    return this.isKnown(peer) ? String(peer) : UNKNOWN_PEER_KEY;
  }

  batchSent(peer: NodeId, messages: number, bytes: number): void {
    const s = this.peer(peer);
    s.batchesSent++;
    s.messagesSent += messages;
    s.bytesSent += bytes;
    this.totals.batchesSent++;
    this.totals.messagesSent += messages;
    this.totals.bytesSent += bytes;
  }

  batchReceived(peer: NodeId): void {
    this.peer(peer).batchesReceived++;
    this.totals.batchesReceived++;
  }

  messageReceived(peer: NodeId, bytes: number): void {
    const s = this.peer(peer);
    s.messagesReceived++;
    s.bytesReceived += bytes;
    this.totals.messagesReceived++;
    this.totals.bytesReceived += bytes;
  }

  reconnect(peer: NodeId): void {
    this.peer(peer).reconnects++;
    this.totals.reconnects++;
  }

  streamError(peer: NodeId): void {
    this.peer(peer).streamErrors++;
    this.totals.streamErrors++;
  }

  stall(peer: NodeId): void {
    this.peer(peer).stalls++;
    this.totals.stalls++;
  }

  streamRejected(): void {
    this.totals.streamsRejected++;
  }

  /**
   * Counts `count` dropped messages and logs (rate-limited). `peer` is the destination (outbound) or the
   * claimed sender (inbound), when there is one worth a per-peer counter.
   */
  drop(reason: DropReason, count: number, peer: NodeId | null, details: object = {}): void {
    if (count <= 0) return;
    this.dropped[reason] += count;
    if (peer !== null) this.peer(peer).dropped[reason] += count;
    this.log(
      dropLogLevel[reason] ?? 'debug',
      `drop:${reason}:${this.peerKey(peer)}`,
      {
        self: this.self,
        peer,
        reason,
        count,
        ...details,
      },
      `raft transport dropped ${count === 1 ? 'a message' : `${count} messages`}: ${reason}`,
    );
  }

  /** Logs at most once per dropLogIntervalMs for `key`, reporting how many were suppressed since. */
  log(level: 'debug' | 'info' | 'warn' | 'error', key: string, obj: object, msg: string): void {
    const now = this.nowMs();
    const last = this.lastLog.get(key);
    if (last !== undefined && now - last.atMs < dropLogIntervalMs) {
      last.suppressed++;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.lastLog.set(key, { atMs: now, suppressed: 0 });
    this.logger[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  }

  stats(): TransportStats {
    const peers = new Map<NodeId, PeerTransportStats>();
    for (const [id, s] of this.peerStats) peers.set(id, { ...s, dropped: { ...s.dropped } });
    const unknownPeers = { ...this.unknownPeers, dropped: { ...this.unknownPeers.dropped } };
    return { ...this.totals, dropped: { ...this.dropped }, peers, unknownPeers };
  }
}

/** Validates that each named limit is a positive integer (and at most `max`, when given). */
export function checkLimits(limits: object, max: Partial<Record<string, number>> = {}): void {
  for (const [name, value] of Object.entries(limits)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`transport limit ${name} must be a positive integer, got ${String(value)}`);
    }
    const m = max[name];
    if (m !== undefined && value > m)
      throw new RangeError(`transport limit ${name} must be at most ${m}, got ${value}`);
  }
}
