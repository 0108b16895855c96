import t from 'tap';
import { FileReader } from '../../src/client/file-reader.ts';
import { FileWriter } from '../../src/client/file-writer.ts';
import { ReadBufferAbandonedError } from '../../src/client/data-path.ts';
import type { ReadIntoOptions } from '../../src/client/data-path.ts';
import { readAheadPieceBytes, readAheadPiecesMax } from '../../src/client/read-session.ts';
import { SpareBuffers } from '../../src/client/spare-buffers.ts';
import { FakeDataPlane, FakeMetadata, ManualTimers } from './fakes.ts';
import { pattern } from './pattern.ts';

const MiB = 1024 * 1024;

/** A metadata fake that counts chunk-list pages asked for. */
class CountingMetadata extends FakeMetadata {
  pages = 0;
  override chunkLocations(path: string, fromIndex: number): ReturnType<FakeMetadata['chunkLocations']> {
    this.pages++;
    return super.chunkLocations(path, fromIndex);
  }
}

async function setup(fileBytes: number, chunkSizeBytes = 3 * MiB) {
  const data = new FakeDataPlane(4);
  const metadata = new CountingMetadata(data, chunkSizeBytes);
  const timers = new ManualTimers();
  const bytes = pattern(fileBytes, 5);
  const writer = await FileWriter.open('/f', { metadata, data, holder: 'w1', timers });
  await writer.write(bytes);
  await writer.close();
  return { data, metadata, timers, bytes, reader: new FileReader({ metadata, data, orderReplicas: (c) => c.replicas }) };
}

void t.test('sequential reads: the bytes, one chunk list, read-ahead from a bounded pool of buffers', async (t) => {
  const { metadata, bytes, reader } = await setup(10 * MiB + 777);
  const session = reader.open('/f');
  const got = Buffer.alloc(bytes.length);
  // Uneven read sizes, each starting where the previous ended.
  let off = 0;
  for (let i = 0; off < bytes.length; i++) {
    const size = [4 * MiB, 1, 700 * 1024, 3 * MiB + 5][i % 4]!;
    const n = await session.readInto(off, got.subarray(off, Math.min(bytes.length, off + size)));
    t.equal(n, Math.min(size, bytes.length - off), `read ${i} at ${off}`);
    off += n;
  }
  t.ok(got.equals(bytes), 'every byte');
  t.equal(await session.readInto(bytes.length, Buffer.alloc(10)), 0, 'at the end: 0');
  t.equal(session.stats.locationFetches, 2, 'the list once, and again at the end (the file may have grown)');
  t.equal(metadata.pages, 2 * 2, 'two pages per list (4 chunks, pages of 2)');
  t.ok(session.stats.readAheadBytes > bytes.length / 2, `most bytes came from read-ahead (${session.stats.readAheadBytes})`);
  t.ok(session.stats.buffersAllocated <= readAheadPiecesMax, `buffers reused: ${session.stats.buffersAllocated} allocated`);
  session.close();
  await t.rejects(session.readInto(0, Buffer.alloc(1)), { code: 'EBADF' }, 'closed');
  await t.rejects(reader.open('/f').readInto(-1, Buffer.alloc(1)), { code: 'EINVAL' });
});

void t.test('random reads start no read-ahead; a read past the read-ahead drops it', async (t) => {
  const { bytes, reader } = await setup(9 * MiB);
  const session = reader.open('/f');
  for (const [offset, length] of [
    [5 * MiB, 100],
    [MiB - 3, 2 * MiB],
    [8 * MiB + 1, 2 * MiB],
  ] as const) {
    const into = Buffer.alloc(length);
    const n = await session.readInto(offset, into);
    t.ok(into.subarray(0, n).equals(bytes.subarray(offset, offset + n)), `range ${offset}+${length}`);
  }
  t.equal(session.stats.readAheadBytes, 0, 'nothing read ahead');
  t.equal(session.stats.buffersAllocated, 0);
  // Reads from 0: the second is sequential and starts the read-ahead, the third reads from it; then a jump.
  const a = Buffer.alloc(MiB);
  await session.readInto(0, a);
  await session.readInto(MiB, a);
  t.equal(session.stats.readAheadBytes, 0);
  await session.readInto(2 * MiB, a);
  t.ok(a.equals(bytes.subarray(2 * MiB, 3 * MiB)));
  t.equal(session.stats.readAheadBytes, MiB, 'the third read came from read-ahead');
  const before = session.stats.readAheadBytes;
  await session.readInto(7 * MiB, a);
  t.ok(a.equals(bytes.subarray(7 * MiB, 8 * MiB)), 'the jump reads the right bytes');
  t.equal(session.stats.readAheadBytes, before, 'not from read-ahead');
  session.close();
});

