import { createServer, connect } from 'node:net';
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import type { Test } from 'tap';
import { encodeMessage } from '../../src/raft/codec.ts';
import type { Message, NodeId } from '../../src/raft/types.ts';
import {
  GrpcRaftTransport,
  frameBytesMax,
  defaultGrpcTransportLimits,
} from '../../src/rpc/grpc-raft-transport.ts';
import type { GrpcTransportLimits } from '../../src/rpc/grpc-raft-transport.ts';
import { raftSendMethod, raftTransportService } from '../../src/rpc/raft-proto.ts';
import type { RaftBatchWire } from '../../src/rpc/raft-proto.ts';
import { CaptureLogger, message, sleep, transportConformance, waitFor } from './transport-conformance.ts';
import type { Harness, TransportFixture } from './transport-conformance.ts';

const CLUSTER = '12345678901234567890';
/** Quick reconnects keep the suite fast. */
const fastReconnect = { reconnectDelayMsMin: 20, reconnectDelayMsMax: 200 };

const grpcFixture: TransportFixture = {
  name: 'grpc',
  countsReconnects: true,
  create(_ids, { limits, logger }): Promise<Harness> {
    const addresses = new Map<NodeId, string>();
    const running = new Map<NodeId, GrpcRaftTransport>();
    const peerSets = new Map<NodeId, readonly NodeId[]>();
    const refresh = (): void => {
      for (const [id, transport] of running) {
        const allowed = peerSets.get(id);
        transport.setPeers(
          new Map([...addresses].filter(([p]) => p !== id && (allowed === undefined || allowed.includes(p)))),
        );
      }
    };
    return Promise.resolve({
      async start(id, deliver) {
        const transport = new GrpcRaftTransport({
          id,
          clusterId: CLUSTER,
          peers: new Map(),
          deliver,
          logger,
          limits: { ...limits, ...fastReconnect },
        });
        // A restarted endpoint comes back at the same address.
        const port = await transport.startServer(addresses.get(id) ?? '127.0.0.1:0');
        addresses.set(id, `127.0.0.1:${port}`);
        running.set(id, transport);
        refresh();
        return { id, transport };
      },
      async stop(id) {
        await running.get(id)?.stop();
        running.delete(id);
      },
      setPeers(id, peers) {
        peerSets.set(id, peers);
        refresh();
      },
      async injectRaw(from, to, messages) {
        const address = addresses.get(to);
        if (address === undefined) throw new Error(`no address for ${to}`);
        const result = await rawStream(address, [serializeBatch({ from, clusterId: CLUSTER, messages })]);
        if (result.code !== grpc.status.OK)
          throw new Error(`raw stream failed: ${result.code} ${result.details}`);
      },
      async close() {
        for (const transport of running.values()) await transport.stop();
        running.clear();
      },
    });
  },
};

transportConformance(grpcFixture);

// ===================== gRPC-specific checks =====================

function serializeBatch(batch: RaftBatchWire): Buffer {
  return raftSendMethod.requestSerialize(batch);
}

interface RawResult {
  readonly code: grpc.status;
  readonly details: string;
}

/** Opens a Send stream with a client that writes the given frames verbatim, ends it, and reports the status. */
function rawStream(
  address: string,
  frames: readonly Buffer[],
  options: grpc.ChannelOptions = {},
): Promise<RawResult> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), options);
  return new Promise<RawResult>((resolve) => {
    const call = client.makeClientStreamRequest<Buffer, unknown>(
      raftSendMethod.path,
      (b: Buffer) => b,
      raftSendMethod.responseDeserialize,
      new grpc.Metadata(),
      {},
      (error) => {
        client.close();
        resolve(
          error === null
            ? { code: grpc.status.OK, details: '' }
            : { code: error.code, details: error.details },
        );
      },
    );
    call.on('error', () => {});
    for (const f of frames) call.write(f);
    call.end();
  });
}

interface Node {
  readonly transport: GrpcRaftTransport;
  readonly box: Message[];
  readonly address: string;
}

async function node(
  t: Test,
  id: NodeId,
  options: {
    clusterId?: string;
    limits?: Partial<GrpcTransportLimits>;
    logger?: CaptureLogger;
    listen?: string;
  } = {},
): Promise<Node> {
  const box: Message[] = [];
  const transport = new GrpcRaftTransport({
    id,
    clusterId: options.clusterId ?? CLUSTER,
    peers: new Map(),
    deliver: (m) => box.push(m),
    limits: { ...fastReconnect, ...options.limits },
    logger: options.logger ?? new CaptureLogger(),
  });
  t.teardown(() => transport.stop());
  const port = await transport.startServer(options.listen ?? '127.0.0.1:0');
  return { transport, box, address: `127.0.0.1:${port}` };
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const probe = new GrpcRaftTransport({ id: 99, clusterId: 1, peers: new Map(), deliver: () => {} });
  const port = await probe.startServer('127.0.0.1:0');
  await probe.stop();
  return port;
}

