/**
 * The chunk manager: the metadata leader's background work on chunks (GFS §4). Pure: time arrives as
 * `nowMs` arguments, randomness from an injected RandomSource; nothing here does I/O.
 *
 * State. The replicated state (chunkservers, placements) arrives as a ClusterView the caller loads from the
 * state machine; everything else lives in this object only (the leader's memory, never replicated): last
 * heartbeats, reported disk usage, which server reported which chunk at which version, copies in flight,
 * commands waiting for a server's next heartbeat, proposals not yet settled. A new leader builds a new
 * manager and learns it all again from heartbeats and full chunk reports.
 *
 * Every decision that changes replicated state is a state-machine command (an Op) handed to the caller to
 * propose (`takeProposals`); commands for chunkservers (replicate, delete) travel in heartbeat and report
 * replies. The state machine re-checks what it is sent (versions: ESTALE; generations: EPRECONDITION), so a
 * decision taken on a stale view fails harmlessly and is retaken on the next view.
 *
 * Rules (ARCHITECTURE.md, "Chunk management"):
 * - liveness: silent for heartbeatTimeoutMs → dead; a new leader first grants leaderGraceMs to everyone, and a
 *   leader whose ticks stalled gives the stalled time back; a dead server that heartbeats again is
 *   re-registered (live);
 * - re-replication (sealed chunks of live files): fewer live listed replicas than the file's replication
 *   factor → a known holder at the current version copies it to a new target (never one that holds or is
 *   getting the chunk), most-missing first, at most reReplicationsPerServerMax copies per server and
 *   reReplicationsClusterMax in all; the target's report of the chunk at that version, sealed and at the
 *   chunk's length, adds it to the list;
 * - trimming: once enough live replicas are listed, listed replicas on dead/decommissioning servers and
 *   replicas beyond the factor are dropped from the list; a surplus replica on a live server (and a move's
 *   source) is then ordered deleted once the view shows it unlisted, or listed again instead if the chunk
 *   has since fallen short (its factor raised); a dead server's is deleted when it reports it again;
 * - garbage collection: a reported replica of an unknown handle (below the state's next handle), of a deleted
 *   file, at a version below the current one, or not listed while enough are → "delete"; a listed replica
 *   missing from a full report, or stale, is dropped from the list;
 * - decommissioning: a decommissioning server counts as no replica; once no sealed chunk lists it, it is
 *   marked decommissioned;
 * - rebalancing: while the fullest and emptiest live servers differ by more than rebalanceThresholdPermille,
 *   move one chunk at a time from the fullest to the emptiest, at most rebalanceMovesMax in flight;
 * - bad replicas (a reader found one corrupt or failing, `reportBadReplica`): remembered (leader memory, at
 *   most badReplicasMax) at the chunk's version; such a replica counts as no replica and is no copy source; it
 *   is unlisted while another usable replica (live or decommissioning) is listed, then ordered deleted; it is
 *   never re-listed from that copy. Forgotten once the server reports the copy gone, or the chunk is gone.
 * - lease recovery (a file whose writer vanished): see planLeaseRecoveries.
 * Unsealed chunks belong to their writer's pipeline (bumpChunkVersion chooses their replicas): the manager
 * neither copies nor trims them, and deletes only replicas of them that are stale and unlisted; once their
 * writer is gone, lease recovery seals them.
 */
import type { Op } from '../fsm/commands.ts';
import type { ChunkserverState } from '../fsm/records.ts';
import { RECOVERY_HOLDER } from '../fsm/records.ts';
import { assert } from '../raft/errors.ts';
import type { RandomSource } from '../raft/config.ts';
import type { PlacementBug } from './bugs.ts';
import { noPlacementBugs } from './bugs.ts';
import { PlacementError } from './errors.ts';
import type { ChunkManagerLimits } from './limits.ts';
import { checkChunkManagerLimits, defaultChunkManagerLimits } from './limits.ts';
import type { Candidate } from './select.ts';
import { chooseTargets, usedPermille } from './select.ts';

export interface ServerView {
  readonly id: number;
  readonly address: string;
  readonly rack: string;
  readonly state: ChunkserverState;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly generation: number;
}

export interface ChunkView {
  readonly handle: number;
  readonly fileId: number;
  readonly version: number;
  readonly replicas: readonly number[];
  readonly sealed: boolean;
  readonly lengthBytes: number;
  /** The file's replication factor. */
  readonly replication: number;
  /** The file is still in the tree. */
  readonly fileLive: boolean;
  /** Its place in the file's chunk list (lease recovery takes a file's unsealed chunks lowest first). Absent: handle order. */
  readonly index?: number | undefined;
}

/** A file's lease record, live or expired (`holder` RECOVERY_HOLDER: the leader is recovering the file). */
export interface LeaseView {
  readonly holder: string;
  readonly expiresMs: number;
}

/** The replicated state the manager decides on (loaded by the caller; see view.ts). */
export interface ClusterView {
  readonly servers: ReadonlyMap<number, ServerView>;
  readonly chunks: ReadonlyMap<number, ChunkView>;
  /** Handles at or above this did not exist when the view was loaded. */
  readonly nextChunkHandle: number;
  /** Lease records by file id (absent: none). */
  readonly leases?: ReadonlyMap<number, LeaseView> | undefined;
}

export const emptyView: ClusterView = { servers: new Map(), chunks: new Map(), nextChunkHandle: 1 };

/** A command for a chunkserver, carried by a heartbeat or chunk report reply. */
export type ChunkserverCommand =
  /** Copy your replica of `handle` (at exactly `version`) to `target`. */
  | { readonly kind: 'replicate'; readonly handle: number; readonly version: number; readonly target: number; readonly targetAddress: string }
  /** Delete your replica of `handle` if its version is at most `version`. */
  | { readonly kind: 'delete'; readonly handle: number; readonly version: number }
  /**
   * Lease recovery of the unsealed chunk `handle`, now at `version`. Without `lengthBytes`: report your replica
   * of it (next chunk report). With it: cut your unsealed replica (at `version` or below, holding at least that
   * many bytes) to `lengthBytes`, raise it to `version`, and seal it; then report it.
   */
  | { readonly kind: 'recover'; readonly handle: number; readonly version: number; readonly lengthBytes?: number | undefined };

export interface ReportedChunk {
  readonly handle: number;
  readonly version: number;
  readonly lengthBytes: number;
  /**
   * Whether the replica is sealed (its length final and durable on the chunkserver). A copy is listed only
   * once it reports sealed: an unsealed one of the right length may still be lost to a crash before its
   * seal. Absent (a chunkserver that does not send it): judged by length alone.
   */
  readonly sealed?: boolean;
  /** CRC32C of the replica's bytes, when sealed (lease recovery records it). */
  readonly checksum?: number | undefined;
}

export interface ChunkReport {
  /**
   * A full report lists every replica the server holds; an incremental one only changes. A full report larger
   * than one message goes as several: the first has `full`, every one but the last has `fullMore`.
   */
  readonly full: boolean;
  /**
   * More messages of this full report follow. Until its last message (the first without it) the leader
   * unlists nothing the report has not named yet: it holds only the first pages so far.
   */
  readonly fullMore?: boolean | undefined;
  readonly chunks: readonly ReportedChunk[];
  /** Incremental reports: handles the server no longer holds. */
  readonly removed?: readonly number[] | undefined;
}

export interface Usage {
  readonly capacityBytes: number;
  readonly usedBytes: number;
}

export interface Reply {
  readonly commands: ChunkserverCommand[];
  /** The manager has no full report from this server yet (a new leader): send one. */
  readonly fullReportWanted: boolean;
}

export interface Proposal {
  /** What the proposal is about ('chunk:H' or 'server:S'): one unsettled proposal per key. */
  readonly key: string;
  readonly op: Op;
}

/** What a reader's report of a bad replica led to (see ChunkService.reportBadReplica). */
export type BadReplicaOutcome = 'dropped' | 'pending' | 'not_listed' | 'last_replica' | 'unsealed';

/** A replica a reader reported bad: at which version, and whether its delete command was queued. */
interface BadMark {
  readonly version: number;
  deleteQueued: boolean;
}

export interface ChunkManagerStatus {
  readonly live: number;
  readonly dead: number;
  readonly decommissioning: number;
  readonly decommissioned: number;
  /** Sealed chunks of live files with fewer live listed replicas than their file's factor. */
  readonly underReplicated: number;
  readonly copiesInFlight: number;
}

