/**
 * The crash rule (types.ts): after a crash every replica is at a state it had at some sync() (or a longer
 * prefix whose blocks all verify), never a mix, never bytes whose checksum fails.
 *
 * (a) SimDisk, fast-check: random operation sequences with power cuts between operations and in the middle
 *     of one (before any of its disk mutations), losing unsynced writes and directory changes, tearing
 *     writes, and injected I/O errors (a failed operation changes nothing in memory; on disk either state
 *     may be durable until the next commit). After each reopen every replica must match the model.
 * (b) Real processes: a child appends and syncs in a loop and prints what it synced; SIGKILL at a random
 *     moment; the reopened store holds at least what was synced, with the right bytes, and verifies.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import t from 'tap';
import { NodeDisk } from '../../src/chunkserver/disk.ts';
import { FileChunkStore } from '../../src/chunkserver/store.ts';
import { ChunkStoreError, checksumBlockBytes } from '../../src/chunkserver/types.ts';
import { SimDisk } from '../sim/disk.ts';
import { Prng } from '../sim/prng.ts';
import { pattern } from './store-conformance.ts';

const B = checksumBlockBytes;
const chunkSizeBytes = 1024 * 1024;
const dir = '/chunks';
const handles = [1, 2, 3];

/** A durable (or current) replica state in the model; null means absent. */
interface State {
  readonly version: number;
  readonly sealed: boolean;
  readonly data: Uint8Array;
}

type Op =
  | { kind: 'create'; h: number }
  | { kind: 'append'; h: number; lengthBytes: number; salt: number }
  | { kind: 'sync'; h: number }
  | { kind: 'seal'; h: number; cutPermille: number }
  | { kind: 'bump'; h: number; cutPermille: number }
  | { kind: 'delete'; h: number }
  | { kind: 'crash' };

interface Step {
  readonly op: Op;
  /** Crash in place of the n-th disk mutation of this operation (if it has that many). */
  readonly crashAtMutation: number | undefined;
  /** The n-th disk call of the operation fails with an injected I/O error. */
  readonly ioError: number | undefined;
}

const handleArb = fc.constantFrom(...handles);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('create' as const), h: handleArb }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      h: handleArb,
      lengthBytes: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 2 * B + 100 })),
      salt: fc.integer({ min: 0, max: 255 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('sync' as const), h: handleArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('seal' as const), h: handleArb, cutPermille: fc.integer({ min: 0, max: 1000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bump' as const), h: handleArb, cutPermille: fc.integer({ min: 0, max: 1000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), h: handleArb }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'crash' as const }) },
);
const stepArb: fc.Arbitrary<Step> = fc.record({
  op: opArb,
  crashAtMutation: fc.oneof(
    { weight: 4, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 4 }) },
  ),
  ioError: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }) }),
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const startsWith = (whole: Uint8Array, prefix: Uint8Array) =>
  whole.length >= prefix.length && Buffer.from(whole.subarray(0, prefix.length)).equals(Buffer.from(prefix));

class Model {
  current = new Map<number, State>();
  /** Per handle, every state the disk may hold durably (more than one after a failed or cut-short commit). */
  durable = new Map<number, (State | null)[]>();
  /** Handles whose last operation failed: they may refuse writes (a failed data fsync). */
  suspect = new Set<number>();
  version = 1;

  durableOf(h: number): (State | null)[] {
    return this.durable.get(h) ?? [null];
  }
}

/** The operation as a store call plus the state it makes current and (if a durability point) durable. */
function plan(
  store: FileChunkStore,
  model: Model,
  op: Exclude<Op, { kind: 'crash' }>,
): { call: () => Promise<unknown>; next: State | null; makesDurable: boolean } | undefined {
  const cur = model.current.get(op.h);
  switch (op.kind) {
    case 'create': {
      if (cur !== undefined) return undefined;
      const next = { version: model.version++, sealed: false, data: new Uint8Array(0) };
      return { call: () => store.create(op.h, next.version), next, makesDurable: true };
    }
    case 'append': {
      if (cur === undefined || cur.sealed || cur.data.length + op.lengthBytes > chunkSizeBytes) return undefined;
      const bytes = pattern(op.salt, op.lengthBytes, cur.data.length);
      const next = { ...cur, data: concat(cur.data, bytes) };
      return { call: () => store.append(op.h, cur.version, cur.data.length, bytes), next, makesDurable: false };
    }
    case 'sync':
      if (cur === undefined) return undefined;
      return { call: () => store.sync(op.h), next: cur, makesDurable: true };
    case 'seal': {
      if (cur === undefined || cur.sealed) return undefined;
      const lengthBytes = Math.floor((cur.data.length * op.cutPermille) / 1000);
      const next = { version: cur.version, sealed: true, data: cur.data.slice(0, lengthBytes) };
      return { call: () => store.seal(op.h, cur.version, lengthBytes), next, makesDurable: true };
    }
    case 'bump': {
      if (cur === undefined || cur.sealed) return undefined;
      const lengthBytes = Math.floor((cur.data.length * op.cutPermille) / 1000);
      const next = { version: model.version++, sealed: false, data: cur.data.slice(0, lengthBytes) };
      return { call: () => store.bumpVersion(op.h, cur.version, next.version, lengthBytes), next, makesDurable: true };
    }
    case 'delete':
      if (cur === undefined) return undefined;
      return { call: () => store.delete(op.h, cur.version), next: null, makesDurable: true };
  }
}

