/** Expected failures of the Raft layer, with stable codes. Broken invariants use assert() instead. */
import type { NodeId } from './types.ts';

export type RaftErrorCode = 'NotLeader' | 'ProposalDropped' | 'Stopped' | 'ConfChangeRejected' | 'ReadDropped' | 'LogWriteStalled';

export class RaftError extends Error {
  constructor(
    readonly code: RaftErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RaftError';
  }
}

/** This node is not the leader. `leaderHint` is the leader it knows of, or 0. */
export class NotLeaderError extends RaftError {
  constructor(readonly leaderHint: NodeId) {
    super('NotLeader', leaderHint === 0 ? 'not the leader; no leader known' : `not the leader; try node ${leaderHint}`);
    this.name = 'NotLeaderError';
  }
}

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

/** Crash loudly on a broken invariant. Never used for bad input. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
