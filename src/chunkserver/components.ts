/**
 * The real parts of a chunkserver process, for `Chunkserver.start` (server.ts): the replica store on the
 * local file system (FileChunkStore on NodeDisk, under `<data dir>/chunks`), the TCP data server, and the
 * scrubber. The store the data server uses is wrapped by `ObservedStore`, which tells the metadata agent
 * about replica changes (created, raised, sealed, deleted: incremental chunk reports) and corruption (a
 * checksum mismatch on a client's read: the replica is reported to the leader, which re-replicates from a
 * good copy), and feeds the chunkserver's metrics. The scrubber and outgoing copies read the store itself,
 * as in the simulator (test/sim/data.ts): their failures reach the agent through their own callers (the
 * scrubber's `onCorrupt`, the agent's copy), and through the wrapper as well each was counted twice.
 */
import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Clock, Logger } from '../raft/node-api.ts';
import { systemClock } from '../runtime/clock.ts';
import type { CopyReplica, StoreOperation } from './agent.ts';
import { copyReplica, DataServer as PlaneServer, pipelineIdleMsDefault, pipelineStallMsDefault, realStallWatch, TcpDataNetwork } from './dataplane/index.ts';
import type { DataPlaneLimits, LocalReadToken } from './dataplane/index.ts';
import type { DataBug } from './bugs.ts';
import { NodeDisk } from './disk.ts';
import type { ChunkserverMetrics } from './metrics.ts';
import { recordDiskWrites, recordRead, recordReReplicationBytes, recordWrite } from './metrics.ts';
import { Scrubber } from './scrubber.ts';
import type { DataServer, ReplicaEvents, StoreAndDataServer } from './server.ts';
import { FileChunkStore } from './store.ts';
import type { AppendPiece, ChunkStore, CreateOptions, LocalReplicaPaths, ReplicaInfo, StoreUsage } from './types.ts';
import { appendAll, ChunkStoreError } from './types.ts';

/**
 * The file in the data dir whose content (a random token, new at every start) proves to a client that it
 * sees this chunkserver's files: a short-circuit local read (src/client/local-read.ts) is used only when
 * the token the data server sends matches the file the client reads at the path it names.
 */
export const localReadTokenFile = 'local-read.token';

/** Writes a fresh token to `<dataDir>/local-read.token` (temp file + rename: a reader never sees half). */
export async function writeLocalReadToken(dataDir: string): Promise<LocalReadToken> {
  const tokenPath = resolve(dataDir, localReadTokenFile);
  const token = randomBytes(16).toString('hex');
  await writeFile(`${tokenPath}.tmp`, token);
  await rename(`${tokenPath}.tmp`, tokenPath);
  return { tokenPath, token };
}

/** Default scrub rate: a full 64 MiB chunk re-verified every ~6 s at most, a small share of a disk. */
export const scrubBytesPerSecondDefault = 10 * 1024 * 1024;

export interface RealComponentsOptions {
  /** Largest replica the store takes (default: the 64 MiB maximum). */
  readonly chunkSizeBytes?: number;
  readonly scrubBytesPerSecond?: number;
  readonly dataPlaneLimits?: Partial<DataPlaneLimits>;
  readonly clock?: Clock;
  /** Planted bugs of the store and the data server: the Jepsen suite's self-test only (src/cli/planted-bugs.ts). */
  readonly bugs?: ReadonlySet<DataBug>;
  /**
   * Offer short-circuit local reads: a client on this host may read sealed replicas' files itself (default
   * true). Off, `local-read` requests are answered LOCAL_READS_OFF and every read goes over the data plane.
   */
  readonly localReads?: boolean;
  /**
   * Write large aligned ranges of replicas with O_DIRECT, bypassing the page cache (default true; disk.ts says
   * why). Where the file system refuses O_DIRECT the store falls back to cached writes and logs it once.
   */
  readonly directWrites?: boolean;
  /**
   * The stall unit of this server's pipeline hops and copies (dataplane/stall.ts): a hop gives up on a
   * replica after it that acknowledges nothing for this × the replicas after the hop (default
   * pipelineStallMsDefault, 10 s).
   */
  readonly pipelineStallMs?: number;
  /**
   * A pipeline hop that owes its writer nothing and hears nothing from it for this long ends the pipeline
   * (its writer stopped without closing; live writers send keepalives): default pipelineIdleMsDefault, 120 s.
   */
  readonly pipelineIdleMs?: number;
}

