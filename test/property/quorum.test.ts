/**
 * Quorum arithmetic against brute-force oracles: the commit index of a majority / joint configuration and
 * the outcome of an election, checked by enumeration rather than by the sort-and-pick of the implementation.
 */
import t from 'tap';
import fc from 'fast-check';
import { jointCommitted, jointVoteResult, majorityCommitted, majorityVoteResult, type VoteResult } from '../../src/raft/quorum.ts';
import type { NodeId } from '../../src/raft/types.ts';
import { holds, nodeIds } from './util.ts';

function isMajority(voters: readonly NodeId[], has: (id: NodeId) => boolean): boolean {
  return 2 * voters.filter(has).length > voters.length;
}

/** The largest i such that the voters with match >= i form a majority of each non-empty half; +Infinity if both are empty. */
function committedOracle(halves: readonly (readonly NodeId[])[], match: ReadonlyMap<NodeId, number>): number {
  const live = halves.filter((h) => h.length > 0);
  if (live.length === 0) return Number.POSITIVE_INFINITY;
  const all = live.flat();
  const top = Math.max(0, ...all.map((id) => match.get(id) ?? 0));
  for (let i = top; i > 0; i--) {
    if (live.every((h) => isMajority(h, (id) => (match.get(id) ?? 0) >= i))) return i;
  }
  return 0;
}

/**
 * Election outcome by enumeration: won if the granted votes already form a majority of each non-empty
 * half; lost if no way of answering the missing votes could make it won; pending otherwise.
 */
