/**
 * The extensions beyond Raft paper §5 that this core implements, as scenario tests: pre-vote and
 * check-quorum (Raft thesis §9.6), leadership transfer (thesis §3.10), ReadIndex and lease reads
 * (thesis §6.4), membership changes with learners and joint consensus (paper §6, thesis §4.3), chunked
 * snapshots (paper §7), flow control, and robustness against odd messages.
 */
import t from 'tap';
import type { Raft } from '../../src/raft/raft.ts';
import type { ConfChange, Entry, Message, MessageType, NodeId } from '../../src/raft/types.ts';
import { EntryType, messageTypes } from '../../src/raft/types.ts';
import { RaftError } from '../../src/raft/errors.ts';
import {
  Network,
  drainReady,
  fixedRandom,
  logTerms,
  msg,
  newEmptyRaft,
  newRaft,
  putNode,
  recordReadStates,
  restartNode,
  seededRandom,
  texts,
  tickAll,
} from './harness.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function since(net: Network, mark: number, type: MessageType, to?: NodeId): Message[] {
  return net.delivered.slice(mark).filter((m) => m.type === type && (to === undefined || m.to === to));
}

/** The text of the applied Normal entries (conf change entries left out). */
function normalTexts(entries: readonly Entry[]): string[] {
  return texts(entries.filter((e) => e.type === EntryType.Normal));
}

function dataBytes(entries: readonly Entry[]): number {
  return entries.reduce((n, e) => n + e.data.byteLength, 0);
}

function raftErrorCode(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return e instanceof RaftError ? e.code : `not a RaftError: ${String(e)}`;
  }
}

const addLearner = (nodeId: NodeId): ConfChange => ({ transition: 'auto', changes: [{ type: 'addLearner', nodeId }] });
const addVoter = (nodeId: NodeId): ConfChange => ({ transition: 'auto', changes: [{ type: 'addVoter', nodeId }] });
const removeNode = (nodeId: NodeId): ConfChange => ({ transition: 'auto', changes: [{ type: 'removeNode', nodeId }] });
const leaveJoint: ConfChange = { transition: 'auto', changes: [] };

/** A 3-node cluster with node 1 leader in term 2 and an empty node 4 attached to the network. */
function clusterWithSpare(overrides: Parameters<typeof newRaft>[2] = {}): Network {
  const net = new Network([1, 2, 3], overrides);
  putNode(net, newEmptyRaft(4, overrides));
  net.campaign(1);
  net.propose(1, 'a');
  return net;
}

// ============================== pre-vote and check-quorum ==============================

void t.test('pre-vote: a partitioned node does not bump its term and does not disrupt the leader when it rejoins (Reference: thesis section 9.6)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 60; i++) {
    net.tick(3);
    net.stabilize();
  }
  t.equal(net.node(3).term, 2, 'pre-elections never changed the term');
  t.equal(net.node(3).role, 'preCandidate');
  net.recover();
  net.tick(1);
  net.stabilize();
  t.equal(net.leader(), 1);
  t.equal(net.node(1).term, 2, 'the leader kept its term');
  t.equal(net.node(3).role, 'follower');
  t.equal(net.node(3).lead, 1);
  net.propose(1, 'x');
  for (const id of [1, 2, 3]) t.same(texts(net.applied.get(id)!), ['x'], `node ${id}`);
  t.end();
});

void t.test('two pre-candidates with the same log: only the higher id gets the other\'s pre-vote, so one campaigns (no split vote)', (t) => {
  const lastIndex = (r: Raft): number => r.log.lastIndex();
  const lastTerm = (r: Raft): number => r.log.lastTerm();
  const answer = (r: Raft, from: NodeId): Message | undefined => {
    r.step(msg({ type: 'preVote', from, to: r.id, term: r.term + 1, index: lastIndex(r), logTerm: lastTerm(r) }));
    return drainReady(r).messages.find((m) => m.type === 'preVoteResp' && m.to === from);
  };
  const low = newRaft(1, [1, 2, 3], { preVote: true });
  low.campaignNow();
  drainReady(low);
  t.equal(low.role, 'preCandidate');
  t.equal(answer(low, 2)?.reject, false, 'node 1, campaigning, grants node 2');
  const high = newRaft(2, [1, 2, 3], { preVote: true });
  high.campaignNow();
  drainReady(high);
  t.equal(high.role, 'preCandidate');
  t.equal(answer(high, 1)?.reject, true, 'node 2, campaigning, refuses node 1');
  t.equal(answer(high, 3)?.reject, false, 'and grants node 3 (a higher id)');
  // A follower (not campaigning itself) grants any up-to-date pre-candidate, as before.
  const follower = newRaft(3, [1, 2, 3], { preVote: true });
  t.equal(follower.role, 'follower');
  t.equal(answer(follower, 1)?.reject, false, 'a follower grants the lowest id too');
  // A pre-candidate with a longer log wins whatever the ids (the up-to-date check, unchanged).
  const longer = newRaft(1, [1, 2, 3], { preVote: true });
  longer.campaignNow();
  drainReady(longer);
  longer.step(msg({ type: 'preVote', from: 2, to: 1, term: longer.term + 1, index: lastIndex(longer) + 1, logTerm: lastTerm(longer) }));
  t.equal(drainReady(longer).messages.find((m) => m.type === 'preVoteResp')?.reject, false, 'a longer log is granted');
  t.end();
});

