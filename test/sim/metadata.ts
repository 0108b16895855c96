/**
 * The metadata workload: every simulated node runs the real metadata state machine
 * (RaftMetadataStateMachine over MetadataStateMachine over a MemoryKv on the node's "disk", which survives
 * crashes: MemoryKv writes are atomic and count as synced). Clients open sessions and issue namespace
 * mutations with session stamps, retrying the same (clientId, seq) after timeouts and refusals; they read
 * with stat/readdir after read().
 *
 * MetadataChecker keeps a model: a bug-free MetadataStateMachine fed the committed log in index order (by
 * whichever node applies an index first). It checks, incrementally:
 * - every node's result for entry i equals the model's, and after every batch the node's whole store equals
 *   the model's store at that index (state digests; this covers snapshot restores too);
 * - the namespace invariants (checkNamespaceInvariants) hold on every node after every batch, and on the model;
 * - exactly-once: a (clientId, seq) applied again returns its first result; an acknowledged result equals
 *   the model's first result for that (clientId, seq);
 * - reads: a stat/readdir equals the model's answer at an index no lower than every acknowledged operation
 *   that completed before the read was invoked.
 */
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, NodeId, SnapshotMetadata } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import { NotLeaderError, RaftError } from '../../src/raft/errors.ts';
import {
  MemoryKv,
  MetadataStateMachine,
  checkNamespaceInvariants,
  decodeCommand as decodeFsmCommand,
  encodeCommand as encodeFsmCommand,
} from '../../src/fsm/index.ts';
import type { Command, FsmBug, Kv, Op } from '../../src/fsm/index.ts';
import { RaftMetadataStateMachine } from '../../src/fsm/raft-adapter.ts';
import type { PlacementBug } from '../../src/placement/bugs.ts';
import type { ClusterView } from '../../src/placement/manager.ts';
import { ViewTracker } from '../../src/placement/view.ts';
import { checkedView } from './view-check.ts';
import type { InvariantChecker, OperationFloor } from './checkers.ts';
import { describeError, type Host } from './cluster.ts';
import { Hasher } from './hash.ts';
import type { Prng } from './prng.ts';
import { sendRequest, type OperationRecord, type Outcome, type WorkloadEnv } from './workload.ts';
import { ANY_EPOCH, NO_NODE } from './world.ts';

const NAMES = ['a', 'b', 'c'] as const;
/** Every path the workload touches: the root, depth 1 and depth 2 over NAMES. */
export const METADATA_PATHS: readonly string[] = [
  '/',
  ...NAMES.map((a) => `/${a}`),
  ...NAMES.flatMap((a) => NAMES.map((b) => `/${a}/${b}`)),
];
const RETRY_BACKOFF_MAX_MS = 20;

/** Stable text of a JSON-like value (results and query answers). */
export function stableText(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return `<${Buffer.from(v).toString('hex')}>`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
    }
    return v;
  }) ?? 'undefined';
}

async function digest(kv: Kv): Promise<string> {
  const h = new Hasher();
  for await (const { key, value } of kv.snapshotIterator()) h.bytes(key).bytes(value);
  return h.hex();
}

async function answers(fsm: MetadataStateMachine, path: string): Promise<string> {
  const stat = await fsm.stat(path);
  const dir = await fsm.readdir(path);
  return stableText({ stat, dir });
}

/** Per path, the read answers the model gave, by the index from which they hold. Appended in index order. */
class AnswerHistory {
  private readonly byPath = new Map<string, { indices: number[]; values: string[] }>();

  record(index: number, path: string, value: string): void {
    let h = this.byPath.get(path);
    if (h === undefined) this.byPath.set(path, (h = { indices: [], values: [] }));
    if (h.values[h.values.length - 1] === value) return;
    h.indices.push(index);
    h.values.push(value);
  }

  /** The answers at `path` valid at some index in [lo, hi]. */
  valuesBetween(path: string, lo: number, hi: number): string[] {
    const h = this.byPath.get(path);
    if (h === undefined) return [];
    const out: string[] = [];
    for (let i = h.indices.length - 1; i >= 0; i--) {
      const from = h.indices[i] as number;
      if (from <= hi) out.push(h.values[i] as string);
      if (from <= lo) break;
    }
    return out;
  }
}

