/**
 * The data plane's connection abstraction: ordered, reliable message delivery between two endpoints with
 * flow control both ways. Two implementations: TCP (tcp.ts, frames on a socket) and in-memory
 * (memory-network.ts, delivery through an injected scheduler, for tests and the simulator).
 */
import type { DataPlaneError } from './errors.ts';
import type { PooledBuffer } from './pool.ts';
import type { Message } from './protocol.ts';

export interface ConnectionHandlers {
  /**
   * Messages in the order sent; never called while paused or after close. `lease`: when the payload lives
   * in a pooled buffer (TCP), that buffer. The payload is then valid only until onMessage returns, unless
   * the handler calls `lease.retain()` (and `release()` once done with the bytes: pool.ts). Without a lease
   * (in-memory network) the payload is the handler's to keep.
   */
  onMessage(message: Message, lease?: PooledBuffer | null): void;
  /** Called once: `null` when the peer closed cleanly, else why the connection ended. */
  onClose(error: DataPlaneError | null): void;
}

export interface DataConnection {
  readonly remoteAddress: string;
  readonly closed: boolean;
  /** Starts delivery to `handlers` (nothing is delivered before; received messages wait). Call once. */
  start(handlers: ConnectionHandlers): void;
  /**
   * Queues `message`; returns false when the send queue is above its high-water mark: the caller then waits
   * for `writable()` before sending more. The payload is not copied: the caller must not modify it after.
   * A send on a closed connection is dropped (returns false); onClose has told or will tell the owner.
   * `onSent`, if the connection supports it, is called once the connection no longer references the payload
   * (written to the kernel, or dropped); a connection that does not call it keeps the payload until garbage
   * collected, so a pooled payload is never recycled while possibly still in use.
   */
  send(message: Message, onSent?: () => void): boolean;
  /** Resolves once the send queue is below its high-water mark, or the connection closed. */
  writable(): Promise<void>;
  /** Stops delivering received messages (and stops reading from the peer, which then stalls). */
  pause(): void;
  resume(): void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once; queued messages are dropped. onClose receives `error` (or null). */
  destroy(error?: DataPlaneError): void;
}

export interface Dialer {
  /** A connection to `address`; rejects with DataPlaneError CONNECT_FAILED. */
  dial(address: string): Promise<DataConnection>;
}

export interface Listener {
  /** The address peers dial (with the real port when listening on port 0). */
  readonly address: string;
  /**
   * Stops accepting; open connections are left to their owners. Resolves once every accepted connection has
   * closed: a TCP listener destroys the sockets of connections already over (and of each that ends later),
   * since their peer may never close its side (tcp.ts).
   */
  close(): Promise<void>;
}

export interface DataNetwork extends Dialer {
  listen(address: string, onConnection: (connection: DataConnection) => void): Promise<Listener>;
}
