/**
 * rfs: a distributed file system for Node.js. The client library, shaped like `node:fs/promises`:
 *
 *   import { connect } from 'rfs';
 *   const fs = await connect({ metadata: ['127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003'] });
 *   await fs.writeFile('/hello.txt', 'hello');
 *
 * Every call is documented in docs/CLIENT.md.
 */
export { connect, RfsClient, RfsDirent, RfsStats, mutationsInflightMax, timeoutMsDefault } from './client/fs.ts';
export type { CallOptions, ClusterInfo, ConnectOptions, ReadFileOptions, TimeLike, WriteFileOptions } from './client/fs.ts';
export { RfsFileHandle } from './client/handle.ts';
export type { OpenFlags } from './client/handle.ts';
export { RfsReadStream, RfsWriteStream, readStreamHighWaterMarkDefault, writeStreamHighWaterMarkDefault } from './client/streams.ts';
export type { ReadStreamOptions, WriteStreamOptions } from './client/streams.ts';
export {
  AbortError,
  AppendOnlyError,
  FileBusyError,
  GenerationMismatchError,
  metadataErrorCodes,
  NoLeaderError,
  RfsError,
  SessionError,
  TimeoutError,
} from './client/errors.ts';
export type { ErrorContext, MetadataErrorCode } from './client/errors.ts';
export type { ChunkLocation, ChunkReplica } from './metadata/client.ts';
