/**
 * A visible demo of rfs's Raft layer on the deterministic simulator (`npm run demo`, or `npm run demo -- --fast`).
 *
 * A simulated 5-node cluster elects a leader and replicates a few writes; the leader crashes, the others
 * elect a new one and carry on; the old leader restarts from its disk and catches up. Every line carries the
 * virtual time at which it happened. The real Raft code runs on simulated clocks, network and disks, with the
 * simulator's invariant checkers watching throughout; real-time pauses between lines are only for reading.
 */
import type { NodeId } from '../raft/types.ts';
import { Sandbox } from '../../test/sim/sandbox.ts';

/** Real time between printed lines, so a person can follow; --fast skips it. */
const LINE_PACE_MS = 350;
const SEED = 1;
const CLUSTER_SIZE = 5;
/** Virtual-time budget for each step of the story (elections take a few hundred ms). */
const STEP_TIMEOUT_MS = 5_000;

const fast = process.argv.includes('--fast');
const pending: string[] = [];

function at(timeMs: number, text: string): void {
  pending.push(`[${(timeMs / 1000).toFixed(3).padStart(7)}s] ${text}`);
}

async function flush(): Promise<void> {
  for (const line of pending.splice(0)) {
    console.log(line);
    if (!fast) await new Promise((resolve) => setTimeout(resolve, LINE_PACE_MS));
  }
}

function nodesWithApplied(sim: Sandbox, index: number): NodeId[] {
  return sim.cluster.allHosts().filter((h) => (sim.applied(h.id) ?? 0) >= index).map((h) => h.id);
}

async function expectStep(sim: Sandbox, what: string, done: () => boolean): Promise<void> {
  if (!(await sim.runUntil(done, STEP_TIMEOUT_MS))) throw new Error(`demo stuck: ${what} did not happen within ${STEP_TIMEOUT_MS}ms of virtual time`);
  if (sim.checker.violation !== null) throw new Error(`invariant violated: ${sim.checker.violation.message}`);
}

async function replicate(sim: Sandbox, leader: NodeId, key: string, value: string): Promise<void> {
  const result = await sim.put(leader, key, value);
  at(sim.nowMs, `put ${key}=${value} via n${leader}: committed at index ${result.index} in term ${result.term}`);
  const live = sim.cluster.allHosts().filter((h) => h.state === 'up').length;
  await expectStep(sim, `index ${result.index} applied everywhere`, () => nodesWithApplied(sim, result.index).length === live);
  at(sim.nowMs, `  applied on ${nodesWithApplied(sim, result.index).map((id) => `n${id}`).join(' ')}`);
  await flush();
}

function describeState(sim: Sandbox, id: NodeId): string {
  return `{ ${sim.state(id).map(([k, v]) => `${k}: ${v}`).join(', ')} }`;
}

async function main(): Promise<void> {
  const sim = new Sandbox({ seed: SEED, clusterSize: CLUSTER_SIZE, onEvent: (timeMs, line) => at(timeMs, line) });
  console.log(`rfs demo: a simulated ${CLUSTER_SIZE}-node Raft cluster (seed ${SEED}; times are virtual)`);
  at(0, `starting n1..n${CLUSTER_SIZE}: each with its own disk, a clock drifting up to ±${sim.scenario.clockDriftBoundPermille / 2}‰, links of ${sim.scenario.network.delayMinMs}-${sim.scenario.network.delayMaxMs}ms`);
  await flush();

  await expectStep(sim, 'a first election', () => sim.leaderId() !== null);
  const first = sim.leaderId() as NodeId;
  await flush();
  for (const [key, value] of [['color', 'blue'], ['shape', 'circle'], ['size', 'large']] as const) await replicate(sim, first, key, value);

  at(sim.nowMs, `*** crash n${first}, the leader: its process dies, its disk keeps what was synced ***`);
  sim.crash(first);
  const crashedAtMs = sim.nowMs;
  await flush();
  await expectStep(sim, 'a new election', () => (sim.leaderId() ?? first) !== first);
  const second = sim.leaderId() as NodeId;
  at(sim.nowMs, `n${second} took over ${(sim.nowMs - crashedAtMs).toFixed(0)}ms after the crash`);
  await flush();
  for (const [key, value] of [['color', 'green'], ['count', '42']] as const) await replicate(sim, second, key, value);

  const target = sim.host(second).raft?.status().commit ?? 0;
  at(sim.nowMs, `*** restart n${first} from its disk ***`);
  sim.restart(first);
  await expectStep(sim, `n${first} restarting`, () => sim.applied(first) !== null);
  at(sim.nowMs, `n${first} is back: it replayed its own log up to index ${sim.applied(first)}; the cluster has committed ${target}`);
  await flush();
  await expectStep(sim, `n${first} catching up`, () => (sim.applied(first) ?? 0) >= target);
  at(sim.nowMs, `n${first} caught up: applied ${sim.applied(first)}, now following n${sim.host(first).raft?.status().lead}`);
  at(sim.nowMs, `  n${first} state ${describeState(sim, first)}`);
  at(sim.nowMs, `  n${second} state ${describeState(sim, second)}`);
  await flush();

  await sim.runFor(200);
  sim.cluster.stopAll();
  const checks = sim.checker.stats;
  const verdict = sim.checker.violation === null ? 'no invariant violated' : `VIOLATION: ${sim.checker.violation.message}`;
  at(
    sim.nowMs,
    `done: ${sim.world.eventsRun} events simulated; checked ${checks.statusPolls} status polls, ${checks.entriesApplied} applies, ` +
      `${checks.durableWrites} disk writes; ${verdict}`,
  );
  await flush();
  if (sim.checker.violation !== null) process.exitCode = 1;
}

await main();
