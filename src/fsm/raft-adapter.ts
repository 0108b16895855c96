/**
 * Presents the metadata state machine to the Raft driver (src/raft/node-api.ts's StateMachine): committed
 * entries are applied in whole batches, atomically with the applied index; the applied index survives on
 * the state machine's own store, so a restart re-applies nothing.
 *
 * Snapshots: the driver's snapshot is one byte array today, so the stream of bounded frames from
 * snapshotChunks() is gathered into memory here (and split again on restore). A snapshot of a very large
 * namespace therefore costs its size in RAM while it is taken or installed; streaming it end to end
 * through the Raft core is planned with the metadata server.
 */
import type { StateMachine } from '../raft/node-api.ts';
import type { Entry, Snapshot } from '../raft/types.ts';
import type { MetadataStateMachine } from './state-machine.ts';
import { concatBytes } from '../raft/bytes.ts';

/** Bytes per chunk when a gathered snapshot is handed back to restoreFromChunks(). */
export const snapshotRestoreChunkBytes = 1024 * 1024;

export class RaftMetadataStateMachine implements StateMachine {
  constructor(readonly fsm: MetadataStateMachine) {}

  appliedIndex(): number {
    return this.fsm.appliedIndex();
  }

  applyBatch(entries: readonly Entry[]): Promise<readonly unknown[]> {
    return this.fsm.applyBatch(entries);
  }

  async snapshot(): Promise<Uint8Array> {
    // The log is compacted below a snapshot: what the state machine applied must be durable first (the
    // store may write lazily), or a machine crash could leave it behind a log that no longer has the gap.
    await this.fsm.sync();
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const c of this.fsm.snapshotChunks()) {
      chunks.push(c);
      total += c.byteLength;
    }
    return concatBytes(chunks, total);
  }

  async restore(snapshot: Snapshot): Promise<void> {
    const data = snapshot.data;
    function* pieces(): Generator<Uint8Array> {
      for (let offset = 0; offset < data.byteLength; offset += snapshotRestoreChunkBytes) {
        yield data.subarray(offset, offset + snapshotRestoreChunkBytes);
      }
    }
    await this.fsm.restoreFromChunks(pieces());
  }
}
