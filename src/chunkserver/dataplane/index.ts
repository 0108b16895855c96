/**
 * The chunkserver's bulk data plane: the write pipeline and reads, over TCP or in memory.
 * Protocol: protocol.ts. Server: `DataServer`. Clients: `PipelineWriter`, `readRange`, `askLocalReplica`,
 * `copyReplica`.
 */
export type { ConnectionHandlers, DataConnection, DataNetwork, Dialer, Listener } from './connection.ts';
export { copyReplica } from './copy.ts';
export type { CopyOptions } from './copy.ts';
export { DataPlaneError, toDataPlaneError } from './errors.ts';
export type { DataPlaneErrorCode } from './errors.ts';
export { FrameDecoder, encodeFrame } from './frame.ts';
export { defaultDataPlaneLimits, packetBytesMaxLimit, packetBytesMin, resolveLimits } from './limits.ts';
export type { DataPlaneLimits } from './limits.ts';
export { MemoryDataNetwork } from './memory-network.ts';
export type { Scheduler } from './memory-network.ts';
export type { ChainLink, LocalReplicaMessage, Message, ReplicaAck } from './protocol.ts';
export { askLocalReplica, readRange } from './read.ts';
export type { ReadRequest } from './read.ts';
export type { StallWatch } from './stall.ts';
export { KeepaliveTimer, StallTimer, pipelineIdleMsDefault, pipelineKeepaliveMsDefault, pipelineStallMsDefault, readStallMsDefault, realStallWatch } from './stall.ts';
export { DataServer } from './server.ts';
export type { DataServerOptions, LocalReadToken } from './server.ts';
export { TcpDataNetwork } from './tcp.ts';
export { PipelineFailedError, PipelineWriter, defaultPacketBytes } from './writer.ts';
export type { PipelineWriterOptions, SealedReplica } from './writer.ts';
