/**
 * The data plane in memory: connections between endpoints of one process, for tests and the deterministic
 * simulator. Every delivery (a message, a connection, a close) runs as a task given to the injected
 * scheduler, one message per task, so the simulator decides the interleaving; nothing here reads a clock or
 * sets a timer. Messages are handed over by reference (payloads are not copied; senders do not modify them
 * after sending, as on TCP). Flow control mirrors TCP's: a receiver's inbox counts bytes, `send` reports
 * false above the high-water mark, and a paused receiver takes nothing from its inbox.
 *
 * Partitions (for the simulator): `cut(a, b)` breaks every connection between endpoints a and b (a listen
 * address, or the name a dialer gives with `dial(address, from)`) and refuses new dials between them
 * (CONNECT_FAILED) until `heal(a, b)` or `healAll()`. Both directions, as a cut cable or a dropping switch.
 */
import type { ConnectionHandlers, DataConnection, DataNetwork, Listener } from './connection.ts';
import { DataPlaneError } from './errors.ts';
import type { DataPlaneLimits } from './limits.ts';
import { resolveLimits } from './limits.ts';
import type { Message } from './protocol.ts';
import { payloadOf } from './protocol.ts';

/** Runs `task` later (the simulator's event queue, or setImmediate). */
export type Scheduler = (task: () => void) => void;

/** What a message costs in an inbox: its payload plus a nominal header. */
const messageOverheadBytes = 64;

function messageBytes(message: Message): number {
  return (payloadOf(message)?.length ?? 0) + messageOverheadBytes;
}

type InboxEntry = { readonly message: Message } | { readonly end: true };

class MemoryConnection implements DataConnection {
  peer: MemoryConnection | null = null;
  private handlers: ConnectionHandlers | null = null;
  private readonly inbox: InboxEntry[] = [];
  private inboxBytes = 0;
  private paused = false;
  private pumpScheduled = false;
  private isClosed = false;
  private closeError: DataPlaneError | null = null;
  private closeReported = false;
  /** Senders waiting for this inbox to drain below the high-water mark. */
  private waiters: (() => void)[] = [];

  constructor(
    readonly remoteAddress: string,
    private readonly network: MemoryDataNetwork,
    readonly localAddress: string,
    /** The endpoints at this end and the other (for partitions): a listen address or a dialer's name. */
    readonly localEndpoint: string = localAddress,
    readonly remoteEndpoint: string = remoteAddress,
  ) {}

  get closed(): boolean {
    return this.isClosed;
  }

  /** Bytes received and not yet delivered. */
  get queuedBytes(): number {
    return this.inboxBytes;
  }

  start(handlers: ConnectionHandlers): void {
    if (this.handlers !== null) throw new Error('connection already started');
    this.handlers = handlers;
    if (this.isClosed) this.reportClose();
    else this.schedulePump();
  }

  send(message: Message): boolean {
    const peer = this.peer;
    if (this.isClosed || peer === null || peer.isClosed) return false;
    const payload = payloadOf(message);
    if (payload !== undefined && payload.length > this.network.limits.packetBytesMax)
      throw new DataPlaneError('FRAME_TOO_LARGE', `payload of ${payload.length} bytes exceeds packetBytesMax`);
    peer.enqueue({ message }, messageBytes(message));
    return peer.inboxBytes < this.network.limits.sendQueueBytesHigh;
  }

  writable(): Promise<void> {
    const peer = this.peer;
    if (this.isClosed || peer === null || peer.isClosed) return Promise.resolve();
    if (peer.inboxBytes < this.network.limits.sendQueueBytesHigh) return Promise.resolve();
    return new Promise((resolve) => peer.waiters.push(resolve));
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.schedulePump();
  }

  end(): void {
    if (this.isClosed) return;
    this.peer?.enqueue({ end: true }, 0);
    this.close(null);
  }

  destroy(error?: DataPlaneError): void {
    if (this.isClosed) return;
    this.close(error ?? null);
    this.peer?.breakFromPeer();
  }

  /** The link broke (the peer destroyed it, or the network cut it): queued messages are lost. */
  breakFromPeer(): void {
    if (this.isClosed) return;
    this.inbox.length = 0;
    this.inboxBytes = 0;
    this.close(new DataPlaneError('CONNECTION_LOST', `connection to ${this.remoteAddress} broke`));
  }

