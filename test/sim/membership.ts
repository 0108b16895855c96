/**
 * The membership operator: an administrator changing the cluster during the fault phase — add a learner,
 * promote it, remove a voter (the leader included), replace one voter by another through joint consensus,
 * leave an explicit joint configuration — one change at a time, through the leader, via proposeConfChange.
 *
 * Liveness rule: a change is proposed only if the resulting configuration keeps at least `minVoters` voters
 * and a live quorum in each of its halves, counting nodes whose disk is (or may be) corrupt as dead.
 */
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from '../../src/raft/types.ts';
import { describeError, type Cluster, type Host } from './cluster.ts';
import type { Prng } from './prng.ts';
import { sendRequest } from './workload.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';

/** Voters the operator keeps at most; members (voters and learners) at most; nodes it may add per run. */
export const MEMBERSHIP_VOTERS_MAX = 5;
export const MEMBERSHIP_MEMBERS_MAX = 7;
export const MEMBERSHIP_ADDED_NODES_MAX = 4;
/** A change not acknowledged within this virtual time is given up on (it may still apply later). */
export const MEMBERSHIP_CHANGE_TIMEOUT_MS = 3_000;

export interface MembershipStats {
  proposed: number;
  applied: number;
  refused: number;
  nodesAdded: number;
  nodesRetired: number;
}

export interface MembershipEnv {
  readonly world: World;
  readonly cluster: Cluster;
  readonly random: Prng;
  readonly meanIntervalMs: number;
  readonly minVoters: number;
  readonly firstSpareId: NodeId;
  readonly timeline: (line: string) => void;
  /** 'faults': any change; 'heal': only finishing a joint configuration. */
  readonly phase: () => 'faults' | 'heal' | 'done';
}

export function hasLiveQuorum(conf: Pick<ConfState, 'voters' | 'votersOutgoing'>, dead: ReadonlySet<NodeId>): boolean {
  for (const half of [conf.voters, conf.votersOutgoing]) {
    if (half.length === 0) continue;
    const live = half.filter((id) => !dead.has(id)).length;
    if (live < Math.floor(half.length / 2) + 1) return false;
  }
  return conf.voters.length > 0;
}

export function isMember(conf: ConfState, id: NodeId): boolean {
  return conf.voters.includes(id) || conf.votersOutgoing.includes(id) || conf.learners.includes(id) || conf.learnersNext.includes(id);
}

interface PlannedChange {
  readonly change: ConfChange;
  readonly description: string;
  /** Nodes this change removes from the cluster (retired once it is applied everywhere that matters). */
  readonly removes: readonly NodeId[];
  readonly addsHost?: NodeId;
}

export class MembershipOperator {
  readonly stats: MembershipStats = { proposed: 0, applied: 0, refused: 0, nodesAdded: 0, nodesRetired: 0 };
  private inFlight = false;
  private nextSpareId: NodeId;
  private readonly pendingRetire = new Set<NodeId>();

  constructor(private readonly env: MembershipEnv) {
    this.nextSpareId = env.firstSpareId;
  }

  get busy(): boolean {
    return this.inFlight;
  }

  start(): void {
    this.scheduleNext();
  }

  private scheduleNext(): void {
    const { world, random, meanIntervalMs } = this.env;
    world.schedule(random.exponential(meanIntervalMs), {
      kind: 'control',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => 'membership operator',
      run: () => {
        if (this.env.phase() === 'done') return;
        this.step();
        this.scheduleNext();
      },
    });
  }

  private deadIds(): Set<NodeId> {
    return new Set(this.env.cluster.allHosts().filter((h) => h.corruption !== 'none').map((h) => h.id));
  }

  step(): void {
    this.retireRemoved();
    if (this.inFlight) return;
    const leader = this.env.cluster.leader();
    if (leader === null) return;
    const conf = leader.status.confState;
    if (conf.votersOutgoing.length > 0) {
      // Joint: an explicit one waits for us to leave it; an automatic one leaves by itself.
      if (!conf.autoLeave) this.propose(leader.host, { change: { transition: 'auto', changes: [] }, description: 'leave joint configuration', removes: [] });
      return;
    }
    if (this.env.phase() !== 'faults') return;
    const planned = this.plan(conf);
    if (planned !== null) this.propose(leader.host, planned);
  }

