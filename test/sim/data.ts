/**
 * The data workload (`--workload data`): the real data path under faults, around the metadata servers of
 * the metadata workload (state machines over Raft, the leader's real ChunkService; see data-metadata.ts).
 *
 * - Chunkservers (3–5, in 2–3 racks) run the real code: FileChunkStore on a SimDisk, a DataServer on one
 *   MemoryDataNetwork whose deliveries are World events (with per-seed latency), a MetadataAgent whose
 *   link goes through the simulated request path and whose timers are World timers, and the Scrubber on the
 *   World clock. A crash loses unsynced writes (some torn), breaks every connection of the server, and the
 *   server comes back later (the store reopened, the agent re-registering with its saved id); sometimes on
 *   an empty disk (a new id). Bits flip in sealed chunks' data files; the scrubber or a read must find them.
 * - Writers run FileWriter (files of 0..~1 MiB whose bytes are a function of (seed, path), see
 *   data-content.ts, in chunks of a few 64 KiB blocks) over adapters onto the leader and the network;
 *   readers run FileReader during the run, sometimes with locations cached from before a version bump.
 * - Faults: at most replication−1 chunkservers down or holding an unrepaired flipped bit at once, and a bit
 *   flips or a disk is wiped only when another good copy of every replica it destroys exists (the no-loss
 *   premise); connections on the data network break at random; the metadata nodes' own faults (crashes,
 *   pauses, partitions) run as in the other workloads.
 * - Disk and network faults drawn per seed from a stream of their own (`DataFaultProfile`; a seed with none
 *   of them keeps the trace it had before they existed): a disk filling up for a while (writes fail
 *   DISK_FULL, the agent reports no room); a bad spot under a sealed replica with another good copy (reads
 *   fail EIO until the scrubber or a read gets it reported bad and deleted; counted as impaired like a flip);
 *   windows of transient EIO on reads, writes and fsyncs of one server; data-network partitions between a
 *   chunkserver and some other endpoints (connections cut, dials refused) healed after a while. All heal by
 *   the heal phase.
 * - Packet corruption in flight (`DataFaultProfile.packetCorruption`, its probability per packet drawn per
 *   seed; its own stream, and only seeds with it get the wire, so the others keep their traces): during the
 *   fault phase a write-pipeline packet (the writer's to the first hop, a hop's to the next, a copy's to its
 *   target) may arrive with one bit of its payload flipped, in a copy (the sender's buffer stays intact: the
 *   writer resends from it). The hop that receives it stores it and forwards it as it came, so it and every
 *   hop after it hold bad bytes under the writer's CRCs until the chain's end finds the mismatch and fails
 *   the pipeline; the bytes were never acknowledged, and the writer's resume cuts the survivors back to the
 *   acknowledged length before resending. So it does not count as impairing a server (no acknowledged byte
 *   and no sealed replica is hit); counted in `packetsCorrupted`.
 *
 * Checks (each a named violation; see checkers.ts):
 * - data-pipeline-ack: when the writer receives an ack, every replica of the chain (still in the
 *   incarnation that took the pipeline) holds the acknowledged bytes;
 * - data-stale-replica: a replica that serves a read holds the chunk at the version asked for;
 * - data-read-correct: every read during the run returns exactly the expected bytes of its range (a prefix
 *   of it while the file is being written) or an error, never other bytes;
 * - after healing, polled until they hold or a deadline passes: chunk-replication (every sealed chunk of a
 *   live file with a good copy is listed on min(replication, servers up) servers holding it at its version,
 *   sealed, at its length), chunk-stale-replica (no server up keeps a sealed chunk at an older version) and
 *   data-corruption-repaired (every listed replica verifies);
 * - then data-durability: every file whose close() resolved reads back exactly its bytes, through the
 *   reader and from every listed replica of each of its chunks.
 */
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { DataPlane, OpenPipeline, PipelineFailure, ChunkPipeline, WriterTimers } from '../../src/client/data-path.ts';
import { FileReader } from '../../src/client/file-reader.ts';
import { FileWriter } from '../../src/client/file-writer.ts';
import { MetadataAgent } from '../../src/chunkserver/agent.ts';
import type { AgentLimits, CopyReplica } from '../../src/chunkserver/agent.ts';
import type { DataBug } from '../../src/chunkserver/bugs.ts';
import type { ConnectionHandlers, DataConnection, DataNetwork, Listener } from '../../src/chunkserver/dataplane/connection.ts';
import { DataPlaneError, DataServer, MemoryDataNetwork, PipelineFailedError, PipelineWriter, copyReplica, readRange } from '../../src/chunkserver/dataplane/index.ts';
import type { DataPlaneLimits } from '../../src/chunkserver/dataplane/index.ts';
import type { Message, PacketMessage, SetupMessage } from '../../src/chunkserver/dataplane/protocol.ts';
import { ObservedStore } from '../../src/chunkserver/components.ts';
import { Scrubber } from '../../src/chunkserver/scrubber.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { ChunkStoreError, checksumBlockBytes } from '../../src/chunkserver/types.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import { loadClusterView } from '../../src/placement/view.ts';
import type { Clock, TimerHandle } from '../../src/raft/node-api.ts';
import type { InvariantChecker, ViolationKind } from './checkers.ts';
import { describeError, type Cluster } from './cluster.ts';
import { compressionOfPath, expectedContent, firstDifference } from './data-content.ts';
import { filesAwaitingRecovery } from './chunks.ts';
import { DataMetadata, SimMetadataLink, SimReaderMetadata, SimWriterMetadata, type MetadataClientState } from './data-metadata.ts';
import { SimDisk } from './disk.ts';
import type { Prng } from './prng.ts';
import type { Scenario } from './scenario.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const DATA_DIR = '/data';
/** Chunk sizes drawn per seed: a few checksum blocks each (the smallest the metadata service accepts is one). */
const CHUNK_SIZE_CHOICES: readonly number[] = [2 * checksumBlockBytes, 3 * checksumBlockBytes, 4 * checksumBlockBytes];
const CHUNK_SIZE_MAX_BYTES = 4 * checksumBlockBytes;
/** The largest file a writer writes. */
const FILE_BYTES_MAX = MiB + 3 * KiB;
/** The data plane in the simulator: one checksum block per packet, a small window. */
const PACKET_BYTES = 64 * KiB;
const dataPlaneLimits: Partial<DataPlaneLimits> = { packetBytesMax: PACKET_BYTES, inflightPacketsMax: 4, sendQueueBytesHigh: 4 * PACKET_BYTES };
/** The agent on the simulator's faster clock (the leader's heartbeat timeout is 1 s there). */
const agentLimits: Partial<AgentLimits> = {
  heartbeatIntervalMs: 100,
  fullReportIntervalMs: 1_000,
  reportDelayMs: 20,
  retryDelayMsMin: 20,
  retryDelayMsMax: 100,
  replicationsInflightMax: 2,
  diskReserveBytes: CHUNK_SIZE_MAX_BYTES,
  diskErrorWindowMs: 1_000,
  diskErrorsUnhealthyMin: 5,
  readErrorVerifies: 3,
  // Longer than an injected spell of I/O errors together (at most 1.2 s): a replica that is fine survives one.
  readErrorVerifyIntervalMs: 1_000,
  // A bad replica is reported again this often (the leader's memory of it does not survive a new leader).
  badReplicaReportIntervalMs: 1_000,
  // A few replicas per message: full reports go over several messages, as a real server's do (2,000 a message).
  reportChunksMax: 2,
};
const SCRUB_BYTES_PER_SECOND = 4 * MiB;
const SCRUB_RESCAN_INTERVAL_MS = 500;
const WRITER_THINK_MAX_MS = 150;
const READER_THINK_MAX_MS = 60;
/** Of the reads during the run, the share that read through one ReadSession (several reads in a row). */
const SESSION_READ_PROBABILITY = 0.3;
const LEASE_DURATION_MS = 6_000;
/**
 * Of the files written, the share whose writer vanishes (its process dies: no more calls, its connections
 * cut, its lease never renewed nor released) at a random moment within WRITER_VANISH_WITHIN_MS of the start:
 * the leader's lease recovery must complete the file with a prefix of its bytes. Drawn from a stream of its
 * own, so only the seeds where it happens change their traces.
 */
const WRITER_VANISH_PROBABILITY = 0.08;
const WRITER_VANISH_WITHIN_MS = 300;
/** A vanished writer's connections close this long after its process stopped (what it sent still lands). */
const VANISHED_CONNECTIONS_CLOSE_MS = 20;
/**
 * When a packet a writer sent is corrupted in flight, the chance that its process dies right then (before it
 * could resend): replicas are left holding bad bytes past the acknowledged length, which lease recovery
 * must not seal in. Drawn from a stream of its own.
 */
