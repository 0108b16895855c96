/**
 * partition: cuts traffic between servers with blackhole routes in their namespaces (harness/net.ts).
 * Variants:
 *   halves          metadata servers split into a minority and a majority, chunkservers spread at random;
 *   isolated-leader the leader cut from every other server;
 *   one             one random metadata server cut from every other server;
 *   ring            metadata servers in a random ring, each reaching only its two neighbours: every one
 *                   sees a majority (itself and two others), and no two see the same one.
 * Clients (root namespace) still reach every server. After applying, one blocked pair and one allowed pair
 * are probed with a real TCP connect from inside a namespace; the outcome is logged, so each run shows
 * that the partition cut traffic.
 */
import { canConnect } from '../harness/net.ts';
import { chunkserverDataPort, metadataRaftPort } from '../harness/cluster.ts';
import type { Cluster } from '../harness/cluster.ts';
import type { Fault, Nemesis, NemesisContext } from './types.ts';
import { leaderOrRandom } from './types.ts';

type Pair = readonly [string, string];

function crossPairs(sideA: readonly string[], sideB: readonly string[]): Pair[] {
  return sideA.flatMap((a) => sideB.map((b) => [a, b] as const));
}

async function blockedPairs(context: NemesisContext, variant: string): Promise<{ pairs: Pair[]; detail: Record<string, unknown> }> {
  const { cluster, random } = context;
  const all = cluster.servers.map((s) => s.name);
  const isolate = (name: string): Pair[] => crossPairs([name], all.filter((n) => n !== name));
  switch (variant) {
    case 'halves': {
      const shuffled = random.sample(cluster.metadata, cluster.metadata.length).map((s) => s.name);
      const minority = shuffled.slice(0, Math.floor(shuffled.length / 2));
      const majority = shuffled.slice(minority.length);
      for (const c of cluster.chunkservers) (random.next() < 0.5 ? minority : majority).push(c.name);
      return { pairs: crossPairs(minority, majority), detail: { sides: [minority, majority] } };
    }
    case 'isolated-leader': {
      const l = await leaderOrRandom(context);
      return { pairs: isolate(l.name), detail: { isolated: l.name, wasLeader: l.wasLeader } };
    }
    case 'one': {
      const name = random.pick(cluster.metadata).name;
      return { pairs: isolate(name), detail: { isolated: name } };
    }
    case 'ring': {
      const ring = random.sample(cluster.metadata, cluster.metadata.length).map((s) => s.name);
      const n = ring.length;
      const pairs: Pair[] = [];
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const distance = Math.min(j - i, n - (j - i));
          if (distance > 1) pairs.push([ring[i]!, ring[j]!]);
        }
      }
      return { pairs, detail: { ring } };
    }
    default:
      throw new RangeError(`unknown partition variant ${variant}`);
  }
}

/** Tries of a probe expected to connect, and the pause between them. */
const openProbeAttempts = 10;
const openProbeRetryMs = 1_000;

function probePort(cluster: Cluster, name: string): number {
  return cluster.server(name).kind === 'metadata' ? metadataRaftPort : chunkserverDataPort;
}

export interface ProbeResult {
  readonly from: string;
  readonly to: string;
  readonly expected: 'blocked' | 'open';
  readonly connected: boolean;
}

/** Connects from inside `from`'s namespace to `to`'s server port. Only running, unpaused targets answer. */
export async function probe(context: NemesisContext, from: string, to: string, expected: 'blocked' | 'open'): Promise<ProbeResult> {
  const target = context.cluster.server(to);
  const attempt = (): Promise<boolean> =>
    canConnect(context.cluster.server(from).net.namespace, target.net.address, probePort(context.cluster, to), context.probeTimeoutMs);
  let connected = await attempt();
  // A running target may still be starting (restarted by an earlier fault: not listening yet, connection
  // refused), so an open pair gets a few tries; a blocked pair gets one (a retry could only hide a leak).
  for (let i = 1; expected === 'open' && !connected && i < openProbeAttempts; i++) {
    await new Promise((resolve) => setTimeout(resolve, openProbeRetryMs));
    connected = await attempt();
  }
  return { from, to, expected, connected };
}


export const partitionNemesis: Nemesis = {
  name: 'partition',
  variants: ['halves', 'isolated-leader', 'one', 'ring'],
  async start(context: NemesisContext, variant: string): Promise<Fault> {
    const { pairs, detail } = await blockedPairs(context, variant);
    await context.partitioner.blockAll(pairs);
    const blocked = new Set(pairs.map(([a, b]) => `${a}|${b}`).concat(pairs.map(([a, b]) => `${b}|${a}`)));
    const live = (n: string): boolean => context.cluster.isRunning(n) && !context.cluster.isPaused(n);
    const probes: ProbeResult[] = [];
    const blockedPair = pairs.find(([a, b]) => live(a) && live(b));
    if (blockedPair !== undefined) probes.push(await probe(context, blockedPair[0], blockedPair[1], 'blocked'));
    const names = context.cluster.servers.map((s) => s.name);
    const openPair = names.flatMap((a) => names.map((b) => [a, b] as const)).find(([a, b]) => a !== b && !blocked.has(`${a}|${b}`) && live(a) && live(b));
    if (openPair !== undefined) probes.push(await probe(context, openPair[0], openPair[1], 'open'));
    const isolated = detail['isolated'];
    const targets = typeof isolated === 'string' ? [isolated] : [...new Set(pairs.flat())].sort();
    return {
      nemesis: 'partition',
      variant,
      targets,
      detail: { ...detail, blockedPairs: pairs.length, probes },
      heal: async () => {
        await context.partitioner.unblockAll(pairs);
        return { healedPairs: pairs.length };
      },
    };
  },
};
