/**
 * The scenarios of the Raft paper ("In Search of an Understandable Consensus Algorithm", extended version),
 * section 5, as executable tests in the style of etcd's raft_paper_test.go. Each test names the section it
 * checks. Single cores are driven by hand (messages stepped in, Readies drained); multi-node scenarios use
 * the synchronous in-memory Network of harness.ts.
 *
 * In this core a founding member starts from a bootstrap snapshot at index 1, term 1, so the paper's
 * index 1 (term 1) is that snapshot and the paper's index i > 1 is log index i here.
 */
import t from 'tap';
import type { Raft } from '../../src/raft/raft.ts';
import type { Entry, Message, MessageType, NodeId } from '../../src/raft/types.ts';
import type { PlantedBug } from '../../src/raft/config.ts';
import {
  Network,
  drainReady,
  entriesWithTerms,
  fixedRandom,
  logTerms,
  msg,
  newRaft,
  newRaftWithLog,
  putNode,
  restartNode,
  seededRandom,
  texts,
} from './harness.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function ofType(ms: readonly Message[], type: MessageType): Message[] {
  return ms.filter((m) => m.type === type);
}

/** Node 1 as leader of `ids` in term 2 (no pre-vote), every follower acknowledged the empty entry at index 2. */
function electLeader(ids: readonly NodeId[], overrides: Parameters<typeof newRaft>[2] = {}): Raft {
  const r = newRaft(1, ids, { preVote: false, ...overrides });
  r.campaignNow();
  for (const id of ids) if (id !== 1 && r.role === 'candidate') r.step(msg({ type: 'voteResp', from: id, to: 1, term: 2 }));
  drainReady(r);
  if (r.role !== 'leader') throw new Error('setup: node 1 did not become leader');
  for (const id of ids) if (id !== 1) r.step(msg({ type: 'appResp', from: id, to: 1, term: 2, index: 2 }));
  drainReady(r);
  return r;
}

// ============================== §5.1 terms ==============================

void t.test('§5.1 a follower that sees a higher term adopts it (Reference: section 5.1)', (t) => {
  // An AppendEntries from a newer leader: adopt the term and the leader.
  const f = newRaft(1, [1, 2, 3]);
  f.step(msg({ type: 'app', from: 2, to: 1, term: 5, index: 1, logTerm: 1 }));
  t.equal(f.term, 5);
  t.equal(f.role, 'follower');
  t.equal(f.lead, 2);
  // A vote request of a newer term (the follower is not within a leader lease): adopt the term, no leader.
  const g = newRaft(1, [1, 2, 3]);
  g.step(msg({ type: 'vote', from: 3, to: 1, term: 7, index: 1, logTerm: 1 }));
  t.equal(g.term, 7);
  t.equal(g.role, 'follower');
  t.equal(g.lead, 0);
  t.end();
});

void t.test('§5.1 a candidate that sees a higher term reverts to follower (Reference: section 5.1)', (t) => {
  const c = newRaft(1, [1, 2, 3], { preVote: false });
  c.campaignNow();
  t.equal(c.role, 'candidate');
  t.equal(c.term, 2);
  c.step(msg({ type: 'heartbeat', from: 3, to: 1, term: 4 }));
  t.equal(c.role, 'follower');
  t.equal(c.term, 4);
  t.equal(c.lead, 3);
  // A vote response of a newer term (a rejection from a more advanced voter) also turns it into a follower.
  const d = newRaft(1, [1, 2, 3], { preVote: false });
  d.campaignNow();
  d.step(msg({ type: 'voteResp', from: 2, to: 1, term: 9, reject: true }));
  t.equal(d.role, 'follower');
  t.equal(d.term, 9);
  t.equal(d.lead, 0);
  t.end();
});

void t.test('§5.1 a leader that sees a higher term reverts to follower (Reference: section 5.1)', (t) => {
  const l = electLeader([1, 2, 3]);
  t.equal(l.role, 'leader');
  l.step(msg({ type: 'app', from: 2, to: 1, term: 3, index: 2, logTerm: 2 }));
  t.equal(l.role, 'follower');
  t.equal(l.term, 3);
  t.equal(l.lead, 2);
  // The rejection of a stale leader's append (the follower answers with its newer term) deposes it too.
  const k = electLeader([1, 2, 3]);
  k.step(msg({ type: 'appResp', from: 3, to: 1, term: 6 }));
  t.equal(k.role, 'follower');
  t.equal(k.term, 6);
  t.end();
});

