/**
 * The client library (src/index.ts) end to end against a real cluster in this process: 3 metadata servers
 * and 3 chunkservers (test/client/fs-harness.ts). Every call, its error codes, handles, streams with
 * backpressure, AbortSignal, and one client shared by many concurrent calls.
 */
import { constants as fsConstants } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import t from 'tap';
import type { Test } from 'tap';
import { AbortError, AppendOnlyError, connect, FileBusyError, GenerationMismatchError, mutationsInflightMax, RfsError } from '../../src/index.ts';
import type { RfsClient } from '../../src/index.ts';
import { pattern } from './pattern.ts';
import { MiB, startTestCluster } from './fs-harness.ts';
import { waitFor } from '../metadata/harness.ts';

const cluster = await startTestCluster();
t.teardown(() => cluster.close());
// 30 s (the default): the in-process servers share this event loop and a loaded machine; bursts of
// concurrent calls below have been seen to cost the cluster its leader for several seconds.
const fs: RfsClient = await connect({ metadata: cluster.addresses, timeoutMs: 30_000 });
t.teardown(() => fs.close());
// The chunkservers take chunks up to 1 MiB: files larger than that live under /t (the root's default is 64 MiB).
await fs.mkdir('/t', { chunkSizeBytes: MiB });

/** Asserts `p` rejects with an RfsError of `code`, `syscall` and `path`. */
async function rejectsCode(t: Test, p: Promise<unknown>, code: string, syscall: string, path: string, what: string): Promise<void> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof RfsError, `${what}: an RfsError (${String(error)})`);
  t.match(error, { code, syscall, path }, what);
}

void t.test('namespace calls and their Node-style errors', async (t) => {
  await fs.mkdir('/a');
  await rejectsCode(t, fs.mkdir('/a'), 'EEXIST', 'mkdir', '/a', 'mkdir of an existing directory');
  const eexist = await fs.mkdir('/a').catch((e: unknown) => e as RfsError);
  t.equal(eexist?.errno, -17, 'errno like Node (EEXIST)');
  t.match(eexist?.message, /^EEXIST: file already exists, mkdir '\/a'/, 'message like Node');
  await rejectsCode(t, fs.mkdir('/nope/child'), 'ENOENT', 'mkdir', '/nope/child', 'mkdir under a missing parent');
  await fs.mkdir('/x/y/z', { recursive: true });
  await fs.mkdir('/x/y/z', { recursive: true });
  t.ok((await fs.stat('/x/y/z')).isDirectory(), 'mkdir -p made the chain, twice without error');

  await fs.writeFile('/a/f', 'hello');
  const st = await fs.stat('/a/f');
  t.ok(st.isFile() && !st.isDirectory(), 'a file');
  t.equal(st.size, 5);
  t.ok(st.mtimeMs > 0 && st.ctimeMs > 0 && st.generation > 0 && st.replication > 0 && st.chunkSizeBytes > 0, 'times and rfs extras');
  t.equal(await fs.readFile('/a/f', { encoding: 'utf8' }), 'hello');
  await rejectsCode(t, fs.mkdir('/x/y/z', { recursive: false }), 'EEXIST', 'mkdir', '/x/y/z', 'mkdir without recursive of an existing dir');
  await rejectsCode(t, fs.mkdir('/a/f', { recursive: true }), 'EEXIST', 'mkdir', '/a/f', 'mkdir -p over a file');
  await rejectsCode(t, fs.mkdir('/a/f/sub'), 'ENOTDIR', 'mkdir', '/a/f/sub', 'mkdir under a file');
  await rejectsCode(t, fs.stat('/missing'), 'ENOENT', 'stat', '/missing', 'stat of a missing path');

  t.same(await fs.readdir('/a'), ['f']);
  const dirents = await fs.readdir('/', { withFileTypes: true });
  t.same(dirents.map((d) => [d.name, d.isDirectory(), d.isFile(), d.parentPath]), [['a', true, false, '/'], ['t', true, false, '/'], ['x', true, false, '/']]);
  await rejectsCode(t, fs.readdir('/a/f'), 'ENOTDIR', 'scandir', '/a/f', 'readdir of a file');
  await rejectsCode(t, fs.readdir('/missing'), 'ENOENT', 'scandir', '/missing', 'readdir of a missing dir');
  await rejectsCode(t, fs.readFile('/a'), 'EISDIR', 'open', '/a', 'readFile of a directory');
  await rejectsCode(t, fs.readFile('/missing'), 'ENOENT', 'open', '/missing', 'readFile of a missing file');
  await rejectsCode(t, fs.writeFile('/a', 'x'), 'EISDIR', 'open', '/a', 'writeFile over a directory');

  await fs.rename('/a/f', '/a/g');
  t.same(await fs.readdir('/a'), ['g']);
  t.equal(await fs.readFile('/a/g', { encoding: 'utf8' }), 'hello', 'renamed file keeps its bytes');
  const renameMissing = await fs.rename('/a/none', '/a/h').catch((e: unknown) => e);
  t.match(renameMissing, { code: 'ENOENT', syscall: 'rename', path: '/a/none', dest: '/a/h' }, 'rename of a missing path');

  await rejectsCode(t, fs.unlink('/a'), 'EISDIR', 'unlink', '/a', 'unlink of a directory');
  await rejectsCode(t, fs.rmdir('/a'), 'ENOTEMPTY', 'rmdir', '/a', 'rmdir of a non-empty directory');
  await rejectsCode(t, fs.rmdir('/a/g'), 'ENOTDIR', 'rmdir', '/a/g', 'rmdir of a file');
  await rejectsCode(t, fs.rm('/a'), 'EISDIR', 'rm', '/a', 'rm of a directory without recursive');
  await fs.rm('/a', { recursive: true });
  await rejectsCode(t, fs.stat('/a/g'), 'ENOENT', 'stat', '/a/g', 'rm -r removed the tree');
  await fs.rm('/a', { force: true });
  await rejectsCode(t, fs.rm('/a'), 'ENOENT', 'rm', '/a', 'rm of a missing path without force');
  await fs.writeFile('/x/file', 'x');
  await fs.unlink('/x/file');
  await rejectsCode(t, fs.unlink('/x/file'), 'ENOENT', 'unlink', '/x/file', 'unlink twice');
  await fs.rmdir('/x/y/z');
  t.same(await fs.readdir('/x/y'), [], 'rmdir removed the empty directory');
});

