/**
 * AddMember puts the new member's addresses in the leader's peer set (and the Raft transport opens a link
 * and a channel to it) before it proposes the change, so the leader can reach the learner once it commits.
 * A failed add used to leave that peer behind for good. Now, once the proposal's outcome is known, a failed
 * add takes its peer out again, unless the id became a member after all; concurrent adds of one id settle
 * together (a refused duplicate does not take away the peer of the add that commits).
 */
import t from 'tap';
import type { MetadataServer } from '../../src/metadata/server.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';
import type { InProcessCluster } from './harness.ts';

/** The ids the leader's Raft transport keeps a peer (link, channel, counters) for. */
const transportPeers = (leader: MetadataServer): number[] =>
  [...leader.raftTransportStats().peers.keys()].sort((a, b) => a - b);

async function addMember(cluster: InProcessCluster, leader: MetadataServer, id: number): Promise<string> {
  const p = await cluster.reserve(id);
  const reply = await rawCall(cluster.peers.get(leader.id)!.client, 'AddMember', {
    id,
    address: p.client,
    raftAddress: p.raft,
  });
  return reply.error?.code ?? 'OK';
}

async function readyLeader(cluster: InProcessCluster): Promise<MetadataServer> {
  const leader = await cluster.leader();
  // A new leader refuses membership changes until its first entry is applied.
  await waitFor('the leader to apply its first entry', () =>
    leader.node.status().applied >= leader.node.status().lastIndex ? true : undefined,
  );
  return leader;
}

void t.test('an AddMember refused while another change is pending leaves no peer behind', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await readyLeader(cluster);
  const added: number[] = [];
  const refused: number[] = [];
  // Two adds at once: the second reaches the core while the first is still pending, and is refused
  // (ECONFCHANGE). If the first was applied already, both succeed: try again with new ids.
  for (let id = 10; refused.length === 0 && id < 40; id += 2) {
    const codes = await Promise.all([addMember(cluster, leader, id), addMember(cluster, leader, id + 1)]);
    codes.forEach((code, i) => {
      if (code === 'OK') added.push(id + i);
      else if (code === 'ECONFCHANGE') refused.push(id + i);
      else t.fail(`AddMember ${id + i}: ${code}`);
    });
    await sleep(50);
  }
  t.ok(refused.length > 0, `a concurrent add was refused (ids ${refused.join(', ')})`);
  const peers = transportPeers(leader);
  for (const id of refused) t.notOk(peers.includes(id), `refused id ${id} has no transport peer`);
  for (const id of added) t.ok(peers.includes(id), `added learner ${id} keeps its peer`);
  const members = leader.node.status().confState.learners;
  t.same(
    [...members].sort((a, b) => a - b),
    added,
    'the learners are exactly the ids added',
  );
});

void t.test(
  'two concurrent adds of one id: the refused one does not take the peer of the one that commits',
  async (t) => {
    const cluster = await startInProcessCluster(3);
    t.teardown(() => cluster.close());
    const leader = await readyLeader(cluster);
    let id = 50;
    let codes: string[] = [];
    for (; id < 60; id++) {
      codes = await Promise.all([addMember(cluster, leader, id), addMember(cluster, leader, id)]);
      if (codes.includes('ECONFCHANGE')) break;
      await sleep(50);
    }
    t.same([...codes].sort(), ['ECONFCHANGE', 'OK'], `one add of ${id} committed, the other was refused`);
    await sleep(200);
    t.ok(leader.node.status().confState.learners.includes(id), `${id} is a learner`);
    t.ok(transportPeers(leader).includes(id), `learner ${id} keeps its transport peer`);
  },
);
