/**
 * The TCP transport's receive side: accepted sockets read in place (onread) like dialed ones, and a
 * connection whose delivery is paused still notices its peer going away; both kinds of socket have TCP
 * keepalive on; a data server's close() does not wait for peers that never close their side.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import type { DataConnection } from '../../src/chunkserver/dataplane/connection.ts';
import type { DataPlaneError } from '../../src/chunkserver/dataplane/errors.ts';
import { encodeFrame } from '../../src/chunkserver/dataplane/frame.ts';
import { defaultDataPlaneLimits } from '../../src/chunkserver/dataplane/limits.ts';
import type { Message } from '../../src/chunkserver/dataplane/protocol.ts';
import { parseAddress, TcpDataNetwork, tcpKeepAliveInitialDelayMs } from '../../src/chunkserver/dataplane/tcp.ts';
import { isPageAligned } from '../../src/chunkserver/aligned.ts';
import { patternBytes, startCluster, track, waitFor } from './dataplane-harness.ts';

async function pair(network: TcpDataNetwork): Promise<{ accepted: DataConnection; dialed: DataConnection; close: () => Promise<void> }> {
  let accepted: DataConnection | null = null;
  const listener = await network.listen('127.0.0.1:0', (connection) => {
    accepted = connection;
  });
  const dialed = await network.dial(listener.address);
  await waitFor(() => accepted !== null, 'the connection to be accepted');
  return { accepted: accepted!, dialed, close: () => listener.close() };
}

void t.test('accepted sockets read payloads in place: exact bytes, pooled buffers, no fallback', async (t) => {
  const network = new TcpDataNetwork();
  const { accepted, dialed, close } = await pair(network);
  const received: Buffer[] = [];
  let aligned = 0;
  accepted.start({
    onMessage: (message: Message) => {
      if (message.type !== 'packet') return;
      if (isPageAligned(message.payload)) aligned += 1; // the store may write it with O_DIRECT in place
      received.push(Buffer.from(message.payload)); // a copy: the lease ends here
    },
    onClose: () => {},
  });
  dialed.start({ onMessage: () => {}, onClose: () => {} });
  const data = patternBytes(4 * 256 * 1024 + 123, 3);
  for (let seq = 0, offset = 0; offset < data.length; seq++, offset += 256 * 1024) {
    const payload = data.subarray(offset, Math.min(data.length, offset + 256 * 1024));
    if (!dialed.send({ type: 'packet', seq, offset, sync: false, payload })) await dialed.writable();
  }
  await waitFor(() => received.length === 5, 'every packet');
  t.ok(Buffer.concat(received).equals(data), 'the payloads arrive exact');
  t.equal(aligned, 5, 'every payload landed in page-aligned memory');
  t.equal(network.acceptedWithoutOnread, 0, 'the accepted socket was switched to onread (no per-read allocation)');
  t.ok(network.pool.stats.allocated <= 5, `payloads landed in pooled buffers (${network.pool.stats.allocated} allocated)`);
  dialed.destroy();
  accepted.destroy();
  await close();
});

void t.test('a connection paused by its owner still sees the peer close', async (t) => {
  const network = new TcpDataNetwork();
  const { accepted, dialed, close } = await pair(network);
  let closed: DataPlaneError | null | undefined;
  let delivered = 0;
  accepted.start({
    onMessage: () => {
      delivered += 1;
      accepted.pause(); // the owner is full: as a pipeline hop at its window
    },
    onClose: (error) => {
      closed = error;
    },
  });
  dialed.start({ onMessage: () => {}, onClose: () => {} });
  dialed.send({ type: 'packet', seq: 0, offset: 0, sync: false, payload: patternBytes(256 * 1024, 1) });
  await waitFor(() => delivered === 1, 'the first packet');
  dialed.destroy(); // the writer gives up while the hop is paused
  await waitFor(() => closed !== undefined, 'the paused connection to notice the close');
  t.equal(delivered, 1, 'nothing is delivered while paused');
  t.ok(accepted.closed, 'the connection is closed');
  await close();
});

/**
 * The kernel's timer on the IPv4 TCP socket from port `local` to port `remote`, from /proc/net/tcp (Linux):
 * `tr` 2 is the keepalive timer, `tm->when` the clock ticks (USER_HZ, 100 a second) until it fires.
 */
