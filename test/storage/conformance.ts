/**
 * The LogStore conformance suite: every implementation runs it (memory.test.ts, rocksdb.test.ts).
 * Only observable behaviour is checked: what load() returns, and that bad calls are refused whole.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import type { Test } from 'tap';
import { EntryType, emptyHardState } from '../../src/raft/types.ts';
import type { Entry, HardState, Snapshot } from '../../src/raft/types.ts';
import { LogStoreUsageError } from '../../src/storage/errors.ts';
import type { LoadedLog, LogStore, LogWrite } from '../../src/storage/log-store.ts';

export interface OpenedStore {
  /** The store as the factory opened it. */
  readonly store: LogStore;
  /** Closes the latest store and opens the same storage again (no crash); returns the new store. */
  readonly reopen: () => Promise<LogStore>;
  /**
   * Loads the storage through a second, independent store, leaving the open one (and its in-memory state)
   * untouched: checks what is stored without the open store re-reading it.
   */
  readonly inspect: () => Promise<LoadedLog>;
  /** Closes the latest store and removes its storage. */
  readonly destroy: () => Promise<void>;
}

/** Opens a store over fresh, empty storage. */
export type LogStoreFactory = () => Promise<OpenedStore>;

export interface ConformanceOptions {
  /** fast-check runs of the model-based test, and commands per run at most. */
  readonly modelRuns?: number;
  readonly maxCommands?: number;
}

const DEFAULT_MODEL_RUNS = 50;
const DEFAULT_MAX_COMMANDS = 25;
const MIB = 1024 * 1024;
/** Byte strings longer than this are compared by length and hash, to keep failure diffs readable. */
const HEX_COMPARE_MAX_BYTES = 256;

// ---- Building blocks. ----

export function entry(
  index: number,
  term: number,
  data: Uint8Array = Buffer.from(`e${index}t${term}`),
): Entry {
  return { index, term, type: EntryType.Normal, data };
}

export function entries(from: number, to: number, term: number): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index <= to; index++) list.push(entry(index, term));
  return list;
}

export function snapshot(
  index: number,
  term: number,
  data: Uint8Array = Buffer.from(`s${index}t${term}`),
): Snapshot {
  const confState = {
    voters: [1, 2, 3],
    votersOutgoing: [],
    learners: [4],
    learnersNext: [],
    autoLeave: false,
  };
  return { metadata: { index, term, confState }, data };
}

export interface ExpectedLog {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
}

const emptyLog: ExpectedLog = { hardState: emptyHardState, snapshot: null, entries: [] };

function bytesView(data: Uint8Array): string {
  if (data.length <= HEX_COMPARE_MAX_BYTES)
    return Buffer.from(data.buffer, data.byteOffset, data.length).toString('hex');
  return `${data.length} bytes, sha256 ${createHash('sha256').update(data).digest('hex')}`;
}

/** A comparable view of a log: plain objects, bytes as strings, no `repairs`. */
export function plainLog(log: ExpectedLog): unknown {
  return {
    hardState: { term: log.hardState.term, vote: log.hardState.vote, commit: log.hardState.commit },
    snapshot:
      log.snapshot === null
        ? null
        : {
            index: log.snapshot.metadata.index,
            term: log.snapshot.metadata.term,
            confState: { ...log.snapshot.metadata.confState },
            data: bytesView(log.snapshot.data),
          },
    entries: log.entries.map((e) => ({
      index: e.index,
      term: e.term,
      type: e.type,
      data: bytesView(e.data),
    })),
  };
}

async function expectLog(
  t: Test,
  store: LogStore,
  expected: ExpectedLog,
  message: string,
): Promise<LoadedLog> {
  const loaded = await store.load();
  t.strictSame(plainLog(loaded), plainLog(expected), message);
  t.notOk(loaded.repairs?.length, `${message}: nothing repaired`);
  return loaded;
}

