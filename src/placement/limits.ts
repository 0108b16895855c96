/**
 * Named limits of the chunk manager, with their units. They are leader-local policy (not part of the
 * replicated protocol): members may run with different values, and a new leader simply applies its own.
 */
export interface ChunkManagerLimits {
  /** A chunkserver silent for longer than this is declared dead (setChunkserverState dead). */
  readonly heartbeatTimeoutMs: number;
  /**
   * A new leader knows nobody's last heartbeat: every chunkserver gets this long (from the moment the leader
   * first sees it) before it can be judged. At least heartbeatTimeoutMs.
   */
  readonly leaderGraceMs: number;
  /** Copies in flight per chunkserver (as source or target), at most. */
  readonly reReplicationsPerServerMax: number;
  /** Copies in flight in the whole cluster (re-replication and rebalancing), at most. */
  readonly reReplicationsClusterMax: number;
  /** A copy not confirmed by the target's chunk report within this is forgotten (and may be retried). */
  readonly replicationTimeoutMs: number;
  /** Rebalancing moves in flight, at most (they share the cluster-wide copy budget too). */
  readonly rebalanceMovesMax: number;
  /** The rebalancer acts while the fullest and emptiest live servers' used fractions differ by more (‰). */
  readonly rebalanceThresholdPermille: number;
  /** A proposal this manager made is not repeated for the same chunk or server within this (unless settled). */
  readonly proposalRetryMs: number;
  /** Commands queued for one chunkserver, at most (the rest wait for the next tick). */
  readonly commandsPerServerMax: number;
  /** Chunks one chunk report may list, at most (a larger full report is refused). */
  readonly reportChunksMax: number;
  /** Replicas reported bad by readers and not yet deleted, remembered at most (more reports: EAGAIN). */
  readonly badReplicasMax: number;
  /**
   * A file whose lease expired this long ago is recovered (its writer vanished; one that was only late to
   * renew may take the lease again until then).
   */
  readonly leaseRecoveryDelayMs: number;
  /** The recovery holder's lease on a file being recovered, extended while the recovery runs. */
  readonly recoveryLeaseMs: number;
  /** Lease recovery waits this long for every replica's answer before it goes on with those it has (or asks again). */
  readonly leaseRecoveryAnswerWaitMs: number;
  /** An unsealed chunk none of whose replicas answered for this long is dropped by lease recovery (length 0). */
  readonly leaseRecoveryReplicasLostMs: number;
  /** Chunks under lease recovery at once, and recoveries begun per pass, at most. */
  readonly leaseRecoveriesMax: number;
  /**
   * Chunkservers in the registry, at most: a new one's registration is refused (EINVAL, naming the limit)
   * while the registry holds this many. Decommissioned ones leave it with ForgetChunkserver.
   */
  readonly chunkserversMax: number;
  /**
   * Garbage collection without waiting for reports: each pass judges at most this many replicas the live
   * servers are known (from their reports) to hold, resuming where the last pass stopped, and orders the
   * garbage among them deleted (replicas of deleted files, stale versions, surplus copies).
   */
  readonly gcSweepReplicasPerPass: number;
  /** A delete ordered by the sweep and not yet confirmed by the server's report is ordered again after this. */
  readonly gcDeleteRetryMs: number;
  /**
   * A copy whose listing this manager proposed is never ordered deleted for this long (the proposal's outcome
   * may be unknown, and it may still apply), unless the view lists it first.
   */
  readonly listingGuardMs: number;
}

export const defaultChunkManagerLimits: ChunkManagerLimits = {
  heartbeatTimeoutMs: 10_000,
  leaderGraceMs: 10_000,
  reReplicationsPerServerMax: 2,
  reReplicationsClusterMax: 64,
  replicationTimeoutMs: 60_000,
  rebalanceMovesMax: 4,
  rebalanceThresholdPermille: 100,
  proposalRetryMs: 5_000,
  commandsPerServerMax: 64,
  reportChunksMax: 1_000_000,
  badReplicasMax: 10_000,
  leaseRecoveryDelayMs: 5_000,
  recoveryLeaseMs: 5 * 60_000,
  leaseRecoveryAnswerWaitMs: 15_000,
  leaseRecoveryReplicasLostMs: 10 * 60_000,
  leaseRecoveriesMax: 256,
  chunkserversMax: 10_000,
  gcSweepReplicasPerPass: 4_096,
  gcDeleteRetryMs: 60_000,
  listingGuardMs: 60_000,
};

/** Crashes loudly on limits that contradict each other (checked once, at construction). */
export function checkChunkManagerLimits(l: ChunkManagerLimits): void {
  const positive: (keyof ChunkManagerLimits)[] = [
    'heartbeatTimeoutMs',
    'reReplicationsPerServerMax',
    'reReplicationsClusterMax',
    'replicationTimeoutMs',
    'proposalRetryMs',
    'commandsPerServerMax',
    'reportChunksMax',
    'badReplicasMax',
    'recoveryLeaseMs',
    'leaseRecoveryAnswerWaitMs',
    'leaseRecoveriesMax',
    'chunkserversMax',
    'gcSweepReplicasPerPass',
    'gcDeleteRetryMs',
    'listingGuardMs',
  ];
  for (const k of positive) {
    if (!Number.isSafeInteger(l[k]) || l[k] < 1) throw new RangeError(`chunk manager limit ${k} must be a positive integer`);
  }
  if (!Number.isSafeInteger(l.leaseRecoveryDelayMs) || l.leaseRecoveryDelayMs < 0) throw new RangeError('leaseRecoveryDelayMs must be a non-negative integer');
  if (!Number.isSafeInteger(l.leaseRecoveryReplicasLostMs) || l.leaseRecoveryReplicasLostMs < 0)
    throw new RangeError('leaseRecoveryReplicasLostMs must be a non-negative integer');
  if (l.leaderGraceMs < l.heartbeatTimeoutMs) throw new RangeError('leaderGraceMs must be at least heartbeatTimeoutMs');
  if (l.rebalanceMovesMax > l.reReplicationsClusterMax)
    throw new RangeError('rebalanceMovesMax must not exceed reReplicationsClusterMax');
}
