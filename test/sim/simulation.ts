/**
 * One simulated run: a seed in, a verdict out. Builds the world from the seed's scenario, runs the fault
 * phase (workload + faults + membership changes), then the heal phase (everything repaired; a leader must
 * be elected and a fresh proposal applied on every live member before LIVENESS_DEADLINE_MS), checking every
 * invariant after every event.
 */
import type { Logger } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import { InvariantChecker, type CheckerStats, type Violation } from './checkers.ts';
import { Cluster, describeError, type ClusterStats, type Host } from './cluster.ts';
import { FaultInjector, type FaultStats } from './faults.ts';
import { encodeCommand } from './kv.ts';
import { MembershipOperator, isMember, type MembershipStats } from './membership.ts';
import { SimNetwork, type NetworkStats } from './network.ts';
import { Prng } from './prng.ts';
import { LIVENESS_DEADLINE_MS, describeScenario, makeScenario, type Scenario, type SimOptions } from './scenario.ts';
import { MetadataChecker, MetadataClient, type MetadataCheckerStats } from './metadata.ts';
import { ChunkWorld, type ChunkStats } from './chunks.ts';
import { DataWorld, dataScenario, type DataStats } from './data.ts';
import { UncheckedMetadata } from './data-metadata.ts';
import { Client, sendRequest, type OperationRecord, type WorkloadStats } from './workload.ts';
import { ANY_EPOCH, NO_NODE, World, drainMicrotasks, formatTime } from './world.ts';

/** A run that needs more events than this is stuck in a loop: reported as a liveness failure. */
export const EVENTS_PER_RUN_MAX = 5_000_000;
/** How often the heal phase checks for a leader and the probe's progress. */
const LIVENESS_POLL_INTERVAL_MS = 20;
/** A liveness probe not acknowledged within this time is sent again (possibly to a new leader). */
const PROBE_TIMEOUT_MS = 1_000;

export interface RunStats {
  readonly events: number;
  readonly eventsDropped: number;
  readonly network: NetworkStats;
  readonly faults: FaultStats;
  readonly cluster: ClusterStats;
  readonly membership: MembershipStats;
  readonly workload: WorkloadStats;
  readonly checks: CheckerStats;
  /** Metadata workload only. */
  readonly metadata?: MetadataCheckerStats;
  readonly chunks?: ChunkStats;
  /** Data workload only. */
  readonly data?: DataStats;
  readonly highestCommit: number;
  readonly finalConfiguration: string;
  /** Virtual time from the start of the heal phase until the liveness probe was applied everywhere. */
  readonly healMs: number | null;
}

export interface RunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation?: Violation;
  readonly traceHash: string;
  readonly simulatedMs: number;
  readonly realMs: number;
  readonly stats: RunStats;
  readonly scenario: Scenario;
  readonly history: readonly OperationRecord[];
}

/** 'chunks': the metadata workload, after the Raft liveness probe, waiting for the chunk checks to hold. */
type Phase = 'faults' | 'heal' | 'chunks' | 'done';
/** Writers of chunked files in the metadata workload. */
const CHUNK_WRITERS = 2;

export async function runSeed(seed: number, options: SimOptions = {}): Promise<RunResult> {
  return new Simulation(seed, options).run();
}

class Simulation {
  private readonly root: Prng;
  private readonly scenario: Scenario;
  private readonly world: World;
  private readonly checker: InvariantChecker;
  private readonly metadata: MetadataChecker | null;
  /** Metadata workload: chunkservers, writers and the chunk checks. */
  private readonly chunks: ChunkWorld | null;
  /** Data workload: real chunkservers, writers, readers and the data checks. */
  private readonly data: DataWorld | null;
  private readonly network: SimNetwork;
  private readonly cluster: Cluster;
  private readonly faults: FaultInjector;
  private readonly membership: MembershipOperator;
  private readonly history: OperationRecord[] = [];
  private readonly workloadStats: WorkloadStats = { writesInvoked: 0, writesAcked: 0, readsInvoked: 0, readsOk: 0, timeouts: 0, refusals: 0 };
  private readonly timeline: (line: string) => void;
  private phase: Phase = 'faults';
  private healStartMs = 0;
  private healDurationMs: number | null = null;
  private finalConfiguration = 'unknown';
  private readonly livenessDeadlineMs: number;
  private probe: { index: number | null; inFlight: boolean; attempts: number } = { index: null, inFlight: false, attempts: 0 };