void t.test('whole files: replication, chunk size, chunk locations, conditional writes, append, busy', async (t) => {
  await fs.mkdir('/t/w');
  const big = pattern(3 * MiB + 777, 1);
  await fs.writeFile('/t/w/big', big, { replication: 2, chunkSizeBytes: MiB / 2 });
  const st = await fs.stat('/t/w/big');
  t.same([st.size, st.replication, st.chunkSizeBytes, st.chunkCount, st.complete], [big.length, 2, MiB / 2, 7, true]);
  t.ok((await fs.readFile('/t/w/big')).equals(big), 'reads back equal');
  const chunks = await fs.chunkLocations('/t/w/big');
  t.same(chunks.map((c) => c.lengthBytes), [...Array<number>(6).fill(MiB / 2), 777]);
  t.ok(chunks.every((c) => c.sealed && c.replicas.length === 2 && c.replicas.every((r) => /^127\.0\.0\.1:\d+$/.test(r.address))), 'sealed, two replicas each, with addresses');
  await rejectsCode(t, fs.chunkLocations('/t/w/none'), 'ENOENT', 'chunkLocations', '/t/w/none', 'chunk locations of a missing file');

  // Conditional replace.
  const stale = await fs.writeFile('/t/w/big', 'new', { ifGeneration: st.generation + 1000 }).catch((e: unknown) => e);
  t.ok(stale instanceof GenerationMismatchError, 'a wrong generation: GenerationMismatchError');
  t.match(stale, { code: 'EPRECONDITION', syscall: 'open', path: '/t/w/big' });
  t.ok((await fs.readFile('/t/w/big')).equals(big), 'and the file is unchanged');
  await fs.writeFile('/t/w/big', 'new', { ifGeneration: st.generation });
  t.equal(await fs.readFile('/t/w/big', { encoding: 'utf8' }), 'new', 'the right generation replaces it');
  await rejectsCode(t, fs.writeFile('/t/w/big', 'x', { flag: 'wx' }), 'EEXIST', 'open', '/t/w/big', "flag 'wx' on an existing file");
  await rejectsCode(t, fs.writeFile('/t/w', 'x', { flag: 'wx' }), 'EEXIST', 'open', '/t/w', "flag 'wx' on a directory: EEXIST, as O_EXCL");
  await rejectsCode(t, fs.writeFile('/t/w', 'x', { flag: 'ax' }), 'EEXIST', 'open', '/t/w', "flag 'ax' on a directory: EEXIST, as O_EXCL");
  await rejectsCode(t, fs.writeFile('/t/w', 'x', { flag: 'a' }), 'EISDIR', 'open', '/t/w', "flag 'a' on a directory");
  await fs.writeFile('/t/w/big', '+a', { flag: 'a' });
  t.equal(await fs.readFile('/t/w/big', { encoding: 'utf8' }), 'new+a', "flag 'a' appends");
  await rejectsCode(t, fs.writeFile('/t/w/big', 'x', { flag: 'ax' }), 'EEXIST', 'open', '/t/w/big', "flag 'ax' on an existing file");
  await fs.writeFile('/t/w/ax', 'ax', { flag: 'ax' });
  t.equal(await fs.readFile('/t/w/ax', { encoding: 'utf8' }), 'ax', "flag 'ax' creates");
  for (const flag of ['r+', 'w+', 'a+', 'r', 'bogus'])
    await rejectsCode(t, fs.writeFile('/t/w/big', 'x', { flag: flag as 'w' }), 'EINVAL', 'open', '/t/w/big', `flag '${flag}': EINVAL`);
  t.equal(await fs.readFile('/t/w/big', { encoding: 'utf8' }), 'new+a', 'and an unknown flag truncated nothing');

  // Append: new bytes start a new chunk after the existing ones.
  await fs.appendFile('/t/w/log', 'one\n');
  await fs.appendFile('/t/w/log', Buffer.from('two\n'));
  await fs.appendFile('/t/w/log', 'three\n');
  t.equal(await fs.readFile('/t/w/log', { encoding: 'utf8' }), 'one\ntwo\nthree\n', 'appended in order');
  t.equal((await fs.stat('/t/w/log')).chunkCount, 3, 'one chunk per append');
  await rejectsCode(t, fs.appendFile('/t/w', 'x'), 'EISDIR', 'open', '/t/w', 'append to a directory');

  // A file being written is busy for other writers.
  const handle = await fs.open('/t/w/busy', 'w');
  const busy = await fs.writeFile('/t/w/busy', 'other').catch((e: unknown) => e);
  t.ok(busy instanceof FileBusyError, 'another writer: FileBusyError');
  t.match(busy, { code: 'EBUSY', path: '/t/w/busy' });
  await handle.write('mine');
  await handle.close();
  t.equal(await fs.readFile('/t/w/busy', { encoding: 'utf8' }), 'mine');
  await fs.writeFile('/t/w/busy', 'after close');
  t.equal(await fs.readFile('/t/w/busy', { encoding: 'utf8' }), 'after close', 'free again once the handle closed');

  await rejectsCode(t, fs.writeFile('/t/w/bad', 'x', { replication: 0 }), 'EINVAL', 'open', '/t/w/bad', 'replication 0');
});

