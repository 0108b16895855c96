import t from 'tap';
import { Network, texts } from './harness.ts';

void t.test('a 3-node cluster elects a leader and replicates', (t) => {
  const net = new Network([1, 2, 3]);
  net.campaign(1);
  t.equal(net.leader(), 1);
  net.propose(1, 'a');
  net.propose(1, 'b');
  for (const id of [1, 2, 3]) t.same(texts(net.applied.get(id)!), ['a', 'b'], `node ${id} applied`);
  t.end();
});

void t.test('a single node elects itself and commits', (t) => {
  const net = new Network([1]);
  net.campaign(1);
  t.equal(net.leader(), 1);
  net.propose(1, 'x');
  t.same(texts(net.applied.get(1)!), ['x']);
  t.end();
});

void t.test('a follower catches up after a partition heals', (t) => {
  const net = new Network([1, 2, 3, 4, 5]);
  net.campaign(1);
  net.isolate(5);
  for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
  t.equal(texts(net.applied.get(5)!).length, 0);
  net.recover();
  net.tick(1, 1);
  net.stabilize();
  t.equal(texts(net.applied.get(5)!).length, 10);
  t.end();
});
