/**
 * A real cluster in this process for the client library's tests: 3 metadata servers (RocksDB, gRPC) and
 * 3 chunkservers (FileChunkStore on disk, the TCP data plane, the agent), with 1 MiB chunks so files span
 * chunks cheaply.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { realComponents } from '../../src/chunkserver/components.ts';
import { Chunkserver } from '../../src/chunkserver/server.ts';
import { startInProcessCluster, tempDir } from '../metadata/harness.ts';
import type { InProcessCluster } from '../metadata/harness.ts';
import { testAgentLimits, testClusterOptions } from '../chunkserver/agent-harness.ts';

export const MiB = 1024 * 1024;
export const chunkSizeBytes = MiB;

export interface TestCluster {
  readonly metadata: InProcessCluster;
  readonly addresses: string[];
  readonly chunkservers: Chunkserver[];
  close(): Promise<void>;
}

/** Starts 3 chunkservers against `metadata` addresses and waits until each registered. */
export async function startChunkservers(metadata: readonly string[], count = 3): Promise<{ servers: Chunkserver[]; stop: () => Promise<void> }> {
  const tmp = await tempDir('rfs-fs-cs-');
  const logger = pino({ level: 'silent' });
  const servers: Chunkserver[] = [];
  for (let i = 1; i <= count; i++) {
    const server = await Chunkserver.start({
      dataDir: join(tmp.dir, `cs${i}`),
      listen: '127.0.0.1:0',
      metadata: [...metadata],
      rack: `rack${i}`,
      components: realComponents({ chunkSizeBytes }),
      agentLimits: testAgentLimits,
      logger,
    });
    servers.push(server);
  }
  await Promise.all(servers.map((s) => s.agent.whenRegistered()));
  return {
    servers,
    async stop() {
      for (const s of servers) await s.stop();
      await tmp.remove();
    },
  };
}

export async function startTestCluster(): Promise<TestCluster> {
  const metadata = await startInProcessCluster(3, testClusterOptions);
  const cs = await startChunkservers(metadata.addresses);
  return {
    metadata,
    addresses: metadata.addresses,
    chunkservers: cs.servers,
    async close() {
      await cs.stop();
      await metadata.close();
    },
  };
}
