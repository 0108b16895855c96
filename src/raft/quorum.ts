/**
 * Quorum arithmetic, knowing nothing of messages: the commit index and the vote outcome of a majority
 * configuration, and of a joint configuration (two majorities, both required).
 */
import type { NodeId } from './types.ts';

export type VoteResult = 'won' | 'lost' | 'pending';

/**
 * The largest index acknowledged by a majority of `voters`. `acked(id)` is a voter's match index.
 * An empty configuration has no constraint: it returns +Infinity so that a joint configuration
 * with an empty half behaves like its other half.
 */
export function majorityCommitted(voters: readonly NodeId[], acked: (id: NodeId) => number): number {
  const n = voters.length;
  if (n === 0) return Number.POSITIVE_INFINITY;
  const matched = voters.map(acked).sort((a, b) => b - a);
  // Sorted descending, the value at position (quorum - 1) is held by at least a quorum.
  const quorum = Math.floor(n / 2) + 1;
  return matched[quorum - 1] ?? 0;
}

export function jointCommitted(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  acked: (id: NodeId) => number,
): number {
  return Math.min(majorityCommitted(incoming, acked), majorityCommitted(outgoing, acked));
}

/** `votes` maps a voter to its answer; voters missing from it have not answered yet. */
export function majorityVoteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const quorum = Math.floor(voters.length / 2) + 1;
  if (granted >= quorum) return 'won';
  if (granted + missing >= quorum) return 'pending';
  return 'lost';
}

export function jointVoteResult(
  incoming: readonly NodeId[],
  outgoing: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const a = majorityVoteResult(incoming, votes);
  const b = majorityVoteResult(outgoing, votes);
  if (a === b) return a;
  if (a === 'lost' || b === 'lost') return 'lost';
  return 'pending';
}
