/**
 * Names of the records of one log. The memory store uses them as its keys; the RocksDB store uses binary keys
 * but reports the same names in errors, so a CorruptLogError reads the same whichever store raised it.
 */
import { assert } from '../raft/errors.ts';

export const HARD_STATE_KEY = 'hardstate';
export const SNAPSHOT_KEY = 'snapshot';
export const ENTRY_KEY_PREFIX = 'entry/';

/** Decimal digits of Number.MAX_SAFE_INTEGER: zero-padding to this width makes key order equal index order. */
const ENTRY_INDEX_DIGITS = 16;

export function entryKey(index: number): string {
  if (!(Number.isSafeInteger(index) && index >= 0))
    assert(false, `entry index must be a non-negative integer, got ${index}`);
  return ENTRY_KEY_PREFIX + index.toString().padStart(ENTRY_INDEX_DIGITS, '0');
}

/** The index named by an entry key, or null when `key` is not a well-formed entry key. */
export function entryIndexOfKey(key: string): number | null {
  if (!key.startsWith(ENTRY_KEY_PREFIX)) return null;
  const digits = key.slice(ENTRY_KEY_PREFIX.length);
  if (digits.length !== ENTRY_INDEX_DIGITS || !/^[0-9]+$/.test(digits)) return null;
  const index = Number(digits);
  return Number.isSafeInteger(index) ? index : null;
}