  constructor(
    readonly seed: number,
    private readonly options: SimOptions,
  ) {
    this.root = Prng.fromSeed(seed);
    const scenario = makeScenario(seed, this.root.split('scenario'), options);
    this.scenario = scenario.workloadKind === 'data' ? dataScenario(scenario) : scenario;
    this.livenessDeadlineMs = options.livenessDeadlineMs ?? LIVENESS_DEADLINE_MS;
    const sink = options.timeline;
    this.timeline = sink !== undefined ? (line) => sink(`${formatTime(this.world.nowMs)} ${line}`) : () => {};
    this.world = new World({
      gate: (event) => this.cluster.gate(event),
      defer: (event) => this.cluster.defer(event),
      onEventError: (event, error) => this.checker.fail('node-crash', `${event.describe?.() ?? event.kind} threw ${describeError(error)}`),
    });
    if (options.trace !== undefined) this.world.traceSink = options.trace;
    this.checker = new InvariantChecker(() => this.world.nowMs);
    const kind = this.scenario.workloadKind;
    this.metadata = kind === 'metadata' ? new MetadataChecker(this.checker) : kind === 'data' ? new UncheckedMetadata(this.checker) : null;
    this.network = new SimNetwork(this.world, this.root.split('network'), this.scenario.network, (m) => this.cluster.deliver(m));
    this.cluster = new Cluster({
      world: this.world,
      network: () => this.network,
      checker: this.checker,
      scenario: this.scenario,
      diskRandom: this.root.split('disk'),
      raftRandom: this.root.split('raft'),
      clockRandom: this.root.split('clock'),
      timeline: this.timeline,
      onLeaderElected: (host, term) => this.faults.onLeaderElected(host, term),
      ...(this.metadata !== null ? { metadata: { checker: this.metadata, bugs: this.scenario.fsmBugs, placementBugs: this.scenario.placementBugs } } : {}),
      ...(options.trace !== undefined ? { logger: traceLogger(options.trace, () => this.world.nowMs) } : {}),
    });
    this.chunks =
      kind !== 'metadata'
        ? null
        : new ChunkWorld({
            world: this.world,
            cluster: this.cluster,
            checker: this.checker,
            random: this.root.split('chunk-world'),
            bugs: this.scenario.placementBugs,
            active: () => this.phase === 'faults',
            timeline: this.timeline,
          });
    this.data =
      kind !== 'data'
        ? null
        : new DataWorld({
            world: this.world,
            cluster: this.cluster,
            checker: this.checker,
            random: this.root.split('data-world'),
            seed,
            dataBugs: this.scenario.dataBugs,
            placementBugs: this.scenario.placementBugs,
            active: () => this.phase === 'faults',
            timeline: this.timeline,
          });
    const faultRandom = this.root.split('faults');
    this.faults = new FaultInjector({
      world: this.world,
      cluster: this.cluster,
      network: this.network,
      checker: this.checker,
      plan: this.scenario.faults,
      random: faultRandom,
      timeline: this.timeline,
      active: () => this.phase === 'faults',
      membershipBusy: () => this.membership.busy,
    });
    this.membership = new MembershipOperator({
      world: this.world,
      cluster: this.cluster,
      random: this.root.split('membership'),
      meanIntervalMs: this.scenario.faults.membershipMeanIntervalMs,
      minVoters: Math.min(this.scenario.clusterSize, 3),
      firstSpareId: this.scenario.clusterSize + 1,
      timeline: this.timeline,
      phase: () => (this.phase === 'chunks' ? 'heal' : this.phase),
    });
  }

