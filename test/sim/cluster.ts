/**
 * The simulated machines: one Host per node id, owning a disk and a hardware clock that survive crashes,
 * and a sequence of incarnations (RaftNode + LogStore + state machine) that do not.
 *
 * Invariants:
 * - `epoch` changes whenever an incarnation starts or dies; an event stamped with an old epoch is dropped,
 *   so a crashed incarnation's timers and fsync completions never run.
 * - A paused host runs nothing: its events wait in `deferred` until it resumes (messages may instead be
 *   lost, per scenario). Its clock keeps running, so it wakes up late, like a process after SIGSTOP.
 * - Messages reach only a host that is up (started and listening); a starting host is not yet listening.
 */
import { RaftNode, type SnapshotStreamStats } from '../../src/raft/node.ts';
import type { Logger, NodeStatus } from '../../src/raft/node-api.ts';
import type { Message, NodeId } from '../../src/raft/types.ts';
import { CorruptLogError } from '../../src/storage/log-store.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import type { InvariantChecker } from './checkers.ts';
import { CLOCK_START_OFFSET_MS_MAX, SimClock, type HardwareClock } from './clock.ts';
import { ObservedLogStore } from './durable-log.ts';
import { KvStateMachine } from './kv.ts';
import { ObservedMetadataStateMachine, type MetadataChecker } from './metadata.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { FsmBug } from '../../src/fsm/bugs.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { SimNetwork } from './network.ts';
import type { Prng } from './prng.ts';
import type { Scenario } from './scenario.ts';
import { ANY_EPOCH, type Gate, type SimEvent, type World } from './world.ts';

export type HostState = 'down' | 'starting' | 'up';
export type CorruptionState = 'none' | 'injected' | 'detected' | 'undetected';

export class Host {
  epoch = 0;
  state: HostState = 'down';
  paused = false;
  /** Removed from the cluster by a membership change and stopped; restarted only if a config needs it. */
  retired = false;
  corruption: CorruptionState = 'none';
  incarnations = 0;
  raft: RaftNode | null = null;
  kv: KvStateMachine | null = null;
  /** Metadata workload: the incarnation's state machine, over `metaKv`. */
  meta: ObservedMetadataStateMachine | null = null;
  /** Metadata workload: the state machine's store, on this host's disk (atomic, synced writes). */
  readonly metaKv = new MemoryKv();
  readonly deferred: SimEvent[] = [];
  /** fsyncs on one disk complete in the order they were issued. */
  lastSyncCompletionMs = 0;
  lastRole = 'follower';
  lastTerm = 0;

  constructor(
    readonly id: NodeId,
    readonly disk: MemoryDisk,
    readonly hardware: HardwareClock,
    /** Founding members bootstrap with these voters; nodes added later start empty. */
    readonly initialVoters: readonly NodeId[] | undefined,
  ) {}

  /** Up, not paused: can serve right now. */
  get running(): boolean {
    return this.state === 'up' && !this.paused;
  }

  /** Down for good: its log was found corrupt. */
  get dead(): boolean {
    return this.corruption === 'detected';
  }
}

export interface ClusterStats {
  crashes: number;
  restarts: number;
  pauses: number;
  corruptionsDetected: number;
  /** Streamed snapshot transfers, summed over every incarnation (see collectSnapshotStreamStats). */
  snapshotStreams: SnapshotStreamStats;
}

function addStreamStats(into: SnapshotStreamStats, s: SnapshotStreamStats): void {
  for (const k of Object.keys(into) as (keyof SnapshotStreamStats)[]) into[k] += s[k];
}

export function emptySnapshotStreamStats(): SnapshotStreamStats {
  return { sendsStarted: 0, sendsFailed: 0, chunksSent: 0, bytesSent: 0, resends: 0, receivesStarted: 0, installs: 0, receivesAborted: 0 };
}

export interface ClusterDeps {
  readonly world: World;
  readonly network: () => SimNetwork;
  readonly checker: InvariantChecker;
  readonly scenario: Scenario;
  /** Disk latency and crash outcomes. */
  readonly diskRandom: Prng;
  /** Root of the per-node Raft randomness streams. */
  readonly raftRandom: Prng;
  readonly clockRandom: Prng;
  readonly timeline: (line: string) => void;
  /** Told when a poll first sees a host lead a term. */
  readonly onLeaderElected: (host: Host, term: number) => void;
  readonly logger?: Logger;
  /** Set for the metadata workload: nodes run the metadata state machine, checked against this model. */
  readonly metadata?: { readonly checker: MetadataChecker; readonly bugs: ReadonlySet<FsmBug>; readonly placementBugs?: ReadonlySet<PlacementBug> };
}

export class Cluster {
  readonly hosts = new Map<NodeId, Host>();
  readonly stats: ClusterStats = { crashes: 0, restarts: 0, pauses: 0, corruptionsDetected: 0, snapshotStreams: emptySnapshotStreamStats() };

