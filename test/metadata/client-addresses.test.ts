/**
 * The metadata client follows NOT_LEADER redirects to any address a server names, and used to keep every
 * one (and a gRPC channel for each) forever. Now it keeps its configured addresses plus at most
 * `learnedAddressesMax` learned ones, closing the channels of those it forgets; a SubmitBatcher keeps at most
 * `batcherTargetsMax` idle targets. A fake server redirects a hundred times, each time to a new address (a
 * loopback address nothing listens on, so the attempt there fails and the client comes back to it).
 */
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import type { Test } from 'tap';
import {
  MetadataClient,
  SubmitBatcher,
  batcherTargetsMax,
  learnedAddressesMax,
} from '../../src/metadata/client.ts';
import { metadataService } from '../../src/metadata/proto.ts';
import type { WireReply } from '../../src/metadata/proto.ts';

const redirects = 100;

interface FakeServer {
  readonly address: string;
  /** NOT_LEADER answers still to give, each naming a new address. */
  redirectsLeft: number;
}

async function fakeServer(t: Test): Promise<FakeServer> {
  const server = new grpc.Server();
  let named = 0;
  const state: { address: string; redirectsLeft: number } = { address: '', redirectsLeft: 0 };
  const answer = (ok: WireReply) => (_call: unknown, callback: grpc.sendUnaryData<WireReply>) => {
    if (state.redirectsLeft > 0) {
      state.redirectsLeft--;
      named++;
      // 127.0.0.2-251: loopback, but the server listens on 127.0.0.1 only, so connections are refused.
      const leaderAddress = `127.0.0.${2 + (named % 250)}:${state.address.split(':')[1]}`;
      callback(null, { error: { code: 'NOT_LEADER', message: 'not the leader', leaderAddress } });
      return;
    }
    callback(null, ok);
  };
  server.addService(metadataService, {
    OpenSession: answer({ clientId: 7 }),
    Submit: answer({ results: [{ id: 11, generation: 1 }] }),
    Mkdir: answer({ id: 11, generation: 1 }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e === null ? resolve(p) : reject(e),
    ),
  );
  state.address = `127.0.0.1:${port}`;
  t.teardown(() => server.forceShutdown());
  return state;
}

/** Counts grpc.Client.close() calls (every metadata stub is a grpc.Client). */
function countCloses(t: Test): () => number {
  const proto = grpc.Client.prototype;
  const descriptor = Object.getOwnPropertyDescriptor(proto, 'close')!;
  const realClose = descriptor.value as (this: grpc.Client) => void;
  let closes = 0;
  Object.defineProperty(proto, 'close', {
    ...descriptor,
    value: function (this: grpc.Client): void {
      closes++;
      realClose.call(this);
    },
  });
  t.teardown(() => {
    Object.defineProperty(proto, 'close', descriptor);
  });
  return () => closes;
}

const options = { retryDelayMs: 1, retryDeadlineMs: 60_000, attemptTimeoutMs: 5_000 };

void t.test('redirects naming many addresses: the list and the open channels stay bounded', async (t) => {
  const server = await fakeServer(t);
  const closes = countCloses(t);
  server.redirectsLeft = redirects;
  const client = await MetadataClient.connect([server.address], options);
  t.equal(client.sessionId, 7, `connected after ${redirects} redirects, each to a new address`);
  const known = client.knownAddresses();
  t.equal(known[0], server.address, 'the configured address is kept');
  t.equal(known.length, 1 + learnedAddressesMax, `at most ${learnedAddressesMax} learned addresses kept`);
  t.ok(client.openChannels() <= 1 + learnedAddressesMax, `open channels bounded (${client.openChannels()})`);
  // One channel was opened per address tried (the configured one and the hundred named); the rest are closed.
  t.equal(
    closes(),
    1 + redirects - client.openChannels(),
    `the channels of forgotten addresses were closed (${closes()})`,
  );
  client.close();
  t.equal(closes(), 1 + redirects, 'close() closes the rest');
});

void t.test('a batcher keeps a bounded number of targets', async (t) => {
  const server = await fakeServer(t);
  const batcher = new SubmitBatcher();
  t.teardown(() => batcher.close());
  const client = await MetadataClient.connect([server.address], { ...options, batcher });
  t.teardown(() => client.close());
  server.redirectsLeft = redirects;
  const made = await client.mkdir('/d');
  t.equal(made.id, 11, `the mkdir succeeded after ${redirects} redirects through the batcher`);
  t.ok(batcher.targetCount() <= batcherTargetsMax, `batcher targets bounded (${batcher.targetCount()})`);
  t.ok(client.knownAddresses().length <= 1 + learnedAddressesMax, 'client addresses bounded');
  t.equal(client.knownAddresses()[0], server.address, 'the configured address is kept');
});
