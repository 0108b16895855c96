/**
 * npx tsx bench/fsm-apply.ts [--batches N] [--batch N] [--clients N] [--memory] [--runs N] [--rate N]
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
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeCommand } from '../src/fsm/commands.ts';
import type { Kv } from '../src/fsm/kv.ts';
import { MemoryKv } from '../src/fsm/kv.ts';
import { MetadataStateMachine } from '../src/fsm/state-machine.ts';
import { readAheadEntriesMax } from '../src/raft/node.ts';
import type { Entry } from '../src/raft/types.ts';
import { EntryType } from '../src/raft/types.ts';
import { RocksDbKv } from '../src/storage/rocksdb-kv.ts';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '200' },
    batch: { type: 'string', default: '200' },
    clients: { type: 'string', default: '256' },
    runs: { type: 'string', default: '5' },
    memory: { type: 'boolean', default: false },
    rate: { type: 'string', default: '5000' },
  },
});
const batches = Number(args.batches);
const batchSize = Number(args.batch);
const clients = Number(args.clients);
const msPerBatch = Math.max(1, Math.round((batchSize * 1000) / Number(args.rate)));
const dirs = 16;

const dir = await mkdtemp(join(tmpdir(), 'rfs-fsm-apply-'));
try {
  const kv: Kv = args.memory ? new MemoryKv() : await RocksDbKv.open(join(dir, 'fsm'), { sync: false });
  const sm = await MetadataStateMachine.open(kv);
  let index = 1;
  let nowMs = 1_000_000;
  const entry = (data: Uint8Array): Entry => ({ term: 1, index: index++, type: EntryType.Normal, data });
  const apply = async (datas: Uint8Array[]): Promise<unknown[]> => {
    const entries = datas.map(entry);
    if (entries.length <= readAheadEntriesMax) sm.readAhead(entries); // as the driver does
    return sm.applyBatch(entries);
  };
  // Sessions and directories.
  const ids: number[] = [];
  for (let c = 0; c < clients; c += 256) {
    const n = Math.min(256, clients - c);
    const rs = await apply(
      Array.from({ length: n }, () => encodeCommand({ nowMs, op: { type: 'openSession' } })),
    );
    for (const r of rs) ids.push((r as { value: { clientId: number } }).value.clientId);
  }
  await apply(
    Array.from({ length: dirs }, (_, d) =>
      encodeCommand({ nowMs, op: { type: 'mkdir', path: `/bench/w/d${d}`, parents: true } }),
    ),
  );
  const seq = new Array<number>(clients).fill(0);
  let next = 0; // next client to issue
  const batchOf = (): Uint8Array[] => {
    nowMs += msPerBatch;
    const out: Uint8Array[] = [];
    for (let i = 0; i < batchSize; i++) {
      const c = next;
      next = (next + 1) % clients;
      const s = ++seq[c]!;
      const path = `/bench/w/d${(c + s) % dirs}/c${c}-${s}`;
      out.push(
        encodeCommand({
          nowMs,
          session: { clientId: ids[c]!, seq: s, ack: s - 1 },
          op: { type: 'create', path, exclusive: true },
        }),
      );
    }
    return out;
  };
  // Warm up (JIT, caches), then measure.
  for (let b = 0; b < 30; b++) await apply(batchOf());
  const perCreate: number[] = [];
  for (let run = 0; run < Number(args.runs); run++) {
    const work = Array.from({ length: batches }, batchOf);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (const datas of work) {
      const rs = await apply(datas);
      for (const r of rs)
        if (!(r as { ok: boolean }).ok) throw new Error(`create failed: ${JSON.stringify(r)}`);
    }
    const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const n = batches * batchSize;
    perCreate.push((cpu.user + cpu.system) / n);
    console.log(
      `${args.memory ? 'memory' : 'rocksdb'} run ${run}: ${n} creates, ${((cpu.user + cpu.system) / n).toFixed(1)} CPU µs/create ` +
        `(user ${(cpu.user / n).toFixed(1)}, sys ${(cpu.system / n).toFixed(1)}), ${(wallUs / n).toFixed(1)} wall µs/create`,
    );
  }
  // On a shared machine the least figure is the one least disturbed by other work.
  console.log(`least of ${perCreate.length} runs: ${Math.min(...perCreate).toFixed(1)} CPU µs/create`);
  await kv.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