void t.test('a file that grows: a read past the known end fetches the list again and sees the new chunks', async (t) => {
  const data = new FakeDataPlane(3);
  const metadata = new CountingMetadata(data, MiB);
  const timers = new ManualTimers();
  const bytes = pattern(5 * MiB, 3);
  const writer = await FileWriter.open('/g', { metadata, data, holder: 'w1', timers });
  await writer.write(bytes.subarray(0, 2 * MiB + 10));
  // The writer seals full chunks in the background: wait for the first two.
  for (let i = 0; i < 1000 && metadata.files.get('/g')!.chunks.filter((c) => c.sealed).length < 2; i++) await new Promise((resolve) => setImmediate(resolve));
  const reader = new FileReader({ metadata, data });
  const session = reader.open('/g');
  const into = Buffer.alloc(5 * MiB);
  const first = await session.readInto(0, into);
  t.equal(first, 2 * MiB, 'the two sealed chunks');
  t.ok(into.subarray(0, first).equals(bytes.subarray(0, first)));
  await writer.write(bytes.subarray(2 * MiB + 10));
  await writer.close();
  const rest = await session.readInto(first, into.subarray(first));
  t.equal(first + rest, bytes.length, 'the rest, after the writer sealed it');
  t.ok(into.equals(bytes));
  session.close();
});

void t.test('replicas gone from a known chunk: the read asks for the list again and reads the new replicas', async (t) => {
  const { data, metadata, bytes, reader } = await setup(6 * MiB, 3 * MiB);
  const session = reader.open('/f');
  const into = Buffer.alloc(MiB);
  await session.readInto(4 * MiB, into); // a random read: the list is known, no read-ahead
  t.ok(into.equals(bytes.subarray(4 * MiB, 5 * MiB)));
  // Chunk 1 moves to server 4 (a copy, as re-replication makes), and every old replica's server dies.
  const chunk = metadata.files.get('/f')!.chunks[1]!;
  const old = chunk.replicas.map((r) => r.id);
  const copy = data.server(old[0]!).replicas.get(chunk.handle)!;
  data.server(4).replicas.set(chunk.handle, { ...copy, bytes: Buffer.from(copy.bytes) });
  chunk.replicas = [{ id: 4, address: data.server(4).address }];
  for (const id of old) data.server(id).alive = false;
  const fetches = session.stats.locationFetches;
  t.equal(await session.readInto(3 * MiB + 5, into), MiB);
  t.ok(into.equals(bytes.subarray(3 * MiB + 5, 4 * MiB + 5)), 'read from the new replica');
  t.equal(session.stats.locationFetches, fetches + 1, 'one more list');
  // No replica at all: EIO, after the one retry.
  data.server(4).alive = false;
  await t.rejects(session.readInto(3 * MiB, into), { code: 'EIO' });
  session.close();
});

void t.test('a read-ahead piece that failed is read again by the read that reaches it', async (t) => {
  const { data, bytes, reader } = await setup(4 * MiB, 4 * MiB);
  const session = reader.open('/f');
  const into = Buffer.alloc(readAheadPieceBytes);
  // Every server down while the first read's read-ahead is started: the pieces fail.
  await session.readInto(0, into);
  t.ok(into.equals(bytes.subarray(0, readAheadPieceBytes)));
  for (const s of data.servers.values()) s.alive = false;
  await new Promise((resolve) => setImmediate(resolve));
  for (const s of data.servers.values()) s.alive = true;
  // The pieces started before the outage may have failed; every read still returns the right bytes.
  for (let off = readAheadPieceBytes; off < bytes.length; off += readAheadPieceBytes) {
    t.equal(await session.readInto(off, into), readAheadPieceBytes);
    t.ok(into.equals(bytes.subarray(off, off + readAheadPieceBytes)), `piece at ${off}`);
  }
  session.close();
});

void t.test('concurrent reads on one session return their own bytes', async (t) => {
  const { bytes, reader } = await setup(12 * MiB + 3);
  const session = reader.open('/f');
  const size = 700 * 1024;
  const offsets = Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => i * size);
  const outs = offsets.map(() => Buffer.alloc(size));
  // In file order, all outstanding at once, plus a few out of order.
  const counts = await Promise.all([...offsets.map((o, i) => session.readInto(o, outs[i]!)), session.readInto(5 * MiB, Buffer.alloc(10))]);
  offsets.forEach((o, i) => t.ok(outs[i]!.subarray(0, counts[i]).equals(bytes.subarray(o, o + size)), `read at ${o}`));
  session.close();
});

void t.test('a file replaced after the first read: the known chunks are read until a read passes their end', async (t) => {
  const { metadata, data, timers, bytes, reader } = await setup(3 * MiB, 3 * MiB);
  const session = reader.open('/f');
  const into = Buffer.alloc(MiB);
  await session.readInto(0, into);
  // A new file at the path (another chunk list).
  const other = pattern(5 * MiB, 11);
  metadata.files.delete('/f');
  const writer = await FileWriter.open('/f', { metadata, data, holder: 'w2', timers });
  await writer.write(other);
  await writer.close();
  t.equal(await session.readInto(MiB, into), MiB);
  t.ok(into.equals(bytes.subarray(MiB, 2 * MiB)), 'the file first read (its chunks are immutable)');
  const past = Buffer.alloc(2 * MiB);
  t.equal(await session.readInto(3 * MiB - 10, past), 2 * MiB, 'past the old end: the new list');
  t.ok(past.equals(other.subarray(3 * MiB - 10, 5 * MiB - 10)), "the new file's bytes, none read ahead from the old one");
  session.close();
});