const WRITER_VANISH_ON_CORRUPTION_PROBABILITY = 0.5;
/** A file not closed within this much virtual time is abandoned (its writer aborted). */
const FILE_DEADLINE_MS = 8_000;
/** After the Raft liveness probe, the data checks must hold within this much virtual time. */
export const DATA_CONVERGENCE_DEADLINE_MS = 20_000;
const CONVERGENCE_POLL_INTERVAL_MS = 200;
/** Data faults arrive this often on average during the fault phase. */
const DATA_FAULT_MEAN_MIN_MS = 120;
const DATA_FAULT_MEAN_MAX_MS = 500;

const silentLogger: Logger = pino({ enabled: false });

export interface DataStats {
  filesStarted: number;
  filesAcked: number;
  filesFailed: number;
  /** Writers that vanished in the middle of a file (lease recovery's work). */
  writersVanished: number;
  bytesAcked: number;
  pipelineRecoveries: number;
  readsDuringRun: number;
  readsOk: number;
  /** Read sessions (several reads through one ReadSession). */
  sessionReads: number;
  staleCacheReads: number;
  replicaReadFailures: number;
  chunkserverCrashes: number;
  disksWiped: number;
  bitFlips: number;
  corruptionsFound: number;
  connectionsBroken: number;
  copiesDone: number;
  disksFilled: number;
  badSpots: number;
  ioErrorWindows: number;
  partitions: number;
  /** I/O errors the simulated disks injected (bad spots and transient windows). */
  diskIoErrors: number;
  /** Write-pipeline packets whose payload the data network corrupted in flight (one bit flipped in a copy). */
  packetsCorrupted: number;
  /** Writers' pipelines that the chain's end failed with CHECKSUM_MISMATCH (each after a corrupted packet). */
  pipelineChecksumFailures: number;
  finalFilesRead: number;
  /** Files whose writer gave up, read back after healing (complete: released or recovered by the leader). */
  givenUpFilesRead: number;
  finalReplicaReads: number;
  convergedMs: number | null;
}

/** Per-seed knobs of the data workload, from the scenario's own stream. */
export interface DataProfile {
  readonly servers: number;
  readonly racks: number;
  readonly replication: number;
  readonly chunkSizeBytes: number;
  readonly writers: number;
  readonly readers: number;
  readonly netDelayMinMs: number;
  readonly netDelayMaxMs: number;
  readonly netSlowProbability: number;
  readonly netSlowMaxMs: number;
  readonly faultMeanMs: number;
  readonly crashes: boolean;
  readonly wipes: boolean;
  readonly bitFlips: boolean;
  readonly connectionBreaks: boolean;
  readonly staleCacheProbability: number;
}

/** Disk and network faults of a data seed, from their own stream (so seeds without them keep their traces). */
export interface DataFaultProfile {
  readonly diskFull: boolean;
  readonly badSpots: boolean;
  readonly ioErrors: boolean;
  readonly partitions: boolean;
  /** Per operation chance of EIO during a transient window (small: a read error is re-verified 3 times). */
  readonly ioErrorProbability: number;
  /** Write-pipeline packets corrupted in flight (to any hop, writer's or copy's) during the fault phase. */
  readonly packetCorruption: boolean;
  /** With packetCorruption: each packet's chance of arriving with one bit flipped. */
  readonly packetCorruptionProbability: number;
}

export function makeDataFaultProfile(random: Prng): DataFaultProfile {
  return {
    diskFull: random.chance(0.35),
    badSpots: random.chance(0.35),
    ioErrors: random.chance(0.35),
    partitions: random.chance(0.35),
    ioErrorProbability: random.floatBetween(0.001, 0.005),
    // Drawn last: the draws above (and so every older seed's profile) stay as they were.
    packetCorruption: random.chance(PACKET_CORRUPTION_SEED_SHARE),
    packetCorruptionProbability: random.floatBetween(PACKET_CORRUPTION_PROBABILITY_MIN, PACKET_CORRUPTION_PROBABILITY_MAX),
  };
}

/** Of the seeds, the share whose data network corrupts pipeline packets in flight. */
const PACKET_CORRUPTION_SEED_SHARE = 0.35;
/**
 * Per packet chance of a corruption in flight, drawn per seed: a few hundred to a couple of thousand packets
 * cross hops in a seed's fault phase, so a few to a few dozen of them arrive corrupted.
 */
const PACKET_CORRUPTION_PROBABILITY_MIN = 0.002;
const PACKET_CORRUPTION_PROBABILITY_MAX = 0.02;

/** Of the data faults, the share that are the new kinds when a seed has some. */
const NEW_FAULT_SHARE = 0.4;

export function makeDataProfile(random: Prng): DataProfile {
  const servers = random.intBetween(3, 5);
  return {
    servers,
    racks: random.intBetween(2, 3),
    replication: random.pick([2, 3, 3]),
    chunkSizeBytes: random.pick(CHUNK_SIZE_CHOICES),
    writers: random.intBetween(1, 3),
    readers: random.intBetween(1, 2),
    netDelayMinMs: random.floatBetween(0.02, 0.3),
    netDelayMaxMs: random.floatBetween(0.3, 2),
    netSlowProbability: random.pick([0, 0.01, 0.05]),
    netSlowMaxMs: random.floatBetween(5, 50),
    faultMeanMs: random.floatBetween(DATA_FAULT_MEAN_MIN_MS, DATA_FAULT_MEAN_MAX_MS),
    crashes: random.chance(0.8),
    wipes: random.chance(0.5),
    bitFlips: random.chance(0.7),
    connectionBreaks: random.chance(0.6),
    staleCacheProbability: random.pick([0.2, 0.5]),
  };
}

/**
 * The scenario of a data seed: the metadata cluster of 3 nodes, short phases, no membership changes or log
 * corruption (the data path is under test; the metadata workload covers those), no metadata clients.
 */
export function dataScenario(base: Scenario): Scenario {
  return {
    ...base,
    clusterSize: 3,
    faultPhaseMs: 1_000 + (base.faultPhaseMs % 1_000),
    faults: { ...base.faults, membership: false, corruption: false },
    workload: { ...base.workload, clients: 0 },
  };
}

// ------------------------------------------------------------------------------------------------ network

/**
 * The wire of one dialed connection, from `from` (a dialer's name) to `to` (a listen address), after
 * `setup` (the pipeline's setup sent on it, null before and on read connections): given a packet about to
 * travel, the packet the receiver gets. The same message, or a corrupted copy; never the sender's payload
 * changed (a writer keeps its buffers to resend them, a hop forwards the one it received).
 */
type PacketWire = (packet: PacketMessage, link: { readonly from: string; readonly to: string; readonly setup: SetupMessage | null }) => PacketMessage;

/**
 * A dialed connection whose outgoing packets cross `wire` (write-pipeline packets only flow from the dialing
 * end: writer → first hop, hop → next hop, copy source → target). Everything else is the connection's own.
 */
class WiredConnection implements DataConnection {
  private setup: SetupMessage | null = null;

  constructor(
    private readonly inner: DataConnection,
    private readonly from: string,
    private readonly to: string,
    private readonly wire: PacketWire,
  ) {}

  get remoteAddress(): string {
    return this.inner.remoteAddress;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  start(handlers: ConnectionHandlers): void {
    this.inner.start(handlers);
  }

  send(message: Message, onSent?: () => void): boolean {
    if (message.type === 'setup') this.setup = message;
    const sent = message.type === 'packet' ? this.wire(message, { from: this.from, to: this.to, setup: this.setup }) : message;
    return this.inner.send(sent, onSent);
  }

  writable(): Promise<void> {
    return this.inner.writable();
  }

  pause(): void {
    this.inner.pause();
  }

  resume(): void {
    this.inner.resume();
  }

  end(): void {
    this.inner.end();
  }

  destroy(error?: DataPlaneError): void {
    this.inner.destroy(error);
  }
}

/**
 * One endpoint's dialer onto the shared network: it remembers the connections it opened, so a crash (or a
 * network fault) can break them. With a `wire`, the packets it sends cross it (packet corruption in flight).
 */
class TrackedDialer {
  readonly open = new Set<DataConnection>();
  /** The endpoint's process is gone (a vanished writer): dials fail. */
  dead = false;

  constructor(
    private readonly network: MemoryDataNetwork,
    /** The endpoint's name on the network (partitions cut by it). */
    readonly name: string,
    private readonly wire: PacketWire | null = null,
  ) {}

  async dial(address: string): Promise<DataConnection> {
    if (this.dead) throw new DataPlaneError('CONNECTION_LOST', 'this client process is gone');
    const dialed = await this.network.dial(address, this.name);
    const connection = this.wire === null ? dialed : new WiredConnection(dialed, this.name, address, this.wire);
    this.open.add(connection);
    return connection;
  }

  /** Drops closed connections from the set (they are only ever closed, never reopened). */
  prune(): void {
    for (const c of this.open) if (c.closed) this.open.delete(c);
  }

