/**
 * applyConfChange invariants over reachable configurations and arbitrary changes: no node is both learner
 * and voter, there is always a voter, a simple change moves at most one voter, a refused change leaves its
 * input alone, and entering then leaving a joint configuration lands exactly on the configuration the
 * changes describe (computed here with plain sets).
 */
import t from 'tap';
import fc from 'fast-check';
import { applyConfChange, entersJoint } from '../../src/raft/confchange.ts';
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from '../../src/raft/types.ts';
import { emptyConfState } from '../../src/raft/types.ts';
import { holds, nodeIds } from './util.ts';

const singleArb: fc.Arbitrary<ConfChangeSingle> = fc.record({
  type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const),
  nodeId: fc.integer({ min: 1, max: 6 }),
});

const changeArb: fc.Arbitrary<ConfChange> = fc.record({
  transition: fc.constantFrom('auto' as const, 'joint-implicit' as const, 'joint-explicit' as const),
  changes: fc.array(singleArb, { maxLength: 4 }),
});

/** A configuration reachable from a bootstrap voter set by accepted changes (joint ones included). */
const reachableArb: fc.Arbitrary<ConfState> = fc
  .tuple(nodeIds(6, 4, 1), fc.array(changeArb, { maxLength: 6 }))
  .map(([voters, changes]) => {
    let conf: ConfState = { ...emptyConfState, voters: [...voters].sort((a, b) => a - b) };
    for (const cc of changes) {
      const out = applyConfChange(conf, cc);
      if (out.ok) conf = out.conf;
    }
    return conf;
  });

function invariantViolation(c: ConfState): string | null {
  const voters = new Set([...c.voters, ...c.votersOutgoing]);
  if (c.voters.length === 0) return 'no voters';
  for (const id of c.learners) if (voters.has(id)) return `${id} is learner and voter`;
  for (const id of c.learnersNext) {
    if (!c.votersOutgoing.includes(id) || c.voters.includes(id)) return `${id} in learnersNext but not only an outgoing voter`;
  }
  if (c.votersOutgoing.length === 0 && (c.learnersNext.length > 0 || c.autoLeave)) return 'joint-only fields outside joint';
  for (const list of [c.voters, c.votersOutgoing, c.learners, c.learnersNext]) {
    for (let i = 1; i < list.length; i++) if (!(list[i - 1]! < list[i]!)) return `list not sorted and unique: ${JSON.stringify(list)}`;
  }
  return null;
}

