/**
 * Read-ahead (prefetch.ts) and the inode and meta memos (txn.ts): all only change what applying costs, never what it
 * does. A store that counts its prefetch round trips and exposes a read cache through `peek` checks that a
 * batch on a warm cache costs one round trip whatever the path depth, and that the keys fetched cover every
 * read of the batch; the results and the stored keys equal those of a plain MemoryKv. A batch of bulk
 * commands is written in several atomic writes, each ending at a whole entry.
 */
import t from 'tap';
import type { Test } from 'tap';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { Kv, KvBatch } from '../../src/fsm/kv.ts';
import { bytesToKeyString } from '../../src/fsm/kv.ts';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { Command } from '../../src/fsm/commands.ts';
import { MetadataStateMachine, applyStoreWriteKeysMax } from '../../src/fsm/state-machine.ts';
import * as keys from '../../src/fsm/keys.ts';
import * as rec from '../../src/fsm/records.ts';
import { ApplyHints, InodeMemo } from '../../src/fsm/txn.ts';
import { EntryType } from '../../src/raft/types.ts';
import type { Entry } from '../../src/raft/types.ts';
import { ForwardingKv } from './forwarding-kv.ts';

/** A MemoryKv with a simulated read cache: keys become "cached" when prefetched, read or written. */
class CachingKv extends ForwardingKv {
  /** The store's content, readable synchronously (MemoryKv answers through promises). */
  private readonly mirror = new Map<string, Uint8Array>();
  readonly cached = new Set<string>();
  /** Keys each prefetch call had to fetch (one store round trip each). */
  prefetches: string[][] = [];
  /** Keys read with get() while not cached (each one a store round trip on a disk-backed store). */
  misses: string[] = [];

  override get(key: Uint8Array): Promise<Uint8Array | undefined> {
    const k = bytesToKeyString(key);
    if (!this.cached.has(k)) this.misses.push(k);
    this.cached.add(k);
    return this.inner.get(key);
  }
  override async write(batch: KvBatch): Promise<void> {
    await this.inner.write(batch);
    for (const p of batch.puts) {
      this.cached.add(bytesToKeyString(p.key));
      this.mirror.set(bytesToKeyString(p.key), p.value.slice());
    }
    for (const d of batch.deletes) {
      this.cached.add(bytesToKeyString(d));
      this.mirror.delete(bytesToKeyString(d));
    }
  }
  async prefetch(keys: readonly Uint8Array[]): Promise<void> {
    const fetched = [...new Set(keys.map(bytesToKeyString))].filter((k) => !this.cached.has(k));
    if (fetched.length === 0) return;
    this.prefetches.push(fetched);
    for (const k of fetched) this.cached.add(k);
    await Promise.resolve();
  }
  peek(key: Uint8Array): Uint8Array | null | undefined {
    const k = bytesToKeyString(key);
    if (!this.cached.has(k)) return undefined;
    return this.mirror.get(k) ?? null;
  }
  /** A cold cache (a restart). */
  forget(): void {
    this.cached.clear();
    this.prefetches = [];
    this.misses = [];
  }
}

let nextIndex = 1;
function entries(commands: readonly Command[]): Entry[] {
  return commands.map((c) => ({ term: 1, index: nextIndex++, type: EntryType.Normal, data: encodeCommand(c) }));
}

/** Opens a session, makes /a/b/c/d and /x, and returns the session's client id. */
async function setUp(sm: MetadataStateMachine): Promise<number> {
  const [opened] = await sm.applyBatch(entries([{ nowMs: 1000, op: { type: 'openSession' } }]));
  const clientId = (opened as { ok: true; value: { clientId: number } }).value.clientId;
  await sm.applyBatch(
    entries([
      { nowMs: 1000, op: { type: 'mkdir', path: '/a/b/c/d', parents: true } },
      { nowMs: 1000, op: { type: 'mkdir', path: '/x' } },
    ]),
  );
  return clientId;
}

/** Creates in two directories at different depths, a rename across them, and a createMany. */
function workload(clientId: number, round: number): Command[] {
  const out: Command[] = [];
  let seq = round * 100;
  for (let i = 0; i < 20; i++) {
    seq++;
    const dir = i % 2 === 0 ? '/a/b/c/d' : '/x';
    out.push({ nowMs: 2000 + round, session: { clientId, seq, ack: seq - 1 }, op: { type: 'create', path: `${dir}/r${round}f${i}` } });
  }
  seq++;
  out.push({ nowMs: 2000 + round, session: { clientId, seq, ack: seq - 1 }, op: { type: 'rename', from: `/x/r${round}f1`, to: `/a/b/c/d/r${round}moved` } });
  seq++;
  out.push({ nowMs: 2000 + round, session: { clientId, seq, ack: seq - 1 }, op: { type: 'createMany', dir: '/a/b/c', names: [`r${round}m1`, `r${round}m2`] } });
  return out;
}

