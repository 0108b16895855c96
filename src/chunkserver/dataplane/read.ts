/**
 * `readRange`: the client side of a read (protocol.ts). Data frames arrive in order, each at most
 * packetBytesMax; they are assembled into one buffer of exactly `length` bytes: the caller's `into` when
 * given (nothing allocated), else a new one. One copy: a frame's payload is a pooled buffer, valid only
 * while it is delivered. A typed error frame rejects with that code (NO_SUCH_REPLICA, STALE_VERSION,
 * CHECKSUM_MISMATCH, BAD_OFFSET, ...), so the caller can fail over to another replica and report this one.
 */
import { chunkSizeBytesMax } from '../types.ts';
import type { DataConnection, Dialer } from './connection.ts';
import { DataPlaneError } from './errors.ts';
import type { LocalReplicaMessage } from './protocol.ts';
import type { StallWatch } from './stall.ts';
import { StallTimer } from './stall.ts';

export interface ReadRequest {
  readonly handle: number;
  readonly version: number;
  readonly offset: number;
  readonly length: number;
}

/** Reads a range from the replica at `address` over a new connection (closed after). */
export async function readRange(dialer: Dialer, address: string, request: ReadRequest, into?: Uint8Array, stall?: StallWatch): Promise<Uint8Array> {
  if (into !== undefined && into.length !== request.length)
    throw new RangeError(`a read of ${request.length} bytes into a buffer of ${into.length}`);
  const connection = await dialer.dial(address);
  try {
    return await readOn(connection, request, into, stall);
  } finally {
    connection.end();
  }
}

/** One read on an unstarted connection; leaves it open. */
function readOn(connection: DataConnection, request: ReadRequest, into: Uint8Array | undefined, stall: StallWatch | undefined): Promise<Uint8Array> {
  const { offset, length } = request;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > chunkSizeBytesMax)
    return Promise.reject(new DataPlaneError('BAD_OFFSET', `bad range offset ${offset} length ${length}`));
  const out = into ?? Buffer.allocUnsafe(length);
  let received = 0;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error: DataPlaneError | null): void => {
      if (settled) return;
      settled = true;
      watch.disarm();
      if (error === null) resolve(out);
      else {
        connection.destroy();
        reject(error);
      }
    };
    const watch = new StallTimer(stall, 1, (ms) => settle(new DataPlaneError('TIMEOUT', `no data from the replica for ${ms} ms`)));
    connection.start({
      onMessage: (message) => {
        if (settled) return; // nothing lands in the caller's buffer once the read is over
        watch.progress(true);
        if (message.type === 'error') return settle(new DataPlaneError(message.code, message.detail));
        if (message.type !== 'data') return settle(new DataPlaneError('PROTOCOL_ERROR', `unexpected ${message.type} during a read`));
        const { payload } = message;
        if (message.offset !== offset + received || received + payload.length > length)
          return settle(new DataPlaneError('PROTOCOL_ERROR', `data at ${message.offset} (+${payload.length}) outside the read`));
        out.set(payload, received);
        received += payload.length;
        if (message.last !== (received === length))
          return settle(new DataPlaneError('PROTOCOL_ERROR', `last flag wrong at ${received} of ${length} bytes`));
        if (message.last) settle(null);
      },
      onClose: (error) => settle(new DataPlaneError('CONNECTION_LOST', error?.detail ?? 'the replica closed during a read')),
    });
    connection.send({ type: 'read', handle: request.handle, version: request.version, offset, length });
    watch.arm();
  });
}

/**
 * Asks the replica at `address` where its files of `handle` at `version` are (protocol.ts, short-circuit
 * local read), over a connection of `dialer` like a read. Rejects with the server's typed error (NOT_LOCAL,
 * NO_SUCH_REPLICA, STALE_VERSION, ...) or a connection failure.
 */
export async function askLocalReplica(dialer: Dialer, address: string, handle: number, version: number, stall?: StallWatch): Promise<LocalReplicaMessage> {
  const connection = await dialer.dial(address);
  try {
    return await new Promise<LocalReplicaMessage>((resolve, reject) => {
      let settled = false;
      const settle = (error: DataPlaneError | null, reply?: LocalReplicaMessage): void => {
        if (settled) return;
        settled = true;
        watch.disarm();
        if (error === null) resolve(reply!);
        else {
          if (error.code === 'TIMEOUT') connection.destroy();
          reject(error);
        }
      };
      const watch = new StallTimer(stall, 1, (ms) => settle(new DataPlaneError('TIMEOUT', `no answer from the replica for ${ms} ms`)));
      connection.start({
        onMessage: (message) => {
          if (message.type === 'local-replica') return settle(null, message);
          if (message.type === 'error') return settle(new DataPlaneError(message.code, message.detail));
          connection.destroy();
          settle(new DataPlaneError('PROTOCOL_ERROR', `unexpected ${message.type} after local-read`));
        },
        onClose: (error) => settle(new DataPlaneError('CONNECTION_LOST', error?.detail ?? 'the replica closed during a local-read')),
      });
      connection.send({ type: 'local-read', handle, version });
      watch.arm();
    });
  } finally {
    connection.end();
  }
}
