/**
 * The `rfs` command (yargs; `rfs --help`, `rfs <command> --help`).
 *
 *   rfs metadata --id 1 --listen 127.0.0.1:7001 \
 *       --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir ./data/m1
 *
 * starts one metadata server. `--peers` names every member's client address; a member's Raft transport
 * listens on its client port + `--raft-port-offset` (default 1000), or give it explicitly as
 * `id=host:clientPort/raftPort`. SIGTERM and SIGINT stop the server cleanly. Logs are pino JSON on stdout.
 * Run it with `npx tsx src/cli/rfs.ts metadata …` (or `node --import tsx src/cli/rfs.ts …`).
 *
 *   rfs chunkserver --data-dir ./data/c1 --metadata 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
 *       --rack r1 --listen 127.0.0.1:7101 [--id N] [--advertise HOST:PORT] [--metrics HOST:PORT]
 *
 * starts one chunkserver (one per disk). Its id is allocated by the metadata leader on first start and kept
 * in the data dir; `--id` only checks that the data dir is the expected server's. Replicas live under
 * `<data-dir>/chunks`; the data plane (pipelined writes, reads, copies) listens on `--listen` (TCP).
 *
 *   rfs cluster [--data-dir ./rfs-data] [--base-port 7001]
 *
 * runs a whole local cluster as child processes (`npm start`), see src/cluster/local.ts.
 *
 * Every setting is also an environment variable (`RFS_DATA_DIR`) and a key of a JSON config file
 * (`--config`); precedence and the list are in src/cli/config.ts and docs/CONFIG.md. Usage errors exit 2.
 */
import { pino } from 'pino';
import yargs from 'yargs';
import type { Argv } from 'yargs';
import { Chunkserver } from '../chunkserver/server.ts';
import { realComponents } from '../chunkserver/components.ts';
import { MetadataServer, splitHostPort } from '../metadata/server.ts';
import type { PeerAddress } from '../metadata/server.ts';
import { ConfigError, configSetting, envName, loadSettings, settings } from './config.ts';
import type { CommandName, ResolvedSettings } from './config.ts';
import { runLocalCluster } from '../cluster/main.ts';
import { PlantedBugsError, plantedBugsFromEnv, plantedBugsWarning } from './planted-bugs.ts';
import type { ProcessBugs } from './planted-bugs.ts';
import { exitAfterStop, stopOnSignals } from './stop.ts';

export function parsePeers(spec: string, raftPortOffset: number): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>();
  for (const part of spec.split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([0-9]+)=([^/\s]+)(?:\/([0-9]+))?\s*$/.exec(part);
    if (m === null) throw new ConfigError(`bad peer ${JSON.stringify(part)} (want ID=HOST:PORT[/RAFTPORT])`);
    const id = Number(m[1]);
    const client = m[2] ?? '';
    const { host, port } = splitHostPort(client);
    const raftPort = m[3] !== undefined ? Number(m[3]) : port + raftPortOffset;
    if (!Number.isSafeInteger(id) || id < 1) throw new ConfigError(`bad peer id in ${part}`);
    if (raftPort > 65535) throw new ConfigError(`raft port of ${part} out of range`);
    if (peers.has(id)) throw new ConfigError(`peer ${id} given twice`);
    peers.set(id, { client, raft: `${host.includes(':') ? `[${host}]` : host}:${raftPort}` });
  }
  return peers;
}

/** The planted bugs switched on by the environment (planted-bugs.ts); a bad list is a usage error. */
function plantedBugs(logger: pino.Logger): ProcessBugs {
  let bugs: ProcessBugs;
  try {
    bugs = plantedBugsFromEnv();
  } catch (e) {
    if (e instanceof PlantedBugsError) throw new ConfigError(e.message);
    throw e;
  }
  if (bugs.names.length > 0) {
    const warning = plantedBugsWarning(bugs);
    logger.warn({ plantedBugs: bugs.names }, warning);
    process.stderr.write(`rfs: WARNING: ${warning}\n`);
  }
  return bugs;
}