export interface MetadataCheckerStats {
  modelEntries: number;
  batchesChecked: number;
  invariantChecks: number;
  retriesDeduplicated: number;
  readsChecked: number;
}

export class MetadataChecker {
  readonly stats: MetadataCheckerStats = { modelEntries: 0, batchesChecked: 0, invariantChecks: 0, retriesDeduplicated: 0, readsChecked: 0 };
  private readonly modelKv = new MemoryKv();
  private model: MetadataStateMachine | null = null;
  private chain: Promise<void> = Promise.resolve();
  private readonly results = new Map<number, string>();
  private readonly digests = new Map<number, string>();
  /** (clientId.seq) -> the first result and the index it was applied at. */
  private readonly firstResult = new Map<string, { index: number; result: string }>();
  private readonly history = new AnswerHistory();

  constructor(private readonly checker: InvariantChecker) {}

  private get modelApplied(): number {
    return this.model?.appliedIndex() ?? 0;
  }

  /** Runs `fn` after every earlier model step, never concurrently with another. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.then(
      () => {},
      () => {},
    );
    return next;
  }

  private async ensureModel(): Promise<MetadataStateMachine> {
    if (this.model === null) {
      this.model = await MetadataStateMachine.open(this.modelKv);
      this.digests.set(0, await digest(this.modelKv));
      for (const path of METADATA_PATHS) this.history.record(0, path, await answers(this.model, path));
    }
    return this.model;
  }

  /** Feeds the model every entry of `entries` it has not applied yet (the first node to apply an index). */
  private feed(entries: readonly Entry[]): Promise<void> {
    return this.serial(async () => {
      const model = await this.ensureModel();
      for (const entry of entries) {
        if (entry.index <= model.appliedIndex()) continue;
        // Index 1 is the founding snapshot: the first entry applied is 2.
        const expected = model.appliedIndex() === 0 ? 2 : model.appliedIndex() + 1;
        if (entry.index !== expected) {
          this.checker.fail('state-machine-safety', `entry ${entry.index} was applied first, but the model is at ${model.appliedIndex()}`);
          return;
        }
        const [result] = await model.applyBatch([entry]);
        this.stats.modelEntries++;
        const text = stableText(result);
        this.results.set(entry.index, text);
        this.digests.set(entry.index, await digest(this.modelKv));
        this.recordFirst(entry, text);
        // A failed command changes nothing a query shows (nor the namespace): skip the per-path answers.
        const succeeded = (result as { ok?: boolean } | undefined)?.ok === true;
        if (entry.type === EntryType.Normal && entry.data.length > 0 && succeeded) {
          for (const path of METADATA_PATHS) this.history.record(entry.index, path, await answers(model, path));
          const problems = await checkNamespaceInvariants(this.modelKv);
          if (problems.length > 0) {
            this.checker.fail('namespace-invariant', `the model broke the namespace invariants at ${entry.index}: ${problems.slice(0, 3).join('; ')}`);
          }
        }
      }
    });
  }

  private recordFirst(entry: Entry, result: string): void {
    if (entry.type !== EntryType.Normal || entry.data.length === 0) return;
    let command: Command;
    try {
      command = decodeFsmCommand(entry.data);
    } catch {
      return;
    }
    const s = command.session;
    if (s === undefined) return;
    const key = `${s.clientId}.${s.seq}`;
    const first = this.firstResult.get(key);
    if (first === undefined) {
      this.firstResult.set(key, { index: entry.index, result });
      return;
    }
    if (result.includes('"ESESSION"')) return; // a late duplicate after the client acknowledged it
    this.stats.retriesDeduplicated++;
    if (first.result !== result) {
      this.checker.fail(
        'exactly-once',
        `the model applied (client ${s.clientId}, seq ${s.seq}) at ${entry.index} with result ${result}, first applied at ${first.index} with ${first.result}`,
      );
    }
  }

  /** Settles once every model step queued so far is done. */
  flush(): Promise<void> {
    return this.serial(() => Promise.resolve());
  }

