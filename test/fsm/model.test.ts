/**
 * Model-based test: random sequences of namespace commands (in random batch groupings, some retried through
 * a session) applied to the state machine and to a plain in-memory POSIX-like tree. Every result (success
 * value or error code), every generation and inode id, and every stat/readdir must agree, and the stored
 * state's invariants must hold after every batch.
 */
import fc from 'fast-check';
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import type { FsResult } from '../../src/fsm/errors.ts';
import { Harness } from './harness.ts';

/** Node of the model tree. */
interface MNode {
  id: number;
  type: 'dir' | 'file';
  mode: number;
  gen: number;
  children: Map<string, MNode>;
}

class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

const fail = (code: string): never => {
  throw new ModelError(code);
};

/** The reference: a tree of objects, POSIX rules written out plainly. */
class Model {
  root: MNode = { id: 1, type: 'dir', mode: 0o755, gen: 0, children: new Map() };
  nextId = 2;
  index = 0;

  /** Parses the path string the components make (so [''] is "/", the root). */
  parse(components: readonly string[]): string[] {
    const text = toPath(components);
    const path = text === '/' ? [] : text.slice(1).split('/');
    for (const c of path) {
      if (c === '' || c === '.' || c === '..') fail('EINVAL');
      if (c.length > 255) fail('ENAMETOOLONG');
    }
    return path;
  }

  resolve(path: readonly string[]): MNode {
    let node = this.root;
    for (const c of path) {
      if (node.type !== 'dir') fail('ENOTDIR');
      node = node.children.get(c) ?? fail('ENOENT');
    }
    return node;
  }

  resolveParent(path: readonly string[]): { parent: MNode; name: string; target: MNode | undefined } {
    const parent = this.resolve(path.slice(0, -1));
    if (parent.type !== 'dir') fail('ENOTDIR');
    const name = path[path.length - 1]!;
    return { parent, name, target: parent.children.get(name) };
  }

  checkGen(current: number | undefined, ifGen: number | undefined): void {
    if (ifGen === undefined) return;
    const ok = current === undefined ? ifGen === 0 : ifGen !== 0 && current === ifGen;
    if (!ok) fail('EPRECONDITION');
  }

  newNode(parent: MNode, name: string, type: 'dir' | 'file', mode: number): MNode {
    const node: MNode = { id: this.nextId++, type, mode, gen: this.index, children: new Map() };
    parent.children.set(name, node);
    parent.gen = this.index;
    return node;
  }

  /** Applies one command; returns the success value's comparable part, or throws ModelError. */
  apply(op: MOp): unknown {
    this.index += 1;
    const snapshot = this.clone();
    try {
      return this.applyInner(op);
    } catch (e) {
      Object.assign(this, snapshot); // a failed command leaves no trace
      throw e;
    }
  }

  private applyInner(op: MOp): unknown {
    switch (op.type) {
      case 'mkdir': {
        const path = this.parse(op.path);
        if (op.mode > 0o7777) fail('EINVAL');
        if (op.parents) {
          let node = this.root;
          let depth = 0;
          for (; depth < path.length; depth++) {
            if (node.type !== 'dir') fail('ENOTDIR');
            const child = node.children.get(path[depth]!);
            if (child === undefined) break;
            node = child;
          }
          const exists = depth === path.length;
          this.checkGen(exists ? node.gen : undefined, op.ifGen);
          if (exists) {
            if (node.type !== 'dir') fail('EEXIST');
            return { id: node.id, generation: node.gen };
          }
          for (; depth < path.length; depth++) node = this.newNode(node, path[depth]!, 'dir', op.mode);
          return { id: node.id, generation: node.gen };
        }
        if (path.length === 0) {
          this.checkGen(this.root.gen, op.ifGen);
          fail('EEXIST');
        }
        const { parent, name, target } = this.resolveParent(path);
        this.checkGen(target?.gen, op.ifGen);
        if (target !== undefined) fail('EEXIST');
        const node = this.newNode(parent, name, 'dir', op.mode);
        return { id: node.id, generation: node.gen };
      }
      case 'create': {
        const path = this.parse(op.path);
        if (op.mode > 0o7777) fail('EINVAL');
        if (path.length === 0) fail('EISDIR');
        const { parent, name, target } = this.resolveParent(path);
        this.checkGen(target?.gen, op.ifGen);
        if (target !== undefined) {
          if (target.type === 'dir') fail('EISDIR');
          if (op.exclusive) fail('EEXIST');
        }
        // Truncation makes a new inode; an explicit mode wins over the old file's (always explicit here).
        const node = this.newNode(parent, name, 'file', op.mode);
        return { id: node.id, generation: node.gen };
      }
      case 'setattr': {
        const path = this.parse(op.path);
        if (op.mode > 0o7777) fail('EINVAL');
        const node = this.resolve(path);
        this.checkGen(node.gen, op.ifGen);
        node.mode = op.mode;
        node.gen = this.index;
        return { id: node.id, generation: node.gen };
      }
      case 'rename': {
        const from = this.parse(op.path);
        const to = this.parse(op.to);
        if (from.length === 0 || to.length === 0) fail('EINVAL');
        const src = this.resolveParent(from);
        const dst = this.resolveParent(to);
        const node = src.target ?? fail('ENOENT');
        this.checkGen(dst.target?.gen, op.ifGen);
        if (from.join('/') === to.join('/')) return { id: node.id, generation: node.gen };
        if (node.type === 'dir' && to.length > from.length && from.every((c, i) => to[i] === c))
          fail('EINVAL');
        if (from.length > to.length && to.every((c, i) => from[i] === c)) fail('ENOTEMPTY');
        const replaced = dst.target;
        if (replaced !== undefined) {
          if (node.type === 'dir' && replaced.type !== 'dir') fail('ENOTDIR');
          if (node.type === 'file' && replaced.type === 'dir') fail('EISDIR');
          if (replaced.type === 'dir' && replaced.children.size > 0) fail('ENOTEMPTY');
        }
        src.parent.children.delete(src.name);
        dst.parent.children.set(dst.name, node);
        src.parent.gen = this.index;
        dst.parent.gen = this.index;
        node.gen = this.index;
        return { id: node.id, generation: node.gen };
      }
      case 'unlink':
      case 'rmdir':
      case 'deleteRecursive': {
        const path = this.parse(op.path);
        if (path.length === 0) fail(op.type === 'unlink' ? 'EISDIR' : 'EINVAL');
        const { parent, name, target } = this.resolveParent(path);
        if (target === undefined) fail('ENOENT');
        this.checkGen(target!.gen, op.ifGen);
        if (op.type === 'unlink' && target!.type === 'dir') fail('EISDIR');
        if (op.type === 'rmdir' && target!.type !== 'dir') fail('ENOTDIR');
        if (op.type === 'rmdir' && target!.children.size > 0) fail('ENOTEMPTY');
        parent.children.delete(name);
        parent.gen = this.index;
        return {};
      }
    }
  }