async function dump(kv: Kv): Promise<string[]> {
  const out: string[] = [];
  for await (const p of kv.snapshotIterator()) out.push(`${bytesToKeyString(p.key)}=${bytesToKeyString(p.value)}`);
  return out;
}

void t.test('a batch on a warm cache costs one prefetch round trip, and no other store read', async (t) => {
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  kv.prefetches = [];
  kv.misses = [];
  const results = await sm.applyBatch(entries(workload(clientId, 1)));
  t.ok(results.every((r) => r?.ok === true), 'every command succeeded');
  t.equal(kv.prefetches.length, 1, 'one round trip for the whole batch');
  t.same(kv.misses, [], 'every key the batch read was fetched ahead');
});

void t.test('on a cold cache: one round trip per path level, and no read left to the commands', async (t) => {
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  kv.forget();
  const results = await sm.applyBatch(entries(workload(clientId, 1)));
  t.ok(results.every((r) => r?.ok === true), 'every command succeeded');
  // /a/b/c/d is four levels deep: the root's entry for a, then a's for b, b's for c, c's for d, then d's names.
  t.ok(kv.prefetches.length <= 5, `${kv.prefetches.length} round trips`);
  t.same(kv.misses, [], 'every key the batch read was fetched ahead');
});

void t.test('readAhead (entries appended, not yet committed) warms the cache: the apply then fetches nothing', async (t) => {
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  kv.forget();
  const batch = entries(workload(clientId, 1));
  sm.readAhead(batch);
  await new Promise((resolve) => setImmediate(resolve));
  const warmed = kv.prefetches.length;
  t.ok(warmed >= 1, `read ahead in ${warmed} round trips`);
  const results = await sm.applyBatch(batch);
  t.ok(results.every((r) => r?.ok === true), 'every command succeeded');
  t.equal(kv.prefetches.length, warmed, 'no round trip left for the apply');
  t.same(kv.misses, []);
  // A store without prefetch: a no-op; an entry that does not decode: ignored.
  const plain = await MetadataStateMachine.open(new MemoryKv());
  plain.readAhead(batch);
  sm.readAhead([{ term: 1, index: nextIndex, type: EntryType.Normal, data: new Uint8Array([0xc1]) }]);
});

void t.test('read-ahead and the inode memo change nothing: same results and keys as a plain MemoryKv', async (t) => {
  nextIndex = 1;
  const caching = new CachingKv();
  const smA = await MetadataStateMachine.open(caching);
  const clientA = await setUp(smA);
  nextIndex = 1;
  const plain = new MemoryKv();
  const smB = await MetadataStateMachine.open(plain);
  const clientB = await setUp(smB);
  t.equal(clientA, clientB);
  for (let round = 1; round <= 3; round++) {
    const start = nextIndex;
    nextIndex = start;
    const a = await smA.applyBatch(entries(workload(clientA, round)));
    nextIndex = start;
    const b = await smB.applyBatch(entries(workload(clientB, round)));
    t.same(a, b, `round ${round}: same results`);
    // A retried batch answers from the sessions: still the same.
    if (round === 2) {
      caching.forget();
      t.same(await smA.stat('/a/b/c/d'), await smB.stat('/a/b/c/d'));
    }
  }
  t.same(await dump(caching), await dump(plain), 'byte-identical stores');
});

/** An inode record for the memo tests: a child of the root, the given fields over fixed ones. */
function inodeRecord(fields: Pick<rec.Inode, 'id' | 'type' | 'name' | 'mode' | 'generation' | 'childCount' | 'complete'>): rec.Inode {
  return { parent: 1, owner: 'o', mtimeMs: 5, ctimeMs: 5, replication: 3, chunkSizeBytes: 1 << 26, lengthBytes: 0, chunkCount: 0, unsealedChunks: 0, ...fields };
}