  breakAll(): number {
    let n = 0;
    for (const c of this.open) {
      if (!c.closed) {
        c.destroy(new DataPlaneError('CONNECTION_LOST', 'the endpoint crashed'));
        n++;
      }
    }
    this.open.clear();
    return n;
  }
}

/** A chunkserver's network: listens on the shared network, dials through its tracked dialer. */
class NodeNetwork implements DataNetwork {
  constructor(
    private readonly network: MemoryDataNetwork,
    readonly dialer: TrackedDialer,
  ) {}

  listen(address: string, onConnection: (connection: DataConnection) => void): Promise<Listener> {
    return this.network.listen(address, onConnection);
  }

  dial(address: string): Promise<DataConnection> {
    return this.dialer.dial(address);
  }
}

// ------------------------------------------------------------------------------------------------ chunkservers

class SimChunkserver {
  incarnation = 0;
  up = false;
  /** Started and serving (store open, data server listening). */
  serving = false;
  disk: SimDisk;
  /** The id file on this disk (lost with the disk). */
  savedId: number | undefined = undefined;
  store: FileChunkStore | null = null;
  agent: MetadataAgent | null = null;
  server: DataServer | null = null;
  scrubber: Scrubber | null = null;
  dialer: TrackedDialer;
  readonly client: MetadataClientState;
  /** Flipped bits not yet repaired: (handle, version) of the replica hit. */
  readonly flips: { handle: number; version: number }[] = [];
  /** Bad spots (reads fail EIO) under replicas not yet reported bad: (handle, version). */
  readonly badSpots: { handle: number; version: number }[] = [];
  /** Planned restarts are stamped with the incarnation they end. */
  downSinceMs = 0;

  constructor(
    readonly slot: number,
    readonly rack: string,
    diskRandom: Prng,
    network: MemoryDataNetwork,
    random: Prng,
    wire: PacketWire | null,
  ) {
    this.disk = new SimDisk(diskRandom, { tornWriteProbability: 0.5 });
    this.dialer = new TrackedDialer(network, this.address, wire);
    this.client = { target: 1, random };
  }

  get address(): string {
    return `cs${this.slot}:7000`;
  }

  get id(): number | undefined {
    return this.savedId;
  }

  /** Unrepaired flips and bad spots whose replica is still held at the version hit. */
  unrepairedFlips(): number {
    const store = this.store;
    if (store === null) return this.flips.length + this.badSpots.length;
    for (const list of [this.flips, this.badSpots]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const f = list[i]!;
        if (store.info(f.handle)?.version !== f.version) list.splice(i, 1);
      }
    }
    return this.flips.length + this.badSpots.length;
  }

  /** Whether this server's replica of (handle, version) is known bad (a flipped bit or a bad spot). */
  knownBad(handle: number, version: number): boolean {
    return [...this.flips, ...this.badSpots].some((f) => f.handle === handle && f.version === version);
  }
}

// ------------------------------------------------------------------------------------------------ the world

export interface DataWorldDeps {
  readonly world: World;
  readonly cluster: Cluster;
  readonly checker: InvariantChecker;
  readonly random: Prng;
  readonly seed: number;
  readonly dataBugs: ReadonlySet<DataBug>;
  readonly placementBugs: ReadonlySet<PlacementBug>;
  /** Whether the fault phase runs (writers start files, readers read, faults strike). */
  readonly active: () => boolean;
  readonly timeline: (line: string) => void;
}

/** Whether a writer's process still runs (see WRITER_VANISH_PROBABILITY). */
interface WriterLife {
  dead: boolean;
  /** Settles the file being written as given up. */
  onDeath?: () => void;
  /** The file's write settled (acknowledged or given up) while the process lived. */
  settled?: boolean;
}

interface FileRecord {
  readonly path: string;
  readonly sizeBytes: number;
  /** null while being written; then whether close() resolved. */
  acked: boolean | null;
  ackedAtMs: number | null;
}

export class DataWorld {
  readonly stats: DataStats = {
    filesStarted: 0,
    filesAcked: 0,
    filesFailed: 0,
    writersVanished: 0,
    bytesAcked: 0,
    pipelineRecoveries: 0,
    readsDuringRun: 0,
    readsOk: 0,
    sessionReads: 0,
    staleCacheReads: 0,
    replicaReadFailures: 0,
    chunkserverCrashes: 0,
    disksWiped: 0,
    bitFlips: 0,
    corruptionsFound: 0,
    connectionsBroken: 0,
    copiesDone: 0,
    disksFilled: 0,
    badSpots: 0,
    ioErrorWindows: 0,
    partitions: 0,
    diskIoErrors: 0,
    packetsCorrupted: 0,
    pipelineChecksumFailures: 0,
    finalFilesRead: 0,
    givenUpFilesRead: 0,
    finalReplicaReads: 0,
    convergedMs: null,
  };
  readonly profile: DataProfile;
  readonly faultProfile: DataFaultProfile;
  /** The new faults' own stream: drawn from only when the seed has some of them. */
  private readonly newFaultRandom: Prng;
  /** Packet corruption's own stream: which packets, which bit. */
  private readonly corruptionRandom: Prng;
  private readonly vanishOnCorruptionRandom: Prng;
  private readonly wire: PacketWire | null;
  private readonly meta: DataMetadata;
  private readonly network: MemoryDataNetwork;
  private readonly netRandom: Prng;
  private readonly faultRandom: Prng;
  private readonly servers: SimChunkserver[] = [];
  private readonly files: FileRecord[] = [];
  /** handle → every chunkserver id that was in one of its pipelines (a reader's stale cache). */
  private readonly chains = new Map<number, Set<number>>();
  /** handle → its pipelines in order (version, chain), for reads through stale locations. */
  private readonly pipelines = new Map<number, { version: number; ids: number[] }[]>();
  /** handle → its file, and its place among the chunks its writer got (see writerMetadata). */
  private readonly chunkFiles = new Map<number, { file: FileRecord; nth: number }>();
  private readonly clientDialers: TrackedDialer[] = [];
  private filesInFlight = 0;
  /** Pipeline failures already counted (the writer may be handed the same one more than once). */
  private readonly failuresSeen = new WeakSet<PipelineFailedError>();
  private convergence: { startMs: number; done: (problem: string | null) => void } | null = null;
  private finished = false;

  constructor(private readonly deps: DataWorldDeps) {
    this.profile = makeDataProfile(deps.random.split('profile'));
    this.netRandom = deps.random.split('data-network');
    this.faultRandom = deps.random.split('data-faults');
    this.faultProfile = makeDataFaultProfile(deps.random.split('data-fault-profile'));
    this.newFaultRandom = deps.random.split('data-faults-new');
    this.corruptionRandom = deps.random.split('data-packet-corruption');
    this.vanishOnCorruptionRandom = deps.random.split('data-writer-vanish-on-corruption');
    // Only seeds with the fault get a wire: the others' connections (and traces) stay as they were.
    this.wire = this.faultProfile.packetCorruption ? (packet, link) => this.corruptInFlight(packet, link) : null;
    this.network = new MemoryDataNetwork({ scheduler: (task) => this.deliver(task), limits: dataPlaneLimits });
    this.meta = new DataMetadata({ world: deps.world, cluster: deps.cluster, checker: deps.checker, random: deps.random.split('metadata'), placementBugs: deps.placementBugs });
    for (let slot = 1; slot <= this.profile.servers; slot++) {
      const rack = `rack${slot % Math.min(this.profile.racks, this.profile.servers)}`;
      this.servers.push(new SimChunkserver(slot, rack, deps.random.split(`disk/${slot}`), this.network, deps.random.split(`cs/${slot}`), this.wire));
    }
  }

  describe(): string {
    const p = this.profile;
    const faults = (['crashes', 'wipes', 'bitFlips', 'connectionBreaks'] as const).filter((k) => p[k]);
    return (
      `data: ${p.servers} chunkservers in ${p.racks} racks, replication ${p.replication}, chunk ${p.chunkSizeBytes / KiB} KiB, ` +
      `${p.writers} writers, ${p.readers} readers, net ${p.netDelayMinMs.toFixed(2)}..${p.netDelayMaxMs.toFixed(2)}ms slow=${p.netSlowProbability}, ` +
      `faults [${faults.join(',')}] every~${p.faultMeanMs.toFixed(0)}ms${this.newFaultKinds().length > 0 ? ` + [${this.newFaultKinds().join(',')}]` : ''}` +
      `${this.faultProfile.packetCorruption ? ` + packets corrupted in flight p=${this.faultProfile.packetCorruptionProbability.toFixed(4)}` : ''}${this.deps.dataBugs.size > 0 ? ` (data bugs ${[...this.deps.dataBugs].join(',')})` : ''}`
    );
  }

  private schedule(delayMs: number, what: string, run: () => void): void {
    this.deps.world.schedule(delayMs, { kind: 'control', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => what, run });
  }

  private sleep(delayMs: number, what: string): Promise<void> {
    return new Promise((resolve) => this.schedule(delayMs, what, resolve));
  }