async function expectRejected(t: Test, promise: Promise<unknown>, why: string): Promise<void> {
  await t.rejects(promise, { name: 'LogStoreUsageError', code: 'EINVAL' }, `rejected: ${why}`);
}

// ---- The suite. ----

export async function runLogStoreConformance(
  t: Test,
  name: string,
  factory: LogStoreFactory,
  options: ConformanceOptions = {},
): Promise<void> {
  /** Runs `body` over a fresh store, destroyed afterwards. */
  const withStore = (title: string, body: (t: Test, opened: OpenedStore) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => {
      const opened = await factory();
      t.teardown(() => opened.destroy());
      await body(t, opened);
    });

  await withStore('an empty store loads empty', async (t, { store, reopen }) => {
    await expectLog(t, store, emptyLog, 'fresh');
    await expectLog(t, await reopen(), emptyLog, 'reopened');
  });

  await withStore('appended entries load back', async (t, { store }) => {
    await store.save({ entries: entries(1, 5, 1) });
    await expectLog(t, store, { ...emptyLog, entries: entries(1, 5, 1) }, 'after one append');
    await store.save({ entries: entries(6, 7, 2) });
    await store.save({ entries: [] });
    await expectLog(
      t,
      store,
      { ...emptyLog, entries: [...entries(1, 5, 1), ...entries(6, 7, 2)] },
      'after two',
    );
  });

  await withStore(
    'entries starting at or below the last index replace the suffix',
    async (t, { store, reopen }) => {
      await store.save({ entries: entries(1, 6, 1) });
      await store.save({ entries: entries(3, 4, 2) });
      const expected = [...entries(1, 2, 1), ...entries(3, 4, 2)];
      await expectLog(t, store, { ...emptyLog, entries: expected }, 'shorter overwrite truncates');
      await store.save({ entries: entries(4, 8, 3) });
      const longer = [...entries(1, 2, 1), entry(3, 2), ...entries(4, 8, 3)];
      await expectLog(t, store, { ...emptyLog, entries: longer }, 'longer overwrite replaces and extends');
      await store.save({ entries: entries(1, 1, 4) });
      await expectLog(t, store, { ...emptyLog, entries: entries(1, 1, 4) }, 'overwrite from the first index');
      await expectLog(t, await reopen(), { ...emptyLog, entries: entries(1, 1, 4) }, 'reopened');
    },
  );

  await withStore(
    'a hard state alone is kept, and kept across entry writes',
    async (t, { store, reopen }) => {
      const hardState = { term: 3, vote: 2, commit: 0 };
      await store.save({ hardState });
      await expectLog(t, store, { ...emptyLog, hardState }, 'hard state only');
      await store.save({ entries: entries(1, 2, 3) });
      await expectLog(t, store, { ...emptyLog, hardState, entries: entries(1, 2, 3) }, 'entries keep it');
      const next = { term: 4, vote: 0, commit: 2 };
      await store.save({ hardState: next, entries: entries(3, 3, 4) });
      await expectLog(
        t,
        await reopen(),
        { ...emptyLog, hardState: next, entries: [...entries(1, 2, 3), entry(3, 4)] },
        'reopened',
      );
    },
  );

  await withStore(
    'a snapshot hides the entries it covers; compact drops them',
    async (t, { store, reopen }) => {
      await store.save({ entries: entries(1, 10, 1) });
      await store.save({ snapshot: snapshot(6, 1) });
      const expected = { ...emptyLog, snapshot: snapshot(6, 1), entries: entries(7, 10, 1) };
      await expectLog(t, store, expected, 'a matching snapshot keeps the entries after it');
      await store.compact(3);
      await expectLog(t, store, expected, 'after compacting part');
      await store.compact(6);
      await store.compact(6);
      await store.compact(0);
      await expectLog(t, store, expected, 'after compacting all it covers, twice');
      await expectLog(t, await reopen(), expected, 'reopened');
    },
  );

  await withStore('a snapshot that does not match the log replaces it', async (t, { store, reopen }) => {
    await store.save({ entries: entries(1, 5, 1) });
    await store.save({ snapshot: snapshot(4, 2) });
    await expectLog(t, store, { ...emptyLog, snapshot: snapshot(4, 2) }, 'term mismatch at the index');
    await store.save({ entries: entries(5, 6, 2) });
    await store.save({ snapshot: snapshot(9, 3) });
    await expectLog(t, store, { ...emptyLog, snapshot: snapshot(9, 3) }, 'index beyond the log');
    await expectLog(t, await reopen(), { ...emptyLog, snapshot: snapshot(9, 3) }, 'reopened');
  });

  await withStore('entries after a snapshot, in the same write and later', async (t, { store, reopen }) => {
    const hardState = { term: 2, vote: 1, commit: 10 };
    await store.save({ snapshot: snapshot(10, 2), entries: entries(11, 12, 2), hardState });
    await expectLog(
      t,
      store,
      { hardState, snapshot: snapshot(10, 2), entries: entries(11, 12, 2) },
      'one write',
    );
    await store.save({ entries: entries(13, 13, 3) });
    await store.save({ entries: entries(12, 12, 3) });
    const expected = { hardState, snapshot: snapshot(10, 2), entries: [entry(11, 2), entry(12, 3)] };
    await expectLog(t, store, expected, 'appended and truncated after the snapshot');
    const reopened = await reopen();
    await expectLog(t, reopened, expected, 'reopened');
    await reopened.save({ snapshot: snapshot(12, 3) });
    await expectLog(t, reopened, { hardState, snapshot: snapshot(12, 3), entries: [] }, 'a newer snapshot');
  });

  await withStore('reopening recovers exactly what was saved', async (t, { store, reopen }) => {
    await store.save({ entries: entries(1, 20, 1), hardState: { term: 1, vote: 1, commit: 5 } });
    await store.save({ snapshot: snapshot(5, 1) });
    await store.compact(5);
    await store.save({ entries: entries(15, 25, 2), hardState: { term: 2, vote: 3, commit: 12 } });
    const expected = {
      hardState: { term: 2, vote: 3, commit: 12 },
      snapshot: snapshot(5, 1),
      entries: [...entries(6, 14, 1), ...entries(15, 25, 2)],
    };
    await expectLog(t, store, expected, 'before reopening');
    let current = store;
    for (let round = 1; round <= 3; round++) {
      current = await reopen();
      await expectLog(t, current, expected, `reopened ${round} times`);
    }
    await current.save({ entries: entries(26, 26, 2) });
    await expectLog(
      t,
      await reopen(),
      { ...expected, entries: [...expected.entries, entry(26, 2)] },
      'written after reopening',
    );
  });

  await withStore('a closed store refuses calls', async (t, { store, reopen }) => {
    await store.save({ entries: entries(1, 1, 1) });
    await store.close();
    await store.close();
    await t.rejects(store.load(), { code: 'ECLOSED' });
    await t.rejects(store.save({ entries: entries(2, 2, 1) }), { code: 'ECLOSED' });
    await expectLog(t, await reopen(), { ...emptyLog, entries: entries(1, 1, 1) }, 'reopened');
  });

  await withStore('invalid writes are rejected with nothing applied', async (t, { store, reopen }) => {
    const hardState = { term: 2, vote: 1, commit: 3 };
    await store.save({ entries: [...entries(1, 3, 1), ...entries(4, 5, 2)], hardState });
    await store.save({ snapshot: snapshot(3, 1) });
    const before = { hardState, snapshot: snapshot(3, 1), entries: entries(4, 5, 2) };
    const newer = { term: 9, vote: 9, commit: 9 };
    const bad = (value: unknown) => value as never;
    const invalid: [string, LogWrite][] = [
      ['entries not contiguous', { entries: [entry(6, 2), entry(8, 2)], hardState: newer }],
      ['entries repeating an index', { entries: [entry(6, 2), entry(6, 2)] }],
      ['first index beyond last + 1', { entries: [entry(7, 2)], hardState: newer }],
      ['entries at the snapshot index', { entries: [entry(3, 2)], hardState: newer }],
      ['entries below the snapshot index', { entries: entries(1, 6, 5) }],
      ['entry index 0', { entries: [entry(0, 1)] }],
      ['entry term 0', { entries: [entry(6, 0)], hardState: newer }],
      ['fractional entry index', { entries: [entry(5.5, 2)] }],
      ['unknown entry type', { entries: [{ ...entry(6, 2), type: bad(7) }] }],
      ['entry data not bytes', { entries: [{ ...entry(6, 2), data: bad('text') }] }],
      ['entries not an array', { entries: bad({ length: 1 }) }],
      ['negative hard state term', { hardState: { term: -1, vote: 0, commit: 0 }, entries: [entry(6, 2)] }],
      ['fractional commit', { hardState: { term: 1, vote: 0, commit: 1.5 } }],
      ['NaN vote', { hardState: { term: 1, vote: Number.NaN, commit: 1 } }],
      ['snapshot older than the saved one', { snapshot: snapshot(2, 1), hardState: newer }],
      ['snapshot at the saved index with another term', { snapshot: snapshot(3, 2) }],
      ['snapshot index 0', { snapshot: snapshot(0, 1) }],
      ['snapshot without metadata', { snapshot: bad({ data: Buffer.alloc(0) }) }],
      [
        'snapshot data not bytes',
        { snapshot: { ...snapshot(8, 2), data: bad(null) }, entries: [entry(9, 2)] },
      ],
      [
        'snapshot voter 0',
        {
          snapshot: {
            ...snapshot(8, 2),
            metadata: {
              ...snapshot(8, 2).metadata,
              confState: bad({ ...snapshot(8, 2).metadata.confState, voters: [0] }),
            },
          },
        },
      ],
      [
        'entries leaving a gap after a new snapshot',
        { snapshot: snapshot(8, 3), entries: [entry(10, 3)], hardState: newer },
      ],
      ['valid snapshot, entries inside it', { snapshot: snapshot(4, 2), entries: [entry(4, 2)] }],
    ];
    for (const [why, write] of invalid) {
      await expectRejected(t, store.save(write), why);
    }
    await expectRejected(t, store.compact(4), 'compact above the snapshot');
    await expectRejected(t, store.compact(-1), 'compact to a negative index');
    await expectRejected(t, store.compact(1.5), 'compact to a fractional index');
    await expectLog(t, store, before, 'nothing was applied');
    const reopened = await reopen();
    await expectLog(t, reopened, before, 'nothing was applied, durably');
    await reopened.save({ entries: [entry(6, 2)] });
    await expectLog(t, reopened, { ...before, entries: [...before.entries, entry(6, 2)] }, 'still writable');
  });

  await withStore(
    'writes are checked against the log as written, without a load in between',
    async (t, { store }) => {
      await store.save({ entries: entries(1, 5, 1) });
      await store.save({ entries: entries(2, 2, 2) });
      await expectRejected(t, store.save({ entries: [entry(4, 2)] }), 'the log now ends at 2');
      await store.save({ entries: [entry(3, 2)] });
      await store.save({ snapshot: snapshot(10, 3) });
      await expectRejected(
        t,
        store.save({ entries: [entry(12, 3)] }),
        'the log now ends at the snapshot, 10',
      );
      await expectRejected(t, store.save({ entries: [entry(10, 3)] }), 'the snapshot covers 10');
      await store.save({ entries: [entry(11, 3)] });
      await expectRejected(t, store.compact(11), 'compact above the snapshot');
      await store.compact(10);
      await expectLog(
        t,
        store,
        { ...emptyLog, snapshot: snapshot(10, 3), entries: [entry(11, 3)] },
        'loaded',
      );
    },
  );

  await withStore('saves issued without waiting apply in call order', async (t, { store, reopen }) => {
    const hardState = { term: 3, vote: 1, commit: 4 };
    await Promise.all([
      store.save({ entries: entries(1, 4, 1) }),
      store.save({ entries: entries(5, 6, 2) }),
      store.save({ entries: entries(3, 3, 3), hardState }),
      store.save({ snapshot: snapshot(2, 1) }),
      store.compact(2),
      store.save({ entries: entries(4, 4, 3) }),
    ]);
    const expected = { hardState, snapshot: snapshot(2, 1), entries: [entry(3, 3), entry(4, 3)] };
    await expectLog(t, store, expected, 'loaded');
    await expectLog(t, await reopen(), expected, 'reopened');
  });

  await withStore('large entries (1 MiB) round-trip', async (t, { store, reopen }) => {
    const big = (seed: number) => Buffer.alloc(MIB, `payload ${seed} `);
    const list = [1, 2, 3].map((index) => entry(index, 1, big(index)));
    await store.save({ entries: list });
    await store.save({ snapshot: snapshot(1, 1, big(9)) });
    const expected = { ...emptyLog, snapshot: snapshot(1, 1, big(9)), entries: list.slice(1) };
    await expectLog(t, store, expected, 'loaded');
    await expectLog(t, await reopen(), expected, 'reopened');
  });

  await t.test(`${name}: model-based: load() equals a simple model after every command`, async (t) => {
    const modelRuns = options.modelRuns ?? DEFAULT_MODEL_RUNS;
    await fc.assert(
      fc.asyncProperty(
        fc.commands(commandArbitraries, {
          maxCommands: options.maxCommands ?? DEFAULT_MAX_COMMANDS,
          size: 'max',
        }),
        async (commands) => {
          const opened = await factory();
          try {
            await fc.asyncModelRun(
              () => ({ model: newModel(), real: { opened, store: opened.store } }),
              commands,
            );
          } finally {
            await opened.destroy();
          }
        },
      ),
      { numRuns: modelRuns },
    );
    t.pass(`${modelRuns} command sequences agree with the model`);
  });
}

