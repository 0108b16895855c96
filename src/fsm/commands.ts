/**
 * Commands: what a Raft entry of the metadata group carries. msgpack of
 *
 *   [COMMAND_FORMAT, nowMs, session | null, op]      session = [clientId, seq, ack]
 *
 * where `op` is a map with a `type` and that type's fields. The leader stamps `nowMs` (its wall clock) so the
 * state machine never reads a clock. New ids (inodes, chunk handles, chunkservers, sessions) come from
 * counters in the replicated state, which every replica advances identically (see
 * state-machine.ts); no randomness is involved anywhere.
 *
 * Decoding checks shape only (types, required and unknown fields) and throws CommandDecodeError (EBADMSG);
 * it never throws anything else, whatever the bytes. Meaning (path syntax, ranges, existence) is checked when
 * the command is applied, and reported as a POSIX-style error result.
 */
import { CommandDecodeError } from './errors.ts';
import { packr } from './records.ts';
import type { ChunkserverState } from './records.ts';
import { chunkserverStates } from './records.ts';

export const COMMAND_FORMAT = 1;

/**
 * Session stamp of a client command. `seq` numbers the client's commands from 1; `ack` says the client has
 * received the results of every sequence <= ack (so the state machine may forget them). Invariant: ack < seq.
 */
export interface SessionStamp {
  readonly clientId: number;
  readonly seq: number;
  readonly ack: number;
}

/**
 * Every mutation may carry `ifGeneration`: the command applies only if the target's generation equals it
 * (0 = the target must not exist), else EPRECONDITION. The target is the inode at `path` (for rename: at
 * `to`); for chunk commands the file owning the chunk; for chunkserver commands the chunkserver record.
 */
interface Conditional {
  readonly ifGeneration?: number | undefined;
}

/** A chunk's seal: its current version, final length and CRC32C (sealChunk's fields). */
export interface ChunkSeal {
  readonly handle: number;
  readonly version: number;
  readonly lengthBytes: number;
  /** CRC32C of the chunk's bytes. */
  readonly checksum: number;
}

export interface LeaseRequest {
  readonly holder: string;
  readonly durationMs: number;
}

