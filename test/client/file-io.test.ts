import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { FileIoError } from '../../src/client/data-path.ts';
import { FileReader } from '../../src/client/file-reader.ts';
import { FileWriter } from '../../src/client/file-writer.ts';
import { FakeDataPlane, FakeMetadata, ManualTimers } from './fakes.ts';
import { pattern } from './pattern.ts';

const MiB = 1024 * 1024;


function setup(servers = 4, chunkSizeBytes = 4 * MiB) {
  const data = new FakeDataPlane(servers);
  const metadata = new FakeMetadata(data, chunkSizeBytes);
  const timers = new ManualTimers();
  return { data, metadata, timers, reader: new FileReader({ metadata, data }) };
}

/** Writes `bytes` in uneven pieces (1 B .. 700 KiB), reusing one source buffer to prove the writer copies. */
async function writeInPieces(writer: FileWriter, bytes: Buffer): Promise<void> {
  const scratch = Buffer.allocUnsafe(700 * 1024);
  let offset = 0;
  let step = 1;
  while (offset < bytes.length) {
    const n = Math.min(bytes.length - offset, step, scratch.length);
    bytes.copy(scratch, 0, offset, offset + n);
    await writer.write(scratch.subarray(0, n));
    scratch.fill(0xee, 0, n); // the caller reuses its buffer at once
    offset += n;
    step = step >= 700 * 1024 ? 1 : step * 7 + 3;
  }
}

void t.test('a file spans chunks: every chunk sealed with the CRC32C of its bytes, read back equal', async (t) => {
  const { data, metadata, timers, reader } = setup();
  const bytes = pattern(10 * MiB + 12345, 7);
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers });
  await writeInPieces(writer, bytes);
  t.equal(writer.position, bytes.length);
  const { lengthBytes } = await writer.close();
  t.equal(lengthBytes, bytes.length);
  const file = metadata.files.get('/a')!;
  t.same(file.chunks.map((c) => c.lengthBytes), [4 * MiB, 4 * MiB, 2 * MiB + 12345]);
  for (const [i, c] of file.chunks.entries()) {
    t.ok(c.sealed);
    t.equal(c.checksum, crc32c(bytes.subarray(i * 4 * MiB, i * 4 * MiB + c.lengthBytes)), `chunk ${i} checksum`);
    for (const r of c.replicas) t.ok(data.server(r.id).replicas.get(c.handle)!.bytes.equals(bytes.subarray(i * 4 * MiB, i * 4 * MiB + c.lengthBytes)));
  }
  t.ok((await reader.readFile('/a')).equals(bytes));
  t.equal(timers.active, 0, 'lease renewal stops at close');
  await t.rejects(writer.write(Buffer.from('x')), { code: 'EBADF' });
});

void t.test('open is one call (create with the lease), close one (complete with the last seal)', async (t) => {
  for (const leaseOnCreate of [true, false]) {
    const { data, metadata, timers, reader } = setup();
    metadata.leaseOnCreate = leaseOnCreate;
    const name = leaseOnCreate ? 'a current leader' : 'a leader that does not grant the lease in create';
    const bytes = pattern(9 * MiB + 5, 3); // three chunks: two sealed on the way, the last at close
    const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, allocateAheadBytes: 0 });
    t.same(metadata.creates, [{ path: '/a', withLease: leaseOnCreate }], `${name}: one create`);
    t.same(metadata.calls, leaseOnCreate ? [] : ['acquireLease'], `${name}: the lease from the create, or acquired after it`);
    await writeInPieces(writer, bytes);
    t.equal((await writer.close()).lengthBytes, bytes.length, name);
    t.same(metadata.calls.filter((c) => c !== 'acquireLease'), ['sealChunk', 'sealChunk', 'completeFile+seal'], `${name}: the last chunk sealed by the completion`);
    const file = metadata.files.get('/a')!;
    t.same(file.chunks.map((c) => [c.sealed, c.lengthBytes]), [[true, 4 * MiB], [true, 4 * MiB], [true, MiB + 5]]);
    t.equal(file.chunks[2]!.checksum, crc32c(bytes.subarray(8 * MiB)), `${name}: the last chunk's checksum`);
    t.ok((await reader.readFile('/a')).equals(bytes));
  }
  // An empty file has no chunk to seal: a plain completion.
  const { data, metadata, timers } = setup();
  const writer = await FileWriter.open('/e', { metadata, data, holder: 'w1', timers });
  t.equal((await writer.close()).lengthBytes, 0);
  t.same(metadata.calls, ['completeFile']);
});