void t.test('grpc: a batch for another cluster is rejected with FAILED_PRECONDITION', async (t) => {
  const logger = new CaptureLogger();
  const b = await node(t, 2, { logger });
  const frames = [
    serializeBatch({
      from: 1,
      clusterId: '7',
      messages: [encodeMessage(message(1, 2, 1)), encodeMessage(message(1, 2, 2))],
    }),
  ];
  const r = await rawStream(b.address, frames);
  t.equal(r.code, grpc.status.FAILED_PRECONDITION, `status ${r.code}: ${r.details}`);
  t.match(r.details, /cluster id 7/);
  t.equal(b.box.length, 0, 'nothing delivered');
  const s = b.transport.stats();
  t.equal(s.dropped['wrong-cluster'], 2);
  t.equal(s.streamsRejected, 1);
  t.ok(logger.has('warn', 'wrong-cluster'), 'logged');
});

void t.test('grpc: a real sender with the wrong cluster id is refused, and says so', async (t) => {
  const senderLog = new CaptureLogger();
  const b = await node(t, 2);
  const a = await node(t, 1, { clusterId: '999', logger: senderLog });
  a.transport.setPeers(new Map([[2, b.address]]));
  a.transport.send(message(1, 2, 1));
  await waitFor('the rejection', () =>
    senderLog.lines.some((l) => l.level === 'error' && /rejected/.test(l.msg ?? '')),
  );
  t.equal(b.box.length, 0);
  t.ok(b.transport.stats().dropped['wrong-cluster'] >= 1);
  t.ok(a.transport.stats().streamErrors >= 1);
});

void t.test('grpc: frames that are not a valid RaftBatch end the stream with INVALID_ARGUMENT', async (t) => {
  const b = await node(t, 2);
  const ok = encodeMessage(message(1, 2, 1));
  const garbage = await rawStream(b.address, [
    Buffer.from('\xff\xff garbage, not protobuf \x07\x07', 'latin1'),
  ]);
  t.equal(garbage.code, grpc.status.INVALID_ARGUMENT, `garbage: ${garbage.details}`);
  const noSender = await rawStream(b.address, [
    serializeBatch({ from: 0, clusterId: CLUSTER, messages: [ok] }),
  ]);
  t.equal(noSender.code, grpc.status.INVALID_ARGUMENT, `sender 0: ${noSender.details}`);
  const self = await rawStream(b.address, [
    serializeBatch({ from: 2, clusterId: CLUSTER, messages: [encodeMessage(message(2, 2, 1))] }),
  ]);
  t.equal(self.code, grpc.status.FAILED_PRECONDITION, `own id: ${self.details}`);
  const switching = await rawStream(b.address, [
    serializeBatch({ from: 1, clusterId: CLUSTER, messages: [ok] }),
    serializeBatch({ from: 3, clusterId: CLUSTER, messages: [encodeMessage(message(3, 2, 2))] }),
  ]);
  t.equal(switching.code, grpc.status.INVALID_ARGUMENT, `sender switch: ${switching.details}`);
  t.same(
    b.box.map((m) => [m.from, m.index]),
    [[1, 1]],
    'only the first batch of the switching stream was delivered',
  );
  const s = b.transport.stats();
  t.equal(s.streamsRejected, 4);
  t.equal(s.dropped['bad-batch'], 4);
  const empty = await rawStream(b.address, [serializeBatch({ from: 1, clusterId: CLUSTER, messages: [] })]);
  t.equal(empty.code, grpc.status.OK, 'an empty batch is fine');
});

void t.test('grpc: a frame over the size limit is refused by gRPC, the server carries on', async (t) => {
  const limits = { messageBytesMax: 32 * 1024, batchBytesMax: 32 * 1024, batchMessagesMax: 16 };
  const b = await node(t, 2, { limits });
  const huge = serializeBatch({
    from: 1,
    clusterId: CLUSTER,
    messages: [new Uint8Array(frameBytesMax({ ...defaultGrpcTransportLimits, ...limits }) + 1)],
  });
  const r = await rawStream(b.address, [huge], { 'grpc.max_send_message_length': -1 });
  t.equal(r.code, grpc.status.RESOURCE_EXHAUSTED, `status ${r.code}: ${r.details}`);
  const fine = await rawStream(b.address, [
    serializeBatch({ from: 1, clusterId: CLUSTER, messages: [encodeMessage(message(1, 2, 5))] }),
  ]);
  t.equal(fine.code, grpc.status.OK);
  t.same(
    b.box.map((m) => m.index),
    [5],
  );
});

