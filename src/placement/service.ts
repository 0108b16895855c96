/**
 * The chunk manager's edge inside a metadata member, shared by the real server and the simulator: it runs a
 * ChunkManager while this member leads (a fresh one per term), loads its view from the state machine,
 * proposes its decisions, and answers chunkservers and writers. Still pure: no timers and no clock of its
 * own; the caller calls `step(nowMs)` on its timer and passes its clock's time everywhere.
 */
import { failure } from '../fsm/errors.ts';
import type { FsResult } from '../fsm/errors.ts';
import type { Op, SessionStamp } from '../fsm/commands.ts';
import type { RandomSource } from '../raft/config.ts';
import type { PlacementBug } from './bugs.ts';
import { PlacementError } from './errors.ts';
import type { ChunkManagerLimits } from './limits.ts';
import { defaultChunkManagerLimits } from './limits.ts';
import type { BadReplicaOutcome, ChunkManagerStatus, ChunkReport, ChunkView, ClusterView, Reply, Usage } from './manager.ts';
import { ChunkManager } from './manager.ts';

export interface ChunkServiceDeps {
  /** Proposes a command (with a client's session stamp, if any) and resolves with its applied result (rejects when not leader, dropped, ...). */
  readonly propose: (op: Op, session?: SessionStamp) => Promise<FsResult>;
  readonly loadView: () => Promise<ClusterView>;
  /** This member's Raft role now. */
  readonly role: () => { readonly leader: boolean; readonly term: number };
  readonly random: RandomSource;
  readonly limits?: Partial<ChunkManagerLimits> | undefined;
  readonly bugs?: ReadonlySet<PlacementBug> | undefined;
}

export interface AllocatedChunk {
  readonly handle: number;
  readonly index: number;
  readonly version: number;
  readonly replicas: readonly number[];
}

/** refreshView reloads the view at most this often. */
export const viewRefreshIntervalMs = 1_000;

export class ChunkService {
  private manager: ChunkManager | null = null;
  private term = 0;
  private stepping = false;
  /** A chunkserver registered (through this service) since the manager last loaded its view. */
  private registeredSinceView = false;
  /** When refreshView last reloaded the view (clock ms). */
  private refreshedAtMs = -Infinity;
  /** Registrations of new chunkservers proposed and not answered yet (register's bound counts them). */
  private newRegistrationsInFlight = 0;

  constructor(private readonly deps: ChunkServiceDeps) {}

  /** The running manager (this member leads and has loaded a view), or null. */
  get current(): ChunkManager | null {
    const role = this.deps.role();
    if (!role.leader || role.term !== this.term) return null;
    return this.manager;
  }

  /**
   * One background pass: (re)start the manager on a new term, reload the view, tick, propose. A call while
   * the previous pass still runs returns at once. `wallMs`: the wall clock this member stamps commands with
   * (lease expiry times are in it); default `nowMs` (one clock for both, as in the simulator).
   */
  async step(nowMs: number, wallMs: number = nowMs): Promise<void> {
    const role = this.deps.role();
    if (!role.leader) {
      this.manager = null;
      return;
    }
    if (this.stepping) return;
    this.stepping = true;
    try {
      this.registeredSinceView = false;
      let m = this.manager;
      if (m === null || this.term !== role.term) {
        m = new ChunkManager({ random: this.deps.random, nowMs, limits: this.deps.limits, bugs: this.deps.bugs });
        m.setView(await this.deps.loadView());
        this.manager = m;
        this.term = role.term;
      } else {
        m.setView(await this.deps.loadView());
      }
      m.tick(nowMs, wallMs);
      await this.flush(m);
    } finally {
      this.stepping = false;
    }
  }

  /** Proposes what the manager decided; reloads the view once they are answered, so it sees their effect. */
  private async flush(m: ChunkManager): Promise<void> {
    const proposals = m.takeProposals();
    if (proposals.length === 0) return;
    await Promise.all(
      proposals.map(async (p) => {
        try {
          await this.deps.propose(p.op);
        } catch {
          // Not leader any more, dropped, timed out: the next pass (or the next leader) decides again.
        } finally {
          m.settle(p.key);
        }
      }),
    );
    if (this.manager === m) m.setView(await this.deps.loadView());
  }

  private mustManager(): ChunkManager {
    const m = this.current;
    if (m === null) throw new PlacementError('EAGAIN', 'the chunk manager is not running here (not the leader, or starting)');
    return m;
  }

