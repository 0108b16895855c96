/**
 * Read-ahead for a batch of commands on a disk-backed store.
 *
 * Applying is sequential: each command awaits its own reads, so on RocksDB every key missing from the read
 * cache costs one thread-pool round trip, one after another (a create misses at least twice: the new name's
 * directory entry and the session's result slot). Before a batch is applied, this walks every path of every
 * command level by level against the store and asks it to fetch each level's keys together
 * (`Kv.prefetch`, one round trip per level for the whole batch), plus each command's session record and
 * result slot.
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

/** Path levels walked ahead at most (deeper components are read on demand). */
export const prefetchDepthMax = 16;

interface Walk {
  readonly components: readonly PathComponent[];
  level: number;
  dir: number;
  /** createMany: the names to look up in the directory the walk ends at. */
  readonly leaves?: readonly Uint8Array[];
}

/** Directory entries of one createMany's names fetched ahead, at most. */
const prefetchLeavesMax = 1024;

export async function prefetchBatch(
  kv: Kv,
  commands: readonly (Command | undefined)[],
  limits: FsmLimits,
): Promise<void> {
  if (kv.prefetch === undefined) return;
  const first: Uint8Array[] = [];
  let walks: Walk[] = [];
  for (const command of commands) {
    if (command === undefined) continue;
    if (command.session !== undefined) {
      first.push(keys.sessionKey(command.session.clientId));
      first.push(keys.resultKey(command.session.clientId, command.session.seq));
    }
    for (const path of pathsOf(command)) {
      let components: PathComponent[];
      try {
        components = parsePath(path, limits);
      } catch {
        continue; // the command will fail on it, with no read
      }
      if (components.length > 0) walks.push({ components, level: 0, dir: ROOT_ID });
    }
    const many = leavesOf(command);
    if (many !== undefined) {
      let components: PathComponent[];
      try {
        components = parsePath(many.dir, limits);
      } catch {
        continue;
      }
      if (components.length === 0) for (const leaf of many.leaves) first.push(keys.direntKey(ROOT_ID, leaf));
      else walks.push({ components, level: 0, dir: ROOT_ID, leaves: many.leaves });
    }
  }
  let pending = first;
  for (let depth = 0; depth <= prefetchDepthMax && (pending.length > 0 || walks.length > 0); depth++) {
    for (const w of walks) {
      pending.push(keys.inodeKey(w.dir));
      pending.push(keys.direntKey(w.dir, w.components[w.level]!.bytes));
    }
    await kv.prefetch(pending);
    pending = [];
    const next: Walk[] = [];
    for (const w of walks) {
      const last = w.level + 1 >= w.components.length;
      if (last && w.leaves === undefined) continue;
      const entry = await kv.get(keys.direntKey(w.dir, w.components[w.level]!.bytes));
      if (entry === undefined) continue;
      const child = keys.readDirent(entry);
      if (child.type !== 'dir') continue;
      if (last) {
        pending.push(keys.inodeKey(child.id));
        for (const leaf of w.leaves!) pending.push(keys.direntKey(child.id, leaf));
        continue;
      }
      w.dir = child.id;
      w.level += 1;
      next.push(w);
    }
    walks = next;
  }
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
