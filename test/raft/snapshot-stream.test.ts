/**
 * The streamed snapshot transfer (src/raft/snapshot-stream.ts) on its own: a sender and a receiver joined by a
 * test network that can lose, duplicate and reorder messages. The stream must arrive whole and in order, the
 * window must bound what is in flight, and an aborted or superseded transfer must fail its consumer.
 */
import t from 'tap';
import {
  ChunkQueue,
  isStreamedSnapshotMessage,
  SnapshotReceiver,
  SnapshotSender,
  SnapshotTransferAborted,
  type IncomingSnapshot,
  type SnapshotStreamLimits,
} from '../../src/raft/snapshot-stream.ts';
import type { Message, SnapshotMetadata } from '../../src/raft/types.ts';

const meta: SnapshotMetadata = { index: 50, term: 3, confState: { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } };
const limits: SnapshotStreamLimits = { chunkBytes: 10, chunksInflightMax: 4, resendMs: 30, stallMs: 1_000 };

function sourceOf(chunks: readonly Uint8Array[]): AsyncIterator<Uint8Array> & { closed: boolean } {
  let i = 0;
  const it = {
    closed: false,
    next(): Promise<IteratorResult<Uint8Array>> {
      if (it.closed || i >= chunks.length) return Promise.resolve({ done: true, value: undefined });
      return Promise.resolve({ done: false, value: chunks[i++]! });
    },
    return(): Promise<IteratorResult<Uint8Array>> {
      it.closed = true;
      return Promise.resolve({ done: true, value: undefined });
    },
  };
  return it;
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

interface Harness {
  sender: SnapshotSender;
  receiver: SnapshotReceiver;
  /** Messages in flight, either way. */
  wire: Message[];
  installs: { incoming: IncomingSnapshot; data: Promise<Uint8Array> }[];
  failures: string[];
  maxUnacked: number;
  now: number;
  source: ReturnType<typeof sourceOf>;
}

function harness(chunks: readonly Uint8Array[], attempt = 1): Harness {
  const h: Partial<Harness> & { wire: Message[]; installs: Harness['installs']; failures: string[]; maxUnacked: number; now: number } = {
    wire: [], installs: [], failures: [], maxUnacked: 0, now: 0,
  };
  h.source = sourceOf(chunks);
  h.receiver = new SnapshotReceiver(
    {
      id: 2,
      send: (m) => h.wire.push(m),
      begin: (incoming) => {
        const data = (async () => {
          const parts: Uint8Array[] = [];
          for await (const c of incoming.chunks) parts.push(c);
          return concat(parts);
        })();
        data.catch(() => undefined);
        h.installs.push({ incoming, data });
      },
    },
    limits.stallMs,
  );
  h.sender = new SnapshotSender(2, 7, attempt, meta, h.source, limits, { from: 1, send: (m) => h.wire.push(m), onFailure: (r) => h.failures.push(r) }, 0);
  return h as Harness;
}

/** Delivers messages until quiet; `mangle` may drop (return []), duplicate or hold back messages. */
async function run(h: Harness, mangle: (m: Message, round: number) => Message[] = (m) => [m], rounds = 200): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    await settle();
    const batch = h.wire.splice(0);
    if (batch.length === 0) {
      h.now += limits.resendMs;
      h.sender.onTick(h.now);
      h.receiver.onTick(h.now);
      await settle();
      if (h.wire.length === 0) return;
      continue;
    }
    for (const original of batch) {
      for (const m of mangle(original, round)) {
        t.ok(isStreamedSnapshotMessage(m), 'every message is marked as streamed');
        if (m.type === 'snap') h.receiver.onChunk(m, h.now);
        else h.sender.onResponse(m, h.now);
        const unacked = h.sender.isClosed ? 0 : inflight(h);
        h.maxUnacked = Math.max(h.maxUnacked, unacked);
      }
    }
  }
}

function inflight(h: Harness): number {
  return (h.sender as unknown as { sent: number }).sent;
}

const source = [bytes(35, 1), bytes(7, 2), bytes(64, 3), bytes(1, 4), bytes(20, 5)];
const whole = concat(source);