void t.test('§5.1 a request with a stale term is rejected (Reference: section 5.1)', (t) => {
  const f = newRaft(1, [1, 2, 3]);
  f.step(msg({ type: 'app', from: 2, to: 1, term: 3, index: 1, logTerm: 1 }));
  drainReady(f);
  // A deposed leader of term 2 tries to append: the log is untouched and the answer carries term 3.
  f.step(msg({ type: 'app', from: 3, to: 1, term: 2, index: 1, logTerm: 1, entries: entriesWithTerms([2]), commit: 2 }));
  t.equal(f.log.lastIndex(), 1, 'stale entries were not appended');
  t.equal(f.log.committed, 1, 'stale commit index ignored');
  t.equal(f.term, 3);
  t.equal(f.lead, 2, 'still following the current leader');
  const out = drainReady(f).messages;
  t.same(
    out.map((m) => [m.type, m.to, m.term, m.reject]),
    [['appResp', 3, 3, false]],
    'the stale leader learns the newer term',
  );
  // A stale vote request gets no vote; a stale pre-vote request is explicitly rejected.
  f.step(msg({ type: 'vote', from: 3, to: 1, term: 2, index: 9, logTerm: 9 }));
  f.step(msg({ type: 'preVote', from: 3, to: 1, term: 2, index: 9, logTerm: 9 }));
  t.equal(f.vote, 0, 'no vote granted');
  t.same(
    drainReady(f).messages.map((m) => [m.type, m.to, m.term, m.reject]),
    [['preVoteResp', 3, 3, true]],
  );
  t.end();
});

void t.test('§5.1 a stale leader hears the newer term without pre-vote or check-quorum too', (t) => {
  // A leader removed from the configuration hears no campaign: the answer to its heartbeats is its only way
  // to learn that the member it handed over to now leads (sim seed 1175: it led its old term forever).
  const f = newRaft(1, [1, 2, 3], { preVote: false, checkQuorum: false });
  f.step(msg({ type: 'app', from: 2, to: 1, term: 3, index: 1, logTerm: 1 }));
  drainReady(f);
  for (const type of ['heartbeat', 'app'] as const) {
    f.step(msg({ type, from: 3, to: 1, term: 2, index: 1, logTerm: 1 }));
    t.same(
      drainReady(f).messages.map((m) => [m.type, m.to, m.term, m.reject]),
      [['appResp', 3, 3, false]],
      `a stale ${type} is answered with the newer term`,
    );
  }
  t.equal(f.lead, 2, 'still following the current leader');
  // That the stale leader steps down on such an answer is the §5.1 test above ('a leader that sees a higher term').
  t.end();
});

// ============================== §5.2 leader election ==============================

void t.test('§5.2 servers start as followers (Reference: section 5.2)', (t) => {
  const r = newRaft(1, [1, 2, 3]);
  t.equal(r.role, 'follower');
  t.equal(r.term, 1);
  t.equal(r.lead, 0);
  t.equal(r.vote, 0);
  t.end();
});

void t.test('§5.2 a leader sends heartbeats every heartbeat interval (Reference: section 5.2)', (t) => {
  const l = electLeader([1, 2, 3], { heartbeatTicks: 3 });
  l.tick();
  l.tick();
  t.same(ofType(drainReady(l).messages, 'heartbeat'), [], 'no heartbeat before the interval');
  l.tick();
  const beats = ofType(drainReady(l).messages, 'heartbeat');
  t.same(
    beats.map((m) => [m.to, m.term, m.commit]),
    [
      [2, 2, 2],
      [3, 2, 2],
    ],
  );
  t.end();
});

void t.test('§5.2 a follower that times out starts an election (Reference: section 5.2)', (t) => {
  // fixedRandom(0): the randomized timeout is exactly electionTicks (10).
  const r = newRaft(1, [1, 2, 3], { preVote: false, random: fixedRandom(0) });
  for (let i = 0; i < 9; i++) r.tick();
  t.equal(r.role, 'follower', 'not before the timeout');
  t.same(drainReady(r).messages, []);
  r.tick();
  t.equal(r.role, 'candidate');
  t.equal(r.term, 2, 'increments its term');
  t.equal(r.vote, 1, 'votes for itself');
  t.same(
    ofType(drainReady(r).messages, 'vote').map((m) => [m.to, m.term, m.index, m.logTerm]),
    [
      [2, 2, 1, 1],
      [3, 2, 1, 1],
    ],
    'RequestVote to every other voter',
  );
  t.end();
});

void t.test('§5.2 a candidate that times out starts a new election in a new term (Reference: section 5.2)', (t) => {
  const r = newRaft(1, [1, 2, 3], { preVote: false, random: fixedRandom(0) });
  r.campaignNow();
  drainReady(r);
  t.equal(r.term, 2);
  for (let i = 0; i < 10; i++) r.tick();
  t.equal(r.role, 'candidate');
  t.equal(r.term, 3);
  t.same(ofType(drainReady(r).messages, 'vote').map((m) => [m.to, m.term]), [[2, 3], [3, 3]]);
  t.end();
});