void t.test('without pre-vote the same partition does disrupt the leader (the contrast that makes the pre-vote test meaningful)', (t) => {
  const net = new Network([1, 2, 3], { preVote: false, checkQuorum: false });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 60; i++) {
    net.tick(3);
    net.stabilize();
  }
  t.ok(net.node(3).term >= 4, `the isolated node campaigned repeatedly (term ${net.node(3).term})`);
  net.recover();
  for (let i = 0; i < 20 && net.node(1).term === 2; i++) {
    net.tick(3);
    net.stabilize();
  }
  t.ok(net.node(1).term > 2, 'the leader was forced out of its term');
  t.end();
});

void t.test('check-quorum: a leader cut off from the majority steps down within two election timeouts (Reference: thesis section 6.2)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(1);
  for (let i = 0; i < 20; i++) net.tick(1);
  t.equal(net.node(1).role, 'follower');
  t.equal(net.node(1).lead, 0);
  t.equal(net.node(1).term, 2, 'stepping down does not change the term');
  // The majority side elects a new leader once its lease on the old one ran out.
  tickAll(net, 40, [2, 3]);
  const leader = [2, 3].find((id) => net.node(id).role === 'leader');
  t.ok(leader !== undefined, 'the majority elected a leader');
  t.ok(net.node(leader ?? 2).term >= 3);
  t.end();
});

void t.test('check-quorum: a leader in contact with a quorum keeps leading; without check-quorum an isolated one never steps down', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  tickAll(net, 100);
  t.equal(net.leader(), 1);
  t.equal(net.node(1).term, 2);
  const loose = new Network([1, 2, 3], { checkQuorum: false });
  loose.campaign(1);
  loose.isolate(1);
  for (let i = 0; i < 100; i++) loose.tick(1);
  t.equal(loose.node(1).role, 'leader', 'contrast: no check-quorum, no step-down');
  t.end();
});

// ============================== leadership transfer ==============================

void t.test('transfer: a caught-up target gets TimeoutNow and wins at once (Reference: thesis section 3.10)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  const mark = net.delivered.length;
  net.node(1).transferLeadership(2);
  net.stabilize();
  t.same(since(net, mark, 'timeoutNow').map((m) => [m.from, m.to]), [[1, 2]]);
  t.equal(net.leader(), 2);
  t.equal(net.node(2).term, 3);
  t.equal(net.node(1).role, 'follower');
  t.equal(net.node(1).lead, 2);
  net.propose(2, 'b');
  for (const id of [1, 2, 3]) t.same(texts(net.applied.get(id)!), ['a', 'b'], `node ${id}`);
  t.end();
});

void t.test('transfer: a lagging target is caught up before TimeoutNow (Reference: thesis section 3.10)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.dropFilter = (m) => m.to === 3;
  for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
  t.equal(net.node(3).log.lastIndex(), 2);
  net.recover();
  const mark = net.delivered.length;
  net.node(1).transferLeadership(3);
  net.stabilize();
  const events = net.delivered.slice(mark);
  t.equal(events.find((m) => m.from === 1 && m.to === 3)?.type, 'app', 'first an append to the lagging target');
  const timeoutAt = events.findIndex((m) => m.type === 'timeoutNow');
  const caughtUpAt = events.findIndex((m) => m.type === 'appResp' && m.from === 3 && !m.reject && m.index === 7);
  t.ok(caughtUpAt >= 0 && timeoutAt > caughtUpAt, `caught up (message ${caughtUpAt}) before TimeoutNow (message ${timeoutAt})`);
  t.equal(net.leader(), 3);
  t.same(texts(net.applied.get(3)!), ['v0', 'v1', 'v2', 'v3', 'v4']);
  t.end();
});

void t.test('transfer: proposals are dropped while a transfer is pending, and accepted again once it times out (Reference: thesis section 3.10)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.isolate(3);
  net.node(1).transferLeadership(3);
  net.stabilize();
  t.equal(raftErrorCode(() => net.node(1).propose([enc('dropped')])), 'ProposalDropped');
  for (let i = 0; i < 9; i++) {
    net.tick(1);
    net.stabilize();
  }
  t.equal(raftErrorCode(() => net.node(1).propose([enc('dropped')])), 'ProposalDropped', 'still pending before the election timeout');
  net.tick(1);
  net.stabilize();
  t.equal(net.leader(), 1, 'the transfer was abandoned, node 1 still leads');
  t.equal(raftErrorCode(() => net.propose(1, 'kept')), null);
  t.same(texts(net.applied.get(2)!), ['kept']);
  t.end();
});

void t.test('transfer: a follower forwards the request to the leader; requests for itself or a non-voter are ignored', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.node(1).transferLeadership(1);
  net.node(1).transferLeadership(99);
  net.stabilize();
  t.equal(net.leader(), 1);
  t.equal(raftErrorCode(() => net.propose(1, 'still-accepting')), null);
  net.node(3).transferLeadership(3);
  net.stabilize();
  t.equal(net.leader(), 3);
  t.equal(net.node(3).term, 3);
  t.end();
});

// ============================== reads ==============================

void t.test('ReadIndex on the leader: the read index is the commit index, after a heartbeat quorum (Reference: thesis section 6.4)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  const reads = recordReadStates(net);
  const ctx = enc('read-1');
  const mark = net.delivered.length;
  t.equal(net.node(1).readIndex(ctx), true);
  net.stabilize();
  t.same(reads.get(1), [{ index: 3, context: ctx }]);
  t.same(
    since(net, mark, 'heartbeat').map((m) => [m.to, new TextDecoder().decode(m.context ?? new Uint8Array())]),
    [
      [2, 'read-1'],
      [3, 'read-1'],
    ],
    'confirmed by a heartbeat round carrying the request',
  );
  t.end();
});

