/**
 * Node streams over rfs files, with backpressure end to end.
 *
 * `RfsReadStream`: reads `highWaterMark` bytes at a time, one read in flight, and only when the stream's
 * buffer is below `highWaterMark` (Node calls `_read` only then), through one read session (chunk locations
 * fetched once, sequential reads read ahead: ./read-session.ts): a slow consumer holds at most about two
 * `highWaterMark`s plus the session's read-ahead in this process, however large the file.
 *
 * `RfsWriteStream`: each `write` goes to the file's FileWriter, whose callback fires once the writer took
 * the bytes: copied into its bounded staging buffer, or, when that is full, sent down the chunk's pipeline
 * within the pipeline's in-flight window. So a fast producer is held back by the replicas' acknowledgements
 * (write() returns false, 'drain' comes later) and memory stays bounded by the stream's highWaterMark +
 * the writer's staging + the pipeline window.
 *
 * What "acknowledged" means for a write stream: a write callback without error means the writer accepted
 * the bytes, NOT that they are durable. The `finish` event (and `close` without a prior `error`) means the
 * whole file is sealed, completed by the metadata leader and durable on its replicas. If the stream
 * errors, the file is incomplete; its readable content is a prefix of what was written (its sealed chunks).
 */
import { Readable, Writable } from 'node:stream';
import type { FileWriter } from './file-writer.ts';
import { AbortError, RfsError, toRfsError } from './errors.ts';
import type { ErrorContext } from './errors.ts';
import type { RfsClient, WriteFileOptions } from './fs.ts';
import type { ReadSession } from './read-session.ts';
import { guard } from './fs.ts';

/** Bytes per read of a read stream (the session reads ahead of it in pieces of its own). */
export const readStreamHighWaterMarkDefault = 1024 * 1024;
/** Bytes a write stream buffers before write() returns false. */
export const writeStreamHighWaterMarkDefault = 1024 * 1024;

export interface ReadStreamOptions {
  /** First byte (default 0). */
  readonly start?: number;
  /** Last byte, inclusive like Node's (default: the end of the file). */
  readonly end?: number;
  readonly highWaterMark?: number;
  readonly signal?: AbortSignal;
}

export interface WriteStreamOptions extends Omit<WriteFileOptions, 'flag' | 'encoding'> {
  /** 'w' (default), 'wx', 'a', 'ax'. */
  readonly flags?: 'w' | 'wx' | 'a' | 'ax';
  readonly highWaterMark?: number;
}

export class RfsReadStream extends Readable {
  private position: number;
  private readonly end: number;
  private readonly context: ErrorContext;
  private session: ReadSession | undefined;
  /** Bytes pushed so far. */
  bytesRead = 0;

  constructor(
    private readonly client: RfsClient,
    readonly path: string,
    private readonly options: ReadStreamOptions,
  ) {
    super({ highWaterMark: options.highWaterMark ?? readStreamHighWaterMarkDefault });
    this.context = { syscall: 'read', path };
    this.position = options.start ?? 0;
    this.end = options.end ?? Number.MAX_SAFE_INTEGER - 1;
    watchSignal(this, options.signal, this.context);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const { start = 0, end } = this.options;
    if (!Number.isSafeInteger(start) || start < 0 || (end !== undefined && (!Number.isSafeInteger(end) || end < start - 1))) {
      callback(new RfsError('EINVAL', { syscall: 'open', path: this.path }, `start ${start} end ${String(end)}`));
      return;
    }
    // No signal here: an abort destroys the stream, which reports AbortError once this settles.
    this.client.stat(this.path).then(
      (info) => callback(info.isDirectory() && !this.destroyed ? new RfsError('EISDIR', { syscall: 'open', path: this.path }) : null),
      (error: unknown) => callback(this.destroyed ? null : (error as Error)),
    );
  }

  override _read(): void {
    const want = Math.min(this.readableHighWaterMark, this.end + 1 - this.position);
    if (want <= 0) {
      this.push(null);
      return;
    }
    this.session ??= this.client.reader.open(this.path);
    const session = this.session;
    const into = Buffer.allocUnsafe(want);
    guard(this.context, { signal: this.options.signal }, () => session.readInto(this.position, into)).then(
      (count) => {
        if (this.destroyed) return;
        if (count === 0) {
          this.push(null);
          return;
        }
        this.position += count;
        this.bytesRead += count;
        this.push(count === want ? into : into.subarray(0, count));
      },
      (error: unknown) => this.destroy(error as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.session?.close();
    callback(error);
  }
}

export class RfsWriteStream extends Writable {
  private writer: FileWriter | null = null;
  private finished = false;
  private readonly context: ErrorContext;

  constructor(
    private readonly client: RfsClient,
    readonly path: string,
    private readonly options: WriteStreamOptions,
  ) {
    super({ highWaterMark: options.highWaterMark ?? writeStreamHighWaterMarkDefault, decodeStrings: true });
    this.context = { syscall: 'write', path };
    watchSignal(this, options.signal, this.context);
  }

  /** Bytes the writer accepted (not yet durable before `finish`). */
  get bytesWritten(): number {
    return this.writer?.position ?? 0;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    // No signal here: an abort destroys the stream; Node runs _destroy (which aborts the writer) once
    // this settles, and reports the AbortError alone.
    this.client.openWriter(this.path, this.options.flags ?? 'w', this.options, undefined).then(
      (writer) => {
        this.writer = writer;
        callback();
      },
      (error: unknown) => callback(this.destroyed ? null : (error as Error)),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const writer = this.writer;
    if (writer === null) {
      callback(new RfsError('EBADF', this.context, 'no writer'));
      return;
    }
    writer.write(chunk).then(
      () => callback(),
      (error: unknown) => callback(toRfsError(error, this.context)),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    const writer = this.writer;
    if (writer === null) {
      callback(new RfsError('EBADF', this.context, 'no writer'));
      return;
    }
    writer.close().then(
      () => {
        this.finished = true;
        callback();
      },
      (error: unknown) => callback(toRfsError(error, { syscall: 'close', path: this.path })),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const writer = this.writer;
    if (writer === null || this.finished) {
      callback(error);
      return;
    }
    writer.abort().then(
      () => callback(error),
      () => callback(error),
    );
  }
}

/** Destroys `stream` with AbortError when `signal` fires. */
function watchSignal(stream: Readable | Writable, signal: AbortSignal | undefined, context: ErrorContext): void {
  if (signal === undefined) return;
  const onAbort = (): void => {
    stream.destroy(new AbortError(context, { cause: signal.reason }));
  };
  if (signal.aborted) {
    queueMicrotask(onAbort);
    return;
  }
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
}