export type Op =
  /** Opens a client session; the result is `{ clientId }`. Carries no session stamp itself. */
  | { readonly type: 'openSession' }
  | ({
      readonly type: 'mkdir';
      readonly path: string;
      /** Create missing ancestors too; an existing directory at `path` is then not an error. */
      readonly parents?: boolean | undefined;
      readonly mode?: number | undefined;
      readonly owner?: string | undefined;
      readonly replication?: number | undefined;
      readonly chunkSizeBytes?: number | undefined;
      /** 'none' or 'lz4' (EINVAL otherwise); inherited from the parent directory when absent. */
      readonly compression?: string | undefined;
    } & Conditional)
  | ({
      readonly type: 'create';
      readonly path: string;
      /** true (default): an existing file is EEXIST. false: an existing file is replaced by an empty one. */
      readonly exclusive?: boolean | undefined;
      readonly mode?: number | undefined;
      readonly owner?: string | undefined;
      readonly replication?: number | undefined;
      readonly chunkSizeBytes?: number | undefined;
      readonly compression?: string | undefined;
      /** Also grant the new file's writer lease to this holder. */
      readonly lease?: LeaseRequest | undefined;
      /**
       * With `lease`: also add the file's first chunk (index 0, version 1, unsealed) on the first `replication`
       * of these chunkservers (the leader's placement, in its order of choice), so a writer needs no
       * addChunk for it. Fewer candidates than the file's replication factor, or one that is not registered:
       * the file is created without the chunk (the writer then allocates it with addChunk). A list that is
       * malformed (empty, duplicates, id 0, too long) is EINVAL, as addChunk's.
       */
      readonly firstChunkCandidates?: readonly number[] | undefined;
    } & Conditional)
  | ({
      /**
       * Creates many empty files in one existing directory, all or none: every name must be new (else
       * EEXIST) and distinct (else EINVAL). At most `createManyNamesMax` names. For bulk loads.
       */
      readonly type: 'createMany';
      readonly dir: string;
      readonly names: readonly string[];
      readonly mode?: number | undefined;
      readonly owner?: string | undefined;
      readonly replication?: number | undefined;
      readonly chunkSizeBytes?: number | undefined;
      readonly compression?: string | undefined;
    } & Conditional)
  | ({
      readonly type: 'setattr';
      readonly path: string;
      readonly mode?: number | undefined;
      readonly mtimeMs?: number | undefined;
      readonly owner?: string | undefined;
      readonly replication?: number | undefined;
      /** Chunks allocated from now on (a directory: files created in it from now on). */
      readonly compression?: string | undefined;
    } & Conditional)
  | ({ readonly type: 'rename'; readonly from: string; readonly to: string } & Conditional)
  | ({ readonly type: 'unlink'; readonly path: string } & Conditional)
  | ({ readonly type: 'rmdir'; readonly path: string } & Conditional)
  | ({ readonly type: 'deleteRecursive'; readonly path: string } & Conditional)
  | ({
      readonly type: 'acquireLease';
      readonly path: string;
      readonly holder: string;
      readonly durationMs: number;
    } & Conditional)
  | ({
      readonly type: 'renewLease';
      readonly path: string;
      readonly holder: string;
      readonly durationMs: number;
    } & Conditional)
  | ({ readonly type: 'releaseLease'; readonly path: string; readonly holder: string } & Conditional)
  | ({
      readonly type: 'addChunk';
      readonly path: string;
      readonly holder: string;
      readonly replicas: readonly number[];
      /**
       * The chunk's index the writer expects (the chunks it was given so far). Makes the allocation
       * idempotent without a session: when the file's last chunk already has this index, is unsealed and was
       * never written through (version 1), it is the writer's own allocation whose answer was lost, and it is
       * answered again; any other mismatch is EINVAL. Absent: the chunk goes at the end, whatever its index.
       */
      readonly index?: number | undefined;
    } & Conditional)
  | ({
      /** A new write pipeline for an unsealed chunk: version + 1, possibly new replicas. */
      readonly type: 'bumpChunkVersion';
      readonly handle: number;
      readonly holder: string;
      /** The version the pipeline is replacing (ESTALE if it is no longer current). */
      readonly version: number;
      readonly replicas: readonly number[];
    } & Conditional)
  | ({
      readonly type: 'sealChunk';
      readonly holder: string;
    } & ChunkSeal &
      Conditional)
  | ({
      readonly type: 'completeFile';
      readonly path: string;
      readonly holder: string;
      /**
       * The chunks the writer wrote. The file may hold one more, unsealed, at the end: a chunk allocated ahead
       * and never written to, or one whose allocation's answer the writer never got. It is dropped as
       * abandonChunk drops it. Any other count is EINVAL. Absent: every chunk must be sealed.
       */
      readonly chunkCount?: number | undefined;
      /**
       * The file's last written chunk, sealed by this command (as sealChunk would seal it, same checks) before
       * the file is completed: a writer's close is one command, not two (HDFS's complete() carries the last
       * block the same way). Either both happen or neither.
       */
      readonly lastChunk?: ChunkSeal | undefined;
    } & Conditional)
  | ({
      /**
       * The writer drops the file's last chunk, unsealed, that it allocated ahead and never wrote to (HDFS's
       * abandonBlock): the chunk leaves the file and its placement; its replicas become orphans the leader
       * deletes when their chunkservers report them.
       */
      readonly type: 'abandonChunk';
      readonly path: string;
      readonly holder: string;
      readonly handle: number;
    } & Conditional)
  | ({
      /**
       * The leader's lease recovery (HDFS's), for a file whose writer vanished: its lease expired, or was
       * released with chunks left unsealed. The lease passes to the recovery holder (RECOVERY_HOLDER, which no
       * client can hold) for `durationMs`, so no writer can take the file, and the old holder can neither add
       * nor seal chunks; or, with no chunk unsealed, the file is completed at once. ELEASE while another
       * holder's lease lives. Again under recovery: the lease is extended.
       */
      readonly type: 'beginLeaseRecovery';
      readonly file: number;
      readonly durationMs: number;
    } & Conditional)
  | ({
      /**
       * The leader's lease recovery of one unsealed chunk: its replicas agreed on `lengthBytes` (see
       * ChunkManager), and those in `replicas` sealed at it with `checksum`. A chunk shorter than the chunk
       * size ends the file: every chunk after it is dropped (so the file is a prefix of the bytes written).
       * Length 0 drops the chunk itself too (`replicas` empty). Once no chunk is unsealed, the file is
       * completed and the lease goes. Only under the recovery holder's lease.
       */
      readonly type: 'recoverChunk';
      readonly handle: number;
      readonly version: number;
      readonly lengthBytes: number;
      readonly checksum: number;
      readonly replicas: readonly number[];
    } & Conditional)
  | ({
      /** Re-replication, decommissioning or repair by the leader: a new replica set at the same version. */
      readonly type: 'setChunkReplicas';
      readonly handle: number;
      readonly version: number;
      readonly replicas: readonly number[];
    } & Conditional)
  | ({
      /** Without `id`: a new chunkserver (the result carries its id). With `id`: an update of that one. */
      readonly type: 'registerChunkserver';
      readonly id?: number | undefined;
      readonly address: string;
      readonly rack: string;
      readonly capacityBytes: number;
      readonly usedBytes: number;
    } & Conditional)
  | ({
      readonly type: 'setChunkserverState';
      readonly id: number;
      readonly state: ChunkserverState;
    } & Conditional)
  | ({
      /**
       * An operator's: a dead or decommissioned chunkserver leaves the registry (its id is never reused). The
       * leader proposes it only when no chunk lists the server and it is silent (server.ts, ForgetChunkserver).
       */
      readonly type: 'forgetChunkserver';
      readonly id: number;
    } & Conditional);

