/**
 * `npm run -s check -- --model cas-register|kv|namespace [--initial V] [--failed-cas ignore|compare-failed]
 *  [--time-limit-s N] FILE`
 *
 * Prints what it checked, a failing window if any, and as its last line the verdict. Exit codes:
 * 0 linearizable, 1 not linearizable, 2 unknown (time or memory limit), 3 bad usage or unreadable /
 * malformed history. `--initial` is read as EDN (`0`, `nil`, `"a"`, `:k`).
 */
import { readFileSync, statSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { EdnSyntaxError, readEdnForms } from './edn.ts';
import type { EdnValue } from './edn.ts';
import type { ModelSpec } from './index.ts';
import { HistoryError, ModelError, checkHistory, describeResult } from './index.ts';
import type { CheckerPlantedBug, CheckOptions, Verdict } from './wgl.ts';
import { checkerPlantedBugs } from './wgl.ts';
import { modelNames } from './models.ts';
import type { ModelName } from './models.ts';

export const exitCodes = { linearizable: 0, 'not linearizable': 1, unknown: 2, usage: 3 } as const;

/** Histories larger than this are refused (the file is read whole). */
export const historyBytesMax = 512 * 1024 * 1024;

const usage = `usage: npm run -s check -- --model cas-register|kv|namespace [--initial V] [--failed-cas ignore|compare-failed] [--time-limit-s N] FILE
exit codes: 0 linearizable, 1 not linearizable, 2 unknown, 3 bad usage or unreadable history`;

class UsageError extends Error {}

interface Args {
  spec: ModelSpec;
  file: string;
  timeLimitMs?: number;
}

function parseArgs(argv: readonly string[]): Args {
  let model: string | undefined;
  let initial: EdnValue | undefined;
  let failedCas: string | undefined;
  let timeLimitMs: number | undefined;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--model':
        model = value();
        break;
      case '--initial':
        initial = parseInitial(value());
        break;
      case '--failed-cas':
        failedCas = value();
        break;
      case '--time-limit-s': {
        const s = Number(value());
        if (!Number.isFinite(s) || s <= 0) throw new UsageError('--time-limit-s needs a positive number of seconds');
        timeLimitMs = s * 1000;
        break;
      }
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        if (flag.startsWith('-')) throw new UsageError(`unknown option ${flag}`);
        files.push(arg);
    }
  }
  if (model === undefined) throw new UsageError('--model is required');
  if (!(modelNames as readonly string[]).includes(model)) throw new UsageError(`unknown model ${model} (${modelNames.join(', ')})`);
  if (files.length !== 1 || files[0] === undefined) throw new UsageError('give exactly one history file');
  const spec: ModelSpec = { model: model as ModelName };
  if (model !== 'cas-register' && (initial !== undefined || failedCas !== undefined)) throw new UsageError('--initial and --failed-cas apply to cas-register only');
  // Knossos' cas-register histories start from 0.
  if (model === 'cas-register') spec.initial = initial ?? 0;
  if (failedCas !== undefined) {
    if (failedCas !== 'ignore' && failedCas !== 'compare-failed') throw new UsageError('--failed-cas is ignore or compare-failed');
    spec.failedCas = failedCas;
  }
  const args: Args = { spec, file: files[0] };
  if (timeLimitMs !== undefined) args.timeLimitMs = timeLimitMs;
  return args;
}

function parseInitial(text: string): EdnValue {
  try {
    const forms = readEdnForms(text);
    const only = forms[0];
    if (forms.length !== 1 || only === undefined) throw new UsageError(`--initial must be one EDN value, got '${text}'`);
    return only.value;
  } catch (e) {
    if (e instanceof EdnSyntaxError) throw new UsageError(`--initial: ${e.message}`);
    throw e;
  }
}

/** Runs the command; returns the exit code. Output goes through `print` (one call per line). */
export function main(argv: readonly string[], print: (line: string) => void, printError: (line: string) => void): number {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e.message !== '') printError(`check: ${e.message}`);
    printError(usage);
    return exitCodes.usage;
  }
  let text: string;
  try {
    const size = statSync(args.file).size;
    if (size > historyBytesMax) throw new Error(`${size} bytes is over the ${historyBytesMax}-byte limit`);
    text = readFileSync(args.file, 'utf8');
  } catch (e) {
    printError(`check: cannot read ${args.file}: ${(e as Error).message}`);
    return exitCodes.usage;
  }
  const options: CheckOptions = {};
  if (args.timeLimitMs !== undefined) options.timeLimitMs = args.timeLimitMs;
  // Tests only: run a deliberately broken checker (see CheckerPlantedBug).
  const bug = process.env['RFS_CHECKER_PLANTED_BUG'];
  if (bug !== undefined && bug !== '') {
    if (!(checkerPlantedBugs as readonly string[]).includes(bug)) {
      printError(`check: RFS_CHECKER_PLANTED_BUG must be one of ${checkerPlantedBugs.join(', ')}`);
      return exitCodes.usage;
    }
    options.plantedBug = bug as CheckerPlantedBug;
  }
  let verdict: Verdict;
  try {
    const result = checkHistory(text, args.spec, options);
    for (const line of describeResult(result)) print(line);
    verdict = result.verdict;
  } catch (e) {
    if (e instanceof HistoryError || e instanceof ModelError) {
      printError(`check: ${args.file}: ${e.message}`);
      return exitCodes.usage;
    }
    throw e;
  }
  print(verdict);
  return exitCodes[verdict];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = main(
    process.argv.slice(2),
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
  );
}