/** A replica's answer to a lease recovery command (null: the server does not hold the chunk). */
interface RecoveryAnswer {
  readonly version: number;
  readonly lengthBytes: number;
  readonly sealed: boolean;
  readonly checksum: number | undefined;
}

/**
 * The lease recovery of one unsealed chunk (the lowest one of its file): asking its replicas what they hold,
 * then having those that can seal at the agreed length, then proposing recoverChunk.
 */
interface Recovery {
  readonly fileId: number;
  readonly handle: number;
  readonly version: number;
  readonly startedMs: number;
  phase: 'asking' | 'sealing';
  phaseStartedMs: number;
  /** Servers this phase's command was queued for. */
  readonly targets: Set<number>;
  /** Those of them handed it (only their later reports are answers). */
  readonly asked: Set<number>;
  readonly answers: Map<number, RecoveryAnswer | null>;
  /**
   * Those that said, in a report after they were asked, that they hold no replica of the chunk (the agent
   * answers every query with a report naming the handle). Only these nulls let a chunk be dropped at once: a
   * null taken from the leader's holdings may predate a replica's report (a full report in several messages,
   * a replica created after the server's last report).
   */
  readonly saidNone: Set<number>;
  /** The sealing phase's length. */
  lengthBytes: number;
}

interface Copy {
  readonly handle: number;
  readonly version: number;
  readonly source: number;
  readonly target: number;
  readonly startedMs: number;
  /** Rebalancing: the replica the copy replaces. */
  readonly moveFrom: number | null;
}

export interface ChunkManagerOptions {
  readonly random: RandomSource;
  /** When this member became leader (the start of every server's grace period). */
  readonly nowMs: number;
  readonly limits?: Partial<ChunkManagerLimits> | undefined;
  readonly bugs?: ReadonlySet<PlacementBug> | undefined;
}

export class ChunkManager {
  readonly limits: ChunkManagerLimits;
  private readonly random: RandomSource;
  private readonly bugs: ReadonlySet<PlacementBug>;
  private view: ClusterView = emptyView;
  private readonly startedMs: number;
  private lastTickMs: number | null = null;
  private readonly lastHeartbeatMs = new Map<number, number>();
  private readonly usage = new Map<number, Usage>();
  /** server → handle → version, from chunk reports. */
  private readonly holdings = new Map<number, Map<number, number>>();
  private readonly fullReportSeen = new Set<number>();
  /** Servers whose full report has begun (`full` with `fullMore`) and not yet ended. */
  private readonly fullReportsOpen = new Set<number>();
  private readonly copies = new Map<number, Copy[]>();
  private copyCount = 0;
  private readonly outbox = new Map<number, ChunkserverCommand[]>();
  private readonly proposals: Proposal[] = [];
  /** key → time after which the proposal may be made again. */
  private readonly unsettled = new Map<string, number>();
  /** handle → server → its replica reported bad by a reader. At most limits.badReplicasMax marks in all. */
  private readonly badReplicas = new Map<number, Map<number, BadMark>>();
  private badReplicaCount = 0;
  /** Lease recoveries in progress, by chunk handle; at most limits.leaseRecoveriesMax. */
  private readonly recoveries = new Map<number, Recovery>();
  /**
   * Complete copies (sealed, at the chunk's length) on live servers that are, or are about to be, unlisted, by
   * chunk handle: the surplus of a trim, a move's source, a copy that arrived or was reported while the chunk
   * was short. Each pass lists such a copy while the chunk is short and deletes it once enough are listed
   * (settleUnlistedCopies), whatever became of the proposal that listed or unlisted it: no report need come.
   * At most one entry per chunk of the view.
   */
  private readonly unlistedCopies = new Map<number, { readonly version: number; readonly servers: Map<number, number> }>();
  /** The garbage sweep's place: the server being swept, the handles it held when its turn began, the next one. */
  private sweep: { readonly server: number; readonly handles: number[]; next: number } | null = null;
  /**
   * `handle:server` → until when a listing of that server's copy, proposed by this manager, may still apply
   * (its proposal's outcome unknown): the copy is never ordered deleted meanwhile (see spareCopy).
   */
  private readonly listingGuard = new Map<string, number>();
  /**
   * Listed replicas of sealed chunks that their servers reported gone (removed, absent from a full report, or
   * at an older version), by chunk handle: unlisted by every pass until the view shows it, whatever became of
   * the first proposal (it may have been refused, lost, or not made while another change of the list was in
   * flight). Without this, such a chunk looked fully replicated until the server's next full report.
   */
  private readonly goneReplicas = new Map<number, Set<number>>();
  /** Servers left in the sweep's current round. */
  private sweepRound: number[] = [];
  /** server → handle → when the sweep ordered the replica deleted (kept while the server still reports it). */
  private readonly sweepDeletes = new Map<number, Map<number, number>>();

  constructor(options: ChunkManagerOptions) {
    this.limits = { ...defaultChunkManagerLimits, ...options.limits };
    checkChunkManagerLimits(this.limits);
    this.random = options.random;
    this.bugs = options.bugs ?? noPlacementBugs;
    this.startedMs = options.nowMs;
  }

  /**
   * The replicated state to decide on from now on. What the manager kept about servers the view no longer
   * has (forgotten: ForgetChunkserver) is dropped.
   */
  setView(view: ClusterView): void {
    this.view = view;
    this.dropForgottenServers();
  }

  /** Drops what is kept per server for servers not in the view (a pass over at most the registry's size). */
  private dropForgottenServers(): void {
    const servers = this.view.servers;
    for (const map of [this.lastHeartbeatMs, this.usage, this.holdings, this.outbox, this.sweepDeletes]) for (const id of map.keys()) if (!servers.has(id)) map.delete(id);
    for (const set of [this.fullReportSeen, this.fullReportsOpen]) for (const id of set) if (!servers.has(id)) set.delete(id);
  }

  /**
   * Why the chunkserver may not be forgotten now (ForgetChunkserver), or undefined when it may: it must be
   * dead or decommissioned, listed by no chunk of the view (sealed or not, of a live file or not), in no copy
   * or lease recovery, and silent for heartbeatTimeoutMs (a new leader first waits leaderGraceMs, as for
   * liveness). Such a server is given no replica, and a dead one comes back only through a registration,
   * which changes the generation the command is proposed under: the answer cannot go stale before the
   * forgetChunkserver command applies.
   */
  forgetRefusal(id: number, nowMs: number): string | undefined {
    const server = this.mustServer(id);
    if (server.state === 'decommissioning') return `chunkserver ${id} is decommissioning: wait until it is decommissioned (its chunks are being copied elsewhere)`;
    if (server.state === 'live') return `chunkserver ${id} is live: decommission it first (rfsctl chunkservers decommission ${id}), then wait until it is decommissioned`;
    for (const chunk of this.view.chunks.values()) if (chunk.replicas.includes(id)) return `chunk ${chunk.handle} still lists chunkserver ${id} (wait until its chunks are copied elsewhere and it is unlisted)`;
    for (const list of this.copies.values()) for (const c of list) if (c.source === id || c.target === id) return `a copy of chunk ${c.handle} involves chunkserver ${id}`;
    for (const r of this.recoveries.values()) if (r.targets.has(id)) return `the lease recovery of chunk ${r.handle} involves chunkserver ${id}`;
    const last = this.lastHeartbeatMs.get(id) ?? this.startedMs + this.limits.leaderGraceMs - this.limits.heartbeatTimeoutMs;
    if (nowMs - last <= this.limits.heartbeatTimeoutMs) return `chunkserver ${id} was heard from ${Math.max(0, Math.round(nowMs - last))} ms ago: stop it, and forget it once it has been silent for ${this.limits.heartbeatTimeoutMs} ms`;
    return undefined;
  }

  currentView(): ClusterView {
    return this.view;
  }

  // ---------------------------------------------------------------- chunkserver inputs

  /** A heartbeat: the server is alive and reports its disk usage. Returns its queued commands. */
  heartbeat(id: number, nowMs: number, usage: Usage): Reply {
    const server = this.mustServer(id);
    this.usage.set(id, usage);
    this.sawAlive(server, nowMs);
    return this.reply(id, nowMs);
  }

