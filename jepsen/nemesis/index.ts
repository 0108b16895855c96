/**
 * The nemeses, the `--nemesis` spec, the seeded schedule, and the runner that applies it.
 *
 * Schedule: after a quiet start, faults follow one another, each for a random duration, with a random quiet
 * gap between; the nemesis of each slot cycles through a seeded shuffle of the chosen ones (so a short run
 * still sees each of them), the variant is drawn at random. The last fault heals `quietEndMs` before the
 * workload stops. Targets (the leader, a random node) are chosen when the fault starts, from the same seed.
 * Every start and heal is a line of `nemesis.jsonl`: {"time": ns, "type": "start"|"heal"|"error", "id", …}.
 */
import { appendFileSync } from 'node:fs';
import { nowNs } from '../harness/history.ts';
import type { SeededRandom } from '../harness/random.ts';
import { chunkserverLossNemesis } from './chunkserver-loss.ts';
import { clockNemesis } from './clock.ts';
import { killNemesis } from './kill.ts';
import { partitionNemesis } from './partition.ts';
import { pauseNemesis } from './pause.ts';
import type { Fault, Nemesis, NemesisContext } from './types.ts';

export const nemeses: readonly Nemesis[] = [killNemesis, pauseNemesis, partitionNemesis, clockNemesis, chunkserverLossNemesis];
export const nemesisNames: readonly string[] = nemeses.map((n) => n.name);

/** 'all', 'none', or a comma-separated list of names. */
export function parseNemesisSpec(spec: string): Nemesis[] {
  if (spec === 'all') return [...nemeses];
  if (spec === 'none' || spec === '') return [];
  return spec.split(',').map((name) => {
    const n = nemeses.find((x) => x.name === name.trim());
    if (n === undefined) throw new RangeError(`unknown nemesis '${name}': one of ${nemesisNames.join(', ')}, all, none`);
    return n;
  });
}

export interface ScheduledFault {
  readonly atMs: number;
  readonly durationMs: number;
  readonly nemesis: string;
  readonly variant: string;
}

export interface ScheduleOptions {
  readonly runMs: number;
  readonly quietStartMs?: number;
  readonly quietEndMs?: number;
}

export const faultMsMax = 15_000;
export const faultMsMin = 5_000;
export const gapMsMax = 8_000;
export const gapMsMin = 2_000;

export function makeSchedule(random: SeededRandom, chosen: readonly Nemesis[], options: ScheduleOptions): ScheduledFault[] {
  const out: ScheduledFault[] = [];
  if (chosen.length === 0) return out;
  const quietStartMs = options.quietStartMs ?? Math.min(5_000, options.runMs / 6);
  const quietEndMs = options.quietEndMs ?? Math.min(5_000, options.runMs / 10);
  const end = options.runMs - quietEndMs;
  // Durations shrink for short runs, so a 20 s run still holds two faults.
  const durationMax = Math.min(faultMsMax, options.runMs / 4);
  const durationMin = Math.min(faultMsMin, durationMax);
  const gapMax = Math.min(gapMsMax, options.runMs / 8);
  const gapMin = Math.min(gapMsMin, gapMax);
  let order = random.sample(chosen, chosen.length);
  let t = quietStartMs;
  while (t + durationMin <= end) {
    if (order.length === 0) order = random.sample(chosen, chosen.length);
    const nemesis = order.shift()!;
    const durationMs = Math.min(random.int(durationMin, durationMax), end - t);
    out.push({ atMs: Math.round(t), durationMs: Math.round(durationMs), nemesis: nemesis.name, variant: random.pick(nemesis.variants) });
    t += durationMs + random.int(gapMin, gapMax);
  }
  return out;
}

export interface NemesisLogEntry {
  readonly time: number;
  readonly type: 'start' | 'heal' | 'error';
  readonly id: number;
  readonly nemesis: string;
  readonly variant: string;
  readonly targets?: readonly string[];
  readonly detail?: Readonly<Record<string, unknown>>;
}

/**
 * Applies a schedule against the live cluster. `run` resolves when every fault has started and healed (or
 * at abort, after healing the active fault). `onEvent` sees every log entry as it is written.
 */
export class NemesisRunner {
  readonly entries: NemesisLogEntry[] = [];
  private active: { id: number; fault: Fault } | undefined;

  constructor(
    private readonly context: NemesisContext,
    private readonly logPath: string,
    private readonly originNs: bigint,
    private readonly onEvent?: (entry: NemesisLogEntry, runner: NemesisRunner) => Promise<void> | void,
  ) {}

  private async log(entry: Omit<NemesisLogEntry, 'time'>): Promise<void> {
    const full: NemesisLogEntry = { time: nowNs(this.originNs), ...entry };
    this.entries.push(full);
    appendFileSync(this.logPath, `${JSON.stringify(full)}\n`);
    await this.onEvent?.(full, this);
  }

  async run(schedule: readonly ScheduledFault[], startMs: number, signal: AbortSignal): Promise<void> {
    for (const [id, item] of schedule.entries()) {
      if (!(await sleepUntil(startMs + item.atMs, signal))) break;
      const nemesis = nemeses.find((n) => n.name === item.nemesis)!;
      try {
        const fault = await nemesis.start(this.context, item.variant);
        this.active = { id, fault };
        await this.log({ type: 'start', id, nemesis: fault.nemesis, variant: fault.variant, targets: fault.targets, detail: fault.detail });
      } catch (e) {
        await this.log({ type: 'error', id, nemesis: item.nemesis, variant: item.variant, detail: { phase: 'start', error: (e as Error).message } });
        continue;
      }
      await sleepUntil(startMs + item.atMs + item.durationMs, signal);
      await this.healActive();
    }
    await this.healActive();
  }

  async healActive(): Promise<void> {
    const active = this.active;
    if (active === undefined) return;
    this.active = undefined;
    const { id, fault } = active;
    try {
      const detail = await fault.heal();
      await this.log({ type: 'heal', id, nemesis: fault.nemesis, variant: fault.variant, targets: fault.targets, detail });
    } catch (e) {
      await this.log({ type: 'error', id, nemesis: fault.nemesis, variant: fault.variant, detail: { phase: 'heal', error: (e as Error).message } });
    }
  }
}

/** Resolves true at the wall-clock time `atMs`, false at once if (or when) `signal` aborts. */
async function sleepUntil(atMs: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  const ms = atMs - Date.now();
  if (ms <= 0) return true;
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
