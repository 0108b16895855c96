/**
 * A scripted simulated cluster: the same world, network, disks, Raft nodes and invariant checkers as a
 * random run, but no random faults and no random workload. The caller drives it step by step (crash this
 * node, propose that value, run until a leader exists). Used by the demo (src/demo/main.ts) and by tests
 * that want a specific story rather than a random one.
 */
import type { ProposalResult } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import { InvariantChecker } from './checkers.ts';
import { Cluster, describeError, type Host } from './cluster.ts';
import { encodeCommand } from './kv.ts';
import { SimNetwork } from './network.ts';
import { Prng } from './prng.ts';
import { quietScenario, type ClusterSize, type Scenario } from './scenario.ts';
import { NO_NODE, World, drainMicrotasks } from './world.ts';

export interface SandboxOptions {
  readonly seed: number;
  readonly clusterSize: ClusterSize;
  /** Notable events (leader changes, crashes, restarts) as they happen, with their virtual time in ms. */
  readonly onEvent?: (timeMs: number, line: string) => void;
}

export class Sandbox {
  readonly world: World;
  readonly checker: InvariantChecker;
  readonly cluster: Cluster;
  readonly scenario: Scenario;
  private readonly network: SimNetwork;

  constructor(options: SandboxOptions) {
    const root = Prng.fromSeed(options.seed);
    this.scenario = quietScenario(options.seed, options.clusterSize);
    const onEvent = options.onEvent ?? (() => {});
    this.world = new World({
      gate: (event) => this.cluster.gate(event),
      defer: (event) => this.cluster.defer(event),
      onEventError: (event, error) => this.checker.fail('node-crash', `${event.describe?.() ?? event.kind} threw ${describeError(error)}`),
    });
    this.checker = new InvariantChecker(() => this.world.nowMs);
    this.network = new SimNetwork(this.world, root.split('network'), this.scenario.network, (m) => this.cluster.deliver(m));
    this.cluster = new Cluster({
      world: this.world,
      network: () => this.network,
      checker: this.checker,
      scenario: this.scenario,
      diskRandom: root.split('disk'),
      raftRandom: root.split('raft'),
      clockRandom: root.split('clock'),
      timeline: (line) => onEvent(this.world.nowMs, line),
      onLeaderElected: () => {},
    });
    const voters = Array.from({ length: options.clusterSize }, (_, i) => i + 1);
    for (const id of voters) this.cluster.start(this.cluster.addHost(id, voters));
  }

  get nowMs(): number {
    return this.world.nowMs;
  }

  host(id: NodeId): Host {
    const host = this.cluster.host(id);
    if (host === undefined) throw new RangeError(`no node n${id}`);
    return host;
  }

  /** Runs events until `done()` holds or `timeoutMs` of virtual time passes. Returns whether `done()` held. */
  async runUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadlineMs = this.world.nowMs + timeoutMs;
    // Let work started outside an event (a start(), a propose()) schedule its first events.
    await drainMicrotasks();
    while (!done()) {
      const next = this.world.nextEventTimeMs();
      if (next === null || next > deadlineMs || this.checker.violation !== null) return done();
      await this.step();
    }
    return true;
  }

  async runFor(durationMs: number): Promise<void> {
    const endMs = this.world.nowMs + durationMs;
    await this.runUntil(() => (this.world.nextEventTimeMs() ?? Infinity) > endMs, durationMs);
  }

  private async step(): Promise<void> {
    const event = this.world.step();
    if (event === null || !this.world.lastEventRan) return;
    await drainMicrotasks();
    if (event.nodeId !== NO_NODE) this.cluster.poll(event.nodeId);
  }

  leaderId(): NodeId | null {
    return this.cluster.leader()?.host.id ?? null;
  }

  /** Proposes `key=value` through node `id` and runs the world until the proposal settles. */
  async put(id: NodeId, key: string, value: string, timeoutMs = 2_000): Promise<ProposalResult> {
    const raft = this.host(id).raft;
    if (raft === null) throw new Error(`n${id} is down`);
    let outcome: { result: ProposalResult } | { error: unknown } | null = null;
    const data = encodeCommand({ key, value });
    raft.propose(data).then(
      (result) => {
        outcome = { result };
        this.checker.onWriteAcked({ key, value, data, index: result.index, term: result.term, floor: this.checker.floorNow() });
      },
      (error: unknown) => {
        outcome = { error };
      },
    );
    await this.runUntil(() => outcome !== null, timeoutMs);
    const settled = outcome as { result: ProposalResult } | { error: unknown } | null;
    if (settled === null) throw new Error(`put ${key}=${value} via n${id} did not settle within ${timeoutMs}ms`);
    if ('error' in settled) throw settled.error instanceof Error ? settled.error : new Error(String(settled.error));
    return settled.result;
  }

  crash(id: NodeId): void {
    this.cluster.crash(this.host(id));
  }

  restart(id: NodeId): void {
    this.cluster.restart(this.host(id));
  }

  /** The applied index of a running node, or null when it is down. */
  applied(id: NodeId): number | null {
    const host = this.host(id);
    return host.raft !== null && host.state === 'up' ? host.raft.status().applied : null;
  }

  /** A running node's key-value state, sorted by key. */
  state(id: NodeId): [string, string][] {
    const kv = this.host(id).kv;
    if (kv === null) return [];
    return kv.entries();
  }
}
