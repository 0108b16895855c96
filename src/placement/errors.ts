/** Expected failures of the chunk manager, with stable codes (broken invariants assert instead). */
export const placementErrorCodes = [
  /** No live chunkserver can take a new replica. */
  'ENOSPC',
  /** The chunkserver id is not registered. */
  'ENOENT',
  /** This member is not (or not yet) running the chunk manager: not the leader, or the leader's view is loading. */
  'EAGAIN',
  /** A report or heartbeat out of bounds. */
  'EINVAL',
] as const;
export type PlacementErrorCode = (typeof placementErrorCodes)[number];

export class PlacementError extends Error {
  override readonly name = 'PlacementError';
  constructor(
    readonly code: PlacementErrorCode,
    message: string,
  ) {
    super(message);
  }
}
