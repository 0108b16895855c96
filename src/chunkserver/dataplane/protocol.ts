/**
 * The bulk data plane's messages. Every message travels as one frame (frame.ts): its fields in msgpack,
 * and, for `packet` and `data`, the payload bytes appended raw after them.
 *
 * Write pipeline (GFS/HDFS style), one connection per hop, client → chain[0] → chain[1] → …:
 *   1. `setup {handle, version, targetId, mode, fromVersion, offset, chain}`: the receiver (whose id must be
 *      `targetId`) creates the replica (mode `create`, offset 0) or raises it from `fromVersion` to `version`
 *      cut to `offset` bytes (mode `resume`, after the leader bumped the chunk's version; a replica a failed
 *      create never reached, resumed at offset 0, is created at `version`), dials `chain[0]`
 *      and forwards the setup with the rest of the chain. Optional `compression: 'lz4'` makes every replica
 *      it creates a compressed one (packed at seal; the wire always carries logical bytes). `setup-ack {replicas}` comes back once every
 *      replica downstream is ready; the writer sends no packet before it.
 *   2. `packet {seq, offset, sync}` + payload (at most packetBytesMax bytes): seq counts up from 0 with no
 *      gap (`seal` takes the next seq), offset is the replica's length so far. Each replica forwards the
 *      packet downstream AT ONCE and appends it locally in parallel (appends in seq order); with `sync` it
 *      also fsyncs before acknowledging. Optional `crcs`: the CRC32C of each piece of the payload on the
 *      64 KiB block grid of the chunk (block-crcs.ts), computed by the writer. The chain's last replica
 *      checks them against the bytes it received and fails the pipeline with CHECKSUM_MISMATCH when they
 *      differ; every replica stores them instead of checksumming the bytes again. Without `crcs` each
 *      replica checksums the bytes itself.
 *   3. `ack {seq, replicas}` goes upstream only when the local append (and fsync) of seq is done AND the
 *      downstream ack for seq arrived, and in seq order; so an ack the writer receives means every replica
 *      of the chain holds the packet. `replicas` lists one entry per replica from the sender to the chain's
 *      end (the writer sees all of them, in chain order).
 *   4. `seal {seq, lengthBytes}`: every replica seals its replica (store.seal: truncate, fsync, checksum)
 *      after its earlier appends; its ack carries each replica's checksum and length.
 *   `keepalive {}`: a writer whose pipeline is idle (set up, nothing unacknowledged, not sealed) sends one
 *   every pipelineKeepaliveMs; each hop forwards it downstream; nothing answers it. A hop that hears nothing
 *   from upstream for pipelineIdleMs while it owes upstream nothing ends the pipeline (TIMEOUT), so the
 *   hops of a writer that stopped without closing (a paused process, a blackholed client) free their
 *   connections and buffers (stall.ts).
 *   A failure is `failure {index, id, code, detail}`: `index` is the position of the FIRST failing replica,
 *   counted from the sender (0 = the sender itself); each hop upstream adds one, so the writer receives the
 *   index in its chain. A hop whose downstream connection breaks reports the downstream replica (index 1,
 *   CONNECTION_LOST). After a failure the pipeline is dead: every hop closes both its connections; what
 *   counts as written is what was acknowledged before it.
 *
 * Backpressure: at most inflightPacketsMax unacknowledged packets per hop. The writer keeps its window; a
 *   replica stops reading its upstream connection while inflightPacketsMax packets wait for their local
 *   append or downstream ack, so a slow replica stalls the hop above it, and so on up to the writer.
 *
 * Read: `read {handle, version, offset, length}` → `data {offset, last}` + payload frames of at most
 *   packetBytesMax bytes, in order, covering exactly the range (one empty `data` with `last` for length 0),
 *   or `error {code, detail}` (NO_SUCH_REPLICA, STALE_VERSION, CHECKSUM_MISMATCH, BAD_OFFSET, ...). One
 *   read at a time per connection; the connection stays open for the next one.
 *
 * Short-circuit local read (src/client/local-read.ts): `local-read {handle, version}` → `local-replica
 *   {dataPath, metaPath, tokenPath, token}`, the files of a sealed, durable, uncompressed replica and where
 *   the server's token file is, or `error` (LOCAL_READS_OFF: the server offers none; NOT_LOCAL: this replica
 *   cannot be read from its files now; NO_SUCH_REPLICA, STALE_VERSION). A client that reads `token` at `tokenPath` is on
 *   this server's host and may read the files itself, verifying every block against the sidecar. It travels
 *   on a read connection, like `read`.
 *
 * A connection that receives bytes which are not a valid frame or message sends `error` (MALFORMED_FRAME,
 * FRAME_TOO_LARGE or PROTOCOL_ERROR) if it still can, and closes.
 */
import { gridPieceCount } from '../block-crcs.ts';
import { Packr } from 'msgpackr';
import type { DataPlaneErrorCode } from './errors.ts';
import { DataPlaneError, isDataPlaneErrorCode } from './errors.ts';

