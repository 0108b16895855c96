/**
 * The Jepsen harness end to end: a short register run (20 s, kill + partition, 4 clients) against 5 metadata
 * servers and 3 chunkservers in their own network namespaces. Needs root (it fails, clearly, without).
 * Checks: a well-formed history on disk (every invoke completed once), a nemesis log with each fault and
 * its heal, the partition cutting real traffic (a TCP connect from inside one namespace to a blocked peer
 * fails while it holds and succeeds after the heal), the report files, and a clean machine afterwards.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { parseHistory, sanityCheck } from '../../jepsen/harness/history.ts';
import { canConnect, namePrefix } from '../../jepsen/harness/net.ts';
import { chunkserverDataPort, metadataRaftPort } from '../../jepsen/harness/cluster.ts';
import type { NemesisLogEntry } from '../../jepsen/nemesis/index.ts';
import type { NemesisContext } from '../../jepsen/nemesis/types.ts';
import { lockWaitMs, runBoundMs, runJepsenWaiting } from './jepsen-lock.ts';

// The run may wait for the machine's Jepsen lock first: more than tap's default per file.
t.setTimeout(lockWaitMs + runBoundMs);

interface PairProbe {
  readonly pair: string;
  readonly phase: 'during' | 'after';
  readonly connected: boolean;
}

void t.test('a short register run under kill and partition', async (t) => {
  if (process.getuid?.() !== 0) {
    t.fail('the Jepsen harness test needs root (network namespaces, veth, blackhole routes): run it as root');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'rfs-jepsen-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const probes: PairProbe[] = [];
  let probed: { from: string; to: string } | undefined;
  const port = (context: NemesisContext, name: string): number => (context.cluster.server(name).kind === 'metadata' ? metadataRaftPort : chunkserverDataPort);
  const live = (context: NemesisContext, name: string): boolean => context.cluster.isRunning(name) && !context.cluster.isPaused(name);

  const onNemesis = async (entry: NemesisLogEntry, context: NemesisContext): Promise<void> => {
    if (entry.nemesis !== 'partition') return;
    const { cluster } = context;
    if (entry.type === 'start') {
      const pair = context.partitioner.blockedPairs().map((p) => p.split('|') as [string, string]).find(([a, b]) => live(context, a) && live(context, b));
      if (pair === undefined) return;
      probed = { from: pair[0], to: pair[1] };
      const to = cluster.server(pair[1]);
      probes.push({ pair: pair.join('|'), phase: 'during', connected: await canConnect(cluster.server(pair[0]).net.namespace, to.net.address, port(context, to.name), 2_000) });
    }
    if (entry.type === 'heal' && probed !== undefined) {
      const to = cluster.server(probed.to);
      probes.push({ pair: `${probed.from}|${probed.to}`, phase: 'after', connected: await canConnect(cluster.server(probed.from).net.namespace, to.net.address, port(context, to.name), 5_000) });
    }
  };

  const options = {
    workload: 'register',
    nemesis: 'kill,partition',
    timeMs: 20_000,
    seed: 42,
    clients: 4,
    keys: 3,
    outDir: join(dir, 'run'),
    onNemesis,
  } as const;
  // One Jepsen run per machine: while someone's `npm run jepsen` holds the lock, wait for it (bounded)
  // instead of failing the suite.
  const result = await runJepsenWaiting(options, (line) => t.comment(line));

  // The history on disk (what the checker reads) is well-formed and has real traffic.
  const history = parseHistory(readFileSync(join(result.dir, 'history.jsonl'), 'utf8'));
  const sanity = sanityCheck(history);
  t.ok(sanity.ok, `history well-formed: ${sanity.problems.join('; ')}`);
  t.equal(sanity.counts['invoke'], (sanity.counts['ok'] ?? 0) + (sanity.counts['fail'] ?? 0) + (sanity.counts['info'] ?? 0), 'every invoke completed exactly once');
  t.ok((sanity.counts['ok'] ?? 0) > 20, `many ops succeeded (${sanity.counts['ok']})`);
  for (const f of ['read', 'write', 'cas']) t.ok(history.some((e) => e.f === f && e.type === 'ok'), `some ${f} succeeded`);
  t.ok(history.every((e) => e.type !== 'invoke' || (e.f === 'read' ? e.value === null : true)), 'an invoked read has value null');
  // The final read phase read every key after the heal.
  t.same(Object.keys(result.finalValues).sort(), ['r0', 'r1', 'r2'], 'final reads of every key');

  // The nemesis log: each fault started and healed, kill and partition both.
  const nemesis = readFileSync(join(result.dir, 'nemesis.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as NemesisLogEntry);
  for (const name of ['kill', 'partition']) {
    const start = nemesis.find((e) => e.nemesis === name && e.type === 'start');
    t.ok(start, `${name} started`);
    t.ok(start !== undefined && nemesis.some((e) => e.id === start.id && e.type === 'heal' && e.time > start.time), `${name} healed`);
  }
  t.notOk(nemesis.some((e) => e.type === 'error'), `no nemesis errors: ${JSON.stringify(nemesis.filter((e) => e.type === 'error'))}`);
  t.ok(existsSync(join(result.dir, 'schedule.json')), 'schedule saved');

  // The partition cut real traffic, and the heal restored it.
  t.same(probes.map((p) => [p.phase, p.connected]), [['during', false], ['after', true]], `probes ${JSON.stringify(probes)}`);
  const partitionStart = nemesis.find((e) => e.nemesis === 'partition' && e.type === 'start');
  const ownProbes = (partitionStart?.detail?.['probes'] ?? []) as { expected: string; connected: boolean }[];
  t.ok(ownProbes.some((p) => p.expected === 'blocked' && !p.connected), 'the nemesis logged its own blocked probe failing');
  t.ok(ownProbes.some((p) => p.expected === 'open' && p.connected), 'and an allowed pair connecting');

  // Report files.
  const html = readFileSync(join(result.dir, 'index.html'), 'utf8');
  t.match(html, /<svg/, 'index.html has inline SVG');
  t.match(html, /partition/, 'index.html names the faults');
  t.notMatch(html, /https?:\/\/(?!www\.w3\.org)/, 'index.html loads nothing from the network');
  for (const name of ['meta1', 'meta5', 'cs1', 'cs3']) t.ok(readFileSync(join(result.dir, 'logs', `${name}.log`), 'utf8').length > 0, `${name}.log written`);
  const verdict = readFileSync(join(result.dir, 'verdict.txt'), 'utf8').trimEnd().split('\n').at(-1);
  t.equal(verdict, result.verdict.line, 'verdict.txt ends with the verdict');
  if (result.verdict.kind === 'unchecked') t.equal(verdict, 'unchecked: the checker is not in this build');
  else t.not(result.verdict.kind, 'not linearizable', `checker: ${result.verdict.output}`);

  // Nothing left behind: namespaces, links, server processes.
  t.notMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`^${namePrefix}-`, 'm'), 'no namespaces left');
  t.notMatch(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }), new RegExp(`: ${namePrefix}-`), 'no links left');
  t.notOk(existsSync(join(result.dir, 'data')), 'data dirs removed');
});
