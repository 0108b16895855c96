/**
 * A chunkserver's Prometheus metrics: one prom-client Registry per server (several chunkservers can share a
 * process in tests and the simulator without mixing their numbers). The store, the data plane, the scrubber
 * and the metadata agent report through the `record…` functions below; `serveMetrics` exposes the registry
 * on HTTP `/metrics` the way the metadata server does (src/metadata/server.ts, `startMetrics`).
 */
import { createServer } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: 100 µs to 10 s (the metadata server's). */
export const latencyBucketsSeconds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** What failed when the agent could not reach the metadata leader. */
export type MetadataRequestKind = 'register' | 'heartbeat' | 'report';

export interface ChunkserverMetrics {
  readonly registry: Registry;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly writeSeconds: Histogram;
  readonly readSeconds: Histogram;
  readonly checksumFailures: Counter;
  readonly reReplicationBytes: Counter;
  readonly reReplications: Counter<'outcome'>;
  readonly replicasHeld: Gauge;
  readonly heartbeatFailures: Counter<'request'>;
  /** Store operations that failed DISK_FULL or IO_ERROR, by code and operation (see agent.ts, disk health). */
  readonly diskErrors: Counter<'code' | 'op'>;
  /** 1 while the disk is healthy, 0 while marked unhealthy (repeated I/O errors). */
  readonly diskHealthy: Gauge;
  /** Free bytes on the data disk at the last heartbeat (-1 when unknown). */
  readonly diskFreeBytes: Gauge;
  /**
   * Replicas found bad here and still held, by state: `reported` (waiting for the leader's delete order) or
   * `last_copy` (the leader keeps it: no other usable copy is listed; the chunk's other blocks depend on it).
   */
  readonly badReplicas: Gauge<'state'>;
}

export interface ChunkserverMetricsOptions {
  /** Read at every scrape for the replicas-held gauge (else it shows the last `setReplicasHeld`). */
  readonly countReplicas?: () => number;
}

export function createChunkserverMetrics(options: ChunkserverMetricsOptions = {}): ChunkserverMetrics {
  const registry = new Registry();
  const countReplicas = options.countReplicas;
  const registers = [registry];
  return {
    registry,
    bytesIn: new Counter({ name: 'rfs_chunkserver_bytes_in_total', help: 'Chunk data bytes received (client and pipeline writes, incoming copies)', registers }),
    // Bytes served to others: reads answered and outgoing copies. The scrubber's reads verify replicas in place
    // and send nothing, so they are not counted (they were while the scrubber read through the data server's
    // ObservedStore). Pipeline forwarding is counted by the data plane (rfs_chunkserver_data_bytes_out_total).
    bytesOut: new Counter({ name: 'rfs_chunkserver_bytes_out_total', help: 'Chunk data bytes sent: reads served and outgoing copies (not the scrubber\'s local reads)', registers }),
    writeSeconds: new Histogram({ name: 'rfs_chunkserver_write_seconds', help: 'Latency of one packet written to the local store', buckets: latencyBucketsSeconds, registers }),
    readSeconds: new Histogram({ name: 'rfs_chunkserver_read_seconds', help: 'Latency of one read served from the local store', buckets: latencyBucketsSeconds, registers }),
    checksumFailures: new Counter({ name: 'rfs_chunkserver_checksum_failures_total', help: 'Replicas found corrupt (block checksum mismatch on read or scrub)', registers }),
    reReplicationBytes: new Counter({ name: 'rfs_chunkserver_rereplication_bytes_total', help: 'Bytes sent copying replicas to other chunkservers on the leader\'s orders', registers }),
    reReplications: new Counter({ name: 'rfs_chunkserver_rereplications_total', help: 'Replica copies ordered by the leader, by outcome', labelNames: ['outcome'], registers }),
    replicasHeld: new Gauge({
      name: 'rfs_chunkserver_replicas',
      help: 'Replicas held by this chunkserver',
      registers,
      ...(countReplicas !== undefined
        ? {
            collect(this: Gauge) {
              this.set(countReplicas());
            },
          }
        : {}),
    }),
    heartbeatFailures: new Counter({ name: 'rfs_chunkserver_heartbeat_failures_total', help: 'Failed exchanges with the metadata leader, by request', labelNames: ['request'], registers }),
    diskErrors: new Counter({ name: 'rfs_chunkserver_disk_errors_total', help: 'Replica store operations that failed DISK_FULL or IO_ERROR, by code and operation', labelNames: ['code', 'op'], registers }),
    badReplicas: (() => {
      const gauge = new Gauge({
        name: 'rfs_chunkserver_bad_replicas',
        help: 'Replicas found corrupt or unreadable here and still held, by state: reported (the leader orders the delete once another copy is listed) or last_copy (kept: no other usable copy is listed)',
        labelNames: ['state'],
        registers,
      });
      gauge.set({ state: 'reported' }, 0);
      gauge.set({ state: 'last_copy' }, 0);
      return gauge;
    })(),
    diskHealthy: (() => {
      const gauge = new Gauge({ name: 'rfs_chunkserver_disk_healthy', help: '1 while the data disk is healthy, 0 while marked unhealthy after repeated I/O errors', registers });
      gauge.set(1);
      return gauge;
    })(),
    diskFreeBytes: (() => {
      const gauge = new Gauge({ name: 'rfs_chunkserver_disk_free_bytes', help: 'Free bytes on the data disk at the last heartbeat (-1: unknown)', registers });
      gauge.set(-1);
      return gauge;
    })(),
  };
}

/**
 * `rfs_chunkserver_disk_write_bytes_total{path}`: bytes the store wrote to replica files, `direct` (O_DIRECT)
 * or `cached` (through the page cache), read from the disk's counters at every scrape; and
 * `rfs_chunkserver_disk_direct_in_place_bytes_total`: of the direct bytes, those written straight from the
 * page-aligned buffer a packet was received into (no staging copy).
 */
export function recordDiskWrites(m: ChunkserverMetrics, stats: { readonly directBytes: number; readonly directInPlaceBytes?: number; readonly cachedBytes: number }): void {
  const name = 'rfs_chunkserver_disk_write_bytes_total';
  const inPlaceName = 'rfs_chunkserver_disk_direct_in_place_bytes_total';
  m.registry.removeSingleMetric(name); // a data server started again on the same registry reports its disk's
  m.registry.removeSingleMetric(inPlaceName);
  new Counter({
    name: inPlaceName,
    help: 'Bytes written with O_DIRECT straight from the buffer the packet was received into (no staging copy)',
    registers: [m.registry],
    collect(this: Counter) {
      this.reset();
      this.inc(stats.directInPlaceBytes ?? 0);
    },
  });
  new Counter({
    name,
    help: 'Bytes written to replica files, by path: direct (O_DIRECT, bypassing the page cache) or cached',
    labelNames: ['path'],
    registers: [m.registry],
    collect(this: Counter<'path'>) {
      this.reset();
      this.inc({ path: 'direct' }, stats.directBytes);
      this.inc({ path: 'cached' }, stats.cachedBytes);
    },
  });
}

export function recordWrite(m: ChunkserverMetrics, bytes: number, seconds: number): void {
  m.bytesIn.inc(bytes);
  m.writeSeconds.observe(seconds);
}

export function recordRead(m: ChunkserverMetrics, bytes: number, seconds: number): void {
  m.bytesOut.inc(bytes);
  m.readSeconds.observe(seconds);
}

/** Bytes received that are not a local write timed by `recordWrite` (e.g. a copy arriving in one piece). */
export function recordBytesIn(m: ChunkserverMetrics, bytes: number): void {
  m.bytesIn.inc(bytes);
}

/** Bytes sent that are not a read timed by `recordRead` (e.g. pipeline forwarding). */
export function recordBytesOut(m: ChunkserverMetrics, bytes: number): void {
  m.bytesOut.inc(bytes);
}

export function recordChecksumFailure(m: ChunkserverMetrics): void {
  m.checksumFailures.inc();
}

/** Bytes of a copy to another chunkserver (also counted in bytes out). */
export function recordReReplicationBytes(m: ChunkserverMetrics, bytes: number): void {
  m.reReplicationBytes.inc(bytes);
  m.bytesOut.inc(bytes);
}

export function recordReReplication(m: ChunkserverMetrics, outcome: 'ok' | 'failed' | 'skipped'): void {
  m.reReplications.inc({ outcome });
}

export function recordHeartbeatFailure(m: ChunkserverMetrics, request: MetadataRequestKind): void {
  m.heartbeatFailures.inc({ request });
}

export function recordDiskError(m: ChunkserverMetrics, code: 'DISK_FULL' | 'IO_ERROR', op: string): void {
  m.diskErrors.inc({ code, op });
}

export function setDiskHealth(m: ChunkserverMetrics, healthy: boolean, freeBytes: number | undefined): void {
  m.diskHealthy.set(healthy ? 1 : 0);
  if (freeBytes !== undefined) m.diskFreeBytes.set(freeBytes);
}

export function setBadReplicas(m: ChunkserverMetrics, reported: number, lastCopy: number): void {
  m.badReplicas.set({ state: 'reported' }, reported);
  m.badReplicas.set({ state: 'last_copy' }, lastCopy);
}

export function setReplicasHeld(m: ChunkserverMetrics, count: number): void {
  m.replicasHeld.set(count);
}

export interface MetricsHttpServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves the registry's text exposition on `GET /metrics` at `listen` ('host:port'; port 0 picks one). */
export function serveMetrics(registry: Registry, listen: string): Promise<MetricsHttpServer> {
  const { host, port } = parseHostPort(listen);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address !== null ? address.port : port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/**
 * 'host:port' (IPv6 hosts in brackets) → parts; the same rules as the metadata server's splitHostPort, not
 * imported from there because that module loads RocksDB and the whole Raft stack.
 */
export function parseHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const port = Number(address.slice(i + 1));
  if (i <= 0 || address.slice(i + 1) === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`bad address ${JSON.stringify(address)} (want host:port)`);
  }
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port };
}