export interface ChainLink {
  readonly id: number;
  readonly address: string;
}

export interface SetupMessage {
  readonly type: 'setup';
  readonly handle: number;
  readonly version: number;
  readonly targetId: number;
  readonly mode: 'create' | 'resume';
  /** Resume: the version the replica holds now (raised to `version`); create: 0. */
  readonly fromVersion: number;
  /** Resume: the acknowledged length the replica is cut to and the writer continues from; create: 0. */
  readonly offset: number;
  /** The replicas downstream of the receiver, in order. */
  readonly chain: readonly ChainLink[];
  /** Present for a compressed file: every replica the setup creates stores it so (the store's CreateOptions). */
  readonly compression?: 'lz4';
}

export interface ReplicaAck {
  readonly id: number;
  /** Seal acks only: the sealed replica's length and CRC32C. */
  readonly lengthBytes?: number;
  readonly checksum?: number;
}

export interface SetupAckMessage {
  readonly type: 'setup-ack';
  readonly replicas: readonly ReplicaAck[];
}

export interface PacketMessage {
  readonly type: 'packet';
  readonly seq: number;
  readonly offset: number;
  readonly sync: boolean;
  readonly payload: Uint8Array;
  /** The payload's CRC32Cs on the block grid (see the module comment); one per piece. */
  readonly crcs?: readonly number[];
}

export interface SealMessage {
  readonly type: 'seal';
  readonly seq: number;
  readonly lengthBytes: number;
}

export interface AckMessage {
  readonly type: 'ack';
  readonly seq: number;
  readonly replicas: readonly ReplicaAck[];
}

export interface KeepaliveMessage {
  readonly type: 'keepalive';
}

export interface FailureMessage {
  readonly type: 'failure';
  readonly index: number;
  readonly id: number;
  readonly code: DataPlaneErrorCode;
  readonly detail: string;
}

export interface ReadMessage {
  readonly type: 'read';
  readonly handle: number;
  readonly version: number;
  readonly offset: number;
  readonly length: number;
}

export interface LocalReadMessage {
  readonly type: 'local-read';
  readonly handle: number;
  readonly version: number;
}

export interface LocalReplicaMessage {
  readonly type: 'local-replica';
  readonly dataPath: string;
  readonly metaPath: string;
  readonly tokenPath: string;
  readonly token: string;
}

export interface DataMessage {
  readonly type: 'data';
  readonly offset: number;
  readonly last: boolean;
  readonly payload: Uint8Array;
}

export interface ErrorMessage {
  readonly type: 'error';
  readonly code: DataPlaneErrorCode;
  readonly detail: string;
}

export type Message =
  | SetupMessage
  | SetupAckMessage
  | PacketMessage
  | SealMessage
  | KeepaliveMessage
  | AckMessage
  | FailureMessage
  | ReadMessage
  | DataMessage
  | ErrorMessage
  | LocalReadMessage
  | LocalReplicaMessage;

/** Chain entries in a setup, at most (replication factors are small). */
export const chainLinksMax = 15;
/** Characters in an address or error detail, at most. */
export const addressCharsMax = 256;
export const detailCharsMax = 1024;
/** Characters in a file path or token of a local-replica message, at most (PATH_MAX). */
export const pathCharsMax = 4096;

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Bytes carried raw after the header fields (not msgpack-encoded, never copied into the encoding). */
export function payloadOf(message: Message): Uint8Array | undefined {
  return message.type === 'packet' || message.type === 'data' ? message.payload : undefined;
}

/** The message's fields without its payload, msgpack-encoded. */
export function encodeFields(message: Message): Uint8Array {
  if (message.type === 'packet') {
    const { payload: _payload, ...fields } = message;
    return packr.pack(fields);
  }
  if (message.type === 'data') {
    const { payload: _payload, ...fields } = message;
    return packr.pack(fields);
  }
  return packr.pack(message);
}

function malformed(detail: string): DataPlaneError {
  return new DataPlaneError('MALFORMED_FRAME', detail);
}

function nat(fields: Record<string, unknown>, name: string): number {
  const value = fields[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw malformed(`${name} must be a non-negative integer`);
  return value;
}

function bool(fields: Record<string, unknown>, name: string): boolean {
  const value = fields[name];
  if (typeof value !== 'boolean') throw malformed(`${name} must be a boolean`);
  return value;
}

function text(fields: Record<string, unknown>, name: string, charsMax: number): string {
  const value = fields[name];
  if (typeof value !== 'string' || value.length > charsMax)
    throw malformed(`${name} must be a string of at most ${charsMax} characters`);
  return value;
}

function code(fields: Record<string, unknown>): DataPlaneErrorCode {
  const value = fields.code;
  if (!isDataPlaneErrorCode(value)) throw malformed('unknown error code');
  return value;
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array)
    throw malformed(`${what} must be a map`);
  return value as Record<string, unknown>;
}

