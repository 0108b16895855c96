/**
 * `npm start` (`rfs cluster`): a local cluster in the foreground. Prints the endpoints and commands to try
 * once it is ready, streams every child's logs one line per record, and on SIGINT / SIGTERM stops every
 * child (SIGTERM, SIGKILL after `--stop-timeout-ms`) and exits 0. A child that dies is reported with its
 * last lines and, unless `--no-restart`, started again (see src/cluster/local.ts for the policy).
 */
import { ConfigError } from '../cli/config.ts';
import type { ResolvedSettings } from '../cli/config.ts';
import { formatLogRecord } from './log-format.ts';
import { LocalClusterError, startLocalCluster } from './local.ts';
import type { ClusterEvent, LocalCluster } from './local.ts';

const defaultMetadataAddress = '127.0.0.1:7001';
const parentCheckMs = 1_000;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function describeEvent(event: ClusterEvent): string {
  switch (event.type) {
    case 'exited':
      return `!!! ${event.name} exited unexpectedly (${event.signal ?? `code ${event.code}`}); its last lines:\n${event.lastLines.map((l) => `    ${l}`).join('\n')}`;
    case 'restarting':
      return `!!! restarting ${event.name} in ${event.inMs} ms (crash ${event.attempt} in a row)`;
    case 'gave-up':
      return `!!! ${event.name} crashed ${event.crashes} times in a row soon after starting: not restarting it (the rest of the cluster keeps running)`;
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function readyBanner(cluster: LocalCluster): string {
  const leader = cluster.metadata.find((m) => m.id === cluster.leaderId);
  const lines = [
    '',
    `rfs local cluster ready: ${plural(cluster.metadata.length, 'metadata server')} (leader ${leader?.name ?? '?'}), ${plural(cluster.chunkservers.length, 'chunkserver')}`,
    `data: ${cluster.dir} (kept across restarts)`,
    '',
    'metadata servers (clients connect to any of these):',
    ...cluster.metadata.map((m) => `  ${m.name.padEnd(6)} ${m.address.padEnd(16)} raft ${m.raftAddress.padEnd(16)} metrics ${m.metricsUrl}`),
    'chunkservers (data plane):',
    ...cluster.chunkservers.map(
      (c) => `  ${c.name.padEnd(6)} ${c.address.padEnd(16)} ${c.rack.padEnd(21)} metrics ${c.metricsUrl}  (id ${cluster.chunkserverIds.get(c.name) ?? '?'})`,
    ),
    '',
    'try, in another terminal:',
    '  npx rfsctl status',
    '  npx rfsctl put ./somefile /somefile',
    '  npx rfsctl ls -l /',
  ];
  if (cluster.metadataAddresses[0] !== defaultMetadataAddress) lines.push(`  (this cluster's metadata servers: ${cluster.metadataAddresses.join(',')})`);
  lines.push('', 'Ctrl-C stops every server; `npm start` again resumes with the same data.', '');
  return lines.join('\n');
}

export async function runLocalCluster(config: ResolvedSettings): Promise<void> {
  const abort = new AbortController();
  let cluster: LocalCluster | null = null;
  let stopping = false;
  const onSignal = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    say(`\n${signal}: stopping every server…`);
    if (cluster === null) {
      abort.abort();
      return;
    }
    cluster.stop().then(
      () => {
        say('all servers stopped');
        process.exit(0);
      },
      (e: unknown) => {
        process.stderr.write(`rfs: stopping failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGHUP', () => onSignal('SIGHUP'));
  // `npm start` runs us under `sh -c`: a SIGTERM to npm kills the shell, not us. Orphaned (our parent
  // changed), we stop as if signalled, so no cluster outlives the command that started it.
  const parentPid = process.ppid;
  setInterval(() => {
    if (process.ppid !== parentPid) onSignal('parent exited');
  }, parentCheckMs).unref();

  const nameWidth = 5; // meta1 … cs9
  const basePortGiven = config.sources.get('base-port') !== 'default';
  const dir = config.string('data-dir');
  say(`starting a local rfs cluster in ${dir} …`);
  try {
    cluster = await startLocalCluster({
      dir,
      metadataServers: config.integer('metadata-servers'),
      chunkservers: config.integer('chunkservers'),
      ...(basePortGiven ? { basePort: config.integer('base-port') } : {}),
      host: config.string('host'),
      logLevel: config.string('log-level'),
      heartbeatMs: config.integer('heartbeat-ms'),
      restart: config.boolean('restart'),
      readyTimeoutMs: config.integer('ready-timeout-ms'),
      stopTimeoutMs: config.integer('stop-timeout-ms'),
      signal: abort.signal,
      onLog: (record) => say(formatLogRecord(record, nameWidth)),
      onEvent: (event) => say(describeEvent(event)),
    });
  } catch (e) {
    if (e instanceof LocalClusterError && e.code === 'STOPPED') {
      say('stopped before the cluster was ready');
      process.exit(0);
    }
    if (e instanceof LocalClusterError || e instanceof ConfigError) {
      process.stderr.write(`rfs: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  say(readyBanner(cluster));
}
