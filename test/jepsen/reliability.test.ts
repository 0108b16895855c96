/** The reliability table: one row per workload, nemesis and run length, with each outcome counted. */
import t from 'tap';
import { table } from '../../jepsen/reliability.ts';
import type { RunRecord } from '../../jepsen/reliability.ts';

const base: RunRecord = { workload: 'register', nemesis: 'kill', seed: 1, timeS: 120, code: 0, verdict: 'linearizable', seconds: 130, invoke: 100, ok: 80, fail: 20, info: 0, faults: 8, faultErrors: 0, dir: '/x' };

void t.test('rows group runs and count outcomes', (t) => {
  const rows = table([
    base,
    { ...base, seed: 2, code: 1, verdict: 'not linearizable', info: 3, invoke: 103, seconds: 140 },
    { ...base, nemesis: 'pause', seed: 1, code: 2, verdict: 'unknown' },
    { ...base, seed: 3, code: 3, verdict: 'run failed: x', invoke: 0, ok: 0, fail: 0, faults: 0, faultErrors: 1, seconds: 3 },
    { ...base, timeS: 60 },
  ]).split('\n');
  t.equal(rows.length, 2 + 3, 'header, rule, three groups');
  t.equal(rows[2], '| register | kill | 3 × 120 | 1 | 1 | 0 | 1 | 1–3 | 203 | 160 | 40 | 3 | 16 (1) | 91 |');
  t.equal(rows[3], '| register | pause | 1 × 120 | 0 | 0 | 1 | 0 | 1–1 | 100 | 80 | 20 | 0 | 8 (0) | 130 |');
  t.equal(rows[4], '| register | kill | 1 × 60 | 1 | 0 | 0 | 0 | 1–1 | 100 | 80 | 20 | 0 | 8 (0) | 130 |');
  t.end();
});
