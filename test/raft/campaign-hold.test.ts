/**
 * A member whose state machine lags far behind (the driver holds its campaign) lets an up-to-date member win
 * the election first, and still campaigns itself, later, when nobody else does.
 */
import t from 'tap';
import { Network, fixedRandom, tickAll } from './harness.ts';

const electionTicks = 10;

void t.test('a held member waits two more election timeouts; an unheld one campaigns first', (t) => {
  // fixedRandom(0): every randomized election timeout is exactly electionTicks.
  const net = new Network([1, 2, 3], { random: fixedRandom(0), preVote: true });
  net.node(2).holdCampaign(true);
  tickAll(net, electionTicks, [2]);
  t.equal(net.node(2).role, 'follower', 'held: no campaign at the plain timeout');
  tickAll(net, electionTicks, [1]);
  t.equal(net.leader(), 1, 'the unheld member campaigns and wins');
  t.end();
});

void t.test('a held member still campaigns when no other does', (t) => {
  const net = new Network([1, 2, 3], { random: fixedRandom(0), preVote: true });
  for (const id of [1, 2, 3]) net.node(id).holdCampaign(true);
  tickAll(net, electionTicks + 2 * electionTicks - 1, [2]);
  t.equal(net.leader(), null, 'not before the timeout plus the hold');
  tickAll(net, 1, [2]);
  t.equal(net.leader(), 2, 'then it campaigns and wins');
  net.node(2).holdCampaign(false);
  t.end();
});
