/**
 * The planted bugs the Jepsen suite is shown to catch (`npm run jepsen:bugs`, jepsen/bugs.ts), each with the
 * run that exposes it, and how a violation is quoted from a run's verdict.txt. The switch itself is
 * src/cli/planted-bugs.ts. docs/JEPSEN.md, "Planted bugs".
 */
import type { ReadsFrom } from './workloads/types.ts';

export interface JepsenBug {
  readonly workload: 'register' | 'append';
  /** The nemesis that exposes it. */
  readonly nemesis: string;
  readonly readsFrom: ReadsFrom;
  /** Why this nemesis exposes it. */
  readonly how: string;
}

/** The planted bugs the suite is shown to catch, with the run that exposes each. */
export const jepsenBugs: Readonly<Record<string, JepsenBug>> = {
  'read-without-quorum': {
    workload: 'register',
    nemesis: 'partition',
    readsFrom: 'any',
    how: 'a member cut off from the majority keeps answering reads from its own state while the majority moves on',
  },
  'commit-without-quorum': {
    workload: 'register',
    nemesis: 'partition',
    readsFrom: 'leader',
    how: 'the leader acknowledges writes it alone holds; cut off, they are lost when the majority elects another leader',
  },
};

/** The lines of verdict.txt that say what was violated (the checker's or the append check's). */
export function violationEvidence(verdictText: string): string[] {
  const lines = verdictText.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const named = lines.filter((l) => /^key .*: not linearizable$|cannot be linearized|^(lost|duplicated|phantom|reordered): /.test(l));
  if (named.length > 0) return named.slice(0, 4);
  // Unknown shape: the summary line after the bug line.
  return lines.slice(1, 2);
}

