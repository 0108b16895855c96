/**
 * The `npm start` entry point as a user runs it: `npm start -- …` in its own process group, Ctrl-C (SIGINT
 * to the group, as a terminal sends it) once the banner is printed: exit code 0, every server stopped.
 * The cluster process SIGKILLed: its children notice their closed stdin and stop (no orphans); started
 * again on the same dir and sent SIGTERM, it exits 0 after its servers.
 * A busy port: a clear message, exit code 1. (One metadata server and one chunkserver keep this fast.)
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { tempDir, waitFor } from '../metadata/harness.ts';

const repoRoot = join(import.meta.dirname, '..', '..');
const smallCluster = ['--ready-timeout-ms', '240000', '--base-port', '0', '--metadata-servers', '1', '--chunkservers', '1', '--heartbeat-ms', '300'];

/** Every process below `pid` (Linux /proc). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

interface Run {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
}

function run(command: string, args: readonly string[], options: { detached?: boolean } = {}): Run {
  const child = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (output += s));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, output: () => output, exited };
}

void t.test('npm start: ready banner, readable logs, Ctrl-C (SIGINT to the group) stops everything', async (t) => {
  const tmp = await tempDir('rfs-npm-start-');
  t.teardown(() => tmp.remove());
  const r = run('npm', ['start', '--', '--data-dir', tmp.dir, ...smallCluster], { detached: true });
  const group = r.child.pid!;
  t.teardown(() => {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  await waitFor('the ready banner', () => (r.output().includes('rfs local cluster ready') ? true : undefined), 240_000);
  const out = r.output();
  t.match(out, /1 metadata server \(leader meta1\), 1 chunkserver/, 'the banner says what runs');
  t.match(out, new RegExp(`data: ${tmp.dir.replace(/[/.]/g, '\\$&')}`), 'the data folder is printed');
  t.match(out, /meta1 +127\.0\.0\.1:[0-9]+ +raft 127\.0\.0\.1:[0-9]+ +metrics http:\/\/127\.0\.0\.1:[0-9]+\/metrics/, 'metadata endpoints');
  t.match(out, /cs1 +127\.0\.0\.1:[0-9]+ +rack1 +metrics http:/, 'chunkserver endpoints');
  t.match(out, /npx rfsctl status\n +npx rfsctl put \.\/somefile \/somefile\n +npx rfsctl ls -l \//, 'commands to try');
  t.match(out, /^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} (meta1|cs1) +(INFO|WARN) +\S/m, 'child logs one line per record: time, name, level, msg');
  const servers = descendants(group).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--stop-on-stdin-end'));
  t.equal(servers.length, 2, 'two server processes');

  process.kill(-group, 'SIGINT');
  const { code, signal } = await r.exited;
  // npm re-raises a SIGINT it received on itself once its script has exited (the shell then shows 130);
  // our process's own exit code 0 is checked with SIGTERM below.
  t.ok(code === 0 || signal === 'SIGINT', `npm ended (code ${code}, signal ${signal})`);
  t.match(r.output(), /all servers stopped/);
  await waitFor('servers gone', () => (servers.some(alive) ? undefined : true), 5_000);
  t.pass('no server left running');
});

void t.test('the cluster process SIGKILLed: its servers stop by themselves; SIGTERM: exit code 0', async (t) => {
  const tmp = await tempDir('rfs-npm-start-kill-');
  t.teardown(() => tmp.remove());
  const r = run(process.execPath, ['--import', 'tsx', 'src/cli/rfs.ts', 'cluster', '--data-dir', tmp.dir, '--log-level', 'warn', ...smallCluster]);
  t.teardown(() => r.child.kill('SIGKILL'));
  await waitFor('the ready banner', () => (r.output().includes('rfs local cluster ready') ? true : undefined), 240_000);
  const servers = descendants(r.child.pid!);
  t.equal(servers.length, 2, 'two server processes');
  r.child.kill('SIGKILL');
  await r.exited;
  await waitFor('servers gone', () => (servers.some(alive) ? undefined : true), 30_000);
  t.pass('no orphan left running');

  const again = run(process.execPath, ['--import', 'tsx', 'src/cli/rfs.ts', 'cluster', '--data-dir', tmp.dir, '--log-level', 'warn', ...smallCluster]);
  t.teardown(() => again.child.kill('SIGKILL'));
  await waitFor('the ready banner again', () => (again.output().includes('rfs local cluster ready') ? true : undefined), 240_000);
  const second = descendants(again.child.pid!);
  again.child.kill('SIGTERM');
  t.same(await again.exited, { code: 0, signal: null }, 'SIGTERM: exit code 0');
  t.same(second.filter(alive), [], 'its servers stopped before it exited');
});

void t.test('a busy port: a clear message and exit code 1', async (t) => {
  const tmp = await tempDir('rfs-npm-start-busy-');
  t.teardown(() => tmp.remove());
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const address = busy.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const r = run(process.execPath, ['--import', 'tsx', 'src/cli/rfs.ts', 'cluster', '--data-dir', tmp.dir, '--base-port', String(port)]);
  const { code } = await r.exited;
  t.equal(code, 1, 'exit code 1');
  t.match(r.output(), `rfs: port ${port} in use — is another rfs cluster running? stop it or use --base-port`);
});
