/** The key strings built from numbers (keys.ts *KeyString) are the key strings of the byte keys. */
import fc from 'fast-check';
import t from 'tap';
import * as keys from '../../src/fsm/keys.ts';
import { bytesToKeyString } from '../../src/fsm/kv.ts';
import { defaultFsmLimits } from '../../src/fsm/limits.ts';
import { checkName, nameChars, utf8 } from '../../src/fsm/paths.ts';

const u64 = fc.oneof(
  fc.constantFrom(0, 1, 0xff, 0x100, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 48 + 5, Number.MAX_SAFE_INTEGER),
  fc.nat(),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const name = fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }));

void t.test('each key string is bytesToKeyString of the same key', (t) => {
  t.equal(keys.metaKeyString, bytesToKeyString(keys.metaKey));
  t.equal(keys.appliedKeyString, bytesToKeyString(keys.appliedKey));
  fc.assert(
    fc.property(u64, u64, name, (a, b, n) => {
      const same = (s: string, k: Uint8Array): boolean => s === bytesToKeyString(k);
      return (
        same(keys.inodeKeyString(a), keys.inodeKey(a)) &&
        same(keys.direntKeyString(a, nameChars(n)), keys.direntKey(a, utf8(n))) &&
        same(keys.chunkListKeyString(a, b), keys.chunkListKey(a, b)) &&
        same(keys.placementKeyString(a), keys.placementKey(a)) &&
        same(keys.leaseKeyString(a), keys.leaseKey(a)) &&
        same(keys.chunkserverKeyString(a), keys.chunkserverKey(a)) &&
        same(keys.sessionKeyString(a), keys.sessionKey(a)) &&
        same(keys.resultKeyString(a, b), keys.resultKey(a, b)) &&
        same(keys.sessionByUseKeyString(a, b), keys.sessionByUseKey(a, b))
      );
    }),
    { numRuns: 2000 },
  );
  t.end();
});

void t.test("a path component's chars are the key string of its bytes", (t) => {
  fc.assert(
    fc.property(name, (n) => {
      let c;
      try {
        c = checkName(n, defaultFsmLimits);
      } catch {
        return true; // not a valid name
      }
      return c.chars === bytesToKeyString(c.bytes) && nameChars(n) === c.chars;
    }),
    { numRuns: 2000 },
  );
  t.end();
});

void t.test('key strings refuse what the byte keys refuse', (t) => {
  for (const bad of [-1, 0.5, 2 ** 53, Number.NaN]) {
    t.throws(() => keys.inodeKeyString(bad));
    t.throws(() => keys.resultKeyString(1, bad));
    t.throws(() => keys.resultKeyString(bad, 1));
  }
  t.end();
});
