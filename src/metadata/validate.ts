/**
 * Input validation of Metadata requests, before anything is proposed: a request that fails here gets a typed
 * EINVAL / ENAMETOOLONG error and never reaches the Raft log. Path syntax itself (components, `.`/`..`, NUL)
 * is checked again by the state machine when the command is applied.
 */
import type { ChunkSeal, FsmLimits, Op, SessionStamp } from '../fsm/index.ts';
import { defaultFsmLimits } from '../fsm/index.ts';
import type { ReportedChunk } from '../placement/index.ts';
import type { WireRequest } from './proto.ts';
import { createManyNamesMax } from '../fsm/commands.ts';

export class RequestError extends Error {
  constructor(
    readonly code: 'EINVAL' | 'ENAMETOOLONG',
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Bound on a path's UTF-8 bytes accepted on the wire (the state machine's pathBytesMax). */
export const requestPathBytesMax = 4096;
/** Bound on other strings (owner, cursor). */
export const requestStringBytesMax = 1024;

/** A uint64 as proto-loader hands it over (decimal string), or a number; must be a safe integer. */
export function nat(v: unknown, what: string): number {
  const n = typeof v === 'string' && /^[0-9]{1,16}$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN;
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RequestError('EINVAL', `${what}: not a non-negative integer`);
  return n;
}

export function optNat(v: unknown, what: string): number | undefined {
  return v === undefined || v === null ? undefined : nat(v, what);
}

export function path(v: unknown, what = 'path'): string {
  if (typeof v !== 'string' || v.length === 0) throw new RequestError('EINVAL', `${what}: required`);
  if (Buffer.byteLength(v) > requestPathBytesMax)
    throw new RequestError('ENAMETOOLONG', `${what}: longer than ${requestPathBytesMax} bytes`);
  if (!v.startsWith('/')) throw new RequestError('EINVAL', `${what}: not absolute`);
  return v;
}

function names(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0)
    throw new RequestError('EINVAL', 'names: at least one name required');
  if (v.length > createManyNamesMax)
    throw new RequestError('EINVAL', `names: at most ${createManyNamesMax} per request`);
  return v.map((n, i) => {
    if (typeof n !== 'string' || n.length === 0) throw new RequestError('EINVAL', `names[${i}]: not a name`);
    if (Buffer.byteLength(n) > requestPathBytesMax)
      throw new RequestError('ENAMETOOLONG', `names[${i}]: longer than ${requestPathBytesMax} bytes`);
    return n;
  });
}

export function optString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new RequestError('EINVAL', `${what}: not a string`);
  if (Buffer.byteLength(v) > requestStringBytesMax)
    throw new RequestError('EINVAL', `${what}: longer than ${requestStringBytesMax} bytes`);
  return v;
}

/** A file's or directory's compression: 'none' or 'lz4', or absent. */
export function optCompression(v: unknown): 'none' | 'lz4' | undefined {
  const s = optString(v, 'compression');
  if (s === undefined || s === 'none' || s === 'lz4') return s;
  throw new RequestError('EINVAL', 'compression: none or lz4');
}

export function optBool(v: unknown, what: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new RequestError('EINVAL', `${what}: not a boolean`);
  return v;
}

export function session(v: unknown): SessionStamp {
  if (typeof v !== 'object' || v === null)
    throw new RequestError('EINVAL', 'session: required (OpenSession first)');
  const s = v as Record<string, unknown>;
  const clientId = nat(s['clientId'] ?? 0, 'session.client_id');
  const seq = nat(s['seq'] ?? 0, 'session.seq');
  const ack = nat(s['ack'] ?? 0, 'session.ack');
  if (clientId === 0) throw new RequestError('EINVAL', 'session.client_id: must be >= 1');
  if (seq === 0) throw new RequestError('EINVAL', 'session.seq: must be >= 1');
  if (ack >= seq) throw new RequestError('EINVAL', 'session.ack: must be < seq');
  return { clientId, seq, ack };
}

/** The state machine's limits a request is checked against before anything is proposed. */
export type RequestLimits = Pick<FsmLimits, 'leaseDurationMsMax' | 'labelBytesMax' | 'replicationMax'>;

/** A CRC32C, at most. */
export const checksumMax = 0xffff_ffff;

/** A lease holder: required, at most labelBytesMax UTF-8 bytes (the state machine's bound). */
export function holder(v: unknown, limits: RequestLimits, what = 'holder'): string {
  const s = requiredString(v, what);
  if (Buffer.byteLength(s) > limits.labelBytesMax)
    throw new RequestError('EINVAL', `${what}: longer than ${limits.labelBytesMax} bytes`);
  return s;
}

