/** Semantic checks of command arguments (EINVAL), and the generation precondition (EPRECONDITION). */
import { FsError } from './errors.ts';
import type { FsmLimits } from './limits.ts';
import { utf8 } from './paths.ts';

/** Permission bits and set-id/sticky bits, at most. */
export const MODE_MAX = 0o7777;
export const DEFAULT_DIR_MODE = 0o755;
export const DEFAULT_FILE_MODE = 0o644;
/** A CRC32C, at most. */
export const CHECKSUM_MAX = 0xffff_ffff;

export function checkMode(mode: number | undefined): void {
  if (mode !== undefined && mode > MODE_MAX) throw new FsError('EINVAL', `mode ${mode} exceeds 0o7777`);
}

export function checkReplication(r: number | undefined, limits: FsmLimits): void {
  if (r !== undefined && (r < 1 || r > limits.replicationMax)) {
    throw new FsError('EINVAL', `replication ${r} outside 1..${limits.replicationMax}`);
  }
}

export function checkChunkSize(bytes: number | undefined, limits: FsmLimits): void {
  if (bytes !== undefined && (bytes < limits.chunkSizeBytesMin || bytes > limits.chunkSizeBytesMax)) {
    throw new FsError(
      'EINVAL',
      `chunk size ${bytes} outside ${limits.chunkSizeBytesMin}..${limits.chunkSizeBytesMax} bytes`,
    );
  }
}

export function checkCompression(compression: string | undefined): void {
  if (compression !== undefined && compression !== 'none' && compression !== 'lz4') {
    throw new FsError('EINVAL', `compression ${JSON.stringify(compression.slice(0, 40))} is not none or lz4`);
  }
}

/** An owner may be empty; holders, addresses and racks may not. */
export function checkLabel(what: string, s: string | undefined, limits: FsmLimits, allowEmpty = false): void {
  if (s === undefined) return;
  if (!allowEmpty && s.length === 0) throw new FsError('EINVAL', `${what} is empty`);
  if (utf8(s).length > limits.labelBytesMax)
    throw new FsError('EINVAL', `${what} longer than ${limits.labelBytesMax} bytes`);
}

export function checkLeaseDuration(ms: number, limits: FsmLimits): void {
  if (ms < 1 || ms > limits.leaseDurationMsMax) {
    throw new FsError('EINVAL', `lease duration ${ms} ms outside 1..${limits.leaseDurationMsMax}`);
  }
}

/** Replica lists: 1..replicationMax distinct chunkserver ids (existence is checked against the registry). */
export function checkReplicaList(replicas: readonly number[], limits: FsmLimits, allowEmpty = false): void {
  if (replicas.length < (allowEmpty ? 0 : 1) || replicas.length > limits.replicationMax) {
    throw new FsError('EINVAL', `replica count ${replicas.length} outside ${allowEmpty ? 0 : 1}..${limits.replicationMax}`);
  }
  if (new Set(replicas).size !== replicas.length) throw new FsError('EINVAL', 'duplicate replica');
  if (replicas.includes(0)) throw new FsError('EINVAL', 'chunkserver id 0');
}

/**
 * The compare-and-set precondition. `current` is the target's generation, or undefined when the target does
 * not exist. ifGeneration 0 means "must not exist"; any other value must equal the existing generation.
 */
export function checkGeneration(current: number | undefined, ifGeneration: number | undefined): void {
  if (ifGeneration === undefined) return;
  const holds = current === undefined ? ifGeneration === 0 : ifGeneration !== 0 && current === ifGeneration;
  if (!holds) {
    throw new FsError(
      'EPRECONDITION',
      `generation is ${current === undefined ? 'absent' : current}, expected ${ifGeneration === 0 ? 'absent' : ifGeneration}`,
    );
  }
}