  /** One data-network delivery, after the network's latency. */
  private deliver(task: () => void): void {
    const p = this.profile;
    const r = this.netRandom;
    const delayMs = r.chance(p.netSlowProbability) ? r.floatBetween(p.netDelayMaxMs, p.netSlowMaxMs) : r.floatBetween(p.netDelayMinMs, p.netDelayMaxMs);
    this.deps.world.schedule(delayMs, { kind: 'deliver', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => 'data network delivery', run: task });
  }

  private fail(kind: ViolationKind, message: string): void {
    this.deps.checker.fail(kind, message);
  }

  start(): void {
    this.meta.start();
    for (const cs of this.servers) void this.startServer(cs);
    for (let w = 1; w <= this.profile.writers; w++) {
      const random = this.deps.random.split(`writer/${w}`);
      this.schedule(random.floatBetween(300, 500), `writer ${w} starts`, () => this.writerLoop(w, random));
    }
    for (let r = 1; r <= this.profile.readers; r++) {
      const random = this.deps.random.split(`reader/${r}`);
      this.schedule(random.floatBetween(400, 600), `reader ${r} starts`, () => this.readerLoop(r, random));
    }
    this.schedule(this.faultRandom.exponential(this.profile.faultMeanMs) + 200, 'data fault', () => this.injectFault());
  }

  // ---------------------------------------------------------------------------------------------- chunkservers

  private clockFor(cs: SimChunkserver, incarnation: number): Clock {
    const world = this.deps.world;
    return {
      nowMs: () => world.nowMs,
      setTimer: (delayMs: number, fn: () => void): TimerHandle => {
        const handle = { cancelled: false };
        world.schedule(Math.max(0, delayMs), {
          kind: 'timer',
          nodeId: NO_NODE,
          epoch: ANY_EPOCH,
          describe: () => `cs${cs.slot} timer`,
          run: () => {
            if (!handle.cancelled && cs.incarnation === incarnation) fn();
          },
        });
        return handle;
      },
      clearTimer: (handle: TimerHandle) => {
        (handle as { cancelled: boolean }).cancelled = true;
      },
    };
  }

  private async startServer(cs: SimChunkserver): Promise<void> {
    const incarnation = ++cs.incarnation;
    cs.up = true;
    const current = (): boolean => cs.incarnation === incarnation && cs.up;
    let store: FileChunkStore;
    try {
      store = await FileChunkStore.open(cs.disk, DATA_DIR, { chunkSizeBytes: CHUNK_SIZE_MAX_BYTES, bugs: this.deps.dataBugs });
    } catch (error) {
      this.fail('node-crash', `cs${cs.slot}'s replica store failed to open: ${describeError(error)}`);
      return;
    }
    if (!current()) return;
    cs.store = store;
    const clock = this.clockFor(cs, incarnation);
    const dialer = cs.dialer;
    const copy: CopyReplica = async (order) => {
      // With the agent's abort signal, as the real chunkserver's copies (components.ts).
      await copyReplica(store, dialer, order.handle, order.version, { id: order.targetId, address: order.targetAddress }, { packetBytes: PACKET_BYTES, limits: dataPlaneLimits, signal: order.signal });
      if (current()) this.stats.copiesDone++;
    };
    const agent = new MetadataAgent({
      address: cs.address,
      rack: cs.rack,
      store,
      link: new SimMetadataLink(this.meta, cs.client, current),
      idStore: {
        load: () => Promise.resolve(cs.savedId),
        save: (id) => {
          if (current()) cs.savedId = id;
          return Promise.resolve();
        },
      },
      clock,
      copyReplica: copy,
      logger: silentLogger,
      random: cs.client.random,
      limits: agentLimits,
      // Only with disk-full faults: the heartbeat's numbers (and so placement) stay as before otherwise.
      ...(this.faultProfile.diskFull ? { freeBytes: () => store.freeBytes() } : {}),
      onFatal: (error) => {
        if (current()) this.fail('node-crash', `cs${cs.slot}'s agent stopped for good: ${error.message}`);
      },
    });
    cs.agent = agent;
    const scrubber = new Scrubber(store, clock, {
      scrubBytesPerSecond: SCRUB_BYTES_PER_SECOND,
      sliceBytes: checksumBlockBytes,
      rescanIntervalMs: SCRUB_RESCAN_INTERVAL_MS,
      idleMsMax: SCRUB_RESCAN_INTERVAL_MS,
      onCorrupt: (replica, error) => {
        if (!current()) return;
        // An I/O error is re-verified by the agent (reported bad only if it persists), as in production.
        if (error.code === 'IO_ERROR') return agent.noteDiskError('verify', replica.handle, error);
        this.stats.corruptionsFound++;
        void agent.reportCorrupt(replica.handle);
      },
    });
    cs.scrubber = scrubber;
    try {
      await agent.start();
      const id = cs.savedId ?? (await agent.whenRegistered());
      if (!current()) return;
      const server = await DataServer.start({
        id,
        store: new ObservedStore(store, agent, {
          onCorruptRead: () => this.stats.corruptionsFound++,
          onCreated: (handle) => scrubber.forget(handle),
        }),
        network: new NodeNetwork(this.network, dialer),
        address: cs.address,
        limits: dataPlaneLimits,
        bugs: this.deps.dataBugs,
      });
      if (!current()) {
        await server.close();
        return;
      }
      cs.server = server;
      cs.serving = true;
      scrubber.start();
      this.deps.timeline(`chunkserver cs${cs.slot} serving as id ${id} (incarnation ${incarnation}, ${store.list().length} replicas)`);
    } catch (error) {
      if (current()) this.fail('node-crash', `cs${cs.slot} failed to start: ${describeError(error)}`);
    }
  }

  /** A power cut: unsynced writes lost (some torn), every connection broken, timers dead. */
  private crash(cs: SimChunkserver): void {
    cs.up = false;
    cs.serving = false;
    cs.incarnation++;
    cs.downSinceMs = this.deps.world.nowMs;
    this.stats.chunkserverCrashes++;
    const server = cs.server;
    const agent = cs.agent;
    const scrubber = cs.scrubber;
    cs.server = null;
    cs.agent = null;
    cs.scrubber = null;
    cs.store = null;
    cs.disk.crash();
    cs.disk.ioErrorProbability = 0; // a transient window ends with the incarnation
    this.stats.connectionsBroken += cs.dialer.breakAll();
    cs.dialer = new TrackedDialer(this.network, cs.address, this.wire);
    void server?.close();
    void agent?.stop();
    void scrubber?.stop();
  }

  private restart(cs: SimChunkserver, wipe: boolean): void {
    if (cs.up) return;
    if (wipe) {
      cs.disk = new SimDisk(this.faultRandom.split(`wiped-disk/${cs.slot}/${cs.incarnation}`), { tornWriteProbability: 0.5 });
      this.stats.diskIoErrors += cs.disk.ioErrorsInjected;
      cs.savedId = undefined;
      cs.flips.length = 0;
      cs.badSpots.length = 0;
      this.stats.disksWiped++;
    }
    this.deps.timeline(`chunkserver cs${cs.slot} restarts${wipe ? ' on an empty disk' : ''}`);
    void this.startServer(cs);
  }

  /** Every chunkserver down comes back with its disk. */
  heal(): void {
    this.network.healAll();
    for (const cs of this.servers) {
      this.stats.diskIoErrors += cs.disk.ioErrorsInjected;
      cs.disk.capacityBytes = Number.MAX_SAFE_INTEGER;
      cs.disk.ioErrorProbability = 0;
      // Bad spots stay: the scrubber (or a read) must get their replicas reported bad and replaced.
    }
    for (const cs of this.servers) if (!cs.up) this.restart(cs, false);
  }

  // ---------------------------------------------------------------------------------------------- faults

  /** Servers down or holding an unrepaired flipped bit: at most replication − 1 at once. */
  private impaired(): number {
    return this.servers.filter((cs) => !cs.up || cs.unrepairedFlips() > 0).length;
  }

  /** Whether some other serving, unflipped server holds `handle` sealed at `version`. */
  private hasOtherGoodCopy(except: SimChunkserver, handle: number, version: number): boolean {
    return this.servers.some((cs) => {
      if (cs === except || !cs.serving || cs.store === null) return false;
      const info = cs.store.info(handle);
      return info !== undefined && info.version === version && info.sealed && !cs.knownBad(handle, version);
    });
  }

