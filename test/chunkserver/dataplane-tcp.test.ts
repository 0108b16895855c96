/**
 * The TCP transport's receive side: accepted sockets read in place (onread) like dialed ones, and a
 * connection whose delivery is paused still notices its peer going away; both kinds of socket have TCP
 * keepalive on.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { DataConnection } from '../../src/chunkserver/dataplane/connection.ts';
import type { DataPlaneError } from '../../src/chunkserver/dataplane/errors.ts';
import type { Message } from '../../src/chunkserver/dataplane/protocol.ts';
import { TcpDataNetwork, tcpKeepAliveInitialDelayMs } from '../../src/chunkserver/dataplane/tcp.ts';
import { isPageAligned } from '../../src/chunkserver/aligned.ts';
import { patternBytes, waitFor } from './dataplane-harness.ts';

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
