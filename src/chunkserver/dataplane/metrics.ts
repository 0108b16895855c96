/** Prometheus metrics of a data server (one registry per server; the chunkserver process exposes it). */
import { Counter, Registry } from 'prom-client';

export class DataPlaneMetrics {
  readonly bytesIn: Counter<'kind'>;
  readonly bytesOut: Counter<'kind'>;
  readonly pipelines: Counter<'outcome'>;
  readonly reads: Counter<'outcome'>;
  readonly localReads: Counter<'outcome'>;
  readonly connectionErrors: Counter<'code'>;
  /** Store calls that appended pipeline packets, and the packets they appended (a call takes those queued). */
  readonly appendCalls: Counter;
  readonly appendedPackets: Counter;

  constructor(readonly registry: Registry = new Registry()) {
    const registers = [registry];
    this.bytesIn = new Counter({
      name: 'rfs_chunkserver_data_bytes_in_total',
      help: 'Payload bytes received on the data plane, by kind (write)',
      labelNames: ['kind'],
      registers,
    });
    this.bytesOut = new Counter({
      name: 'rfs_chunkserver_data_bytes_out_total',
      help: 'Payload bytes sent on the data plane, by kind (read, forward)',
      labelNames: ['kind'],
      registers,
    });
    this.pipelines = new Counter({
      name: 'rfs_chunkserver_pipelines_total',
      help: 'Write pipeline hops served, by outcome (sealed, failed, abandoned)',
      labelNames: ['outcome'],
      registers,
    });
    this.reads = new Counter({
      name: 'rfs_chunkserver_data_reads_total',
      help: 'Read requests served, by outcome (ok or the error code)',
      labelNames: ['outcome'],
      registers,
    });
    this.localReads = new Counter({
      name: 'rfs_chunkserver_local_reads_total',
      help: 'Short-circuit local read requests (a client on this host reading a replica file itself), by outcome (ok or the error code)',
      labelNames: ['outcome'],
      registers,
    });
    this.appendCalls = new Counter({
      name: 'rfs_chunkserver_pipeline_append_calls_total',
      help: 'Store calls appending write-pipeline packets (one call takes every packet queued behind the previous one)',
      registers,
    });
    this.appendedPackets = new Counter({
      name: 'rfs_chunkserver_pipeline_appended_packets_total',
      help: 'Write-pipeline packets appended to the store (divided by the append calls: packets per call)',
      registers,
    });
    this.connectionErrors = new Counter({
      name: 'rfs_chunkserver_data_connection_errors_total',
      help: 'Data connections ended by an error, by code (malformed or oversized frames, protocol errors, lost)',
      labelNames: ['code'],
      registers,
    });
  }
}
