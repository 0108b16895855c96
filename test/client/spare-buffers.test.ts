import t from 'tap';
import { FileReader } from '../../src/client/file-reader.ts';
import { FileWriter } from '../../src/client/file-writer.ts';
import type { ReadSessionSource } from '../../src/client/read-session.ts';
import { ReadSession, readAheadPieceBytes, readAheadPiecesMax } from '../../src/client/read-session.ts';
import { SpareBuffers } from '../../src/client/spare-buffers.ts';
import { FakeDataPlane, FakeMetadata, ManualTimers } from './fakes.ts';
import { pattern } from './pattern.ts';

const MiB = 1024 * 1024;

void t.test('take and give: the same memory again, warmest first, by size', (t) => {
  const spares = new SpareBuffers(10 * MiB);
  const a = spares.take(MiB);
  const b = spares.take(MiB);
  const c = spares.take(2 * MiB);
  t.equal(a.length, MiB);
  t.equal(c.length, 2 * MiB);
  t.same(spares.stats, { allocated: 3, reused: 0, kept: 0, dropped: 0 });
  spares.give(a);
  spares.give(b.subarray(0, 100)); // a view from offset 0 gives back the whole buffer
  spares.give(c);
  t.equal(spares.keptBytes, 4 * MiB);
  const again = spares.take(MiB);
  t.equal(again.buffer, b.buffer, 'the last given back first');
  t.equal(again.length, MiB, 'the whole buffer, not the view it came back as');
  t.equal(spares.take(MiB).buffer, a.buffer);
  t.equal(spares.take(2 * MiB).buffer, c.buffer, 'sizes do not mix');
  t.not(spares.take(MiB).buffer, a.buffer, 'none kept: a fresh one');
  t.same(spares.stats, { allocated: 4, reused: 3, kept: 3, dropped: 0 });
  t.equal(spares.keptBytes, 0);
  t.end();
});

void t.test('only its own whole buffers come back, and at most bytesMax', (t) => {
  const spares = new SpareBuffers(2 * MiB);
  spares.give(Buffer.alloc(MiB)); // not made by take: a caller's memory is never handed out
  spares.give(Buffer.from('small')); // a slice of Node's shared pool
  const mine = spares.take(MiB);
  spares.give(mine.subarray(4096)); // not from offset 0
  t.equal(spares.stats.dropped, 3);
  t.equal(spares.keptBytes, 0);
  const [x, y, z] = [spares.take(MiB), spares.take(MiB), spares.take(MiB)];
  spares.give(x);
  spares.give(y);
  spares.give(z); // over bytesMax: left to the garbage collector
  t.equal(spares.keptBytes, 2 * MiB);
  t.equal(spares.stats.dropped, 4);
  t.throws(() => spares.give(y), /given back twice/, 'a buffer given back twice is a bug');
  t.throws(() => new SpareBuffers(-1), RangeError);
  t.throws(() => spares.take(0), RangeError);
  t.equal(new SpareBuffers(0).keptBytes, 0);
  t.end();
});

function setup(chunkSizeBytes = 4 * MiB) {
  const data = new FakeDataPlane(3);
  const metadata = new FakeMetadata(data, chunkSizeBytes);
  const timers = new ManualTimers();
  return {
    data,
    metadata,
    timers,
    reader: new FileReader({ metadata, data, orderReplicas: (c) => c.replicas }),
  };
}

void t.test("a client's writers share staging buffers: the second writer makes none fresh", async (t) => {
  const { data, metadata, timers, reader } = setup();
  const spares = new SpareBuffers(64 * MiB);
  const first = pattern(10 * MiB + 5, 1);
  const w1 = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, stagingBytes: MiB, spares });
  await w1.write(first);
  await w1.close();
  t.ok(w1.stagingAllocated >= 1, `the first writer made ${w1.stagingAllocated}`);
  t.equal(spares.keptBytes, w1.stagingAllocated * MiB, 'every staging buffer came back at close');
  const second = pattern(7 * MiB, 2);
  const w2 = await FileWriter.open('/b', { metadata, data, holder: 'w2', timers, stagingBytes: MiB, spares });
  await w2.write(second);
  await w2.close();
  t.equal(w2.stagingAllocated, 0, 'the second writer reused them all');
  t.ok((await reader.readFile('/a')).equals(first), '/a read back equal');
  t.ok((await reader.readFile('/b')).equals(second), '/b read back equal');
});

