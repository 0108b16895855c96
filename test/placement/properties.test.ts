/** fast-check properties of replica selection and of the manager's copies over random clusters. */
import fc from 'fast-check';
import t from 'tap';
import { ChunkManager } from '../../src/placement/manager.ts';
import { chooseTargets } from '../../src/placement/select.ts';
import { holds } from '../property/util.ts';
import { chunk, seededRandom, server, view } from './fixtures.ts';

const candidateArb = fc.uniqueArray(
  fc.record({
    id: fc.integer({ min: 1, max: 40 }),
    rack: fc.constantFrom('r1', 'r2', 'r3', 'r4'),
    capacityBytes: fc.integer({ min: 1, max: 1000 }),
    usedBytes: fc.integer({ min: 0, max: 1000 }),
  }),
  { selector: (c) => c.id, maxLength: 12 },
);

void t.test('chooseTargets: distinct candidates, as many as possible, spread over racks', (t) => {
  holds(
    t,
    'targets',
    fc.property(candidateArb, fc.integer({ min: 1, max: 6 }), fc.integer(), (candidates, count, seed) => {
      const chosen = chooseTargets(candidates, count, new Set(), seededRandom(seed));
      const ids = chosen.map((c) => c.id);
      if (new Set(ids).size !== ids.length) return false;
      if (!ids.every((id) => candidates.some((c) => c.id === id))) return false;
      if (chosen.length !== Math.min(count, candidates.length)) return false;
      const racksAvailable = new Set(candidates.map((c) => c.rack)).size;
      const racksUsed = new Set(chosen.map((c) => c.rack)).size;
      return racksUsed === Math.min(chosen.length, racksAvailable);
    }),
  );
  holds(
    t,
    'deterministic',
    fc.property(candidateArb, fc.integer({ min: 1, max: 6 }), fc.integer(), (candidates, count, seed) => {
      const a = chooseTargets(candidates, count, new Set(), seededRandom(seed)).map((c) => c.id);
      const b = chooseTargets([...candidates].reverse(), count, new Set(), seededRandom(seed)).map((c) => c.id);
      return a.join() === b.join();
    }),
  );
  t.end();
});

const clusterArb = fc.record({
  states: fc.array(fc.constantFrom<'live' | 'dead' | 'decommissioning'>('live', 'live', 'live', 'dead', 'decommissioning'), { minLength: 3, maxLength: 9 }),
  chunks: fc.array(
    fc.record({
      replicas: fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }),
      replication: fc.integer({ min: 1, max: 4 }),
    }),
    { maxLength: 12 },
  ),
  seed: fc.integer(),
});

void t.test('the manager never orders a copy onto a server that holds the chunk, nor onto a non-live one', (t) => {
  holds(
    t,
    'copies',
    fc.property(clusterArb, ({ states, chunks, seed }) => {
      const servers = states.map((state, i) => server(i + 1, `r${(i % 3) + 1}`, { state }));
      const known = chunks
        .map((c, i) => chunk(i + 1, c.replicas.filter((id) => id <= servers.length), { replication: c.replication }))
        .filter((c) => c.replicas.length > 0);
      const v = view(servers, known);
      const m = new ChunkManager({ random: seededRandom(seed), nowMs: 0, limits: { heartbeatTimeoutMs: 1_000, leaderGraceMs: 1_000 } });
      m.setView(v);
      for (const s of servers) {
        if (s.state === 'dead') continue;
        m.chunkReport(s.id, 0, { full: true, chunks: known.filter((c) => c.replicas.includes(s.id)).map((c) => ({ handle: c.handle, version: 1, lengthBytes: 1 })) });
      }
      m.tick(10);
      for (const s of servers) {
        if (s.state === 'dead') continue;
        for (const c of m.heartbeat(s.id, 20, { capacityBytes: s.capacityBytes, usedBytes: 0 }).commands) {
          if (c.kind !== 'replicate') continue;
          const placement = v.chunks.get(c.handle)!;
          if (placement.replicas.includes(c.target)) return false;
          if (v.servers.get(c.target)!.state !== 'live') return false;
          if (!placement.replicas.includes(s.id)) return false;
        }
      }
      return true;
    }),
  );
  t.end();
});
