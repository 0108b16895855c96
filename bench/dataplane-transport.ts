/**
 * npm run bench:dataplane [-- --bytes N --packet-bytes N --inflight N --rounds N --only framed-tcp|grpc-js]
 *
 * The bulk data plane's transport, chosen by measurement: the same bytes (default 1 GiB, in 64 MiB chunks,
 * 256 KiB packets, 16 packets in flight per hop) pushed through a write pipeline of 3 hops and of 1 hop,
 *   (a) over rfs's framed TCP protocol (src/chunkserver/dataplane: DataServer + PipelineWriter), and
 *   (b) over a minimal @grpc/grpc-js bidirectional stream per chunk doing the same forwarding (each hop
 *       forwards a packet downstream at once, appends locally, acks upstream when both are done, pauses
 *       its upstream at the window), with raw Buffer (de)serialisers so gRPC pays no protobuf cost.
 * Stores are in memory and keep no bytes (lengths and a running CRC32C only), so the figures are the
 * transport's. Everything runs in this process: CPU seconds are the whole pipeline's (client and every
 * hop), and MB/s is bytes of payload (1 MB = 10^6 B) over wall time. A script, not a test.
 */
import * as grpc from '@grpc/grpc-js';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { DataServer } from '../src/chunkserver/dataplane/server.ts';
import { TcpDataNetwork } from '../src/chunkserver/dataplane/tcp.ts';
import { PipelineWriter } from '../src/chunkserver/dataplane/writer.ts';
import { chunkSizeBytesMax } from '../src/chunkserver/types.ts';
import { MemoryChunkStore } from '../test/chunkserver/memory-store.ts';

const { values: args } = parseArgs({
  options: {
    bytes: { type: 'string', default: String(1024 * 1024 * 1024) },
    'packet-bytes': { type: 'string', default: String(256 * 1024) },
    inflight: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '1' },
    /** Run one transport only (e.g. `framed-tcp` while tuning it). */
    only: { type: 'string' },
  },
});
const totalBytes = Number(args.bytes);
const packetBytes = Number(args['packet-bytes']);
const inflightPacketsMax = Number(args.inflight);
const rounds = Number(args.rounds);
const chunkBytes = Math.min(chunkSizeBytesMax, totalBytes);
const chunkCount = Math.ceil(totalBytes / chunkBytes);
const source = Buffer.alloc(chunkBytes, 0x5a);

interface Result {
  readonly seconds: number;
  readonly cpuSeconds: number;
}

async function measure(run: () => Promise<void>): Promise<Result> {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  await run();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
}

// ---- (a) rfs framed TCP ----

async function tcpPipeline(hops: number): Promise<{ run: (bytes: number) => Promise<void>; close: () => Promise<void> }> {
  const limits = { inflightPacketsMax };
  const network = new TcpDataNetwork(limits);
  const servers: DataServer[] = [];
  const stores: MemoryChunkStore[] = [];
  for (let i = 0; i < hops; i++) {
    const store = new MemoryChunkStore({ discardData: true });
    stores.push(store);
    servers.push(await DataServer.start({ id: i + 1, store, network, address: '127.0.0.1:0', limits }));
  }
  const chain = servers.map((s) => ({ id: s.id, address: s.address }));
  let handle = 1;
  return {
    run: async (bytes) => {
      for (let written = 0; written < bytes; written += chunkBytes) {
        const length = Math.min(chunkBytes, bytes - written);
        const writer = await PipelineWriter.open(network, { handle, version: 1, chain, packetBytes, limits });
        await writer.write(source.subarray(0, length));
        await writer.seal();
        for (const store of stores) await store.delete(handle, 1);
        handle += 1;
      }
    },
    close: async () => {
      for (const server of servers) await server.close();
    },
  };
}

// ---- (b) gRPC bidi streams doing the same forwarding ----
// Request: u8 kind (0 setup, 1 packet, 2 seal) | u32 seq | f64 offset | payload (setup: JSON {handle, chain}).
// Response: u32 seq (an ack).

const kindSetup = 0;
const kindPacket = 1;
const kindSeal = 2;
const requestHeaderBytes = 13;

const identity = (b: Buffer): Buffer => b;
const pipeMethod: grpc.MethodDefinition<Buffer, Buffer> = {
  path: '/rfs.bench.DataPipe/Pipe',
  requestStream: true,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};
const pipeService: grpc.ServiceDefinition = { Pipe: pipeMethod };
const PipeClient = grpc.makeGenericClientConstructor(pipeService, 'DataPipe');
const channelOptions = { 'grpc.max_receive_message_length': 8 * 1024 * 1024, 'grpc.max_send_message_length': 8 * 1024 * 1024 };

function request(kind: number, seq: number, offset: number, payload?: Buffer): Buffer[] {
  const header = Buffer.allocUnsafe(requestHeaderBytes);
  header.writeUInt8(kind, 0);
  header.writeUInt32BE(seq, 1);
  header.writeDoubleBE(offset, 5);
  return payload === undefined ? [header] : [header, payload];
}

function ackOf(seq: number): Buffer {
  const ack = Buffer.allocUnsafe(4);
  ack.writeUInt32BE(seq, 0);
  return ack;
}

type PipeCall = grpc.ClientDuplexStream<Buffer, Buffer>;

function openPipe(clients: Map<string, grpc.Client>, address: string): PipeCall {
  let client = clients.get(address);
  if (client === undefined) {
    client = new PipeClient(address, grpc.credentials.createInsecure(), channelOptions);
    clients.set(address, client);
  }
  return (client as unknown as { Pipe: () => PipeCall }).Pipe();
}