  private injectFault(): void {
    if (!this.deps.active()) return;
    this.schedule(this.faultRandom.exponential(this.profile.faultMeanMs), 'data fault', () => this.injectFault());
    const p = this.profile;
    const newKinds = this.newFaultKinds();
    if (newKinds.length > 0 && this.newFaultRandom.chance(NEW_FAULT_SHARE)) return this.injectNewFault(this.newFaultRandom.pick(newKinds));
    const kinds: ('crash' | 'flip' | 'break')[] = [];
    if (p.crashes) kinds.push('crash');
    if (p.bitFlips) kinds.push('flip');
    if (p.connectionBreaks) kinds.push('break');
    if (kinds.length === 0) return;
    const kind = this.faultRandom.pick(kinds);
    if (kind === 'break') return this.breakConnection();
    if (this.impaired() >= p.replication - 1) return;
    const candidates = this.servers.filter((cs) => cs.serving && cs.unrepairedFlips() === 0);
    if (candidates.length === 0) return;
    const cs = this.faultRandom.pick(candidates);
    if (kind === 'flip') return this.flipBit(cs);
    const wipe = p.wipes && this.faultRandom.chance(0.25) && (cs.store?.list() ?? []).every((r) => !r.sealed || this.hasOtherGoodCopy(cs, r.handle, r.version));
    const downMs = this.faultRandom.floatBetween(30, 1_200);
    this.deps.timeline(`chunkserver cs${cs.slot} (id ${cs.id ?? '-'}) crashes${wipe ? ', losing its disk' : ''}, down ${downMs.toFixed(0)}ms`);
    this.crash(cs);
    const incarnation = cs.incarnation;
    this.schedule(downMs, `cs${cs.slot} restart`, () => {
      if (cs.incarnation === incarnation) this.restart(cs, wipe);
    });
  }

  private flipBit(cs: SimChunkserver): void {
    const store = cs.store;
    if (store === null) return;
    const sealed = store.list().filter((r) => r.sealed && r.lengthBytes > 0 && this.hasOtherGoodCopy(cs, r.handle, r.version));
    if (sealed.length === 0) return;
    const replica = this.faultRandom.pick(sealed);
    // A packed lz4 replica's bytes are in <handle>.lz4 (fewer of them than its logical length).
    const packed = `${DATA_DIR}/${replica.handle}.lz4`;
    const packedBytes = cs.disk.contents(packed)?.length;
    const path = packedBytes === undefined ? `${DATA_DIR}/${replica.handle}.data` : packed;
    const byteOffset = this.faultRandom.int(packedBytes ?? replica.lengthBytes);
    cs.disk.flipBit(path, byteOffset, this.faultRandom.int(8));
    cs.flips.push({ handle: replica.handle, version: replica.version });
    this.stats.bitFlips++;
    this.deps.timeline(`bit flip in cs${cs.slot}'s replica of chunk ${replica.handle} v${replica.version} at byte ${byteOffset}`);
  }

  private newFaultKinds(): ('diskFull' | 'badSpot' | 'ioErrors' | 'partition')[] {
    const f = this.faultProfile;
    const kinds: ('diskFull' | 'badSpot' | 'ioErrors' | 'partition')[] = [];
    if (f.diskFull) kinds.push('diskFull');
    if (f.badSpots) kinds.push('badSpot');
    if (f.ioErrors) kinds.push('ioErrors');
    if (f.partitions) kinds.push('partition');
    return kinds;
  }

  private injectNewFault(kind: 'diskFull' | 'badSpot' | 'ioErrors' | 'partition'): void {
    const r = this.newFaultRandom;
    const serving = this.servers.filter((cs) => cs.serving);
    if (serving.length === 0) return;
    const cs = r.pick(serving);
    const disk = cs.disk;
    const incarnation = cs.incarnation;
    const forMs = r.floatBetween(100, 1_200);
    if (kind === 'diskFull') {
      disk.capacityBytes = disk.usedBytes() + r.int(CHUNK_SIZE_MAX_BYTES);
      this.stats.disksFilled++;
      this.deps.timeline(`cs${cs.slot}'s disk fills up (${disk.freeBytes()} bytes free) for ${forMs.toFixed(0)}ms`);
      this.schedule(forMs, `cs${cs.slot} disk room again`, () => {
        if (cs.disk === disk) disk.capacityBytes = Number.MAX_SAFE_INTEGER;
      });
      return;
    }
    if (kind === 'ioErrors') {
      disk.ioErrorProbability = this.faultProfile.ioErrorProbability;
      disk.ioErrorKinds = ['read', 'write', 'sync'];
      this.stats.ioErrorWindows++;
      this.deps.timeline(`cs${cs.slot}'s disk fails EIO at random (p=${disk.ioErrorProbability.toFixed(4)}) for ${forMs.toFixed(0)}ms`);
      this.schedule(forMs, `cs${cs.slot} disk errors end`, () => {
        if (cs.incarnation === incarnation) disk.ioErrorProbability = 0;
      });
      return;
    }
    if (kind === 'badSpot') {
      if (this.impaired() >= this.profile.replication - 1 || cs.unrepairedFlips() > 0) return;
      const store = cs.store;
      if (store === null) return;
      const sealed = store.list().filter((x) => x.sealed && x.lengthBytes > 0 && this.hasOtherGoodCopy(cs, x.handle, x.version));
      if (sealed.length === 0) return;
      const replica = r.pick(sealed);
      disk.failPath(`${DATA_DIR}/${replica.handle}.data`, ['read']);
      cs.badSpots.push({ handle: replica.handle, version: replica.version });
      this.stats.badSpots++;
      this.deps.timeline(`bad spot under cs${cs.slot}'s replica of chunk ${replica.handle} v${replica.version}: reads fail EIO`);
      return;
    }
    const others = [...this.servers.filter((o) => o !== cs).map((o) => o.address), ...this.clientDialers.map((d) => d.name)];
    const cut = others.filter(() => r.chance(0.5));
    if (cut.length === 0) return;
    for (const other of cut) this.stats.connectionsBroken += this.network.cut(cs.address, other);
    this.stats.partitions++;
    this.deps.timeline(`data network partition: cs${cs.slot} cut from ${cut.join(',')} for ${forMs.toFixed(0)}ms`);
    this.schedule(forMs, `cs${cs.slot} partition heals`, () => {
      for (const other of cut) this.network.heal(cs.address, other);
    });
  }

  /**
   * A write-pipeline packet on the wire during the fault phase: with the seed's probability it arrives with
   * one bit of its payload flipped, in a copy (the sender keeps its bytes: the writer resends from them).
   * The hop receiving it stores it and forwards it as it came, so it and every hop after it hold the bad
   * bytes under the writer's CRCs, until the chain's end finds the mismatch and fails the pipeline (the bytes
   * were never acknowledged: survivors are cut back to the acknowledged length when the writer resumes). Not
   * counted as an impaired server: no acknowledged byte, and no sealed replica, is ever hit.
   */
  private corruptInFlight(packet: PacketMessage, link: { readonly from: string; readonly to: string; readonly setup: SetupMessage | null }): PacketMessage {
    const r = this.corruptionRandom;
    if (!this.deps.active() || packet.payload.length === 0 || !r.chance(this.faultProfile.packetCorruptionProbability)) return packet;
    // A copy: the payload is often a Buffer (the writer's staging), whose slice() is a view, not a copy.
    const payload = Uint8Array.from(packet.payload);
    assert.notEqual(payload.buffer, packet.payload.buffer, "a corrupted packet never shares the sender's memory");
    const byte = r.int(payload.length);
    const bit = r.int(8);
    payload[byte]! ^= 1 << bit;
    this.stats.packetsCorrupted++;
    const chunk = link.setup === null ? 'a chunk' : `chunk ${link.setup.handle} v${link.setup.version}`;
    this.deps.timeline(`packet ${packet.seq} of ${chunk} (offset ${packet.offset}) corrupted in flight from ${link.from} to ${link.to}: bit ${bit} of byte ${byte}`);
    const vanish = this.vanishers.get(link.from);
    if (vanish !== undefined && this.vanishOnCorruptionRandom.chance(WRITER_VANISH_ON_CORRUPTION_PROBABILITY)) vanish('a packet it sent was corrupted in flight');
    return { ...packet, payload };
  }

  private breakConnection(): void {
    const open: DataConnection[] = [];
    for (const d of [...this.clientDialers, ...this.servers.map((cs) => cs.dialer)]) {
      d.prune();
      for (const c of d.open) open.push(c);
    }
    if (open.length === 0) return;
    const connection = this.faultRandom.pick(open);
    connection.destroy(new DataPlaneError('CONNECTION_LOST', 'the network cut the connection'));
    this.stats.connectionsBroken++;
  }

  // ---------------------------------------------------------------------------------------------- the client side

  private serverAt(address: string): SimChunkserver | undefined {
    return this.servers.find((cs) => cs.address === address);
  }

