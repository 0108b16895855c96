/**
 * Stall watches: a peer that keeps its connection open and sends nothing (a paused or hung chunkserver, a
 * disk that stopped answering, a blackholed link) is otherwise indistinguishable from a slow one, and TCP
 * does not notice it (a stopped process's kernel still acknowledges; a blackholed link retries for many
 * minutes). So each side that waits for a peer arms a timer while the peer owes it something and gives up
 * when nothing arrives for long enough:
 * - a range read (read.ts): the reader, while the read is unfinished;
 * - a write pipeline (writer.ts, server.ts): the writer and every hop with replicas after it, while a
 *   packet or the seal it forwarded is unacknowledged (or the setup is). The timeout grows with the replicas
 *   after the watcher (`ms` times their count: the writer of a 3-replica chain waits 3 × ms, the first hop
 *   2 × ms, the second ms), so the hop nearest a silent replica gives up first and names it; a hop further
 *   up would name its own downstream neighbour, which may be healthy.
 * - an idle write pipeline (nothing unacknowledged): the writer sends a keepalive every
 *   pipelineKeepaliveMs (`KeepaliveTimer`) and each hop that owes its upstream nothing ends the pipeline
 *   after pipelineIdleMs without a message from it, so a writer that stopped without closing (a paused
 *   process keeps its TCP connections open) does not hold the chain's connections and buffers for ever.
 * Timers are injected: the real client and chunkserver pass real ones, the simulator's data plane (which
 * delivers or breaks every exchange) passes none, and nothing here then sets a timer.
 */
/**
 * A range read (or a local read's question) with no data for this long fails with TIMEOUT and the reader
 * moves on to the next replica. Generous: a busy chunkserver on a loaded machine starts a range within
 * milliseconds to a few seconds (HDFS's client socket timeout is 60 s).
 */
export const readStallMsDefault = 15_000;
/**
 * The unit of a write pipeline's watches: the chain's last hop waits this long for its downstream, the one
 * before it twice as long, the writer of a 3-replica chain three times (30 s). Generous for an fsync on a busy
 * disk (the seal's acknowledgement waits for every replica's), short next to the minutes a silent replica
 * held a writer before.
 */
export const pipelineStallMsDefault = 10_000;

/**
 * An idle pipeline's writer sends a keepalive this often (HDFS's client heartbeats its pipeline at half its
 * 60 s socket timeout). Must stay well below the hops' pipelineIdleMsDefault.
 */
export const pipelineKeepaliveMsDefault = 30_000;
/**
 * A hop that owes its upstream nothing and hears nothing from it for this long ends the pipeline
 * (TIMEOUT): four keepalive intervals, so a live but idle writer is never cut off.
 */
export const pipelineIdleMsDefault = 4 * pipelineKeepaliveMsDefault;

export interface StallWatch {
  /** The unit timeout (ms): how long a watcher with one replica after it waits for a sign of life. */
  readonly ms: number;
  /** Starts a timer; the returned function cancels it. */
  readonly setTimeout: (fn: () => void, ms: number) => () => void;
}

/** One watcher's timer: armed while something is owed, re-armed by every sign of life, fired at most once. */
export class StallTimer {
  private cancel: (() => void) | null = null;
  private fired = false;

  /** `units`: the multiple of `watch.ms` to wait (see above); no watch, no timer. */
  constructor(
    private readonly watch: StallWatch | undefined,
    private readonly units: number,
    private readonly onStall: (waitedMs: number) => void,
  ) {}

  get timeoutMs(): number {
    return (this.watch?.ms ?? 0) * this.units;
  }

  /** Something is owed: starts the timer unless it runs already. */
  arm(): void {
    if (this.watch === undefined || this.cancel !== null || this.fired) return;
    const ms = this.timeoutMs;
    this.cancel = this.watch.setTimeout(() => {
      this.cancel = null;
      this.fired = true;
      this.onStall(ms);
    }, ms);
  }

  /** A sign of life: the wait starts again if `stillOwed`, else the timer stops. */
  progress(stillOwed: boolean): void {
    this.disarm();
    if (stillOwed) this.arm();
  }

  disarm(): void {
    this.cancel?.();
    this.cancel = null;
  }
}

/** A watch on real, unref'ed timers (they never keep a process alive). */
export function realStallWatch(ms: number): StallWatch {
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new RangeError(`a stall timeout must be a positive integer of ms, not ${ms}`);
  return {
    ms,
    setTimeout(fn, after) {
      const timer = setTimeout(fn, after);
      timer.unref();
      return () => clearTimeout(timer);
    },
  };
}

/** While idle, calls `tick` every `watch.ms` (a writer's keepalives); no watch, no timer. */
export class KeepaliveTimer {
  private cancel: (() => void) | null = null;
  private idle = false;

  constructor(
    private readonly watch: StallWatch | undefined,
    private readonly tick: () => void,
  ) {}

  /** Idle now (starts the ticks unless they run) or busy (stops them). */
  set(idle: boolean): void {
    this.idle = idle;
    if (!idle) {
      this.cancel?.();
      this.cancel = null;
    } else if (this.cancel === null) this.schedule();
  }

  private schedule(): void {
    const watch = this.watch;
    if (watch === undefined) return;
    this.cancel = watch.setTimeout(() => {
      this.cancel = null;
      if (!this.idle) return;
      this.tick();
      if (this.idle && this.cancel === null) this.schedule();
    }, watch.ms);
  }
}
