/**
 * The linearizability checker's entry: read a history (EDN or JSON lines), pair it, check it against a
 * model, and describe the verdict for people. Workloads call `checkHistory`; `cli.ts` wraps it.
 */
import type { EdnValue } from './edn.ts';
import { showEdn } from './edn.ts';
import type { Operation } from './history.ts';
import { describeOperation, pairOperations, parseHistory } from './history.ts';
import type { AnyModel, FailedCas, ModelName } from './models.ts';
import { casRegister, kvModel } from './models.ts';
import { namespaceModel } from './namespace-model.ts';
import type { CheckOptions, CheckResult, FailureWindow } from './wgl.ts';
import { checkWithModel } from './wgl.ts';

export type { CheckOptions, CheckResult, FailureWindow, Verdict } from './wgl.ts';
export { HistoryError } from './history.ts';
export { ModelError } from './models.ts';

export interface ModelSpec {
  model: ModelName;
  /** cas-register only. */
  initial?: EdnValue;
  failedCas?: FailedCas;
}

export function makeModel(spec: ModelSpec): AnyModel {
  switch (spec.model) {
    case 'cas-register': {
      const options: { initial?: EdnValue; failedCas?: FailedCas } = {};
      if (spec.initial !== undefined) options.initial = spec.initial;
      if (spec.failedCas !== undefined) options.failedCas = spec.failedCas;
      return casRegister(options);
    }
    case 'kv':
      return kvModel();
    case 'namespace':
      return namespaceModel();
  }
}

/** Parses, pairs and checks a history's text. Throws HistoryError / ModelError for bad input. */
export function checkHistory(text: string, spec: ModelSpec, options: CheckOptions = {}): CheckResult & { operations: Operation[] } {
  const operations = pairOperations(parseHistory(text));
  return { ...checkWithModel(makeModel(spec), operations, options), operations };
}

/** Operations of a prefix shown in full at most; the rest are counted. */
const prefixShownMax = 8;
/** Concurrent operations listed at most. */
const concurrentShownMax = 16;

/** A readable account of a result; the verdict itself is not included (the CLI prints it last). */
export function describeResult(result: CheckResult): string[] {
  const lines: string[] = [];
  const ops = result.partitions.reduce((sum, p) => sum + p.operations, 0);
  lines.push(`checked ${ops} operations in ${result.partitions.length} partition(s) in ${(result.elapsedMs / 1000).toFixed(3)} s`);
  for (const p of result.partitions) {
    const label = p.key === '' ? 'history' : `key ${p.key}`;
    if (p.verdict === 'unknown') lines.push(`${label}: unknown (${p.reason ?? 'no reason'}) after ${p.cacheEntries} cached configurations`);
    if (p.failure) lines.push(`${label}: not linearizable`, ...describeFailure(p.failure));
  }
  return lines;
}

export function describeFailure(w: FailureWindow): string[] {
  const lines: string[] = [];
  const hidden = Math.max(0, w.prefix.length - prefixShownMax);
  lines.push(`  longest linearizable prefix: ${w.prefix.length} operation(s)${hidden > 0 ? `, the last ${prefixShownMax} shown` : ''}`);
  for (const step of w.prefix.slice(hidden)) lines.push(`    ${describeOperation(step.op)}  ⇒ ${step.state}`);
  lines.push(`  state then: ${w.state}`);
  lines.push(`  cannot be linearized before it returned: ${describeOperation(w.stuck)}`);
  if (w.concurrent.length === 0) {
    lines.push('  no other operation was pending');
  } else {
    const more = w.concurrent.length - concurrentShownMax;
    lines.push('  pending with it, tried next from that state without success:');
    for (const op of w.concurrent.slice(0, concurrentShownMax)) lines.push(`    ${describeOperation(op)}`);
    if (more > 0) lines.push(`    … and ${more} more`);
  }
  return lines;
}

export { showEdn };
