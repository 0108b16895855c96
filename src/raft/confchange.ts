/**
 * Membership changes as pure functions from one ConfState to the next (etcd's confchange.Changer):
 * a simple change (at most one voter added or removed), entering a joint configuration, leaving it.
 * An invalid change returns an error string and changes nothing.
 */
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from './types.ts';

export type ConfChangeOutcome = { ok: true; conf: ConfState } | { ok: false; reason: string };

interface MutableConf {
  voters: Set<NodeId>;
  votersOutgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

function toMutable(c: ConfState): MutableConf {
  return {
    voters: new Set(c.voters),
    votersOutgoing: new Set(c.votersOutgoing),
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

function toConfState(m: MutableConf): ConfState {
  const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
  return {
    voters: sorted(m.voters),
    votersOutgoing: sorted(m.votersOutgoing),
    learners: sorted(m.learners),
    learnersNext: sorted(m.learnersNext),
    autoLeave: m.autoLeave,
  };
}

export function isJoint(c: ConfState): boolean {
  return c.votersOutgoing.length > 0;
}

/** Whether a change is the "leave joint" marker. */
export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/** Whether the change enters a joint configuration (and whether it leaves it automatically). */
export function entersJoint(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  if (isLeaveJoint(cc)) return { joint: false, autoLeave: false };
  if (cc.transition === 'auto') {
    // One step only for a single change; anything larger goes through joint consensus.
    return cc.changes.length > 1 ? { joint: true, autoLeave: true } : { joint: false, autoLeave: false };
  }
  return { joint: true, autoLeave: cc.transition === 'joint-implicit' };
}

function applySingle(m: MutableConf, change: ConfChangeSingle): string | null {
  const id = change.nodeId;
  if (!Number.isInteger(id) || id <= 0) return `invalid node id ${id}`;
  switch (change.type) {
    case 'addVoter':
      m.learners.delete(id);
      m.learnersNext.delete(id);
      m.voters.add(id);
      return null;
    case 'addLearner':
      m.voters.delete(id);
      m.learners.delete(id);
      m.learnersNext.delete(id);
      // A voter of the outgoing config stays a voter until the joint config is left.
      if (m.votersOutgoing.has(id)) m.learnersNext.add(id);
      else m.learners.add(id);
      return null;
    case 'removeNode':
      m.voters.delete(id);
      m.learners.delete(id);
      m.learnersNext.delete(id);
      return null;
  }
}

function checkInvariants(m: MutableConf): string | null {
  if (m.voters.size === 0) return 'removed all voters';
  for (const id of m.learners) {
    if (m.voters.has(id) || m.votersOutgoing.has(id)) return `node ${id} is both learner and voter`;
  }
  for (const id of m.learnersNext) {
    if (!m.votersOutgoing.has(id)) return `node ${id} in learnersNext but not an outgoing voter`;
    if (m.voters.has(id)) return `node ${id} in learnersNext and incoming voters`;
  }
  if (m.votersOutgoing.size === 0 && (m.learnersNext.size > 0 || m.autoLeave)) {
    return 'learnersNext or autoLeave outside a joint configuration';
  }
  return null;
}

export function applyConfChange(current: ConfState, cc: ConfChange): ConfChangeOutcome {
  const m = toMutable(current);
  if (isLeaveJoint(cc)) {
    if (!isJoint(current)) return { ok: false, reason: 'not in a joint configuration' };
    for (const id of m.learnersNext) m.learners.add(id);
    m.learnersNext.clear();
    m.votersOutgoing.clear();
    m.autoLeave = false;
  } else {
    if (isJoint(current)) return { ok: false, reason: 'already in a joint configuration' };
    const { joint, autoLeave } = entersJoint(cc);
    if (joint) {
      m.votersOutgoing = new Set(m.voters);
      m.autoLeave = autoLeave;
    }
    for (const change of cc.changes) {
      const error = applySingle(m, change);
      if (error !== null) return { ok: false, reason: error };
    }
    if (!joint) {
      let changedVoters = 0;
      for (const id of m.voters) if (!current.voters.includes(id)) changedVoters++;
      for (const id of current.voters) if (!m.voters.has(id)) changedVoters++;
      if (changedVoters > 1) return { ok: false, reason: 'more than one voter changed without joint consensus' };
    }
  }
  const error = checkInvariants(m);
  if (error !== null) return { ok: false, reason: error };
  return { ok: true, conf: toConfState(m) };
}