// ---- The model. ----

interface Model {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Contiguous, all above the snapshot index. */
  entries: Entry[];
}

interface Real {
  readonly opened: OpenedStore;
  store: LogStore;
}

type Command = fc.AsyncCommand<Model, Real>;

function newModel(): Model {
  return { hardState: emptyHardState, snapshot: null, entries: [] };
}

function snapshotIndexOf(m: Model): number {
  return m.snapshot?.metadata.index ?? 0;
}

function lastIndexOf(m: Model): number {
  return m.entries.at(-1)?.index ?? snapshotIndexOf(m);
}

/** The term at `index` if the model knows it (an entry, or the snapshot's last entry), else undefined. */
function termAt(m: Model, index: number): number | undefined {
  if (index === 0) return 0;
  if (index === snapshotIndexOf(m)) return m.snapshot?.metadata.term;
  return m.entries.find((e) => e.index === index)?.term;
}

function lastTermOf(m: Model): number {
  return termAt(m, lastIndexOf(m)) ?? 0;
}

function makeEntries(from: number, count: number, term: number, data: Uint8Array): Entry[] {
  return Array.from({ length: count }, (_, i) => entry(from + i, term, data));
}

function appendTo(m: Model, list: readonly Entry[]): void {
  const first = list[0];
  if (first === undefined) return;
  m.entries = [...m.entries.filter((e) => e.index < first.index), ...list];
}