void t.test('a stream arrives whole, in chunks of at most chunkBytes, within the window', async (t) => {
  const h = harness(source);
  const sizes: number[] = [];
  h.sender.start();
  await run(h, (m) => {
    if (m.type === 'snap') sizes.push(m.snapshot!.data.byteLength);
    return [m];
  });
  t.equal(h.installs.length, 1);
  t.same(await h.installs[0]!.data, whole, 'the follower took exactly the source bytes');
  t.ok(sizes.every((n) => n <= limits.chunkBytes), 'no chunk above chunkBytes');
  t.ok(h.maxUnacked <= limits.chunksInflightMax, `at most ${limits.chunksInflightMax} chunks unacknowledged (saw ${h.maxUnacked})`);
  t.equal(h.sender.ackedBytes, whole.byteLength, 'every byte acknowledged');
  t.same(h.failures, []);
});

void t.test('duplicated chunks and acknowledgements change nothing', async (t) => {
  const h = harness(source);
  h.sender.start();
  await run(h, (m) => [m, m]);
  t.same(await h.installs[0]!.data, whole);
  t.ok(h.receiver.stats.duplicateChunks > 0, 'duplicates were seen and re-acknowledged');
  t.equal(h.installs.length, 1, 'one transfer');
});

void t.test('reordered chunks: the gap is rejected and resent from the follower position', async (t) => {
  const h = harness(source);
  h.sender.start();
  // Reverse every batch: later chunks arrive before earlier ones.
  let held: Message[] = [];
  await run(h, (m, round) => {
    if (m.type !== 'snap' || round > 20) return [m];
    held.push(m);
    if (held.length < 3) return [];
    const out = held.reverse();
    held = [];
    return out;
  });
  t.same(await h.installs[0]!.data, whole);
  t.ok(h.receiver.stats.gapChunks > 0, 'gaps were detected');
});

void t.test('lost chunks and lost acknowledgements are resent after resendMs', async (t) => {
  const h = harness(source);
  h.sender.start();
  let n = 0;
  await run(h, (m) => (++n % 3 === 0 ? [] : [m]));
  t.same(await h.installs[0]!.data, whole);
  t.ok(h.sender.stats.resends > 0, 'the window was resent');
});

void t.test('an aborted transfer fails its consumer; the old state is the consumer’s to keep', async (t) => {
  const h = harness(source);
  h.sender.start();
  await settle();
  for (const m of h.wire.splice(0)) if (m.type === 'snap') h.receiver.onChunk(m, 0);
  t.equal(h.installs.length, 1);
  h.receiver.abort('leader changed');
  await t.rejects(h.installs[0]!.data, SnapshotTransferAborted);
  t.equal(h.receiver.active, null);
  // A later chunk of the aborted transfer is not accepted: the follower asks to start over.
  h.sender.onTick(limits.resendMs);
  await settle();
  const replies: Message[] = [];
  for (const m of h.wire.splice(0)) {
    if (m.type !== 'snap' || m.snapshot!.offset === 0) continue;
    h.receiver.onChunk(m, 0);
  }
  for (const m of (h as unknown as { wire: Message[] }).wire) replies.push(m);
  t.ok(replies.length > 0 && replies.every((m) => m.type === 'snapResp' && m.reject && m.index === 0), 'chunks of an unknown transfer are refused at 0');
});

void t.test('a new attempt supersedes the transfer in progress', async (t) => {
  const first = harness(source, 1);
  first.sender.start();
  await settle();
  const firstChunks = first.wire.splice(0).filter((m) => m.type === 'snap');
  first.receiver.onChunk(firstChunks[0]!, 0);
  // The same receiver now sees attempt 2 start (a retry after a leader-side failure).
  const second = new SnapshotSender(2, 7, 2, meta, sourceOf(source), limits, { from: 1, send: (m) => first.wire.push(m), onFailure: () => undefined }, 0);
  first.sender.close();
  first.sender = second;
  second.start();
  await run(first);
  t.equal(first.installs.length, 2);
  await t.rejects(first.installs[0]!.data, SnapshotTransferAborted, 'the first transfer is aborted');
  t.same(await first.installs[1]!.data, whole, 'the second completes');
  t.ok(first.source.closed, 'the first source was closed');
});

