/**
 * Plain data types shared by the Raft core, its driver, storage and transports.
 * Everything here is serialisable with msgpackr; nothing here does I/O.
 */

/** A Raft member id. Always a positive integer; `NONE` (0) means "no node". */
export type NodeId = number;
export const NONE: NodeId = 0;

export const EntryType = { Normal: 0, ConfChange: 1 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** One log entry. Invariant: index >= 1, term >= 1. An empty `data` on a Normal entry is a no-op. */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must survive a crash besides the log: the current term, the vote in it, and the commit index. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const emptyHardState: HardState = { term: 0, vote: NONE, commit: 0 };

/**
 * Membership. `votersOutgoing` is non-empty only in a joint configuration (C_old,new).
 * `learnersNext` are voters of the outgoing config that become learners when the joint config is left.
 */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly learnersNext: readonly NodeId[];
  readonly autoLeave: boolean;
}

export const emptyConfState: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * A membership change (etcd's ConfChangeV2). An empty `changes` list means "leave the joint configuration".
 * transition: 'auto' uses one step when the change is a single voter change, joint consensus otherwise, and
 * leaves the joint configuration automatically; 'joint-implicit' always enters joint and leaves automatically;
 * 'joint-explicit' enters joint and waits for an explicit leave (empty change).
 */
export interface ConfChange {
  readonly transition: 'auto' | 'joint-implicit' | 'joint-explicit';
  readonly changes: readonly ConfChangeSingle[];
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/** One bounded piece of a snapshot in flight from leader to follower. */
export interface SnapshotChunk {
  readonly metadata: SnapshotMetadata;
  /** Byte offset of `data` within the whole snapshot. */
  readonly offset: number;
  readonly totalBytes: number;
  readonly data: Uint8Array;
}

export type MessageType =
  | 'app'
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'snap'
  | 'snapResp'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp'
  | 'transferLeader';

export const messageTypes: readonly MessageType[] = [
  'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp',
  'snap', 'snapResp', 'timeoutNow', 'readIndex', 'readIndexResp', 'transferLeader',
];

/**
 * One Raft message. Fields that a type does not use are 0 / empty.
 * - app: (logTerm, index) identify the entry preceding `entries`; commit is the leader's commit index.
 * - appResp: index is the follower's last matching index (accept) or the rejected index (reject);
 *   on reject, rejectHint/logTerm give the follower's hint for fast back-off.
 * - vote/preVote: (logTerm, index) describe the candidate's last entry; context 'transfer' forces the vote.
 * - snap: carries one snapshot chunk; snapResp acknowledges `index` bytes received (or rejects).
 * - heartbeat/readIndex: context carries the read request id being confirmed.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly context: Uint8Array | null;
  readonly snapshot: SnapshotChunk | null;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly lead: NodeId;
  readonly role: Role;
}

/** A linearizable read point: once the state machine has applied `index`, the read for `context` may be served. */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

/**
 * The core's output batch. The caller must, in order:
 *  1. send `messages` (they are safe to send before persisting: leader replication traffic);
 *  2. persist `snapshot` (if any), `entries` (a first index <= the last stored index truncates the suffix
 *     from there) and `hardState` (if any) in one atomic, synced write;
 *  3. send `messagesAfterPersist` (votes, acknowledgements: they promise durability);
 *  4. apply `snapshot` then `committedEntries` to the state machine, serve `readStates` once applied;
 *  5. call `advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  readonly readStates: readonly ReadState[];
}
