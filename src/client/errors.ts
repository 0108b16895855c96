/**
 * The client library's errors, shaped like Node's: an Error with a stable `code` ('ENOENT', ...), the
 * operation as `syscall` ('stat', 'open', ...), the `path`, and `errno` where the OS knows the code.
 *
 * `RfsError` is the base of every error the library throws on purpose. Subclasses name rfs's own
 * conditions, for callers that want `instanceof`:
 *  - `TimeoutError` (code ETIMEDOUT): no answer within the deadline; the outcome of a mutation is unknown.
 *    `NoLeaderError` is the case where no metadata server would serve (every one unreachable, or none is
 *    leader) until the deadline.
 *  - `AbortError` (name 'AbortError', code 'ABORT_ERR', like Node's): the caller's AbortSignal fired.
 *  - `GenerationMismatchError` (code EPRECONDITION): an `ifGeneration` condition did not hold.
 *  - `FileBusyError` (code EBUSY): another writer holds the file's lease.
 *  - `AppendOnlyError` (code EINVAL): a write at a position other than the end (rfs files are append-only).
 *  - `SessionError` (code ESESSION): the client's session was evicted or expired on the servers.
 *
 * `toRfsError` maps every metadata error code (src/fsm/errors.ts plus the service's own) and every
 * data-path error to one of these; `metadataErrorTable` is the table, checked exhaustive by the compiler.
 */
import { constants } from 'node:os';
import { MetadataError } from '../metadata/client.ts';
import { DataPlaneError } from '../chunkserver/dataplane/index.ts';
import { FileIoError } from './data-path.ts';
import { fsErrorCodes } from '../fsm/errors.ts';
import type { FsErrorCode } from '../fsm/errors.ts';

/** What went wrong where: the operation (Node's `syscall`) and the path(s) it was about. */
export interface ErrorContext {
  readonly syscall: string;
  readonly path?: string;
  readonly dest?: string;
}

const descriptions: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory',
  ENOTEMPTY: 'directory not empty',
  EINVAL: 'invalid argument',
  ENAMETOOLONG: 'name too long',
  EBUSY: 'resource busy (another writer holds the file)',
  EIO: 'i/o error',
  EBADF: 'bad file descriptor',
  ENOSPC: 'no space left (no chunkserver can take a replica)',
  EAGAIN: 'resource temporarily unavailable',
  ETIMEDOUT: 'timed out',
  ABORT_ERR: 'the operation was aborted',
  EPRECONDITION: 'generation precondition failed',
  ESESSION: 'client session lost',
  ESTALE: 'stale chunk version',
  EPROTO: 'protocol error',
};

export class RfsError extends Error {
  readonly code: string;
  readonly syscall: string;
  readonly path: string | undefined;
  readonly dest: string | undefined;
  /** Negative OS error number, as in Node's errors (undefined for codes the OS does not have). */
  readonly errno: number | undefined;
  /** The server's or data path's own message. */
  readonly detail: string;

  constructor(code: string, context: ErrorContext, detail = '', options: { cause?: unknown } = {}) {
    const where = `${context.syscall}${context.path !== undefined ? ` '${context.path}'` : ''}${context.dest !== undefined ? ` -> '${context.dest}'` : ''}`;
    super(`${code}: ${descriptions[code] ?? 'error'}, ${where}${detail !== '' ? ` (${detail})` : ''}`, options);
    this.name = 'RfsError';
    this.code = code;
    this.syscall = context.syscall;
    this.path = context.path;
    this.dest = context.dest;
    this.detail = detail;
    const n = (constants.errno as Record<string, number | undefined>)[code];
    this.errno = n === undefined ? undefined : -n;
  }
}

export class TimeoutError extends RfsError {
  constructor(context: ErrorContext, detail: string, options: { cause?: unknown } = {}) {
    super('ETIMEDOUT', context, detail, options);
    this.name = 'TimeoutError';
  }
}

/** No metadata server served the request (unreachable, or none is leader) until the deadline. */
export class NoLeaderError extends TimeoutError {
  constructor(
    context: ErrorContext,
    /** The last answer: 'NOT_LEADER' or 'UNAVAILABLE'. */
    readonly reason: string,
    detail: string,
    options: { cause?: unknown } = {},
  ) {
    super(context, `no metadata leader answered: ${reason}: ${detail}`, options);
    this.name = 'NoLeaderError';
  }
}

export class AbortError extends RfsError {
  constructor(context: ErrorContext, options: { cause?: unknown } = {}) {
    super('ABORT_ERR', context, '', options);
    this.name = 'AbortError';
  }
}

