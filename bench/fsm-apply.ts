/**
 * npx tsx bench/fsm-apply.ts [--batches N] [--batch N] [--clients N] [--memory] [--runs N] [--rate N] [--write-sets]
 *
 * In-process cost of the metadata state machine's apply path per file create, as one member of the
 * bench:metadata cluster pays it: `--clients` sessions (256) each create files one after another in 16
 * directories (the benchmark's paths), `--batch` creates (Submit items) per Raft apply batch, every entry
 * handed to `readAhead` (as the driver does when it appends, for at most readAheadEntriesMax) and then
 * applied with `applyBatch`. Stamped time advances as if `--rate` creates per second (5000) were applied,
 * so each session is used every clients/rate seconds (about 50 ms), as in the cluster at that rate.
 * Store: RocksDbKv with lazy writes (as the metadata server opens it), or MemoryKv with --memory.
 * Prints CPU µs (process.cpuUsage: this thread and RocksDB's pool) and wall µs per create, per run, and the
 * least CPU figure of the runs.
 *
 * `--write-sets`: also what a member would pay if the log carried each command's effects instead of the
 * command (ZooKeeper's design: the leader executes, the others only store the result). The same workload is
 * first applied one entry at a time to a recording in-memory store, which keeps each entry's store write
 * (its puts and deletes) msgpack-encoded: the write set a leader would put in the entry. Then, alternating
 * with the runs above, another store of the same kind takes those write sets `--batch` at a time as a member
 * would: decode each, merge them in log order (a later put or delete of a key wins), one store write. Prints
 * CPU µs per create for both, the least of each and their ratio, and the write sets' mean size against the
 * commands'. A measurement for a design decision; the state machine has no such mode.
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pack, unpack } from 'msgpackr';
import { encodeCommand } from '../src/fsm/commands.ts';
import type { Kv, KvBatch, KvPair } from '../src/fsm/kv.ts';
import { bytesToKeyString, MemoryKv } from '../src/fsm/kv.ts';
import { MetadataStateMachine } from '../src/fsm/state-machine.ts';
import { readAheadEntriesMax } from '../src/raft/node.ts';
import type { Entry } from '../src/raft/types.ts';
import { EntryType } from '../src/raft/types.ts';
import { RocksDbKv } from '../src/storage/rocksdb-kv.ts';
import { ForwardingKv } from '../test/fsm/forwarding-kv.ts';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '200' },
    batch: { type: 'string', default: '200' },
    clients: { type: 'string', default: '256' },
    runs: { type: 'string', default: '5' },
    memory: { type: 'boolean', default: false },
    rate: { type: 'string', default: '5000' },
    'write-sets': { type: 'boolean', default: false },
  },
});
const batches = Number(args.batches);
const batchSize = Number(args.batch);
const clients = Number(args.clients);
const runs = Number(args.runs);
const msPerBatch = Math.max(1, Math.round((batchSize * 1000) / Number(args.rate)));
const dirs = 16;
const warmupBatches = 30;

/** Encoded commands of the workload, batch by batch: sessions and directories first, then creates. */
class Workload {
  private nowMs = 1_000_000;
  private readonly ids: number[] = [];
  private readonly seq = new Array<number>(clients).fill(0);
  private next = 0; // next client to issue
  /** Bytes of the create commands handed out. */
  commandBytes = 0;

  /** Opens the sessions and makes the directories through `apply`. */
  async setUp(apply: (datas: Uint8Array[]) => Promise<unknown[]>): Promise<void> {
    for (let c = 0; c < clients; c += 256) {
      const n = Math.min(256, clients - c);
      const rs = await apply(Array.from({ length: n }, () => encodeCommand({ nowMs: this.nowMs, op: { type: 'openSession' } })));
      for (const r of rs) this.ids.push((r as { value: { clientId: number } }).value.clientId);
    }
    await apply(
      Array.from({ length: dirs }, (_, d) =>
        encodeCommand({ nowMs: this.nowMs, op: { type: 'mkdir', path: `/bench/w/d${d}`, parents: true } }),
      ),
    );
  }

  batch(): Uint8Array[] {
    this.nowMs += msPerBatch;
    const out: Uint8Array[] = [];
    for (let i = 0; i < batchSize; i++) {
      const c = this.next;
      this.next = (this.next + 1) % clients;
      const s = ++this.seq[c]!;
      const path = `/bench/w/d${(c + s) % dirs}/c${c}-${s}`;
      const data = encodeCommand({
        nowMs: this.nowMs,
        session: { clientId: this.ids[c]!, seq: s, ack: s - 1 },
        op: { type: 'create', path, exclusive: true },
      });
      this.commandBytes += data.length;
      out.push(data);
    }
    return out;
  }
}

function checkCreated(rs: unknown[]): void {
  for (const r of rs) if (!(r as { ok: boolean }).ok) throw new Error(`create failed: ${JSON.stringify(r)}`);
}

/** An in-memory store that keeps every write's puts and deletes, msgpack-encoded (the write sets). */
class RecordingKv extends ForwardingKv {
  readonly written: Uint8Array[] = [];
  getCached(keyString: string): Uint8Array | null | undefined {
    return this.inner.getCached(keyString);
  }
  override write(batch: KvBatch): Promise<void> {
    this.written.push(pack({ puts: batch.puts.flatMap((p) => [p.key, p.value]), deletes: batch.deletes }));
    return super.write(batch);
  }
}

