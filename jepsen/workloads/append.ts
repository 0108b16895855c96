/**
 * The append workload: unique records appended to a few shared files `/jepsen/append/a<k>`, one record
 * (`p<process>-<n>`) per line, and reads of whole files. History: `{"f": "append", "value": "p3-17"}`,
 * `{"f": "read", "value": ["p1-0", "p3-17", …]}` (null when invoked).
 *
 * fail vs info: an append is `open(path, 'a')` (lease acquired; a held lease is EBUSY), then write and close
 * (the record's chunk sealed, the file completed). Anything failing in `open` → `fail`: no byte was sent.
 * Anything failing after → `info`: the record's chunk may be sealed (readers see sealed chunks) even if the
 * close failed. Reads change nothing: errors are `fail`. Clients use a short lease (`leaseDurationMs`), so a
 * writer that died mid-append blocks its file for seconds, not a minute.
 *
 * The check (`checkAppendHistory`), per file: no record appears twice in a read (duplicated); every record
 * read was appended and did not `fail` (phantom); every read is a prefix of the longest read (one order for
 * all readers; a read that is not is reordered or has lost a record from the middle); every append
 * acknowledged before a read was invoked is in that read (lost). The final reads on the healed cluster come
 * after every acknowledgement, so they must hold every acknowledged record.
 */
import type { RfsClient } from '../../src/index.ts';
import type { HistoryEvent, HistoryRecorder, OpValue } from '../harness/history.ts';
import type { SeededRandom } from '../harness/random.ts';
import type { Workload, WorkloadCheck, WorkloadOptions } from './types.ts';
import { connectWorkerClient } from './types.ts';

export const appendDir = '/jepsen/append';
/** A writer's lease: short, so one that died mid-append frees its file soon. */
export const appendLeaseMs = 10_000;
export const finalReadAttemptsMax = 10;
const finalReadPauseMs = 1_000;

const keyName = (k: number): string => `a${k}`;
const keyPath = (key: string): string => `${appendDir}/${key}`;

type Outcome = { type: 'ok' | 'fail' | 'info'; value: OpValue; error?: string };

function errorCode(e: unknown): string {
  const err = e as { code?: string | number; name?: string; message?: string };
  return String(err.code ?? err.name ?? err.message ?? 'error');
}

