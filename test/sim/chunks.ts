/**
 * Chunks in the metadata workload: simulated chunkservers and writers around the real chunk manager.
 *
 * - Every metadata node runs a ChunkService (src/placement); the leader's runs the real ChunkManager on the
 *   node's clock, loading its view from the node's state machine and proposing through its RaftNode.
 * - Simulated chunkservers (a few racks) register, heartbeat, send full and incremental chunk reports, and
 *   carry out the commands in the replies (copy a replica to another server, delete one). They crash and
 *   come back (some with an empty disk), and at most one dies for good.
 * - Writers create files under a lease, allocate chunks (AllocateChunk: the manager picks replicas, addChunk
 *   is proposed), write them to the replicas that are up, sometimes start a new pipeline without one replica
 *   (bumpChunkVersion: the one left out keeps a stale version), seal them, sometimes allocate one more chunk
 *   and abandon it (abandonChunk, as FileWriter does with a chunk allocated ahead that the file did not need:
 *   its empty replicas become orphans), complete the file, and delete old files (their replicas become garbage).
 *
 * Checks:
 * - chunk-placement (always): the manager never orders a copy onto a server its own view lists as a
 *   replica of that chunk (two replicas on one server);
 * - chunk-replication (after healing): every sealed chunk of a live file that still has a copy somewhere is
 *   listed on at least min(replication, servers up) servers that are up and hold its current version;
 * - chunk-stale-replica (after healing): no server that is up keeps a sealed chunk at a version below the
 *   current one, nor a replica of a chunk no file has any more (an orphan: deleted file, abandoned chunk).
 * - lease-recovery (after healing): no file whose writer is gone (its lease released, or expired) keeps an
 *   unsealed chunk: the leader's lease recovery sealed (or dropped) them all and completed the file.
 * The healing checks are polled after the Raft liveness probe until all hold or the deadline passes.
 */
import type { FsResult, Op, SessionStamp } from '../../src/fsm/index.ts';
import { encodeCommand as encodeFsmCommand } from '../../src/fsm/index.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { ChunkManagerLimits } from '../../src/placement/limits.ts';
import type { ChunkserverCommand, ClusterView, Reply } from '../../src/placement/manager.ts';
import { ChunkService } from '../../src/placement/service.ts';
import { RECOVERY_HOLDER } from '../../src/fsm/records.ts';
import { loadClusterView } from '../../src/placement/view.ts';
import { NotLeaderError } from '../../src/raft/errors.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { InvariantChecker } from './checkers.ts';
import { describeError, type Cluster, type Host } from './cluster.ts';
import type { Prng } from './prng.ts';
import { sendRequest } from './workload.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';

const MiB = 1024 * 1024;
/** How often each metadata node runs its chunk service's pass. */
const SERVICE_STEP_INTERVAL_MS = 100;
const HEARTBEAT_INTERVAL_MS = 100;
/**
 * Every this many heartbeats a chunkserver sends a full report unasked: as the real agent's hourly one, never
 * within a run (about 250 beats). Full reports come when the leader asks (a new leader, an unknown server) and
 * after a failed exchange. So garbage must be found without them (ChunkManager's sweep): with a report every
 * 10 beats, as until the twenty-first session, replicas of deleted files and surplus copies were deleted only
 * because of these reports, which hid that the real cluster kept them for up to an hour.
 */
const FULL_REPORT_EVERY = 1_000_000;
/** A proposal or request not answered within this is given up (its outcome unknown). */
const REQUEST_TIMEOUT_MS = 1_500;
const COPY_LATENCY_MIN_MS = 1;
const COPY_LATENCY_MAX_MS = 10;
const WRITER_THINK_MAX_MS = 500;
/** A writer's lease (never renewed): a writer slower than this, or one that gave up a file, leaves it to lease recovery. */
const WRITER_LEASE_MS = 5_000;
/** After the Raft liveness probe, the chunk checks must hold within this much virtual time. */
export const CHUNK_CONVERGENCE_DEADLINE_MS = 20_000;
const CONVERGENCE_POLL_INTERVAL_MS = 200;
/** An operator asks to forget a server that died for good this often, until the leader agrees. */
const FORGET_RETRY_MS = 1_000;

