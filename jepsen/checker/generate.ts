/**
 * Seeded generator of histories that are linearizable by construction, for tests and benchmarks: clients
 * run operations against a true sequential object; every operation is invoked, takes effect at one
 * instant (its linearization point) or not at all, then completes. Steps of different clients interleave
 * at random, so concurrency windows vary. Fates: :ok; :fail (did not take effect; a cas whose compare
 * failed also completes :fail); :info (took effect or not, unknown to the client); crashed (no
 * completion at all; the client is replaced by a new process, as Jepsen does).
 *
 * Also writes histories as EDN or JSON lines, and mutates them (for property tests).
 */
import type { EdnValue } from './edn.ts';
import type { HistoryEvent } from './history.ts';
import type { FailedCas } from './models.ts';

export interface GenerateOptions {
  seed: number;
  processes: number;
  operations: number;
  workload: 'register' | 'kv';
  /** Keys (register: more than 1 adds a `key` to each event). Default 1. */
  keys?: number;
  /** Register values are drawn from [0, values). Default 5. */
  values?: number;
  /** Chance that an operation ends :info (default 0.05), crashes without completion (0.02), fails (0.05). */
  infoProbability?: number;
  crashProbability?: number;
  failProbability?: number;
  /** compare-failed: only a cas whose compare failed completes :fail (other operations never fail). */
  failedCas?: FailedCas;
}

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Fate = 'ok' | 'fail' | 'info' | 'crash';

interface Client {
  process: number;
  phase: 'idle' | 'invoked' | 'done';
  event?: HistoryEvent;
  fate?: Fate;
  /** Completion value computed at the linearization point. */
  output?: EdnValue;
  /** Whether the operation took effect (decides the completion of a cas). */
  failed?: boolean;
  /** The key's index. */
  k?: number;
}

export function generateHistory(o: GenerateOptions): HistoryEvent[] {
  const random = prng(o.seed);
  const int = (n: number): number => Math.floor(random() * n);
  const keys = o.keys ?? 1;
  const values = o.values ?? 5;
  const pInfo = o.infoProbability ?? 0.05;
  const pCrash = o.crashProbability ?? 0.02;
  const pFail = o.failProbability ?? 0.05;
  const compareFailed = o.failedCas === 'compare-failed';
  const state = new Map<number, EdnValue>();
  const events: HistoryEvent[] = [];
  let nextProcess = o.processes;
  const clients: Client[] = Array.from({ length: o.processes }, (_, process) => ({ process, phase: 'idle' as const }));
  let invoked = 0;

  const keyOf = (k: number): EdnValue => (o.workload === 'kv' ? `k${k}` : k);
  const read = (k: number): EdnValue => state.get(k) ?? (o.workload === 'kv' ? null : 0);

  const invoke = (c: Client): void => {
    const k = int(keys);
    const r = random();
    let f: string;
    let value: EdnValue;
    if (o.workload === 'register') {
      if (r < 0.4) [f, value] = ['read', null];
      else if (r < 0.7) [f, value] = ['write', int(values)];
      else [f, value] = ['cas', [int(values), int(values)]];
    } else {
      if (r < 0.4) [f, value] = ['get', null];
      else if (r < 0.7) [f, value] = ['put', 'abc'.charAt(int(3))];
      else [f, value] = ['append', 'xyz'.charAt(int(3))];
    }
    const event: HistoryEvent = { process: c.process, type: 'invoke', f, value, line: 0 };
    if (o.workload === 'kv' || keys > 1) event.key = keyOf(k);
    const p = random();
    // Under compare-failed a :fail cas claims its compare ran and failed, so only a real one may fail.
    const canFail = !(compareFailed && f === 'cas');
    c.fate = p < pInfo ? 'info' : p < pInfo + pCrash ? 'crash' : canFail && p < pInfo + pCrash + pFail ? 'fail' : 'ok';
    c.event = event;
    c.k = k;
    c.phase = 'invoked';
    c.failed = false;
    delete c.output;
    events.push(event);
    invoked++;
  };

  // The linearization point: applies the operation (unless its fate is not to take effect).
  const apply = (c: Client): void => {
    const e = c.event;
    if (!e) throw new Error('apply without an invocation');
    const k = c.k ?? 0;
    const takesEffect = c.fate === 'ok' || ((c.fate === 'info' || c.fate === 'crash') && random() < 0.5);
    c.phase = 'done';
    if (!takesEffect) {
      c.failed = true;
      return;
    }
    const current = read(k);
    switch (e.f) {
      case 'read':
      case 'get':
        c.output = current;
        break;
      case 'write':
      case 'put':
        state.set(k, e.value);
        break;
      case 'append':
        state.set(k, `${typeof current === 'string' ? current : ''}${typeof e.value === 'string' ? e.value : ''}`);
        break;
      case 'cas': {
        const [from, to] = e.value as [number, number];
        if (current === from) state.set(k, to);
        else c.failed = true;
        break;
      }
    }
  };

  const complete = (c: Client, index: number): void => {
    const e = c.event;
    if (!e) throw new Error('complete without an invocation');
    c.phase = 'idle';
    delete c.event;
    if (c.fate === 'crash') {
      clients[index] = { process: nextProcess++, phase: 'idle' };
      return;
    }
    let type: HistoryEvent['type'];
    if (c.fate === 'info') type = 'info';
    else if (c.fate === 'fail' || c.failed) type = 'fail';
    else type = 'ok';
    const value = type === 'ok' && (e.f === 'read' || e.f === 'get') ? (c.output ?? null) : e.value;
    const done: HistoryEvent = { process: e.process, type, f: e.f, value, line: 0 };
    if (e.key !== undefined) done.key = e.key;
    events.push(done);
  };

  driveClients(clients, int, () => invoked < o.operations, { invoke, apply, complete });
  return events;
}

