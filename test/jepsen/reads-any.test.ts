/**
 * What `--reads any` and `--bug read-without-quorum` rest on, against in-process metadata servers (no root):
 * a client's `readAddress` sends its reads to that member (a follower's read still sees every acknowledged
 * write: ReadIndex), falls back to the normal path when that member does not answer, and the planted bug
 * reaches the Raft core through MetadataServerOptions.raftBugs (a server cut off from its quorum answers
 * reads from its own state with the bug, never without it).
 */
import t from 'tap';
import { MetadataClient } from '../../src/metadata/client.ts';
import type { WireReply } from '../../src/metadata/proto.ts';
import { freePort, rawCall, startInProcessCluster, waitFor } from '../metadata/harness.ts';

void t.test('readAddress: reads go to that member and see acknowledged writes; a dead one falls back', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const followerId = [...cluster.servers.keys()].find((id) => id !== leader.id)!;
  const follower = cluster.peers.get(followerId)!.client;
  // A follower that has not heard from this leader yet (its start, or the leader's first connection to it, was
  // slow) refuses a read (no leader to ask for a ReadIndex), and the client falls back to the leader: wait until
  // it follows the leader and has caught up, so every read below is the follower's to answer.
  await waitFor('the read member to follow the leader', () => {
    const st = cluster.servers.get(followerId)!.node.status();
    return st.lead === leader.id && st.applied >= leader.node.status().commit ? true : undefined;
  });
  const answered: [string, string][] = [];
  const client = await MetadataClient.connect(cluster.addresses, { readAddress: follower, onAnswer: (address, method) => answered.push([address, method]) });
  t.teardown(() => client.close());
  for (let k = 0; k < 5; k++) {
    await client.create(`/f${k}`);
    // Read at once at the follower: ReadIndex makes it see the write just acknowledged by the leader.
    t.equal((await client.stat(`/f${k}`)).type, 'file', `/f${k} seen at the follower right after its create`);
  }
  const stats = answered.filter(([, m]) => m === 'Stat');
  t.equal(stats.length, 5);
  t.ok(stats.every(([a]) => a === follower), 'every Stat answered by the read address');
  t.ok(answered.filter(([, m]) => m === 'Create').every(([a]) => a !== follower), 'mutations still go to the leader');

  const dead = `127.0.0.1:${await freePort()}`;
  const fallback: string[] = [];
  const other = await MetadataClient.connect(cluster.addresses, { readAddress: dead, onAnswer: (address, method) => method === 'Stat' && fallback.push(address) });
  t.teardown(() => other.close());
  t.equal((await other.stat('/f0')).type, 'file', 'a read address that does not answer: the normal path answers');
  t.equal(fallback.length, 1);
  t.not(fallback[0], dead);
});

/** Stat at `address` once, as a success (true) or anything else (false). */
async function statAnswers(address: string, path: string): Promise<boolean> {
  let reply: WireReply;
  try {
    reply = await rawCall(address, 'Stat', { path }, 3_000);
  } catch {
    return false;
  }
  return reply.error === undefined || reply.error === null;
}

void t.test('raftBugs reach the core: cut off from its quorum, a server answers reads only with read-without-quorum', async (t) => {
  for (const bug of [false, true]) {
    const cluster = await startInProcessCluster(3, bug ? { raftBugs: new Set(['read-without-quorum'] as const) } : {});
    const leader = await cluster.leader();
    const client = await MetadataClient.connect([cluster.peers.get(leader.id)!.client]);
    await client.create('/kept');
    client.close();
    const survivor = [...cluster.servers.keys()].find((id) => id !== leader.id)!;
    const address = cluster.peers.get(survivor)!.client;
    // With the bug a follower's read is only as fresh as its own log: wait until it has the create.
    t.ok(await waitFor('the survivor to see /kept', async () => ((await statAnswers(address, '/kept')) ? true : undefined), 10_000), `${bug ? 'bug' : 'no bug'}: the survivor answers while the quorum is up`);
    for (const id of [...cluster.servers.keys()]) if (id !== survivor) await cluster.stopServer(id);
    t.equal(await statAnswers(address, '/kept'), bug, bug ? 'bug: a read answered from local state with no quorum' : 'no bug: no quorum, no read');
    await cluster.close();
  }
});
