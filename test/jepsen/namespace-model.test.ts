/**
 * The namespace model (jepsen/checker/namespace-model.ts): each operation's result and error code on chosen
 * trees; the model against the real metadata state machine (src/fsm, over a MemoryKv) on random sequences of
 * the workload's operations, result for result; the checker with the model on small hand-written histories
 * (a lost mkdir, a phantom file, info mutations, a failing window, unknown at the time limit); typed errors for
 * operations the model does not know; and each planted model bug caught by the comparison with the state
 * machine.
 */
import t from 'tap';
import { SeededRandom } from '../../jepsen/harness/random.ts';
import { Harness } from '../fsm/harness.ts';
import type { Op } from '../../src/fsm/commands.ts';
import type { NamespaceOp, NamespacePlantedBug, NamespaceResult, NamespaceState } from '../../jepsen/checker/namespace-model.ts';
import { applyNamespaceOp, emptyTree, namespaceModel, namespacePlantedBugs, resultKey, treeOf } from '../../jepsen/checker/namespace-model.ts';
import { checkLinearizable } from '../../jepsen/checker/wgl.ts';
import { pairOperations, parseJsonLines } from '../../jepsen/checker/history.ts';
import { ModelError } from '../../jepsen/checker/models.ts';
import { checkHistory, describeResult } from '../../jepsen/checker/index.ts';
import { NamespaceWorkload, namespacePaths } from '../../jepsen/workloads/namespace.ts';

const run = (state: NamespaceState, op: NamespaceOp): { result: NamespaceResult; tree: string } => {
  const out = applyNamespaceOp(state, op);
  return { result: out.result, tree: out.state.key };
};