void t.test('InodeMemo: a hit is a private copy; other bytes are decoded afresh', (t) => {
  const memo = new InodeMemo();
  const node = inodeRecord({ id: 7, type: 'dir', name: 'd', mode: 0o755, generation: 3, childCount: 2, complete: false });
  const bytes = rec.encodeInode(node);
  const first = memo.decode(7, bytes);
  t.same(first, node);
  first.childCount = 99; // callers change what they read
  const second = memo.decode(7, bytes.slice()); // equal content, another array
  t.same(second, node, 'the memo kept its own copy');
  t.not(second, first);
  const changed = rec.encodeInode({ ...node, childCount: 3 });
  t.equal(memo.decode(7, changed).childCount, 3, 'different bytes are decoded');
  t.equal(memo.decode(7, bytes).childCount, 2);
  t.end();
});

void t.test('InodeMemo.remember: the bytes just encoded read back as the record, a private copy each time', (t) => {
  const memo = new InodeMemo();
  const node = inodeRecord({ id: 9, type: 'file', name: 'f', mode: 0o644, generation: 4, childCount: 0, complete: true });
  const bytes = rec.encodeInode(node);
  memo.remember(node, bytes);
  const read = memo.decode(9, bytes);
  t.same(read, rec.decodeInode(9, bytes), 'what a decode of the bytes gives');
  t.notOk('compression' in read, 'no compression key, as decodeInode gives it');
  read.childCount = 5;
  t.equal(memo.decode(9, bytes).childCount, 0, 'the memo kept its own copy');
  const lz4 = rec.encodeInode({ ...node, compression: 'lz4' });
  memo.remember({ ...node, compression: 'lz4' }, lz4);
  t.same(memo.decode(9, lz4), rec.decodeInode(9, lz4));
  t.end();
});

void t.test('ApplyHints.decodeMeta: a remembered meta record reads back as a private copy; other bytes are decoded', (t) => {
  const hints = new ApplyHints();
  const meta = { ...rec.initialMeta(), clockMs: 77, nextInodeId: 12 };
  const bytes = rec.encodeMeta(meta);
  hints.rememberMeta(bytes, meta);
  meta.nextInodeId = 13; // the caller goes on changing its record
  const read = hints.decodeMeta(bytes.slice());
  t.same(read, rec.decodeMeta(bytes));
  read.clockMs = 1;
  t.equal(hints.decodeMeta(bytes).clockMs, 77, 'the memo kept its own copy');
  const other = rec.encodeMeta({ ...rec.initialMeta(), clockMs: 78 });
  t.equal(hints.decodeMeta(other).clockMs, 78, 'different bytes are decoded');
  hints.reset();
  t.equal(hints.decodeMeta(bytes).nextInodeId, 12, 'after a reset, decoded afresh');
  t.end();
});

void t.test('a large batch reaches the store in several atomic writes, each with the index of a whole entry', async (t) => {
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  const appliedAtWrite: number[] = [];
  const write = kv.write.bind(kv);
  kv.write = async (batch: KvBatch) => {
    const applied = batch.puts.find((p) => bytesToKeyString(p.key) === bytesToKeyString(keys.appliedKey));
    appliedAtWrite.push(applied === undefined ? -1 : keys.readU64(applied.value, 0));
    t.ok(batch.puts.length + batch.deletes.length <= applyStoreWriteKeysMax + 2 * 1000 + 100, 'a write holds one bulk command (two keys per name) past the bound, at most');
    await write(batch);
  };
  const names = (d: number) => Array.from({ length: 1000 }, (_, i) => `d${d}n${i}`);
  const commands: Command[] = [];
  for (let d = 0; d < 6; d++) {
    commands.push({ nowMs: 3000, session: { clientId, seq: d + 1, ack: d }, op: { type: 'createMany', dir: '/x', names: names(d) } });
  }
  const batch = entries(commands);
  const results = await sm.applyBatch(batch);
  t.ok(results.every((r) => r?.ok === true), 'every command succeeded');
  t.ok(appliedAtWrite.length >= 2, `${appliedAtWrite.length} writes`);
  const indexes = batch.map((e) => e.index);
  t.ok(appliedAtWrite.every((i) => indexes.includes(i)), 'each write ends at an entry');
  t.equal(appliedAtWrite[appliedAtWrite.length - 1], indexes[indexes.length - 1]);
  t.equal(sm.appliedIndex(), indexes[indexes.length - 1]);
  const dir = await sm.stat('/x');
  t.ok(dir.ok && dir.value.childCount === 6000, 'every name is in');
});

/**
 * Applies `batch` again on a plain MemoryKv (after setUp and `prepare`), one entry per applyBatch, so every
 * directory is in the store before it is filled: the results and the stored bytes must equal `kv`'s.
 */