  private enqueue(entry: InboxEntry, bytes: number): void {
    if (this.isClosed) return;
    this.inbox.push(entry);
    this.inboxBytes += bytes;
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.handlers === null) return;
    this.pumpScheduled = true;
    this.network.scheduler(() => {
      this.pumpScheduled = false;
      this.pumpOne();
    });
  }

  /** Delivers one inbox entry, then schedules the next. */
  private pumpOne(): void {
    if (this.isClosed) {
      this.reportClose();
      return;
    }
    if (this.paused || this.handlers === null) return;
    const entry = this.inbox.shift();
    if (entry === undefined) return;
    if ('end' in entry) {
      this.close(null);
      return;
    }
    this.inboxBytes -= messageBytes(entry.message);
    if (this.inboxBytes < this.network.limits.sendQueueBytesHigh) this.wakeWriters();
    this.handlers.onMessage(entry.message);
    if (this.inbox.length > 0) this.schedulePump();
  }

  private close(error: DataPlaneError | null): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeError = error;
    this.network.forget(this);
    this.wakeWriters();
    this.peer?.wakeWriters();
    // The owner hears of the close in a task of its own, like a socket event.
    if (this.handlers !== null) this.network.scheduler(() => this.reportClose());
  }

  private reportClose(): void {
    if (this.closeReported || this.handlers === null) return;
    this.closeReported = true;
    this.handlers.onClose(this.closeError);
  }

  private wakeWriters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

export interface MemoryDataNetworkOptions {
  readonly scheduler: Scheduler;
  readonly limits?: Partial<DataPlaneLimits>;
}

export class MemoryDataNetwork implements DataNetwork {
  readonly limits: DataPlaneLimits;
  readonly scheduler: Scheduler;
  private readonly listeners = new Map<string, (connection: DataConnection) => void>();
  private readonly open = new Set<MemoryConnection>();
  private nextClientPort = 1;
  /** Cut endpoint pairs, as `a\u0000b` with a < b. */
  private readonly cuts = new Set<string>();

  constructor(options: MemoryDataNetworkOptions) {
    this.scheduler = options.scheduler;
    this.limits = resolveLimits(options.limits);
  }

  listen(address: string, onConnection: (connection: DataConnection) => void): Promise<Listener> {
    if (this.listeners.has(address))
      return Promise.reject(new Error(`address ${address} is already listening`));
    this.listeners.set(address, onConnection);
    return Promise.resolve({
      address,
      close: () => {
        if (this.listeners.get(address) === onConnection) this.listeners.delete(address);
        return Promise.resolve();
      },
    });
  }

  /** Dials `address`; `from` names the dialing endpoint for partitions (anonymous dials are never cut). */
  dial(address: string, from?: string): Promise<DataConnection> {
    const onConnection = this.listeners.get(address);
    if (onConnection === undefined)
      return Promise.reject(new DataPlaneError('CONNECT_FAILED', `nothing listens at ${address}`));
    if (from !== undefined && this.isCut(from, address))
      return Promise.reject(new DataPlaneError('CONNECT_FAILED', `${address} is unreachable from ${from} (network partition)`));
    const clientAddress = `client-${this.nextClientPort++}`;
    const client = new MemoryConnection(address, this, clientAddress, from ?? clientAddress, address);
    const server = new MemoryConnection(clientAddress, this, address, address, from ?? clientAddress);
    client.peer = server;
    server.peer = client;
    this.open.add(client);
    this.open.add(server);
    return new Promise((resolve) => {
      this.scheduler(() => {
        onConnection(server);
        resolve(client);
      });
    });
  }

  /**
   * Breaks every open connection with an endpoint at `address` (a crashed server, a cut cable); both ends
   * see CONNECTION_LOST. The listener stays (a restarted server listens again with a new one).
   */
  breakConnections(address: string): number {
    let broken = 0;
    for (const connection of [...this.open]) {
      if (connection.localAddress !== address) continue;
      connection.destroy(new DataPlaneError('CONNECTION_LOST', `${address} went away`));
      broken += 1;
    }
    return broken;
  }

  /** Cuts the link between endpoints `a` and `b`: their connections break, new dials fail. Returns how many broke. */
  cut(a: string, b: string): number {
    this.cuts.add(cutKey(a, b));
    let broken = 0;
    for (const connection of [...this.open]) {
      if (connection.localEndpoint !== a || connection.remoteEndpoint !== b) {
        if (connection.localEndpoint !== b || connection.remoteEndpoint !== a) continue;
      }
      if (connection.closed) continue; // its peer broke it already
      connection.destroy(new DataPlaneError('CONNECTION_LOST', `network partition between ${a} and ${b}`));
      broken += 1;
    }
    return broken;
  }

  heal(a: string, b: string): void {
    this.cuts.delete(cutKey(a, b));
  }

  healAll(): void {
    this.cuts.clear();
  }

  isCut(a: string, b: string): boolean {
    return this.cuts.has(cutKey(a, b));
  }

  /** Bytes sitting in inboxes across the network (for tests of bounded buffering). */
  queuedBytes(): number {
    let total = 0;
    for (const connection of this.open) total += connection.queuedBytes;
    return total;
  }

  /** @internal */
  forget(connection: MemoryConnection): void {
    this.open.delete(connection);
  }
}

function cutKey(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}