function assertLoadedEqualsModel(loaded: LoadedLog, m: Model): void {
  assert.deepStrictEqual(plainLog(loaded), plainLog(m));
  assert.equal(loaded.repairs?.length ?? 0, 0);
}

abstract class ModelCommand implements Command {
  check(): boolean {
    return true;
  }
  /** Checks through a separate reader, so the store under test does not refresh its state by loading. */
  async run(m: Model, r: Real): Promise<void> {
    await this.apply(m, r);
    assertLoadedEqualsModel(await r.opened.inspect(), m);
  }
  protected abstract apply(m: Model, r: Real): Promise<void>;
  abstract toString(): string;
}

/** Writes entries from up to `backOff` below last + 1 (truncating), never into the snapshot. */
class AppendCommand extends ModelCommand {
  constructor(
    readonly backOff: number,
    readonly count: number,
    readonly termBump: number,
    readonly withHardState: boolean,
    readonly data: Uint8Array,
  ) {
    super();
  }
  protected async apply(m: Model, r: Real): Promise<void> {
    const start = Math.max(snapshotIndexOf(m) + 1, lastIndexOf(m) + 1 - this.backOff);
    const term = Math.max(1, (termAt(m, start - 1) ?? 0) + this.termBump);
    const list = makeEntries(start, this.count, term, this.data);
    const hardState = { term, vote: 1, commit: snapshotIndexOf(m) };
    await r.store.save(this.withHardState ? { entries: list, hardState } : { entries: list });
    appendTo(m, list);
    if (this.withHardState) m.hardState = hardState;
  }
  toString(): string {
    return `append(backOff=${this.backOff}, count=${this.count}, termBump=${this.termBump}, hs=${this.withHardState})`;
  }
}