/**
 * The generators' scheduler: picks a client at random and moves it one step (an idle one invokes while
 * `more()` holds, an invoked one takes effect, a done one completes), until every client is idle and no more
 * invocations are wanted. `clients` may have entries replaced meanwhile (a crashed client's successor).
 */
export function driveClients<C extends { phase: 'idle' | 'invoked' | 'done' }>(
  clients: readonly C[],
  int: (n: number) => number,
  more: () => boolean,
  step: { invoke(c: C): void; apply(c: C): void; complete(c: C, index: number): void },
): void {
  for (;;) {
    if (!more() && clients.every((c) => c.phase === 'idle')) return;
    const index = int(clients.length);
    const c = clients[index];
    if (!c) continue;
    if (c.phase === 'idle') {
      if (more()) step.invoke(c);
    } else if (c.phase === 'invoked') {
      step.apply(c);
    } else {
      step.complete(c, index);
    }
  }
}

export function toJsonLines(events: readonly HistoryEvent[]): string {
  return events
    .map((e) => {
      const { line: _line, ...rest } = e;
      return JSON.stringify(rest);
    })
    .join('\n');
}

/** EDN as Jepsen writes it: a vector of maps, keywords for :type and :f. */
export function toEdn(events: readonly HistoryEvent[]): string {
  const lines = events.map((e) => {
    const parts = [`:process ${ednValue(e.process)}`, `:type :${e.type}`, `:f :${e.f}`, `:value ${ednValue(e.value)}`];
    if (e.key !== undefined) parts.push(`:key ${ednValue(e.key)}`);
    if (e.time !== undefined) parts.push(`:time ${e.time}`);
    return `{${parts.join(', ')}}`;
  });
  return `[${lines.join('\n ')}]\n`;
}

function ednValue(v: EdnValue | undefined): string {
  if (v === undefined || v === null) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return `[${v.map(ednValue).join(' ')}]`;
  return `{${Object.entries(v)
    .map(([k, x]) => `:${k} ${ednValue(x)}`)
    .join(', ')}}`;
}

/**
 * A copy of `events` with the :ok read (or get) at `readOrdinal` (modulo their count) reporting `value`
 * instead; undefined if the history has no :ok read.
 */
export function withReadValue(events: readonly HistoryEvent[], readOrdinal: number, value: EdnValue): HistoryEvent[] | undefined {
  const reads = events.flatMap((e, i) => (e.type === 'ok' && (e.f === 'read' || e.f === 'get') ? [i] : []));
  if (reads.length === 0) return undefined;
  const at = reads[readOrdinal % reads.length] ?? 0;
  return events.map((e, i) => (i === at ? { ...e, value } : e));
}
