/**
 * The newcomer's path end to end, as issue 5 states it: `npm start` (3 metadata servers and 3 chunkservers
 * as child processes) in one process group, and in "another terminal" rfsctl through its bin launcher (what
 * `npx rfsctl` runs): `put` of a local file that spans two chunks, `get` back to another local file, the
 * two files equal byte for byte; `status` shows 3 metadata servers and 3 live chunkservers. Then Ctrl-C.
 * (The 1 GiB version of the same steps is run by hand and recorded in BENCHMARKS.md; here the file is
 * smaller to keep `npm test` fast.)
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { tempDir, waitFor } from '../metadata/harness.ts';
import { pattern } from '../client/pattern.ts';
import { repoRoot, runCli } from '../cli/harness.ts';

const MiB = 1024 * 1024;
/** Two 64 MiB chunks (the default chunk size): one full, one partial. */
const fileBytes = 64 * MiB + 3 * MiB + 12_345;

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

void t.test('npm start, then rfsctl put / get / status from another process', async (t) => {
  const tmp = await tempDir('rfs-e2e-');
  t.teardown(() => tmp.remove());
  const dataDir = join(tmp.dir, 'cluster');
  const child = spawn('npm', ['start', '--', '--data-dir', dataDir, '--base-port', '0', '--ready-timeout-ms', '240000', '--log-level', 'warn'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (output += s));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('close', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  const group = child.pid!;
  t.teardown(() => {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // stopped already
    }
  });
  // A cluster that never comes up fails with what it printed (the last outputTailChars of it), and at once
  // if `npm start` exited: a bare "timed out" says nothing about which server did not start, or why.
  const outputTailChars = 8_000;
  const ready = (): true | undefined => {
    if (output.includes('rfs local cluster ready')) return true;
    if (exitCode !== undefined) throw new Error(`npm start exited (code ${exitCode}) before the ready banner`);
    return undefined;
  };
  await waitFor('the ready banner', ready, 240_000, () => `npm start printed:\n${output.slice(-outputTailChars)}`);
  t.match(output, /3 metadata servers \(leader meta[123]\), 3 chunkservers/, 'the banner: 3 + 3');
  const metadata = [...output.matchAll(/^ +meta[0-9] +(127\.0\.0\.1:[0-9]+) +raft/gm)].map((m) => m[1]).join(',');
  t.equal(metadata.split(',').length, 3, `three metadata addresses in the banner: ${metadata}`);

  const local = join(tmp.dir, 'local.bin');
  const copy = join(tmp.dir, 'copy.bin');
  await writeFile(local, pattern(fileBytes, 7));

  const put = await runCli(['put', local, '/big'], { metadata, cwd: tmp.dir });
  t.equal(put.code, 0, `rfsctl put exits 0 (${put.stderr.trim()})`);
  const get = await runCli(['get', '/big', copy], { metadata, cwd: tmp.dir });
  t.equal(get.code, 0, `rfsctl get exits 0 (${get.stderr.trim()})`);
  t.equal(await sha256(copy), await sha256(local), 'the file read back equals the one written (sha256)');

  const stat = JSON.parse((await runCli(['stat', '/big', '--json'], { metadata })).stdout) as { lengthBytes: number; chunkCount: number };
  t.match(stat, { lengthBytes: fileBytes, chunkCount: 2 }, 'rfsctl stat: the length, in two chunks');

  const status = await runCli(['status', '--json'], { metadata });
  t.equal(status.code, 0, 'rfsctl status exits 0');
  const s = JSON.parse(status.stdout) as { members: { role: string; reachable: boolean }[]; chunkservers: { live: number; dead: number } };
  t.equal(s.members.length, 3, 'status: 3 metadata servers');
  t.equal(s.members.filter((m) => m.role === 'leader').length, 1, 'one leader');
  t.ok(s.members.every((m) => m.reachable), 'all reachable');
  t.match(s.chunkservers, { live: 3, dead: 0 }, 'status: 3 live chunkservers');
  const text = await runCli(['status'], { metadata });
  t.match(text.stdout, 'chunkservers: 3 live, 0 dead', 'the human-readable status says the same');

  process.kill(-group, 'SIGINT');
  await exited;
  t.match(output, /all servers stopped/, 'Ctrl-C stopped every server');
});
