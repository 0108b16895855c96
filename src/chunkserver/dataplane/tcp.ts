/**
 * The data plane over TCP (node:net): one frame per message (frame.ts), Nagle off, the payload written as
 * its own buffer under cork (no copy). Receiving stops reading the socket while the owner has paused delivery
 * (after a bounded read-ahead, so a peer's close is still seen), so
 * a full replica stops reading and TCP flow control pushes back to the sender. Bytes that are not a frame,
 * or a frame past frameBytesMax, end the connection with a typed error (sent to the peer as an `error`
 * message when it can still be written) — never an exception out of a socket callback.
 *
 * Buffers: received payloads land in buffers of the network's BufferPool (pool.ts) and are handed to the
 * owner with their lease; the decoder's reference is released when onMessage returns. Every socket reads
 * through `onread`: into the rest of the current payload when one is being received (no copy at all), else
 * into the network's receive buffer (frame heads and small frames, copied out before the read callback
 * returns). Node offers `onread` to dialed sockets only; accepted ones are switched to it before their first
 * read (`readIntoUserBuffers`), which matters: Node's own read path allocates a fresh 64 KiB buffer per
 * read, and on the benchmark VM the page faults on that fresh memory, the copy out of it and the garbage
 * collections its external memory triggers were most of a chunkserver's CPU. If the switch is unavailable
 * (a Node version without the internals it uses) the socket falls back to 'data' events, copied once.
 * Payload buffers are page-aligned (aligned.ts), so the store writes a packet's aligned middle with O_DIRECT
 * straight from the buffer the socket read it into (disk.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ConnectionHandlers, DataConnection, DataNetwork, Listener } from './connection.ts';
import { DataPlaneError } from './errors.ts';
import { PooledFrameDecoder, encodeFrame } from './frame.ts';
import type { DataPlaneLimits } from './limits.ts';
import { resolveLimits } from './limits.ts';
import { AlignedSlabs } from '../aligned.ts';
import { BufferPool, poolFreePerClassMax } from './pool.ts';
import type { DecodedFrame } from './frame.ts';
import type { Message } from './protocol.ts';
import { errorMessage } from './protocol.ts';

/** `host:port` → parts; the host may be a bracketed IPv6 literal. */
export function parseAddress(address: string): { host: string; port: number } {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || !Number.isSafeInteger(port) || port > 65535)
    throw new DataPlaneError('CONNECT_FAILED', `bad address ${JSON.stringify(address)}`);
  return { host: match[1] ?? '', port };
}

/**
 * Bytes of the network's receive buffer: reads of frame heads and small frames land there. One buffer serves
 * every connection of a network: a read callback copies out what it keeps before it returns, and reads run
 * one at a time on the event loop.
 */
export const receiveBufferBytes = 64 * 1024;

/** Payload buffers are carved from page-aligned slabs of this size (aligned.ts). */
export const receiveSlabBytes = 16 * 1024 * 1024;

/**
 * TCP keepalive on every data-plane socket, dialed and accepted: after this long without traffic the kernel
 * probes the peer (libuv then probes every second, 10 times), so a peer whose host crashed, lost power or
 * was cut off is noticed about 40 s after the connection went quiet, instead of never: such a connection
 * used to stay open on the other side for ever, holding one of the chunkserver's connectionsMax slots and
 * its buffers (an orphaned pipeline hop or read session). It does not help while data is unacknowledged
 * (the kernel's retransmissions decide then), nor against a live host whose process stopped (its kernel
 * answers the probes): the stall watches (stall.ts) cover those.
 */
export const tcpKeepAliveInitialDelayMs = 30_000;

/** Undelivered bytes a connection whose delivery is paused may still read (see maybeStopReading). */
export const pausedReadAheadBytes = 64 * 1024;

/** What a socket reading through `onread` calls after each read: `bytes` landed at the start of `buffer`. */
type ReadCallback = (bytes: number, buffer: Uint8Array) => boolean;

/**
 * Switches an accepted socket that has not read yet (created paused) to `onread`-style reads, exactly as
 * `net.connect({ onread })` sets up a dialed one: `buffer()` gives each read's destination, `callback` runs
 * after it. Node 20 offers this to dialed sockets only, so this sets the same internal fields the Socket
 * constructor sets and calls `useUserBuffer` as `initSocketHandle` does. Returns false, changing nothing,
 * when those internals are not there (the caller then reads 'data' events).
 */
