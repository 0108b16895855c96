/**
 * The agent's `MetadataLink` over gRPC (src/rpc/metadata.proto): one exchange per call, sent to the server
 * believed to lead, following NOT_LEADER redirects (as MetadataClient does) and trying the other known
 * servers when one does not answer. It never sleeps or retries an exchange that got no answer from anyone:
 * the agent owns retries and their backoff (on its injected clock).
 *
 * Not MetadataClient itself: that client opens a session (a Raft write, needing a leader) before its first
 * call, and retries on the wall clock inside each call; neither fits a chunkserver that must start while the
 * metadata service is down.
 */
import * as grpc from '@grpc/grpc-js';
import { MetadataClientConstructor } from '../metadata/proto.ts';
import type { MetadataMethod, WireReply, WireRequest } from '../metadata/proto.ts';
import type { AgentCommand, ChunkReportRequest, CommandsReply, MetadataLink, RegisterRequest } from './agent.ts';
import { MetadataLinkError } from './agent.ts';

export interface GrpcMetadataLinkOptions {
  /** Deadline of one heartbeat or report attempt (answered from the leader's memory: no Raft write). */
  readonly attemptTimeoutMs?: number;
  /**
   * Deadline of one registration attempt: a Raft write. Longer than the server's proposal timeout (5 s), so
   * the server's own TIMEOUT answer usually comes first. A registration without an id is stamped with a
   * session (opened at the first one) and a retry after no answer keeps the stamp, so one applied whose
   * answer was lost is answered again rather than applied twice (which left an orphan id before).
   */
  readonly registerTimeoutMs?: number;
  /** Redirects followed within one call, at most. */
  readonly redirectsMax?: number;
}

export const defaultAttemptTimeoutMs = 2_000;
export const defaultRegisterTimeoutMs = 6_000;
export const defaultRedirectsMax = 3;
/** Failures after which a command's outcome is unknown (it may have been applied): a retry keeps its stamp. */
const unanswered = new Set(['UNAVAILABLE', 'TIMEOUT', 'NOT_LEADER']);
/** Addresses learned from redirects are kept, up to this many in all. */
const addressesMax = 32;

type UnaryFn = (
  request: WireRequest,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply?: WireReply) => void,
) => void;
type Stub = grpc.Client & Record<string, unknown>;

export class GrpcMetadataLink implements MetadataLink {
  private readonly addresses: string[];
  private current = 0;
  private readonly stubs = new Map<string, Stub>();
  private readonly attemptTimeoutMs: number;
  private readonly registerTimeoutMs: number;
  private readonly redirectsMax: number;
  private closed = false;
  /**
   * The session registrations without an id are stamped under (opened by the first): the stamp's seq, and
   * whether it was answered. A retry after no answer (transport failure, UNAVAILABLE, TIMEOUT) reuses it.
   */
  private registration: { clientId: number; seq: number; answered: boolean } | null = null;

  constructor(addresses: readonly string[], options: GrpcMetadataLinkOptions = {}) {
    if (addresses.length === 0) throw new RangeError('need at least one metadata server address');
    this.addresses = [...new Set(addresses)];
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? defaultAttemptTimeoutMs;
    this.registerTimeoutMs = options.registerTimeoutMs ?? defaultRegisterTimeoutMs;
    this.redirectsMax = options.redirectsMax ?? defaultRedirectsMax;
  }

  /** The server the next call goes to first. */
  get target(): string {
    return this.addresses[this.current]!;
  }

  async register(request: RegisterRequest): Promise<{ readonly id: number }> {
    const session = request.id === 0 ? await this.registrationStamp() : undefined;
    let reply: WireReply;
    try {
      reply = await this.call('RegisterChunkserver', session === undefined ? { ...request } : { ...request, session });
    } catch (e) {
      if (this.registration !== null && session !== undefined) {
        const code = e instanceof MetadataLinkError ? e.code : 'UNAVAILABLE';
        // No answer: the registration may have been applied, so the retry keeps the stamp. ESESSION: the
        // session was dropped (idle, evicted): a new one next time. Any other answer settles the stamp.
        if (code === 'ESESSION') this.registration = null;
        else if (!unanswered.has(code)) this.registration.answered = true;
      }
      throw e;
    }
    if (this.registration !== null && session !== undefined) this.registration.answered = true;
    const id = Number(reply['id']);
    if (!Number.isSafeInteger(id) || id < 1) throw new MetadataLinkError('EBADMSG', `registration answered id ${String(reply['id'])}`);
    return { id };
  }

  async heartbeat(request: { readonly id: number; readonly capacityBytes: number; readonly usedBytes: number }): Promise<CommandsReply> {
    return commandsReply(await this.call('Heartbeat', { ...request }));
  }

  async chunkReport(request: ChunkReportRequest): Promise<CommandsReply> {
    return commandsReply(await this.call('ChunkReport', { ...request }));
  }

  async reportBadReplica(request: { readonly handle: number; readonly chunkserverId: number; readonly version: number }): Promise<{ readonly outcome: string }> {
    const reply = await this.call('ReportBadReplica', { ...request });
    const outcome = reply['outcome'];
    if (typeof outcome !== 'string' || outcome === '') throw new MetadataLinkError('EBADMSG', `ReportBadReplica answered outcome ${String(outcome)}`);
    return { outcome };
  }

