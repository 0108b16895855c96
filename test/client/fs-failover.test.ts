/**
 * Acceptance: the metadata leader's process is SIGKILLed in the middle of a `createWriteStream` write.
 * Three `rfs metadata` processes (the documented command) and three chunkservers (in this process).
 *
 * What must hold: the stream either finishes (then the whole file reads back equal) or fails with a clear
 * RfsError (then the file's readable bytes are a prefix of what was written); a file whose writeFile
 * resolved before the kill reads back equal after it. "Acknowledged" for a stream is `finish`: a write
 * callback only means the writer took the bytes (see src/client/streams.ts).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import t from 'tap';
import { connect, RfsError } from '../../src/index.ts';
import { rawCall, stablePort, sleep, tempDir, waitFor } from '../metadata/harness.ts';
import { MiB, startChunkservers } from './fs-harness.ts';
import { pattern } from './pattern.ts';

const repoRoot = join(import.meta.dirname, '..', '..');

void t.test('leader SIGKILLed in the middle of a write stream: completes or fails clearly, nothing acknowledged lost', async (t) => {
  const tmp = await tempDir('rfs-fs-failover-');
  const ids = [1, 2, 3];
  const clientPorts = new Map<number, number>();
  const raftPorts = new Map<number, number>();
  for (const id of ids) {
    clientPorts.set(id, await stablePort());
    raftPorts.set(id, await stablePort());
  }
  const address = (id: number): string => `127.0.0.1:${clientPorts.get(id)}`;
  const peers = ids.map((id) => `${id}=${address(id)}/${raftPorts.get(id)}`).join(',');
  const children = new Map<number, ChildProcess>();
  t.teardown(async () => {
    for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await sleep(200);
    if (process.env['RFS_KEEP_LOGS'] === undefined) await tmp.remove();
    else console.log(`# logs kept in ${tmp.dir}`);
  });
  for (const id of ids) {
    const log = openSync(join(tmp.dir, `m${id}.log`), 'a');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/rfs.ts', 'metadata', '--id', String(id), '--listen', address(id),
        '--peers', peers, '--data-dir', join(tmp.dir, `m${id}`), '--log-level', process.env['RFS_KEEP_LOGS'] === undefined ? 'warn' : 'debug'],
      { cwd: repoRoot, stdio: ['ignore', log, log] },
    );
    closeSync(log);
    children.set(id, child);
  }
  const leaderId = async (): Promise<number | undefined> => {
    for (const id of ids) {
      if (children.get(id)?.exitCode !== null || children.get(id)?.signalCode !== null) continue;
      try {
        const s = await rawCall(address(id), 'ClusterStatus', {}, 500);
        if (s['role'] === 'leader') return Number(s['id']);
      } catch {
        // not up yet
      }
    }
    return undefined;
  };
  // Generous: three tsx processes start on a machine shared with other test files.
  const first = await waitFor('a first leader', leaderId, 90_000);

  const chunkservers = await startChunkservers(ids.map(address));
  t.teardown(() => chunkservers.stop());
  const fs = await connect({ metadata: ids.map(address), timeoutMs: 20_000 });
  t.teardown(() => fs.close());
  await fs.mkdir('/d', { chunkSizeBytes: MiB });

  const before = pattern(2 * MiB + 5, 7);
  await fs.writeFile('/d/before', before);

  const data = pattern(8 * MiB + 123, 8);
  const ws = fs.createWriteStream('/d/stream', { highWaterMark: 256 * 1024 });
  const done = finished(ws).then(
    () => null,
    (e: unknown) => e,
  );
  const piece = 64 * 1024;
  let killedAt = -1;
  let killedMs = 0;
  for (let offset = 0; offset < data.length && !ws.destroyed; offset += piece) {
    if (killedAt < 0 && offset >= 3 * MiB) {
      children.get(first)!.kill('SIGKILL');
      killedAt = ws.bytesWritten;
      killedMs = Date.now();
      t.comment(`SIGKILL of leader ${first} after ${killedAt} bytes taken by the writer`);
    }
    if (!ws.write(data.subarray(offset, offset + piece))) await new Promise((resolve) => ws.once('drain', resolve).once('close', resolve));
  }
  ws.end();
  const error = await done;
  t.comment(`the stream settled ${Date.now() - killedMs} ms after the kill (${error === null ? 'finished' : 'failed'})`);
  t.ok(killedAt > 0, 'the leader was killed in the middle of the stream');
  const second = await waitFor('a new leader', leaderId, 30_000);
  t.not(second, first, `server ${second} leads now`);

  if (error === null) {
    t.pass('the stream finished across the leader change');
    const back = await fs.readFile('/d/stream');
    t.equal(back.length, data.length);
    t.ok(back.equals(data), 'finished: the whole file reads back equal');
    const st = await fs.stat('/d/stream');
    t.ok(st.complete && st.size === data.length, 'and is complete');
  } else {
    t.ok(error instanceof RfsError, `the stream failed with a clear RfsError: ${(error as Error).message}`);
    const back = await fs.readFile('/d/stream');
    t.ok(back.equals(data.subarray(0, back.length)), `failed: the ${back.length} readable bytes are a prefix of what was written`);
  }
  t.ok((await fs.readFile('/d/before')).equals(before), 'the file acknowledged before the kill is intact');
  await fs.writeFile('/d/after', 'after');
  t.equal(await fs.readFile('/d/after', { encoding: 'utf8' }), 'after', 'the cluster takes new writes');
});