export function readIntoUserBuffers(socket: net.Socket, buffer: () => Uint8Array, callback: ReadCallback): boolean {
  const symbols = new Map(Object.getOwnPropertySymbols(socket).map((symbol) => [symbol.description, symbol]));
  const kBuffer = symbols.get('kBuffer');
  const kBufferCb = symbols.get('kBufferCb');
  const kBufferGen = symbols.get('kBufferGen');
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: unknown; reading?: boolean } | null })._handle;
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return false;
  if (handle === undefined || handle === null || typeof handle.useUserBuffer !== 'function' || handle.reading === true) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null || fields[kBufferGen] !== null) return false; // not the state this expects
  const first = buffer();
  fields[kBufferGen] = buffer;
  fields[kBufferCb] = callback;
  fields[kBuffer] = first;
  (handle.useUserBuffer as (buffer: Uint8Array) => void).call(handle, first);
  return true;
}

class TcpConnection implements DataConnection {
  readonly remoteAddress: string;
  private handlers: ConnectionHandlers | null = null;
  private paused = false;
  private delivering = false;
  private isClosed = false;
  private closeError: DataPlaneError | null = null;
  private waiters: (() => void)[] = [];

  /**
   * `viaOnread`: the socket reads through `onread` into buffers this side chooses (dialed sockets): bytes
   * arrive by `received`/`receivedInPlace` instead of 'data' events, and may have arrived before this object
   * existed (they wait in the decoder). `onFinished`: called once the connection is over for its owner
   * (ended, destroyed, failed or closed by the peer), while the socket may still wait for the peer's FIN.
   */
  constructor(
    private readonly socket: net.Socket,
    private readonly limits: DataPlaneLimits,
    private readonly decoder: PooledFrameDecoder,
    private readonly viaOnread: boolean,
    private readonly onFinished?: () => void,
  ) {
    this.remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, tcpKeepAliveInitialDelayMs);
    socket.pause(); // nothing is read before start()
    if (!viaOnread) socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('drain', () => this.wakeWriters());
    socket.on('error', (error) => this.finish(new DataPlaneError('CONNECTION_LOST', error.message)));
    socket.on('end', () => {
      // The peer finished sending: deliver what is buffered, then report the close.
      this.deliver();
      if (this.decoder.bufferedBytes > 0 && !this.isClosed)
        this.finish(new DataPlaneError('CONNECTION_LOST', 'the peer closed mid-frame'));
      else this.finish(null);
    });
    socket.on('close', () => this.finish(new DataPlaneError('CONNECTION_LOST', 'connection closed')));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  start(handlers: ConnectionHandlers): void {
    if (this.handlers !== null) throw new Error('connection already started');
    this.handlers = handlers;
    if (this.isClosed) {
      handlers.onClose(this.closeError);
      return;
    }
    if (!this.paused) this.socket.resume();
  }

  send(message: Message, onSent?: () => void): boolean {
    if (this.isClosed || this.socket.destroyed) {
      onSent?.();
      return false;
    }
    const parts = encodeFrame(message, this.limits);
    this.socket.cork();
    const last = parts.length - 1;
    // The last part is the payload (or the header): its callback runs once it is written, or with an error
    // when the socket is destroyed first; either way the socket no longer holds it.
    for (let i = 0; i < last; i++) this.socket.write(parts[i] as Uint8Array);
    if (onSent === undefined) this.socket.write(parts[last] as Uint8Array);
    else this.socket.write(parts[last] as Uint8Array, () => onSent());
    this.socket.uncork();
    return this.socket.writableLength < this.limits.sendQueueBytesHigh;
  }

