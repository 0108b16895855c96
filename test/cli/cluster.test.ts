/**
 * rfsctl's cluster commands against a real in-process cluster (3 metadata servers, 3 chunkservers): status
 * (as a child process), chunkservers list, fsck clean, fsck --verify finding a flipped bit, fsck and status
 * after a chunkserver is lost (under-replicated: exit 4), balance, leader transfer, members add/promote/remove,
 * decommission, forget (refused with the reason), and the message and exit code when no cluster is reachable.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { pattern } from '../client/pattern.ts';
import { freePort, tempDir, waitFor } from '../metadata/harness.ts';
import { runCli, runInProcess, startTestCluster } from './harness.ts';

const MiB = 1024 * 1024;

void t.test('no cluster reachable: a clear message and exit code 3', async (t) => {
  const port = await freePort(); // nothing listens there
  const r = await runCli(['ls', '/'], { metadata: `127.0.0.1:${port}` });
  t.equal(r.code, 3);
  t.equal(r.stderr, `rfsctl: no metadata server reachable at 127.0.0.1:${port} — is the cluster running? try \`npm start\`\n`);
  t.equal(r.stdout, '');
  const env = await runInProcess(['status', '--json'], { env: { RFS_METADATA: `127.0.0.1:${port}` } });
  t.equal(env.code, 3, '$RFS_METADATA is used');
  t.match(JSON.parse(env.stdout), { error: { code: 'UNREACHABLE', exitCode: 3 } });
  const bad = await runInProcess(['ls', '--metadata', 'nonsense']);
  t.equal(bad.code, 1, 'a malformed --metadata is a usage error');
  t.match(bad.stderr, '--metadata: "nonsense" is not host:port');
});

void t.test('cluster commands', async (t) => {
  const cluster = await startTestCluster();
  t.teardown(() => cluster.close());
  const local = await tempDir('rfsctl-cluster-');
  t.teardown(() => local.remove());
  const cli = (...args: string[]) => runInProcess(args, { metadata: cluster.spec });

  // ---- status, as a child process.
  const st = await runCli(['status'], { metadata: cluster.spec });
  t.equal(st.code, 0, `status exits 0 (${st.stderr})`);
  t.match(st.stdout, /^leader: \d at 127\.0\.0\.1:\d+, term \d+$/m);
  t.match(st.stdout, 'metadata servers: 3 (3 voters, 0 learners, 0 unreachable)');
  t.match(st.stdout, /ID\s+ADDRESS\s+ROLE\s+KIND\s+TERM\s+COMMIT\s+APPLIED\s+MATCH\s+LAG/);
  t.match(st.stdout, 'chunkservers: 3 live, 0 dead');
  t.match(st.stdout, 'under-replicated chunks: 0');
  const sj = JSON.parse((await cli('status', '--json')).stdout) as {
    leader: { id: number; address: string };
    members: { id: number; role: string; reachable: boolean; commitIndex: number; appliedIndex: number; lagEntries: number }[];
    chunkservers: { live: number; dead: number };
  };
  t.equal(sj.members.length, 3);
  t.same(sj.members.filter((m) => m.role === 'leader').map((m) => m.id), [sj.leader.id]);
  t.ok(sj.members.every((m) => m.reachable && m.commitIndex > 0 && m.appliedIndex > 0 && m.lagEntries >= 0), 'indexes and lag per member');
  t.match(sj.chunkservers, { live: 3, dead: 0 });

  const cs = JSON.parse((await cli('chunkservers', 'list', '--json')).stdout) as { chunkservers: { id: number; state: string; address: string }[] };
  t.same(cs.chunkservers.map((c) => c.state), ['live', 'live', 'live']);
  t.same(cs.chunkservers.map((c) => c.id).sort(), [...cluster.chunkservers.keys()].sort());
  t.match((await cli('chunkservers', 'list')).stdout, /ID\s+ADDRESS\s+RACK\s+STATE/);

  // ---- fsck, clean.
  const source = join(local.dir, 'f');
  await writeFile(source, pattern(2 * MiB + 5, 3));
  t.equal((await cli('mkdir', '/d')).code, 0);
  t.equal((await cli('put', source, '/d/f', '--chunk-mib', '1')).code, 0);
  t.equal((await cli('put', source, '/g', '--chunk-mib', '1', '--replication', '2')).code, 0);
  const clean = await cli('fsck');
  t.equal(clean.code, 0, 'a healthy cluster: exit 0');
  t.match(clean.stdout, '/: 2 files, 2 directories, 6 chunks');
  t.match(clean.stdout, '/: HEALTHY');
  const cleanVerify = JSON.parse((await cli('fsck', '/d', '--verify', '--json')).stdout) as Record<string, unknown>;
  t.match(cleanVerify, { path: '/d', files: 1, chunks: 3, missingChunks: 0, underReplicatedChunks: 0, corruptChunks: 0, verified: true, healthy: true, problems: [] });

  // ---- fsck --verify finds a flipped bit in one replica.
  const chunk = (await (await import('../../src/metadata/client.ts')).MetadataClient.connect(cluster.metadata.addresses).then(async (c) => {
    try {
      return (await c.chunkLocations('/d/f')).chunks[1]!;
    } finally {
      c.close();
    }
  }));
  const holder = chunk.replicas[0]!.id;
  const dataFile = join(cluster.dataDirs.get(holder)!, 'chunks', `${chunk.handle}.data`);
  const stored = await readFile(dataFile);
  stored[1000] = stored[1000]! ^ 0x10;
  await writeFile(dataFile, stored);
  const corrupt = await cli('fsck', '/d', '--verify', '--json');
  t.equal(corrupt.code, 4, 'a corrupt replica: exit 4');
  const cj = JSON.parse(corrupt.stdout) as { corruptChunks: number; problems: { path: string; chunks: { index: number; problems: string[]; replicas: { id: number; verified?: string }[] }[] }[] };
  t.equal(cj.corruptChunks, 1);
  t.same(cj.problems.map((p) => [p.path, p.chunks.map((c) => [c.index, c.problems])]), [['/d/f', [[1, ['corrupt']]]]]);
  t.same(cj.problems[0]!.chunks[0]!.replicas.filter((r) => r.verified !== 'ok').map((r) => r.id), [holder], 'the flipped replica is named');
  // The chunkserver noticed the bad block while serving the read: the leader replaces that replica from a
  // good copy, and fsck --verify is clean again.
  await waitFor('the corrupt replica replaced', async () => ((await cli('fsck', '/d', '--verify')).code === 0 ? true : undefined), 30_000);
  t.pass('fsck --verify is clean once the replica was replaced');

  // ---- balance: a report only.
  const bal = await cli('balance', '--json');
  t.equal(bal.code, 0);
  t.match(JSON.parse(bal.stdout), { thresholdPermille: 100, servers: [{}, {}, {}] });
  t.match((await cli('balance', '--help')).stdout, /only\s+reports/);

  // ---- leader transfer.
  const before = sj.leader.id;
  const lt = await cli('leader', 'transfer', '--json');
  t.equal(lt.code, 0, `leader transfer (${lt.stderr})`);
  const to = (JSON.parse(lt.stdout) as { leader: number }).leader;
  t.not(to, before);
  const after = await waitFor('the new leader in status', async () => {
    const s = JSON.parse((await cli('status', '--json')).stdout) as { leader: { id: number } | null };
    return s.leader?.id === to ? s : undefined;
  });
  t.equal(after.leader!.id, to, 'status shows the new leader');
  const self = await cli('leader', 'transfer', '--to', '99');
  t.equal(self.code, 2, 'to a non-member: refused');

  // ---- members add, promote, remove.
  const peer = await cluster.metadata.reserve(4);
  await cluster.metadata.startJoiner(4);
  const add = await cli('members', 'add', '4', peer.client, peer.raft, '--json');
  t.equal(add.code, 0, `members add (${add.stderr})`);
  t.match(JSON.parse(add.stdout), { members: [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4, learner: true, voter: false }] });
  await waitFor('member 4 promoted', async () => ((await cli('members', 'promote', '4')).code === 0 ? true : undefined));
  const four = JSON.parse((await runInProcess(['status', '--json'], { metadata: `${cluster.spec},${peer.client}` })).stdout) as { members: { id: number; voter: boolean }[] };
  t.same(four.members.map((m) => [m.id, m.voter]), [[1, true], [2, true], [3, true], [4, true]]);
  const remove = await cli('members', 'remove', '4');
  t.equal(remove.code, 0, `members remove (${remove.stderr})`);
  t.match(remove.stdout, 'member 4 removed');
  await cluster.metadata.stopServer(4);
  const notMember = await cli('members', 'remove', '4');
  t.equal(notMember.code, 2);

  // ---- a chunkserver lost: its replicas are under-replicated (no fourth server to copy to).
  const victim = [...cluster.chunkservers.keys()].find((id) => chunk.replicas.some((r) => r.id === id))!;
  await cluster.stopChunkserver(victim);
  await waitFor('the chunkserver declared dead', async () => {
    const s = JSON.parse((await cli('status', '--json')).stdout) as { chunkservers: { live: number; dead: number } };
    return s.chunkservers.dead === 1 ? true : undefined;
  });
  const lost = await cli('fsck', '--json');
  t.equal(lost.code, 4, 'under-replicated chunks: exit 4');
  const lj = JSON.parse(lost.stdout) as { underReplicatedChunks: number; missingChunks: number; healthy: boolean; problems: { path: string; chunks: { problems: string[] }[] }[] };
  t.equal(lj.healthy, false);
  t.equal(lj.missingChunks, 0);
  t.ok(lj.underReplicatedChunks >= 3, `every chunk of /d/f lost a replica (${lj.underReplicatedChunks})`);
  t.ok(lj.problems.some((p) => p.path === '/d/f' && p.chunks.every((c) => c.problems.includes('under-replicated'))));
  const lostText = await cli('fsck', '/d');
  t.match(lostText.stdout, /\/d\/f: chunk 0 \(handle \d+ v\d+\): under-replicated; 2\/3 live replicas: .*\(dead\)/);
  t.match(lostText.stdout, '/d: 1 file(s) with problems');
  const status = await cli('status');
  t.match(status.stdout, 'chunkservers: 2 live, 1 dead');
  await waitFor('the leader counts under-replicated chunks', async () => {
    const s = JSON.parse((await cli('status', '--json')).stdout) as { underReplicatedChunks: number };
    return s.underReplicatedChunks >= 3 ? true : undefined;
  });

  // ---- decommission.
  const other = [...cluster.chunkservers.keys()][0]!;
  const dec = await cli('chunkservers', 'decommission', String(other));
  t.equal(dec.code, 0, `decommission (${dec.stderr})`);
  const states = JSON.parse((await cli('chunkservers', 'list', '--json')).stdout) as { chunkservers: { id: number; state: string }[] };
  t.equal(states.chunkservers.find((c) => c.id === other)?.state, 'decommissioning');
  const unknown = await cli('chunkservers', 'decommission', '999');
  t.equal(unknown.code, 2, 'an unknown chunkserver');

  // ---- forget: refused while it is not decommissioned (and heartbeating), with the reason.
  const early = await cli('chunkservers', 'forget', String(other));
  t.not(early.code, 0, 'forget refused');
  t.match(early.stderr, /chunkserver \d+ is (decommissioning|decommissioned|live)|was heard from|still lists/, `with the reason (${early.stderr.trim()})`);
  t.equal((await cli('chunkservers', 'forget', '999')).code, 2, 'forget of an unknown chunkserver');
});