void t.test('chmod, utimes, setReplication and access (setattr)', async (t) => {
  await fs.mkdir('/t/attr');
  await fs.writeFile('/t/attr/f', 'x');
  const before = await fs.stat('/t/attr/f');
  await fs.chmod('/t/attr/f', 0o600);
  const st = await fs.stat('/t/attr/f');
  t.equal(st.mode, 0o600, 'chmod with a number');
  t.ok(st.generation > before.generation && st.ctimeMs >= before.ctimeMs, 'a new generation, ctime kept current');
  t.equal(st.mtimeMs, before.mtimeMs, 'chmod leaves mtime alone');
  await fs.chmod('/t/attr/f', '755');
  t.equal((await fs.stat('/t/attr/f')).mode, 0o755, 'chmod with an octal string');
  await fs.chmod('/t/attr/f', 0o100644);
  t.equal((await fs.stat('/t/attr/f')).mode, 0o644, 'file-type bits ignored, as chmod(2)');
  await fs.chmod('/t/attr', 0o700);
  t.equal((await fs.stat('/t/attr')).mode, 0o700, 'chmod of a directory');
  await rejectsCode(t, fs.chmod('/t/attr/f', 'rwx'), 'EINVAL', 'chmod', '/t/attr/f', 'a mode string that is not octal');
  await rejectsCode(t, fs.chmod('/t/attr/f', -1), 'EINVAL', 'chmod', '/t/attr/f', 'a negative mode');
  await rejectsCode(t, fs.chmod('/t/attr/missing', 0o644), 'ENOENT', 'chmod', '/t/attr/missing', 'chmod of a missing path');
  const stale = await fs.chmod('/t/attr/f', 0o600, { ifGeneration: before.generation }).catch((e: unknown) => e);
  t.ok(stale instanceof GenerationMismatchError, 'chmod under an old generation: GenerationMismatchError');
  t.equal((await fs.stat('/t/attr/f')).mode, 0o644, 'and nothing changed');

  const when = new Date('2024-02-29T12:34:56.789Z');
  await fs.utimes('/t/attr/f', when, when);
  t.equal((await fs.stat('/t/attr/f')).mtime.getTime(), when.getTime(), 'utimes with Dates');
  await fs.utimes('/t/attr/f', 0, 1_700_000_000.25);
  t.equal((await fs.stat('/t/attr/f')).mtimeMs, 1_700_000_000_250, 'utimes with seconds (fractions kept to the millisecond)');
  await fs.utimes('/t/attr/f', '0', '1600000000');
  t.equal((await fs.stat('/t/attr/f')).mtimeMs, 1_600_000_000_000, 'utimes with numeric strings');
  t.equal(await fs.readFile('/t/attr/f', { encoding: 'utf8' }), 'x', 'the bytes untouched');
  await rejectsCode(t, fs.utimes('/t/attr/f', 0, 'soon'), 'EINVAL', 'utime', '/t/attr/f', 'a time that is not a number');
  await rejectsCode(t, fs.utimes('/t/attr/f', 0, -5), 'EINVAL', 'utime', '/t/attr/f', 'a time before the epoch');
  await rejectsCode(t, fs.utimes('/t/attr/f', new Date(Number.NaN), 0), 'EINVAL', 'utime', '/t/attr/f', 'an invalid Date as atime');
  await rejectsCode(t, fs.utimes('/t/attr/missing', 0, 0), 'ENOENT', 'utime', '/t/attr/missing', 'utimes of a missing path');
  t.equal((await fs.stat('/t/attr/f')).mtimeMs, 1_600_000_000_000, 'refused calls changed nothing');

  await fs.access('/t/attr/f');
  await fs.access('/t/attr', 7);
  await fs.access('/t/attr/f', null); // F_OK, as Node's
  await rejectsCode(t, fs.access('/t/attr/missing'), 'ENOENT', 'access', '/t/attr/missing', 'access of a missing path');
  await rejectsCode(t, fs.access('/t/attr/f/under'), 'ENOTDIR', 'access', '/t/attr/f/under', 'access through a file');
  await rejectsCode(t, fs.access('/t/attr/f', 8), 'EINVAL', 'access', '/t/attr/f', 'an access mode out of range');

  // Replication of a written file: the leader drops surplus copies, then adds copies again.
  const data = pattern(2 * MiB + 99, 5);
  await fs.writeFile('/t/attr/rep', data, { replication: 3 });
  const copies = async (): Promise<number[]> => (await fs.chunkLocations('/t/attr/rep')).map((c) => c.replicas.length);
  t.same(await copies(), [3, 3, 3]);
  await fs.setReplication('/t/attr/rep', 1);
  t.equal((await fs.stat('/t/attr/rep')).replication, 1);
  await waitFor('one copy of every chunk', async () => ((await copies()).every((n) => n === 1) ? true : undefined), 30_000, () => 'copies not yet trimmed');
  t.ok((await fs.readFile('/t/attr/rep')).equals(data), 'readable from the one copy left');
  await fs.setReplication('/t/attr/rep', 2);
  await waitFor('two copies of every chunk', async () => ((await copies()).every((n) => n === 2) ? true : undefined), 30_000, () => 'copies not yet made');
  t.ok((await fs.readFile('/t/attr/rep')).equals(data), 'and from the new copies');
  // Of a directory: what files created below it inherit.
  await fs.mkdir('/t/attr/two');
  await fs.setReplication('/t/attr/two', 2);
  await fs.writeFile('/t/attr/two/f', 'y');
  t.equal((await fs.stat('/t/attr/two/f')).replication, 2, 'a new file takes its directory\'s factor');
  await rejectsCode(t, fs.setReplication('/t/attr/rep', 0), 'EINVAL', 'setreplication', '/t/attr/rep', 'zero copies');
  await rejectsCode(t, fs.setReplication('/t/attr/rep', 1.5), 'EINVAL', 'setreplication', '/t/attr/rep', 'a fraction of a copy');
  await rejectsCode(t, fs.setReplication('/t/attr/rep', 1000), 'EINVAL', 'setreplication', '/t/attr/rep', 'more copies than the cluster allows');
  await rejectsCode(t, fs.setReplication('/t/attr/none', 2), 'ENOENT', 'setreplication', '/t/attr/none', 'a missing path');
  t.equal((await fs.stat('/t/attr/rep')).replication, 2, 'refused calls changed nothing');
});

