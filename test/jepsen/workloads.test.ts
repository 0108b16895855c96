/**
 * Short real runs of the namespace and append workloads (the register run is test/jepsen/harness.test.ts):
 * 5 metadata servers and 3 chunkservers in their network namespaces, 20 s of 4 clients under two nemeses each,
 * then the heal, the final reads and the check. Needs root. Checks: a well-formed history on disk with real
 * traffic of every operation, each fault started and healed, the final reads of every key, the report files,
 * the verdict (linearizable / valid), and a clean machine afterwards.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import type { Test } from 'tap';
import { parseHistory, sanityCheck } from '../../jepsen/harness/history.ts';
import type { HistoryEvent } from '../../jepsen/harness/history.ts';
import { namePrefix } from '../../jepsen/harness/net.ts';
import type { RunOptions, RunResult } from '../../jepsen/harness/runner.ts';
import type { NemesisLogEntry } from '../../jepsen/nemesis/index.ts';
import { lockWaitMs, runBoundMs, runJepsenWaiting } from './jepsen-lock.ts';

/** Workload time under faults in each run. */
const runTimeMs = 20_000;
// Two runs, each of which may wait for the machine's Jepsen lock first: more than tap's default per file.
t.setTimeout(2 * (lockWaitMs + runBoundMs));

async function shortRun(t: Test, workload: RunOptions['workload'], nemeses: readonly string[], seed: number): Promise<{ result: RunResult; history: HistoryEvent[]; nemesis: NemesisLogEntry[] } | undefined> {
  if (process.getuid?.() !== 0) {
    t.fail('the Jepsen workload runs need root (network namespaces, veth, blackhole routes): run them as root');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), `rfs-jepsen-${workload}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const options: RunOptions = { workload, nemesis: nemeses.join(','), timeMs: runTimeMs, seed, clients: 4, keys: 2, outDir: join(dir, 'run') };
  const result = await runJepsenWaiting(options, (line) => t.comment(line));

  const history = parseHistory(readFileSync(join(result.dir, 'history.jsonl'), 'utf8'));
  const sanity = sanityCheck(history);
  t.ok(sanity.ok, `history well-formed: ${sanity.problems.join('; ')}`);
  t.equal(sanity.counts['invoke'], (sanity.counts['ok'] ?? 0) + (sanity.counts['fail'] ?? 0) + (sanity.counts['info'] ?? 0), 'every invoke completed exactly once');
  t.comment(`history: ${JSON.stringify(sanity.counts)}`);

  const nemesis = readFileSync(join(result.dir, 'nemesis.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as NemesisLogEntry);
  for (const name of nemeses) {
    const start = nemesis.find((e) => e.nemesis === name && e.type === 'start');
    t.ok(start, `${name} started`);
    t.ok(start !== undefined && nemesis.some((e) => e.id === start.id && e.type === 'heal' && e.time > start.time), `${name} healed`);
  }
  t.notOk(nemesis.some((e) => e.type === 'error'), `no nemesis errors: ${JSON.stringify(nemesis.filter((e) => e.type === 'error'))}`);

  const verdict = readFileSync(join(result.dir, 'verdict.txt'), 'utf8').trimEnd().split('\n').at(-1);
  t.equal(verdict, result.verdict.line, 'verdict.txt ends with the verdict');
  t.match(readFileSync(join(result.dir, 'index.html'), 'utf8'), /<svg/, 'index.html has its timeline');
  t.notMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`^${namePrefix}-`, 'm'), 'no namespaces left');
  t.notOk(existsSync(join(result.dir, 'data')), 'data dirs removed');
  return { result, history, nemesis };
}

const completions = (history: readonly HistoryEvent[], f: string, type: string): HistoryEvent[] => history.filter((e) => e.f === f && e.type === type);

void t.test('a short namespace run under kill and pause', async (t) => {
  const run = await shortRun(t, 'namespace', ['kill', 'pause'], 7);
  if (run === undefined) return;
  const { result, history } = run;
  for (const f of ['mkdir', 'create', 'rename', 'unlink', 'rmdir', 'readdir']) t.ok(completions(history, f, 'ok').length > 0, `some ${f} succeeded (${completions(history, f, 'ok').length})`);
  const coded = history.filter((e) => e.type === 'fail' && typeof e.value === 'string');
  t.ok(coded.length > 0, `some operations ended with a POSIX code, checked by the model (${coded.length})`);
  t.ok(coded.every((e) => /^E[A-Z]+$/.test(String(e.value))), 'every fail value is an error code');
  t.ok(completions(history, 'readdir', 'ok').every((e) => Array.isArray(e.value)), 'every ok readdir carries its listing');
  t.same(Object.keys(result.finalValues).sort(), ['t0', 't1'], 'final reads of every tree');
  t.equal(result.verdict.kind, 'linearizable', `checker: ${result.verdict.output}`);
});

void t.test('a short append run under partition and chunkserver loss', async (t) => {
  const run = await shortRun(t, 'append', ['partition', 'chunkserver-loss'], 7);
  if (run === undefined) return;
  const { result, history } = run;
  t.ok(completions(history, 'append', 'ok').length > 0, `some appends succeeded (${completions(history, 'append', 'ok').length})`);
  t.ok(completions(history, 'read', 'ok').some((e) => Array.isArray(e.value) && e.value.length > 0), 'some read saw records');
  t.same(Object.keys(result.finalValues).sort(), ['a0', 'a1'], 'final reads of every file');
  t.equal(result.verdict.kind, 'valid', `append check: ${result.verdict.output}`);
});
