/**
 * Helpers of the rfsctl tests, reusable against any cluster (in-process here; the `npm start` cluster in the
 * end-to-end test): run rfsctl as a child process (the real bin launcher) or in this process (same parser
 * and commands, captured streams: much faster under load), and an in-process 3+N cluster to run it against.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import { runRfsctl } from '../../src/cli/rfsctl/main.ts';
import { startInProcessCluster, tempDir } from '../metadata/harness.ts';
import type { InProcessCluster } from '../metadata/harness.ts';
import { testAgentLimits, testClusterOptions } from '../chunkserver/agent-harness.ts';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const rfsctlBin = join(repoRoot, 'bin', 'rfsctl.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** --metadata (host:port,...); omitted: rfsctl's default or $RFS_METADATA. */
  readonly metadata?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Bytes for stdin. */
  readonly stdin?: Buffer;
}

function withMetadata(args: readonly string[], options: RunOptions): string[] {
  return options.metadata === undefined ? [...args] : [...args, '--metadata', options.metadata];
}

/** rfsctl as a child process through its bin launcher (`node bin/rfsctl.js …`, what `npx rfsctl` runs). */
export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [rfsctlBin, ...withMetadata(args, options)], {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.end(options.stdin ?? Buffer.alloc(0));
  });
}

/** rfsctl in this process: the same parser and commands, stdout and stderr captured. */
export async function runInProcess(args: readonly string[], options: RunOptions = {}): Promise<CliResult & { stdoutBytes: Buffer }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (b: Buffer) => out.push(b));
  stderr.on('data', (b: Buffer) => err.push(b));
  const stdin = Readable.from(options.stdin === undefined ? [] : [options.stdin]);
  const code = await runRfsctl(withMetadata(args, options), { stdout, stderr, stdin }, { ...process.env, ...options.env });
  const stdoutBytes = Buffer.concat(out);
  return { code, stdout: stdoutBytes.toString(), stdoutBytes, stderr: Buffer.concat(err).toString() };
}

export interface TestCluster {
  readonly metadata: InProcessCluster;
  /** The --metadata value for rfsctl. */
  readonly spec: string;
  readonly chunkservers: Map<number, Chunkserver>;
  /** Each chunkserver's data dir (replicas under `<dir>/chunks/<handle>.data`). */
  readonly dataDirs: Map<number, string>;
  stopChunkserver(id: number): Promise<void>;
  close(): Promise<void>;
}

/** 3 metadata servers and `chunkservers` chunkservers (real stores on a temp dir, TCP data plane), in this process. */
export async function startTestCluster(options: { chunkservers?: number } = {}): Promise<TestCluster> {
  const metadata = await startInProcessCluster(3, testClusterOptions);
  const tmp = await tempDir('rfsctl-test-');
  const logger = pino({ level: 'silent' });
  const chunkservers = new Map<number, Chunkserver>();
  const dataDirs = new Map<number, string>();
  try {
    for (let i = 1; i <= (options.chunkservers ?? 3); i++) {
      const dataDir = join(tmp.dir, `cs${i}`);
      const server = await Chunkserver.start({
        dataDir,
        listen: '127.0.0.1:0',
        metadata: metadata.addresses,
        rack: `rack${i}`,
        components: realComponents(),
        agentLimits: testAgentLimits,
        logger,
      });
      const id = await server.agent.whenRegistered();
      chunkservers.set(id, server);
      dataDirs.set(id, dataDir);
    }
  } catch (error) {
    for (const s of chunkservers.values()) await s.stop();
    await metadata.close();
    await tmp.remove();
    throw error;
  }
  return {
    metadata,
    spec: metadata.addresses.join(','),
    chunkservers,
    dataDirs,
    async stopChunkserver(id) {
      await chunkservers.get(id)?.stop();
      chunkservers.delete(id);
    },
    async close() {
      for (const s of chunkservers.values()) await s.stop();
      await metadata.close();
      await tmp.remove();
    },
  };
}
