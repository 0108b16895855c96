/**
 * The `check` command as a child process: exit code and last line for a linearizable, a non-linearizable,
 * a time-limited hard and a malformed history; then the other options and bad usages through the same
 * `main` in process (a child process costs seconds of startup on a loaded machine).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateHistory, toEdn, toJsonLines, withReadValue } from '../../jepsen/checker/generate.ts';
import { main } from '../../jepsen/checker/cli.ts';
import { knossosHistories } from './testdata.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(repo, 'jepsen/checker/cli.ts');
const knossos = knossosHistories;
const dir = mkdtempSync(join(tmpdir(), 'rfs-check-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  last: string;
}

function check(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  const lines = r.stdout.trimEnd().split('\n');
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, last: lines[lines.length - 1] ?? '' };
}

/** The same command in process; `env` is set for the call's duration. */
function checkInProcess(args: string[], env: Record<string, string> = {}): Run {
  const out: string[] = [];
  const err: string[] = [];
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    const code = main(args, (l) => out.push(l), (l) => err.push(l));
    return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.join('\n'), last: out[out.length - 1] ?? '' };
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

void t.test('a good Knossos file: linearizable, exit 0', (t) => {
  const r = check(['--model', 'cas-register', join(knossos, 'good/memstress3-0.edn')]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.last, 'linearizable');
  t.end();
});

void t.test('a bad Knossos file: not linearizable, exit 1, with the failing window', (t) => {
  const r = check(['--model', 'cas-register', '--initial', '0', join(knossos, 'bad/rethink-fail-minimal.edn')]);
  t.equal(r.code, 1, r.stderr);
  t.equal(r.last, 'not linearizable');
  t.match(r.stdout, /cannot be linearized before it returned: process 1 read nil → 3 :ok/);
  t.match(r.stdout, /longest linearizable prefix: 2 operation/);
  t.end();
});

void t.test('a hard history under a time limit: unknown, exit 2', (t) => {
  // Many indeterminate operations and a read of a value never written, late in the history: refuting it
  // means exhausting the search (tens of seconds at least), so one second is not enough.
  const events = generateHistory({ seed: 3, processes: 10, operations: 1000, workload: 'register' });
  const bad = withReadValue(events, 3 * 37, 7);
  t.ok(bad, 'has a read');
  const path = write('hard.edn', toEdn(bad ?? []));
  const r = check(['--model', 'cas-register', '--time-limit-s', '1', path]);
  t.equal(r.code, 2, r.stderr);
  t.equal(r.last, 'unknown');
  t.match(r.stdout, /time limit reached/);
  t.end();
});

void t.test('kv model on JSON lines, and failed-cas semantics', (t) => {
  const path = write('kv.jsonl', toJsonLines(generateHistory({ seed: 7, processes: 5, operations: 200, workload: 'kv', keys: 3 })));
  const r = checkInProcess(['--model', 'kv', path]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.last, 'linearizable');
  t.match(r.stdout, /in 3 partition/);
  // A cas that failed although the register held its `from`: fine if it did not happen, a violation if
  // the compare ran (etcd's meaning).
  const cas = write(
    'cas.edn',
    `[{:process 0, :type :invoke, :f :cas, :value [0 1]}
      {:process 0, :type :fail, :f :cas, :value [0 1]}]`,
  );
  t.equal(checkInProcess(['--model', 'cas-register', '--failed-cas', 'ignore', cas]).code, 0);
  const strict = checkInProcess(['--model', 'cas-register', '--failed-cas=compare-failed', cas]);
  t.equal(strict.code, 1);
  t.equal(strict.last, 'not linearizable');
  t.equal(checkInProcess(['--model', 'cas-register', '--initial', '5', '--failed-cas', 'compare-failed', cas]).code, 0);
  t.end();
});

void t.test('the planted checker bug is reachable from the command line', (t) => {
  const r = checkInProcess(['--model', 'cas-register', join(knossos, 'good/memstress3-24.edn')], { RFS_CHECKER_PLANTED_BUG: 'info-as-fail' });
  t.equal(r.code, 1, 'a good file is wrongly refused');
  t.end();
});

void t.test('malformed input and bad usage: a message and exit 3', (t) => {
  const malformed = write('bad.edn', '[{:process 0, :type :invoke, :f :read}\n {:process 0 :type :ok :f :read :value [1 2}]');
  const r = check(['--model', 'cas-register', malformed]);
  t.equal(r.code, 3);
  t.match(r.stderr, /bad\.edn: line 2, column \d+: unexpected '}'/);
  t.equal(r.stdout, '', 'no verdict printed');
  const unknownOp = write('op.edn', '[{:process 0, :type :invoke, :f :incr, :value 1}]');
  t.match(checkInProcess(['--model', 'cas-register', unknownOp]).stderr, /no operation 'incr'/);
  const usages: string[][] = [
    [],
    ['--model', 'cas-register'],
    ['--model', 'nope', malformed],
    ['--model', 'kv', '--initial', '1', malformed],
    ['--model', 'cas-register', '--failed-cas', 'maybe', malformed],
    ['--model', 'cas-register', '--time-limit-s', '-1', malformed],
    ['--model', 'cas-register', '--initial', '[1', malformed],
    ['--model', 'cas-register', '--bogus', malformed],
    ['--model', 'cas-register', join(dir, 'missing.edn')],
  ];
  for (const args of usages) {
    const u = checkInProcess(args);
    t.equal(u.code, 3, `exit 3: ${args.join(' ')}`);
    t.match(u.stderr, /check: |usage: /);
  }
  t.equal(checkInProcess(['--model', 'cas-register', malformed], { RFS_CHECKER_PLANTED_BUG: 'typo' }).code, 3);
  t.end();
});

void t.test('npm run -s check runs the same command', (t) => {
  const r = spawnSync('npm', ['run', '-s', 'check', '--', '--model', 'cas-register', join(knossos, 'bad/immediate-failure.edn')], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 1, r.stderr);
  t.equal(r.stdout.trimEnd().split('\n').pop(), 'not linearizable');
  t.end();
});
