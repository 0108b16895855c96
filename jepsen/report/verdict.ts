/**
 * The linearizability verdict (register: `--model cas-register`; namespace: `--model namespace`), from the checker's CLI (jepsen/checker/cli.ts, the program behind
 * `npm run -s check`) run as a child process on the history: exit 0 linearizable, 1 not, 2 unknown, its
 * last line the verdict. When the checker is not in this build the verdict says so: nothing is guessed.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const repoRoot = resolve(import.meta.dirname, '..', '..');
export const checkerCliPath = join(repoRoot, 'jepsen', 'checker', 'cli.ts');
/** The checker has its own time limit ("unknown"); this only guards against a hung child. */
export const checkerTimeoutMs = 15 * 60_000;
/** Checker output kept in verdict.txt. */
const outputBytesMax = 1 << 20;

/** `valid` / `invalid`: a workload's own check (append). */
export type VerdictKind = 'linearizable' | 'not linearizable' | 'valid' | 'invalid' | 'unknown' | 'unchecked';

export interface Verdict {
  readonly kind: VerdictKind;
  /** The line printed last and written last in verdict.txt. */
  readonly line: string;
  /** The checker's whole output (stdout then stderr), or why there is none. */
  readonly output: string;
  readonly exitCode: number | null;
}

/** The checker's models the workloads use: register → cas-register (failed cas ignored), namespace → namespace. */
export type VerdictModel = 'cas-register' | 'namespace';
/**
 * The checker's own time limit for a namespace history (then `unknown`): one tree is one partition, and a run
 * under faults leaves many `info` mutations, each free to apply anywhere after its invocation.
 */
export const namespaceCheckTimeLimitS = 600;

export async function checkHistory(historyPath: string, print: (line: string) => void = () => {}, model: VerdictModel = 'cas-register'): Promise<Verdict> {
  if (!existsSync(checkerCliPath)) {
    const line = 'unchecked: the checker is not in this build';
    return { kind: 'unchecked', line, output: `${checkerCliPath} does not exist`, exitCode: null };
  }
  const modelArgs = model === 'namespace' ? ['--model', 'namespace', '--time-limit-s', String(namespaceCheckTimeLimitS)] : ['--model', 'cas-register', '--failed-cas', 'ignore'];
  const args = ['--import', 'tsx', checkerCliPath, ...modelArgs, historyPath];
  print(`checking: node ${args.join(' ')}`);
  return new Promise((resolveVerdict) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer): void => {
      if (output.length < outputBytesMax) output += chunk.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), checkerTimeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      const last = output.trimEnd().split('\n').at(-1) ?? '';
      const kind: VerdictKind = code === 0 ? 'linearizable' : code === 1 ? 'not linearizable' : 'unknown';
      const line = kind === 'unknown' && last !== 'unknown' ? `unknown (checker exit ${code ?? 'killed'}: ${last})` : kind;
      resolveVerdict({ kind, line, output, exitCode: code });
    });
  });
}