void t.test('ReadIndex on the leader waits for a quorum: none while isolated, answered once it heals (Reference: thesis section 6.4)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  const reads = recordReadStates(net);
  net.isolate(2);
  net.isolate(3);
  net.node(1).readIndex(enc('r'));
  for (let i = 0; i < 5; i++) {
    net.tick(1);
    net.stabilize();
  }
  t.same(reads.get(1), [], 'no read state without a quorum');
  net.recover();
  net.tick(1);
  net.stabilize();
  t.same(reads.get(1), [{ index: 3, context: enc('r') }]);
  t.end();
});

void t.test('ReadIndex on a follower: forwarded to the leader, answered with the leader\'s commit index (Reference: thesis section 6.4)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  net.propose(1, 'b');
  const reads = recordReadStates(net);
  const ctx = enc('follower-read');
  t.equal(net.node(2).readIndex(ctx), true);
  net.stabilize();
  t.same(reads.get(2), [{ index: 4, context: ctx }]);
  t.same(reads.get(1), [], 'the leader serves it for the follower, not for itself');
  // Without a known leader the request is refused at once.
  const lonely = newRaft(1, [1, 2, 3]);
  t.equal(lonely.readIndex(enc('x')), false);
  t.end();
});

void t.test('ReadIndex: a new leader defers reads until it has committed an entry of its term (Reference: thesis section 6.4)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  // Node 2 takes over, but its empty entry of term 3 (index 4) cannot reach anyone.
  net.dropFilter = (m) => m.from === 2 && m.type === 'app';
  net.node(1).transferLeadership(2);
  net.stabilize();
  t.equal(net.leader(), 2);
  t.equal(net.node(2).log.committed, 3, 'commit index still that of the previous term');
  const reads = recordReadStates(net);
  const ctx = enc('early');
  const mark = net.delivered.length;
  net.node(2).readIndex(ctx);
  for (let i = 0; i < 3; i++) {
    net.tick(2);
    net.stabilize();
  }
  t.same(reads.get(2), [], 'deferred');
  t.same(
    since(net, mark, 'heartbeat').filter((m) => m.context !== null),
    [],
    'no heartbeat round for it yet',
  );
  net.dropFilter = null;
  net.tick(2);
  net.stabilize();
  t.equal(net.node(2).log.committed, 4);
  t.same(reads.get(2), [{ index: 4, context: ctx }], 'answered with the commit index of its own term');
  t.end();
});

/** A lease-read cluster: timeouts fixed at 19 ticks, every node out of its initial lease, node 1 leader. */
function leaseCluster(): Network {
  const net = new Network([1, 2, 3], { readMode: 'lease', random: fixedRandom(9) });
  tickAll(net, 10); // a member starting in lease mode honours a lease it may have granted before a restart
  net.campaign(1);
  if (net.leader() !== 1) throw new Error('lease setup');
  net.tick(1); // one heartbeat round, acknowledged: the lease starts
  net.stabilize();
  return net;
}

void t.test('lease reads: served locally within the lease, by a quorum round once it has expired (Reference: thesis section 6.4.1)', (t) => {
  const net = leaseCluster();
  const reads = recordReadStates(net);
  // electionTicks 10, drift bound 100 permille: floor(10 * 900 / 1100) - 1 = 7 ticks of lease.
  const leaseTicks = 7;
  let mark = net.delivered.length;
  net.node(1).readIndex(enc('l1'));
  net.stabilize();
  t.same(reads.get(1), [{ index: 2, context: enc('l1') }]);
  t.same(since(net, mark, 'heartbeat'), [], 'no heartbeat needed');
  // Cut the leader off: the lease still holds for a while, then reads need a quorum it cannot reach.
  net.isolate(1);
  for (let i = 0; i < leaseTicks - 1; i++) net.tick(1);
  net.node(1).readIndex(enc('l2'));
  net.stabilize();
  t.same(reads.get(1)?.map((r) => new TextDecoder().decode(r.context)), ['l1', 'l2'], 'still in the lease');
  net.tick(1);
  t.equal(net.node(1).role, 'leader', 'still leader (check-quorum has not fired yet)');
  mark = net.delivered.length;
  net.node(1).readIndex(enc('l3'));
  net.stabilize();
  t.same(reads.get(1)?.length, 2, 'lease expired: the read waits for a quorum');
  net.recover();
  net.tick(1);
  net.stabilize();
  t.same(reads.get(1)?.map((r) => new TextDecoder().decode(r.context)), ['l1', 'l2', 'l3'], 'answered by the quorum round');
  t.ok(since(net, mark, 'heartbeat').length > 0);
  t.end();
});

void t.test('lease reads: once the leader has sent TimeoutNow it no longer trusts its lease (Reference: thesis section 6.4.1)', (t) => {
  const net = leaseCluster();
  const reads = recordReadStates(net);
  // Node 2 gets the TimeoutNow but nothing it sends arrives: node 1 does not learn of term 3.
  net.dropFilter = (m) => m.from === 2;
  net.node(1).transferLeadership(2);
  net.stabilize();
  t.equal(net.node(1).role, 'leader');
  const mark = net.delivered.length;
  net.node(1).readIndex(enc('after-transfer'));
  net.stabilize();
  t.ok(
    since(net, mark, 'heartbeat').some((m) => m.context !== null && new TextDecoder().decode(m.context) === 'after-transfer'),
    'the read went through a heartbeat round instead of the lease',
  );
  t.same(reads.get(1)?.length, 1, 'and node 3 confirmed it');
  t.end();
});

