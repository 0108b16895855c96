/**
 * The harness's pure parts, without a cluster: the history sanity check, the append workload's check (each
 * anomaly planted and found), the fault schedule, and the report's pairing of operations.
 */
import t from 'tap';
import { sanityCheck } from '../../jepsen/harness/history.ts';
import type { HistoryEvent } from '../../jepsen/harness/history.ts';
import { SeededRandom } from '../../jepsen/harness/random.ts';
import { makeSchedule, nemeses, parseNemesisSpec } from '../../jepsen/nemesis/index.ts';
import { checkAppendHistory } from '../../jepsen/workloads/append.ts';
import { parseValue } from '../../jepsen/workloads/register.ts';
import { pairOps, renderReport } from '../../jepsen/report/html.ts';

let clock = 0;
const ev = (process: number, type: HistoryEvent['type'], f: HistoryEvent['f'], key: string, value: HistoryEvent['value']): HistoryEvent => ({ process, type, f, key, value, time: (clock += 10) });

void t.test('sanity check: well-formed and each malformation', (t) => {
  const good = [ev(0, 'invoke', 'write', 'r0', 1), ev(1, 'invoke', 'read', 'r0', null), ev(0, 'ok', 'write', 'r0', 1), ev(1, 'info', 'read', 'r0', null), ev(2, 'invoke', 'cas', 'r0', [1, 2]), ev(2, 'fail', 'cas', 'r0', [1, 2])];
  const ok = sanityCheck(good);
  t.ok(ok.ok, ok.problems.join('; '));
  t.same(ok.counts, { invoke: 3, ok: 1, fail: 1, info: 1 });
  t.notOk(sanityCheck([...good, ev(1, 'invoke', 'read', 'r0', null), ev(1, 'ok', 'read', 'r0', 1)]).ok, 'a process issuing after info');
  t.notOk(sanityCheck([ev(0, 'invoke', 'write', 'r0', 1)]).ok, 'an invoke never completed');
  t.notOk(sanityCheck([ev(0, 'ok', 'write', 'r0', 1)]).ok, 'a completion without invoke');
  t.notOk(sanityCheck([ev(0, 'invoke', 'write', 'r0', 1), ev(0, 'invoke', 'write', 'r0', 2)]).ok, 'two open invokes of one process');
  t.notOk(sanityCheck([ev(0, 'invoke', 'write', 'r0', 1), ev(0, 'ok', 'read', 'r0', 1)]).ok, 'completion of another f');
  const backwards = [ev(0, 'invoke', 'write', 'r0', 1), { ...ev(0, 'ok', 'write', 'r0', 1), time: 0 }];
  t.notOk(sanityCheck(backwards).ok, 'time going back');
  t.end();
});

void t.test('append check: a clean history, then each planted anomaly', (t) => {
  const base = (): HistoryEvent[] => [
    ev(0, 'invoke', 'append', 'a0', 'p0-0'),
    ev(0, 'ok', 'append', 'a0', 'p0-0'),
    ev(1, 'invoke', 'append', 'a0', 'p1-0'),
    ev(1, 'fail', 'append', 'a0', 'p1-0'),
    ev(2, 'invoke', 'append', 'a0', 'p2-0'),
    ev(2, 'info', 'append', 'a0', 'p2-0'),
    ev(3, 'invoke', 'append', 'a0', 'p3-0'),
    ev(3, 'ok', 'append', 'a0', 'p3-0'),
  ];
  const read = (records: string[]): HistoryEvent[] => [ev(9, 'invoke', 'read', 'a0', null), ev(9, 'ok', 'read', 'a0', records)];
  const clean = checkAppendHistory([...base(), ...read(['p0-0', 'p3-0']), ...read(['p0-0', 'p3-0', 'p2-0'])]);
  t.ok(clean.valid, clean.output);
  const cases: [string, string[][]][] = [
    ['lost', [['p0-0']]],
    ['duplicated', [['p0-0', 'p3-0', 'p3-0']]],
    ['phantom', [['p0-0', 'p3-0', 'p1-0']]],
    ['phantom', [['p0-0', 'p3-0', 'p9-9']]],
    ['reordered', [['p0-0', 'p3-0', 'p2-0'], ['p3-0', 'p0-0']]],
  ];
  for (const [kind, reads] of cases) {
    const r = checkAppendHistory([...base(), ...reads.flatMap(read)]);
    t.notOk(r.valid, `${kind} found`);
    t.match(r.output, new RegExp(`\\b${kind}\\b`), r.output.split('\n')[0] ?? '');
  }
  t.end();
});

void t.test('schedule: seeded, inside the run, every chosen nemesis, no overlap', (t) => {
  const all = parseNemesisSpec('all');
  t.equal(all.length, nemeses.length);
  t.throws(() => parseNemesisSpec('kill,gremlin'), /unknown nemesis 'gremlin'/);
  t.same(parseNemesisSpec('none'), []);
  for (const seed of [1, 2, 3, 42]) {
    const a = makeSchedule(new SeededRandom(seed), all, { runMs: 120_000 });
    const b = makeSchedule(new SeededRandom(seed), all, { runMs: 120_000 });
    t.same(a, b, `seed ${seed} gives one schedule`);
    t.same(new Set(a.slice(0, all.length).map((f) => f.nemesis)), new Set(all.map((n) => n.name)), 'the first slots cover every nemesis');
    for (const [i, f] of a.entries()) {
      t.ok(f.atMs + f.durationMs <= 120_000, 'heals before the end');
      if (i > 0) t.ok(f.atMs >= a[i - 1]!.atMs + a[i - 1]!.durationMs, 'no overlap');
      t.ok(all.find((n) => n.name === f.nemesis)!.variants.includes(f.variant), 'a real variant');
    }
    const short = makeSchedule(new SeededRandom(seed), parseNemesisSpec('kill,partition'), { runMs: 20_000 });
    t.same(short.map((f) => f.nemesis).sort(), ['kill', 'partition'], 'a 20 s run holds both faults');
  }
  t.end();
});

void t.test('register values and report pairing', (t) => {
  t.equal(parseValue('3'), 3);
  t.equal(parseValue(''), '', 'an empty file is not silently 0');
  t.equal(parseValue('3x'), '3x');
  const h = [ev(0, 'invoke', 'write', 'r0', 1), ev(1, 'invoke', 'read', 'r0', null), ev(0, 'ok', 'write', 'r0', 1)];
  const ops = pairOps(h);
  t.equal(ops.length, 2);
  t.equal(ops.find((o) => o.process === 1)?.type, 'info', 'an op never completed is drawn as info');
  const html = renderReport({ title: 'x <b>', summary: { a: 1 }, history: h, nemesis: [{ time: 15, type: 'start', id: 0, nemesis: 'kill', variant: 'one', targets: ['meta1'] }], verdict: 'unchecked' });
  t.match(html, /x &lt;b&gt;/, 'escaped');
  t.match(html, /kill one meta1 \(not healed\)/, 'an unhealed fault is shown as such');
  t.end();
});
