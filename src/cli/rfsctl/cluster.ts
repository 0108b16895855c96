/**
 * Cluster commands: status, members add|promote|remove, leader transfer, chunkservers list|decommission,
 * fsck, balance. Everything comes from existing RPCs: ClusterStatus of every member (each one's own
 * commit and applied index; the leader's match index per member), ListChunkservers (registry, usage,
 * liveness as the leader's chunk manager judged it), ChunkLocations (replicas per chunk).
 */
import { crc32c } from '@node-rs/crc32';
import { unaryCall } from '../../metadata/proto.ts';
import type { WireReply } from '../../metadata/proto.ts';
import type { ChunkLocation } from '../../metadata/client.ts';
import { MetadataError } from '../../metadata/client.ts';
import type { Connection, Context } from './context.ts';
import { CliError, exitCodes, toCliError } from './errors.ts';
import type { ExitCode } from './errors.ts';
import { humanBytes, isoTime, table } from './format.ts';
import { rfsPath } from './files.ts';

function num(x: unknown): number {
  return typeof x === 'number' ? x : typeof x === 'string' ? Number(x) : 0;
}
function str(x: unknown): string {
  return typeof x === 'string' ? x : '';
}

// ---------------------------------------------------------------- status

interface MemberRow {
  id: number;
  address: string;
  voter: boolean;
  learner: boolean;
  reachable: boolean;
  role: string | null;
  term: number | null;
  commitIndex: number | null;
  appliedIndex: number | null;
  /** The leader's match index of this member. */
  matchIndex: number | null;
  /** Entries this member is behind the leader's log (leader's last index − match index). */
  lagEntries: number | null;
}

export async function status(ctx: Context): Promise<ExitCode> {
  const probed = await ctx.probe();
  if (!probed.some((p) => p.ok)) throw ctx.unreachable();
  const byAddress = new Map<string, WireReply>();
  for (const p of probed) if (p.ok) byAddress.set(p.address, p.status);
  // Members the listed servers know of that were not listed (added later): ask them too.
  const known = new Set(byAddress.keys());
  for (const s of [...byAddress.values()]) {
    for (const m of (s['members'] ?? []) as Record<string, unknown>[]) {
      const a = str(m['address']);
      if (a !== '' && !known.has(a) && !ctx.addresses.includes(a)) {
        known.add(a);
        const extra = await unaryCall(a, 'ClusterStatus', {}, Math.min(ctx.timeoutMs, 3_000)).catch(() => null);
        if (extra !== null) byAddress.set(a, extra);
      }
    }
  }
  const statuses = [...byAddress.values()].filter((s) => s.error === undefined || s.error === null);
  const leaderStatus = statuses.find((s) => s['role'] === 'leader');
  // The leader's view of membership when there is one; else the highest term's.
  const view = leaderStatus ?? [...statuses].sort((a, b) => num(b['term']) - num(a['term']))[0];
  const ownById = new Map(statuses.map((s) => [num(s['id']), s] as const));
  const members = ((view?.['members'] ?? []) as Record<string, unknown>[]).map((m): MemberRow => {
    const id = num(m['id']);
    const own = ownById.get(id);
    const leaderLast = leaderStatus === undefined ? null : num(((leaderStatus['members'] ?? []) as Record<string, unknown>[]).find((x) => num(x['id']) === num(leaderStatus['id']))?.['matchIndex']);
    const match = leaderStatus === undefined ? null : num(m['matchIndex']);
    return {
      id,
      address: str(m['address']),
      voter: m['voter'] === true,
      learner: m['learner'] === true,
      reachable: own !== undefined,
      role: own === undefined ? null : str(own['role']),
      term: own === undefined ? null : num(own['term']),
      commitIndex: own === undefined ? null : num(own['commitIndex']),
      appliedIndex: own === undefined ? null : num(own['appliedIndex']),
      matchIndex: match,
      lagEntries: leaderLast === null || match === null ? null : Math.max(0, leaderLast - match),
    };
  });
  const chunkservers = await listAllChunkservers(ctx).catch(() => null);
  const states = new Map<string, number>();
  for (const c of chunkservers ?? []) states.set(c.state, (states.get(c.state) ?? 0) + 1);
  const source = leaderStatus ?? view;
  const result = {
    leader: leaderStatus === undefined ? null : { id: num(leaderStatus['id']), address: str(leaderStatus['leaderAddress']) || str(members.find((m) => m.id === num(leaderStatus['id']))?.address) },
    term: num(source?.['term']),
    members,
    chunkservers: {
      live: states.get('live') ?? 0,
      dead: states.get('dead') ?? 0,
      decommissioning: states.get('decommissioning') ?? 0,
      decommissioned: states.get('decommissioned') ?? 0,
      total: chunkservers?.length ?? null,
    },
    underReplicatedChunks: num(source?.['underReplicatedChunks']),
    unreachable: probed.filter((p) => !p.ok).map((p) => p.address),
  };
  const degraded = result.leader === null || members.some((m) => !m.reachable);
  if (ctx.options.json) {
    ctx.json(result);
    return degraded ? exitCodes.partial : exitCodes.ok;
  }
  ctx.out(result.leader === null ? `leader: none known (term ${result.term}) — the cluster cannot serve writes` : `leader: ${result.leader.id} at ${result.leader.address}, term ${result.term}`);
  ctx.out(`metadata servers: ${members.length} (${members.filter((m) => m.voter).length} voters, ${members.filter((m) => m.learner).length} learners, ${members.filter((m) => !m.reachable).length} unreachable)`);
  const dash = (x: number | null): string | number => (x === null ? '-' : x);
  ctx.out(
    table(
      ['ID', 'ADDRESS', 'ROLE', 'KIND', 'TERM', 'COMMIT', 'APPLIED', 'MATCH', 'LAG'],
      members.map((m) => [m.id, m.address, m.reachable ? m.role! : 'unreachable', m.voter ? 'voter' : 'learner', dash(m.term), dash(m.commitIndex), dash(m.appliedIndex), dash(m.matchIndex), dash(m.lagEntries)]),
    ).replace(/^/gm, '  '),
  );
  const cs = result.chunkservers;
  ctx.out(
    chunkservers === null
      ? 'chunkservers: unknown (ListChunkservers failed)'
      : `chunkservers: ${cs.live} live, ${cs.dead} dead${cs.decommissioning > 0 ? `, ${cs.decommissioning} decommissioning` : ''}${cs.decommissioned > 0 ? `, ${cs.decommissioned} decommissioned` : ''}`,
  );
  ctx.out(`under-replicated chunks: ${result.underReplicatedChunks}`);
  for (const a of result.unreachable) ctx.warn(`${a}: not answering`);
  return degraded ? exitCodes.partial : exitCodes.ok;
}

