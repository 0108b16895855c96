/**
 * The Kv conformance suite: every implementation of src/fsm/kv.ts (MemoryKv here, the RocksDB one in
 * src/storage) must pass it. Call `runKvConformance(t, 'name', open)` with a factory of empty stores.
 */
import fc from 'fast-check';
import type { Test } from 'tap';
import type { Kv, KvPair } from '../../src/fsm/kv.ts';
import { bytesToKeyString, keyStringToBytes } from '../../src/fsm/kv.ts';

const b = (...xs: number[]) => new Uint8Array(xs);
const s = (text: string) => new TextEncoder().encode(text);
const plain = (pairs: readonly KvPair[]) => pairs.map((p) => [[...p.key], [...p.value]]);

async function collect(it: AsyncIterable<KvPair>): Promise<KvPair[]> {
  const out: KvPair[] = [];
  for await (const p of it) out.push(p);
  return out;
}

export function runKvConformance(t: Test, name: string, open: () => Promise<Kv>): void {
  const test = (title: string, body: (t: Test, kv: Kv) => Promise<void>) =>
    void t.test(`${name}: ${title}`, async (t) => {
      const kv = await open();
      try {
        await body(t, kv);
      } finally {
        await kv.close();
      }
    });

  test('get, put, delete', async (t, kv) => {
    t.equal(await kv.get(s('a')), undefined);
    await kv.write({
      puts: [
        { key: s('a'), value: s('1') },
        { key: s('b'), value: new Uint8Array(0) },
      ],
      deletes: [],
    });
    t.same([...(await kv.get(s('a')))!], [...s('1')]);
    t.same([...(await kv.get(s('b')))!], [], 'an empty value is a value');
    await kv.write({ puts: [{ key: s('a'), value: s('2') }], deletes: [s('b'), s('never')] });
    t.same([...(await kv.get(s('a')))!], [...s('2')]);
    t.equal(await kv.get(s('b')), undefined);
  });

  test('getCached, when it answers, answers what get does', async (t, kv) => {
    if (kv.getCached === undefined) return;
    const cached = (k: Uint8Array) => kv.getCached!(bytesToKeyString(k));
    const agree = async (k: Uint8Array, what: string) => {
      const c = cached(k);
      if (c === undefined) return;
      const g = await kv.get(k);
      t.same(c === null ? undefined : [...c], g === undefined ? undefined : [...g], what);
    };
    await agree(s('a'), 'absent, never written');
    await kv.write({ puts: [{ key: s('a'), value: s('1') }, { key: s('b'), value: s('2') }], deletes: [] });
    await agree(s('a'), 'written');
    await kv.get(s('b'));
    await agree(s('b'), 'written and read');
    await kv.write({ puts: [{ key: s('a'), value: s('3') }], deletes: [s('b')] });
    await agree(s('a'), 'overwritten');
    await agree(s('b'), 'deleted');
    await kv.restore([{ key: s('c'), value: s('4') }]);
    for (const k of ['a', 'b', 'c']) await agree(s(k), `after restore: ${k}`);
  });

  test('scan orders byte-wise and honours gte, lt and limit', async (t, kv) => {
    const keys = [b(0xff), b(0), b(0, 0), b(1), b(0x7f, 0xff), b(0x80), b(1, 0), b()];
    await kv.write({ puts: keys.map((k) => ({ key: k, value: b(k.length) })), deletes: [] });
    const all = await kv.scan({ limit: 100 });
    t.same(
      all.map((p) => [...p.key]),
      [[], [0], [0, 0], [1], [1, 0], [0x7f, 0xff], [0x80], [0xff]],
    );
    t.same(
      (await kv.scan({ gte: b(1), lt: b(0x80), limit: 100 })).map((p) => [...p.key]),
      [[1], [1, 0], [0x7f, 0xff]],
    );
    t.same(
      (await kv.scan({ gte: b(0, 1), limit: 2 })).map((p) => [...p.key]),
      [[1], [1, 0]],
    );
    t.same(
      (await kv.scan({ lt: b(0, 0), limit: 100 })).map((p) => [...p.key]),
      [[], [0]],
    );
    t.same(await kv.scan({ gte: b(5), lt: b(5), limit: 10 }), []);
  });

  test('bytes are copied in and out', async (t, kv) => {
    const key = s('k');
    const value = s('v');
    await kv.write({ puts: [{ key, value }], deletes: [] });
    value[0] = 0;
    key[0] = 0;
    const got = (await kv.get(s('k')))!;
    t.same([...got], [...s('v')]);
    got[0] = 0;
    t.same([...(await kv.get(s('k')))!], [...s('v')]);
  });

  test('snapshotIterator is fixed at the call', async (t, kv) => {
    await kv.write({
      puts: [
        { key: s('a'), value: s('1') },
        { key: s('b'), value: s('2') },
      ],
      deletes: [],
    });
    const it = kv.snapshotIterator();
    await kv.write({
      puts: [
        { key: s('c'), value: s('3') },
        { key: s('a'), value: s('9') },
      ],
      deletes: [s('b')],
    });
    t.same(plain(await collect(it)), [
      [[...s('a')], [...s('1')]],
      [[...s('b')], [...s('2')]],
    ]);
    t.equal((await collect(kv.snapshotIterator())).length, 2);
  });

  test('restore replaces everything; a failing source leaves the old content', async (t, kv) => {
    await kv.write({ puts: [{ key: s('old'), value: s('1') }], deletes: [] });
    await kv.restore([
      { key: s('n1'), value: s('a') },
      { key: s('n2'), value: s('b') },
    ]);
    t.same(
      (await kv.scan({ limit: 10 })).map((p) => new TextDecoder().decode(p.key)),
      ['n1', 'n2'],
    );
    async function* failing(): AsyncGenerator<KvPair> {
      yield { key: s('x1'), value: s('a') };
      await Promise.resolve();
      throw new Error('source broke');
    }
    await t.rejects(kv.restore(failing()), /source broke/);
    t.same(
      (await kv.scan({ limit: 10 })).map((p) => new TextDecoder().decode(p.key)),
      ['n1', 'n2'],
    );
    await t.rejects(
      kv.restore([
        { key: s('b'), value: s('') },
        { key: s('a'), value: s('') },
      ]),
    );
    t.same((await kv.scan({ limit: 10 })).length, 2, 'unordered input is refused, old content kept');
    await kv.restore([]);
    t.same(await kv.scan({ limit: 10 }), []);
  });

  test('random writes and scans agree with a sorted-map model', async (t, kv) => {
    const keyArb = fc.uint8Array({ maxLength: 3 }).map((k) => k.map((x) => x % 4));
    const opArb = fc.record({
      puts: fc.array(fc.tuple(keyArb, fc.uint8Array({ maxLength: 2 })), { maxLength: 5 }),
      deletes: fc.array(keyArb, { maxLength: 3 }),
      gte: fc.option(keyArb, { nil: undefined }),
      lt: fc.option(keyArb, { nil: undefined }),
      limit: fc.integer({ min: 1, max: 8 }),
    });
    const model = new Map<string, Uint8Array>();
    await kv.restore([]);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 10 }), async (ops) => {
        model.clear();
        await kv.restore([]);
        for (const op of ops) {
          const batch = new Map<string, Uint8Array | null>();
          for (const k of op.deletes) batch.set(bytesToKeyString(k), null);
          for (const [k, v] of op.puts) batch.set(bytesToKeyString(k), v);
          const puts: KvPair[] = [];
          const deletes: Uint8Array[] = [];
          for (const [k, v] of batch) {
            if (v === null) {
              deletes.push(keyStringToBytes(k));
              model.delete(k);
            } else {
              puts.push({ key: keyStringToBytes(k), value: v });
              model.set(k, v);
            }
          }
          await kv.write({ puts, deletes });
          const gte = op.gte === undefined ? undefined : bytesToKeyString(op.gte);
          const lt = op.lt === undefined ? undefined : bytesToKeyString(op.lt);
          const expected = [...model.keys()]
            .filter((k) => (gte === undefined || k >= gte) && (lt === undefined || k < lt))
            .sort()
            .slice(0, op.limit)
            .map((k) => [[...keyStringToBytes(k)], [...model.get(k)!]]);
          const actual = plain(await kv.scan({ gte: op.gte, lt: op.lt, limit: op.limit }));
          if (JSON.stringify(actual) !== JSON.stringify(expected))
            throw new Error(`scan ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
        }
      }),
      { numRuns: 100, seed: 7 },
    );
    t.pass('100 random runs');
  });
}