/** The chunk manager's limits in the simulator: the real rules on a faster clock. */
export const simChunkManagerLimits: Partial<ChunkManagerLimits> = {
  heartbeatTimeoutMs: 1_000,
  leaderGraceMs: 1_500,
  reReplicationsPerServerMax: 2,
  reReplicationsClusterMax: 16,
  replicationTimeoutMs: 2_000,
  rebalanceMovesMax: 2,
  rebalanceThresholdPermille: 200,
  proposalRetryMs: 500,
  leaseRecoveryDelayMs: 500,
  recoveryLeaseMs: 10_000,
  leaseRecoveryAnswerWaitMs: 1_000,
  leaseRecoveryReplicasLostMs: 5_000,
  // A small sweep budget, so that passes resume the sweep midway through a server's replicas.
  gcSweepReplicasPerPass: 16,
  gcDeleteRetryMs: 2_000,
  listingGuardMs: 3_000,
};

export interface ChunkStats {
  registrations: number;
  heartbeats: number;
  fullReports: number;
  copiesDone: number;
  deletesDone: number;
  filesWritten: number;
  chunksSealed: number;
  pipelineBumps: number;
  /** Chunks a writer allocated ahead and abandoned (AbandonChunk): their replicas become orphans. */
  chunksAbandoned: number;
  /** Replicas sealed by lease recovery (files whose writer gave up). */
  recoverySeals: number;
  filesDeleted: number;
  /** Files whose replication factor a writer changed (setattr). */
  replicationChanges: number;
  chunkserverCrashes: number;
  disksLost: number;
  permanentDeaths: number;
  /** Servers that died for good and an operator then forgot (ForgetChunkserver, once no chunk listed them). */
  serversForgotten: number;
  convergedMs: number | null;
}

interface StoredChunk {
  version: number;
  lengthBytes: number;
  /** Sealed by lease recovery (the writers' seals are the state machine's only: these servers judge by length). */
  sealed?: boolean;
}

/** A sealed replica's stand-in checksum in this workload (its bytes are not simulated): a function of its length. */
const simChecksum = (lengthBytes: number): number => lengthBytes % 0xffffffff;

class SimChunkserver {
  id: number | null = null;
  up = true;
  gone = false;
  epoch = 0;
  target: NodeId;
  readonly disk = new Map<number, StoredChunk>();
  /** handle → version (0: removed) since the last incremental report that got through. */
  readonly changed = new Map<number, number>();
  needFull = true;
  beats = 0;
  busy = false;

  constructor(
    readonly n: number,
    readonly rack: string,
    readonly capacityBytes: number,
    target: NodeId,
  ) {
    this.target = target;
  }

  get address(): string {
    return `cs${this.n}:7000`;
  }

  get usedBytes(): number {
    let used = 0;
    for (const c of this.disk.values()) used += c.lengthBytes;
    return used;
  }

  store(handle: number, chunk: StoredChunk): void {
    this.disk.set(handle, chunk);
    this.changed.set(handle, chunk.version);
  }

  remove(handle: number): void {
    this.disk.delete(handle);
    this.changed.set(handle, 0);
  }
}

export interface ChunkWorldDeps {
  readonly world: World;
  readonly cluster: Cluster;
  readonly checker: InvariantChecker;
  readonly random: Prng;
  readonly bugs: ReadonlySet<PlacementBug>;
  /** Whether the fault phase runs (writers write, chunkservers crash). */
  readonly active: () => boolean;
  readonly timeline: (line: string) => void;
}

export class ChunkWorld {
  readonly stats: ChunkStats = {
    registrations: 0,
    heartbeats: 0,
    fullReports: 0,
    copiesDone: 0,
    deletesDone: 0,
    filesWritten: 0,
    chunksSealed: 0,
    pipelineBumps: 0,
    chunksAbandoned: 0,
    recoverySeals: 0,
    filesDeleted: 0,
    replicationChanges: 0,
    chunkserverCrashes: 0,
    disksLost: 0,
    permanentDeaths: 0,
    serversForgotten: 0,
    convergedMs: null,
  };
  private readonly services = new Map<NodeId, { epoch: number; service: ChunkService }>();
  private readonly servers: SimChunkserver[] = [];
  private readonly byId = new Map<number, SimChunkserver>();
  private readonly random: Prng;
  private readonly faultRandom: Prng;
  private readonly meanFaultIntervalMs: number;
  private readonly permanentDeathAllowed: boolean;
  private convergence: { startMs: number; done: (problem: string | null) => void } | null = null;