  /** A sign of life: a dead server is re-registered (live again). */
  private sawAlive(server: ServerView, nowMs: number): void {
    const id = server.id;
    this.lastHeartbeatMs.set(id, nowMs);
    const usage = this.usage.get(id) ?? server;
    if (server.state === 'dead') {
      // Back from the dead: what it holds may have changed while it was away (copies lost, others kept that
      // were unlisted meanwhile), so its holdings are learnt again from a full report.
      this.fullReportSeen.delete(id);
      this.propose(`server:${id}`, nowMs, {
        type: 'registerChunkserver',
        id,
        address: server.address,
        rack: server.rack,
        capacityBytes: usage.capacityBytes,
        usedBytes: usage.usedBytes,
        ifGeneration: server.generation,
      });
    }
  }

  /** A chunk report (also counts as a heartbeat). Returns delete commands for garbage, and queued commands. */
  chunkReport(id: number, nowMs: number, report: ChunkReport): Reply {
    const server = this.mustServer(id);
    if (report.chunks.length > this.limits.reportChunksMax) {
      throw new PlacementError('EINVAL', `a report of ${report.chunks.length} chunks exceeds ${this.limits.reportChunksMax}`);
    }
    this.sawAlive(server, nowMs);
    let held = this.holdings.get(id);
    if (held === undefined || report.full) this.holdings.set(id, (held = new Map<number, number>()));
    for (const handle of report.removed ?? []) held.delete(handle);
    for (const c of report.chunks) held.set(c.handle, c.version);
    // A full report's end: its only message, or the last of several that began with `full`.
    const fullEnds = report.fullMore !== true && (report.full || this.fullReportsOpen.has(id));
    if (report.full && report.fullMore === true) this.fullReportsOpen.add(id);
    else if (report.fullMore !== true) this.fullReportsOpen.delete(id);
    if (fullEnds) this.fullReportSeen.add(id);
    this.forgetDeletedBadReplicas(id, held, report, fullEnds);
    if (this.recoveries.size > 0) this.recordRecoveryAnswers(id, report, held, fullEnds);
    const commands = this.judgeReport(id, nowMs, report, fullEnds);
    return { commands: [...commands, ...this.reply(id, nowMs).commands], fullReportWanted: !this.fullReportSeen.has(id) };
  }

  /** Garbage and stale replicas in a report; completed copies; listed replicas a full report lacks. */
  private judgeReport(id: number, nowMs: number, report: ChunkReport, fullEnds: boolean): ChunkserverCommand[] {
    const out: ChunkserverCommand[] = [];
    // The holding stays known until the server reports the deletion: until then it is no copy target.
    const del = (handle: number, version: number): void => {
      out.push({ kind: 'delete', handle, version });
      this.markDeleteOrdered(id, handle, nowMs); // the sweep need not order it again before gcDeleteRetryMs
    };
    for (const r of report.chunks) {
      const chunk = this.view.chunks.get(r.handle);
      if (chunk === undefined) {
        // Below the next handle and absent: reclaimed (its file was deleted). At or above: our view is older.
        if (r.handle < this.view.nextChunkHandle && !this.bugs.has('placement-keep-orphans')) del(r.handle, r.version);
        continue;
      }
      if (!chunk.fileLive) {
        del(r.handle, r.version);
        continue;
      }
      if (r.version > chunk.version) continue; // a pipeline our view has not seen yet
      const listed = chunk.replicas.includes(id);
      if (r.version < chunk.version) {
        if (this.bugs.has('placement-keep-stale')) continue;
        if (!listed) del(r.handle, r.version);
        else if (chunk.sealed) {
          this.dropReplica(chunk, id, nowMs);
          del(r.handle, r.version);
        }
        continue;
      }
      if (this.isBad(chunk.handle, id, chunk.version)) {
        // Never re-listed from this copy; once unlisted, the delete is repeated on every report of it.
        if (!listed) del(r.handle, r.version);
        continue;
      }
      if (!listed && !chunk.sealed && r.sealed !== false) {
        // A pipeline's replica that sealed and was left out of the list (or whose report came before the seal
        // applied): judged once the view has the chunk sealed, without waiting for another report.
        this.noteUnlistedCopy(chunk, id, r.lengthBytes);
      }
      if (listed || !chunk.sealed) continue;
      // A copy still arriving (or one cut off midway) holds fewer bytes than the sealed chunk, or all of them
      // but not yet sealed (its bytes are not durable until then): not a replica. Once no copy to this server
      // is in flight, the remnant is garbage.
      if (r.lengthBytes !== chunk.lengthBytes || r.sealed === false) {
        if (!this.copies.get(chunk.handle)?.some((c) => c.target === id && c.version === chunk.version)) del(r.handle, r.version);
        continue;
      }
      this.onUnlistedCurrentReplica(chunk, id, nowMs, del);
    }
    // A listed sealed replica the server does not hold: unlisted. Judged over every chunk at the end of a full
    // report, and for the ones an incremental report names removed (a lost file, a replica its store dropped),
    // so re-replication starts now, not at the next full report.
    const held = this.holdings.get(id)!;
    const unlistIfGone = (chunk: ChunkView | undefined): void => {
      if (chunk?.sealed === true && chunk.fileLive && chunk.replicas.includes(id) && !held.has(chunk.handle)) this.dropReplica(chunk, id, nowMs);
    };
    if (fullEnds) for (const chunk of this.view.chunks.values()) unlistIfGone(chunk);
    for (const handle of report.removed ?? []) unlistIfGone(this.view.chunks.get(handle));
    return out;
  }

  /** A live server holds a sealed chunk at its current version without being listed. */
  private onUnlistedCurrentReplica(
    chunk: ChunkView,
    id: number,
    nowMs: number,
    del: (handle: number, version: number) => void,
  ): void {
    const copy = this.copies.get(chunk.handle)?.find((c) => c.target === id && c.version === chunk.version);
    const server = this.view.servers.get(id);
    if (server?.state !== 'live') {
      // A server coming back from the dead (its re-registration not applied yet), or one being drained: its
      // copy may be the best one left, so it goes only once enough live replicas are listed.
      if (this.confirmedListed(chunk).length >= chunk.replication && !this.unsettled.has(`chunk:${chunk.handle}`)) {
        del(chunk.handle, chunk.version);
      } else if (server?.state === 'dead') {
        // Listed (or deleted) once its registration applies, without waiting for another report.
        this.noteUnlistedCopy(chunk, id);
      }
      return;
    }
    if (copy !== undefined) {
      // A copy we ordered arrived: list it (a move also unlists the replica it replaces).
      const keep = chunk.replicas.filter((r) => r !== copy.moveFrom && this.stateOf(r) !== 'dead');
      this.proposeReplicas(chunk, [...keep, id], nowMs);
      if (copy.moveFrom !== null && this.stateOf(copy.moveFrom) === 'live') this.noteUnlistedCopy(chunk, copy.moveFrom);
      this.noteUnlistedCopy(chunk, id); // until the listing applies (a refused or lost proposal is made again)
      this.guardListing(chunk, id, nowMs);
      this.finishCopy(copy);
      return;
    }
    if (this.liveListed(chunk).length < chunk.replication) {
      // A server back from the dead (or a copy of a former leader): list it instead of copying again.
      this.listCopy(chunk, id, nowMs);
      return;
    }
    if (!this.unsettled.has(`chunk:${chunk.handle}`) && this.spareCopy(chunk, id, nowMs)) del(chunk.handle, chunk.version);
    // Not known to be spare yet (a listed copy's server has not reported to this leader): remembered, so it is
    // deleted once it is, or listed if the chunk falls short first, without waiting for another report.
    else this.noteUnlistedCopy(chunk, id);
  }

  /** Unlists a replica the server does not hold (any more) at the current version, if others remain. */
  private dropReplica(chunk: ChunkView, id: number, nowMs: number): void {
    const gone = this.goneReplicas.get(chunk.handle) ?? new Set<number>();
    gone.add(id);
    this.goneReplicas.set(chunk.handle, gone);
    const keep = chunk.replicas.filter((r) => !gone.has(r));
    if (keep.length > 0) this.proposeReplicas(chunk, keep, nowMs);
  }

