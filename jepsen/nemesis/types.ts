/**
 * A nemesis injects one kind of fault. `start` applies a fault (choosing its targets with the run's seeded
 * random source, and the current leader where the variant says so) and returns it; `heal` undoes exactly
 * that fault. Faults of different nemeses compose: each heals only what it did.
 */
import type { Cluster } from '../harness/cluster.ts';
import type { Partitioner } from '../harness/net.ts';
import type { SeededRandom } from '../harness/random.ts';

export interface NemesisContext {
  readonly cluster: Cluster;
  readonly partitioner: Partitioner;
  readonly random: SeededRandom;
  /** Milliseconds to wait for a TCP connect in partition probes. */
  readonly probeTimeoutMs: number;
}

export interface Fault {
  readonly nemesis: string;
  readonly variant: string;
  readonly targets: readonly string[];
  /** What was done, for the log (e.g. the partition's sides, a probe's outcome, a skew). */
  readonly detail: Readonly<Record<string, unknown>>;
  heal(): Promise<Readonly<Record<string, unknown>>>;
}

export interface Nemesis {
  readonly name: string;
  readonly variants: readonly string[];
  start(context: NemesisContext, variant: string): Promise<Fault>;
}

/** The current leader's name, else a random metadata server (a leader-targeted fault still does something). */
export async function leaderOrRandom(context: NemesisContext): Promise<{ name: string; wasLeader: boolean }> {
  const leader = await context.cluster.leader();
  if (leader !== undefined) return { name: leader.name, wasLeader: true };
  return { name: context.random.pick(context.cluster.metadata).name, wasLeader: false };
}

/** Targets of a process fault (kill, pause): one server of any kind, a minority of metadata servers, or the leader. */
export async function processTargets(context: NemesisContext, variant: string): Promise<{ targets: string[]; detail: Record<string, unknown> }> {
  const { cluster, random } = context;
  switch (variant) {
    case 'one':
      return { targets: [random.pick(cluster.servers).name], detail: {} };
    case 'minority': {
      const count = Math.floor((cluster.metadata.length - 1) / 2);
      return { targets: random.sample(cluster.metadata, count).map((s) => s.name), detail: {} };
    }
    case 'leader': {
      const l = await leaderOrRandom(context);
      return { targets: [l.name], detail: { wasLeader: l.wasLeader } };
    }
    default:
      throw new RangeError(`unknown variant ${variant}`);
  }
}
