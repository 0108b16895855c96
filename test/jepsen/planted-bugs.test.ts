/**
 * Planted bugs in real processes (src/cli/planted-bugs.ts): the environment switch and its consent guard,
 * the refusal of a real `rfs` process to start on a doubtful list and its warning on a good one, the new
 * Raft bug `commit-without-quorum` in the core, and the Jepsen self-test's catalog and evidence lines
 * (jepsen/planted.ts). No root, no cluster: seconds.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import {
  allowPlantedBugsEnv,
  allowPlantedBugsValue,
  plantedBugsEnv,
  plantedBugNamesMax,
  plantedBugsEnvFor,
  plantedBugsFromEnv,
  PlantedBugsError,
  processBugNames,
} from '../../src/cli/planted-bugs.ts';
import { plantedBugs } from '../../src/raft/config.ts';
import type { PlantedBug } from '../../src/raft/config.ts';
import { dataBugs } from '../../src/chunkserver/bugs.ts';
import { fsmBugs } from '../../src/fsm/bugs.ts';
import { jepsenBugCases, violationEvidence } from '../../jepsen/planted.ts';
import { drainReady, msg, newRaft } from '../raft/harness.ts';

const consent = { [allowPlantedBugsEnv]: allowPlantedBugsValue };

function errorCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof PlantedBugsError ? e.code : `not a PlantedBugsError: ${String(e)}`;
  }
  return undefined;
}

void t.test('no list: no bug, whatever the consent variable says', (t) => {
  for (const env of [{}, { [plantedBugsEnv]: '' }, { [plantedBugsEnv]: '  ' }, consent]) {
    const bugs = plantedBugsFromEnv(env);
    t.same(bugs.names, [], JSON.stringify(env));
    t.equal(bugs.raft.size + bugs.data.size, 0);
  }
  t.end();
});

void t.test('a list without the exact consent value refuses to start', (t) => {
  t.equal(errorCode(() => plantedBugsFromEnv({ [plantedBugsEnv]: 'read-without-quorum' })), 'EPLANTED_NOT_ALLOWED', 'no consent');
  for (const wrong of ['yes', '1', 'true', `${allowPlantedBugsValue} `, allowPlantedBugsValue.toUpperCase()]) {
    t.equal(errorCode(() => plantedBugsFromEnv({ [plantedBugsEnv]: 'read-without-quorum', [allowPlantedBugsEnv]: wrong })), 'EPLANTED_NOT_ALLOWED', `consent '${wrong}'`);
  }
  t.end();
});

void t.test('unknown names, empty items and simulator-only bugs are refused', (t) => {
  for (const list of ['no-such-bug', 'read-without-quorum,nope', 'read-without-quorum,,ack-before-persist', fsmBugs[0], 'placement-keep-stale']) {
    t.equal(errorCode(() => plantedBugsFromEnv({ [plantedBugsEnv]: list, ...consent })), 'EPLANTED_UNKNOWN', list);
  }
  const tooMany = Array.from({ length: plantedBugNamesMax + 1 }, (_, k) => `b${k}`).join(',');
  t.equal(errorCode(() => plantedBugsFromEnv({ [plantedBugsEnv]: tooMany, ...consent })), 'EPLANTED_TOO_MANY', 'a bounded list');
  t.end();
});

void t.test('a good list: each bug goes to the process it lives in', (t) => {
  const bugs = plantedBugsFromEnv({ [plantedBugsEnv]: ' read-without-quorum , data-ack-before-last-replica,read-without-quorum', ...consent });
  t.same(bugs.names, ['read-without-quorum', 'data-ack-before-last-replica'], 'trimmed, duplicates dropped, order kept');
  t.same([...bugs.raft], ['read-without-quorum']);
  t.same([...bugs.data], ['data-ack-before-last-replica']);
  t.same([...processBugNames].sort(), [...plantedBugs, ...dataBugs].sort(), 'every Raft and data-path bug is switchable');
  t.same(plantedBugsFromEnv(plantedBugsEnvFor(['commit-without-quorum'])).names, ['commit-without-quorum'], 'the harness env round-trips');
  t.same(plantedBugsEnvFor([]), {}, 'no bug: nothing set');
  t.end();
});

/** A started server is killed once its output matched every one of `until`, or after this long. */
const startedWaitMs = 60_000;

/** Runs `rfs metadata` with `env` until it exits, or (SIGKILL) until its output matched every one of `until`. */
function runMetadata(env: Record<string, string>, until: readonly RegExp[] = []): Promise<{ code: number | null; output: string }> {
  const repoRoot = resolve(import.meta.dirname, '..', '..');
  const dir = mkdtempSync(join(tmpdir(), 'rfs-planted-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'rfs.ts'), 'metadata', '--id', '1', '--peers', '1=127.0.0.1:0/0', '--data-dir', dir, '--log-level', 'warn'],
    { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  let stdout = '';
  // stdout (pino) and stderr arrive on separate pipes, in no fixed order: wait for all that is expected.
  const maybeKill = (): void => {
    if (until.length > 0 && until.every((r) => r.test(stderr + stdout))) child.kill('SIGKILL');
  };
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    maybeKill();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    maybeKill();
  });
  const timer = until.length > 0 ? setTimeout(() => child.kill('SIGKILL'), startedWaitMs) : undefined;
  return new Promise((resolveRun) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      resolveRun({ code, output: stderr + stdout });
    });
  });
}

