/** Client sessions: a retried command returns its first result and is applied once; the table is bounded. */
import t from 'tap';
import type { Op } from '../../src/fsm/commands.ts';
import type { FsResult } from '../../src/fsm/errors.ts';
import { fsmTest } from './harness.ts';
import type { Harness } from './harness.ts';
import * as keys from '../../src/fsm/keys.ts';
import * as rec from '../../src/fsm/records.ts';

async function open(h: Harness): Promise<number> {
  return (await h.ok<{ clientId: number }>({ type: 'openSession' })).clientId;
}

fsmTest(t, 'the same (client, seq) twice: one effect, the same result', async (t, h) => {
  const c = await open(h);
  const op: Op = { type: 'create', path: '/f' };
  const first = await h.run(op, { session: { clientId: c, seq: 1, ack: 0 } });
  t.ok(first.ok);
  const gen = (await h.stat('/f')).generation;
  const again = await h.run(op, { session: { clientId: c, seq: 1, ack: 0 } });
  t.same(again, first, 'the retry returns the first result (not EEXIST)');
  t.equal((await h.stat('/f')).generation, gen, 'and is not applied again');
});

fsmTest(t, 'an error result is recorded too', async (t, h) => {
  const c = await open(h);
  const first = await h.run({ type: 'unlink', path: '/f' }, { session: { clientId: c, seq: 1, ack: 0 } });
  t.equal(!first.ok && first.code, 'ENOENT');
  await h.ok({ type: 'create', path: '/f' });
  const again = await h.run({ type: 'unlink', path: '/f' }, { session: { clientId: c, seq: 1, ack: 0 } });
  t.same(again, first, 'still the recorded ENOENT');
  t.ok(await h.exists('/f'), 'the retry did not delete the new file');
});

fsmTest(t, 'duplicates within one batch, and pipelined commands of one client', async (t, h) => {
  const c = await open(h);
  const s = (seq: number, ack = 0) => ({ clientId: c, seq, ack });
  const results = await h.runBatch([
    h.command({ type: 'mkdir', path: '/a' }, { session: s(1) }),
    h.command({ type: 'mkdir', path: '/b' }, { session: s(2) }),
    h.command({ type: 'mkdir', path: '/a' }, { session: s(1) }),
    h.command({ type: 'mkdir', path: '/c' }, { session: s(3, 1) }),
    h.command({ type: 'mkdir', path: '/b' }, { session: s(2, 1) }),
  ]);
  t.same(results[2], results[0]);
  t.same(results[4], results[1]);
  t.ok(results.every((r) => r?.ok));
  t.same(await h.names('/'), ['a', 'b', 'c']);
});

fsmTest(t, 'acknowledged results are forgotten; an acknowledged sequence gets ESESSION', async (t, h) => {
  const c = await open(h);
  await h.ok({ type: 'mkdir', path: '/a' }, { session: { clientId: c, seq: 1, ack: 0 } });
  await h.ok({ type: 'mkdir', path: '/b' }, { session: { clientId: c, seq: 2, ack: 1 } });
  t.equal(
    await h.code({ type: 'mkdir', path: '/a' }, { session: { clientId: c, seq: 1, ack: 0 } }),
    'ESESSION',
  );
  t.same(await resultKeys(h), [], 'no result key: the one unacknowledged result is in the session record');
  t.match(await record(h, c), { ack: 1, pending: 1, inlineSeq: 2 });
});

/** The result keys (table r) as [client, seq], in key order. */
async function resultKeys(h: Harness): Promise<[number, number][]> {
  const pairs = await h.kv.scan({ gte: new Uint8Array([0x72]), lt: new Uint8Array([0x73]), limit: 100 });
  return pairs.map(({ key }) => [keys.readU64(key, 1), keys.readU64(key, 9)]);
}

async function record(h: Harness, client: number): Promise<rec.Session> {
  return rec.decodeSession(client, (await h.kv.get(keys.sessionKey(client)))!);
}

