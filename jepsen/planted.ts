/**
 * The planted bugs the Jepsen suite is shown to catch (`npm run jepsen:bugs`, jepsen/bugs.ts), each with the
 * run that exposes it, and how a violation is quoted from a run's verdict.txt. The switch itself is
 * src/cli/planted-bugs.ts. docs/JEPSEN.md, "Planted bugs".
 */
import type { ReadsFrom } from './workloads/types.ts';

export interface JepsenBugCase {
  /** The planted bug (src/cli/planted-bugs.ts). */
  readonly bug: string;
  readonly workload: 'register' | 'append' | 'namespace';
  /** The nemesis that exposes it. */
  readonly nemesis: string;
  readonly readsFrom: ReadsFrom;
  /** Why this run exposes it. */
  readonly how: string;
}

/** `bug@workload`: one case's name (report folders, output). */
export const caseName = (c: JepsenBugCase): string => `${c.bug}@${c.workload}`;

const stalePartition = 'a member cut off from the majority keeps answering reads from its own state while the majority moves on';
const lostCommits = 'a leader cut off from the majority acknowledges writes only it holds; the next leader never had them';

/**
 * The planted bugs the suite is shown to catch, each under the run that exposes it: every checker of the
 * suite (the linearizability checker on the register and namespace workloads, the append check) has at least one.
 */
export const jepsenBugCases: readonly JepsenBugCase[] = [
  { bug: 'read-without-quorum', workload: 'register', nemesis: 'partition', readsFrom: 'any', how: stalePartition },
  { bug: 'commit-without-quorum', workload: 'register', nemesis: 'partition', readsFrom: 'leader', how: lostCommits },
  { bug: 'read-without-quorum', workload: 'append', nemesis: 'partition', readsFrom: 'any', how: stalePartition },
  { bug: 'commit-without-quorum', workload: 'append', nemesis: 'partition', readsFrom: 'leader', how: lostCommits },
  { bug: 'read-without-quorum', workload: 'namespace', nemesis: 'partition', readsFrom: 'any', how: stalePartition },
  { bug: 'commit-without-quorum', workload: 'namespace', nemesis: 'partition', readsFrom: 'leader', how: lostCommits },
];

/** The lines of verdict.txt that say what was violated (the checker's or the append check's). */
export function violationEvidence(verdictText: string): string[] {
  const lines = verdictText.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const named = lines.filter((l) => /^key .*: not linearizable$|cannot be linearized|^(lost|duplicated|phantom|reordered): /.test(l));
  if (named.length > 0) return named.slice(0, 4);
  // Unknown shape: the summary line after the bug line.
  return lines.slice(1, 2);
}

