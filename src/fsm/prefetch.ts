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
import { parsePath, type PathComponent } from './paths.ts';
import { ROOT_ID } from './records.ts';

/** Path levels walked ahead at most (deeper components are read on demand). */
export const prefetchDepthMax = 16;

interface Walk {
  readonly components: readonly PathComponent[];
  level: number;
  dir: number;
}

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
      if (w.level + 1 >= w.components.length) continue;
      const entry = await kv.get(keys.direntKey(w.dir, w.components[w.level]!.bytes));
      if (entry === undefined) continue;
      const child = keys.readDirent(entry);
      if (child.type !== 'dir') continue;
      w.dir = child.id;
      w.level += 1;
      next.push(w);
    }
    walks = next;
  }
}

function pathsOf(command: Command): string[] {
  const op = command.op as {
    readonly path?: unknown;
    readonly from?: unknown;
    readonly to?: unknown;
    readonly dir?: unknown;
    readonly names?: unknown;
  };
  const out: string[] = [];
  for (const p of [op.path, op.from, op.to]) if (typeof p === 'string') out.push(p);
  if (typeof op.dir === 'string' && Array.isArray(op.names)) {
    const prefix = op.dir === '/' ? '' : op.dir;
    for (const name of op.names as unknown[]) if (typeof name === 'string') out.push(`${prefix}/${name}`);
  }
  return out;
}
