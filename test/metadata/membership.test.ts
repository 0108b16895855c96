/**
 * Admin RPCs over a live in-process cluster: add a 4th server as a learner, refuse to promote it while it
 * is not caught up, promote it once it is, hand it the leadership, remove an old member; a writer keeps
 * going throughout and the namespace stays readable and writable.
 */
import t from 'tap';
import { checkNamespaceInvariants } from '../../src/fsm/invariants.ts';
import { MetadataClient } from '../../src/metadata/client.ts';
import type { MetadataServer } from '../../src/metadata/server.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';

interface Member {
  id: string;
  address: string;
  raftAddress: string;
  voter: boolean;
  learner: boolean;
}

const members = (reply: Record<string, unknown>): Member[] => reply['members'] as Member[];

void t.test('add a learner, promote it, transfer leadership to it, remove an old member', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  let leader = await cluster.leader();
  const client = await MetadataClient.connect(cluster.addresses, { retryDeadlineMs: 20_000 });
  t.teardown(() => client.close());
  await client.mkdir('/m', { parents: true });
  for (let i = 0; i < 20; i++) await client.create(`/m/before-${i}`);

  // A writer and a reader run through every change.
  let stop = false;
  let written = 0;
  const writer = (async (): Promise<unknown> => {
    try {
      while (!stop) {
        await client.create(`/m/w-${written}`);
        await client.stat(`/m/w-${written}`);
        written++;
        await sleep(5);
      }
      return undefined;
    } catch (e) {
      return e;
    }
  })();

  const leaderAddress = () => cluster.peers.get(leader.id)!.client;
  const follower = [...cluster.servers.values()].find((s) => s.id !== leader.id)!;

  // Input checks and redirects.
  t.equal((await rawCall(leaderAddress(), 'AddMember', { id: 0, address: '127.0.0.1:1', raftAddress: '127.0.0.1:2' })).error?.code, 'EINVAL', 'id 0');
  t.equal((await rawCall(leaderAddress(), 'AddMember', { id: 9, address: 'nope', raftAddress: '127.0.0.1:2' })).error?.code, 'EINVAL', 'bad address');
  t.equal((await rawCall(leaderAddress(), 'AddMember', { id: leader.id, address: '127.0.0.1:1', raftAddress: '127.0.0.1:2' })).error?.code, 'EINVAL', 'already a member');
  t.equal((await rawCall(leaderAddress(), 'PromoteMember', { id: 4 })).error?.code, 'EINVAL', 'promote a non-learner');
  t.equal((await rawCall(leaderAddress(), 'RemoveMember', { id: 4 })).error?.code, 'EINVAL', 'remove a non-member');
  t.equal((await rawCall(leaderAddress(), 'RemoveMember', { id: leader.id })).error?.code, 'EINVAL', 'remove the leader');
  t.equal((await rawCall(leaderAddress(), 'TransferLeadership', { id: 4 })).error?.code, 'EINVAL', 'transfer to a non-voter');
  const redirect = await rawCall(cluster.peers.get(follower.id)!.client, 'AddMember', { id: 4, address: '127.0.0.1:1', raftAddress: '127.0.0.1:2' });
  t.equal(redirect.error?.code, 'NOT_LEADER');
  t.equal(redirect.error?.leaderAddress, leaderAddress());

  // Add server 4 as a learner before it runs: it cannot catch up, so promotion is refused.
  const p4 = await cluster.reserve(4);
  const added = await rawCall(leaderAddress(), 'AddMember', { id: 4, address: p4.client, raftAddress: p4.raft });
  t.equal(added.error ?? undefined, undefined, 'AddMember');
  t.match(members(added).find((m) => Number(m.id) === 4), { voter: false, learner: true });
  await sleep(300);
  const early = await rawCall(leaderAddress(), 'PromoteMember', { id: 4 });
  t.equal(early.error?.code, 'ECONFCHANGE', 'a learner that has not caught up is not promoted');
  t.match(early.error?.message, /catch|caught|behind|up to date|progress/i, `clear message: ${early.error?.message}`);

  // Start it (join mode); it catches up from a snapshot and the log.
  const s4 = await cluster.startJoiner(4);
  await waitFor('the learner to catch up', () => {
    const st = leader.node.status();
    return (st.progress.get(4)?.match ?? 0) >= st.lastIndex - 5 ? true : undefined;
  });
  const promoted = await waitFor('promotion', async () => {
    const r = await rawCall(leaderAddress(), 'PromoteMember', { id: 4 });
    if (r.error?.code === 'ECONFCHANGE') return undefined;
    return r;
  });
  t.equal(promoted.error ?? undefined, undefined, 'PromoteMember');
  t.match(members(promoted).find((m) => Number(m.id) === 4), { voter: true, learner: false });

  // Every old member learns server 4's addresses.
  for (const s of [...cluster.servers.values()].filter((s) => s.id !== 4)) {
    await waitFor(`server ${s.id} to learn member 4`, async () => {
      const st = await rawCall(cluster.peers.get(s.id)!.client, 'ClusterStatus', {});
      const m4 = members(st).find((m) => Number(m.id) === 4);
      return m4?.address === p4.client && m4.raftAddress === p4.raft ? true : undefined;
    });
  }

  // Leadership to server 4.
  await waitFor('server 4 to apply its promotion', () => (s4.node.status().confState.voters.includes(4) ? true : undefined));
  const transferred = await rawCall(leaderAddress(), 'TransferLeadership', { id: 4 });
  t.equal(transferred.error ?? undefined, undefined, 'TransferLeadership');
  leader = await cluster.leader();
  t.equal(leader.id, 4, 'server 4 leads');
  t.equal(s4.node.status().role, 'leader');
  // A new leader accepts membership changes once its first entry is applied (ECONFCHANGE until then).
  await waitFor('server 4 to apply its first entry as leader', () => (s4.node.status().applied >= s4.node.status().lastIndex ? true : undefined));

  // Remove an old member through the new leader.
  const old = 1;
  // A new leader refuses membership changes (ECONFCHANGE: retry later) until its first entry is applied.
  let removed = await rawCall(p4.client, 'RemoveMember', { id: old });
  for (let tries = 0; (removed.error as { code?: string } | undefined)?.code === 'ECONFCHANGE' && tries < 50; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    removed = await rawCall(p4.client, 'RemoveMember', { id: old });
  }
  t.equal(removed.error ?? undefined, undefined, 'RemoveMember');
  t.notOk(members(removed).some((m) => Number(m.id) === old), 'member 1 gone from the leader view');
  await cluster.stopServer(old);

  const before = written;
  // (At least 21 in all, however slow a loaded machine makes each write.)
  await waitFor('writes after the changes', () => (written > Math.max(before + 5, 20) ? true : undefined));
  stop = true;
  t.equal(await writer, undefined, 'the writer never failed');
  t.ok(written > before + 5, `writes went on throughout (${written}, ${before} before the last change)`);

  // Readable and writable on the new configuration; followers serve reads; invariants hold everywhere.
  await client.mkdir('/after');
  t.equal((await client.stat('/after')).type, 'dir');
  const entries = await client.readdir('/m');
  t.equal(entries.length, 20 + written);
  const status = await rawCall(p4.client, 'ClusterStatus', {});
  t.same(
    members(status).map((m) => [Number(m.id), m.voter]).sort(),
    [[2, true], [3, true], [4, true]],
  );
  const commit = leader.node.status().commit;
  for (const s of cluster.servers.values() as Iterable<MetadataServer>) {
    await waitFor(`server ${s.id} applied`, () => (s.node.status().applied >= commit ? true : undefined));
    t.same(await checkNamespaceInvariants(s.kv), [], `invariants on server ${s.id}`);
    const r = await rawCall(cluster.peers.get(s.id)!.client, 'Stat', { path: '/after' });
    t.equal(r.error ?? undefined, undefined, `linearizable read on server ${s.id}`);
  }
});
