/**
 * A metadata server: one member of the metadata Raft group, serving the Metadata gRPC service
 * (src/rpc/metadata.proto) to clients.
 *
 * Ports. Each server listens on TWO addresses: `listen` for the client service and `raftListen` for Raft
 * traffic (GrpcRaftTransport owns its gRPC server). Peers are named by both addresses; the CLI derives the
 * Raft address as the client port + raftPortOffset (default 1000) unless given explicitly.
 *
 * Writes: validated (typed EINVAL / ENAMETOOLONG, nothing proposed), encoded as a state-machine command
 * stamped with this server's wall clock, proposed, and answered with the applied result. A follower answers
 * NOT_LEADER with the leader's client address. A proposal not committed within proposalTimeoutMs answers
 * TIMEOUT: its outcome is unknown, and the client retries with the same session stamp (applied at most once).
 *
 * Reads: linearizable by default (RaftNode.read(): a ReadIndex round confirmed by a quorum, also on
 * followers, then the local state machine once it has applied that index). `stale_ok` skips the round and
 * reads this server's applied state.
 */
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger as PinoLogger } from 'pino';
import { pino } from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import type { FsResult, Op } from '../fsm/index.ts';
import { MetadataStateMachine, encodeCommand } from '../fsm/index.ts';
import { RaftMetadataStateMachine } from '../fsm/raft-adapter.ts';
import { NotLeaderError, RaftError } from '../raft/errors.ts';
import { RaftNode } from '../raft/node.ts';
import type { NodeId } from '../raft/types.ts';
import { GrpcRaftTransport } from '../rpc/grpc-raft-transport.ts';
import { systemClock, systemRandom } from '../runtime/clock.ts';
import { RocksDbKv } from '../storage/rocksdb-kv.ts';
import { RocksDbLogStore } from '../storage/rocksdb-log-store.ts';
import { metadataService } from './proto.ts';
import type { WireError, WireReply, WireRequest } from './proto.ts';
import * as v from './validate.ts';
import { RequestError } from './validate.ts';

export interface PeerAddress {
  /** The Metadata service ('host:port'). */
  readonly client: string;
  /** The Raft transport ('host:port'). */
  readonly raft: string;
}

export interface MetadataServerOptions {
  readonly id: NodeId;
  /** Client service address; port 0 picks a free port (see `clientPort`). Defaults to peers[id].client. */
  readonly listen?: string;
  /** Raft transport address. Defaults to peers[id].raft. */
  readonly raftListen?: string;
  /** Every member, this one included: id → addresses. All are founding voters on first start. */
  readonly peers: ReadonlyMap<NodeId, PeerAddress>;
  readonly dataDir: string;
  readonly logger?: PinoLogger;
  /** One Raft tick (ms); a leader heartbeats every tick. Default 50. */
  readonly tickMs?: number;
  /**
   * Election timeout in ticks; each follower draws its timeout from [electionTicks, 2 × electionTicks).
   * Default 10: 0.5–0.95 s at 50 ms ticks. The 2 s failover target must survive one split vote (two
   * followers timing out within one election round trip both become candidates; nobody wins until the next
   * timeout), so twice the longest timeout has to fit in 2 s. Measured with 100 ms × 10 (1.0–1.95 s) and
   * 50 ms × 16 (0.8–1.55 s): most failovers took 0.9–1.4 s, but split votes gave 2.0–2.8 s in roughly one run
   * of eight (test/metadata/failover.test.ts). The cost: a follower hearing nothing for 0.5 s campaigns, so
   * event-loop stalls of that length cause elections.
   */
  readonly electionTicks?: number;
  /** 'host:port' for an HTTP server with Prometheus `/metrics`. */
  readonly metricsListen?: string;
  readonly clusterId?: string;
  /** A write not committed and applied within this answers TIMEOUT. Default 5000. */
  readonly proposalTimeoutMs?: number;
  /** The node hit an unrecoverable error (failed fsync, broken invariant) and stopped itself. */
  readonly onFatal?: (error: unknown) => void;
}

