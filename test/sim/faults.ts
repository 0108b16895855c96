/**
 * Fault injection for the fault phase: crashes (with at most one disk corruption per run), pauses and
 * partitions, each kind on or off per the scenario, arriving as a Poisson process from the faults stream.
 * Every fault schedules its own repair, so the cluster keeps getting chances to make progress.
 */
import type { NodeId } from '../../src/raft/types.ts';
import type { InvariantChecker } from './checkers.ts';
import type { Cluster, Host } from './cluster.ts';
import { makePartition, type SimNetwork } from './network.ts';
import type { Prng } from './prng.ts';
import type { FaultPlan } from './scenario.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';
import { hasLiveQuorum } from './membership.ts';

/** Probability that a crash, pause or partition picks the current leader (the interesting victim). */
const LEADER_VICTIM_PROBABILITY = 0.5;

export interface FaultStats {
  crashes: number;
  pauses: number;
  partitions: number;
  corruptions: number;
}

export interface FaultEnv {
  readonly world: World;
  readonly cluster: Cluster;
  readonly network: SimNetwork;
  readonly checker: InvariantChecker;
  readonly plan: FaultPlan;
  readonly random: Prng;
  readonly timeline: (line: string) => void;
  /** False once the heal phase begins: no new faults, no scheduled repairs needed. */
  readonly active: () => boolean;
  /** Whether a membership change is in flight (corruption waits: it removes a member for good). */
  readonly membershipBusy: () => boolean;
}

export class FaultInjector {
  readonly stats: FaultStats = { crashes: 0, pauses: 0, partitions: 0, corruptions: 0 };
  private corruptionDone = false;
  private partitionGeneration = 0;

  constructor(private readonly env: FaultEnv) {}

  start(): void {
    this.scheduleNext();
  }

  private scheduleNext(): void {
    const { world, random, plan } = this.env;
    world.schedule(random.exponential(plan.meanIntervalMs), {
      kind: 'fault',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => 'fault injector',
      run: () => {
        if (!this.env.active()) return;
        this.injectOne();
        this.scheduleNext();
      },
    });
  }

  private injectOne(): void {
    const { plan, random } = this.env;
    const kinds: ('crash' | 'pause' | 'partition')[] = [];
    if (plan.crash) kinds.push('crash');
    if (plan.pause) kinds.push('pause');
    if (plan.partition) kinds.push('partition');
    if (kinds.length === 0) return;
    switch (random.pick(kinds)) {
      case 'crash':
        this.crashOne();
        return;
      case 'pause':
        this.pauseOne();
        return;
      case 'partition':
        this.togglePartition();
        return;
    }
  }

  /** Leader churn: sometimes crash a leader soon after it is elected. */
  onLeaderElected(host: Host, term: number): void {
    const { plan, random, world, timeline } = this.env;
    if (!this.env.active() || !plan.leaderChurn || !random.chance(plan.leaderChurnProbability)) return;
    const epoch = host.epoch;
    world.schedule(random.floatBetween(0, plan.leaderChurnDelayMaxMs), {
      kind: 'fault',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `leader churn: crash n${host.id}`,
      run: () => {
        if (!this.env.active() || host.epoch !== epoch || host.state === 'down') return;
        timeline(`leader churn: crash n${host.id}, leader of term ${term}`);
        this.crash(host);
      },
    });
  }

  private pickVictim(candidates: readonly Host[]): Host | null {
    if (candidates.length === 0) return null;
    const leader = this.env.cluster.leader();
    if (leader !== null && candidates.includes(leader.host) && this.env.random.chance(LEADER_VICTIM_PROBABILITY)) {
      return leader.host;
    }
    return this.env.random.pick(candidates);
  }

  private crashOne(): void {
    const victim = this.pickVictim(this.env.cluster.allHosts().filter((h) => h.state !== 'down' && !h.retired));
    if (victim !== null) this.crash(victim);
  }

  private crash(victim: Host): void {
    const { cluster, random, plan, world, timeline } = this.env;
    cluster.crash(victim);
    this.stats.crashes++;
    const corrupted = this.maybeCorrupt(victim);
    const downtimeMs = random.floatBetween(1, plan.crashDowntimeMaxMs);
    timeline(`crash n${victim.id}${corrupted ? ' and corrupt a synced record on its disk' : ''}; restart in ${downtimeMs.toFixed(0)}ms`);
    world.schedule(downtimeMs, {
      kind: 'fault',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `restart n${victim.id}`,
      run: () => {
        if (!this.env.active() || victim.state !== 'down' || victim.retired || victim.dead) return;
        timeline(`restart n${victim.id}`);
        cluster.restart(victim);
      },
    });
  }

  /** Corrupts the victim's disk if the plan allows and losing the victim for good keeps a live quorum. */
  private maybeCorrupt(victim: Host): boolean {
    const { plan, cluster, random, checker } = this.env;
    if (!plan.corruption || this.corruptionDone || this.env.membershipBusy()) return false;
    const leader = cluster.leader();
    if (leader === null) return false;
    const dead = new Set<NodeId>(cluster.allHosts().filter((h) => h.dead || h.corruption !== 'none').map((h) => h.id));
    dead.add(victim.id);
    if (!hasLiveQuorum(leader.status.confState, dead)) return false;
    const key = victim.disk.corruptRandomRecord(random);
    if (key === null) return false;
    this.corruptionDone = true;
    this.stats.corruptions++;
    victim.corruption = 'injected';
    checker.markCorruptionInjected(victim.id);
    return true;
  }

  private pauseOne(): void {
    const { cluster, random, plan, world, timeline } = this.env;
    const victim = this.pickVictim(cluster.allHosts().filter((h) => h.running && !h.retired));
    if (victim === null) return;
    cluster.pause(victim);
    this.stats.pauses++;
    const pauseMs = random.floatBetween(1, plan.pauseMaxMs);
    timeline(`pause n${victim.id} for ${pauseMs.toFixed(0)}ms`);
    const epoch = victim.epoch;
    world.schedule(pauseMs, {
      kind: 'fault',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `resume n${victim.id}`,
      run: () => {
        if (victim.epoch !== epoch || !victim.paused) return;
        timeline(`resume n${victim.id}`);
        cluster.resume(victim);
      },
    });
  }

  private togglePartition(): void {
    const { cluster, network, random, plan, world, timeline } = this.env;
    if (network.currentPartition !== null) {
      timeline(`heal partition (${network.currentPartition.description})`);
      network.setPartition(null);
      return;
    }
    const ids = cluster.allHosts().filter((h) => !h.retired).map((h) => h.id);
    if (ids.length < 2) return;
    const kind = random.pick(plan.partitionKinds);
    const leader = cluster.leader();
    const focus = leader !== null && random.chance(LEADER_VICTIM_PROBABILITY) ? leader.host.id : undefined;
    const partition = makePartition(kind, ids, random, kind === 'isolate' || kind === 'one-way' ? focus : undefined);
    network.setPartition(partition);
    this.stats.partitions++;
    const generation = ++this.partitionGeneration;
    const durationMs = random.floatBetween(10, plan.partitionMaxMs);
    timeline(`partition: ${partition.description} for ${durationMs.toFixed(0)}ms`);
    world.schedule(durationMs, {
      kind: 'fault',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => 'heal partition',
      run: () => {
        if (generation !== this.partitionGeneration || network.currentPartition !== partition) return;
        timeline(`heal partition (${partition.description})`);
        network.setPartition(null);
      },
    });
  }
}