  writable(): Promise<void> {
    if (this.isClosed || this.socket.writableLength < this.limits.sendQueueBytesHigh) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  pause(): void {
    this.paused = true;
    this.maybeStopReading();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.deliver();
    if (!this.paused && !this.isClosed && this.handlers !== null) this.socket.resume();
  }

  end(): void {
    if (this.isClosed) return;
    this.socket.end();
    this.finish(null);
  }

  destroy(error?: DataPlaneError): void {
    this.socket.destroy();
    this.finish(error ?? null);
  }

  /** Bytes read into a buffer the decoder does not own (copied before this returns). */
  received(chunk: Uint8Array): void {
    if (this.isClosed) return;
    try {
      this.decoder.push(chunk);
    } catch (error) {
      this.fail(error as DataPlaneError);
      return;
    }
    this.afterReceive();
  }

  /** `length` bytes were read straight into the decoder's payloadTarget(). */
  receivedInPlace(length: number): void {
    if (this.isClosed) return;
    try {
      this.decoder.pushedInPlace(length);
    } catch (error) {
      this.fail(error as DataPlaneError);
      return;
    }
    this.afterReceive();
  }

  private afterReceive(): void {
    this.deliver();
    this.maybeStopReading();
  }

  /**
   * While delivery is paused the socket reads on only until `pausedReadAheadBytes` wait in the decoder, then
   * stops (TCP flow control then stalls the peer). Reading on a little is what lets a paused connection
   * notice its peer closing: a peer that respects its window sends nothing more, so the next read is its
   * FIN or RST. Bytes held: at most pausedReadAheadBytes plus one read.
   */
  private maybeStopReading(): void {
    if (this.paused && this.decoder.bufferedBytes >= pausedReadAheadBytes) this.socket.pause();
  }

  /** Hands decoded messages to the owner while not paused; decoding errors end the connection. */
  private deliver(): void {
    if (this.delivering || this.handlers === null) return;
    this.delivering = true;
    try {
      while (!this.paused && !this.isClosed) {
        let frame: DecodedFrame | undefined;
        try {
          frame = this.decoder.next();
        } catch (error) {
          this.fail(error as DataPlaneError);
          return;
        }
        if (frame === undefined) return;
        try {
          this.handlers.onMessage(frame.message, frame.lease);
        } finally {
          frame.lease?.release(); // the decoder's reference; a handler that keeps the payload retained it
        }
      }
    } finally {
      this.delivering = false;
    }
  }

  /** A protocol violation by the peer: tell it why (best effort), close, and report the typed error. */
  private fail(error: DataPlaneError): void {
    if (this.isClosed) return;
    try {
      this.send(errorMessage(error));
    } catch {
      // The error message itself could not be encoded; closing is all that is left.
    }
    this.socket.end();
    this.socket.destroySoon();
    this.finish(error);
  }

  private finish(error: DataPlaneError | null): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeError = error;
    // A socket reading through onread may still read into the partial payload's buffer (until destroyed):
    // that buffer is dropped, never recycled.
    this.decoder.dispose({ recyclePartial: !this.viaOnread || this.socket.destroyed });
    // Read on, discarding, so the socket sees the peer's FIN or RST and closes: a socket left paused after
    // end() would stay half-open, unnoticed, and keep its listener from closing.
    if (!this.socket.destroyed) this.socket.resume();
    this.wakeWriters();
    this.handlers?.onClose(error);
    this.onFinished?.();
  }

  private wakeWriters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A dial that has not connected after this long fails (CONNECT_FAILED) instead of waiting for the OS. */
export const defaultConnectTimeoutMs = 5_000;

export class TcpDataNetwork implements DataNetwork {
  readonly limits: DataPlaneLimits;
  readonly connectTimeoutMs: number;
  /** Received payloads of every connection of this network (recycled: see tcp.ts's header). */
  readonly pool: BufferPool;
  /** Where reads that are not part of a payload land (see receiveBufferBytes). */
  private readonly receive = Buffer.allocUnsafeSlow(receiveBufferBytes);
  /** Accepted connections that fell back to 'data' events (tests: zero on the Node this runs on). */
  acceptedWithoutOnread = 0;

  constructor(limits: Partial<DataPlaneLimits> = {}, options: { connectTimeoutMs?: number; pool?: BufferPool } = {}) {
    this.limits = resolveLimits(limits);
    this.connectTimeoutMs = options.connectTimeoutMs ?? defaultConnectTimeoutMs;
    // Page-aligned payloads: the store writes a received packet's aligned middle with O_DIRECT in place.
    const slabs = new AlignedSlabs(receiveSlabBytes);
    this.pool = options.pool ?? new BufferPool(this.limits.packetBytesMax, poolFreePerClassMax, (bytes) => slabs.allocate(bytes));
  }

