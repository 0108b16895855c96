/**
 * A stalled member (`Raft.stalled`: time passed while its process could not run) keeps its lease clocks
 * honest but judges the others' silence only after it has had a timeout's worth of running time: a leader
 * does not step down and a follower does not campaign merely because they stopped themselves, while a
 * leader that really lost its quorum still steps down within two timeouts of running time, and a lease does not outlive a stall.
 */
import t from 'tap';
import type { RaftConfig } from '../../src/raft/config.ts';
import { Network, fixedRandom, recordReadStates, tickAll } from './harness.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const electionTicks = 10;

function cluster(overrides: Partial<RaftConfig> = {}): Network {
  const net = new Network([1, 2, 3], { random: fixedRandom(9), ...overrides });
  tickAll(net, electionTicks);
  net.campaign(1);
  if (net.leader() !== 1) throw new Error('setup: node 1 should lead');
  tickAll(net, 2);
  return net;
}

void t.test('a leader stalled for five election timeouts keeps leading; the same time as plain ticks deposes it', (t) => {
  const net = cluster();
  const term = net.node(1).term;
  net.node(1).stalled(5 * electionTicks);
  tickAll(net, 2 * electionTicks);
  t.equal(net.leader(), 1, 'still the leader after the stall and two timeouts of normal running');
  t.equal(net.node(1).term, term, 'same term');

  // What the driver did before: the stall replayed as ticks, with the followers' replies unread meanwhile.
  const old = cluster();
  old.tick(1, 5 * electionTicks);
  t.not(old.node(1).role, 'leader', 'ticks without reading anything: check-quorum steps it down');
  t.end();
});

void t.test('a stalled leader that really lost its quorum still steps down within two timeouts', (t) => {
  const net = cluster();
  net.isolate(1);
  net.node(1).stalled(5 * electionTicks);
  t.equal(net.node(1).role, 'leader', 'not judged during the stall');
  // The first check after the stall still counts the replies read before it; the next one finds none.
  tickAll(net, 2 * electionTicks, [1]);
  t.not(net.node(1).role, 'leader', 'check-quorum after two timeouts of running time');
  t.end();
});

void t.test('a stalled follower does not campaign at once, but its lease on the leader has run out', (t) => {
  const net = cluster();
  const term = net.node(2).term;
  net.node(2).stalled(5 * electionTicks);
  net.tick(2, electionTicks - 1);
  t.equal(net.node(2).role, 'follower', 'no campaign within a timeout of running time');
  t.equal(net.node(2).term, term, 'no new term');
  t.end();
});

void t.test('a lease does not outlive a stall: the read after it needs a quorum round', (t) => {
  const net = cluster({ readMode: 'lease' });
  const reads = recordReadStates(net);
  net.node(1).readIndex(enc('before'));
  net.stabilize();
  t.equal(reads.get(1)?.length, 1, 'within the lease: answered at once');
  net.isolate(1);
  net.node(1).stalled(electionTicks);
  net.node(1).readIndex(enc('after'));
  net.stabilize();
  t.equal(reads.get(1)?.length, 1, 'after the stall the lease is gone: no local answer');
  t.equal(net.node(1).role, 'leader', 'still leader (not yet judged)');
  net.recover();
  net.tick(1);
  net.stabilize();
  t.same(reads.get(1)?.map((r) => new TextDecoder().decode(r.context)), ['before', 'after'], 'answered by the quorum round');
  t.end();
});
