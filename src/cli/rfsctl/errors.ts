/**
 * rfsctl's exit codes and the one error type its commands throw. Every failure a user can cause or meet
 * (bad flags, a missing path, no cluster) ends as a one-line message on stderr and a stable exit code;
 * anything else is a bug and is printed with its stack (exit 70).
 */
import { MetadataError } from '../../metadata/client.ts';
import { FileIoError } from '../../client/data-path.ts';

export const exitCodes = {
  ok: 0,
  /** Bad flags or arguments (yargs usage errors). */
  usage: 1,
  /** The operation was refused: no such file, exists, not empty, bad argument, a local file that cannot be read... */
  user: 2,
  /** No metadata server answered, or no leader within --timeout. */
  unreachable: 3,
  /** Done, but not everything is well: fsck found problems, a member did not answer, some removals failed. */
  partial: 4,
  /** A data-path failure: every replica of a chunk failed. */
  io: 5,
  /** Interrupted (Ctrl-C) in the middle of a put: the file keeps a prefix of the bytes sent. */
  interrupted: 130,
  /** A bug in rfsctl or the client library. */
  internal: 70,
} as const;
export type ExitCode = (typeof exitCodes)[keyof typeof exitCodes];

export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Codes of the metadata service that mean "not now, not here": the cluster is not serving. */
const unavailableCodes = new Set(['UNAVAILABLE', 'TIMEOUT', 'NOT_LEADER']);

const posixText: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  EINVAL: 'invalid argument',
  ENAMETOOLONG: 'file name too long',
  ENOSPC: 'no chunkserver can take a new replica',
  ELEASE: 'file is being written by another client',
  EPRECONDITION: 'changed since it was read',
  ECONFCHANGE: 'membership change refused (another one is pending, or the learner has not caught up yet)',
};

/**
 * A thrown value as a CliError about `subject` (a path, a member, ...): `rfsctl: /a/b: no such file or
 * directory (ENOENT)`.
 */
export function toCliError(error: unknown, subject?: string): CliError {
  if (error instanceof CliError) return error;
  const prefix = subject === undefined ? '' : `${subject}: `;
  if (error instanceof MetadataError) {
    if (unavailableCodes.has(error.code))
      return new CliError(exitCodes.unreachable, `${prefix}the cluster is not serving (${error.code}: ${error.detail}); is a leader elected? try \`rfsctl status\``, error.code);
    const text = posixText[error.code];
    const detail = text === undefined ? error.detail : error.code === 'EINVAL' || error.code === 'ECONFCHANGE' || error.code === 'ENOSPC' ? `${text}: ${error.detail}` : text;
    return new CliError(exitCodes.user, `${prefix}${detail} (${error.code})`, error.code);
  }
  if (error instanceof FileIoError) {
    const exit = error.code === 'EINVAL' ? exitCodes.user : exitCodes.io;
    return new CliError(exit, `${prefix}${error.detail} (${error.code})`, error.code);
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    // A local file system error (node:fs): a missing or unreadable local file is the user's to fix.
    return new CliError(exitCodes.user, `${prefix}${(error as Error).message}`, code);
  }
  return new CliError(exitCodes.internal, `${prefix}internal error: ${(error as Error)?.stack ?? String(error)}`);
}