class HardStateCommand extends ModelCommand {
  constructor(readonly hardState: HardState) {
    super();
  }
  protected async apply(m: Model, r: Real): Promise<void> {
    await r.store.save({ hardState: this.hardState });
    m.hardState = this.hardState;
  }
  toString(): string {
    return `hardState(${JSON.stringify(this.hardState)})`;
  }
}

/**
 * Saves a snapshot near the last index (never older than the saved one); it matches the log when `match`
 * and the log has an entry there, otherwise it replaces the log. Optionally appends entries after it.
 */
class SnapshotCommand extends ModelCommand {
  constructor(
    readonly offset: number,
    readonly match: boolean,
    readonly entriesAfter: number,
    readonly data: Uint8Array,
  ) {
    super();
  }
  protected async apply(m: Model, r: Real): Promise<void> {
    const saved = snapshotIndexOf(m);
    const index = Math.max(saved, 1, lastIndexOf(m) + this.offset);
    const known = termAt(m, index);
    const term =
      index === saved ? (known ?? 1) : this.match && known !== undefined ? known : lastTermOf(m) + 1;
    const snap = snapshot(index, term, this.data);
    const matches = known === term;
    const after = matches ? m.entries.filter((e) => e.index > index) : [];
    const list = makeEntries(
      (after.at(-1)?.index ?? index) + 1,
      this.entriesAfter,
      Math.max(term, after.at(-1)?.term ?? 0),
      this.data,
    );
    await r.store.save(list.length > 0 ? { snapshot: snap, entries: list } : { snapshot: snap });
    m.snapshot = snap;
    m.entries = [...after, ...list];
  }
  toString(): string {
    return `snapshot(offset=${this.offset}, match=${this.match}, entriesAfter=${this.entriesAfter})`;
  }
}

