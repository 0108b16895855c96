/** The real-time edges for the Raft driver: a monotonic clock with timers, and a random source. */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { RandomSource } from '../raft/config.ts';
import type { Clock, TimerHandle } from '../raft/node-api.ts';

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  setTimer(delayMs: number, fn: () => void): TimerHandle {
    return setTimeout(fn, delayMs);
  },
  clearTimer(handle: TimerHandle): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

export const systemRandom: RandomSource = {
  int: (maxExclusive: number) => randomInt(maxExclusive),
};
