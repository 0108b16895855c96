/**
 * A typed, promise-based handle over the `rocksdb` package (the Level binding, callback API), exposing only
 * what the log store uses. Keys and values are always Buffers.
 */
import { createRequire } from 'node:module';

export type RocksDbBatchOp =
  | { readonly type: 'put'; readonly key: Buffer; readonly value: Buffer }
  | { readonly type: 'del'; readonly key: Buffer };

export interface RocksDbRange {
  readonly gte: Buffer;
  readonly lt: Buffer;
  readonly reverse?: boolean;
  /** At most this many pairs; -1 (the default) for all. */
  readonly limit?: number;
}

type Callback<T = void> = (error: Error | null | undefined, value: T) => void;

/** The subset of the binding's API that this module uses. */
interface RawIterator {
  next(callback: (error: Error | null | undefined, key?: Buffer, value?: Buffer) => void): void;
  end(callback: (error?: Error | null) => void): void;
}

interface RawChainedBatch {
  put(key: Buffer, value: Buffer): void;
  del(key: Buffer): void;
  write(options: { sync: boolean }, callback: (error?: Error | null) => void): void;
}

interface RawDb {
  open(
    options: { createIfMissing: boolean; errorIfExists: boolean; readOnly: boolean },
    callback: (error?: Error | null) => void,
  ): void;
  close(callback: (error?: Error | null) => void): void;
  batch(
    ops: readonly RocksDbBatchOp[],
    options: { sync: boolean },
    callback: (error?: Error | null) => void,
  ): void;
  /** A chained batch: one native call per operation, instead of property reads of each operation object. */
  batch(): RawChainedBatch;
  getMany(
    keys: readonly Buffer[],
    options: { asBuffer: true },
    callback: Callback<(Buffer | undefined)[]>,
  ): void;
  iterator(options: {
    gte: Buffer;
    lt: Buffer;
    reverse: boolean;
    limit: number;
    keyAsBuffer: true;
    valueAsBuffer: true;
  }): RawIterator;
}

const require = createRequire(import.meta.url);
const openRaw = require('rocksdb') as (location: string) => RawDb;

export class RocksDbHandle {
  private constructor(private readonly db: RawDb) {}

  /**
   * Opens the database in directory `location`, creating it if missing unless `readOnly`. A read-only handle
   * may be open while another handle writes; it sees what was written before it opened.
   */
  static async open(location: string, options: { readOnly?: boolean } = {}): Promise<RocksDbHandle> {
    const db = openRaw(location);
    const readOnly = options.readOnly ?? false;
    await new Promise<void>((resolve, reject) =>
      db.open({ createIfMissing: !readOnly, errorIfExists: false, readOnly }, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    return new RocksDbHandle(db);
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => this.db.close((error) => (error ? reject(error) : resolve())));
  }

  /** Applies `ops` atomically; with `sync`, the write-ahead log is synced before this resolves. */
  batch(ops: readonly RocksDbBatchOp[], options: { sync: boolean }): Promise<void> {
    if (ops.length === 0) {
      return new Promise((resolve, reject) =>
        this.db.batch(ops, { sync: options.sync }, (error) => (error ? reject(error) : resolve())),
      );
    }
    // Built with the chained batch: the array form's native side reads `type`, `key` and `value` of every
    // operation object by name (about 1.3 µs per operation on the main thread, measured; chained: about 0.9).
    return new Promise((resolve, reject) => {
      const batch = this.db.batch();
      for (const op of ops) {
        if (op.type === 'put') batch.put(op.key, op.value);
        else batch.del(op.key);
      }
      batch.write({ sync: options.sync }, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** The value under `key`, or undefined. */
  get(key: Buffer): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) =>
      this.db.getMany([key], { asBuffer: true }, (error, values) =>
        error ? reject(error) : resolve(values[0]),
      ),
    );
  }

  /** The values under `keys`, in order (undefined where absent), read in one thread-pool job. */
  getMany(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    return new Promise((resolve, reject) =>
      this.db.getMany(keys, { asBuffer: true }, (error, values) => (error ? reject(error) : resolve(values))),
    );
  }

  /**
   * Like iterate(), but the underlying iterator (and so its implicit point-in-time snapshot) is created
   * now, synchronously, not on the first next().
   */
  iterateFromNow(range: RocksDbRange): AsyncGenerator<[Buffer, Buffer]> {
    const iterator = this.db.iterator({
      gte: range.gte,
      lt: range.lt,
      reverse: range.reverse ?? false,
      limit: range.limit ?? -1,
      keyAsBuffer: true,
      valueAsBuffer: true,
    });
    return drain(iterator);
  }

  /** The key-value pairs in `range`, in key order (or reversed). The iterator is always ended. */
  async *iterate(range: RocksDbRange): AsyncGenerator<[Buffer, Buffer]> {
    yield* this.iterateFromNow(range);
  }
}

async function* drain(iterator: RawIterator): AsyncGenerator<[Buffer, Buffer]> {
  try {
    for (;;) {
      const pair = await nextPair(iterator);
      if (pair === null) return;
      yield pair;
    }
  } finally {
    await new Promise<void>((resolve, reject) => iterator.end((error) => (error ? reject(error) : resolve())));
  }
}

function nextPair(iterator: RawIterator): Promise<[Buffer, Buffer] | null> {
  return new Promise((resolve, reject) =>
    iterator.next((error, key, value) => {
      if (error) reject(error);
      else if (key === undefined || value === undefined) resolve(null);
      else resolve([key, value]);
    }),
  );
}