void t.test(
  'grpc: messages queue for a peer that is down, up to peerQueueBytesMax, and flow once it is up',
  async (t) => {
    const port = await freePort();
    const a = await node(t, 1, { limits: { peerQueueBytesMax: 4 * 1024 } });
    a.transport.setPeers(new Map([[2, `127.0.0.1:${port}`]]));
    for (let i = 1; i <= 1_000; i++) a.transport.send(message(1, 2, i));
    let s = a.transport.stats();
    const queued = s.peers.get(2)!.queuedMessages;
    t.ok(s.peers.get(2)!.queuedBytes <= 4 * 1024, `queue bounded (${s.peers.get(2)!.queuedBytes} bytes)`);
    t.equal(s.dropped['queue-full'], 1_000 - queued, `${1_000 - queued} dropped as queue-full`);
    await waitFor('failed connection attempts', () => a.transport.stats().streamErrors >= 2);
    t.equal(a.transport.stats().peers.get(2)!.messagesSent, 0, 'nothing written into a dead stream');
    const b = await node(t, 2, { listen: `127.0.0.1:${port}` });
    await waitFor('the queued messages', () => b.box.length === queued);
    t.same(
      b.box.map((m) => m.index),
      Array.from({ length: queued }, (_, i) => i + 1),
      'the oldest messages, in order',
    );
    s = a.transport.stats();
    t.ok(s.reconnects >= 1, `reconnects ${s.reconnects}`);
    t.equal(s.peers.get(2)!.connected, true);
  },
);

void t.test('grpc: backpressure pauses writes until the stream drains, and loses nothing', async (t) => {
  const limits = {
    messageBytesMax: 1024 * 1024,
    batchBytesMax: 256 * 1024,
    peerQueueBytesMax: 256 * 1024 * 1024,
  };
  const b = await node(t, 2, { limits });
  const a = await node(t, 1, { limits });
  a.transport.setPeers(new Map([[2, b.address]]));
  a.transport.send(message(1, 2, 0));
  await waitFor('connected', () => b.box.length === 1);
  const n = 200;
  const data = new Uint8Array(200 * 1024);
  for (let i = 1; i <= n; i++)
    a.transport.send(message(1, 2, i, { entries: [{ term: 1, index: i, type: 0, data }] }));
  await waitFor('all large messages', () => b.box.length === n + 1, 30_000);
  t.same(
    b.box.map((m) => m.index),
    Array.from({ length: n + 1 }, (_, i) => i),
    'all delivered in order',
  );
  const s = a.transport.stats();
  t.ok(s.stalls >= 1, `write() asked to wait ${s.stalls} times`);
  t.equal(s.dropped['queue-full'], 0);
});

void t.test('grpc: a peer that moves to a new address is followed', async (t) => {
  const a = await node(t, 1);
  const b1 = await node(t, 2);
  a.transport.setPeers(new Map([[2, b1.address]]));
  a.transport.send(message(1, 2, 1));
  await waitFor('first address', () => b1.box.length === 1);
  await b1.transport.stop();
  a.transport.send(message(1, 2, 2));
  await waitFor('the old address to fail', () => a.transport.stats().streamErrors >= 1);
  const b2 = await node(t, 2);
  a.transport.setPeers(new Map([[2, b2.address]]));
  t.same([...a.transport.peers()], [[2, b2.address]]);
  a.transport.send(message(1, 2, 3));
  await waitFor('second address', () => b2.box.length === 2);
  t.same(
    b2.box.map((m) => m.index),
    [2, 3],
    'the message queued for the old address moved with the peer',
  );
  t.equal(a.transport.stats().dropped['peer-removed'], 0);
});

