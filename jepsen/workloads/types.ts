/** What the runner needs of a workload. */
import { connect } from '../../src/index.ts';
import type { ConnectOptions, RfsClient } from '../../src/index.ts';
import type { HistoryEvent, HistoryRecorder, OpValue } from '../harness/history.ts';
import type { SeededRandom } from '../harness/random.ts';

export interface WorkloadOptions {
  readonly metadataAddresses: readonly string[];
  readonly clients: number;
  readonly keys: number;
  /** Deadline of one operation (every call inside it). */
  readonly opTimeoutMs: number;
  /** Upper bound of the random pause between a worker's ops. */
  readonly staggerMs: number;
  readonly random: SeededRandom;
  readonly history: HistoryRecorder;
  /**
   * 'leader' (default): clients read where they write, at the leader. 'any': each client sends its reads to
   * one member, round robin over the clients (a follower's read is linearizable too, through ReadIndex);
   * what exposes the planted bug read-without-quorum (docs/JEPSEN.md, "Planted bugs").
   */
  readonly readsFrom?: ReadsFrom;
}

export const readsFromValues = ['leader', 'any'] as const;
export type ReadsFrom = (typeof readsFromValues)[number];

/**
 * A worker's client library instance: the workload's metadata servers and op timeout; with reads from any
 * member, client `clientIndex` reads from member `clientIndex mod n` (the others read from the leader).
 */
export function connectWorkerClient(options: WorkloadOptions, clientIndex: number, extra: Partial<ConnectOptions> = {}): Promise<RfsClient> {
  const readAddress = options.readsFrom === 'any' ? { readAddress: options.metadataAddresses[clientIndex % options.metadataAddresses.length]! } : {};
  return connect({ metadata: [...options.metadataAddresses], timeoutMs: options.opTimeoutMs, ...extra, ...readAddress });
}

/** A workload's own check of its history (when it is not the linearizability checker's job). */
export interface WorkloadCheck {
  readonly valid: boolean;
  /** First line a summary, then one line per problem. */
  readonly output: string;
}

export interface Workload {
  /** Before the faults: clients connected, initial state written. */
  setup(): Promise<void>;
  /** Workers run until `stop` aborts; each finishes its current op. */
  run(stop: AbortSignal): Promise<void>;
  /** On the healed cluster: every key read. */
  finalReads(): Promise<Map<string, OpValue>>;
  close(): void;
  /** Present when the workload checks its own history (append); absent: the linearizability checker. */
  check?(events: readonly HistoryEvent[]): WorkloadCheck;
}