void t.test('each operation: success and every error code, in the state machine order', (t) => {
  const tree = treeOf(['a/', 'a/x', 'b', 'c/', 'c/y/']);
  const cases: Array<[NamespaceOp, NamespaceResult, string]> = [
    // mkdir
    [{ f: 'mkdir', path: 'b' }, 'EEXIST', 'a file there'],
    [{ f: 'mkdir', path: 'a' }, 'EEXIST', 'a directory there'],
    [{ f: 'mkdir', path: 'a/y' }, 'ok', 'in an existing directory'],
    [{ f: 'mkdir', path: 'x/y' }, 'ENOENT', 'missing parent'],
    [{ f: 'mkdir', path: 'b/y' }, 'ENOTDIR', 'parent is a file'],
    // create (exclusive)
    [{ f: 'create', path: 'c/x' }, 'ok', 'a new file'],
    [{ f: 'create', path: 'a/x' }, 'EEXIST', 'a file there'],
    [{ f: 'create', path: 'c/y' }, 'EISDIR', 'a directory there'],
    [{ f: 'create', path: 'b/x' }, 'ENOTDIR', 'parent is a file'],
    [{ f: 'create', path: 'y/x' }, 'ENOENT', 'missing parent'],
    // unlink
    [{ f: 'unlink', path: 'b' }, 'ok', 'a file'],
    [{ f: 'unlink', path: 'a' }, 'EISDIR', 'a directory'],
    [{ f: 'unlink', path: 'y' }, 'ENOENT', 'missing'],
    [{ f: 'unlink', path: 'b/x' }, 'ENOTDIR', 'parent is a file'],
    // rmdir
    [{ f: 'rmdir', path: 'c/y' }, 'ok', 'an empty directory'],
    [{ f: 'rmdir', path: 'a' }, 'ENOTEMPTY', 'a directory with a file'],
    [{ f: 'rmdir', path: 'c' }, 'ENOTEMPTY', 'a directory with a directory'],
    [{ f: 'rmdir', path: 'b' }, 'ENOTDIR', 'a file'],
    [{ f: 'rmdir', path: 'x' }, 'ENOENT', 'missing'],
    [{ f: 'rmdir', path: 'x/y' }, 'ENOENT', 'missing parent'],
    // rename
    [{ f: 'rename', from: 'x', to: 'y' }, 'ENOENT', 'missing source'],
    [{ f: 'rename', from: 'b/x', to: 'y' }, 'ENOTDIR', "source's parent is a file"],
    [{ f: 'rename', from: 'b', to: 'x/y' }, 'ENOENT', "destination's parent missing"],
    [{ f: 'rename', from: 'a', to: 'b/y' }, 'ENOTDIR', "destination's parent is a file"],
    [{ f: 'rename', from: 'x', to: 'b/y' }, 'ENOTDIR', "missing source, destination's parent a file: parents first"],
    [{ f: 'rename', from: 'a/x', to: 'a' }, 'ENOTEMPTY', 'a file onto its own directory'],
    [{ f: 'rename', from: 'a', to: 'a' }, 'ok', 'onto itself: nothing happens'],
    [{ f: 'rename', from: 'c', to: 'c/y/z' }, 'EINVAL', 'a directory under itself'],
    [{ f: 'rename', from: 'c', to: 'c/x' }, 'EINVAL', 'a directory under itself, new name'],
    [{ f: 'rename', from: 'a', to: 'b' }, 'ENOTDIR', 'a directory over a file'],
    [{ f: 'rename', from: 'b', to: 'c/y' }, 'EISDIR', 'a file over a directory'],
    [{ f: 'rename', from: 'c/y', to: 'a' }, 'ENOTEMPTY', 'over a non-empty directory'],
    [{ f: 'rename', from: 'b', to: 'a/x' }, 'ok', 'a file over a file'],
    [{ f: 'rename', from: 'a', to: 'c/y' }, 'ok', 'a directory over an empty directory'],
    [{ f: 'rename', from: 'c/y', to: 'd' }, 'ok', 'a directory to a new name'],
    // readdir
    [{ f: 'readdir', path: '.' }, ['a/', 'b', 'c/'], 'the tree'],
    [{ f: 'readdir', path: 'a' }, ['x'], 'a directory'],
    [{ f: 'readdir', path: 'c/y' }, [], 'an empty directory'],
    [{ f: 'readdir', path: 'b' }, 'ENOTDIR', 'a file'],
    [{ f: 'readdir', path: 'y' }, 'ENOENT', 'missing'],
    [{ f: 'readdir', path: 'b/x' }, 'ENOTDIR', 'below a file'],
  ];
  for (const [op, expected, why] of cases) {
    const { result, tree: after } = run(tree, op);
    t.same(result, expected, `${op.f} ${JSON.stringify(op)}: ${why}`);
    if (result !== 'ok' || (op.f === 'rename' && op.from === op.to)) t.equal(after, tree.key, `${op.f}: nothing changed`);
  }
  t.end();
});

void t.test('states after successful operations', (t) => {
  const tree = treeOf(['a/', 'a/x', 'a/y/', 'a/y/z', 'b/']);
  t.equal(run(tree, { f: 'rename', from: 'a', to: 'b' }).tree, 'b/ b/x b/y/ b/y/z', 'a directory moves with everything below it, replacing an empty one');
  t.equal(run(tree, { f: 'rename', from: 'a', to: 'b/c' }).tree, 'b/ b/c/ b/c/x b/c/y/ b/c/y/z', 'a directory moves deeper');
  t.equal(run(tree, { f: 'rename', from: 'a/x', to: 'b/x' }).tree, 'a/ a/y/ a/y/z b/ b/x', 'a file moves across directories');
  t.equal(run(tree, { f: 'mkdir', path: 'c' }).tree, 'a/ a/x a/y/ a/y/z b/ c/');
  t.equal(run(tree, { f: 'create', path: 'b/q' }).tree, 'a/ a/x a/y/ a/y/z b/ b/q');
  t.equal(run(tree, { f: 'unlink', path: 'a/x' }).tree, 'a/ a/y/ a/y/z b/');
  t.equal(run(tree, { f: 'rmdir', path: 'b' }).tree, 'a/ a/x a/y/ a/y/z');
  t.same(run(tree, { f: 'readdir', path: 'a/y' }).result, ['z'], 'a listing at depth 2');
  const unchanged = applyNamespaceOp(tree, { f: 'mkdir', path: 'a' });
  t.equal(unchanged.state, tree, 'an error returns the same state object (cheap for the search)');
  t.equal(emptyTree.key, '', 'the empty tree');
  t.end();
});

