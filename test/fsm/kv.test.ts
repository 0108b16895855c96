/** MemoryKv against the Kv conformance suite, and the write overlays against a model. */
import fc from 'fast-check';
import t from 'tap';
import { MemoryKv, bytesToKeyString, keyStringToBytes } from '../../src/fsm/kv.ts';
import type { KvPair } from '../../src/fsm/kv.ts';
import { Overlay } from '../../src/fsm/overlay.ts';
import { SortedStrings } from '../../src/fsm/sorted-strings.ts';
import { runKvConformance } from './kv-conformance.ts';

runKvConformance(t, 'MemoryKv', () => Promise.resolve(new MemoryKv()));

void t.test('MemoryKv refuses a batch naming a key twice, and changes nothing', async (t) => {
  const kv = new MemoryKv();
  const k = new Uint8Array([1]);
  await t.rejects(kv.write({ puts: [{ key: k, value: k }], deletes: [k] }));
  t.equal(kv.size, 0);
});

void t.test('key strings order exactly as bytes', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
      const byBytes = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const sa = bytesToKeyString(a);
      const sb = bytesToKeyString(b);
      const byString = sa < sb ? -1 : sa > sb ? 1 : 0;
      return byBytes === byString && [...keyStringToBytes(sa)].join() === [...a].join();
    }),
    { numRuns: 500, seed: 1 },
  );
  t.pass('500 random pairs');
  const long = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) & 0xff);
  t.same([...keyStringToBytes(bytesToKeyString(long))], [...long], 'a key longer than one conversion step');
  t.end();
});

const keyArb = fc.uint8Array({ minLength: 1, maxLength: 2 }).map((k) => k.map((x) => x % 5));
const writeArb = fc.oneof(
  fc.record({ put: keyArb, value: fc.uint8Array({ maxLength: 2 }) }),
  fc.record({ del: keyArb }),
);

void t.test('two stacked overlays read, scan and flush like the model', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(keyArb, fc.uint8Array({ maxLength: 2 })), { maxLength: 20 }),
      fc.array(writeArb, { maxLength: 15 }),
      fc.array(writeArb, { maxLength: 15 }),
      fc.array(
        fc.record({
          gte: fc.option(keyArb, { nil: undefined }),
          lt: fc.option(keyArb, { nil: undefined }),
          limit: fc.integer({ min: 1, max: 30 }),
        }),
        { maxLength: 4 },
      ),
      fc.boolean(),
      async (base, outerWrites, innerWrites, scans, keepInner) => {
        const kv = new MemoryKv();
        const model = new Map<string, Uint8Array>();
        const dedup = new Map(base.map(([k, v]) => [bytesToKeyString(k), v]));
        await kv.write({
          puts: [...dedup].map(([k, v]) => ({ key: keyStringToBytes(k), value: v })),
          deletes: [],
        });
        for (const [k, v] of dedup) model.set(k, v);
        const outer = new Overlay(kv);
        const apply = (o: Overlay, m: Map<string, Uint8Array>, ws: typeof outerWrites) => {
          for (const w of ws) {
            if ('put' in w) {
              o.put(w.put, w.value);
              m.set(bytesToKeyString(w.put), w.value);
            } else {
              o.delete(w.del);
              m.delete(bytesToKeyString(w.del));
            }
          }
        };
        apply(outer, model, outerWrites);
        const inner = new Overlay(outer);
        const innerModel = new Map(model);
        apply(inner, innerModel, innerWrites);
        const check = async (o: Overlay, m: Map<string, Uint8Array>) => {
          for (const sc of scans) {
            const gte = sc.gte === undefined ? undefined : bytesToKeyString(sc.gte);
            const lt = sc.lt === undefined ? undefined : bytesToKeyString(sc.lt);
            const expected = [...m.keys()]
              .filter((k) => (gte === undefined || k >= gte) && (lt === undefined || k < lt))
              .sort()
              .slice(0, sc.limit);
            const actual = (await o.scan(sc)).map((p: KvPair) => bytesToKeyString(p.key));
            if (actual.join('|') !== expected.join('|'))
              throw new Error(`scan: ${JSON.stringify(actual)} vs ${JSON.stringify(expected)}`);
          }
          for (const k of m.keys())
            if ((await o.get(keyStringToBytes(k))) === undefined) throw new Error('get lost a key');
        };
        await check(inner, innerModel);
        await check(outer, model);
        if (keepInner) inner.mergeInto(outer);
        await kv.write(outer.toBatch());
        const final = keepInner ? innerModel : model;
        const stored = (await kv.scan({ limit: 1000 })).map((p) => bytesToKeyString(p.key));
        if (stored.join('|') !== [...final.keys()].sort().join('|')) throw new Error('flushed state differs');
      },
    ),
    { numRuns: 300, seed: 3 },
  );
  t.pass('300 random runs');
});

void t.test('SortedStrings agrees with a sorted array (blocks split and vanish)', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { maxLength: 3000 }),
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: 0, max: 3000 }),
      (ops, lo, hi) => {
        const set = new SortedStrings();
        const model = new Set<string>();
        for (const [add, n] of ops) {
          const x = String(n).padStart(4, '0');
          if (add) {
            if (set.add(x) === model.has(x)) return false;
            model.add(x);
          } else {
            if (set.delete(x) !== model.has(x)) return false;
            model.delete(x);
          }
        }
        const gte = String(lo).padStart(4, '0');
        const lt = String(hi).padStart(4, '0');
        const expected = [...model].sort().filter((x) => x >= gte && x < lt);
        return (
          set.size === model.size &&
          [...set.range(gte, lt)].join() === expected.join() &&
          [...set.range(undefined, undefined)].join() === [...model].sort().join()
        );
      },
    ),
    { numRuns: 200, seed: 4 },
  );
  t.pass('200 random runs');
  t.end();
});
