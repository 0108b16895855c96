/**
 * The RaftTransport service of raft.proto, loaded at run time with @grpc/proto-loader (the .proto stays the
 * single source of truth, usable from any language).
 */
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export const raftProtoPath = fileURLToPath(new URL('./raft.proto', import.meta.url));

/** A uint64 as its two 32-bit halves: protobufjs encodes it without parsing a decimal string. */
export interface U64Bits {
  readonly low: number;
  readonly high: number;
  readonly unsigned: true;
}

export function u64Bits(value: bigint): U64Bits {
  return { low: Number(value & 0xffffffffn) | 0, high: Number(value >> 32n) | 0, unsigned: true };
}

/** A RaftBatch as proto-loader hands it over (uint64 as decimal strings) or accepts it (numbers or strings). */
export interface RaftBatchWire {
  readonly from: string | number;
  readonly clusterId: string | number;
  readonly messages: readonly Uint8Array[];
}

/** A RaftBatch to send: the cluster id may also be halves (a decimal string costs a Long.fromString per batch). */
export interface RaftBatchOut {
  readonly from: string | number;
  readonly clusterId: string | number | U64Bits;
  readonly messages: readonly Uint8Array[];
}

export interface SendAckWire {
  readonly batches: string | number;
  readonly messages: string | number;
}

/** What the server's deserializer yields for bytes that are not a RaftBatch (instead of failing the call). */
export const invalidBatch: unique symbol = Symbol('invalid RaftBatch');
export type InboundBatch = RaftBatchWire | typeof invalidBatch;

const packageDefinition = loadSync(raftProtoPath, { longs: String, defaults: true, keepCase: false });
const loaded = packageDefinition['rfs.raft.v1.RaftTransport'] as
  Record<string, MethodDefinition<object, object>> | undefined;
const loadedSend = loaded?.['Send'];
if (loadedSend === undefined)
  throw new Error(`${raftProtoPath}: service rfs.raft.v1.RaftTransport with method Send not found`);

/** The client's view of Send. */
export const raftSendMethod = loadedSend as unknown as MethodDefinition<RaftBatchOut, SendAckWire>;

function safeDeserialize(bytes: Buffer): InboundBatch {
  try {
    return raftSendMethod.requestDeserialize(bytes) as RaftBatchWire;
  } catch {
    return invalidBatch;
  }
}

/** The server's view: a frame that does not parse becomes `invalidBatch`, so the handler counts and rejects it. */
export const raftTransportService: ServiceDefinition<{ Send: MethodDefinition<InboundBatch, SendAckWire> }> =
  {
    Send: { ...raftSendMethod, requestDeserialize: safeDeserialize },
  };
