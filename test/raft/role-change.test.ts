/**
 * The driver's onRoleChange callback: called once at start and on every change of role, term or leader (the
 * metadata server logs from it instead of polling status()), and not otherwise: an idle, stable cluster
 * produces no calls.
 */
import t from 'tap';
import type { NodeStatus } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import { NullMachine, startManualCluster } from './manual-cluster.ts';

const tickMs = 50;

type Seen = Pick<NodeStatus, 'role' | 'term' | 'lead'>;

void t.test('onRoleChange reports start, election, and a new leader after the old one is cut off, nothing while stable', async (t) => {
  const seen = new Map<NodeId, Seen[]>([1, 2, 3].map((id) => [id, []]));
  const { clock, nodes, cut } = await startManualCluster({
    tickMs,
    seedFactor: 17,
    stateMachine: () => new NullMachine(),
    extra: (id) => ({ onRoleChange: (s) => seen.get(id)!.push({ role: s.role, term: s.term, lead: s.lead }) }),
  });
  for (const id of [1, 2, 3]) t.same(seen.get(id), [{ role: 'follower', term: 1, lead: 0 }], `node ${id}: its state at start`);

  nodes.get(1)!.campaign();
  await clock.advance(20 * tickMs);
  const leader1 = seen.get(1)!;
  t.same(leader1.at(-1), { role: 'leader', term: 2, lead: 1 }, 'node 1 reports leading in term 2');
  t.ok(leader1.some((s) => s.role === 'candidate'), 'and the candidacy before it');
  for (const id of [2, 3]) t.same(seen.get(id)!.at(-1), { role: 'follower', term: 2, lead: 1 }, `node ${id} reports following node 1`);

  const counts = [1, 2, 3].map((id) => seen.get(id)!.length);
  await clock.advance(100 * tickMs);
  t.same([1, 2, 3].map((id) => seen.get(id)!.length), counts, 'no calls while nothing changes (heartbeats only)');

  cut.add(1);
  await clock.advance(60 * tickMs);
  const newLeader = [2, 3].find((id) => nodes.get(id)!.status().role === 'leader');
  t.ok(newLeader !== undefined, 'nodes 2 and 3 elected a new leader');
  const term = nodes.get(newLeader!)!.status().term;
  for (const id of [2, 3]) t.same(seen.get(id)!.at(-1), { role: id === newLeader ? 'leader' : 'follower', term, lead: newLeader }, `node ${id} reports the new leader`);
  t.not(seen.get(1)!.at(-1)!.role, 'leader', 'the cut-off leader reports stepping down');
  for (const n of nodes.values()) n.stop();
});