  /** For an entry that repeats an earlier (clientId, seq): where it was first applied. */
  private retryOf(entry: Entry): { key: string; index: number } | null {
    if (entry.type !== EntryType.Normal || entry.data.length === 0) return null;
    let command: Command;
    try {
      command = decodeFsmCommand(entry.data);
    } catch {
      return null;
    }
    if (command.session === undefined) return null;
    const key = `${command.session.clientId}, seq ${command.session.seq}`;
    const first = this.firstResult.get(`${command.session.clientId}.${command.session.seq}`);
    return first !== undefined && first.index < entry.index ? { key, index: first.index } : null;
  }

  /** A node applied a batch: compare its results and its store with the model's, check its namespace. */
  async onBatch(nodeId: NodeId, entries: readonly Entry[], results: readonly unknown[], kv: Kv): Promise<void> {
    await this.feed(entries);
    this.stats.batchesChecked++;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as Entry;
      const expected = this.results.get(entry.index);
      const actual = stableText(results[i]);
      if (expected !== actual) {
        const retry = this.retryOf(entry);
        if (retry !== null) {
          this.checker.fail(
            'exactly-once',
            `n${nodeId} applied a retry of (client ${retry.key}) at ${entry.index} with result ${actual}; it was first applied at ${retry.index}, and the model answers ${expected ?? 'unknown'}`,
          );
          return;
        }
        this.checker.fail(
          'state-machine-safety',
          `n${nodeId} applied entry ${entry.index} with result ${actual}; the model's result is ${expected ?? 'unknown'}`,
        );
        return;
      }
    }
    const last = entries[entries.length - 1];
    if (last !== undefined) await this.checkStore(nodeId, last.index, kv, 'after applying a batch');
  }

  async onRestore(nodeId: NodeId, index: number, kv: Kv): Promise<void> {
    await this.serial(async () => {});
    if (index > this.modelApplied) {
      this.checker.fail('snapshot-consistency', `n${nodeId} restored a snapshot at ${index}, beyond any applied index (${this.modelApplied})`);
      return;
    }
    await this.checkStore(nodeId, index, kv, 'after restoring a snapshot');
  }

  private async checkStore(nodeId: NodeId, index: number, kv: Kv, when: string): Promise<void> {
    this.stats.invariantChecks++;
    const problems = await checkNamespaceInvariants(kv);
    if (problems.length > 0) {
      this.checker.fail('namespace-invariant', `n${nodeId} ${when} at ${index}: ${problems.slice(0, 3).join('; ')}`);
      return;
    }
    const expected = this.digests.get(index);
    const actual = await digest(kv);
    if (expected !== undefined && expected !== actual) {
      const kind = when.includes('snapshot') ? 'snapshot-consistency' : 'state-machine-safety';
      this.checker.fail(kind, `n${nodeId} ${when} at ${index}: its store differs from the model's there`);
    }
  }

  /** An acknowledged command: its result must be the first result of its (clientId, seq). */
  onAcked(nodeId: NodeId, index: number, clientId: number, seq: number, result: unknown): void {
    const first = this.firstResult.get(`${clientId}.${seq}`);
    const text = stableText(result);
    if (first === undefined) {
      this.checker.fail('acked-write-lost', `(client ${clientId}, seq ${seq}) was acknowledged at ${index} by n${nodeId}, but the model never applied it`);
    } else if (first.result !== text) {
      this.checker.fail(
        'exactly-once',
        `(client ${clientId}, seq ${seq}) was acknowledged by n${nodeId} at ${index} with ${text}; it was first applied at ${first.index} with ${first.result}`,
      );
    }
  }

  /** A read of `path` answered with `answer` from state between lo and hi (lo at least read()'s index). */
  onRead(nodeId: NodeId, path: string, answer: string, readIndex: number, lo: number, hi: number, floor: OperationFloor): number | null {
    this.stats.readsChecked++;
    const floorIndex = Math.max(floor.ackedIndex, floor.observedIndex);
    if (readIndex < floorIndex) {
      this.checker.fail('linearizability', `read of ${path} on n${nodeId} returned read index ${readIndex}, but an operation completed before it was invoked reached ${floorIndex} (stale read)`);
      return null;
    }
    const from = Math.max(lo, floorIndex);
    const candidates = this.history.valuesBetween(path, from, hi);
    if (!candidates.includes(answer)) {
      this.checker.fail(
        'linearizability',
        `read of ${path} on n${nodeId} (read index ${readIndex}, state ${lo}..${hi}) returned ${answer}; the model there has ${candidates.join(' or ') || 'nothing recorded'}`,
      );
      return null;
    }
    return from;
  }
}