export class GenerationMismatchError extends RfsError {
  constructor(context: ErrorContext, detail: string, options: { cause?: unknown } = {}) {
    super('EPRECONDITION', context, detail, options);
    this.name = 'GenerationMismatchError';
  }
}

export class FileBusyError extends RfsError {
  constructor(context: ErrorContext, detail: string, options: { cause?: unknown } = {}) {
    super('EBUSY', context, detail, options);
    this.name = 'FileBusyError';
  }
}

export class AppendOnlyError extends RfsError {
  constructor(context: ErrorContext, detail: string) {
    super('EINVAL', context, detail);
    this.name = 'AppendOnlyError';
  }
}

export class SessionError extends RfsError {
  constructor(context: ErrorContext, detail: string, options: { cause?: unknown } = {}) {
    super('ESESSION', context, detail, options);
    this.name = 'SessionError';
  }
}

/** Codes the metadata service answers besides the state machine's (see src/rpc/metadata.proto). */
export const serviceErrorCodes = ['NOT_LEADER', 'UNAVAILABLE', 'TIMEOUT', 'ECONFCHANGE', 'ENOSPC'] as const;
export type MetadataErrorCode = FsErrorCode | (typeof serviceErrorCodes)[number];
export const metadataErrorCodes: readonly MetadataErrorCode[] = [...fsErrorCodes, ...serviceErrorCodes];

type Make = (context: ErrorContext, detail: string, cause: unknown) => RfsError;
const plain =
  (code: string): Make =>
  (context, detail, cause) =>
    new RfsError(code, context, detail, { cause });

/**
 * Every metadata error code → the error the caller sees. NOT_LEADER, UNAVAILABLE and TIMEOUT reach the
 * caller only once MetadataClient's retries ran out (they are retried until then), hence timeouts.
 */
export const metadataErrorTable: Record<MetadataErrorCode, Make> = {
  ENOENT: plain('ENOENT'),
  EEXIST: plain('EEXIST'),
  ENOTDIR: plain('ENOTDIR'),
  EISDIR: plain('EISDIR'),
  ENOTEMPTY: plain('ENOTEMPTY'),
  EINVAL: plain('EINVAL'),
  ENAMETOOLONG: plain('ENAMETOOLONG'),
  EPRECONDITION: (c, d, cause) => new GenerationMismatchError(c, d, { cause }),
  ELEASE: (c, d, cause) => new FileBusyError(c, d, { cause }),
  // A chunk version moved under a writer (its recovery raced another change): the write failed.
  ESTALE: plain('ESTALE'),
  ESESSION: (c, d, cause) => new SessionError(c, d, { cause }),
  EBADMSG: plain('EPROTO'),
  NOT_LEADER: (c, d, cause) => new NoLeaderError(c, 'NOT_LEADER', d, { cause }),
  UNAVAILABLE: (c, d, cause) => new NoLeaderError(c, 'UNAVAILABLE', d, { cause }),
  TIMEOUT: (c, d, cause) => new TimeoutError(c, `the leader did not commit in time, outcome unknown: ${d}`, { cause }),
  ECONFCHANGE: plain('EAGAIN'),
  ENOSPC: plain('ENOSPC'),
};

function isMetadataErrorCode(code: string): code is MetadataErrorCode {
  return Object.hasOwn(metadataErrorTable, code);
}

/** Any error from the metadata client or the data path as an RfsError for `context` (RfsErrors pass). */
export function toRfsError(error: unknown, context: ErrorContext): RfsError {
  if (error instanceof RfsError) return error;
  if (error instanceof MetadataError) {
    if (isMetadataErrorCode(error.code)) return metadataErrorTable[error.code](context, error.detail, error);
    return new RfsError('EIO', context, `metadata error ${error.code}: ${error.detail}`, { cause: error });
  }
  if (error instanceof FileIoError) {
    // The writer or reader wraps the metadata failure that stopped it (lease renewal, ...): report that.
    if (error.cause instanceof MetadataError) return toRfsError(error.cause, context);
    return new RfsError(error.code, context, error.detail, { cause: error });
  }
  if (error instanceof DataPlaneError) return new RfsError('EIO', context, `data plane ${error.code}: ${error.message}`, { cause: error });
  // gRPC failures MetadataClient does not retry (e.g. INTERNAL), and anything unexpected.
  const message = error instanceof Error ? error.message : String(error);
  return new RfsError('EIO', context, message, { cause: error });
}