void t.test('writers interleaved on shared spares: no buffer is used by two at once', async (t) => {
  const { data, metadata, timers, reader } = setup(3 * MiB);
  data.ackLagBytes = 2 * MiB; // buffers stay unacknowledged for a while, then come back in bursts
  const spares = new SpareBuffers(16 * MiB);
  const files = [0, 1, 2, 3].map((i) => ({ path: `/f${i}`, bytes: pattern(9 * MiB + 1000 * i, 10 + i) }));
  const writers = await Promise.all(
    files.map((f, i) =>
      FileWriter.open(f.path, { metadata, data, holder: `w${i}`, timers, stagingBytes: MiB, spares }),
    ),
  );
  // Round robin, 700 KiB at a time, so every writer takes and gives between the others' calls.
  const step = 700 * 1024;
  for (let off = 0; files.some((f) => off < f.bytes.length); off += step)
    await Promise.all(
      files
        .filter((f) => off < f.bytes.length)
        .map((f) =>
          writers[files.indexOf(f)]!.write(f.bytes.subarray(off, Math.min(f.bytes.length, off + step))),
        ),
    );
  await Promise.all(writers.map((w) => w.close()));
  for (const f of files) t.ok((await reader.readFile(f.path)).equals(f.bytes), `${f.path} read back equal`);
  t.ok(spares.stats.reused > 0, `buffers were reused (${spares.stats.reused})`);
});

void t.test(
  'an aborted writer gives nothing back (a write may still be copying into its staging)',
  async (t) => {
    const { data, metadata, timers } = setup();
    const spares = new SpareBuffers(64 * MiB);
    const w = await FileWriter.open('/c', {
      metadata,
      data,
      holder: 'w1',
      timers,
      stagingBytes: MiB,
      spares,
    });
    await w.write(pattern(100, 3));
    await w.abort();
    t.equal(spares.keptBytes, 0);
  },
);

/** A source whose reads finish only when told to (to close a session while a read-ahead is in flight). */
function heldSource(fileBytes: number) {
  const waiting: (() => void)[] = [];
  const source: ReadSessionSource = {
    locations: () =>
      Promise.resolve([
        { handle: 1, index: 0, version: 1, lengthBytes: fileBytes, sealed: true, replicas: [], checksum: 0 },
      ]),
    readChunks: (_chunks, _start, out) =>
      new Promise((resolve) => {
        waiting.push(() => {
          out.fill(7);
          resolve();
        });
      }),
  };
  return { source, finishAll: () => waiting.splice(0).forEach((f) => f()), pending: () => waiting.length };
}

void t.test(
  'read sessions share read-ahead buffers; one still being read into comes back only once its read settles',
  async (t) => {
    const spares = new SpareBuffers(64 * MiB);
    const { source, finishAll, pending } = heldSource(64 * MiB);
    const first = new ReadSession(source, '/f', undefined, spares);
    const into = Buffer.alloc(MiB);
    const reading = first.readInto(0, into);
    await new Promise((r) => setImmediate(r));
    finishAll(); // the direct read of the first MiB
    await reading;
    t.equal(pending(), readAheadPiecesMax, 'a sequential first read starts the read-ahead');
    t.equal(first.stats.buffersAllocated, readAheadPiecesMax);
    first.close();
    t.equal(spares.keptBytes, 0, 'buffers still being read into are not given back');
    finishAll();
    await new Promise((r) => setImmediate(r));
    t.equal(
      spares.keptBytes,
      readAheadPiecesMax * readAheadPieceBytes,
      'given back once their reads settled',
    );
    const second = new ReadSession(source, '/f', undefined, spares);
    const again = second.readInto(0, into);
    await new Promise((r) => setImmediate(r));
    finishAll();
    await again;
    t.equal(second.stats.buffersAllocated, 0, 'the second session reads ahead into the same memory');
    finishAll();
    second.close();
    await new Promise((r) => setImmediate(r));
    t.equal(spares.keptBytes, readAheadPiecesMax * readAheadPieceBytes);
  },
);