// ============================== membership ==============================

void t.test('membership: an added learner replicates the log but neither votes nor counts toward commit (Reference: thesis section 4.2.1)', (t) => {
  const net = clusterWithSpare();
  net.node(1).proposeConfChange(addLearner(4));
  net.stabilize();
  net.propose(1, 'b');
  t.same(net.node(1).status().confState, { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false });
  t.same(net.node(4).status().confState.learners, [4], 'the learner knows it is one');
  t.same(normalTexts(net.applied.get(4)!), ['a', 'b'], 'it receives and applies the log');
  t.equal(net.node(1).status().progress.get(4)?.isLearner, true);
  // Its acknowledgements do not commit anything.
  net.isolate(2);
  net.isolate(3);
  const committed = net.node(1).log.committed;
  net.propose(1, 'c');
  t.equal(net.node(4).log.lastIndex(), net.node(1).log.lastIndex(), 'the learner has the entry');
  t.equal(net.node(1).log.committed, committed, 'leader + learner is not a quorum');
  // It never campaigns.
  for (let i = 0; i < 50; i++) net.tick(4);
  net.node(4).campaignNow();
  net.stabilize();
  t.equal(net.node(4).role, 'follower');
  t.equal(net.node(4).term, 2);
  t.end();
});

void t.test('membership: a promoted learner becomes a voter and counts toward the quorum (Reference: thesis section 4.2.1)', (t) => {
  const net = clusterWithSpare();
  net.node(1).proposeConfChange(addLearner(4));
  net.stabilize();
  net.node(1).proposeConfChange(addVoter(4));
  net.stabilize();
  t.same(net.node(1).status().confState.voters, [1, 2, 3, 4]);
  t.same(net.node(1).status().confState.learners, []);
  t.same(net.node(4).status().confState.voters, [1, 2, 3, 4]);
  net.isolate(2);
  net.isolate(3);
  const before = net.node(1).log.committed;
  net.propose(1, 'two-of-four');
  t.equal(net.node(1).log.committed, before, '2 of 4 is no quorum');
  net.recover();
  net.isolate(3);
  net.propose(1, 'three-of-four');
  t.equal(net.node(1).log.committed, net.node(1).log.lastIndex(), '1, 2 and 4 are');
  t.same(normalTexts(net.applied.get(4)!), ['a', 'two-of-four', 'three-of-four']);
  t.end();
});

void t.test('membership: joint consensus entered explicitly needs both majorities and is left only on request (Reference: paper section 6)', (t) => {
  const net = clusterWithSpare();
  net.node(1).proposeConfChange(addLearner(4));
  net.stabilize();
  net.node(1).proposeConfChange({
    transition: 'joint-explicit',
    changes: [
      { type: 'addVoter', nodeId: 4 },
      { type: 'removeNode', nodeId: 3 },
    ],
  });
  net.stabilize();
  const joint = { voters: [1, 2, 4], votersOutgoing: [1, 2, 3], learners: [], learnersNext: [], autoLeave: false };
  t.same(net.node(1).status().confState, joint);
  tickAll(net, 5);
  t.same(net.node(1).status().confState, joint, 'no automatic leave');
  // C_new = {1,2,4} has a majority without C_old = {1,2,3}: not enough.
  net.isolate(2);
  net.isolate(3);
  const c0 = net.node(1).log.committed;
  const j1 = net.node(1).propose([enc('j1')]).index;
  net.stabilize();
  t.equal(net.node(4).log.lastIndex(), j1, 'node 4 stores j1');
  t.equal(net.node(1).log.committed, c0, 'j1 on {1,4}: a majority of C_new only');
  net.recover();
  net.isolate(2);
  net.isolate(4);
  const j2 = net.node(1).propose([enc('j2')]).index;
  net.stabilize();
  t.equal(net.node(3).log.lastIndex(), j2, 'node 3 stores j1 and j2');
  // j1 is now on {1,3,4}: majorities of both. j2 is on {1,3}: a majority of C_old only.
  t.equal(net.node(1).log.committed, j1, 'j1 committed by both majorities, j2 by C_old alone is not');
  net.recover();
  net.tick(1);
  net.stabilize();
  t.equal(net.node(1).log.committed, net.node(1).log.lastIndex(), 'both majorities');
  net.node(1).proposeConfChange(leaveJoint);
  net.stabilize();
  t.same(net.node(1).status().confState, { voters: [1, 2, 4], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false });
  t.same([...net.node(1).status().progress.keys()].sort(), [1, 2, 4], 'node 3 is no longer tracked');
  t.end();
});

