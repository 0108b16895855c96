/**
 * Planted bugs of the chunk manager, for the simulator's self-test only (test/sim): each switch breaks one
 * rule so that the simulator can show its chunk checks catch the breakage. Production code never sets them.
 */
export const placementBugs = [
  /** Re-replication and rebalancing may pick a target that already holds the chunk. */
  'placement-rereplicate-onto-holder',
  /** Replicas on dead servers count as live: lost replicas are never replaced. */
  'placement-count-dead-replicas',
  /** Chunk reports are never checked for stale versions: stale replicas stay (and stay listed). */
  'placement-keep-stale',
  /** Reported replicas of chunks no file has any more (deleted files, abandoned chunks) are never deleted. */
  'placement-keep-orphans',
  /**
   * Garbage is judged only when a chunkserver reports it: no sweep of the replicas servers hold, no delete of
   * a trimmed or moved-away copy. Replicas of deleted files and surplus copies stay on the disks until the
   * server's next full report (hourly).
   */
  'placement-gc-on-reports-only',
  /** Lease recovery never begins: files whose writer vanished keep their unsealed chunks for good. */
  'placement-skip-lease-recovery',
  /**
   * The leader's kept view of chunks (view.ts ViewTracker) ignores changes to files (inodes written, deleted
   * or queued for reclamation): a file's deletion, or its new replication factor, never reaches its chunks.
   */
  'view-ignore-file-changes',
] as const;
export type PlacementBug = (typeof placementBugs)[number];

export const noPlacementBugs: ReadonlySet<PlacementBug> = new Set();
