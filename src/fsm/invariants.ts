/**
 * A full check of the stored state's invariants, for tests and the simulator (it reads every key; not for
 * production paths). Returns a list of violations, empty when the state is sound:
 *
 * - the root exists, is a directory and is its own parent;
 * - every directory entry lives in a directory, points at an existing inode of the entry's type, and (for
 *   live inodes) that inode names this entry as its parent and name;
 * - every inode is reachable exactly once from the root or from one garbage-queue root (a tree: no cycles,
 *   no inode in two places, nothing lost); garbage roots are not reachable from the root;
 * - live directories' child counts equal their entries; live files' chunk lists are 0..chunkCount-1, each
 *   chunk's placement record points back at (file, index), unsealed and length totals match;
 * - every placement record belongs to a chunk list entry; replicas are distinct; leases are on files;
 * - counters are above every id in use; generations are at most the applied index;
 * - sessions: the count in meta, the by-use index and the results (result keys and the one a session record
 *   may hold, never both for one sequence) all agree; each session's one
 *   by-use entry is at its `indexedMs`, which lags its last use by less than sessionUseGranularityMs, and
 *   no session was used after the stamped clock;
 * - no key outside the layout.
 */
import * as keys from './keys.ts';
import { Table } from './keys.ts';
import type { KvPair, KvReader } from './kv.ts';
import type { FsmLimits } from './limits.ts';
import { defaultFsmLimits } from './limits.ts';
import { successor } from './overlay.ts';
import { fromUtf8 } from './paths.ts';
import type { Inode, Meta, Placement, Session } from './records.ts';
import * as rec from './records.ts';

/** Keys read per scan while loading. */
const SCAN_PAGE = 1024;

async function loadAll(kv: KvReader): Promise<KvPair[]> {
  const out: KvPair[] = [];
  let gte: Uint8Array | undefined;
  for (;;) {
    const page = await kv.scan({ gte, limit: SCAN_PAGE });
    out.push(...page);
    if (page.length < SCAN_PAGE) return out;
    gte = successor(page[page.length - 1]!.key);
  }
}

interface Loaded {
  applied: number;
  meta: Meta | undefined;
  inodes: Map<number, Inode>;
  /** dir id -> name -> child */
  entries: Map<number, Map<string, { id: number; type: keys.InodeType }>>;
  chunkLists: Map<number, Map<number, number>>;
  placements: Map<number, Placement>;
  leases: Set<number>;
  garbage: number[];
  chunkservers: Set<number>;
  sessions: Map<number, Session>;
  results: Map<number, number[]>;
  byUse: { ms: number; client: number }[];
}

function parse(pairs: readonly KvPair[], problems: string[]): Loaded {
  const s: Loaded = {
    applied: -1,
    meta: undefined,
    inodes: new Map(),
    entries: new Map(),
    chunkLists: new Map(),
    placements: new Map(),
    leases: new Set(),
    garbage: [],
    chunkservers: new Set(),
    sessions: new Map(),
    results: new Map(),
    byUse: [],
  };
  const u64 = (k: Uint8Array, i: number) => keys.readU64(k, 1 + i * keys.U64_BYTES);
  for (const { key, value } of pairs) {
    const eq = (k: Uint8Array) => key.length === k.length && key.every((b, i) => b === k[i]);
    switch (key[0]) {
      case Table.meta:
        if (eq(keys.appliedKey)) s.applied = keys.readU64(value, 0);
        else if (eq(keys.metaKey)) s.meta = rec.decodeMeta(value);
        else problems.push('unknown meta key');
        break;
      case Table.inode:
        s.inodes.set(u64(key, 0), rec.decodeInode(u64(key, 0), value));
        break;
      case Table.dirent: {
        const dir = u64(key, 0);
        const names = s.entries.get(dir) ?? new Map<string, { id: number; type: keys.InodeType }>();
        names.set(fromUtf8(keys.direntName(key)), keys.readDirent(value));
        s.entries.set(dir, names);
        break;
      }
      case Table.chunkList: {
        const file = u64(key, 0);
        const list = s.chunkLists.get(file) ?? new Map<number, number>();
        list.set(u64(key, 1), keys.readU64(value, 0));
        s.chunkLists.set(file, list);
        break;
      }
      case Table.placement:
        s.placements.set(u64(key, 0), rec.decodePlacement(u64(key, 0), value));
        break;
      case Table.lease:
        rec.decodeLease(value);
        s.leases.add(u64(key, 0));
        break;
      case Table.garbage:
        s.garbage.push(keys.readU64(value, 0));
        break;
      case Table.chunkserver:
        rec.decodeChunkserver(u64(key, 0), value);
        s.chunkservers.add(u64(key, 0));
        break;
      case Table.session:
        s.sessions.set(u64(key, 0), rec.decodeSession(u64(key, 0), value));
        break;
      case Table.result: {
        rec.decodeResult(value);
        const list = s.results.get(u64(key, 0)) ?? [];
        list.push(u64(key, 1));
        s.results.set(u64(key, 0), list);
        break;
      }
      case Table.sessionByUse:
        s.byUse.push({ ms: u64(key, 0), client: u64(key, 1) });
        break;
      default:
        problems.push(`key outside the layout (table byte ${key[0]})`);
    }
  }
  return s;
}

