/**
 * The data workload's disk and network faults (DataFaultProfile in data.ts): seeds whose profile has them
 * pass every check, and the faults really struck (disks filled, bad spots, EIO windows, partitions, packets
 * corrupted in flight and caught by the chain's end).
 */
import t from 'tap';
import { runSeed } from './simulation.ts';

/** Seeds whose fault profile draws some of the new faults (see `describe()`: "+ [diskFull,...]"; 7 and 10 corrupt packets). */
const SEEDS = [1, 3, 7, 10];

void t.test('data seeds with disk-full, EIO and partition faults pass', async (t) => {
  const failures: string[] = [];
  const total = { disksFilled: 0, badSpots: 0, ioErrorWindows: 0, partitions: 0, diskIoErrors: 0, packetsCorrupted: 0, checksumFailures: 0, acked: 0, finalReads: 0 };
  for (const seed of SEEDS) {
    const r = await runSeed(seed, { workload: 'data' });
    const d = r.stats.data;
    if (d === undefined) {
      failures.push(`seed ${seed}: no data statistics`);
      continue;
    }
    total.disksFilled += d.disksFilled;
    total.badSpots += d.badSpots;
    total.ioErrorWindows += d.ioErrorWindows;
    total.partitions += d.partitions;
    total.diskIoErrors += d.diskIoErrors;
    total.packetsCorrupted += d.packetsCorrupted;
    total.checksumFailures += d.pipelineChecksumFailures;
    total.acked += d.filesAcked;
    total.finalReads += d.finalFilesRead;
    if (!r.ok) failures.push(`seed ${seed}: [${r.violation?.kind}] ${r.violation?.message} (npm run sim -- --seed ${seed} --workload data)`);
  }
  t.same(failures, [], 'no violations');
  t.comment(JSON.stringify(total));
  t.ok(total.disksFilled > 0, 'disks filled up');
  t.ok(total.badSpots > 0, 'bad spots appeared under replicas');
  t.ok(total.partitions > 0, 'the data network was partitioned');
  t.ok(total.diskIoErrors > 0, 'the disks injected I/O errors');
  t.ok(total.packetsCorrupted > 0, `packets were corrupted in flight (${total.packetsCorrupted})`);
  // Each CHECKSUM_MISMATCH comes from a corrupted packet; a corruption of a pipeline already failing is not seen.
  t.ok(total.checksumFailures > 0 && total.checksumFailures <= total.packetsCorrupted, `the chains' ends caught them (${total.checksumFailures} pipelines failed)`);
  t.ok(total.acked > 0 && total.finalReads === total.acked, 'every acknowledged file read back after healing');
});