  /** Picks a change that keeps the configuration live, or null. */
  private plan(conf: ConfState): PlannedChange | null {
    const { random, cluster, minVoters } = this.env;
    const dead = this.deadIds();
    const liveLearners = conf.learners.filter((id) => {
      const h = cluster.host(id);
      return h !== undefined && !h.retired && !dead.has(id);
    });
    const transition = (): ConfChange['transition'] => random.pick(['auto', 'auto', 'joint-implicit', 'joint-explicit'] as const);
    const options: (() => PlannedChange | null)[] = [];
    const members = conf.voters.length + conf.learners.length;
    if (members < MEMBERSHIP_MEMBERS_MAX && this.stats.nodesAdded < MEMBERSHIP_ADDED_NODES_MAX) {
      options.push(() => {
        const id = this.nextSpareId;
        return { change: { transition: 'auto', changes: [{ type: 'addLearner', nodeId: id }] }, description: `add learner n${id}`, removes: [], addsHost: id };
      });
    }
    if (liveLearners.length > 0 && conf.voters.length < MEMBERSHIP_VOTERS_MAX) {
      options.push(() => {
        const id = random.pick(liveLearners);
        return { change: { transition: transition(), changes: [{ type: 'addVoter', nodeId: id }] }, description: `promote n${id}`, removes: [] };
      });
    }
    if (conf.voters.length - 1 >= minVoters) {
      options.push(() => {
        const id = random.pick(conf.voters);
        const voters = conf.voters.filter((v) => v !== id);
        if (!hasLiveQuorum({ voters, votersOutgoing: conf.voters }, dead)) return null;
        return { change: { transition: transition(), changes: [{ type: 'removeNode', nodeId: id }] }, description: `remove voter n${id}`, removes: [id] };
      });
    }
    if (liveLearners.length > 0) {
      options.push(() => {
        // Replace a voter by a learner in one joint change.
        const promoted = random.pick(liveLearners);
        const removed = random.pick(conf.voters);
        const voters = [...conf.voters.filter((v) => v !== removed), promoted];
        if (!hasLiveQuorum({ voters, votersOutgoing: conf.voters }, dead)) return null;
        const changes: ConfChangeSingle[] = [
          { type: 'addVoter', nodeId: promoted },
          { type: 'removeNode', nodeId: removed },
        ];
        const jointTransition = random.chance(0.5) ? 'joint-implicit' : 'joint-explicit';
        return { change: { transition: jointTransition, changes }, description: `replace voter n${removed} by n${promoted} (${jointTransition})`, removes: [removed] };
      });
      options.push(() => {
        const id = random.pick(liveLearners);
        return { change: { transition: 'auto', changes: [{ type: 'removeNode', nodeId: id }] }, description: `remove learner n${id}`, removes: [id] };
      });
    }
    if (options.length === 0) return null;
    return random.pick(options)();
  }

  private propose(leader: Host, planned: PlannedChange): void {
    const { cluster, random, world, timeline } = this.env;
    if (planned.addsHost !== undefined) {
      const host = cluster.addHost(planned.addsHost);
      this.nextSpareId++;
      this.stats.nodesAdded++;
      cluster.start(host);
    }
    this.inFlight = true;
    this.stats.proposed++;
    timeline(`membership: ${planned.description} via n${leader.id} (${planned.change.transition})`);
    let settled = false;
    const settle = (line: string, ok: boolean): void => {
      if (settled) return;
      settled = true;
      this.inFlight = false;
      if (ok) this.stats.applied++;
      else this.stats.refused++;
      timeline(line);
    };
    world.schedule(MEMBERSHIP_CHANGE_TIMEOUT_MS, {
      kind: 'control',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => 'membership change timeout',
      run: () => settle(`membership: ${planned.description} timed out`, false),
    });
    sendRequest(
      { world, cluster },
      random,
      leader.id,
      (host) => {
        const raft = host.raft;
        if (raft === null) return settle(`membership: ${planned.description}: n${leader.id} is down`, false);
        raft.proposeConfChange(planned.change).then(
          (result) => {
            for (const id of planned.removes) this.pendingRetire.add(id);
            settle(`membership: ${planned.description} applied at index ${result.index}`, true);
          },
          (error: unknown) => settle(`membership: ${planned.description} refused: ${describeError(error)}`, false),
        );
      },
      () => settle(`membership: ${planned.description}: n${leader.id} is unreachable`, false),
    );
  }

  /**
   * Stops nodes whose removal was applied, once a leader that is itself a member of the new configuration
   * no longer mentions them at all (a joint configuration may still need a removed voter in its outgoing
   * half, and a removed leader still hands over leadership), as an operator would.
   */
  retireRemoved(): void {
    if (this.pendingRetire.size === 0) return;
    const leader = this.env.cluster.leader();
    if (leader === null) return;
    for (const id of [...this.pendingRetire]) {
      if (leader.host.id === id || isMember(leader.status.confState, id)) continue;
      this.pendingRetire.delete(id);
      const host = this.env.cluster.host(id);
      if (host === undefined || host.retired) continue;
      this.env.cluster.retire(host);
      this.stats.nodesRetired++;
      this.env.timeline(`retire n${id}: no longer in the configuration`);
    }
  }
}