void t.test('a stale rejection is ignored; a transfer without acknowledgements is abandoned after stallMs', async (t) => {
  const h = harness(source);
  h.sender.start();
  await settle();
  const chunks = h.wire.splice(0);
  for (const m of chunks) h.receiver.onChunk(m, 0);
  await settle();
  const acks = h.wire.splice(0);
  for (const m of acks) h.sender.onResponse(m, 0);
  t.ok(h.sender.ackedBytes > 0);
  h.sender.onResponse({ ...acks[0]!, reject: true, index: 0 }, 0);
  t.same(h.failures, [], 'a rejection below the acknowledged bytes is stale');
  h.sender.onTick(limits.stallMs + 1);
  t.equal(h.failures.length, 1, 'no progress for stallMs: abandoned');
  t.ok(h.sender.isClosed && h.source.closed, 'the source is released');
});

void t.test('an empty stream completes with one empty chunk', async (t) => {
  const h = harness([]);
  h.sender.start();
  await run(h);
  t.same(await h.installs[0]!.data, new Uint8Array(0));
});

void t.test('a last chunk whose total disagrees aborts the transfer', async (t) => {
  const h = harness([bytes(5, 1)]);
  h.sender.start();
  await settle();
  const [m] = h.wire.splice(0);
  h.receiver.onChunk({ ...m!, snapshot: { ...m!.snapshot!, totalBytes: 99 } }, 0);
  await t.rejects(h.installs[0]!.data, SnapshotTransferAborted);
});

void t.test('ChunkQueue: taken chunks are reported, failure wakes a waiting consumer', async (t) => {
  const taken: number[] = [];
  const q = new ChunkQueue((n) => taken.push(n));
  const seen: number[] = [];
  const done = (async () => {
    for await (const c of q) seen.push(c.byteLength);
  })();
  q.push(new Uint8Array(3));
  await settle();
  q.push(new Uint8Array(4));
  await settle();
  t.same(taken, [3, 4]);
  q.fail(new SnapshotTransferAborted('test'));
  await t.rejects(done, SnapshotTransferAborted);
  t.same(seen, [3, 4]);
});

void t.test('liveness: a slow follower answering resends keeps the transfer; "unknown attempt" answers do not', async (t) => {
  const h = harness(source);
  h.sender.start();
  await settle();
  const chunks = h.wire.splice(0);
  for (const m of chunks) h.receiver.onChunk(m, 0);
  await settle();
  for (const m of h.wire.splice(0)) h.sender.onResponse(m, 0);
  const acked = h.sender.ackedBytes;
  // The follower answers only with its position (its state machine takes nothing more) for a long time.
  for (let now = 100; now <= 3 * limits.stallMs; now += 100) {
    h.sender.onTick(now);
    await settle();
    for (const m of h.wire.splice(0)) {
      if (m.type === 'snap') h.receiver.onChunk(m, now);
      else h.sender.onResponse(m, now);
    }
  }
  t.same(h.failures, [], 'still going after 3 stall periods of answers without progress');
  t.equal(h.sender.ackedBytes >= acked, true);
  // A follower that restarted knows nothing of the attempt: its answers do not keep the transfer alive.
  const lost = harness(source);
  lost.sender.start();
  await settle();
  const first = lost.wire.splice(0);
  lost.receiver.onChunk(first[0]!, 0);
  await settle();
  for (const m of lost.wire.splice(0)) lost.sender.onResponse(m, 0);
  const restarted = new SnapshotReceiver({ id: 2, send: (m) => lost.wire.push(m), begin: () => undefined }, limits.stallMs);
  for (let now = 100; now <= limits.stallMs + 100 && lost.failures.length === 0; now += 100) {
    lost.sender.onTick(now);
    await settle();
    for (const m of lost.wire.splice(0)) {
      if (m.type === 'snap') restarted.onChunk(m, now);
      else lost.sender.onResponse(m, now);
    }
  }
  t.equal(lost.failures.length, 1, 'abandoned after stallMs of "unknown attempt" answers');
});