  /** The stamp for a registration without an id: the unanswered one again, else the next. */
  private async registrationStamp(): Promise<{ clientId: number; seq: number; ack: number }> {
    if (this.registration === null) {
      const reply = await this.call('OpenSession', {});
      const clientId = Number(reply['clientId']);
      if (!Number.isSafeInteger(clientId) || clientId < 1) throw new MetadataLinkError('EBADMSG', `OpenSession answered client id ${String(reply['clientId'])}`);
      this.registration = { clientId, seq: 0, answered: true };
    }
    const r = this.registration;
    if (r.answered) {
      r.seq++;
      r.answered = false;
    }
    return { clientId: r.clientId, seq: r.seq, ack: r.seq - 1 };
  }

  close(): void {
    this.closed = true;
    for (const stub of this.stubs.values()) stub.close();
    this.stubs.clear();
  }

  /**
   * One exchange: at most one attempt per known server plus `redirectsMax` redirects. Rejects with the
   * service's error, or UNAVAILABLE when no server answered as leader.
   */
  private async call(method: MetadataMethod, request: WireRequest): Promise<WireReply> {
    if (this.closed) throw new MetadataLinkError('UNAVAILABLE', 'the link is closed');
    let redirects = 0;
    let failures = 0;
    let last = 'no attempt';
    while (failures < this.addresses.length && redirects <= this.redirectsMax) {
      const address = this.target;
      let reply: WireReply;
      try {
        reply = await this.attempt(address, method, request);
      } catch (e) {
        last = `${address}: ${(e as Error).message}`;
        failures++;
        this.rotate();
        continue;
      }
      const error = reply.error;
      if (error === undefined || error === null) return reply;
      if (error.code === 'NOT_LEADER' && error.leaderAddress !== undefined && error.leaderAddress !== '' && error.leaderAddress !== address) {
        redirects++;
        this.redirect(error.leaderAddress);
        last = `${address}: ${error.message}`;
        continue;
      }
      if (error.code === 'NOT_LEADER') {
        // No leader known there (an election): another server may know one.
        last = `${address}: ${error.message}`;
        failures++;
        this.rotate();
        continue;
      }
      throw new MetadataLinkError(error.code, `${address}: ${error.message}`);
    }
    throw new MetadataLinkError('UNAVAILABLE', `no metadata leader answered ${method} (last: ${last})`);
  }

  private attempt(address: string, method: string, request: WireRequest): Promise<WireReply> {
    const stub = this.stub(address);
    const fn = stub[method] as UnaryFn;
    return new Promise((resolve, reject) => {
      const timeoutMs = method === 'RegisterChunkserver' || method === 'OpenSession' ? this.registerTimeoutMs : this.attemptTimeoutMs;
      fn.call(stub, request, { deadline: Date.now() + timeoutMs }, (error, reply) => {
        if (error !== null) reject(error);
        else resolve(reply ?? {});
      });
    });
  }

  private stub(address: string): Stub {
    let stub = this.stubs.get(address);
    if (stub === undefined) {
      stub = new MetadataClientConstructor(address, grpc.credentials.createInsecure(), {
        // Reconnect quickly to a server that comes back.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
      });
      this.stubs.set(address, stub);
    }
    return stub;
  }

  private redirect(address: string): void {
    let i = this.addresses.indexOf(address);
    if (i < 0 && this.addresses.length < addressesMax) {
      this.addresses.push(address);
      i = this.addresses.length - 1;
    }
    if (i >= 0) this.current = i;
  }

  private rotate(): void {
    this.current = (this.current + 1) % this.addresses.length;
  }
}

function num(x: unknown): number {
  const n = typeof x === 'number' ? x : typeof x === 'string' ? Number(x) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new MetadataLinkError('EBADMSG', `not a count: ${String(x)}`);
  return n;
}

/** Checks the reply's shape: a command the agent cannot read is a protocol error, not something to guess at. */
function commandsReply(reply: WireReply): CommandsReply {
  const raw = reply['commands'] ?? [];
  if (!Array.isArray(raw)) throw new MetadataLinkError('EBADMSG', 'commands: not a list');
  const commands: AgentCommand[] = raw.map((c: unknown) => {
    const r = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
    const handle = num(r['handle']);
    const version = num(r['version']);
    if (r['kind'] === 'delete') return { kind: 'delete', handle, version };
    if (r['kind'] === 'recover') {
      const length = r['lengthBytes'];
      return length === undefined || length === null ? { kind: 'recover', handle, version } : { kind: 'recover', handle, version, lengthBytes: num(length) };
    }
    if (r['kind'] === 'replicate') {
      const targetAddress = r['targetAddress'];
      if (typeof targetAddress !== 'string' || targetAddress === '') throw new MetadataLinkError('EBADMSG', 'replicate: no target address');
      return { kind: 'replicate', handle, version, target: num(r['target']), targetAddress };
    }
    throw new MetadataLinkError('EBADMSG', `unknown command kind ${String(r['kind'])}`);
  });
  return { commands, fullReportWanted: reply['fullReportWanted'] === true };
}
