/**
 * The register workload: keys r0..r(N-1), each a small file `/jepsen/r<k>` holding a decimal integer.
 *
 * Why the operations are built this way (src/client/fs.ts, docs/CLIENT.md):
 * - `writeFile` is NOT atomic for readers: it replaces the inode at once with an empty, incomplete file and
 *   then streams the bytes, so a concurrent read could see "" (readers see sealed chunks only). So a write
 *   is `writeFile` of a fresh temp file `/jepsen/tmp/…`, then `rename` over the key: one metadata command,
 *   atomic. The rename is the only step that touches the key, hence:
 *     - an error before the rename (the temp write)  → `fail` (the key was never touched);
 *     - the rename fails with EPRECONDITION          → `fail` (the servers refused it: nothing applied);
 *     - any other rename error (timeout, no leader, session lost, abort) → `info` (it may have applied:
 *       mutations retry with the same session stamp, and a lost answer says nothing about the outcome).
 * - cas(from, to) reads the key's generation and value (stat, readFile, stat: the two generations must be
 *   equal, else `fail` with nothing written), compares the value with `from` (differs → `fail`), writes the
 *   temp file and renames it over the key with `ifGeneration` = that generation. A generation is the log
 *   index of the command that last changed the inode (src/fsm/txn.ts), so it never repeats: no ABA.
 * - read is `readFile` of the key; reads change nothing, so every read error is `fail`. A missing key reads
 *   as the initial value 0 (keys are created before the run, as recorded writes, so this never hides a loss
 *   from the checker: a read of 0 after a completed write of another value is a violation).
 * A worker whose op ends `info` takes a new process number (processes never reuse a number after info).
 */
import type { RfsClient } from '../../src/index.ts';
import { GenerationMismatchError } from '../../src/index.ts';
import type { OpValue } from '../harness/history.ts';
import type { SeededRandom } from '../harness/random.ts';
import type { Workload, WorkloadOptions } from './types.ts';
import { connectWorkerClient } from './types.ts';

export const registerDir = '/jepsen';
export const tempDir = '/jepsen/tmp';
/** Values written and compared are drawn from [0, valuesMax) (small, so cas often matches, as in Jepsen). */
export const valuesMax = 5;
export const initialValue = 0;
/** Attempts per key in the final read phase (each one recorded). */
export const finalReadAttemptsMax = 10;
const finalReadPauseMs = 1_000;

export const keyName = (k: number): string => `r${k}`;
export const keyPath = (key: string): string => `${registerDir}/${key}`;

type Outcome = { type: 'ok' | 'fail' | 'info'; value: OpValue; error?: string };

export type RegisterOptions = WorkloadOptions;

function errorCode(e: unknown): string {
  const err = e as { code?: string | number; name?: string; message?: string };
  return String(err.code ?? err.name ?? err.message ?? 'error');
}

function isMissing(e: unknown): boolean {
  return (e as { code?: unknown }).code === 'ENOENT';
}

/** A file's text as the register's value: an integer, or the raw text when it is not one (an anomaly). */
export function parseValue(text: string): number | string {
  return /^\d+$/.test(text) ? Number(text) : text;
}

export class RegisterWorkload implements Workload {
  private nextProcess = 0;
  private tempSeq = 0;
  private clientsMade = 0;
  private readonly clients: RfsClient[] = [];

  constructor(private readonly options: RegisterOptions) {}

  get keys(): string[] {
    return Array.from({ length: this.options.keys }, (_, k) => keyName(k));
  }

  private allocateProcess(): number {
    return this.nextProcess++;
  }

  private async newClient(): Promise<RfsClient> {
    return connectWorkerClient(this.options, this.clientsMade++);
  }

  /** Before the faults: one client per worker, the directories, and every key written to 0 (recorded). */
  async setup(): Promise<void> {
    for (let i = 0; i < this.options.clients; i++) this.clients.push(await this.newClient());
    const fs = this.clients[0]!;
    await fs.mkdir(tempDir, { recursive: true });
    for (const key of this.keys) {
      const processId = this.allocateProcess();
      this.options.history.invoke(processId, 'write', key, initialValue);
      const outcome = await this.write(fs, key, initialValue);
      this.options.history.complete(processId, outcome.type, outcome.value, outcome.error);
      if (outcome.type !== 'ok') throw new Error(`setup: writing ${key} = ${initialValue} failed (${outcome.error ?? outcome.type})`);
    }
  }

  /** Runs the workers until `stop` aborts; each finishes its current op first. */
  async run(stop: AbortSignal): Promise<void> {
    await Promise.all(this.clients.map((fs, worker) => this.worker(fs, worker, this.options.random.fork(), stop)));
  }

