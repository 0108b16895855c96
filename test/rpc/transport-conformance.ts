/**
 * One suite for every Raft transport (gRPC, in-process): delivery, order, batching, limits, reconnects,
 * inbound validation, and a real 3-node RaftNode group electing, committing and failing over on top of it.
 * Each implementation provides a TransportFixture; its test file calls transportConformance(fixture).
 */
import t from 'tap';
import type { Test } from 'tap';
import { encodeMessage } from '../../src/raft/codec.ts';
import type { Logger, StateMachine, Transport } from '../../src/raft/node-api.ts';
import { RaftNode } from '../../src/raft/node.ts';
import type { Entry, Message, NodeId, Snapshot } from '../../src/raft/types.ts';
import { systemClock, systemRandom } from '../../src/runtime/clock.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { totalDropped as countDropped } from '../../src/rpc/transport-stats.ts';
import type { DropReason, StatsSource, TransportStats } from '../../src/rpc/transport-stats.ts';

function totalDropped(s: TransportStats): number {
  return countDropped(s.dropped);
}

// ===================== the fixture contract =====================

export interface TestLimits {
  readonly messageBytesMax: number;
  readonly peerQueueBytesMax: number;
  readonly batchMessagesMax: number;
}

export interface HarnessOptions {
  readonly limits: TestLimits;
  readonly logger: Logger;
}

export interface Endpoint {
  readonly id: NodeId;
  readonly transport: Transport & StatsSource;
}

export interface Harness {
  /** Starts endpoint `id` (again, after stop(): a restarted server at the same address). */
  start(id: NodeId, deliver: (m: Message) => void): Promise<Endpoint>;
  /** Stops endpoint `id` (its server goes down; its queued messages are dropped). */
  stop(id: NodeId): Promise<void>;
  /** Restricts the peer set of endpoint `id` (membership change). */
  setPeers(id: NodeId, peers: readonly NodeId[]): void;
  /** Hands raw message bytes to `to` as one batch from `from`, through the real inbound path; resolves once processed. */
  injectRaw(from: NodeId, to: NodeId, messages: readonly Uint8Array[]): Promise<void>;
  /** Stops everything. */
  close(): Promise<void>;
}

export interface TransportFixture {
  readonly name: string;
  /** Whether the transport has streams to re-establish (counted in stats().reconnects). */
  readonly countsReconnects: boolean;
  create(ids: readonly NodeId[], options: HarnessOptions): Promise<Harness>;
}

export const testLimits: TestLimits = {
  messageBytesMax: 64 * 1024,
  peerQueueBytesMax: 8 * 1024 * 1024,
  batchMessagesMax: 64,
};

// ===================== helpers =====================

export function message(from: NodeId, to: NodeId, index: number, overrides: Partial<Message> = {}): Message {
  return {
    type: 'app',
    from,
    to,
    term: 1,
    logTerm: 0,
    index,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: null,
    snapshot: null,
    ...overrides,
  };
}

export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly obj: object;
  readonly msg: string | undefined;
}

export class CaptureLogger implements Logger {
  readonly lines: LogLine[] = [];
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: 'debug', obj, msg });
  }
  info(obj: object, msg?: string): void {
    this.lines.push({ level: 'info', obj, msg });
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: 'error', obj, msg });
  }
  has(level: LogLine['level'], reason: DropReason): boolean {
    return this.lines.some((l) => l.level === level && (l.obj as { reason?: unknown }).reason === reason);
  }
}

/** Polls `probe` until it returns something other than null/undefined/false; fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | null | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function peer(
  stats: TransportStats,
  id: NodeId,
): TransportStats['peers'] extends ReadonlyMap<NodeId, infer P> ? P : never {
  const p = stats.peers.get(id);
  if (p === undefined) throw new Error(`no stats for peer ${id}`);
  return p;
}

/** A deterministic byte generator for fuzzing. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** Endpoints whose inbound messages are collected in inboxes (replaced on restart). */
class Cluster {
  readonly inbox = new Map<NodeId, Message[]>();
  readonly endpoints = new Map<NodeId, Endpoint>();
  constructor(readonly harness: Harness) {}

  async start(id: NodeId): Promise<Endpoint> {
    const box: Message[] = [];
    this.inbox.set(id, box);
    const ep = await this.harness.start(id, (m) => box.push(m));
    this.endpoints.set(id, ep);
    return ep;
  }

  box(id: NodeId): Message[] {
    const b = this.inbox.get(id);
    if (b === undefined) throw new Error(`no inbox ${id}`);
    return b;
  }