/**
 * Reopens the store after a crash and checks every replica against the model: equal to an allowed durable
 * state, or (unsealed) a longer prefix of the bytes written. Then the model adopts what was recovered.
 */
async function reopenAndCheck(disk: SimDisk, model: Model, extra: Map<number, State | null>, written: Map<number, Uint8Array>): Promise<FileChunkStore> {
  const store = await FileChunkStore.open(disk, dir, { chunkSizeBytes });
  model.suspect.clear();
  for (const h of handles) {
    const info = store.info(h);
    const candidates = extra.has(h) ? [...model.durableOf(h), extra.get(h) ?? null] : model.durableOf(h);
    if (info === undefined) {
      if (!candidates.includes(null)) throw new Error(`replica ${h} lost; allowed ${describe(candidates)}`);
      model.current.delete(h);
      model.durable.delete(h);
      continue;
    }
    const data = await store.read(h, info.version, 0, info.lengthBytes); // verifies every block
    await store.verify(h);
    const ok = candidates.some((c) => {
      if (c === null || c.version !== info.version || c.sealed !== info.sealed) return false;
      if (Buffer.from(data).equals(Buffer.from(c.data))) return true;
      const extended = written.get(h);
      return !c.sealed && extended !== undefined && startsWith(data, c.data) && startsWith(extended, data);
    });
    if (!ok) throw new Error(`replica ${h} recovered as v${info.version} ${info.sealed ? 'sealed' : 'open'} ${info.lengthBytes}B; allowed ${describe(candidates)}`);
    const state = { version: info.version, sealed: info.sealed, data };
    model.current.set(h, state);
    model.durable.set(h, [state]);
  }
  for (const path of disk.paths()) {
    const name = path.slice(dir.length + 1);
    const h = Number(name.split('.')[0]);
    if (!/^\d+\.(data|meta)$/.test(name) || store.info(h) === undefined) throw new Error(`left behind: ${path}`);
  }
  return store;
}

function describe(states: readonly (State | null)[]): string {
  return states.map((s) => (s === null ? 'absent' : `v${s.version} ${s.sealed ? 'sealed' : 'open'} ${s.data.length}B`)).join(' | ');
}

