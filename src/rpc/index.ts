/** Raft transports between metadata servers: gRPC (production) and in-process (tests), with shared counters. */
export { GrpcRaftTransport, defaultGrpcTransportLimits, frameBytesMax } from './grpc-raft-transport.ts';
export type { GrpcRaftTransportOptions, GrpcTransportLimits, PeerAddresses } from './grpc-raft-transport.ts';
export { LocalRaftHub, LocalRaftTransport, defaultLocalTransportLimits } from './local-transport.ts';
export type { LocalRaftHubOptions, LocalTransportLimits } from './local-transport.ts';
export { raftProtoPath, raftSendMethod, raftTransportService } from './raft-proto.ts';
export type { RaftBatchWire, SendAckWire } from './raft-proto.ts';
export { dropReasons, emptyDropCounts, totalDropped } from './transport-stats.ts';
export type {
  DropCounts,
  DropReason,
  PeerTransportStats,
  StatsSource,
  TransportStats,
} from './transport-stats.ts';
