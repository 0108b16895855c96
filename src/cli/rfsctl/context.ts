/**
 * What every rfsctl command gets: the parsed global options, its output streams, and a lazily opened
 * connection to the cluster (metadata client, reader, data plane), closed when the command ends.
 *
 * Reachability: before the first operation every listed server is asked for ClusterStatus at once; when
 * none answers at all, the command fails at once with exit code 3 and a message that says what to do,
 * instead of retrying for --timeout. A cluster that answers but has no leader is retried for --timeout.
 */
import { MetadataClient } from '../../metadata/client.ts';
import { unaryCall } from '../../metadata/proto.ts';
import type { WireReply } from '../../metadata/proto.ts';
import { metadataForData, tcpDataPlane } from '../../client/connect.ts';
import type { DataPlane, ReaderMetadata, WriterMetadata } from '../../client/data-path.ts';
import { FileReader } from '../../client/file-reader.ts';
import { CliError, exitCodes } from './errors.ts';

export const defaultMetadataAddresses = '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003';
/** One RPC attempt waits this long at most (less when --timeout is shorter). */
const attemptTimeoutMsMax = 5_000;
/** The reachability probe waits this long per server at most. */
const probeTimeoutMsMax = 3_000;

export interface Io {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  readonly stdin: NodeJS.ReadableStream;
}

export interface GlobalOptions {
  readonly metadata: string;
  readonly json: boolean;
  /** Seconds one metadata operation keeps retrying (leader changes, unreachable servers). */
  readonly timeout: number;
  /** Force the progress bar on (true) or off (false); default: on when stderr is a TTY. */
  readonly progress: boolean | undefined;
}

export function parseAddresses(spec: string): string[] {
  const addresses = spec
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (addresses.length === 0) throw new CliError(exitCodes.usage, '--metadata: give at least one host:port');
  for (const a of addresses) {
    if (!/^[^\s:]+:[0-9]{1,5}$/.test(a) && !/^\[[0-9a-fA-F:.]+\]:[0-9]{1,5}$/.test(a))
      throw new CliError(exitCodes.usage, `--metadata: ${JSON.stringify(a)} is not host:port`);
  }
  return addresses;
}

export interface Connection {
  readonly metadata: MetadataClient;
  readonly ops: WriterMetadata & ReaderMetadata;
  readonly data: DataPlane;
  readonly reader: FileReader;
}

export type ProbeResult = { readonly address: string } & ({ readonly ok: true; readonly status: WireReply } | { readonly ok: false; readonly error: string });

export class Context {
  private connection: Connection | null = null;
  private probed: ProbeResult[] | null = null;
  readonly addresses: string[];

  constructor(
    readonly options: GlobalOptions,
    readonly io: Io,
  ) {
    this.addresses = parseAddresses(options.metadata);
  }

  get timeoutMs(): number {
    return Math.max(1, Math.round(this.options.timeout * 1000));
  }

  out(text: string): void {
    this.io.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  }

  json(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  warn(text: string): void {
    this.io.stderr.write(`rfsctl: ${text}\n`);
  }

  /** ClusterStatus of every listed server, in parallel (no redirects, no retries). */
  async probe(): Promise<ProbeResult[]> {
    const timeoutMs = Math.min(this.timeoutMs, probeTimeoutMsMax);
    this.probed = await Promise.all(
      this.addresses.map(async (address): Promise<ProbeResult> => {
        try {
          return { address, ok: true, status: await unaryCall(address, 'ClusterStatus', {}, timeoutMs) };
        } catch (error) {
          return { address, ok: false, error: (error as Error).message };
        }
      }),
    );
    return this.probed;
  }

  unreachable(): CliError {
    return new CliError(
      exitCodes.unreachable,
      `no metadata server reachable at ${this.addresses.join(',')} — is the cluster running? try \`npm start\``,
      'UNREACHABLE',
    );
  }

  /** The cluster connection; fails with exit code 3 when no listed server answers. */
  async connect(): Promise<Connection> {
    if (this.connection !== null) return this.connection;
    const probed = this.probed ?? (await this.probe());
    if (!probed.some((p) => p.ok)) throw this.unreachable();
    const answering = probed.filter((p) => p.ok).map((p) => p.address);
    // Start with a server that answered; the others stay listed for failover.
    const ordered = [...answering, ...this.addresses.filter((a) => !answering.includes(a))];
    let metadata: MetadataClient;
    try {
      metadata = await MetadataClient.connect(ordered, {
        attemptTimeoutMs: Math.min(this.timeoutMs, attemptTimeoutMsMax),
        retryDeadlineMs: this.timeoutMs,
      });
    } catch (error) {
      throw new CliError(
        exitCodes.unreachable,
        `the metadata servers at ${this.addresses.join(',')} answer but no leader served within ${this.options.timeout}s (${(error as Error).message}); see \`rfsctl status\``,
        'UNAVAILABLE',
      );
    }
    const ops = metadataForData(metadata);
    const data = tcpDataPlane();
    this.connection = { metadata, ops, data, reader: new FileReader({ metadata: ops, data }) };
    return this.connection;
  }

  close(): void {
    this.connection?.metadata.close();
    this.connection = null;
  }
}
