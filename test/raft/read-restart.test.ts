/**
 * A ReadIndex answer addressed to a follower's previous incarnation must not serve a read of the restarted
 * follower. Found by the simulator (metadata workload): a follower's read contexts were `id:sequence`, the
 * sequence restarting at 1 after a crash, so a delayed answer to the old incarnation's read matched the new
 * incarnation's first read and served it an index older than writes acknowledged before it (stale read).
 */
import t from 'tap';
import { RaftNode } from '../../src/raft/node.ts';
import type { Message, NodeId } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { ManualClock } from '../manual-clock.ts';
import { seededRandom } from './harness.ts';
import { NullMachine } from './manual-cluster.ts';

const tickMs = 50;

void t.test("a delayed ReadIndex answer to a restarted follower's old incarnation serves no new read", async (t) => {
  const clock = new ManualClock(1_000);
  const nodes = new Map<NodeId, RaftNode>();
  /** ReadIndex answers to node 3 held back (the network delays them), in order. */
  const held: Message[] = [];
  let holdReadAnswers = false;
  const transport = {
    send(m: Message): void {
      if (holdReadAnswers && m.type === 'readIndexResp' && m.to === 3) {
        held.push(m);
        return;
      }
      setImmediate(() => nodes.get(m.to)?.receive(m));
    },
  };
  const stores = new Map([1, 2, 3].map((id) => [id, new MemoryLogStore(new MemoryDisk())]));
  const make = (id: NodeId, seed: number): RaftNode =>
    new RaftNode({
      config: { id, random: seededRandom(seed) },
      logStore: stores.get(id)!,
      transport,
      clock,
      stateMachine: new NullMachine(),
      tickMs,
      initialVoters: [1, 2, 3],
    });
  for (const id of [1, 2, 3]) nodes.set(id, make(id, id * 31));
  for (const n of nodes.values()) await n.start();
  nodes.get(1)!.campaign();
  await clock.advance(20 * tickMs);
  t.equal(nodes.get(1)!.status().role, 'leader');
  const leader = nodes.get(1)!;
  for (let i = 0; i < 3; i++) await leader.propose(new Uint8Array([i]));
  await clock.advance(5 * tickMs);

  // The old incarnation of node 3 reads; the leader's answer is held back in the network.
  holdReadAnswers = true;
  const oldRead = nodes.get(3)!.read();
  oldRead.catch(() => undefined); // it fails when node 3 stops
  await clock.advance(5 * tickMs);
  t.equal(held.length, 1, 'the leader answered the old read');
  const staleIndex = held[0]!.index;

  // Node 3 crashes and comes back (same log store, new incarnation); meanwhile writes are acknowledged.
  nodes.get(3)!.stop();
  for (let i = 0; i < 5; i++) await leader.propose(new Uint8Array([10 + i]));
  const committedBefore = leader.status().commit;
  t.ok(committedBefore > staleIndex, `writes acknowledged past the held answer (${committedBefore} > ${staleIndex})`);
  const restarted = make(3, 3 * 31 + 1);
  nodes.set(3, restarted);
  await restarted.start();
  await clock.advance(5 * tickMs); // hears from the leader
  const newRead = restarted.read();
  // The old answer arrives now, before the leader answers the new read.
  restarted.receive(held.shift()!);
  holdReadAnswers = false;
  await clock.advance(5 * tickMs);
  const index = await newRead;
  t.ok(index >= committedBefore, `the new read's index ${index} covers every write acknowledged before it (${committedBefore}), not the old answer's ${staleIndex}`);
  for (const n of nodes.values()) n.stop();
});
