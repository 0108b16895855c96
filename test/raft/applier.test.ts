/**
 * The driver's pipelined applier: while the state machine applies one batch, the loop keeps persisting and
 * committing later entries; what queued up meanwhile is applied as one batch, in order; read barriers and
 * snapshots wait for what the state machine has really applied.
 */
import t from 'tap';
import { RaftNode, readAheadDistanceEntriesMax } from '../../src/raft/node.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, Snapshot } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { systemClock, systemRandom } from '../../src/runtime/clock.ts';

/** A state machine whose applyBatch calls complete only when the test releases them. */
class GatedStateMachine implements StateMachine {
  applied = 0;
  readonly batches: number[][] = [];
  readonly snapshotsAt: number[] = [];
  /** Indexes handed to readAhead. */
  readonly readAheads: number[] = [];
  private gates: (() => void)[] = [];
  gated = true;

  applyBatch(entries: readonly Entry[]): Promise<unknown[]> {
    this.batches.push(entries.map((e) => e.index));
    return new Promise((resolve) => {
      const finish = () => {
        for (const e of entries) {
          if (e.index !== this.applied + 1) throw new Error(`entry ${e.index} after ${this.applied}`);
          this.applied = e.index;
        }
        resolve(entries.map((e) => (e.type === EntryType.Normal ? `applied ${e.index}` : undefined)));
      };
      if (this.gated) this.gates.push(finish);
      else finish();
    });
  }

  readAhead(entries: readonly Entry[]): void {
    for (const e of entries) this.readAheads.push(e.index);
  }

  release(): void {
    this.gated = false;
    const gates = this.gates;
    this.gates = [];
    for (const g of gates) g();
  }

  snapshot(): Uint8Array {
    this.snapshotsAt.push(this.applied);
    return new Uint8Array(0);
  }

  restore(snapshot: Snapshot): void {
    this.applied = snapshot.metadata.index;
  }
}

let status: (() => unknown) | undefined;
const until = async (what: string, cond: () => boolean) => {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(status?.())}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

/** A one-member group led by a node over `sm` (ungated until the leader applied its own entries), then gated. */
async function gatedLeader(sm: GatedStateMachine, snapshotEveryEntries?: number): Promise<RaftNode> {
  sm.gated = false;
  const node = new RaftNode({
    config: { id: 1, random: systemRandom },
    logStore: new MemoryLogStore(new MemoryDisk()),
    transport: { send() {} },
    clock: systemClock,
    stateMachine: sm,
    tickMs: 10,
    initialVoters: [1],
    ...(snapshotEveryEntries !== undefined ? { snapshotEveryEntries } : {}),
  });
  await node.start();
  status = () => ({ ...node.status(), progress: undefined });
  node.campaign();
  await until('leadership', () => node.status().role === 'leader' && node.status().applied >= node.status().lastIndex);
  sm.gated = true;
  return node;
}

void t.test('the loop commits ahead of a slow state machine; the backlog applies as one batch', async (t) => {
  const sm = new GatedStateMachine();
  const node = await gatedLeader(sm, 30);
  sm.snapshotsAt.length = 0; // the founding snapshot of bootstrap
  const appliedBefore = sm.applied;

  const first = node.propose(new Uint8Array([1]));
  await until(
    'the first apply to start',
    () => sm.batches.length > 0 && sm.batches.at(-1)!.includes(appliedBefore + 1),
  );
  const rest = Array.from({ length: 40 }, (_, i) => node.propose(new Uint8Array([2, i])));
  const lastIndex = appliedBefore + 41;
  await until('the backlog to commit', () => node.status().commit >= lastIndex);
  t.equal(
    node.status().applied,
    appliedBefore,
    'committed past the state machine, which has applied nothing new',
  );
  let readDone = false;
  const read = node.read().then((index) => {
    readDone = true;
    return index;
  });
  await new Promise((r) => setTimeout(r, 30));
  t.notOk(readDone, 'a read barrier waits for the state machine');
  t.same(sm.snapshotsAt, [], 'no snapshot while entries wait to be applied');

  sm.release();
  const results = await Promise.all([first, ...rest]);
  t.same(
    results.map((r) => r.result),
    results.map((r) => `applied ${r.index}`),
    'every proposal gets its own result',
  );
  t.ok((await read) >= lastIndex, 'the read resolves once applied');
  const backlog = sm.batches.slice(1);
  t.ok(
    backlog.some((b) => b.length >= 20),
    `the backlog was applied in large batches (${backlog.map((b) => b.length).join(', ')})`,
  );
  const all = sm.batches.flat();
  t.same(
    all,
    [...all].sort((a, b) => a - b),
    'in log order, each once',
  );
  await until('a snapshot', () => sm.snapshotsAt.length > 0);
  t.ok(
    sm.snapshotsAt.every((at) => at >= 30),
    `snapshots taken at applied ${sm.snapshotsAt.join(', ')} (only when the applier is idle)`,
  );
  t.equal(node.status().applied, sm.applied);
  node.stop();
});

void t.test('read-ahead only for entries the applier will reach soon: none while it is far behind', async (t) => {
  const sm = new GatedStateMachine();
  const node = await gatedLeader(sm);
  const appliedBefore = sm.applied;
  sm.readAheads.length = 0;
  // One proposal per Ready (each waits for its commit), while the state machine applies nothing.
  const total = readAheadDistanceEntriesMax + 40;
  const proposals: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    proposals.push(node.propose(new Uint8Array([3, i & 0xff])));
    const index = appliedBefore + i + 1;
    await until(`entry ${index} committed`, () => node.status().commit >= index);
  }
  t.equal(sm.applied, appliedBefore, 'nothing applied meanwhile');
  const near = Array.from({ length: readAheadDistanceEntriesMax - 1 }, (_, i) => appliedBefore + 2 + i);
  t.same(
    sm.readAheads.filter((i) => i > appliedBefore + 1),
    near,
    `read ahead up to ${readAheadDistanceEntriesMax} entries past the applied index, none further`,
  );
  sm.release();
  await Promise.all(proposals);
  t.equal(node.status().applied, appliedBefore + total, 'all applied once released');
  sm.readAheads.length = 0;
  await node.propose(new Uint8Array([4]));
  t.same(sm.readAheads, [appliedBefore + total + 1], 'caught up: read-ahead again');
  node.stop();
});