void t.test('deleting or trimming frees the replicas on the chunkservers without waiting for their hourly full report', async (t) => {
  await fs.mkdir('/t/gc');
  await fs.writeFile('/t/gc/a', pattern(2 * MiB + 1, 8), { replication: 3 });
  await fs.writeFile('/t/gc/b', pattern(MiB + 1, 9), { replication: 3 });
  const handlesOf = async (path: string): Promise<number[]> => (await fs.chunkLocations(path)).map((c) => c.handle);
  const a = await handlesOf('/t/gc/a');
  const b = await handlesOf('/t/gc/b');
  const holders = (handle: number): number => cluster.chunkservers.filter((s) => s.store.info(handle) !== undefined).length;
  t.same([...a, ...b].map(holders), [3, 3, 3, 3, 3], 'three copies of each chunk on disk');
  await fs.rm('/t/gc/a');
  await fs.setReplication('/t/gc/b', 1);
  await waitFor('the replicas gone from the disks', () => (a.every((h) => holders(h) === 0) && b.every((h) => holders(h) === 1) ? true : undefined), 30_000, () =>
    `copies on disk: a ${a.map(holders).join(',')}, b ${b.map(holders).join(',')}`,
  );
  t.pass('the deleted file holds no replica, the trimmed one a single copy of each chunk');
  t.equal((await fs.readFile('/t/gc/b')).length, MiB + 1, 'and the trimmed file reads back');
});