void t.test("a new file's first chunk comes with the create: no allocation for it, and no replica until bytes come", async (t) => {
  for (const [name, length, chunks] of [
    ['one chunk', MiB + 9, 1],
    ['three chunks', 9 * MiB + 5, 3],
  ] as const) {
    const { data, metadata, timers, reader } = setup();
    metadata.firstChunkOnCreate = true;
    const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, allocateAheadBytes: 0 });
    t.same([metadata.files.get('/a')!.chunks.length, data.pipelinesOpened], [1, 0], `${name}: the chunk is given, its pipeline not opened yet`);
    const bytes = pattern(length, 5);
    await writeInPieces(writer, bytes);
    t.equal((await writer.close()).lengthBytes, bytes.length, name);
    t.equal(metadata.allocations, chunks - 1, `${name}: allocations for the chunks after the first only`);
    const file = metadata.files.get('/a')!;
    t.same(file.chunks.map((c) => c.sealed), Array(chunks).fill(true), `${name}: every chunk sealed`);
    t.equal(file.chunks[0]!.checksum, crc32c(bytes.subarray(0, file.chunks[0]!.lengthBytes)), `${name}: the first chunk holds the first bytes`);
    t.ok((await reader.readFile('/a')).equals(bytes), `${name}: read back equal`);
  }
  // Closed empty: no pipeline, no replica anywhere; the completion drops the unused chunk.
  const { data, metadata, timers } = setup();
  metadata.firstChunkOnCreate = true;
  const writer = await FileWriter.open('/e', { metadata, data, holder: 'w1', timers });
  const handle = metadata.files.get('/e')!.chunks[0]!.handle;
  t.equal((await writer.close()).lengthBytes, 0);
  t.same([data.pipelinesOpened, metadata.allocations, metadata.files.get('/e')!.chunks.length, metadata.abandoned], [0, 0, 0, [handle]], 'nothing opened or allocated; the chunk dropped');
  t.ok([...data.servers.values()].every((s) => !s.replicas.has(handle)), 'no replica was created');
});

void t.test('a leader older than lastChunk: open acquires the lease, close seals on its own and completes', async (t) => {
  const { data, metadata, timers, reader } = setup();
  metadata.leaseOnCreate = false;
  metadata.lastChunkIgnored = true;
  const bytes = pattern(5 * MiB + 3, 4);
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, allocateAheadBytes: 0 });
  await writeInPieces(writer, bytes);
  t.equal((await writer.close()).lengthBytes, bytes.length);
  t.same(metadata.calls, ['acquireLease', 'sealChunk', 'completeFile', 'sealChunk', 'completeFile'], 'refused without the seal, then the two calls of old');
  t.ok((await reader.readFile('/a')).equals(bytes));
});

void t.test('an open that fails after the lease was granted gives the lease back', async (t) => {
  const { data, metadata, timers } = setup();
  await t.rejects(FileWriter.open('/a', { metadata, data, holder: 'w1', timers, allocateAheadBytes: -1 }), RangeError);
  t.equal(metadata.files.get('/a')!.holder, null, 'released: the next writer need not wait for the lease to expire');
  const next = await FileWriter.open('/a', { metadata, data, holder: 'w2', timers });
  t.equal((await next.close()).lengthBytes, 0);
});

void t.test('a completion refused with the last seal: close fails and the chunk stays unsealed', async (t) => {
  const { data, metadata, timers } = setup();
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, stagingBytes: 256 * 1024, allocateAheadBytes: 0 });
  await writer.write(pattern(2 * MiB, 1)); // past the staging buffer: the chunk is allocated and streaming
  t.equal(metadata.files.get('/a')!.chunks.length, 1);
  metadata.files.get('/a')!.holder = 'thief'; // the lease was lost meanwhile
  await t.rejects(writer.close(), /ELEASE/);
  t.same(metadata.files.get('/a')!.chunks.map((c) => c.sealed), [false], 'not sealed');
  await t.rejects(writer.write(Buffer.from('x')), 'the writer stays failed');
});