class CompactCommand extends ModelCommand {
  constructor(readonly quarters: number) {
    super();
  }
  protected async apply(m: Model, r: Real): Promise<void> {
    await r.store.compact(Math.floor((snapshotIndexOf(m) * this.quarters) / 4));
  }
  toString(): string {
    return `compact(${this.quarters}/4 of the snapshot index)`;
  }
}

/** load() on the store under test itself. */
class LoadCommand extends ModelCommand {
  protected async apply(m: Model, r: Real): Promise<void> {
    assertLoadedEqualsModel(await r.store.load(), m);
  }
  toString(): string {
    return 'load';
  }
}

class ReopenCommand extends ModelCommand {
  protected async apply(_m: Model, r: Real): Promise<void> {
    r.store = await r.opened.reopen();
  }
  toString(): string {
    return 'reopen';
  }
}

const invalidKinds = [
  'gap',
  'non-contiguous',
  'into-snapshot',
  'stale-snapshot',
  'conflicting-snapshot',
  'compact-above',
  'bad-entry',
  'bad-hard-state',
] as const;
type InvalidKind = (typeof invalidKinds)[number];

/** A call that must be refused whole, leaving the model (and so the store) unchanged. */
class InvalidCommand extends ModelCommand {
  constructor(readonly kind: InvalidKind) {
    super();
  }
  protected async apply(m: Model, r: Real): Promise<void> {
    const last = lastIndexOf(m);
    const saved = snapshotIndexOf(m);
    const hardState = { term: m.hardState.term + 1, vote: 7, commit: 0 };
    const call = (): Promise<void> => {
      switch (this.kind) {
        case 'gap':
          return r.store.save({ entries: [entry(last + 2, 1)], hardState });
        case 'non-contiguous':
          return r.store.save({ entries: [entry(last + 1, 1), entry(last + 3, 1)], hardState });
        case 'into-snapshot':
          return r.store.save({ entries: [entry(saved, 1)], hardState });
        case 'stale-snapshot':
          return r.store.save({ snapshot: snapshot(saved - 1, 1), hardState });
        case 'conflicting-snapshot':
          return r.store.save({ snapshot: snapshot(saved, (termAt(m, saved) ?? 0) + 1), hardState });
        case 'compact-above':
          return r.store.compact(saved + 1);
        case 'bad-entry':
          return r.store.save({ entries: [entry(last + 1, 0)], hardState });
        case 'bad-hard-state':
          return r.store.save({ entries: [entry(last + 1, 1)], hardState: { ...hardState, commit: -1 } });
      }
    };
    if (this.kind === 'conflicting-snapshot' && saved === 0) return; // nothing saved to conflict with
    await assert.rejects(
      call(),
      (error: unknown) => error instanceof LogStoreUsageError && error.code === 'EINVAL',
    );
  }
  toString(): string {
    return `invalid(${this.kind})`;
  }
}

