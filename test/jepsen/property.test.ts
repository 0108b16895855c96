/**
 * Properties of the linearizability checker:
 * - histories generated from a correct sequential execution, with random concurrency and random
 *   :info / :fail / crashed operations, always pass (register with one or several keys, both failed-cas
 *   semantics, and the kv map);
 * - on short histories (at most 8 operations), mutated at random (a read's value changed, two events
 *   swapped, an :ok turned :info), the checker agrees with a brute-force oracle (test/jepsen/oracle.ts);
 * - with a planted checker bug, that same property fails: the suite can notice a broken checker.
 */
import t from 'tap';
import fc from 'fast-check';
import type { HistoryEvent } from '../../jepsen/checker/history.ts';
import { pairOperations, HistoryError } from '../../jepsen/checker/history.ts';
import type { GenerateOptions } from '../../jepsen/checker/generate.ts';
import { generateHistory } from '../../jepsen/checker/generate.ts';
import type { ModelSpec } from '../../jepsen/checker/index.ts';
import { makeModel } from '../../jepsen/checker/index.ts';
import type { CheckerPlantedBug } from '../../jepsen/checker/wgl.ts';
import { checkWithModel } from '../../jepsen/checker/wgl.ts';
import { holds } from '../property/util.ts';
import type { OracleSemantics } from './oracle.ts';
import { oracleLinearizable } from './oracle.ts';

type Workload = { spec: ModelSpec; oracle: OracleSemantics; generate: Pick<GenerateOptions, 'workload' | 'failedCas'> };

const workloads: Record<string, Workload> = {
  register: {
    spec: { model: 'cas-register', initial: 0, failedCas: 'ignore' },
    oracle: { model: 'cas-register', initial: 0, failedCas: 'ignore' },
    generate: { workload: 'register' },
  },
  'register, compare-failed': {
    spec: { model: 'cas-register', initial: 0, failedCas: 'compare-failed' },
    oracle: { model: 'cas-register', initial: 0, failedCas: 'compare-failed' },
    generate: { workload: 'register', failedCas: 'compare-failed' },
  },
  kv: { spec: { model: 'kv' }, oracle: { model: 'kv' }, generate: { workload: 'kv' } },
};

const workloadArb = fc.constantFrom(...Object.keys(workloads));

function workload(name: string): Workload {
  const w = workloads[name];
  if (!w) throw new Error(`no workload ${name}`);
  return w;
}

void t.test('histories from a correct sequential execution are linearizable', (t) => {
  const arb = fc.record({
    workload: workloadArb,
    seed: fc.integer(),
    processes: fc.integer({ min: 1, max: 10 }),
    operations: fc.integer({ min: 0, max: 150 }),
    keys: fc.integer({ min: 1, max: 3 }),
    infoProbability: fc.constantFrom(0, 0.05, 0.2),
    crashProbability: fc.constantFrom(0, 0.02, 0.1),
    failProbability: fc.constantFrom(0, 0.1),
  });
  holds(
    t,
    'generated histories pass',
    fc.property(arb, ({ workload: name, ...g }) => {
      const w = workload(name);
      const events = generateHistory({ ...g, ...w.generate });
      const result = checkWithModel(makeModel(w.spec), pairOperations(events), { timeLimitMs: 20_000 });
      return result.verdict === 'linearizable';
    }),
    150,
  );
  t.end();
});

type Mutation = ['read', number, number] | ['swap', number, number] | ['info', number, number];
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.constant('read' as const), fc.nat(), fc.integer({ min: 0, max: 4 })),
  fc.tuple(fc.constant('swap' as const), fc.nat(), fc.nat()),
  fc.tuple(fc.constant('info' as const), fc.nat(), fc.nat()),
);

function mutate(events: readonly HistoryEvent[], mutations: readonly Mutation[], kv: boolean): HistoryEvent[] {
  let out = [...events];
  for (const [kind, a, b] of mutations) {
    if (out.length === 0) break;
    if (kind === 'read') {
      const reads = out.flatMap((e, i) => (e.type === 'ok' && (e.f === 'read' || e.f === 'get') ? [i] : []));
      const at = reads[a % Math.max(1, reads.length)];
      if (at === undefined) continue;
      const value = kv ? (b === 0 ? null : 'abcxyz'.slice(0, b)) : b;
      out = out.map((e, i) => (i === at ? { ...e, value } : e));
    } else if (kind === 'swap') {
      const i = a % out.length;
      const j = b % out.length;
      const x = out[i];
      const y = out[j];
      if (x === undefined || y === undefined) continue;
      const swapped = [...out];
      swapped[i] = y;
      swapped[j] = x;
      try {
        pairOperations(swapped); // keep only swaps that leave a well-formed history
        out = swapped;
      } catch (e) {
        if (!(e instanceof HistoryError)) throw e;
      }
    } else {
      const oks = out.flatMap((e, i) => (e.type === 'ok' ? [i] : []));
      const at = oks[a % Math.max(1, oks.length)];
      if (at === undefined) continue;
      out = out.map((e, i) => (i === at ? { ...e, type: 'info' as const } : e));
    }
  }
  return out;
}

const shortArb = fc.record({
  workload: workloadArb,
  seed: fc.integer(),
  processes: fc.integer({ min: 1, max: 4 }),
  operations: fc.integer({ min: 1, max: 8 }),
  keys: fc.integer({ min: 1, max: 2 }),
  mutations: fc.array(mutationArb, { minLength: 0, maxLength: 3 }),
});

/** The checker and the oracle agree; counts verdicts so the test can show both kinds occurred. */
function agreesWithOracle(bug: CheckerPlantedBug, seen: { linearizable: number; not: number }) {
  return fc.property(shortArb, ({ workload: name, mutations, ...g }) => {
    const w = workload(name);
    const events = mutate(generateHistory({ ...g, ...w.generate, values: 3 }), mutations, name === 'kv');
    const ops = pairOperations(events);
    const expected = oracleLinearizable(ops, w.oracle);
    const got = checkWithModel(makeModel(w.spec), ops, { plantedBug: bug }).verdict;
    if (expected) seen.linearizable++;
    else seen.not++;
    return got === (expected ? 'linearizable' : 'not linearizable');
  });
}

void t.test('mutated short histories: the checker agrees with a brute-force oracle', (t) => {
  const seen = { linearizable: 0, not: 0 };
  holds(t, 'checker = oracle', agreesWithOracle('none', seen), 3000);
  t.comment(`oracle verdicts: ${seen.linearizable} linearizable, ${seen.not} not`);
  t.ok(seen.not >= 300, 'a fair share of the cases are not linearizable');
  t.ok(seen.linearizable >= 300, 'a fair share of the cases are linearizable');
  t.end();
});

void t.test('planted checker bugs make the oracle property fail', (t) => {
  for (const bug of ['info-as-fail', 'cache-ignores-state'] as const) {
    const details = fc.check(agreesWithOracle(bug, { linearizable: 0, not: 0 }), { numRuns: 3000, seed: 0x5eed });
    t.ok(details.failed, `planted bug ${bug} is caught${details.counterexample ? '' : ' (no counterexample found)'}`);
  }
  t.end();
});
