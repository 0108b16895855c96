/**
 * Virtual time for tests of code that takes an injected Clock: timers run only when the test advances the
 * clock, in due order, with the event loop let run between them (`settle`) so promises and I/O they start
 * can finish.
 */
import type { Clock, TimerHandle } from '../src/raft/node-api.ts';

interface ManualTimer {
  dueMs: number;
  fn: () => void;
  cancelled: boolean;
}

/** Lets promises settle: a few turns of the event loop. */
export async function settleTurns(turns = 10): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class ManualClock implements Clock {
  private timers: ManualTimer[] = [];

  constructor(
    public now = 0,
    /** Run between timers and at the end of advance(). */
    private readonly settle: () => Promise<void> = () => settleTurns(),
  ) {}

  nowMs(): number {
    return this.now;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer = { dueMs: this.now + Math.max(0, delayMs), fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
  }

  /** Nothing runs for `ms`: the process was stopped. Timers that fell due run at the next advance(). */
  stall(ms: number): void {
    this.now += ms;
  }

  /** Timers set and neither run nor cancelled. */
  pendingTimers(): number {
    return this.timers.filter((x) => !x.cancelled).length;
  }

  /** advance() to the absolute time `targetMs` (no earlier than now). */
  advanceTo(targetMs: number): Promise<void> {
    return this.advance(Math.max(0, targetMs - this.now));
  }

  /** Runs every timer due up to now + ms, in order, letting the event loop settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await this.settle();
      this.timers = this.timers.filter((x) => !x.cancelled);
      const next = this.timers.filter((x) => x.dueMs <= end).sort((a, b) => a.dueMs - b.dueMs)[0];
      if (next === undefined) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.now = Math.max(this.now, next.dueMs);
      next.fn();
    }
    this.now = end;
    await this.settle();
  }
}