  async run(): Promise<RunResult> {
    const startedMs = performance.now();
    const onUnhandled = (reason: unknown): void => this.checker.fail('node-crash', `unhandled rejection: ${describeError(reason)}`);
    process.on('unhandledRejection', onUnhandled);
    try {
      this.setUp();
      await this.loop();
      this.finalConfiguration = this.describeConfiguration();
      this.cluster.stopAll();
      await drainMicrotasks();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    return this.result(performance.now() - startedMs);
  }

  private setUp(): void {
    const { clusterSize, workload, faults } = this.scenario;
    this.timeline(`scenario\n${describeScenario(this.scenario)}${this.data !== null ? `\n${this.data.describe()}` : ''}`);
    const voters: NodeId[] = [];
    for (let id = 1; id <= clusterSize; id++) voters.push(id);
    for (const id of voters) this.cluster.start(this.cluster.addHost(id, voters));
    const workloadRandom = this.root.split('workload');
    const env = {
      world: this.world,
      cluster: this.cluster,
      checker: this.checker,
      profile: workload,
      history: this.history,
      stats: this.workloadStats,
      active: () => this.phase === 'faults',
    };
    const metadata = this.metadata;
    for (let c = 1; c <= workload.clients; c++) {
      const random = workloadRandom.split(`client/${c}`);
      if (metadata === null) new Client(c, env, random).start();
      else new MetadataClient(c, { ...env, metadata }, random).start();
    }
    this.chunks?.start(CHUNK_WRITERS);
    this.data?.start();
    this.faults.start();
    if (faults.membership) this.membership.start();
    this.control(this.scenario.faultPhaseMs, 'begin heal phase', () => this.beginHeal());
  }

  private async loop(): Promise<void> {
    await drainMicrotasks(); // the nodes' start() runs until its first disk access
    while (this.phase !== 'done') {
      const event = this.world.step();
      if (event === null) {
        this.checker.fail('liveness', 'the event queue ran dry');
        break;
      }
      // A dropped or deferred event ran no code: nothing to drain or poll.
      if (!this.world.lastEventRan) continue;
      await drainMicrotasks();
      if (event.nodeId !== NO_NODE) this.cluster.poll(event.nodeId);
      if (this.checker.violation !== null) break;
      if (this.world.eventsRun >= EVENTS_PER_RUN_MAX) {
        this.checker.fail('liveness', `no verdict after ${EVENTS_PER_RUN_MAX} events`);
        break;
      }
    }
  }

  private control(delayMs: number, what: string, run: () => void): void {
    this.world.schedule(delayMs, { kind: 'control', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => what, run });
  }

  // ---- heal phase ----

  private beginHeal(): void {
    this.phase = 'heal';
    this.healStartMs = this.world.nowMs;
    this.timeline('heal: partitions healed, paused nodes resumed, crashed nodes restarted');
    this.network.setPartition(null);
    this.network.setProfile(this.scenario.healNetwork);
    for (const host of this.cluster.allHosts()) {
      this.cluster.resume(host);
      if (host.state === 'down' && !host.retired && !host.dead) this.cluster.restart(host);
    }
    this.chunks?.heal();
    this.data?.heal();
    this.control(LIVENESS_POLL_INTERVAL_MS, 'liveness check', () => this.checkLiveness());
  }

  private checkLiveness(): void {
    if (this.phase !== 'heal') return;
    if (this.world.nowMs - this.healStartMs > this.livenessDeadlineMs) {
      this.checker.fail('liveness', this.livenessDiagnosis());
      this.phase = 'done';
      return;
    }
    this.membership.step();
    const leader = this.cluster.leader();
    if (leader !== null) this.restartNeededMembers(leader.status.confState);
    if (this.probe.index === null) {
      if (!this.probe.inFlight && leader !== null) this.sendProbe(leader.host);
    } else if (leader !== null && this.laggingMembers(leader.status.confState, this.probe.index).length === 0) {
      this.healDurationMs = this.world.nowMs - this.healStartMs;
      this.timeline(`liveness: probe at index ${this.probe.index} applied on every live member of n${leader.host.id}'s configuration`);
      if (this.data !== null) {
        this.phase = 'chunks';
        this.data.awaitConvergence((problem) => {
          if (problem === null) this.timeline(`data: chunks back to their factor, no stale or corrupt replica, every acknowledged file read back (${this.data?.stats.convergedMs ?? '?'} ms)`);
          this.phase = 'done';
        });
        return;
      }
      if (this.chunks === null) {
        this.phase = 'done';
        return;
      }
      this.phase = 'chunks';
      this.chunks.awaitConvergence((problem) => {
        if (problem === null) this.timeline(`chunks: every sealed chunk back to its replication factor, no stale replica (${this.chunks?.stats.convergedMs ?? '?'} ms)`);
        this.phase = 'done';
      });
      return;
    }
    this.control(LIVENESS_POLL_INTERVAL_MS, 'liveness check', () => this.checkLiveness());
  }

  /** A retired node that a configuration still names (a removal that did not stick) must serve again. */
  private restartNeededMembers(conf: Parameters<typeof isMember>[0]): void {
    for (const host of this.cluster.allHosts()) {
      if (host.state !== 'down' || host.dead || !isMember(conf, host.id)) continue;
      host.retired = false;
      this.timeline(`restart n${host.id}: the configuration still names it`);
      this.cluster.restart(host);
    }
  }

  private sendProbe(leader: Host): void {
    const attempt = ++this.probe.attempts;
    this.probe.inFlight = true;
    const value = `probe.${attempt}`;
    const data = encodeCommand({ key: 'probe', value });
    const floor = this.checker.floorNow();
    const done = (): void => {
      if (this.probe.attempts === attempt) this.probe.inFlight = false;
    };
    this.control(PROBE_TIMEOUT_MS, 'probe timeout', done);
    sendRequest(
      { world: this.world, cluster: this.cluster },
      this.root.split(`probe/${attempt}`),
      leader.id,
      (host) => {
        const raft = host.raft;
        if (raft === null) return done();
        raft.propose(data).then(
          (result) => {
            this.checker.onWriteAcked({ key: 'probe', value, data, index: result.index, term: result.term, floor });
            if (this.probe.index === null) {
              this.probe.index = result.index;
              this.timeline(`liveness: probe committed at index ${result.index} via n${host.id}`);
            }
            done();
          },
          () => done(),
        );
      },
      done,
    );
  }

  private laggingMembers(conf: Parameters<typeof isMember>[0], index: number): string[] {
    const lagging: string[] = [];
    for (const id of [...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext]) {
      const host = this.cluster.host(id);
      if (host === undefined || host.dead) continue;
      const applied = host.raft !== null && host.state === 'up' ? host.raft.status().applied : null;
      if (applied === null || applied < index) lagging.push(`n${id}(${host.state}${host.paused ? ',paused' : ''}, applied ${applied ?? '-'})`);
    }
    return [...new Set(lagging)];
  }

  private livenessDiagnosis(): string {
    const leader = this.cluster.leader();
    const where = `within ${this.livenessDeadlineMs}ms of healing`;
    if (leader === null) {
      const states = this.cluster
        .allHosts()
        .map((h) => `n${h.id}:${h.retired ? 'retired' : h.dead ? 'dead' : h.state}${h.raft !== null ? `/${h.raft.status().role}/t${h.raft.status().term}` : ''}`)
        .join(' ');
      return `no leader ${where} [${states}]`;
    }
    const progress = [...leader.status.progress]
      .map(([id, p]) => `n${id}:${p.state} match=${p.match} next=${p.next}`)
      .join(' ');
    if (this.probe.index === null) {
      return `n${leader.host.id} leads term ${leader.status.term} but no proposal committed ${where}; its view: ${progress}`;
    }
    const lagging = this.laggingMembers(leader.status.confState, this.probe.index);
    return `probe at index ${this.probe.index} not applied ${where} on ${lagging.join(', ')}; n${leader.host.id}'s view: ${progress}`;
  }

  // ---- result ----

  private describeConfiguration(): string {
    const leader = this.cluster.leader();
    if (leader === null) return 'no leader';
    const conf = leader.status.confState;
    const learners = conf.learners.length > 0 ? ` learners [${conf.learners.join(',')}]` : '';
    const outgoing = conf.votersOutgoing.length > 0 ? ` outgoing [${conf.votersOutgoing.join(',')}]` : '';
    return `n${leader.host.id} leads term ${leader.status.term}: voters [${conf.voters.join(',')}]${outgoing}${learners}`;
  }

  private result(realMs: number): RunResult {
    const violation = this.checker.violation;
    const stats: RunStats = {
      events: this.world.eventsRun,
      eventsDropped: this.world.eventsDropped,
      network: this.network.stats,
      faults: this.faults.stats,
      cluster: { ...this.cluster.stats, snapshotStreams: this.cluster.collectSnapshotStreamStats() },
      membership: this.membership.stats,
      workload: this.workloadStats,
      checks: this.checker.stats,
      ...(this.metadata !== null ? { metadata: this.metadata.stats } : {}),
      ...(this.chunks !== null ? { chunks: this.chunks.stats } : {}),
      ...(this.data !== null ? { data: this.data.stats } : {}),
      highestCommit: this.checker.highestCommit,
      finalConfiguration: this.finalConfiguration,
      healMs: this.healDurationMs,
    };
    return {
      seed: this.seed,
      ok: violation === null,
      ...(violation !== null ? { violation } : {}),
      traceHash: this.world.traceHash(),
      simulatedMs: this.world.nowMs,
      realMs,
      stats,
      scenario: this.scenario,
      history: this.history,
    };
  }
}

function traceLogger(sink: (line: string) => void, now: () => number): Logger {
  const log = (level: string) => (obj: object, msg?: string) => sink(`${formatTime(now())} [${level}] ${msg ?? ''} ${JSON.stringify(obj, replacer)}`);
  return { debug: () => {}, info: log('info'), warn: log('warn'), error: log('error') };
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  return value;
}
