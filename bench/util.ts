/** Small helpers the benchmark scripts share: free loopback ports, sleeping, polling, plain file reads, process CPU. */
import { spawnSync } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` every `intervalMs` until it returns a value (errors count as "not yet"), or throws after the timeout. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${String(last)}`);
    await sleep(intervalMs);
  }
}

/**
 * Reads `files` one after the other, from start to end, `blockBytes` per read into one buffer (allocated
 * before the timer), as bench:data's limit reads its files. The bytes read and the seconds it took.
 */
export async function readFilesPlainly(files: readonly string[], blockBytes: number): Promise<{ bytes: number; seconds: number }> {
  const buf = Buffer.allocUnsafe(blockBytes);
  let bytes = 0;
  const t0 = performance.now();
  for (const file of files) {
    const h = await open(file, 'r');
    try {
      for (;;) {
        const { bytesRead } = await h.read(buf, 0, blockBytes, null);
        if (bytesRead === 0) break;
        bytes += bytesRead;
      }
    } finally {
      await h.close();
    }
  }
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (asked once, when first needed). */
let clockTicksPerSec: number | undefined;

/**
 * CPU seconds (user and system, all threads) a process has used so far, from /proc/<pid>/stat. Rejects when
 * the process is gone (no /proc entry).
 */
export async function processCpuSeconds(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the
  // 14th and 15th fields of the line, the 12th and 13th after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  clockTicksPerSec ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  return { user: Number(fields[11]) / clockTicksPerSec, system: Number(fields[12]) / clockTicksPerSec };
}