  /** The next read's destination for a connection: the payload in progress (in place), else `receive`. */
  private readTarget(decoder: PooledFrameDecoder): Uint8Array {
    return decoder.payloadTarget() ?? this.receive;
  }

  /** Hands `bytes` read into `buffer` (from readTarget) to the connection. */
  private delivered(connection: TcpConnection, bytes: number, buffer: Uint8Array): boolean {
    if (buffer === this.receive) connection.received(this.receive.subarray(0, bytes));
    else connection.receivedInPlace(bytes);
    return true; // pausing is done by socket.pause(), not here
  }

  dial(address: string): Promise<DataConnection> {
    const { host, port } = parseAddress(address);
    const decoder = new PooledFrameDecoder(this.limits, this.pool);
    let connection: TcpConnection | null = null;
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host,
        port,
        onread: {
          // Called after each read for the next one's destination.
          buffer: () => this.readTarget(decoder),
          callback: (bytes, buffer) => {
            if (connection !== null) return this.delivered(connection, bytes, buffer);
            // Bytes before the connection object exists (none expected: it is made on 'connect') wait in
            // the decoder; bad ones end the socket (the dial then fails).
            try {
              if (buffer === this.receive) decoder.push(this.receive.subarray(0, bytes));
              else decoder.pushedInPlace(bytes);
            } catch (error) {
              socket.destroy(error as Error);
            }
            return true;
          },
        },
      });
      const onError = (error: Error): void => {
        socket.destroy();
        reject(new DataPlaneError('CONNECT_FAILED', `${address}: ${error.message}`));
      };
      socket.once('error', onError);
      // The real-time edge: the only timer of the data plane, and only until the connection is up.
      socket.setTimeout(this.connectTimeoutMs, () => onError(new Error(`no connection after ${this.connectTimeoutMs} ms`)));
      socket.once('connect', () => {
        socket.setTimeout(0);
        socket.off('error', onError);
        connection = new TcpConnection(socket, this.limits, decoder, true);
        resolve(connection);
      });
    });
  }

  /**
   * Listener.close(): net.Server.close waits until every accepted socket has closed, and a socket whose
   * connection is over (its owner ended it: a BUSY refusal, a protocol error, a finished or failed pipeline
   * hop) closes only when the peer closes its side, which a paused, hung or cut-off peer never does. So close()
   * destroys those sockets, and from then on destroys each connection's socket as soon as the connection is
   * over; connections still open are left to their owners (DataServer.close destroys its own).
   */
  listen(address: string, onConnection: (connection: DataConnection) => void): Promise<Listener> {
    const { host, port } = parseAddress(address);
    /** Accepted sockets not closed yet, with their connection. */
    const accepted = new Map<net.Socket, TcpConnection>();
    let closing = false;
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      const decoder = new PooledFrameDecoder(this.limits, this.pool);
      let connection: TcpConnection | null = null;
      // The socket is paused (pauseOnConnect): it has read nothing, and reads nothing before start().
      const viaOnread = readIntoUserBuffers(
        socket,
        () => this.readTarget(decoder),
        (bytes, buffer) => {
          assert.ok(connection !== null, 'an accepted socket reads only once its connection exists');
          return this.delivered(connection, bytes, buffer);
        },
      );
      if (!viaOnread) this.acceptedWithoutOnread += 1;
      connection = new TcpConnection(socket, this.limits, decoder, viaOnread, () => {
        if (closing) socket.destroy();
      });
      accepted.set(socket, connection);
      socket.once('close', () => accepted.delete(socket));
      onConnection(connection);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const bound = server.address() as net.AddressInfo;
        const boundHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
        resolve({
          address: `${boundHost}:${bound.port}`,
          close: () => {
            closing = true;
            const closed = new Promise<void>((done) => server.close(() => done()));
            for (const [socket, connection] of accepted) if (connection.closed) socket.destroy();
            return closed;
          },
        });
      });
    });
  }
}
