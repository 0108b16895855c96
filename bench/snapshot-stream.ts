/**
 * bench:snapshot — memory while a RocksDB-backed metadata state machine is streamed to a new member.
 *
 * One process, two RaftNodes (in-memory logs, RocksDbKv state machines, messages delivered on the event
 * loop without copies). The leader's state is the real state machine's (applied index, meta record, root
 * directory) plus `--mib` MiB of filler pairs under a table byte no command uses (`z`), installed through
 * the state machine's own streaming restore; a few commands are applied and the log compacted, then a
 * learner joins and must be sent a snapshot. Sampled during the transfer: the JavaScript memory (V8 heap
 * used + external buffers) every 100 ms right after a forced GC — live memory, whose growth against the
 * state's size is the figure — and every 5 ms without one (garbage of consumed chunks included), and RSS, which also
 * counts RocksDB's native memory (memtables, block cache) and is printed for information.
 *
 * Usage: npm run bench:snapshot -- [--mib 512]
 * test/fsm/snapshot-memory.test.ts runs the same measure at 72 MiB.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { encodeCommand } from '../src/fsm/commands.ts';
import { MemoryKv, type KvPair } from '../src/fsm/kv.ts';
import { RaftMetadataStateMachine } from '../src/fsm/raft-adapter.ts';
import { encodeSnapshot } from '../src/fsm/snapshot.ts';
import { MetadataStateMachine } from '../src/fsm/state-machine.ts';
import { RaftNode, type SnapshotStreamStats } from '../src/raft/node.ts';
import type { Message, NodeId } from '../src/raft/types.ts';
import { systemClock } from '../src/runtime/clock.ts';
import { MemoryDisk, MemoryLogStore } from '../src/storage/memory-log-store.ts';
import { RocksDbKv } from '../src/storage/rocksdb-kv.ts';

const MiB = 1024 * 1024;
const VALUE_BYTES = 64 * 1024;
const FILLER_TABLE = 0x7a; // 'z': no command reads or writes it
/** Interval between forced collections that measure live memory, in ms. */
const liveSampleMs = 100;

export interface SnapshotMemoryResult {
  readonly stateMib: number;
  readonly seconds: number;
  /** Peak (heap used + external) during the transfer minus the same after a GC before it; garbage included. */
  readonly jsGrowthBytes: number;
  /** The same, measured right after a forced GC at every sample: memory the transfer really holds. */
  readonly liveGrowthBytes: number;
  readonly rssBeforeBytes: number;
  readonly rssPeakBytes: number;
  readonly samples: number;
  readonly liveSamples: number;
  readonly leader: SnapshotStreamStats;
  /** The learner's view after catching up: directories under / and whether it holds the filler. */
  readonly learnerDirectories: number;
  readonly learnerHasFiller: boolean;
}

function jsBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** The state of a fresh state machine, then `mib` MiB of filler pairs, in key order. */
async function* statePairs(mib: number): AsyncGenerator<KvPair> {
  const fresh = new MemoryKv();
  await MetadataStateMachine.open(fresh);
  for await (const p of fresh.snapshotIterator()) yield p;
  const count = Math.ceil((mib * MiB) / VALUE_BYTES);
  for (let i = 0; i < count; i++) {
    const key = new Uint8Array(5);
    key[0] = FILLER_TABLE;
    new DataView(key.buffer).setUint32(1, i);
    yield { key, value: new Uint8Array(VALUE_BYTES).fill(i & 0xff) };
  }
}

