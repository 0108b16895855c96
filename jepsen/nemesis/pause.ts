/** pause: SIGSTOP servers (one, a minority of metadata servers, or the leader); heal sends SIGCONT. */
import type { Fault, Nemesis, NemesisContext } from './types.ts';
import { processTargets } from './types.ts';

export const pauseNemesis: Nemesis = {
  name: 'pause',
  variants: ['one', 'minority', 'leader'],
  async start(context: NemesisContext, variant: string): Promise<Fault> {
    const { targets, detail } = await processTargets(context, variant);
    const paused = targets.filter((t) => context.cluster.isRunning(t));
    for (const t of paused) context.cluster.pause(t);
    return {
      nemesis: 'pause',
      variant,
      targets,
      detail: { ...detail, paused },
      heal: () => {
        for (const t of paused) context.cluster.resume(t);
        return Promise.resolve({ resumed: paused });
      },
    };
  },
};