void t.test('the next chunk is allocated ahead; one the file did not need is abandoned at close', async (t) => {
  for (const [name, length, chunks, abandoned] of [
    ['ends in the chunk allocated ahead', 10 * MiB + 12345, 3, 1],
    ['ends exactly at a chunk boundary', 8 * MiB, 2, 1],
    ['ends before the current chunk is half full', 8 * MiB + 100, 3, 0],
  ] as const) {
    const { data, metadata, timers, reader } = setup();
    const bytes = pattern(length, 9);
    const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers });
    await writeInPieces(writer, bytes);
    t.equal((await writer.close()).lengthBytes, length, name);
    const file = metadata.files.get('/a')!;
    t.equal(file.chunks.length, chunks, `${name}: chunks in the file`);
    t.ok(file.chunks.every((c) => c.sealed && c.lengthBytes > 0), `${name}: every chunk sealed and not empty`);
    t.equal(metadata.abandoned.length, abandoned, `${name}: chunks abandoned`);
    t.equal(metadata.allocations, chunks + abandoned, `${name}: allocations`);
    t.ok((await reader.readFile('/a')).equals(bytes), `${name}: read back equal`);
  }
});

void t.test('allocateAheadBytes 0: chunks are allocated only when needed', async (t) => {
  const { data, metadata, timers } = setup();
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers, allocateAheadBytes: 0 });
  await writeInPieces(writer, pattern(8 * MiB, 3));
  await writer.close();
  t.same([metadata.allocations, metadata.abandoned.length], [2, 0]);
});

void t.test('an allocation ahead that fails is retried at the boundary', async (t) => {
  const { data, metadata, timers, reader } = setup();
  const allocate = metadata.allocateChunk.bind(metadata);
  let calls = 0;
  metadata.allocateChunk = (path, holder, index) => (++calls === 2 ? Promise.reject(new Error('EAGAIN: not now')) : allocate(path, holder, index));
  const bytes = pattern(6 * MiB, 4);
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers });
  await writeInPieces(writer, bytes);
  await writer.close();
  // The first chunk, the failed one ahead, the retry at the boundary, then one ahead of the second chunk
  // (half full at the end), which the file did not need.
  t.equal(calls, 4);
  t.equal(metadata.abandoned.length, 1);
  t.same(metadata.files.get('/a')!.chunks.map((c) => c.lengthBytes), [4 * MiB, 2 * MiB]);
  t.ok((await reader.readFile('/a')).equals(bytes));
});

void t.test('an allocation ahead applied at the leader whose answer was lost: the retry at the boundary gets that chunk', async (t) => {
  const { data, metadata, timers, reader } = setup();
  const bytes = pattern(6 * MiB, 5);
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers });
  await writeInPieces(writer, bytes.subarray(0, MiB));
  metadata.loseNextAllocationAnswer = true; // the allocation ahead (at half the first chunk)
  await writeInPieces(writer, bytes.subarray(MiB));
  await writer.close();
  const chunks = metadata.files.get('/a')!.chunks;
  t.same(chunks.map((c) => [c.index, c.lengthBytes, c.sealed]), [[0, 4 * MiB, true], [1, 2 * MiB, true]], 'no orphan chunk between the two');
  t.equal(metadata.abandoned.length, 1, 'only the chunk allocated ahead of the second, not needed, left the file at close');
  t.ok((await reader.readFile('/a')).equals(bytes));
});

void t.test('an allocation ahead whose answer was lost and that the file did not need: close drops it and completes', async (t) => {
  const { data, metadata, timers, reader } = setup();
  const bytes = pattern(3 * MiB, 6);
  const writer = await FileWriter.open('/a', { metadata, data, holder: 'w1', timers });
  await writeInPieces(writer, bytes.subarray(0, MiB));
  metadata.loseNextAllocationAnswer = true;
  await writeInPieces(writer, bytes.subarray(MiB));
  t.same(await writer.close(), { lengthBytes: 3 * MiB });
  t.equal(metadata.files.get('/a')!.chunks.length, 1);
  t.equal(metadata.abandoned.length, 1, 'the chunk the writer never got left the file at completion');
  t.ok((await reader.readFile('/a')).equals(bytes));
});