async function metadata(config: ResolvedSettings, stdinEnd: boolean): Promise<void> {
  const id = config.integer('id');
  const peers = parsePeers(config.string('peers'), config.integer('raft-port-offset'));
  const dataDir = config.string('data-dir');
  const self = peers.get(id);
  if (self === undefined) throw new ConfigError(`--peers must include this server's id ${id}`);
  const logger = pino({ level: config.string('log-level') });
  const bugs = plantedBugs(logger);
  // --listen may name another interface (e.g. 0.0.0.0) than the advertised address; the Raft port is kept.
  const listen = config.optString('listen') ?? self.client;
  const metrics = config.optString('metrics');
  const server = await MetadataServer.start({
    id,
    listen,
    raftListen: `${splitHostPort(listen).host}:${splitHostPort(self.raft).port}`,
    peers,
    dataDir,
    logger,
    tickMs: config.integer('tick-ms'),
    electionTicks: config.integer('election-ticks'),
    heartbeatTicks: config.integer('heartbeat-ticks'),
    ...(bugs.raft.size > 0 ? { raftBugs: bugs.raft } : {}),
    ...(metrics !== undefined ? { metricsListen: metrics } : {}),
    onFatal: () => exitAfterStop(logger, () => server.stop(), 70),
  });
  stopOnSignals(logger, () => server.stop(), { stdinEnd });
}

async function chunkserver(config: ResolvedSettings, stdinEnd: boolean): Promise<void> {
  const dataDir = config.string('data-dir');
  const metadataSpec = config.string('metadata');
  const rack = config.string('rack');
  const listen = config.string('listen');
  const metadataAddresses = metadataSpec.split(',').map((a) => a.trim()).filter((a) => a !== '');
  for (const a of metadataAddresses) splitHostPort(a);
  if (metadataAddresses.length === 0) throw new ConfigError('--metadata: at least one host:port');
  const logger = pino({ level: config.string('log-level') });
  const bugs = plantedBugs(logger);
  const components = realComponents({
    scrubBytesPerSecond: config.integer('scrub-mib-per-s') * 1024 * 1024,
    localReads: config.boolean('local-reads'),
    directWrites: config.boolean('direct-io'),
    pipelineStallMs: config.integer('pipeline-stall-ms'),
    pipelineIdleMs: config.integer('pipeline-idle-ms'),
    ...(bugs.data.size > 0 ? { bugs: bugs.data } : {}),
  });
  const heartbeatMs = config.integer('heartbeat-ms');
  const expectedId = config.optInteger('id');
  const advertise = config.optString('advertise');
  const metrics = config.optString('metrics');
  let server: Chunkserver | null = null;
  server = await Chunkserver.start({
    dataDir,
    listen,
    metadata: metadataAddresses,
    rack,
    components,
    logger,
    ...(expectedId !== undefined ? { expectedId } : {}),
    ...(advertise !== undefined ? { advertise } : {}),
    ...(metrics !== undefined ? { metricsListen: metrics } : {}),
    // Retries back off to at most one heartbeat interval (checkAgentLimits).
    agentLimits: { heartbeatIntervalMs: heartbeatMs, retryDelayMsMin: Math.min(100, heartbeatMs), retryDelayMsMax: Math.min(2_000, heartbeatMs) },
    onFatal: (error) => {
      logger.error({ err: error }, 'chunkserver cannot continue');
      exitAfterStop(logger, () => server?.stop() ?? Promise.resolve(), 70);
    },
  });
  const running = server;
  stopOnSignals(logger, () => running.stop(), { stdinEnd });
}

/** Declares a command's settings as yargs options: all optional, no yargs defaults (config.ts applies them). */
function withSettings(y: Argv, command: CommandName): Argv {
  let out: Argv = y.option(configSetting.key, { type: 'string', describe: `${configSetting.description} [env ${envName(configSetting.key)}]` });
  for (const s of settings[command]) {
    const details = [s.default !== undefined ? `default ${String(s.default)}${s.unit !== undefined ? ` ${s.unit}` : ''}` : '', `env ${envName(s.key)}`].filter((d) => d !== '').join(', ');
    out = out.option(s.key, { type: s.type === 'boolean' ? 'boolean' : 'string', describe: `${s.description} [${details}]` });
  }
  return out;
}

