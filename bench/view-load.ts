/**
 * npx tsx bench/view-load.ts [--files N] [--chunks-per-file N] [--changed-files N]
 *
 * The leader's chunk manager reads its view of every chunk (placement, replication factor, liveness) after
 * every pass in which something was applied (about once a second under load). This builds a state machine
 * store (RocksDB, as the metadata server opens it) holding `--files` (5,000) complete files of
 * `--chunks-per-file` (4) sealed chunks each, then, three times each, in the same run:
 *   - whole: `loadClusterView` reads every record (what every pass did before the ViewTracker);
 *   - kept:  `--changed-files` (10) more files are written (a chunk allocated and sealed each, the file
 *            completed) and a ViewTracker, which followed the store's writes, reads what they changed.
 * Prints wall ms and CPU ms (this process: the thread and RocksDB's pool) per load, and the ratio.
 * A script, not a test: figures go in BENCHMARKS.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeCommand } from '../src/fsm/commands.ts';
import type { Op } from '../src/fsm/commands.ts';
import { MetadataStateMachine } from '../src/fsm/state-machine.ts';
import { loadClusterView, ViewTracker } from '../src/placement/view.ts';
import { EntryType } from '../src/raft/types.ts';
import { RocksDbKv } from '../src/storage/rocksdb-kv.ts';

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '5000' },
    'chunks-per-file': { type: 'string', default: '4' },
    'changed-files': { type: 'string', default: '10' },
  },
});
const files = Number(args.files);
const perFile = Number(args['chunks-per-file']);
const changedFiles = Number(args['changed-files']);

const dir = await mkdtemp(join(tmpdir(), 'rfs-view-load-'));
try {
  const kv = await RocksDbKv.open(join(dir, 'fsm'), { sync: false });
  const views = new ViewTracker();
  const fsm = await MetadataStateMachine.open(kv, { onStoreWrite: (write) => views.noteWrite(write) });
  let index = 0;
  const apply = async (ops: Op[]): Promise<{ handle?: number }[]> => {
    const rs = await fsm.applyBatch(ops.map((op) => ({ term: 1, index: ++index, type: EntryType.Normal, data: encodeCommand({ nowMs: 1_000_000 + index, op }) })));
    return rs.map((r) => {
      if (r?.ok !== true) throw new Error(`setup failed: ${JSON.stringify(r)}`);
      return r.value as { handle?: number };
    });
  };
  await apply([1, 2, 3].map((i) => ({ type: 'registerChunkserver', address: `127.0.0.1:${7000 + i}`, rack: `r${i}`, capacityBytes: 1e15, usedBytes: 0 })));
  await apply([{ type: 'mkdir', path: '/d', parents: true }]);
  let made = 0;
  const writeFiles = async (count: number, chunks: number): Promise<void> => {
    for (let from = 0; from < count; from += 100) {
      const paths = Array.from({ length: Math.min(100, count - from) }, () => `/d/f${made++}`);
      await apply(paths.map((path) => ({ type: 'create', path, exclusive: true, lease: { holder: 'w', durationMs: 600_000 } })));
      for (let c = 0; c < chunks; c++) {
        const added = await apply(paths.map((path) => ({ type: 'addChunk', path, holder: 'w', replicas: [1, 2, 3] })));
        await apply(added.map((r) => ({ type: 'sealChunk', handle: r.handle!, holder: 'w', version: 1, lengthBytes: 64 << 20, checksum: 1 })));
      }
      await apply(paths.map((path) => ({ type: 'completeFile', path, holder: 'w' })));
    }
  };
  const t0 = Date.now();
  await writeFiles(files, perFile);
  console.log(`store: ${files} files × ${perFile} chunks (${files * perFile} chunks) built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await views.load(kv, fsm.limits); // the kept view's first (whole) read

  const measure = async (load: () => Promise<unknown>): Promise<{ wallMs: number; cpuMs: number }> => {
    const cpu0 = process.cpuUsage();
    const t1 = process.hrtime.bigint();
    await load();
    const cpu = process.cpuUsage(cpu0);
    return { wallMs: Number(process.hrtime.bigint() - t1) / 1e6, cpuMs: (cpu.user + cpu.system) / 1000 };
  };
  const whole: { wallMs: number; cpuMs: number }[] = [];
  const kept: { wallMs: number; cpuMs: number }[] = [];
  for (let run = 0; run < 3; run++) {
    whole.push(await measure(() => loadClusterView(kv, fsm.limits)));
    await writeFiles(changedFiles, 1);
    const wholeBefore = views.wholeLoads;
    kept.push(await measure(() => views.load(kv, fsm.limits)));
    if (views.wholeLoads !== wholeBefore) throw new Error('the kept view read everything');
  }
  const fmt = (ms: number[]): string => ms.map((m) => m.toFixed(1).padStart(8)).join(' ');
  console.log(`whole read, every chunk:          wall ms ${fmt(whole.map((w) => w.wallMs))}   CPU ms ${fmt(whole.map((w) => w.cpuMs))}`);
  console.log(`kept view, ${changedFiles} files changed:      wall ms ${fmt(kept.map((w) => w.wallMs))}   CPU ms ${fmt(kept.map((w) => w.cpuMs))}`);
  const least = (xs: { cpuMs: number }[]): number => Math.min(...xs.map((x) => x.cpuMs));
  console.log(`CPU per load, least of three: whole ${least(whole).toFixed(1)} ms, kept ${least(kept).toFixed(1)} ms: ratio kept/whole ${(least(kept) / least(whole)).toFixed(4)}`);
  const check = await loadClusterView(kv, fsm.limits);
  const mine = await views.load(kv, fsm.limits);
  const same = mine.chunks.size === check.chunks.size && [...check.chunks].every(([h, c]) => JSON.stringify(mine.chunks.get(h)) === JSON.stringify(c));
  if (!same) throw new Error('the kept view differs from a whole read');
  console.log(`the kept view equals a whole read (${mine.chunks.size} chunks)`);
  await kv.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
