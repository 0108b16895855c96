/**
 * `npm run jepsen:reliability -- [--nemesis kill,pause,…] [--workload register] [--runs 10] [--time 120]
 *   [--seed 1] [--gap 15] [--out DIR]`
 *
 * The reliability table (RELIABILITY.md): for each nemesis, `--runs` Jepsen runs of `--time` seconds on the
 * correct system (jepsen/run.ts as a child process, one after another, seeds seed, seed+1, …; the same seeds
 * for every nemesis; round by round, each nemesis once per round). Each finished run appends one line to `<out>/results.jsonl` (the run's counts, faults
 * and verdict, read from its run.json and nemesis.jsonl), so a batch cut short keeps what it ran and the same
 * `--out` given again adds to it; the table printed at the end covers every line of that file. `--table`
 * prints the table of an existing folder without running anything. Exit code 0: every run passed; 1: a
 * violation or a malformed history; 2: an unknown verdict or a run that failed; 3: bad usage.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { integerArg, parseOrUsage } from './harness/args.ts';
import { runJepsenChild } from './harness/child.ts';
import { workloads } from './harness/runner.ts';
import { nemesisNames } from './nemesis/index.ts';

const repoRoot = resolve(import.meta.dirname, '..');

interface Options {
  readonly workload: string;
  readonly nemeses: readonly string[];
  readonly runs: number;
  readonly timeS: number;
  readonly seed: number;
  readonly gapS: number;
  readonly outDir: string;
  readonly tableOnly: boolean;
}

/** One line of results.jsonl. */
export interface RunRecord {
  readonly workload: string;
  readonly nemesis: string;
  readonly seed: number;
  readonly timeS: number;
  /** run.ts's exit code: 0 passed, 1 violation, 2 unknown, 3 the run failed. */
  readonly code: number;
  readonly verdict: string;
  readonly seconds: number;
  readonly invoke: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  /** Faults applied (nemesis.jsonl `start` entries) and faults that could not be applied (`error`). */
  readonly faults: number;
  readonly faultErrors: number;
  readonly dir: string;
}

const usage = `usage: npm run jepsen:reliability -- [options]
  --nemesis LIST   comma list of nemeses, each run on its own (default: ${nemesisNames.join(',')})
  --workload W     one of ${workloads.join(', ')} (default register)
  --runs 10        runs per nemesis (seeds seed, seed+1, …)
  --time 120       seconds of workload per run
  --seed 1         seed of the first run
  --gap 15         seconds between runs (lets another Jepsen run, e.g. the test suite's, take the lock)
  --out DIR        batch folder (default jepsen/runs/reliability-<workload>/); results.jsonl there
                   collects every run, also across invocations
  --table          print the table of --out's results.jsonl and exit
Needs root, like npm run jepsen. Runs one at a time.`;

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      nemesis: { type: 'string' },
      workload: { type: 'string', default: 'register' },
      runs: { type: 'string' },
      time: { type: 'string' },
      seed: { type: 'string' },
      gap: { type: 'string' },
      out: { type: 'string' },
      table: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return undefined;
  if (!(workloads as readonly string[]).includes(values.workload)) throw new RangeError(`--workload: one of ${workloads.join(', ')}, not '${values.workload}'`);
  const nemeses = (values.nemesis ?? nemesisNames.join(',')).split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (nemeses.length === 0) throw new RangeError('--nemesis: at least one nemesis');
  for (const n of nemeses) if (!nemesisNames.includes(n)) throw new RangeError(`--nemesis: each one of ${nemesisNames.join(', ')}, not '${n}'`);
  return {
    workload: values.workload,
    nemeses: [...new Set(nemeses)],
    runs: integerArg(values.runs, 10, 'runs', 1),
    timeS: integerArg(values.time, 120, 'time', 1),
    seed: integerArg(values.seed, 1, 'seed', 0),
    gapS: integerArg(values.gap, 15, 'gap', 0),
    outDir: resolve(values.out ?? join(repoRoot, 'jepsen', 'runs', `reliability-${values.workload}`)),
    tableOnly: values.table,
  };
}

interface RunJson {
  readonly counts?: { readonly invoke?: number; readonly ok?: number; readonly fail?: number; readonly info?: number };
}