export const defaultTickMs = 50;
export const defaultElectionTicks = 10;
export const defaultProposalTimeoutMs = 5_000;
/** gRPC request messages larger than this are refused by the transport. */
export const requestBytesMax = 64 * 1024;

type Handler = (request: WireRequest) => Promise<WireReply>;

export class MetadataServer {
  private stopped = false;
  private readonly proposals: Counter;
  private watchTimer: ReturnType<typeof setInterval> | null = null;

  private constructor(
    readonly id: NodeId,
    private readonly options: MetadataServerOptions,
    private readonly logger: PinoLogger,
    readonly node: RaftNode,
    readonly fsm: MetadataStateMachine,
    private readonly transport: GrpcRaftTransport,
    private readonly logStore: RocksDbLogStore,
    private readonly kv: RocksDbKv,
    private readonly registry: Registry,
    private grpcServer: grpc.Server | null = null,
    private httpServer: HttpServer | null = null,
    /** The bound client port. */
    public clientPort = 0,
    public raftPort = 0,
    public metricsPort = 0,
  ) {
    this.proposals = new Counter({
      name: 'rfs_metadata_proposals_total',
      help: 'Commands proposed by this server, by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    });
  }

  static async start(options: MetadataServerOptions): Promise<MetadataServer> {
    const logger = (options.logger ?? pino({ level: 'info' })).child({ server: options.id });
    const self = options.peers.get(options.id);
    if (self === undefined) throw new Error(`peers must include this server's id ${options.id}`);
    await mkdir(options.dataDir, { recursive: true });
    const logStore = await RocksDbLogStore.open(join(options.dataDir, 'raft'));
    const kv = await RocksDbKv.open(join(options.dataDir, 'fsm'));
    const fsm = await MetadataStateMachine.open(kv);
    let node: RaftNode | null = null;
    const raftPeers = new Map([...options.peers].map(([id, a]) => [id, a.raft]));
    const transport = new GrpcRaftTransport({
      id: options.id,
      clusterId: options.clusterId ?? '1',
      peers: raftPeers,
      deliver: (m) => node?.receive(m),
      logger: logger.child({ component: 'transport' }),
    });
    node = new RaftNode({
      config: { id: options.id, random: systemRandom, electionTicks: options.electionTicks ?? defaultElectionTicks },
      logStore,
      transport,
      clock: systemClock,
      stateMachine: new RaftMetadataStateMachine(fsm),
      tickMs: options.tickMs ?? defaultTickMs,
      initialVoters: [...options.peers.keys()],
      logger: logger.child({ component: 'raft' }),
      onFatal: (error) => {
        logger.fatal({ err: error }, 'raft node stopped after an unrecoverable error');
        options.onFatal?.(error);
      },
    });
    const registry = new Registry();
    const server = new MetadataServer(options.id, options, logger, node, fsm, transport, logStore, kv, registry);
    try {
      server.raftPort = await transport.startServer(options.raftListen ?? self.raft);
      await node.start();
      server.clientPort = await server.startGrpc(options.listen ?? self.client);
      server.registerMetrics();
      server.watchRole();
      if (options.metricsListen !== undefined) server.metricsPort = await server.startMetrics(options.metricsListen);
    } catch (e) {
      await server.stop();
      throw e;
    }
    logger.info(
      { clientPort: server.clientPort, raftPort: server.raftPort, metricsPort: server.metricsPort },
      'metadata server started',
    );
    return server;
  }

  // ===================== client service =====================

  private startGrpc(listen: string): Promise<number> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': requestBytesMax,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
    });
    const handlers: Record<string, Handler> = {
      OpenSession: () => this.mutate({ type: 'openSession' }, undefined),
      Mkdir: (r) => this.mutateRequest('Mkdir', r),
      Create: (r) => this.mutateRequest('Create', r),
      Setattr: (r) => this.mutateRequest('Setattr', r),
      Rename: (r) => this.mutateRequest('Rename', r),
      Unlink: (r) => this.mutateRequest('Unlink', r),
      Rmdir: (r) => this.mutateRequest('Rmdir', r),
      DeleteRecursive: (r) => this.mutateRequest('DeleteRecursive', r),
      Stat: (r) => this.stat(r),
      Readdir: (r) => this.readdir(r),
      ClusterStatus: () => Promise.resolve(this.clusterStatus()),
    };
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [method, handler] of Object.entries(handlers)) {
      impl[method] = (call: grpc.ServerUnaryCall<WireRequest, WireReply>, callback: grpc.sendUnaryData<WireReply>) => {
        this.serve(method, handler, call.request).then(
          (reply) => callback(null, reply),
          (error: unknown) => {
            this.logger.error({ err: error, method }, 'handler failed');
            callback(null, { error: { code: 'UNAVAILABLE', message: 'internal error' } });
          },
        );
      };
    }
    server.addService(metadataService, impl);
    this.grpcServer = server;
    return new Promise((resolve, reject) => {
      server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (error, port) => {
        if (error !== null) reject(error);
        else resolve(port);
      });
    });
  }

  /** Runs a handler; typed errors become error replies, nothing escapes. */
  private async serve(method: string, handler: Handler, request: WireRequest): Promise<WireReply> {
    if (this.stopped) return errorReply({ code: 'UNAVAILABLE', message: 'server stopping' });
    try {
      return await handler(request ?? {});
    } catch (e) {
      if (e instanceof RequestError) return errorReply({ code: e.code, message: e.message });
      if (e instanceof NotLeaderError) return errorReply(this.notLeader(e.leaderHint));
      if (e instanceof RaftError) return errorReply({ code: 'UNAVAILABLE', message: `${e.code}: ${e.message}` });
      if (e instanceof TimeoutError) return errorReply({ code: 'TIMEOUT', message: e.message });
      this.logger.error({ err: e, method }, 'unexpected error');
      return errorReply({ code: 'UNAVAILABLE', message: 'internal error' });
    }
  }

  private notLeader(hint: NodeId): WireError {
    const leader = hint === 0 ? undefined : this.options.peers.get(hint);
    return {
      code: 'NOT_LEADER',
      message: leader === undefined ? 'not the leader; no leader known' : `not the leader; leader is ${hint}`,
      leaderAddress: leader?.client ?? '',
    };
  }

  private mutateRequest(method: string, r: WireRequest): Promise<WireReply> {
    const session = v.session(r['session']);
    const op = v.mutationOp(method, r);
    return this.mutate(op, session);
  }

  private async mutate(op: Op, session: ReturnType<typeof v.session> | undefined): Promise<WireReply> {
    const status = this.node.status();
    if (status.role !== 'leader') throw new NotLeaderError(status.lead);
    const data = encodeCommand({ nowMs: Date.now(), session, op });
    let result: FsResult;
    try {
      const proposed = await withTimeout(
        this.node.propose(data),
        this.options.proposalTimeoutMs ?? defaultProposalTimeoutMs,
        'proposal not committed in time; outcome unknown: retry with the same session stamp',
      );
      result = proposed.result as FsResult;
    } catch (e) {
      this.proposals.inc({ outcome: 'failed' });
      throw e;
    }
    this.proposals.inc({ outcome: result.ok ? 'ok' : 'error' });
    if (!result.ok) return errorReply({ code: result.code, message: result.message });
    return { ...(result.value as object) };
  }

  private async barrier(r: WireRequest): Promise<void> {
    if (v.optBool(r['staleOk'], 'stale_ok') === true) return;
    await this.node.read();
  }

  private async stat(r: WireRequest): Promise<WireReply> {
    const p = v.path(r['path']);
    await this.barrier(r);
    const result = await this.fsm.stat(p);
    if (!result.ok) return errorReply({ code: result.code, message: result.message });
    return { info: result.value };
  }

  private async readdir(r: WireRequest): Promise<WireReply> {
    const p = v.path(r['path']);
    const cursor = v.optString(r['cursor'], 'cursor');
    const limit = v.optNat(r['limit'], 'limit');
    await this.barrier(r);
    const result = await this.fsm.readdir(p, {
      cursor: cursor === '' ? undefined : cursor,
      limit: limit === 0 ? undefined : limit,
    });
    if (!result.ok) return errorReply({ code: result.code, message: result.message });
    return { entries: result.value.entries, nextCursor: result.value.nextCursor ?? '' };
  }

  clusterStatus(): WireReply {
    const s = this.node.status();
    const leader = s.lead === 0 ? undefined : this.options.peers.get(s.lead);
    const voters = new Set([...s.confState.voters, ...s.confState.votersOutgoing]);
    const ids = new Set<NodeId>([...voters, ...s.confState.learners, ...this.options.peers.keys()]);
    const members = [...ids]
      .sort((a, b) => a - b)
      .map((id) => ({
        id,
        address: this.options.peers.get(id)?.client ?? '',
        voter: voters.has(id),
        matchIndex: id === this.id ? s.lastIndex : (s.progress.get(id)?.match ?? 0),
      }));
    return {
      id: this.id,
      role: s.role,
      term: s.term,
      leaderId: s.lead,
      leaderAddress: leader?.client ?? '',
      commitIndex: s.commit,
      appliedIndex: s.applied,
      members,
    };
  }

  /** Logs every change of role, term or leader (the Raft core itself does not log). */
  private watchRole(): void {
    let last = '';
    const check = (): void => {
      const s = this.node.status();
      const now = `${s.role}/${s.term}/${s.lead}`;
      if (now === last) return;
      last = now;
      this.logger.info({ role: s.role, term: s.term, leader: s.lead, commit: s.commit, lastIndex: s.lastIndex }, 'raft state');
    };
    check();
    this.watchTimer = setInterval(check, 10);
    this.watchTimer.unref();
  }

  // ===================== metrics =====================

  private registerMetrics(): void {
    const status = () => this.node.status();
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read());
        },
      });
    };
    gauge('rfs_raft_term', 'Current Raft term', () => status().term);
    gauge('rfs_raft_commit_index', 'Raft commit index', () => status().commit);
    gauge('rfs_raft_applied_index', 'Raft applied index', () => status().applied);
    gauge('rfs_raft_is_leader', '1 if this server is the leader', () => (status().role === 'leader' ? 1 : 0));
    new Gauge({
      name: 'rfs_raft_role',
      help: 'Raft role of this server (1 for the current role)',
      labelNames: ['role'],
      registers: [this.registry],
      collect() {
        const role = status().role;
        for (const r of ['follower', 'preCandidate', 'candidate', 'leader']) this.set({ role: r }, r === role ? 1 : 0);
      },
    });
  }

  /** The Prometheus text exposition of this server's metrics. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  private startMetrics(listen: string): Promise<number> {
    const { host, port } = splitHostPort(listen);
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    });
    this.httpServer = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const address = server.address();
        resolve(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  }

  // ===================== lifecycle =====================

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.watchTimer !== null) clearInterval(this.watchTimer);
    this.grpcServer?.forceShutdown();
    this.grpcServer = null;
    const http = this.httpServer;
    this.httpServer = null;
    if (http !== null) await new Promise<void>((resolve) => http.close(() => resolve()));
    this.node.stop();
    await this.transport.stop();
    await this.logStore.close();
    await this.kv.close();
    this.logger.info({}, 'metadata server stopped');
  }
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(message)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function errorReply(error: WireError): WireReply {
  return { error };
}

export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad address ${address}`);
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}
