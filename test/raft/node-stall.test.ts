/**
 * The driver after a stall of the whole machine (every member's process stopped for two seconds together: a
 * loaded host, VM steal): the leader's tick timer fires late, and so do the followers'. The time is a stall
 * (`Raft.stalled`), not forty ticks of silence from everyone: no member steps down or campaigns, the term
 * does not change, and proposals keep committing. A leader really cut off still steps down.
 */
import t from 'tap';
import type { RaftNode } from '../../src/raft/node.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, NodeId, Snapshot } from '../../src/raft/types.ts';
import type { ManualCluster } from './manual-cluster.ts';
import { startManualCluster } from './manual-cluster.ts';

const tickMs = 50;

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

async function cluster(): Promise<ManualCluster> {
  const { clock, nodes, cut } = await startManualCluster({ tickMs, seedFactor: 31, stateMachine: () => new CountingMachine() });
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