  /** Generation of the inode at a path, or undefined. */
  genAt(path: readonly string[]): number | undefined {
    try {
      return this.resolve(this.parse(path)).gen;
    } catch {
      return undefined;
    }
  }

  private clone(): { root: MNode; nextId: number } {
    const copy = (n: MNode): MNode => ({
      ...n,
      children: new Map([...n.children].map(([k, v]) => [k, copy(v)])),
    });
    return { root: copy(this.root), nextId: this.nextId };
  }
}

/** A generated command, in model terms (paths as component lists). */
type MOp =
  | { type: 'mkdir'; path: string[]; parents: boolean; mode: number; ifGen?: number }
  | { type: 'create'; path: string[]; exclusive: boolean; mode: number; ifGen?: number }
  | { type: 'setattr'; path: string[]; mode: number; ifGen?: number }
  | { type: 'rename'; path: string[]; to: string[]; ifGen?: number }
  | { type: 'unlink' | 'rmdir' | 'deleteRecursive'; path: string[]; ifGen?: number };

type Step =
  | { kind: 'batch'; ops: { op: MOp; gen: GenChoice; session: boolean }[] }
  | { kind: 'retry' }
  | { kind: 'stat' | 'readdir'; path: string[] };

/** How a step picks ifGeneration: none, 0, the target's current generation, or a wrong one. */
type GenChoice = 'none' | 'zero' | 'current' | 'wrong';

const name = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom('a', 'b', 'c') },
  { weight: 1, arbitrary: fc.constantFrom('', '.', '..', 'x'.repeat(256)) },
);
const path = fc.array(name, { maxLength: 3 });
const mode = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 0o777 }) },
  { weight: 1, arbitrary: fc.constant(0o10000) },
);
const opArb: fc.Arbitrary<MOp> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ type: fc.constant('mkdir' as const), path, parents: fc.boolean(), mode }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ type: fc.constant('create' as const), path, exclusive: fc.boolean(), mode }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('setattr' as const), path, mode }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('rename' as const), path, to: path }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constantFrom('unlink' as const, 'rmdir' as const, 'deleteRecursive' as const),
      path,
    }),
  },
);
const genChoice = fc.oneof(
  { weight: 6, arbitrary: fc.constant('none' as const) },
  { weight: 1, arbitrary: fc.constantFrom('zero' as const, 'current' as const, 'wrong' as const) },
);
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('batch' as const),
      ops: fc.array(fc.record({ op: opArb, gen: genChoice, session: fc.boolean() }), {
        minLength: 1,
        maxLength: 4,
      }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'retry' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('stat' as const, 'readdir' as const), path }) },
);

const toPath = (components: readonly string[]) => `/${components.join('/')}`;