/** `limits`: those the state machine ran with (sessionUseGranularityMs is checked). */
export async function checkNamespaceInvariants(
  kv: KvReader,
  limits: Pick<FsmLimits, 'sessionUseGranularityMs'> = defaultFsmLimits,
): Promise<string[]> {
  const problems: string[] = [];
  const s = parse(await loadAll(kv), problems);
  if (s.meta === undefined || s.applied < 0) return [...problems, 'meta record or applied index missing'];
  const live = checkTree(s, problems);
  checkDirectories(s, live, problems);
  checkFiles(s, live, problems);
  checkCounters(s, problems);
  checkSessions(s, limits, problems);
  return problems;
}

/** Reachability: returns the ids reachable from the root (the live namespace). */
function checkTree(s: Loaded, problems: string[]): Set<number> {
  const root = s.inodes.get(rec.ROOT_ID);
  if (root === undefined || root.type !== 'dir' || root.parent !== rec.ROOT_ID)
    problems.push('root missing, not a directory, or not its own parent');
  const seen = new Map<number, 'live' | 'garbage'>();
  const walk = (start: number, kind: 'live' | 'garbage'): void => {
    const stack = [start];
    if (seen.has(start)) problems.push(`inode ${start} reached twice (as a ${kind} root)`);
    seen.set(start, kind);
    while (stack.length > 0) {
      const dir = stack.pop()!;
      for (const [name, child] of s.entries.get(dir) ?? []) {
        if (seen.has(child.id)) {
          problems.push(
            `inode ${child.id} reached twice (again via ${dir}/${name}): a cycle or a second link`,
          );
          continue;
        }
        seen.set(child.id, kind);
        stack.push(child.id);
      }
    }
  };
  walk(rec.ROOT_ID, 'live');
  for (const g of s.garbage) {
    if (seen.get(g) === 'live') problems.push(`garbage inode ${g} is still in the namespace`);
    else walk(g, 'garbage');
  }
  for (const id of s.inodes.keys()) if (!seen.has(id)) problems.push(`inode ${id} is unreachable`);
  for (const [dir, names] of s.entries) {
    const d = s.inodes.get(dir);
    if (d === undefined || d.type !== 'dir') problems.push(`entries under ${dir}, which is not a directory`);
    for (const [name, child] of names) {
      const c = s.inodes.get(child.id);
      if (c === undefined) problems.push(`entry ${dir}/${name} points at missing inode ${child.id}`);
      else if (c.type !== child.type)
        problems.push(`entry ${dir}/${name} says ${child.type}, inode ${child.id} is a ${c.type}`);
      else if (seen.get(dir) === 'live' && (c.parent !== dir || c.name !== name)) {
        problems.push(
          `inode ${child.id} names ${c.parent}/${c.name} as its place, but sits at ${dir}/${name}`,
        );
      }
    }
  }
  return new Set([...seen].filter(([, kind]) => kind === 'live').map(([id]) => id));
}

function checkDirectories(s: Loaded, live: Set<number>, problems: string[]): void {
  for (const id of live) {
    const n = s.inodes.get(id);
    if (n === undefined || n.type !== 'dir') continue;
    const count = s.entries.get(id)?.size ?? 0;
    if (n.childCount !== count)
      problems.push(`directory ${id} counts ${n.childCount} children, has ${count}`);
  }
}

