/**
 * rfsctl's command line (yargs): global options, every command with its help and examples, completion.
 * `runRfsctl(args, io)` parses and runs one command and resolves with its exit code; it never calls
 * process.exit, so it can run in-process too (the entry point is src/cli/rfsctl.ts).
 */
import yargs from 'yargs';
import type { Argv } from 'yargs';
import * as cluster from './cluster.ts';
import { Context, defaultMetadataAddresses } from './context.ts';
import type { GlobalOptions, Io } from './context.ts';
import { exitCodes, toCliError } from './errors.ts';
import type { ExitCode } from './errors.ts';
import * as files from './files.ts';

interface GlobalArgs {
  metadata: string;
  json: boolean;
  timeout: number;
  progress: boolean | undefined;
}

const epilogue = `Exit codes: 0 ok, 1 usage error, 2 refused (no such file, exists, not empty, ...), 3 cluster unreachable or
no leader, 4 partial (fsck found problems, a member did not answer, some of several paths failed), 5 I/O error
(every replica of a chunk failed), 130 put interrupted, 70 internal error. Docs: docs/RFSCTL.md`;

export async function runRfsctl(args: readonly string[], io: Io, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let exit: number = exitCodes.ok;
  let usageError: string | null = null;

  const run =
    <A>(fn: (ctx: Context, argv: A & GlobalArgs) => Promise<ExitCode>) =>
    async (parsed: unknown): Promise<void> => {
      // yargs has checked the shape (types, demanded positionals) against this command's builder.
      const argv = restoreDashes(parsed as Record<string, unknown>) as A & GlobalArgs;
      exit = await execute(io, argv, (ctx) => fn(ctx, argv));
    };

  // yargs-parser reads a lone '-' as an empty flag; rfsctl uses it for stdin/stdout, so it is passed through
  // as a placeholder and restored in each handler's arguments.
  const argsIn = args.map((a) => (a === '-' ? dashPlaceholder : a));
  const parser = yargs(argsIn)
    .scriptName('rfsctl')
    .usage('$0 <command> [options]\n\nOperate an rfs cluster: its metadata servers and chunkservers, and the files it stores.')
    .option('metadata', {
      type: 'string',
      default: env['RFS_METADATA'] ?? defaultMetadataAddresses,
      defaultDescription: `$RFS_METADATA or ${defaultMetadataAddresses}`,
      describe: 'metadata servers, host:port,… (any of them; the leader is found)',
      global: true,
    })
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable output on stdout (errors too)', global: true })
    .option('timeout', { type: 'number', default: 30, describe: 'seconds one metadata operation keeps retrying (leader changes, lost servers)', global: true })
    .option('progress', { type: 'boolean', describe: 'progress bar on stderr for put/get (default: when stderr is a terminal)', global: true })
    .command(
      'status',
      'the cluster at a glance',
      (y: Argv) =>
        y
          .epilogue('Shows the leader and term; per metadata server its role, commit and applied index, the leader\'s match index\nand its lag in entries; chunkservers live and dead; under-replicated chunks. Exit code 4 when a member does not\nanswer or no leader is known.')
          .example('$0 status', 'one line per metadata server').example('$0 status --json | jq .leader', 'for scripts'),
      run((ctx) => cluster.status(ctx)),
    )
    .command('members', 'change the metadata servers (Raft membership): add, promote, remove', (y: Argv) =>
      y
        .command(
          'add <id> <address> <raft-address>',
          'add a server as a learner (start it in join mode first); it receives the log but does not vote',
          (y2: Argv) =>
            y2
              .positional('id', { type: 'number', demandOption: true, describe: 'its member id' })
              .positional('address', { type: 'string', demandOption: true, describe: 'its metadata service, host:port' })
              .positional('raft-address', { type: 'string', demandOption: true, describe: 'its Raft transport, host:port' })
              .example('$0 members add 4 10.0.0.4:7001 10.0.0.4:8001', 'then `members promote 4` once it caught up'),
          run<{ id: number; address: string; raftAddress: string }>((ctx, a) => cluster.members(ctx, { action: 'add', id: a.id, address: a.address, raftAddress: a.raftAddress })),
        )
        .command(
          'promote <id>',
          'make a learner a voter (refused while it has not caught up with the leader)',
          (y2: Argv) => y2.positional('id', { type: 'number', demandOption: true }).example('$0 members promote 4', ''),
          run<{ id: number }>((ctx, a) => cluster.members(ctx, { action: 'promote', id: a.id })),
        )
        .command(
          'remove <id>',
          'remove a voter or learner (not the leader: transfer leadership first)',
          (y2: Argv) => y2.positional('id', { type: 'number', demandOption: true }).example('$0 members remove 3', ''),
          run<{ id: number }>((ctx, a) => cluster.members(ctx, { action: 'remove', id: a.id })),
        )
        .demandCommand(1, 'members: give add, promote or remove'),
    )
    .command('leader', 'leadership of the metadata servers', (y: Argv) =>
      y
        .command(
          'transfer',
          'hand leadership to another voter; answers once it leads',
          (y2: Argv) =>
            y2
              .option('to', { type: 'number', describe: 'the member id (default: the most caught-up other voter)' })
              .example('$0 leader transfer', 'to the most caught-up voter')
              .example('$0 leader transfer --to 2', ''),
          run<{ to: number | undefined }>((ctx, a) => cluster.leaderTransfer(ctx, { to: a.to })),
        )
        .demandCommand(1, 'leader: give transfer'),
    )
    .command('chunkservers', 'the chunkservers: list, decommission, forget', (y: Argv) =>
      y
        .command(
          'list',
          'every registered chunkserver: address, rack, state (live, dead, decommissioning, decommissioned), usage',
          (y2: Argv) => y2.example('$0 chunkservers list', '').example('$0 chunkservers list --json', ''),
          run((ctx) => cluster.chunkserversList(ctx)),
        )
        .command(
          'decommission <id>',
          'drain a chunkserver: its chunks are copied elsewhere, then it is marked decommissioned',
          (y2: Argv) => y2.positional('id', { type: 'number', demandOption: true }).example('$0 chunkservers decommission 3', 'then watch `chunkservers list`'),
          run<{ id: number }>((ctx, a) => cluster.chunkserversDecommission(ctx, { id: a.id })),
        )
        .command(
          'forget <id>',
          'remove a dead or decommissioned chunkserver from the registry (stop its process first; it must have been silent for the heartbeat timeout and hold no listed replica)',
          (y2: Argv) => y2.positional('id', { type: 'number', demandOption: true }).example('$0 chunkservers forget 3', 'after `chunkservers list` shows it decommissioned'),
          run<{ id: number }>((ctx, a) => cluster.chunkserversForget(ctx, { id: a.id })),
        )
        .demandCommand(1, 'chunkservers: give list, decommission or forget'),
    )
    .command(
      'fsck [path]',
      'check the chunks of every file under path (default /)',
      (y: Argv) =>
        y
          .epilogue(
            'Reports per file: missing chunks (no readable replica), under-replicated chunks (fewer live replicas than the\nfile\'s replication factor), unsealed chunks in complete files, and with --verify corrupt replicas (each replica\nread back through the data plane and its CRC32C compared with the sealed checksum). Files still open for writing\nare listed, not counted as problems. Exit code 4 when there are problems.',
          )
          .positional('path', { type: 'string', describe: 'a directory or file' })
          .option('verify', { type: 'boolean', default: false, describe: 'read every replica back and compare its CRC32C with the sealed checksum (reads all data)' })
          .example('$0 fsck', 'the whole namespace, from the metadata only')
          .example('$0 fsck /logs --verify', 'also read back every replica under /logs'),
      run<{ path: string | undefined; verify: boolean }>((ctx, a) => cluster.fsck(ctx, { path: a.path, verify: a.verify })),
    )
    .command(
      'balance',
      'report chunkserver usage and whether rebalancing is due (report only)',
      (y: Argv) =>
        y
          .epilogue(
            'Rebalancing runs by itself on the metadata leader: while the fullest and emptiest live chunkservers differ by more\nthan rebalanceThresholdPermille (10 points by default), its chunk manager moves one chunk at a time from the\nfullest to the emptiest. This command only reports: it cannot start, stop or steer moves (there is no RPC for that yet).',
          )
          .example('$0 balance', ''),
      run((ctx) => cluster.balance(ctx)),
    )
    .command(
      'ls [paths..]',
      'list directories (or show files)',
      (y: Argv) =>
        y
          .positional('paths', { type: 'string', array: true, default: [] as string[] })
          .option('l', { alias: 'long', type: 'boolean', default: false, describe: 'mode, replication, size, chunks, modification time' })
          .option('R', { alias: 'recursive', type: 'boolean', default: false, describe: 'list subdirectories too' })
          .example('$0 ls /', '')
          .example('$0 ls -lR /logs', ''),
      run<{ paths: string[]; long: boolean; recursive: boolean }>((ctx, a) => files.ls(ctx, { paths: a.paths, long: a.long, recursive: a.recursive })),
    )
    .command(
      'mkdir <paths..>',
      'make directories',
      (y: Argv) =>
        y
          .positional('paths', { type: 'string', array: true, demandOption: true })
          .option('p', { alias: 'parents', type: 'boolean', default: false, describe: 'make parents as needed; no error if it exists' })
          .example('$0 mkdir -p /logs/2026/11', ''),
      run<{ paths: string[]; parents: boolean }>((ctx, a) => files.mkdir(ctx, { paths: a.paths, parents: a.parents })),
    )
    .command(
      'put <local> <path>',
      'copy a local file (or - for stdin) to rfs, streaming; into <path>/<name> when <path> is a directory',
      (y: Argv) =>
        y
          .positional('local', { type: 'string', demandOption: true })
          .positional('path', { type: 'string', demandOption: true })
          .option('replication', { type: 'number', describe: 'replicas per chunk (default: the directory\'s)' })
          .option('chunk-mib', { type: 'number', describe: 'chunk size in MiB (default: the directory\'s, 64)' })
          .option('n', { alias: 'no-clobber', type: 'boolean', default: false, describe: 'fail if the file exists (default: replace it)' })
          .example('$0 put ./big.bin /big', '')
          .example('$0 put ./a.log /logs/ --replication 2', 'to /logs/a.log')
          .example('tar c dir | $0 put - /backup.tar', 'from stdin'),
      run<{ local: string; path: string; replication: number | undefined; chunkMib: number | undefined; noClobber: boolean }>((ctx, a) =>
        files.put(ctx, { local: a.local, target: a.path, replication: a.replication, chunkMib: a.chunkMib, noClobber: a.noClobber }),
      ),
    )
    .command(
      'get <path> <local>',
      'copy a file from rfs to a local file (or - for stdout), streaming',
      (y: Argv) =>
        y
          .positional('path', { type: 'string', demandOption: true })
          .positional('local', { type: 'string', demandOption: true })
          .example('$0 get /big ./copy.bin', '')
          .example('$0 get /logs/a.log .', 'to ./a.log'),
      run<{ path: string; local: string }>((ctx, a) => files.get(ctx, { source: a.path, local: a.local })),
    )
    .command(
      'cat <paths..>',
      'write files to stdout',
      (y: Argv) => y.positional('paths', { type: 'string', array: true, demandOption: true }).example('$0 cat /etc/motd', ''),
      run<{ paths: string[] }>((ctx, a) => files.cat(ctx, { paths: a.paths })),
    )
    .command(
      'rm <paths..>',
      'remove files (and with -r directories)',
      (y: Argv) =>
        y
          .positional('paths', { type: 'string', array: true, demandOption: true })
          .option('r', { alias: 'recursive', type: 'boolean', default: false, describe: 'remove directories and their contents' })
          .option('f', { alias: 'force', type: 'boolean', default: false, describe: 'no error for paths that do not exist' })
          .example('$0 rm /tmp/a', '')
          .example('$0 rm -rf /scratch', ''),
      run<{ paths: string[]; recursive: boolean; force: boolean }>((ctx, a) => files.rm(ctx, { paths: a.paths, recursive: a.recursive, force: a.force })),
    )
    .command(
      'mv <from> <to>',
      'rename or move (into <to> when it is a directory); atomic',
      (y: Argv) =>
        y
          .positional('from', { type: 'string', demandOption: true })
          .positional('to', { type: 'string', demandOption: true })
          .example('$0 mv /a /b', '')
          .example('$0 mv /in/x /done/', 'to /done/x'),
      run<{ from: string; to: string }>((ctx, a) => files.mv(ctx, { from: a.from, to: a.to })),
    )
    .command(
      'stat <paths..>',
      'details of files and directories',
      (y: Argv) => y.positional('paths', { type: 'string', array: true, demandOption: true }).example('$0 stat /big', '').example('$0 stat /big --json', ''),
      run<{ paths: string[] }>((ctx, a) => files.stat(ctx, { paths: a.paths })),
    )
    .command(
      'du [paths..]',
      'space used: bytes of file data per directory (replicas not counted; --json adds storedBytes)',
      (y: Argv) =>
        y
          .positional('paths', { type: 'string', array: true, default: [] as string[] })
          .option('s', { alias: 'summarize', type: 'boolean', default: false, describe: 'one total per argument' })
          .option('h', { alias: 'human-readable', type: 'boolean', default: false, describe: 'sizes in KiB, MiB, GiB' })
          .example('$0 du -sh /', ''),
      run<{ paths: string[]; summarize: boolean; humanReadable: boolean }>((ctx, a) => files.du(ctx, { paths: a.paths, summarize: a.summarize, human: a.humanReadable })),
    )
    .command(
      'chmod <mode> <paths..>',
      'set permission bits (octal; rfs keeps them and checks none)',
      (y: Argv) =>
        y
          .positional('mode', { type: 'string', demandOption: true })
          .positional('paths', { type: 'string', array: true, demandOption: true })
          .option('R', { alias: 'recursive', type: 'boolean', default: false, describe: 'also everything below a directory' })
          .example('$0 chmod 640 /secrets', '')
          .example('$0 chmod -R 755 /www', ''),
      run<{ mode: string; paths: string[]; recursive: boolean }>((ctx, a) => files.chmod(ctx, { mode: String(a.mode), paths: a.paths, recursive: a.recursive })),
    )
    .command(
      'touch <paths..>',
      'set the modification time to now, creating empty files that do not exist',
      (y: Argv) =>
        y
          .positional('paths', { type: 'string', array: true, demandOption: true })
          .option('c', { type: 'boolean', default: false, describe: 'create nothing; skip missing paths (as touch -c)' })
          .example('$0 touch /jobs/done', ''),
      run<{ paths: string[]; c: boolean }>((ctx, a) => files.touch(ctx, { paths: a.paths, noCreate: a.c })),
    )
    .command(
      'setrep <replication> <paths..>',
      "set the replication factor: a file's chunks are copied or trimmed to it in the background; a directory's is what new files below it get",
      (y: Argv) =>
        y
          .positional('replication', { type: 'number', demandOption: true })
          .positional('paths', { type: 'string', array: true, demandOption: true })
          .option('R', { alias: 'recursive', type: 'boolean', default: false, describe: 'also every file and directory below a directory' })
          .option('w', { alias: 'wait', type: 'boolean', default: false, describe: 'wait until every sealed chunk of the files has that many copies' })
          .example('$0 setrep -w 2 /logs/old.log', '')
          .example('$0 setrep -R 3 /important', ''),
      run<{ replication: number; paths: string[]; recursive: boolean; wait: boolean }>((ctx, a) =>
        files.setrep(ctx, { replication: a.replication, paths: a.paths, recursive: a.recursive, wait: a.wait }),
      ),
    )
    .completion('completion', 'print a bash/zsh completion script: rfsctl completion >> ~/.bashrc')
    .demandCommand(1, 'give a command (rfsctl --help lists them)')
    .recommendCommands()
    .strict()
    .help('help')
    .alias('help', 'H')
    .version(false)
    .epilogue(epilogue)
    .wrap(null) // the terminal wraps; yargs' own wrapping splits words with the installed wrap-ansi
    .exitProcess(false)
    .fail((message: string | null, error: Error | undefined) => {
      if (error !== undefined && error !== null) throw error;
      usageError = message ?? 'bad usage';
    }) as Argv<GlobalArgs>;

  let output = '';
  try {
    await parser.parseAsync(argsIn, {}, (_error: Error | undefined, _argv: unknown, text: string) => {
      output = text;
    });
  } catch (error) {
    io.stderr.write(`rfsctl: ${toCliError(error).message}\n`);
    return exitCodes.internal;
  }
  if (usageError !== null) {
    io.stderr.write(`${output === '' ? '' : `${output}\n\n`}rfsctl: ${usageError as string}\n`);
    return exitCodes.usage;
  }
  if (output !== '') io.stdout.write(`${output}\n`);
  return exit;
}

const dashPlaceholder = '\u0000stdio';

function restoreDashes(argv: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(argv)) {
    out[k] = v === dashPlaceholder ? '-' : Array.isArray(v) ? (v as unknown[]).map((x) => (x === dashPlaceholder ? '-' : x)) : v;
  }
  return out;
}

async function execute(io: Io, argv: GlobalArgs, fn: (ctx: Context) => Promise<ExitCode>): Promise<number> {
  let ctx: Context | undefined;
  try {
    const options: GlobalOptions = { metadata: argv.metadata, json: argv.json, timeout: argv.timeout, progress: argv.progress };
    if (!(argv.timeout > 0)) throw toCliError(Object.assign(new Error('--timeout: give a positive number of seconds'), { code: 'EINVAL' }));
    ctx = new Context(options, io);
    return await fn(ctx);
  } catch (error) {
    const e = toCliError(error);
    io.stderr.write(`rfsctl: ${e.message}\n`);
    if (argv.json) io.stdout.write(`${JSON.stringify({ error: { code: e.code ?? null, message: e.message, exitCode: e.exitCode } })}\n`);
    return e.exitCode;
  } finally {
    ctx?.close();
  }
}
