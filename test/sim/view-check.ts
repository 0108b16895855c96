/**
 * The `view-incremental` check: the chunk manager's view as the metadata server keeps it (src/placement/view.ts
 * ViewTracker, following the store's writes) must equal a whole read of the same store state. Run at every
 * load of a simulated leader's chunk service; compared only when nothing was applied between the two reads.
 */
import type { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import type { KvReader } from '../../src/fsm/kv.ts';
import type { ClusterView } from '../../src/placement/manager.ts';
import { loadClusterView } from '../../src/placement/view.ts';
import type { ViewTracker } from '../../src/placement/view.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { InvariantChecker } from './checkers.ts';

export async function checkedView(views: ViewTracker, kv: KvReader, fsm: MetadataStateMachine, nodeId: NodeId, checker: InvariantChecker): Promise<ClusterView> {
  const applied = fsm.appliedIndex();
  const view = await views.load(kv, fsm.limits);
  const whole = await loadClusterView(kv, fsm.limits);
  if (fsm.appliedIndex() === applied) {
    const difference = viewDifference(view, whole);
    if (difference !== null) checker.fail('view-incremental', `n${nodeId} at applied index ${applied}: the kept view differs from a whole read: ${difference}`);
  }
  return view;
}

/** The first difference between two views (null: the same), for the failure message. */
export function viewDifference(kept: ClusterView, whole: ClusterView): string | null {
  if (kept.nextChunkHandle !== whole.nextChunkHandle) return `nextChunkHandle ${kept.nextChunkHandle}, whole ${whole.nextChunkHandle}`;
  const maps: [string, ReadonlyMap<number, unknown>, ReadonlyMap<number, unknown>][] = [
    ['server', kept.servers, whole.servers],
    ['chunk', kept.chunks, whole.chunks],
    ['lease of file', kept.leases ?? new Map(), whole.leases ?? new Map()],
  ];
  for (const [what, a, b] of maps) {
    for (const [id, value] of b) {
      const mine = a.get(id);
      if (mine === undefined) return `${what} ${id} missing (whole: ${JSON.stringify(value)})`;
      if (JSON.stringify(mine) !== JSON.stringify(value)) return `${what} ${id}: ${JSON.stringify(mine)}, whole ${JSON.stringify(value)}`;
    }
    for (const [id, value] of a) if (!b.has(id)) return `${what} ${id} kept but gone (${JSON.stringify(value)})`;
  }
  return null;
}
