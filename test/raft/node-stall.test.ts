/**
 * The driver after a stall of the whole machine (every member's process stopped for two seconds together: a
 * loaded host, VM steal): the leader's tick timer fires late, and so do the followers'. The time is a stall
 * (`Raft.stalled`), not forty ticks of silence from everyone: no member steps down or campaigns, the term
 * does not change, and proposals keep committing. A leader really cut off still steps down.
 */
import t from 'tap';
import { RaftNode } from '../../src/raft/node.ts';
import type { Clock, StateMachine, TimerHandle } from '../../src/raft/node-api.ts';
import type { Entry, Message, NodeId, Snapshot } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { seededRandom } from './harness.ts';

const tickMs = 50;

interface ManualTimer {
  dueMs: number;
  fn: () => void;
  cancelled: boolean;
}

/** One virtual clock for every member: timers run only when the test advances it; `stall` jumps time. */
class ManualClock implements Clock {
  now = 1_000;
  private timers: ManualTimer[] = [];
  nowMs(): number {
    return this.now;
  }
  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer = { dueMs: this.now + Math.max(0, delayMs), fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }
  clearTimer(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
  }
  /** Nothing runs for `ms`: every process is stopped. */
  stall(ms: number): void {
    this.now += ms;
  }
  /** Runs every timer due up to now + ms, in order, letting messages and promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await settle();
      this.timers = this.timers.filter((x) => !x.cancelled);
      const next = this.timers.filter((x) => x.dueMs <= end).sort((a, b) => a.dueMs - b.dueMs)[0];
      if (next === undefined) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.now = Math.max(this.now, next.dueMs);
      next.fn();
    }
    this.now = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

class CountingMachine implements StateMachine {
  applied = 0;
  apply(entry: Entry): unknown {
    this.applied = entry.index;
    return undefined;
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
  restore(snapshot: Snapshot): void {
    this.applied = snapshot.metadata.index;
  }
}

async function cluster(): Promise<{ clock: ManualClock; nodes: Map<NodeId, RaftNode>; cut: Set<NodeId> }> {
  const clock = new ManualClock();
  const nodes = new Map<NodeId, RaftNode>();
  const cut = new Set<NodeId>();
  const transport = {
    send(m: Message): void {
      if (cut.has(m.from) || cut.has(m.to)) return;
      setImmediate(() => nodes.get(m.to)?.receive(m));
    },
  };
  for (const id of [1, 2, 3]) {
    nodes.set(id, new RaftNode({ config: { id, random: seededRandom(id * 31) }, logStore: new MemoryLogStore(new MemoryDisk()), transport, clock, stateMachine: new CountingMachine(), tickMs, initialVoters: [1, 2, 3] }));
  }
  for (const n of nodes.values()) await n.start();
  nodes.get(1)!.campaign();
  await clock.advance(20 * tickMs);
  if (nodes.get(1)!.status().role !== 'leader') throw new Error('setup: node 1 should lead');
  return { clock, nodes, cut };
}

const terms = (nodes: Map<NodeId, RaftNode>): number[] => [...nodes.values()].map((n) => n.status().term);

void t.test('every member stalled for 2 s together: no election, no step-down, commits go on', async (t) => {
  const { clock, nodes } = await cluster();
  const before = terms(nodes);
  t.same(new Set(before).size, 1, 'one term');
  clock.stall(2_000); // forty ticks, four election timeouts
  await clock.advance(20 * tickMs);
  t.equal(nodes.get(1)!.status().role, 'leader', 'node 1 still leads');
  t.same(terms(nodes), before, 'nobody moved to a new term');
  const proposed = nodes.get(1)!.propose(new TextEncoder().encode('after the stall'));
  await clock.advance(5 * tickMs);
  const result = await proposed;
  t.ok(result.index > 0, `a proposal commits (index ${result.index})`);
  for (const n of nodes.values()) n.stop();
});

void t.test('a leader cut off from both followers still steps down', async (t) => {
  const { clock, nodes, cut } = await cluster();
  cut.add(1);
  clock.stall(2_000);
  await clock.advance(3 * 10 * tickMs);
  t.not(nodes.get(1)!.status().role, 'leader', 'deposed by check-quorum within the timeouts after the stall');
  const leaders = [2, 3].filter((id) => nodes.get(id)!.status().role === 'leader');
  t.equal(leaders.length, 1, 'the two others elected one of them');
  for (const n of nodes.values()) n.stop();
});
