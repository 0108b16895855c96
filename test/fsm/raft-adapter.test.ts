/**
 * The metadata state machine under the real Raft driver: a single-member group on RocksDB (log and Kv),
 * restarted, re-applies nothing and keeps its namespace.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { encodeCommand } from '../../src/fsm/commands.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { RaftMetadataStateMachine } from '../../src/fsm/raft-adapter.ts';
import type { FsResult } from '../../src/fsm/errors.ts';
import { RaftNode } from '../../src/raft/node.ts';
import { systemClock, systemRandom } from '../../src/runtime/clock.ts';
import { RocksDbLogStore } from '../../src/storage/rocksdb-log-store.ts';
import { RocksDbKv } from '../../src/storage/rocksdb-kv.ts';

const base = await mkdtemp(join(tmpdir(), 'rfs-adapter-'));
t.teardown(() => rm(base, { recursive: true, force: true }));

async function startMember(snapshotEveryEntries: number) {
  const logStore = await RocksDbLogStore.open(join(base, 'log'));
  const kv = await RocksDbKv.open(join(base, 'kv'));
  const fsm = await MetadataStateMachine.open(kv);
  const node = new RaftNode({
    config: { id: 1, random: systemRandom },
    logStore,
    transport: { send() {} },
    clock: systemClock,
    stateMachine: new RaftMetadataStateMachine(fsm),
    tickMs: 10,
    initialVoters: [1],
    snapshotEveryEntries,
  });
  await node.start();
  node.campaign();
  const deadline = Date.now() + 5000;
  while (node.status().role !== 'leader' || node.status().commit < node.status().lastIndex) {
    if (Date.now() > deadline) throw new Error('no leader');
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    node,
    fsm,
    async stop() {
      node.stop();
      await logStore.close();
      await kv.close();
    },
  };
}

const run = async (node: RaftNode, op: Parameters<typeof encodeCommand>[0]['op']) =>
  (await node.propose(encodeCommand({ nowMs: 1_000, op }))).result as FsResult;

void t.test('apply, snapshot, restart: nothing re-applied, namespace kept', async (t) => {
  let m = await startMember(20);
  for (let i = 0; i < 50; i++) {
    const r = await run(m.node, { type: 'mkdir', path: `/d${i}` });
    t.ok(r.ok, `mkdir /d${i}`);
  }
  const again = await run(m.node, { type: 'mkdir', path: '/d0' });
  t.same(again.ok ? null : again.code, 'EEXIST');
  const appliedBefore = m.fsm.appliedIndex();
  await m.stop();

  m = await startMember(20);
  t.ok(m.fsm.appliedIndex() >= appliedBefore, 'the state machine kept its applied index');
  const page = await m.fsm.readdir('/', { limit: 100 });
  t.equal(page.ok ? page.value.entries.length : -1, 50, 'all 50 directories survived the restart');
  const r = await run(m.node, { type: 'mkdir', path: '/after' });
  t.ok(r.ok);
  await m.stop();
});