  /** Proposes again the unlisting of replicas reported gone that the view still lists (see goneReplicas). */
  private unlistGoneReplicas(nowMs: number): void {
    for (const [handle, gone] of this.goneReplicas) {
      const chunk = this.view.chunks.get(handle);
      if (chunk === undefined || !chunk.sealed || !chunk.fileLive) {
        this.goneReplicas.delete(handle);
        continue;
      }
      // Still gone: listed, and not reported at the current version since (a copy may have come back).
      for (const id of gone) if (!chunk.replicas.includes(id) || this.holdings.get(id)?.get(handle) === chunk.version) gone.delete(id);
      if (gone.size === 0) {
        this.goneReplicas.delete(handle);
        continue;
      }
      if (this.unsettled.has(`chunk:${handle}`)) continue;
      const keep = chunk.replicas.filter((r) => !gone.has(r));
      if (keep.length > 0) this.proposeReplicas(chunk, keep, nowMs);
    }
  }

  /**
   * The server's queued commands, as of now: a copy that finished or expired while its command waited is not
   * sent, nor one the current view makes pointless (the chunk moved on, or the target is listed by now).
   */
  private reply(id: number, nowMs: number): Reply {
    const queued = this.outbox.get(id) ?? [];
    this.outbox.delete(id);
    const commands = queued.filter((c) => {
      if (c.kind === 'delete') {
        // A copy at the chunk's current version queued for deletion goes only if it is still spare now (the list
        // may have changed since: a listed copy's server died, the copy itself was listed again). Stale
        // versions, garbage of deleted files and bad copies are always sent.
        const chunk = this.view.chunks.get(c.handle);
        if (chunk === undefined || !chunk.fileLive || c.version !== chunk.version || this.isBad(c.handle, id, c.version)) return true;
        if (this.spareCopy(chunk, id, nowMs)) return true;
        this.sweepDeletes.get(id)?.delete(c.handle); // not sent: it may be ordered again as soon as it is spare
        return false;
      }
      if (c.kind === 'recover') {
        // A seal is always sent (the agent seals only an unsealed replica holding that much, and the length was
        // agreed); a query only while its recovery still asks.
        const r = this.recoveries.get(c.handle);
        const current = r !== undefined && r.version === c.version && (r.phase === 'sealing') === (c.lengthBytes !== undefined);
        if (current) r.asked.add(id);
        return current || c.lengthBytes !== undefined;
      }
      if (c.kind !== 'replicate') return true;
      const copy = this.copies.get(c.handle)?.find((x) => x.source === id && x.target === c.target && x.version === c.version);
      if (copy === undefined) return false;
      const chunk = this.view.chunks.get(c.handle);
      const pointless = chunk === undefined || chunk.version !== c.version || chunk.replicas.includes(c.target);
      if (pointless && !this.bugs.has('placement-rereplicate-onto-holder')) {
        this.finishCopy(copy);
        return false;
      }
      return true;
    });
    return { commands, fullReportWanted: !this.fullReportSeen.has(id) };
  }

  // ---------------------------------------------------------------- allocation

  /**
   * Replicas for a new chunk: up to `replication` live servers with room, rack-diverse, preferring less
   * full ones. Fewer when fewer servers qualify (re-replication tops the chunk up once it is sealed);
   * ENOSPC when none does.
   */
  allocate(replication: number): number[] {
    assert(Number.isSafeInteger(replication) && replication >= 1, `replication ${replication}`);
    const candidates = this.candidates(new Set());
    const chosen = chooseTargets(candidates, replication, new Set(), this.random);
    if (chosen.length === 0) throw new PlacementError('ENOSPC', 'no live chunkserver with free space');
    return chosen.map((c) => c.id);
  }

  /**
   * New replicas for a writer's new pipeline of `handle` (BumpChunkVersion): up to `count` live servers with
   * room, none in `exclude` (the chunk's current replicas) or known to hold the chunk, racks that `keep` (the
   * survivors) does not use first. Fewer (possibly none) when fewer servers qualify.
   */
  replacements(
    handle: number,
    { keep, exclude, count }: { readonly keep: readonly number[]; readonly exclude: readonly number[]; readonly count: number },
  ): number[] {
    if (count <= 0) return [];
    const excluded = new Set([...keep, ...exclude]);
    for (const [id, held] of this.holdings) if (held.has(handle)) excluded.add(id);
    const racks = new Set(keep.map((id) => this.view.servers.get(id)?.rack ?? ''));
    return chooseTargets(this.candidates(excluded), count, racks, this.random).map((c) => c.id);
  }

  // ---------------------------------------------------------------- bad replicas (reported by readers)

  /**
   * A reader found server `id`'s replica of `handle` at `version` corrupt or failing: remember it (see the
   * rules above). EAGAIN when badReplicasMax replicas are remembered already.
   */
  markBadReplica(handle: number, id: number, version: number): void {
    let marks = this.badReplicas.get(handle);
    const known = marks?.get(id);
    if (known !== undefined && known.version >= version) return;
    if (known === undefined && this.badReplicaCount >= this.limits.badReplicasMax) {
      throw new PlacementError('EAGAIN', `${this.badReplicaCount} bad replicas are waiting to be deleted already`);
    }
    if (marks === undefined) this.badReplicas.set(handle, (marks = new Map<number, BadMark>()));
    if (known === undefined) this.badReplicaCount++;
    marks.set(id, { version, deleteQueued: false });
  }

  /**
   * Claims the chunk's proposal slot for a caller that proposes a change of it itself (reportBadReplica):
   * false when one of this manager's proposals for the chunk is unsettled. The caller calls `settle(key)`.
   */
  claimChunk(handle: number, nowMs: number): string | null {
    const key = `chunk:${handle}`;
    if (this.unsettled.has(key)) return null;
    this.unsettled.set(key, nowMs + this.limits.proposalRetryMs);
    return key;
  }

  /**
   * The replica list of `chunk` without its bad replicas, as a setChunkReplicas to propose; or why nothing
   * changes: no bad replica is listed, or none of the others is usable (the bad one may be the best copy left).
   */
  badReplicaDrop(chunk: Pick<ChunkView, 'handle' | 'version' | 'replicas'>): { op: Op } | { outcome: 'not_listed' | 'last_replica' } {
    const keep = chunk.replicas.filter((id) => !this.isBad(chunk.handle, id, chunk.version));
    if (keep.length === chunk.replicas.length) return { outcome: 'not_listed' };
    const usable = keep.filter((id) => this.reachableServer(id));
    if (usable.length === 0) return { outcome: 'last_replica' };
    return { op: { type: 'setChunkReplicas', handle: chunk.handle, version: chunk.version, replicas: keep } };
  }

  /** Bad replicas remembered (for tests and status). */
  badReplicaMarks(): number {
    return this.badReplicaCount;
  }

  private isBad(handle: number, id: number, version: number): boolean {
    return this.badReplicas.get(handle)?.get(id)?.version === version;
  }

  private forgetBadReplica(handle: number, id: number): void {
    const marks = this.badReplicas.get(handle);
    if (marks?.delete(id) !== true) return;
    this.badReplicaCount--;
    assert(this.badReplicaCount >= 0, 'negative bad replica count');
    if (marks.size === 0) this.badReplicas.delete(handle);
  }

  /** A server reported (removed, or a full report without) copies whose delete we ordered: nothing left to do. */
  private forgetDeletedBadReplicas(id: number, held: ReadonlyMap<number, number>, report: ChunkReport, fullEnds: boolean): void {
    const handles = fullEnds ? [...this.badReplicas.keys()] : (report.removed ?? []);
    for (const handle of handles) {
      const mark = this.badReplicas.get(handle)?.get(id);
      if (mark?.deleteQueued === true && !held.has(handle)) this.forgetBadReplica(handle, id);
    }
  }

  /**
   * Bad replicas, each pass: forget those of chunks gone or moved on (the stale and garbage rules take over);
   * unlist listed ones (one proposal per chunk); order unlisted ones deleted (once; judgeReport repeats it).
   */
  private sweepBadReplicas(nowMs: number): void {
    for (const [handle, marks] of this.badReplicas) {
      const chunk = this.view.chunks.get(handle);
      if (chunk === undefined || !chunk.fileLive) {
        // Absent below the next handle: reclaimed. At or above: our view is older than the report.
        if (chunk !== undefined || handle < this.view.nextChunkHandle) for (const id of [...marks.keys()]) this.forgetBadReplica(handle, id);
        continue;
      }
      for (const [id, mark] of [...marks]) if (mark.version < chunk.version) this.forgetBadReplica(handle, id);
      if (!chunk.sealed) continue; // the writer's pipeline owns an unsealed chunk
      const drop = this.badReplicaDrop(chunk);
      if ('op' in drop) this.propose(`chunk:${handle}`, nowMs, drop.op);
      for (const [id, mark] of marks) {
        if (mark.deleteQueued || mark.version !== chunk.version || chunk.replicas.includes(id)) continue;
        mark.deleteQueued = this.enqueue(id, { kind: 'delete', handle, version: mark.version });
      }
    }
  }