void t.test("a writer's metadata calls: one to open (create or append), one per chunk allocated but a new file's first, one to close", async (t) => {
  await fs.mkdir('/t/calls');
  const methods = ['Create', 'Stat', 'AcquireLease', 'AllocateChunk', 'SealChunk', 'CompleteFile'] as const;
  // Calls answered by the leader, by method (the counter counts every outcome).
  const counts = async (): Promise<Record<string, number>> => {
    const text = await (await cluster.metadata.leader()).metrics();
    const out: Record<string, number> = {};
    for (const m of methods) {
      out[m] = [...text.matchAll(new RegExp(`^rfs_metadata_requests_total\\{method="${m}",outcome="[^"]+"\\} (\\d+)$`, 'gm'))].reduce((n, x) => n + Number(x[1]), 0);
    }
    return out;
  };
  const callsOf = async (fn: () => Promise<void>): Promise<Record<string, number>> => {
    const before = await counts();
    await fn();
    const after = await counts();
    return Object.fromEntries(methods.map((m) => [m, after[m]! - before[m]!]));
  };
  const none = Object.fromEntries(methods.map((m) => [m, 0]));
  t.same(await callsOf(() => fs.writeFile('/t/calls/f', pattern(1000, 1))), { ...none, Create: 1, CompleteFile: 1 }, 'writeFile: create (with the lease and the first chunk), complete (with the seal)');
  t.same(await callsOf(() => fs.writeFile('/t/calls/g', pattern(2 * MiB + 7, 2))), { ...none, Create: 1, AllocateChunk: 2, SealChunk: 2, CompleteFile: 1 }, 'three chunks: two more allocated, the first two sealed on their own');
  t.same(await callsOf(() => fs.appendFile('/t/calls/f', pattern(10, 3))), { ...none, AcquireLease: 1, AllocateChunk: 1, CompleteFile: 1 }, 'appendFile to an existing file: the lease answers what the writer needs');
  t.same(await callsOf(() => fs.appendFile('/t/calls/new', pattern(10, 4))), { ...none, AcquireLease: 1, Create: 1, CompleteFile: 1 }, 'appendFile to a missing file: the lease (ENOENT), then create with the lease and the first chunk');
  t.same(await callsOf(() => fs.writeFile('/t/calls/empty', new Uint8Array(0))), { ...none, Create: 1, CompleteFile: 1 }, 'an empty file (its unused first chunk dropped by the completion)');
  t.same([...(await fs.readFile('/t/calls/f'))], [...pattern(1000, 1), ...pattern(10, 3)], 'the appended file reads back');
  t.same([...(await fs.readFile('/t/calls/new'))], [...pattern(10, 4)]);
  t.ok((await fs.readFile('/t/calls/g')).equals(pattern(2 * MiB + 7, 2)));
  t.equal((await fs.stat('/t/calls/empty')).size, 0);
  t.same(await Promise.all(['f', 'g', 'new', 'empty'].map(async (n) => (await fs.stat(`/t/calls/${n}`)).chunkCount)), [2, 3, 1, 0], 'chunk counts: no chunk left unused');
});

void t.test('a write aborted before its first byte leaves the file complete and free for the next writer at once', async (t) => {
  await fs.mkdir('/t/abort');
  const ac = new AbortController();
  const write = fs.writeFile('/t/abort/f', pattern(1000, 9), { signal: ac.signal });
  ac.abort();
  await t.rejects(write, { name: 'AbortError' });
  const st = await fs.stat('/t/abort/f');
  // The chunk given with the create was never written: the writer completes the file without it (a release
  // would leave it unsealed, the file incomplete and other writers refused until lease recovery dropped it).
  t.same([st.complete, st.size, st.chunkCount], [true, 0, 0], 'complete, empty, no chunk');
  await fs.appendFile('/t/abort/f', 'next');
  t.equal(await fs.readFile('/t/abort/f', { encoding: 'utf8' }), 'next', 'the next writer was not refused');
});

void t.test('copyFile and readdir({ recursive })', async (t) => {
  await fs.mkdir('/t/cp');
  const data = pattern(2 * MiB + 321, 11);
  await fs.writeFile('/t/cp/src', data, { replication: 2, chunkSizeBytes: MiB, compression: 'lz4', mode: 0o600 });
  await fs.copyFile('/t/cp/src', '/t/cp/dst');
  t.ok((await fs.readFile('/t/cp/dst')).equals(data), 'the bytes copied');
  const [a, b] = [await fs.stat('/t/cp/src'), await fs.stat('/t/cp/dst')];
  t.same([b.size, b.mode, b.replication, b.chunkSizeBytes, b.compression, b.complete], [a.size, 0o600, 2, MiB, 'lz4', true], "the source's mode, factor, chunk size and compression");
  t.not(b.ino, a.ino, 'a new file');
  await fs.writeFile('/t/cp/other', 'old');
  await fs.copyFile('/t/cp/src', '/t/cp/other');
  t.ok((await fs.readFile('/t/cp/other')).equals(data), 'an existing destination is replaced');
  await rejectsCode(t, fs.copyFile('/t/cp/src', '/t/cp/dst', fsConstants.COPYFILE_EXCL), 'EEXIST', 'copyfile', '/t/cp/src', 'COPYFILE_EXCL onto an existing file');
  await rejectsCode(t, fs.copyFile('/t/cp/src', '/t/cp/x', fsConstants.COPYFILE_FICLONE_FORCE), 'ENOTSUP', 'copyfile', '/t/cp/src', 'a forced clone');
  await fs.copyFile('/t/cp/src', '/t/cp/clone', fsConstants.COPYFILE_FICLONE);
  t.ok((await fs.readFile('/t/cp/clone')).equals(data), 'COPYFILE_FICLONE copies');
  await rejectsCode(t, fs.copyFile('/t/cp/none', '/t/cp/y'), 'ENOENT', 'copyfile', '/t/cp/none', 'a missing source');
  await rejectsCode(t, fs.copyFile('/t/cp', '/t/cp/y'), 'EISDIR', 'copyfile', '/t/cp', 'a directory as source');
  await rejectsCode(t, fs.copyFile('/t/cp/src', '/t/cp/missing/y'), 'ENOENT', 'copyfile', '/t/cp/src', 'a destination under a missing directory');
  await fs.copyFile('/t/cp/src', '/t/cp/src');
  t.ok((await fs.readFile('/t/cp/src')).equals(data), 'a file copied onto itself is left as it was');
  await rejectsCode(t, fs.copyFile('/t/cp/src', '/t/cp/src', fsConstants.COPYFILE_EXCL), 'EEXIST', 'copyfile', '/t/cp/src', 'onto itself, exclusive');
  t.same(await fs.readdir('/t/cp'), ['clone', 'dst', 'other', 'src'], 'nothing else was made');
  await rejectsCode(t, fs.writeFile('/t/cp/m', 'x', { mode: 'rw' }), 'EINVAL', 'open', '/t/cp/m', 'a mode that is not octal');

  await fs.mkdir('/t/cp/d1/d2', { recursive: true });
  await fs.writeFile('/t/cp/d1/f', 'f');
  await fs.writeFile('/t/cp/d1/d2/g', 'g');
  t.same(await fs.readdir('/t/cp', { recursive: true }), ['clone', 'd1', 'dst', 'other', 'src', 'd1/d2', 'd1/f', 'd1/d2/g'], 'relative paths, each directory before what is below it');
  t.same(await fs.readdir('/t/cp/d1/', { recursive: true }), ['d2', 'f', 'd2/g'], 'a trailing slash');
  const dirents = await fs.readdir('/t/cp/d1', { recursive: true, withFileTypes: true });
  t.same(dirents.map((d) => [d.parentPath, d.name, d.isDirectory()]), [['/t/cp/d1', 'd2', true], ['/t/cp/d1', 'f', false], ['/t/cp/d1/d2', 'g', false]], 'Dirents with their parent path');
  await rejectsCode(t, fs.readdir('/t/cp/src', { recursive: true }), 'ENOTDIR', 'scandir', '/t/cp/src', 'recursive readdir of a file');
});