/** The configuration a list of changes describes, with plain sets and no transition rules. */
function setOracle(start: ConfState, changes: readonly ConfChangeSingle[]): { voters: NodeId[]; learners: NodeId[] } {
  const voters = new Set(start.voters);
  const learners = new Set(start.learners);
  for (const { type, nodeId } of changes) {
    voters.delete(nodeId);
    learners.delete(nodeId);
    if (type === 'addVoter') voters.add(nodeId);
    if (type === 'addLearner') learners.add(nodeId);
  }
  const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
  return { voters: sorted(voters), learners: sorted(learners) };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

void t.test('every accepted change yields a configuration satisfying the invariants; a refused one has a reason and changes nothing', (t) => {
  let accepted = 0;
  let refused = 0;
  holds(
    t,
    'invariants',
    fc.property(reachableArb, changeArb, (conf, cc) => {
      if (invariantViolation(conf) !== null) throw new Error(`generator produced an invalid start: ${invariantViolation(conf)}`);
      const before = JSON.stringify(conf);
      const out = applyConfChange(conf, cc);
      if (JSON.stringify(conf) !== before) throw new Error('input mutated');
      if (!out.ok) {
        refused++;
        return out.reason.length > 0;
      }
      accepted++;
      const problem = invariantViolation(out.conf);
      if (problem !== null) throw new Error(`${problem}: ${JSON.stringify(out.conf)}`);
      return true;
    }),
    1000,
  );
  t.ok(accepted > 100 && refused > 100, `both outcomes are exercised (${accepted} accepted, ${refused} refused)`);
  t.end();
});

void t.test('a simple change alters at most one voter and stays out of joint consensus', (t) => {
  holds(
    t,
    'simple changes',
    fc.property(reachableArb, singleArb, (conf, single) => {
      const out = applyConfChange(conf, { transition: 'auto', changes: [single] });
      if (conf.votersOutgoing.length > 0) return !out.ok; // no change but the leave while joint
      if (!out.ok) return setOracle(conf, [single]).voters.length === 0; // refused only when no voter would remain
      const diff = out.conf.voters.filter((id) => !conf.voters.includes(id)).length + conf.voters.filter((id) => !out.conf.voters.includes(id)).length;
      return diff <= 1 && out.conf.votersOutgoing.length === 0 && !out.conf.autoLeave && same(out.conf, { ...out.conf, ...setOracle(conf, [single]), learnersNext: [] });
    }),
    800,
  );
  // Two voter changes in one step are refused without joint consensus.
  const base: ConfState = { ...emptyConfState, voters: [1, 2, 3] };
  const swap = [{ type: 'addVoter', nodeId: 4 }, { type: 'removeNode', nodeId: 3 }] as const;
  const one = applyConfChange(base, { transition: 'auto', changes: [swap[0]] });
  t.ok(one.ok && same(one.conf.voters, [1, 2, 3, 4]));
  t.same(entersJoint({ transition: 'auto', changes: [...swap] }), { joint: true, autoLeave: true }, 'auto with two changes goes through joint');
  t.end();
});

void t.test('entering then leaving joint consensus equals the configuration the changes describe', (t) => {
  holds(
    t,
    'enter then leave',
    fc.property(
      reachableArb.filter((c) => c.votersOutgoing.length === 0),
      fc.array(singleArb, { minLength: 1, maxLength: 4 }),
      fc.constantFrom('joint-explicit' as const, 'joint-implicit' as const, 'auto' as const),
      (conf, changes, transition) => {
        const oracle = setOracle(conf, changes);
        const joint = transition !== 'auto' || changes.length > 1;
        const enter = applyConfChange(conf, { transition, changes });
        if (!joint) return true; // covered by the simple-change property
        if (oracle.voters.length === 0) return !enter.ok; // refused exactly when no voter would remain
        if (!enter.ok) throw new Error(`refused: ${enter.reason}`);
        const j = enter.conf;
        // The joint configuration: C_new incoming, C_old outgoing; demoted outgoing voters wait in learnersNext.
        if (!same(j.voters, oracle.voters) || !same(j.votersOutgoing, conf.voters)) throw new Error(`joint halves ${JSON.stringify(j)}`);
        if (!same([...j.learners, ...j.learnersNext].sort((a, b) => a - b), oracle.learners)) throw new Error(`joint learners ${JSON.stringify(j)}`);
        if (j.autoLeave !== (transition !== 'joint-explicit')) throw new Error('autoLeave flag');
        const leave = applyConfChange(j, { transition: 'auto', changes: [] });
        if (!leave.ok) throw new Error(`leave refused: ${leave.reason}`);
        return same(leave.conf, { voters: oracle.voters, votersOutgoing: [], learners: oracle.learners, learnersNext: [], autoLeave: false });
      },
    ),
    800,
  );
  // A worked example: replace voter 3 by 4 and demote 2 to learner.
  const base: ConfState = { ...emptyConfState, voters: [1, 2, 3] };
  const enter = applyConfChange(base, {
    transition: 'joint-explicit',
    changes: [
      { type: 'addVoter', nodeId: 4 },
      { type: 'removeNode', nodeId: 3 },
      { type: 'addLearner', nodeId: 2 },
    ],
  });
  t.same(enter.ok && enter.conf, { voters: [1, 4], votersOutgoing: [1, 2, 3], learners: [], learnersNext: [2], autoLeave: false });
  const leave = enter.ok ? applyConfChange(enter.conf, { transition: 'auto', changes: [] }) : null;
  t.same(leave?.ok && leave.conf, { voters: [1, 4], votersOutgoing: [], learners: [2], learnersNext: [], autoLeave: false });
  t.end();
});

void t.test('joint state rules: leave only when joint, nothing else while joint', (t) => {
  holds(
    t,
    'joint rules',
    fc.property(reachableArb, changeArb, (conf, cc) => {
      const out = applyConfChange(conf, cc);
      const isJoint = conf.votersOutgoing.length > 0;
      const isLeave = cc.changes.length === 0;
      if (isLeave) return out.ok === isJoint;
      if (isJoint) return !out.ok;
      return true;
    }),
    800,
  );
  t.equal(applyConfChange({ ...emptyConfState, voters: [1] }, { transition: 'auto', changes: [{ type: 'removeNode', nodeId: 1 }] }).ok, false, 'the last voter cannot go');
  t.equal(applyConfChange({ ...emptyConfState, voters: [1] }, { transition: 'auto', changes: [{ type: 'addVoter', nodeId: 0 }] }).ok, false, 'node id 0 is invalid');
  t.end();
});