  // ---------------------------------------------------------------- lease recovery

  /**
   * Lease recovery (HDFS's), each pass. A file whose lease expired leaseRecoveryDelayMs ago, or that has
   * unsealed chunks and no lease (its writer released it and went), passes to the recovery holder
   * (beginLeaseRecovery: completed at once when nothing is unsealed). Then, one chunk at a time, lowest index
   * first: its listed replicas on reachable servers are asked what they hold (a `recover` command; a server
   * whose full report lacks the chunk holds nothing). Once all answered, or after leaseRecoveryAnswerWaitMs
   * with some answers, the length is chosen: a sealed replica's (it is durable), else the shortest unsealed
   * one's. Every replica holds a prefix of the same byte stream (a writer resends exactly the bytes it wrote),
   * so cutting to it keeps what all agree on; nothing of an unsealed chunk was acknowledged durable to its
   * writer. The replicas holding that much seal at it; their reports bring the checksum; recoverChunk
   * records it (a shorter chunk ends the file). A chunk every listed replica says it does not hold is
   * dropped at once (length 0); one none of whose replicas answers with bytes for leaseRecoveryReplicasLostMs
   * is dropped then.
   */
  private planLeaseRecoveries(nowMs: number, wallMs: number): void {
    const leases = this.view.leases ?? new Map<number, LeaseView>();
    const firstUnsealed = new Map<number, ChunkView>();
    for (const chunk of this.view.chunks.values()) {
      if (chunk.sealed || !chunk.fileLive) continue;
      const prev = firstUnsealed.get(chunk.fileId);
      if (prev === undefined || (chunk.index ?? chunk.handle) < (prev.index ?? prev.handle)) firstUnsealed.set(chunk.fileId, chunk);
    }
    for (const [handle, r] of this.recoveries) {
      const chunk = firstUnsealed.get(r.fileId);
      if (chunk?.handle !== handle || chunk.version !== r.version || leases.get(r.fileId)?.holder !== RECOVERY_HOLDER) {
        this.recoveries.delete(handle);
      }
    }
    let begun = 0;
    const begin = (fileId: number): void => {
      if (begun >= this.limits.leaseRecoveriesMax) return;
      begun++;
      this.propose(`file:${fileId}`, nowMs, { type: 'beginLeaseRecovery', file: fileId, durationMs: this.limits.recoveryLeaseMs });
    };
    for (const [fileId, lease] of leases) {
      if (lease.holder === RECOVERY_HOLDER) {
        // Extended while it runs (a recovery waiting for a replica to come back can take long).
        if (lease.expiresMs - wallMs < this.limits.recoveryLeaseMs / 2) begin(fileId);
      } else if (lease.expiresMs + this.limits.leaseRecoveryDelayMs <= wallMs) {
        begin(fileId);
      }
    }
    for (const fileId of firstUnsealed.keys()) if (!leases.has(fileId)) begin(fileId);
    for (const [fileId, chunk] of firstUnsealed) {
      if (leases.get(fileId)?.holder !== RECOVERY_HOLDER) continue;
      const r = this.recoveries.get(chunk.handle);
      if (r !== undefined) {
        this.advanceRecovery(r, chunk, nowMs);
        continue;
      }
      if (this.recoveries.size >= this.limits.leaseRecoveriesMax) continue;
      const fresh: Recovery = {
        fileId,
        handle: chunk.handle,
        version: chunk.version,
        startedMs: nowMs,
        phase: 'asking',
        phaseStartedMs: nowMs,
        targets: new Set(),
        asked: new Set(),
        answers: new Map(),
        saidNone: new Set(),
        lengthBytes: 0,
      };
      this.recoveries.set(chunk.handle, fresh);
      this.askRecovery(fresh, chunk, nowMs);
    }
  }

  /** Lease recoveries in progress (for tests and status). */
  leaseRecoveries(): number {
    return this.recoveries.size;
  }

  /** (Re)starts the asking phase: every listed replica on a reachable server is asked what it holds. */
  private askRecovery(r: Recovery, chunk: ChunkView, nowMs: number): void {
    r.phase = 'asking';
    r.phaseStartedMs = nowMs;
    r.targets.clear();
    r.asked.clear();
    r.answers.clear();
    r.saidNone.clear();
    for (const id of this.reachable(chunk)) {
      if (this.enqueue(id, { kind: 'recover', handle: chunk.handle, version: chunk.version })) r.targets.add(id);
    }
  }

  private reachable(chunk: ChunkView): number[] {
    return chunk.replicas.filter((id) => this.reachableServer(id));
  }

  /** A server that holds replicas we can read or ask about: live, or being drained. */
  private reachableServer(id: number): boolean {
    const state = this.stateOf(id);
    return state === 'live' || state === 'decommissioning';
  }

  /**
   * Reports from a server asked by a recovery are its answers; a chunk a whole full report did not name (`held`
   * is all it named, once it ends) is held nowhere on that server.
   */
  private recordRecoveryAnswers(id: number, report: ChunkReport, held: ReadonlyMap<number, number>, fullEnds: boolean): void {
    for (const c of report.chunks) {
      const r = this.recoveries.get(c.handle);
      if (r?.asked.has(id) !== true) continue;
      r.answers.set(id, { version: c.version, lengthBytes: c.lengthBytes, sealed: c.sealed === true, checksum: c.checksum });
      r.saidNone.delete(id);
    }
    for (const handle of report.removed ?? []) {
      const r = this.recoveries.get(handle);
      if (r?.asked.has(id) !== true) continue;
      r.answers.set(id, null);
      r.saidNone.add(id);
    }
    if (fullEnds) for (const r of this.recoveries.values()) if (r.asked.has(id) && !held.has(r.handle)) r.answers.set(id, null);
  }

  private advanceRecovery(r: Recovery, chunk: ChunkView, nowMs: number): void {
    const key = `chunk:${chunk.handle}`;
    if (this.unsettled.has(key)) return;
    const reachable = this.reachable(chunk);
    const waited = nowMs - r.phaseStartedMs >= this.limits.leaseRecoveryAnswerWaitMs;
    // A target whose full report lacks the chunk holds nothing (it lost it, or never got a byte): unless it
    // answered since it was asked, or a full report of several messages is arriving from it (its holdings are
    // only the pages so far).
    for (const id of r.targets) {
      if (!r.asked.has(id) || r.answers.has(id) || !this.fullReportSeen.has(id) || this.fullReportsOpen.has(id)) continue;
      if (this.holdings.get(id)?.has(chunk.handle) !== true) r.answers.set(id, null);
    }
    const allAnswered = r.targets.size > 0 && [...r.targets].every((id) => r.answers.has(id));
    const recover = (lengthBytes: number, checksum: number, replicas: readonly number[]): void => {
      this.propose(key, nowMs, { type: 'recoverChunk', handle: chunk.handle, version: chunk.version, lengthBytes, checksum, replicas: [...replicas] });
    };
    if (r.phase === 'sealing') {
      const sealers = [...r.answers].filter(
        ([, a]) => a !== null && a.sealed && a.version === chunk.version && a.lengthBytes === r.lengthBytes && a.checksum !== undefined,
      );
      if (sealers.length > 0 && (allAnswered || waited)) {
        const checksum = sealers[0]![1]!.checksum!;
        recover(r.lengthBytes, checksum, sealers.filter(([, a]) => a!.checksum === checksum).map(([id]) => id));
      } else if (waited) {
        this.askRecovery(r, chunk, nowMs);
      }
      return;
    }
    // Asking. A replica at a newer version than the chunk's, or sealed at an older one, is no candidate.
    const useful = [...r.answers].flatMap(([id, a]) =>
      a !== null && chunk.replicas.includes(id) && a.version <= chunk.version && (!a.sealed || a.version === chunk.version) ? [{ id, ...a }] : [],
    );
    if (useful.length === 0) {
      // Every listed replica said, asked, that it holds nothing: none ever got a byte (a chunk allocated and
      // never written to, whose writer went), so there is nothing to wait for. With a replica unreachable, at
      // another version, or known to hold nothing only from the leader's holdings, it may yet have bytes:
      // wait leaseRecoveryReplicasLostMs.
      const heldNowhere = chunk.replicas.length > 0 && chunk.replicas.every((id) => r.saidNone.has(id) && r.answers.get(id) === null);
      if (heldNowhere || ((allAnswered || reachable.length === 0) && nowMs - r.startedMs >= this.limits.leaseRecoveryReplicasLostMs)) {
        recover(0, 0, []); // nobody holds a byte of it: the chunk (and any after it) goes
      } else if (waited) {
        this.askRecovery(r, chunk, nowMs);
      }
      return;
    }
    if (!allAnswered && !waited) return;
    const sealed = useful.filter((a) => a.sealed && a.checksum !== undefined);
    const lengthBytes = sealed.length > 0 ? Math.max(...sealed.map((a) => a.lengthBytes)) : Math.min(...useful.map((a) => a.lengthBytes));
    if (lengthBytes === 0) {
      recover(0, 0, []);
      return;
    }
    const toSeal = useful.filter((a) => !a.sealed && a.lengthBytes >= lengthBytes).map((a) => a.id);
    const sealers = sealed.filter((a) => a.lengthBytes === lengthBytes);
    if (sealers.length > 0) {
      // A replica the writer sealed (its seal never reached us): the others are cut to it, and listed once
      // they report sealed at it (as copies would be).
      const checksum = sealers[0]!.checksum!;
      recover(lengthBytes, checksum, sealers.filter((a) => a.checksum === checksum).map((a) => a.id));
      for (const id of toSeal) this.enqueue(id, { kind: 'recover', handle: chunk.handle, version: chunk.version, lengthBytes });
      return;
    }
    r.phase = 'sealing';
    r.phaseStartedMs = nowMs;
    r.lengthBytes = lengthBytes;
    r.targets.clear();
    r.asked.clear();
    r.answers.clear();
    for (const id of toSeal) {
      if (this.enqueue(id, { kind: 'recover', handle: chunk.handle, version: chunk.version, lengthBytes })) r.targets.add(id);
    }
  }

