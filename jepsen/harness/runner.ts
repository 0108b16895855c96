/**
 * One Jepsen run, start to end:
 *   1. root check, the run lock, leftovers of a crashed earlier run removed, the network built;
 *   2. 5 metadata servers + 3 chunkservers started in their namespaces, waited for (a leader, all live);
 *   3. the workload's setup (clients connected, every key written to its initial value, recorded);
 *   4. the workers and the nemesis schedule run side by side for `timeMs` (longer if a fault ran late);
 *   5. every fault healed (the active one, then a sweep: routes, paused, stopped and skewed servers), the
 *      cluster waited for, and the final read phase (every key) on the healed cluster;
 *   6. the history's sanity check, the checker's verdict (if the checker is in this build), index.html;
 *   7. always (also on error and abort): servers killed, namespaces and bridge removed, lock released.
 * Files of the run folder: history.jsonl, nemesis.jsonl, schedule.json, logs/<server>.log, sanity.txt,
 * verdict.txt, index.html, run.json (options and counts).
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureDebianPackages } from './apt.ts';
import { Cluster, libfaketimePath } from './cluster.ts';
import { HistoryRecorder, sanityCheck } from './history.ts';
import type { SanityReport } from './history.ts';
import { cleanupLeftovers, Partitioner, requireRoot, setupNetwork, teardownNetwork } from './net.ts';
import { SeededRandom } from './random.ts';
import { makeSchedule, NemesisRunner, parseNemesisSpec } from '../nemesis/index.ts';
import type { NemesisLogEntry, ScheduledFault } from '../nemesis/index.ts';
import type { NemesisContext } from '../nemesis/types.ts';
import { RegisterWorkload } from '../workloads/register.ts';
import { AppendWorkload } from '../workloads/append.ts';
import { NamespaceWorkload } from '../workloads/namespace.ts';
import type { ReadsFrom, Workload, WorkloadCheck, WorkloadOptions } from '../workloads/types.ts';
import { processBugNames } from '../../src/cli/planted-bugs.ts';
import { renderReport } from '../report/html.ts';
import { checkHistory } from '../report/verdict.ts';
import type { Verdict } from '../report/verdict.ts';

export const lockPath = '/run/rfs-jepsen.lock';
export const readyTimeoutMsDefault = 120_000;
export const opTimeoutMsDefault = 15_000;
export const staggerMsDefault = 50;
export const probeTimeoutMsDefault = 2_000;
export const workloads = ['register', 'append', 'namespace'] as const;

export interface RunOptions {
  readonly workload: (typeof workloads)[number];
  /** 'all', 'none' or a list (nemesis/index.ts). */
  readonly nemesis: string;
  readonly timeMs: number;
  readonly seed: number;
  readonly clients: number;
  readonly keys: number;
  readonly outDir: string;
  readonly opTimeoutMs?: number;
  readonly staggerMs?: number;
  readonly readyTimeoutMs?: number;
  readonly keepData?: boolean;
  readonly logLevel?: string;
  /** Aborting stops the run early (Ctrl-C); cleanup still runs. */
  readonly signal?: AbortSignal;
  /** Progress lines (default: none). */
  readonly print?: (line: string) => void;
  /** Planted bugs switched on in every server (src/cli/planted-bugs.ts: `--bug`); recorded in the report. */
  readonly bugs?: readonly string[];
  /** Where clients read (WorkloadOptions.readsFrom); default 'leader'. */
  readonly readsFrom?: ReadsFrom;
  /** Called for every nemesis log entry while its fault is in place (tests probe the network here). */
  readonly onNemesis?: (entry: NemesisLogEntry, context: NemesisContext) => Promise<void> | void;
}

export interface RunResult {
  readonly dir: string;
  readonly schedule: readonly ScheduledFault[];
  readonly sanity: SanityReport;
  readonly verdict: Verdict;
  readonly nemesis: readonly NemesisLogEntry[];
  readonly finalValues: Readonly<Record<string, unknown>>;
}

