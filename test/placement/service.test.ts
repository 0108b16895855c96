/**
 * The chunk service over the real state machine: its view is loaded from the store, its decisions are
 * proposed as commands and applied (a Harness stands in for Raft).
 */
import t from 'tap';
import { defaultFsmLimits } from '../../src/fsm/limits.ts';
import { ChunkService } from '../../src/placement/service.ts';
import { loadClusterView } from '../../src/placement/view.ts';
import { Harness } from '../fsm/harness.ts';
import { seededRandom } from './fixtures.ts';

async function setUp() {
  const h = await Harness.open();
  let leader = true;
  const service = new ChunkService({
    propose: (op) => h.run(op),
    loadView: () => loadClusterView(h.kv, defaultFsmLimits),
    role: () => ({ leader, term: 1 }),
    random: seededRandom(11),
    limits: { heartbeatTimeoutMs: 1_000, leaderGraceMs: 1_000 },
  });
  const ids: number[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await service.register({ address: `cs${i}:7000`, rack: `r${i % 3}`, capacityBytes: 1e12, usedBytes: 0 });
    if (!r.ok) throw new Error(r.message);
    ids.push((r.value as { id: number }).id);
  }
  return { h, service, ids, setLeader: (v: boolean) => (leader = v) };
}

void t.test('allocate, seal, lose a server, re-replicate: the placement is repaired through replicated commands', async (t) => {
  const { h, service, ids, setLeader } = await setUp();
  t.throws(() => service.heartbeat(ids[0]!, 0, { capacityBytes: 1, usedBytes: 0 }), { code: 'EAGAIN' }, 'no manager before the first step');
  await service.step(0);
  await h.ok({ type: 'create', path: '/f', replication: 3, lease: { holder: 'w', durationMs: 60_000 } });
  const allocated = await service.allocateChunk({ path: '/f', holder: 'w', replication: 3 });
  t.ok(allocated.ok, 'allocated');
  if (!allocated.ok) return;
  const { handle, replicas } = allocated.value;
  t.equal(new Set(replicas).size, 3);
  await h.ok({ type: 'sealChunk', handle, holder: 'w', version: 1, lengthBytes: 10, checksum: 0 });
  const spare = ids.find((id) => !replicas.includes(id))!;
  const [gone, ...kept] = replicas;
  // Everybody but `gone` heartbeats and reports; `gone` stays silent past the grace period.
  const beat = (now: number) => {
    const out = [];
    for (const id of [...kept, spare]) {
      const chunks = kept.includes(id) ? [{ handle, version: 1, lengthBytes: 10 }] : [];
      out.push(...service.chunkReport(id, now, { full: true, chunks }).commands.map((c) => ({ from: id, ...c })));
    }
    return out;
  };
  const steps = async (from: number, to: number) => {
    for (let now = from; now <= to; now += 100) await service.step(now);
  };
  await steps(100, 400);
  beat(500);
  await steps(500, 1_200); // the grace period (1 s from the first step) ends at 1 000
  const dead = await h.sm.chunkserver(gone!);
  t.equal(dead.ok && dead.value.state, 'dead', 'the silent server was declared dead by a replicated command');
  t.equal(service.status()?.underReplicated, 1);
  const commands = beat(1_250);
  t.match(commands, [{ kind: 'replicate', handle, version: 1, target: spare }], 'a copy to the spare server');
  t.ok(kept.includes(commands[0]!.from), 'from a live holder');
  service.chunkReport(spare, 1_300, { full: false, chunks: [{ handle, version: 1, lengthBytes: 10 }] });
  await service.step(1_300);
  const c = await h.sm.chunk(handle);
  t.same(c.ok && [...c.value.replicas].sort(), [...kept, spare].sort(), 'the copy is listed, the dead replica dropped');
  t.equal(service.status()?.underReplicated, 0);
  setLeader(false);
  await service.step(1_400);
  t.equal(service.status(), null, 'a follower runs no chunk manager');
  t.same(await h.invariants(), []);
});

void t.test('garbage: a replica of a deleted file is deleted on report', async (t) => {
  const { h, service, ids } = await setUp();
  await service.step(0);
  await h.ok({ type: 'create', path: '/g', lease: { holder: 'w', durationMs: 60_000 } });
  const a = await service.allocateChunk({ path: '/g', holder: 'w', replication: 1 });
  if (!a.ok) throw new Error(a.message);
  await h.ok({ type: 'unlink', path: '/g' });
  await service.step(10);
  const holder = a.value.replicas[0]!;
  t.ok(ids.includes(holder));
  const reply = service.chunkReport(holder, 20, { full: true, chunks: [{ handle: a.value.handle, version: 1, lengthBytes: 0 }] });
  t.same(reply.commands, [{ kind: 'delete', handle: a.value.handle, version: 1 }]);
});

