/**
 * Histories: the events a test recorded, read from Jepsen's EDN or from our JSON lines, and paired into
 * operations.
 *
 * Our format (JSON lines), one event per line:
 *   {"process": 0, "type": "invoke", "f": "cas", "value": [1, 2], "key": "r1", "time": 1234}
 * `type` is invoke | ok | fail | info; `key` and `time` are optional; blank lines are allowed.
 * Jepsen's EDN: a vector or list of maps (`{:process 0, :type :invoke, :f :cas, :value [1 2]}`), or maps
 * one after another at top level. Events whose process is `nemesis` are fault markers and are skipped.
 *
 * Real-time order is the order of events in the file (as in Knossos); `time` is kept for reports only.
 */
import type { EdnValue, EdnMap } from './edn.ts';
import { EdnSyntaxError, readEdnForms, showEdn } from './edn.ts';

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';
const eventTypes: ReadonlySet<string> = new Set(['invoke', 'ok', 'fail', 'info']);

export interface HistoryEvent {
  process: number | string;
  type: EventType;
  f: string;
  value: EdnValue;
  key?: EdnValue;
  time?: number;
  /** 1-based line of the event in its file (0 when built in memory). */
  line: number;
}

/**
 * One operation: an invocation and its completion. `status`: ok = took effect, with `output` its result;
 * fail = did not take effect; info = indeterminate (completed with :info, or never completed): may take
 * effect at any point after its invocation, or never.
 */
export interface Operation {
  /** Index in the paired list (invocation order). */
  id: number;
  process: number | string;
  f: string;
  key: EdnValue | undefined;
  /** The invocation's value (the argument). */
  value: EdnValue;
  /** The completion's value (a read's result); null for info operations. */
  output: EdnValue;
  status: 'ok' | 'fail' | 'info';
  /** Positions of the invocation and completion among the history's operation events; Infinity if none. */
  callIndex: number;
  returnIndex: number;
  callLine: number;
  returnLine: number;
}

export type HistoryErrorCode = 'EHISTORY_SYNTAX' | 'EHISTORY_SHAPE' | 'EHISTORY_PAIRING' | 'EHISTORY_EMPTY';

/** A history that cannot be read: bad syntax, a malformed event, or events that do not pair. */
export class HistoryError extends Error {
  constructor(
    readonly code: HistoryErrorCode,
    readonly detail: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(line > 0 ? `line ${line}, column ${column}: ${detail}` : detail);
    this.name = 'HistoryError';
  }
}

export type HistoryFormat = 'edn' | 'jsonl';

/** JSON lines if the first event starts with `{"`; EDN otherwise (`[`, `(`, `{:` or a leading `;`). */
export function detectFormat(text: string): HistoryFormat {
  const first = /^(?:\s|,)*(\S)(\s*)(\S?)/.exec(text);
  if (first?.[1] === '{' && first[3] === '"') return 'jsonl';
  return 'edn';
}

/** Reads a history in either format (detected by content). */
export function parseHistory(text: string): HistoryEvent[] {
  return detectFormat(text) === 'jsonl' ? parseJsonLines(text) : parseEdnHistory(text);
}

export function parseEdnHistory(text: string): HistoryEvent[] {
  let forms;
  try {
    forms = readEdnForms(text);
  } catch (e) {
    if (e instanceof EdnSyntaxError) throw new HistoryError('EHISTORY_SYNTAX', e.detail, e.line, e.column);
    throw e;
  }
  if (forms.length === 0) throw new HistoryError('EHISTORY_EMPTY', 'no events', 0, 0);
  const only = forms[0];
  // One collection of maps, or maps one after another.
  if (forms.length === 1 && only !== undefined && Array.isArray(only.value)) {
    const events: HistoryEvent[] = [];
    only.value.forEach((v, i) => {
      const at = only.items?.[i] ?? only;
      const e = toEvent(v, at.line, at.column);
      if (e) events.push(e);
    });
    return events;
  }
  const events: HistoryEvent[] = [];
  for (const form of forms) {
    const e = toEvent(form.value, form.line, form.column);
    if (e) events.push(e);
  }
  return events;
}

export function parseJsonLines(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      const at = /position (\d+)/.exec(String(e));
      const column = at ? Number(at[1]) + 1 : 1;
      throw new HistoryError('EHISTORY_SYNTAX', `bad JSON: ${(e as Error).message}`, line, column);
    }
    const event = toEvent(fromJson(v, line), line, 1);
    if (event) events.push(event);
  });
  if (events.length === 0 && !lines.some((l) => l.trim() !== '')) throw new HistoryError('EHISTORY_EMPTY', 'no events', 0, 0);
  return events;
}