  private async worker(fs: RfsClient, worker: number, random: SeededRandom, stop: AbortSignal): Promise<void> {
    let processId = this.allocateProcess();
    const { history } = this.options;
    while (!stop.aborted) {
      const key = random.pick(this.keys);
      const roll = random.next();
      const f = roll < 0.5 ? 'read' : roll < 0.75 ? 'write' : 'cas';
      const from = random.int(0, valuesMax - 1);
      const to = random.int(0, valuesMax - 1);
      const value: OpValue = f === 'read' ? null : f === 'write' ? to : [from, to];
      history.invoke(processId, f, key, value);
      let outcome: Outcome;
      try {
        outcome = f === 'read' ? await this.read(fs, key) : f === 'write' ? await this.write(fs, key, to) : await this.cas(fs, key, from, to);
      } catch (e) {
        // A bug of the workload itself: the op's outcome is unknown, never guessed.
        outcome = { type: 'info', value, error: `workload: ${errorCode(e)}` };
      }
      history.complete(processId, outcome.type, outcome.value, outcome.error);
      if (outcome.type === 'info') processId = this.allocateProcess();
      if (outcome.error === 'ESESSION') {
        // The session is gone: later mutations need a new one.
        fs.close();
        fs = await this.reconnect(stop);
        this.clients[worker] = fs;
      }
      await pause(random.int(0, this.options.staggerMs));
    }
  }

  private async reconnect(stop: AbortSignal): Promise<RfsClient> {
    for (;;) {
      try {
        return await this.newClient();
      } catch (e) {
        if (stop.aborted) throw e;
        await pause(1_000);
      }
    }
  }

  private signal(): AbortSignal {
    return AbortSignal.timeout(this.options.opTimeoutMs);
  }

  async read(fs: RfsClient, key: string): Promise<Outcome> {
    try {
      const text = await fs.readFile(keyPath(key), { encoding: 'utf8', signal: this.signal() });
      return { type: 'ok', value: parseValue(text) };
    } catch (e) {
      if (isMissing(e)) return { type: 'ok', value: initialValue };
      return { type: 'fail', value: null, error: errorCode(e) };
    }
  }

  private tempPath(): string {
    return `${tempDir}/t${process.pid}-${this.tempSeq++}`;
  }

  /** Best effort, not awaited by the op: a temp file left behind is harmless. */
  private discard(fs: RfsClient, temp: string): void {
    fs.rm(temp, { force: true, signal: this.signal() }).catch(() => {});
  }

  /** Writes `value` to a fresh temp file, then renames it over the key (with `ifGeneration` when given). */
  private async replace(fs: RfsClient, key: string, value: number, ifGeneration: number | undefined, okValue: OpValue): Promise<Outcome> {
    const temp = this.tempPath();
    const signal = this.signal();
    try {
      await fs.writeFile(temp, String(value), { signal });
    } catch (e) {
      this.discard(fs, temp);
      return { type: 'fail', value: okValue, error: `temp:${errorCode(e)}` };
    }
    try {
      await fs.rename(temp, keyPath(key), { signal, ...(ifGeneration !== undefined ? { ifGeneration } : {}) });
      return { type: 'ok', value: okValue };
    } catch (e) {
      if (e instanceof GenerationMismatchError) {
        this.discard(fs, temp);
        return { type: 'fail', value: okValue, error: 'EPRECONDITION' };
      }
      return { type: 'info', value: okValue, error: errorCode(e) };
    }
  }

  async write(fs: RfsClient, key: string, value: number): Promise<Outcome> {
    return this.replace(fs, key, value, undefined, value);
  }

  async cas(fs: RfsClient, key: string, from: number, to: number): Promise<Outcome> {
    const value: OpValue = [from, to];
    const path = keyPath(key);
    let generation: number;
    let current: number | string;
    try {
      const signal = this.signal();
      let before: number;
      try {
        before = (await fs.stat(path, { signal })).generation;
      } catch (e) {
        if (!isMissing(e)) throw e;
        before = 0; // ifGeneration 0: "must not exist"
      }
      if (before === 0) {
        current = initialValue;
      } else {
        current = parseValue(await fs.readFile(path, { encoding: 'utf8', signal }));
        const after = (await fs.stat(path, { signal })).generation;
        if (after !== before) return { type: 'fail', value, error: 'generation moved during the read' };
      }
      generation = before;
    } catch (e) {
      return { type: 'fail', value, error: `read:${errorCode(e)}` };
    }
    if (current !== from) return { type: 'fail', value, error: 'value differs' };
    return this.replace(fs, key, to, generation, value);
  }

  /** After every fault healed: each key read until one read succeeds (at most `finalReadAttemptsMax`). */
  async finalReads(): Promise<Map<string, OpValue>> {
    const fs = this.clients[0] ?? (await this.newClient());
    const values = new Map<string, OpValue>();
    for (const key of this.keys) {
      for (let attempt = 0; attempt < finalReadAttemptsMax; attempt++) {
        const processId = this.allocateProcess();
        this.options.history.invoke(processId, 'read', key, null);
        const outcome = await this.read(fs, key);
        this.options.history.complete(processId, outcome.type, outcome.value, outcome.error);
        if (outcome.type === 'ok') {
          values.set(key, outcome.value);
          break;
        }
        await pause(finalReadPauseMs);
      }
    }
    return values;
  }

  close(): void {
    for (const fs of this.clients) fs.close();
  }
}

async function pause(ms: number): Promise<void> {
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}
