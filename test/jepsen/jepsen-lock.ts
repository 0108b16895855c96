/**
 * One Jepsen run per machine: a test that finds the run lock held (someone's `npm run jepsen`, or another test
 * file's run) waits for it, bounded, instead of failing the suite.
 */
import { RunError, runJepsen } from '../../jepsen/harness/runner.ts';
import type { RunOptions, RunResult } from '../../jepsen/harness/runner.ts';

/** How long a test waits for the lock at most. */
export const lockWaitMs = 10 * 60_000;
const lockPollMs = 5_000;
/** One short run with start-up, heal, final reads and check, on a loaded 2-core machine, at most (measured: 40–125 s). */
export const runBoundMs = 5 * 60_000;

/** Runs `options`, waiting while the lock is held; `comment` hears each wait and the run's own duration. */
export async function runJepsenWaiting(options: RunOptions, comment: (line: string) => void): Promise<RunResult> {
  const waitStartedMs = Date.now();
  for (;;) {
    const startedMs = Date.now();
    try {
      const result = await runJepsen(options);
      comment(`run took ${((Date.now() - startedMs) / 1000).toFixed(1)} s (after ${((startedMs - waitStartedMs) / 1000).toFixed(0)} s waiting for the lock)`);
      return result;
    } catch (e) {
      if (!(e instanceof RunError && e.code === 'LOCKED') || Date.now() - waitStartedMs > lockWaitMs) throw e;
      comment(`${e.message}: waiting`);
      await new Promise((r) => setTimeout(r, lockPollMs));
    }
  }
}