fsmTest(t, 'pipelined commands: one result in the session record, the others under result keys', async (t, h) => {
  const c = await open(h);
  const s = (seq: number, ack: number) => ({ session: { clientId: c, seq, ack } });
  const first = [
    await h.run({ type: 'mkdir', path: '/a' }, s(1, 0)),
    await h.run({ type: 'mkdir', path: '/b' }, s(2, 0)),
    await h.run({ type: 'mkdir', path: '/a' }, s(3, 0)), // EEXIST, a result like any other
  ];
  t.match(first, [{ ok: true }, { ok: true }, { ok: false, code: 'EEXIST' }]);
  t.match(await record(h, c), { pending: 3, inlineSeq: 1 }, 'the first result took the free slot');
  t.same(await resultKeys(h), [[c, 2], [c, 3]]);
  for (const seq of [3, 2, 1])
    t.same(await h.run({ type: 'rmdir', path: '/a' }, s(seq, 0)), first[seq - 1], `retry of ${seq}: its first result`);
  t.ok(await h.exists('/a'), 'no retry was applied');
  t.same(await h.invariants(), []);
  // Acknowledging 1 and 2 frees the slot and deletes key 2; the next result takes the slot.
  const fourth = await h.run({ type: 'mkdir', path: '/c' }, s(4, 2));
  t.match(await record(h, c), { ack: 2, pending: 2, inlineSeq: 4 });
  t.same(await resultKeys(h), [[c, 3]]);
  t.same(await h.run({ type: 'mkdir', path: '/c' }, s(4, 2)), fourth, 'retry of 4, from the record');
  t.same(await h.run({ type: 'mkdir', path: '/a' }, s(3, 2)), first[2], 'retry of 3, from its key');
  // Acknowledging everything leaves nothing.
  await h.ok({ type: 'mkdir', path: '/d' }, s(5, 4));
  t.match(await record(h, c), { ack: 4, pending: 1, inlineSeq: 5 });
  t.same(await resultKeys(h), []);
});

fsmTest(
  t,
  'an evicted session takes its results with it, in its record and under keys',
  async (t, h) => {
    const a = await open(h);
    for (let seq = 1; seq <= 3; seq++)
      await h.ok({ type: 'mkdir', path: `/d${seq}` }, { session: { clientId: a, seq, ack: 0 } });
    t.equal((await resultKeys(h)).length, 2);
    h.nowMs += 1;
    await open(h); // evicts a
    t.same(await resultKeys(h), []);
    t.equal(await h.kv.get(keys.sessionKey(a)), undefined);
  },
  { sessionsMax: 1 },
);

fsmTest(t, 'an unknown session: ESESSION, nothing applied', async (t, h) => {
  t.equal(
    await h.code({ type: 'mkdir', path: '/a' }, { session: { clientId: 99, seq: 1, ack: 0 } }),
    'ESESSION',
  );
  t.notOk(await h.exists('/a'));
});

fsmTest(
  t,
  'too many unacknowledged commands: ESESSION until the client acknowledges',
  async (t, h) => {
    const c = await open(h);
    for (let seq = 1; seq <= 3; seq++)
      await h.ok({ type: 'mkdir', path: `/d${seq}` }, { session: { clientId: c, seq, ack: 0 } });
    t.equal(
      await h.code({ type: 'mkdir', path: '/d4' }, { session: { clientId: c, seq: 4, ack: 0 } }),
      'ESESSION',
    );
    t.notOk(await h.exists('/d4'));
    await h.ok({ type: 'mkdir', path: '/d4' }, { session: { clientId: c, seq: 4, ack: 2 } });
    t.ok(await h.exists('/d4'));
  },
  { sessionResultsMax: 3 },
);

fsmTest(
  t,
  'opening more than sessionsMax sessions evicts the least recently used',
  async (t, h) => {
    const a = await open(h);
    h.nowMs += 1;
    const b = await open(h);
    h.nowMs += 1;
    await h.ok({ type: 'mkdir', path: '/x' }, { session: { clientId: a, seq: 1, ack: 0 } }); // a is now more recent than b
    h.nowMs += 1;
    const c = await open(h);
    t.equal(
      await h.code({ type: 'mkdir', path: '/y' }, { session: { clientId: b, seq: 1, ack: 0 } }),
      'ESESSION',
      'b was evicted',
    );
    await h.ok({ type: 'mkdir', path: '/y' }, { session: { clientId: a, seq: 2, ack: 1 } });
    await h.ok({ type: 'mkdir', path: '/z' }, { session: { clientId: c, seq: 1, ack: 0 } });
  },
  { sessionsMax: 2, sessionUseGranularityMs: 1 }, // an exact by-use index: a's 1 ms lead counts
);

fsmTest(
  t,
  'sessions idle longer than sessionIdleMs (stamped time) are dropped',
  async (t, h) => {
    const a = await open(h);
    const b = await open(h);
    h.nowMs += 500;
    await h.ok({ type: 'mkdir', path: '/x' }, { session: { clientId: b, seq: 1, ack: 0 } });
    h.nowMs += 600; // a idle 1100 ms, b idle 600 ms
    await h.ok({ type: 'mkdir', path: '/tick' });
    t.equal(
      await h.code({ type: 'mkdir', path: '/y' }, { session: { clientId: a, seq: 1, ack: 0 } }),
      'ESESSION',
    );
    const again = await h.run({ type: 'mkdir', path: '/x' }, { session: { clientId: b, seq: 1, ack: 0 } });
    t.ok(again.ok, 'b kept its recorded result');
  },
  { sessionIdleMs: 1000, sessionUseGranularityMs: 1 }, // an exact by-use index: dropped exactly when idle
);

