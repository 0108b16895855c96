/**
 * A brute-force linearizability oracle for short histories, written independently of the checker: it
 * tries every order of the operations consistent with real time (an operation may go next only if no
 * other remaining operation returned before it was invoked), with its own plain semantics of the
 * register and the kv map over a whole Map of keys (so it does not rely on partitioning either).
 */
import type { Operation } from '../../jepsen/checker/history.ts';

export type OracleSemantics = { model: 'cas-register'; initial: number; failedCas: 'ignore' | 'compare-failed' } | { model: 'kv' };

type Value = unknown;
const same = (a: Value, b: Value): boolean => JSON.stringify(a) === JSON.stringify(b);

interface Step {
  op: Operation;
  /** Must be placed: :ok, or a :fail that still ran (a compare-failed cas). */
  determinate: boolean;
  apply(state: Map<string, Value>): Map<string, Value> | undefined;
}

function keyOf(op: Operation): string {
  return JSON.stringify(op.key ?? null);
}

function registerStep(op: Operation, s: Extract<OracleSemantics, { model: 'cas-register' }>): Step | undefined {
  const k = keyOf(op);
  const get = (m: Map<string, Value>): Value => (m.has(k) ? m.get(k) : s.initial);
  const set = (m: Map<string, Value>, v: Value): Map<string, Value> => new Map(m).set(k, v);
  const determinate = op.status === 'ok';
  switch (op.f) {
    case 'read':
      if (op.status !== 'ok') return undefined;
      return { op, determinate, apply: (m) => (op.output === null || same(get(m), op.output) ? m : undefined) };
    case 'write':
      if (op.status === 'fail') return undefined;
      return { op, determinate, apply: (m) => set(m, op.value) };
    case 'cas': {
      const [from, to] = op.value as [Value, Value];
      if (op.status === 'fail') {
        if (s.failedCas === 'ignore') return undefined;
        return { op, determinate: true, apply: (m) => (same(get(m), from) ? undefined : m) };
      }
      return { op, determinate, apply: (m) => (same(get(m), from) ? set(m, to) : undefined) };
    }
    default:
      throw new Error(`oracle: unknown register op ${op.f}`);
  }
}

function kvStep(op: Operation): Step | undefined {
  const k = keyOf(op);
  const determinate = op.status === 'ok';
  switch (op.f) {
    case 'get':
      if (op.status !== 'ok') return undefined;
      return { op, determinate, apply: (m) => ((op.output === null ? !m.has(k) : m.get(k) === op.output) ? m : undefined) };
    case 'put':
      if (op.status === 'fail') return undefined;
      return { op, determinate, apply: (m) => new Map(m).set(k, op.value) };
    case 'append':
      if (op.status === 'fail') return undefined;
      return { op, determinate, apply: (m) => new Map(m).set(k, `${(m.get(k) as string | undefined) ?? ''}${op.value as string}`) };
    default:
      throw new Error(`oracle: unknown kv op ${op.f}`);
  }
}

export function oracleLinearizable(ops: readonly Operation[], semantics: OracleSemantics): boolean {
  const steps: Step[] = [];
  for (const op of ops) {
    const step = semantics.model === 'kv' ? kvStep(op) : registerStep(op, semantics);
    if (step) steps.push(step);
  }
  if (steps.length > 12) throw new Error('oracle: history too long for brute force');
  const done = new Array<boolean>(steps.length).fill(false);
  const search = (state: Map<string, Value>): boolean => {
    if (steps.every((s, i) => done[i] || !s.determinate)) return true;
    for (let i = 0; i < steps.length; i++) {
      const candidate = steps[i];
      if (done[i] || !candidate) continue;
      // Real time: every remaining operation that returned before this one's invocation goes first.
      const blocked = steps.some((other, j) => !done[j] && j !== i && other.op.returnIndex < candidate.op.callIndex);
      if (blocked) continue;
      const after = candidate.apply(state);
      if (after === undefined) continue;
      done[i] = true;
      const found = search(after);
      done[i] = false;
      if (found) return true;
    }
    return false;
  };
  return search(new Map());
}