export type OpType = Op['type'];

export interface Command {
  /** Wall-clock milliseconds stamped by the leader that proposed the command. */
  readonly nowMs: number;
  readonly session?: SessionStamp | undefined;
  readonly op: Op;
}

/** Shape of one field: its kind, and whether it may be absent. */
type Kind = 'string' | 'nat' | 'bool' | 'ids' | 'names' | 'state' | 'lease' | 'seal';
type Spec = Readonly<Record<string, readonly [Kind, 'required' | 'optional']>>;

const req = (k: Kind) => [k, 'required'] as const;
const opt = (k: Kind) => [k, 'optional'] as const;
const cond = { ifGeneration: opt('nat') } as const;
const attrs = {
  mode: opt('nat'),
  owner: opt('string'),
  replication: opt('nat'),
  chunkSizeBytes: opt('nat'),
  compression: opt('string'),
} as const;

/** Fields of each op besides `type`. The decoder accepts exactly these. */
const specs: Readonly<Record<OpType, Spec>> = {
  openSession: {},
  mkdir: { path: req('string'), parents: opt('bool'), ...attrs, ...cond },
  create: { path: req('string'), exclusive: opt('bool'), ...attrs, lease: opt('lease'), firstChunkCandidates: opt('ids'), ...cond },
  createMany: { dir: req('string'), names: req('names'), ...attrs, ...cond },
  setattr: {
    path: req('string'),
    mode: opt('nat'),
    mtimeMs: opt('nat'),
    owner: opt('string'),
    replication: opt('nat'),
    compression: opt('string'),
    ...cond,
  },
  rename: { from: req('string'), to: req('string'), ...cond },
  unlink: { path: req('string'), ...cond },
  rmdir: { path: req('string'), ...cond },
  deleteRecursive: { path: req('string'), ...cond },
  acquireLease: { path: req('string'), holder: req('string'), durationMs: req('nat'), ...cond },
  renewLease: { path: req('string'), holder: req('string'), durationMs: req('nat'), ...cond },
  releaseLease: { path: req('string'), holder: req('string'), ...cond },
  addChunk: { path: req('string'), holder: req('string'), replicas: req('ids'), index: opt('nat'), ...cond },
  bumpChunkVersion: {
    handle: req('nat'),
    holder: req('string'),
    version: req('nat'),
    replicas: req('ids'),
    ...cond,
  },
  sealChunk: {
    handle: req('nat'),
    holder: req('string'),
    version: req('nat'),
    lengthBytes: req('nat'),
    checksum: req('nat'),
    ...cond,
  },
  completeFile: { path: req('string'), holder: req('string'), chunkCount: opt('nat'), lastChunk: opt('seal'), ...cond },
  abandonChunk: { path: req('string'), holder: req('string'), handle: req('nat'), ...cond },
  beginLeaseRecovery: { file: req('nat'), durationMs: req('nat'), ...cond },
  recoverChunk: {
    handle: req('nat'),
    version: req('nat'),
    lengthBytes: req('nat'),
    checksum: req('nat'),
    replicas: req('ids'),
    ...cond,
  },
  setChunkReplicas: { handle: req('nat'), version: req('nat'), replicas: req('ids'), ...cond },
  registerChunkserver: {
    id: opt('nat'),
    address: req('string'),
    rack: req('string'),
    capacityBytes: req('nat'),
    usedBytes: req('nat'),
    ...cond,
  },
  setChunkserverState: { id: req('nat'), state: req('state'), ...cond },
  forgetChunkserver: { id: req('nat'), ...cond },
};

