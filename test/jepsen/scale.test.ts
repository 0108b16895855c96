/**
 * A 10-client, 1000-operation register history (generated, with :info, crashed and :fail operations) is
 * checked, valid and with one read corrupted; times are printed as comments, not asserted (the
 * benchmark is `npm run bench:checker`). The corrupted history has few indeterminate operations (1.5%):
 * refuting a history means exhausting the search, which grows with the number of indeterminate
 * operations pending (docs/CHECKER.md, Limits).
 */
import t from 'tap';
import { generateHistory, withReadValue } from '../../jepsen/checker/generate.ts';
import { pairOperations } from '../../jepsen/checker/history.ts';
import { casRegister } from '../../jepsen/checker/models.ts';
import { checkLinearizable } from '../../jepsen/checker/wgl.ts';

const model = casRegister({ initial: 0 });

void t.test('10 clients, 1000 operations, one register', (t) => {
  const events = generateHistory({ seed: 1, processes: 10, operations: 1000, workload: 'register' });
  const ops = pairOperations(events);
  t.equal(ops.length, 1000);
  const valid = checkLinearizable(model, ops, { timeLimitMs: 120_000 });
  t.equal(valid.verdict, 'linearizable');
  t.comment(`valid history: ${(valid.elapsedMs / 1000).toFixed(3)} s, ${valid.partitions[0]?.cacheEntries ?? 0} cached configurations`);

  const fewInfo = generateHistory({ seed: 1, processes: 10, operations: 1000, workload: 'register', infoProbability: 0.01, crashProbability: 0.005 });
  const corrupted = withReadValue(fewInfo, 500, 7);
  t.ok(corrupted, 'has reads');
  const invalid = checkLinearizable(model, pairOperations(corrupted ?? []), { timeLimitMs: 120_000 });
  t.equal(invalid.verdict, 'not linearizable');
  t.equal(invalid.partitions[0]?.failure?.stuck.output, 7, 'the corrupted read is the one that cannot be placed');
  t.comment(`one read corrupted: ${(invalid.elapsedMs / 1000).toFixed(3)} s, ${invalid.partitions[0]?.cacheEntries ?? 0} cached configurations`);
  t.end();
});

void t.test('10 clients, 1000 operations over 10 registers (split per key)', (t) => {
  const events = generateHistory({ seed: 2, processes: 10, operations: 1000, workload: 'register', keys: 10 });
  const result = checkLinearizable(model, pairOperations(events), { timeLimitMs: 120_000 });
  t.equal(result.verdict, 'linearizable');
  t.equal(result.partitions.length, 10);
  t.comment(`10 keys: ${(result.elapsedMs / 1000).toFixed(3)} s`);
  t.end();
});
