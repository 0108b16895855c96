/**
 * Choosing servers for new replicas. Pure: the candidates and the random source come from the caller.
 *
 * Rules, in order: (1) only the candidates given (the caller keeps dead, decommissioning, full and excluded
 * servers out); (2) failure domains first: a server in a rack that holds no replica of the chunk yet beats any
 * other, so no two replicas share a rack while enough racks exist; (3) among those, the less full of two drawn
 * at random ("power of two choices": close to the emptiest, without every allocation herding onto one server).
 */
import type { RandomSource } from '../raft/config.ts';

export interface Candidate {
  readonly id: number;
  readonly rack: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

/** Used space in permille of capacity (a server reporting no capacity counts as full). */
export function usedPermille(c: Pick<Candidate, 'capacityBytes' | 'usedBytes'>): number {
  if (c.capacityBytes <= 0) return 1000;
  return Math.min(1000, Math.floor((c.usedBytes * 1000) / c.capacityBytes));
}

/** Less full first; ties by id (so the order never depends on iteration order). */
function lessFull(a: Candidate, b: Candidate): Candidate {
  const pa = usedPermille(a);
  const pb = usedPermille(b);
  if (pa !== pb) return pa < pb ? a : b;
  return a.id < b.id ? a : b;
}

/** One of `pool` (non-empty): the less full of two random picks. */
function pickOne(pool: readonly Candidate[], random: RandomSource): Candidate {
  if (pool.length === 1) return pool[0]!;
  const i = random.int(pool.length);
  let j = random.int(pool.length - 1);
  if (j >= i) j++;
  return lessFull(pool[i]!, pool[j]!);
}

/**
 * Up to `count` distinct targets from `candidates`, spreading over racks not in `usedRacks`. Fewer when there
 * are fewer candidates. Deterministic given the random source's answers.
 */
export function chooseTargets(
  candidates: readonly Candidate[],
  count: number,
  usedRacks: ReadonlySet<string>,
  random: RandomSource,
): Candidate[] {
  const racks = new Set(usedRacks);
  const left = [...candidates].sort((a, b) => a.id - b.id);
  const chosen: Candidate[] = [];
  while (chosen.length < count && left.length > 0) {
    const fresh = left.filter((c) => !racks.has(c.rack));
    const pick = pickOne(fresh.length > 0 ? fresh : left, random);
    chosen.push(pick);
    racks.add(pick.rack);
    left.splice(left.indexOf(pick), 1);
  }
  return chosen;
}
