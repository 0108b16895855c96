/**
 * PooledDialer (src/client/read-pool.ts) over real TCP against real data servers: sequential range reads
 * reuse one connection; a read that fails is never lent again; concurrent reads each get their own and at
 * most readConnectionsIdlePerAddressMax stay idle; a server going away empties the pool; close() too.
 */
import t from 'tap';
import { readRange } from '../../src/chunkserver/dataplane/read.ts';
import { PooledDialer, readConnectionsIdlePerAddressMax } from '../../src/client/read-pool.ts';
import { patternBytes, startCluster, waitFor } from '../chunkserver/dataplane-harness.ts';

const length = 3 * 1024 * 1024 + 17;

void t.test('range reads reuse pooled connections', async (t) => {
  const cluster = await startCluster('tcp', 2);
  t.teardown(() => cluster.close());
  const data = patternBytes(length, 5);
  for (const store of cluster.stores) {
    await store.create(7, 1);
    await store.append(7, 1, 0, data);
    await store.seal(7, 1, data.length);
  }
  const [a, b] = cluster.servers.map((s) => s.address) as [string, string];
  const pool = new PooledDialer(cluster.network);

  for (let i = 0; i < 10; i++) {
    const offset = i * 300_000;
    const got = await readRange(pool, a, { handle: 7, version: 1, offset, length: 250_000 });
    t.ok(Buffer.from(got).equals(data.subarray(offset, offset + 250_000)), `read ${i} exact`);
  }
  t.same(pool.stats, { dialed: 1, reused: 9 }, 'ten sequential reads: one connection');
  t.equal(pool.idleCount, 1);

  await t.rejects(readRange(pool, a, { handle: 7, version: 9, offset: 0, length: 10 }), { code: 'STALE_VERSION' }, 'a failed read');
  t.equal(pool.idleCount, 0, 'the connection of a failed read is not kept');
  const whole = await readRange(pool, a, { handle: 7, version: 1, offset: 0, length });
  t.ok(Buffer.from(whole).equals(data), 'the next read on a fresh connection is exact');
  t.same(pool.stats, { dialed: 2, reused: 10 }, 'it dialed anew');

  const many = readConnectionsIdlePerAddressMax + 2;
  const reads = await Promise.all(Array.from({ length: many }, (_, i) => readRange(pool, b, { handle: 7, version: 1, offset: i * 1000, length: 100_000 })));
  reads.forEach((r, i) => t.ok(Buffer.from(r).equals(data.subarray(i * 1000, i * 1000 + 100_000)), `concurrent read ${i} exact`));
  t.equal(pool.stats.dialed, 2 + many, 'concurrent reads each dialed their own');
  t.equal(pool.idleCount, 1 + readConnectionsIdlePerAddressMax, `at most ${readConnectionsIdlePerAddressMax} kept idle per address`);

  await cluster.crash(1);
  await waitFor(() => pool.idleCount === 1, 'idle connections to the stopped server dropped');
  t.pass('a server going away empties its part of the pool');
  await t.rejects(readRange(pool, b, { handle: 7, version: 1, offset: 0, length: 10 }), { code: 'CONNECT_FAILED' }, 'and is dialed (and fails) again');

  pool.close();
  t.equal(pool.idleCount, 0, 'close() ends every idle connection');
  const after = await readRange(pool, a, { handle: 7, version: 1, offset: 5, length: 5 });
  t.ok(Buffer.from(after).equals(data.subarray(5, 10)), 'a read after close() still works, on its own connection');
  t.equal(pool.idleCount, 0, 'and is not kept');
});