  /** The DataPlane of one client, over its own dialer, with the ack and stale-read checks. */
  private dataPlane(dialer: TrackedDialer): DataPlane {
    return {
      openPipeline: async (options: OpenPipeline): Promise<ChunkPipeline> => {
        const chain = options.chain.map((r) => ({ id: r.id, address: r.address }));
        const known = this.chains.get(options.handle) ?? new Set<number>();
        for (const r of chain) known.add(r.id);
        this.chains.set(options.handle, known);
        const history = this.pipelines.get(options.handle) ?? [];
        history.push({ version: options.version, ids: chain.map((r) => r.id) });
        this.pipelines.set(options.handle, history);
        const incarnations = chain.map((r) => this.serverAt(r.address)?.incarnation ?? -1);
        const writer = await PipelineWriter.open(dialer, {
          handle: options.handle,
          version: options.version,
          chain,
          mode: options.mode,
          ...(options.fromVersion !== undefined ? { fromVersion: options.fromVersion } : {}),
          ...(options.offset !== undefined ? { offset: options.offset } : {}),
          ...(options.compression !== undefined ? { compression: options.compression } : {}),
          packetBytes: PACKET_BYTES,
          limits: dataPlaneLimits,
          onAck: (acked) => this.checkAck(options.handle, options.version, chain, incarnations, acked),
        });
        return {
          // As the real client's data plane (src/client/connect.ts): the writer's CRCs, when it computed them.
          write: (data, crcs) => writer.write(data, crcs !== undefined ? { crcs } : {}),
          flush: () => writer.flush(),
          seal: (lengthBytes) => writer.seal(lengthBytes),
          abort: () => writer.abort(),
          get ackedLengthBytes() {
            return writer.ackedLengthBytes;
          },
        };
      },
      // Into the caller's buffer when it gives one, as the real data plane does (read sessions' read-ahead).
      readRange: async (address, request, into) => {
        const incarnation = this.serverAt(address)?.incarnation;
        const bytes = await readRange(dialer, address, request, into);
        this.checkServedVersion(address, incarnation, request.handle, request.version);
        return bytes;
      },
      pipelineFailure: (error: unknown): PipelineFailure | undefined => {
        if (!(error instanceof PipelineFailedError)) return undefined;
        if (error.code === 'CHECKSUM_MISMATCH' && !this.failuresSeen.has(error)) this.stats.pipelineChecksumFailures++;
        this.failuresSeen.add(error);
        return { code: error.code, failedIndex: error.failedIndex, failedId: error.failedId, ackedLengthBytes: error.ackedLengthBytes };
      },
      errorCode: (error: unknown) => (error instanceof DataPlaneError ? error.code : error instanceof ChunkStoreError ? error.code : undefined),
    };
  }

  /** data-pipeline-ack: an ack the writer receives means every replica of the chain holds the bytes. */
  private checkAck(handle: number, version: number, chain: readonly { id: number; address: string }[], incarnations: readonly number[], acked: number): void {
    chain.forEach((link, i) => {
      const cs = this.serverAt(link.address);
      if (cs === undefined || !cs.up || cs.incarnation !== incarnations[i] || cs.store === null || cs.id !== link.id) return;
      const info = cs.store.info(handle);
      if (info === undefined || info.version !== version) return;
      if (info.lengthBytes < acked) {
        this.fail('data-pipeline-ack', `the writer got an ack for ${acked} bytes of chunk ${handle} v${version}, but replica ${link.id} (cs${cs.slot}, chain position ${i}) holds ${info.lengthBytes}`);
      }
    });
  }

  /** data-stale-replica: a replica that served a read held the chunk at the version asked for. */
  private checkServedVersion(address: string, incarnation: number | undefined, handle: number, version: number): void {
    const cs = this.serverAt(address);
    if (cs === undefined || cs.incarnation !== incarnation || cs.store === null) return;
    const held = cs.store.info(handle)?.version;
    if (held !== undefined && held !== version) {
      this.fail('data-stale-replica', `cs${cs.slot} (id ${cs.id ?? '-'}) served a read of chunk ${handle} at version ${version} from its replica at version ${held}`);
    }
  }

  private newClient(random: Prng): { client: MetadataClientState; dialer: TrackedDialer } {
    const dialer = new TrackedDialer(this.network, `client${this.clientDialers.length + 1}`, this.wire);
    this.clientDialers.push(dialer);
    return { client: { target: random.pick(this.deps.cluster.addressableIds()), random }, dialer };
  }

  private timers(life: { readonly dead: boolean }): WriterTimers {
    return {
      setInterval: (fn, ms) => {
        let stopped = false;
        const tick = (): void => {
          if (stopped || life.dead) return;
          fn();
          this.schedule(ms, 'lease renewal', tick);
        };
        this.schedule(ms, 'lease renewal', tick);
        return () => {
          stopped = true;
        };
      },
    };
  }

  private fileSize(random: Prng): number {
    switch (random.int(5)) {
      case 0:
        return random.int(3) === 0 ? 0 : random.intBetween(1, 100);
      case 1:
        return random.intBetween(1, this.profile.chunkSizeBytes + 10);
      case 2:
        return random.pick([this.profile.chunkSizeBytes, 2 * this.profile.chunkSizeBytes, PACKET_BYTES]);
      default:
        return random.intBetween(1, FILE_BYTES_MAX);
    }
  }

  /** Kills the process writing through a client dialer (by its name), while it writes a file. */
  private readonly vanishers = new Map<string, (why: string) => void>();

  private writerLoop(w: number, random: Prng): void {
    let process = this.newClient(random);
    let data = this.dataPlane(process.dialer);
    const vanishRandom = this.deps.random.split(`writer/${w}/vanish`);
    let n = 0;
    const next = (): void => {
      if (!this.deps.active()) return;
      if (process.dialer.dead) {
        // The writer's process died with its last file: a new one takes over.
        process = this.newClient(random);
        data = this.dataPlane(process.dialer);
      }
      const path = `/w${w}.${++n}`;
      const vanishAtMs = vanishRandom.chance(WRITER_VANISH_PROBABILITY) ? vanishRandom.floatBetween(1, WRITER_VANISH_WITHIN_MS) : null;
      void this.writeFile(path, w, random, process.client, data, process.dialer, vanishAtMs).finally(() =>
        this.schedule(random.floatBetween(1, WRITER_THINK_MAX_MS), `writer ${w} next file`, next),
      );
    };
    next();
  }

  /**
   * One file, by a writer process that may vanish in the middle of it: at `vanishAtMs` (see
   * WRITER_VANISH_PROBABILITY), or right after a packet it sent was corrupted in flight (corruptInFlight).
   * A process that is gone makes no more calls (at once) and its connections close (a moment later).
   */
  private writeFile(path: string, w: number, random: Prng, client: MetadataClientState, data: DataPlane, dialer: TrackedDialer, vanishAtMs: number | null): Promise<void> {
    const life: WriterLife = { dead: false };
    return new Promise<void>((resolve) => {
      const vanish = (why: string): void => {
        if (life.dead || life.settled === true) return;
        life.dead = true;
        life.onDeath?.();
        dialer.dead = true;
        this.schedule(VANISHED_CONNECTIONS_CLOSE_MS, `writer ${w}'s connections close`, () => dialer.breakAll());
        this.stats.writersVanished++;
        this.deps.timeline(`writer ${w}'s process is gone in the middle of ${path} (${why})`);
        resolve();
      };
      if (vanishAtMs !== null) this.schedule(vanishAtMs, `writer ${w} vanishes while writing ${path}`, () => vanish('at random'));
      this.vanishers.set(dialer.name, vanish);
      void this.writeOneFile(path, w, random, client, data, life).finally(() => {
        if (this.vanishers.get(dialer.name) === vanish) this.vanishers.delete(dialer.name);
        resolve();
      });
    });
  }

  private async writeOneFile(path: string, w: number, random: Prng, client: MetadataClientState, data: DataPlane, life: WriterLife): Promise<void> {
    const sizeBytes = this.fileSize(random);
    const record: FileRecord = { path, sizeBytes, acked: null, ackedAtMs: null };
    this.files.push(record);
    this.filesInFlight++;
    this.stats.filesStarted++;
    const bytes = expectedContent(this.deps.seed, path, sizeBytes);
    let writer: FileWriter | null = null;
    let timedOut = false;
    this.schedule(FILE_DEADLINE_MS, `writer ${w} deadline for ${path}`, () => {
      if (record.acked !== null || life.dead) return;
      timedOut = true;
      void writer?.abort();
    });
    let settled = false;
    const settle = (acked: boolean): void => {
      if (settled) return;
      settled = true;
      life.settled = true;
      record.acked = acked;
      this.filesInFlight--;
    };
    // A process that is gone settles its file as given up at once; whatever it had in flight lands or not.
    life.onDeath = () => settle(false);
    try {
      writer = await FileWriter.open(path, {
        metadata: guardedMetadata(this.writerMetadata(client, record), life),
        data,
        holder: `writer${w}`,
        exclusive: true,
        leaseDurationMs: LEASE_DURATION_MS,
        stagingBytes: PACKET_BYTES,
        timers: this.timers(life),
        onRecovery: () => this.stats.pipelineRecoveries++,
      });
      if (timedOut) throw new Error('deadline passed');
      for (let offset = 0; offset < sizeBytes; ) {
        const piece = Math.min(sizeBytes - offset, random.pick([1, 100, 4 * KiB, 50 * KiB, 64 * KiB, 200 * KiB]));
        await writer.write(bytes.subarray(offset, offset + piece));
        offset += piece;
      }
      if (life.dead) throw new Error('the process is gone');
      await writer.close();
      if (life.dead) throw new Error('the process is gone');
      record.ackedAtMs = this.deps.world.nowMs;
      settle(true);
      this.stats.filesAcked++;
      this.stats.bytesAcked += sizeBytes;
    } catch (error) {
      settle(false);
      if (life.dead) return; // a process that is gone releases nothing: lease recovery's work
      this.stats.filesFailed++;
      this.deps.timeline(`writer ${w} gave up ${path} (${sizeBytes} bytes): ${describeError(error)}`);
      await writer?.abort();
    }
  }