/** Flags actually given (yargs also adds `_`, `$0` and aliases). */
function givenFlags(argv: Record<string, unknown>, command: CommandName): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const key of [configSetting.key, ...settings[command].map((s) => s.key)]) if (argv[key] !== undefined) flags[key] = argv[key];
  return flags;
}

const internalFlag = 'stop-on-stdin-end';

export async function main(argv: string[]): Promise<void> {
  let usageError: string | undefined;
  const parser = yargs(argv)
    .scriptName('rfs')
    .parserConfiguration({ 'camel-case-expansion': false, 'boolean-negation': true })
    .env(false)
    .strict()
    .exitProcess(false)
    .help()
    .version(false)
    .wrap(Math.min(120, process.stdout.columns ?? 120))
    .option(internalFlag, { type: 'boolean', hidden: true, describe: 'stop when stdin ends (set by the local cluster)' })
    .command('metadata', 'run one metadata server (a Raft member)', (y) =>
      withSettings(y, 'metadata')
        .example('$0 metadata --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /var/lib/rfs/meta1', 'member 1 of 3 (Raft ports 8001–8003)')
        .example('RFS_ID=2 RFS_DATA_DIR=/var/lib/rfs/meta2 $0 metadata --config /etc/rfs/rfs.json', 'the same settings from the environment and a config file'),
    )
    .command('chunkserver', 'run one chunkserver (one per disk)', (y) =>
      withSettings(y, 'chunkserver')
        .example('$0 chunkserver --data-dir /srv/disk1/rfs --metadata 10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001 --rack r1 --listen 0.0.0.0:7101 --advertise 10.0.1.5:7101', 'one disk of a storage machine')
        .example('$0 chunkserver --config /etc/rfs/rfs.json --data-dir /srv/disk2/rfs --listen 0.0.0.0:7102', 'shared settings in a file, per-disk ones as flags'),
    )
    .command('cluster', 'run a local cluster: 3 metadata servers and 3 chunkservers as child processes (npm start)', (y) =>
      withSettings(y, 'cluster')
        .example('$0 cluster', 'data in ./rfs-data, ports 7001–7003 (metadata) and 7101–7103 (chunkservers)')
        .example('$0 cluster --data-dir /tmp/rfs --base-port 9001', 'a second cluster next to the first'),
    )
    .demandCommand(1, 'a command is required: metadata, chunkserver or cluster')
    .fail((message: string | null, error: Error | null) => {
      usageError = message ?? error?.message ?? 'usage error';
    });
  const args = (await parser.parseAsync()) as Record<string, unknown> & { _: (string | number)[] };
  if (usageError !== undefined) {
    process.stderr.write(`rfs: ${usageError}\n(rfs --help for usage)\n`);
    process.exitCode = 2;
    return;
  }
  if (args['help'] === true) return;
  const command = String(args._[0]) as CommandName;
  const stdinEnd = args[internalFlag] === true;
  let config: ResolvedSettings;
  try {
    config = loadSettings(command, givenFlags(args, command));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`rfs ${command}: ${e.message}\n(rfs ${command} --help for usage)\n`);
      process.exit(2);
    }
    throw e;
  }
  switch (command) {
    case 'metadata':
      return metadata(config, stdinEnd);
    case 'chunkserver':
      return chunkserver(config, stdinEnd);
    case 'cluster':
      return runLocalCluster(config);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  // Bad settings exit 2 (systemd units do not restart on it); failures to start exit 1.
  const usage = e instanceof ConfigError || (e instanceof Error && /^bad address /.test(e.message));
  process.stderr.write(`rfs: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(usage ? 2 : 1);
});
