/**
 * Linearizability by the Wing–Gong search with Lowe's improvements (the algorithm of Knossos' `wgl` and
 * of Porcupine).
 *
 * The history becomes a doubly linked list of call and return entries in real-time order. The search
 * walks the list from its head: at a call it tries to linearize that operation now (the model accepts it
 * in the current state), lifts its call and return out of the list and starts again from the head; at a
 * return it is stuck (that operation had to be linearized before it returned), so it backtracks: pops the
 * last linearized operation, puts its entries back (dancing links, undone in LIFO order) and tries the
 * next call after it. Lowe's cache remembers every (set of linearized operations, model state) reached;
 * reaching one again cannot lead anywhere new, so that branch is cut.
 *
 * Indeterminate (info) operations return at infinity, after every other return, so they never force
 * backtracking; the search succeeds once every determinate operation is linearized (the other info
 * operations never happened). Info operations are what makes the search blow up (each subset of them
 * may be linearized), so two reductions apply to them, both sound because an info operation never has a
 * deadline:
 * - twins: info operations with the same function and arguments are interchangeable, and the earlier
 *   invoked can go wherever the later can; so they are linearized only in invocation order, and the
 *   info operations linearized in a configuration are a prefix of each twin class;
 * - dominance: a configuration with the same determinate operations linearized and the same state as a
 *   visited one, but a superset of its info operations, can reach nothing the visited one cannot (which
 *   has more operations left to use); it is cut. Equality is the plain Lowe cache.
 *
 * P-compositionality: the model's partition key splits the history; each part is searched on its own.
 */
import type { AnyModel, Model } from './models.ts';
import type { Operation } from './history.ts';
import { canonicalKey } from './edn.ts';

export type Verdict = 'linearizable' | 'not linearizable' | 'unknown';

/** Deliberate checker bugs, to show the test suite notices them. Never set outside tests. */
export const checkerPlantedBugs = ['none', 'info-as-fail', 'cache-ignores-state'] as const;
export type CheckerPlantedBug = (typeof checkerPlantedBugs)[number];

/**
 * Cached configurations beyond this answer `unknown` (memory bound, per partition): about 1 GiB of
 * resident memory for a 1000-operation part.
 */
export const cacheEntriesMaxDefault = 1_000_000;
/** The clock is read once per this many search steps. */
const clockCheckSteps = 4096;

export interface CheckOptions {
  /** Wall-clock budget for the whole check; past it the answer is `unknown`. Default: none. */
  timeLimitMs?: number;
  /** Milliseconds clock (injected for tests); default performance.now. */
  now?: () => number;
  cacheEntriesMax?: number;
  plantedBug?: CheckerPlantedBug;
}

/** A linearized operation and the model state after it. */
export interface LinearizedStep {
  op: Operation;
  state: string;
}

/**
 * Why a part is not linearizable, from the deepest point the search reached: the longest linearizable
 * prefix it found, then the operation whose return came before it could be placed, and the operations
 * concurrent with it that were tried (none can be linearized next, in that state, such that it fits).
 */
export interface FailureWindow {
  prefix: LinearizedStep[];
  /** The state after the prefix (the initial state if the prefix is empty). */
  state: string;
  stuck: Operation;
  /** Operations invoked before `stuck` returned and not in the prefix. */
  concurrent: Operation[];
}

export interface PartitionResult {
  key: string;
  verdict: Verdict;
  /** Operations searched (after the model dropped those that cannot matter). */
  operations: number;
  cacheEntries: number;
  failure?: FailureWindow;
  /** Why `unknown`. */
  reason?: string;
}

export interface CheckResult {
  verdict: Verdict;
  partitions: PartitionResult[];
  elapsedMs: number;
}

class OutOfTime extends Error {}