void t.test('SimDisk: after any crash, every replica is at a synced state or a valid longer prefix', async (t) => {
  let crashes = 0;
  let midOperationCrashes = 0;
  let torn = 0;
  let ioErrors = 0;
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 }), fc.array(stepArb, { minLength: 10, maxLength: 60, size: 'max' }), async (seed, steps) => {
      const disk = new SimDisk(Prng.fromSeed(seed).split('disk'));
      const model = new Model();
      let store = await FileChunkStore.open(disk, dir, { chunkSizeBytes });
      for (const step of steps) {
        if (step.op.kind === 'crash') {
          torn += disk.crash().tornWrites;
          crashes++;
          store = await reopenAndCheck(disk, model, new Map(), new Map());
          continue;
        }
        const planned = plan(store, model, step.op);
        if (planned === undefined) continue;
        const h = step.op.h;
        const crashesBefore = disk.crashes;
        if (step.crashAtMutation !== undefined) disk.crashBeforeMutation(step.crashAtMutation);
        if (step.ioError !== undefined) disk.failNext(1, undefined, step.ioError);
        try {
          await planned.call();
        } catch (error) {
          if (!(error instanceof ChunkStoreError)) throw error;
          if (disk.crashes !== crashesBefore) {
            // Crashed inside the operation: either its durable effect happened or not.
            crashes++;
            midOperationCrashes++;
            disk.failNext(0);
            const extra = new Map(planned.makesDurable ? [[h, planned.next]] : []);
            const written = new Map<number, Uint8Array>();
            for (const [k, s] of model.current) written.set(k, s.data);
            if (planned.next !== null) written.set(h, planned.next.data);
            store = await reopenAndCheck(disk, model, extra, written);
            continue;
          }
          const refused = model.suspect.has(h) && error.detail.includes('refuses writes');
          if (error.code !== 'IO_ERROR' || !(step.ioError !== undefined || refused)) throw error;
          // Failed: memory must be as before (or, for create/delete, the replica simply absent); the disk may
          // hold either state durably until the next successful commit.
          ioErrors++;
          disk.failNext(0);
          disk.crashBeforeMutation(-1);
          if (planned.makesDurable) model.durable.set(h, [...model.durableOf(h), planned.next]);
          const info = store.info(h);
          const cur = model.current.get(h);
          if (info === undefined) model.current.delete(h);
          else if (cur === undefined || info.version !== cur.version || info.lengthBytes !== cur.data.length || info.sealed !== cur.sealed) {
            throw new Error(`a failed ${step.op.kind} of ${h} was half-applied: ${JSON.stringify(info)}`);
          }
          model.suspect.add(h);
          continue;
        }
        disk.failNext(0);
        disk.crashBeforeMutation(-1);
        if (planned.next === null) model.current.delete(h);
        else model.current.set(h, planned.next);
        if (planned.makesDurable) {
          if (planned.next === null) model.durable.delete(h);
          else model.durable.set(h, [planned.next]);
        }
        // Reads of the live store always match the model.
        const cur = model.current.get(h);
        if (cur !== undefined && cur.data.length > 0) {
          const data = await store.read(h, cur.version, 0, cur.data.length);
          if (!Buffer.from(data).equals(Buffer.from(cur.data))) throw new Error(`live read of ${h} differs`);
        }
      }
      // A final power cut, with nothing in flight.
      torn += disk.crash().tornWrites;
      crashes++;
      store = await reopenAndCheck(disk, model, new Map(), new Map());
      await store.close();
    }),
    { numRuns: 200, seed: 4242 },
  );
  t.ok(crashes > 500, `${crashes} crashes checked`);
  t.ok(midOperationCrashes > 100, `${midOperationCrashes} of them inside an operation`);
  t.ok(torn > 20, `${torn} torn writes`);
  t.ok(ioErrors > 100, `${ioErrors} operations failed with an injected I/O error`);
});

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'append-loop.ts');

/** Runs the child until it has printed `syncsBeforeKill` sync lines plus a random delay, then SIGKILLs it. */
function runAndKill(dir: string, prng: Prng): Promise<Map<number, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const synced = new Map<number, number>();
    const syncsBeforeKill = prng.intBetween(1, 25);
    let syncs = 0;
    let buffered = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => (stderr += text));
    child.stdout.on('data', (text: string) => {
      buffered += text;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [word, handle, , length] = line.split(' ');
        if (word !== 'synced') continue;
        synced.set(Number(handle), Number(length));
        if (++syncs === syncsBeforeKill && !killed) {
          killed = true;
          setTimeout(() => child.kill('SIGKILL'), prng.int(30));
        }
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(synced);
      else reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
    });
  });
}

void t.test('real process: SIGKILL while appending and syncing loses nothing synced', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rfs-store-crash-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'chunks');
  const seed = Date.now() % 1_000_000;
  t.comment(`kill timing seed ${seed}`);
  const prng = Prng.fromSeed(seed);
  const lastSynced = new Map<number, number>();
  for (let round = 0; round < 3; round++) {
    const synced = await runAndKill(dir, prng);
    t.ok(synced.size > 0, `round ${round}: the child synced ${[...synced].map(([h, n]) => `${h}:${n}`).join(' ')}`);
    for (const [h, n] of synced) lastSynced.set(h, n);
    const store = await FileChunkStore.open(new NodeDisk(), dir);
    try {
      for (const [h, n] of lastSynced) {
        const info = store.info(h);
        t.ok(info !== undefined && info.lengthBytes >= n, `round ${round}: replica ${h} holds ${info?.lengthBytes} >= ${n} synced bytes`);
        if (info === undefined) continue;
        await store.verify(h);
        const data = await store.read(h, info.version, 0, info.lengthBytes);
        t.ok(Buffer.from(data).equals(Buffer.from(pattern(h, info.lengthBytes))), `round ${round}: replica ${h}'s bytes are the ones written`);
        lastSynced.set(h, info.lengthBytes);
      }
    } finally {
      await store.close();
    }
  }
});
