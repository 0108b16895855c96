/** kill: SIGKILL servers (one, a minority of metadata servers, or the leader); heal restarts them. */
import type { Fault, Nemesis, NemesisContext } from './types.ts';
import { processTargets } from './types.ts';

export const killNemesis: Nemesis = {
  name: 'kill',
  variants: ['one', 'minority', 'leader'],
  async start(context: NemesisContext, variant: string): Promise<Fault> {
    const { targets, detail } = await processTargets(context, variant);
    const pids: Record<string, number | undefined> = {};
    for (const t of targets) {
      pids[t] = context.cluster.pid(t);
      await context.cluster.kill(t);
    }
    return {
      nemesis: 'kill',
      variant,
      targets,
      detail: { ...detail, pids },
      heal: () => {
        for (const t of targets) context.cluster.start(t);
        return Promise.resolve({ restarted: targets });
      },
    };
  },
};