  ep(id: NodeId): Endpoint {
    const e = this.endpoints.get(id);
    if (e === undefined) throw new Error(`no endpoint ${id}`);
    return e;
  }

  send(m: Message): void {
    this.ep(m.from).transport.send(m);
  }

  stats(id: NodeId): TransportStats {
    return this.ep(id).transport.stats();
  }
}

async function cluster(
  t: Test,
  fixture: TransportFixture,
  ids: readonly NodeId[],
  logger: Logger = new CaptureLogger(),
): Promise<Cluster> {
  const harness = await fixture.create(ids, { limits: testLimits, logger });
  t.teardown(() => harness.close());
  const c = new Cluster(harness);
  for (const id of ids) await c.start(id);
  return c;
}

/** Sends one message from `from` to `to` and waits for it: the path is up (a stream connected). */
async function warmUp(c: Cluster, from: NodeId, to: NodeId): Promise<void> {
  const box = c.box(to);
  const marker = 900_000_000 + box.length;
  c.send(message(from, to, marker));
  await waitFor(`warm-up ${from}→${to}`, () => box.some((m) => m.index === marker));
}

// ===================== the Raft group =====================

/** Applies proposals carrying a 4-byte id; remembers which ids it applied (retries are idempotent). */
class CountingStateMachine implements StateMachine {
  readonly ids = new Set<number>();
  applied = 0;
  apply(entry: Entry): unknown {
    this.applied++;
    this.ids.add(new DataView(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength).getUint32(0));
    return this.ids.size;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify([...this.ids]));
  }
  restore(snapshot: Snapshot): void {
    this.ids.clear();
    if (snapshot.data.byteLength > 0)
      for (const id of JSON.parse(new TextDecoder().decode(snapshot.data)) as number[]) this.ids.add(id);
  }
}

function proposalData(id: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, id);
  return b;
}

function leaderOf(nodes: ReadonlyMap<NodeId, RaftNode>): RaftNode | null {
  let best: RaftNode | null = null;
  for (const n of nodes.values()) {
    const s = n.status();
    if (s.role === 'leader' && (best === null || s.term > best.status().term)) best = n;
  }
  return best;
}

/** Proposes through whichever node leads now, retrying (leader changes, dropped proposals) until `deadline`. */
async function proposeWithRetry(
  nodes: ReadonlyMap<NodeId, RaftNode>,
  data: Uint8Array,
  deadline: number,
): Promise<void> {
  for (;;) {
    const leader = leaderOf(nodes);
    if (leader !== null) {
      try {
        await leader.propose(data);
        return;
      } catch (error) {
        if (performance.now() > deadline) throw error;
      }
    } else if (performance.now() > deadline) {
      throw new Error('no leader to propose to');
    }
    await sleep(20);
  }
}

async function raftGroup(t: Test, fixture: TransportFixture): Promise<void> {
  const ids = [1, 2, 3];
  const harness = await fixture.create(ids, {
    limits: { ...testLimits, messageBytesMax: 4 * 1024 * 1024, batchMessagesMax: 1_024 },
    logger: new CaptureLogger(),
  });
  const nodes = new Map<NodeId, RaftNode>();
  const machines = new Map<NodeId, CountingStateMachine>();
  const endpoints = new Map<NodeId, Endpoint>();
  t.teardown(async () => {
    for (const n of nodes.values()) n.stop();
    await harness.close();
  });
  for (const id of ids) {
    endpoints.set(id, await harness.start(id, (m) => nodes.get(id)?.receive(m)));
  }
  for (const id of ids) {
    const sm = new CountingStateMachine();
    machines.set(id, sm);
    nodes.set(
      id,
      new RaftNode({
        // 20 ms ticks, elections after 400-800 ms without a leader, heartbeats every 40 ms: loose enough for a
        // loaded CI machine, quick enough for the test.
        config: { id, random: systemRandom, electionTicks: 20, heartbeatTicks: 2 },
        logStore: new MemoryLogStore(new MemoryDisk()),
        transport: endpoints.get(id)!.transport,
        clock: systemClock,
        stateMachine: sm,
        tickMs: 20,
        initialVoters: ids,
      }),
    );
  }
  await Promise.all([...nodes.values()].map((n) => n.start()));

  const first = await waitFor('a leader', () => leaderOf(nodes), 20_000);
  t.ok(first, `node ${first.id} leads term ${first.status().term}`);

  const count = 1_000;
  const deadline = performance.now() + 30_000;
  const started = performance.now();
  // Pipelined: waves of 20 proposals in separate turns, none waiting for the previous ones to commit.
  const proposals: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    proposals.push(proposeWithRetry(nodes, proposalData(i), deadline));
    if (i % 20 === 19) await nextTurn();
  }
  await Promise.all(proposals);
  const committedMs = performance.now() - started;
  await waitFor(
    'every node to apply all proposals',
    () => [...machines.values()].every((m) => m.ids.size === count),
    20_000,
  );
  t.pass(`${count} proposals committed in ${committedMs.toFixed(0)} ms and applied on all 3 nodes`);
  for (const [id, m] of machines)
    t.equal(m.ids.size, count, `node ${id} applied ${count} distinct proposals`);
  const leaderStats = endpoints.get(leaderOf(nodes)?.id ?? first.id)!.transport.stats();
  t.ok(
    leaderStats.batchesSent < leaderStats.messagesSent,
    `leader batched (${leaderStats.messagesSent} messages in ${leaderStats.batchesSent} batches)`,
  );

  // Fail-over: the leader's transport goes down (and the node with it); the other two elect a new leader.
  const old = leaderOf(nodes)!;
  const oldTerm = old.status().term;
  await harness.stop(old.id);
  old.stop();
  nodes.delete(old.id);
  const next = await waitFor(
    'a new leader',
    () => {
      const l = leaderOf(nodes);
      return l !== null && l.status().term > oldTerm ? l : null;
    },
    20_000,
  );
  t.not(next.id, old.id, `node ${next.id} took over in term ${next.status().term}`);
  await proposeWithRetry(nodes, proposalData(count), performance.now() + 20_000);
  await waitFor(
    'the survivors to apply the proposal made after fail-over',
    () => [...nodes.keys()].every((id) => machines.get(id)!.ids.has(count)),
    20_000,
  );
  t.pass('a proposal commits after fail-over');
}