void t.test('file handles: sequential appends only, reads at any position', async (t) => {
  const data = pattern(MiB + 4321, 2);
  const w = await fs.open('/t/h1', 'w');
  await w.write(data.subarray(0, 1000));
  const random = await w.write(data.subarray(0, 10), 0, 10, 0).catch((e: unknown) => e);
  t.ok(random instanceof AppendOnlyError, 'a write at position 0 after 1000 bytes: AppendOnlyError');
  t.match(random, { code: 'EINVAL', syscall: 'write', path: '/t/h1' });
  await w.write(data, 1000, data.length - 1000 - 21, 1000);
  await w.appendFile(data.subarray(data.length - 21));
  t.equal(w.bytesWritten, data.length);
  await rejectsCode(t, w.read(Buffer.alloc(10)), 'EBADF', 'read', '/t/h1', 'read on a writing handle');
  await w.close();
  await w.close();
  await rejectsCode(t, w.write('x'), 'EBADF', 'write', '/t/h1', 'write after close');
  t.ok((await fs.readFile('/t/h1')).equals(data), 'what the handle wrote');

  const r = await fs.open('/t/h1', 'r');
  const parts: Buffer[] = [];
  for (;;) {
    const { bytesRead, buffer } = await r.read(Buffer.alloc(300_000));
    if (bytesRead === 0) break;
    parts.push(Buffer.from(buffer.subarray(0, bytesRead)));
  }
  t.ok(Buffer.concat(parts).equals(data), 'sequential reads return the file');
  const at = await r.read(Buffer.alloc(100), 10, 50, MiB - 20);
  t.equal(at.bytesRead, 50);
  t.ok(Buffer.from(at.buffer.subarray(10, 60)).equals(data.subarray(MiB - 20, MiB + 30)), 'a read at a position, across chunks');
  t.equal((await r.stat()).size, data.length);
  await rejectsCode(t, r.write('x'), 'EBADF', 'write', '/t/h1', 'write on a reading handle');
  await r.close();
  await rejectsCode(t, r.read(), 'EBADF', 'read', '/t/h1', 'read after close');
  await rejectsCode(t, fs.open('/t/h1', 'r+' as 'r'), 'EINVAL', 'open', '/t/h1', "flags 'r+' (in-place writes) refused");
  await rejectsCode(t, fs.open('/t/none', 'r'), 'ENOENT', 'open', '/t/none', 'open of a missing file');
  await rejectsCode(t, fs.open('/t/h1', 'wx'), 'EEXIST', 'open', '/t/h1', "open 'wx' of an existing file");

  const a = await fs.open('/t/h1', 'a');
  await a.write('tail');
  await rejectsCode(t, a.write('x', 0, 1, 0), 'EINVAL', 'write', '/t/h1', 'append handles refuse positions too');
  await a.close();
  t.ok((await fs.readFile('/t/h1')).equals(Buffer.concat([data, Buffer.from('tail')])), "'a' appends after the existing bytes");
});

