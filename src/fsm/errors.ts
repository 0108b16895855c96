/**
 * Expected failures of the metadata state machine, with stable codes.
 *
 * A failed command is not an exception to the caller: `applyBatch` turns an FsError into an `FsFailure`
 * result, which is as deterministic as a success (every replica computes the same one, and the session
 * table records it). Broken invariants use assert() from src/raft/errors.ts instead and crash.
 */

export const fsErrorCodes = [
  // POSIX
  'ENOENT',
  'EEXIST',
  'ENOTDIR',
  'EISDIR',
  'ENOTEMPTY',
  'EINVAL',
  'ENAMETOOLONG',
  // ours
  /** An `ifGeneration` precondition did not hold. */
  'EPRECONDITION',
  /** The file's lease is held by another holder, expired, or missing where one is required. */
  'ELEASE',
  /** A chunk operation named a version that is no longer the chunk's current one. */
  'ESTALE',
  /** Unknown or evicted session, an acknowledged sequence number, or too many unacknowledged commands. */
  'ESESSION',
  /** The command's bytes are not a well-formed command. */
  'EBADMSG',
] as const;
export type FsErrorCode = (typeof fsErrorCodes)[number];

export class FsError extends Error {
  constructor(
    readonly code: FsErrorCode,
    /** The message without the code. */
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'FsError';
  }
}

/** A command's bytes could not be decoded into a well-formed command. */
export class CommandDecodeError extends FsError {
  constructor(message: string) {
    super('EBADMSG', message);
    this.name = 'CommandDecodeError';
  }
}

/** A snapshot stream is malformed, truncated or fails its checksum. The old state is kept. */
export class SnapshotFormatError extends Error {
  readonly code = 'EBADSNAPSHOT';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotFormatError';
  }
}

/**
 * The stored state (a data directory, or a snapshot) was written in another layout version (records.ts,
 * FORMAT_VERSION) than this code reads. Not migrated: such a store is refused as a whole.
 */
export class StateFormatError extends Error {
  readonly code = 'EFORMAT';
  constructor(
    readonly found: number,
    readonly expected: number,
  ) {
    super(
      `the metadata state is in format ${found}, this rfs reads format ${expected} only ` +
        `(written by ${found < expected ? 'an older' : 'a newer'} rfs, and not migrated: run the rfs that ` +
        'wrote it, or start from an empty data directory)',
    );
    this.name = 'StateFormatError';
  }
}

export interface FsSuccess<T> {
  readonly ok: true;
  readonly value: T;
}

export interface FsFailure {
  readonly ok: false;
  readonly code: FsErrorCode;
  readonly message: string;
}

/** The outcome of a command or a query. */
export type FsResult<T = unknown> = FsSuccess<T> | FsFailure;

export function success<T>(value: T): FsSuccess<T> {
  return { ok: true, value };
}

export function failure(code: FsErrorCode, message: string): FsFailure {
  return { ok: false, code, message };
}

/** Runs `fn`, turning an FsError into a failure result; anything else propagates. */
export async function asResult<T>(fn: () => Promise<T>): Promise<FsResult<T>> {
  try {
    return success(await fn());
  } catch (e) {
    if (e instanceof FsError) return failure(e.code, e.detail);
    throw e;
  }
}
