/**
 * `RfsFileHandle`: what `open()` returns, shaped like Node's FileHandle.
 *
 * rfs files are append-only and written once at a time, like HDFS: a handle opened for writing ('w',
 * 'wx', 'a', 'ax') holds the file's writer lease and appends; a write at any position other than the
 * current end fails with AppendOnlyError (code EINVAL) and changes nothing. A handle opened with 'r'
 * reads at any position, through one read session (./read-session.ts): the file's chunk list is fetched at
 * the first read and again only when a read reaches past it, and sequential reads are read ahead; the handle
 * reads the file it first read, like a Unix descriptor (a file replaced meanwhile is seen only past the end
 * known). `close()` of a writing handle seals the last chunk and completes the file:
 * when it resolves, every byte written through the handle is durable. Bytes written but not closed are
 * not promised. A handle dropped without close() keeps its writer (its staging buffer, its pipeline) and
 * the lease, which the client renews for as long as the client is open, as an HDFS client renews the leases
 * of its open files: the file stays incomplete, and other writers are refused, until the client closes
 * (`fs.close()` gives up its writers) or its process ends (the lease then expires and is recovered).
 */
import type { FileWriter } from './file-writer.ts';
import type { ReadSession } from './read-session.ts';
import { AppendOnlyError, RfsError } from './errors.ts';
import type { ErrorContext } from './errors.ts';
import type { RfsClient, RfsStats } from './fs.ts';
import { guard } from './fs.ts';

export type OpenFlags = 'r' | 'w' | 'wx' | 'a' | 'ax';

/** Node's default buffer size for `read()` without a buffer. */
const readBufferBytesDefault = 16 * 1024;

export class RfsFileHandle {
  /** Next read position (reading handles). */
  private position = 0;
  private closed = false;
  /** Reading handles: the session, made at the first read. */
  private session: ReadSession | undefined;

  private constructor(
    private readonly client: RfsClient,
    readonly path: string,
    private readonly writer: FileWriter | null,
  ) {}

  /** @internal */
  static forReading(client: RfsClient, path: string): RfsFileHandle {
    return new RfsFileHandle(client, path, null);
  }

  /** @internal */
  static forWriting(client: RfsClient, path: string, writer: FileWriter): RfsFileHandle {
    return new RfsFileHandle(client, path, writer);
  }

  /** Bytes appended through this handle so far (writing handles). */
  get bytesWritten(): number {
    return this.writer?.position ?? 0;
  }

  /**
   * Reads up to `length` bytes at `position` (null: the handle's position, which then advances) into
   * `buffer` at `offset`. `bytesRead` is 0 at the end of the file.
   */
  async read(
    buffer: Uint8Array = Buffer.alloc(readBufferBytesDefault),
    offset = 0,
    length = buffer.length - offset,
    position: number | null = null,
  ): Promise<{ bytesRead: number; buffer: Uint8Array }> {
    const context = this.context('read');
    this.check(context, 'r');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > buffer.length)
      throw new RfsError('EINVAL', context, `offset ${offset} length ${length} outside a buffer of ${buffer.length} bytes`);
    if (position !== null && (!Number.isSafeInteger(position) || position < 0)) throw new RfsError('EINVAL', context, `position ${position}`);
    const at = position ?? this.position;
    this.session ??= this.client.reader.open(this.path);
    const session = this.session;
    const bytesRead = await guard(context, {}, () => session.readInto(at, buffer.subarray(offset, offset + length)));
    if (position === null) this.position += bytesRead;
    return { bytesRead, buffer };
  }

  /** The whole file (reading handles). */
  async readFile(options: { encoding?: BufferEncoding } = {}): Promise<Buffer | string> {
    this.check(this.context('read'), 'r');
    return options.encoding === undefined ? this.client.readFile(this.path) : this.client.readFile(this.path, { encoding: options.encoding });
  }

  /**
   * Appends `data` (bytes `offset` .. `offset + length` of it). `position` must be null/undefined or the
   * current end (`bytesWritten`): rfs does not write in place (AppendOnlyError).
   */
  async write(data: Uint8Array | string, offset = 0, length?: number, position?: number | null): Promise<{ bytesWritten: number; buffer: Uint8Array | string }> {
    const context = this.context('write');
    const writer = this.check(context, 'w');
    if (position !== undefined && position !== null && position !== writer.position)
      throw new AppendOnlyError(context, `write at ${position}, but the file ends at ${writer.position}: rfs files are append-only`);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const n = length ?? bytes.length - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(n) || offset < 0 || n < 0 || offset + n > bytes.length)
      throw new RfsError('EINVAL', context, `offset ${offset} length ${n} outside ${bytes.length} bytes`);
    await guard(context, {}, () => writer.write(bytes.subarray(offset, offset + n)));
    return { bytesWritten: n, buffer: data };
  }

  /** Appends `data` (writing handles). */
  async appendFile(data: Uint8Array | string, options: { encoding?: BufferEncoding } = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, options.encoding ?? 'utf8') : data;
    await this.write(bytes);
  }

  stat(): Promise<RfsStats> {
    return this.client.stat(this.path);
  }

  /** Writing handles: seals and completes the file; resolved means every byte written is durable. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.session?.close();
    const writer = this.writer;
    if (writer === null) return;
    const context = this.context('close');
    try {
      await guard(context, {}, () => writer.close());
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  private context(syscall: string): ErrorContext {
    return { syscall, path: this.path };
  }

  private check(context: ErrorContext, mode: 'r'): null;
  private check(context: ErrorContext, mode: 'w'): FileWriter;
  private check(context: ErrorContext, mode: 'r' | 'w'): FileWriter | null {
    if (this.closed) throw new RfsError('EBADF', context, 'the handle is closed');
    if (mode === 'r' && this.writer !== null) throw new RfsError('EBADF', context, 'the handle was opened for writing');
    if (mode === 'w' && this.writer === null) throw new RfsError('EBADF', context, 'the handle was opened for reading');
    return this.writer;
  }
}
