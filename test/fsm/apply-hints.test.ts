/**
 * The state machine's in-memory shortcuts (ApplyHints: the idle-session floor; result slots known empty;
 * forgetting acknowledged results key by key; read-ahead) must never change a result or a stored key. Property: a random sequence
 * of session commands, time steps and batches gives byte-identical stores and identical results whether one
 * state machine applies everything (hints warm) or it is re-opened before every batch (hints cold).
 */
import t from 'tap';
import fc from 'fast-check';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { Kv } from '../../src/fsm/kv.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { Command } from '../../src/fsm/commands.ts';
import type { FsmLimits } from '../../src/fsm/limits.ts';
import { checkNamespaceInvariants } from '../../src/fsm/invariants.ts';
import { EntryType } from '../../src/raft/types.ts';
import type { Entry } from '../../src/raft/types.ts';

const limits: Partial<FsmLimits> = {
  sessionIdleMs: 1000,
  sessionUseGranularityMs: 300, // time steps of 1..700 ms: by-use entries that move and entries that lag
  sessionExpiriesPerCommandMax: 2,
  sessionsMax: 6,
  sessionResultsMax: 4,
};

type Step =
  | { kind: 'open' }
  | { kind: 'op'; client: number; name: number; ackLag: number; retry: boolean }
  | { kind: 'time'; ms: number }
  | { kind: 'cut' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constant<Step>({ kind: 'open' }),
  fc.record({
    kind: fc.constant('op' as const),
    client: fc.nat(7),
    name: fc.nat(5),
    ackLag: fc.nat(6),
    retry: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('time' as const), ms: fc.integer({ min: 1, max: 700 }) }),
  fc.constant<Step>({ kind: 'cut' }),
);

async function dump(kv: Kv): Promise<string> {
  const out: string[] = [];
  for await (const p of kv.snapshotIterator())
    out.push(`${Buffer.from(p.key).toString('hex')}=${Buffer.from(p.value).toString('hex')}`);
  return out.join('\n');
}

/** Builds the batches of entries a step list describes (client ids are 1.. in open order). */
function batches(steps: readonly Step[]): Entry[][] {
  const out: Entry[][] = [];
  let current: Entry[] = [];
  let index = 1;
  let now = 10_000;
  let opened = 0;
  const seq = new Map<number, number>();
  for (const s of steps) {
    let command: Command | undefined;
    if (s.kind === 'open') {
      command = { nowMs: now, op: { type: 'openSession' } };
      opened += 1;
    } else if (s.kind === 'op' && opened > 0) {
      const clientId = (s.client % opened) + 1;
      const previous = seq.get(clientId) ?? 0;
      const next = s.retry && previous > 0 ? previous : previous + 1;
      seq.set(clientId, next);
      const ack = Math.max(0, next - 1 - s.ackLag);
      command = {
        nowMs: now,
        session: { clientId, seq: next, ack },
        op: { type: 'mkdir', path: `/d${s.name}`, parents: true },
      };
    } else if (s.kind === 'time') {
      now += s.ms;
    } else if (s.kind === 'cut' && current.length > 0) {
      out.push(current);
      current = [];
    }
    if (command !== undefined)
      current.push({ index: index++, term: 1, type: EntryType.Normal, data: encodeCommand(command) });
  }
  if (current.length > 0) out.push(current);
  return out;
}

void t.test('warm and cold hints give identical results and stores', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 80 }), async (steps) => {
      const warmKv = new MemoryKv();
      const coldKv = new MemoryKv();
      const warm = await MetadataStateMachine.open(warmKv, { limits });
      await MetadataStateMachine.open(coldKv, { limits });
      for (const batch of batches(steps)) {
        const a = await warm.applyBatch(batch);
        const cold = await MetadataStateMachine.open(coldKv, { limits });
        const b = await cold.applyBatch(batch);
        if (JSON.stringify(a) !== JSON.stringify(b))
          throw new Error(`results differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      }
      if ((await dump(warmKv)) !== (await dump(coldKv))) throw new Error('stores differ');
      const problems = await checkNamespaceInvariants(warmKv, warm.limits);
      if (problems.length > 0) throw new Error(`invariants: ${problems.join('; ')}`);
    }),
    { numRuns: 150 },
  );
  t.pass('150 random runs agree');
});

void t.test('an idle session is dropped when its time comes, also after the floor was raised', async (t) => {
  const kv = new MemoryKv();
  // Granularity 1 ms: the by-use index is exact, so expiry is exactly sessionIdleMs after the last use.
  const sm = await MetadataStateMachine.open(kv, { limits: { ...limits, sessionUseGranularityMs: 1 } });
  let index = 1;
  const run = async (nowMs: number, command: Omit<Command, 'nowMs'>) =>
    (
      await sm.applyBatch([
        { index: index++, term: 1, type: EntryType.Normal, data: encodeCommand({ nowMs, ...command }) },
      ])
    )[0];
  await run(10_000, { op: { type: 'openSession' } }); // client 1 at 10 000
  await run(10_500, { op: { type: 'openSession' } }); // client 2 at 10 500
  // At 11 001 client 1 is idle: dropped; the scan sees client 2 (10 500) and raises the floor to it.
  await run(11_001, { op: { type: 'mkdir', path: '/x' } });
  t.match(
    await run(11_002, { session: { clientId: 1, seq: 1, ack: 0 }, op: { type: 'mkdir', path: '/y' } }),
    { ok: false, code: 'ESESSION' },
  );
  t.match(
    await run(11_400, { session: { clientId: 2, seq: 1, ack: 0 }, op: { type: 'mkdir', path: '/y' } }),
    { ok: true },
    'client 2 used at 11 400',
  );
  await run(12_399, { op: { type: 'mkdir', path: '/z' } });
  t.match(
    await run(12_399, { session: { clientId: 2, seq: 2, ack: 1 }, op: { type: 'mkdir', path: '/w' } }),
    { ok: true },
    'not idle yet',
  );
  await run(13_400, { op: { type: 'mkdir', path: '/v' } });
  t.match(
    await run(13_400, { session: { clientId: 2, seq: 3, ack: 2 }, op: { type: 'mkdir', path: '/u' } }),
    { ok: false, code: 'ESESSION' },
    'idle after 1 000 ms',
  );
});