export function realComponents(options: RealComponentsOptions = {}): StoreAndDataServer {
  const clock = options.clock ?? systemClock;
  // The store opens before the data server has a logger to give: a refusal of O_DIRECT seen before then is
  // logged when it starts.
  let logger: Logger | undefined;
  const stall = realStallWatch(options.pipelineStallMs ?? pipelineStallMsDefault);
  const pipelineIdle = realStallWatch(options.pipelineIdleMs ?? pipelineIdleMsDefault);
  const disk = new NodeDisk({
    directWrites: options.directWrites ?? true,
    onDirectUnavailable: (reason) => logger?.warn({ reason }, 'direct writes unavailable; writing through the page cache'),
  });
  return {
    openStore: (dataDir, storeLogger) =>
      // Absolute: the store hands its files' paths to local clients, whose working directory may differ.
      FileChunkStore.open(disk, join(resolve(dataDir), 'chunks'), {
        logger: storeLogger,
        ...(options.chunkSizeBytes !== undefined ? { chunkSizeBytes: options.chunkSizeBytes } : {}),
        ...(options.bugs !== undefined ? { bugs: options.bugs } : {}),
      }),
    async startDataServer(context): Promise<DataServer> {
      logger = context.logger;
      if (disk.stats.directUnavailable !== undefined)
        logger.warn({ reason: disk.stats.directUnavailable }, 'direct writes unavailable; writing through the page cache');
      recordDiskWrites(context.metrics, disk.stats);
      // The scrubber forgets what it knew of a handle that is created again (a replica once reported bad
      // and copied back at the same version must be scrubbed again).
      const created = { forget: (_handle: number): void => undefined };
      const observed = new ObservedStore(context.store, context.events, {
        metrics: context.metrics,
        clock,
        onCreated: (handle) => created.forget(handle),
      });
      const network = new TcpDataNetwork(options.dataPlaneLimits);
      const localReads = options.localReads === false ? undefined : await writeLocalReadToken(context.dataDir);
      const server = await PlaneServer.start({
        id: context.chunkserverId,
        store: observed,
        network,
        address: `${context.listen.host}:${context.listen.port}`,
        logger: context.logger,
        registry: context.metrics.registry,
        ...(options.dataPlaneLimits !== undefined ? { limits: options.dataPlaneLimits } : {}),
        ...(options.bugs !== undefined ? { bugs: options.bugs } : {}),
        ...(localReads !== undefined ? { localReads } : {}),
        stall,
        pipelineIdle,
      });
      // The unwrapped store: a scrub's failure is reported by onCorrupt below, once (see the module comment).
      const scrubber = new Scrubber(context.store, clock, {
        scrubBytesPerSecond: options.scrubBytesPerSecond ?? scrubBytesPerSecondDefault,
        // The replica is deleted and the leader told, which re-replicates it from a good copy.
        // An I/O error is re-verified by the agent first (a transient one deletes nothing).
        onCorrupt: (replica, error) => {
          if (error.code === 'IO_ERROR' && context.events.noteDiskError !== undefined) context.events.noteDiskError('verify', replica.handle, error);
          else void context.events.reportCorrupt(replica.handle);
        },
        logger: context.logger,
      });
      created.forget = (handle) => scrubber.forget(handle);
      scrubber.start();
      // The unwrapped store too: the agent judges a failed copy's read error (agent.ts `copy`), and counts the
      // copy's outcome in rfs_chunkserver_rereplications_total; only its bytes are counted here.
      // The signal aborts it when the agent stops: the agent waits for its copies, and a target that stopped
      // answering would otherwise hold up the chunkserver's stop until the stall watch gave up on it.
      // The configured limits: the target refuses packets past its packetBytesMax (FRAME_TOO_LARGE), and the
      // writer sizes its packets from them (as the simulator's copies and the client's writes do).
      const copyOptions = { stall, ...(options.dataPlaneLimits !== undefined ? { limits: options.dataPlaneLimits } : {}) };
      const copy: CopyReplica = async ({ handle, version, targetId, targetAddress, signal }) => {
        const sealed = await copyReplica(context.store, network, handle, version, { id: targetId, address: targetAddress }, { ...copyOptions, signal });
        recordReReplicationBytes(context.metrics, sealed.lengthBytes);
      };
      const port = Number(server.address.slice(server.address.lastIndexOf(':') + 1));
      return {
        port,
        copyReplica: copy,
        async close() {
          await scrubber.stop();
          await server.close();
        },
      };
    },
  };
}

/** What an ObservedStore reports to besides the agent. */
export interface ObservedStoreOptions {
  /** Bytes and latencies of appends and reads (none in the simulator). */
  readonly metrics?: ChunkserverMetrics;
  readonly clock?: Clock;
  /** A replica was created: e.g. the scrubber's history of the handle no longer applies. */
  readonly onCreated?: (handle: number) => void;
  /** A read found a checksum mismatch (before the agent is told). */
  readonly onCorruptRead?: (handle: number) => void;
}