// ---------------------------------------------------------------- members, leader

function memberRows(reply: WireReply): { id: number; address: string; voter: boolean; learner: boolean }[] {
  return ((reply['members'] ?? []) as Record<string, unknown>[]).map((m) => ({ id: num(m['id']), address: str(m['address']), voter: m['voter'] === true, learner: m['learner'] === true }));
}

async function leaderCall(ctx: Context, method: 'AddMember' | 'PromoteMember' | 'RemoveMember' | 'TransferLeadership', request: Record<string, unknown>, subject: string): Promise<WireReply> {
  const conn = await ctx.connect();
  try {
    return await conn.metadata.call(method, request);
  } catch (error) {
    throw toCliError(error, subject);
  }
}

export async function members(ctx: Context, args: { action: 'add' | 'promote' | 'remove'; id: number; address?: string | undefined; raftAddress?: string | undefined }): Promise<ExitCode> {
  let reply: WireReply;
  if (args.action === 'add') {
    if (args.address === undefined || args.raftAddress === undefined) throw new CliError(exitCodes.usage, 'members add: give <id> <address> <raft-address>');
    reply = await leaderCall(ctx, 'AddMember', { id: args.id, address: args.address, raftAddress: args.raftAddress }, `member ${args.id}`);
  } else {
    reply = await leaderCall(ctx, args.action === 'promote' ? 'PromoteMember' : 'RemoveMember', { id: args.id }, `member ${args.id}`);
  }
  const rows = memberRows(reply);
  if (ctx.options.json) {
    ctx.json({ members: rows });
    return exitCodes.ok;
  }
  const verb = { add: 'added as a learner', promote: 'promoted to voter', remove: 'removed' }[args.action];
  ctx.out(`member ${args.id} ${verb}`);
  ctx.out(table(['ID', 'ADDRESS', 'KIND'], rows.map((m) => [m.id, m.address, m.voter ? 'voter' : 'learner'])).replace(/^/gm, '  '));
  return exitCodes.ok;
}