export const opTypes = Object.keys(specs) as OpType[];

/** UTF-16 code units of one string field, at most (a decode bound only; byte limits are checked when applying). */
export const commandStringUnitsMax = 64 * 1024;
/** Elements of one id list, at most (a decode bound only). */
export const commandIdsMax = 1024;
/** Names of one createMany, at most. */
export const createManyNamesMax = 1024;

export function encodeCommand(command: Command): Uint8Array {
  const s = command.session;
  return packr.pack([
    COMMAND_FORMAT,
    command.nowMs,
    s === undefined ? null : [s.clientId, s.seq, s.ack],
    stripUndefined(command.op),
  ]);
}

/** Decodes and shape-checks a command; throws CommandDecodeError (never anything else) on bad bytes. */
export function decodeCommand(bytes: Uint8Array): Command {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch {
    throw new CommandDecodeError('not msgpack');
  }
  if (!Array.isArray(raw) || raw.length !== 4) throw new CommandDecodeError('not a command envelope');
  const [format, nowMs, session, op] = raw as unknown[];
  if (format !== COMMAND_FORMAT) throw new CommandDecodeError(`unknown command format ${String(format)}`);
  if (!isNat(nowMs)) throw new CommandDecodeError('nowMs is not a non-negative integer');
  const decodedOp = decodeOp(op);
  const stamp = session === null ? undefined : decodeSession(session);
  if (stamp !== undefined && decodedOp.type === 'openSession')
    throw new CommandDecodeError('openSession carries no session');
  return stamp === undefined ? { nowMs, op: decodedOp } : { nowMs, session: stamp, op: decodedOp };
}

function decodeSession(x: unknown): SessionStamp {
  if (!Array.isArray(x) || x.length !== 3) throw new CommandDecodeError('malformed session stamp');
  const [clientId, seq, ack] = x as unknown[];
  if (!isNat(clientId) || clientId === 0 || !isNat(seq) || seq === 0 || !isNat(ack) || ack >= seq) {
    throw new CommandDecodeError('malformed session stamp (need clientId >= 1, seq >= 1, 0 <= ack < seq)');
  }
  return { clientId, seq, ack };
}