void t.test('pre-vote: a timeout starts a pre-election that does not change the term (Reference: thesis section 9.6)', (t) => {
  const r = newRaft(1, [1, 2, 3], { preVote: true, random: fixedRandom(0) });
  for (let i = 0; i < 10; i++) r.tick();
  t.equal(r.role, 'preCandidate');
  t.equal(r.term, 1, 'term unchanged');
  t.equal(r.vote, 0, 'no vote cast');
  t.same(ofType(drainReady(r).messages, 'preVote').map((m) => [m.to, m.term]), [[2, 2], [3, 2]], 'asks for term + 1');
  // Winning the pre-vote starts the real election.
  r.step(msg({ type: 'preVoteResp', from: 2, to: 1, term: 2 }));
  t.equal(r.role, 'candidate');
  t.equal(r.term, 2);
  t.end();
});

void t.test('§5.2 a candidate wins, loses or waits according to the votes of one round (Reference: section 5.2)', (t) => {
  // [cluster size, votes (true = granted), expected role]
  const cases: [number, Record<number, boolean>, string][] = [
    [1, {}, 'leader'],
    [3, { 2: true, 3: true }, 'leader'],
    [3, { 2: true }, 'leader'],
    [5, { 2: true, 3: true, 4: true, 5: true }, 'leader'],
    [5, { 2: true, 3: true, 4: true }, 'leader'],
    [5, { 2: true, 3: true }, 'leader'],
    [3, {}, 'candidate'],
    [5, { 2: true }, 'candidate'],
    [5, { 2: true, 3: false, 4: false }, 'candidate'],
    [3, { 2: false, 3: false }, 'follower'],
    [5, { 2: true, 3: false, 4: false, 5: false }, 'follower'],
  ];
  for (const [size, votes, role] of cases) {
    const ids = Array.from({ length: size }, (_, i) => i + 1);
    const r = newRaft(1, ids, { preVote: false });
    r.campaignNow();
    for (const [from, granted] of Object.entries(votes)) {
      r.step(msg({ type: 'voteResp', from: Number(from), to: 1, term: 2, reject: !granted }));
    }
    t.equal(r.role, role, `size ${size}, votes ${JSON.stringify(votes)}`);
    t.equal(r.term, 2);
  }
  t.end();
});

function voteAnswers(out: readonly Message[]): [NodeId, boolean][] {
  return ofType(out, 'voteResp').map((m) => [m.to, !m.reject]);
}

