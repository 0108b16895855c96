/**
 * The namespace model: a small directory tree, as the Jepsen namespace workload (jepsen/workloads/namespace.ts)
 * drives it, with rfs's rename(2)-like rules (src/fsm/namespace.ts) written out on a flat map of paths.
 *
 * Each history key (`t0`, `t1`, …) is an independent tree: a directory that exists before the run and starts
 * empty; paths in the history are relative to it (`a`, `a/x`; `.` is the tree's own directory, readdir only).
 * Operations (the invocation's value, then what the completion carries):
 *   mkdir P, create P (exclusive), unlink P, rmdir P   value "P"          ok, or fail with the error code
 *   rename A → B                                      value ["A", "B"]   ok, or fail with the error code
 *   readdir D                                         value "D"          ok with the sorted entries (a
 *                                                                         directory's name ends with "/"),
 *                                                                         or fail with ENOENT / ENOTDIR
 * A `fail` whose value is a POSIX code is a definite outcome: the operation ran, changed nothing, and saw a
 * state that gives exactly that error. A `fail` without a code (a read that timed out) did not happen. An
 * `info` mutation may have taken effect at any point after its invocation, or never; an `info` read is left
 * out.
 *
 * Error rules, in the state machine's order:
 *   resolving a path: each component's parent must be a directory (ENOTDIR), each component must exist (ENOENT);
 *   mkdir: parent resolves; the name is free (EEXIST);
 *   create (exclusive): parent resolves; a directory there is EISDIR, a file EEXIST;
 *   unlink: parent resolves; exists (ENOENT); not a directory (EISDIR);
 *   rmdir: parent resolves; exists (ENOENT); a directory (ENOTDIR); empty (ENOTEMPTY);
 *   rename: source's parent resolves; destination's parent resolves; source exists (ENOENT); same path: nothing
 *   happens (ok); a directory moved under itself: EINVAL; onto an ancestor of the source: ENOTEMPTY; an existing
 *   destination: directory over file ENOTDIR, file over directory EISDIR, over a non-empty directory ENOTEMPTY;
 *   then the source (and everything below it) moves, replacing the destination.
 *
 * The state is the tree as a map path → type plus its canonical text (sorted "path" / "path/" entries), built
 * once per new state, so `stateKey` is free and states are shared by every operation that changes nothing.
 */
import type { EdnValue } from './edn.ts';
import { showEdn } from './edn.ts';
import type { Operation } from './history.ts';
import type { Model } from './models.ts';
import { ModelError } from './models.ts';

export type NodeType = 'file' | 'dir';

export interface NamespaceState {
  readonly entries: ReadonlyMap<string, NodeType>;
  /** Canonical text: the sorted entries, a directory's with a trailing "/", joined by spaces. */
  readonly key: string;
}

/** The POSIX codes an operation of the model can end with. */
export const namespaceErrorCodes = ['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EINVAL'] as const;
export type NamespaceErrorCode = (typeof namespaceErrorCodes)[number];
const errorCodeSet: ReadonlySet<string> = new Set(namespaceErrorCodes);

export const namespaceMutations = ['mkdir', 'create', 'unlink', 'rmdir', 'rename'] as const;
export type NamespaceMutation = (typeof namespaceMutations)[number];
export type NamespaceF = NamespaceMutation | 'readdir';

/** One operation's arguments, paths relative to the tree ('.' only for readdir). */
export type NamespaceOp =
  | { readonly f: 'mkdir' | 'create' | 'unlink' | 'rmdir'; readonly path: string }
  | { readonly f: 'rename'; readonly from: string; readonly to: string }
  | { readonly f: 'readdir'; readonly path: string };

/** What an operation returns: 'ok' (a mutation), a listing (readdir), or an error code. */
export type NamespaceResult = 'ok' | NamespaceErrorCode | readonly string[];

/** The tree's own directory, as readdir's argument. */
export const treeRoot = '.';
/** A path component of the model: what the workload uses (lower-case letters and digits). */
const componentPattern = /^[a-z0-9]+$/;

export const emptyTree: NamespaceState = makeState(new Map());

function makeState(entries: ReadonlyMap<string, NodeType>): NamespaceState {
  const key = [...entries]
    .map(([p, t]) => (t === 'dir' ? `${p}/` : p))
    .sort()
    .join(' ');
  return { entries, key };
}

/** Builds a state from entries like 'a/', 'a/x' (a trailing '/' is a directory); for tests. */
export function treeOf(paths: readonly string[]): NamespaceState {
  const entries = new Map<string, NodeType>();
  for (const p of paths) entries.set(p.endsWith('/') ? p.slice(0, -1) : p, p.endsWith('/') ? 'dir' : 'file');
  return makeState(entries);
}

