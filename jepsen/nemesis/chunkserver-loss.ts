/**
 * chunkserver-loss: SIGKILLs one chunkserver and deletes its data dir (the disk is lost); heal restarts it
 * on an empty disk, where it registers as a new chunkserver (a new id) at the same address.
 */
import type { Fault, Nemesis, NemesisContext } from './types.ts';

export const chunkserverLossNemesis: Nemesis = {
  name: 'chunkserver-loss',
  variants: ['one'],
  async start(context: NemesisContext, variant: string): Promise<Fault> {
    const { cluster, random } = context;
    const target = random.pick(cluster.chunkservers).name;
    await cluster.kill(target);
    await cluster.wipe(target);
    return {
      nemesis: 'chunkserver-loss',
      variant,
      targets: [target],
      detail: { wiped: cluster.server(target).dataDir },
      heal: () => {
        cluster.start(target);
        return Promise.resolve({ restarted: target, emptyDisk: true });
      },
    };
  },
};
