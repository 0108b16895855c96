/**
 * Memory bounds of the log and the applier, whatever the backlog:
 * - an applyBatch call carries at most applyBatchDataBytesMax of entry data (or one entry) and at most
 *   applyBatchEntriesMax entries, so a member catching up never hands the state machine its whole backlog;
 * - the log owns the bytes of the entries it keeps: data that is a view into a larger buffer (a received
 *   frame, an encoder's shared output) is copied, so the log keeps no more memory than its entries' size.
 */
import fc from 'fast-check';
import t from 'tap';
import { decodeMessage, encodeMessage } from '../../src/raft/codec.ts';
import { RaftLog, ownedEntry } from '../../src/raft/log.ts';
import { RaftNode, applyBatchDataBytesMax, applyBatchEntriesMax, applyBatchLength } from '../../src/raft/node.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, Snapshot } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { systemClock, systemRandom } from '../../src/runtime/clock.ts';
import { bootSnapshot, newRaft } from './harness.ts';

const entry = (index: number, data: Uint8Array): Entry => ({ term: 1, index, type: EntryType.Normal, data });

void t.test('applyBatchLength: the longest head of the queue within both limits, at least one entry', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.nat(64), fc.nat(applyBatchDataBytesMax * 2)), { maxLength: 300 }),
      fc.nat(applyBatchEntriesMax * 2),
      (sizes, smallCount) => {
        // A long run of tiny entries too, so the entry limit is reached.
        const all = [...sizes, ...Array.from({ length: smallCount % 3 === 0 ? smallCount : 0 }, () => 1)];
        const queue = all.map((size, i) => entry(i + 1, new Uint8Array(size)));
        const n = applyBatchLength(queue);
        if (queue.length === 0) return n === 0;
        const bytes = (k: number) => queue.slice(0, k).reduce((s, e) => s + e.data.byteLength, 0);
        const within = (k: number) => k <= applyBatchEntriesMax && (k === 1 || bytes(k) <= applyBatchDataBytesMax);
        return n >= 1 && within(n) && (n === queue.length || !within(n + 1));
      },
    ),
  );
  t.end();
});

/** A state machine that holds each applyBatch until released, recording the batches' sizes. */
class GatedStateMachine implements StateMachine {
  applied = 0;
  readonly batches: { count: number; bytes: number }[] = [];
  private gates: (() => void)[] = [];
  gated = false;

  applyBatch(entries: readonly Entry[]): Promise<unknown[]> {
    this.batches.push({ count: entries.length, bytes: entries.reduce((s, e) => s + e.data.byteLength, 0) });
    return new Promise((resolve) => {
      const finish = () => {
        for (const e of entries) {
          if (e.index !== this.applied + 1) throw new Error(`entry ${e.index} after ${this.applied}`);
          this.applied = e.index;
        }
        resolve(entries.map(() => undefined));
      };
      if (this.gated) this.gates.push(finish);
      else finish();
    });
  }

  release(): void {
    this.gated = false;
    for (const g of this.gates.splice(0)) g();
  }

  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }

  restore(snapshot: Snapshot): void {
    this.applied = snapshot.metadata.index;
  }
}