  /**
   * The writer's metadata, remembering which file each allocated chunk belongs to and which of the writer's
   * chunks it is (the first may come with the create): the writer fills the chunks it is given in order, so the n-th allocation it gets holds the
   * file's bytes from n · chunkSizeBytes. The checker keys on that, the writer's own view, not on the chunk's
   * index in the file's list. Before allocations named their index (the addChunk op's `index`), an allocation
   * whose answer was lost (the leader stopped after committing it) left a chunk the writer never got, every
   * later one sat an index further, and the file could not be completed (simulator seed 56911).
   */
  private writerMetadata(client: MetadataClientState, file: FileRecord): SimWriterMetadata {
    const metadata = new SimWriterMetadata(this.meta, client, {
      replication: this.profile.replication,
      chunkSizeBytes: this.profile.chunkSizeBytes,
      compression: compressionOfPath(file.path),
    });
    const allocate = metadata.allocateChunk.bind(metadata);
    const create = metadata.createFile.bind(metadata);
    let received = 0;
    metadata.allocateChunk = async (path, holder, index) => {
      const chunk = await allocate(path, holder, index);
      this.chunkFiles.set(chunk.handle, { file, nth: received++ });
      return chunk;
    };
    // The first chunk, given with the create, is the writer's first allocation.
    metadata.createFile = async (path, options) => {
      const created = await create(path, options);
      if (created.firstChunk !== undefined) this.chunkFiles.set(created.firstChunk.handle, { file, nth: received++ });
      return created;
    };
    return metadata;
  }

  /**
   * A read through locations cached before a version bump: a server dropped from the chunk's pipeline is asked
   * for the chunk at its latest version. It must refuse (its replica is stale) or return exactly the bytes.
   */
  private async staleProbe(random: Prng, data: DataPlane): Promise<void> {
    const bumped = [...this.pipelines].filter(([, history]) => history.length > 1);
    if (bumped.length === 0) return;
    const [handle, history] = random.pick(bumped);
    const latest = history[history.length - 1]!;
    const former = [...new Set(history.flatMap((h) => h.ids))].filter((id) => !latest.ids.includes(id));
    const owner = this.chunkFiles.get(handle);
    if (former.length === 0 || owner === undefined) return;
    const id = random.pick(former);
    // Zero bytes too: a stale replica that lost its unsynced bytes in a crash can still answer an empty read.
    const length = random.chance(0.4) ? 0 : random.intBetween(1, PACKET_BYTES);
    this.stats.staleCacheReads++;
    let got: Uint8Array;
    try {
      got = await data.readRange(this.meta.replica(id).address, { handle, version: latest.version, offset: 0, length });
    } catch {
      return; // refused: right
    } finally {
      this.deps.timeline(`stale probe chunk ${handle} v${latest.version} from server ${id} (${length} bytes)`);
    }
    const chunkStart = owner.nth * this.profile.chunkSizeBytes;
    const expected = expectedContent(this.deps.seed, owner.file.path, owner.file.sizeBytes);
    if (got.length !== length || firstDifference(got, expected, chunkStart) >= 0) {
      this.fail('data-read-correct', `a read of chunk ${handle} v${latest.version} [0, +${length}) from server ${id} returned other bytes than were written`);
    }
  }

  private readerLoop(r: number, random: Prng): void {
    const { client, dialer } = this.newClient(random);
    const data = this.dataPlane(dialer);
    const next = (): void => {
      if (!this.deps.active()) return;
      const read = random.chance(this.profile.staleCacheProbability) ? this.staleProbe(random, data) : this.readOnce(random, client, data);
      void read.finally(() => this.schedule(random.floatBetween(1, READER_THINK_MAX_MS), `reader ${r} next read`, next));
    };
    next();
  }

  private async readOnce(random: Prng, client: MetadataClientState, data: DataPlane): Promise<void> {
    const candidates = this.files.filter((f) => f.acked !== false);
    if (candidates.length === 0) return;
    const file = random.pick(candidates);
    const ackedBefore = file.acked === true;
    const stale = random.chance(this.profile.staleCacheProbability);
    if (stale) this.stats.staleCacheReads++;
    const reader = new FileReader({
      metadata: new SimReaderMetadata(this.meta, client, stale ? (handle) => [...(this.chains.get(handle) ?? [])] : null),
      data,
      ...(stale ? { orderReplicas: (chunk: { replicas: readonly { id: number; address: string }[] }) => chunk.replicas } : {}),
      onReplicaFailure: () => this.stats.replicaReadFailures++,
      bugs: this.deps.dataBugs,
    });
    const offset = random.chance(0.3) ? 0 : random.int(file.sizeBytes + 1);
    const length = random.chance(0.3) ? file.sizeBytes : random.intBetween(0, 300 * KiB);
    if (!stale && random.chance(SESSION_READ_PROBABILITY)) return this.sessionReads(random, reader, file, offset, ackedBefore);
    this.stats.readsDuringRun++;
    let got: Uint8Array;
    try {
      got = await reader.read(file.path, offset, length);
    } catch {
      return; // an error is an allowed answer
    }
    this.stats.readsOk++;
    this.checkRead(file, offset, length, got, ackedBefore, 'data-read-correct', 'a read during the run');
  }

  /**
   * Reads through one ReadSession (a reading handle's path: the chunk list kept between reads, read-ahead
   * when sequential): a few reads one after the other from `offset`, mostly sequential, some jumps, with
   * simulated pauses between them so faults (crashes, re-replication moving replicas, wiped disks) land
   * between and during the reads. Every read's bytes are checked as any read's.
   */
  private async sessionReads(random: Prng, reader: FileReader, file: FileRecord, offset: number, ackedBefore: boolean): Promise<void> {
    this.stats.sessionReads++;
    const session = reader.open(file.path);
    let at = offset;
    try {
      const reads = random.intBetween(2, 8);
      for (let i = 0; i < reads && this.deps.active(); i++) {
        if (random.chance(0.2)) at = random.int(file.sizeBytes + 1);
        const length = random.intBetween(1, 200 * KiB);
        const into = new Uint8Array(length);
        this.stats.readsDuringRun++;
        let count: number;
        try {
          count = await session.readInto(at, into);
        } catch {
          return; // an error is an allowed answer
        }
        this.stats.readsOk++;
        if (!this.checkRead(file, at, length, into.subarray(0, count), ackedBefore, 'data-read-correct', 'a read through a read session')) return;
        at += count;
        if (random.chance(0.5)) await this.sleep(random.floatBetween(0.1, READER_THINK_MAX_MS), 'read session pause');
      }
    } finally {
      session.close();
    }
  }

  /** The bytes of a read of [offset, +length) of `file`: exactly the expected ones (all of them once acknowledged). */
  private checkRead(file: FileRecord, offset: number, length: number, got: Uint8Array, complete: boolean, kind: ViolationKind, what: string): boolean {
    const expected = expectedContent(this.deps.seed, file.path, file.sizeBytes);
    const wantLength = Math.max(0, Math.min(length, file.sizeBytes - offset));
    if (got.length > wantLength || (complete && got.length !== wantLength)) {
      this.fail(kind, `${what} of ${file.path} [${offset}, +${length}) returned ${got.length} bytes; the file holds ${file.sizeBytes}${complete ? ' and is complete' : ''}`);
      return false;
    }
    const diff = firstDifference(got, expected, offset);
    if (diff >= 0) {
      this.fail(kind, `${what} of ${file.path} [${offset}, +${length}) returned wrong bytes from file offset ${diff}`);
      return false;
    }
    return true;
  }

  // ---------------------------------------------------------------------------------------------- after healing

  /** Waits for the writers to settle, then polls the healing checks, then reads every acknowledged file. */
  awaitConvergence(done: (problem: string | null) => void): void {
    this.convergence = { startMs: this.deps.world.nowMs, done };
    this.poll();
  }

  private finish(problem: string | null): void {
    const c = this.convergence;
    if (c === null || this.finished) return;
    this.finished = true;
    this.convergence = null;
    c.done(problem);
  }

