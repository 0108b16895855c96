/**
 * npm run bench:raft [-- --seconds N]
 *
 * Committed proposals per second for a 3-node Raft group in one process, messages encoded and decoded
 * with the wire codec and delivered on the event loop:
 *   (a) over MemoryLogStore (no disk), at 1, 64 and 1024 concurrent proposers, entries of 64 B and 1 KiB;
 *       the same against a 1-node group, whose ratio shows the cost of replication;
 *   (b) over RocksDbLogStore with fsync on (three stores in temporary folders), with fsyncs per committed
 *       entry, against the physical limit measured in the same run: one writer doing synced RocksDB
 *       batches back to back on the same disk.
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalRaftHub } from '../src/rpc/local-transport.ts';
import { RaftNode } from '../src/raft/node.ts';
import type { StateMachine } from '../src/raft/node-api.ts';
import { systemClock, systemRandom } from '../src/runtime/clock.ts';
import type { LogStore, LogWrite } from '../src/storage/log-store.ts';
import { MemoryDisk, MemoryLogStore } from '../src/storage/memory-log-store.ts';
import { RocksDbLogStore } from '../src/storage/rocksdb-log-store.ts';
import { RocksDbHandle } from '../src/storage/rocksdb-binding.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const runSeconds = Number(args.seconds);
const tickMs = 50;

class CountingStateMachine implements StateMachine {
  applied = 0;
  apply(): unknown {
    this.applied++;
    return undefined;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(String(this.applied));
  }
  restore(): void {}
}

class CountingLogStore implements LogStore {
  saves = 0;
  constructor(private readonly inner: LogStore) {}
  load() {
    return this.inner.load();
  }
  save(write: LogWrite) {
    this.saves++;
    return this.inner.save(write);
  }
  compact(index: number) {
    return this.inner.compact(index);
  }
  close() {
    return this.inner.close();
  }
}

interface Group {
  readonly nodes: RaftNode[];
  readonly stores: CountingLogStore[];
  close(): Promise<void>;
}

async function startGroup(size: number, makeStore: (id: number) => Promise<LogStore>): Promise<Group> {
  // Messages are encoded and decoded with the wire codec and delivered on the event loop.
  const hub = new LocalRaftHub();
  const byId = new Map<number, RaftNode>();
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const stores: CountingLogStore[] = [];
  const nodes: RaftNode[] = [];
  for (const id of ids) {
    const store = new CountingLogStore(await makeStore(id));
    stores.push(store);
    const node = new RaftNode({
      config: { id, random: systemRandom },
      logStore: store,
      transport: hub.connect(id, (m) => byId.get(id)?.receive(m)),
      clock: systemClock,
      stateMachine: new CountingStateMachine(),
      tickMs,
      initialVoters: ids,
    });
    byId.set(id, node);
    nodes.push(node);
  }
  await Promise.all(nodes.map((n) => n.start()));
  nodes[0]!.campaign();
  const deadline = Date.now() + 10_000;
  while (!nodes.some((n) => n.status().role === 'leader' && n.status().commit >= n.status().lastIndex)) {
    if (Date.now() > deadline) throw new Error('no leader within 10 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    nodes,
    stores,
    async close() {
      for (const n of nodes) n.stop();
      await Promise.all(stores.map((s) => s.close()));
    },
  };
}

async function drive(group: Group, concurrency: number, entryBytes: number): Promise<{ opsPerSecond: number; committed: number; saves: number }> {
  const leader = group.nodes.find((n) => n.status().role === 'leader')!;
  const payload = new Uint8Array(entryBytes).fill(7);
  const savesBefore = group.stores.reduce((a, s) => a + s.saves, 0);
  let committed = 0;
  const started = performance.now();
  const deadline = started + runSeconds * 1000;
  // Workers check the clock themselves: with an in-memory store a proposal can complete entirely in
  // microtasks, so a timer would never get to run.
  const workers = Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      await leader.propose(payload);
      committed++;
    }
  });
  await Promise.all(workers);
  const seconds = (performance.now() - started) / 1000;
  const saves = group.stores.reduce((a, s) => a + s.saves, 0) - savesBefore;
  return { opsPerSecond: committed / seconds, committed, saves };
}

async function rawSyncedBatchesPerSecond(dir: string, entryBytes: number): Promise<number> {
  const db = await RocksDbHandle.open(join(dir, 'raw'));
  const value = Buffer.alloc(entryBytes, 7);
  let n = 0;
  const started = performance.now();
  while (performance.now() - started < runSeconds * 1000) {
    const key = Buffer.alloc(8);
    key.writeBigUInt64BE(BigInt(n));
    await db.batch([{ type: 'put', key, value }], { sync: true });
    n++;
  }
  const rate = n / ((performance.now() - started) / 1000);
  await db.close();
  return rate;
}

const fmt = (x: number) => x.toFixed(0).padStart(8);

async function main(): Promise<void> {
  console.log(`bench:raft — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, ${runSeconds} s per point`);
  const concurrencies = [1, 64, 1024];
  const sizes = [64, 1024];

  console.log('\n(a) in-memory log store, 3-node group vs 1-node group (proposals/s committed)');
  console.log('  entry  proposers  3-node/s  1-node/s  ratio');
  for (const size of sizes) {
    for (const c of concurrencies) {
      const three = await startGroup(3, () => Promise.resolve(new MemoryLogStore(new MemoryDisk())));
      const r3 = await drive(three, c, size);
      await three.close();
      const one = await startGroup(1, () => Promise.resolve(new MemoryLogStore(new MemoryDisk())));
      const r1 = await drive(one, c, size);
      await one.close();
      console.log(`  ${String(size).padStart(5)}  ${String(c).padStart(9)} ${fmt(r3.opsPerSecond)}  ${fmt(r1.opsPerSecond)}  ${(r3.opsPerSecond / r1.opsPerSecond).toFixed(2)}`);
    }
  }

  console.log('\n(b) RocksDB log store, fsync on, 3-node group');
  const base = await mkdtemp(join(tmpdir(), 'rfs-bench-raft-'));
  try {
    console.log('  entry  proposers  committed/s  fsyncs/entry  raw synced batches/s  ratio');
    for (const size of sizes) {
      const raw = await rawSyncedBatchesPerSecond(await mkdtemp(join(base, 'raw-')), size);
      for (const c of concurrencies) {
        const dir = await mkdtemp(join(base, 'g-'));
        const group = await startGroup(3, (id) => RocksDbLogStore.open(join(dir, `n${id}`)));
        const r = await drive(group, c, size);
        await group.close();
        console.log(
          `  ${String(size).padStart(5)}  ${String(c).padStart(9)}  ${fmt(r.opsPerSecond)}     ${(r.saves / Math.max(1, r.committed)).toFixed(3).padStart(9)}  ${fmt(raw)}              ${(r.opsPerSecond / raw).toFixed(2)}`,
        );
      }
    }
    console.log('\n  fsyncs/entry counts synced LogStore writes on all three members per committed entry;');
    console.log('  ratio = committed proposals/s ÷ one writer\'s back-to-back synced batches/s on this disk.');
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

await main();