void t.test('membership: a multi-node change with transition auto enters and leaves the joint configuration by itself (Reference: thesis section 4.3)', (t) => {
  const net = clusterWithSpare();
  net.node(1).proposeConfChange(addLearner(4));
  net.stabilize();
  const mark = net.applied.get(1)!.length;
  net.node(1).proposeConfChange({
    transition: 'auto',
    changes: [
      { type: 'addVoter', nodeId: 4 },
      { type: 'removeNode', nodeId: 3 },
    ],
  });
  net.stabilize();
  const cc = net.applied
    .get(1)!
    .slice(mark)
    .filter((e) => e.type === EntryType.ConfChange);
  t.equal(cc.length, 2, 'the change and the automatic leave');
  for (const id of [1, 2, 4]) {
    t.same(net.node(id).status().confState, { voters: [1, 2, 4], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, `node ${id}`);
  }
  net.propose(1, 'after');
  t.same(normalTexts(net.applied.get(4)!).slice(-1), ['after']);
  t.end();
});

void t.test('membership: a leader that removes itself steps down; the rest elect a leader among themselves (Reference: paper section 6)', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  net.propose(1, 'a');
  net.node(1).proposeConfChange(removeNode(1));
  net.stabilize();
  t.equal(net.node(1).role, 'follower');
  for (const id of [1, 2, 3]) t.same(net.node(id).status().confState.voters, [2, 3], `node ${id} config`);
  tickAll(net, 60);
  const leader = net.leader();
  t.ok(leader === 2 || leader === 3, `new leader ${leader}`);
  t.equal(net.node(1).role, 'follower', 'the removed node never campaigns');
  net.propose(leader ?? 2, 'b');
  t.same(normalTexts(net.applied.get(2)!), ['a', 'b']);
  t.same(normalTexts(net.applied.get(3)!), ['a', 'b']);
  t.same(normalTexts(net.applied.get(1)!), ['a'], 'the removed node receives nothing more');
  t.end();
});

void t.test('membership: a second change is refused while one is pending; invalid changes are refused', (t) => {
  const net = clusterWithSpare();
  net.node(1).proposeConfChange(addLearner(4));
  t.equal(raftErrorCode(() => net.node(1).proposeConfChange(addLearner(5))), 'ConfChangeRejected', 'pending');
  net.stabilize();
  t.equal(raftErrorCode(() => net.node(1).proposeConfChange(addLearner(5))), null, 'accepted once applied');
  net.stabilize();
  t.same(net.node(1).status().confState.learners, [4, 5]);
  t.equal(raftErrorCode(() => net.node(1).proposeConfChange(leaveJoint)), 'ConfChangeRejected', 'leave outside joint');
  t.equal(
    raftErrorCode(() =>
      net.node(1).proposeConfChange({ transition: 'auto', changes: [{ type: 'addVoter', nodeId: 4 }, { type: 'addVoter', nodeId: 5 }, { type: 'removeNode', nodeId: 1 }, { type: 'removeNode', nodeId: 2 }, { type: 'removeNode', nodeId: 3 }, { type: 'removeNode', nodeId: 4 }, { type: 'removeNode', nodeId: 5 }] }),
    ),
    'ConfChangeRejected',
    'no voters left',
  );
  t.equal(raftErrorCode(() => net.node(2).proposeConfChange(addLearner(6))), 'NotLeader');
  const single = new Network([1]);
  single.campaign(1);
  t.equal(raftErrorCode(() => single.node(1).proposeConfChange(removeNode(1))), 'ConfChangeRejected', 'removing the only voter');
  t.end();
});

/** Node 2 takes over from node 1 but its empty entry of the new term cannot be replicated yet. */
function newLeaderBeforeItsFirstCommit(overrides: Parameters<typeof newRaft>[2] = {}): Network {
  const net = new Network([1, 2, 3], overrides);
  net.campaign(1);
  net.propose(1, 'a');
  net.dropFilter = (m) => m.from === 2 && m.type === 'app';
  net.node(1).transferLeadership(2);
  net.stabilize();
  if (net.leader() !== 2) throw new Error('setup: node 2 did not take over');
  return net;
}

void t.test(
  'membership: a new leader refuses changes until its first entry of the term is applied (Reference: Ongaro, "bug in single-server membership changes", 2015)',
  (t) => {
    const net = newLeaderBeforeItsFirstCommit();
    const r = net.node(2);
    t.equal(r.log.applied, 3);
    t.equal(r.log.lastIndex(), 4, 'the empty entry of term 3 is at 4, uncommitted');
    t.equal(raftErrorCode(() => r.proposeConfChange(addLearner(4))), 'ConfChangeRejected');
    t.end();
  },
);

void t.test('membership: a new leader accepts changes once its first entry of the term is applied', (t) => {
  const net = newLeaderBeforeItsFirstCommit();
  net.dropFilter = null;
  net.tick(2);
  net.stabilize();
  t.equal(net.node(2).log.applied, 4);
  t.equal(raftErrorCode(() => net.node(2).proposeConfChange(addLearner(4))), null);
  t.end();
});

void t.test(
  'membership: auto-leave of a joint configuration never throws out of advance(), even when proposals are being throttled',
  (t) => {
    // The joint entry (node 1's, term 2) reaches nodes 2 and 3 but is not committed; node 1 then vanishes.
    const net = new Network([1, 2, 3], { uncommittedBytesMax: 50, appendMessageBytesMax: 10, checkQuorum: false });
    net.campaign(1);
    net.dropFilter = (m) => m.type === 'appResp' && m.to === 1;
    net.node(1).proposeConfChange({ transition: 'joint-implicit', changes: [{ type: 'addLearner', nodeId: 4 }] });
    net.stabilize();
    net.recover();
    net.isolate(1);
    // Node 2 wins term 3; its appends are held back while a client proposes 100 bytes.
    net.dropFilter = (m) => m.from === 2 && m.type === 'app';
    net.node(2).campaignNow();
    net.stabilize();
    t.equal(net.node(2).role, 'leader');
    net.node(2).propose([new Uint8Array(100)]);
    net.stabilize();
    // Appends flow again: the empty entry commits first (100 bytes do not fit in one 10-byte message),
    // the joint configuration is applied, and the leader proposes the automatic leave.
    net.dropFilter = null;
    t.doesNotThrow(() => {
      for (let i = 0; i < 5; i++) {
        net.tick(2);
        net.stabilize();
      }
    });
    t.same(net.node(2).status().confState.votersOutgoing, [], 'the joint configuration was left');
    t.end();
  },
);