void t.test('a chunkserver registered after the last pass gets chunks at once; a full cluster is refused without a reload each time', async (t) => {
  const h = await Harness.open();
  let loads = 0;
  const service = new ChunkService({
    propose: (op) => h.run(op),
    loadView: () => {
      loads++;
      return loadClusterView(h.kv, defaultFsmLimits);
    },
    role: () => ({ leader: true, term: 1 }),
    random: seededRandom(12),
  });
  await service.step(0); // the manager's view: no chunkserver yet
  await h.ok({ type: 'create', path: '/f', replication: 3, lease: { holder: 'w', durationMs: 60_000 } });
  await t.rejects(service.allocateChunk({ path: '/f', holder: 'w', replication: 3 }), { code: 'ENOSPC' }, 'no server at all: ENOSPC');
  t.equal(loads, 1, 'no reload without a registration since the pass');
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await service.register({ address: `cs${i}:7000`, rack: `r${i}`, capacityBytes: 1e12, usedBytes: 0 });
    if (!r.ok) throw new Error(r.message);
    ids.push((r.value as { id: number }).id);
  }
  const allocated = await service.allocateChunk({ path: '/f', holder: 'w', replication: 3 });
  t.ok(allocated.ok, 'allocated before the next pass');
  if (allocated.ok) t.same([...allocated.value.replicas].sort(), [...ids].sort(), 'on the three new servers');
  t.equal(loads, 2 + 3, "one reload, and one per new server's registration (checked against the registry's bound)");

  // Every server full (as its registration said): refused, and refused again without another reload.
  const full = await Harness.open();
  let fullLoads = 0;
  const fullService = new ChunkService({
    propose: (op) => full.run(op),
    loadView: () => {
      fullLoads++;
      return loadClusterView(full.kv, defaultFsmLimits);
    },
    role: () => ({ leader: true, term: 1 }),
    random: seededRandom(13),
  });
  await fullService.step(0);
  await fullService.register({ address: 'cs9:7000', rack: 'r0', capacityBytes: 1e9, usedBytes: 1e9 });
  await full.ok({ type: 'create', path: '/g', replication: 1, lease: { holder: 'w', durationMs: 60_000 } });
  for (let i = 0; i < 3; i++) {
    await t.rejects(fullService.allocateChunk({ path: '/g', holder: 'w', replication: 1 }), { code: 'ENOSPC' }, `full: ENOSPC (${i + 1})`);
  }
  t.equal(fullLoads, 2 + 1, 'one reload for the registration (and one by it, for the bound), none after');
});

void t.test('refreshView: a server registered after the view loaded is known once the view is refreshed, at most once a second', async (t) => {
  const { service } = await setUp();
  t.equal(await service.refreshView(0), false, 'no manager yet: nothing to refresh');
  await service.step(0);
  const r = await service.register({ address: 'late:7000', rack: 'r9', capacityBytes: 1e12, usedBytes: 0 });
  if (!r.ok) throw new Error(r.message);
  const late = (r.value as { id: number }).id;
  t.throws(() => service.heartbeat(late, 10, { capacityBytes: 1e12, usedBytes: 0 }), { code: 'ENOENT' }, 'the view loaded before it registered');
  t.equal(await service.refreshView(10), true, 'reloaded');
  t.same(service.heartbeat(late, 20, { capacityBytes: 1e12, usedBytes: 0 }).commands, [], 'known now');
  t.equal(await service.refreshView(500), false, 'not again within a second');
  t.equal(await service.refreshView(1_010), true, 'again after a second');
});

void t.test('exchange: an exchange from a server the view does not know reloads the view once and is answered; a made-up id is ENOENT', async (t) => {
  const { service } = await setUp();
  await service.step(0);
  const r = await service.register({ address: 'late:7000', rack: 'r9', capacityBytes: 1e12, usedBytes: 0 });
  if (!r.ok) throw new Error(r.message);
  const late = (r.value as { id: number }).id;
  const usage = { capacityBytes: 1e12, usedBytes: 0 };
  t.same((await service.exchange(10, (c) => c.heartbeat(late, 10, usage))).commands, [], 'answered after one reload');
  await t.rejects(service.exchange(20, (c) => c.heartbeat(999, 20, usage)), { code: 'ENOENT' }, 'no reload within a second: refused');
  await t.rejects(service.exchange(2_000, (c) => c.chunkReport(999, 2_000, { full: true, chunks: [] })), { code: 'ENOENT' }, 'reloaded, still unknown: refused');
});

void t.test('the registry bound holds against many new chunkservers registering at once', async (t) => {
  const h = await Harness.open();
  const service = new ChunkService({
    propose: (op) => h.run(op),
    loadView: () => loadClusterView(h.kv, defaultFsmLimits),
    role: () => ({ leader: true, term: 1 }),
    random: seededRandom(14),
    limits: { chunkserversMax: 3 },
  });
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => service.register({ address: `cs${i}:7000`, rack: `r${i % 3}`, capacityBytes: 1e12, usedBytes: 0 })));
  t.equal(results.filter((r) => r.ok).length, 3, 'three registered');
  t.ok(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === 'EINVAL' && r.message.includes('chunkserversMax 3')), 'the rest refused, naming the limit');
  t.equal((await loadClusterView(h.kv, defaultFsmLimits)).servers.size, 3, 'the registry holds three');
  t.ok((await service.register({ id: 1, address: 'cs0:7000', rack: 'r0', capacityBytes: 1e12, usedBytes: 0 })).ok, 'a known server still re-registers');
});
