import t from 'tap';
import { pino } from 'pino';
import { MetadataClient, MetadataError } from '../../src/metadata/client.ts';
import { defaultHeartbeatTicks, defaultTickMs } from '../../src/metadata/server.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';

void t.test('a 3-server in-process cluster serves the namespace', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const client = await MetadataClient.connect(cluster.addresses);
  t.teardown(() => client.close());
  t.ok(client.sessionId >= 1, 'session opened');

  const dir = await client.mkdir('/a/b', { parents: true });
  t.ok(dir.id > 1);
  const file = await client.create('/a/b/f');
  const st = await client.stat('/a/b/f');
  t.equal(st.type, 'file');
  t.equal(st.id, file.id);
  t.equal(st.generation, file.generation);
  t.same(
    (await client.readdir('/a/b')).map((e) => e.name),
    ['f'],
  );
  await client.rename('/a/b/f', '/a/g');
  t.same((await client.readdir('/a')).map((e) => `${e.name}:${e.type}`), ['b:dir', 'g:file']);
  await t.rejects(client.stat('/a/b/f'), { code: 'ENOENT' });
  await t.rejects(client.create('/a/g'), { code: 'EEXIST' });
  await client.unlink('/a/g');
  await client.rmdir('/a/b');
  t.same(await client.readdir('/a'), []);
  t.equal(client.target, cluster.peers.get(leader.id)?.client, 'the client ended up at the leader');

  // Bulk creates: all or none.
  await client.mkdir('/bulk');
  const many = await client.createMany('/bulk', ['x', 'y', 'z']);
  t.equal(many.created, 3);
  t.equal((await client.stat('/bulk/x')).id, many.firstId);
  await t.rejects(client.createMany('/bulk', ['w', 'x']), { code: 'EEXIST' });
  await t.rejects(client.createMany('/bulk', []), { code: 'EINVAL' });
  t.same((await client.readdir('/bulk')).map((e) => e.name), ['x', 'y', 'z'], 'nothing half-created');

  // Compare-and-set with if_generation.
  const f2 = await client.create('/cas');
  await t.rejects(client.create('/cas', { exclusive: false, ifGeneration: f2.generation + 1 }), {
    code: 'EPRECONDITION',
  });
  await client.create('/cas', { exclusive: false, ifGeneration: f2.generation });

  // Every server's applied state converges.
  const follower = [...cluster.servers.values()].find((s) => s.id !== leader.id)!;
  const followerAddress = cluster.peers.get(follower.id)!.client;
  const stale = await rawCall(followerAddress, 'Readdir', { path: '/a', staleOk: true });
  t.equal(stale.error ?? undefined, undefined, 'stale follower read answers');

  // A follower redirects writes to the leader, and serves linearizable reads itself.
  const redirected = await rawCall(followerAddress, 'Mkdir', {
    path: '/x',
    session: { clientId: client.sessionId, seq: 1000, ack: 0 },
  });
  t.equal(redirected.error?.code, 'NOT_LEADER');
  t.equal(redirected.error?.leaderAddress, cluster.peers.get(leader.id)?.client);
  const read = await rawCall(followerAddress, 'Stat', { path: '/cas' });
  t.equal(read.error ?? undefined, undefined, 'linearizable read on a follower');

  // ClusterStatus.
  const status = await rawCall(cluster.peers.get(leader.id)!.client, 'ClusterStatus', {});
  t.equal(status['role'], 'leader');
  t.equal((status['members'] as unknown[]).length, 3);

  const metrics = await leader.metrics();
  t.match(metrics, /rfs_raft_term \d+/);
  t.match(metrics, /rfs_metadata_proposals_total\{outcome="ok"\} \d+/);
  const count = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
  t.ok(count('rfs_raft_log_write_seconds_count') > 0, 'log write (fsync) latency histogram has samples');
  t.ok(count('rfs_fsm_apply_batch_seconds_count') > 0, 'apply latency histogram has samples');
  t.ok(count('rfs_fsm_applied_entries_total') >= count('rfs_fsm_apply_batch_seconds_count'), 'entries counted');
  // RPCs by method and outcome: the leader's refused compare-and-set, the follower's redirect and read.
  const requests = (text: string, method: string, outcome: string): number =>
    Number(new RegExp(`^rfs_metadata_requests_total\\{method="${method}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  t.ok(requests(metrics, 'Create', 'ok') >= 2, 'creates counted');
  t.equal(requests(metrics, 'Create', 'EPRECONDITION'), 1, 'the failed compare-and-set counted by its code');
  const followerMetrics = await follower.metrics();
  t.equal(requests(followerMetrics, 'Mkdir', 'NOT_LEADER'), 1, 'the redirect counted on the follower');
  t.equal(requests(followerMetrics, 'Stat', 'ok'), 1, "the follower's read counted");
});

void t.test('bad input gets typed errors and the server keeps serving', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const address = cluster.peers.get(leader.id)!.client;
  const client = await MetadataClient.connect([address]);
  t.teardown(() => client.close());
  const stamp = () => ({ clientId: client.sessionId, seq: 5000 + Math.floor(Math.random() * 1000), ack: 0 });

  const cases: [string, string, Record<string, unknown>, string][] = [
    ['relative path', 'Mkdir', { path: 'a/b', session: stamp() }, 'EINVAL'],
    ['empty path', 'Create', { path: '', session: stamp() }, 'EINVAL'],
    ['dot-dot', 'Create', { path: '/a/../b', session: stamp() }, 'EINVAL'],
    ['oversized name', 'Create', { path: `/${'n'.repeat(300)}`, session: stamp() }, 'ENAMETOOLONG'],
    ['oversized path', 'Create', { path: `/${'d/'.repeat(3000)}x`, session: stamp() }, 'ENAMETOOLONG'],
    ['no session', 'Mkdir', { path: '/s' }, 'EINVAL'],
    ['zero client id', 'Mkdir', { path: '/s', session: { clientId: 0, seq: 1, ack: 0 } }, 'EINVAL'],
    ['ack >= seq', 'Mkdir', { path: '/s', session: { clientId: client.sessionId, seq: 3, ack: 3 } }, 'EINVAL'],
    ['unknown session', 'Mkdir', { path: '/s', session: { clientId: 987654, seq: 1, ack: 0 } }, 'ESESSION'],
    ['uint64 beyond 2^53', 'Mkdir', { path: '/s', session: { clientId: '18446744073709551615', seq: 1, ack: 0 } }, 'EINVAL'],
    ['stat of bad path', 'Stat', { path: '//' }, 'EINVAL'],
    ['readdir of a missing dir', 'Readdir', { path: '/missing' }, 'ENOENT'],
  ];
  for (const [name, method, request, code] of cases) {
    const reply = await rawCall(address, method, request);
    t.equal(reply.error?.code, code, name);
    t.type(reply.error?.message, 'string');
  }
  // A request frame above the server's limit is refused by gRPC itself.
  await t.rejects(rawCall(address, 'Stat', { path: `/${'x'.repeat(100_000)}` }), { code: 8 /* RESOURCE_EXHAUSTED */ });

  // Still serving, and nothing half-applied.
  await client.mkdir('/ok');
  t.same((await client.readdir('/')).map((e) => e.name), ['ok']);
  await t.rejects(client.mkdir('/ok'), MetadataError);
});

void t.test('a retried stamp is applied once', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const address = cluster.peers.get(leader.id)!.client;
  const opened = await rawCall(address, 'OpenSession', {});
  const session = { clientId: opened['clientId'], seq: 1, ack: 0 };
  const first = await rawCall(address, 'Create', { path: '/once', session });
  const again = await rawCall(address, 'Create', { path: '/once', session });
  t.equal(first.error ?? undefined, undefined);
  t.same(again, first, 'the retry returns the first result, not EEXIST');
});

void t.test('retries of a stamped command still in the log join it instead of being proposed again', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const address = cluster.peers.get(leader.id)!.client;
  const opened = await rawCall(address, 'OpenSession', {});
  const session = { clientId: opened['clientId'], seq: 1, ack: 0 };
  const count = (text: string, outcome: string): number => Number(new RegExp(`rfs_metadata_proposals_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  const before = await leader.metrics();
  const copies = 8;
  const replies = await Promise.all(Array.from({ length: copies }, () => rawCall(address, 'Mkdir', { path: '/joined', session })));
  t.equal(replies[0]!.error ?? undefined, undefined, 'the first applies');
  for (const r of replies) t.same(r, replies[0], 'every copy gets the same answer');
  const after = await leader.metrics();
  const proposed = count(after, 'ok') - count(before, 'ok');
  const joined = count(after, 'joined') - count(before, 'joined');
  t.equal(proposed + joined, copies, `each copy proposed or joined (${proposed} proposed, ${joined} joined)`);
  t.ok(joined >= 1, 'copies that arrived while the first was in the log joined it');
});

void t.test('every server logs its changes of role, term and leader ("raft state"), and only those', async (t) => {
  const lines: { server: number; role: string; term: number; leader: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  const cluster = await startInProcessCluster(3, { logger });
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const states = (): typeof lines => lines.filter((l) => l.msg === 'raft state');
  const term = leader.node.status().term;
  await waitFor('every server to log the leader', () =>
    [1, 2, 3].every((id) => states().some((l) => l.server === id && l.term === term && l.leader === leader.id)) ? true : undefined,
  );
  for (const id of [1, 2, 3]) {
    const mine = states().filter((l) => l.server === id);
    t.same(mine[0] && { role: mine[0].role, term: mine[0].term }, { role: 'follower', term: 1 }, `server ${id} logged its state at start`);
    t.equal(mine.at(-1)!.role, id === leader.id ? 'leader' : 'follower', `server ${id} logged its current role`);
  }
  const settled = states().length;
  await sleep(500);
  t.equal(states().length, settled, 'nothing more logged while the cluster is stable');

  await cluster.stopServer(leader.id);
  const next = await cluster.leader();
  const newTerm = next.node.status().term;
  await waitFor('the survivors to log the new leader', () =>
    [...cluster.servers.keys()].every((id) => states().some((l) => l.server === id && l.term === newTerm && l.leader === next.id)) ? true : undefined,
  );
  t.ok(states().some((l) => l.server === next.id && l.role === 'leader' && l.term === newTerm), 'the new leader logged taking over');
});

void t.test('an idle leader heartbeats each follower every 2 ticks (100 ms), not every tick', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  const leader = await cluster.leader();
  const followers = [...cluster.servers.keys()].filter((id) => id !== leader.id);
  await sleep(500); // the new leader's first entry is replicated and committed: heartbeats only from here
  const sent = (): number[] => followers.map((id) => leader.raftTransportStats().peers.get(id)?.messagesSent ?? 0);
  const before = sent();
  const windowMs = 2_000;
  await sleep(windowMs);
  const after = sent();
  t.equal(leader.node.status().role, 'leader', 'still the leader');
  const expected = windowMs / (defaultHeartbeatTicks * defaultTickMs);
  followers.forEach((id, i) => {
    const n = after[i]! - before[i]!;
    // A late timer only ever loses heartbeats (ticks never outrun the clock); one per tick would be twice this.
    t.ok(n >= 1 && n <= expected + 2, `${n} messages to follower ${id} in ${windowMs} ms (about ${expected} heartbeats)`);
  });
});
