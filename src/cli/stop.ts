/**
 * How a server process stops: on SIGTERM / SIGINT, when stdin ends (`--stop-on-stdin-end`, the local
 * cluster's children: a parent that dies, even by SIGKILL, closes the pipe, so no server is orphaned), or
 * after a fatal error. A graceful stop waits for in-flight work (store writes, a copy, a /metrics scrape); a
 * hung disk or peer would otherwise keep a server that was asked to stop, or that hit a fatal error, up for
 * good, holding its ports. So every stop has a deadline, and a second signal exits at once.
 */
import type { Logger } from 'pino';

/** A stop that has not finished after this long ends the process anyway (exit code 1, or the fatal code). */
export const stopDeadlineMs = 15_000;

/** The process edges the stop logic uses (real ones by default; tests pass fakes). */
export interface StopEdges {
  exit(code: number): void;
  /** A timer that must not keep the process alive. */
  setTimer(fn: () => void, ms: number): void;
  onSignal(signal: 'SIGTERM' | 'SIGINT', fn: () => void): void;
  /** Calls `fn` when stdin ends or fails. */
  onStdinEnd(fn: () => void): void;
}

export const processEdges: StopEdges = {
  exit: (code) => process.exit(code),
  setTimer: (fn, ms) => void setTimeout(fn, ms).unref(),
  onSignal: (signal, fn) => void process.on(signal, fn),
  onStdinEnd: (fn) => {
    process.stdin.on('end', fn);
    process.stdin.on('error', fn);
    process.stdin.resume();
  },
};

export interface StopOptions {
  readonly stdinEnd: boolean;
  readonly deadlineMs?: number;
  readonly edges?: StopEdges;
}

/** Stops the server on a signal (or stdin's end): exit 0 once stopped, 1 if the stop failed or overran. */
export function stopOnSignals(logger: Logger, stopServer: () => Promise<void>, options: StopOptions): void {
  const edges = options.edges ?? processEdges;
  const deadlineMs = options.deadlineMs ?? stopDeadlineMs;
  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) {
      if (reason !== 'stdin closed') {
        logger.warn({ signal: reason }, 'second signal while stopping: exiting now');
        edges.exit(1);
      }
      return;
    }
    stopping = true;
    logger.info({ signal: reason }, 'stopping');
    exitAtDeadline(logger, edges, deadlineMs, 1);
    stopServer().then(
      () => edges.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, 'stop failed');
        edges.exit(1);
      },
    );
  };
  edges.onSignal('SIGTERM', () => stop('SIGTERM'));
  edges.onSignal('SIGINT', () => stop('SIGINT'));
  if (options.stdinEnd) edges.onStdinEnd(() => stop('stdin closed'));
}

/** After a fatal error: stops the server and exits with `code`, after the deadline at the latest. */
export function exitAfterStop(logger: Logger, stopServer: () => Promise<void>, code: number, options: { deadlineMs?: number; edges?: StopEdges } = {}): void {
  const edges = options.edges ?? processEdges;
  const deadlineMs = options.deadlineMs ?? stopDeadlineMs;
  process.exitCode = code;
  exitAtDeadline(logger, edges, deadlineMs, code);
  void stopServer().finally(() => edges.exit(code));
}

/** Exits with `code` after `deadlineMs`, unless the process has exited before. */
function exitAtDeadline(logger: Logger, edges: StopEdges, deadlineMs: number, code: number): void {
  edges.setTimer(() => {
    logger.error({ deadlineMs }, 'stop did not finish in time: exiting');
    edges.exit(code);
  }, deadlineMs);
}