  constructor(private readonly deps: ChunkWorldDeps) {
    this.random = deps.random.split('chunks');
    this.faultRandom = deps.random.split('chunk-faults');
    const racks = this.random.intBetween(2, 3);
    const count = this.random.intBetween(4, 7);
    for (let n = 1; n <= count; n++) {
      const capacityBytes = this.random.intBetween(32, 96) * 64 * MiB;
      this.servers.push(new SimChunkserver(n, `rack${n % racks}`, capacityBytes, 1));
    }
    this.meanFaultIntervalMs = this.random.floatBetween(300, 1_500);
    this.permanentDeathAllowed = this.random.chance(0.6);
  }

  start(writers: number): void {
    this.schedule(0, 'chunk services step', () => this.stepServices());
    for (const cs of this.servers) this.schedule(this.random.floatBetween(0, HEARTBEAT_INTERVAL_MS), `cs${cs.n} heartbeat`, () => this.beat(cs));
    for (let w = 1; w <= writers; w++) new ChunkWriter(w, this, this.random.split(`writer/${w}`)).start();
    this.schedule(this.faultRandom.floatBetween(0, 2 * this.meanFaultIntervalMs), 'chunkserver fault', () => this.injectFault());
  }

  get world(): World {
    return this.deps.world;
  }

  get active(): boolean {
    return this.deps.active();
  }

  schedule(delayMs: number, what: string, run: () => void): void {
    this.deps.world.schedule(delayMs, { kind: 'control', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => what, run });
  }

  private fail(kind: 'chunk-placement' | 'chunk-replication' | 'chunk-stale-replica' | 'lease-recovery' | 'node-crash', message: string): void {
    this.deps.checker.fail(kind, message);
  }

  // ---------------------------------------------------------------- metadata side

  /** The host's chunk service (a new one per incarnation). */
  service(host: Host): ChunkService {
    const known = this.services.get(host.id);
    if (known !== undefined && known.epoch === host.epoch) return known.service;
    const epoch = host.epoch;
    const service = new ChunkService({
      // The stamp too (the server's proposeOp keeps it): a caller that passes one gets its exactly-once answer.
      propose: (op, session) => this.propose(host, epoch, op, session),
      loadView: () => {
        const meta = host.meta;
        if (meta === null || host.epoch !== epoch) return Promise.reject(new Error('node down'));
        return meta.managerView();
      },
      role: () => {
        const status = host.epoch === epoch && host.running ? host.raft?.status() : undefined;
        return { leader: status?.role === 'leader', term: status?.term ?? 0 };
      },
      random: this.random.split(`service/${host.id}/${epoch}`),
      limits: simChunkManagerLimits,
      bugs: this.deps.bugs,
    });
    this.services.set(host.id, { epoch, service });
    return service;
  }

  /** The host's clock (drifting hardware clock), which its chunk manager runs on. */
  private hostNowMs(host: Host): number {
    return host.hardware.offsetMs + this.deps.world.nowMs * host.hardware.rate;
  }

