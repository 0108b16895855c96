/**
 * The metadata RPCs of a file writer and a reader, over gRPC on a 3-server in-process cluster, with
 * chunkservers simulated here (they register, heartbeat, report what they hold, copy and delete as the
 * leader's replies order): a writer takes the file's lease, allocates chunks, starts a new pipeline without a
 * failed replica, seals and completes; a second writer is refused while the lease lives; stale versions get
 * ESTALE; a retried stamp is applied once; a reader's report of a bad replica unlists it, the chunkserver is
 * told to delete it, and re-replication restores the factor from a good copy.
 */
import { crc32c } from '@node-rs/crc32';
import t from 'tap';
import { MetadataClient, MetadataError } from '../../src/metadata/client.ts';
import type { ChunkLocation } from '../../src/metadata/client.ts';
import { FakeChunkservers } from './fake-chunkservers.ts';
import { rawCall, sleep, startInProcessCluster, waitFor } from './harness.ts';

/** The error code a call fails with ('ok' when it succeeds). */
async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof MetadataError ? e.code : `not a MetadataError: ${String(e)}`;
  }
}

const ids = (replicas: readonly { id: number }[]): number[] => replicas.map((r) => r.id);

void t.test('writer and reader RPCs: leases, pipelines, versions, sealing, completion, bad replicas', async (t) => {
  const cluster = await startInProcessCluster(3, {
    chunkManagerIntervalMs: 50,
    // Generous for a loaded machine: the simulated chunkservers beat every 100 ms.
    chunkManagerLimits: { heartbeatTimeoutMs: 10_000, leaderGraceMs: 10_000, replicationTimeoutMs: 5_000, proposalRetryMs: 1_000 },
  });
  const writer = await MetadataClient.connect(cluster.addresses);
  const servers = await MetadataClient.connect(cluster.addresses);
  const cs = new FakeChunkservers(servers);
  let beating = true;
  let loop: Promise<void> = Promise.resolve();
  t.teardown(async () => {
    beating = false;
    await loop;
    writer.close();
    servers.close();
    await cluster.close();
  });
  const leaderAddress = async (): Promise<string> => cluster.peers.get((await cluster.leader()).id)!.client;

  // Five chunkservers in three racks, beating (their first heartbeat waits for the leader's chunk manager).
  const registered = await cs.register(['r0', 'r1', 'r2', 'r0', 'r1']);
  t.equal(new Set(registered).size, 5, 'five chunkservers');
  await cs.whenKnown();
  loop = (async () => {
    while (beating) {
      await cs.beatAll().catch(() => {});
      await sleep(100);
    }
  })();

  // ---- the lease: one writer at a time
  await writer.mkdir('/w');
  await writer.create('/w/f', { replication: 3 });
  const before = Date.now();
  const lease = await writer.acquireLease('/w/f', { holder: 'A', durationMs: 60_000 });
  t.ok(lease.expiresMs >= before + 60_000 - 1_000 && lease.expiresMs <= Date.now() + 60_000 + 1_000, 'the reply carries the expiry');
  const stat = await rawCall(await leaderAddress(), 'Stat', { path: '/w/f' });
  t.match(stat['info'], { lease: { holder: 'A', expiresMs: String(lease.expiresMs) } }, 'Stat shows the lease');
  t.equal(await code(writer.acquireLease('/w/f', { holder: 'B', durationMs: 1_000 })), 'ELEASE', 'a second holder is refused while the lease is live');
  t.equal(await code(writer.renewLease('/w/f', { holder: 'B', durationMs: 1_000 })), 'ELEASE', 'only the holder renews');
  t.equal(await code(writer.releaseLease('/w/f', { holder: 'B' })), 'ELEASE', 'only the holder releases');
  t.equal(await code(writer.completeFile('/w/f', { holder: 'B' })), 'ELEASE', 'only the holder completes');
  await sleep(5);
  const renewed = await writer.renewLease('/w/f', { holder: 'A', durationMs: 60_000 });
  t.ok(renewed.expiresMs > lease.expiresMs, 'renewal moves the expiry');
  // A lease whose holder vanished (expired) is taken over; its holder cannot renew it any more.
  await writer.create('/w/e', { leaseHolder: 'A', leaseDurationMs: 1 });
  await sleep(20);
  t.equal(await code(writer.renewLease('/w/e', { holder: 'A', durationMs: 1_000 })), 'ELEASE', 'an expired lease is not renewed');
  t.equal(await code(writer.acquireLease('/w/e', { holder: 'B', durationMs: 60_000 })), 'ok', 'an expired lease is taken over');
  // Bad input: typed errors, nothing proposed.
  t.equal(await code(writer.acquireLease('/w/f', { holder: 'A', durationMs: 0 })), 'EINVAL', 'duration 0');
  t.equal(await code(writer.acquireLease('/w/f', { holder: 'A', durationMs: 10 * 60_000 + 1 })), 'EINVAL', 'duration above lease_duration_ms_max');
  t.equal(await code(writer.acquireLease('/w/f', { holder: '', durationMs: 1_000 })), 'EINVAL', 'empty holder');
  t.equal(await code(writer.acquireLease('/w/f', { holder: 'h'.repeat(256), durationMs: 1_000 })), 'EINVAL', 'holder too long');
  t.equal(await code(writer.acquireLease('w/f', { holder: 'A', durationMs: 1_000 })), 'EINVAL', 'relative path');
  t.equal(await code(writer.acquireLease('/w/nope', { holder: 'A', durationMs: 1_000 })), 'ENOENT', 'no such file');
  t.equal(await code(writer.acquireLease('/w', { holder: 'A', durationMs: 1_000 })), 'EISDIR', 'a directory');
  t.equal((await rawCall(await leaderAddress(), 'AcquireLease', { path: '/w/f', holder: 'A', durationMs: 1_000 })).error?.code, 'EINVAL', 'no session stamp');

  // ---- two chunks, "written" to their pipelines
  const c0 = await writer.allocateChunk('/w/f', { holder: 'A' });
  const c1 = await writer.allocateChunk('/w/f', { holder: 'A' });
  t.match([c0, c1], [{ index: 0, version: 1 }, { index: 1, version: 1 }], 'two chunks at version 1');
  t.equal(new Set(ids(c0.replicas)).size, 3, 'three replicas');
  t.ok(c0.replicas.every((r) => /^10\.0\.1\.\d:7000$/.test(r.address)), 'with addresses');
  for (const c of [c0, c1]) for (const id of ids(c.replicas)) await cs.write(id, c.handle, 1);

  // ---- a replica of chunk 0 failed: a new pipeline with the survivors only
  const [a, b, failed] = ids(c0.replicas) as [number, number, number];
  const bumped = await writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 1, survivors: [a, b] });
  t.equal(bumped.version, 2, 'the version is bumped');
  t.same(ids(bumped.replicas), [a, b], 'the survivors, in order, no replacement asked');
  t.ok(bumped.replicas.every((r) => r.address !== ''), 'with addresses');
  for (const id of [a, b]) await cs.write(id, c0.handle, 2);
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 1, survivors: [a] })), 'ESTALE', 'a stale version');
  t.equal(await code(writer.sealChunk(c0.handle, { holder: 'A', version: 1, lengthBytes: 1, checksum: 1 })), 'ESTALE', 'sealing a stale version');
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 2, survivors: [a, failed] })), 'EINVAL', 'a survivor that is no replica');
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 2, survivors: [a, a] })), 'EINVAL', 'a survivor twice');
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 2, survivors: [] })), 'EINVAL', 'no survivor and no replacement asked');
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'B', version: 2, survivors: [a] })), 'ELEASE', 'not the lease holder');
  t.equal(await code(writer.bumpChunkVersion(0, { holder: 'A', version: 2, survivors: [a] })), 'EINVAL', 'handle 0');
  t.equal(await code(writer.bumpChunkVersion(987_654, { holder: 'A', version: 1, survivors: [a] })), 'ENOENT', 'unknown handle');
  t.equal(await code(writer.bumpChunkVersion(c0.handle, { holder: 'A', version: 0, survivors: [a] })), 'EINVAL', 'version 0');
  const located = await writer.chunkLocations('/w/f');
  t.same(ids(located.chunks[0]!.replicas), [a, b], 'ChunkLocations names the new pipeline (unsealed: not re-replicated)');

  // ---- chunk 1: a new pipeline with a replacement, sent twice under one session stamp (applied once)
  const at = await leaderAddress();
  const session = Number((await rawCall(at, 'OpenSession', {}))['clientId']);
  const [x, y, gone] = ids(c1.replicas) as [number, number, number];
  const bump = { session: { clientId: session, seq: 1, ack: 0 }, handle: c1.handle, holder: 'A', version: 1, survivors: [x, y], addReplacements: true };
  const first = await rawCall(at, 'BumpChunkVersion', bump);
  t.equal(first.error ?? undefined, undefined, 'bumped with a replacement');
  t.equal(Number(first['version']), 2);
  const pipeline = (first['replicas'] as { id: string; address: string }[]).map((r) => Number(r.id));
  t.equal(pipeline.length, 3, 'topped up to the replication factor');
  t.same(pipeline.slice(0, 2), [x, y], 'survivors first');
  const replacement = pipeline[2]!;
  t.ok(!c1.replicas.some((r) => r.id === replacement) && replacement !== gone, 'the replacement is a new server');
  const retried = await rawCall(at, 'BumpChunkVersion', bump);
  t.same([retried.error ?? undefined, retried['version'], retried['replicas']], [undefined, first['version'], first['replicas']], 'a retried stamp answers the first result, not ESTALE');
  for (const id of pipeline) await cs.write(id, c1.handle, 2);

  // ---- seal both chunks, complete the file
  const bytes0 = Buffer.alloc(1_000, 7);
  const bytes1 = Buffer.alloc(500, 9);
  const sum0 = crc32c(bytes0);
  const sum1 = crc32c(bytes1);
  t.equal(await code(writer.sealChunk(c0.handle, { holder: 'A', version: 2, lengthBytes: 1_000, checksum: 2 ** 32 })), 'EINVAL', 'a checksum above 32 bits');
  t.equal(await code(writer.sealChunk(c0.handle, { holder: 'A', version: 2, lengthBytes: 2 ** 40, checksum: sum0 })), 'EINVAL', 'longer than the chunk size');
  t.equal(await code(writer.sealChunk(c0.handle, { holder: 'B', version: 2, lengthBytes: 1_000, checksum: sum0 })), 'ELEASE', 'not the lease holder');
  cs.lengths.set(c0.handle, 1_000);
  t.same(await writer.sealChunk(c0.handle, { holder: 'A', version: 2, lengthBytes: 1_000, checksum: sum0 }), { fileLengthBytes: 1_000 });
  t.equal(await code(writer.sealChunk(c0.handle, { holder: 'A', version: 2, lengthBytes: 1_000, checksum: sum0 })), 'EINVAL', 'sealed once only');
  t.equal(await code(writer.completeFile('/w/f', { holder: 'A' })), 'EINVAL', 'not complete while a chunk is unsealed');
  cs.lengths.set(c1.handle, 500);
  t.same(await writer.sealChunk(c1.handle, { holder: 'A', version: 2, lengthBytes: 500, checksum: sum1 }), { fileLengthBytes: 1_500 });
  const completed = await writer.completeFile('/w/f', { holder: 'A' });
  t.equal(completed.lengthBytes, 1_500, 'the file length is sealed');
  const st = await writer.stat('/w/f');
  t.match(st, { complete: true, lengthBytes: 1_500, chunkCount: 2, generation: completed.generation });
  const locations = await writer.chunkLocations('/w/f');
  t.match(locations, { complete: true, lengthBytes: 1_500, chunkCount: 2, nextIndex: null });
  t.match(locations.chunks, [
    { handle: c0.handle, index: 0, version: 2, sealed: true, lengthBytes: 1_000, checksum: sum0 },
    { handle: c1.handle, index: 1, version: 2, sealed: true, lengthBytes: 500, checksum: sum1 },
  ], 'ChunkLocations shows versions, sealed lengths and checksums');
  t.same(ids(locations.chunks[1]!.replicas), pipeline);
  // Completion released the lease: another holder may take it, and release it.
  await writer.acquireLease('/w/f', { holder: 'B', durationMs: 1_000 });
  await writer.releaseLease('/w/f', { holder: 'B' });
  t.equal(await code(writer.releaseLease('/w/f', { holder: 'B' })), 'ELEASE', 'released already');

  // ---- the leader restores chunk 0's factor and deletes the failed server's stale copy (version 1)
  const c0Full = await waitFor('chunk 0 back at three replicas', async () => {
    const c = (await writer.chunkLocations('/w/f')).chunks[0]!;
    return c.replicas.length === 3 ? c : undefined;
  });
  t.ok(ids(c0Full.replicas).every((id) => cs.held.get(id)!.get(c0.handle) === 2), 'every listed replica holds version 2');
  await waitFor('the stale copy deleted', () => (cs.held.get(failed)!.get(c0.handle) === 1 ? undefined : true));

  // ---- a reader found a bad replica of chunk 1
  const bad = x;
  t.equal(await code(writer.reportBadReplica(c1.handle, { chunkserverId: bad, version: 1 })), 'ESTALE', 'a stale version');
  t.equal(await code(writer.reportBadReplica(987_654, { chunkserverId: bad, version: 2 })), 'ENOENT', 'unknown handle');
  t.equal(await code(writer.reportBadReplica(c1.handle, { chunkserverId: 999, version: 2 })), 'ENOENT', 'unknown chunkserver');
  t.equal(await code(writer.reportBadReplica(0, { chunkserverId: bad, version: 2 })), 'EINVAL', 'handle 0');
  t.equal(await code(writer.reportBadReplica(c1.handle, { chunkserverId: 0, version: 2 })), 'EINVAL', 'chunkserver id 0');
  const report = await writer.reportBadReplica(c1.handle, { chunkserverId: bad, version: 2 });
  t.equal(report.outcome, 'dropped', 'dropped at once');
  t.same(ids(report.replicas), pipeline.filter((id) => id !== bad), 'the reply lists the replicas left');
  const right = (await writer.chunkLocations('/w/f', { fromIndex: 1 })).chunks[0]!;
  t.same(ids(right.replicas), pipeline.filter((id) => id !== bad), 'ChunkLocations no longer names the bad replica');
  t.equal((await writer.reportBadReplica(c1.handle, { chunkserverId: bad, version: 2 })).outcome, 'not_listed', 'a repeated report changes nothing');
  await waitFor('the bad copy deleted on its chunkserver', () =>
    cs.events.some((e) => e.event === 'delete' && e.server === bad && e.handle === c1.handle && e.version === 2) ? true : undefined,
  );
  const repaired: ChunkLocation = await waitFor('chunk 1 re-replicated', async () => {
    const c = (await writer.chunkLocations('/w/f', { fromIndex: 1 })).chunks[0]!;
    return c.replicas.length === 3 ? c : undefined;
  });
  const deletedAt = cs.events.findIndex((e) => e.event === 'delete' && e.server === bad && e.handle === c1.handle);
  for (const id of ids(repaired.replicas)) {
    t.equal(cs.held.get(id)!.get(c1.handle), 2, `replica ${id} holds version 2`);
    if (id === bad) {
      const copiedAt = cs.events.findIndex((e) => e.event === 'copy' && e.server === bad && e.handle === c1.handle);
      t.ok(copiedAt > deletedAt, 'the bad server is listed again only with a fresh copy, after its bad one was deleted');
    }
  }
  t.ok(cs.events.some((e) => e.event === 'copy' && e.handle === c1.handle && e.version === 2), 'copied from a good replica');
  t.match(await (await cluster.leader()).metrics(), /rfs_bad_replica_reports_total\{outcome="dropped"\} 1/, 'counted');

  // ---- reports that change nothing: an unsealed chunk (its writer's pipeline), the last replica
  await writer.create('/w/g', { replication: 1, leaseHolder: 'A', leaseDurationMs: 60_000 });
  const g = await writer.allocateChunk('/w/g', { holder: 'A' });
  t.equal(g.replicas.length, 1);
  const only = g.replicas[0]!.id;
  t.equal((await writer.reportBadReplica(g.handle, { chunkserverId: only, version: 1 })).outcome, 'unsealed');
  cs.lengths.set(g.handle, 10);
  await writer.sealChunk(g.handle, { holder: 'A', version: 1, lengthBytes: 10, checksum: 0 });
  const last = await writer.reportBadReplica(g.handle, { chunkserverId: only, version: 1 });
  t.equal(last.outcome, 'last_replica', 'the only copy stays listed');
  t.same(ids(last.replicas), [only]);

  // ---- allocations that name their index: a retry outside the session (a fresh stamp) answers the first
  await writer.create('/w/h', { replication: 1, leaseHolder: 'A', leaseDurationMs: 60_000 });
  const h0 = await writer.allocateChunk('/w/h', { holder: 'A', index: 0 });
  const again = await writer.allocateChunk('/w/h', { holder: 'A', index: 0 });
  t.same([again.handle, again.index, again.version, ids(again.replicas)], [h0.handle, 0, 1, ids(h0.replicas)], 'the same chunk, with its replicas');
  t.equal((await writer.chunkLocations('/w/h')).chunks.length, 1, 'no second chunk');
  t.equal(await code(writer.allocateChunk('/w/h', { holder: 'A', index: 2 })), 'EINVAL', 'an index past the next');
  t.equal((await rawCall(await leaderAddress(), 'AllocateChunk', { path: '/w/h', holder: 'A', index: '18446744073709551615' })).error?.code, 'EINVAL', 'an index past 2^53');
  cs.lengths.set(h0.handle, 10);
  await writer.sealChunk(h0.handle, { holder: 'A', version: 1, lengthBytes: 10, checksum: 0 });
  const h1 = await writer.allocateChunk('/w/h', { holder: 'A', index: 1 }); // ahead, never written to
  t.equal(await code(writer.completeFile('/w/h', { holder: 'A' })), 'EINVAL', 'without chunk_count every chunk must be sealed');
  t.equal(await code(writer.completeFile('/w/h', { holder: 'A', chunkCount: 3 })), 'EINVAL', 'a count the file does not have');
  t.equal((await writer.completeFile('/w/h', { holder: 'A', chunkCount: 1 })).lengthBytes, 10, 'completed with the written chunk');
  t.same((await writer.chunkLocations('/w/h')).chunks.map((c) => c.handle), [h0.handle], 'the chunk past the count left the file');
  t.not(h1.handle, h0.handle);

  // ---- a writer's open and close, one call each: Create with the lease, CompleteFile with the last seal
  await writer.mkdir('/w/z', { compression: 'lz4' });
  const t0 = Date.now();
  const opened = await writer.createForWriting('/w/z/f', { holder: 'Z', leaseDurationMs: 30_000, chunkSizeBytes: 4 << 20 });
  t.same(opened.writing && [opened.writing.chunkSizeBytes, opened.writing.compression], [4 << 20, 'lz4'], 'the reply carries the chunk size and the inherited compression');
  t.ok(opened.writing !== undefined && opened.writing.leaseExpiresMs >= t0 + 30_000 - 1_000 && opened.writing.leaseExpiresMs <= Date.now() + 30_000 + 1_000, 'and the lease expiry');
  t.equal(await code(writer.acquireLease('/w/z/f', { holder: 'Y', durationMs: 1_000 })), 'ELEASE', 'the lease is granted');
  const z0 = await writer.allocateChunk('/w/z/f', { holder: 'Z', index: 0 });
  cs.lengths.set(z0.handle, 7);
  const z1 = await writer.allocateChunk('/w/z/f', { holder: 'Z', index: 1 }); // ahead, never written to
  const leader = await leaderAddress();
  const raw = (lastChunk: unknown): Promise<{ error?: { code?: string } }> =>
    rawCall(leader, 'CompleteFile', { path: '/w/z/f', holder: 'Z', chunkCount: 1, lastChunk }) as Promise<{ error?: { code?: string } }>;
  t.equal((await raw({ handle: 0, version: 1, lengthBytes: 7, checksum: 5 })).error?.code, 'EINVAL', 'last_chunk.handle 0');
  t.equal((await raw({ handle: z0.handle, version: 0, lengthBytes: 7, checksum: 5 })).error?.code, 'EINVAL', 'last_chunk.version 0');
  t.equal((await raw({ handle: z0.handle, version: 1, lengthBytes: '18446744073709551615', checksum: 5 })).error?.code, 'EINVAL', 'a length past 2^53');
  t.equal((await raw({ handle: z1.handle, version: 1, lengthBytes: 7, checksum: 5 })).error?.code, 'EINVAL', 'the chunk allocated ahead');
  t.equal(await code(writer.completeFile('/w/z/f', { holder: 'Z', chunkCount: 1, lastChunk: { handle: z0.handle, version: 1, lengthBytes: 7, checksum: 2 ** 32 } })), 'EINVAL', 'not a CRC32C (refused before sending)');
  t.equal(await code(writer.completeFile('/w/z/f', { holder: 'Z', chunkCount: 1, lastChunk: { handle: z0.handle, version: 2, lengthBytes: 7, checksum: 5 } })), 'ESTALE', 'a stale version');
  t.same((await writer.chunkLocations('/w/z/f')).chunks.map((c) => c.sealed), [false, false], 'no refusal sealed anything');
  const closed = await writer.completeFile('/w/z/f', { holder: 'Z', chunkCount: 1, lastChunk: { handle: z0.handle, version: 1, lengthBytes: 7, checksum: 5 } });
  t.equal(closed.lengthBytes, 7, 'sealed and completed in one call');
  const zs = await writer.stat('/w/z/f');
  t.same([zs.complete, zs.lengthBytes, zs.chunkCount], [true, 7, 1]);
  t.same((await writer.chunkLocations('/w/z/f')).chunks.map((c) => [c.handle, c.sealed, c.checksum]), [[z0.handle, true, 5]]);

  // ---- the first chunk with the create (CreateRequest.first_chunk): placed by the leader, answered with addresses
  await writer.mkdir('/w/one');
  await writer.setattr('/w/one', { replication: 2 });
  const withFirst = await writer.createForWriting('/w/one/f', { holder: 'F', leaseDurationMs: 30_000, firstChunk: true });
  const fc = withFirst.writing?.firstChunk;
  t.same(fc && [fc.index, fc.version, fc.replicas.length], [0, 1, 2], "the first chunk: index 0, version 1, on the directory's 2 replicas");
  t.ok(fc !== undefined && fc.replicas.every((r) => registered.includes(r.id) && r.address !== ''), 'registered chunkservers, with their addresses');
  const oneLoc = await writer.chunkLocations('/w/one/f');
  t.same(oneLoc.chunks.map((c) => [c.handle, ids(c.replicas)]), [[fc?.handle, fc && ids(fc.replicas)]], 'as stored');
  t.equal((await writer.allocateChunk('/w/one/f', { holder: 'F', index: 0 })).handle, fc?.handle, 'AllocateChunk of index 0 answers it again');
  const oneClosed = await writer.completeFile('/w/one/f', { holder: 'F', chunkCount: 1, lastChunk: { handle: fc?.handle ?? 0, version: 1, lengthBytes: 3, checksum: 4 } });
  t.equal(oneClosed.lengthBytes, 3, 'written and closed as a chunk from AllocateChunk');
  // A retried stamp answers the first create's chunk (the stored replicas), applied once.
  const at1 = await leaderAddress();
  const sid = Number((await rawCall(at1, 'OpenSession', {}))['clientId']);
  const createG = { session: { clientId: sid, seq: 1, ack: 0 }, path: '/w/one/g', leaseHolder: 'G', leaseDurationMs: 30_000, firstChunk: true };
  const g1 = await rawCall(at1, 'Create', createG);
  const g2 = await rawCall(at1, 'Create', createG);
  t.ok(g1['firstChunk'] !== undefined && g1['firstChunk'] !== null, 'over the wire: first_chunk');
  t.same(g2['firstChunk'], g1['firstChunk'], 'a retried stamp answers the same chunk, replicas and all');
  t.equal((await writer.stat('/w/one/g')).chunkCount, 1, 'applied once');
  // Without the lease: EINVAL, nothing created. A malformed flag: EINVAL.
  const noLease = await rawCall(at1, 'Create', { session: { clientId: sid, seq: 2, ack: 0 }, path: '/w/one/h', firstChunk: true });
  t.equal(noLease.error?.code, 'EINVAL', 'first_chunk without lease_holder');
  t.equal(await code(writer.stat('/w/one/h')), 'ENOENT', 'nothing created');
  // More replicas than the leader can place (6 > 5 chunkservers): the file and lease, without the chunk.
  const big = await writer.createForWriting('/w/one/big', { holder: 'F', leaseDurationMs: 30_000, replication: 6, firstChunk: true });
  t.same([big.writing?.firstChunk, big.writing !== undefined, (await writer.stat('/w/one/big')).chunkCount], [undefined, true, 0], 'created without the first chunk');
  const bigChunk = await writer.allocateChunk('/w/one/big', { holder: 'F', index: 0 });
  t.equal(bigChunk.replicas.length, 5, 'which AllocateChunk then places on what there is');
});
