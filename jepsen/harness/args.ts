/** Command-line helpers shared by the Jepsen scripts (run.ts, bugs.ts, reliability.ts). */

/** `--name VALUE` as an integer ≥ `min`, or `fallback` when absent; a RangeError names the flag otherwise. */
export function integerArg(value: string | undefined, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name}: an integer ≥ ${min}, not '${value}'`);
  return n;
}

/**
 * A script's options from its arguments: `{ options }`, or `{ exit }` after printing the usage (`--help`:
 * `parse` returns undefined, exit 0) or the parse error and the usage (exit 3).
 */
export function parseOrUsage<T>(script: string, usage: string, parse: (argv: string[]) => T | undefined, argv: string[]): { options: T } | { exit: number } {
  let options: T | undefined;
  try {
    options = parse(argv);
  } catch (e) {
    process.stderr.write(`${script}: ${(e as Error).message}\n${usage}\n`);
    return { exit: 3 };
  }
  if (options === undefined) {
    process.stdout.write(`${usage}\n`);
    return { exit: 0 };
  }
  return { options };
}
