/**
 * The operation history, one JSON object per line (`history.jsonl`, the format agreed with the checker):
 *   {"process": 3, "type": "invoke"|"ok"|"fail"|"info", "f": "read"|"write"|"cas", "value": …, "key": "r1", "time": ns}
 * (the append workload adds f "append" with a string value, and reads whose value is a list of strings; the
 * namespace workload has f mkdir, create, unlink, rmdir, rename and readdir, paths as values, error codes as the
 * value of a fail, a listing as the value of an ok readdir: jepsen/checker/namespace-model.ts).
 * An invoke is followed by exactly one completion of the same process; a process whose op ended `info`
 * never issues again (its worker takes a new process number). `time` is nanoseconds since the run's start,
 * from the monotonic clock. The recorder keeps the events in memory too (for the report), up to
 * `historyEventsMax`.
 */
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import assert from 'node:assert/strict';

export type OpType = 'invoke' | 'ok' | 'fail' | 'info';
export type OpF = 'read' | 'write' | 'cas' | 'append' | 'mkdir' | 'create' | 'unlink' | 'rmdir' | 'rename' | 'readdir';
export type OpValue = number | string | null | readonly [number, number] | readonly string[];

export interface HistoryEvent {
  readonly process: number;
  readonly type: OpType;
  readonly f: OpF;
  readonly value: OpValue;
  readonly key: string;
  readonly time: number;
  /** Why an op failed or is unknown (an error code); not part of the agreed format, ignored by checkers. */
  readonly error?: string;
}

/** About 10 workers × 120 s × a few hundred ops/s; far above any run we make, below memory trouble. */
export const historyEventsMax = 2_000_000;

/** Nanoseconds on the monotonic clock since `originNs`. */
export function nowNs(originNs: bigint): number {
  return Number(process.hrtime.bigint() - originNs);
}

export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private readonly pending = new Map<number, HistoryEvent>();
  private readonly retired = new Set<number>();
  private readonly out: WriteStream;

  constructor(
    path: string,
    readonly originNs: bigint,
  ) {
    this.out = createWriteStream(path);
  }

  private append(e: HistoryEvent): void {
    assert.ok(this.events.length < historyEventsMax, 'history too long');
    this.events.push(e);
    this.out.write(`${JSON.stringify(e)}\n`);
  }

  invoke(process: number, f: OpF, key: string, value: OpValue): HistoryEvent {
    assert.ok(!this.pending.has(process), `process ${process} invoked twice`);
    assert.ok(!this.retired.has(process), `process ${process} issued after an info`);
    const e: HistoryEvent = { process, type: 'invoke', f, value, key, time: nowNs(this.originNs) };
    this.pending.set(process, e);
    this.append(e);
    return e;
  }

  complete(process: number, type: Exclude<OpType, 'invoke'>, value: OpValue, error?: string): HistoryEvent {
    const invoked = this.pending.get(process);
    assert.ok(invoked !== undefined, `process ${process} completed without an invoke`);
    this.pending.delete(process);
    if (type === 'info') this.retired.add(process);
    const e: HistoryEvent = { process, type, f: invoked.f, value, key: invoked.key, time: nowNs(this.originNs), ...(error !== undefined ? { error } : {}) };
    this.append(e);
    return e;
  }

  pendingCount(): number {
    return this.pending.size;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve, reject) => this.out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  }
}

export interface SanityReport {
  readonly ok: boolean;
  readonly problems: string[];
  readonly counts: Record<string, number>;
}

/**
 * A well-formedness check (not the linearizability verdict): every invoke completed exactly once by the
 * same process with the same f and key, no process issues after an info, times never go back.
 */
export function sanityCheck(events: readonly HistoryEvent[]): SanityReport {
  const problems: string[] = [];
  const counts: Record<string, number> = { invoke: 0, ok: 0, fail: 0, info: 0 };
  const open = new Map<number, HistoryEvent>();
  const retired = new Set<number>();
  let lastTime = -Infinity;
  const problemsMax = 50;
  const problem = (p: string): void => {
    if (problems.length < problemsMax) problems.push(p);
  };
  events.forEach((e, i) => {
    counts[e.type] = (counts[e.type] ?? 0) + 1;
    if (e.time < lastTime) problem(`line ${i + 1}: time ${e.time} before ${lastTime}`);
    lastTime = e.time;
    if (e.type === 'invoke') {
      if (open.has(e.process)) problem(`line ${i + 1}: process ${e.process} invoked while an op is open`);
      if (retired.has(e.process)) problem(`line ${i + 1}: process ${e.process} issued after an info`);
      open.set(e.process, e);
      return;
    }
    const inv = open.get(e.process);
    if (inv === undefined) {
      problem(`line ${i + 1}: process ${e.process} completed with no open invoke`);
      return;
    }
    if (inv.f !== e.f || inv.key !== e.key) problem(`line ${i + 1}: completion ${e.f} ${e.key} of invoke ${inv.f} ${inv.key}`);
    open.delete(e.process);
    if (e.type === 'info') retired.add(e.process);
  });
  for (const [p, e] of open) problem(`process ${p}: ${e.f} ${e.key} invoked at ${e.time} never completed`);
  return { ok: problems.length === 0, problems, counts };
}

export function parseHistory(text: string): HistoryEvent[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as HistoryEvent);
}