void t.test('a replica that dies mid-write: new version with the survivors, resent from the acknowledged length', async (t) => {
  const { data, metadata, timers, reader } = setup();
  const bytes = pattern(9 * MiB, 11);
  const recoveries: { failedId: number; ackedLengthBytes: number; version: number }[] = [];
  const writer = await FileWriter.open('/b', { metadata, data, holder: 'w1', timers, onRecovery: (e) => recoveries.push(e) });
  // Server 2 (middle of the chain) takes 1.5 MiB + 7 bytes of the first chunk, then dies: server 1 holds
  // bytes the chain never acknowledged, which the resumed pipeline must cut and resend.
  data.server(2).failAfterBytes = 1.5 * MiB + 7;
  await writeInPieces(writer, bytes);
  await writer.close();
  t.equal(recoveries.length, 1);
  t.equal(recoveries[0]!.failedId, 2);
  t.equal(recoveries[0]!.version, 2);
  t.ok(recoveries[0]!.ackedLengthBytes <= 1.5 * MiB + 7);
  const first = metadata.files.get('/b')!.chunks[0]!;
  t.equal(first.version, 2);
  t.same(first.replicas.map((r) => r.id), [1, 3], 'the survivors');
  for (const r of first.replicas) {
    const replica = data.server(r.id).replicas.get(first.handle)!;
    t.equal(replica.version, 2);
    t.ok(replica.bytes.equals(bytes.subarray(0, 4 * MiB)), `replica on ${r.id} holds exactly the chunk`);
  }
  t.equal(data.server(2).replicas.get(first.handle)!.version, 1, 'the dead server is left stale');
  const later = metadata.files.get('/b')!.chunks[1]!;
  t.notOk(later.replicas.some((r) => r.id === 2), 'new chunks avoid the dead server');
  t.ok((await reader.readFile('/b')).equals(bytes));
});

void t.test('a pipeline failing again during recovery: repeated bumps until one sticks', async (t) => {
  const { data, metadata, timers, reader } = setup(5);
  const bytes = pattern(3 * MiB, 5);
  const writer = await FileWriter.open('/c', { metadata, data, holder: 'w1', timers, stagingBytes: 256 * 1024, allocateAheadBytes: 0 });
  data.server(3).failAfterBytes = MiB; // last in the chain
  data.server(1).failAfterBytes = 2 * MiB; // first in the chain, later
  await writer.write(bytes);
  await writer.close();
  const chunk = metadata.files.get('/c')!.chunks[0]!;
  t.equal(chunk.version, 3);
  t.same(chunk.replicas.map((r) => r.id), [2]);
  t.ok((await reader.readFile('/c')).equals(bytes));
});

void t.test('every replica failing: EIO, and the writer stays failed', async (t) => {
  const { data, metadata, timers } = setup(3);
  const writer = await FileWriter.open('/d', { metadata, data, holder: 'w1', timers });
  for (const id of [1, 2, 3]) data.server(id).failAfterBytes = 100_000 * id;
  const error = await writer.write(pattern(2 * MiB, 3)).then(
    () => writer.close(),
    (e: unknown) => e,
  );
  t.type(error, FileIoError);
  t.equal((error as FileIoError).code, 'EIO');
  await t.rejects(writer.write(Buffer.from('more')), { code: 'EIO' }, 'the same failure again');
  t.equal(timers.active, 0, 'no renewal after a failure');
});

void t.test('lease: renewed on the timer; a refused renewal fails the writer', async (t) => {
  const { data, metadata, timers } = setup();
  const writer = await FileWriter.open('/e', { metadata, data, holder: 'w1', timers });
  timers.fire();
  await new Promise((r) => setImmediate(r));
  t.equal(metadata.renewals, 1);
  metadata.refuseRenewal = true;
  timers.fire();
  await new Promise((r) => setImmediate(r));
  await t.rejects(writer.write(Buffer.from('x')), { code: 'EIO' });
});

