/**
 * The simulated network: per-message loss, duplication and delay (reordering falls out of random delays),
 * and partitions as a set of blocked directed links. A message is checked against partitions both when it
 * is sent and when it arrives, so a partition also cuts messages already in flight.
 */
import type { Transport } from '../../src/raft/node-api.ts';
import { messageTypes, type Message, type NodeId } from '../../src/raft/types.ts';
import type { Prng } from './prng.ts';
import { ANY_EPOCH, type World } from './world.ts';

export interface NetworkProfile {
  readonly lossProbability: number;
  readonly duplicateProbability: number;
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  /** Probability that a message takes the slow path (a retransmit, a congested switch): reordering. */
  readonly slowProbability: number;
  readonly slowDelayMaxMs: number;
}

export type PartitionKind = 'isolate' | 'halves' | 'one-way' | 'majorities-ring' | 'bridge';

export interface Partition {
  readonly kind: PartitionKind;
  readonly description: string;
  /** Directed links (from -> to) that drop every message. */
  readonly blocked: ReadonlySet<number>;
}

/** Node ids are small; a directed link packs into one number. */
const NODE_ID_LIMIT = 1 << 16;

export function linkKey(from: NodeId, to: NodeId): number {
  return from * NODE_ID_LIMIT + to;
}

const messageTypeCode = new Map(messageTypes.map((type, i) => [type, i + 1]));

export interface NetworkStats {
  sent: number;
  delivered: number;
  lost: number;
  blocked: number;
  duplicated: number;
}

export class SimNetwork {
  private partition: Partition | null = null;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, lost: 0, blocked: 0, duplicated: 0 };

  constructor(
    private readonly world: World,
    private readonly random: Prng,
    private profile: NetworkProfile,
    /** Delivers a message to whichever incarnation of `to` is running (the caller gates crashed/paused). */
    private readonly deliver: (message: Message) => void,
  ) {}

  setProfile(profile: NetworkProfile): void {
    this.profile = profile;
  }

  get currentPartition(): Partition | null {
    return this.partition;
  }

  setPartition(partition: Partition | null): void {
    this.partition = partition;
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.partition !== null && this.partition.blocked.has(linkKey(from, to));
  }

  /** The Transport handed to one incarnation of a node; `isAlive` turns it off when that incarnation dies. */
  transportFor(nodeId: NodeId, isAlive: () => boolean): Transport {
    return {
      send: (message: Message) => {
        if (!isAlive()) return;
        if (message.from !== nodeId) throw new Error(`n${nodeId} sent a message claiming to be from n${message.from}`);
        this.send(message);
      },
    };
  }

  private send(message: Message): void {
    this.stats.sent++;
    if (this.isBlocked(message.from, message.to)) {
      this.stats.blocked++;
      return;
    }
    if (this.random.chance(this.profile.lossProbability)) {
      this.stats.lost++;
      return;
    }
    this.scheduleDelivery(message);
    if (this.random.chance(this.profile.duplicateProbability)) {
      this.stats.duplicated++;
      this.scheduleDelivery(message);
    }
  }

  private scheduleDelivery(message: Message): void {
    const p = this.profile;
    const delayMs = this.random.chance(p.slowProbability)
      ? this.random.floatBetween(p.delayMaxMs, Math.max(p.delayMaxMs, p.slowDelayMaxMs))
      : this.random.floatBetween(p.delayMinMs, p.delayMaxMs);
    this.world.schedule(delayMs, {
      kind: 'deliver',
      nodeId: message.to,
      epoch: ANY_EPOCH,
      traceKey: messageTraceKey(message),
      describe: () => describeMessage(message),
      run: () => {
        if (this.isBlocked(message.from, message.to)) {
          this.stats.blocked++;
          return;
        }
        this.stats.delivered++;
        this.deliver(message);
      },
    });
  }
}

