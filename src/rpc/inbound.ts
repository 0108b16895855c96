/** Validation of inbound Raft messages, shared by the transports: nothing invalid is ever delivered. */
import { decodeMessage } from '../raft/codec.ts';
import type { Message, NodeId } from '../raft/types.ts';
import type { TransportCounters } from './transport-stats.ts';

export interface InboundContext {
  readonly self: NodeId;
  readonly messageBytesMax: number;
  readonly counters: TransportCounters;
  readonly deliver: (message: Message) => void;
  /** Checked before each message: delivery stops as soon as the transport is stopped. */
  readonly stopped: () => boolean;
}

/**
 * Decodes and delivers the messages of one batch from `from`, in order. A message that is oversized, does
 * not decode, is not addressed to `self` or does not come from `from` is dropped and counted alone; an
 * exception from `deliver` is caught and counted. Returns how many messages were delivered.
 */
export function deliverBatch(ctx: InboundContext, from: NodeId, messages: readonly Uint8Array[]): number {
  const { self, messageBytesMax, counters } = ctx;
  let delivered = 0;
  for (const bytes of messages) {
    if (ctx.stopped()) return delivered;
    if (!(bytes instanceof Uint8Array)) {
      counters.drop('undecodable', 1, from, { what: typeof bytes });
      continue;
    }
    if (bytes.byteLength > messageBytesMax) {
      counters.drop('oversized', 1, from, { bytes: bytes.byteLength, messageBytesMax });
      continue;
    }
    let m: Message;
    try {
      m = decodeMessage(bytes);
    } catch (error) {
      counters.drop('undecodable', 1, from, {
        bytes: bytes.byteLength,
        err: error instanceof Error ? error.message : String(error),
      });
      continue;
    }
    if (m.to !== self) {
      counters.drop('wrong-destination', 1, from, { type: m.type, to: m.to });
      continue;
    }
    if (m.from !== from) {
      counters.drop('sender-mismatch', 1, from, { type: m.type, messageFrom: m.from });
      continue;
    }
    try {
      ctx.deliver(m);
    } catch (error) {
      counters.drop('deliver-error', 1, from, { type: m.type, err: error });
      continue;
    }
    counters.messageReceived(from, bytes.byteLength);
    delivered++;
  }
  return delivered;
}