void t.test('reads: ranges across chunks, clamped at the end, and failover past bad replicas', async (t) => {
  const { data, metadata, timers } = setup(3, MiB);
  const bytes = pattern(3 * MiB + 500, 9);
  const writer = await FileWriter.open('/f', { metadata, data, holder: 'w1', timers });
  await writer.write(bytes);
  await writer.close();
  const failures: { replicaId: number; code: string | undefined; reported: boolean }[] = [];
  const reader = new FileReader({ metadata, data, orderReplicas: (c) => c.replicas, onReplicaFailure: (e) => failures.push(e) });
  for (const [offset, length] of [
    [0, 1],
    [MiB - 10, 20],
    [MiB - 1, 2 * MiB + 2],
    [3 * MiB + 400, 1000],
    [5 * MiB, 10],
  ] as const) {
    const got = await reader.read('/f', offset, length);
    t.ok(got.equals(bytes.subarray(offset, offset + length)), `range ${offset}+${length}`);
  }
  const second = metadata.files.get('/f')!.chunks[1]!;
  data.server(1).corrupt.add(second.handle);
  data.server(2).alive = false;
  t.ok((await reader.readFile('/f')).equals(bytes), 'served by the third replica');
  t.same(metadata.badReports, [{ handle: second.handle, chunkserverId: 1, version: 1 }], 'only the corrupt replica is reported');
  t.ok(failures.some((f) => f.replicaId === 2 && f.code === 'CONNECTION_LOST' && !f.reported));
  // An I/O error is failed over but not reported: it may be transient, and the chunkserver judges it itself
  // (simulator seed 43253: a reported transient error cost a good copy).
  const first = metadata.files.get('/f')!.chunks[0]!;
  data.server(1).unreadable.add(first.handle);
  failures.length = 0;
  t.ok((await reader.read('/f', 0, 100)).equals(bytes.subarray(0, 100)), 'an I/O error: served by another replica');
  t.same(failures.map((f) => [f.replicaId, f.code, f.reported]).filter(([, code]) => code === 'IO_ERROR'), [[1, 'IO_ERROR', false]], 'the I/O error was met and not reported');
  t.same(metadata.badReports.length, 1, 'no new report');
  data.server(3).alive = false;
  await t.rejects(reader.read('/f', MiB, 10), { code: 'EIO' });
  await t.rejects(reader.read('/f', -1, 10), { code: 'EINVAL' });
});

void t.test('a replica sealing with another checksum than the bytes sent: EIO, the chunk is not sealed', async (t) => {
  const { data, metadata, timers } = setup(3);
  const writer = await FileWriter.open('/g', { metadata, data, holder: 'w1', timers });
  data.server(2).sealChecksumXor = 0x10;
  await writer.write(pattern(1000, 1));
  await t.rejects(writer.close(), { code: 'EIO', message: /replica\(s\) 2 sealed/ });
  t.notOk(metadata.files.get('/g')!.chunks[0]!.sealed);
});

void t.test('staging buffers are reused across chunk boundaries while acknowledgements lag (a pipeline window)', async (t) => {
  const { data, metadata, timers, reader } = setup(3, 8 * MiB);
  data.ackLagBytes = 6 * MiB; // six 1 MiB packets unacknowledged until the chunk's flush
  const bytes = pattern(8 * 8 * MiB, 21);
  const writer = await FileWriter.open('/w', { metadata, data, holder: 'w1', timers, stagingBytes: MiB });
  for (let off = 0; off < bytes.length; off += 3 * MiB) await writer.write(bytes.subarray(off, Math.min(bytes.length, off + 3 * MiB)));
  await writer.close();
  t.ok((await reader.readFile('/w')).equals(bytes), 'read back equal');
  // Six in the window, one staging, one seal's worth overlapping the next chunk: a small fixed number, not
  // a few fresh buffers per chunk (8 chunks).
  t.ok(writer.stagingAllocated <= 6 + 1 + 2, `staging buffers allocated: ${writer.stagingAllocated}`);
});
