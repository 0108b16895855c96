/**
 * The state machine a metadata server hands its Raft driver (TimedMetadataStateMachine): every hook the
 * adapter implements reaches the driver, and applied batches are timed and counted.
 *
 * Until the nineteenth session the server passed a wrapper object that listed the adapter's methods by
 * hand, and it lacked the two added after it: `readAhead` (so no server ever read ahead; only the simulator
 * and in-process tests did) and `appliedTerm` (so a restarted server did not trust its log up to its state
 * machine's applied entry: the liveness fix of node.ts's start() never ran in a real server).
 */
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { FsResult } from '../../src/fsm/errors.ts';
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import { RaftMetadataStateMachine } from '../../src/fsm/raft-adapter.ts';
import { TimedMetadataStateMachine } from '../../src/metadata/server.ts';
import type { Entry } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import { ForwardingKv } from '../fsm/forwarding-kv.ts';

/** A store that counts prefetch calls (the read-ahead's one store round trip). */
class PrefetchCountingKv extends ForwardingKv {
  prefetched = 0;
  prefetch(keys: readonly Uint8Array[]): Promise<void> {
    this.prefetched += keys.length;
    return Promise.resolve();
  }
}

function timing(registry: Registry) {
  return {
    apply: new Histogram({ name: 'apply_seconds', help: 'h', registers: [registry] }),
    applyEntries: new Counter({ name: 'applied_total', help: 'c', registers: [registry] }),
  };
}

const entry = (index: number, term: number, path: string): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: encodeCommand({ nowMs: 1_000, op: { type: 'mkdir', path } }),
});

void t.test('every driver hook of the adapter is the server state machine’s own', async (t) => {
  const kv = new PrefetchCountingKv();
  const sm = new TimedMetadataStateMachine(await MetadataStateMachine.open(kv), timing(new Registry()));
  const hooks = Object.getOwnPropertyNames(RaftMetadataStateMachine.prototype).filter((n) => n !== 'constructor');
  // The hooks the Raft driver calls when present; the adapter implements all of them.
  for (const name of ['appliedIndex', 'appliedTerm', 'applyBatch', 'readAhead', 'openSnapshot', 'installSnapshot', 'sync']) {
    t.ok(hooks.includes(name), `the adapter implements ${name}`);
  }
  const asDriverSees = sm as unknown as Record<string, unknown>;
  for (const name of hooks) {
    t.equal(typeof asDriverSees[name], 'function', `${name} reaches the driver`);
    if (name !== 'applyBatch') {
      t.equal(asDriverSees[name], (RaftMetadataStateMachine.prototype as unknown as Record<string, unknown>)[name], `${name} is the adapter's`);
    }
  }
});

void t.test('read-ahead reaches the store; applied batches keep their term, and are timed and counted', async (t) => {
  const kv = new PrefetchCountingKv();
  const registry = new Registry();
  const sm = new TimedMetadataStateMachine(await MetadataStateMachine.open(kv), timing(registry));
  const entries = [entry(1, 3, '/a'), entry(2, 3, '/b'), entry(3, 4, '/a/c')];

  sm.readAhead(entries);
  t.ok(kv.prefetched > 0, `read-ahead fetched ${kv.prefetched} keys before the apply`);

  const results = (await sm.applyBatch(entries)) as FsResult[];
  t.same(
    results.map((r) => r.ok),
    [true, true, true],
  );
  t.equal(sm.appliedIndex(), 3);
  t.equal(sm.appliedTerm(), 4, 'the term of the last applied entry');

  const metrics = await registry.getMetricsAsJSON();
  const count = (name: string, sample?: string) =>
    metrics.find((m) => m.name === name)?.values.find((v) => sample === undefined || (v as { metricName?: string }).metricName === sample)?.value;
  t.equal(count('applied_total'), 3, 'entries counted');
  t.equal(count('apply_seconds', 'apply_seconds_count'), 1, 'one batch timed');
});
