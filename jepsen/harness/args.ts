/** Command-line helpers shared by the Jepsen scripts (run.ts, bugs.ts). */

/** `--name VALUE` as an integer ≥ `min`, or `fallback` when absent; a RangeError names the flag otherwise. */
export function integerArg(value: string | undefined, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name}: an integer ≥ ${min}, not '${value}'`);
  return n;
}
