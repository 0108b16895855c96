/**
 * Presents the metadata state machine to the Raft driver (src/raft/node-api.ts's StateMachine): committed
 * entries are applied in whole batches, atomically with the applied index; the applied index survives on
 * the state machine's own store, so a restart re-applies nothing.
 *
 * Snapshots are streamed end to end, never held whole in memory. The state lives in the state machine's
 * store (RocksDB in production), so a local snapshot for log compaction is metadata only. A lagging
 * follower is sent `openSnapshot()`, the store's point-in-time view as a stream of bounded frames
 * (snapshotChunks()), which the driver sends in chunks with a bounded window; the follower's driver feeds
 * the chunks to `installSnapshot()` as they arrive, and the store switches to the new content atomically
 * once the whole stream arrived and was verified (restoreFromChunks()).
 */
import type { StateMachine } from '../raft/node-api.ts';
import type { Entry, SnapshotMetadata } from '../raft/types.ts';
import { SnapshotFormatError } from './errors.ts';
import type { MetadataStateMachine } from './state-machine.ts';

export class RaftMetadataStateMachine implements StateMachine {
  constructor(readonly fsm: MetadataStateMachine) {}

  appliedIndex(): number {
    return this.fsm.appliedIndex();
  }

  appliedTerm(): number {
    return this.fsm.appliedTerm();
  }

  applyBatch(entries: readonly Entry[]): Promise<readonly unknown[]> {
    return this.fsm.applyBatch(entries);
  }

  readAhead(entries: readonly Entry[]): void {
    this.fsm.readAhead(entries);
  }

  /** The state as of appliedIndex(), fixed now, as a stream of frames of at most the state machine's snapshotChunkBytes. */
  openSnapshot(): AsyncIterator<Uint8Array> {
    return this.fsm.snapshotChunks();
  }

  /** Makes everything applied durable: the driver calls it before it compacts the log below a snapshot. */
  sync(): Promise<void> {
    return this.fsm.sync();
  }

  /** Installs a streamed snapshot atomically; its applied index must be the one its metadata names. */
  async installSnapshot(
    metadata: SnapshotMetadata,
    chunks: AsyncIterable<Uint8Array>,
    beforeInstall: () => Promise<void>,
  ): Promise<void> {
    await this.fsm.restoreFromChunks(chunks, {
      beforeInstall: async (applied) => {
        if (applied !== metadata.index) {
          throw new SnapshotFormatError(`snapshot labelled index ${metadata.index} holds the state at ${applied}`);
        }
        await beforeInstall();
      },
    });
  }
}
