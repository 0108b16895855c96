/**
 * A node's clock on virtual time. Each node's hardware clock runs at a fixed rate within
 * ±clockDriftBoundPermille/2 of true time, so any two nodes' rates differ by at most the bound the Raft
 * config states (which is what lease reads rely on). The clock survives a crash; timers do not: every
 * timer belongs to one incarnation (epoch) and dies with it.
 */
import type { Clock, TimerHandle } from '../../src/raft/node-api.ts';
import type { NodeId } from '../../src/raft/types.ts';
import type { World } from './world.ts';

/** Each node's clock starts at an arbitrary reading, so no code can rely on clocks agreeing. */
export const CLOCK_START_OFFSET_MS_MAX = 1_000_000;

export interface HardwareClock {
  /** Clock milliseconds per true millisecond, e.g. 1.03. */
  readonly rate: number;
  readonly offsetMs: number;
}

interface SimTimer {
  cancelled: boolean;
}

export class SimClock implements Clock {
  constructor(
    private readonly world: World,
    private readonly nodeId: NodeId,
    private readonly epoch: number,
    private readonly hardware: HardwareClock,
  ) {}

  nowMs(): number {
    return this.hardware.offsetMs + this.world.nowMs * this.hardware.rate;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer: SimTimer = { cancelled: false };
    const trueDelayMs = Math.max(0, delayMs) / this.hardware.rate;
    this.world.schedule(trueDelayMs, {
      kind: 'timer',
      nodeId: this.nodeId,
      epoch: this.epoch,
      describe: () => `n${this.nodeId} timer (${delayMs}ms)`,
      run: () => {
        if (!timer.cancelled) fn();
      },
    });
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    (handle as SimTimer).cancelled = true;
  }
}