/** A lease duration: 1 .. leaseDurationMsMax milliseconds. */
export function leaseDurationMs(v: unknown, limits: RequestLimits, what = 'duration_ms'): number {
  const ms = nat(v ?? 0, what);
  if (ms < 1 || ms > limits.leaseDurationMsMax)
    throw new RequestError('EINVAL', `${what}: ${ms} ms outside 1..${limits.leaseDurationMsMax}`);
  return ms;
}

/** A CRC32C (uint32). */
export function checksum(v: unknown, what = 'checksum'): number {
  const n = nat(v ?? 0, what);
  if (n > checksumMax) throw new RequestError('EINVAL', `${what}: not a CRC32C (above ${checksumMax})`);
  return n;
}

/** Distinct positive chunkserver ids, at most replicationMax (a replica list). */
export function replicaIds(v: unknown, limits: RequestLimits, what: string): number[] {
  const ids = idList(v, what);
  if (ids.length > limits.replicationMax) throw new RequestError('EINVAL', `${what}: more than ${limits.replicationMax}`);
  if (new Set(ids).size !== ids.length) throw new RequestError('EINVAL', `${what}: an id appears twice`);
  return ids;
}

/**
 * The state-machine op of a mutation request. `limits`: the state machine's, for the checks that would
 * otherwise only fail once applied (lease durations, holders).
 */
export function mutationOp(method: string, r: WireRequest, limits: RequestLimits = defaultFsmLimits): Op {
  const ifGeneration = optNat(r['ifGeneration'], 'if_generation');
  switch (method) {
    case 'Mkdir':
      return {
        type: 'mkdir',
        path: path(r['path']),
        parents: optBool(r['parents'], 'parents'),
        mode: optNat(r['mode'], 'mode'),
        owner: optString(r['owner'], 'owner'),
        replication: optNat(r['replication'], 'replication'),
        chunkSizeBytes: optNat(r['chunkSizeBytes'], 'chunk_size_bytes'),
        compression: optCompression(r['compression']),
        ifGeneration,
      };
    case 'Create': {
      const holder = optString(r['leaseHolder'], 'lease_holder');
      const durationMs =
        r['leaseDurationMs'] === undefined || r['leaseDurationMs'] === null
          ? undefined
          : leaseDurationMs(r['leaseDurationMs'], limits, 'lease_duration_ms');
      if ((holder === undefined) !== (durationMs === undefined))
        throw new RequestError('EINVAL', 'lease_holder and lease_duration_ms: give both or neither');
      return {
        type: 'create',
        path: path(r['path']),
        exclusive: optBool(r['exclusive'], 'exclusive'),
        mode: optNat(r['mode'], 'mode'),
        owner: optString(r['owner'], 'owner'),
        replication: optNat(r['replication'], 'replication'),
        chunkSizeBytes: optNat(r['chunkSizeBytes'], 'chunk_size_bytes'),
        compression: optCompression(r['compression']),
        lease: holder === undefined || durationMs === undefined ? undefined : { holder, durationMs },
        ifGeneration,
      };
    }
    case 'CreateMany':
      return {
        type: 'createMany',
        dir: path(r['dir'], 'dir'),
        names: names(r['names']),
        mode: optNat(r['mode'], 'mode'),
        owner: optString(r['owner'], 'owner'),
        replication: optNat(r['replication'], 'replication'),
        chunkSizeBytes: optNat(r['chunkSizeBytes'], 'chunk_size_bytes'),
        compression: optCompression(r['compression']),
        ifGeneration,
      };
    case 'Setattr':
      return {
        type: 'setattr',
        path: path(r['path']),
        mode: optNat(r['mode'], 'mode'),
        mtimeMs: optNat(r['mtimeMs'], 'mtime_ms'),
        owner: optString(r['owner'], 'owner'),
        replication: optNat(r['replication'], 'replication'),
        compression: optCompression(r['compression']),
        ifGeneration,
      };
    case 'Rename':
      return { type: 'rename', from: path(r['from'], 'from'), to: path(r['to'], 'to'), ifGeneration };
    case 'Unlink':
      return { type: 'unlink', path: path(r['path']), ifGeneration };
    case 'Rmdir':
      return { type: 'rmdir', path: path(r['path']), ifGeneration };
    case 'DeleteRecursive':
      return { type: 'deleteRecursive', path: path(r['path']), ifGeneration };
    case 'AcquireLease':
    case 'RenewLease':
      return {
        type: method === 'AcquireLease' ? 'acquireLease' : 'renewLease',
        path: path(r['path']),
        holder: holder(r['holder'], limits),
        durationMs: leaseDurationMs(r['durationMs'], limits),
        ifGeneration,
      };
    case 'ReleaseLease':
      return { type: 'releaseLease', path: path(r['path']), holder: holder(r['holder'], limits), ifGeneration };
    case 'CompleteFile':
      return {
        type: 'completeFile',
        path: path(r['path']),
        holder: holder(r['holder'], limits),
        chunkCount: optNat(r['chunkCount'], 'chunk_count'),
        lastChunk: optChunkSeal(r['lastChunk'], 'last_chunk'),
        ifGeneration,
      };
    case 'AbandonChunk':
      return {
        type: 'abandonChunk',
        path: path(r['path']),
        holder: holder(r['holder'], limits),
        handle: positiveId(r['handle'], 'handle'),
        ifGeneration,
      };
    case 'SealChunk':
      return {
        type: 'sealChunk',
        handle: positiveId(r['handle'], 'handle'),
        holder: holder(r['holder'], limits),
        version: positiveId(r['version'], 'version'),
        lengthBytes: nat(r['lengthBytes'] ?? 0, 'length_bytes'),
        checksum: checksum(r['checksum']),
        ifGeneration,
      };
    default:
      throw new RequestError('EINVAL', `${method} is not a mutation`);
  }
}

