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
  return searchOrders(steps);
}

function searchOrders(steps: readonly Step[]): boolean {
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

// ---------------------------------------------------------------------------------------------------
// The namespace, written independently of jepsen/checker/namespace-model.ts: a tree of nodes per key,
// POSIX-like rules spelled out on objects (as test/fsm/model.test.ts does), cloned before each change.

interface TreeNode {
  readonly type: 'file' | 'dir';
  readonly children: Map<string, TreeNode>;
}

class Refused extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

const refuse = (code: string): never => {
  throw new Refused(code);
};

function cloneNode(node: TreeNode): TreeNode {
  return { type: node.type, children: new Map([...node.children].map(([name, child]) => [name, cloneNode(child)])) };
}

function walk(root: TreeNode, parts: readonly string[]): TreeNode {
  let node = root;
  for (const part of parts) {
    if (node.type !== 'dir') refuse('ENOTDIR');
    node = node.children.get(part) ?? refuse('ENOENT');
  }
  return node;
}

function parentOf(root: TreeNode, parts: readonly string[]): { dir: TreeNode; name: string } {
  const dir = walk(root, parts.slice(0, -1));
  if (dir.type !== 'dir') refuse('ENOTDIR');
  return { dir, name: parts[parts.length - 1] ?? refuse('EINVAL') };
}

/** Runs one namespace operation on `root` (changed in place); returns its result: 'ok', a listing, or throws Refused. */
function runNamespaceOp(root: TreeNode, f: string, value: unknown): string | string[] {
  const split = (p: unknown): string[] => (p === '.' ? [] : String(p).split('/'));
  switch (f) {
    case 'readdir': {
      const dir = walk(root, split(value));
      if (dir.type !== 'dir') refuse('ENOTDIR');
      return [...dir.children].map(([name, child]) => (child.type === 'dir' ? `${name}/` : name)).sort();
    }
    case 'mkdir':
    case 'create': {
      const { dir, name } = parentOf(root, split(value));
      const existing = dir.children.get(name);
      if (existing) refuse(f === 'create' && existing.type === 'dir' ? 'EISDIR' : 'EEXIST');
      dir.children.set(name, { type: f === 'mkdir' ? 'dir' : 'file', children: new Map() });
      return 'ok';
    }
    case 'unlink':
    case 'rmdir': {
      const { dir, name } = parentOf(root, split(value));
      const node = dir.children.get(name) ?? refuse('ENOENT');
      if (f === 'unlink' && node.type === 'dir') refuse('EISDIR');
      if (f === 'rmdir' && node.type !== 'dir') refuse('ENOTDIR');
      if (node.children.size > 0) refuse('ENOTEMPTY');
      dir.children.delete(name);
      return 'ok';
    }
    case 'rename': {
      const [fromPath, toPath] = value as [string, string];
      const from = split(fromPath);
      const to = split(toPath);
      const src = parentOf(root, from);
      const dst = parentOf(root, to);
      const node = src.dir.children.get(src.name) ?? refuse('ENOENT');
      if (fromPath === toPath) return 'ok';
      if (node.type === 'dir' && to.length > from.length && from.every((c, i) => to[i] === c)) refuse('EINVAL');
      if (from.length > to.length && to.every((c, i) => from[i] === c)) refuse('ENOTEMPTY');
      const replaced = dst.dir.children.get(dst.name);
      if (replaced) {
        if (node.type === 'dir' && replaced.type !== 'dir') refuse('ENOTDIR');
        if (node.type === 'file' && replaced.type === 'dir') refuse('EISDIR');
        if (replaced.children.size > 0) refuse('ENOTEMPTY');
      }
      src.dir.children.delete(src.name);
      dst.dir.children.set(dst.name, node);
      return 'ok';
    }
    default:
      throw new Error(`oracle: unknown namespace op ${f}`);
  }
}

function namespaceStep(op: Operation): Step | undefined {
  const k = keyOf(op);
  const isRead = op.f === 'readdir';
  if (op.status === 'info' && isRead) return undefined;
  if (op.status === 'fail' && op.output === null) return undefined;
  const expected = op.status === 'info' ? undefined : op.status === 'fail' ? op.output : isRead ? op.output : 'ok';
  return {
    op,
    determinate: op.status !== 'info',
    apply: (m) => {
      const root = cloneNode((m.get(k) as TreeNode | undefined) ?? { type: 'dir', children: new Map() });
      let result: unknown;
      try {
        result = runNamespaceOp(root, op.f, op.value);
      } catch (e) {
        if (!(e instanceof Refused)) throw e;
        result = e.code;
      }
      if (expected !== undefined && !same(Array.isArray(expected) ? [...(expected as string[])].sort() : expected, result)) return undefined;
      return typeof result === 'string' && result !== 'ok' ? m : new Map(m).set(k, root);
    },
  };
}

/** The namespace oracle: every real-time-consistent order of the operations, on a whole Map of trees. */
export function oracleNamespaceLinearizable(ops: readonly Operation[]): boolean {
  return searchOrders(ops.flatMap((op) => namespaceStep(op) ?? []));
}