  // ---------------------------------------------------------------- the periodic pass

  /**
   * One pass of background work at `nowMs`: liveness, copies, trimming, decommissioning, rebalancing, lease
   * recovery. `wallMs`: the wall clock the leader stamps commands with, which lease expiry times are in
   * (`nowMs` may be a monotonic clock); default `nowMs`.
   */
  tick(nowMs: number, wallMs: number = nowMs): void {
    this.forgiveStall(nowMs);
    this.expire(nowMs);
    // A drained server is decommissioned even if it has also gone silent (both decisions share its key).
    this.finishDecommissions(nowMs);
    this.judgeLiveness(nowMs);
    this.sweepBadReplicas(nowMs);
    if (!this.bugs.has('placement-skip-lease-recovery')) this.planLeaseRecoveries(nowMs, wallMs);
    this.unlistGoneReplicas(nowMs);
    this.settleUnlistedCopies(nowMs);
    this.sweepGarbage(nowMs);
    const missing = this.planReplication(nowMs);
    if (missing === 0) this.rebalance(nowMs);
  }

  /** Proposals made since the last call; the caller proposes them and calls `settle(key)` when answered. */
  takeProposals(): Proposal[] {
    return this.proposals.splice(0);
  }

  /** A proposal was answered (applied, refused or dropped): the key may be proposed again once the view moves. */
  settle(key: string): void {
    this.unsettled.delete(key);
  }

  /**
   * A leader that did not run for a while (a stalled process, a long pause) heard no heartbeats in that time
   * through no fault of the servers: the time between ticks beyond half a timeout is given back to everyone.
   */
  private forgiveStall(nowMs: number): void {
    const last = this.lastTickMs;
    this.lastTickMs = nowMs;
    if (last === null) return;
    const stallMs = nowMs - last - Math.floor(this.limits.heartbeatTimeoutMs / 2);
    if (stallMs <= 0) return;
    for (const [id, t] of this.lastHeartbeatMs) this.lastHeartbeatMs.set(id, t + stallMs);
  }

  private expire(nowMs: number): void {
    for (const [key, untilMs] of this.unsettled) if (untilMs <= nowMs) this.unsettled.delete(key);
    for (const [key, untilMs] of this.listingGuard) if (untilMs <= nowMs) this.listingGuard.delete(key);
    for (const list of this.copies.values()) {
      for (const copy of [...list]) {
        const chunk = this.view.chunks.get(copy.handle);
        const stale = chunk === undefined || chunk.version !== copy.version || !chunk.fileLive;
        if (stale || nowMs - copy.startedMs > this.limits.replicationTimeoutMs) this.finishCopy(copy);
      }
    }
  }

  private judgeLiveness(nowMs: number): void {
    for (const server of this.view.servers.values()) {
      if (server.state !== 'live' && server.state !== 'decommissioning') continue;
      const last = this.lastHeartbeatMs.get(server.id);
      if (last === undefined) {
        // First sight (new leader, or a server registered since): its grace period starts now.
        this.lastHeartbeatMs.set(server.id, Math.max(nowMs, this.startedMs + this.limits.leaderGraceMs - this.limits.heartbeatTimeoutMs));
        continue;
      }
      if (nowMs - last <= this.limits.heartbeatTimeoutMs) continue;
      this.propose(`server:${server.id}`, nowMs, {
        type: 'setChunkserverState',
        id: server.id,
        state: 'dead',
        ifGeneration: server.generation,
      });
    }
  }

  /** Schedules copies for under-replicated chunks and trims over-listed ones. Returns the chunks still missing replicas. */
  private planReplication(nowMs: number): number {
    const work: { chunk: ChunkView; missing: number }[] = [];
    for (const chunk of this.view.chunks.values()) {
      if (!chunk.sealed || !chunk.fileLive || this.unsettled.has(`chunk:${chunk.handle}`)) continue;
      const live = this.liveListed(chunk);
      const inFlight = this.copies.get(chunk.handle)?.length ?? 0;
      if (live.length < chunk.replication) {
        const missing = chunk.replication - live.length - inFlight;
        if (missing > 0) work.push({ chunk, missing });
        continue;
      }
      if (inFlight > 0) continue;
      if (live.length > chunk.replication || chunk.replicas.length > live.length) this.trim(chunk, live, nowMs);
    }
    work.sort((a, b) => b.missing - a.missing || a.chunk.handle - b.chunk.handle);
    let blocked = 0;
    for (const { chunk, missing } of work) {
      for (let i = 0; i < missing; i++) {
        if (!this.startCopy(chunk, nowMs, null)) {
          blocked++;
          break;
        }
      }
    }
    return work.length === 0 ? 0 : Math.max(blocked, work.length);
  }

  /** Keeps `replication` of the live listed replicas (rack-diverse, less full first); drops the rest from the list. */
  private trim(chunk: ChunkView, live: readonly number[], nowMs: number): void {
    const candidates = live.map((id) => this.candidate(id)).filter((c) => c !== undefined);
    const keep = chooseTargets(candidates, chunk.replication, new Set(), this.random).map((c) => c.id);
    if (keep.length === 0) return;
    this.proposeReplicas(chunk, keep, nowMs);
    for (const id of live) if (!keep.includes(id)) this.noteUnlistedCopy(chunk, id);
  }

  /**
   * `id` holds a sealed copy of `chunk` at its version, `lengthBytes` long, that is, or is about to be,
   * unlisted (see unlistedCopies). Default length: the sealed chunk's (a complete copy).
   */
  private noteUnlistedCopy(chunk: ChunkView, id: number, lengthBytes = chunk.lengthBytes): void {
    let entry = this.unlistedCopies.get(chunk.handle);
    if (entry === undefined || entry.version !== chunk.version) this.unlistedCopies.set(chunk.handle, (entry = { version: chunk.version, servers: new Map() }));
    entry.servers.set(id, lengthBytes);
  }