/**
 * A data plane whose next `abandonNext` reads into retirable buffers give up as a local read on a hung disk
 * does (ReadBufferAbandonedError, the buffer kept by a call that writes into it late: here, the test).
 */
class AbandoningDataPlane extends FakeDataPlane {
  abandonNext = 0;
  /** Buffers of abandoned reads, and the backing store of every buffer a read was asked to fill, in order. */
  readonly abandoned: Uint8Array[] = [];
  readonly targets: Uint8Array[] = [];
  override readRange(address: string, request: { handle: number; version: number; offset: number; length: number }, into?: Uint8Array, options?: ReadIntoOptions): Promise<Uint8Array> {
    if (into !== undefined) this.targets.push(into);
    if (into !== undefined && options?.retirable === true && this.abandonNext > 0) {
      this.abandonNext--;
      this.abandoned.push(into);
      return Promise.reject(new ReadBufferAbandonedError(`read of chunk ${request.handle} abandoned`));
    }
    return super.readRange(address, request);
  }
  /** The late writes of the abandoned calls: garbage over every abandoned buffer. */
  writeLate(): void {
    for (const into of this.abandoned) into.fill(0xaa);
  }
}

void t.test('a read abandoned with a call still writing into its buffer: the buffer is retired, the bytes read again elsewhere', async (t) => {
  const data = new AbandoningDataPlane(4);
  const metadata = new FakeMetadata(data, 4 * MiB);
  const bytes = pattern(16 * MiB, 9);
  const writer = await FileWriter.open('/f', { metadata, data, holder: 'w1', timers: new ManualTimers() });
  await writer.write(bytes);
  await writer.close();
  const spares = new SpareBuffers();
  const reader = new FileReader({ metadata, data, orderReplicas: (c) => c.replicas, spares });

  // Path reads read into buffers of the reader's own, retirable: one abandoned is read again into another.
  data.abandonNext = 1;
  const whole = await reader.readFile('/f');
  t.equal(data.abandoned.length, 1, 'the first read into the result buffer was abandoned');
  t.not(whole.buffer, data.abandoned[0]!.buffer, 'and the result is another buffer');
  const same = (a: Uint8Array, b: Uint8Array): boolean => a.buffer === b.buffer && a.byteOffset === b.byteOffset;
  t.equal(data.targets.filter((b) => same(b, data.abandoned[0]!)).length, 1, "no other replica was read into the abandoned read's buffer");
  data.writeLate();
  t.ok(whole.equals(bytes), 'the file, whatever the abandoned call writes late');
  data.abandonNext = 1;
  const part = await reader.read('/f', 5 * MiB + 3, 2 * MiB);
  data.writeLate();
  t.ok(part.equals(bytes.subarray(5 * MiB + 3, 7 * MiB + 3)), 'a range read likewise');

  // A caller's buffer is never offered as retirable: nothing is abandoned in it.
  data.abandonNext = 1;
  const into = Buffer.alloc(3 * MiB);
  t.equal(await reader.readInto('/f', MiB, into), 3 * MiB);
  t.equal(data.abandonNext, 1, "a read into the caller's buffer is not retirable");
  t.ok(into.equals(bytes.subarray(MiB, 4 * MiB)));
  data.abandonNext = 0;

  // A session's read-ahead pieces are retirable: two abandoned, their buffers never used again.
  const session = reader.open('/f');
  const got = Buffer.alloc(bytes.length);
  const before = data.abandoned.length;
  const targetsBefore = data.targets.length;
  data.abandonNext = 2;
  await session.readInto(0, got.subarray(0, readAheadPieceBytes)); // into the caller's buffer; starts the read-ahead
  for (let off = readAheadPieceBytes; off < bytes.length; off += readAheadPieceBytes) {
    await session.readInto(off, got.subarray(off, off + readAheadPieceBytes));
    data.writeLate();
  }
  const pieceBuffers = data.abandoned.slice(before).map((b) => b.buffer);
  t.equal(pieceBuffers.length, 2, 'two read-ahead pieces abandoned');
  t.ok(got.equals(bytes), 'every byte, read again by the reads that reached the abandoned pieces');
  const sessionTargets = data.targets.slice(targetsBefore).map((b) => b.buffer);
  t.ok(
    pieceBuffers.every((p) => sessionTargets.filter((b) => b === p).length === 1),
    'no abandoned piece buffer read into again',
  );
  session.close();
  const kept: Buffer[] = [];
  while (spares.keptBytes > 0) kept.push(spares.take(readAheadPieceBytes));
  t.ok(kept.length > 0, `the session's other buffers went back to the spares (${kept.length})`);
  t.notOk(kept.some((b) => pieceBuffers.includes(b.buffer)), 'the abandoned ones did not');
});