/** The counts of a finished run's folder; zeros where a file is missing (a run that failed early). */
function readRun(dir: string): Pick<RunRecord, 'invoke' | 'ok' | 'fail' | 'info' | 'faults' | 'faultErrors'> {
  const runPath = join(dir, 'run.json');
  const counts = existsSync(runPath) ? ((JSON.parse(readFileSync(runPath, 'utf8')) as RunJson).counts ?? {}) : {};
  let faults = 0;
  let faultErrors = 0;
  const nemesisPath = join(dir, 'nemesis.jsonl');
  if (existsSync(nemesisPath)) {
    for (const line of readFileSync(nemesisPath, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const type = (JSON.parse(line) as { type?: string }).type;
      if (type === 'start') faults++;
      else if (type === 'error') faultErrors++;
    }
  }
  return { invoke: counts.invoke ?? 0, ok: counts.ok ?? 0, fail: counts.fail ?? 0, info: counts.info ?? 0, faults, faultErrors };
}

function readRecords(outDir: string): RunRecord[] {
  const path = join(outDir, 'results.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as RunRecord);
}

/** The RELIABILITY.md table: one row per (workload, nemesis, run length), in first-run order. */
export function table(records: readonly RunRecord[]): string {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const key = `${r.workload}|${r.nemesis}|${r.timeS}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const rows = [
    '| workload | nemesis | runs × s | passed | violations | unknown | runs failed | seeds | ops invoked | ok | fail | info | faults applied (errors) | wall s per run |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const list of groups.values()) {
    const first = list[0]!;
    const count = (code: number): number => list.filter((r) => r.code === code).length;
    const sum = (f: (r: RunRecord) => number): number => list.reduce((a, r) => a + f(r), 0);
    const seeds = list.map((r) => r.seed);
    rows.push(
      `| ${first.workload} | ${first.nemesis} | ${list.length} × ${first.timeS} | ${count(0)} | ${count(1)} | ${count(2)} | ${count(3)} | ${Math.min(...seeds)}–${Math.max(...seeds)} | ${sum((r) => r.invoke)} | ${sum((r) => r.ok)} | ${sum((r) => r.fail)} | ${sum((r) => r.info)} | ${sum((r) => r.faults)} (${sum((r) => r.faultErrors)}) | ${(sum((r) => r.seconds) / list.length).toFixed(0)} |`,
    );
  }
  return rows.join('\n');
}

async function main(): Promise<number> {
  const parsed = parseOrUsage('jepsen:reliability', usage, parse, process.argv.slice(2));
  if ('exit' in parsed) return parsed.exit;
  const options = parsed.options;
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  if (!options.tableOnly) {
    mkdirSync(options.outDir, { recursive: true });
    print(`reliability: ${options.workload} workload, nemeses ${options.nemeses.join(', ')}, ${options.runs} runs of ${options.timeS} s each from seed ${options.seed}; results in ${options.outDir}/results.jsonl`);
    let first = true;
    // Round by round (every nemesis once per round), so a batch cut short still covers every nemesis.
    for (let run = 1; run <= options.runs; run++) {
      for (const nemesis of options.nemeses) {
        if (!first && options.gapS > 0) await new Promise((r) => setTimeout(r, options.gapS * 1000));
        first = false;
        const seed = options.seed + run - 1;
        const dir = join(options.outDir, `${nemesis}-seed${seed}`);
        const args = ['--workload', options.workload, '--nemesis', nemesis, '--time', String(options.timeS), '--seed', String(seed)];
        const outcome = await runJepsenChild(args, dir, print);
        const record: RunRecord = { workload: options.workload, nemesis, seed, timeS: options.timeS, code: outcome.code, verdict: outcome.verdict, seconds: Math.round(outcome.seconds), ...readRun(dir), dir };
        appendFileSync(join(options.outDir, 'results.jsonl'), `${JSON.stringify(record)}\n`);
        print(`  ${nemesis} run ${run}/${options.runs} (seed ${seed}, ${record.seconds} s): exit ${record.code}, ${record.verdict}; ${record.invoke} ops (${record.ok} ok, ${record.fail} fail, ${record.info} info), ${record.faults} faults`);
      }
    }
  }
  const records = readRecords(options.outDir);
  print(`\n${table(records)}`);
  if (records.some((r) => r.code === 1)) return 1;
  return records.some((r) => r.code !== 0) ? 2 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(await main());