/** The by-use index entries (table y) as [ms, client], in key order. */
async function byUse(h: Harness): Promise<[number, number][]> {
  const pairs = await h.kv.scan({ gte: new Uint8Array([0x79]), lt: new Uint8Array([0x7a]), limit: 100 });
  return pairs.map(({ key }) => [keys.readU64(key, 1), keys.readU64(key, 9)]);
}

fsmTest(
  t,
  'a session used again and again within sessionUseGranularityMs keeps its by-use entry; then it moves',
  async (t, h) => {
    const opened = h.nowMs;
    const c = await open(h);
    t.same(await byUse(h), [[opened, c]]);
    for (let seq = 1; seq <= 10; seq++) {
      h.nowMs += 99; // last use 99 .. 990 ms after the entry
      const entriesBefore = await h.kv.scan({ limit: 10_000 });
      await h.ok({ type: 'mkdir', path: `/d${seq}` }, { session: { clientId: c, seq, ack: seq - 1 } });
      t.same(await byUse(h), [[opened, c]], `use ${seq} (${h.nowMs - opened} ms after the entry): entry kept`);
      // Stored keys: the directory's two; the result lives in the session record.
      t.equal((await h.kv.scan({ limit: 10_000 })).length, entriesBefore.length + 2);
    }
    t.same(await h.invariants(), [], 'the record knows its last use (990 ms after the entry)');
    h.nowMs = opened + 1000;
    await h.ok({ type: 'mkdir', path: '/moved' }, { session: { clientId: c, seq: 11, ack: 10 } });
    t.same(await byUse(h), [[opened + 1000, c]], 'used 1000 ms after the entry: the entry moves to now');
  },
  { sessionUseGranularityMs: 1000 },
);

fsmTest(
  t,
  'with a lagging by-use entry, an idle session is dropped no earlier than sessionIdleMs after its last use and at most sessionUseGranularityMs later',
  async (t, h) => {
    const start = h.nowMs;
    const a = await open(h); // entry at start
    h.nowMs = start + 400;
    await h.ok({ type: 'mkdir', path: '/x' }, { session: { clientId: a, seq: 1, ack: 0 } }); // last use start + 400
    t.same(await byUse(h), [[start, a]], 'the entry lags the last use by 400 ms');
    // Idle for 999 ms since its last use (1399 since the entry): kept.
    h.nowMs = start + 1399;
    await h.ok({ type: 'mkdir', path: '/tick1' });
    t.same(await byUse(h), [[start, a]], 'not dropped before sessionIdleMs after its last use');
    // Idle 1000 and 1099 ms: kept still (the entry cannot tell a use up to 499 ms after it from none).
    h.nowMs = start + 1499;
    await h.ok({ type: 'mkdir', path: '/tick2' });
    t.same(await byUse(h), [[start, a]], 'idle 1099 ms: within the granularity');
    // Entry older than sessionIdleMs + sessionUseGranularityMs (1500 ms): dropped, 100 ms late.
    h.nowMs = start + 1500;
    await h.ok({ type: 'mkdir', path: '/tick3' });
    t.same(await byUse(h), [], 'dropped 1100 ms after its last use: at most 500 ms late');
    t.equal(
      await h.code({ type: 'mkdir', path: '/y' }, { session: { clientId: a, seq: 2, ack: 1 } }),
      'ESESSION',
    );
  },
  { sessionIdleMs: 1000, sessionUseGranularityMs: 500 },
);

fsmTest(t, 'stamped time never runs backwards (a leader with a slower clock)', async (t, h) => {
  await h.ok({ type: 'create', path: '/f' }, { nowMs: 10_000 });
  await h.ok({ type: 'create', path: '/g' }, { nowMs: 5_000 });
  t.equal((await h.stat('/g')).mtimeMs, 10_000);
});

fsmTest(t, 'openSession allocates distinct ids deterministically', async (t, h) => {
  const ids = [await open(h), await open(h), await open(h)];
  t.same(ids, [1, 2, 3]);
  const r: FsResult = await h.run({ type: 'openSession' });
  t.same(r, { ok: true, value: { clientId: 4 } });
});
