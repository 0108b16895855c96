/**
 * Expected failures of the log stores, with stable codes. Corrupt data is reported with CorruptLogError
 * (log-store.ts); broken invariants of our own code use assert() from src/raft/errors.ts.
 */

/** A caller passed a write or an argument the store must refuse. Nothing of the call was applied. */
export class LogStoreUsageError extends Error {
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'LogStoreUsageError';
  }
}

/**
 * The store was closed, or (memory store) its process incarnation ended: the disk crashed or a newer
 * store was attached to it. Nothing of the call was applied.
 */
export class LogStoreClosedError extends Error {
  readonly code = 'ECLOSED';
  constructor(message: string) {
    super(message);
    this.name = 'LogStoreClosedError';
  }
}
