/**
 * `npm run jepsen:bugs -- [--bug NAME]… [--workload W] [--runs 5] [--time 20] [--seed 1] [--no-control] [--out DIR]`
 *
 * The Jepsen suite's self-test: for each case of the catalog (jepsen/planted.ts: a planted bug of
 * src/cli/planted-bugs.ts under one workload) it runs up to `--runs` short Jepsen runs (`jepsen/run.ts` as a
 * child process, one after another, seeds seed, seed+1, …) with the bug on in every server and the nemesis
 * that exposes it, until one is reported as a violation; it prints the run and the checker's lines. Then the
 * control: the run that caught it, same seed and flags, without the bug, must pass. Exit code 0: every case
 * caught and every control passed; 1 otherwise; 3 bad usage. docs/JEPSEN.md, "Planted bugs".
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { caseName, jepsenBugCases, violationEvidence } from './planted.ts';
import type { JepsenBugCase } from './planted.ts';
import { integerArg, parseOrUsage } from './harness/args.ts';
import { runJepsenChild } from './harness/child.ts';
import type { ChildRun } from './harness/child.ts';

const repoRoot = resolve(import.meta.dirname, '..');

interface Options {
  readonly cases: readonly JepsenBugCase[];
  readonly runs: number;
  readonly timeS: number;
  readonly seed: number;
  readonly control: boolean;
  readonly outDir: string;
}

interface RunOutcome extends ChildRun {
  /** The checker's lines that name the violation (verdict.txt). */
  readonly evidence: readonly string[];
}

const usage = `usage: npm run jepsen:bugs -- [options]
  --bug NAME     a planted bug to try (repeatable; default all: ${[...new Set(jepsenBugCases.map((c) => c.bug))].join(', ')})
  --workload W   only its runs under this workload (register, append or namespace; default all)
  --runs 5       runs per bug and workload at most (seeds seed, seed+1, …); one not caught fails the script
  --time 20      seconds of workload per run
  --seed 1       seed of the first run
  --no-control   skip the control run (the catching run's seed without the bug, which must pass)
  --out DIR      report folders (default jepsen/runs/bugs-<timestamp>/)
Needs root, like npm run jepsen. Runs one at a time.`;

function parse(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      bug: { type: 'string', multiple: true, default: [] },
      workload: { type: 'string' },
      runs: { type: 'string' },
      time: { type: 'string' },
      seed: { type: 'string' },
      'no-control': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const known = new Set(jepsenBugCases.map((c) => c.bug));
  for (const bug of values.bug) if (!known.has(bug)) throw new RangeError(`--bug: one of ${[...known].join(', ')}, not '${bug}'`);
  const cases = jepsenBugCases.filter((c) => (values.bug.length === 0 || values.bug.includes(c.bug)) && (values.workload === undefined || c.workload === values.workload));
  if (cases.length === 0) throw new RangeError(`no case of ${values.bug.join(', ') || 'any bug'} under the ${values.workload ?? ''} workload`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return {
    cases,
    runs: integerArg(values.runs, 5, 'runs', 1),
    timeS: integerArg(values.time, 20, 'time', 1),
    seed: integerArg(values.seed, 1, 'seed', 0),
    control: !values['no-control'],
    outDir: resolve(values.out ?? join(repoRoot, 'jepsen', 'runs', `bugs-${stamp}`)),
  };
}

/** One run, with the checker's lines that name a violation (verdict.txt). */
async function runWithLock(args: readonly string[], dir: string, print: (line: string) => void): Promise<RunOutcome> {
  const run = await runJepsenChild(args, dir, print);
  const verdictPath = join(dir, 'verdict.txt');
  return { ...run, evidence: existsSync(verdictPath) ? violationEvidence(readFileSync(verdictPath, 'utf8')) : [] };
}

function runArgs(bug: JepsenBugCase, options: Options, seed: number, planted: string | undefined): string[] {
  return [
    '--workload', bug.workload, '--nemesis', bug.nemesis, '--reads', bug.readsFrom, '--time', String(options.timeS), '--seed', String(seed),
    ...(planted !== undefined ? ['--bug', planted] : []),
  ];
}

async function main(): Promise<number> {
  const parsed = parseOrUsage('jepsen:bugs', usage, parse, process.argv.slice(2));
  if ('exit' in parsed) return parsed.exit;
  const options = parsed.options;
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  print(`planted bugs: ${options.cases.map(caseName).join(', ')}; up to ${options.runs} runs of ${options.timeS} s each from seed ${options.seed}; reports in ${options.outDir}`);
  const summary: string[] = [];
  let ok = true;
  for (const bug of options.cases) {
    const name = caseName(bug);
    print(`\n== ${name}: ${bug.workload} workload, nemesis ${bug.nemesis}, reads from ${bug.readsFrom}: ${bug.how}`);
    let caught: { run: number; seed: number; outcome: RunOutcome } | undefined;
    for (let run = 1; run <= options.runs && caught === undefined; run++) {
      const seed = options.seed + run - 1;
      const outcome = await runWithLock(runArgs(bug, options, seed, bug.bug), join(options.outDir, `${name}-run${run}-seed${seed}`), print);
      print(`  run ${run} (seed ${seed}, ${outcome.seconds.toFixed(0)} s): exit ${outcome.code}, ${outcome.verdict}`);
      if (outcome.code === 1) caught = { run, seed, outcome };
    }
    if (caught === undefined) {
      ok = false;
      const line = `${name}: NOT CAUGHT within ${options.runs} runs (nemesis ${bug.nemesis}, seeds ${options.seed}..${options.seed + options.runs - 1})`;
      print(line);
      summary.push(line);
      continue;
    }
    const evidence = caught.outcome.evidence;
    print(`${name}: CAUGHT in run ${caught.run} of at most ${options.runs} (seed ${caught.seed}, nemesis ${bug.nemesis}, ${caught.outcome.seconds.toFixed(0)} s): ${caught.outcome.verdict}`);
    for (const line of evidence) print(`    ${line}`);
    let control = 'control skipped';
    if (options.control) {
      const outcome = await runWithLock(runArgs(bug, options, caught.seed, undefined), join(options.outDir, `${name}-control-seed${caught.seed}`), print);
      const passed = outcome.code === 0;
      if (!passed) ok = false;
      control = `control (seed ${caught.seed}, no bug, ${outcome.seconds.toFixed(0)} s): ${passed ? 'passed' : 'FAILED'}: ${outcome.verdict}`;
      print(`  ${control}`);
    }
    summary.push(`${name}: caught in run ${caught.run}/${options.runs} (seed ${caught.seed}, nemesis ${bug.nemesis}, ${caught.outcome.seconds.toFixed(0)} s): ${evidence[0] ?? caught.outcome.verdict}; ${control}`);
  }
  print('\nsummary:');
  for (const line of summary) print(`  ${line}`);
  return ok ? 0 : 1;
}

process.exit(await main());
