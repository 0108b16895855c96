/** The chunk manager (the metadata leader's background work on chunks): its public surface. */
export { ChunkManager, emptyView, summarizeView } from './manager.ts';
export type {
  BadReplicaOutcome,
  ChunkManagerOptions,
  ChunkManagerStatus,
  ChunkReport,
  ChunkView,
  ChunkserverCommand,
  ClusterView,
  Proposal,
  Reply,
  ReportedChunk,
  ServerView,
  Usage,
} from './manager.ts';
export { ChunkService } from './service.ts';
export type { AllocatedChunk, ChunkServiceDeps } from './service.ts';
export { loadChunkView, loadClusterView, ViewTracker, viewChangesKeptMax } from './view.ts';
export { chooseTargets, usedPermille } from './select.ts';
export type { Candidate } from './select.ts';
export { checkChunkManagerLimits, defaultChunkManagerLimits } from './limits.ts';
export type { ChunkManagerLimits } from './limits.ts';
export { PlacementError, placementErrorCodes } from './errors.ts';
export type { PlacementErrorCode } from './errors.ts';
export { placementBugs, noPlacementBugs } from './bugs.ts';
export type { PlacementBug } from './bugs.ts';
