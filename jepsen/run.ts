/**
 * `npm run jepsen -- --workload register|append|namespace --nemesis all --time 120 [--seed S] [--clients 10] [--keys 5] [--out DIR]
 *   [--bug NAME] [--reads leader|any]`
 *
 * Runs one Jepsen test (harness/runner.ts) and prints where its report folder is; the last line printed is
 * the verdict. Exit code: 0 linearizable (and a well-formed history), 1 not linearizable or a malformed
 * history, 2 unknown or unchecked (no checker in this build), 3 the run itself failed (not root, cluster
 * never ready, …). Ctrl-C stops the run early and still cleans up; a second Ctrl-C exits at once (the next
 * run removes what is left). docs/JEPSEN.md.
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { RunError, runJepsen, workloads } from './harness/runner.ts';
import { NetError } from './harness/net.ts';
import { ClusterError } from './harness/cluster.ts';
import type { RunOptions } from './harness/runner.ts';
import { integerArg } from './harness/args.ts';
import { processBugNames } from '../src/cli/planted-bugs.ts';
import { readsFromValues } from './workloads/types.ts';
import type { ReadsFrom } from './workloads/types.ts';

const repoRoot = resolve(import.meta.dirname, '..');

const usage = `usage: npm run jepsen -- [options]
  --workload register      register (linearizability, per key), append (lost / duplicated / reordered records),
                           or namespace (mkdir / create / rename / unlink / rmdir / readdir on small trees,
                           linearizability against a model of the namespace, per tree)
  --nemesis all            all | none | a list of: kill, pause, partition, clock, chunkserver-loss
  --time 120               seconds of workload under faults (then heal, then the final reads)
  --seed S                 seed of the schedule, targets and ops (default: random, printed)
  --clients 10             concurrent workers, one client library instance each
  --keys 5                 registers r0..r(N-1), files a0..a(N-1) for append, trees t0..t(N-1) for namespace
  --out DIR                report folder (default jepsen/runs/<timestamp>-<workload>-<nemesis>/)
  --op-timeout-ms 15000    deadline of one operation (then it is 'info' if it may have applied)
  --stagger-ms 50          each worker pauses up to this long between ops
  --log-level info         servers' pino level
  --keep-data              keep the servers' data dirs in <out>/data
  --bug NAME               switch a planted bug on in every server (repeatable; a violation is then the
                           expected verdict): ${processBugNames.join(', ')}
  --reads leader           where clients read: leader, or any (each client reads from one member in turn)
Needs root (network namespaces). One run at a time per machine.`;

function parse(argv: string[]): RunOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      workload: { type: 'string', default: 'register' },
      nemesis: { type: 'string', default: 'all' },
      time: { type: 'string' },
      seed: { type: 'string' },
      clients: { type: 'string' },
      keys: { type: 'string' },
      out: { type: 'string' },
      'op-timeout-ms': { type: 'string' },
      'stagger-ms': { type: 'string' },
      'log-level': { type: 'string' },
      'keep-data': { type: 'boolean', default: false },
      bug: { type: 'string', multiple: true, default: [] },
      reads: { type: 'string', default: 'leader' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const workload = values.workload as (typeof workloads)[number];
  if (!workloads.includes(workload)) throw new RangeError(`--workload: one of ${workloads.join(', ')}, not '${values.workload}'`);
  const bugs = values.bug.flatMap((b) => b.split(',')).map((b) => b.trim()).filter((b) => b !== '');
  for (const bug of bugs) if (!processBugNames.includes(bug)) throw new RangeError(`--bug: one of ${processBugNames.join(', ')}, not '${bug}'`);
  const readsFrom = values.reads as ReadsFrom;
  if (!readsFromValues.includes(readsFrom)) throw new RangeError(`--reads: one of ${readsFromValues.join(', ')}, not '${values.reads}'`);
  const nemesis = values.nemesis;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = resolve(values.out ?? join(repoRoot, 'jepsen', 'runs', `${stamp}-${workload}-${nemesis.replace(/,/g, '+')}${bugs.length > 0 ? `-bug-${bugs.join('+')}` : ''}`));
  return {
    workload,
    nemesis,
    timeMs: integerArg(values.time, 120, 'time', 1) * 1000,
    seed: integerArg(values.seed, Math.floor(Math.random() * 2 ** 31), 'seed', 0),
    clients: integerArg(values.clients, 10, 'clients', 1),
    keys: integerArg(values.keys, 5, 'keys', 1),
    outDir,
    opTimeoutMs: integerArg(values['op-timeout-ms'], 15_000, 'op-timeout-ms', 100),
    staggerMs: integerArg(values['stagger-ms'], 50, 'stagger-ms', 0),
    keepData: values['keep-data'],
    bugs,
    readsFrom,
    ...(values['log-level'] !== undefined ? { logLevel: values['log-level'] } : {}),
  };
}

async function main(): Promise<number> {
  let options: RunOptions | undefined;
  try {
    options = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`jepsen: ${(e as Error).message}\n${usage}\n`);
    return 3;
  }
  if (options === undefined) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const abort = new AbortController();
  // A terminal's Ctrl-C reaches the whole process group, and tsx and npm relay it too: signals within
  // `signalEchoMs` of the first are that same Ctrl-C. A later SIGINT exits at once (the next run cleans up).
  const signalEchoMs = 2_000;
  let firstSignalMs: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    const now = Date.now();
    if (firstSignalMs !== undefined) {
      if (signal === 'SIGINT' && now - firstSignalMs > signalEchoMs) process.exit(130);
      return;
    }
    firstSignalMs = now;
    process.stderr.write('jepsen: stopping: healing, reporting, cleaning up (Ctrl-C again to exit at once)\n');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A reader of our output that went away (a closed pipe) must not kill the run before its cleanup.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const bugNote = (options.bugs ?? []).length > 0 ? `, PLANTED BUGS ${(options.bugs ?? []).join(', ')}` : '';
  print(`jepsen: ${options.workload}, nemesis ${options.nemesis}, ${options.timeMs / 1000} s, seed ${options.seed}, reads from ${options.readsFrom ?? 'leader'}${bugNote}, report in ${options.outDir}`);
  try {
    const result = await runJepsen({ ...options, signal: abort.signal, print });
    print(`report: ${result.dir}/index.html`);
    print(result.verdict.line);
    if (!result.sanity.ok) return 1;
    const kind = result.verdict.kind;
    return kind === 'linearizable' || kind === 'valid' ? 0 : kind === 'not linearizable' || kind === 'invalid' ? 1 : 2;
  } catch (e) {
    // Expected failures (typed, with a code: not root, locked, cluster not ready) need no stack.
    const typed = e instanceof RunError || e instanceof NetError || e instanceof ClusterError;
    if (!typed) process.stderr.write(`jepsen: ${(e as Error).stack ?? String(e)}\n`);
    print(`run failed: ${(e as Error).message}`);
    return 3;
  }
}

// Explicit exit: a client or timer left behind by an aborted run must not keep the process alive.
process.exit(await main());