  /**
   * A new chunkserver (no id) or a known one coming back: proposes registerChunkserver. Under a session stamp
   * a retry answers the first registration (no second id for one server).
   */
  async register(
    request: {
      readonly id?: number | undefined;
      readonly address: string;
      readonly rack: string;
      readonly capacityBytes: number;
      readonly usedBytes: number;
    },
    session?: SessionStamp,
  ): Promise<FsResult> {
    if (request.id !== undefined) return this.proposeRegistration(request, session);
    // A new server: checked against the registry's bound, counting the new registrations still in flight
    // (a flood of them cannot pass it together; a previous leader's in flight, or one that lands while the
    // view loads, can by one each).
    const size = (await this.deps.loadView()).servers.size + this.newRegistrationsInFlight;
    const max = this.deps.limits?.chunkserversMax ?? defaultChunkManagerLimits.chunkserversMax;
    if (size >= max) {
      return failure('EINVAL', `the registry holds ${size} chunkservers, its limit (chunkserversMax ${max}): forget dead or decommissioned ones (rfsctl chunkservers forget) or raise the limit`);
    }
    this.newRegistrationsInFlight++;
    try {
      return await this.proposeRegistration(request, session);
    } finally {
      this.newRegistrationsInFlight--;
    }
  }

  private async proposeRegistration(request: Parameters<ChunkService['register']>[0], session: SessionStamp | undefined): Promise<FsResult> {
    const op: Op = { type: 'registerChunkserver', ...request };
    const result = await (session === undefined ? this.deps.propose(op) : this.deps.propose(op, session));
    if (result.ok) this.registeredSinceView = true;
    return result;
  }

  /**
   * Forgets a decommissioned, drained and silent chunkserver (ChunkManager.forgetRefusal says what else it
   * must be), on a freshly loaded view: EINVAL with the reason when it may not be forgotten yet.
   */
  async forget(id: number, nowMs: number): Promise<FsResult> {
    const m = this.mustManager();
    m.setView(await this.deps.loadView());
    const refusal = m.forgetRefusal(id, nowMs);
    if (refusal !== undefined) return failure('EINVAL', refusal);
    const generation = m.currentView().servers.get(id)!.generation;
    return this.deps.propose({ type: 'forgetChunkserver', id, ifGeneration: generation });
  }

  /**
   * Replicas for a new chunk. The manager's view is reloaded only on its pass (once a second), so right after
   * a chunkserver registers it may know no server yet: before refusing with ENOSPC it reloads the view once
   * when a registration came in since (a full cluster does not pay a reload per refused allocation).
   */
  private async allocate(replication: number): Promise<number[]> {
    const m = this.mustManager();
    try {
      return m.allocate(replication);
    } catch (e) {
      if (!(e instanceof PlacementError && e.code === 'ENOSPC') || !this.registeredSinceView) throw e;
    }
    this.registeredSinceView = false;
    const view = await this.deps.loadView();
    if (this.manager === m) m.setView(view);
    return this.mustManager().allocate(replication);
  }

  /**
   * Reloads the running manager's view outside its pass, at most once per viewRefreshIntervalMs (a server
   * sending an id nobody registered cannot make the leader reload on every message). For an exchange from a
   * server the view does not know yet (`exchange`). True when it reloaded.
   */
  async refreshView(nowMs: number): Promise<boolean> {
    const m = this.manager;
    if (m === null || nowMs - this.refreshedAtMs < viewRefreshIntervalMs) return false;
    this.refreshedAtMs = nowMs;
    const view = await this.deps.loadView();
    if (this.manager !== m) return false;
    m.setView(view);
    return true;
  }

  heartbeat(id: number, nowMs: number, usage: Usage): Reply {
    return this.mustManager().heartbeat(id, nowMs, usage);
  }

  chunkReport(id: number, nowMs: number, report: ChunkReport): Reply {
    return this.mustManager().chunkReport(id, nowMs, report);
  }

  /**
   * A chunkserver's exchange (`heartbeat` or `chunkReport` run by `run`); if the manager's view does not know
   * the server (ENOENT), reloads the view once (refreshView: at most once per viewRefreshIntervalMs) and runs
   * it again. A server that registered a moment ago heartbeats before the manager's next pass reloads its
   * view, and a manager that was starting may have loaded its view just before the registration applied.
   */
  async exchange(nowMs: number, run: (service: this) => Reply): Promise<Reply> {
    try {
      return run(this);
    } catch (e) {
      if (!(e instanceof PlacementError && e.code === 'ENOENT') || !(await this.refreshView(nowMs))) throw e;
      return run(this);
    }
  }

  /**
   * Chunkservers for a new file's first chunk (the create op's firstChunkCandidates), chosen now, without
   * waiting for anything (a Submit's items are all proposed in one turn): up to `count` live servers with
   * room, in the manager's order of choice, so the first k of them are a placement for k replicas. Empty when
   * the manager is not running here (not the leader yet) or no server has room: the file is then created
   * without the chunk, and the writer's AllocateChunk reports why.
   */
  firstChunkCandidates(count: number): number[] {
    const m = this.current;
    if (m === null || !Number.isSafeInteger(count) || count < 1) return [];
    try {
      return m.allocate(count);
    } catch (e) {
      if (e instanceof PlacementError) return [];
      throw e;
    }
  }