/** The node's state machine, observed: results and stores checked against the model after every batch. */
export class ObservedMetadataStateMachine implements StateMachine {
  private inner: RaftMetadataStateMachine | null = null;
  private views: ViewTracker | null = null;
  private lastBatch: Promise<void> = Promise.resolve();

  constructor(
    readonly nodeId: NodeId,
    readonly kv: MemoryKv,
    private readonly metadata: MetadataChecker,
    private readonly checker: InvariantChecker,
  ) {}

  /** Opens the store on the node's disk; must finish before the node starts. */
  async open(bugs: ReadonlySet<FsmBug>, placementBugs: ReadonlySet<PlacementBug> = new Set()): Promise<void> {
    const views = new ViewTracker(placementBugs);
    this.views = views;
    this.inner = new RaftMetadataStateMachine(await MetadataStateMachine.open(this.kv, { bugs, onStoreWrite: (write) => views.noteWrite(write) }));
  }

  /** The chunk manager's view, as the metadata server keeps it (ViewTracker), checked against a whole read. */
  managerView(): Promise<ClusterView> {
    if (this.views === null) return Promise.reject(new Error('the metadata state machine is not open'));
    return checkedView(this.views, this.kv, this.fsm, this.nodeId, this.checker);
  }

  get fsm(): MetadataStateMachine {
    if (this.inner === null) throw new Error('the metadata state machine is not open');
    return this.inner.fsm;
  }

  appliedIndex(): number {
    return this.fsm.appliedIndex();
  }

  appliedTerm(): number {
    return this.fsm.appliedTerm();
  }

  /** Settles once the latest batch (and its check against the model) is done. */
  idle(): Promise<void> {
    return this.lastBatch;
  }

  applyBatch(entries: readonly Entry[]): Promise<readonly unknown[]> {
    const run = this.applyChecked(entries);
    this.lastBatch = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  private async applyChecked(entries: readonly Entry[]): Promise<readonly unknown[]> {
    const before = this.fsm.appliedIndex();
    for (const entry of entries) {
      if (entry.type === EntryType.Normal && entry.data.length > 0) this.checker.onApply(this.nodeId, entry, before);
    }
    const results = await (this.inner as RaftMetadataStateMachine).applyBatch(entries);
    await this.metadata.onBatch(this.nodeId, entries, results, this.kv);
    return results;
  }

  /** The driver's read-ahead hint, as the metadata server passes it (a no-op over the simulator's MemoryKv). */
  readAhead(entries: readonly Entry[]): void {
    (this.inner as RaftMetadataStateMachine).readAhead(entries);
  }

  sync(): Promise<void> {
    return (this.inner as RaftMetadataStateMachine).sync();
  }

  openSnapshot(): AsyncIterator<Uint8Array> {
    return (this.inner as RaftMetadataStateMachine).openSnapshot();
  }

  async installSnapshot(metadata: SnapshotMetadata, chunks: AsyncIterable<Uint8Array>, beforeInstall: () => Promise<void>): Promise<void> {
    await (this.inner as RaftMetadataStateMachine).installSnapshot(metadata, chunks, beforeInstall);
    this.checker.noteRestore();
    const applied = this.fsm.appliedIndex();
    if (applied !== metadata.index) {
      this.checker.fail('snapshot-consistency', `n${this.nodeId} restored a snapshot of index ${metadata.index} whose state has applied index ${applied}`);
      return;
    }
    await this.metadata.onRestore(this.nodeId, applied, this.kv);
  }
}

/** A metadata client: one session, one command at a time, retried with the same stamp until answered. */
export class MetadataClient {
  private target: NodeId;
  private clientId: number | null = null;
  private seq = 0;
  private ack = 0;
  /** The command awaiting its answer: retried with the same (clientId, seq). */
  private pending: { seq: number; op: Op; attempts: number } | null = null;
  private opening = false;

