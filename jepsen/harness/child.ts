/**
 * One Jepsen run (`jepsen/run.ts`) as a child process, for the scripts that run many (bugs.ts,
 * reliability.ts): exit code, last line, wall time. A run that finds the machine's lock held waits and
 * tries again, so a batch shares the machine with the test suite's short runs.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const repoRoot = resolve(import.meta.dirname, '..', '..');
/** A run that finds the lock held waits this long, then tries again. */
const lockedRetryMs = 60_000;
const lockedRetriesMax = 15;
/** Output kept from a child run: only the tail matters (the verdict is the last line). */
const outputTailChars = 16_384;

export interface ChildRun {
  /** run.ts's exit code: 0 passed, 1 violation, 2 unknown, 3 the run failed. */
  readonly code: number;
  /** The last line printed: the verdict, or why the run failed. */
  readonly verdict: string;
  readonly seconds: number;
  /** The run's report folder. */
  readonly dir: string;
}

function spawnRun(args: readonly string[], dir: string, print: (line: string) => void): Promise<ChildRun> {
  const started = Date.now();
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'jepsen', 'run.ts'), ...args, '--out', dir], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-outputTailChars);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (code) => {
      const lines = output.trimEnd().split('\n');
      if ((code ?? 3) === 3) print(`    run failed: ${lines.slice(-3).join(' | ')}`);
      resolveRun({ code: code ?? 3, verdict: lines.at(-1) ?? '', seconds: (Date.now() - started) / 1000, dir });
    });
  });
}

/** One run of `jepsen/run.ts ARGS --out DIR`, waiting while another Jepsen run holds the machine's lock. */
export async function runJepsenChild(args: readonly string[], dir: string, print: (line: string) => void): Promise<ChildRun> {
  for (let attempt = 0; ; attempt++) {
    const outcome = await spawnRun(args, dir, print);
    if (outcome.code !== 3 || !/holds \/run\/rfs-jepsen\.lock/.test(outcome.verdict) || attempt >= lockedRetriesMax) return outcome;
    print(`    another Jepsen run holds the lock; waiting ${lockedRetryMs / 1000} s`);
    await new Promise((r) => setTimeout(r, lockedRetryMs));
  }
}
