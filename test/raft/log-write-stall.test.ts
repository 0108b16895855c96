/**
 * The driver's log-write watchdog. While a LogStore write is pending the loop sends no heartbeat,
 * acknowledgement or apply; a hung log disk used to leave a member that did nothing and never stopped. Now a
 * write pending one election timeout is logged as slow (once), and one pending `logWriteStallFatalMs` stops
 * the node through onFatal with RaftError 'LogWriteStalled'. A slow write that completes, or a stalled
 * process, is not fatal.
 */
import t from 'tap';
import { RaftError } from '../../src/raft/errors.ts';
import { defaultLogWriteStallFatalMs } from '../../src/raft/node.ts';
import type { RaftNodeOptions } from '../../src/raft/node.ts';
import type { Logger } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { LoadedLog, LogStore, LogWrite } from '../../src/storage/log-store.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import type { ManualCluster } from './manual-cluster.ts';
import { NullMachine, startManualCluster } from './manual-cluster.ts';

const tickMs = 50;
const electionTimeoutMs = 10 * tickMs; // the default electionTicks

/** A log store whose writes, once `hang` is set, stay pending until release() (or forever). */
class HangingLogStore implements LogStore {
  hang = false;
  private readonly inner = new MemoryLogStore(new MemoryDisk());
  private readonly held: { write: LogWrite; resolve: () => void; reject: (e: Error) => void }[] = [];
  load(): Promise<LoadedLog> {
    return this.inner.load();
  }
  save(write: LogWrite): Promise<void> {
    if (!this.hang) return this.inner.save(write);
    return new Promise<void>((resolve, reject) => this.held.push({ write, resolve, reject }));
  }
  compact(index: number): Promise<void> {
    return this.inner.compact(index);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  get pending(): number {
    return this.held.length;
  }
  /** Completes the held writes. */
  async release(): Promise<void> {
    this.hang = false;
    for (const h of this.held.splice(0)) {
      await this.inner.save(h.write);
      h.resolve();
    }
  }
  /** Fails the held writes. */
  fail(error: Error): void {
    for (const h of this.held.splice(0)) h.reject(error);
  }
}

interface Recorded {
  readonly warnings: string[];
  readonly fatals: unknown[];
}

function recordingLogger(into: string[]): Logger {
  return { debug() {}, info() {}, warn: (_o, msg) => into.push(msg ?? ''), error() {} };
}

async function cluster(
  extra: Partial<RaftNodeOptions> = {},
): Promise<ManualCluster & { store: HangingLogStore; recorded: Recorded }> {
  const store = new HangingLogStore();
  const recorded: Recorded = { warnings: [], fatals: [] };
  const c = await startManualCluster({
    tickMs,
    seedFactor: 37,
    stateMachine: () => new NullMachine(),
    extra: (id: NodeId) =>
      id === 1
        ? {
            logStore: store,
            logger: recordingLogger(recorded.warnings),
            onFatal: (e) => recorded.fatals.push(e),
            ...extra,
          }
        : {},
  });
  c.nodes.get(1)!.campaign();
  await c.clock.advance(20 * tickMs);
  if (c.nodes.get(1)!.status().role !== 'leader') throw new Error('setup: node 1 should lead');
  return { ...c, store, recorded };
}

const data = new TextEncoder().encode('x');

void t.test(
  'a log write that never completes: warned once, then the node stops itself (LogWriteStalled)',
  async (t) => {
    const { clock, nodes, store, recorded } = await cluster();
    const leader = nodes.get(1)!;
    store.hang = true;
    const proposed = leader.propose(data);
    const outcome = proposed.then(
      () => 'committed',
      (e: unknown) => e,
    );
    await clock.advance(tickMs);
    t.equal(store.pending, 1, 'the leader is waiting for its log write');

    await clock.advance(electionTimeoutMs);
    t.same(
      recorded.warnings.filter((w) => w.startsWith('log write slow')).length,
      1,
      'slow write warned after one election timeout',
    );
    await clock.advance(defaultLogWriteStallFatalMs - 3 * electionTimeoutMs);
    t.same(recorded.fatals, [], 'not fatal before logWriteStallFatalMs');
    t.same(recorded.warnings.filter((w) => w.startsWith('log write slow')).length, 1, 'warned once only');

    await clock.advance(3 * electionTimeoutMs);
    t.equal(recorded.fatals.length, 1, 'onFatal called once the write was pending logWriteStallFatalMs');
    const fatal = recorded.fatals[0];
    t.ok(
      fatal instanceof RaftError && fatal.code === 'LogWriteStalled',
      `a RaftError LogWriteStalled (${String(fatal)})`,
    );
    const rejected = await outcome;
    t.ok(
      rejected instanceof RaftError && rejected.code === 'Stopped',
      'the pending proposal is rejected: the node stopped',
    );
    t.doesNotThrow(
      () => leader.stop(),
      'stop() after the fatal returns at once (nothing waits for the hung write)',
    );

    // The hung write failing late is not a second fatal.
    store.fail(new Error('EIO at last'));
    await clock.advance(electionTimeoutMs);
    t.equal(recorded.fatals.length, 1, 'onFatal is called once');

    // The others carry on without it.
    await clock.advance(4 * electionTimeoutMs);
    const leaders = [2, 3].filter((id) => nodes.get(id)!.status().role === 'leader');
    t.equal(leaders.length, 1, 'the two others elected a leader');
    for (const n of nodes.values()) n.stop();
  },
);

void t.test('a slow write that completes is not fatal; the node goes on', async (t) => {
  const { clock, nodes, store, recorded } = await cluster();
  const leader = nodes.get(1)!;
  store.hang = true;
  const proposed = leader.propose(data);
  await clock.advance(5 * electionTimeoutMs);
  t.equal(store.pending, 1, 'the write is still pending');
  await store.release();
  await clock.advance(5 * tickMs);
  const result = await proposed;
  t.ok(result.index > 0, `the proposal committed (index ${result.index})`);
  t.ok(recorded.warnings.includes('slow log write completed'), 'its completion logged');
  await clock.advance(defaultLogWriteStallFatalMs * 2);
  t.same(recorded.fatals, [], 'no fatal');
  // It may have lost the lead meanwhile (it sent no heartbeat while it waited), but it is still a member that works.
  const current = [...nodes.values()].find((n) => n.status().role === 'leader')!;
  const later = await Promise.all([current.propose(data), clock.advance(5 * tickMs)]);
  await clock.advance(5 * tickMs);
  t.ok(leader.status().applied >= later[0].index, `node 1 applies a later entry (${later[0].index})`);
  for (const n of nodes.values()) n.stop();
});

void t.test(
  'the whole process stalled longer than the limit while a write was pending is not a hung disk',
  async (t) => {
    const { clock, nodes, store, recorded } = await cluster();
    store.hang = true;
    const proposed = nodes.get(1)!.propose(data);
    await clock.advance(tickMs);
    t.equal(store.pending, 1, 'the write is pending');
    clock.stall(defaultLogWriteStallFatalMs + 10_000);
    await clock.advance(tickMs); // the watchdog runs late, once
    t.same(recorded.fatals, [], 'the stalled time is not counted against the disk');
    await store.release();
    await clock.advance(5 * tickMs);
    t.ok((await proposed).index > 0, 'the proposal committed');
    t.same(recorded.fatals, [], 'no fatal');
    for (const n of nodes.values()) n.stop();
  },
);

void t.test(
  'logWriteStallFatalMs is configurable; a node stopped normally has no watchdog left',
  async (t) => {
    const { clock, nodes, store, recorded } = await cluster({ logWriteStallFatalMs: 2_000 });
    store.hang = true;
    void nodes
      .get(1)!
      .propose(data)
      .catch(() => undefined);
    await clock.advance(1_900);
    t.same(recorded.fatals, [], 'not yet');
    await clock.advance(200);
    t.equal(recorded.fatals.length, 1, 'fatal after 2 s');

    // A plain stop() while a write hangs clears the watchdog: no fatal later.
    const again = await cluster({ logWriteStallFatalMs: 2_000 });
    again.store.hang = true;
    void again.nodes
      .get(1)!
      .propose(data)
      .catch(() => undefined);
    await again.clock.advance(tickMs);
    for (const n of again.nodes.values()) n.stop();
    t.equal(again.clock.pendingTimers(), 0, 'no timer left after stop()');
    await again.clock.advance(10_000);
    t.same(again.recorded.fatals, [], 'stopped, never fatal');
    for (const n of nodes.values()) n.stop();
  },
);
