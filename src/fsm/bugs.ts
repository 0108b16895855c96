/**
 * Planted bugs of the metadata state machine, for the simulator's self-test only (test/sim): each switch
 * breaks one guarantee so that the simulator can show it catches the breakage. Off unless a test passes
 * them to MetadataStateMachine.open; production code never does.
 */
export const fsmBugs = [
  /** rename onto an existing target unlinks the target's entry but leaves the replaced inode behind. */
  'fsm-non-atomic-rename',
  /** Session stamps are ignored: a retried (clientId, seq) is applied again. */
  'fsm-no-session-dedup',
  /** A session's by-use index entry never moves after its opening, however long it is used (sessions.ts). */
  'fsm-session-index-frozen',
] as const;
export type FsmBug = (typeof fsmBugs)[number];

export const noFsmBugs: ReadonlySet<FsmBug> = new Set();
