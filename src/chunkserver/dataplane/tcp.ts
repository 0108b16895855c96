/**
 * The data plane over TCP (node:net): one frame per message (frame.ts), Nagle off, the payload written as
 * its own buffer under cork (no copy). Receiving pauses the socket while the owner has paused delivery, so
 * a full replica stops reading and TCP flow control pushes back to the sender. Bytes that are not a frame,
 * or a frame past frameBytesMax, end the connection with a typed error (sent to the peer as an `error`
 * message when it can still be written) — never an exception out of a socket callback.
 *
 * Buffers: received payloads land in buffers of the network's BufferPool (pool.ts) and are handed to the
 * owner with their lease; the decoder's reference is released when onMessage returns. Dialed sockets read
 * with `onread` (Node does not offer it to accepted ones): into the rest of the current payload when one is
 * being received (no copy at all), else into one receive buffer per connection; accepted sockets get Node's
 * read chunks, copied once into the payload's pooled buffer.
 */
import net from 'node:net';
import type { ConnectionHandlers, DataConnection, DataNetwork, Listener } from './connection.ts';
import { DataPlaneError } from './errors.ts';
import { PooledFrameDecoder, encodeFrame } from './frame.ts';
import type { DataPlaneLimits } from './limits.ts';
import { resolveLimits } from './limits.ts';
import { BufferPool } from './pool.ts';
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

/** Bytes of a dialed connection's receive buffer (reads of frame headers and small frames land there). */
export const receiveBufferBytes = 64 * 1024;

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
   * existed (they wait in the decoder).
   */
  constructor(
    private readonly socket: net.Socket,
    private readonly limits: DataPlaneLimits,
    private readonly decoder: PooledFrameDecoder,
    private readonly viaOnread: boolean,
  ) {
    this.remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    socket.setNoDelay(true);
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
    this.socket.pause();
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
    // Stop reading while delivery is paused: bytes already read stay in the decoder (one chunk at most).
    if (this.paused) this.socket.pause();
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
    this.wakeWriters();
    this.handlers?.onClose(error);
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

  constructor(limits: Partial<DataPlaneLimits> = {}, options: { connectTimeoutMs?: number; pool?: BufferPool } = {}) {
    this.limits = resolveLimits(limits);
    this.connectTimeoutMs = options.connectTimeoutMs ?? defaultConnectTimeoutMs;
    this.pool = options.pool ?? new BufferPool(this.limits.packetBytesMax);
  }

  dial(address: string): Promise<DataConnection> {
    const { host, port } = parseAddress(address);
    const decoder = new PooledFrameDecoder(this.limits, this.pool);
    const receive = Buffer.allocUnsafe(receiveBufferBytes);
    let connection: TcpConnection | null = null;
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host,
        port,
        onread: {
          // Called after each read for the next one's destination: the payload in progress, in place.
          buffer: () => decoder.payloadTarget() ?? receive,
          callback: (bytes, buffer) => {
            if (connection === null) {
              // Bytes before the connection object exists (none expected: it is made on 'connect') wait in
              // the decoder; bad ones end the socket (the dial then fails).
              try {
                if (buffer === receive) decoder.push(receive.subarray(0, bytes));
                else decoder.pushedInPlace(bytes);
              } catch (error) {
                socket.destroy(error as Error);
              }
            } else if (buffer === receive) connection.received(receive.subarray(0, bytes));
            else connection.receivedInPlace(bytes);
            return true; // pausing is done by socket.pause(), not here
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

  listen(address: string, onConnection: (connection: DataConnection) => void): Promise<Listener> {
    const { host, port } = parseAddress(address);
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
      onConnection(new TcpConnection(socket, this.limits, new PooledFrameDecoder(this.limits, this.pool), false));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const bound = server.address() as net.AddressInfo;
        const boundHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
        resolve({
          address: `${boundHost}:${bound.port}`,
          close: () => new Promise<void>((done) => server.close(() => done())),
        });
      });
    });
  }
}