async function sameAsEntryByEntry(
  t: Test,
  kv: Kv,
  batch: readonly Entry[],
  results: readonly unknown[],
  prepare: (sm: MetadataStateMachine) => Promise<unknown> = () => Promise.resolve(),
): Promise<void> {
  nextIndex = 1;
  const plain = new MemoryKv();
  const sm = await MetadataStateMachine.open(plain);
  await setUp(sm);
  await prepare(sm);
  const one: unknown[] = [];
  for (const e of batch) one.push(...(await sm.applyBatch([e])));
  t.same(results, one, 'same results as entry by entry');
  t.same(await dump(kv), await dump(plain), 'byte-identical stores');
}

/** Commands that make directories and fill them in the same batch (what a follower catching up applies). */
function freshDirWorkload(clientId: number): Command[] {
  const out: Command[] = [];
  let seq = 500;
  const stamp = () => ({ clientId, seq: ++seq, ack: seq - 1 });
  const names = Array.from({ length: 300 }, (_, i) => `n${i}`);
  for (let d = 0; d < 4; d++) {
    out.push({ nowMs: 4000, session: stamp(), op: { type: 'mkdir', path: `/fresh/d${d}`, parents: true } });
    out.push({ nowMs: 4000, session: stamp(), op: { type: 'createMany', dir: `/fresh/d${d}`, names } });
  }
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'createMany', dir: '/fresh/d0', names: ['new', 'n7'] } }); // EEXIST
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'create', path: '/fresh/d1/n3', exclusive: true } }); // EEXIST
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'rename', from: '/fresh/d1/n4', to: '/fresh/d2/n5' } }); // replaces n5
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'rename', from: '/x', to: '/fresh/d3/x' } }); // a stored dir moves in
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'create', path: '/fresh/d3/x/inside' } });
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'unlink', path: '/fresh/d2/n6' } });
  out.push({ nowMs: 4000, session: stamp(), op: { type: 'rmdir', path: '/fresh/d0' } }); // ENOTEMPTY
  return out;
}

void t.test('directories made earlier in the same batch: their names are looked up without a store read', async (t) => {
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  kv.forget();
  const batch = entries(freshDirWorkload(clientId));
  const results = await sm.applyBatch(batch);
  // The new directories' entries are not fetched ahead (their directories are not in the store yet).
  t.ok(kv.misses.length <= 10, `${kv.misses.length} store reads left to the commands (before: one per name, 1,200+)`);
  t.same(
    results.map((r) => (r?.ok === true ? 'ok' : (r as { code: string }).code)),
    ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'EEXIST', 'EEXIST', 'ok', 'ok', 'ok', 'ok', 'ENOTEMPTY'],
  );

  await sameAsEntryByEntry(t, kv, batch, results);
});

void t.test('a batch written in pieces is read ahead again after a piece: no per-name reads for directories made meanwhile', async (t) => {
  // As a follower catching up sees a bulk load: each directory's mkdir one step ahead of the createMany
  // that fills it; each createMany (1,024 names, 2,048+ keys) ends a store write of its own.
  nextIndex = 1;
  const kv = new CachingKv();
  const sm = await MetadataStateMachine.open(kv);
  const clientId = await setUp(sm);
  const names = Array.from({ length: 1024 }, (_, i) => `f${i}`);
  let seq = 900;
  const stamp = () => ({ clientId, seq: ++seq, ack: seq - 1 });
  await sm.applyBatch(entries([{ nowMs: 5000, session: stamp(), op: { type: 'mkdir', path: '/bulk/d0', parents: true } }]));
  const commands: Command[] = [];
  for (let d = 0; d < 4; d++) {
    commands.push({ nowMs: 5000, session: stamp(), op: { type: 'mkdir', path: `/bulk/d${d + 1}` } });
    commands.push({ nowMs: 5000, session: stamp(), op: { type: 'createMany', dir: `/bulk/d${d}`, names } });
  }
  const writes: number[] = [];
  const write = kv.write.bind(kv);
  kv.write = async (batch: KvBatch) => {
    writes.push(batch.puts.length);
    await write(batch);
  };
  kv.forget();
  const batch = entries(commands);
  const results = await sm.applyBatch(batch);
  t.ok(writes.length >= 4, `${writes.length} store writes`);
  t.ok(results.every((r) => r?.ok === true), 'every command succeeded');
  t.ok(kv.misses.length <= 10, `${kv.misses.length} store reads left to the commands (before: one per name of every directory made in the batch: 2,049 measured)`);

  seq = 900;
  await sameAsEntryByEntry(t, kv, batch, results, (smB) =>
    smB.applyBatch(entries([{ nowMs: 5000, session: stamp(), op: { type: 'mkdir', path: '/bulk/d0', parents: true } }])),
  );
});