/** A path's components; throws a plain Error for a path the model cannot hold (callers turn it into ModelError). */
export function parseRelativePath(path: string, allowRoot: boolean): string[] {
  if (path === treeRoot) {
    if (!allowRoot) throw new Error(`the tree's own directory '.' is not an argument of this operation`);
    return [];
  }
  const parts = path.split('/');
  if (parts.length === 0 || !parts.every((c) => componentPattern.test(c))) throw new Error(`bad relative path '${path}' (components of a-z, 0-9, joined by '/')`);
  return parts;
}

function typeAt(state: NamespaceState, parts: readonly string[]): NodeType | undefined {
  return parts.length === 0 ? 'dir' : state.entries.get(parts.join('/'));
}

/** Walks the path: the error resolving it, or undefined (the node then exists). */
function resolveError(state: NamespaceState, parts: readonly string[]): NamespaceErrorCode | undefined {
  for (let i = 0; i < parts.length; i++) {
    if (typeAt(state, parts.slice(0, i)) !== 'dir') return 'ENOTDIR';
    if (typeAt(state, parts.slice(0, i + 1)) === undefined) return 'ENOENT';
  }
  return undefined;
}

/** Resolves all but the last component, which must then be a directory. */
function parentError(state: NamespaceState, parts: readonly string[]): NamespaceErrorCode | undefined {
  const parent = parts.slice(0, -1);
  return resolveError(state, parent) ?? (typeAt(state, parent) === 'dir' ? undefined : 'ENOTDIR');
}

function hasChildren(state: NamespaceState, path: string): boolean {
  const prefix = `${path}/`;
  for (const p of state.entries.keys()) if (p.startsWith(prefix)) return true;
  return false;
}

function listing(state: NamespaceState, parts: readonly string[]): string[] {
  const prefix = parts.length === 0 ? '' : `${parts.join('/')}/`;
  const names: string[] = [];
  for (const [p, t] of state.entries) {
    if (!p.startsWith(prefix)) continue;
    const rest = p.slice(prefix.length);
    if (rest.includes('/')) continue;
    names.push(t === 'dir' ? `${rest}/` : rest);
  }
  return names.sort();
}

/** Deliberate model bugs, to show the tests notice them. Never set outside tests. */
export const namespacePlantedBugs = ['none', 'rmdir-ignores-children', 'rename-keeps-children'] as const;
export type NamespacePlantedBug = (typeof namespacePlantedBugs)[number];

/** The result of `op` in `state` and the state after it (the same object when nothing changed). */
export function applyNamespaceOp(state: NamespaceState, op: NamespaceOp, bug: NamespacePlantedBug = 'none'): { result: NamespaceResult; state: NamespaceState } {
  const fail = (code: NamespaceErrorCode): { result: NamespaceResult; state: NamespaceState } => ({ result: code, state });
  const done = (entries: Map<string, NodeType>): { result: NamespaceResult; state: NamespaceState } => ({ result: 'ok', state: makeState(entries) });
  switch (op.f) {
    case 'readdir': {
      const parts = parseRelativePath(op.path, true);
      const error = resolveError(state, parts) ?? (typeAt(state, parts) === 'dir' ? undefined : 'ENOTDIR');
      return error !== undefined ? fail(error) : { result: listing(state, parts), state };
    }
    case 'mkdir':
    case 'create': {
      const parts = parseRelativePath(op.path, false);
      const error = parentError(state, parts);
      if (error !== undefined) return fail(error);
      const existing = state.entries.get(op.path);
      if (existing !== undefined) return fail(op.f === 'create' && existing === 'dir' ? 'EISDIR' : 'EEXIST');
      return done(new Map(state.entries).set(op.path, op.f === 'mkdir' ? 'dir' : 'file'));
    }
    case 'unlink':
    case 'rmdir': {
      const parts = parseRelativePath(op.path, false);
      const error = parentError(state, parts);
      if (error !== undefined) return fail(error);
      const existing = state.entries.get(op.path);
      if (existing === undefined) return fail('ENOENT');
      if (op.f === 'unlink' && existing === 'dir') return fail('EISDIR');
      if (op.f === 'rmdir' && existing !== 'dir') return fail('ENOTDIR');
      const entries = new Map(state.entries);
      entries.delete(op.path);
      if (op.f === 'rmdir' && hasChildren(state, op.path)) {
        if (bug !== 'rmdir-ignores-children') return fail('ENOTEMPTY');
        for (const p of state.entries.keys()) if (p.startsWith(`${op.path}/`)) entries.delete(p);
      }
      return done(entries);
    }
    case 'rename': {
      const from = parseRelativePath(op.from, false);
      const to = parseRelativePath(op.to, false);
      const srcError = parentError(state, from);
      if (srcError !== undefined) return fail(srcError);
      const dstError = parentError(state, to);
      if (dstError !== undefined) return fail(dstError);
      const node = state.entries.get(op.from);
      if (node === undefined) return fail('ENOENT');
      if (op.from === op.to) return { result: 'ok', state };
      if (node === 'dir' && op.to.startsWith(`${op.from}/`)) return fail('EINVAL');
      if (op.from.startsWith(`${op.to}/`)) return fail('ENOTEMPTY');
      const replaced = state.entries.get(op.to);
      if (replaced !== undefined) {
        if (node === 'dir' && replaced !== 'dir') return fail('ENOTDIR');
        if (node === 'file' && replaced === 'dir') return fail('EISDIR');
        if (replaced === 'dir' && hasChildren(state, op.to)) return fail('ENOTEMPTY');
      }
      const entries = new Map(state.entries);
      entries.delete(op.from);
      entries.set(op.to, node);
      if (node === 'dir' && bug !== 'rename-keeps-children') {
        const prefix = `${op.from}/`;
        for (const [p, t] of state.entries) {
          if (!p.startsWith(prefix)) continue;
          entries.delete(p);
          entries.set(`${op.to}/${p.slice(prefix.length)}`, t);
        }
      }
      return done(entries);
    }
  }
}

