/** Shared glue between fast-check and tap for the property suites. */
import fc from 'fast-check';

/** The part of a tap test these helpers use. */
export interface Reporter {
  pass(message: string): unknown;
  fail(message: string): unknown;
}

/**
 * Checks a property with a fixed seed (runs are reproducible; set FC_SEED to explore others) and reports
 * it as one tap assertion, with fast-check's counterexample on failure.
 */
export function holds<Ts>(t: Reporter, name: string, property: fc.IProperty<Ts>, numRuns = 200): void {
  const envSeed = Number(process.env['FC_SEED']);
  const seed = Number.isInteger(envSeed) ? envSeed : 0x5eed;
  const details = fc.check(property, { numRuns, seed });
  if (details.failed) t.fail(`${name}: ${fc.defaultReportMessage(details) ?? 'failed'}`);
  else t.pass(`${name} (${details.numRuns} runs)`);
}

/** Distinct node ids in [1, max], in arbitrary order. */
export function nodeIds(max: number, maxLength = max, minLength = 0): fc.Arbitrary<number[]> {
  return fc.uniqueArray(fc.integer({ min: 1, max }), { minLength, maxLength });
}
