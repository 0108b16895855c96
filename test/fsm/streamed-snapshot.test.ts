/**
 * Streamed snapshots end to end under the real driver: three RaftNodes running the metadata state machine
 * (MemoryKv stores and MemoryDisk logs that survive a "crash"), joined by an in-process network that can
 * lose, duplicate and delay messages. A follower cut off while the leader compacts its log catches up by a
 * streamed snapshot — through loss and duplication, a leader change mid-transfer, a crash mid-install, and a
 * crash between the state machine's switch and the persist of the snapshot's metadata.
 */
import t from 'tap';
import type { Test } from 'tap';
import { encodeCommand } from '../../src/fsm/commands.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import { RaftMetadataStateMachine } from '../../src/fsm/raft-adapter.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { RaftNode } from '../../src/raft/node.ts';
import type { NodeId, Message } from '../../src/raft/types.ts';
import { systemClock } from '../../src/runtime/clock.ts';
import type { LogStore, LogWrite } from '../../src/storage/log-store.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { seededRandom } from '../raft/harness.ts';

const IDS: readonly NodeId[] = [1, 2, 3];
const TICK_MS = 5;

interface Member {
  readonly id: NodeId;
  readonly disk: MemoryDisk;
  readonly kv: MemoryKv;
  node: RaftNode | null;
  fsm: MetadataStateMachine | null;
  fatal: unknown;
}

type Filter = (m: Message) => 'deliver' | 'drop' | 'duplicate';

class Cluster {
  readonly members = new Map<NodeId, Member>();
  filter: Filter = () => 'deliver';
  /** Wraps a member's log store when it (re)starts: tests intercept writes with it. */
  wrapLog: (id: NodeId, store: LogStore) => LogStore = (_id, s) => s;
  private readonly random = seededRandom(4242);

  constructor() {
    for (const id of IDS) this.members.set(id, { id, disk: new MemoryDisk(), kv: new MemoryKv(), node: null, fsm: null, fatal: null });
  }

  member(id: NodeId): Member {
    return this.members.get(id)!;
  }

  async start(id: NodeId): Promise<void> {
    const m = this.member(id);
    const fsm = await MetadataStateMachine.open(m.kv);
    m.fsm = fsm;
    m.node = new RaftNode({
      config: { id, random: seededRandom(id * 31 + m.disk.generation), snapshotChunkBytes: 64 },
      logStore: this.wrapLog(id, new MemoryLogStore(m.disk)),
      transport: { send: (msg) => this.send(msg) },
      clock: systemClock,
      stateMachine: new RaftMetadataStateMachine(fsm),
      tickMs: TICK_MS,
      initialVoters: IDS,
      snapshotEveryEntries: 10,
      snapshotKeepEntries: 0,
      onFatal: (e) => (m.fatal = e),
    });
    await m.node.start();
  }

  /** Stops a member and loses its unsynced log writes; its state machine's store keeps what it wrote. */
  crash(id: NodeId): void {
    const m = this.member(id);
    m.node?.stop();
    m.node = null;
    m.fsm = null;
    m.disk.crash(this.random);
  }

