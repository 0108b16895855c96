/** The metadata state machine's public surface. */
export { MetadataStateMachine } from './state-machine.ts';
export type { ApplyResult, MetadataStateMachineOptions } from './state-machine.ts';
export { MemoryKv, compareBytes } from './kv.ts';
export type { Kv, KvBatch, KvPair, KvRange, KvReader } from './kv.ts';
export { COMMAND_FORMAT, decodeCommand, encodeCommand, opTypes } from './commands.ts';
export type { ChunkSeal, Command, LeaseRequest, Op, OpType, SessionStamp } from './commands.ts';
export {
  CommandDecodeError,
  FsError,
  SnapshotFormatError,
  StateFormatError,
  failure,
  fsErrorCodes,
  success,
} from './errors.ts';
export type { FsErrorCode, FsFailure, FsResult, FsSuccess } from './errors.ts';
export { defaultFsmLimits } from './limits.ts';
export type { FsmLimits } from './limits.ts';
export { checkNamespaceInvariants } from './invariants.ts';
export { decodeSnapshot, encodeSnapshot, SNAPSHOT_FORMAT } from './snapshot.ts';
export type {
  ChunkInfo,
  ChunkPage,
  ChunkserverInfo,
  DirEntry,
  Page,
  PageOptions,
  ReaddirPage,
  StatInfo,
} from './queries.ts';
export type { ChunkserverState } from './records.ts';
export type { InodeRef } from './namespace.ts';
export type { ChunkserverRef, NewChunk } from './writers.ts';
export { fsmBugs } from './bugs.ts';
export type { FsmBug } from './bugs.ts';
