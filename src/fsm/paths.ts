/**
 * Paths: absolute, '/'-separated, no empty components (so no trailing '/' and no '//'), each component
 * 1..nameBytesMax UTF-8 bytes without NUL and not '.' or '..'. The root is "/" (no components).
 *
 * Checks, in this order: EINVAL (not a string, not absolute, not well-formed Unicode), ENAMETOOLONG (the
 * whole path), then per component from the left: EINVAL (empty, '.', '..', NUL), ENAMETOOLONG.
 */
import { FsError } from './errors.ts';
import { bytesToKeyString } from './kv.ts';
import type { FsmLimits } from './limits.ts';

export interface PathComponent {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** The key string of `bytes` (kv.ts bytesToKeyString): `name` itself when it is ASCII. */
  readonly chars: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A lone surrogate would encode to U+FFFD, so two different strings would name one file. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function utf8(s: string): Uint8Array {
  return asciiBytes(s) ?? encoder.encode(s);
}

/**
 * The UTF-8 bytes of a string whose char codes are all below 0x80 (then they are its bytes), undefined for any
 * other string. Names are mostly ASCII, and TextEncoder's native call costs more than this loop for short ones.
 */
function asciiBytes(s: string): Uint8Array | undefined {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return undefined;
    out[i] = c;
  }
  return out;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** The key string of utf8(name) (PathComponent.chars). */
export function nameChars(name: string): string {
  return isAscii(name) ? name : bytesToKeyString(encoder.encode(name));
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function parsePath(path: unknown, limits: FsmLimits): PathComponent[] {
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new FsError('EINVAL', `not an absolute path: ${show(path)}`);
  // An ASCII path has no surrogates, and as many UTF-8 bytes as chars.
  const ascii = isAscii(path);
  if (!ascii && loneSurrogate.test(path)) throw new FsError('EINVAL', 'path is not well-formed Unicode');
  if ((ascii ? path.length : encoder.encode(path).length) > limits.pathBytesMax) {
    throw new FsError('ENAMETOOLONG', `path longer than ${limits.pathBytesMax} bytes`);
  }
  if (path === '/') return [];
  return path
    .slice(1)
    .split('/')
    .map((name) => checkName(name, limits));
}

/** Validates one component (also used for readdir cursors). */
export function checkName(name: unknown, limits: FsmLimits): PathComponent {
  if (typeof name !== 'string') throw new FsError('EINVAL', `not a name: ${show(name)}`);
  if (
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('\0') ||
    name.includes('/')
  ) {
    throw new FsError('EINVAL', `invalid path component: ${show(name)}`);
  }
  let bytes = asciiBytes(name);
  let chars = name;
  if (bytes === undefined) {
    if (loneSurrogate.test(name)) throw new FsError('EINVAL', `invalid path component: ${show(name)}`);
    bytes = encoder.encode(name);
    chars = bytesToKeyString(bytes);
  }
  if (bytes.length > limits.nameBytesMax)
    throw new FsError('ENAMETOOLONG', `component longer than ${limits.nameBytesMax} bytes`);
  return { name, bytes, chars };
}

/** Whether `inner` names a strict descendant of `outer`. */
export function isStrictDescendant(
  inner: readonly PathComponent[],
  outer: readonly PathComponent[],
): boolean {
  return inner.length > outer.length && outer.every((c, i) => c.name === inner[i]!.name);
}

export function samePath(a: readonly PathComponent[], b: readonly PathComponent[]): boolean {
  return a.length === b.length && a.every((c, i) => c.name === b[i]!.name);
}

export function joinPath(components: readonly PathComponent[]): string {
  return `/${components.map((c) => c.name).join('/')}`;
}

function show(x: unknown): string {
  const s = typeof x === 'string' ? JSON.stringify(x) : typeof x;
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
