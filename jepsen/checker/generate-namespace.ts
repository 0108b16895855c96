/**
 * Seeded namespace histories that are linearizable by construction (tests, benchmarks): clients run
 * operations of the namespace workload against a true sequential tree (`applyNamespaceOp`); each operation
 * takes effect at one instant between its invocation and completion, or not at all. Fates: ok (completes with
 * its result: `ok`, or `fail` with the error code, a readdir `ok` with its listing); info (took effect or not;
 * a readdir that is info is left unapplied); crashed (no completion; the client is replaced by a new process);
 * timeout (a readdir only: `fail` with value nil, it observed nothing). Steps of different clients interleave
 * at random. The same events as the real workload records (jepsen/workloads/namespace.ts).
 */
import type { EdnValue } from './edn.ts';
import type { HistoryEvent } from './history.ts';
import { driveClients, prng } from './generate.ts';
import type { NamespaceOp, NamespaceState } from './namespace-model.ts';
import { applyNamespaceOp, emptyTree, treeRoot } from './namespace-model.ts';

export interface NamespaceGenerateOptions {
  seed: number;
  processes: number;
  operations: number;
  /** Independent trees (history keys t0, t1, …). Default 1. */
  trees?: number;
  /** Names at depth 1, and below each of them. Default a, b, c and x, y (the workload's). */
  topNames?: readonly string[];
  subNames?: readonly string[];
  /** Chances that an operation ends info (default 0.05), crashes (0.02), or, a readdir, times out (0.05). */
  infoProbability?: number;
  crashProbability?: number;
  timeoutProbability?: number;
}

type Fate = 'ok' | 'info' | 'crash' | 'timeout';

interface Client {
  process: number;
  phase: 'idle' | 'invoked' | 'done';
  event?: HistoryEvent;
  op?: NamespaceOp;
  tree?: number;
  fate?: Fate;
  /** The completion's type and value, fixed at the linearization point. */
  type?: 'ok' | 'fail';
  output?: EdnValue;
}

export function generateNamespaceHistory(o: NamespaceGenerateOptions): HistoryEvent[] {
  const random = prng(o.seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  const trees = o.trees ?? 1;
  const top = o.topNames ?? ['a', 'b', 'c'];
  const sub = o.subNames ?? ['x', 'y'];
  const paths = [...top, ...top.flatMap((t) => sub.map((s) => `${t}/${s}`))];
  const pInfo = o.infoProbability ?? 0.05;
  const pCrash = o.crashProbability ?? 0.02;
  const pTimeout = o.timeoutProbability ?? 0.05;
  const state: NamespaceState[] = Array.from({ length: trees }, () => emptyTree);
  const events: HistoryEvent[] = [];
  let nextProcess = o.processes;
  const clients: Client[] = Array.from({ length: o.processes }, (_, process) => ({ process, phase: 'idle' as const }));
  let invoked = 0;

  const invoke = (c: Client): void => {
    const r = random();
    let op: NamespaceOp;
    let value: EdnValue;
    if (r < 0.25) {
      op = { f: 'readdir', path: random() < 0.5 ? treeRoot : pick(top) };
      value = op.path;
    } else if (r < 0.45) {
      op = { f: 'rename', from: pick(paths), to: pick(paths) };
      value = [op.from, op.to];
    } else {
      op = { f: pick(['mkdir', 'create', 'unlink', 'rmdir'] as const), path: pick(paths) };
      value = op.path;
    }
    const tree = int(trees);
    const event: HistoryEvent = { process: c.process, type: 'invoke', f: op.f, value, key: `t${tree}`, line: 0 };
    const p = random();
    c.fate = p < pInfo ? 'info' : p < pInfo + pCrash ? 'crash' : op.f === 'readdir' && p < pInfo + pCrash + pTimeout ? 'timeout' : 'ok';
    Object.assign(c, { event, op, tree, phase: 'invoked' });
    delete c.type;
    delete c.output;
    events.push(event);
    invoked++;
  };

  // The linearization point.
  const apply = (c: Client): void => {
    const { op, tree = 0 } = c;
    if (!op) throw new Error('apply without an invocation');
    c.phase = 'done';
    const takesEffect = c.fate === 'ok' || (op.f !== 'readdir' && (c.fate === 'info' || c.fate === 'crash') && random() < 0.5);
    if (!takesEffect) return;
    const { result, state: after } = applyNamespaceOp(state[tree] ?? emptyTree, op);
    state[tree] = after;
    if (typeof result !== 'string') [c.type, c.output] = ['ok', [...result]];
    else if (result === 'ok') [c.type, c.output] = ['ok', c.event?.value ?? null];
    else [c.type, c.output] = ['fail', result];
  };

  const complete = (c: Client, index: number): void => {
    const e = c.event;
    if (!e) throw new Error('complete without an invocation');
    c.phase = 'idle';
    delete c.event;
    if (c.fate === 'crash') {
      clients[index] = { process: nextProcess++, phase: 'idle' };
      return;
    }
    const done: HistoryEvent =
      c.fate === 'info'
        ? { process: e.process, type: 'info', f: e.f, value: e.value, line: 0 }
        : c.fate === 'timeout'
          ? { process: e.process, type: 'fail', f: e.f, value: null, line: 0 }
          : { process: e.process, type: c.type ?? 'ok', f: e.f, value: c.output ?? null, line: 0 };
    if (e.key !== undefined) done.key = e.key;
    events.push(done);
    if (c.fate === 'info') clients[index] = { process: nextProcess++, phase: 'idle' };
  };

  driveClients(clients, int, () => invoked < o.operations, { invoke, apply, complete });
  return events;
}
