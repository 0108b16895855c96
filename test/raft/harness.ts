/**
 * A synchronous, in-memory network of Raft cores for scenario tests (etcd's `network` helper): messages are
 * delivered breadth-first until the network is quiet; every Ready is "persisted" at once and advanced.
 */
import { raftConfig, type PlantedBug, type RaftConfig } from '../../src/raft/config.ts';
import { Raft } from '../../src/raft/raft.ts';
import type { Entry, Message, NodeId, Snapshot } from '../../src/raft/types.ts';
import { emptyHardState } from '../../src/raft/types.ts';

/** A deterministic RandomSource for tests. */
export function seededRandom(seed: number): { int(n: number): number } {
  let s = seed >>> 0 || 1;
  return {
    int(n: number): number {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      return s % n;
    },
  };
}

export function bootSnapshot(voters: readonly NodeId[]): Snapshot {
  return {
    metadata: { index: 1, term: 1, confState: { voters: [...voters], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: new Uint8Array(0),
  };
}

export function newRaft(id: NodeId, voters: readonly NodeId[], overrides: Partial<RaftConfig> = {}): Raft {
  const config = raftConfig({ id, random: seededRandom(id * 7919), ...overrides });
  return new Raft(config, { hardState: { ...emptyHardState, term: 1, commit: 1 }, snapshot: bootSnapshot(voters), entries: [] });
}

export class Network {
  readonly nodes = new Map<NodeId, Raft>();
  /** Applied entries per node, in order. */
  readonly applied = new Map<NodeId, Entry[]>();
  readonly delivered: Message[] = [];
  private readonly dropped = new Set<string>();
  private readonly isolated = new Set<NodeId>();
  dropFilter: ((m: Message) => boolean) | null = null;

  constructor(ids: readonly NodeId[], overrides: Partial<RaftConfig> = {}, bugs: PlantedBug[] = []) {
    for (const id of ids) {
      this.nodes.set(id, newRaft(id, ids, { ...overrides, bugs: new Set(bugs) }));
      this.applied.set(id, []);
    }
  }

  node(id: NodeId): Raft {
    const r = this.nodes.get(id);
    if (r === undefined) throw new Error(`no node ${id}`);
    return r;
  }

  cut(a: NodeId, b: NodeId): void {
    this.dropped.add(`${a}-${b}`);
    this.dropped.add(`${b}-${a}`);
  }

  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  recover(): void {
    this.dropped.clear();
    this.isolated.clear();
    this.dropFilter = null;
  }

  /** Collects one node's Ready, applying and advancing it; returns its outgoing messages. */
  private drain(id: NodeId): Message[] {
    const r = this.node(id);
    const out: Message[] = [];
    while (r.hasReady()) {
      const rd = r.ready();
      out.push(...rd.messages, ...rd.messagesAfterPersist);
      const log = this.applied.get(id)!;
      for (const e of rd.committedEntries) log.push(e);
      r.advance();
    }
    return out;
  }

  private deliverable(m: Message): boolean {
    if (this.isolated.has(m.from) || this.isolated.has(m.to)) return false;
    if (this.dropped.has(`${m.from}-${m.to}`)) return false;
    if (this.dropFilter?.(m) === true) return false;
    return this.nodes.has(m.to);
  }

  /** Delivers messages until the network is quiet. */
  stabilize(maxMessages = 100_000): void {
    const queue: Message[] = [];
    for (const id of this.nodes.keys()) queue.push(...this.drain(id));
    let count = 0;
    while (queue.length > 0) {
      if (++count > maxMessages) throw new Error('network did not stabilize');
      const m = queue.shift()!;
      if (!this.deliverable(m)) continue;
      this.delivered.push(m);
      this.node(m.to).step(m);
      queue.push(...this.drain(m.to));
      queue.push(...this.drain(m.from));
    }
  }

  /** Steps a message into its target and stabilizes. */
  send(m: Message): void {
    this.node(m.to).step(m);
    this.stabilize();
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.node(id).tick();
  }

  campaign(id: NodeId): void {
    this.node(id).campaignNow();
    this.stabilize();
  }

  leader(): NodeId | null {
    for (const [id, r] of this.nodes) if (r.role === 'leader') return id;
    return null;
  }

  propose(id: NodeId, text: string): { index: number; term: number } {
    const res = this.node(id).propose([new TextEncoder().encode(text)]);
    this.stabilize();
    return res;
  }
}

export function msg(partial: Partial<Message> & Pick<Message, 'type' | 'from' | 'to' | 'term'>): Message {
  return { logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, context: null, snapshot: null, ...partial };
}

export function texts(entries: readonly Entry[]): string[] {
  return entries.filter((e) => e.data.byteLength > 0).map((e) => new TextDecoder().decode(e.data));
}
