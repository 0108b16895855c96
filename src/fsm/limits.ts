/**
 * Named limits of the metadata state machine, with their units.
 *
 * Every limit except `snapshotChunkBytes` decides the outcome of some command (an EINVAL, an ENAMETOOLONG, a
 * session eviction), so it is part of the replicated protocol: every replica of one group must run with the
 * same values, or replicas diverge. Change them only together with a format change.
 */

export interface FsmLimits {
  /** UTF-8 bytes of a whole path, at most (ENAMETOOLONG above). */
  readonly pathBytesMax: number;
  /** UTF-8 bytes of one path component, at most (ENAMETOOLONG above). */
  readonly nameBytesMax: number;
  /** Entries in one readdir page, at most (a larger requested limit is clamped). */
  readonly readdirPageEntriesMax: number;
  /** Chunks in one chunk-location page, at most (clamped). */
  readonly chunkPageEntriesMax: number;
  /** Chunkservers in one registry page, at most (clamped). */
  readonly chunkserverPageEntriesMax: number;
  /** Bytes of one snapshot chunk (one frame), at most, unless a single key/value pair is larger. */
  readonly snapshotChunkBytes: number;
  /** Client sessions kept, at most; opening one more evicts the least recently used. */
  readonly sessionsMax: number;
  /** A session unused for this long (in stamped milliseconds) is dropped (up to sessionUseGranularityMs later). */
  readonly sessionIdleMs: number;
  /**
   * Stamped milliseconds a session's by-use index entry may lag its last use: the entry moves only when the
   * session is used at least this long after the entry's time (sessions.ts). Idle expiry is that much late at
   * most, and eviction's "least recently used" that coarse; in exchange a busy session's command does not
   * delete and rewrite its index entry every time.
   */
  readonly sessionUseGranularityMs: number;
  /** Results one session keeps for commands the client has not acknowledged yet, at most. */
  readonly sessionResultsMax: number;
  /** Idle sessions dropped after one command, at most (bounds the work of one command). */
  readonly sessionExpiriesPerCommandMax: number;
  /** Keys of deleted inodes reclaimed after one command, at most (bounds the work of one command). */
  readonly reclaimKeysPerCommandMax: number;
  /** Milliseconds one lease grant or renewal lasts, at most. */
  readonly leaseDurationMsMax: number;
  /** Replication factor of a file, at most (and replicas of one chunk). */
  readonly replicationMax: number;
  /** Chunk size of a file, in bytes: at least / at most. */
  readonly chunkSizeBytesMin: number;
  readonly chunkSizeBytesMax: number;
  /** Chunks of one file, at most. */
  readonly fileChunksMax: number;
  /** UTF-8 bytes of an owner, lease holder, chunkserver address or rack, at most. */
  readonly labelBytesMax: number;
  /** Replication factor and chunk size of the root directory, inherited by everything created below it. */
  readonly defaultReplication: number;
  readonly defaultChunkSizeBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const defaultFsmLimits: FsmLimits = {
  pathBytesMax: 4096,
  nameBytesMax: 255,
  readdirPageEntriesMax: 1000,
  chunkPageEntriesMax: 1000,
  chunkserverPageEntriesMax: 1000,
  snapshotChunkBytes: 256 * KiB,
  sessionsMax: 100_000,
  sessionIdleMs: 60 * 60 * 1000,
  sessionUseGranularityMs: 1000,
  sessionResultsMax: 256,
  sessionExpiriesPerCommandMax: 4,
  reclaimKeysPerCommandMax: 256,
  leaseDurationMsMax: 10 * 60 * 1000,
  replicationMax: 16,
  chunkSizeBytesMin: 64 * KiB,
  chunkSizeBytesMax: 1 * GiB,
  fileChunksMax: 1 << 20,
  labelBytesMax: 255,
  defaultReplication: 3,
  defaultChunkSizeBytes: 64 * MiB,
};