function grpcHop(store: MemoryChunkStore, clients: Map<string, grpc.Client>) {
  return (call: grpc.ServerDuplexStream<Buffer, Buffer>): void => {
    let handle = 0;
    let downstream: PipeCall | null = null;
    const pending: { seq: number; local: boolean; down: boolean; seal: boolean }[] = [];
    let local: Promise<void> = Promise.resolve();
    const maybeAck = (): void => {
      for (let head = pending[0]; head !== undefined && head.local && head.down; head = pending[0]) {
        pending.shift();
        call.write(ackOf(head.seq));
        if (head.seal) call.end();
      }
      if (pending.length < inflightPacketsMax) call.resume();
    };
    call.on('data', (message: Buffer) => {
      const kind = message.readUInt8(0);
      const seq = message.readUInt32BE(1);
      const offset = message.readDoubleBE(5);
      if (kind === kindSetup) {
        const setup = JSON.parse(message.subarray(requestHeaderBytes).toString()) as { handle: number; chain: string[] };
        handle = setup.handle;
        local = local.then(() => store.create(handle, 1));
        const [next, ...rest] = setup.chain;
        if (next !== undefined) {
          const pipe = openPipe(clients, next);
          downstream = pipe;
          pipe.on('data', (ack: Buffer) => {
            const entry = pending.find((p) => p.seq === ack.readUInt32BE(0));
            if (entry !== undefined) entry.down = true;
            maybeAck();
          });
          pipe.on('error', () => call.destroy());
          pipe.write(Buffer.concat(request(kindSetup, 0, 0, Buffer.from(JSON.stringify({ handle, chain: rest })))));
        }
        return;
      }
      downstream?.write(message); // forward at once, the same buffer
      const entry = { seq, local: false, down: downstream === null, seal: kind === kindSeal };
      pending.push(entry);
      if (pending.length >= inflightPacketsMax) call.pause();
      local = local.then(async () => {
        if (kind === kindPacket) await store.append(handle, 1, offset, message.subarray(requestHeaderBytes));
        else await store.seal(handle, 1, offset);
        entry.local = true;
        maybeAck();
      });
    });
    call.on('end', () => downstream?.end());
  };
}

async function grpcPipeline(hops: number): Promise<{ run: (bytes: number) => Promise<void>; close: () => Promise<void> }> {
  const servers: grpc.Server[] = [];
  const stores: MemoryChunkStore[] = [];
  const addresses: string[] = [];
  const clients = new Map<string, grpc.Client>();
  for (let i = 0; i < hops; i++) {
    const store = new MemoryChunkStore({ discardData: true });
    stores.push(store);
    const server = new grpc.Server(channelOptions);
    server.addService(pipeService, { Pipe: grpcHop(store, clients) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    servers.push(server);
    addresses.push(`127.0.0.1:${port}`);
  }
  let handle = 1;
  return {
    run: async (bytes) => {
      for (let written = 0; written < bytes; written += chunkBytes) {
        const length = Math.min(chunkBytes, bytes - written);
        const pipe = openPipe(clients, addresses[0]!);
        let acked = 0;
        let wake: (() => void) | null = null;
        const chunkHandle = handle;
        pipe.on('data', () => {
          acked += 1;
          wake?.();
        });
        const waitAcks = async (count: number): Promise<void> => {
          while (acked < count) await new Promise<void>((resolve) => (wake = resolve));
        };
        pipe.write(Buffer.concat(request(kindSetup, 0, 0, Buffer.from(JSON.stringify({ handle: chunkHandle, chain: addresses.slice(1) })))));
        let seq = 0;
        for (let offset = 0; offset < length; offset += packetBytes) {
          await waitAcks(seq + 1 - inflightPacketsMax);
          const payload = source.subarray(offset, Math.min(offset + packetBytes, length));
          // gRPC takes one buffer per message: header and payload are concatenated (one copy), as a
          // protobuf `bytes` field would be.
          if (!pipe.write(Buffer.concat(request(kindPacket, seq, offset, payload)))) await once(pipe, 'drain');
          seq += 1;
        }
        pipe.write(Buffer.concat(request(kindSeal, seq, length)));
        seq += 1;
        await waitAcks(seq);
        pipe.end();
        for (const store of stores) await store.delete(chunkHandle, 1);
        handle += 1;
      }
    },
    close: async () => {
      for (const client of clients.values()) client.close();
      for (const server of servers) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

function line(name: string, hops: number, result: Result, bytes: number): string {
  const mbPerSecond = bytes / 1e6 / result.seconds;
  return `${name.padEnd(12)} hops=${hops}  ${(bytes / 2 ** 20).toFixed(0)} MiB  ${result.seconds.toFixed(2)} s  ${mbPerSecond.toFixed(0).padStart(5)} MB/s  CPU ${result.cpuSeconds.toFixed(2)} s  (${(result.cpuSeconds / (bytes / 1e9)).toFixed(2)} CPU s/GB)`;
}

async function main(): Promise<void> {
  console.log(`data plane transports: ${(totalBytes / 2 ** 20).toFixed(0)} MiB in ${chunkCount} chunk(s) of ${chunkBytes / 2 ** 20} MiB, packets of ${packetBytes / 1024} KiB, ${inflightPacketsMax} in flight per hop, node ${process.version}`);
  const warmupBytes = Math.min(totalBytes, 64 * 1024 * 1024);
  for (let round = 0; round < rounds; round++) {
    for (const hops of [3, 1]) {
      for (const [name, make] of [
        ['framed-tcp', tcpPipeline],
        ['grpc-js', grpcPipeline],
      ] as const) {
        if (args.only !== undefined && args.only !== name) continue;
        const pipeline = await make(hops);
        await pipeline.run(warmupBytes);
        const result = await measure(() => pipeline.run(totalBytes));
        console.log(line(name, hops, result, totalBytes));
        await pipeline.close();
      }
    }
  }
}

await main();