  /**
   * A new chunk for a file being written: replicas chosen by the manager, then addChunk proposed (the state
   * machine checks the writer's lease). Resolves with the state machine's result.
   */
  async allocateChunk(request: {
    readonly path: string;
    readonly holder: string;
    readonly replication: number;
    /** The index the writer expects (see the addChunk op): a retry then answers the first allocation. */
    readonly index?: number | undefined;
    readonly ifGeneration?: number | undefined;
    readonly session?: SessionStamp | undefined;
  }): Promise<FsResult<AllocatedChunk>> {
    const replicas = await this.allocate(Math.max(1, request.replication));
    const op: Op = { type: 'addChunk', path: request.path, holder: request.holder, replicas, index: request.index, ifGeneration: request.ifGeneration };
    // A retried session stamp (or an index allocated before) answers the first allocation, whose replicas may
    // differ from these: the caller reads the chunk's placement when it needs them exactly.
    const result = await (request.session === undefined ? this.deps.propose(op) : this.deps.propose(op, request.session));
    if (!result.ok) return result;
    const value = result.value as { handle: number; index: number; version: number };
    return { ok: true, value: { handle: value.handle, index: value.index, version: value.version, replicas } };
  }

  /**
   * A new write pipeline for an unsealed chunk (bumpChunkVersion): the survivors, plus (with `replacements`)
   * new replicas chosen by the manager up to the file's replication factor. `chunk` is the chunk as read from
   * the state machine just before. Resolves with the state machine's result (ESTALE, ELEASE, ...); ENOSPC when
   * the list would be empty (PlacementError). A retried session stamp answers the first bump: the caller reads the placement.
   */
  async bumpChunkVersion(request: {
    readonly chunk: ChunkView;
    readonly holder: string;
    readonly version: number;
    readonly survivors: readonly number[];
    readonly replacements: boolean;
    readonly ifGeneration?: number | undefined;
    readonly session?: SessionStamp | undefined;
  }): Promise<FsResult<{ version: number }>> {
    const { chunk, survivors } = request;
    // Only replacements need the manager (and its knowledge of who holds what).
    const added = request.replacements
      ? this.mustManager().replacements(chunk.handle, { keep: survivors, exclude: chunk.replicas, count: chunk.replication - survivors.length })
      : [];
    const replicas = [...survivors, ...added];
    if (replicas.length === 0) throw new PlacementError('ENOSPC', 'no survivor, and no live chunkserver can take a replacement');
    const op: Op = {
      type: 'bumpChunkVersion',
      handle: chunk.handle,
      holder: request.holder,
      version: request.version,
      replicas,
      ifGeneration: request.ifGeneration,
    };
    const result = await (request.session === undefined ? this.deps.propose(op) : this.deps.propose(op, request.session));
    if (!result.ok) return result;
    return { ok: true, value: { version: (result.value as { version: number }).version } };
  }

  /**
   * A reader found server `id`'s replica of a chunk at `version` corrupt or failing. `readChunk` reads the chunk
   * from the state machine; it is called once this service holds the chunk's proposal slot (no proposal of
   * the manager about the chunk in flight), so the replica list proposed is not built on a list a pending
   * proposal is about to change. Outcomes: see BadReplicaOutcome and metadata.proto (ReportBadReplica).
   */
  async reportBadReplica(request: {
    readonly handle: number;
    readonly id: number;
    readonly version: number;
    readonly nowMs: number;
    readonly readChunk: () => Promise<FsResult<ChunkView>>;
  }): Promise<FsResult<{ outcome: BadReplicaOutcome }>> {
    const m = this.mustManager();
    const key = m.claimChunk(request.handle, request.nowMs);
    try {
      const read = await request.readChunk();
      if (!read.ok) return read;
      const chunk = read.value;
      if (chunk.version !== request.version) {
        return { ok: false, code: 'ESTALE', message: `chunk ${chunk.handle} is at version ${chunk.version}, not ${request.version}` };
      }
      if (!chunk.sealed) return { ok: true, value: { outcome: 'unsealed' } };
      m.markBadReplica(chunk.handle, request.id, chunk.version);
      const drop = m.badReplicaDrop(chunk);
      if (!('op' in drop)) return { ok: true, value: { outcome: drop.outcome } };
      // Another proposal about the chunk is in flight: the manager's next pass drops the replica.
      if (key === null) return { ok: true, value: { outcome: 'pending' } };
      // Refused (ESTALE: the chunk moved on meanwhile): the mark stays, and the next pass decides again. A
      // rejection (not leader, timeout) propagates: the caller retries, which is harmless.
      const result = await this.deps.propose(drop.op);
      return { ok: true, value: { outcome: result.ok ? 'dropped' : 'pending' } };
    } finally {
      if (key !== null) m.settle(key);
    }
  }

  status(): ChunkManagerStatus | null {
    return this.current?.status() ?? null;
  }
}