function checkFiles(s: Loaded, live: Set<number>, problems: string[]): void {
  const listed = new Set<number>();
  for (const [file, list] of s.chunkLists) {
    const n = s.inodes.get(file);
    if (n === undefined || n.type !== 'file') problems.push(`chunk list of ${file}, which is not a file`);
    for (const [index, handle] of list) {
      listed.add(handle);
      const p = s.placements.get(handle);
      if (live.has(file) && (p === undefined || p.fileId !== file || p.index !== index)) {
        problems.push(`chunk ${handle} at ${file}[${index}] has no matching placement record`);
      }
    }
  }
  for (const id of live) {
    const n = s.inodes.get(id);
    if (n === undefined || n.type !== 'file') continue;
    const list = s.chunkLists.get(id) ?? new Map<number, number>();
    let unsealed = 0;
    let length = 0;
    for (let i = 0; i < n.chunkCount; i++) {
      const p = s.placements.get(list.get(i) ?? -1);
      if (p === undefined) continue; // reported above, or missing list entry below
      if (p.sealed) length += p.lengthBytes;
      else unsealed += 1;
    }
    if (list.size !== n.chunkCount)
      problems.push(`file ${id} counts ${n.chunkCount} chunks, lists ${list.size}`);
    if (unsealed !== n.unsealedChunks)
      problems.push(`file ${id} counts ${n.unsealedChunks} unsealed chunks, has ${unsealed}`);
    if (length !== n.lengthBytes)
      problems.push(`file ${id} length ${n.lengthBytes}, sealed chunks sum to ${length}`);
  }
  for (const p of s.placements.values()) {
    if (!listed.has(p.handle)) problems.push(`placement record ${p.handle} is in no chunk list`);
    if (new Set(p.replicas).size !== p.replicas.length)
      problems.push(`chunk ${p.handle} lists a replica twice`);
    if (p.version < 1) problems.push(`chunk ${p.handle} has version ${p.version}`);
  }
  for (const file of s.leases) {
    if (s.inodes.get(file)?.type !== 'file') problems.push(`lease on ${file}, which is not a file`);
  }
}

function checkCounters(s: Loaded, problems: string[]): void {
  const m = s.meta!;
  const maxOf = (ids: Iterable<number>) => {
    let max = 0;
    for (const id of ids) max = Math.max(max, id);
    return max;
  };
  if (maxOf(s.inodes.keys()) >= m.nextInodeId) problems.push('an inode id is not below nextInodeId');
  if (maxOf(s.placements.keys()) >= m.nextChunkHandle)
    problems.push('a chunk handle is not below nextChunkHandle');
  if (maxOf(s.chunkservers) >= m.nextChunkserverId)
    problems.push('a chunkserver id is not below nextChunkserverId');
  if (maxOf(s.sessions.keys()) >= m.nextClientId) problems.push('a client id is not below nextClientId');
  if (s.garbage.length !== m.garbageCount)
    problems.push(`garbage count ${m.garbageCount}, queue holds ${s.garbage.length}`);
  for (const n of s.inodes.values()) {
    if (n.generation > s.applied)
      problems.push(`inode ${n.id} generation ${n.generation} > applied ${s.applied}`);
  }
}

function checkSessions(s: Loaded, limits: Pick<FsmLimits, 'sessionUseGranularityMs'>, problems: string[]): void {
  const m = s.meta!;
  if (s.sessions.size !== m.sessionCount)
    problems.push(`session count ${m.sessionCount}, table holds ${s.sessions.size}`);
  if (s.byUse.length !== s.sessions.size)
    problems.push('the by-use index and the session table differ in size');
  for (const { ms, client } of s.byUse) {
    if (s.sessions.get(client)?.indexedMs !== ms)
      problems.push(`by-use entry (${ms}, ${client}) does not match its session`);
  }
  for (const session of s.sessions.values()) {
    const { clientId, indexedMs, lastUsedMs } = session;
    if (!(indexedMs <= lastUsedMs && lastUsedMs - indexedMs < limits.sessionUseGranularityMs))
      problems.push(
        `session ${clientId} last used at ${lastUsedMs}, indexed at ${indexedMs}: ` +
          `not within ${limits.sessionUseGranularityMs} ms below it`,
      );
    if (lastUsedMs > m.clockMs) problems.push(`session ${clientId} used at ${lastUsedMs}, after the clock ${m.clockMs}`);
  }
  for (const [client, seqs] of s.results) {
    const session = s.sessions.get(client);
    if (session === undefined) problems.push(`results of missing session ${client}`);
    else if (seqs.some((q) => q <= session.ack))
      problems.push(`session ${client} keeps an acknowledged result`);
    else if (seqs.includes(session.inlineSeq))
      problems.push(`session ${client} keeps result ${session.inlineSeq} twice (record and key)`);
  }
  for (const session of s.sessions.values()) {
    if (session.inlineSeq !== 0) {
      if (session.inlineSeq <= session.ack) problems.push(`session ${session.clientId} keeps an acknowledged result`);
      rec.decodeResult(session.inlineResult!);
    }
    const n = (s.results.get(session.clientId)?.length ?? 0) + (session.inlineSeq === 0 ? 0 : 1);
    if (n !== session.pending)
      problems.push(`session ${session.clientId} counts ${session.pending} results, keeps ${n}`);
  }
}
