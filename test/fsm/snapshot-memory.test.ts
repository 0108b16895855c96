/**
 * A RocksDB-backed metadata state machine holding more state than the snapshot path may hold in memory is
 * streamed to a new member, and the process's JavaScript memory (V8 heap plus buffers outside it) grows by a
 * small fraction of the state's size: the snapshot is never gathered whole, on either side. The measure is
 * bench/snapshot-stream.ts's (`npm run bench:snapshot -- --mib 512` for a bigger state); the size here is
 * RFS_SNAPSHOT_STATE_MIB (default 72 MiB).
 */
import t from 'tap';
import { describeSnapshotMemory, measureSnapshotMemory } from '../../bench/snapshot-stream.ts';

const MiB = 1024 * 1024;
const STATE_MIB = Number(process.env.RFS_SNAPSHOT_STATE_MIB ?? 72);
/**
 * Allowed growth of live heap + external memory while streaming. What the transfer holds does not depend on
 * the state's size: the window (snapshotChunksInflightMax × snapshotChunkBytes = 1 MiB), a frame being
 * decoded, RocksDbKv.restore's write batch (4 MiB) and buffers awaiting release; a gathered snapshot would
 * hold the whole state (the bench prints the same figure for bigger states).
 */
const GROWTH_BYTES_MAX = 32 * MiB;

void t.test(`a ${STATE_MIB} MiB RocksDB state streams to a new member with bounded memory`, async (t) => {
  const r = await measureSnapshotMemory(STATE_MIB);
  t.comment(describeSnapshotMemory(r));
  t.ok(r.leader.bytesSent >= STATE_MIB * MiB, 'the whole state was streamed');
  t.ok(r.liveSamples >= 3, `live memory was sampled during the transfer (${r.liveSamples} times)`);
  t.ok(STATE_MIB * MiB > 2 * GROWTH_BYTES_MAX, 'the state is well above the bound');
  t.ok(
    r.liveGrowthBytes < GROWTH_BYTES_MAX,
    `live JS memory grew by ${(r.liveGrowthBytes / MiB).toFixed(1)} MiB, under ${GROWTH_BYTES_MAX / MiB} MiB (state ${STATE_MIB} MiB)`,
  );
  t.equal(r.learnerDirectories, 5, 'the learner holds the namespace');
  t.ok(r.learnerHasFiller, 'and the filler state');
});