export async function leaderTransfer(ctx: Context, args: { to: number | undefined }): Promise<ExitCode> {
  const conn = await ctx.connect();
  let to = args.to;
  if (to === undefined) {
    // The most caught-up other voter, in the leader's view.
    const leader = await leaderStatus(ctx, conn);
    const leaderId = num(leader['id']);
    const candidates = ((leader['members'] ?? []) as Record<string, unknown>[]).filter((m) => m['voter'] === true && num(m['id']) !== leaderId).sort((a, b) => num(b['matchIndex']) - num(a['matchIndex']));
    if (candidates.length === 0) throw new CliError(exitCodes.user, 'leader transfer: no other voter to hand leadership to', 'EINVAL');
    to = num(candidates[0]!['id']);
  }
  await leaderCall(ctx, 'TransferLeadership', { id: to }, `leader transfer to ${to}`);
  if (ctx.options.json) ctx.json({ leader: to });
  else ctx.out(`leadership transferred to member ${to}`);
  return exitCodes.ok;
}

/** ClusterStatus of the current leader (found through a redirecting call first). */
async function leaderStatus(ctx: Context, conn: Connection): Promise<WireReply> {
  await conn.metadata.call('ListChunkservers', { limit: 1 }); // a leader-served read: the client now targets the leader
  for (let attempt = 0; attempt < 3; attempt++) {
    const s = await conn.metadata.clusterStatus();
    if (s['role'] === 'leader') return s;
    const address = str(s['leaderAddress']);
    if (address !== '') {
      const l = await conn.metadata.clusterStatus(address);
      if (l['role'] === 'leader') return l;
    }
  }
  throw new CliError(exitCodes.unreachable, 'no leader known; see `rfsctl status`', 'UNAVAILABLE');
}

// ---------------------------------------------------------------- chunkservers

export interface ChunkserverRow {
  id: number;
  address: string;
  rack: string;
  state: string;
  capacityBytes: number;
  usedBytes: number;
  registeredMs: number;
  updatedMs: number;
}

export async function listAllChunkservers(ctx: Context): Promise<ChunkserverRow[]> {
  const conn = await ctx.connect();
  const out: ChunkserverRow[] = [];
  let after = 0;
  for (;;) {
    const reply = await conn.metadata.call('ListChunkservers', { after });
    for (const c of (reply['chunkservers'] ?? []) as Record<string, unknown>[]) {
      out.push({
        id: num(c['id']),
        address: str(c['address']),
        rack: str(c['rack']),
        state: str(c['state']),
        capacityBytes: num(c['capacityBytes']),
        usedBytes: num(c['usedBytes']),
        registeredMs: num(c['registeredMs']),
        updatedMs: num(c['updatedMs']),
      });
    }
    if (reply['hasMore'] !== true) return out;
    after = num(reply['nextAfter']);
  }
}

function usedPercent(c: ChunkserverRow): string {
  return c.capacityBytes === 0 ? '-' : `${((100 * c.usedBytes) / c.capacityBytes).toFixed(1)}%`;
}

export async function chunkserversList(ctx: Context): Promise<ExitCode> {
  const rows = await listAllChunkservers(ctx).catch((e: unknown) => {
    throw toCliError(e, 'chunkservers');
  });
  if (ctx.options.json) {
    ctx.json({ chunkservers: rows });
    return exitCodes.ok;
  }
  if (rows.length === 0) {
    ctx.out('no chunkserver registered');
    return exitCodes.ok;
  }
  ctx.out(table(['ID', 'ADDRESS', 'RACK', 'STATE', 'USED', 'CAPACITY', 'USE%', 'UPDATED'], rows.map((c) => [c.id, c.address, c.rack, c.state, humanBytes(c.usedBytes), humanBytes(c.capacityBytes), usedPercent(c), isoTime(c.updatedMs)])));
  return exitCodes.ok;
}

/** An admin call about one chunkserver; its errors name the chunkserver. */
async function chunkserverCall(ctx: Context, method: 'DecommissionChunkserver' | 'ForgetChunkserver', id: number): Promise<void> {
  const conn = await ctx.connect();
  try {
    await conn.metadata.call(method, { id });
  } catch (error) {
    throw toCliError(error, `chunkserver ${id}`);
  }
}

export async function chunkserversDecommission(ctx: Context, args: { id: number }): Promise<ExitCode> {
  await chunkserverCall(ctx, 'DecommissionChunkserver', args.id);
  if (ctx.options.json) ctx.json({ id: args.id, state: 'decommissioning' });
  else ctx.out(`chunkserver ${args.id}: decommissioning (its chunks are copied elsewhere, then it is marked decommissioned; follow with \`rfsctl chunkservers list\`)`);
  return exitCodes.ok;
}

export async function chunkserversForget(ctx: Context, args: { id: number }): Promise<ExitCode> {
  await chunkserverCall(ctx, 'ForgetChunkserver', args.id);
  if (ctx.options.json) ctx.json({ id: args.id, forgotten: true });
  else ctx.out(`chunkserver ${args.id}: forgotten (it is no longer listed; its id is not reused)`);
  return exitCodes.ok;
}