/** Each spec's fields as entries, listed once (not per decoded command). */
const specEntries = Object.fromEntries(
  Object.entries(specs).map(([type, spec]) => [type, Object.entries(spec)]),
) as unknown as Readonly<Record<OpType, readonly (readonly [string, Spec[string]])[]>>;

function decodeOp(x: unknown): Op {
  if (!isPlainObject(x)) throw new CommandDecodeError('op is not a map');
  const type = x['type'];
  if (typeof type !== 'string' || !Object.hasOwn(specs, type))
    throw new CommandDecodeError(`unknown op type ${show(type)}`);
  const spec = specs[type as OpType];
  const out: Record<string, unknown> = { type };
  for (const field of Object.keys(x)) {
    if (field !== 'type' && !Object.hasOwn(spec, field))
      throw new CommandDecodeError(`${type}: unknown field ${show(field)}`);
  }
  for (const [field, [kind, presence]] of specEntries[type as OpType]) {
    const value = Object.hasOwn(x, field) ? x[field] : undefined;
    if (value === undefined || value === null) {
      if (presence === 'required') throw new CommandDecodeError(`${type}: missing ${field}`);
      continue;
    }
    out[field] = decodeField(kind, value, `${type}.${field}`);
  }
  return out as unknown as Op;
}

function decodeField(kind: Kind, v: unknown, what: string): unknown {
  switch (kind) {
    case 'string':
      if (typeof v !== 'string' || v.length > commandStringUnitsMax)
        throw new CommandDecodeError(`${what}: not a string`);
      return v;
    case 'nat':
      if (!isNat(v)) throw new CommandDecodeError(`${what}: not a non-negative integer`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw new CommandDecodeError(`${what}: not a boolean`);
      return v;
    case 'ids':
      if (!Array.isArray(v) || v.length > commandIdsMax || !v.every(isNat))
        throw new CommandDecodeError(`${what}: not a list of ids`);
      return [...v];
    case 'names':
      if (
        !Array.isArray(v) ||
        v.length > createManyNamesMax ||
        !v.every((n) => typeof n === 'string' && n.length <= commandStringUnitsMax)
      ) {
        throw new CommandDecodeError(`${what}: not a list of at most ${createManyNamesMax} names`);
      }
      return [...(v as string[])];
    case 'state':
      if (typeof v !== 'string' || !(chunkserverStates as readonly string[]).includes(v))
        throw new CommandDecodeError(`${what}: not a chunkserver state`);
      return v;
    case 'lease': {
      if (!isPlainObject(v)) throw new CommandDecodeError(`${what}: not a map`);
      const keys = Object.keys(v);
      const { holder, durationMs } = v;
      if (
        keys.length !== 2 ||
        typeof holder !== 'string' ||
        holder.length > commandStringUnitsMax ||
        !isNat(durationMs)
      ) {
        throw new CommandDecodeError(`${what}: need exactly { holder, durationMs }`);
      }
      return { holder, durationMs };
    }
    case 'seal': {
      if (!isPlainObject(v)) throw new CommandDecodeError(`${what}: not a map`);
      const { handle, version, lengthBytes, checksum } = v;
      if (Object.keys(v).length !== 4 || !isNat(handle) || !isNat(version) || !isNat(lengthBytes) || !isNat(checksum))
        throw new CommandDecodeError(`${what}: need exactly { handle, version, lengthBytes, checksum }`);
      return { handle, version, lengthBytes, checksum };
    }
  }
}

function isNat(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array) return false;
  const proto: unknown = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Drops undefined fields, which msgpack would otherwise carry as an extension type. */
function stripUndefined(op: Op): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(op)) if (v !== undefined) out[k] = v;
  return out;
}

function show(x: unknown): string {
  const s = typeof x === 'string' ? JSON.stringify(x) : typeof x;
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
