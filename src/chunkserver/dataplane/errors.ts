/** The data plane's expected failures: typed, with stable codes, serialisable into an error frame. */
import type { ChunkStoreErrorCode } from '../types.ts';
import { ChunkStoreError } from '../types.ts';

export type DataPlaneErrorCode =
  | ChunkStoreErrorCode
  | 'MALFORMED_FRAME' // bytes that are not a frame, or a frame whose fields are not a valid message
  | 'FRAME_TOO_LARGE' // a frame longer than frameBytesMax (refused from its length prefix, never buffered)
  | 'PROTOCOL_ERROR' // a well-formed message out of place (packet before setup, seq gap, wrong offset, ...)
  | 'CONNECT_FAILED' // dialing a replica failed
  | 'CONNECTION_LOST' // the connection closed or broke before the exchange finished
  | 'WRONG_SERVER' // the setup names another chunkserver id than the one that received it
  | 'ABORTED' // the local side gave up (PipelineWriter.abort)
  | 'TIMEOUT' // the replica sent nothing for the caller's stall timeout (a paused or hung server, a blackholed link)
  | 'BUSY' // the server is at its connection limit
  | 'LOCAL_READS_OFF'; // the server offers no short-circuit local reads (protocol.ts local-read)

const codes: ReadonlySet<string> = new Set<DataPlaneErrorCode>([
  'NO_SUCH_REPLICA',
  'STALE_VERSION',
  'REPLICA_EXISTS',
  'BAD_OFFSET',
  'SEALED',
  'TOO_LARGE',
  'CHECKSUM_MISMATCH',
  'DISK_FULL',
  'IO_ERROR',
  'NOT_LOCAL',
  'MALFORMED_FRAME',
  'FRAME_TOO_LARGE',
  'PROTOCOL_ERROR',
  'CONNECT_FAILED',
  'CONNECTION_LOST',
  'WRONG_SERVER',
  'ABORTED',
  'TIMEOUT',
  'BUSY',
  'LOCAL_READS_OFF',
]);

export function isDataPlaneErrorCode(value: unknown): value is DataPlaneErrorCode {
  return typeof value === 'string' && codes.has(value);
}

export class DataPlaneError extends Error {
  constructor(
    readonly code: DataPlaneErrorCode,
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = 'DataPlaneError';
  }
}

/**
 * The typed form of a failure caught at an edge. A store's typed error keeps its code; anything else from
 * a store call is an I/O failure (the store broke its contract or the disk did something unexpected), which
 * is reported, not crashed on.
 */
export function toDataPlaneError(error: unknown): DataPlaneError {
  if (error instanceof DataPlaneError) return error;
  if (error instanceof ChunkStoreError) return new DataPlaneError(error.code, error.detail);
  const detail = error instanceof Error ? error.message : String(error);
  return new DataPlaneError('IO_ERROR', detail);
}