export async function measureSnapshotMemory(stateMib: number): Promise<SnapshotMemoryResult> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = await mkdtemp(join(tmpdir(), 'rfs-snapmem-'));
  const kvs = [await RocksDbKv.open(join(dir, 'kv1')), await RocksDbKv.open(join(dir, 'kv2'))];
  const nodes = new Map<NodeId, RaftNode>();
  try {
    const fsms = [await MetadataStateMachine.open(kvs[0]!), await MetadataStateMachine.open(kvs[1]!)];
    await fsms[0]!.restoreFromChunks(encodeSnapshot(statePairs(stateMib), 256 * 1024));
    const send = (m: Message): void => void setImmediate(() => nodes.get(m.to)?.receive(m));
    const fatal: unknown[] = [];
    const start = async (id: NodeId, initialVoters?: NodeId[]): Promise<RaftNode> => {
      const node = new RaftNode({
        config: { id, random: { int: (n) => (id * 7) % n } },
        logStore: new MemoryLogStore(new MemoryDisk()),
        transport: { send },
        clock: systemClock,
        stateMachine: new RaftMetadataStateMachine(fsms[id - 1]!),
        // The metadata server's default tick: a stalled transfer is abandoned after 4 election timeouts (2 s);
        // a shorter tick made a loaded machine abandon and restart the transfer hundreds of times.
        tickMs: 50,
        snapshotEveryEntries: 3,
        snapshotKeepEntries: 0,
        onFatal: (e) => fatal.push(e),
        ...(initialVoters !== undefined ? { initialVoters } : {}),
      });
      nodes.set(id, node);
      await node.start();
      return node;
    };
    const waitFor = async (what: string, p: () => boolean, timeoutMs = 600_000): Promise<void> => {
      const deadline = Date.now() + timeoutMs;
      while (!p()) {
        if (fatal.length > 0) throw new Error(`a node stopped: ${fatal[0] instanceof Error ? fatal[0].message : 'fatal'}`);
        if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const leader = await start(1, [1]);
    leader.campaign();
    await waitFor('a leader', () => leader.status().role === 'leader');
    for (let i = 0; i < 5; i++) await leader.propose(encodeCommand({ nowMs: 1_000, op: { type: 'mkdir', path: `/d${i}` } }));
    await waitFor('compaction', () => leader.status().firstIndex > 2);

    gc();
    const before = jsBytes();
    const rssBefore = process.memoryUsage().rss;
    let peak = before;
    let rssPeak = rssBefore;
    let samples = 0;
    let liveSamples = 0;
    let livePeak = before;
    const sampler = setInterval(() => {
      samples++;
      peak = Math.max(peak, jsBytes());
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }, 5);
    // Live memory, less often (a full collection is not free): what a collection cannot reclaim, whereas the
    // garbage of chunks already consumed can be.
    const liveSampler = setInterval(() => {
      liveSamples++;
      gc();
      livePeak = Math.max(livePeak, jsBytes());
    }, liveSampleMs);
    const started = Date.now();
    try {
      await start(2);
      await leader.proposeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 2 }] });
      await waitFor('the learner installs the snapshot', () => nodes.get(2)!.snapshotStreamStats().installs >= 1);
      const target = fsms[0]!.appliedIndex();
      await waitFor('the learner catches up', () => fsms[1]!.appliedIndex() >= target);
    } finally {
      clearInterval(sampler);
      clearInterval(liveSampler);
    }
    const seconds = (Date.now() - started) / 1000;
    const page = await fsms[1]!.readdir('/', { limit: 100 });
    const filler = await kvs[1]!.scan({ gte: new Uint8Array([FILLER_TABLE]), limit: 1 });
    return {
      stateMib,
      seconds,
      jsGrowthBytes: peak - before,
      liveGrowthBytes: livePeak - before,
      rssBeforeBytes: rssBefore,
      rssPeakBytes: rssPeak,
      samples,
      liveSamples,
      leader: leader.snapshotStreamStats(),
      learnerDirectories: page.ok ? page.value.entries.length : -1,
      learnerHasFiller: filler.length === 1,
    };
  } finally {
    for (const n of nodes.values()) n.stop();
    for (const kv of kvs) await kv.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export function describeSnapshotMemory(r: SnapshotMemoryResult): string {
  const mib = (b: number): string => (b / MiB).toFixed(1);
  return (
    `state ${r.stateMib} MiB streamed in ${r.seconds.toFixed(1)} s (${r.leader.chunksSent} chunks, ${mib(r.leader.bytesSent)} MiB sent, ` +
    `${r.leader.resends} window resends, ${r.leader.sendsStarted} transfers started, ${r.leader.sendsFailed} abandoned); JS heap+external growth: live ${mib(r.liveGrowthBytes)} MiB ` +
    `(${r.liveSamples} samples after a forced GC), ${mib(r.jsGrowthBytes)} MiB with garbage (${r.samples} samples); ` +
    `RSS ${mib(r.rssBeforeBytes)} -> peak ${mib(r.rssPeakBytes)} MiB`
  );
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '512' } } });
  const result = await measureSnapshotMemory(Number(values.mib));
  console.log(describeSnapshotMemory(result));
}
