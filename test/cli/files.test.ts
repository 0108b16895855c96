/**
 * rfsctl's file commands against a real in-process cluster (3 metadata servers, 3 chunkservers):
 * put/get of a multi-chunk file as a child process (the bin launcher), then ls, stat, mkdir -p, mv, rm, du,
 * cat and their --json shapes and exit codes in process (same parser and commands, faster).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { pattern } from '../client/pattern.ts';
import { MetadataClient } from '../../src/metadata/client.ts';
import { tempDir, waitFor } from '../metadata/harness.ts';
import { rfsctlBin, runCli, runInProcess, startTestCluster } from './harness.ts';

const MiB = 1024 * 1024;

void t.test('file commands', async (t) => {
  const cluster = await startTestCluster();
  t.teardown(() => cluster.close());
  const local = await tempDir('rfsctl-files-');
  t.teardown(() => local.remove());
  const cli = (...args: string[]) => runInProcess(args, { metadata: cluster.spec });

  // ---- put and get as child processes: a file of several 1 MiB chunks, back equal.
  const data = pattern(3 * MiB + 12_345, 7);
  const source = join(local.dir, 'big.bin');
  await writeFile(source, data);
  const put = await runCli(['put', source, '/big', '--chunk-mib', '1', '--replication', '3', '--json'], { metadata: cluster.spec });
  t.equal(put.code, 0, `put exits 0 (${put.stderr})`);
  t.match(JSON.parse(put.stdout), { path: '/big', bytes: data.length });
  t.equal(put.stderr, '', 'no progress bar when stderr is not a terminal');
  const copy = join(local.dir, 'copy.bin');
  const get = await runCli(['get', '/big', copy], { metadata: cluster.spec });
  t.equal(get.code, 0, `get exits 0 (${get.stderr})`);
  t.match(get.stdout, new RegExp(`${copy}: ${data.length} bytes`));
  t.ok((await readFile(copy)).equals(data), 'get returns the bytes put wrote');

  const st = await cli('stat', '/big', '--json');
  t.equal(st.code, 0);
  t.match(JSON.parse(st.stdout), { path: '/big', type: 'file', lengthBytes: data.length, chunkCount: 4, replication: 3, chunkSizeBytes: MiB, complete: true });
  const stText = await cli('stat', '/big');
  t.match(stText.stdout, /size:\s+3158073 \(3\.0 MiB\)/);
  t.match(stText.stdout, /chunks:\s+4/);

  // ---- the progress bar (forced on: stderr is not a terminal here): bytes, percent, rate, ETA.
  const withBar = await runInProcess(['put', source, '/bar', '--chunk-mib', '1', '--progress'], { metadata: cluster.spec });
  t.equal(withBar.code, 0);
  t.match(withBar.stderr, /\rput \/bar \[#+\] 100%  3\.0 MiB \/ 3\.0 MiB  \S+ \S+\/s  ETA 0s/);
  t.equal((await cli('rm', '/bar')).code, 0);

  // ---- mkdir -p, put into a directory, ls, ls -l, ls -R.
  t.equal((await cli('mkdir', '-p', '/a/b/c')).code, 0);
  t.equal((await cli('mkdir', '-p', '/a/b/c')).code, 0, 'mkdir -p of an existing directory is fine');
  const again = await cli('mkdir', '/a/b/c');
  t.equal(again.code, 2, 'mkdir of an existing directory: exit 2');
  t.match(again.stderr, 'rfsctl: /a/b/c: file exists (EEXIST)');
  const noParent = await cli('mkdir', '/x/y');
  t.equal(noParent.code, 2);
  t.match(noParent.stderr, 'rfsctl: /x/y: no such file or directory (ENOENT)');

  const small = join(local.dir, 'small.txt');
  await writeFile(small, 'hello rfs\n');
  t.equal((await cli('put', small, '/a/b/')).code, 0, 'put into a directory');
  const fromStdin = await runInProcess(['put', '-', '/a/stdin.txt'], { metadata: cluster.spec, stdin: Buffer.from('from stdin') });
  t.equal(fromStdin.code, 0, `put - reads stdin (${fromStdin.stderr})`);
  // put into an LZ4 directory: the replicas are stored compressed, as the file's attribute says (rfsctl's writer
  // takes the file's compression from the create, as the library's does).
  const meta = await MetadataClient.connect(cluster.metadata.addresses);
  await meta.mkdir('/z', { compression: 'lz4' });
  t.equal((await cli('put', small, '/z/small.txt')).code, 0);
  const [zChunk] = (await meta.chunkLocations('/z/small.txt')).chunks;
  t.same([...cluster.chunkservers.values()].map((s) => s.store.info(zChunk!.handle)?.compression), ['lz4', 'lz4', 'lz4'], 'every replica LZ4');
  await meta.unlink('/z/small.txt');
  await meta.rmdir('/z');
  meta.close();

  const ls = await cli('ls', '/');
  t.equal(ls.code, 0);
  t.same(ls.stdout.split('\n').filter((l) => l !== ''), ['a/', 'big']);
  const lsJson = JSON.parse((await cli('ls', '/a', '--json')).stdout) as { entries: { path: string; type: string }[] };
  t.same(lsJson.entries.map((e) => [e.path, e.type]), [['/a/b', 'dir'], ['/a/stdin.txt', 'file']]);
  const lsLong = await cli('ls', '-l', '/');
  t.match(lsLong.stdout, /MODE\s+REPL\s+SIZE\s+CHUNKS\s+MODIFIED\s+NAME/);
  t.match(lsLong.stdout, /-rw\S+\s+3\s+3158073\s+4\s+\S+\s+big/);
  const lsR = await cli('ls', '-R', '/a');
  t.same(lsR.stdout.split('\n'), ['/a:', 'b/', 'stdin.txt', '', '/a/b:', 'c/', 'small.txt', '', '/a/b/c:', '']);
  const lsRJson = JSON.parse((await cli('ls', '-Rl', '/a', '--json')).stdout) as { entries: { path: string; stat?: { lengthBytes: number } }[] };
  t.same(lsRJson.entries.map((e) => e.path), ['/a/b', '/a/stdin.txt', '/a/b/c', '/a/b/small.txt']);
  t.equal(lsRJson.entries.find((e) => e.path === '/a/b/small.txt')?.stat?.lengthBytes, 10);
  const lsMissing = await cli('ls', '/nope');
  t.equal(lsMissing.code, 2);
  t.equal(lsMissing.stderr, 'rfsctl: /nope: no such file or directory (ENOENT)\n');

  // ---- cat.
  const cat = await cli('cat', '/a/b/small.txt', '/a/stdin.txt');
  t.equal(cat.code, 0);
  t.equal(cat.stdout, 'hello rfs\nfrom stdin');
  const catBig = await cli('cat', '/big');
  t.ok(catBig.stdoutBytes.equals(data), 'cat of a multi-chunk file');
  const catDir = await cli('cat', '/a');
  t.equal(catDir.code, 2);
  t.match(catDir.stderr, '/a: is a directory (EISDIR)');

  // ---- du.
  const du = JSON.parse((await cli('du', '/', '--json')).stdout) as { entries: { path: string; bytes: number; storedBytes: number; files: number }[] };
  t.same(
    du.entries.map((e) => [e.path, e.bytes, e.files]),
    [
      ['/a/b/c', 0, 0],
      ['/a/b', 10, 1],
      ['/a', 20, 2],
      ['/', data.length + 20, 3],
    ],
  );
  t.equal(du.entries.at(-1)?.storedBytes, 3 * (data.length + 20), 'stored bytes count the replicas');
  const duSh = await cli('du', '-sh', '/');
  t.equal(duSh.stdout, '3.0 MiB   /\n');
  const duS = await cli('du', '-s', '/a');
  t.equal(duS.stdout, '20          /a\n');

  // ---- mv.
  t.equal((await cli('mv', '/a/stdin.txt', '/a/b')).code, 0, 'mv into a directory');
  t.equal((await cli('cat', '/a/b/stdin.txt')).stdout, 'from stdin');
  const mvJson = await cli('mv', '/a/b/stdin.txt', '/renamed.txt', '--json');
  t.same(JSON.parse(mvJson.stdout), { from: '/a/b/stdin.txt', to: '/renamed.txt' });
  const mvMissing = await cli('mv', '/nope', '/x');
  t.equal(mvMissing.code, 2);
  t.match(mvMissing.stderr, 'no such file or directory (ENOENT)');

  // ---- rm.
  const rmDir = await cli('rm', '/a');
  t.equal(rmDir.code, 2, 'rm of a directory without -r');
  t.match(rmDir.stderr, '/a: is a directory (EISDIR); use rm -r');
  const rmPartial = await cli('rm', '/renamed.txt', '/nope');
  t.equal(rmPartial.code, 4, 'one of two paths failed: exit 4');
  t.match(rmPartial.stderr, '/nope: no such file or directory (ENOENT)');
  t.equal((await cli('rm', '-f', '/nope')).code, 0, 'rm -f of a missing path');
  const rmR = await cli('rm', '-r', '/a', '--json');
  t.same(JSON.parse(rmR.stdout), { removed: ['/a'], failed: [] });
  t.same((await cli('ls', '/')).stdout, 'big\n');

  // ---- local-side errors.
  const putMissing = await cli('put', join(local.dir, 'none'), '/x');
  t.equal(putMissing.code, 2);
  t.match(putMissing.stderr, /none: ENOENT/);
  const getMissing = await cli('get', '/none', join(local.dir, 'x'));
  t.equal(getMissing.code, 2);
  t.match(getMissing.stderr, 'rfsctl: /none: no such file or directory (ENOENT)');
  const intoDir = await cli('get', '/big', local.dir);
  t.equal(intoDir.code, 0, 'get into a local directory');
  t.ok((await readFile(join(local.dir, 'big'))).equals(data));
  const noLocalDir = await cli('get', '/big', join(local.dir, 'none', 'x'));
  t.equal(noLocalDir.code, 2, 'get into a missing local directory');
  t.match(noLocalDir.stderr, /^rfsctl: \/big -> .*none\/x: ENOENT/);
  t.notOk((await readdir(local.dir)).some((n) => n.includes('rfsctl-partial')), 'no partial file left behind');
  const noClobber = await cli('put', '-n', small, '/big');
  t.equal(noClobber.code, 2, 'put -n over an existing file');
  t.match(noClobber.stderr, 'file exists (EEXIST)');

  // ---- Ctrl-C in the middle of a put (stdin kept open): exit 130; the writer gives the file up, which is left
  // complete with a prefix of the bytes sent (at once, or once the leader's lease recovery sealed its last chunk).
  const child = spawn(process.execPath, [rfsctlBin, 'put', '-', '/interrupted', '--chunk-mib', '1', '--metadata', cluster.spec], { stdio: ['pipe', 'pipe', 'pipe'] });
  let childErr = '';
  child.stderr.on('data', (b: Buffer) => (childErr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  child.stdin.on('error', () => undefined); // EPIPE once the child exited: expected here
  child.stdin.write(pattern(MiB + 100, 5));
  // A chunk allocated: the writer is open and writing (rfsctl's Ctrl-C handler is in place).
  await waitFor('the put writing', async () => {
    const r = await cli('stat', '/interrupted', '--json');
    return r.code === 0 && (JSON.parse(r.stdout) as { chunkCount: number }).chunkCount >= 1 ? true : undefined;
  });
  child.kill('SIGINT');
  t.equal(await exited, 130, 'interrupted put: exit 130');
  t.match(childErr, /rfsctl: \/interrupted: interrupted after \d+ bytes; the file keeps a prefix of them/);
  const given = await waitFor('the interrupted file completed', async () => {
    const st = JSON.parse((await cli('stat', '/interrupted', '--json')).stdout) as { complete: boolean; lengthBytes: number };
    return st.complete ? st : undefined;
  });
  t.ok(given.lengthBytes <= MiB + 100, `a prefix of what was sent: ${given.lengthBytes} bytes`);

  // ---- usage errors.
  const usage = await cli('mkdir');
  t.equal(usage.code, 1);
  t.match(usage.stderr, /Not enough non-option arguments/);
  const help = await cli('put', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /Examples:/);
  t.match(help.stdout, /--chunk-mib/);
});

void t.test('chmod, touch and setrep', async (t) => {
  const cluster = await startTestCluster();
  t.teardown(() => cluster.close());
  const cli = (...args: string[]) => runInProcess(args, { metadata: cluster.spec });
  const statOf = async (path: string) => JSON.parse((await cli('stat', path, '--json')).stdout) as { mode: number; mtimeMs: number; replication: number; type: string; lengthBytes: number };

  // ---- touch: creates an empty file, or sets the modification time of an existing one; -c creates nothing.
  t.equal((await cli('mkdir', '-p', '/d/e')).code, 0);
  const touched = await cli('touch', '/d/new', '/d/e', '--json');
  t.equal(touched.code, 0, touched.stderr);
  t.same(JSON.parse(touched.stdout), { created: ['/d/new'], touched: ['/d/e'] });
  t.match(await statOf('/d/new'), { type: 'file', lengthBytes: 0 }, 'an empty file');
  const before = (await statOf('/d/new')).mtimeMs;
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal((await cli('touch', '/d/new')).code, 0);
  t.ok((await statOf('/d/new')).mtimeMs > before, 'touch of an existing file moves its mtime');
  t.equal((await cli('touch', '-c', '/d/none')).code, 0, 'touch -c of a missing path: no error');
  t.equal((await cli('stat', '/d/none')).code, 2, 'and nothing made');
  const underFile = await cli('touch', '/d/new/x');
  t.equal(underFile.code, 2);
  t.match(underFile.stderr, 'rfsctl: /d/new/x: not a directory (ENOTDIR)');

  // ---- chmod: octal modes, -R for a tree.
  t.equal((await cli('chmod', '640', '/d/new')).code, 0);
  t.equal((await statOf('/d/new')).mode, 0o640);
  t.equal((await cli('touch', '/d/e/f')).code, 0);
  const tree = await cli('chmod', '-R', '0750', '/d', '--json');
  t.equal(tree.code, 0, tree.stderr);
  t.same(JSON.parse(tree.stdout), { mode: '0750', changed: ['/d', '/d/e', '/d/new', '/d/e/f'] }, 'the directory, then what is below it');
  for (const p of ['/d', '/d/e', '/d/new', '/d/e/f']) t.equal((await statOf(p)).mode, 0o750, `${p} changed`);
  const badMode = await cli('chmod', 'u+x', '/d/new');
  t.equal(badMode.code, 1, 'a symbolic mode: usage error');
  t.match(badMode.stderr, 'give octal digits');
  t.equal((await statOf('/d/new')).mode, 0o750, 'nothing changed');
  const missing = await cli('chmod', '600', '/d/none');
  t.equal(missing.code, 2);
  t.match(missing.stderr, 'rfsctl: /d/none: no such file or directory (ENOENT)');

  // ---- setrep: a file's chunks trimmed and copied to the factor; -w waits for it.
  const source = join((await tempDir('rfsctl-setrep-')).dir, 'f');
  const data = pattern(2 * MiB + 7, 3);
  await writeFile(source, data);
  t.equal((await cli('put', source, '/d/rep', '--chunk-mib', '1', '--replication', '3')).code, 0);
  const meta = await MetadataClient.connect(cluster.metadata.addresses);
  t.teardown(() => meta.close());
  const copies = async (): Promise<number[]> => (await meta.chunkLocations('/d/rep')).chunks.map((c) => c.replicas.length);
  t.same(await copies(), [3, 3, 3]);
  const down = await cli('setrep', '-w', '1', '/d/rep');
  t.equal(down.code, 0, down.stderr);
  t.match(down.stdout, /^1 file\(s\) at 1 copies after \d+\.\d s/);
  t.same(await copies(), [1, 1, 1], 'one copy of each chunk once -w returned');
  const up = await cli('setrep', '-w', '2', '/d/rep', '--json');
  t.equal(up.code, 0, up.stderr);
  t.match(JSON.parse(up.stdout), { replication: 2, changed: ['/d/rep'] });
  t.same(await copies(), [2, 2, 2], 'two copies again');
  const back = await cli('get', '/d/rep', '-');
  t.ok(back.stdoutBytes.equals(data), 'the bytes unchanged');
  const tooMany = await cli('setrep', '-w', '5', '/d/rep');
  t.equal(tooMany.code, 2, 'more copies than live chunkservers with -w: refused');
  t.match(tooMany.stderr, /only 3 live chunkserver\(s\): 5 copies/);
  t.equal((await statOf('/d/rep')).replication, 2, 'and nothing changed');
  t.equal((await cli('setrep', '-R', '2', '/d/e')).code, 0);
  t.equal((await statOf('/d/e')).replication, 2, 'a directory: the factor of new files below it');
  t.equal((await statOf('/d/e/f')).replication, 2, '-R: and the files already there');
  const zero = await cli('setrep', '0', '/d/rep');
  t.equal(zero.code, 1);
  t.match(zero.stderr, 'at least 1');
});