const warnedOnStderr = /WARNING: PLANTED BUGS ON \(read-without-quorum\)/;
const warnedInLog = /"level":40.*"plantedBugs":\["read-without-quorum"\]/;

void t.test('a real server process: a doubtful list is a usage error (exit 2), a good one starts with a loud warning', async (t) => {
  const [unknown, noConsent, good] = await Promise.all([
    runMetadata({ [plantedBugsEnv]: 'no-such-bug', ...consent }),
    runMetadata({ [plantedBugsEnv]: 'read-without-quorum' }),
    runMetadata({ [plantedBugsEnv]: 'read-without-quorum', ...consent }, [warnedOnStderr, warnedInLog]),
  ]);
  t.equal(unknown.code, 2, 'unknown name: exit 2');
  t.match(unknown.output, /unknown planted bug "no-such-bug"/);
  t.equal(noConsent.code, 2, 'no consent: exit 2');
  t.match(noConsent.output, /RFS_ALLOW_PLANTED_BUGS is not/);
  t.match(good.output, warnedOnStderr, 'warned on stderr');
  t.match(good.output, warnedInLog, 'and in the pino log at warn');
});

void t.test('commit-without-quorum: the leader commits what it alone persisted', (t) => {
  const run = (bugs: PlantedBug[]) => {
    const r = newRaft(1, [1, 2, 3], { preVote: false, bugs: new Set(bugs) });
    r.campaignNow();
    r.step(msg({ type: 'voteResp', from: 2, to: 1, term: 2 }));
    r.step(msg({ type: 'appResp', from: 2, to: 1, term: 2, index: 2 }));
    drainReady(r);
    const before = r.log.committed;
    // No follower acknowledges the proposal: only the leader's own persist (drainReady advances it).
    r.propose([new TextEncoder().encode('x')]);
    drainReady(r);
    return { before, after: r.log.committed, last: r.log.lastIndex() };
  };
  t.same(run([]), { before: 2, after: 2, last: 3 }, 'correct core: index 3 waits for a quorum');
  t.same(run(['commit-without-quorum']), { before: 2, after: 3, last: 3 }, 'planted bug: committed on the leader alone');
  t.end();
});

void t.test('the self-test catalog names switchable bugs; evidence lines are quoted from verdict.txt', (t) => {
  for (const c of jepsenBugCases) t.ok(processBugNames.includes(c.bug), `${c.bug} is switchable in real processes`);
  t.same([...new Set(jepsenBugCases.map((c) => c.workload))].sort(), ['append', 'namespace', 'register'], 'every workload and so every checker (register and namespace: linearizability, append: its own check) has a planted bug');
  const register = [
    'planted bugs: read-without-quorum',
    'checked 42 operations in 1 partition(s) in 0.003 s',
    'key "r0": not linearizable',
    '  longest linearizable prefix: 16 operation(s), the last 8 shown',
    '    process 14 read key "r0" nil → 2 :ok (lines 162–163)  ⇒ 2',
    '  cannot be linearized before it returned: process 11 read key "r0" nil → 2 :ok (lines 251–253)',
    'not linearizable',
  ].join('\n');
  t.same(violationEvidence(register), ['key "r0": not linearizable', 'cannot be linearized before it returned: process 11 read key "r0" nil → 2 :ok (lines 251–253)']);
  const append = ['planted bugs: x', 'append check: 3 files, 9 reads (40 records), 12 acknowledged appends; 1 lost', 'lost: p3-1, acknowledged at 4.000 s, missing from the read of a0 at 5.000 s', 'invalid'].join('\n');
  t.same(violationEvidence(append), ['lost: p3-1, acknowledged at 4.000 s, missing from the read of a0 at 5.000 s']);
  const namespace = [
    'planted bugs: read-without-quorum',
    'checked 429 operations in 1 partition(s) in 0.019 s',
    'key t0: not linearizable',
    '  cannot be linearized before it returned: process 0 readdir key "t0" "." → ["a/" "b/" "c"] :ok (lines 852–853)',
    'not linearizable',
  ].join('\n');
  t.same(violationEvidence(namespace), ['key t0: not linearizable', 'cannot be linearized before it returned: process 0 readdir key "t0" "." → ["a/" "b/" "c"] :ok (lines 852–853)']);
  t.same(violationEvidence('planted bugs: none\nsomething else\nunknown'), ['something else'], 'unknown shape: the summary line');
  t.end();
});