/** Checks a paired history against a model (see the header comment). */
export function checkLinearizable<S, I>(model: Model<S, I>, operations: readonly Operation[], options: CheckOptions = {}): CheckResult {
  const now = options.now ?? (() => performance.now());
  const started = now();
  const deadline = options.timeLimitMs === undefined ? Infinity : started + options.timeLimitMs;
  const bug = options.plantedBug ?? 'none';

  const parts = new Map<string, Operation[]>();
  for (const original of operations) {
    const op = bug === 'info-as-fail' && original.status === 'info' ? { ...original, status: 'fail' as const } : original;
    const key = model.partitionKey(op);
    let list = parts.get(key);
    if (!list) parts.set(key, (list = []));
    list.push(op);
  }

  const partitions: PartitionResult[] = [];
  let verdict: Verdict = 'linearizable';
  for (const [key, ops] of parts) {
    const result = checkPartition(model, key, ops, { deadline, now, cacheEntriesMax: options.cacheEntriesMax ?? cacheEntriesMaxDefault, bug });
    partitions.push(result);
    if (result.verdict === 'not linearizable') {
      verdict = 'not linearizable';
      break;
    }
    if (result.verdict === 'unknown') verdict = 'unknown';
  }
  return { verdict, partitions, elapsedMs: now() - started };
}

/** Loosely typed entry point for callers holding an `AnyModel`. */
export function checkWithModel(model: AnyModel, operations: readonly Operation[], options?: CheckOptions): CheckResult {
  return checkLinearizable(model, operations, options);
}

interface SearchLimits {
  deadline: number;
  now: () => number;
  cacheEntriesMax: number;
  bug: CheckerPlantedBug;
}

function checkPartition<S, I>(model: Model<S, I>, key: string, all: readonly Operation[], limits: SearchLimits): PartitionResult {
  const ops: Operation[] = [];
  const inputs: I[] = [];
  for (const op of all) {
    const input = model.prepare(op);
    if (input === null) continue;
    ops.push(op);
    inputs.push(input);
  }
  const n = ops.length;
  const search = new Search(model, ops, inputs, limits);
  let outcome: boolean;
  try {
    outcome = search.run();
  } catch (e) {
    if (!(e instanceof OutOfTime)) throw e;
    return { key, verdict: 'unknown', operations: n, cacheEntries: search.cacheEntries, reason: e.message };
  }
  if (outcome) return { key, verdict: 'linearizable', operations: n, cacheEntries: search.cacheEntries };
  return { key, verdict: 'not linearizable', operations: n, cacheEntries: search.cacheEntries, failure: search.failureWindow() };
}

/** Entry numbering: the call of operation k is 2k, its return 2k + 1; the head sentinel is 2n. */
class Search<S, I> {
  private readonly n: number;
  private readonly head: number;
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  /** Linearized determinate operations, and their Zobrist hash. */
  private readonly linearized: Uint32Array;
  private hash = 0;
  /** Linearized info operations. */
  private readonly linearizedInfo: Uint32Array;
  private readonly zobrist: Uint32Array;
  private readonly isInfo: Uint8Array;
  /** For an info operation, the previous info operation with the same function and arguments, or -1. */
  private readonly twinBefore: Int32Array;
  /** (determinate set hash, state) → visited configurations with those: their determinate and info sets. */
  private readonly cache = new Map<string, Array<{ linearized: Uint32Array; info: Uint32Array }>>();
  cacheEntries = 0;
  // The deepest stuck point seen, for the report.
  private bestDepth = -1;
  private bestPrefix: number[] = [];
  private bestStuck = -1;
  private bestConcurrent: number[] = [];