// ============================== snapshots ==============================

function pattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff);
}

void t.test('snapshot: a follower behind a compacted log catches up through chunked snapshot messages (Reference: paper section 7)', (t) => {
  const net = new Network([1, 2, 3], { snapshotChunkBytes: 16 });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
  const leader = net.node(1);
  const snap = leader.createSnapshot(pattern(100));
  t.equal(snap.metadata.index, 12);
  t.equal(snap.metadata.term, 2);
  leader.compact(snap.metadata.index);
  t.equal(leader.log.firstIndex(), 13);
  net.recover();
  const mark = net.delivered.length;
  net.tick(1);
  net.stabilize();
  const chunks = since(net, mark, 'snap', 3);
  t.same(
    chunks.map((m) => [m.snapshot?.offset, m.snapshot?.data.byteLength, m.snapshot?.totalBytes]),
    [0, 16, 32, 48, 64, 80, 96].map((o) => [o, Math.min(16, 100 - o), 100]),
    'seven chunks of at most 16 bytes',
  );
  const f = net.node(3);
  t.same(f.log.snapshot?.data, pattern(100), 'the follower holds the whole snapshot');
  t.equal(f.log.snapshot?.metadata.index, 12);
  t.equal(f.log.committed, leader.log.committed);
  t.equal(f.log.lastIndex(), leader.log.lastIndex());
  t.same(logTerms(f), logTerms(leader));
  net.propose(1, 'after');
  t.same(texts(net.applied.get(3)!), ['after'], 'and then follows the log');
  t.end();
});

void t.test('snapshot: a lost chunk is detected and the transfer resumes from what the follower has (Reference: paper section 7)', (t) => {
  const net = new Network([1, 2, 3], { snapshotChunkBytes: 16 });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 4; i++) net.propose(1, `v${i}`);
  const leader = net.node(1);
  leader.compact(leader.createSnapshot(pattern(100)).metadata.index);
  net.recover();
  let dropped = 0;
  net.dropFilter = (m) => {
    if (m.type === 'snap' && m.snapshot?.offset === 32 && dropped === 0) {
      dropped++;
      return true;
    }
    return false;
  };
  const mark = net.delivered.length;
  for (let i = 0; i < 3; i++) {
    net.tick(1);
    net.stabilize();
  }
  t.equal(dropped, 1);
  t.ok(since(net, mark, 'snapResp', 1).some((m) => m.reject), 'the gap was reported');
  t.same(net.node(3).log.snapshot?.data, pattern(100));
  t.equal(net.node(3).log.lastIndex(), leader.log.lastIndex());
  t.end();
});

void t.test('snapshot: a brand-new learner added after compaction is brought up by snapshot (Reference: paper section 7)', (t) => {
  const net = clusterWithSpare({ snapshotChunkBytes: 16 });
  for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
  const leader = net.node(1);
  const snap = leader.createSnapshot(pattern(40));
  leader.compact(snap.metadata.index);
  const mark = net.delivered.length;
  net.node(1).proposeConfChange(addLearner(4));
  net.stabilize();
  t.equal(since(net, mark, 'snap', 4).length, 3, '40 bytes in chunks of 16');
  const n4 = net.node(4);
  t.same(n4.log.snapshot?.data, pattern(40));
  t.equal(n4.log.lastIndex(), leader.log.lastIndex());
  t.equal(n4.log.committed, leader.log.committed);
  t.same(n4.status().confState.learners, [4]);
  t.end();
});

// ============================== flow control ==============================

void t.test('flow control: inflightMessagesMax caps the unacknowledged appends to one follower', (t) => {
  const net = new Network([1, 2, 3], { inflightMessagesMax: 3 });
  net.campaign(1);
  t.equal(net.node(1).status().progress.get(2)?.state, 'replicate');
  net.dropFilter = (m) => m.type === 'appResp' && m.from === 2; // node 2 receives, but its acks are lost
  const mark = net.delivered.length;
  for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
  const toSlow = since(net, mark, 'app', 2).filter((m) => m.entries.length > 0);
  t.equal(toSlow.length, 3, 'three unacknowledged appends, then nothing');
  t.equal(net.node(2).log.lastIndex(), 5);
  t.equal(since(net, mark, 'app', 3).filter((m) => m.entries.length > 0).length, 10, 'the healthy follower is not held back');
  t.equal(net.node(1).log.committed, 12);
  t.end();
});

void t.test(
  'flow control: a follower whose appends (or acks) were lost with a full window catches up after the network heals',
  (t) => {
    const net = new Network([1, 2, 3], { inflightMessagesMax: 2 });
    net.campaign(1);
    net.dropFilter = (m) => m.to === 2 && m.type === 'app';
    for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
    net.dropFilter = null;
    for (let i = 0; i < 20; i++) {
      net.tick(1);
      net.stabilize();
    }
    t.equal(net.node(2).log.lastIndex(), net.node(1).log.lastIndex(), 'caught up');
    t.same(texts(net.applied.get(2)!), ['v0', 'v1', 'v2', 'v3', 'v4']);
    t.end();
  },
);