function messageTraceKey(m: Message): number {
  // A cheap fingerprint: type, sender, term, index, entry count, commit, reject.
  let h = (messageTypeCode.get(m.type) ?? 0) | 0;
  h = Math.imul(h ^ m.from, 0x9e3779b1);
  h = Math.imul(h ^ m.term, 0x85ebca6b);
  h = Math.imul(h ^ m.index, 0xc2b2ae35);
  h = Math.imul(h ^ m.entries.length, 0x27d4eb2f);
  h = Math.imul(h ^ m.commit, 0x165667b1);
  return (h ^ (m.reject ? 1 : 0)) | 0;
}

export function describeMessage(m: Message): string {
  const entries = m.entries.length > 0 ? ` +${m.entries.length} [${m.entries[0]?.index}..]` : '';
  const reject = m.reject ? ` REJECT hint=${m.rejectHint}` : '';
  const snap = m.snapshot !== null ? ` snap@${m.snapshot.metadata.index} off=${m.snapshot.offset}` : '';
  return `n${m.from}->n${m.to} ${m.type} t${m.term} logTerm=${m.logTerm} idx=${m.index} commit=${m.commit}${entries}${reject}${snap}`;
}

/** Builds a partition of `kind` over `nodes` (sorted ids), using `random` for the choices. */
export function makePartition(kind: PartitionKind, nodes: readonly NodeId[], random: Prng, focus?: NodeId): Partition {
  const blocked = new Set<number>();
  const cut = (from: NodeId, to: NodeId): void => {
    if (from !== to) blocked.add(linkKey(from, to));
  };
  const cutBoth = (a: NodeId, b: NodeId): void => {
    cut(a, b);
    cut(b, a);
  };
  switch (kind) {
    case 'isolate': {
      const victim = focus ?? random.pick(nodes);
      for (const other of nodes) cutBoth(victim, other);
      return { kind, description: `isolate n${victim}`, blocked };
    }
    case 'halves': {
      const shuffled = random.shuffled(nodes);
      const sideSize = random.intBetween(1, Math.max(1, nodes.length - 1));
      const side = shuffled.slice(0, sideSize);
      const rest = shuffled.slice(sideSize);
      for (const a of side) for (const b of rest) cutBoth(a, b);
      return { kind, description: `halves ${formatGroup(side)} | ${formatGroup(rest)}`, blocked };
    }
    case 'one-way': {
      // `senders` cannot reach `receivers`, but hear them fine.
      const shuffled = random.shuffled(nodes);
      const sideSize = random.intBetween(1, Math.max(1, nodes.length - 1));
      const senders = focus !== undefined ? [focus] : shuffled.slice(0, sideSize);
      const receivers = nodes.filter((n) => !senders.includes(n));
      for (const a of senders) for (const b of receivers) cut(a, b);
      return { kind, description: `one-way ${formatGroup(senders)} -/-> ${formatGroup(receivers)}`, blocked };
    }
    case 'majorities-ring': {
      // Each node reaches only its ring neighbours: with 5 nodes every node sees a majority (itself and two
      // neighbours), but no two nodes see the same majority.
      const ring = random.shuffled(nodes);
      const n = ring.length;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const distance = Math.min(Math.abs(i - j), n - Math.abs(i - j));
          if (distance > 1) cut(ring[i] as NodeId, ring[j] as NodeId);
        }
      }
      return { kind, description: `majorities ring ${ring.map((id) => `n${id}`).join('-')}`, blocked };
    }
    case 'bridge': {
      // Two groups that cannot talk to each other, joined only through one bridge node.
      const shuffled = random.shuffled(nodes);
      const bridge = shuffled[0] as NodeId;
      const others = shuffled.slice(1);
      const half = Math.ceil(others.length / 2);
      const left = others.slice(0, half);
      const right = others.slice(half);
      for (const a of left) for (const b of right) cutBoth(a, b);
      return { kind, description: `bridge n${bridge} between ${formatGroup(left)} and ${formatGroup(right)}`, blocked };
    }
  }
}

function formatGroup(ids: readonly NodeId[]): string {
  return `{${ids.map((id) => `n${id}`).join(',')}}`;
}
