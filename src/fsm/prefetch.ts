/**
 * Read-ahead for a batch of commands on a disk-backed store.
 *
 * Applying is sequential: each command awaits its own reads, so on RocksDB every key missing from the read
 * cache costs one thread-pool round trip, one after another (a create misses at least twice: the new name's
 * directory entry and the session's result slot). Before a batch is applied, this gathers every key the
 * batch will read into as few `Kv.prefetch` calls as possible (each one thread-pool round trip for all of its
 * keys): the meta record, each command's session record and result slot, and for every path the inodes and directory entries
 * along it.
 *
 * Paths are grouped by their parent directory, so a batch of creates in a few directories walks each
 * directory once (not once per command), then looks up all the new names in it. With `Kv.peek` (the store's
 * read cache, without I/O) the walks descend through cached levels at once, and only the keys the cache does
 * not hold are fetched: on a warm cache the whole batch costs one round trip (the new names and the result
 * slots), whatever the path depth. Without `peek` it costs one round trip per path level, as before.
 *
 * It only warms the store's cache: the results of applying never depend on it (a path created earlier in
 * the same batch is simply not found here, and the command then reads it from the batch overlay).
 */
import type { Command } from './commands.ts';
import * as keys from './keys.ts';
import type { Kv } from './kv.ts';
import type { FsmLimits } from './limits.ts';
import { parsePath, utf8, type PathComponent } from './paths.ts';
import { ROOT_ID } from './records.ts';
import type { ApplyHints } from './txn.ts';

/** Path levels walked ahead at most (deeper components are read on demand). */
export const prefetchDepthMax = 16;

/** Directory entries of one createMany's names fetched ahead, at most. */
const prefetchLeavesMax = 1024;

/** One directory of the batch: the path to it, and the names the batch looks up in it. */
interface Walk {
  readonly components: readonly PathComponent[];
  /** Components resolved so far; `dir` is the directory they lead to. */
  level: number;
  dir: number;
  readonly leaves: Uint8Array[];
}

/**
 * Returns whether every path was walked to its directory: false if some directory on a path was not in the
 * store (made by an earlier command of the batch, not yet written, or missing), whose names were therefore
 * not fetched.
 */
export async function prefetchBatch(
  kv: Kv,
  commands: readonly (Command | undefined)[],
  limits: FsmLimits,
  /** Result slots these say are empty are not fetched (the apply does not read them either). */
  hints?: ApplyHints,
): Promise<boolean> {
  if (kv.prefetch === undefined) return true;
  let complete = true;
  // Every command reads the meta record (its clock).
  let wanted: Uint8Array[] = [keys.metaKey];
  /** Walks by their directory's path (components joined with '/'). */
  const byDir = new Map<string, Walk>();
  const walkTo = (components: readonly PathComponent[]): Walk => {
    const dirKey = components.map((c) => c.name).join('/');
    let w = byDir.get(dirKey);
    if (w === undefined) {
      w = { components, level: 0, dir: ROOT_ID, leaves: [] };
      byDir.set(dirKey, w);
    }
    return w;
  };
  for (const command of commands) {
    if (command === undefined) continue;
    if (command.session !== undefined) {
      wanted.push(keys.sessionKey(command.session.clientId));
      const { clientId, seq } = command.session;
      if (hints?.resultKnownAbsent(clientId, seq) !== true) wanted.push(keys.resultKey(clientId, seq));
    }
    for (const path of pathsOf(command)) {
      let components: PathComponent[];
      try {
        components = parsePath(path, limits);
      } catch {
        continue; // the command will fail on it, with no read
      }
      if (components.length === 0) continue;
      walkTo(components.slice(0, -1)).leaves.push(components[components.length - 1]!.bytes);
    }
    const many = leavesOf(command);
    if (many !== undefined) {
      let components: PathComponent[];
      try {
        components = parsePath(many.dir, limits);
      } catch {
        continue;
      }
      walkTo(components).leaves.push(...many.leaves);
    }
  }
  let walks = [...byDir.values()];
  for (let round = 0; round <= prefetchDepthMax + 1 && (wanted.length > 0 || walks.length > 0); round++) {
    const blocked: Walk[] = [];
    for (const w of walks) {
      if (round > 0 && !(await descend(kv, w))) {
        complete = false; // the fetched level ends the path
        continue;
      }
      const step = advance(kv, w, wanted);
      if (step === 'blocked') blocked.push(w);
      else if (step === 'ended') complete = false;
    }
    if (wanted.length > 0) await kv.prefetch(wanted);
    wanted = [];
    walks = blocked;
  }
  return complete;
}

/**
 * Descends `w` through levels the store's cache answers, collecting the keys read on the way into `wanted`.
 * 'blocked': the walk waits for its next level's directory entry (added to `wanted`); 'done': at its
 * directory (or as deep as read-ahead goes), the walk added the directory's inode and its names' entries;
 * 'ended': a directory on the path is not in the store.
 */
function advance(kv: Kv, w: Walk, wanted: Uint8Array[]): 'blocked' | 'done' | 'ended' {
  for (;;) {
    wanted.push(keys.inodeKey(w.dir));
    if (w.level >= w.components.length) {
      for (const leaf of w.leaves) wanted.push(keys.direntKey(w.dir, leaf));
      return 'done';
    }
    if (w.level >= prefetchDepthMax) return 'done';
    const entryKey = keys.direntKey(w.dir, w.components[w.level]!.bytes);
    const entry = kv.peek?.(entryKey);
    if (entry === undefined) {
      wanted.push(entryKey);
      return 'blocked';
    }
    if (!step(w, entry)) return 'ended';
  }
}

/** After a fetch: steps `w` over the directory entry it waited for; false when the path ends there. */
async function descend(kv: Kv, w: Walk): Promise<boolean> {
  const entry = await kv.get(keys.direntKey(w.dir, w.components[w.level]!.bytes));
  return step(w, entry ?? null);
}

/** Moves `w` one level down through `entry`; false if it names no directory. */
function step(w: Walk, entry: Uint8Array | null): boolean {
  if (entry === null) return false;
  const child = keys.readDirent(entry);
  if (child.type !== 'dir') return false;
  w.dir = child.id;
  w.level += 1;
  return true;
}

function pathsOf(command: Command): string[] {
  const op = command.op as { readonly path?: unknown; readonly from?: unknown; readonly to?: unknown };
  const out: string[] = [];
  for (const p of [op.path, op.from, op.to]) if (typeof p === 'string') out.push(p);
  return out;
}

/** createMany's directory (walked once) and its names (looked up in it). */
function leavesOf(command: Command): { dir: string; leaves: Uint8Array[] } | undefined {
  if (command.op.type !== 'createMany') return undefined;
  const leaves = command.op.names.slice(0, prefetchLeavesMax).map((n) => utf8(n));
  return { dir: command.op.dir, leaves };
}