// ===================== the suite =====================

export function transportConformance(fixture: TransportFixture): void {
  const opts = { timeout: 60_000 };

  void t.test(`${fixture.name}: delivers each message to its destination, intact`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2, 3]);
    const rich = message(1, 2, 7, {
      type: 'snap',
      term: 5,
      logTerm: 4,
      commit: 3,
      reject: true,
      rejectHint: 2,
      context: new Uint8Array([1, 2, 3]),
      entries: [
        { term: 4, index: 7, type: 0, data: new Uint8Array([9, 8, 7]) },
        { term: 4, index: 8, type: 1, data: new Uint8Array(0) },
      ],
      snapshot: {
        metadata: {
          index: 6,
          term: 4,
          confState: {
            voters: [1, 2, 3],
            votersOutgoing: [],
            learners: [4],
            learnersNext: [],
            autoLeave: false,
          },
        },
        offset: 0,
        totalBytes: 3,
        data: new Uint8Array([4, 5, 6]),
      },
    });
    c.send(rich);
    c.send(message(1, 3, 11));
    c.send(message(2, 3, 12));
    c.send(message(3, 1, 13));
    await waitFor(
      'all four messages',
      () => c.box(2).length === 1 && c.box(3).length === 2 && c.box(1).length === 1,
    );
    await sleep(50);
    t.equal(c.box(2).length, 1);
    t.same(c.box(2)[0], rich, 'every field survives the trip');
    t.same(
      c
        .box(3)
        .map((m) => [m.from, m.index])
        .sort(),
      [
        [1, 11],
        [2, 12],
      ],
    );
    t.same(
      c.box(1).map((m) => [m.from, m.to, m.index]),
      [[3, 1, 13]],
    );
    for (const id of [1, 2, 3])
      t.equal(
        c.box(id).every((m) => m.to === id),
        true,
        `node ${id} only got its own messages`,
      );
    const s1 = c.stats(1);
    t.equal(peer(s1, 2).messagesSent, 1);
    t.equal(peer(s1, 3).messagesSent, 1);
    t.equal(peer(c.stats(3), 1).messagesReceived, 1);
    t.equal(peer(c.stats(3), 2).messagesReceived, 1);
    t.ok(
      peer(c.stats(2), 1).bytesReceived > 0 && peer(s1, 2).bytesSent === peer(c.stats(2), 1).bytesReceived,
      'byte counters agree',
    );
  });

  void t.test(`${fixture.name}: preserves order per peer`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2, 3]);
    const n = 3_000;
    for (let i = 0; i < n; i++) {
      c.send(message(1, 2, i + 1));
      c.send(message(3, 2, i + 1, { type: 'heartbeat' }));
      if (i % 97 === 0) await nextTurn();
    }
    await waitFor('all messages', () => c.box(2).length === 2 * n);
    const from1 = c
      .box(2)
      .filter((m) => m.from === 1)
      .map((m) => m.index);
    const from3 = c
      .box(2)
      .filter((m) => m.from === 3)
      .map((m) => m.index);
    t.same(
      from1,
      Array.from({ length: n }, (_, i) => i + 1),
      'messages from 1 in send order',
    );
    t.same(
      from3,
      Array.from({ length: n }, (_, i) => i + 1),
      'messages from 3 in send order',
    );
    t.equal(totalDropped(c.stats(1)), 0, 'nothing dropped');
  });

  void t.test(`${fixture.name}: batches the messages of one turn per peer`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2, 3]);
    await warmUp(c, 1, 2);
    await warmUp(c, 1, 3);
    const before2 = peer(c.stats(1), 2).batchesSent;
    const before3 = peer(c.stats(1), 3).batchesSent;
    const received2 = peer(c.stats(2), 1).batchesReceived;
    const inbox2 = c.box(2).length;
    for (let i = 0; i < 50; i++) {
      c.send(message(1, 2, i));
      c.send(message(1, 3, i));
    }
    await waitFor('50 messages at each peer', () => c.box(2).length === inbox2 + 50 && c.box(3).length >= 51);
    t.equal(peer(c.stats(1), 2).batchesSent - before2, 1, '50 messages to peer 2 in one turn: one batch');
    t.equal(peer(c.stats(1), 3).batchesSent - before3, 1, 'and one batch to peer 3');
    t.equal(peer(c.stats(2), 1).batchesReceived - received2, 1, 'peer 2 received one batch');

    const inbox2b = c.box(2).length;
    const before = peer(c.stats(1), 2).batchesSent;
    const many = 3 * testLimits.batchMessagesMax + 1;
    for (let i = 0; i < many; i++) c.send(message(1, 2, i));
    await waitFor('all of them', () => c.box(2).length === inbox2b + many);
    t.equal(
      peer(c.stats(1), 2).batchesSent - before,
      4,
      `${many} messages with batchMessagesMax ${testLimits.batchMessagesMax}: 4 batches`,
    );

    // Messages sent in different turns are not held back for batching.
    const inbox2c = c.box(2).length;
    c.send(message(1, 2, 1));
    await waitFor('a lone message', () => c.box(2).length === inbox2c + 1);
    t.pass('a lone message goes out at the end of its turn');
  });

  void t.test(`${fixture.name}: refuses an oversized message, counted and logged`, opts, async (t) => {
    const logger = new CaptureLogger();
    const c = await cluster(t, fixture, [1, 2], logger);
    const big = message(1, 2, 1, {
      entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(testLimits.messageBytesMax + 1) }],
    });
    c.send(big);
    c.send(message(1, 2, 2));
    await waitFor('the small message', () => c.box(2).length === 1);
    await sleep(50);
    t.same(
      c.box(2).map((m) => m.index),
      [2],
      'only the small message arrived',
    );
    const s = c.stats(1);
    t.equal(s.dropped.oversized, 1, 'counted');
    t.equal(peer(s, 2).dropped.oversized, 1, 'counted against the peer');
    t.equal(peer(s, 2).messagesSent, 1, 'never sent');
    t.ok(logger.has('warn', 'oversized'), 'logged as a warning');
    // Just under the limit passes.
    const overhead = encodeMessage(
      message(1, 2, 3, { entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(0) }] }),
    ).byteLength;
    const fits = message(1, 2, 3, {
      entries: [
        { term: 1, index: 1, type: 0, data: new Uint8Array(testLimits.messageBytesMax - overhead - 8) },
      ],
    });
    t.ok(encodeMessage(fits).byteLength <= testLimits.messageBytesMax);
    c.send(fits);
    await waitFor('the message just under the limit', () => c.box(2).length === 2);
    t.equal(c.stats(1).dropped.oversized, 1);
  });

  void t.test(`${fixture.name}: drops messages for unknown destinations`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2, 3]);
    t.doesNotThrow(() => c.send(message(1, 99, 1)));
    c.send(message(1, 1, 2));
    t.equal(c.stats(1).dropped['unknown-peer'], 2, 'unknown id and self are dropped');
    // Membership change: 3 leaves 1's peer set, then comes back.
    c.harness.setPeers(1, [2]);
    c.send(message(1, 3, 3));
    t.equal(c.stats(1).dropped['unknown-peer'], 3, 'a removed peer is unknown');
    c.send(message(1, 2, 4));
    await waitFor('a message to a remaining peer', () => c.box(2).some((m) => m.index === 4));
    c.harness.setPeers(1, [2, 3]);
    c.send(message(1, 3, 5));
    await waitFor('a message to the re-added peer', () => c.box(3).some((m) => m.index === 5));
    t.same(
      c.box(3).map((m) => m.index),
      [5],
    );
  });

  void t.test(`${fixture.name}: a peer that was down gets later messages once it is up`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2]);
    await warmUp(c, 1, 2);
    await c.harness.stop(2);
    for (let i = 1; i <= 5; i++) {
      c.send(message(1, 2, i));
      await sleep(20);
    }
    await c.start(2);
    // Keep sending, as Raft would (heartbeats), until the restarted peer hears from us.
    let next = 100;
    const box = c.box(2);
    await waitFor('a message after the restart', () => {
      c.send(message(1, 2, next++));
      return box.some((m) => m.index >= 100);
    });
    const indices = box.map((m) => m.index);
    t.same(
      indices,
      [...indices].sort((a, b) => a - b),
      'in order',
    );
    if (fixture.countsReconnects)
      t.ok(peer(c.stats(1), 2).reconnects >= 1, `reconnects counted (${peer(c.stats(1), 2).reconnects})`);
    await waitFor('the stream to be connected', () => peer(c.stats(1), 2).connected);
    t.pass('connected again');
  });

  void t.test(
    `${fixture.name}: drops malformed inbound messages without delivering them`,
    opts,
    async (t) => {
      const logger = new CaptureLogger();
      const c = await cluster(t, fixture, [1, 2, 3], logger);
      await warmUp(c, 1, 2);
      const box = c.box(2);
      const before = box.length;
      await c.harness.injectRaw(1, 2, [
        new Uint8Array([0xff, 0x00, 0x13]),
        new TextEncoder().encode('not msgpack at all'),
        new Uint8Array(0),
        encodeMessage(message(1, 3, 1)), // for someone else
        encodeMessage(message(3, 2, 2)), // claims another sender than its batch
        encodeMessage(message(1, 2, 42)), // fine
      ]);
      await waitFor('the valid message', () => box.length === before + 1);
      t.equal(box[box.length - 1]!.index, 42, 'only the valid message was delivered');
      const s = c.stats(2);
      t.equal(s.dropped.undecodable, 3, 'undecodable bytes counted');
      t.equal(s.dropped['wrong-destination'], 1, 'wrong destination counted');
      t.equal(s.dropped['sender-mismatch'], 1, 'sender mismatch counted');
      t.ok(logger.has('warn', 'undecodable'), 'logged');

      // Mutated encodings: each is either a valid message for 2 from 1 (delivered) or dropped; never a crash.
      const rnd = xorshift(20240601);
      const base = encodeMessage(
        message(1, 2, 5, {
          entries: [{ term: 1, index: 5, type: 0, data: new Uint8Array([1, 2, 3, 4]) }],
          context: new Uint8Array([7]),
        }),
      );
      const mutants: Uint8Array[] = [];
      for (let i = 0; i < 500; i++) {
        const m = Uint8Array.from(base);
        const flips = 1 + (rnd() % 4);
        for (let f = 0; f < flips; f++) m[rnd() % m.length] = rnd() & 0xff;
        mutants.push(rnd() % 5 === 0 ? m.subarray(0, rnd() % m.length) : m);
      }
      const dropsBefore = totalDropped(c.stats(2));
      const boxBefore = box.length;
      for (let i = 0; i < mutants.length; i += 50) await c.harness.injectRaw(1, 2, mutants.slice(i, i + 50));
      await waitFor(
        'every mutant accounted for',
        () => box.length - boxBefore + totalDropped(c.stats(2)) - dropsBefore === mutants.length,
      );
      t.ok(
        box.slice(boxBefore).every((m) => m.to === 2 && m.from === 1),
        'whatever was delivered is addressed right',
      );
      t.pass(
        `${box.length - boxBefore} mutants delivered, ${totalDropped(c.stats(2)) - dropsBefore} dropped`,
      );

      c.send(message(1, 2, 77));
      await waitFor('normal traffic afterwards', () => box.some((m) => m.index === 77));
      t.pass('still serving');
    },
  );

  void t.test(`${fixture.name}: a stopped endpoint drops what it is asked to send`, opts, async (t) => {
    const c = await cluster(t, fixture, [1, 2]);
    await c.harness.stop(1);
    t.doesNotThrow(() => c.send(message(1, 2, 1)));
    t.equal(c.stats(1).dropped.stopped, 1);
    await sleep(30);
    t.equal(c.box(2).length, 0);
  });

  void t.test(
    `${fixture.name}: a 3-node Raft group elects, commits 1000 proposals and fails over`,
    opts,
    (t) => raftGroup(t, fixture),
  );
}