const until = async (what: string, cond: () => boolean) => {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

void t.test('a backlog of large entries is applied in batches of bounded data size', async (t) => {
  const sm = new GatedStateMachine();
  const node = new RaftNode({
    config: { id: 1, random: systemRandom },
    logStore: new MemoryLogStore(new MemoryDisk()),
    transport: { send() {} },
    clock: systemClock,
    stateMachine: sm,
    tickMs: 10,
    initialVoters: [1],
  });
  await node.start();
  t.teardown(() => node.stop());
  node.campaign();
  await until('leadership', () => node.status().role === 'leader' && node.status().applied >= node.status().lastIndex);
  sm.gated = true;
  const entryBytes = 20 * 1024;
  const first = node.propose(new Uint8Array(entryBytes));
  await until('the first apply to start', () => sm.batches.length > 0 && sm.batches.at(-1)!.bytes === entryBytes);
  const batchesBefore = sm.batches.length;
  // 40 × 20 KiB = 800 KiB wait while the first apply is held: without the byte limit, one batch.
  const rest = Array.from({ length: 40 }, () => node.propose(new Uint8Array(entryBytes)));
  await until('the backlog to commit', () => node.status().commit >= node.status().lastIndex);
  sm.release();
  await Promise.all([first, ...rest]);
  const backlog = sm.batches.slice(batchesBefore);
  t.equal(backlog.reduce((s, b) => s + b.count, 0), 40, 'every entry of the backlog applied once');
  t.ok(
    backlog.every((b) => b.count === 1 || b.bytes <= applyBatchDataBytesMax),
    `every batch within ${applyBatchDataBytesMax} bytes of data: ${backlog.map((b) => b.bytes).join(', ')}`,
  );
  t.ok(backlog.length >= Math.ceil((40 * entryBytes) / applyBatchDataBytesMax), `${backlog.length} batches`);
  t.ok(
    backlog.some((b) => b.count > 1),
    'entries are still merged into batches up to the limit',
  );
});

void t.test('the log copies entry data that is a view into a larger buffer, and only that', (t) => {
  const frame = new Uint8Array(64 * 1024).map((_, i) => i % 251);
  const view = frame.subarray(1000, 1100);
  const whole = new Uint8Array([1, 2, 3]);
  const log = new RaftLog(null, [], 0, 0);
  log.append([entry(1, view), entry(2, whole), entry(3, frame.subarray(0, frame.length))]);
  const kept = log.slice(1, 4, Infinity)!;
  t.equal(kept.length, 3);
  t.same([...kept[0]!.data], [...view], 'the view copied: same bytes');
  t.equal(kept[0]!.data.buffer.byteLength, 100, 'the copy owns exactly its bytes, not the 64 KiB frame');
  t.equal(kept[1]!.data, whole, 'data owning its whole buffer is kept as is');
  t.equal(kept[2]!.data.buffer, frame.buffer, 'a view of a whole buffer is kept as is');

  // A Node Buffer from the shared pool is a view too (Buffer.prototype.slice would not copy it).
  const pooled = Buffer.from('pooled');
  t.not(pooled.buffer.byteLength, pooled.byteLength, 'precondition: a pooled Buffer');
  const owned = ownedEntry(entry(4, pooled));
  t.equal(owned.data.buffer.byteLength, pooled.byteLength);
  t.same(Buffer.from(owned.data), pooled);
  t.end();
});

void t.test('a follower keeps owned copies of entries decoded from a received frame', (t) => {
  // Entries reach a follower as views into the frame they arrived in (msgpackr and protobufjs decode bytes
  // as views): the follower's log must not keep the frame alive.
  const follower = newRaft(2, [1, 2, 3]);
  const boot = bootSnapshot([1, 2, 3]).metadata;
  const payload = new Uint8Array(300).fill(7);
  const bytes = encodeMessage({
    type: 'app',
    from: 1,
    to: 2,
    term: 1,
    logTerm: boot.term,
    index: boot.index,
    entries: [entry(boot.index + 1, payload), entry(boot.index + 2, payload)],
    commit: boot.index,
    reject: false,
    rejectHint: 0,
    context: null,
    snapshot: null,
  });
  const frame = new Uint8Array(bytes.byteLength + 4096);
  frame.set(bytes, 100);
  const message = decodeMessage(frame.subarray(100, 100 + bytes.byteLength));
  t.equal(message.entries[0]!.data.buffer, frame.buffer, 'precondition: decoded entry data is a view of the frame');
  follower.step(message);
  const appended = follower.ready().entries;
  t.equal(appended.length, 2, 'appended');
  for (const e of appended) {
    t.equal(e.data.buffer.byteLength, 300, `entry ${e.index} owns exactly its 300 bytes`);
    t.same([...e.data], [...payload]);
  }
  t.end();
});