export function parseRecords(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

export class AppendWorkload implements Workload {
  private nextProcess = 0;
  private clientsMade = 0;
  private readonly clients: RfsClient[] = [];
  private readonly history: HistoryRecorder;

  constructor(private readonly options: WorkloadOptions) {
    this.history = options.history;
  }

  get keys(): string[] {
    return Array.from({ length: this.options.keys }, (_, k) => keyName(k));
  }

  private async newClient(): Promise<RfsClient> {
    return connectWorkerClient(this.options, this.clientsMade++, { leaseDurationMs: appendLeaseMs });
  }

  async setup(): Promise<void> {
    for (let i = 0; i < this.options.clients; i++) this.clients.push(await this.newClient());
    await this.clients[0]!.mkdir(appendDir, { recursive: true });
  }

  async run(stop: AbortSignal): Promise<void> {
    await Promise.all(this.clients.map((fs) => this.worker(fs, this.options.random.fork(), stop)));
  }

  private async worker(fs: RfsClient, random: SeededRandom, stop: AbortSignal): Promise<void> {
    let processId = this.nextProcess++;
    let seq = 0;
    while (!stop.aborted) {
      const key = random.pick(this.keys);
      const isRead = random.next() < 0.5;
      const record = `p${processId}-${seq++}`;
      this.history.invoke(processId, isRead ? 'read' : 'append', key, isRead ? null : record);
      let outcome: Outcome;
      try {
        outcome = isRead ? await this.read(fs, key) : await this.append(fs, key, record);
      } catch (e) {
        outcome = { type: 'info', value: isRead ? null : record, error: `workload: ${errorCode(e)}` };
      }
      this.history.complete(processId, outcome.type, outcome.value, outcome.error);
      if (outcome.type === 'info') {
        processId = this.nextProcess++;
        seq = 0;
      }
      const pauseMs = random.int(0, this.options.staggerMs);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  }

  async read(fs: RfsClient, key: string): Promise<Outcome> {
    try {
      const text = await fs.readFile(keyPath(key), { encoding: 'utf8', signal: AbortSignal.timeout(this.options.opTimeoutMs) });
      return { type: 'ok', value: parseRecords(text) };
    } catch (e) {
      if ((e as { code?: unknown }).code === 'ENOENT') return { type: 'ok', value: [] };
      return { type: 'fail', value: null, error: errorCode(e) };
    }
  }

  async append(fs: RfsClient, key: string, record: string): Promise<Outcome> {
    const signal = AbortSignal.timeout(this.options.opTimeoutMs);
    let handle;
    try {
      handle = await fs.open(keyPath(key), 'a', { signal });
    } catch (e) {
      return { type: 'fail', value: record, error: `open:${errorCode(e)}` };
    }
    try {
      await handle.write(`${record}\n`);
      await handle.close();
      return { type: 'ok', value: record };
    } catch (e) {
      await handle.close().catch(() => {});
      return { type: 'info', value: record, error: errorCode(e) };
    }
  }

  async finalReads(): Promise<Map<string, OpValue>> {
    const fs = this.clients[0] ?? (await this.newClient());
    const values = new Map<string, OpValue>();
    for (const key of this.keys) {
      for (let attempt = 0; attempt < finalReadAttemptsMax; attempt++) {
        const processId = this.nextProcess++;
        this.history.invoke(processId, 'read', key, null);
        const outcome = await this.read(fs, key);
        this.history.complete(processId, outcome.type, outcome.value, outcome.error);
        if (outcome.type === 'ok') {
          values.set(key, Array.isArray(outcome.value) ? outcome.value.length : outcome.value);
          break;
        }
        await new Promise((r) => setTimeout(r, finalReadPauseMs));
      }
    }
    return values;
  }

  close(): void {
    for (const fs of this.clients) fs.close();
  }

  check(events: readonly HistoryEvent[]): WorkloadCheck {
    return checkAppendHistory(events);
  }
}

/** Problems listed per kind, at most this many each. */
const problemsPerKindMax = 20;

export function checkAppendHistory(events: readonly HistoryEvent[]): WorkloadCheck {
  const problems: string[] = [];
  const byKind = new Map<string, number>();
  const problem = (kind: string, text: string): void => {
    const n = (byKind.get(kind) ?? 0) + 1;
    byKind.set(kind, n);
    if (n <= problemsPerKindMax) problems.push(`${kind}: ${text}`);
  };
  const invokes = new Map<number, HistoryEvent>();
  interface Read {
    readonly key: string;
    readonly invokeNs: number;
    readonly records: readonly string[];
  }
  const reads: Read[] = [];
  const appended = new Map<string, { key: string; type: string; endNs: number }>();
  for (const e of events) {
    if (e.type === 'invoke') {
      invokes.set(e.process, e);
      if (e.f === 'append') appended.set(String(e.value), { key: e.key, type: 'pending', endNs: Infinity });
      continue;
    }
    const inv = invokes.get(e.process);
    invokes.delete(e.process);
    if (inv === undefined) continue;
    if (e.f === 'append') appended.set(String(inv.value), { key: e.key, type: e.type, endNs: e.time });
    if (e.f === 'read' && e.type === 'ok' && Array.isArray(e.value)) reads.push({ key: e.key, invokeNs: inv.time, records: e.value as string[] });
  }
  const keys = [...new Set(reads.map((r) => r.key))].sort();
  let recordsChecked = 0;
  for (const key of keys) {
    const keyReads = reads.filter((r) => r.key === key);
    const longest = keyReads.reduce((a, b) => (b.records.length > a.records.length ? b : a));
    for (const r of keyReads) {
      const at = `read of ${key} at ${(r.invokeNs / 1e9).toFixed(3)} s`;
      const seen = new Set<string>();
      for (const rec of r.records) {
        if (seen.has(rec)) problem('duplicated', `${rec} twice in the ${at}`);
        seen.add(rec);
        const a = appended.get(rec);
        if (a === undefined || a.key !== key) problem('phantom', `${rec} in the ${at} was never appended to ${key}`);
        else if (a.type === 'fail') problem('phantom', `${rec} in the ${at} belongs to a failed append`);
      }
      const prefix = r.records.every((rec, i) => longest.records[i] === rec);
      if (!prefix) problem('reordered', `the ${at} (${r.records.length} records) is not a prefix of the longest read (${longest.records.length})`);
      for (const [rec, a] of appended) {
        if (a.key === key && a.type === 'ok' && a.endNs < r.invokeNs && !seen.has(rec)) problem('lost', `${rec}, acknowledged at ${(a.endNs / 1e9).toFixed(3)} s, missing from the ${at}`);
      }
      recordsChecked += r.records.length;
    }
  }
  const acknowledged = [...appended.values()].filter((a) => a.type === 'ok').length;
  const summary = `append check: ${keys.length} files, ${reads.length} reads (${recordsChecked} records), ${acknowledged} acknowledged appends; ` +
    (byKind.size === 0 ? 'no anomalies' : [...byKind].map(([k, n]) => `${n} ${k}`).join(', '));
  return { valid: byKind.size === 0, output: [summary, ...problems].join('\n') };
}