  constructor(
    private readonly model: Model<S, I>,
    private readonly ops: readonly Operation[],
    private readonly inputs: readonly I[],
    private readonly limits: SearchLimits,
  ) {
    const n = ops.length;
    this.n = n;
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1).fill(-1);
    this.prev = new Int32Array(2 * n + 1).fill(-1);
    this.linearized = new Uint32Array(Math.ceil(n / 32));
    this.linearizedInfo = new Uint32Array(Math.ceil(n / 32));
    this.zobrist = zobristTable(n);
    this.isInfo = new Uint8Array(n);
    this.twinBefore = new Int32Array(n).fill(-1);
    // Operation ids follow invocation order, so the last twin seen is the previous one.
    const lastTwin = new Map<string, number>();
    for (let k = 0; k < n; k++) {
      const op = ops[k];
      assert(op !== undefined);
      if (op.status !== 'info') continue;
      this.isInfo[k] = 1;
      const twinKey = `${op.f} ${canonicalKey(op.value)} ${op.key === undefined ? '' : canonicalKey(op.key)}`;
      this.twinBefore[k] = lastTwin.get(twinKey) ?? -1;
      lastTwin.set(twinKey, k);
    }
    // Real-time order: events by their position; info returns (at infinity) last, in operation order.
    const entries: number[] = [];
    for (let k = 0; k < n; k++) entries.push(2 * k, 2 * k + 1);
    const position = (e: number): number => {
      const op = ops[e >> 1];
      assert(op !== undefined);
      return e % 2 === 0 ? op.callIndex : op.returnIndex;
    };
    entries.sort((a, b) => position(a) - position(b) || a - b);
    let last = this.head;
    for (const e of entries) {
      this.next[last] = e;
      this.prev[e] = last;
      last = e;
    }
    for (let k = 0; k < n; k++) {
      const op = ops[k];
      assert(op !== undefined && op.callIndex < op.returnIndex, 'an operation returns after its call');
    }
  }

  /** True if linearizable; false if not; throws OutOfTime past the deadline or cache bound. */
  run(): boolean {
    const { model, inputs, next, isInfo } = this;
    let okRemaining = 0;
    // Operations that surely happened (:ok, or a :fail the model kept, e.g. a compare-failed cas).
    for (const op of this.ops) if (op.status !== 'info') okRemaining++;
    const stackOps: number[] = [];
    const stackStates: S[] = [];
    let state = model.init();
    // Candidates are the calls before the first remaining return, tried in two passes: determinate
    // operations first, then info ones, so configurations using fewer info operations are visited
    // first and dominate the rest (see the header comment).
    let infoPass = 0;
    let entry = next[this.head] ?? -1;
    let steps = 0;
    for (;;) {
      if (okRemaining === 0) return true;
      if (++steps % clockCheckSteps === 0 && this.limits.now() > this.limits.deadline) throw new OutOfTime('time limit reached');
      assert(entry >= 0, 'a return entry precedes the end of the list while a determinate operation remains');
      const k = entry >> 1;
      const op = this.ops[k];
      assert(op !== undefined);
      if (entry % 2 === 0) {
        if (isInfo[k] !== infoPass || this.twinWaits(k)) {
          entry = next[entry] ?? -1;
          continue;
        }
        const after = model.step(state, inputs[k] as I);
        if (after !== undefined && this.remember(k, after)) {
          stackOps.push(k);
          stackStates.push(state);
          state = after;
          if (isInfo[k] === 0) okRemaining--;
          this.lift(k);
          infoPass = 0;
          entry = next[this.head] ?? -1;
        } else {
          entry = next[entry] ?? -1;
        }
        continue;
      }
      // A return: operation k had to be linearized by now. Info returns are last and okRemaining > 0,
      // so this is a determinate operation's return.
      assert(op.status !== 'info', 'stuck at an indeterminate return');
      if (infoPass === 0) {
        infoPass = 1;
        entry = next[this.head] ?? -1;
        continue;
      }
      if (stackOps.length > this.bestDepth) this.noteStuck(stackOps, entry);
      const popped = stackOps.pop();
      const previous = stackStates.pop();
      if (popped === undefined || previous === undefined) return false;
      state = previous;
      if (isInfo[popped] === 0) okRemaining++;
      this.toggle(popped);
      this.unlift(popped);
      // Resume the pass the popped operation was tried in, just after it.
      infoPass = isInfo[popped] ?? 0;
      entry = next[2 * popped] ?? -1;
    }
  }


  /** An info operation waits for its earlier twin (see the header comment). */
  private twinWaits(k: number): boolean {
    const twin = this.twinBefore[k] ?? -1;
    return twin >= 0 && !hasBit(this.linearizedInfo, twin);
  }

  /**
   * Adds operation k to the linearized sets and records the configuration; false (sets unchanged) if a
   * visited configuration equals or dominates it.
   */
  private remember(k: number, state: S): boolean {
    this.toggle(k);
    const stateKey = this.limits.bug === 'cache-ignores-state' ? '' : this.model.stateKey(state);
    const cacheKey = `${this.hash}:${stateKey}`;
    let bucket = this.cache.get(cacheKey);
    if (bucket) {
      for (let i = 0; i < bucket.length; i++) {
        const seen = bucket[i];
        if (seen === undefined || !sameBits(seen.linearized, this.linearized)) continue;
        if (isSubset(seen.info, this.linearizedInfo)) {
          this.toggle(k);
          return false;
        }
        // The new configuration dominates this one, so does everything this one dominates: drop it
        // (keeps each bucket an antichain, short to scan).
        if (isSubset(this.linearizedInfo, seen.info)) {
          bucket[i] = bucket[bucket.length - 1] as (typeof bucket)[number];
          bucket.pop();
          i--;
          this.cacheEntries--;
        }
      }
    } else {
      this.cache.set(cacheKey, (bucket = []));
    }
    if (this.cacheEntries >= this.limits.cacheEntriesMax) {
      throw new OutOfTime(`cache limit of ${this.limits.cacheEntriesMax} entries reached`);
    }
    bucket.push({ linearized: this.linearized.slice(), info: this.linearizedInfo.slice() });
    this.cacheEntries++;
    return true;
  }

  private toggle(k: number): void {
    const word = k >>> 5;
    const bit = 1 << (k & 31);
    if (this.isInfo[k] === 1) {
      this.linearizedInfo[word] = (this.linearizedInfo[word] ?? 0) ^ bit;
      return;
    }
    this.linearized[word] = (this.linearized[word] ?? 0) ^ bit;
    this.hash = (this.hash ^ (this.zobrist[k] ?? 0)) >>> 0;
  }

  /** Unlinks operation k's call and return. */
  private lift(k: number): void {
    for (const e of [2 * k, 2 * k + 1]) {
      const p = this.prev[e] ?? -1;
      const x = this.next[e] ?? -1;
      this.next[p] = x;
      if (x >= 0) this.prev[x] = p;
    }
  }

  /** Relinks operation k's return then call (reverse order of `lift`); their own links were kept. */
  private unlift(k: number): void {
    for (const e of [2 * k + 1, 2 * k]) {
      const p = this.prev[e] ?? -1;
      const x = this.next[e] ?? -1;
      this.next[p] = e;
      if (x >= 0) this.prev[x] = e;
    }
  }

  private noteStuck(stackOps: readonly number[], returnEntry: number): void {
    this.bestDepth = stackOps.length;
    this.bestPrefix = [...stackOps];
    this.bestStuck = returnEntry >> 1;
    const concurrent: number[] = [];
    for (let e = this.next[this.head] ?? -1; e >= 0 && e !== returnEntry; e = this.next[e] ?? -1) {
      if (e % 2 === 0) concurrent.push(e >> 1);
    }
    this.bestConcurrent = concurrent;
  }

  failureWindow(): FailureWindow {
    const { model } = this;
    let state = model.init();
    const prefix: LinearizedStep[] = [];
    for (const k of this.bestPrefix) {
      const after = model.step(state, this.inputs[k] as I);
      const op = this.ops[k];
      assert(after !== undefined && op !== undefined, 'the recorded prefix replays');
      state = after;
      prefix.push({ op, state: model.showState(state) });
    }
    const stuck = this.ops[this.bestStuck];
    assert(stuck !== undefined, 'a failed search noted where it was stuck');
    const concurrent = this.bestConcurrent.map((k) => this.ops[k]).filter((op): op is Operation => op !== undefined && op !== stuck);
    return { prefix, state: model.showState(state), stuck, concurrent };
  }
}

function hasBit(bits: Uint32Array, k: number): boolean {
  return ((bits[k >>> 5] ?? 0) & (1 << (k & 31))) !== 0;
}

/** Every bit of a is set in b. */
function isSubset(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (((a[i] ?? 0) & ~(b[i] ?? 0)) !== 0) return false;
  return true;
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Fixed pseudo-random 32-bit words (xorshift32): the same table every run, so results are reproducible. */
function zobristTable(n: number): Uint32Array {
  const table = new Uint32Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x >>> 0;
  }
  return table;
}

function assert(condition: boolean, message = 'checker invariant'): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
