/**
 * Sequential specifications the checker searches against. A model turns each operation into its own
 * input once (`prepare`: validate, drop what cannot matter), then the search calls `step` millions of
 * times, so states are small immutable values and `stateKey` is a cheap canonical string.
 *
 * Contract: `step` is pure and deterministic; `stateKey(a) === stateKey(b)` iff a and b behave alike for
 * every future input (the search's cache relies on it); `partitionKey` splits a history into independent
 * sub-histories (P-compositionality: the whole is linearizable iff each part is), each checked from
 * `init()`.
 */
import type { EdnValue } from './edn.ts';
import { canonicalKey, showEdn } from './edn.ts';
import type { Operation } from './history.ts';

export interface Model<S, I> {
  readonly name: string;
  init(): S;
  /**
   * The input for an operation, or null to leave it out (e.g. a read that failed: it did not happen and
   * observed nothing). Throws `ModelError` for an operation the model does not know.
   */
  prepare(op: Operation): I | null;
  /** The state after `input`, or undefined if `input` cannot happen in `state`. */
  step(state: S, input: I): S | undefined;
  stateKey(state: S): string;
  showState(state: S): string;
  /** Operations with different partition keys never interact. */
  partitionKey(op: Operation): string;
}

/** Any model, for code that only passes models through. */
export type AnyModel = Model<unknown, unknown>;

export class ModelError extends Error {
  readonly code = 'EMODEL_OP';
  constructor(
    readonly detail: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${detail}`);
    this.name = 'ModelError';
  }
}

// ---------------------------------------------------------------------------------------------------
// Compare-and-set register

/**
 * What a :fail cas means. `ignore`: it did not happen (Knossos). `compare-failed`: the compare ran and
 * saw a value other than `from` (etcd's transaction answers so): an operation with that precondition.
 */
export type FailedCas = 'ignore' | 'compare-failed';

export interface CasRegisterOptions {
  /** The register's value before any operation (Knossos: 0 for its cas-register histories). */
  initial?: EdnValue;
  failedCas?: FailedCas;
}

type RegisterInput =
  | { kind: 'read'; expect: string | null }
  | { kind: 'write'; to: string }
  | { kind: 'cas'; from: string; to: string }
  | { kind: 'cas-failed'; from: string };

/**
 * One register per key (no key: one register). The state is the canonical text of the value; an :ok read
 * whose value is nil matches any value (Jepsen records nil when a read's result is unknown).
 */
export function casRegister(options: CasRegisterOptions = {}): Model<string, RegisterInput> {
  const initial = canonicalKey(options.initial ?? null);
  const failedCas = options.failedCas ?? 'ignore';
  return {
    name: 'cas-register',
    init: () => initial,
    prepare(op) {
      switch (op.f) {
        case 'read':
          // A read that failed or may not have happened constrains nothing.
          if (op.status !== 'ok') return null;
          return { kind: 'read', expect: op.output === null ? null : canonicalKey(op.output) };
        case 'write':
          if (op.status === 'fail') return null;
          return { kind: 'write', to: canonicalKey(op.value) };
        case 'cas': {
          const v = op.value;
          if (!Array.isArray(v) || v.length !== 2) throw new ModelError(`cas needs a value [from to], got ${showEdn(v)}`, op.callLine);
          const from = canonicalKey(v[0] ?? null);
          if (op.status === 'fail') return failedCas === 'ignore' ? null : { kind: 'cas-failed', from };
          return { kind: 'cas', from, to: canonicalKey(v[1] ?? null) };
        }
        default:
          throw new ModelError(`the cas-register model has no operation '${op.f}' (read, write, cas)`, op.callLine);
      }
    },
    step(state, input) {
      switch (input.kind) {
        case 'read':
          return input.expect === null || input.expect === state ? state : undefined;
        case 'write':
          return input.to;
        case 'cas':
          return input.from === state ? input.to : undefined;
        case 'cas-failed':
          return input.from === state ? undefined : state;
      }
    },
    stateKey: (state) => state,
    showState: (state) => state,
    partitionKey: (op) => (op.key === undefined ? '' : canonicalKey(op.key)),
  };
}

// ---------------------------------------------------------------------------------------------------
// Key-value map of strings

type KvInput = { kind: 'get'; expect: string | null } | { kind: 'put'; value: string } | { kind: 'append'; suffix: string };

/**
 * A map from string keys to string values: get, put, append (to an absent key: the suffix alone). The key
 * is the event's `key`, or else the first element of a Jepsen "independent" tuple `[k v]`. Partitioned by
 * key, so each search sees one key and the state is that key's value (null: absent). An :ok get of nil
 * means the key was absent. Numbers are taken as their decimal text.
 */
export function kvModel(): Model<string | null, KvInput> {
  return {
    name: 'kv',
    init: () => null,
    prepare(op) {
      const { value, output } = kvParts(op);
      switch (op.f) {
        case 'get':
          if (op.status !== 'ok') return null;
          return { kind: 'get', expect: output === null ? null : kvString(output, op, 'get result') };
        case 'put':
          if (op.status === 'fail') return null;
          return { kind: 'put', value: kvString(value, op, 'put value') };
        case 'append':
          if (op.status === 'fail') return null;
          return { kind: 'append', suffix: kvString(value, op, 'append value') };
        default:
          throw new ModelError(`the kv model has no operation '${op.f}' (get, put, append)`, op.callLine);
      }
    },
    step(state, input) {
      switch (input.kind) {
        case 'get':
          return input.expect === state ? state : undefined;
        case 'put':
          return input.value;
        case 'append':
          return (state ?? '') + input.suffix;
      }
    },
    stateKey: (state) => (state === null ? '-' : `=${state}`),
    showState: (state) => (state === null ? '(absent)' : JSON.stringify(state)),
    partitionKey: (op) => canonicalKey(kvParts(op).key),
  };
}

function kvParts(op: Operation): { key: EdnValue; value: EdnValue; output: EdnValue } {
  if (op.key !== undefined) return { key: op.key, value: op.value, output: op.output };
  const v = op.value;
  if (Array.isArray(v) && v.length === 2) {
    const out = op.output;
    const output = Array.isArray(out) && out.length === 2 ? (out[1] ?? null) : out;
    return { key: v[0] ?? null, value: v[1] ?? null, output };
  }
  throw new ModelError(`kv operation without a key (give :key, or :value [key value]): ${showEdn(v)}`, op.callLine);
}

function kvString(v: EdnValue, op: Operation, what: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  throw new ModelError(`${what} must be a string, got ${showEdn(v)}`, op.callLine);
}

export const modelNames = ['cas-register', 'kv', 'namespace'] as const;
export type ModelName = (typeof modelNames)[number];
