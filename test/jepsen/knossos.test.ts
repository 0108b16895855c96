/**
 * Knossos' own cas-register histories (../shared/testdata/knossos-cas-register, next to the repo): every
 * file under good/ is linearizable, every file under bad/ is not (its README). Then the same suite run
 * against a checker with a planted bug, or a broken model, must disagree somewhere: it can fail.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { CheckOptions } from '../../jepsen/checker/wgl.ts';
import { checkLinearizable } from '../../jepsen/checker/wgl.ts';
import { pairOperations, parseHistory } from '../../jepsen/checker/history.ts';
import type { Operation } from '../../jepsen/checker/history.ts';
import { casRegister } from '../../jepsen/checker/models.ts';
import type { Model } from '../../jepsen/checker/models.ts';
import { knossosHistories } from './testdata.ts';

const root = knossosHistories;

interface Case {
  name: string;
  expected: 'linearizable' | 'not linearizable';
  ops: Operation[];
}

function loadCases(): Case[] {
  if (!existsSync(root)) {
    throw new Error(`Knossos histories not found at ${root}: the repository must sit next to shared/ (../shared/testdata/knossos-cas-register), or set RFS_SHARED_TESTDATA to the testdata folder`);
  }
  const cases: Case[] = [];
  for (const dir of ['good', 'bad'] as const) {
    for (const file of readdirSync(`${root}/${dir}`).filter((f) => f.endsWith('.edn')).sort()) {
      const ops = pairOperations(parseHistory(readFileSync(`${root}/${dir}/${file}`, 'utf8')));
      cases.push({ name: `${dir}/${file}`, expected: dir === 'good' ? 'linearizable' : 'not linearizable', ops });
    }
  }
  return cases;
}

/** Files whose verdict differs from the expected one. */
function disagreements<S, I>(cases: readonly Case[], model: Model<S, I>, options: CheckOptions = {}): string[] {
  return cases.flatMap((c) => {
    const verdict = checkLinearizable(model, c.ops, { timeLimitMs: 60_000, ...options }).verdict;
    return verdict === c.expected ? [] : [`${c.name}: ${verdict}`];
  });
}

const cases = loadCases();

void t.test('every Knossos cas-register history gets its expected verdict', (t) => {
  const good = cases.filter((c) => c.expected === 'linearizable').length;
  const bad = cases.length - good;
  t.ok(good >= 100 && bad >= 7, `the test data is all there (${good} good, ${bad} bad)`);
  const model = casRegister({ initial: 0 });
  for (const c of cases) {
    const result = checkLinearizable(model, c.ops, { timeLimitMs: 60_000 });
    t.equal(result.verdict, c.expected, c.name);
    if (result.verdict === 'not linearizable') {
      const failure = result.partitions.find((p) => p.failure)?.failure;
      t.ok(failure, `${c.name}: names a failing window`);
    }
  }
  t.end();
});

void t.test('a bad history names the operation that cannot be placed', (t) => {
  const c = cases.find((x) => x.name === 'bad/rethink-fail-minimal.edn');
  t.ok(c, 'file present');
  if (!c) {
    t.end();
    return;
  }
  const failure = checkLinearizable(casRegister({ initial: 0 }), c.ops).partitions[0]?.failure;
  // write 0, then concurrently write 4 and read 3: the read of 3 cannot be placed.
  t.equal(failure?.stuck.f, 'read');
  t.equal(failure?.stuck.output, 3);
  t.same(
    failure?.prefix.map((s) => [s.op.f, s.op.value]),
    [
      ['write', 0],
      ['write', 4],
    ],
  );
  t.end();
});

void t.test('the suite can fail: planted checker bugs and a broken model disagree on some files', (t) => {
  const model = casRegister({ initial: 0 });
  for (const bug of ['info-as-fail', 'cache-ignores-state'] as const) {
    const wrong = disagreements(cases, model, { plantedBug: bug });
    t.ok(wrong.length > 0, `planted bug ${bug}: ${wrong.length} wrong verdict(s), e.g. ${wrong[0] ?? 'none'}`);
  }
  // A register whose reads accept anything (a model bug): bad histories pass.
  const lax: typeof model = { ...model, step: (s, input) => (input.kind === 'read' ? s : model.step(s, input)) };
  const wrong = disagreements(cases, lax);
  t.ok(wrong.length > 0, `a model that ignores read values: ${wrong.length} wrong verdict(s)`);
  t.end();
});
