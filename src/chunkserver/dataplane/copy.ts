/**
 * `copyReplica`: re-replication. A chunkserver told by the metadata leader to copy a sealed replica to
 * another server reads it from its own store (every block verified) and runs a one-hop write pipeline to
 * the target that ends sealed. Reads overlap sending: the pipeline window holds up to inflightPacketsMax
 * packets while the next piece is read. The target's checksum must equal the source's.
 */
import type { ChunkStore } from '../types.ts';
import type { Dialer } from './connection.ts';
import { DataPlaneError } from './errors.ts';
import type { DataPlaneLimits } from './limits.ts';
import type { ChainLink } from './protocol.ts';
import type { SealedReplica } from './writer.ts';
import type { StallWatch } from './stall.ts';
import { PipelineWriter } from './writer.ts';

export interface CopyOptions {
  readonly packetBytes?: number;
  readonly limits?: Partial<DataPlaneLimits>;
  /** A target that acknowledges nothing for stall.ms fails the copy with TIMEOUT (PipelineWriterOptions.stall). */
  readonly stall?: StallWatch;
  /**
   * Aborts the copy (its chunkserver stopping): the connection to the target is closed at once and the copy
   * rejects with ABORTED. The target abandons the pipeline as it does when any upstream goes away; what it
   * received stays an unsealed replica, never listed, which the leader has deleted once it no longer
   * waits for this copy (placement manager: a copy's remnant).
   */
  readonly signal?: AbortSignal;
}

/**
 * Copies the sealed replica `handle` at `version` to `target`; resolves with the target's sealed length and
 * checksum. Rejects with a DataPlaneError (the source's store error, or a PipelineFailedError: ABORTED when
 * `signal` aborted it).
 */
export async function copyReplica(
  store: ChunkStore,
  dialer: Dialer,
  handle: number,
  version: number,
  target: ChainLink,
  options: CopyOptions = {},
): Promise<SealedReplica> {
  const info = store.info(handle);
  if (info === undefined) throw new DataPlaneError('NO_SUCH_REPLICA', `no replica of chunk ${handle}`);
  if (info.version !== version) throw new DataPlaneError('STALE_VERSION', `chunk ${handle} is at version ${info.version}, not ${version}`);
  if (!info.sealed || info.checksum === undefined)
    throw new DataPlaneError('PROTOCOL_ERROR', `chunk ${handle} is not sealed: only sealed replicas are copied`);
  const writer = await PipelineWriter.open(dialer, {
    handle,
    version,
    chain: [target],
    // The copy is stored as the source is (it re-packs at its seal); the bytes sent are logical.
    ...(info.compression === undefined ? {} : { compression: info.compression }),
    ...(options.packetBytes === undefined ? {} : { packetBytes: options.packetBytes }),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.stall === undefined ? {} : { stall: options.stall }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const pieceBytes = options.packetBytes ?? 256 * 1024;
  try {
    for (let offset = 0; offset < info.lengthBytes; offset += pieceBytes) {
      const piece = await store.read(handle, version, offset, Math.min(pieceBytes, info.lengthBytes - offset));
      await writer.write(piece);
    }
    const [sealed] = await writer.seal(info.lengthBytes);
    if (sealed === undefined) throw new DataPlaneError('PROTOCOL_ERROR', 'the seal ack lists no replica');
    if (sealed.checksum !== info.checksum || sealed.lengthBytes !== info.lengthBytes)
      throw new DataPlaneError('CHECKSUM_MISMATCH', `copy of chunk ${handle} to ${target.id} sealed with checksum ${sealed.checksum}, source has ${info.checksum}`);
    return sealed;
  } catch (error) {
    writer.abort('copy failed');
    throw error;
  }
}
