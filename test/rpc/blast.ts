/**
 * A quick local throughput check of the gRPC Raft transport: node 1 blasts messages at node 2 over
 * 127.0.0.1 and we count what node 2 delivers per second.
 *
 *   npx tsx test/rpc/blast.ts [seconds-per-case] [--one-process]
 *
 * By default the receiver runs in a child process (two servers, as in production); with --one-process both
 * ends share one event loop (a lower bound).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Message } from '../../src/raft/types.ts';
import { GrpcRaftTransport } from '../../src/rpc/grpc-raft-transport.ts';

interface Count {
  readonly received: number;
  readonly bytes: number;
}

const cases = [
  { label: 'heartbeat-sized (no entries)', entries: 0, entryBytes: 0 },
  { label: 'app, 1 entry x 128 B', entries: 1, entryBytes: 128 },
  { label: 'app, 16 entries x 128 B', entries: 16, entryBytes: 128 },
  { label: 'app, 1 entry x 64 KiB', entries: 1, entryBytes: 64 * 1024 },
];

function msg(entries: number, entryBytes: number): Message {
  const data = new Uint8Array(entryBytes);
  return {
    type: entries === 0 ? 'heartbeat' : 'app',
    from: 1,
    to: 2,
    term: 3,
    logTerm: 3,
    index: 1,
    commit: 1,
    entries: Array.from({ length: entries }, (_, i) => ({ term: 3, index: i + 2, type: 0 as const, data })),
    reject: false,
    rejectHint: 0,
    context: null,
    snapshot: null,
  };
}

/** The receiving node: counts deliveries. */
async function receiver(): Promise<{ port: number; count: () => Count; stop: () => Promise<void> }> {
  let received = 0;
  let bytes = 0;
  const b = new GrpcRaftTransport({
    id: 2,
    clusterId: 1,
    peers: new Map(),
    deliver: (m) => {
      received++;
      for (const e of m.entries) bytes += e.data.byteLength;
    },
  });
  const port = await b.startServer('127.0.0.1:0');
  return { port, count: () => ({ received, bytes }), stop: () => b.stop() };
}

if (process.argv[2] === '--child') {
  const r = await receiver();
  process.send?.({ port: r.port });
  process.on('message', (m: unknown) => {
    if (m === 'count') process.send?.(r.count());
    if (m === 'exit') void r.stop().then(() => process.exit(0));
  });
} else {
  const seconds = Number(process.argv.slice(2).find((a) => /^[0-9.]+$/.test(a)) ?? 3);
  const oneProcess = process.argv.includes('--one-process');
  let port: number;
  let count: () => Promise<Count>;
  let stopReceiver: () => Promise<void>;
  let child: ChildProcess | null = null;
  if (oneProcess) {
    const r = await receiver();
    port = r.port;
    count = () => Promise.resolve(r.count());
    stopReceiver = r.stop;
  } else {
    const c = fork(new URL(import.meta.url).pathname, ['--child'], { execArgv: ['--import', 'tsx'] });
    child = c;
    port = await new Promise<number>((resolve) =>
      c.once('message', (m) => resolve((m as { port: number }).port)),
    );
    count = () =>
      new Promise<Count>((resolve) => {
        c.once('message', (m) => resolve(m as Count));
        c.send('count');
      });
    stopReceiver = () =>
      new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.send('exit');
      });
  }
  console.log(
    `gRPC Raft transport, ${oneProcess ? 'one process' : 'receiver in a child process'}, ${seconds} s per case`,
  );
  for (const { label, entries, entryBytes } of cases) {
    const a = new GrpcRaftTransport({
      id: 1,
      clusterId: 1,
      peers: new Map([[2, `127.0.0.1:${port}`]]),
      deliver: () => {},
    });
    const template = msg(entries, entryBytes);
    const bytesPerMessage = Math.max(1, entries * entryBytes);
    const perTurn = Math.max(1, Math.min(256, Math.floor((1024 * 1024) / bytesPerMessage)));
    const queueHigh = 8 * 1024 * 1024;
    // Connect first.
    const before = await count();
    a.send(template);
    while ((await count()).received === before.received) await new Promise((r) => setTimeout(r, 5));
    const start = await count();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let turns = 0;
    while (performance.now() < end) {
      if (a.stats().peers.get(2)!.queuedBytes < queueHigh) for (let i = 0; i < perTurn; i++) a.send(template);
      await new Promise((r) => setImmediate(r));
      if (++turns % 64 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    const done = await count();
    const elapsed = (performance.now() - t0) / 1000;
    const received = done.received - start.received;
    const bytes = done.bytes - start.bytes;
    const s = a.stats();
    console.log(
      `${label.padEnd(30)} ${(received / elapsed).toFixed(0).padStart(8)} msg/s ${(bytes / elapsed / 1e6).toFixed(1).padStart(7)} MB/s payload` +
        `   ${(s.messagesSent / Math.max(1, s.batchesSent)).toFixed(0)} msg/batch, ${s.stalls} stalls, ${Object.values(s.dropped).reduce((x, y) => x + y, 0)} dropped`,
    );
    await a.stop();
  }
  await stopReceiver();
  if (child?.connected === true) child.disconnect();
}