function tcpTimer(local: number, remote: number): { timer: number; seconds: number } | undefined {
  const port = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(`:${port(local)}`) !== true || fields[2]?.endsWith(`:${port(remote)}`) !== true) continue;
    const [timer, when] = (fields[5] ?? '').split(':');
    return { timer: parseInt(timer ?? '', 16), seconds: parseInt(when ?? '', 16) / 100 };
  }
  return undefined;
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

void t.test('dialed and accepted sockets have TCP keepalive on, after tcpKeepAliveInitialDelayMs', { skip: process.platform !== 'linux' && 'reads /proc/net/tcp' }, async (t) => {
  const network = new TcpDataNetwork();
  const { accepted, dialed, close } = await pair(network);
  t.teardown(close);
  t.teardown(() => {
    dialed.destroy();
    accepted.destroy();
  });
  const listenPort = portOf(dialed.remoteAddress);
  const dialPort = portOf(accepted.remoteAddress);
  // The connection is idle: without keepalive no timer runs on either socket.
  const delaySeconds = tcpKeepAliveInitialDelayMs / 1000;
  for (const [what, local, remote] of [
    ['dialed', dialPort, listenPort],
    ['accepted', listenPort, dialPort],
  ] as const) {
    const timer = tcpTimer(local, remote);
    t.ok(timer !== undefined, `the ${what} socket is in /proc/net/tcp`);
    t.equal(timer?.timer, 2, `the ${what} socket's keepalive timer runs`);
    t.ok(timer !== undefined && timer.seconds > delaySeconds - 10 && timer.seconds <= delaySeconds, `and fires within ${delaySeconds} s (${timer?.seconds} s)`);
  }
});

/**
 * A peer that never closes its side (allowHalfOpen: a paused or cut-off process looks the same to the
 * server): it reads, so it sees the server's FIN (`ended`), and sends `messages` as frames.
 */
async function halfOpenPeer(address: string, messages: readonly Message[] = []): Promise<{ socket: net.Socket; readonly ended: boolean }> {
  const { host, port } = parseAddress(address);
  const socket = net.connect({ host, port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const peer = { socket, ended: false };
  socket.on('data', () => {});
  socket.on('end', () => (peer.ended = true));
  for (const message of messages) for (const part of encodeFrame(message, defaultDataPlaneLimits)) socket.write(part);
  return peer;
}

void t.test("a data server's close() does not wait for peers that never close the connections it ended", async (t) => {
  const cluster = await startCluster('tcp', 1, { connectionsMax: 1 });
  const server = cluster.servers[0]!;
  const peers: net.Socket[] = [];
  t.teardown(async () => {
    for (const socket of peers) socket.destroy();
    await cluster.close();
  });
  const payload = patternBytes(64 * 1024, 7);
  // A pipeline that finishes (the hop ends the connection once it acknowledged the seal).
  const pipeline = await halfOpenPeer(server.address, [
    { type: 'setup', handle: 71, version: 1, targetId: server.id, mode: 'create', fromVersion: 0, offset: 0, chain: [] },
    { type: 'packet', seq: 0, offset: 0, sync: false, payload },
    { type: 'seal', seq: 1, lengthBytes: payload.length },
  ]);
  peers.push(pipeline.socket);
  await waitFor(() => pipeline.ended, 'the finished hop to end its connection');
  t.equal(cluster.stores[0]!.info(71)?.lengthBytes, payload.length, 'the replica was written and sealed');
  // A protocol error (a connection must start with setup, read or local-read).
  const violator = await halfOpenPeer(server.address, [{ type: 'seal', seq: 0, lengthBytes: 0 }]);
  peers.push(violator.socket);
  await waitFor(() => violator.ended, 'the protocol error to end its connection');
  // One open connection takes the only slot; the next is refused with BUSY.
  const holder = await halfOpenPeer(server.address);
  peers.push(holder.socket);
  await waitFor(() => server.connectionCount === 1, 'the open connection');
  const refused = await halfOpenPeer(server.address);
  peers.push(refused.socket);
  await waitFor(() => refused.ended, 'the BUSY refusal to end its connection');
  t.notOk(holder.ended, 'the open connection is still open');

  const started = Date.now();
  const closed = track(server.close());
  await waitFor(() => closed.done, 'close()', 3_000).catch(() => undefined);
  t.ok(closed.done, `close() returned (${Date.now() - started} ms), though no peer closed its side`);
  await waitFor(() => holder.ended, 'the open connection to be closed too', 3_000).catch(() => undefined);
  t.ok(holder.ended, 'the open connection was closed too');
});