void t.test('flow control: appendMessageBytesMax caps one append, which always carries at least one entry', (t) => {
  const net = new Network([1, 2, 3], { appendMessageBytesMax: 10 });
  net.campaign(1);
  net.isolate(2);
  for (const s of ['aaaa', 'bbbb', 'cccc', 'dddd', 'x'.repeat(25), 'eeee', 'ffff']) net.propose(1, s);
  net.recover();
  const mark = net.delivered.length;
  net.tick(1);
  net.stabilize();
  const apps = since(net, mark, 'app', 2).filter((m) => m.entries.length > 0);
  for (const m of apps) {
    const bytes = dataBytes(m.entries);
    t.ok(bytes <= 10 || m.entries.length === 1, `append of ${m.entries.length} entries, ${bytes} bytes`);
  }
  t.ok(apps.some((m) => m.entries.length === 1 && dataBytes(m.entries) === 25), 'the oversized entry went alone');
  t.equal(Math.max(...apps.map((m) => m.entries.filter((e) => e.data.byteLength > 0).length)), 2, 'two 4-byte entries fit, three do not');
  t.same(texts(net.applied.get(2)!), ['aaaa', 'bbbb', 'cccc', 'dddd', 'x'.repeat(25), 'eeee', 'ffff']);
  t.end();
});

// ============================== odd messages ==============================

/** Cores in each role, fresh for every probe. */
function coreInRole(role: 'follower' | 'preCandidate' | 'candidate' | 'leader' | 'learner'): Raft {
  switch (role) {
    case 'follower': {
      const r = newRaft(1, [1, 2, 3]);
      r.step(msg({ type: 'app', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: [{ term: 2, index: 2, type: EntryType.Normal, data: enc('z') }], commit: 2 }));
      drainReady(r);
      return r;
    }
    case 'preCandidate':
    case 'candidate': {
      const r = newRaft(1, [1, 2, 3], { preVote: role === 'preCandidate' });
      r.campaignNow();
      drainReady(r);
      return r;
    }
    case 'leader': {
      const r = newRaft(1, [1, 2, 3]);
      r.campaignNow();
      r.step(msg({ type: 'preVoteResp', from: 2, to: 1, term: 2 }));
      r.step(msg({ type: 'voteResp', from: 2, to: 1, term: 2 }));
      drainReady(r);
      r.step(msg({ type: 'appResp', from: 2, to: 1, term: 2, index: 2 }));
      drainReady(r);
      return r;
    }
    case 'learner': {
      const r = newRaft(1, [2, 3]);
      drainReady(r);
      return r;
    }
  }
}

void t.test('odd messages: unknown senders, stale or zero terms, wrong recipients and empty payloads do not crash any role', (t) => {
  const roles = ['follower', 'preCandidate', 'candidate', 'leader', 'learner'] as const;
  let probes = 0;
  for (const role of roles) {
    for (const type of messageTypes) {
      for (const from of [2, 99]) {
        for (const termDelta of [-100, 0, 1]) {
          for (const to of [1, 7]) {
            const r = coreInRole(role);
            const before = { term: r.term, role: r.role, commit: r.log.committed, last: r.log.lastIndex() };
            const term = Math.max(0, r.term + termDelta);
            const m = msg({ type, from, to, term, index: 0, logTerm: 0, commit: 0 });
            const label = `${role} <- ${type} from ${from} to ${to} term ${term}`;
            try {
              r.step(m);
              drainReady(r);
            } catch (e) {
              t.fail(`${label}: threw ${String(e)}`);
              continue;
            }
            probes++;
            if (to !== 1) t.same({ term: r.term, role: r.role }, { term: before.term, role: before.role }, `${label}: ignored`);
            if (termDelta < 0) {
              if (r.term !== before.term || r.log.committed !== before.commit || r.log.lastIndex() !== before.last) {
                t.fail(`${label}: a stale message changed state`);
              }
            }
            if (r.term < before.term || r.log.committed < before.commit) t.fail(`${label}: term or commit went backwards`);
          }
        }
      }
    }
  }
  t.equal(probes, roles.length * messageTypes.length * 2 * 3 * 2);
  t.end();
});

void t.test('odd messages: a heartbeat or append announcing a commit beyond the follower\'s log is bounded by the log', (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.step(msg({ type: 'heartbeat', from: 2, to: 1, term: 2, commit: 1000 }));
  t.equal(r.log.committed, 1);
  r.step(msg({ type: 'app', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: [{ term: 2, index: 2, type: EntryType.Normal, data: enc('q') }], commit: 1000 }));
  t.equal(r.log.committed, 2);
  t.end();
});

void t.test('odd messages: a leader ignores acknowledgements and reads from unknown members without changing its state', (t) => {
  const r = coreInRole('leader');
  const before = r.status();
  r.step(msg({ type: 'appResp', from: 99, to: 1, term: r.term, index: 1000 }));
  r.step(msg({ type: 'heartbeatResp', from: 99, to: 1, term: r.term, index: 1000, context: enc('nope') }));
  r.step(msg({ type: 'snapResp', from: 99, to: 1, term: r.term, index: 5, rejectHint: 1 }));
  r.step(msg({ type: 'readIndex', from: 2, to: 1, term: 0, context: enc('zero-term') }));
  r.step(msg({ type: 'transferLeader', from: 99, to: 1, term: r.term, index: 99 }));
  const out = drainReady(r);
  t.same(out.readStates, []);
  t.same(out.messages.filter((m) => m.type === 'readIndexResp' || m.type === 'timeoutNow'), []);
  const after = r.status();
  t.same([after.role, after.term, after.commit, [...after.progress.keys()]], [before.role, before.term, before.commit, [...before.progress.keys()]]);
  t.equal(raftErrorCode(() => r.propose([enc('ok')])), null, 'still accepting proposals (no transfer started)');
  t.end();
});

