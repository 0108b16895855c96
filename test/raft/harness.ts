/**
 * A synchronous, in-memory network of Raft cores for scenario tests (etcd's `network` helper): messages are
 * delivered breadth-first until the network is quiet; every Ready is "persisted" at once and advanced.
 */
import { raftConfig, type PlantedBug, type RaftConfig } from '../../src/raft/config.ts';
import { Raft } from '../../src/raft/raft.ts';
import type { Entry, Message, NodeId, Snapshot } from '../../src/raft/types.ts';
import { emptyHardState } from '../../src/raft/types.ts';
import type { HardState, ReadState } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';

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

// ----- helpers added for the paper/property suites (append-only) -----

/** Runs every pending Ready of one core, "persisting" and advancing it; returns what it produced. */
export function drainReady(r: Raft): { messages: Message[]; readStates: ReadState[]; committed: Entry[]; snapshots: Snapshot[] } {
  const out = { messages: [] as Message[], readStates: [] as ReadState[], committed: [] as Entry[], snapshots: [] as Snapshot[] };
  while (r.hasReady()) {
    const rd = r.ready();
    out.messages.push(...rd.messages, ...rd.messagesAfterPersist);
    out.readStates.push(...rd.readStates);
    out.committed.push(...rd.committedEntries);
    if (rd.snapshot !== null) out.snapshots.push(rd.snapshot);
    r.advance();
  }
  return out;
}

/** Entries with the given terms, starting at `firstIndex` (default 2, just after the bootstrap snapshot). */
export function entriesWithTerms(terms: readonly number[], firstIndex = 2): Entry[] {
  return terms.map((term, i) => ({ term, index: firstIndex + i, type: EntryType.Normal, data: new TextEncoder().encode(`e${firstIndex + i}t${term}`) }));
}

/**
 * A founding member (bootstrap snapshot at index 1 term 1 for `voters`) restarted with a durable log:
 * `entries` from index 2 on, and the given hard state.
 */
export function newRaftWithLog(
  id: NodeId,
  voters: readonly NodeId[],
  entries: readonly Entry[],
  hardState: Partial<HardState>,
  overrides: Partial<RaftConfig> = {},
): Raft {
  const config = raftConfig({ id, random: seededRandom(id * 7919), ...overrides });
  const hs: HardState = { ...emptyHardState, term: 1, commit: 1, ...hardState };
  return new Raft(config, { hardState: hs, snapshot: bootSnapshot(voters), entries });
}

/** A brand-new member with no state at all (it learns everything from the leader, by snapshot). */
export function newEmptyRaft(id: NodeId, overrides: Partial<RaftConfig> = {}): Raft {
  const config = raftConfig({ id, random: seededRandom(id * 7919), ...overrides });
  return new Raft(config, { hardState: emptyHardState, snapshot: null, entries: [] });
}

/** Puts a core into (or replaces one in) a network. */
export function putNode(net: Network, r: Raft): void {
  net.nodes.set(r.id, r);
  net.applied.set(r.id, []);
}

/** The terms of a core's log, index firstIndex-1 (the compaction point) through lastIndex. */
export function logTerms(r: Raft): number[] {
  const out: number[] = [];
  for (let i = r.log.firstIndex() - 1; i <= r.log.lastIndex(); i++) out.push(r.log.term(i));
  return out;
}

/** Records every ReadState each node of the network hands out (the network itself discards them). */
export function recordReadStates(net: Network): Map<NodeId, ReadState[]> {
  const seen = new Map<NodeId, ReadState[]>();
  for (const [id, r] of net.nodes) {
    const list: ReadState[] = [];
    seen.set(id, list);
    const original = r.ready.bind(r);
    r.ready = () => {
      const rd = original();
      list.push(...rd.readStates);
      return rd;
    };
  }
  return seen;
}

/** A RandomSource that always answers `k` (mod n): the randomized election timeout becomes electionTicks + k. */
export function fixedRandom(k: number): { int(n: number): number } {
  return { int: (n: number) => k % n };
}

/** Ticks every node once per round and stabilizes after each round. */
export function tickAll(net: Network, rounds: number, only?: readonly NodeId[]): void {
  for (let i = 0; i < rounds; i++) {
    for (const id of only ?? [...net.nodes.keys()]) net.node(id).tick();
    net.stabilize();
  }
}

/**
 * Simulates a crash and restart of one node: a new core is built from what the old one had made durable
 * (every Ready of the network is persisted at once, so that is its whole log and hard state). The state
 * machine keeps what it applied. Messages the old core had not sent yet are lost.
 */
export function restartNode(net: Network, id: NodeId): Raft {
  const old = net.node(id);
  const entries: Entry[] = [];
  for (let i = old.log.firstIndex(); i <= old.log.lastIndex(); i++) entries.push(old.log.entryAt(i));
  const r = new Raft({ ...old.config, applied: old.log.applied }, { hardState: old.hardState(), snapshot: old.log.snapshot, entries });
  net.nodes.set(id, r);
  return r;
}