function toOp(m: MOp, ifGeneration: number | undefined): Op {
  const cond = ifGeneration === undefined ? {} : { ifGeneration };
  switch (m.type) {
    case 'mkdir':
      return { type: 'mkdir', path: toPath(m.path), parents: m.parents, mode: m.mode, ...cond };
    case 'create':
      return { type: 'create', path: toPath(m.path), exclusive: m.exclusive, mode: m.mode, ...cond };
    case 'setattr':
      return { type: 'setattr', path: toPath(m.path), mode: m.mode, ...cond };
    case 'rename':
      return { type: 'rename', from: toPath(m.path), to: toPath(m.to), ...cond };
    default:
      return { type: m.type, path: toPath(m.path), ...cond };
  }
}

/** The comparable form of a result: the value, or the error code. */
function outcome(r: FsResult | undefined): unknown {
  if (r === undefined) return 'no result';
  return r.ok ? r.value : r.code;
}

function modelOutcome(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ModelError) return e.code;
    throw e;
  }
}

function same(a: unknown, b: unknown, what: string): void {
  if (JSON.stringify(a) !== JSON.stringify(b))
    throw new Error(`${what}: fsm ${JSON.stringify(a)} vs model ${JSON.stringify(b)}`);
}

async function compareTree(h: Harness, node: MNode, path: string[]): Promise<void> {
  const st = await h.sm.stat(toPath(path));
  same(
    st.ok && [st.value.id, st.value.type, st.value.mode, st.value.generation, st.value.childCount],
    [node.id, node.type, node.mode, node.gen, node.children.size],
    `stat ${toPath(path)}`,
  );
  if (node.type !== 'dir') return;
  const rd = await h.sm.readdir(toPath(path));
  same(
    rd.ok && rd.value.entries.map((e) => [e.name, e.id, e.type]),
    [...node.children].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, c]) => [n, c.id, c.type]),
    `readdir ${toPath(path)}`,
  );
  for (const [n, c] of node.children) await compareTree(h, c, [...path, n]);
}

async function run(steps: readonly Step[]): Promise<void> {
  const h = await Harness.open();
  const model = new Model();
  const client = outcome(await h.run({ type: 'openSession' })) as { clientId: number };
  model.index += 1;
  let seq = 0;
  let last: { op: Op; result: unknown } | undefined;
  for (const step of steps) {
    if (step.kind === 'retry') {
      if (last === undefined) continue;
      const r = await h.run(last.op, { session: { clientId: client.clientId, seq, ack: seq - 1 } });
      model.index += 1; // an entry, though nothing is applied
      same(outcome(r), last.result, 'retried command');
    } else if (step.kind !== 'batch') {
      const p = toPath(step.path);
      if (step.kind === 'stat') {
        const r = await h.sm.stat(p);
        const m = modelOutcome(() => {
          const n = model.resolve(model.parse(step.path));
          return [n.type, n.mode, n.gen];
        });
        same(r.ok ? [r.value.type, r.value.mode, r.value.generation] : r.code, m, `stat ${p}`);
      } else {
        const r = await h.sm.readdir(p);
        const m = modelOutcome(() => {
          const n = model.resolve(model.parse(step.path));
          return n.type === 'dir' ? [...n.children.keys()].sort() : fail('ENOTDIR');
        });
        same(r.ok ? r.value.entries.map((e) => e.name) : r.code, m, `readdir ${p}`);
      }
    } else {
      const commands = [];
      const expected: unknown[] = [];
      const sent: { op: Op; session: boolean }[] = [];
      for (const { op, gen, session } of step.ops) {
        const target = op.type === 'rename' ? op.to : op.path;
        const current = model.genAt(target);
        const ifGen =
          gen === 'none'
            ? undefined
            : gen === 'zero'
              ? 0
              : gen === 'current'
                ? (current ?? 0)
                : (current ?? 0) + 1;
        const fsOp = toOp(op, ifGen);
        expected.push(modelOutcome(() => model.apply(ifGen === undefined ? op : { ...op, ifGen })));
        if (session) seq += 1;
        commands.push(
          h.command(fsOp, session ? { session: { clientId: client.clientId, seq, ack: seq - 1 } } : {}),
        );
        sent.push({ op: fsOp, session });
      }
      const results = await h.runBatch(commands);
      results.forEach((r, i) => {
        same(outcome(r), expected[i], `${JSON.stringify(sent[i]!.op)}`);
        if (sent[i]!.session) last = { op: sent[i]!.op, result: expected[i] };
      });
    }
    const problems = await h.invariants();
    if (problems.length > 0) throw new Error(`invariants: ${problems.join('; ')}`);
  }
  await compareTree(h, model.root, []);
}

void t.test('the state machine agrees with a model POSIX tree', async (t) => {
  const runs = Number(process.env['FSM_MODEL_RUNS'] ?? 300);
  const envSeed = Number(process.env['FC_SEED']);
  const seed = Number.isInteger(envSeed) ? envSeed : 0x5eed;
  const details = await fc.check(fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 50 }), run), {
    numRuns: runs,
    seed,
  });
  if (details.failed) t.fail(fc.defaultReportMessage(details) ?? 'failed');
  else t.pass(`fsm vs model (${details.numRuns} runs, seed ${seed})`);
});
