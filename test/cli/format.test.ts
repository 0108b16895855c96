/** rfsctl's pure helpers: sizes, tables, path normalisation, error messages and exit codes. */
import t from 'tap';
import { PassThrough } from 'node:stream';
import { MetadataError } from '../../src/metadata/client.ts';
import { FileIoError } from '../../src/client/data-path.ts';
import { exitCodes, toCliError } from '../../src/cli/rfsctl/errors.ts';
import { humanBytes, humanSeconds, ProgressBar, table } from '../../src/cli/rfsctl/format.ts';
import { rfsPath } from '../../src/cli/rfsctl/files.ts';
import { parseAddresses } from '../../src/cli/rfsctl/context.ts';

void t.test('sizes and durations', (t) => {
  t.equal(humanBytes(0), '0 B');
  t.equal(humanBytes(1023), '1023 B');
  t.equal(humanBytes(1536), '1.5 KiB');
  t.equal(humanBytes(1024 ** 3), '1.0 GiB');
  t.equal(humanBytes(300 * 1024 ** 2), '300 MiB');
  t.equal(humanSeconds(59.4), '59s');
  t.equal(humanSeconds(61), '1m01s');
  t.equal(humanSeconds(3 * 3600 + 120), '3h02m');
  t.equal(humanSeconds(Infinity), '?');
  t.end();
});

void t.test('tables align numbers right, text left', (t) => {
  t.equal(table(['ID', 'NAME', 'SIZE'], [[1, 'a', 10], [22, 'bbb', '-']]), 'ID  NAME  SIZE\n 1  a       10\n22  bbb      -');
  t.end();
});

void t.test('rfs paths are absolute and normalised', (t) => {
  t.equal(rfsPath('a/b/'), '/a/b');
  t.equal(rfsPath('/'), '/');
  t.equal(rfsPath('//x/./y/../z'), '/x/z');
  t.equal(rfsPath('../..'), '/');
  t.end();
});

void t.test('--metadata is a list of host:port', (t) => {
  t.same(parseAddresses(' 127.0.0.1:7001, h:2 ,'), ['127.0.0.1:7001', 'h:2']);
  t.same(parseAddresses('[::1]:7001'), ['[::1]:7001']);
  t.throws(() => parseAddresses(''), { name: 'CliError', message: /at least one/ });
  t.throws(() => parseAddresses('host'), { name: 'CliError', message: /not host:port/ });
  t.end();
});

void t.test('errors: a message naming the subject and the code, and a stable exit code', (t) => {
  t.match(toCliError(new MetadataError('ENOENT', 'x'), '/a/b'), { exitCode: 2, message: '/a/b: no such file or directory (ENOENT)', code: 'ENOENT' });
  t.match(toCliError(new MetadataError('EINVAL', 'replication: 99 > 16'), '/f'), { exitCode: 2, message: '/f: invalid argument: replication: 99 > 16 (EINVAL)' });
  t.match(toCliError(new MetadataError('UNAVAILABLE', 'no leader')), { exitCode: 3 });
  t.match(toCliError(new MetadataError('ESOMETHING', 'new code')), { exitCode: 2, message: 'new code (ESOMETHING)' });
  t.match(toCliError(new FileIoError('EIO', 'every replica of chunk 3 failed')), { exitCode: exitCodes.io });
  t.match(toCliError(Object.assign(new Error("ENOENT: no such file or directory, stat 'x'"), { code: 'ENOENT' }), 'x'), { exitCode: 2 });
  t.match(toCliError(new TypeError('oops')), { exitCode: exitCodes.internal, message: /internal error: TypeError: oops/ });
  t.end();
});

void t.test('the progress bar draws only when active, with percent, rate and ETA', (t) => {
  const quiet = new PassThrough();
  const bar = new ProgressBar(quiet, 'put /x', 100, false);
  bar.advance(50);
  bar.finish();
  t.equal(quiet.read(), null, 'inactive: nothing drawn');
  const tty = new PassThrough();
  const active = new ProgressBar(tty, 'get /y', 4096, true);
  active.advance(1024);
  active.finish();
  const text = String(tty.read());
  t.match(text, /^\rget \/y \[#{6}\.{18}\]  25%  1\.0 KiB \/ 4\.0 KiB  \S+ \S+\/s  ETA \S+/);
  t.ok(text.endsWith('\n'));
  t.end();
});