void t.test('streams: round trip, ranges, backpressure both ways', async (t) => {
  const data = pattern(4 * MiB + 99, 3);
  // A producer faster than the cluster: write() returns false and the stream's buffer stays bounded.
  const highWaterMark = 256 * 1024;
  const ws = fs.createWriteStream('/t/s1', { highWaterMark });
  let sawFalse = false;
  let maxBuffered = 0;
  const piece = 64 * 1024;
  for (let offset = 0; offset < data.length; offset += piece) {
    const ok = ws.write(data.subarray(offset, offset + piece));
    maxBuffered = Math.max(maxBuffered, ws.writableLength);
    if (!ok) {
      sawFalse = true;
      await new Promise((resolve) => ws.once('drain', resolve));
    }
  }
  ws.end();
  await finished(ws);
  t.ok(sawFalse, 'write() returned false (backpressure)');
  t.ok(maxBuffered <= highWaterMark + piece, `the stream buffered at most ${maxBuffered} bytes`);
  t.equal(ws.bytesWritten, data.length);
  t.ok((await fs.readFile('/t/s1')).equals(data), 'finish: the file is complete and equal');

  // pipeline() from a Readable into a write stream, and back.
  await pipeline(Readable.from([data.subarray(0, MiB), data.subarray(MiB)]), fs.createWriteStream('/t/s2'));
  const back: Buffer[] = [];
  await pipeline(fs.createReadStream('/t/s2', { highWaterMark: 300_000 }), new Writable({ write(c: Buffer, _e, cb) { back.push(c); cb(); } }));
  t.ok(Buffer.concat(back).equals(data), 'pipeline round trip');

  const range: Buffer[] = [];
  for await (const c of fs.createReadStream('/t/s2', { start: 100, end: MiB + 50 })) range.push(c as Buffer);
  t.ok(Buffer.concat(range).equals(data.subarray(100, MiB + 51)), 'start/end (inclusive) like Node');

  // A slow consumer: the read stream stops reading at its high-water mark.
  const slowMark = 64 * 1024;
  const rs = fs.createReadStream('/t/s2', { highWaterMark: slowMark });
  const first = await new Promise<Buffer>((resolve) => rs.once('data', resolve));
  rs.pause();
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.ok(rs.bytesRead <= first.length + 2 * slowMark, `paused consumer: ${rs.bytesRead} bytes read from the cluster, not the whole file`);
  t.ok(rs.readableLength <= slowMark, 'the stream buffer holds at most its high-water mark');
  const rest: Buffer[] = [first];
  rs.on('data', (c: Buffer) => rest.push(c));
  rs.resume();
  await new Promise((resolve) => rs.once('end', resolve));
  t.ok(Buffer.concat(rest).equals(data), 'resumed, the rest arrives');

  const missing = fs.createReadStream('/t/none');
  const error = await new Promise((resolve) => missing.once('error', resolve));
  t.match(error, { code: 'ENOENT', path: '/t/none' }, 'a read stream of a missing file errors with ENOENT');
  const dirStream = fs.createWriteStream('/');
  t.match(await new Promise((resolve) => dirStream.once('error', resolve)), { code: 'EISDIR' }, 'a write stream over a directory errors');
});

void t.test('AbortSignal everywhere', async (t) => {
  const aborted = AbortSignal.abort();
  const e = await fs.stat('/', { signal: aborted }).catch((x: unknown) => x);
  t.ok(e instanceof AbortError, 'AbortError');
  t.match(e, { name: 'AbortError', code: 'ABORT_ERR', syscall: 'stat', path: '/' }, 'shaped like Node');
  await rejectsCode(t, fs.readFile('/t/s1', { signal: aborted }), 'ABORT_ERR', 'open', '/t/s1', 'readFile');
  await rejectsCode(t, fs.mkdir('/ab', { signal: aborted }), 'ABORT_ERR', 'mkdir', '/ab', 'mkdir');
  await fs.writeFile('/t/keep', 'kept');
  await rejectsCode(t, fs.writeFile('/t/keep', 'lost', { signal: aborted }), 'ABORT_ERR', 'open', '/t/keep', 'writeFile with an aborted signal');
  t.equal(await fs.readFile('/t/keep', { encoding: 'utf8' }), 'kept', 'an already aborted writeFile does not truncate the file');

  // Mutations aborted while queued behind the client's in-flight limit never go out.
  await fs.mkdir('/t/q');
  const queued = new AbortController();
  const many = Array.from({ length: 200 }, (_, i) => fs.mkdir(`/t/q/d${i}`, { signal: queued.signal }).then(() => 'ok', (x: unknown) => (x as RfsError).code));
  queued.abort();
  t.same(new Set(await Promise.all(many)), new Set(['ABORT_ERR']), 'every call rejects with AbortError');
  // Queued after all 200 (the queue is FIFO): had an aborted call leaked, it would have gone out before this one.
  await fs.mkdir('/t/q/last');
  const applied = (await fs.readdir('/t/q')).length - 1;
  t.ok(applied <= mutationsInflightMax, `${applied} applied: only those already sent (at most ${mutationsInflightMax})`);

  // Aborted in the middle of a large write: the call rejects and the writer gives its lease back.
  const controller = new AbortController();
  const big = pattern(16 * MiB, 4);
  const writing = fs.writeFile('/t/ab-big', big, { signal: controller.signal });
  setTimeout(() => controller.abort(), 30);
  await rejectsCode(t, writing, 'ABORT_ERR', 'open', '/t/ab-big', 'writeFile aborted midway');
  await fs.writeFile('/t/ab-big', 'again');
  t.equal(await fs.readFile('/t/ab-big', { encoding: 'utf8' }), 'again', 'the lease was released: the file can be written again');

  // A write stream aborted midway errors with AbortError.
  const c2 = new AbortController();
  const ws = fs.createWriteStream('/t/ab-stream', { signal: c2.signal });
  const errored = new Promise((resolve) => ws.once('error', resolve));
  ws.write(big.subarray(0, MiB));
  c2.abort();
  t.match(await errored, { name: 'AbortError', code: 'ABORT_ERR', path: '/t/ab-stream' }, 'write stream aborted');
  await fs.writeFile('/t/ab-stream', 'ok');
  t.equal(await fs.readFile('/t/ab-stream', { encoding: 'utf8' }), 'ok', 'and its file is writable again');

  const c3 = new AbortController();
  const rs = fs.createReadStream('/t/s1', { signal: c3.signal, highWaterMark: 64 * 1024 });
  const rsError = new Promise((resolve) => rs.once('error', resolve));
  rs.once('data', () => c3.abort());
  t.match(await rsError, { name: 'AbortError', code: 'ABORT_ERR' }, 'read stream aborted');
});