  /**
   * Garbage collection without waiting for a report: a chunkserver reports a replica when it changes and in
   * its full report (at start, when a leader asks, hourly), and the report rules (judgeReport) delete what is
   * garbage then. A replica that became garbage while its server had nothing to say (its file deleted, its
   * copy trimmed after the factor was lowered, a move's source) would wait for the hourly report. So each pass
   * judges up to gcSweepReplicasPerPass of the replicas live servers are known to hold, server by server,
   * resuming where the last pass stopped, and orders the garbage among them deleted (isGarbage: the report
   * rules that need no length). An order is repeated only after gcDeleteRetryMs while the server still
   * reports the replica; the holding itself stays known until the server reports it gone, so the server is
   * no copy target for that chunk meanwhile.
   */
  private sweepGarbage(nowMs: number): void {
    if (this.bugs.has('placement-gc-on-reports-only')) return;
    let budget = this.limits.gcSweepReplicasPerPass;
    // At most one round of servers per pass, so a cluster of empty servers ends the loop.
    let turns = this.holdings.size + 1;
    while (budget > 0) {
      const s = this.sweep;
      if (s === null || s.next >= s.handles.length) {
        this.sweep = null;
        if (turns-- <= 0) return;
        if (this.sweepRound.length === 0) this.sweepRound = [...this.holdings.keys()].reverse();
        const server = this.sweepRound.pop();
        if (server === undefined) return;
        const held = this.holdings.get(server);
        if (held === undefined || this.stateOf(server) !== 'live') continue;
        const ordered = this.sweepDeletes.get(server);
        if (ordered !== undefined) for (const handle of ordered.keys()) if (!held.has(handle)) ordered.delete(handle);
        this.sweep = { server, handles: [...held.keys()], next: 0 };
        continue;
      }
      const held = this.holdings.get(s.server);
      if (held === undefined || this.stateOf(s.server) !== 'live') {
        this.sweep = null;
        continue;
      }
      const end = Math.min(s.handles.length, s.next + budget);
      budget -= end - s.next;
      for (; s.next < end; s.next++) {
        const handle = s.handles[s.next]!;
        const version = held.get(handle);
        if (version !== undefined && this.isGarbage(s.server, handle, version, nowMs)) this.orderSweepDelete(s.server, handle, version, nowMs);
      }
    }
  }

  /**
   * Whether a replica a live server holds (by its reports: handle and version, no length) is garbage by the
   * report rules (judgeReport): of a reclaimed handle or a deleted file; at an older version and unlisted; or
   * a sealed chunk's current version, unlisted, while enough live replicas are listed and no copy to the
   * server or change of the list is in flight. Listed replicas and chunks newer than the view are never.
   */
  private isGarbage(id: number, handle: number, version: number, nowMs: number): boolean {
    const chunk = this.view.chunks.get(handle);
    if (chunk === undefined) return handle < this.view.nextChunkHandle && !this.bugs.has('placement-keep-orphans');
    if (!chunk.fileLive) return true;
    if (version > chunk.version || chunk.replicas.includes(id)) return false;
    if (version < chunk.version) return !this.bugs.has('placement-keep-stale');
    if (!chunk.sealed || this.unsettled.has(`chunk:${handle}`)) return false;
    if (this.copies.get(handle)?.some((c) => c.target === id) === true) return false;
    return this.spareCopy(chunk, id, nowMs);
  }

  /** Listed replicas on live servers that, by their reports, hold the chunk at its version: copies known to exist. */
  private confirmedListed(chunk: ChunkView): number[] {
    return this.liveListed(chunk).filter((id) => this.holdings.get(id)?.get(chunk.handle) === chunk.version);
  }

  /**
   * Whether `id`'s unlisted copy of `chunk` at its current version may be deleted now: enough listed copies are
   * known to exist (a listed replica whose server has not reported it, or reported it gone, does not count),
   * and no listing of this copy that this manager proposed may still apply.
   */
  private spareCopy(chunk: ChunkView, id: number, nowMs: number): boolean {
    if (chunk.replicas.includes(id)) return false;
    const guard = this.listingGuard.get(`${chunk.handle}:${id}`);
    if (guard !== undefined && guard > nowMs) return false;
    return this.confirmedListed(chunk).length >= chunk.replication;
  }

  /**
   * Lists `id`'s complete copy of a short chunk beside the listed replicas not on dead servers nor reported gone;
   * the copy is remembered until the view lists it (unlistedCopies) and guarded against deletion meanwhile.
   */
  private listCopy(chunk: ChunkView, id: number, nowMs: number): void {
    const gone = this.goneReplicas.get(chunk.handle);
    const keep = chunk.replicas.filter((r) => this.stateOf(r) !== 'dead' && gone?.has(r) !== true);
    this.proposeReplicas(chunk, [...keep, id], nowMs);
    this.noteUnlistedCopy(chunk, id);
    this.guardListing(chunk, id, nowMs);
  }

  /** A listing of `id`'s copy of `chunk` is being proposed: guard the copy (listingGuard). */
  private guardListing(chunk: ChunkView, id: number, nowMs: number): void {
    this.listingGuard.set(`${chunk.handle}:${id}`, nowMs + this.limits.listingGuardMs);
  }

  /** Queues a garbage delete only while the server's queue is at most half full: copies and recoveries come first. */
  private enqueueGarbageDelete(id: number, handle: number, version: number): boolean {
    if ((this.outbox.get(id)?.length ?? 0) >= Math.ceil(this.limits.commandsPerServerMax / 2)) return false;
    return this.enqueue(id, { kind: 'delete', handle, version });
  }

  private orderSweepDelete(id: number, handle: number, version: number, nowMs: number): void {
    const at = this.sweepDeletes.get(id)?.get(handle);
    if (at !== undefined && nowMs - at < this.limits.gcDeleteRetryMs) return;
    if (this.enqueueGarbageDelete(id, handle, version)) this.markDeleteOrdered(id, handle, nowMs);
  }

  private markDeleteOrdered(id: number, handle: number, nowMs: number): void {
    let ordered = this.sweepDeletes.get(id);
    if (ordered === undefined) this.sweepDeletes.set(id, (ordered = new Map<number, number>()));
    ordered.set(handle, nowMs);
  }

  /**
   * Known complete copies the view shows unlisted (a live server holding them at the chunk's version): while
   * the chunk is short of its factor one is listed (again), which spares a copy; once enough are listed each
   * is ordered deleted. A listed one, or anything else (the chunk moved on, the server died or lost it) ends
   * its part of the entry: reports and the sweep judge such copies as they come.
   */
  private settleUnlistedCopies(nowMs: number): void {
    for (const [handle, entry] of this.unlistedCopies) {
      const chunk = this.view.chunks.get(handle);
      if (chunk === undefined || !chunk.fileLive || chunk.version !== entry.version) {
        this.unlistedCopies.delete(handle);
        continue;
      }
      // A pipeline's replica that sealed before the view had the chunk sealed waits for the seal.
      if (!chunk.sealed || this.unsettled.has(`chunk:${handle}`)) continue;
      for (const [id, lengthBytes] of entry.servers) {
        const holds = this.holdings.get(id)?.get(handle) === entry.version;
        const state = this.stateOf(id);
        if (state === 'dead' && holds) continue; // back once its registration applies (see sawAlive)
        if (chunk.replicas.includes(id) || !holds || lengthBytes !== chunk.lengthBytes || state !== 'live' || this.isBad(handle, id, entry.version)) {
          entry.servers.delete(id);
        } else if (this.liveListed(chunk).length < chunk.replication) {
          // Kept in the entry until the view lists it: a refused or lost proposal is made again.
          this.listCopy(chunk, id, nowMs);
          break; // one change of the list per pass: the proposal marks the chunk unsettled
        } else if (this.bugs.has('placement-gc-on-reports-only')) {
          entry.servers.delete(id);
        } else if (this.spareCopy(chunk, id, nowMs)) {
          // Kept in the entry until the server reports it gone: should the chunk fall short before the delete
          // is sent (the send drops it then), the copy is listed instead.
          this.orderSweepDelete(id, handle, entry.version, nowMs);
        }
        // else: enough are listed, but not all known to exist, or its own listing may still apply: wait.
      }
      if (entry.servers.size === 0) this.unlistedCopies.delete(handle);
    }
  }