// ---------------------------------------------------------------- fsck

type ChunkProblem = 'missing' | 'under-replicated' | 'unsealed' | 'corrupt';

interface ChunkReport {
  index: number;
  handle: number;
  version: number;
  sealed: boolean;
  replicas: { id: number; address: string; state: string; verified?: 'ok' | 'corrupt' | 'unreadable' }[];
  liveReplicas: number;
  problems: ChunkProblem[];
}

interface FileReport {
  path: string;
  lengthBytes: number;
  replication: number;
  complete: boolean;
  chunks: number;
  problems: ChunkReport[];
}

/** Bytes per range read when fsck --verify reads a replica back. */
const verifyPieceBytes = 1024 * 1024;

/** Reads one replica whole through the data plane and compares its CRC32C with the sealed checksum. */
async function verifyReplica(conn: Connection, chunk: ChunkLocation, address: string): Promise<'ok' | 'corrupt' | 'unreadable'> {
  let crc = 0;
  try {
    for (let offset = 0; offset < chunk.lengthBytes; offset += verifyPieceBytes) {
      const length = Math.min(verifyPieceBytes, chunk.lengthBytes - offset);
      const piece = await conn.data.readRange(address, { handle: chunk.handle, version: chunk.version, offset, length });
      crc = crc32c(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength), crc);
    }
  } catch (error) {
    return conn.data.errorCode(error) === 'CHECKSUM_MISMATCH' ? 'corrupt' : 'unreadable';
  }
  return crc === chunk.checksum ? 'ok' : 'corrupt';
}

export async function fsck(ctx: Context, args: { path: string | undefined; verify: boolean }): Promise<ExitCode> {
  const conn = await ctx.connect();
  const root = rfsPath(args.path ?? '/');
  const servers = new Map((await listAllChunkservers(ctx)).map((c) => [c.id, c] as const));
  const readable = (state: string | undefined): boolean => state === 'live' || state === 'decommissioning';
  const files: FileReport[] = [];
  let chunkCount = 0;
  let directories = 0;
  const checkFile = async (path: string, replication: number): Promise<void> => {
    const report: FileReport = { path, lengthBytes: 0, replication, complete: true, chunks: 0, problems: [] };
    for (let fromIndex: number | null = 0; fromIndex !== null; ) {
      const page = await conn.metadata.chunkLocations(path, { fromIndex });
      report.lengthBytes = page.lengthBytes;
      report.complete = page.complete;
      for (const c of page.chunks) {
        report.chunks++;
        const replicas: ChunkReport['replicas'] = c.replicas.map((r) => ({ id: r.id, address: r.address, state: servers.get(r.id)?.state ?? 'unknown' }));
        // A decommissioning server still serves reads but its copies are on their way out: count only live ones.
        const live = replicas.filter((r) => r.state === 'live').length;
        const problems: ChunkProblem[] = [];
        if (!replicas.some((r) => readable(r.state))) problems.push('missing');
        else if (c.sealed && live < replication) problems.push('under-replicated');
        if (!c.sealed && page.complete) problems.push('unsealed');
        if (args.verify && c.sealed) {
          for (const r of replicas) {
            if (!readable(r.state)) continue;
            r.verified = await verifyReplica(conn, c, r.address);
          }
          if (replicas.some((r) => r.verified === 'corrupt' || r.verified === 'unreadable')) problems.push('corrupt');
        }
        if (problems.length > 0) report.problems.push({ index: c.index, handle: c.handle, version: c.version, sealed: c.sealed, replicas, liveReplicas: live, problems });
      }
      fromIndex = page.nextIndex;
    }
    chunkCount += report.chunks;
    files.push(report);
  };
  const rootInfo = await conn.metadata.stat(root).catch((e: unknown) => {
    throw toCliError(e, root);
  });
  const pending: string[] = [];
  if (rootInfo.type === 'file') await checkFile(root, rootInfo.replication);
  else pending.push(root);
  while (pending.length > 0) {
    const dir = pending.shift()!;
    directories++;
    for (const e of await conn.metadata.readdir(dir)) {
      const path = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
      if (e.type === 'dir') pending.push(path);
      else {
        try {
          await checkFile(path, (await conn.metadata.stat(path)).replication);
        } catch (error) {
          // Removed while we walked: not a problem of the file system.
          if (!(error instanceof MetadataError && error.code === 'ENOENT')) throw error;
        }
      }
    }
  }
  const bad = files.filter((f) => f.problems.length > 0);
  const count = (p: ChunkProblem): number => bad.reduce((n, f) => n + f.problems.filter((c) => c.problems.includes(p)).length, 0);
  const summary = {
    path: root,
    files: files.length,
    directories,
    chunks: chunkCount,
    missingChunks: count('missing'),
    underReplicatedChunks: count('under-replicated'),
    unsealedChunks: count('unsealed'),
    corruptChunks: count('corrupt'),
    openFiles: files.filter((f) => !f.complete).map((f) => f.path),
    verified: args.verify,
    healthy: bad.length === 0,
  };
  if (ctx.options.json) {
    ctx.json({ ...summary, problems: bad.map((f) => ({ path: f.path, replication: f.replication, chunks: f.problems })) });
    return bad.length === 0 ? exitCodes.ok : exitCodes.partial;
  }
  for (const f of bad) {
    for (const c of f.problems) {
      const where = c.replicas.map((r) => `${r.id}(${r.state}${r.verified !== undefined ? `, ${r.verified}` : ''})`).join(' ');
      ctx.out(`${f.path}: chunk ${c.index} (handle ${c.handle} v${c.version}): ${c.problems.join(', ')}; ${c.liveReplicas}/${f.replication} live replicas: ${where === '' ? 'none' : where}`);
    }
  }
  ctx.out(`${root}: ${summary.files} files, ${summary.directories} directories, ${summary.chunks} chunks${args.verify ? ' (replicas read back and checksummed)' : ''}`);
  ctx.out(`  missing: ${summary.missingChunks}, under-replicated: ${summary.underReplicatedChunks}, unsealed in complete files: ${summary.unsealedChunks}, corrupt: ${args.verify ? summary.corruptChunks : 'not checked (use --verify)'}`);
  if (summary.openFiles.length > 0) ctx.out(`  open for writing (not checked as problems): ${summary.openFiles.join(', ')}`);
  ctx.out(bad.length === 0 ? `${root}: HEALTHY` : `${root}: ${bad.length} file(s) with problems`);
  return bad.length === 0 ? exitCodes.ok : exitCodes.partial;
}