/**
 * A ChunkStore that reports what happens to replicas: changes and removals to the agent (incremental
 * reports), a checksum mismatch or an I/O error found by a read to the agent (which reports the replica bad
 * to the leader; an I/O error is re-verified first), and bytes and latencies to the metrics. Everything else
 * passes through unchanged; `verify` is not observed (the agent's own re-verify is its only caller, and it
 * judges the outcome itself). The data server's store, in the production chunkserver and in the simulator;
 * the scrubber and outgoing copies read the store it wraps (their callers report their failures).
 */
export class ObservedStore implements ChunkStore {
  private readonly clock: Clock;

  constructor(
    private readonly inner: ChunkStore,
    private readonly events: ReplicaEvents,
    private readonly options: ObservedStoreOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /** Tells the agent of a DISK_FULL or IO_ERROR (it logs, counts and judges them), then rethrows. */
  private async observed<T>(op: StoreOperation, handle: number, run: Promise<T>): Promise<T> {
    try {
      return await run;
    } catch (error) {
      this.events.noteDiskError?.(op, handle, error);
      throw error;
    }
  }

  async create(handle: number, version: number, options?: CreateOptions): Promise<void> {
    await this.observed('create', handle, this.inner.create(handle, version, options));
    this.options.onCreated?.(handle);
    this.events.noteReplicaChanged(handle);
  }

  async append(handle: number, version: number, offset: number, data: Uint8Array, blockCrcs?: readonly number[]): Promise<void> {
    const { metrics } = this.options;
    const start = metrics === undefined ? 0 : this.clock.nowMs();
    await this.observed('append', handle, this.inner.append(handle, version, offset, data, blockCrcs));
    if (metrics !== undefined) recordWrite(metrics, data.length, (this.clock.nowMs() - start) / 1000);
  }

  async appendPieces(handle: number, version: number, offset: number, pieces: readonly AppendPiece[]): Promise<void> {
    const { metrics } = this.options;
    const start = metrics === undefined ? 0 : this.clock.nowMs();
    await this.observed('append', handle, appendAll(this.inner, handle, version, offset, pieces));
    if (metrics !== undefined) recordWrite(metrics, pieces.reduce((sum, piece) => sum + piece.data.length, 0), (this.clock.nowMs() - start) / 1000);
  }

  sync(handle: number): Promise<void> {
    return this.observed('sync', handle, this.inner.sync(handle));
  }

  async bumpVersion(handle: number, fromVersion: number, toVersion: number, lengthBytes: number): Promise<void> {
    await this.observed('bumpVersion', handle, this.inner.bumpVersion(handle, fromVersion, toVersion, lengthBytes));
    this.events.noteReplicaChanged(handle);
  }

  async seal(handle: number, version: number, lengthBytes: number): Promise<ReplicaInfo> {
    const info = await this.observed('seal', handle, this.inner.seal(handle, version, lengthBytes));
    this.events.noteReplicaChanged(handle);
    return info;
  }

  async read(handle: number, version: number, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const { metrics } = this.options;
    const start = metrics === undefined ? 0 : this.clock.nowMs();
    try {
      const bytes = await this.inner.read(handle, version, offset, length, into);
      if (metrics !== undefined) recordRead(metrics, bytes.length, (this.clock.nowMs() - start) / 1000);
      return bytes;
    } catch (error) {
      if (error instanceof ChunkStoreError && error.code === 'CHECKSUM_MISMATCH') {
        this.options.onCorruptRead?.(handle);
        void this.events.reportCorrupt(handle); // never rejects; counts the failure in the metrics
      }
      // An I/O error: re-verified by the agent, and reported bad if it persists.
      this.events.noteDiskError?.('read', handle, error);
      throw error;
    }
  }

  localPaths(handle: number, version: number): Promise<LocalReplicaPaths> {
    if (this.inner.localPaths === undefined) return Promise.reject(new ChunkStoreError('NOT_LOCAL', 'this store keeps no files a client could read'));
    return this.inner.localPaths(handle, version);
  }

  verify(handle: number): Promise<void> {
    // Not observed: whoever verifies judges the outcome (the agent's re-verify after an I/O error on read).
    return this.inner.verify(handle);
  }

  async delete(handle: number, versionAtMost: number): Promise<boolean> {
    const removed = await this.observed('delete', handle, this.inner.delete(handle, versionAtMost));
    if (removed) this.events.noteReplicaRemoved(handle);
    return removed;
  }

  info(handle: number): ReplicaInfo | undefined {
    return this.inner.info(handle);
  }

  list(): readonly ReplicaInfo[] {
    return this.inner.list();
  }

  usage(): Promise<StoreUsage> {
    return this.inner.usage();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