// ---------------------------------------------------------------------------------------------------
// The model against the real state machine

const root = '/t';
const abs = (p: string): string => (p === '.' ? root : `${root}/${p}`);

function fsmOp(op: NamespaceOp): Op {
  switch (op.f) {
    case 'mkdir':
      return { type: 'mkdir', path: abs(op.path) };
    case 'create':
      return { type: 'create', path: abs(op.path), exclusive: true };
    case 'unlink':
      return { type: 'unlink', path: abs(op.path) };
    case 'rmdir':
      return { type: 'rmdir', path: abs(op.path) };
    case 'rename':
      return { type: 'rename', from: abs(op.from), to: abs(op.to) };
    case 'readdir':
      throw new Error('readdir is a query');
  }
}

async function fsmResult(h: Harness, op: NamespaceOp): Promise<NamespaceResult> {
  if (op.f === 'readdir') {
    const r = await h.sm.readdir(abs(op.path));
    if (!r.ok) return r.code as NamespaceResult;
    return r.value.entries.map((e) => (e.type === 'dir' ? `${e.name}/` : e.name)).sort();
  }
  const r = await h.run(fsmOp(op));
  return r.ok ? 'ok' : (r.code as NamespaceResult);
}

/** Runs the ops on a fresh state machine and on the model; the first disagreement, or undefined. */
async function firstDisagreement(ops: readonly NamespaceOp[], bug: NamespacePlantedBug): Promise<string | undefined> {
  const h = await Harness.open();
  await h.ok({ type: 'mkdir', path: root });
  let state = emptyTree;
  for (const [i, op] of ops.entries()) {
    const real = await fsmResult(h, op);
    const modelled = applyNamespaceOp(state, op, bug);
    state = modelled.state;
    if (resultKey(real) !== resultKey(modelled.result)) return `op ${i} ${JSON.stringify(op)}: state machine ${resultKey(real)}, model ${resultKey(modelled.result)}`;
  }
  return undefined;
}

/** The workload's own operation mix (NamespaceWorkload.pickOp), seeded. */
function sequence(seed: number): NamespaceOp[] {
  const random = new SeededRandom(seed);
  return Array.from({ length: sequenceOps }, () => {
    const { f, value } = NamespaceWorkload.pickOp(random);
    if (f === 'rename') {
      const [from, to] = value as readonly string[];
      return { f, from: from!, to: to! };
    }
    return { f: f as 'mkdir' | 'create' | 'unlink' | 'rmdir' | 'readdir', path: String(value) };
  });
}

const sequences = 150;
const sequenceOps = 80;

void t.test('the model gives the state machine’s result for every operation of the workload’s sequences', async (t) => {
  const codes = new Map<string, number>();
  const problems: string[] = [];
  for (let seed = 1; seed <= sequences; seed++) {
    const ops = sequence(seed);
    const problem = await firstDisagreement(ops, 'none');
    if (problem !== undefined) problems.push(`seed ${seed}: ${problem}`);
    let state = emptyTree;
    for (const op of ops) {
      const out = applyNamespaceOp(state, op);
      state = out.state;
      const k = typeof out.result === 'string' ? `${op.f} ${out.result}` : `${op.f} listing`;
      codes.set(k, (codes.get(k) ?? 0) + 1);
    }
  }
  t.same(problems, [], `${sequences} sequences of ${sequenceOps} operations agree`);
  // Every result each operation can give occurred (the sequences reach the interesting states).
  for (const k of ['mkdir ok', 'mkdir EEXIST', 'mkdir ENOENT', 'mkdir ENOTDIR', 'create ok', 'create EEXIST', 'create EISDIR', 'create ENOENT', 'create ENOTDIR', 'unlink ok', 'unlink EISDIR', 'unlink ENOENT', 'unlink ENOTDIR', 'rmdir ok', 'rmdir ENOTEMPTY', 'rmdir ENOTDIR', 'rmdir ENOENT', 'rename ok', 'rename ENOENT', 'rename EINVAL', 'rename ENOTDIR', 'rename EISDIR', 'rename ENOTEMPTY', 'readdir listing', 'readdir ENOENT', 'readdir ENOTDIR']) {
    t.ok((codes.get(k) ?? 0) > 0, `${k} occurred (${codes.get(k) ?? 0} times)`);
  }
});