const payload = fc.uint8Array({ maxLength: 8 });

const appendArbitrary = fc
  .tuple(fc.nat({ max: 4 }), fc.integer({ min: 1, max: 4 }), fc.nat({ max: 2 }), fc.boolean(), payload)
  .map(
    ([backOff, count, termBump, withHardState, data]) =>
      new AppendCommand(backOff, count, termBump, withHardState, data),
  );
const snapshotArbitrary = fc
  .tuple(fc.integer({ min: -4, max: 3 }), fc.boolean(), fc.nat({ max: 2 }), payload)
  .map(([offset, match, entriesAfter, data]) => new SnapshotCommand(offset, match, entriesAfter, data));

/** Appends and snapshots are listed twice: they are the writes with the most cases. */
const commandArbitraries: fc.Arbitrary<Command>[] = [
  appendArbitrary,
  appendArbitrary,
  snapshotArbitrary,
  snapshotArbitrary,
  fc
    .record({ term: fc.nat({ max: 20 }), vote: fc.nat({ max: 5 }), commit: fc.nat({ max: 50 }) })
    .map((hs) => new HardStateCommand({ term: hs.term, vote: hs.vote, commit: hs.commit })),
  fc.integer({ min: 0, max: 4 }).map((quarters) => new CompactCommand(quarters)),
  fc.constant(null).map(() => new LoadCommand()),
  fc.constant(null).map(() => new ReopenCommand()),
  fc.constantFrom(...invalidKinds).map((kind) => new InvalidCommand(kind)),
];
