import t from 'tap';
import { encodeMessage } from '../../src/raft/codec.ts';
import { LocalRaftHub } from '../../src/rpc/local-transport.ts';
import type { LocalRaftTransport } from '../../src/rpc/local-transport.ts';
import type { Message, NodeId } from '../../src/raft/types.ts';
import { message, sleep, transportConformance, waitFor } from './transport-conformance.ts';
import type { Harness, TransportFixture } from './transport-conformance.ts';

const localFixture: TransportFixture = {
  name: 'local',
  countsReconnects: false,
  create(_ids, { limits, logger }): Promise<Harness> {
    const hub = new LocalRaftHub({ limits, logger });
    const endpoints = new Map<NodeId, LocalRaftTransport>();
    return Promise.resolve({
      start(id, deliver) {
        const transport = hub.connect(id, deliver);
        endpoints.set(id, transport);
        return Promise.resolve({ id, transport });
      },
      async stop(id) {
        await endpoints.get(id)?.stop();
      },
      setPeers(id, peers) {
        endpoints.get(id)?.setPeers(peers);
      },
      injectRaw(from, to, messages) {
        hub.injectRaw(from, to, messages);
        return Promise.resolve();
      },
      async close() {
        for (const e of endpoints.values()) await e.stop();
      },
    });
  },
};

transportConformance(localFixture);

void t.test('local: switches cut links, heal restores them', async (t) => {
  const hub = new LocalRaftHub();
  const boxes = new Map<NodeId, Message[]>();
  const ep = new Map<NodeId, LocalRaftTransport>();
  for (const id of [1, 2, 3]) {
    const box: Message[] = [];
    boxes.set(id, box);
    ep.set(
      id,
      hub.connect(id, (m) => box.push(m)),
    );
  }
  const send = (from: NodeId, to: NodeId, index: number): void =>
    ep.get(from)!.send(message(from, to, index));
  const settle = (): Promise<void> => sleep(10);

  hub.block(1, 2);
  send(1, 2, 1);
  send(2, 1, 2);
  await settle();
  t.same(boxes.get(2)!.length, 0, 'blocked direction drops');
  t.same(
    boxes.get(1)!.map((m) => m.index),
    [2],
    'the other direction passes',
  );
  t.equal(ep.get(1)!.stats().dropped.partitioned, 1);

  hub.heal();
  hub.isolate(3);
  send(1, 3, 3);
  send(3, 2, 4);
  send(1, 2, 5);
  await settle();
  t.same(boxes.get(3)!.length, 0, 'isolated node hears nothing');
  t.same(
    boxes.get(2)!.map((m) => m.index),
    [5],
    'and says nothing',
  );

  hub.heal();
  hub.partition([1], [2, 3]);
  send(1, 2, 6);
  send(2, 3, 7);
  await settle();
  t.same(
    boxes.get(3)!.map((m) => m.index),
    [7],
    'same group talks',
  );
  t.equal(boxes.get(2)!.length, 1, 'across groups is cut');

  hub.heal();
  send(1, 2, 8);
  await waitFor('healed link', () => boxes.get(2)!.some((m) => m.index === 8));
  t.ok(hub.linkUp(1, 2) && hub.linkUp(2, 1));

  await ep.get(2)!.stop();
  send(1, 2, 9);
  await settle();
  t.equal(ep.get(1)!.stats().dropped['peer-down'], 1, 'a stopped endpoint is down');
  t.throws(() => hub.connect(1, () => {}), /already connected/);
  const again: Message[] = [];
  hub.connect(2, (m) => again.push(m));
  send(1, 2, 10);
  await waitFor('the reconnected endpoint', () => again.length === 1);
  t.end();
});

void t.test('local: delivery is asynchronous (setImmediate), never re-entrant', async (t) => {
  const hub = new LocalRaftHub();
  const got: Message[] = [];
  const a = hub.connect(1, () => {});
  hub.connect(2, (m) => got.push(m));
  a.send(message(1, 2, 1));
  t.equal(got.length, 0, 'not delivered inside send()');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.equal(got.length, 1);
  t.end();
});

void t.test(
  'local: inbound batches claiming unknown sender ids share one stats bucket; setPeers prunes',
  (t) => {
    const hub = new LocalRaftHub();
    hub.connect(1, () => {});
    const b = hub.connect(2, () => {});
    const claimed = 500;
    for (let i = 0; i < claimed; i++) {
      const from = 1_000 + i;
      hub.injectRaw(from, 2, [encodeMessage(message(from, 2, 1)), new Uint8Array([0xff])]);
    }
    hub.injectRaw(1, 2, [encodeMessage(message(1, 2, 1))]);
    let s = b.stats();
    t.same([...s.peers.keys()], [1], 'per-peer stats only for hub members');
    t.equal(s.peers.get(1)!.messagesReceived, 1, 'the member counted');
    t.equal(s.unknownPeers.messagesReceived, claimed, 'strangers counted together');
    t.equal(s.unknownPeers.dropped.undecodable, claimed);
    b.setPeers([]);
    s = b.stats();
    t.equal(s.peers.size, 0, 'a peer set without 1 prunes its counters');
    t.end();
  },
);