/** Chunks one chunk report may list, at most (the 64 KiB request frame bounds it well below this anyway). */
export const reportChunksMax = 100_000;

/** A required, non-empty string of at most requestStringBytesMax bytes. */
export function requiredString(v: unknown, what: string): string {
  const s = optString(v, what);
  if (s === undefined || s.length === 0) throw new RequestError('EINVAL', `${what}: required`);
  return s;
}

/** A positive id (chunkserver ids, chunk handles); 0 or absent is EINVAL. */
export function positiveId(v: unknown, what: string): number {
  const id = v === undefined || v === null ? 0 : nat(v, what);
  if (id < 1) throw new RequestError('EINVAL', `${what}: required (a positive integer)`);
  return id;
}

/** An optional ChunkSeal message: absent (or null) is none; present, every field as SealChunk's. */
export function optChunkSeal(v: unknown, what: string): ChunkSeal | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new RequestError('EINVAL', `${what}: not a message`);
  const s = v as Record<string, unknown>;
  return {
    handle: positiveId(s['handle'], `${what}.handle`),
    version: positiveId(s['version'], `${what}.version`),
    lengthBytes: nat(s['lengthBytes'] ?? 0, `${what}.length_bytes`),
    checksum: checksum(s['checksum'] ?? 0, `${what}.checksum`),
  };
}

/** An optional session stamp: absent (or null) is none; present must be well formed. */
export function optSession(v: unknown): SessionStamp | undefined {
  return v === undefined || v === null ? undefined : session(v);
}

/** A chunk report's entries: [{handle >= 1, version >= 1, lengthBytes}], at most reportChunksMax. */
function optSealed(v: unknown, i: number): { sealed?: boolean } {
  const sealed = optBool(v, `chunks[${i}].sealed`);
  return sealed === undefined ? {} : { sealed };
}

function optChecksum(v: unknown, i: number): { checksum?: number } {
  if (v === undefined || v === null) return {};
  const checksum = nat(v, `chunks[${i}].checksum`);
  if (checksum > 0xffffffff) throw new RequestError('EINVAL', `chunks[${i}].checksum: not a CRC32C`);
  return { checksum };
}

export function reportedChunks(v: unknown): ReportedChunk[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new RequestError('EINVAL', 'chunks: not a list');
  if (v.length > reportChunksMax) throw new RequestError('EINVAL', `chunks: more than ${reportChunksMax}`);
  return v.map((c: unknown, i) => {
    if (typeof c !== 'object' || c === null) throw new RequestError('EINVAL', `chunks[${i}]: not a message`);
    const r = c as Record<string, unknown>;
    return {
      handle: positiveId(r['handle'], `chunks[${i}].handle`),
      version: positiveId(r['version'], `chunks[${i}].version`),
      lengthBytes: nat(r['lengthBytes'] ?? 0, `chunks[${i}].length_bytes`),
      ...optSealed(r['sealed'], i),
      ...optChecksum(r['checksum'], i),
    };
  });
}

/** A list of positive ids, at most reportChunksMax. */
export function idList(v: unknown, what: string): number[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new RequestError('EINVAL', `${what}: not a list`);
  if (v.length > reportChunksMax) throw new RequestError('EINVAL', `${what}: more than ${reportChunksMax}`);
  return v.map((x: unknown, i) => positiveId(x, `${what}[${i}]`));
}