/** What the search steps: the operation and its expected result (undefined: any, an info mutation). */
export interface NamespaceInput {
  readonly op: NamespaceOp;
  readonly expect: NamespaceResult | undefined;
  /** The canonical text of `expect`, compared with the computed result's. */
  readonly expectKey: string | undefined;
}

export function resultKey(result: NamespaceResult): string {
  return typeof result === 'string' ? result : `[${result.join(' ')}]`;
}

export interface NamespaceModelOptions {
  plantedBug?: NamespacePlantedBug;
}

/** The history operation as the model's operation; ModelError for a shape the model does not know. */
export function namespaceOpOf(op: Operation): NamespaceOp {
  const bad = (detail: string): never => {
    throw new ModelError(detail, op.callLine);
  };
  const path = (v: EdnValue | undefined, allowRoot: boolean): string => {
    if (typeof v !== 'string') return bad(`${op.f} needs a relative path, got ${showEdn(v ?? null)}`);
    try {
      parseRelativePath(v, allowRoot);
    } catch (e) {
      bad(`${op.f}: ${(e as Error).message}`);
    }
    return v;
  };
  switch (op.f) {
    case 'mkdir':
    case 'create':
    case 'unlink':
    case 'rmdir':
      return { f: op.f, path: path(op.value, false) };
    case 'readdir':
      return { f: 'readdir', path: path(op.value, true) };
    case 'rename': {
      const v = op.value;
      if (!Array.isArray(v) || v.length !== 2) return bad(`rename needs a value [from to], got ${showEdn(v)}`);
      return { f: 'rename', from: path(v[0], false), to: path(v[1], false) };
    }
    default:
      return bad(`the namespace model has no operation '${op.f}' (${[...namespaceMutations, 'readdir'].join(', ')})`);
  }
}

/** The namespace model (see the header comment); partitioned by the history's key, one tree each. */
export function namespaceModel(options: NamespaceModelOptions = {}): Model<NamespaceState, NamespaceInput> {
  const bug = options.plantedBug ?? 'none';
  return {
    name: 'namespace',
    init: () => emptyTree,
    prepare(op) {
      const nsOp = namespaceOpOf(op);
      const known = (expect: NamespaceResult | undefined): NamespaceInput => ({ op: nsOp, expect, expectKey: expect === undefined ? undefined : resultKey(expect) });
      if (op.status === 'info') return nsOp.f === 'readdir' ? null : known(undefined);
      if (op.status === 'fail') {
        // A fail without a code did not happen and saw nothing.
        if (op.output === null) return null;
        if (typeof op.output !== 'string' || !errorCodeSet.has(op.output)) throw new ModelError(`${op.f} failed with ${showEdn(op.output)}: not one of ${namespaceErrorCodes.join(', ')} (or nil)`, op.returnLine);
        return known(op.output as NamespaceErrorCode);
      }
      if (nsOp.f !== 'readdir') return known('ok');
      const out = op.output;
      if (!Array.isArray(out) || !out.every((x) => typeof x === 'string')) throw new ModelError(`readdir returned ${showEdn(out)}: a list of names expected`, op.returnLine);
      return known([...(out)].sort());
    },
    step(state, input) {
      const { result, state: after } = applyNamespaceOp(state, input.op, bug);
      if (input.expectKey === undefined || input.expectKey === resultKey(result)) return after;
      return undefined;
    },
    stateKey: (state) => state.key,
    showState: (state) => (state.key === '' ? '(empty)' : state.key),
    partitionKey: (op) => (typeof op.key === 'string' ? op.key : showEdn(op.key ?? null)),
  };
}