  /** Proposes `op` on the host's RaftNode; rejects after REQUEST_TIMEOUT_MS without an answer. */
  propose(host: Host, epoch: number, op: Op, session?: SessionStamp): Promise<FsResult> {
    const raft = host.raft;
    if (raft === null || host.epoch !== epoch) return Promise.reject(new Error('node down'));
    const data = encodeFsmCommand({ nowMs: Math.floor(this.deps.world.nowMs), op, ...(session !== undefined ? { session } : {}) });
    return new Promise((resolve, reject) => {
      let settled = false;
      this.schedule(REQUEST_TIMEOUT_MS, `proposal timeout (${op.type})`, () => {
        if (settled) return;
        settled = true;
        reject(new Error('proposal timed out'));
      });
      raft.propose(data).then(
        (r) => {
          if (settled) return;
          settled = true;
          resolve(r.result as FsResult);
        },
        (e: unknown) => {
          if (settled) return;
          settled = true;
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  private stepServices(): void {
    for (const host of this.deps.cluster.allHosts()) {
      if (!host.running || host.raft === null || host.meta === null) continue;
      const epoch = host.epoch;
      this.service(host)
        .step(this.hostNowMs(host), Math.floor(this.deps.world.nowMs)) // commands are stamped with world time
        .catch((e: unknown) => {
          if (host.epoch === epoch && host.running) this.fail('node-crash', `n${host.id}'s chunk service failed: ${describeError(e)}`);
        });
    }
    this.schedule(SERVICE_STEP_INTERVAL_MS, 'chunk services step', () => this.stepServices());
  }

  /**
   * Sends `run` to the node a client believes leads; on a refusal, follows the node's leader hint. Resolves
   * with run's result or rejects (unavailable, not leader, timeout).
   */
  request<T>(random: Prng, target: () => NodeId, retarget: (id: NodeId) => void, run: (host: Host, service: ChunkService) => Promise<T> | T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (error: unknown, value?: T): void => {
        if (settled) return;
        settled = true;
        if (error !== null) reject(error instanceof Error ? error : new Error(describeError(error)));
        else resolve(value as T);
      };
      this.schedule(REQUEST_TIMEOUT_MS, 'chunk request timeout', () => finish(new Error('timed out')));
      const nodeId = target();
      const elsewhere = (): void => {
        const hint = this.deps.cluster.host(nodeId)?.raft?.status().lead ?? 0;
        retarget(hint !== 0 && hint !== nodeId ? hint : random.pick(this.deps.cluster.addressableIds()));
      };
      sendRequest(
        { world: this.deps.world, cluster: this.deps.cluster },
        random,
        nodeId,
        (host) => {
          const service = this.service(host);
          if (service.current === null) {
            elsewhere();
            return finish(new Error('not the leader'));
          }
          Promise.resolve()
            .then(() => run(host, service))
            .then(
              (value) => finish(null, value),
              (e: unknown) => {
                if (e instanceof NotLeaderError) elsewhere();
                finish(e);
              },
            );
        },
        () => {
          elsewhere();
          finish(new Error('unavailable'));
        },
      );
    });
  }

  // ---------------------------------------------------------------- chunkservers

  chunkserver(id: number): SimChunkserver | undefined {
    return this.byId.get(id);
  }

  private beat(cs: SimChunkserver): void {
    this.schedule(HEARTBEAT_INTERVAL_MS, `cs${cs.n} heartbeat`, () => this.beat(cs));
    if (!cs.up || cs.busy) return;
    cs.busy = true;
    const epoch = cs.epoch;
    const retarget = (id: NodeId): void => {
      cs.target = id;
    };
    const done = (): void => {
      if (cs.epoch === epoch) cs.busy = false;
    };
    if (cs.id === null) {
      this.request(this.random, () => cs.target, retarget, (_host, service) =>
        service.register({ address: cs.address, rack: cs.rack, capacityBytes: cs.capacityBytes, usedBytes: cs.usedBytes }),
      ).then(
        (result) => {
          if (cs.epoch === epoch && result.ok && cs.id === null) {
            cs.id = (result.value as { id: number }).id;
            this.byId.set(cs.id, cs);
            this.stats.registrations++;
          }
          done();
        },
        done,
      );
      return;
    }
    const id = cs.id;
    cs.beats++;
    const full = cs.needFull || cs.beats % FULL_REPORT_EVERY === 0;
    const changed = new Map(cs.changed);
    const usage = { capacityBytes: cs.capacityBytes, usedBytes: cs.usedBytes };
    const report = full
      ? { full: true, chunks: [...cs.disk].map(([handle, c]) => reported(handle, c)) }
      : {
          full: false,
          chunks: [...changed].filter(([handle, v]) => v > 0 && cs.disk.has(handle)).map(([handle]) => reported(handle, cs.disk.get(handle)!)),
          removed: [...changed].filter(([, v]) => v === 0).map(([handle]) => handle),
        };
    this.request(this.random, () => cs.target, retarget, async (host, service) => {
      const nowMs = this.hostNowMs(host);
      // As the server does it: an id the manager's view does not know yet reloads the view once.
      const beat = await service.exchange(nowMs, (c) => c.heartbeat(id, nowMs, usage));
      const reported = full || report.chunks.length > 0 || (report.removed?.length ?? 0) > 0 ? await service.exchange(nowMs, (c) => c.chunkReport(id, nowMs, report)) : null;
      const reply: Reply = reported === null ? beat : { commands: [...beat.commands, ...reported.commands], fullReportWanted: reported.fullReportWanted };
      this.audit(host, service, id, reply);
      return reply;
    }).then(
      (reply) => {
        done();
        if (cs.epoch !== epoch) return;
        this.stats.heartbeats++;
        if (full) this.stats.fullReports++;
        if (full) cs.needFull = false;
        for (const [handle, version] of changed) if (cs.changed.get(handle) === version) cs.changed.delete(handle);
        if (reply.fullReportWanted) cs.needFull = true;
        for (const command of reply.commands) this.execute(cs, command);
      },
      () => {
        // As the real agent: a failed exchange keeps its unreported changes for the next one (above), and asks
        // for no full report.
        done();
      },
    );
  }

  /** chunk-placement: a copy ordered onto a server the leader's own view lists as a replica. */
  private audit(host: Host, service: ChunkService, source: number, reply: Reply): void {
    const view: ClusterView | undefined = service.current?.currentView();
    if (view === undefined) return;
    for (const c of reply.commands) {
      if (c.kind !== 'replicate') continue;
      const placement = view.chunks.get(c.handle);
      if (placement !== undefined && placement.replicas.includes(c.target)) {
        this.fail(
          'chunk-placement',
          `n${host.id}'s chunk manager ordered server ${source} to copy chunk ${c.handle} v${c.version} to server ${c.target}, which is already one of its replicas [${placement.replicas.join(',')}]: two replicas on one server`,
        );
      }
    }
  }

  private execute(cs: SimChunkserver, command: ChunkserverCommand): void {
    if (command.kind === 'recover') {
      // Lease recovery, as the agent does it: a query re-reports the replica; a seal cuts and seals it.
      const held = cs.disk.get(command.handle);
      if (held === undefined) {
        cs.changed.set(command.handle, 0);
        return;
      }
      const L = command.lengthBytes;
      if (L !== undefined && held.sealed !== true && held.version <= command.version && held.lengthBytes >= L) {
        cs.store(command.handle, { version: command.version, lengthBytes: L, sealed: true });
        this.stats.recoverySeals++;
      } else {
        cs.changed.set(command.handle, held.version);
      }
      return;
    }
    if (command.kind === 'delete') {
      const held = cs.disk.get(command.handle);
      if (held !== undefined && held.version <= command.version) {
        cs.remove(command.handle);
        this.stats.deletesDone++;
      }
      return;
    }
    const epoch = cs.epoch;
    this.schedule(this.random.floatBetween(COPY_LATENCY_MIN_MS, COPY_LATENCY_MAX_MS), `cs${cs.n} copies chunk ${command.handle}`, () => {
      const held = cs.disk.get(command.handle);
      const target = this.byId.get(command.target);
      if (cs.epoch !== epoch || !cs.up || held === undefined || held.version !== command.version) return;
      if (target === undefined || !target.up) return;
      const existing = target.disk.get(command.handle);
      if (existing !== undefined && existing.version >= held.version) return;
      target.store(command.handle, { ...held });
      this.stats.copiesDone++;
    });
  }

  private injectFault(): void {
    if (!this.active) return;
    this.schedule(this.faultRandom.floatBetween(0, 2 * this.meanFaultIntervalMs), 'chunkserver fault', () => this.injectFault());
    const candidates = this.servers.filter((cs) => cs.up && !cs.gone);
    if (candidates.length <= 3) return;
    const cs = this.faultRandom.pick(candidates);
    this.crash(cs);
    if (this.permanentDeathAllowed && this.stats.permanentDeaths === 0 && this.faultRandom.chance(0.15)) {
      cs.gone = true;
      this.stats.permanentDeaths++;
      this.deps.timeline(`chunkserver cs${cs.n} (id ${cs.id ?? '-'}) died for good`);
      this.forgetLater(cs);
      return;
    }
    const loseDisk = this.faultRandom.chance(0.25);
    const downMs = this.faultRandom.floatBetween(50, 2_500);
    this.deps.timeline(`chunkserver cs${cs.n} (id ${cs.id ?? '-'}) crashed${loseDisk ? ', losing its disk' : ''}, down ${downMs.toFixed(0)}ms`);
    this.schedule(downMs, `cs${cs.n} restart`, () => this.restart(cs, loseDisk));
  }

  /**
   * An operator forgets a server that died for good (rfsctl chunkservers forget): asked again every so often
   * until the leader agrees (the server is dead, no chunk lists it any more, and it has been silent long
   * enough). The healing checks then find no chunk listing a server the registry does not know.
   */
  private forgetLater(cs: SimChunkserver): void {
    this.schedule(FORGET_RETRY_MS, `forget cs${cs.n}`, () => {
      const id = cs.id;
      if (!this.active || id === null) return;
      this.request(this.faultRandom, () => cs.target, (t) => (cs.target = t), (host, service) => service.forget(id, this.hostNowMs(host))).then(
        (result) => {
          if (!result.ok) return this.forgetLater(cs);
          this.stats.serversForgotten++;
          this.deps.timeline(`chunkserver cs${cs.n} (id ${id}) forgotten`);
        },
        () => this.forgetLater(cs),
      );
    });
  }

  private crash(cs: SimChunkserver): void {
    cs.up = false;
    cs.epoch++;
    cs.busy = false;
    this.stats.chunkserverCrashes++;
  }

  private restart(cs: SimChunkserver, loseDisk: boolean): void {
    if (cs.up || cs.gone) return;
    if (loseDisk) {
      cs.disk.clear();
      this.stats.disksLost++;
    }
    cs.changed.clear();
    cs.up = true;
    cs.epoch++;
    cs.needFull = true;
  }

  /** The heal phase: every chunkserver that is down (and not gone for good) comes back with its disk. */
  heal(): void {
    for (const cs of this.servers) if (!cs.up && !cs.gone) this.restart(cs, false);
  }

  // ---------------------------------------------------------------- the healing checks

  /** Polls the chunk checks until they hold (then calls done(null)) or the deadline passes (done(problem)). */
  awaitConvergence(done: (problem: string | null) => void): void {
    this.convergence = { startMs: this.deps.world.nowMs, done };
    this.pollConvergence();
  }

  private pollConvergence(): void {
    const c = this.convergence;
    if (c === null) return;
    void this.problems().then(
      (problems) => {
        if (problems === null) {
          this.stats.convergedMs = this.deps.world.nowMs - c.startMs;
          this.convergence = null;
          c.done(null);
          return;
        }
        if (this.deps.world.nowMs - c.startMs > CHUNK_CONVERGENCE_DEADLINE_MS) {
          this.convergence = null;
          this.fail(problems.kind, `${problems.message} (${CHUNK_CONVERGENCE_DEADLINE_MS} ms after the cluster healed)`);
          c.done(problems.message);
          return;
        }
        this.schedule(CONVERGENCE_POLL_INTERVAL_MS, 'chunk convergence check', () => this.pollConvergence());
      },
      (e: unknown) => this.fail('node-crash', `the chunk check failed: ${describeError(e)}`),
    );
  }

  /** What still breaks the healing checks, judged on the leader's applied placement; null when nothing. */
  private async problems(): Promise<{ kind: 'chunk-replication' | 'chunk-stale-replica' | 'lease-recovery'; message: string } | null> {
    const leader = this.deps.cluster.leader();
    if (leader === null || leader.host.meta === null) return { kind: 'chunk-replication', message: 'no leader to judge chunk placement by' };
    const view = await loadClusterView(leader.host.metaKv, leader.host.meta.fsm.limits);
    const up = this.servers.filter((cs) => cs.up && cs.id !== null);
    const under: string[] = [];
    const stale: string[] = [];
    for (const chunk of view.chunks.values()) {
      const unknown = chunk.replicas.filter((id) => !view.servers.has(id));
      if (unknown.length > 0) under.push(`chunk ${chunk.handle} v${chunk.version} lists server(s) ${unknown.join(',')}, which the registry does not know (forgotten)`);
      if (!chunk.sealed || !chunk.fileLive) continue;
      const current = up.filter((cs) => cs.disk.get(chunk.handle)?.version === chunk.version);
      if (current.length === 0) continue; // every copy is lost: nothing to re-replicate from
      const listedCurrent = chunk.replicas.filter((id) => current.some((cs) => cs.id === id));
      // Servers that could hold a replica: those that do, and those with room for one.
      const possible = up.filter((cs) => current.includes(cs) || cs.capacityBytes - cs.usedBytes >= chunk.lengthBytes).length;
      const need = Math.min(chunk.replication, possible);
      if (listedCurrent.length < need) under.push(`chunk ${chunk.handle} v${chunk.version}: ${listedCurrent.length}/${need} good listed replicas [${chunk.replicas.join(',')}]`);
      for (const cs of up) {
        const held = cs.disk.get(chunk.handle);
        if (held !== undefined && held.version < chunk.version) stale.push(`server ${cs.id} keeps chunk ${chunk.handle} at v${held.version} < v${chunk.version}`);
        // Surplus: a live server keeps an unlisted copy at the current version while enough are listed (a trim
        // to a lowered factor, a rebalancing move's source): it must be deleted, not left on the disk.
        else if (held?.version === chunk.version && listedCurrent.length >= chunk.replication && !chunk.replicas.includes(cs.id!) && view.servers.get(cs.id!)?.state === 'live')
          stale.push(`server ${cs.id} keeps an unlisted (surplus) copy of chunk ${chunk.handle} v${chunk.version}, listed on [${chunk.replicas.join(',')}]`);
      }
    }
    // Orphans: replicas of chunks no file has any more (deleted files, abandoned chunks) must be deleted too.
    for (const cs of up) {
      for (const handle of cs.disk.keys()) if (!view.chunks.has(handle)) stale.push(`server ${cs.id} keeps chunk ${handle}, which no file has`);
    }
    const unrecovered = filesAwaitingRecovery(view, Math.floor(this.deps.world.nowMs));
    const some = (items: string[]): string => `${items.slice(0, 3).join('; ')}${items.length > 3 ? ` (+${items.length - 3})` : ''}`;
    if (under.length > 0) return { kind: 'chunk-replication', message: `under-replicated: ${some(under)}` };
    if (stale.length > 0) return { kind: 'chunk-stale-replica', message: `stale replicas: ${some(stale)}` };
    if (unrecovered.length > 0) return { kind: 'lease-recovery', message: `files whose writer is gone keep unsealed chunks: ${some(unrecovered.map((f) => `file ${f}`))}` };
    return null;
  }
}

/** A writer: files under a lease, chunk by chunk (allocate, write to the replicas, maybe a new pipeline, seal). */
class ChunkWriter {
  private target: NodeId;
  private files = 0;
  private readonly written: string[] = [];

  constructor(
    readonly w: number,
    private readonly chunks: ChunkWorld,
    private readonly random: Prng,
  ) {
    this.target = 1;
  }

  start(): void {
    this.next(this.random.floatBetween(0, WRITER_THINK_MAX_MS));
  }

  private next(delayMs: number): void {
    this.chunks.schedule(delayMs, `writer ${this.w} next file`, () => {
      if (!this.chunks.active) return;
      const run =
        this.written.length > 2 && this.random.chance(0.25)
          ? this.deleteOne()
          : this.written.length > 0 && this.random.chance(0.1)
            ? this.changeReplication()
            : this.writeFile();
      void run.finally(() => this.next(this.random.floatBetween(1, WRITER_THINK_MAX_MS)));
    });
  }

  private call<T>(run: (host: Host, service: ChunkService) => Promise<T> | T): Promise<T> {
    return this.chunks.request(this.random, () => this.target, (id) => (this.target = id), run);
  }

  private propose(op: Op): Promise<FsResult> {
    return this.call((host) => this.chunks.propose(host, host.epoch, op));
  }

  private async deleteOne(): Promise<void> {
    const i = this.random.int(this.written.length);
    const path = this.written[i]!;
    try {
      const r = await this.propose({ type: 'unlink', path });
      if (r.ok || r.code === 'ENOENT') this.written.splice(i, 1);
      if (r.ok) this.chunks.stats.filesDeleted++;
    } catch {
      // unknown outcome: tried again some other time
    }
  }

  /** An operator's setattr: a written file's replication factor changes (the leader copies or trims to it). */
  private async changeReplication(): Promise<void> {
    const path = this.written[this.random.int(this.written.length)]!;
    try {
      const r = await this.propose({ type: 'setattr', path, replication: this.random.pick([1, 2, 3]) });
      if (r.ok) this.chunks.stats.replicationChanges++;
    } catch {
      // unknown outcome: either factor is fine
    }
  }

  private async writeFile(): Promise<void> {
    const path = `/w${this.w}.${++this.files}`;
    const holder = `writer${this.w}`;
    const replication = this.random.pick([1, 2, 3, 3]);
    try {
      const created = await this.propose({ type: 'create', path, replication, lease: { holder, durationMs: WRITER_LEASE_MS } });
      if (!created.ok) return;
      this.written.push(path);
      const count = this.random.intBetween(1, 2);
      for (let i = 0; i < count; i++) {
        if (!(await this.writeChunk(path, holder, replication))) return;
      }
      // As FileWriter does when a file ends before the chunk it allocated ahead: the replicas were created
      // (empty, unsealed), then the chunk is abandoned and they are orphans for garbage collection.
      if (this.random.chance(0.3) && !(await this.abandonAhead(path, holder, replication))) return;
      const complete = await this.propose({ type: 'completeFile', path, holder });
      if (complete.ok) this.chunks.stats.filesWritten++;
    } catch {
      // a timeout or a refusal: the file is abandoned (its chunks stay unsealed)
    }
  }

  private async writeChunk(path: string, holder: string, replication: number): Promise<boolean> {
    const allocated = await this.call((_host, service) => service.allocateChunk({ path, holder, replication }));
    if (!allocated.ok) return false;
    const { handle, replicas } = allocated.value;
    let version = allocated.value.version;
    const lengthBytes = this.random.intBetween(1, 8) * MiB;
    let wrote = this.writeTo(replicas, handle, version, lengthBytes);
    if (wrote.length === 0) return false;
    // A pipeline failure (or a replica that was down): a new version on the replicas that took the write.
    if (wrote.length < replicas.length || (wrote.length > 1 && this.random.chance(0.2))) {
      const next = wrote.length < replicas.length ? wrote : wrote.filter((id) => id !== this.random.pick(wrote));
      const bumped = await this.propose({ type: 'bumpChunkVersion', handle, holder, version, replicas: next });
      if (!bumped.ok) return false;
      this.chunks.stats.pipelineBumps++;
      version = (bumped.value as { version: number }).version;
      wrote = this.writeTo(next, handle, version, lengthBytes);
      if (wrote.length === 0) return false;
    }
    const sealed = await this.propose({ type: 'sealChunk', handle, holder, version, lengthBytes, checksum: 0 });
    if (sealed.ok) this.chunks.stats.chunksSealed++;
    return sealed.ok;
  }

  private async abandonAhead(path: string, holder: string, replication: number): Promise<boolean> {
    const allocated = await this.call((_host, service) => service.allocateChunk({ path, holder, replication }));
    if (!allocated.ok) return false;
    const { handle, replicas, version } = allocated.value;
    this.writeTo(replicas, handle, version, 0);
    const abandoned = await this.propose({ type: 'abandonChunk', path, holder, handle });
    if (abandoned.ok) this.chunks.stats.chunksAbandoned++;
    return abandoned.ok;
  }

  /** Writes the chunk to every replica that is up; returns those. */
  private writeTo(replicas: readonly number[], handle: number, version: number, lengthBytes: number): number[] {
    const wrote: number[] = [];
    for (const id of replicas) {
      const cs = this.chunks.chunkserver(id);
      if (cs === undefined || !cs.up) continue;
      cs.store(handle, { version, lengthBytes });
      wrote.push(id);
    }
    return wrote;
  }
}

function reported(handle: number, c: StoredChunk): { handle: number; version: number; lengthBytes: number; sealed?: boolean; checksum?: number } {
  const base = { handle, version: c.version, lengthBytes: c.lengthBytes };
  return c.sealed === true ? { ...base, sealed: true, checksum: simChecksum(c.lengthBytes) } : base;
}

/**
 * The lease-recovery check (both workloads, after healing): live files whose writer is gone (no lease, an
 * expired one, or the recovery holder's) that still keep an unsealed chunk. `nowMs` in stamped time (the
 * simulator stamps commands with world time).
 */
export function filesAwaitingRecovery(view: ClusterView, nowMs: number): number[] {
  const out = new Set<number>();
  for (const chunk of view.chunks.values()) {
    if (chunk.sealed || !chunk.fileLive) continue;
    const lease = view.leases?.get(chunk.fileId);
    if (lease === undefined || lease.holder === RECOVERY_HOLDER || lease.expiresMs <= nowMs) out.add(chunk.fileId);
  }
  return [...out];
}