function list(fields: Record<string, unknown>, name: string, lengthMax: number): readonly unknown[] {
  const value = fields[name];
  if (!Array.isArray(value) || value.length > lengthMax)
    throw malformed(`${name} must be a list of at most ${lengthMax} entries`);
  return value as readonly unknown[];
}

function compressionField(fields: Record<string, unknown>): { compression?: 'lz4' } {
  if (fields.compression === undefined) return {};
  if (fields.compression !== 'lz4') throw malformed('compression must be lz4 or absent');
  return { compression: 'lz4' };
}

function replicaAcks(fields: Record<string, unknown>): ReplicaAck[] {
  return list(fields, 'replicas', chainLinksMax + 1).map((entry) => {
    const r = record(entry, 'replica ack');
    const id = nat(r, 'id');
    if (r.checksum === undefined && r.lengthBytes === undefined) return { id };
    return { id, lengthBytes: nat(r, 'lengthBytes'), checksum: nat(r, 'checksum') };
  });
}

/**
 * Validates decoded frame fields into a message; MALFORMED_FRAME for anything that is not exactly one of
 * the messages above (including a payload on a message that carries none, or a missing one).
 */
export function decodeMessage(headerBytes: Uint8Array, payload: Uint8Array): Message {
  let decoded: unknown;
  try {
    decoded = packr.unpack(headerBytes);
  } catch (error) {
    throw malformed(`header fields are not msgpack: ${error instanceof Error ? error.message : String(error)}`);
  }
  const f = record(decoded, 'header');
  const type = f.type;
  const carriesPayload = type === 'packet' || type === 'data';
  if (!carriesPayload && payload.length > 0) throw malformed(`a ${String(type)} message carries no payload`);
  switch (type) {
    case 'setup': {
      const mode = f.mode;
      if (mode !== 'create' && mode !== 'resume') throw malformed('mode must be create or resume');
      const chain = list(f, 'chain', chainLinksMax).map((entry) => {
        const link = record(entry, 'chain link');
        return { id: nat(link, 'id'), address: text(link, 'address', addressCharsMax) };
      });
      return {
        type,
        handle: nat(f, 'handle'),
        version: nat(f, 'version'),
        targetId: nat(f, 'targetId'),
        mode,
        fromVersion: nat(f, 'fromVersion'),
        offset: nat(f, 'offset'),
        chain,
        ...compressionField(f),
      };
    }
    case 'setup-ack':
      return { type, replicas: replicaAcks(f) };
    case 'packet': {
      const offset = nat(f, 'offset');
      const packet = { type, seq: nat(f, 'seq'), offset, sync: bool(f, 'sync'), payload } as const;
      if (f.crcs === undefined) return packet;
      const pieces = gridPieceCount(offset, payload.length);
      const crcs = list(f, 'crcs', pieces).map((crc) => {
        if (typeof crc !== 'number' || !Number.isInteger(crc) || crc < 0 || crc > 0xffff_ffff) throw malformed('crcs must be 32-bit unsigned integers');
        return crc;
      });
      if (crcs.length !== pieces) throw malformed(`crcs: ${crcs.length} for a payload of ${pieces} block pieces`);
      return { ...packet, crcs };
    }
    case 'seal':
      return { type, seq: nat(f, 'seq'), lengthBytes: nat(f, 'lengthBytes') };
    case 'keepalive':
      return { type };
    case 'ack':
      return { type, seq: nat(f, 'seq'), replicas: replicaAcks(f) };
    case 'failure':
      return {
        type,
        index: nat(f, 'index'),
        id: nat(f, 'id'),
        code: code(f),
        detail: text(f, 'detail', detailCharsMax),
      };
    case 'read':
      return {
        type,
        handle: nat(f, 'handle'),
        version: nat(f, 'version'),
        offset: nat(f, 'offset'),
        length: nat(f, 'length'),
      };
    case 'data':
      return { type, offset: nat(f, 'offset'), last: bool(f, 'last'), payload };
    case 'error':
      return { type, code: code(f), detail: text(f, 'detail', detailCharsMax) };
    case 'local-read':
      return { type, handle: nat(f, 'handle'), version: nat(f, 'version') };
    case 'local-replica':
      return {
        type,
        dataPath: text(f, 'dataPath', pathCharsMax),
        metaPath: text(f, 'metaPath', pathCharsMax),
        tokenPath: text(f, 'tokenPath', pathCharsMax),
        token: text(f, 'token', pathCharsMax),
      };
    default:
      throw malformed(`unknown message type ${JSON.stringify(type)?.slice(0, 40)}`);
  }
}

/** An error message for `error`, with the detail cut to what the wire accepts. */
export function errorMessage(error: DataPlaneError): ErrorMessage {
  return { type: 'error', code: error.code, detail: error.detail.slice(0, detailCharsMax) };
}
