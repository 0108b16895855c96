/**
 * The workload: clients writing unique values to a few keys and reading them linearizably, against
 * whichever node they believe leads (following NotLeaderError hints), with timeouts in virtual time.
 * Every operation goes into the history with its invocation and completion times and what it observed;
 * the checkers judge each one as it completes.
 */
import { NotLeaderError, RaftError } from '../../src/raft/errors.ts';
import type { ProposalResult } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { InvariantChecker, OperationFloor } from './checkers.ts';
import { describeError, type Cluster, type Host } from './cluster.ts';
import { encodeCommand } from './kv.ts';
import type { Prng } from './prng.ts';
import type { WorkloadProfile } from './scenario.ts';
import { ANY_EPOCH, NO_NODE, type World } from './world.ts';

/** Client-to-node request latency (clients sit next to the cluster; partitions do not cut them off). */
const REQUEST_LATENCY_MIN_MS = 0.05;
const REQUEST_LATENCY_MAX_MS = 1;
/** Pause before retrying after a refusal, so a client without a leader does not spin. */
const RETRY_BACKOFF_MAX_MS = 20;

export type Outcome =
  | 'pending'
  | 'ok'
  | 'not-leader'
  | 'dropped'
  | 'stopped'
  | 'unavailable'
  | 'rejected';

export interface OperationRecord {
  readonly id: number;
  readonly client: number;
  readonly kind: 'write' | 'read';
  readonly nodeId: NodeId;
  readonly key: string;
  /** The unique value written; for reads, the value read. */
  value: string | undefined;
  readonly invokeMs: number;
  completeMs: number | null;
  /** The client stopped waiting (virtual-time timeout); the operation may still complete later. */
  timedOut: boolean;
  outcome: Outcome;
  /** Writes: the log index and term of the acknowledged entry. */
  index?: number;
  term?: number;
  /** Reads: the index read() returned and the index of the state the value came from. */
  readIndex?: number;
  stateIndex?: number;
  readonly floor: OperationFloor;
}

export interface WorkloadStats {
  writesInvoked: number;
  writesAcked: number;
  readsInvoked: number;
  readsOk: number;
  timeouts: number;
  refusals: number;
}

export interface WorkloadEnv {
  readonly world: World;
  readonly cluster: Cluster;
  readonly checker: InvariantChecker;
  readonly profile: WorkloadProfile;
  readonly history: OperationRecord[];
  readonly stats: WorkloadStats;
  /** Whether clients should start new operations (false once the heal phase begins). */
  readonly active: () => boolean;
}

/**
 * Sends `run` to node `nodeId` as a client request: it arrives after a small latency, waits while the
 * node is paused, and fails as unavailable if the node is down (or not yet listening) when it arrives.
 */
export function sendRequest(
  env: { world: World; cluster: Cluster },
  random: Prng,
  nodeId: NodeId,
  run: (host: Host) => void,
  onUnavailable: () => void,
): void {
  env.world.schedule(random.floatBetween(REQUEST_LATENCY_MIN_MS, REQUEST_LATENCY_MAX_MS), {
    kind: 'client',
    nodeId,
    epoch: ANY_EPOCH,
    describe: () => `client request to n${nodeId}`,
    run: () => {
      const host = env.cluster.host(nodeId);
      if (host === undefined || host.raft === null) onUnavailable();
      else run(host);
    },
    onDrop: onUnavailable,
  });
}

export class Client {
  private target: NodeId;
  private sequence = 0;

  constructor(
    readonly id: number,
    private readonly env: WorkloadEnv,
    private readonly random: Prng,
  ) {
    this.target = random.pick(env.cluster.addressableIds());
  }

  start(): void {
    this.scheduleNext(this.random.floatBetween(0, this.env.profile.thinkTimeMaxMs + 1));
  }

  private scheduleNext(delayMs: number): void {
    this.env.world.schedule(delayMs, {
      kind: 'control',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `client ${this.id} next operation`,
      run: () => this.next(),
    });
  }

  private next(): void {
    if (!this.env.active()) return;
    const { profile, cluster } = this.env;
    const key = `k${this.random.int(profile.keys)}`;
    if (this.random.chance(profile.readFraction)) {
      const anyNode = this.random.chance(profile.readAnyNodeFraction);
      this.invoke('read', anyNode ? this.random.pick(cluster.addressableIds()) : this.target, key);
    } else {
      this.invoke('write', this.target, key);
    }
  }