void t.test('§5.2 each server votes for at most one candidate per term, first come first served (Reference: section 5.2)', (t) => {
  const run = (bugs: PlantedBug[]) => {
    const r = newRaft(1, [1, 2, 3], { bugs: new Set(bugs) });
    r.step(msg({ type: 'vote', from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
    r.step(msg({ type: 'vote', from: 3, to: 1, term: 2, index: 1, logTerm: 1 }));
    r.step(msg({ type: 'vote', from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
    return { vote: r.vote, answers: voteAnswers(drainReady(r).messages) };
  };
  const ok = run([]);
  t.equal(ok.vote, 2);
  t.same(ok.answers, [
    [2, true],
    [3, false],
    [2, true],
  ], 'the first candidate gets the vote, the second is refused, a retransmission is granted again');
  // The same scenario against a core with the planted double-vote bug shows the check bites.
  const bad = run(['double-vote']);
  t.same(bad.answers[1], [3, true], 'planted bug: a second vote in the same term');
  t.end();
});

void t.test('§5.2 a candidate that hears from a leader of its term becomes a follower (Reference: section 5.2)', (t) => {
  for (const type of ['app', 'heartbeat'] as const) {
    const c = newRaft(1, [1, 2, 3], { preVote: false });
    c.campaignNow();
    c.step(msg({ type, from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
    t.equal(c.role, 'follower', type);
    t.equal(c.term, 2);
    t.equal(c.lead, 2);
  }
  // A pre-candidate too (it is still in the leader's term).
  const p = newRaft(1, [1, 2, 3], { preVote: true });
  p.campaignNow();
  t.equal(p.role, 'preCandidate');
  p.step(msg({ type: 'heartbeat', from: 3, to: 1, term: 1 }));
  t.equal(p.role, 'follower');
  t.equal(p.lead, 3);
  t.end();
});

/** Ticks a fresh follower until it campaigns; returns the number of ticks. */
function ticksToCampaign(r: Raft): number {
  for (let i = 1; i <= 100; i++) {
    r.tick();
    if (r.role !== 'follower') return i;
  }
  return -1;
}

void t.test('§5.2 election timeouts are randomized in [electionTicks, 2 * electionTicks) (Reference: section 5.2)', (t) => {
  for (let k = 0; k < 10; k++) {
    const r = newRaft(1, [1, 2, 3], { preVote: false, random: fixedRandom(k) });
    t.equal(ticksToCampaign(r), 10 + k, `random draw ${k}`);
  }
  const seen = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const n = ticksToCampaign(newRaft(1, [1, 2, 3], { preVote: false, random: seededRandom(seed) }));
    t.ok(n >= 10 && n < 20, `seed ${seed}: ${n} ticks`);
    seen.add(n);
  }
  t.equal(seen.size, 10, 'every timeout in the range occurs: timeouts rarely coincide');
  t.end();
});

void t.test('§5.2 a split vote elects no leader; a later timeout resolves it (Reference: section 5.2)', (t) => {
  const net = new Network([1, 2, 3, 4], { preVote: false, checkQuorum: false, random: fixedRandom(0) });
  // Nodes 1 and 3 campaign at once in term 2; 2 hears only from 1 and 4 only from 3.
  net.node(1).campaignNow();
  net.node(3).campaignNow();
  net.dropFilter = (m) => (m.type === 'vote' && ((m.from === 1 && m.to !== 2) || (m.from === 3 && m.to !== 4)));
  net.stabilize();
  t.equal(net.leader(), null, 'two votes of four is no majority');
  t.equal(net.node(1).role, 'candidate');
  t.equal(net.node(3).role, 'candidate');
  t.equal(net.node(1).term, 2);
  t.equal(net.node(3).term, 2);
  t.equal(net.node(2).vote, 1);
  t.equal(net.node(4).vote, 3);
  // Node 1 times out first (its timeout is exactly electionTicks) and wins term 3.
  net.recover();
  for (let i = 0; i < 10; i++) net.tick(1);
  net.stabilize();
  t.equal(net.leader(), 1);
  t.equal(net.node(1).term, 3);
  for (const id of [2, 3, 4]) {
    t.equal(net.node(id).role, 'follower', `node ${id}`);
    t.equal(net.node(id).lead, 1);
  }
  t.end();
});

// ============================== §5.3 log replication ==============================

void t.test('§5.3 the leader appends a proposal and sends AppendEntries with the previous entry and its commit (Reference: section 5.3)', (t) => {
  const l = electLeader([1, 2, 3]);
  t.equal(l.log.committed, 2);
  const res = l.propose([enc('x')]);
  t.same(res, { index: 3, term: 2 });
  t.equal(l.log.lastIndex(), 3);
  t.equal(l.log.term(3), 2);
  const apps = ofType(drainReady(l).messages, 'app');
  t.same(
    apps.map((m) => ({ to: m.to, term: m.term, index: m.index, logTerm: m.logTerm, commit: m.commit, entries: m.entries.map((e) => [e.index, e.term]) })),
    [
      { to: 2, term: 2, index: 2, logTerm: 2, commit: 2, entries: [[3, 2]] },
      { to: 3, term: 2, index: 2, logTerm: 2, commit: 2, entries: [[3, 2]] },
    ],
  );
  t.equal(l.log.committed, 2, 'not committed before a majority has it');
  t.end();
});

void t.test('§5.3 the leader commits an entry once a majority stores it, and applies it (Reference: section 5.3)', (t) => {
  const l = electLeader([1, 2, 3, 4, 5]);
  l.propose([enc('x')]);
  drainReady(l);
  l.step(msg({ type: 'appResp', from: 2, to: 1, term: 2, index: 3 }));
  t.equal(l.log.committed, 2, 'leader + 1 of 5 is no majority');
  t.same(drainReady(l).committed, []);
  l.step(msg({ type: 'appResp', from: 3, to: 1, term: 2, index: 3 }));
  t.equal(l.log.committed, 3, 'leader + 2 of 5 is a majority');
  const out = drainReady(l);
  t.same(texts(out.committed), ['x'], 'the committed entry is handed to the state machine');
  // The new commit index goes out to the followers with the next AppendEntries.
  t.same(
    ofType(out.messages, 'app').map((m) => [m.to, m.commit]),
    [
      [2, 3],
      [3, 3],
      [4, 3],
      [5, 3],
    ],
  );
  t.end();
});

void t.test('§5.3 the leader commits exactly when a quorum has acknowledged (Reference: section 5.3)', (t) => {
  // [cluster size, acknowledging followers, committed?]
  const cases: [number, number[], boolean][] = [
    [1, [], true],
    [3, [], false],
    [3, [2], true],
    [3, [2, 3], true],
    [4, [2], false],
    [4, [2, 3], true],
    [5, [2], false],
    [5, [2, 3], true],
    [5, [4, 5], true],
  ];
  for (const [size, acks, committed] of cases) {
    const ids = Array.from({ length: size }, (_, i) => i + 1);
    const l = electLeader(ids);
    const { index } = l.propose([enc('y')]);
    drainReady(l);
    for (const from of acks) l.step(msg({ type: 'appResp', from, to: 1, term: 2, index }));
    drainReady(l);
    t.equal(l.log.committed, committed ? index : index - 1, `size ${size}, acks ${JSON.stringify(acks)}`);
  }
  t.end();
});

void t.test('§5.3 committing an entry commits every preceding entry, including earlier leaders\' (Reference: section 5.3)', (t) => {
  // Node 1 restarts with entries of terms 2 and 3 (from earlier leaders), uncommitted.
  const r = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([2, 3]), { term: 3, commit: 1 }, { preVote: false });
  r.campaignNow();
  r.step(msg({ type: 'voteResp', from: 2, to: 1, term: 4 }));
  t.equal(r.role, 'leader');
  t.equal(r.log.lastIndex(), 4, 'the empty entry of term 4');
  drainReady(r);
  r.step(msg({ type: 'appResp', from: 2, to: 1, term: 4, index: 4 }));
  t.equal(r.log.committed, 4);
  t.same(
    drainReady(r).committed.map((e) => [e.index, e.term]),
    [
      [2, 2],
      [3, 3],
      [4, 4],
    ],
  );
  t.end();
});

void t.test('§5.3 a follower commits up to the leader commit, bounded by the last new entry (Reference: section 5.3)', (t) => {
  // [leader commit, entries sent after (1, 1), expected follower commit]
  const cases: [number, number, number][] = [
    [1, 2, 1],
    [2, 2, 2],
    [3, 2, 3],
    [10, 2, 3],
  ];
  for (const [commit, count, expected] of cases) {
    const f = newRaft(1, [1, 2, 3]);
    const entries = entriesWithTerms(Array<number>(count).fill(2));
    f.step(msg({ type: 'app', from: 2, to: 1, term: 2, index: 1, logTerm: 1, entries, commit }));
    t.equal(f.log.committed, expected, `leader commit ${commit}`);
    t.same(
      drainReady(f).committed.map((e) => e.index),
      Array.from({ length: expected - 1 }, (_, i) => i + 2),
      'the committed entries are applied',
    );
  }
  // The commit index is bounded by what this message vouches for, not by a longer local log.
  const g = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([2, 2, 2]), { term: 2 });
  g.step(msg({ type: 'app', from: 2, to: 1, term: 2, index: 2, logTerm: 2, entries: [], commit: 4 }));
  t.equal(g.log.committed, 2);
  t.end();
});

void t.test('§5.3 a follower refuses AppendEntries whose previous entry it lacks (Reference: section 5.3)', (t) => {
  // Follower log: 1 (snapshot, term 1), 2 (term 1), 3 (term 2).
  // [prev index, prev term, reject?, answered index, reject hint, hint term]
  const cases: [number, number, boolean, number, number, number][] = [
    [3, 2, false, 3, 0, 0],
    [1, 1, false, 1, 0, 0],
    [0, 0, false, 1, 0, 0], // below the commit index: answered with the commit index
    [3, 3, true, 3, 3, 2], // term mismatch at 3
    [2, 2, true, 2, 2, 1], // term mismatch at 2
    [4, 2, true, 4, 3, 2], // beyond the end
  ];
  for (const [index, logTerm, reject, answered, hint, hintTerm] of cases) {
    const f = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([1, 2]), { term: 2 });
    f.step(msg({ type: 'app', from: 2, to: 1, term: 2, index, logTerm, entries: [] }));
    const [resp, ...rest] = ofType(drainReady(f).messages, 'appResp');
    t.same(rest, []);
    t.same(
      resp && [resp.reject, resp.index, resp.rejectHint, resp.logTerm],
      [reject, answered, hint, hintTerm],
      `prev (${index}, ${logTerm})`,
    );
    t.equal(f.log.lastIndex(), 3, 'log unchanged');
  }
  t.end();
});

void t.test('§5.3 a follower deletes a conflicting suffix and appends the new entries (Reference: section 5.3)', (t) => {
  // Follower log terms at indexes 1..3: [1, 1, 2]. [prev index, prev term, entry terms, expected terms 1..]
  const cases: [number, number, number[], number[]][] = [
    [3, 2, [3], [1, 1, 2, 3]],
    [2, 1, [3, 4], [1, 1, 3, 4]],
    [1, 1, [1], [1, 1, 2]],
    [1, 1, [3], [1, 3]],
    [1, 1, [1, 2, 2], [1, 1, 2, 2]],
  ];
  for (const [index, logTerm, terms, expected] of cases) {
    const f = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([1, 2]), { term: 4 });
    const entries = entriesWithTerms(terms, index + 1);
    f.step(msg({ type: 'app', from: 2, to: 1, term: 4, index, logTerm, entries }));
    t.same(logTerms(f), expected, `prev (${index}, ${logTerm}) + ${JSON.stringify(terms)}`);
    const out = drainReady(f);
    t.same(ofType(out.messages, 'appResp').map((m) => [m.reject, m.index]), [[false, index + terms.length]]);
  }
  t.end();
});

// Figure 7: the leader's log (term 8) and six possible follower logs.
const figure7Leader = [1, 1, 4, 4, 5, 5, 6, 6, 6]; // terms of indexes 2..10
const figure7Followers: Record<string, number[]> = {
  'a (missing entries)': [1, 1, 4, 4, 5, 5, 6, 6],
  'b (missing entries)': [1, 1, 4],
  'c (extra uncommitted entry)': [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
  'd (extra entries of a later term)': [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
  'e (missing and extra entries)': [1, 1, 4, 4, 4, 4],
  'f (missing and extra entries of earlier terms)': [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
};

void t.test('§5.3 Figure 7: the leader brings every follower log to match its own (Reference: section 5.3, Figure 7)', (t) => {
  for (const [name, followerTerms] of Object.entries(figure7Followers)) {
    const net = new Network([1, 2, 3]);
    putNode(net, newRaftWithLog(1, [1, 2, 3], entriesWithTerms(figure7Leader), { term: 7 }));
    putNode(net, newRaftWithLog(2, [1, 2, 3], entriesWithTerms(followerTerms), { term: Math.max(...followerTerms) }));
    // Node 3 holds the same log as the leader, so the leader can win term 8 whatever node 2 thinks.
    putNode(net, newRaftWithLog(3, [1, 2, 3], entriesWithTerms(figure7Leader), { term: 7 }));
    net.campaign(1);
    t.equal(net.leader(), 1, name);
    t.equal(net.node(1).term, 8);
    const expected = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8]; // compaction point (index 1) through index 11
    t.same(logTerms(net.node(1)), expected, `${name}: leader log`);
    t.same(logTerms(net.node(2)), expected, `${name}: follower log matches the leader's`);
    for (let i = 2; i <= 11; i++) {
      t.same(net.node(2).log.entryAt(i).data, net.node(1).log.entryAt(i).data, `${name}: entry ${i} is the leader's`);
    }
    // A follower that only just caught up learns the commit index from the next heartbeat.
    net.tick(1);
    net.stabilize();
    t.equal(net.node(2).log.committed, 11, `${name}: follower committed`);
    t.equal(net.node(1).log.committed, 11, `${name}: leader committed`);
  }
  t.end();
});

// ============================== §5.4 safety ==============================

void t.test('§5.4.1 a vote request carries the candidate\'s last log index and term (Reference: section 5.4.1)', (t) => {
  const r = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([2, 3]), { term: 3 }, { preVote: false });
  r.campaignNow();
  t.same(
    ofType(drainReady(r).messages, 'vote').map((m) => [m.to, m.term, m.index, m.logTerm]),
    [
      [2, 4, 3, 3],
      [3, 4, 3, 3],
    ],
  );
  t.end();
});

void t.test('§5.4.1 a voter refuses a candidate whose log is less up to date (Reference: section 5.4.1)', (t) => {
  // The voter's log ends at index 3, term 2.
  // [candidate last term, candidate last index, granted?]
  const cases: [number, number, boolean][] = [
    [2, 3, true], // same
    [2, 4, true], // longer, same last term
    [3, 2, true], // later last term, shorter
    [2, 2, false], // shorter at the same last term
    [1, 5, false], // earlier last term, longer
    [1, 3, false], // earlier last term
  ];
  const run = (type: 'vote' | 'preVote', logTerm: number, index: number, bugs: PlantedBug[] = []) => {
    const v = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([1, 2]), { term: 2 }, { bugs: new Set(bugs) });
    v.step(msg({ type, from: 2, to: 1, term: 3, index, logTerm }));
    const [resp] = drainReady(v).messages.filter((m) => m.type === `${type}Resp`);
    return resp === undefined ? null : !resp.reject;
  };
  for (const [logTerm, index, granted] of cases) {
    t.equal(run('vote', logTerm, index), granted, `vote for last (${index}, term ${logTerm})`);
    t.equal(run('preVote', logTerm, index), granted, `pre-vote for last (${index}, term ${logTerm})`);
  }
  t.equal(run('vote', 1, 5, ['prevote-skip-log-check']), true, 'planted bug: the check is skipped');
  t.end();
});

void t.test('§5.4.2 a leader does not commit an earlier-term entry by counting replicas (Reference: section 5.4.2)', (t) => {
  const run = (bugs: PlantedBug[]) => {
    // Node 1 holds an uncommitted entry of term 2 at index 2 and becomes leader of term 3 (empty entry at 3).
    const r = newRaftWithLog(1, [1, 2, 3], entriesWithTerms([2]), { term: 2, commit: 1 }, { preVote: false, bugs: new Set(bugs) });
    r.campaignNow();
    r.step(msg({ type: 'voteResp', from: 2, to: 1, term: 3 }));
    drainReady(r);
    // Follower 2 acknowledges index 2 only: a majority (1, 2) now stores the term-2 entry.
    r.step(msg({ type: 'appResp', from: 2, to: 1, term: 3, index: 2 }));
    drainReady(r);
    const afterOld = r.log.committed;
    r.step(msg({ type: 'appResp', from: 2, to: 1, term: 3, index: 3 }));
    drainReady(r);
    return { afterOld, afterNew: r.log.committed };
  };
  t.same(run([]), { afterOld: 1, afterNew: 3 }, 'committed only through the term-3 entry');
  t.same(run(['commit-earlier-term']), { afterOld: 2, afterNew: 3 }, 'planted bug: the replica count commits it');
  t.end();
});

/**
 * Figure 8 with five servers (terms shifted by one: the first leader is elected in term 2). Returns the
 * entries each server applied and whether the term-2 entry "x" was committed by S1 before S5 overwrote it.
 */
function figure8(bugs: PlantedBug[]): { applied: Map<NodeId, Entry[]>; net: Network } {
  const net = new Network([1, 2, 3, 4, 5], { preVote: false, checkQuorum: false }, bugs);
  net.campaign(1); // term 2, empty entry at 2 committed everywhere
  // (a) S1 replicates "x" (index 3, term 2) to S2 only.
  net.dropFilter = (m) => m.from === 1 && m.to !== 2;
  net.propose(1, 'x');
  // (b) S1 crashes; S5 wins term 3 with S3, S4 and appends an entry at 3 that reaches nobody.
  net.recover();
  net.isolate(1);
  net.dropFilter = (m) => m.from === 5 && m.type === 'app';
  net.campaign(5);
  if (net.node(5).role !== 'leader' || net.node(5).term !== 3) throw new Error('figure 8 setup (b)');
  // (c) S5 crashes; S1 restarts and wins term 4 (term 3 is lost: S3 and S4 already voted in it).
  net.recover();
  net.isolate(5);
  restartNode(net, 1);
  net.dropFilter = (m) => m.from === 1 && m.type === 'app';
  for (let i = 0; i < 3 && net.node(1).role !== 'leader'; i++) net.campaign(1);
  if (net.node(1).role !== 'leader' || net.node(1).term !== 4) throw new Error('figure 8 setup (c)');
  // S1 replicates the term-2 entry to S3 (S2 already has it); its own term-4 entry reaches nobody.
  const s1 = net.node(1);
  const x = s1.log.entryAt(3);
  net.dropFilter = (m) => m.from === 1 && m.type === 'app';
  net.send(msg({ type: 'app', from: 1, to: 3, term: 4, index: 2, logTerm: 2, entries: [x], commit: s1.log.committed }));
  net.send(msg({ type: 'app', from: 1, to: 2, term: 4, index: 3, logTerm: 2, entries: [], commit: s1.log.committed }));
  // (d) S1 crashes; S5 restarts and, with a later last term than S2..S4, wins and overwrites index 3.
  net.recover();
  net.isolate(1);
  restartNode(net, 5);
  for (let i = 0; i < 3 && net.node(5).role !== 'leader'; i++) net.campaign(5);
  if (net.node(5).role !== 'leader') throw new Error('figure 8 setup (d)');
  net.propose(5, 'after');
  return { applied: net.applied, net };
}

function conflicts(applied: Map<NodeId, Entry[]>): string[] {
  const byIndex = new Map<number, { id: NodeId; e: Entry }>();
  const out: string[] = [];
  for (const [id, list] of applied) {
    for (const e of list) {
      const seen = byIndex.get(e.index);
      if (seen === undefined) byIndex.set(e.index, { id, e });
      else if (seen.e.term !== e.term) out.push(`index ${e.index}: node ${seen.id} applied term ${seen.e.term}, node ${id} term ${e.term}`);
    }
  }
  return out;
}

void t.test('§5.4.2 Figure 8: an earlier-term entry on a majority is not committed, and may be overwritten (Reference: section 5.4.2, Figure 8)', (t) => {
  const { applied, net } = figure8([]);
  t.equal(net.node(1).log.committed, 2, 'S1 did not commit x while it was leader in term 4');
  t.same(texts(applied.get(1)!), [], 'S1 never applied x');
  for (const id of [2, 3, 4]) {
    t.equal(net.node(id).log.term(3), 3, `S${id} now holds S5's term-3 entry at index 3`);
    t.same(texts(applied.get(id)!), ['after'], `S${id} applied only entries of S5`);
  }
  t.same(conflicts(applied), [], 'no two servers applied different entries at one index');
  // The same run with the planted bug: S1 commits x by counting replicas, then S5 overwrites it.
  const bad = figure8(['commit-earlier-term']);
  t.same(texts(bad.applied.get(1)!), ['x'], 'planted bug: S1 applied x');
  t.ok(conflicts(bad.applied).length > 0, 'planted bug: state machines diverge');
  t.end();
});

void t.test('§5.4.2 Figure 8 (e): once the current-term entry is on a majority, both are committed and S5 cannot win (Reference: section 5.4.2)', (t) => {
  const net = new Network([1, 2, 3, 4, 5], { preVote: false, checkQuorum: false });
  net.campaign(1);
  net.dropFilter = (m) => m.from === 1 && m.to !== 2;
  net.propose(1, 'x');
  net.recover();
  net.isolate(1);
  net.dropFilter = (m) => m.from === 5 && m.type === 'app';
  net.campaign(5);
  net.recover();
  net.isolate(5);
  restartNode(net, 1);
  for (let i = 0; i < 3 && net.node(1).role !== 'leader'; i++) net.campaign(1);
  t.equal(net.node(1).role, 'leader');
  net.propose(1, 'y'); // reaches S2, S3, S4 with the empty term-4 entry
  t.same(texts(net.applied.get(1)!), ['x', 'y'], 'x committed along with the term-4 entries');
  net.recover();
  net.isolate(1);
  restartNode(net, 5);
  for (let i = 0; i < 3; i++) net.campaign(5);
  t.not(net.node(5).role, 'leader', 'S5 (last term 3) cannot collect votes from S2..S4 (last term 4)');
  for (const id of [2, 3, 4]) t.same(texts(net.applied.get(id)!), ['x', 'y'], `S${id}`);
  t.end();
});

void t.test('§5.4.3 leader completeness: a stale server cannot become leader; the new leader has every committed entry (Reference: section 5.4.3)', (t) => {
  const net = new Network([1, 2, 3, 4, 5], { preVote: false, checkQuorum: false });
  net.campaign(1);
  net.isolate(4);
  net.isolate(5);
  for (const s of ['a', 'b', 'c']) net.propose(1, s);
  t.same(texts(net.applied.get(2)!), ['a', 'b', 'c']);
  net.recover();
  net.isolate(1);
  // S4 and S5 missed the committed entries: neither can win, whatever the term.
  for (let i = 0; i < 3; i++) {
    net.campaign(4);
    net.campaign(5);
  }
  t.not(net.node(4).role, 'leader');
  t.not(net.node(5).role, 'leader');
  net.campaign(2);
  t.equal(net.node(2).role, 'leader');
  const leader = net.node(2);
  for (const e of net.applied.get(1)!) t.equal(leader.log.term(e.index), e.term, `committed entry ${e.index} present`);
  net.propose(2, 'd');
  for (const id of [2, 3, 4, 5]) t.same(texts(net.applied.get(id)!), ['a', 'b', 'c', 'd'], `S${id}`);
  t.end();
});

/** A tiny deterministic PRNG for the randomized scenario below. */
function prng(seed: number): (n: number) => number {
  const r = seededRandom(seed);
  return (n) => r.int(n);
}

void t.test('§5.4 election safety, leader completeness and state machine safety under random partitions and restarts (Reference: section 5.4, Figure 3)', (t) => {
  let leadersSeen = 0;
  let appliedSeen = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const rand = prng(seed);
    const ids = [1, 2, 3, 4, 5];
    const net = new Network(ids, seed % 2 === 0 ? {} : { preVote: false, checkQuorum: false });
    const leaderOfTerm = new Map<number, NodeId>();
    let proposals = 0;
    for (let step = 0; step < 200; step++) {
      const action = rand(10);
      if (action === 0) {
        net.isolate(net.leader() ?? ids[rand(5)]!);
      } else if (action === 1) {
        net.isolate(ids[rand(5)]!);
      } else if (action === 2) {
        net.recover();
      } else if (action <= 5) {
        const l = net.leader();
        if (l !== null) {
          try {
            net.node(l).propose([enc(`p${proposals++}`)]);
          } catch {
            // dropped (a transfer in progress or too many bytes in flight): fine
          }
        }
      } else if (action === 6) {
        restartNode(net, ids[rand(5)]!);
      } else {
        for (let k = rand(5); k >= 0; k--) {
          for (const id of ids) net.node(id).tick();
          net.stabilize();
        }
      }
      net.stabilize();
      // Election safety (§5.2): at most one leader per term, ever.
      for (const [id, r] of net.nodes) {
        if (r.role !== 'leader') continue;
        const previous = leaderOfTerm.get(r.term);
        if (previous === undefined) {
          leaderOfTerm.set(r.term, id);
          leadersSeen++;
        } else if (previous !== id) {
          t.fail(`seed ${seed}: two leaders in term ${r.term}: ${previous} and ${id}`);
        }
      }
      // Leader completeness (§5.4): the leader of the highest term holds every entry any server applied.
      const maxTerm = Math.max(...[...leaderOfTerm.keys()], 0);
      const top = [...net.nodes.values()].find((r) => r.role === 'leader' && r.term === maxTerm);
      if (top !== undefined) {
        for (const list of net.applied.values()) {
          for (const e of list) {
            if (top.log.term(e.index) !== e.term) t.fail(`seed ${seed}: leader ${top.id} lacks applied entry ${e.index}`);
          }
        }
      }
    }
    // State machine safety (§5.4.3): no two servers applied different entries at one index.
    const c = conflicts(net.applied);
    if (c.length > 0) t.fail(`seed ${seed}: ${c.join('; ')}`);
    for (const list of net.applied.values()) appliedSeen += texts(list).length;
  }
  // The scenario must actually exercise elections and replication.
  t.ok(leadersSeen >= 60, `elected ${leadersSeen} leaders over all seeds`);
  t.ok(appliedSeen >= 1000, `applied ${appliedSeen} proposals over all servers and seeds`);
  t.end();
});