export class RunError extends Error {
  constructor(
    readonly code: 'LOCKED' | 'BAD_OPTION',
    message: string,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

/** One run at a time per machine: the namespaces and addresses are fixed. A dead holder's lock is taken over. */
function takeLock(): () => void {
  if (existsSync(lockPath)) {
    const pid = Number(readFileSync(lockPath, 'utf8').trim());
    let alive = false;
    try {
      if (pid > 0) process.kill(pid, 0);
      alive = pid > 0;
    } catch {
      alive = false;
    }
    if (alive) throw new RunError('LOCKED', `another Jepsen run holds ${lockPath} (pid ${pid}); one run at a time`);
    unlinkSync(lockPath);
  }
  const fd = openSync(lockPath, 'wx');
  writeFileSync(fd, `${process.pid}\n`);
  closeSync(fd);
  return () => {
    try {
      unlinkSync(lockPath);
    } catch {
      // gone
    }
  };
}

export async function runJepsen(options: RunOptions): Promise<RunResult> {
  requireRoot();
  const print = options.print ?? ((): void => {});
  const chosen = parseNemesisSpec(options.nemesis);
  if (chosen.some((n) => n.name === 'clock') && !ensureDebianPackages(['faketime', 'libfaketime'], () => existsSync(libfaketimePath), print)) {
    print(`libfaketime could not be installed (${libfaketimePath}): the clock nemesis will log an error for each fault`);
  }
  if (!workloads.includes(options.workload)) throw new RunError('BAD_OPTION', `unknown workload ${options.workload}: one of ${workloads.join(', ')}`);
  const bugs = options.bugs ?? [];
  for (const bug of bugs) if (!processBugNames.includes(bug)) throw new RunError('BAD_OPTION', `unknown planted bug ${bug}: one of ${processBugNames.join(', ')}`);
  const dir = options.outDir;
  mkdirSync(dir, { recursive: true });
  const dataDir = join(dir, 'data');
  const releaseLock = takeLock();
  const cluster = new Cluster({ dataDir, logDir: join(dir, 'logs'), bugs, ...(options.logLevel !== undefined ? { logLevel: options.logLevel } : {}) });
  const nodes = cluster.servers.map((s) => s.net);
  // Last resort if the process exits without reaching the finally below (uncaught error, process.exit).
  const onExit = (): void => cluster.killAllSync();
  process.on('exit', onExit);
  try {
    const removed = await cleanupLeftovers();
    if (removed.length > 0) print(`removed leftovers of an earlier run: ${removed.join(', ')}`);
    await setupNetwork(nodes);
    if (bugs.length > 0) print(`PLANTED BUGS ON in every server: ${bugs.join(', ')} (a violation is the expected verdict)`);
    print(`network: ${cluster.servers.map((s) => `${s.name}=${s.net.address}`).join(' ')}`);
    cluster.startAll();
    const t0 = Date.now();
    await cluster.waitReady(options.readyTimeoutMs ?? readyTimeoutMsDefault, { signal: options.signal });
    print(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (leader ${(await cluster.leader())?.name ?? '?'})`);

    const random = new SeededRandom(options.seed);
    const scheduleRandom = random.fork();
    const nemesisRandom = random.fork();
    const workloadRandom = random.fork();
    const schedule = makeSchedule(scheduleRandom, chosen, { runMs: options.timeMs });
    await writeFile(join(dir, 'schedule.json'), `${JSON.stringify({ seed: options.seed, nemesis: options.nemesis, timeMs: options.timeMs, bugs, faults: schedule }, null, 2)}\n`);
    print(`seed ${options.seed}; schedule (${schedule.length} faults):`);
    for (const f of schedule) print(`  at ${(f.atMs / 1000).toFixed(1)} s for ${(f.durationMs / 1000).toFixed(1)} s: ${f.nemesis} ${f.variant}`);

    const originNs = process.hrtime.bigint();
    const history = new HistoryRecorder(join(dir, 'history.jsonl'), originNs);
    const workloadOptions: WorkloadOptions = {
      metadataAddresses: cluster.metadataAddresses,
      clients: options.clients,
      keys: options.keys,
      opTimeoutMs: options.opTimeoutMs ?? opTimeoutMsDefault,
      staggerMs: options.staggerMs ?? staggerMsDefault,
      random: workloadRandom,
      history,
      readsFrom: options.readsFrom ?? 'leader',
    };
    const workload: Workload =
      options.workload === 'append' ? new AppendWorkload(workloadOptions) : options.workload === 'namespace' ? new NamespaceWorkload(workloadOptions) : new RegisterWorkload(workloadOptions);
    const partitioner = new Partitioner(new Map(cluster.servers.map((s) => [s.name, s.net])));
    const context: NemesisContext = { cluster, partitioner, random: nemesisRandom, probeTimeoutMs: probeTimeoutMsDefault };
    writeFileSync(join(dir, 'nemesis.jsonl'), '');
    const nemesisRunner = new NemesisRunner(context, join(dir, 'nemesis.jsonl'), originNs, async (entry) => {
      print(`nemesis ${entry.type} #${entry.id} ${entry.nemesis} ${entry.variant} ${(entry.targets ?? []).join(',')} ${entry.type === 'start' || entry.type === 'error' ? JSON.stringify(entry.detail ?? {}) : ''}`);
      await options.onNemesis?.(entry, context);
    });
    let finalValues: Record<string, unknown> = {};
    try {
      await workload.setup();
      print(`workload: ${options.clients} clients, ${options.keys} keys, ${options.timeMs / 1000} s`);
      // The workers stop once the time is up AND every scheduled fault has started and healed (on a loaded
      // machine a fault can start late; it still runs under load). Ctrl-C stops both at once.
      const stop = new AbortController();
      const stopNemesis = new AbortController();
      const onAbort = (): void => {
        stop.abort();
        stopNemesis.abort();
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.signal?.aborted === true) onAbort();
      let timer: NodeJS.Timeout | undefined;
      const timeUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, options.timeMs)));
      const startMs = Date.now();
      const nemesisDone = nemesisRunner.run(schedule, startMs, stopNemesis.signal);
      const stopWorkers = (): void => stop.abort();
      void Promise.all([timeUp, nemesisDone]).then(stopWorkers, stopWorkers);
      const progress = setInterval(() => {
        const done = history.events.length;
        print(`  ${((Date.now() - startMs) / 1000).toFixed(0)} s: ${done} events`);
      }, 10_000);
      try {
        await Promise.all([workload.run(stop.signal), nemesisDone]);
      } finally {
        clearTimeout(timer);
        clearInterval(progress);
        options.signal?.removeEventListener('abort', onAbort);
      }
      await healEverything(cluster, partitioner, nemesisRunner);
      if (options.signal?.aborted !== true) {
        print('healed; waiting for the cluster');
        try {
          await cluster.waitReady(options.readyTimeoutMs ?? readyTimeoutMsDefault);
        } catch (e) {
          print(`cluster not ready after healing (${(e as Error).message}); final reads anyway`);
        }
        const values = await workload.finalReads();
        finalValues = Object.fromEntries(values);
        print(`final reads: ${JSON.stringify(finalValues)}`);
      }
    } finally {
      workload.close();
      await history.close();
    }

    const sanity = sanityCheck(history.events);
    await writeFile(join(dir, 'sanity.txt'), `${sanity.ok ? 'well-formed' : 'MALFORMED'}\n${JSON.stringify(sanity.counts)}\n${sanity.problems.join('\n')}\n`);
    print(`history: ${JSON.stringify(sanity.counts)}; ${sanity.ok ? 'well-formed' : `MALFORMED: ${sanity.problems.slice(0, 5).join('; ')}`}`);
    await cluster.stopAll();
    const verdict =
      workload.check !== undefined ? ownVerdict(workload.check(history.events)) : await checkHistory(join(dir, 'history.jsonl'), print, options.workload === 'namespace' ? 'namespace' : 'cas-register');
    // The planted bugs head the file; the last line stays the verdict.
    const bugsLine = `planted bugs: ${bugs.length > 0 ? bugs.join(', ') : 'none'}\n`;
    await writeFile(join(dir, 'verdict.txt'), `${bugsLine}${verdict.output.trimEnd()}\n${verdict.line}\n`);
    const counts = sanity.counts;
    const faults = nemesisRunner.entries.filter((e) => e.type === 'start').length;
    await writeFile(
      join(dir, 'index.html'),
      renderReport({
        title: `rfs Jepsen: ${options.workload}, nemesis ${options.nemesis}${bugs.length > 0 ? `, PLANTED BUGS ${bugs.join(', ')}` : ''}`,
        summary: {
          workload: options.workload,
          nemesis: options.nemesis,
          seed: options.seed,
          'planted bugs': bugs.length > 0 ? bugs.join(', ') : 'none',
          'reads from': options.readsFrom ?? 'leader',
          'time (s)': options.timeMs / 1000,
          clients: options.clients,
          keys: options.keys,
          operations: counts['invoke'] ?? 0,
          ok: counts['ok'] ?? 0,
          fail: counts['fail'] ?? 0,
          info: counts['info'] ?? 0,
          'faults applied': faults,
          'history well-formed': sanity.ok ? 'yes' : `no: ${sanity.problems.slice(0, 3).join('; ')}`,
          'final values': JSON.stringify(finalValues),
        },
        history: history.events,
        nemesis: nemesisRunner.entries,
        verdict: verdict.line,
      }),
    );
    await writeFile(join(dir, 'run.json'), `${JSON.stringify({ options: { ...options, signal: undefined, print: undefined, onNemesis: undefined }, bugs, counts, faults, verdict: verdict.line, finalValues }, null, 2)}\n`);
    return { dir, schedule, sanity, verdict, nemesis: nemesisRunner.entries, finalValues };
  } finally {
    await cluster.stopAll();
    await teardownNetwork(nodes);
    process.off('exit', onExit);
    if (options.keepData !== true) rmSync(dataDir, { recursive: true, force: true });
    releaseLock();
  }
}

function ownVerdict(check: WorkloadCheck): Verdict {
  return { kind: check.valid ? 'valid' : 'invalid', line: check.valid ? 'valid' : 'invalid', output: check.output, exitCode: null };
}

/** The active fault's own heal, then a sweep for anything left: routes, paused, stopped and skewed servers. */
async function healEverything(cluster: Cluster, partitioner: Partitioner, runner: NemesisRunner): Promise<void> {
  await runner.healActive();
  await partitioner.healAll();
  for (const s of cluster.servers) {
    cluster.resume(s.name);
    if (cluster.skewOf(s.name) !== 0) await cluster.kill(s.name);
    if (!cluster.isRunning(s.name)) cluster.start(s.name);
  }
}