  constructor(
    readonly id: number,
    private readonly env: WorkloadEnv & { readonly metadata: MetadataChecker },
    private readonly random: Prng,
  ) {
    this.target = random.pick(env.cluster.addressableIds());
  }

  start(): void {
    this.scheduleNext(this.random.floatBetween(0, this.env.profile.thinkTimeMaxMs + 1));
  }

  private scheduleNext(delayMs: number): void {
    this.env.world.schedule(delayMs, { kind: 'control', nodeId: NO_NODE, epoch: ANY_EPOCH, describe: () => `client ${this.id} next operation`, run: () => this.next() });
  }

  private path(): string {
    return this.random.pick(METADATA_PATHS.slice(1));
  }

  private randomOp(): Op {
    const r = this.random;
    const gen = r.chance(0.15) ? { ifGeneration: r.pick([0, 0, r.int(40)]) } : {};
    switch (r.int(8)) {
      case 0:
        return { type: 'mkdir', path: this.path(), ...gen };
      case 1:
        return { type: 'create', path: this.path(), exclusive: r.chance(0.7), ...gen };
      case 2:
      case 3:
        return { type: 'rename', from: this.path(), to: this.path(), ...gen };
      case 4:
        return { type: 'unlink', path: this.path(), ...gen };
      case 5:
        return { type: 'rmdir', path: this.path(), ...gen };
      case 6:
        return { type: 'deleteRecursive', path: this.path(), ...gen };
      default:
        return { type: 'setattr', path: this.path(), mode: r.pick([0o644, 0o600, 0o755]), ...gen };
    }
  }

  private next(): void {
    if (!this.env.active()) return;
    if (this.clientId === null || this.opening) return this.write(null);
    if (this.pending !== null) return this.write(this.pending);
    if (this.random.chance(this.env.profile.readFraction)) {
      const anyNode = this.random.chance(this.env.profile.readAnyNodeFraction);
      return this.read(anyNode ? this.random.pick(this.env.cluster.addressableIds()) : this.target);
    }
    this.pending = { seq: ++this.seq, op: this.randomOp(), attempts: 0 };
    this.write(this.pending);
  }

  /** Sends the pending command (or openSession for null) to the target, with a timeout. */
  private write(pending: { seq: number; op: Op; attempts: number } | null): void {
    const { world, checker, stats } = this.env;
    const clientId = this.clientId;
    const command: Command =
      pending === null || clientId === null
        ? { nowMs: Math.floor(world.nowMs), op: { type: 'openSession' } }
        : { nowMs: Math.floor(world.nowMs), session: { clientId, seq: pending.seq, ack: this.ack }, op: pending.op };
    if (pending !== null) pending.attempts++;
    this.opening = command.session === undefined;
    const data = encodeFsmCommand(command);
    const label = command.session === undefined ? 'openSession' : `${command.op.type} c${command.session.clientId}.${command.session.seq}`;
    const op = this.record('write', this.target, label);
    stats.writesInvoked++;
    const settle = this.settler(op);
    sendRequest(
      this.env,
      this.random,
      this.target,
      (host) => {
        const raft = host.raft;
        if (raft === null) return settle('unavailable');
        raft.propose(data).then(
          (result) => {
            op.index = result.index;
            op.term = result.term;
            stats.writesAcked++;
            checker.onWriteAcked({ key: label, value: `${op.id}`, data, index: result.index, term: result.term, floor: op.floor });
            const value = result.result as { ok?: boolean; code?: string; value?: { clientId?: number } } | undefined;
            if (command.session === undefined) {
              if (this.opening && op.outcome === 'pending' && value?.ok === true && typeof value.value?.clientId === 'number') {
                this.clientId = value.value.clientId;
                this.opening = false;
                this.seq = 0;
                this.ack = 0;
                this.pending = null;
              }
            } else {
              this.env.metadata.onAcked(host.id, result.index, command.session.clientId, command.session.seq, result.result);
              if (op.outcome === 'pending' && this.pending?.seq === command.session.seq && this.clientId === command.session.clientId) {
                if (value?.ok === false && value.code === 'ESESSION') {
                  this.clientId = null; // evicted or expired: open a new session
                } else {
                  this.ack = command.session.seq;
                }
                this.pending = null;
              }
            }
            settle('ok');
          },
          (error: unknown) => settle(this.classify(error)),
        );
      },
      () => {
        this.target = this.random.pick(this.env.cluster.addressableIds());
        settle('unavailable');
      },
    );
  }

