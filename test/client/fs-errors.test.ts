/**
 * The error mapping of the client library, exhaustively: every metadata error code (the state machine's
 * and the service's own) maps to the documented class and Node-style code; data-path errors too.
 */
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { DataPlaneError } from '../../src/chunkserver/dataplane/index.ts';
import { FileIoError } from '../../src/client/data-path.ts';
import { metadataErrorTable, toRfsError } from '../../src/client/errors.ts';
import { fsErrorCodes } from '../../src/fsm/errors.ts';
import { MetadataError } from '../../src/metadata/client.ts';
import {
  AbortError,
  AppendOnlyError,
  FileBusyError,
  GenerationMismatchError,
  metadataErrorCodes,
  NoLeaderError,
  RfsError,
  SessionError,
  TimeoutError,
} from '../../src/index.ts';

/** The documented mapping (docs/CLIENT.md): metadata code → [class, code the caller sees]. */
const expected: Record<string, [new (...args: never[]) => RfsError, string]> = {
  ENOENT: [RfsError, 'ENOENT'],
  EEXIST: [RfsError, 'EEXIST'],
  ENOTDIR: [RfsError, 'ENOTDIR'],
  EISDIR: [RfsError, 'EISDIR'],
  ENOTEMPTY: [RfsError, 'ENOTEMPTY'],
  EINVAL: [RfsError, 'EINVAL'],
  ENAMETOOLONG: [RfsError, 'ENAMETOOLONG'],
  EPRECONDITION: [GenerationMismatchError, 'EPRECONDITION'],
  ELEASE: [FileBusyError, 'EBUSY'],
  ESTALE: [RfsError, 'ESTALE'],
  ESESSION: [SessionError, 'ESESSION'],
  EBADMSG: [RfsError, 'EPROTO'],
  NOT_LEADER: [NoLeaderError, 'ETIMEDOUT'],
  UNAVAILABLE: [NoLeaderError, 'ETIMEDOUT'],
  TIMEOUT: [TimeoutError, 'ETIMEDOUT'],
  ECONFCHANGE: [RfsError, 'EAGAIN'],
  ENOSPC: [RfsError, 'ENOSPC'],
};

void t.test('every metadata error code maps to its class and code', (t) => {
  t.same([...metadataErrorCodes].sort(), Object.keys(expected).sort(), 'the table covers exactly the codes the service answers');
  t.same(Object.keys(metadataErrorTable).sort(), Object.keys(expected).sort());
  for (const code of fsErrorCodes) t.ok(metadataErrorCodes.includes(code), `state machine code ${code} is mapped`);
  for (const code of metadataErrorCodes) {
    const [cls, nodeCode] = expected[code]!;
    const cause = new MetadataError(code, 'the detail');
    const e = toRfsError(cause, { syscall: 'stat', path: '/p' });
    t.ok(e instanceof cls, `${code} → ${cls.name}`);
    t.ok(e instanceof RfsError && e instanceof Error, `${code}: an RfsError`);
    t.match(e, { code: nodeCode, syscall: 'stat', path: '/p', cause }, `${code} → code ${nodeCode}, with syscall, path and cause`);
    t.match(e.message, new RegExp(`^${nodeCode}: .*, stat '/p' \\(.*the detail\\)$`), `${code}: message like Node's, with the server's detail`);
    if (cls === RfsError) t.equal(e.name, 'RfsError');
  }
  t.end();
});

void t.test('other errors', (t) => {
  const ctx = { syscall: 'open', path: '/f' };
  t.match(toRfsError(new MetadataError('EWHAT', 'x'), ctx), { code: 'EIO', detail: /metadata error EWHAT/ }, 'an unknown metadata code: EIO');
  t.match(toRfsError(new FileIoError('EIO', 'every replica failed'), ctx), { code: 'EIO', syscall: 'open', path: '/f' });
  t.match(toRfsError(new FileIoError('EBADF', 'closed'), ctx), { code: 'EBADF' });
  t.match(toRfsError(new FileIoError('EINVAL', 'bad range'), ctx), { code: 'EINVAL' });
  const leaseLost = toRfsError(new FileIoError('EIO', 'lease renewal failed', new MetadataError('ELEASE', 'expired')), ctx);
  t.ok(leaseLost instanceof FileBusyError, 'a writer stopped by a metadata error reports that error');
  t.match(toRfsError(new DataPlaneError('CONNECTION_LOST', 'gone'), ctx), { code: 'EIO', detail: /CONNECTION_LOST/ });
  const grpcError = Object.assign(new Error('13 INTERNAL: boom'), { code: grpc.status.INTERNAL });
  t.match(toRfsError(grpcError, ctx), { code: 'EIO', detail: /INTERNAL/ }, 'a gRPC failure the client does not retry: EIO');
  t.match(toRfsError('a string', ctx), { code: 'EIO' });
  const own = new AppendOnlyError(ctx, 'x');
  t.equal(toRfsError(own, { syscall: 'other' }), own, 'RfsErrors pass unchanged');
  t.match(own, { name: 'AppendOnlyError', code: 'EINVAL', errno: -22 });
  const abort = new AbortError(ctx);
  t.match(abort, { name: 'AbortError', code: 'ABORT_ERR', errno: undefined, message: "ABORT_ERR: the operation was aborted, open '/f'" });
  t.match(new RfsError('ENOENT', { syscall: 'rename', path: '/a', dest: '/b' }), { errno: -2, message: "ENOENT: no such file or directory, rename '/a' -> '/b'" });
  t.end();
});