void t.test('one client shared by many concurrent calls', async (t) => {
  await fs.mkdir('/t/c');
  // More concurrent mutations than the servers keep unacknowledged results for one session (256).
  const names = Array.from({ length: 400 }, (_, i) => `d${String(i).padStart(3, '0')}`);
  await Promise.all(names.map((n) => fs.mkdir(`/t/c/${n}`)));
  t.same(await fs.readdir('/t/c'), names, 'all 400 directories, each once');
  const files = Array.from({ length: 8 }, (_, i) => pattern(300_000 + i, 10 + i));
  await Promise.all([
    ...files.map((f, i) => fs.writeFile(`/t/c/d00${i}/f`, f)),
    ...names.slice(100, 200).map((n) => fs.stat(`/t/c/${n}`)),
    ...names.slice(200, 300).map((n) => fs.rmdir(`/t/c/${n}`)),
  ]);
  const back = await Promise.all(files.map((_, i) => fs.readFile(`/t/c/d00${i}/f`)));
  t.ok(back.every((b, i) => b.equals(files[i]!)), 'concurrent writes read back equal');
  t.equal((await fs.readdir('/t/c')).length, 300, 'concurrent removals applied once each');
});

void t.test('clusterInfo', async (t) => {
  const info = await fs.clusterInfo();
  t.equal(info.status['role'], 'leader', "the leader's status");
  t.equal((info.status['members'] as unknown[]).length, 3, 'three members');
  t.equal(info.chunkservers.length, 3, 'three chunkservers');
  t.ok(info.chunkservers.every((c) => c['state'] === 'live'), 'all live');
});

void t.test('compression: lz4 per file or inherited from the directory; the bytes read back the same', async (t) => {
  const stored = async (): Promise<number> => {
    let sum = 0;
    for (const server of cluster.chunkservers) {
      const metric = server.metrics.registry.getSingleMetric('rfs_chunkserver_compressed_stored_bytes');
      sum += (await metric?.get())?.values[0]?.value ?? 0;
    }
    return sum;
  };
  await fs.mkdir('/t/z', { compression: 'lz4' });
  t.equal((await fs.stat('/t/z')).compression, 'lz4', 'the directory says lz4');
  const text = Buffer.from('a compressible line of text, over and over again\n'.repeat(50_000));
  const before = await stored();
  await fs.writeFile('/t/z/inherited', text);
  t.equal((await fs.stat('/t/z/inherited')).compression, 'lz4', 'a file below it inherits lz4');
  t.ok((await fs.readFile('/t/z/inherited')).equals(text), 'read back equal');
  const packed = (await stored()) - before;
  t.ok(packed > 0 && packed < text.length, `its three replicas together store less than one copy: ${packed} bytes for 3 × ${text.length}`);
  await fs.writeFile('/t/z/plain', text, { compression: 'none' });
  t.equal((await fs.stat('/t/z/plain')).compression, 'none', 'a per-file choice overrides the directory');
  await fs.writeFile('/t/chosen', text, { compression: 'lz4' });
  t.equal((await fs.stat('/t/chosen')).compression, 'lz4', 'lz4 chosen at create time in a plain directory');
  t.ok((await fs.readFile('/t/chosen')).equals(text));
  await t.rejects(fs.mkdir('/t/bad', { compression: 'zstd' as 'lz4' }), { code: 'EINVAL' }, 'an unknown kind: EINVAL');
});

void t.test("appendFile ('a') racing on a missing file: no EEXIST (the loser appends, or waits its turn as EBUSY)", async (t) => {
  const other: RfsClient = await connect({ metadata: cluster.addresses, timeoutMs: 30_000 });
  t.teardown(() => other.close());
  let appended = 0;
  for (let i = 0; i < 6; i++) {
    const path = `/t/race${i}`;
    const results = await Promise.allSettled([fs.appendFile(path, 'a'), other.appendFile(path, 'b')]);
    for (const r of results) {
      if (r.status === 'fulfilled') appended++;
      else t.equal((r.reason as RfsError).code, 'EBUSY', `round ${i}: only a busy file may refuse (${String(r.reason)})`);
    }
    const text = await fs.readFile(path, { encoding: 'utf8' });
    t.equal(text.length, results.filter((r) => r.status === 'fulfilled').length, `round ${i}: every append that resolved is in the file`);
  }
  t.ok(appended >= 6, `at least one append per round succeeded (${appended} of 12)`);
});