  private poll(): void {
    const c = this.convergence;
    if (c === null) return;
    const elapsed = this.deps.world.nowMs - c.startMs;
    const again = (): void => this.schedule(CONVERGENCE_POLL_INTERVAL_MS, 'data convergence check', () => this.poll());
    void this.problems().then(
      (problem) => {
        if (problem === null) {
          this.stats.convergedMs = elapsed;
          void this.finalReads().then(
            (p) => this.finish(p),
            (e: unknown) => {
              this.fail('node-crash', `the final reads failed: ${describeError(e)}`);
              this.finish('crash');
            },
          );
          return;
        }
        if (elapsed > DATA_CONVERGENCE_DEADLINE_MS) {
          this.fail(problem.kind, `${problem.message} (${DATA_CONVERGENCE_DEADLINE_MS} ms after the cluster healed)`);
          this.finish(problem.message);
          return;
        }
        again();
      },
      (e: unknown) => {
        this.fail('node-crash', `the data check failed: ${describeError(e)}`);
        this.finish('crash');
      },
    );
  }

  /** What still breaks the healing checks; null when nothing. */
  private async problems(): Promise<{ kind: ViolationKind; message: string } | null> {
    if (this.filesInFlight > 0) return { kind: 'liveness', message: `${this.filesInFlight} file writes never settled` };
    const down = this.servers.filter((cs) => !cs.serving);
    if (down.length > 0) return { kind: 'liveness', message: `chunkservers ${down.map((cs) => `cs${cs.slot}`).join(',')} never came back` };
    const leader = this.deps.cluster.leader();
    if (leader === null || leader.host.meta === null) return { kind: 'chunk-replication', message: 'no leader to judge chunk placement by' };
    const view = await loadClusterView(leader.host.metaKv, leader.host.meta.fsm.limits);
    const up = this.servers.filter((cs) => cs.serving && cs.store !== null && cs.id !== undefined);
    const under: string[] = [];
    const stale: string[] = [];
    const corrupt: string[] = [];
    for (const chunk of view.chunks.values()) {
      if (!chunk.sealed || !chunk.fileLive) continue;
      const good = (cs: SimChunkserver): boolean => {
        const info = cs.store?.info(chunk.handle);
        // Sealed or not: a copy whose seal was cut off holds every byte (its reads and verification say so).
        return info !== undefined && info.version === chunk.version && info.lengthBytes === chunk.lengthBytes;
      };
      const holders = up.filter(good);
      if (holders.length === 0) continue; // every copy is lost: durability judges the files that matter
      const listed = holders.filter((cs) => chunk.replicas.includes(cs.id!));
      const need = Math.min(chunk.replication, up.length);
      if (listed.length < need) {
        const held = up.map((cs) => {
          const info = cs.store!.info(chunk.handle);
          return `${cs.id}:${info === undefined ? '-' : `v${info.version}${info.sealed ? 's' : 'u'}${info.lengthBytes}`}`;
        });
        under.push(`chunk ${chunk.handle} v${chunk.version} (${chunk.lengthBytes} bytes): ${listed.length}/${need} good listed replicas [${chunk.replicas.join(',')}], held ${held.join(' ')}`);
      }
      for (const cs of up) {
        const info = cs.store!.info(chunk.handle);
        if (info !== undefined && info.version < chunk.version) stale.push(`server ${cs.id} keeps chunk ${chunk.handle} at v${info.version} < v${chunk.version}`);
      }
      for (const cs of listed) {
        try {
          await cs.store!.verify(chunk.handle);
        } catch (error) {
          corrupt.push(`chunk ${chunk.handle} v${chunk.version} on server ${cs.id} (cs${cs.slot}): ${describeError(error)}`);
        }
      }
    }
    const unrecovered = filesAwaitingRecovery(view, Math.floor(this.deps.world.nowMs));
    const summary = (items: string[]): string => `${items.slice(0, 3).join('; ')}${items.length > 3 ? ` (+${items.length - 3})` : ''}`;
    if (unrecovered.length > 0) return { kind: 'lease-recovery', message: `files whose writer is gone keep unsealed chunks: ${summary(unrecovered.map((f) => `file ${f}`))}` };
    // A file whose writer gave up is completed: by its release, or by lease recovery once its lease expired.
    const incomplete: string[] = [];
    for (const file of this.files) {
      if (file.acked !== false) continue;
      const stat = await leader.host.meta.fsm.stat(file.path);
      if (stat.ok && !stat.value.complete) incomplete.push(file.path);
    }
    if (incomplete.length > 0) return { kind: 'lease-recovery', message: `files whose writer gave up are still incomplete: ${summary(incomplete)}` };
    if (corrupt.length > 0) return { kind: 'data-corruption-repaired', message: `listed replicas fail verification: ${summary(corrupt)}` };
    if (under.length > 0) return { kind: 'chunk-replication', message: `under-replicated: ${summary(under)}` };
    if (stale.length > 0) return { kind: 'chunk-stale-replica', message: `stale replicas: ${summary(stale)}` };
    return null;
  }

  /**
   * lease-recovery: a file whose writer gave up is complete by now (released, or recovered by the leader), and
   * holds a prefix of the bytes written (never other bytes, nor a gap).
   */
  private async checkGivenUp(file: FileRecord, reader: FileReader): Promise<string | null> {
    const leader = this.deps.cluster.leader();
    if (leader === null || leader.host.meta === null) return null;
    const stat = await leader.host.meta.fsm.stat(file.path);
    if (!stat.ok) return null; // never created
    if (!stat.value.complete) {
      this.fail('lease-recovery', `${file.path}, whose writer gave up, is still incomplete after healing (${stat.value.lengthBytes} bytes sealed)`);
      return 'lease-recovery';
    }
    let got: Uint8Array;
    try {
      got = await reader.readFile(file.path);
    } catch (error) {
      this.fail('lease-recovery', `${file.path}, whose writer gave up and which the leader completed, cannot be read after healing: ${describeError(error)}`);
      return 'lease-recovery';
    }
    this.stats.givenUpFilesRead++;
    if (got.length !== stat.value.lengthBytes) {
      this.fail('lease-recovery', `${file.path}: read ${got.length} bytes of a complete file of ${stat.value.lengthBytes}`);
      return 'lease-recovery';
    }
    return this.checkRead(file, 0, file.sizeBytes, got, false, 'lease-recovery', 'the read of a file whose writer gave up') ? null : 'lease-recovery';
  }

  /** data-durability: every acknowledged file reads back exactly, through the reader and from every listed replica. */
  private async finalReads(): Promise<string | null> {
    const random = this.deps.random.split('final-reader');
    const { client, dialer } = this.newClient(random);
    const data = this.dataPlane(dialer);
    const metadata = new SimReaderMetadata(this.meta, client, null);
    const reader = new FileReader({ metadata, data });
    for (const file of this.files) {
      if (file.acked === false) {
        const problem = await this.checkGivenUp(file, reader);
        if (problem !== null) return problem;
        continue;
      }
      if (file.acked !== true) continue;
      let got: Uint8Array;
      try {
        got = await reader.readFile(file.path);
      } catch (error) {
        this.fail('data-durability', `acknowledged file ${file.path} (${file.sizeBytes} bytes) cannot be read after healing: ${describeError(error)}`);
        return 'durability';
      }
      this.stats.finalFilesRead++;
      if (!this.checkRead(file, 0, file.sizeBytes, got, true, 'data-durability', 'the read after healing')) return 'durability';
      const expected = expectedContent(this.deps.seed, file.path, file.sizeBytes);
      const page = await metadata.chunkLocations(file.path, 0);
      let chunkStart = 0;
      for (const chunk of page.chunks) {
        for (const replica of chunk.replicas) {
          this.stats.finalReplicaReads++;
          let bytes: Uint8Array;
          try {
            bytes = await data.readRange(replica.address, { handle: chunk.handle, version: chunk.version, offset: 0, length: chunk.lengthBytes });
          } catch (error) {
            this.fail('data-durability', `replica ${replica.id} of chunk ${chunk.handle} v${chunk.version} of ${file.path} cannot be read after healing: ${describeError(error)}`);
            return 'durability';
          }
          if (bytes.length !== chunk.lengthBytes || firstDifference(bytes, expected, chunkStart) >= 0) {
            this.fail('data-durability', `replica ${replica.id} of chunk ${chunk.handle} v${chunk.version} of ${file.path} holds other bytes than were written`);
            return 'durability';
          }
        }
        chunkStart += chunk.lengthBytes;
      }
      if (page.hasMore) return null; // files here have a handful of chunks: one page holds them all
    }
    return null;
  }
}

/** A writer's metadata calls fail once its process is gone (those already sent still land or not). */
function guardedMetadata<T extends object>(metadata: T, life: { readonly dead: boolean }): T {
  return new Proxy(metadata, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (life.dead) return Promise.reject(new Error('this client process is gone'));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
