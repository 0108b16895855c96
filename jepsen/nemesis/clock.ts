/**
 * clock: restarts one metadata server (random, or the leader) under libfaketime with its clock offset by
 * ±`skewSecondsMin`..`skewSecondsMax` seconds (wall and monotonic alike); heal restarts it on the real clock.
 * A skew therefore also includes a restart, as the brief for this nemesis says.
 */
import type { Fault, Nemesis, NemesisContext } from './types.ts';
import { leaderOrRandom } from './types.ts';

export const skewSecondsMin = 5;
export const skewSecondsMax = 120;

export const clockNemesis: Nemesis = {
  name: 'clock',
  variants: ['random', 'leader'],
  async start(context: NemesisContext, variant: string): Promise<Fault> {
    const { cluster, random } = context;
    const target = variant === 'leader' ? (await leaderOrRandom(context)).name : random.pick(cluster.metadata).name;
    const skewSeconds = random.int(skewSecondsMin, skewSecondsMax) * (random.next() < 0.5 ? -1 : 1);
    await cluster.kill(target);
    cluster.start(target, { skewSeconds });
    return {
      nemesis: 'clock',
      variant,
      targets: [target],
      detail: { skewSeconds },
      heal: async () => {
        await cluster.kill(target);
        cluster.start(target);
        return { restarted: target, skewSeconds: 0 };
      },
    };
  },
};