  private read(nodeId: NodeId): void {
    const path = this.path();
    const op = this.record('read', nodeId, path);
    this.env.stats.readsInvoked++;
    const settle = this.settler(op);
    sendRequest(
      this.env,
      this.random,
      nodeId,
      (host: Host) => {
        const raft = host.raft;
        const sm = host.meta;
        if (raft === null || sm === null) return settle('unavailable');
        raft.read().then(
          async (readIndex: number) => {
            const lo = Math.max(readIndex, sm.fsm.appliedIndex());
            const answer = await answers(sm.fsm, path).catch((e: unknown) => {
              this.env.checker.fail('node-crash', `a read on n${host.id} failed: ${describeError(e)}`);
              return '';
            });
            const hi = sm.fsm.appliedIndex();
            // The model must have caught up with the state the answer came from.
            await sm.idle();
            await this.env.metadata.flush();
            op.value = answer;
            op.readIndex = readIndex;
            this.env.stats.readsOk++;
            const observed = this.env.metadata.onRead(host.id, path, answer, readIndex, lo, hi, op.floor);
            if (observed !== null) {
              op.stateIndex = observed;
              this.env.checker.noteObserved(observed);
            }
            settle('ok');
          },
          (error: unknown) => settle(this.classify(error)),
        );
      },
      () => {
        this.target = this.random.pick(this.env.cluster.addressableIds());
        settle('unavailable');
      },
    );
  }

  private record(kind: 'write' | 'read', nodeId: NodeId, key: string): OperationRecord {
    const { world, checker, history } = this.env;
    const op: OperationRecord = {
      id: history.length,
      client: this.id,
      kind,
      nodeId,
      key,
      value: undefined,
      invokeMs: world.nowMs,
      completeMs: null,
      timedOut: false,
      outcome: 'pending',
      floor: checker.floorNow(),
    };
    history.push(op);
    return op;
  }

  /** The settle function of one attempt: completes it once, with a timeout, and schedules what is next. */
  private settler(op: OperationRecord): (outcome: Outcome) => void {
    const { world, stats, profile } = this.env;
    let movedOn = false;
    const moveOn = (delayMs: number): void => {
      if (movedOn) return;
      movedOn = true;
      this.scheduleNext(delayMs);
    };
    world.schedule(profile.operationTimeoutMs, {
      kind: 'control',
      nodeId: NO_NODE,
      epoch: ANY_EPOCH,
      describe: () => `client ${this.id} op ${op.id} timeout check`,
      run: () => {
        if (op.outcome !== 'pending' || movedOn) return;
        op.timedOut = true;
        op.outcome = 'dropped';
        stats.timeouts++;
        this.target = this.random.pick(this.env.cluster.addressableIds());
        moveOn(0);
      },
    });
    return (outcome: Outcome): void => {
      if (op.outcome !== 'pending') return;
      op.outcome = outcome;
      op.completeMs = world.nowMs;
      if (outcome !== 'ok') stats.refusals++;
      moveOn(outcome === 'ok' ? this.random.floatBetween(0, profile.thinkTimeMaxMs) : this.random.floatBetween(1, RETRY_BACKOFF_MAX_MS));
    };
  }

  private classify(error: unknown): Outcome {
    if (error instanceof NotLeaderError) {
      this.target = error.leaderHint !== 0 ? error.leaderHint : this.random.pick(this.env.cluster.addressableIds());
      return 'not-leader';
    }
    if (error instanceof RaftError) {
      this.target = this.random.pick(this.env.cluster.addressableIds());
      if (error.code === 'Stopped') return 'stopped';
      if (error.code === 'ProposalDropped' || error.code === 'ReadDropped') return 'dropped';
      return 'rejected';
    }
    this.env.checker.fail('node-crash', `a client request failed with an unexpected error: ${describeError(error)}`);
    return 'rejected';
  }
}