  private send(msg: Message): void {
    const verdict = this.filter(msg);
    if (verdict === 'drop') return;
    const copies = verdict === 'duplicate' ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      // Random extra delay reorders messages.
      const delay = this.random.int(3);
      setTimeout(() => this.member(msg.to)?.node?.receive(msg), delay);
    }
  }

  leader(): Member | null {
    for (const m of this.members.values()) if (m.node?.status().role === 'leader') return m;
    return null;
  }

  async waitFor(what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      for (const m of this.members.values()) if (m.fatal !== null) throw new Error(`n${m.id} stopped: ${m.fatal instanceof Error ? m.fatal.message : 'fatal error'}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async mkdirs(prefix: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      for (;;) {
        const leader = this.leader();
        const node = leader?.node ?? null;
        if (node !== null) {
          try {
            await node.propose(encodeCommand({ nowMs: 1_000, op: { type: 'mkdir', path: `/${prefix}${i}` } }));
            break;
          } catch {
            /* not leader any more: retry */
          }
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  stopAll(): void {
    for (const m of this.members.values()) m.node?.stop();
  }
}

async function digest(kv: MemoryKv): Promise<string> {
  const parts: string[] = [];
  for await (const { key, value } of kv.snapshotIterator()) parts.push(`${Buffer.from(key).toString('hex')}=${Buffer.from(value).toString('hex')}`);
  return parts.join(',');
}

/** Starts all three, cuts 3 off while 40 directories are created (the log is compacted past it), reconnects. */
async function lagThenReconnect(c: Cluster, filter: Filter): Promise<void> {
  for (const id of IDS) await c.start(id);
  await c.waitFor('a leader', () => c.leader() !== null);
  let cut = true;
  c.filter = (m) => (cut && (m.to === 3 || m.from === 3) ? 'drop' : filter(m));
  if (c.leader()!.id === 3) c.member(3).node!.transferLeadership(1);
  await c.waitFor('a leader other than 3', () => c.leader() !== null && c.leader()!.id !== 3);
  await c.mkdirs('d', 40);
  const leader = c.leader()!;
  await c.waitFor('compaction past n3', () => leader.node!.status().firstIndex > c.member(3).node!.status().lastIndex + 1);
  cut = false;
}

async function converged(c: Cluster, t: Test): Promise<void> {
  await c.mkdirs('final', 1);
  const leader = c.leader()!;
  const target = leader.fsm!.appliedIndex();
  await c.waitFor('every member at the leader’s applied index', () => [...c.members.values()].every((m) => m.fsm !== null && m.fsm.appliedIndex() >= target));
  const want = await digest(leader.kv);
  for (const m of c.members.values()) t.equal(await digest(m.kv), want, `n${m.id} holds the leader's state`);
}

void t.test('a lagging follower catches up by a streamed snapshot through loss, duplication and reordering', async (t) => {
  const c = new Cluster();
  t.teardown(() => c.stopAll());
  let n = 0;
  await lagThenReconnect(c, (m) => {
    if (m.type !== 'snap' && m.type !== 'snapResp') return 'deliver';
    n++;
    return n % 7 === 0 ? 'drop' : n % 5 === 0 ? 'duplicate' : 'deliver';
  });
  await c.waitFor('n3 installs a snapshot', () => c.member(3).node!.snapshotStreamStats().installs >= 1);
  await converged(c, t);
  const sent = [...c.members.values()].reduce((s, m) => s + m.node!.snapshotStreamStats().chunksSent, 0);
  t.ok(sent > 4, `the snapshot went in many 64-byte chunks (${sent})`);
  t.equal(c.member(3).node!.status().firstIndex > 1, true, 'n3 log starts after the snapshot');
});

void t.test('leader change mid-transfer: the follower aborts, keeps its state, and is caught up by the new leader', async (t) => {
  const c = new Cluster();
  t.teardown(() => c.stopAll());
  let chunks = 0;
  let crashed: NodeId | null = null;
  await lagThenReconnect(c, (m) => {
    if (m.type === 'snap' && m.to === 3 && crashed === null && ++chunks === 5) {
      crashed = m.from;
      setImmediate(() => c.crash(m.from));
      return 'drop';
    }
    return 'deliver';
  });
  const before = c.member(3).fsm!.appliedIndex();
  await c.waitFor('the old leader crashed', () => crashed !== null);
  await c.waitFor('n3 installs a snapshot', () => c.member(3).node!.snapshotStreamStats().installs >= 1);
  const stats = c.member(3).node!.snapshotStreamStats();
  t.ok(stats.receivesStarted >= 2, `the transfer was started again (${stats.receivesStarted} started, ${stats.receivesAborted} aborted)`);
  t.ok(c.member(3).fsm!.appliedIndex() > before);
  await c.start(crashed!);
  await converged(c, t);
});

void t.test('crash mid-install: the follower restarts with its old state and is caught up again', async (t) => {
  const c = new Cluster();
  t.teardown(() => c.stopAll());
  let chunks = 0;
  let crashedAt = -1;
  await lagThenReconnect(c, (m) => {
    if (m.type === 'snap' && m.to === 3 && crashedAt < 0 && ++chunks === 5) {
      crashedAt = c.member(3).fsm!.appliedIndex();
      setImmediate(() => c.crash(3));
      return 'drop';
    }
    return 'deliver';
  });
  await c.waitFor('n3 crashed mid-transfer', () => crashedAt >= 0 && c.member(3).node === null);
  // MemoryKv installs a restore only at its end: the half-received stream left nothing behind.
  const reopened = await MetadataStateMachine.open(c.member(3).kv);
  t.equal(reopened.appliedIndex(), crashedAt, 'the old state survived the crash');
  await c.start(3);
  await c.waitFor('n3 installs a snapshot', () => c.member(3).node!.snapshotStreamStats().installs >= 1);
  await converged(c, t);
});

void t.test('crash after the state machine switched, before the log persisted the metadata: restart is consistent', async (t) => {
  const c = new Cluster();
  t.teardown(() => c.stopAll());
  let armed = true;
  let crashedAt = -1;
  c.wrapLog = (id, store) =>
    id !== 3
      ? store
      : {
          load: () => store.load(),
          compact: (i) => store.compact(i),
          close: () => store.close(),
          save: (w: LogWrite) => {
            if (armed && w.snapshot !== undefined && w.snapshot.metadata.index > 1) {
              // The state machine holds the snapshot's state now; the log never gets its metadata.
              armed = false;
              crashedAt = w.snapshot.metadata.index;
              setImmediate(() => c.crash(3));
              return new Promise<void>(() => undefined);
            }
            return store.save(w);
          },
        };
  await lagThenReconnect(c, () => 'deliver');
  await c.waitFor('n3 crashed after its switch', () => crashedAt > 0 && c.member(3).node === null);
  const loaded = await new MemoryLogStore(c.member(3).disk).load();
  const reopened = await MetadataStateMachine.open(c.member(3).kv);
  t.equal(reopened.appliedIndex(), crashedAt, 'the state machine is at the snapshot');
  t.ok((loaded.snapshot?.metadata.index ?? 0) < crashedAt, 'the log is not');
  t.ok(loaded.hardState.commit < crashedAt, 'nor is its commit');
  await c.start(3);
  await converged(c, t);
  t.equal(c.member(3).fatal, null, 'nothing was applied twice (the state machine asserts ascending indexes)');
});