/** What a member storing write sets does with a batch of entries: decode, merge in log order, one write. */
async function storeWriteSets(kv: Kv, sets: readonly Uint8Array[]): Promise<void> {
  const merged = new Map<string, { key: Uint8Array; value: Uint8Array | null }>();
  for (const set of sets) {
    const { puts, deletes } = unpack(set) as { puts: Uint8Array[]; deletes: Uint8Array[] };
    for (let i = 0; i < puts.length; i += 2) merged.set(bytesToKeyString(puts[i]!), { key: puts[i]!, value: puts[i + 1]! });
    for (const key of deletes) merged.set(bytesToKeyString(key), { key, value: null });
  }
  const batch = { puts: [] as KvPair[], putKeys: [] as string[], deletes: [] as Uint8Array[], deleteKeys: [] as string[] };
  for (const [keyString, { key, value }] of merged) {
    if (value === null) {
      batch.deletes.push(key);
      batch.deleteKeys.push(keyString);
    } else {
      batch.puts.push({ key, value });
      batch.putKeys.push(keyString);
    }
  }
  await kv.write(batch);
}

function cpuPerCreate(cpu0: NodeJS.CpuUsage): { total: number; user: number; system: number } {
  const cpu = process.cpuUsage(cpu0);
  const n = batches * batchSize;
  return { total: (cpu.user + cpu.system) / n, user: cpu.user / n, system: cpu.system / n };
}

const dir = await mkdtemp(join(tmpdir(), 'rfs-fsm-apply-'));
const openStore = async (name: string): Promise<Kv> =>
  args.memory ? new MemoryKv() : await RocksDbKv.open(join(dir, name), { sync: false });
try {
  const kv = await openStore('fsm');
  const sm = await MetadataStateMachine.open(kv);
  let index = 1;
  const entry = (data: Uint8Array): Entry => ({ term: 1, index: index++, type: EntryType.Normal, data });
  const apply = async (datas: Uint8Array[]): Promise<unknown[]> => {
    const entries = datas.map(entry);
    if (entries.length <= readAheadEntriesMax) sm.readAhead(entries); // as the driver does
    return sm.applyBatch(entries);
  };
  const workload = new Workload();
  await workload.setUp(apply);
  // Warm up (JIT, caches), then measure.
  for (let b = 0; b < warmupBatches; b++) await apply(workload.batch());

  // The write sets of the same workload, recorded first, then the first sets stored (warm-up).
  let writeSets: { store: Kv; sets: Uint8Array[]; next: number } | undefined;
  if (args['write-sets']) {
    const recorder = new RecordingKv();
    const recording = await MetadataStateMachine.open(recorder);
    let recordedIndex = 1;
    const applyEach = async (datas: Uint8Array[]): Promise<unknown[]> => {
      const out: unknown[] = [];
      for (const data of datas)
        out.push(...(await recording.applyBatch([{ term: 1, index: recordedIndex++, type: EntryType.Normal, data }])));
      return out;
    };
    const same = new Workload();
    await same.setUp(applyEach);
    const setUpWrites = recorder.written.length;
    for (let b = 0; b < warmupBatches + runs * batches; b++) checkCreated(await applyEach(same.batch()));
    const createSets = recorder.written.slice(setUpWrites);
    if (createSets.length !== (warmupBatches + runs * batches) * batchSize)
      throw new Error(`${createSets.length} write sets recorded, not one per create`);
    const setBytes = createSets.reduce((sum, s) => sum + s.length, 0) / createSets.length;
    console.log(
      `write sets: ${setBytes.toFixed(0)} bytes per create (msgpack), the commands ${(same.commandBytes / createSets.length).toFixed(0)}`,
    );
    const store = await openStore('write-sets');
    await storeWriteSets(store, recorder.written.slice(0, setUpWrites));
    writeSets = { store, sets: createSets, next: 0 };
    for (let b = 0; b < warmupBatches; b++) {
      await storeWriteSets(store, createSets.slice(writeSets.next, writeSets.next + batchSize));
      writeSets.next += batchSize;
    }
  }

  const perCreate: number[] = [];
  const perCreateSets: number[] = [];
  const kind = args.memory ? 'memory' : 'rocksdb';
  for (let run = 0; run < runs; run++) {
    const work = Array.from({ length: batches }, () => workload.batch());
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (const datas of work) checkCreated(await apply(datas));
    const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
    const cpu = cpuPerCreate(cpu0);
    perCreate.push(cpu.total);
    console.log(
      `${kind} run ${run}: ${batches * batchSize} creates, ${cpu.total.toFixed(1)} CPU µs/create ` +
        `(user ${cpu.user.toFixed(1)}, sys ${cpu.system.toFixed(1)}), ${(wallUs / (batches * batchSize)).toFixed(1)} wall µs/create`,
    );
    if (writeSets !== undefined) {
      const cpuSets0 = process.cpuUsage();
      for (let b = 0; b < batches; b++) {
        await storeWriteSets(writeSets.store, writeSets.sets.slice(writeSets.next, writeSets.next + batchSize));
        writeSets.next += batchSize;
      }
      const sets = cpuPerCreate(cpuSets0);
      perCreateSets.push(sets.total);
      console.log(
        `${kind} run ${run}, write sets stored: ${sets.total.toFixed(1)} CPU µs/create (user ${sets.user.toFixed(1)}, sys ${sets.system.toFixed(1)})`,
      );
    }
  }
  // On a shared machine the least figure is the one least disturbed by other work.
  const least = Math.min(...perCreate);
  console.log(`least of ${perCreate.length} runs: ${least.toFixed(1)} CPU µs/create`);
  if (writeSets !== undefined) {
    const leastSets = Math.min(...perCreateSets);
    console.log(
      `least of ${perCreateSets.length} runs, write sets stored: ${leastSets.toFixed(1)} CPU µs/create (${(leastSets / least).toFixed(2)} of applying the commands)`,
    );
    await writeSets.store.close();
  }
  await kv.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
