/**
 * npm run bench:checker [-- --seeds N --time-limit-s S]
 *
 * Seconds per linearizability check of generated 10-client, 1000-operation register histories
 * (jepsen/checker/generate.ts), valid and invalid (one :ok read changed: to a value never written, or to
 * a stale value), at several rates of indeterminate operations (:info plus crashed), one register and
 * ten. Each check has a time limit; past it the verdict is `unknown` and counted as such. The target is
 * under 10 s per check. A script, not a test.
 */
import { parseArgs } from 'node:util';
import { generateHistory, withReadValue } from '../jepsen/checker/generate.ts';
import type { HistoryEvent } from '../jepsen/checker/history.ts';
import { pairOperations } from '../jepsen/checker/history.ts';
import { casRegister } from '../jepsen/checker/models.ts';
import { checkLinearizable } from '../jepsen/checker/wgl.ts';

const { values: args } = parseArgs({ options: { seeds: { type: 'string', default: '5' }, 'time-limit-s': { type: 'string', default: '30' } } });
const seeds = Number(args.seeds);
const timeLimitMs = Number(args['time-limit-s']) * 1000;
const model = casRegister({ initial: 0 });

interface Scenario {
  name: string;
  info: number;
  crash: number;
  keys: number;
  corrupt: 'none' | 'impossible' | 'stale';
}

const scenarios: Scenario[] = [];
for (const [info, crash] of [
  [0, 0],
  [0.01, 0.005],
  [0.05, 0.02],
] as const) {
  const rate = `${((info + crash) * 100).toFixed(1)}% indeterminate`;
  scenarios.push({ name: `valid, ${rate}`, info, crash, keys: 1, corrupt: 'none' });
  scenarios.push({ name: `read of a value never written, ${rate}`, info, crash, keys: 1, corrupt: 'impossible' });
  scenarios.push({ name: `stale read, ${rate}`, info, crash, keys: 1, corrupt: 'stale' });
}
scenarios.push({ name: 'valid, 10 keys, 7.0% indeterminate', info: 0.05, crash: 0.02, keys: 10, corrupt: 'none' });
scenarios.push({ name: 'read of a value never written, 10 keys, 7.0% indeterminate', info: 0.05, crash: 0.02, keys: 10, corrupt: 'impossible' });

function history(s: Scenario, seed: number): HistoryEvent[] {
  const events = generateHistory({ seed, processes: 10, operations: 1000, workload: 'register', keys: s.keys, infoProbability: s.info, crashProbability: s.crash });
  if (s.corrupt === 'none') return events;
  const reads = events.flatMap((e) => (e.type === 'ok' && e.f === 'read' ? [e] : []));
  const ordinal = Math.floor(reads.length / 2) + seed;
  const original = reads[ordinal % reads.length]?.value;
  // Stale: another value of the domain [0, 5), so some earlier write may explain it.
  const value = s.corrupt === 'impossible' ? 7 : ((typeof original === 'number' ? original : 0) + 1) % 5;
  return withReadValue(events, ordinal, value) ?? events;
}

console.log(`10 clients × 1000 operations, ${seeds} seeds per scenario, time limit ${timeLimitMs / 1000} s`);
console.log('scenario | verdicts | median s | max s');
for (const s of scenarios) {
  const times: number[] = [];
  const verdicts = new Map<string, number>();
  for (let seed = 1; seed <= seeds; seed++) {
    const ops = pairOperations(history(s, seed));
    const result = checkLinearizable(model, ops, { timeLimitMs });
    times.push(result.elapsedMs / 1000);
    verdicts.set(result.verdict, (verdicts.get(result.verdict) ?? 0) + 1);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)] ?? 0;
  const max = times[times.length - 1] ?? 0;
  const v = [...verdicts].map(([k, n]) => `${n} ${k}`).join(', ');
  console.log(`${s.name} | ${v} | ${median.toFixed(3)} | ${max.toFixed(3)}`);
}