// ---------------------------------------------------------------- balance

/** The chunk manager's default rebalancing threshold (src/placement/limits.ts); leader-local policy. */
const rebalanceThresholdPermilleDefault = 100;

export async function balance(ctx: Context): Promise<ExitCode> {
  const rows = (await listAllChunkservers(ctx)).filter((c) => c.state === 'live');
  const permille = (c: ChunkserverRow): number => (c.capacityBytes === 0 ? 0 : Math.round((1000 * c.usedBytes) / c.capacityBytes));
  const sorted = [...rows].sort((a, b) => permille(b) - permille(a));
  const fullest = sorted[0];
  const emptiest = sorted[sorted.length - 1];
  const spreadPermille = fullest === undefined || emptiest === undefined ? 0 : permille(fullest) - permille(emptiest);
  const wouldMove = spreadPermille > rebalanceThresholdPermilleDefault;
  const result = {
    servers: sorted.map((c) => ({ id: c.id, address: c.address, rack: c.rack, usedBytes: c.usedBytes, capacityBytes: c.capacityBytes, usedPermille: permille(c) })),
    spreadPermille,
    thresholdPermille: rebalanceThresholdPermilleDefault,
    // What the leader's chunk manager does on its own: one chunk at a time from the fullest to the emptiest.
    plannedMove: wouldMove ? { from: fullest!.id, to: emptiest!.id } : null,
  };
  if (ctx.options.json) {
    ctx.json(result);
    return exitCodes.ok;
  }
  if (rows.length === 0) {
    ctx.out('no live chunkserver');
    return exitCodes.ok;
  }
  ctx.out(table(['ID', 'ADDRESS', 'RACK', 'USED', 'CAPACITY', 'USE%'], sorted.map((c) => [c.id, c.address, c.rack, humanBytes(c.usedBytes), humanBytes(c.capacityBytes), usedPercent(c)])));
  ctx.out(`spread between fullest and emptiest: ${(spreadPermille / 10).toFixed(1)} points (the chunk manager acts above ${rebalanceThresholdPermilleDefault / 10} by default)`);
  ctx.out(
    wouldMove
      ? `unbalanced: with default limits the leader's chunk manager moves chunks from ${fullest!.id} to ${emptiest!.id} by itself, one at a time (rfsctl only reports; it cannot start or steer moves)`
      : 'balanced: the chunk manager moves nothing',
  );
  return exitCodes.ok;
}