  /** Starts one copy of `chunk` to a new target; false when no source, target or budget is available. */
  private startCopy(chunk: ChunkView, nowMs: number, moveFrom: number | null, target?: Candidate): boolean {
    if (this.copyCount >= this.limits.reReplicationsClusterMax) return false;
    const holders = chunk.replicas.filter((id) => this.reachableServer(id) && this.holdings.get(id)?.get(chunk.handle) === chunk.version);
    const good = holders.filter((id) => !this.isBad(chunk.handle, id, chunk.version));
    // Last resort: when every copy held was reported bad (one failed read, maybe a transient I/O error, on
    // the only replica), copy from them anyway rather than leave the chunk short for good. A copy never
    // spreads bad bytes: the source verifies every block as it reads, and a corrupt one fails the copy.
    const sources = (good.length > 0 ? good : holders).filter(
      (id) => this.copiesOf(id) < this.limits.reReplicationsPerServerMax && (moveFrom === null || id === moveFrom),
    );
    if (sources.length === 0) return false;
    const source = sources[this.random.int(sources.length)]!;
    let to = target;
    if (to === undefined) {
      const exclude = this.holdersOf(chunk);
      const racks = new Set(this.liveListed(chunk).map((id) => this.view.servers.get(id)?.rack ?? ''));
      to = chooseTargets(
        this.candidates(exclude).filter((c) => this.copiesOf(c.id) < this.limits.reReplicationsPerServerMax),
        1,
        racks,
        this.random,
      )[0];
    }
    if (to === undefined) return false;
    const server = this.view.servers.get(to.id)!;
    // The source's queue is full: no copy in flight that no command will start (tried again next pass).
    if (!this.enqueue(source, { kind: 'replicate', handle: chunk.handle, version: chunk.version, target: to.id, targetAddress: server.address })) return false;
    const copy: Copy = { handle: chunk.handle, version: chunk.version, source, target: to.id, startedMs: nowMs, moveFrom };
    const list = this.copies.get(chunk.handle) ?? [];
    list.push(copy);
    this.copies.set(chunk.handle, list);
    this.copyCount++;
    return true;
  }

  /**
   * Servers that must not receive another replica of `chunk`: listed ones, ones that reported holding it
   * (any version), and targets of copies in flight. With the planted bug, only in-flight targets.
   */
  private holdersOf(chunk: ChunkView): Set<number> {
    const out = new Set<number>((this.copies.get(chunk.handle) ?? []).map((c) => c.target));
    if (this.bugs.has('placement-rereplicate-onto-holder')) return out;
    for (const id of chunk.replicas) out.add(id);
    for (const [id, held] of this.holdings) if (held.has(chunk.handle)) out.add(id);
    return out;
  }

  private finishCopy(copy: Copy): void {
    const list = this.copies.get(copy.handle);
    if (list === undefined) return;
    const i = list.indexOf(copy);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) this.copies.delete(copy.handle);
    this.copyCount--;
    assert(this.copyCount >= 0, 'negative copy count');
  }

  /** A decommissioning server no sealed chunk of a live file lists any more is decommissioned. */
  private finishDecommissions(nowMs: number): void {
    const busy = new Set<number>();
    for (const chunk of this.view.chunks.values()) {
      if (chunk.sealed && chunk.fileLive) for (const id of chunk.replicas) busy.add(id);
    }
    for (const list of this.copies.values()) for (const c of list) busy.add(c.source);
    for (const server of this.view.servers.values()) {
      if (server.state !== 'decommissioning' || busy.has(server.id)) continue;
      this.propose(`server:${server.id}`, nowMs, {
        type: 'setChunkserverState',
        id: server.id,
        state: 'decommissioned',
        ifGeneration: server.generation,
      });
    }
  }

  /** One move from the fullest to the emptiest live server, while they differ by more than the threshold. */
  private rebalance(nowMs: number): void {
    let moves = 0;
    for (const list of this.copies.values()) for (const c of list) if (c.moveFrom !== null) moves++;
    if (moves >= this.limits.rebalanceMovesMax) return;
    const live = this.candidates(new Set());
    if (live.length < 2) return;
    live.sort((a, b) => usedPermille(a) - usedPermille(b) || a.id - b.id);
    const emptiest = live[0]!;
    const fullest = live[live.length - 1]!;
    if (usedPermille(fullest) - usedPermille(emptiest) <= this.limits.rebalanceThresholdPermille) return;
    for (const chunk of this.view.chunks.values()) {
      if (!chunk.sealed || !chunk.fileLive || !chunk.replicas.includes(fullest.id)) continue;
      if (this.copies.has(chunk.handle) || this.unsettled.has(`chunk:${chunk.handle}`)) continue;
      if (this.holdersOf(chunk).has(emptiest.id)) continue;
      // Keep failure domains: the target's rack must not hold another listed replica (unless it is the source's).
      const otherRacks = chunk.replicas.filter((id) => id !== fullest.id).map((id) => this.view.servers.get(id)?.rack);
      if (otherRacks.includes(emptiest.rack)) continue;
      if (this.startCopy(chunk, nowMs, fullest.id, emptiest)) return;
    }
  }

  // ---------------------------------------------------------------- helpers

  private mustServer(id: number): ServerView {
    const server = this.view.servers.get(id);
    if (server === undefined) throw new PlacementError('ENOENT', `no chunkserver ${id}`);
    return server;
  }

  private stateOf(id: number): ChunkserverState | undefined {
    const state = this.view.servers.get(id)?.state;
    if (state === 'dead' && this.bugs.has('placement-count-dead-replicas')) return 'live';
    return state;
  }

  /** Listed replicas on live servers (decommissioning ones and bad ones do not count). */
  private liveListed(chunk: ChunkView): number[] {
    const gone = this.goneReplicas.get(chunk.handle);
    return chunk.replicas.filter((id) => this.stateOf(id) === 'live' && !this.isBad(chunk.handle, id, chunk.version) && gone?.has(id) !== true);
  }

  private candidate(id: number): Candidate | undefined {
    const server = this.view.servers.get(id);
    if (server === undefined) return undefined;
    const usage = this.usage.get(id) ?? server;
    return { id, rack: server.rack, capacityBytes: usage.capacityBytes, usedBytes: usage.usedBytes };
  }

  /** Live servers with free space, not in `exclude`. */
  private candidates(exclude: ReadonlySet<number>): Candidate[] {
    const out: Candidate[] = [];
    for (const server of this.view.servers.values()) {
      if (server.state !== 'live' || exclude.has(server.id)) continue;
      const c = this.candidate(server.id)!;
      if (c.usedBytes < c.capacityBytes) out.push(c);
    }
    return out;
  }

  private copiesOf(id: number): number {
    let n = 0;
    for (const list of this.copies.values()) for (const c of list) if (c.source === id || c.target === id) n++;
    return n;
  }

  /** Queues a command for the server's next reply; false when its queue is full (the command is not sent). */
  private enqueue(id: number, command: ChunkserverCommand): boolean {
    const queue = this.outbox.get(id) ?? [];
    // The sweep and a trim may both order the same delete before the server's next exchange: send it once.
    if (command.kind === 'delete' && queue.some((c) => c.kind === 'delete' && c.handle === command.handle && c.version === command.version)) return true;
    if (queue.length >= this.limits.commandsPerServerMax) return false;
    queue.push(command);
    this.outbox.set(id, queue);
    return true;
  }

  private proposeReplicas(chunk: ChunkView, replicas: readonly number[], nowMs: number): void {
    const unique = [...new Set(replicas)];
    if (unique.length === chunk.replicas.length && unique.every((id) => chunk.replicas.includes(id))) return;
    this.propose(`chunk:${chunk.handle}`, nowMs, {
      type: 'setChunkReplicas',
      handle: chunk.handle,
      version: chunk.version,
      replicas: unique,
    });
  }

  private propose(key: string, nowMs: number, op: Op): void {
    if (this.unsettled.has(key)) return;
    this.unsettled.set(key, nowMs + this.limits.proposalRetryMs);
    this.proposals.push({ key, op });
  }

  status(): ChunkManagerStatus {
    return { ...summarizeView(this.view, (id) => this.stateOf(id)), copiesInFlight: this.copyCount };
  }
}

/** Registry counts and under-replicated chunks of a view (what ClusterStatus shows on any member). */
export function summarizeView(
  view: ClusterView,
  stateOf: (id: number) => ChunkserverState | undefined = (id) => view.servers.get(id)?.state,
): Omit<ChunkManagerStatus, 'copiesInFlight'> {
  const counts = { live: 0, dead: 0, decommissioning: 0, decommissioned: 0 };
  for (const s of view.servers.values()) counts[s.state]++;
  let underReplicated = 0;
  for (const chunk of view.chunks.values()) {
    if (!chunk.sealed || !chunk.fileLive) continue;
    if (chunk.replicas.filter((id) => stateOf(id) === 'live').length < chunk.replication) underReplicated++;
  }
  return { ...counts, underReplicated };
}