  /** Adds the running nodes' streamed snapshot counters (stopped ones were added when they stopped). */
  collectSnapshotStreamStats(): SnapshotStreamStats {
    const total = { ...this.stats.snapshotStreams };
    for (const host of this.hosts.values()) if (host.raft !== null) addStreamStats(total, host.raft.snapshotStreamStats());
    return total;
  }

  constructor(private readonly deps: ClusterDeps) {}

  host(id: NodeId): Host | undefined {
    return this.hosts.get(id);
  }

  /** Hosts in id order (Map insertion order is creation order, which is id order here). */
  allHosts(): Host[] {
    return [...this.hosts.values()];
  }

  /** Node ids a client may try: every host not retired, whatever its state (clients cannot see crashes). */
  addressableIds(): NodeId[] {
    return this.allHosts()
      .filter((h) => !h.retired)
      .map((h) => h.id);
  }

  addHost(id: NodeId, initialVoters?: readonly NodeId[]): Host {
    if (this.hosts.has(id)) throw new Error(`host n${id} already exists`);
    const { scenario, clockRandom } = this.deps;
    const halfBound = scenario.clockDriftBoundPermille / 2 / 1000;
    const hardware: HardwareClock = {
      rate: scenario.clockDrift ? 1 + clockRandom.floatBetween(-halfBound, halfBound) : 1,
      offsetMs: clockRandom.int(CLOCK_START_OFFSET_MS_MAX),
    };
    let host: Host | null = null;
    const disk = new MemoryDisk({ syncScheduler: (complete) => this.scheduleSync(host as Host, complete) });
    host = new Host(id, disk, hardware, initialVoters);
    this.hosts.set(id, host);
    return host;
  }

  private scheduleSync(host: Host, complete: () => void): void {
    const { world, diskRandom, scenario } = this.deps;
    const d = scenario.disk;
    const latencyMs = diskRandom.chance(d.slowSyncProbability)
      ? diskRandom.floatBetween(d.syncMaxMs, Math.max(d.syncMaxMs, d.slowSyncMaxMs))
      : diskRandom.floatBetween(d.syncMinMs, d.syncMaxMs);
    const atMs = Math.max(world.nowMs + latencyMs, host.lastSyncCompletionMs);
    host.lastSyncCompletionMs = atMs;
    world.schedule(atMs - world.nowMs, {
      kind: 'sync',
      nodeId: host.id,
      epoch: host.epoch,
      describe: () => `n${host.id} fsync done`,
      run: complete,
    });
  }

  // ---- event gating (World hooks) ----

  gate(event: SimEvent): Gate {
    const host = this.hosts.get(event.nodeId);
    if (host === undefined) return 'drop';
    if (event.epoch !== ANY_EPOCH && event.epoch !== host.epoch) return 'drop';
    if (host.state === 'down') return 'drop';
    const addressed = event.kind === 'deliver' || event.kind === 'client';
    if (addressed && host.state !== 'up') return 'drop';
    if (host.paused) {
      if (event.kind === 'deliver' && !this.deps.scenario.faults.pausedNodeKeepsMessages) return 'drop';
      return 'defer';
    }
    return 'run';
  }

  defer(event: SimEvent): void {
    const host = this.hosts.get(event.nodeId);
    if (host === undefined) return;
    host.deferred.push(event);
  }

  deliver(message: Message): void {
    const host = this.hosts.get(message.to);
    host?.raft?.receive(message);
  }

  // ---- lifecycle ----

  /** Starts a new incarnation over the host's disk. Its start may fail with CorruptLogError. */
  start(host: Host): void {
    if (host.state !== 'down') throw new Error(`n${host.id} is already ${host.state}`);
    const { world, checker, scenario } = this.deps;
    host.epoch++;
    host.incarnations++;
    host.state = 'starting';
    host.paused = false;
    host.lastRole = 'follower';
    const epoch = host.epoch;
    const id = host.id;
    checker.onRestart(id);
    const store = new ObservedLogStore(new MemoryLogStore(host.disk), {
      onLoad: (loaded) => checker.onDurableLoad(id, loaded),
      onSave: (write) => checker.onDurableSave(id, write),
      onCompact: (index) => checker.onDurableCompact(id, index),
    });
    const metadata = this.deps.metadata;
    const meta = metadata !== undefined ? new ObservedMetadataStateMachine(id, host.metaKv, metadata.checker, checker) : null;
    const kv = meta === null ? new KvStateMachine(id, checker) : null;
    const alive = (): boolean => host.epoch === epoch && host.state !== 'down';
    const raft = new RaftNode({
      config: {
        id,
        random: this.deps.raftRandom.split(`${id}/${host.incarnations}`),
        electionTicks: scenario.electionTicks,
        heartbeatTicks: scenario.heartbeatTicks,
        preVote: scenario.preVote,
        checkQuorum: scenario.checkQuorum,
        readMode: scenario.readMode,
        clockDriftBoundPermille: scenario.clockDriftBoundPermille,
        appendMessageBytesMax: scenario.appendMessageBytesMax,
        inflightMessagesMax: scenario.inflightMessagesMax,
        snapshotChunkBytes: scenario.snapshotChunkBytes,
        bugs: scenario.bugs,
      },
      logStore: store,
      transport: this.deps.network().transportFor(id, alive),
      clock: new SimClock(world, id, epoch, host.hardware),
      stateMachine: meta ?? (kv as KvStateMachine),
      tickMs: scenario.tickMs,
      ...(host.initialVoters !== undefined ? { initialVoters: host.initialVoters } : {}),
      snapshotEveryEntries: scenario.snapshotEveryEntries,
      snapshotEveryBytes: scenario.snapshotEveryBytes,
      snapshotKeepEntries: scenario.snapshotKeepEntries,
      ...(this.deps.logger !== undefined ? { logger: this.deps.logger } : {}),
      onFatal: (error) => {
        if (alive()) checker.fail('node-crash', `n${id} stopped itself: ${describeError(error)}`);
      },
    });
    host.raft = raft;
    host.kv = kv;
    host.meta = meta;
    const opened = meta !== null && metadata !== undefined ? meta.open(metadata.bugs, metadata.placementBugs) : Promise.resolve();
    opened.then(() => (alive() ? raft.start() : undefined)).then(
      () => {
        if (!alive()) return;
        host.state = 'up';
        if (host.corruption === 'injected') {
          host.corruption = 'undetected';
          this.deps.timeline(`n${id} started despite its corrupted record (the record was not loaded)`);
        }
      },
      (error: unknown) => {
        if (!alive()) return;
        this.onStartFailed(host, error);
      },
    );
  }