void t.test('odd messages: random well-formed traffic never crashes a core (seeded)', (t) => {
  let steps = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rand = seededRandom(seed);
    const roles = ['follower', 'preCandidate', 'candidate', 'leader', 'learner'] as const;
    const r = coreInRole(roles[rand.int(roles.length)]!);
    for (let i = 0; i < 60; i++) {
      const type = messageTypes[rand.int(messageTypes.length)]!;
      const term = Math.max(0, r.term - 1 + rand.int(3));
      const last = r.log.lastIndex();
      const index = rand.int(last + 3);
      const logTerm = rand.int(term + 1);
      // Entries that follow (index, logTerm) contiguously, with terms in [logTerm, term].
      const count = type === 'app' ? rand.int(4) : 0;
      const entries: Entry[] = [];
      let et = Math.max(1, logTerm);
      for (let k = 0; k < count; k++) {
        et = Math.min(Math.max(1, term), et + rand.int(2));
        entries.push({ term: et, index: index + 1 + k, type: EntryType.Normal, data: enc(`r${k}`) });
      }
      const m = msg({ type, from: 1 + rand.int(4), to: 1, term, index, logTerm, entries, commit: rand.int(last + 4), reject: rand.int(2) === 0, rejectHint: rand.int(last + 2), context: rand.int(2) === 0 ? null : enc(`c${rand.int(3)}`) });
      try {
        r.step(m);
        if (rand.int(3) === 0) r.tick();
        drainReady(r);
        steps++;
      } catch (e) {
        t.fail(`seed ${seed} step ${i}: ${JSON.stringify({ ...m, entries: m.entries.map((x) => [x.index, x.term]), context: null })} threw ${String(e)}`);
        break;
      }
    }
  }
  t.ok(steps > 0);
  t.end();
});

void t.test(
  'odd messages: a corrupted append whose entries do not follow its previous index is dropped, not a crash',
  (t) => {
    const z = (index: number): Entry => ({ term: 2, index, type: EntryType.Normal, data: enc(`z${index}`) });
    const corrupted: [string, Message][] = [
      ['gap after the previous index', msg({ type: 'app', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: [z(5)], commit: 5 })],
      ['repeated index', msg({ type: 'app', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries: [z(2), z(2)], commit: 3 })],
    ];
    for (const [name, m] of corrupted) {
      const r = newRaft(1, [1, 2, 3]);
      t.doesNotThrow(() => {
        r.step(m);
        drainReady(r);
      }, name);
      t.equal(r.log.committed, 1, `${name}: nothing committed`);
    }
    t.end();
  },
);

void t.test(
  'liveness: after random message loss, partitions, restarts and compactions, a healed cluster commits on every node (seeded)',
  (t) => {
    const stuck: string[] = [];
    for (let seed = 1; seed <= 40; seed++) {
      const rnd = seededRandom(seed);
      const rand = (n: number) => rnd.int(n);
      const ids = [1, 2, 3, 4, 5];
      const mode = seed % 3 === 0 ? { preVote: false, checkQuorum: false } : seed % 3 === 1 ? {} : { readMode: 'lease' as const };
      const net = new Network(ids, { ...mode, snapshotChunkBytes: 8, inflightMessagesMax: 4 });
      const lossy = () => {
        net.dropFilter = () => rand(10) === 0;
      };
      lossy();
      let p = 0;
      for (let step = 0; step < 300; step++) {
        const a = rand(12);
        if (a === 0) {
          net.recover();
          net.isolate(ids[rand(5)]!);
          lossy();
        } else if (a === 1) {
          net.recover();
          lossy();
        } else if (a <= 4) {
          const l = net.leader();
          if (l !== null) {
            try {
              net.node(l).propose([enc(`p${p++}`)]);
            } catch {
              // dropped: fine
            }
          }
        } else if (a === 5) {
          const r = net.node(ids[rand(5)]!);
          if (r.log.applied > r.log.snapshotIndex() + 2) r.compact(r.createSnapshot(enc(`s${r.log.applied}`)).metadata.index);
        } else if (a === 6) {
          restartNode(net, ids[rand(5)]!);
        } else {
          for (const id of ids) net.node(id).tick();
        }
        net.stabilize();
      }
      net.recover();
      tickAll(net, 100);
      const l = net.leader();
      if (l === null) {
        stuck.push(`seed ${seed}: no leader`);
        continue;
      }
      net.propose(l, 'final');
      tickAll(net, 5);
      const last = net.node(l).log.lastIndex();
      const behind = ids.filter((id) => net.node(id).log.committed < last);
      if (behind.length > 0) stuck.push(`seed ${seed}: nodes ${behind.join(',')} behind leader ${l}`);
      if (conflictingApplies(net).length > 0) t.fail(`seed ${seed}: ${conflictingApplies(net).join('; ')}`);
    }
    t.same(stuck, []);
    t.end();
  },
);

function conflictingApplies(net: Network): string[] {
  const seen = new Map<number, number>();
  const out: string[] = [];
  for (const [id, list] of net.applied) {
    for (const e of list) {
      const term = seen.get(e.index);
      if (term === undefined) seen.set(e.index, e.term);
      else if (term !== e.term) out.push(`node ${id} applied term ${e.term} at ${e.index}, another node term ${term}`);
    }
  }
  return out;
}