function fromJson(v: unknown, line: number): EdnValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => fromJson(x, line));
  if (typeof v === 'object') {
    const out: EdnMap = Object.create(null) as EdnMap;
    for (const [k, x] of Object.entries(v)) out[k] = fromJson(x, line);
    return out;
  }
  throw new HistoryError('EHISTORY_SHAPE', 'unexpected JSON value', line, 1);
}

/** An event from a map; undefined for nemesis events. */
function toEvent(v: EdnValue, line: number, column: number): HistoryEvent | undefined {
  const shape = (detail: string): never => {
    throw new HistoryError('EHISTORY_SHAPE', detail, line, column);
  };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return shape(`an event must be a map, got ${showEdn(v)}`);
  const process = v['process'];
  if (process === 'nemesis') return undefined;
  if (!(typeof process === 'number' && Number.isSafeInteger(process)) && typeof process !== 'string') {
    return shape(`:process must be an integer or a name, got ${showEdn(process)}`);
  }
  const type = v['type'];
  if (typeof type !== 'string' || !eventTypes.has(type)) return shape(`:type must be invoke, ok, fail or info, got ${showEdn(type)}`);
  const f = v['f'];
  if (typeof f !== 'string') return shape(`:f must be a keyword or string, got ${showEdn(f)}`);
  const event: HistoryEvent = { process, type: type as EventType, f, value: v['value'] ?? null, line };
  const key = v['key'];
  if (key !== undefined) event.key = key;
  const time = v['time'];
  if (time !== undefined) {
    if (typeof time !== 'number' && typeof time !== 'bigint') return shape(`:time must be a number, got ${showEdn(time)}`);
    event.time = Number(time);
  }
  return event;
}

/**
 * Pairs each invocation with the next completion of the same process. A process has at most one
 * operation outstanding; a completion without an invocation, or of a different function, is an error.
 * Invocations never completed are info operations.
 */
export function pairOperations(events: readonly HistoryEvent[]): Operation[] {
  const ops: Operation[] = [];
  const pending = new Map<number | string, Operation>();
  events.forEach((e, index) => {
    const pairing = (detail: string): never => {
      throw new HistoryError('EHISTORY_PAIRING', detail, e.line, 1);
    };
    const open = pending.get(e.process);
    if (e.type === 'invoke') {
      if (open) pairing(`process ${String(e.process)} invokes ${e.f} while its ${open.f} (line ${open.callLine}) is outstanding`);
      const op: Operation = {
        id: ops.length,
        process: e.process,
        f: e.f,
        key: e.key,
        value: e.value,
        output: null,
        status: 'info',
        callIndex: index,
        returnIndex: Infinity,
        callLine: e.line,
        returnLine: 0,
      };
      ops.push(op);
      pending.set(e.process, op);
      return;
    }
    if (!open) return pairing(`process ${String(e.process)} completes ${e.f} (${e.type}) without an invocation`);
    if (open.f !== e.f) pairing(`process ${String(e.process)} completes ${e.f} but invoked ${open.f} (line ${open.callLine})`);
    if (e.key !== undefined && open.key !== undefined && showEdn(e.key) !== showEdn(open.key)) {
      pairing(`process ${String(e.process)} completes key ${showEdn(e.key)} but invoked key ${showEdn(open.key)}`);
    }
    pending.delete(e.process);
    open.status = e.type;
    open.returnLine = e.line;
    if (open.key === undefined && e.key !== undefined) open.key = e.key;
    if (e.type === 'info') return; // indeterminate: its return stays at infinity
    open.returnIndex = index;
    open.output = e.value;
  });
  return ops;
}

/** One line describing an operation, for reports. */
export function describeOperation(op: Operation): string {
  const key = op.key === undefined ? '' : ` key ${showEdn(op.key)}`;
  // A completion's value when it says more than the invocation's: a read's result, a fail's error code.
  const value = op.status !== 'info' && op.output !== null && showEdn(op.output) !== showEdn(op.value) ? `${showEdn(op.value)} → ${showEdn(op.output)}` : showEdn(op.value);
  const where = op.returnLine > 0 ? `lines ${op.callLine}–${op.returnLine}` : `line ${op.callLine}, never completed`;
  return `process ${String(op.process)} ${op.f}${key} ${value} :${op.status} (${where})`;
}
