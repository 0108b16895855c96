/**
 * How a server process stops (src/cli/stop.ts), on fake process edges: a stop that finishes exits 0; one that
 * fails exits 1; one that hangs (a hung disk or peer) exits 1 at the deadline instead of never; a second
 * signal exits at once; stdin's end while stopping changes nothing; a fatal error's stop exits with its code,
 * also when the stop hangs.
 */
import t from 'tap';
import { pino } from 'pino';
import type { StopEdges } from '../../src/cli/stop.ts';
import { exitAfterStop, stopOnSignals } from '../../src/cli/stop.ts';

const logger = pino({ level: 'silent' });

/** Fake edges: signals and stdin's end fired by hand, timers run by `advance`, exits recorded. */
function fakeEdges() {
  const exits: number[] = [];
  const handlers = new Map<string, () => void>();
  const timers: { at: number; fn: () => void }[] = [];
  let now = 0;
  const edges: StopEdges = {
    exit: (code) => void exits.push(code),
    setTimer: (fn, ms) => void timers.push({ at: now + ms, fn }),
    onSignal: (signal, fn) => void handlers.set(signal, fn),
    onStdinEnd: (fn) => void handlers.set('stdin', fn),
  };
  return {
    edges,
    exits,
    fire: (name: string) => handlers.get(name)?.(),
    advance(ms: number) {
      now += ms;
      for (const timer of timers.splice(0)) {
        if (timer.at <= now) timer.fn();
        else timers.push(timer);
      }
    },
  };
}

const settle = () => new Promise((r) => setImmediate(r));

void t.test('a stop that finishes exits 0; one that fails exits 1', async (t) => {
  const ok = fakeEdges();
  stopOnSignals(logger, () => Promise.resolve(), { stdinEnd: false, edges: ok.edges, deadlineMs: 1_000 });
  ok.fire('SIGTERM');
  await settle();
  t.same(ok.exits, [0]);
  const failing = fakeEdges();
  stopOnSignals(logger, () => Promise.reject(new Error('store close failed')), { stdinEnd: true, edges: failing.edges, deadlineMs: 1_000 });
  failing.fire('stdin');
  await settle();
  t.same(failing.exits, [1]);
});

void t.test('a stop that hangs exits 1 at the deadline, not before', async (t) => {
  const f = fakeEdges();
  stopOnSignals(logger, () => new Promise<void>(() => undefined), { stdinEnd: true, edges: f.edges, deadlineMs: 1_000 });
  f.fire('SIGINT');
  f.fire('stdin'); // the parent went away too: nothing more
  f.advance(999);
  await settle();
  t.same(f.exits, [], 'still stopping just before the deadline');
  f.advance(1);
  t.same(f.exits, [1], 'exited at the deadline');
});

void t.test('a second signal while stopping exits at once', async (t) => {
  const f = fakeEdges();
  stopOnSignals(logger, () => new Promise<void>(() => undefined), { stdinEnd: false, edges: f.edges, deadlineMs: 60_000 });
  f.fire('SIGTERM');
  await settle();
  t.same(f.exits, []);
  f.fire('SIGTERM');
  t.same(f.exits, [1]);
});

void t.test("a fatal error's stop exits with its code, at the deadline if the stop hangs", async (t) => {
  const done = fakeEdges();
  exitAfterStop(logger, () => Promise.resolve(), 70, { edges: done.edges, deadlineMs: 1_000 });
  await settle();
  t.same(done.exits, [70]);
  const hung = fakeEdges();
  exitAfterStop(logger, () => new Promise<void>(() => undefined), 70, { edges: hung.edges, deadlineMs: 1_000 });
  hung.advance(1_000);
  t.same(hung.exits, [70]);
  process.exitCode = 0; // exitAfterStop sets it for the real process
});