  private onStartFailed(host: Host, error: unknown): void {
    host.raft?.stop();
    host.raft = null;
    host.kv = null;
    host.meta = null;
    host.state = 'down';
    host.epoch++;
    if (error instanceof CorruptLogError && (host.corruption === 'injected' || host.corruption === 'undetected')) {
      host.corruption = 'detected';
      this.stats.corruptionsDetected++;
      this.deps.timeline(`n${host.id} refused to start: ${error.message} (key ${error.key}); it stays down`);
      return;
    }
    const kind = error instanceof CorruptLogError ? 'durability' : 'node-crash';
    this.deps.checker.fail(kind, `n${host.id} failed to start: ${describeError(error)}`);
  }

  /** Process crash: the incarnation dies, unsynced writes are lost (maybe torn). */
  crash(host: Host): void {
    if (host.state === 'down') return;
    this.stats.crashes++;
    this.stopIncarnation(host);
    host.disk.crash(this.deps.diskRandom, { tornWriteProbability: this.deps.scenario.disk.tornWriteProbability });
  }

  restart(host: Host): void {
    if (host.state !== 'down' || host.dead) return;
    this.stats.restarts++;
    this.start(host);
  }

  /** Stops a node removed from the cluster. Its disk is kept, in case a configuration still needs it. */
  retire(host: Host): void {
    host.retired = true;
    if (host.state !== 'down') this.stopIncarnation(host);
  }

  private stopIncarnation(host: Host): void {
    const raft = host.raft;
    host.epoch++;
    host.state = 'down';
    host.paused = false;
    host.raft = null;
    host.kv = null;
    host.meta = null;
    // Requests waiting in a paused process's socket are refused now.
    for (const event of host.deferred.splice(0)) event.onDrop?.();
    raft?.stop();
    if (raft !== null && raft !== undefined) addStreamStats(this.stats.snapshotStreams, raft.snapshotStreamStats());
  }

  pause(host: Host): void {
    if (host.state !== 'up' || host.paused) return;
    this.stats.pauses++;
    host.paused = true;
  }

  resume(host: Host): void {
    if (!host.paused) return;
    host.paused = false;
    this.deps.world.requeue(host.deferred.splice(0));
  }

  // ---- observation ----

  /** Feeds one host's status to the checkers; notes role changes on the timeline. */
  poll(id: NodeId): void {
    const host = this.hosts.get(id);
    const raft = host?.raft;
    if (host === undefined || raft === undefined || raft === null || host.state !== 'up') return;
    const status = raft.status();
    this.deps.checker.onStatus(status, (index) => raft.termAt(index));
    if (status.role !== host.lastRole || (status.role === 'leader' && status.term !== host.lastTerm)) {
      if (status.role === 'leader') {
        this.deps.timeline(`n${id} became leader of term ${status.term} (commit ${status.commit}, last index ${status.lastIndex})`);
        this.deps.onLeaderElected(host, status.term);
      } else if (host.lastRole === 'leader') this.deps.timeline(`n${id} stepped down in term ${status.term}`);
      host.lastRole = status.role;
    }
    host.lastTerm = status.term;
  }

  /** The leader with the highest term among running hosts, with its status. */
  leader(): { host: Host; status: NodeStatus } | null {
    let best: { host: Host; status: NodeStatus } | null = null;
    for (const host of this.hosts.values()) {
      if (!host.running || host.raft === null) continue;
      const status = host.raft.status();
      if (status.role !== 'leader') continue;
      if (best === null || status.term > best.status.term) best = { host, status };
    }
    return best;
  }

  stopAll(): void {
    for (const host of this.hosts.values()) if (host.state !== 'down') this.stopIncarnation(host);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
