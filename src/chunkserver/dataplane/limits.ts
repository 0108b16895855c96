/** Named limits of the data plane, with units. Relationships between them are checked by `checkLimits`. */
import { checksumBlockBytes } from '../types.ts';

/** The smallest and largest packet a writer may send (the wire refuses larger payloads). */
export const packetBytesMin = 64 * 1024;
export const packetBytesMaxLimit = 1024 * 1024;
/** The header fields of a frame (msgpack) are small; anything larger is malformed. */
export const frameHeaderBytesMax = 4 * 1024;
/** Fixed part of a frame: u32 length, u8 format version, u32 header length. */
export const framePrefixBytes = 9;

export interface DataPlaneLimits {
  /** Largest payload of one packet or read frame. */
  readonly packetBytesMax: number;
  /** Largest frame on the wire (prefix excluded); a longer length prefix closes the connection. */
  readonly frameBytesMax: number;
  /** Unacknowledged packets per pipeline hop, at most (the writer's window and each replica's queue). */
  readonly inflightPacketsMax: number;
  /** Bytes queued for sending on one connection before `send` reports it full (the sender then waits). */
  readonly sendQueueBytesHigh: number;
}

export const defaultDataPlaneLimits: DataPlaneLimits = {
  packetBytesMax: packetBytesMaxLimit,
  frameBytesMax: packetBytesMaxLimit + frameHeaderBytesMax + framePrefixBytes,
  inflightPacketsMax: 16,
  sendQueueBytesHigh: 2 * packetBytesMaxLimit,
};

export function resolveLimits(overrides: Partial<DataPlaneLimits> = {}): DataPlaneLimits {
  const limits = { ...defaultDataPlaneLimits, ...overrides };
  if (overrides.packetBytesMax !== undefined && overrides.frameBytesMax === undefined) {
    limits.frameBytesMax = limits.packetBytesMax + frameHeaderBytesMax + framePrefixBytes;
  }
  checkLimits(limits);
  return limits;
}

export function checkLimits(limits: DataPlaneLimits): void {
  const { packetBytesMax, frameBytesMax, inflightPacketsMax, sendQueueBytesHigh } = limits;
  if (!Number.isSafeInteger(packetBytesMax) || packetBytesMax < 1 || packetBytesMax > packetBytesMaxLimit)
    throw new RangeError(`packetBytesMax must be in [1, ${packetBytesMaxLimit}], got ${packetBytesMax}`);
  if (!Number.isSafeInteger(frameBytesMax) || frameBytesMax < packetBytesMax + frameHeaderBytesMax)
    throw new RangeError(`frameBytesMax must hold a full packet and header, got ${frameBytesMax}`);
  if (frameBytesMax > 0xffff_ffff) throw new RangeError(`frameBytesMax must fit a u32, got ${frameBytesMax}`);
  if (!Number.isSafeInteger(inflightPacketsMax) || inflightPacketsMax < 1)
    throw new RangeError(`inflightPacketsMax must be a positive integer, got ${inflightPacketsMax}`);
  if (!Number.isSafeInteger(sendQueueBytesHigh) || sendQueueBytesHigh < 1)
    throw new RangeError(`sendQueueBytesHigh must be a positive integer, got ${sendQueueBytesHigh}`);
}

// Reads are served in packet-sized pieces; a checksum block must fit in the largest packet so a piece
// boundary never forces a block to be verified twice more than necessary.
if (checksumBlockBytes > packetBytesMaxLimit) throw new Error('checksumBlockBytes exceeds packetBytesMaxLimit');
