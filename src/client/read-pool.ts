/**
 * Connection reuse for range reads. A chunkserver's data server takes a sequence of reads on one
 * connection (dataplane/server.ts), so a client need not dial a replica for every range: `PooledDialer`
 * lends a connection per read and takes it back when the read ends cleanly.
 *
 * Rules:
 * - A connection goes back to the pool only through `end()` after a read that the reader settled itself:
 *   the server has sent its last frame and nothing else is due. `destroy()` (any failure, a timeout, an
 *   abort) closes it for good, so a half-read stream is never lent again.
 * - An idle connection that receives anything, or is closed by its peer, is dropped (a message on an idle
 *   connection is a protocol error: it is destroyed).
 * - At most `readConnectionsIdlePerAddressMax` idle connections per replica address; an idle one is closed
 *   after `readConnectionIdleMs` (an unref'ed timer: idle connections never keep a process alive), and all
 *   of them on `close()`.
 * Only the real client uses it (src/client/connect.ts); the simulator dials per read, as before.
 */
import type { ConnectionHandlers, DataConnection, Dialer } from '../chunkserver/dataplane/connection.ts';
import { DataPlaneError } from '../chunkserver/dataplane/errors.ts';
import type { Message } from '../chunkserver/dataplane/protocol.ts';

/** Idle connections kept per chunkserver address. */
export const readConnectionsIdlePerAddressMax = 4;
/** An idle connection is closed after this long unused. */
export const readConnectionIdleMs = 30_000;

export interface PooledDialerStats {
  dialed: number;
  reused: number;
}

/** One underlying connection; its handlers route to the current borrower, if any. */
class Slot {
  borrower: ConnectionHandlers | null = null;
  started = false;
  idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly pool: PooledDialer,
    readonly address: string,
    readonly connection: DataConnection,
  ) {}

  start(): void {
    this.started = true;
    this.connection.start({
      onMessage: (message: Message, lease) => {
        if (this.borrower !== null) return this.borrower.onMessage(message, lease);
        this.connection.destroy(new DataPlaneError('PROTOCOL_ERROR', `unexpected ${message.type} on an idle read connection`));
      },
      onClose: (error) => {
        this.pool.forget(this);
        const borrower = this.borrower;
        this.borrower = null;
        borrower?.onClose(error);
      },
    });
  }
}

/** What a borrower holds: the DataConnection contract over a pooled slot, for one use. */
class Loan implements DataConnection {
  private done = false;

  constructor(private readonly slot: Slot) {}

  get remoteAddress(): string {
    return this.slot.connection.remoteAddress;
  }

  get closed(): boolean {
    return this.done || this.slot.connection.closed;
  }

  start(handlers: ConnectionHandlers): void {
    if (this.done) return;
    this.slot.borrower = handlers;
    if (!this.slot.started) this.slot.start();
  }

  send(message: Message, onSent?: () => void): boolean {
    if (this.done) return false;
    return this.slot.connection.send(message, onSent);
  }

  writable(): Promise<void> {
    return this.slot.connection.writable();
  }

  pause(): void {
    if (!this.done) this.slot.connection.pause();
  }

  resume(): void {
    if (!this.done) this.slot.connection.resume();
  }

  /** The read is over: the connection goes back to the pool (or is closed when the pool is full). */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.slot.borrower = null;
    this.slot.connection.resume();
    this.slot.pool.giveBack(this.slot);
  }

  destroy(error?: DataPlaneError): void {
    if (this.done) return;
    this.done = true;
    // The borrower hears of it through onClose (the contract of destroy); the slot is gone for good.
    this.slot.connection.destroy(error);
  }
}

export class PooledDialer implements Dialer {
  private readonly idle = new Map<string, Slot[]>();
  private closedPool = false;
  readonly stats: PooledDialerStats = { dialed: 0, reused: 0 };

  constructor(private readonly inner: Dialer) {}

  async dial(address: string): Promise<DataConnection> {
    const slots = this.idle.get(address);
    for (let slot = slots?.pop(); slot !== undefined; slot = slots?.pop()) {
      if (slot.idleTimer !== null) clearTimeout(slot.idleTimer);
      slot.idleTimer = null;
      if (slot.connection.closed) continue;
      this.stats.reused++;
      return new Loan(slot);
    }
    const connection = await this.inner.dial(address);
    this.stats.dialed++;
    return new Loan(new Slot(this, address, connection));
  }

  /** Idle connections now held (all addresses). */
  get idleCount(): number {
    let n = 0;
    for (const slots of this.idle.values()) n += slots.length;
    return n;
  }

  giveBack(slot: Slot): void {
    const slots = this.idle.get(slot.address) ?? [];
    if (this.closedPool || slot.connection.closed || !slot.started || slots.length >= readConnectionsIdlePerAddressMax) {
      slot.connection.end();
      return;
    }
    slots.push(slot);
    this.idle.set(slot.address, slots);
    slot.idleTimer = setTimeout(() => {
      slot.idleTimer = null;
      this.forget(slot);
      slot.connection.end();
    }, readConnectionIdleMs);
    slot.idleTimer.unref();
  }

  forget(slot: Slot): void {
    if (slot.idleTimer !== null) clearTimeout(slot.idleTimer);
    slot.idleTimer = null;
    const slots = this.idle.get(slot.address);
    if (slots === undefined) return;
    const i = slots.indexOf(slot);
    if (i >= 0) slots.splice(i, 1);
    if (slots.length === 0) this.idle.delete(slot.address);
  }

  /** Closes every idle connection; connections lent out close when their reads end. */
  close(): void {
    this.closedPool = true;
    for (const slots of [...this.idle.values()]) {
      for (const slot of [...slots]) {
        this.forget(slot);
        slot.connection.end();
      }
    }
  }
}