function voteOracle(halves: readonly (readonly NodeId[])[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const voters = [...new Set(halves.flat())];
  const wins = (answers: ReadonlyMap<NodeId, boolean>) =>
    halves.every((h) => h.length === 0 || isMajority(h, (id) => answers.get(id) === true));
  if (wins(votes)) return 'won';
  const missing = voters.filter((id) => !votes.has(id));
  for (let mask = 0; mask < 1 << missing.length; mask++) {
    const completed = new Map(votes);
    missing.forEach((id, bit) => completed.set(id, (mask & (1 << bit)) !== 0));
    if (wins(completed)) return 'pending';
  }
  return 'lost';
}

const matchMap = (ids: readonly NodeId[]) =>
  fc.array(fc.nat({ max: 12 }), { minLength: ids.length, maxLength: ids.length }).map((ms) => new Map(ids.map((id, i) => [id, ms[i]!])));

void t.test('majorityCommitted equals the brute-force largest majority-replicated index', (t) => {
  holds(
    t,
    'majority commit',
    fc.property(
      nodeIds(9).chain((voters) => fc.tuple(fc.constant(voters), matchMap(voters))),
      ([voters, match]) => majorityCommitted(voters, (id) => match.get(id) ?? 0) === committedOracle([voters], match),
    ),
    500,
  );
  // Worked examples that pin the meaning down.
  const m = new Map([[1, 5], [2, 3], [3, 9], [4, 1], [5, 3]]);
  t.equal(majorityCommitted([1, 2, 3, 4, 5], (id) => m.get(id)!), 3);
  t.equal(majorityCommitted([1, 2, 3, 4], (id) => m.get(id)!), 3);
  t.equal(majorityCommitted([3, 4], (id) => m.get(id)!), 1);
  t.equal(majorityCommitted([3], (id) => m.get(id)!), 9);
  t.equal(majorityCommitted([], () => 7), Number.POSITIVE_INFINITY);
  t.end();
});

void t.test('jointCommitted equals the brute-force index replicated on a majority of both halves', (t) => {
  holds(
    t,
    'joint commit',
    fc.property(
      fc.tuple(nodeIds(8), nodeIds(8)).chain(([a, b]) => {
        const all = [...new Set([...a, ...b])];
        return fc.tuple(fc.constant(a), fc.constant(b), matchMap(all));
      }),
      ([incoming, outgoing, match]) =>
        jointCommitted(incoming, outgoing, (id) => match.get(id) ?? 0) === committedOracle([incoming, outgoing], match),
    ),
    500,
  );
  const m = new Map([[1, 10], [2, 10], [3, 2], [4, 2], [5, 2]]);
  t.equal(jointCommitted([1, 2, 3], [3, 4, 5], (id) => m.get(id)!), 2, 'the outgoing half holds it back');
  t.equal(jointCommitted([1, 2, 3], [], (id) => m.get(id)!), 10, 'an empty half does not constrain');
  t.end();
});

/** Every vote map over `voters`: each voter granted, rejected or not answered. */
function allVoteMaps(voters: readonly NodeId[]): Map<NodeId, boolean>[] {
  let maps: Map<NodeId, boolean>[] = [new Map()];
  for (const id of voters) {
    maps = maps.flatMap((m) => [m, new Map([...m, [id, true]]), new Map([...m, [id, false]])]);
  }
  return maps;
}

void t.test('majorityVoteResult agrees with the oracle on every vote map of up to 6 voters', (t) => {
  let checked = 0;
  let wrong = 0;
  for (let n = 0; n <= 6; n++) {
    const voters = Array.from({ length: n }, (_, i) => i + 1);
    for (const votes of allVoteMaps(voters)) {
      checked++;
      const got = majorityVoteResult(voters, votes);
      const want = voteOracle([voters], votes);
      if (got !== want) {
        wrong++;
        t.fail(`voters ${JSON.stringify(voters)} votes ${JSON.stringify([...votes])}: got ${got}, want ${want}`);
      }
    }
  }
  t.equal(checked, 1 + 3 + 9 + 27 + 81 + 243 + 729);
  t.equal(wrong, 0);
  t.equal(majorityVoteResult([1, 2, 3], new Map([[1, true], [2, true]])), 'won');
  t.equal(majorityVoteResult([1, 2, 3], new Map([[1, true], [2, false]])), 'pending');
  t.equal(majorityVoteResult([1, 2, 3], new Map([[1, false], [2, false]])), 'lost');
  t.equal(majorityVoteResult([1, 2, 3, 4], new Map([[1, true], [2, true]])), 'pending', 'a tie is not a majority');
  t.equal(majorityVoteResult([], new Map()), 'won');
  t.end();
});

void t.test('jointVoteResult agrees with the oracle on every vote map of overlapping configurations', (t) => {
  // Exhaustive for the shapes a membership change produces, over ids 1..5.
  const shapes: [NodeId[], NodeId[]][] = [
    [[1, 2, 3], []],
    [[1, 2, 3], [1, 2, 3]],
    [[1, 2, 4], [1, 2, 3]],
    [[4, 5], [1, 2, 3]],
    [[1], [2, 3]],
    [[1, 2, 3, 4], [1, 2, 5]],
    [[], [1, 2]],
  ];
  let wrong = 0;
  for (const [incoming, outgoing] of shapes) {
    for (const votes of allVoteMaps([...new Set([...incoming, ...outgoing])])) {
      const got = jointVoteResult(incoming, outgoing, votes);
      const want = voteOracle([incoming, outgoing], votes);
      if (got !== want) {
        wrong++;
        t.fail(`${JSON.stringify([incoming, outgoing])} votes ${JSON.stringify([...votes])}: got ${got}, want ${want}`);
      }
    }
  }
  t.equal(wrong, 0, 'exhaustive shapes');
  holds(
    t,
    'joint vote, random configurations',
    fc.property(
      fc.tuple(nodeIds(7, 5), nodeIds(7, 5)).chain(([a, b]) => {
        const all = [...new Set([...a, ...b])];
        const answers = fc.array(fc.constantFrom<boolean | null>(true, false, null), { minLength: all.length, maxLength: all.length });
        return fc.tuple(fc.constant(a), fc.constant(b), answers.map((xs) => new Map(all.flatMap((id, i) => (xs[i] === null ? [] : [[id, xs[i]!] as const])))));
      }),
      ([incoming, outgoing, votes]) => jointVoteResult(incoming, outgoing, votes) === voteOracle([incoming, outgoing], votes),
    ),
    500,
  );
  t.equal(jointVoteResult([1, 2, 4], [1, 2, 3], new Map([[1, true], [4, true]])), 'pending', 'incoming won, outgoing undecided');
  t.equal(jointVoteResult([1, 2, 4], [1, 2, 3], new Map([[1, true], [4, true], [2, false], [3, false]])), 'lost', 'outgoing lost');
  t.end();
});