  private invoke(kind: 'write' | 'read', nodeId: NodeId, key: string): void {
    const { world, checker, history, stats, profile } = this.env;
    const op: OperationRecord = {
      id: history.length,
      client: this.id,
      kind,
      nodeId,
      key,
      value: kind === 'write' ? `c${this.id}.${++this.sequence}` : undefined,
      invokeMs: world.nowMs,
      completeMs: null,
      timedOut: false,
      outcome: 'pending',
      floor: checker.floorNow(),
    };
    history.push(op);
    if (kind === 'write') stats.writesInvoked++;
    else stats.readsInvoked++;
    let clientMovedOn = false;
    const moveOn = (delayMs: number): void => {
      if (clientMovedOn) return;
      clientMovedOn = true;
      this.scheduleNext(delayMs);
    };
    world.schedule(profile.operationTimeoutMs, {
      kind: 'control',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `client ${this.id} op ${op.id} timeout check`,
      run: () => {
        if (op.outcome !== 'pending' || clientMovedOn) return;
        op.timedOut = true;
        stats.timeouts++;
        this.target = this.random.pick(this.env.cluster.addressableIds());
        moveOn(0);
      },
    });
    const settle = (outcome: Outcome): void => {
      if (op.outcome !== 'pending') return;
      op.outcome = outcome;
      op.completeMs = world.nowMs;
      if (outcome !== 'ok') stats.refusals++;
      moveOn(outcome === 'ok' ? this.random.floatBetween(0, profile.thinkTimeMaxMs) : this.random.floatBetween(1, RETRY_BACKOFF_MAX_MS));
    };
    sendRequest(
      this.env,
      this.random,
      nodeId,
      (host) => (kind === 'write' ? this.write(host, op, settle) : this.read(host, op, settle)),
      () => {
        this.target = this.random.pick(this.env.cluster.addressableIds());
        settle('unavailable');
      },
    );
  }

  private write(host: Host, op: OperationRecord, settle: (o: Outcome) => void): void {
    const raft = host.raft;
    if (raft === null) return settle('unavailable');
    const data = encodeCommand({ key: op.key, value: op.value ?? '' });
    raft.propose(data).then(
      (result: ProposalResult) => {
        op.index = result.index;
        op.term = result.term;
        this.env.stats.writesAcked++;
        this.env.checker.onWriteAcked({ key: op.key, value: op.value ?? '', data, index: result.index, term: result.term, floor: op.floor });
        settle('ok');
      },
      (error: unknown) => settle(this.classify(error)),
    );
  }

  private read(host: Host, op: OperationRecord, settle: (o: Outcome) => void): void {
    const raft = host.raft;
    const kv = host.kv;
    if (raft === null || kv === null) return settle('unavailable');
    raft.read().then(
      (readIndex: number) => {
        // Read the state machine in the same turn the barrier resolved: this is the state observed.
        op.value = kv.get(op.key);
        op.readIndex = readIndex;
        op.stateIndex = Math.max(readIndex, kv.lastIndex);
        this.env.stats.readsOk++;
        this.env.checker.onReadCompleted({
          nodeId: host.id,
          key: op.key,
          value: op.value,
          readIndex,
          stateIndex: op.stateIndex,
          floor: op.floor,
        });
        settle('ok');
      },
      (error: unknown) => settle(this.classify(error)),
    );
  }

  private classify(error: unknown): Outcome {
    if (error instanceof NotLeaderError) {
      this.target = error.leaderHint !== 0 ? error.leaderHint : this.random.pick(this.env.cluster.addressableIds());
      return 'not-leader';
    }
    if (error instanceof RaftError) {
      if (error.code === 'Stopped') {
        this.target = this.random.pick(this.env.cluster.addressableIds());
        return 'stopped';
      }
      if (error.code === 'ProposalDropped' || error.code === 'ReadDropped') return 'dropped';
      return 'rejected';
    }
    this.env.checker.fail('node-crash', `a client request failed with an unexpected error: ${describeError(error)}`);
    return 'rejected';
  }
}
