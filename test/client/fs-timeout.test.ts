/**
 * Deadlines and leader changes (3 metadata servers in this process, no chunkservers needed):
 *  - the leader stopped: namespace calls go on through the new leader, each mutation applied once;
 *  - every server stopped: calls fail with a TimeoutError (code ETIMEDOUT) within the client's timeout;
 *  - connect to an address nobody serves: the same, within the timeout.
 */
import t from 'tap';
import { connect, TimeoutError } from '../../src/index.ts';
import { startInProcessCluster } from '../metadata/harness.ts';
import { freePort } from '../metadata/harness.ts';

const timeoutMs = 1_500;
/** Slack over the timeout for a loaded machine (the bound tested is "fails, and not much later"). */
const slackMs = 4_000;

void t.test('leader lost, then every server: retries through the new leader, then a clear timeout', async (t) => {
  const cluster = await startInProcessCluster(3);
  t.teardown(() => cluster.close());
  // Generous: an election plus retries on a loaded 2-core machine can take several seconds; what is tested
  // is that the calls go through the new leader, each applied once.
  const fs = await connect({ metadata: cluster.addresses, timeoutMs: 20_000 });
  t.teardown(() => fs.close());
  await fs.mkdir('/before');
  const leader = await cluster.leader();
  await cluster.stopServer(leader.id);
  // Concurrent mutations across the change: each applied exactly once (an EEXIST would mean twice).
  const names = Array.from({ length: 20 }, (_, i) => `/after${i}`);
  await Promise.all(names.map((n) => fs.mkdir(n)));
  t.same((await fs.readdir('/')).sort(), ['/before', ...names].map((n) => n.slice(1)).sort(), 'every mkdir applied once, through the new leader');
  t.ok(fs.metadata.retries > 0, `the client retried (${fs.metadata.retries} retries)`);

  const short = await connect({ metadata: cluster.addresses, timeoutMs });
  t.teardown(() => short.close());
  for (const id of cluster.servers.keys()) if (id !== leader.id) await cluster.stopServer(id);
  for (const [what, call] of [
    ['stat', () => short.stat('/before')],
    ['mkdir', () => short.mkdir('/x')],
    ['writeFile', () => short.writeFile('/f', 'x')],
    ['readFile', () => short.readFile('/before')],
  ] as const) {
    const started = Date.now();
    const error = await (call as () => Promise<unknown>)().then(() => undefined, (e: unknown) => e);
    const elapsedMs = Date.now() - started;
    t.ok(error instanceof TimeoutError, `${what}: TimeoutError (${String(error)})`);
    t.match(error, { code: 'ETIMEDOUT' }, `${what}: code ETIMEDOUT`);
    t.ok(elapsedMs < timeoutMs + slackMs, `${what}: failed after ${elapsedMs} ms (timeout ${timeoutMs} ms)`);
  }
});

void t.test('connect to nothing: a clear timeout', async (t) => {
  const port = await freePort();
  const started = Date.now();
  const error = await connect({ metadata: [`127.0.0.1:${port}`], timeoutMs }).then(
    (c) => {
      c.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  t.ok(error instanceof TimeoutError, String(error));
  t.match(error, { code: 'ETIMEDOUT', syscall: 'connect' });
  t.ok(Date.now() - started < timeoutMs + slackMs, 'within the timeout');
  const aborted = await connect({ metadata: [`127.0.0.1:${port}`], signal: AbortSignal.abort() }).catch((e: unknown) => e);
  t.match(aborted, { name: 'AbortError', code: 'ABORT_ERR' }, 'connect honours its signal');
});