void t.test('each planted model bug disagrees with the state machine', async (t) => {
  for (const bug of namespacePlantedBugs.filter((b) => b !== 'none')) {
    let caught: string | undefined;
    for (let seed = 1; seed <= sequences && caught === undefined; seed++) caught = await firstDisagreement(sequence(seed), bug);
    t.ok(caught !== undefined, `planted bug ${bug} is caught: ${caught ?? 'no disagreement'}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// The checker with the model, on hand-written histories

function history(lines: readonly object[]): string {
  return lines.map((l) => JSON.stringify(l)).join('\n');
}

const inv = (process: number, f: string, value: unknown, key = 't0'): object => ({ process, type: 'invoke', f, value, key });
const ok = (process: number, f: string, value: unknown, key = 't0'): object => ({ process, type: 'ok', f, value, key });
const fail = (process: number, f: string, value: unknown, key = 't0'): object => ({ process, type: 'fail', f, value, key });
const info = (process: number, f: string, value: unknown, key = 't0'): object => ({ process, type: 'info', f, value, key });

const check = (lines: readonly object[]) => checkHistory(history(lines), { model: 'namespace' });

void t.test('histories: linearizable ones pass, lost and phantom effects do not', (t) => {
  t.equal(check([inv(0, 'mkdir', 'a'), ok(0, 'mkdir', 'a'), inv(0, 'readdir', '.'), ok(0, 'readdir', ['a/'])]).verdict, 'linearizable', 'mkdir then see it');
  const lost = check([inv(0, 'mkdir', 'a'), ok(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', [])]);
  t.equal(lost.verdict, 'not linearizable', 'a completed mkdir missing from a later listing');
  const failure = lost.partitions[0]?.failure;
  t.equal(failure?.stuck.f, 'readdir', 'the failing window names the read');
  t.equal(failure?.state, 'a/', 'and the state it had to see');
  t.equal(check([inv(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', []), ok(0, 'mkdir', 'a')]).verdict, 'linearizable', 'a concurrent read may miss it');
  t.equal(check([inv(0, 'readdir', '.'), ok(0, 'readdir', ['b'])]).verdict, 'not linearizable', 'a phantom file');
  t.equal(check([inv(0, 'create', 'a'), ok(0, 'create', 'a'), inv(1, 'create', 'a'), ok(1, 'create', 'a')]).verdict, 'not linearizable', 'two exclusive creates of one name both succeed');
  t.equal(check([inv(0, 'create', 'a'), inv(1, 'create', 'a'), ok(1, 'create', 'a'), fail(0, 'create', 'EEXIST')]).verdict, 'linearizable', 'two concurrent creates: one wins');
  t.equal(check([inv(0, 'rmdir', 'a'), fail(0, 'rmdir', 'ENOENT'), inv(0, 'mkdir', 'a/x'), fail(0, 'mkdir', 'ENOENT')]).verdict, 'linearizable', 'error codes are results');
  t.equal(check([inv(0, 'mkdir', 'a'), fail(0, 'mkdir', 'EEXIST')]).verdict, 'not linearizable', 'EEXIST on an empty tree');
  t.equal(check([inv(0, 'readdir', '.'), fail(0, 'readdir', null), inv(1, 'readdir', 'a'), fail(1, 'readdir', 'ENOENT')]).verdict, 'linearizable', 'a read with no code says nothing');
  t.end();
});

void t.test('info mutations may apply or not, anywhere after their invocation', (t) => {
  t.equal(check([inv(0, 'mkdir', 'a'), info(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', ['a/'])]).verdict, 'linearizable', 'applied');
  t.equal(check([inv(0, 'mkdir', 'a'), info(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', [])]).verdict, 'linearizable', 'not applied');
  t.equal(
    check([inv(0, 'mkdir', 'a'), info(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', []), inv(1, 'readdir', '.'), ok(1, 'readdir', ['a/'])]).verdict,
    'linearizable',
    'applied late, after a read missed it',
  );
  t.equal(
    check([inv(1, 'readdir', '.'), ok(1, 'readdir', ['a/']), inv(0, 'mkdir', 'a'), info(0, 'mkdir', 'a')]).verdict,
    'not linearizable',
    'never before its invocation',
  );
  t.equal(
    check([inv(0, 'mkdir', 'a'), info(0, 'mkdir', 'a'), inv(1, 'readdir', '.'), ok(1, 'readdir', ['a/']), inv(1, 'readdir', '.'), ok(1, 'readdir', [])]).verdict,
    'not linearizable',
    'at most once: seen, then gone with nothing to remove it',
  );
  t.end();
});

void t.test('trees are independent keys, each starting empty', (t) => {
  const r = check([inv(0, 'mkdir', 'a', 't0'), ok(0, 'mkdir', 'a', 't0'), inv(1, 'readdir', '.', 't1'), ok(1, 'readdir', [], 't1')]);
  t.equal(r.verdict, 'linearizable');
  t.equal(r.partitions.length, 2, 'one partition per tree');
  t.end();
});

void t.test('unknown at the time limit', (t) => {
  // Many concurrent info mutations on one tree and a read no order explains: the search must explore; a clock
  // that jumps past the limit at once stops it.
  const lines: object[] = [];
  for (let p = 0; p < 40; p++) lines.push(inv(p, 'create', namespacePaths[p % 3]!), info(p, 'create', namespacePaths[p % 3]!));
  for (let p = 40; p < 80; p++) lines.push(inv(p, 'mkdir', namespacePaths[p % 9]!));
  for (let p = 40; p < 80; p++) lines.push(ok(p, 'mkdir', namespacePaths[p % 9]!));
  lines.push(inv(99, 'readdir', '.'), ok(99, 'readdir', ['zz']));
  let clock = 0;
  const result = checkLinearizable(namespaceModel(), pairOperations(parseJsonLines(history(lines))), { timeLimitMs: 1, now: () => (clock += 1) });
  t.equal(result.verdict, 'unknown');
  t.match(result.partitions[0]?.reason ?? '', /time limit/);
  t.end();
});

void t.test('typed errors for operations the model does not know', (t) => {
  const bad = (lines: readonly object[]): unknown => t.throws(() => check(lines), ModelError);
  bad([inv(0, 'write', 1), ok(0, 'write', 1)]);
  bad([inv(0, 'mkdir', '/abs'), ok(0, 'mkdir', '/abs')]);
  bad([inv(0, 'mkdir', '.'), ok(0, 'mkdir', '.')]);
  bad([inv(0, 'mkdir', 'a/../b'), ok(0, 'mkdir', 'a/../b')]);
  bad([inv(0, 'rename', 'a'), ok(0, 'rename', 'a')]);
  bad([inv(0, 'mkdir', 'a'), fail(0, 'mkdir', 'EWHAT')]);
  bad([inv(0, 'readdir', '.'), ok(0, 'readdir', 'a')]);
  const e = (() => {
    try {
      check([inv(0, 'mkdir', 'a'), fail(0, 'mkdir', 'EWHAT')]);
    } catch (x) {
      return x as ModelError;
    }
    return undefined;
  })();
  t.equal(e?.code, 'EMODEL_OP', 'code EMODEL_OP');
  t.end();
});

void t.test('a failing window shows each fail with its error code', (t) => {
  const r = check([inv(0, 'mkdir', 'a'), ok(0, 'mkdir', 'a'), inv(0, 'mkdir', 'a'), fail(0, 'mkdir', 'EEXIST'), inv(1, 'readdir', '.'), ok(1, 'readdir', [])]);
  t.equal(r.verdict, 'not linearizable');
  const lines = describeResult(r).join('\n');
  t.match(lines, /mkdir key "t0" "a" → "EEXIST" :fail/, 'the code of a fail');
  t.match(lines, /readdir key "t0" "\." → \[\] :ok/, 'the listing of a read');
  t.end();
});