void t.test(
  'grpc: a stream the receiver never accepts is abandoned after connectTimeoutMs and retried',
  async (t) => {
    // A server that speaks HTTP/2 and knows the method but never answers (no initial metadata).
    const mute = new grpc.Server();
    mute.addService(raftTransportService, { Send: () => {} });
    const port = await new Promise<number>((resolve, reject) =>
      mute.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e === null ? resolve(p) : reject(e),
      ),
    );
    t.teardown(() => mute.forceShutdown());
    const a = await node(t, 1, { limits: { connectTimeoutMs: 100 } });
    a.transport.setPeers(new Map([[2, `127.0.0.1:${port}`]]));
    a.transport.send(message(1, 2, 1));
    await waitFor('two abandoned attempts', () => a.transport.stats().streamErrors >= 2);
    const s = a.transport.stats().peers.get(2)!;
    t.equal(s.messagesSent, 0, 'nothing written to an unaccepted stream');
    t.equal(s.queuedMessages, 1, 'the message is still queued');
    t.ok(s.reconnects >= 1);
  },
);

/** A TCP proxy that can freeze: connections stay open but no byte passes (a peer that hangs, a cable cut). */
async function freezableProxy(
  t: Test,
  targetPort: number,
): Promise<{ port: number; freeze: (on: boolean) => void }> {
  let frozen = false;
  const sockets = new Set<Socket>();
  const server = createServer((down) => {
    const up = connect(targetPort, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    down.on('data', (d) => {
      if (!frozen) up.write(d);
    });
    up.on('data', (d) => {
      if (!frozen) down.write(d);
    });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no proxy port');
  return {
    port: address.port,
    freeze: (on) => {
      frozen = on;
    },
  };
}

void t.test(
  'grpc: keepalive notices a peer that stops answering, and the stream is re-established',
  async (t) => {
    const limits = { keepaliveTimeMs: 100, keepaliveTimeoutMs: 300 };
    const b = await node(t, 2, { limits });
    const proxy = await freezableProxy(t, Number(b.address.split(':')[1]));
    const a = await node(t, 1, { limits });
    a.transport.setPeers(new Map([[2, `127.0.0.1:${proxy.port}`]]));
    a.transport.send(message(1, 2, 1));
    await waitFor('delivery through the proxy', () => b.box.length === 1);
    proxy.freeze(true);
    const started = performance.now();
    await waitFor('the dead connection to be noticed', () => a.transport.stats().streamErrors >= 1, 10_000);
    t.pass(`noticed after ${(performance.now() - started).toFixed(0)} ms`);
    proxy.freeze(false);
    let next = 2;
    await waitFor('traffic on a new connection', () => {
      a.transport.send(message(1, 2, next++));
      return b.box.length > 1;
    });
    t.ok(a.transport.stats().reconnects >= 1);
  },
);

void t.test('grpc: options are validated', (t) => {
  const base = { id: 1, clusterId: 1, peers: new Map<NodeId, string>(), deliver: () => {} };
  t.throws(() => new GrpcRaftTransport({ ...base, id: 0 }), RangeError);
  t.throws(() => new GrpcRaftTransport({ ...base, clusterId: -1 }), RangeError);
  t.throws(() => new GrpcRaftTransport({ ...base, clusterId: (1n << 64n).toString() }), RangeError);
  t.throws(() => new GrpcRaftTransport({ ...base, clusterId: 'abc' }), RangeError);
  t.throws(() => new GrpcRaftTransport({ ...base, limits: { batchMessagesMax: 0 } }), RangeError);
  t.throws(
    () => new GrpcRaftTransport({ ...base, limits: { reconnectDelayMsMin: 10, reconnectDelayMsMax: 5 } }),
    RangeError,
  );
  t.throws(() => new GrpcRaftTransport({ ...base, peers: new Map([[2, '']]) }), RangeError);
  const ok = new GrpcRaftTransport({ ...base, clusterId: 2n ** 64n - 1n });
  t.equal(ok.clusterId, '18446744073709551615');
  t.end();
});

void t.test('grpc: stop() is prompt with streams open both ways', async (t) => {
  const a = await node(t, 1);
  const b = await node(t, 2);
  a.transport.setPeers(new Map([[2, b.address]]));
  b.transport.setPeers(new Map([[1, a.address]]));
  a.transport.send(message(1, 2, 1));
  b.transport.send(message(2, 1, 1));
  await waitFor('both ways', () => a.box.length === 1 && b.box.length === 1);
  const started = performance.now();
  await a.transport.stop();
  await b.transport.stop();
  t.ok(performance.now() - started < 1_000, 'stopped within a second');
  await sleep(10);
});

/** Opens one Send stream per frame list on one channel, all at once; resolves with each stream's status code. */
async function rawStreamsOnOneChannel(
  address: string,
  streams: readonly (readonly Buffer[])[],
): Promise<grpc.status[]> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    return await Promise.all(
      streams.map(
        (frames) =>
          new Promise<grpc.status>((resolve) => {
            const call = client.makeClientStreamRequest<Buffer, unknown>(
              raftSendMethod.path,
              (b: Buffer) => b,
              raftSendMethod.responseDeserialize,
              new grpc.Metadata(),
              {},
              (error) => resolve(error === null ? grpc.status.OK : error.code),
            );
            call.on('error', () => {});
            for (const f of frames) call.write(f);
            call.end();
          }),
      ),
    );
  } finally {
    client.close();
  }
}

void t.test(
  'grpc: batches claiming many unknown sender ids (any cluster) share one stats bucket and one log key per reason',
  async (t) => {
    const logger = new CaptureLogger();
    const box: Message[] = [];
    // Configured with peer 1; peer 5 joins later and leaves again.
    const b = new GrpcRaftTransport({
      id: 2,
      clusterId: CLUSTER,
      peers: new Map([[1, '127.0.0.1:1']]),
      deliver: (m) => box.push(m),
      logger,
    });
    t.teardown(() => b.stop());
    const address = `127.0.0.1:${await b.startServer('127.0.0.1:0')}`;
    b.setPeers(
      new Map([
        [1, '127.0.0.1:1'],
        [5, '127.0.0.1:5'],
      ]),
    );
    const claimed = 200;
    const bogus = Array.from({ length: claimed }, (_, i) => 1_000 + i);
    const codes = await rawStreamsOnOneChannel(address, [
      // A known peer and a peer added by setPeers: counted as themselves.
      [serializeBatch({ from: 1, clusterId: CLUSTER, messages: [encodeMessage(message(1, 2, 1))] })],
      [serializeBatch({ from: 5, clusterId: CLUSTER, messages: [encodeMessage(message(5, 2, 1))] })],
      // Unknown ids of this cluster (each message valid, so delivered: Raft ignores strangers) ...
      ...bogus.map((id) => [
        serializeBatch({ from: id, clusterId: CLUSTER, messages: [encodeMessage(message(id, 2, 1))] }),
      ]),
      // ... of another cluster (rejected) ...
      ...bogus.map((id) => [
        serializeBatch({ from: id + claimed, clusterId: '7', messages: [encodeMessage(message(id, 2, 1))] }),
      ]),
      // ... and with messages for someone else (dropped one by one).
      ...bogus.map((id) => [
        serializeBatch({
          from: id + 2 * claimed,
          clusterId: CLUSTER,
          messages: [encodeMessage(message(id + 2 * claimed, 3, 1))],
        }),
      ]),
    ]);
    t.equal(
      codes.filter((c) => c === grpc.status.FAILED_PRECONDITION).length,
      claimed,
      'the other cluster refused',
    );
    const s = b.stats();
    t.same(
      [...s.peers.keys()].sort((x, y) => x - y),
      [1, 5],
      'per-peer stats only for the peer set',
    );
    t.equal(s.peers.get(1)!.messagesReceived, 1, 'the configured peer counted');
    t.equal(s.peers.get(5)!.messagesReceived, 1, 'the added peer counted');
    t.equal(s.unknownPeers.batchesReceived, 2 * claimed, 'unknown senders share one bucket: batches');
    t.equal(s.unknownPeers.messagesReceived, claimed, '... messages');
    t.equal(s.unknownPeers.dropped['wrong-cluster'], claimed, '... wrong cluster');
    t.equal(s.unknownPeers.dropped['wrong-destination'], claimed, '... wrong destination');
    t.equal(s.dropped['wrong-cluster'], claimed, 'totals still count everything');
    const lines = (reason: string): number =>
      logger.lines.filter((l) => (l.obj as { reason?: unknown }).reason === reason).length;
    // One log key per reason for all unknown ids: at most one line a second each (the run takes a few).
    t.ok(
      lines('wrong-cluster') <= 5,
      `wrong-cluster logged ${lines('wrong-cluster')} times for ${claimed} ids`,
    );
    t.ok(
      lines('wrong-destination') <= 5,
      `wrong-destination logged ${lines('wrong-destination')} times for ${claimed} ids`,
    );

    // Peer 5 leaves: its counters go; the configured peer 1 keeps its own even when removed.
    b.setPeers(new Map());
    const after = b.stats();
    t.same([...after.peers.keys()], [1], 'the removed peer pruned, the configured one kept');
    await rawStreamsOnOneChannel(address, [
      [serializeBatch({ from: 5, clusterId: CLUSTER, messages: [encodeMessage(message(5, 2, 2))] })],
    ]);
    t.equal(b.stats().unknownPeers.messagesReceived, claimed + 1, 'the removed peer now counts as unknown');
    t.notOk(b.stats().peers.has(5));
  },
);
