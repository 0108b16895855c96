/**
 * Reads the state machine answers without I/O (Txn.getNow and the walks built on it: a path resolved level by
 * level from the overlays and the store's read cache, the session record, the clock) must give exactly what
 * the awaited reads give, errors included. Property: random namespace and session commands in random batches
 * give identical results and byte-identical stores on a store that answers every read from memory
 * (MemoryKv.getCached), one that answers none (no getCached: every read awaited), and one that answers a
 * random half of the keys (walks that start without I/O and fall back part way).
 */
import t from 'tap';
import fc from 'fast-check';
import { MemoryKv, bytesToKeyString } from '../../src/fsm/kv.ts';
import type { Kv } from '../../src/fsm/kv.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { Command, Op } from '../../src/fsm/commands.ts';
import { EntryType } from '../../src/raft/types.ts';
import type { Entry } from '../../src/raft/types.ts';
import { ForwardingKv } from './forwarding-kv.ts';

/** A MemoryKv whose getCached answers for the keys `known` accepts, and is unknown for the others. */
class PartlyCachedKv extends ForwardingKv {
  constructor(private readonly known: ((keyString: string) => boolean) | null) {
    super();
  }
  getCached(keyString: string): Uint8Array | null | undefined {
    if (this.known === null || !this.known(keyString)) return undefined;
    return this.inner.getCached(keyString);
  }
}

/** A store without getCached at all. */
class UncachedKv extends ForwardingKv {}

async function dump(kv: Kv): Promise<string> {
  const out: string[] = [];
  for await (const p of kv.snapshotIterator())
    out.push(`${Buffer.from(p.key).toString('hex')}=${Buffer.from(p.value).toString('hex')}`);
  return out.join('\n');
}

const names = ['a', 'b', 'c'];
const path = fc
  .array(fc.constantFrom(...names), { minLength: 1, maxLength: 3 })
  .map((parts) => `/${parts.join('/')}`);
const op: fc.Arbitrary<Op> = fc.oneof(
  path.map((p): Op => ({ type: 'mkdir', path: p })),
  path.map((p): Op => ({ type: 'mkdir', path: p, parents: true })),
  fc.tuple(path, fc.boolean()).map(([p, exclusive]): Op => ({ type: 'create', path: p, exclusive })),
  path.map((p): Op => ({ type: 'unlink', path: p })),
  path.map((p): Op => ({ type: 'rmdir', path: p })),
  fc.tuple(path, path).map(([from, to]): Op => ({ type: 'rename', from, to })),
  path.map((p): Op => ({ type: 'deleteRecursive', path: p })),
  path.map((p): Op => ({ type: 'setattr', path: p, mode: 0o700 })),
);
type Step = { op: Op; session: boolean; retry: boolean; cut: boolean; ms: number };
const step: fc.Arbitrary<Step> = fc.record({
  op,
  session: fc.boolean(),
  retry: fc.boolean(),
  cut: fc.boolean(),
  ms: fc.nat(3),
});

function batches(steps: readonly Step[]): Entry[][] {
  const out: Entry[][] = [];
  let current: Entry[] = [{ index: 1, term: 1, type: EntryType.Normal, data: encodeCommand({ nowMs: 1000, op: { type: 'openSession' } }) }];
  let index = 2;
  let now = 1000;
  let seq = 0;
  for (const s of steps) {
    now += s.ms;
    let command: Command;
    if (s.session) {
      const next = s.retry && seq > 0 ? seq : seq + 1;
      seq = next;
      command = { nowMs: now, session: { clientId: 1, seq: next, ack: Math.max(0, next - 2) }, op: s.op };
    } else command = { nowMs: now, op: s.op };
    current.push({ index: index++, term: 1, type: EntryType.Normal, data: encodeCommand(command) });
    if (s.cut) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

void t.test('reads without I/O and awaited reads give identical results and stores', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 1 << 30 }), async (steps, salt) => {
      // Half of the keys (by a salted hash of the key) answered from memory.
      const half = (k: string): boolean => {
        let h = salt;
        for (let i = 0; i < k.length; i++) h = (Math.imul(h, 31) + k.charCodeAt(i)) | 0;
        return (h & 1) === 0;
      };
      const stores: Kv[] = [new MemoryKv(), new UncachedKv(), new PartlyCachedKv(half), new PartlyCachedKv(null)];
      const machines = await Promise.all(stores.map((kv) => MetadataStateMachine.open(kv)));
      for (const batch of batches(steps)) {
        const results = await Promise.all(machines.map((m) => m.applyBatch(batch)));
        const first = JSON.stringify(results[0]);
        for (const r of results.slice(1))
          if (JSON.stringify(r) !== first) throw new Error(`results differ: ${first} vs ${JSON.stringify(r)}`);
      }
      const dumps = await Promise.all(stores.map(dump));
      if (dumps.some((d) => d !== dumps[0])) throw new Error('stores differ');
    }),
    { numRuns: 200 },
  );
  t.pass('200 random runs agree');
});

void t.test('a path walk that starts without I/O and falls back part way gives the awaited answer', async (t) => {
  // Only the root's inode and its entries are known without I/O: the walk to /a/b/c falls back at /a.
  const root = bytesToKeyString(new Uint8Array([0x69, 0, 0, 0, 0, 0, 0, 0, 1]));
  const direntOfRoot = bytesToKeyString(new Uint8Array([0x64, 0, 0, 0, 0, 0, 0, 0, 1]));
  const kv = new PartlyCachedKv((k) => k === root || k.startsWith(direntOfRoot));
  const sm = await MetadataStateMachine.open(kv);
  let index = 1;
  const run = async (o: Op) => (await sm.applyBatch([{ index: index++, term: 1, type: EntryType.Normal, data: encodeCommand({ nowMs: 5, op: o }) }]))[0];
  t.match(await run({ type: 'mkdir', path: '/a/b', parents: true }), { ok: true });
  t.match(await run({ type: 'create', path: '/a/b/c' }), { ok: true });
  t.match(await run({ type: 'create', path: '/a/b/c' }), { ok: false, code: 'EEXIST' });
  t.match(await run({ type: 'create', path: '/a/b/c/d' }), { ok: false, code: 'ENOTDIR' });
  t.match(await run({ type: 'create', path: '/a/x/d' }), { ok: false, code: 'ENOENT' });
  t.match(await run({ type: 'create', path: '/x' }), { ok: true });
  t.match(await run({ type: 'create', path: '/x/y' }), { ok: false, code: 'ENOTDIR' });
  t.end();
});
