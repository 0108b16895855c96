/**
 * Restart of a member whose durable state machine is ahead of the log's durable commit index (a change of
 * commit alone is not synced). The driver trusts the log up to the state machine's index only when the log
 * holds the very entry it applied last (same index and term): then, by Log Matching, the log up to it is
 * the committed prefix. Found by the simulator (metadata seed 50143): a leader restarted with commit 99
 * while its state machine held 100 could not label a snapshot stream with its state (the core had applied
 * 99), so a follower that needed a snapshot never got one, and with that follower needed for a quorum the
 * cluster never committed again.
 */
import t from 'tap';
import { RaftNode } from '../../src/raft/node.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, Snapshot, SnapshotMetadata } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { systemClock, systemRandom } from '../../src/runtime/clock.ts';

/** A durable, streaming state machine that reports what it "applied" before the restart. */
class DurableStateMachine implements StateMachine {
  readonly appliedBatches: number[][] = [];
  constructor(
    private applied: number,
    private readonly term: number,
  ) {}
  appliedIndex(): number {
    return this.applied;
  }
  appliedTerm(): number {
    return this.term;
  }
  applyBatch(entries: readonly Entry[]): Promise<unknown[]> {
    this.appliedBatches.push(entries.map((e) => e.index));
    this.applied = entries[entries.length - 1]!.index;
    return Promise.resolve(entries.map(() => undefined));
  }
  async *openSnapshot(): AsyncIterator<Uint8Array> {}
  async installSnapshot(_m: SnapshotMetadata, _c: AsyncIterable<Uint8Array>, before: () => Promise<void>): Promise<void> {
    await before();
  }
}

/** A log on disk: snapshot at 1 (voters 1, 2, 3), entries 2..6 of term 2 and 7..10 of term 3, commit 5. */
async function diskWithLog(): Promise<MemoryDisk> {
  const disk = new MemoryDisk();
  const snapshot: Snapshot = {
    metadata: { index: 1, term: 1, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } },
    data: new Uint8Array(0),
  };
  const entries: Entry[] = [];
  for (let i = 2; i <= 10; i++) entries.push({ index: i, term: i <= 6 ? 2 : 3, type: EntryType.Normal, data: new Uint8Array([i]) });
  const store = new MemoryLogStore(disk);
  await store.load();
  await store.save({ snapshot, entries, hardState: { term: 3, vote: 1, commit: 5 } });
  return disk;
}

async function restart(sm: DurableStateMachine): Promise<RaftNode> {
  const node = new RaftNode({
    config: { id: 1, random: systemRandom },
    logStore: new MemoryLogStore(await diskWithLog()),
    transport: { send() {} },
    clock: systemClock,
    stateMachine: sm,
    tickMs: 1_000_000, // no election during the test
  });
  await node.start();
  return node;
}

void t.test('the log holds the entry the state machine applied last: commit and applied start there', async (t) => {
  const sm = new DurableStateMachine(8, 3);
  const node = await restart(sm);
  t.equal(node.status().commit, 8, 'commit raised from 5 to the state machine index');
  t.equal(node.status().applied, 8);
  await new Promise((r) => setTimeout(r, 10));
  t.same(sm.appliedBatches, [], 'nothing applied again');
  node.stop();
});

void t.test('the entry at that index has another term: the log is trusted only up to its durable commit', async (t) => {
  const sm = new DurableStateMachine(8, 2); // the log holds term 3 at 8: a different history
  const node = await restart(sm);
  t.equal(node.status().commit, 5, 'commit as on disk');
  t.equal(node.status().applied, 5);
  node.stop();
});

void t.test('no term known (a store from before terms were recorded), or an index past the log: as on disk', async (t) => {
  for (const sm of [new DurableStateMachine(8, 0), new DurableStateMachine(12, 3)]) {
    const node = await restart(sm);
    t.equal(node.status().commit, 5, `state machine at ${sm.appliedIndex()} term ${sm.appliedTerm()}`);
    node.stop();
  }
});
