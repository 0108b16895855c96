/**
 * The data workload end to end (`npm run sim -- --workload data`): real chunkservers (replica store on the
 * simulated disk, data server, metadata agent, scrubber) and the client's FileWriter/FileReader around
 * metadata servers, under crashes, wiped disks, bit flips and broken connections.
 */
import t from 'tap';
import { runSeed } from './simulation.ts';

/** Seeds every run of `npm test` checks; the CLI runs many more (`npm run sim -- --workload data --seeds 500`). */
const PASSING_SEEDS_COUNT = 4;

void t.test('a data seed replays exactly', async (t) => {
  const first = await runSeed(3, { workload: 'data' });
  const second = await runSeed(3, { workload: 'data' });
  t.equal(second.traceHash, first.traceHash, 'same trace hash');
  t.same(second.stats, first.stats, 'same statistics');
  t.not((await runSeed(3)).traceHash, first.traceHash, 'the raft workload of the same seed differs');
});

void t.test(`${PASSING_SEEDS_COUNT} data seeds pass`, async (t) => {
  const failures: string[] = [];
  const total = { acked: 0, finalReads: 0, replicaReads: 0, readsOk: 0, sessions: 0, crashes: 0, flips: 0 };
  for (let seed = 1; seed <= PASSING_SEEDS_COUNT; seed++) {
    const r = await runSeed(seed, { workload: 'data' });
    const d = r.stats.data;
    t.ok(d !== undefined, `seed ${seed} reports data statistics`);
    if (d === undefined) continue;
    total.acked += d.filesAcked;
    total.finalReads += d.finalFilesRead;
    total.replicaReads += d.finalReplicaReads;
    total.readsOk += d.readsOk;
    total.sessions += d.sessionReads;
    total.crashes += d.chunkserverCrashes;
    total.flips += d.bitFlips;
    if (!r.ok) failures.push(`seed ${seed}: [${r.violation?.kind}] ${r.violation?.message} (npm run sim -- --seed ${seed} --workload data)`);
  }
  t.same(failures, [], 'no violations');
  t.ok(total.acked > PASSING_SEEDS_COUNT * 5, `files were acknowledged (${total.acked})`);
  t.equal(total.finalReads, total.acked, 'every acknowledged file was read back after healing');
  t.ok(total.replicaReads >= total.acked, `listed replicas were read back one by one (${total.replicaReads})`);
  t.ok(total.readsOk > PASSING_SEEDS_COUNT * 5, `reads during the run were checked (${total.readsOk})`);
  t.ok(total.sessions > 0, `reads went through read sessions (${total.sessions})`);
  t.ok(total.crashes + total.flips > 0, `faults struck the chunkservers (${total.crashes} crashes, ${total.flips} bit flips)`);
});
