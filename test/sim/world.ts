/**
 * The simulated world: one virtual clock, one event queue, one trace hash. Everything that happens in a run
 * (a timer firing, a message arriving, an fsync completing, a client request, a fault) is an event here.
 *
 * Invariants:
 * - Virtual time never goes backwards: an event is never scheduled before `nowMs`.
 * - Events run one at a time, in (time, seq) order; the caller drains microtasks between events, so all
 *   Promise continuations an event causes run before the next event (no macrotask source but this loop).
 * - Every event that runs is folded into the trace hash; two runs with equal hashes ran the same events at
 *   the same virtual times.
 */
import { EventQueue, type QueuedEvent } from './event-queue.ts';
import { Hasher } from './hash.ts';
import type { NodeId } from '../../src/raft/types.ts';

export type EventKind = 'timer' | 'deliver' | 'sync' | 'client' | 'fault' | 'control';

const eventKindCode: Readonly<Record<EventKind, number>> = {
  timer: 1,
  deliver: 2,
  sync: 3,
  client: 4,
  fault: 5,
  control: 6,
};

/** An event for whichever incarnation of the node is current when it runs (a message to an address). */
export const ANY_EPOCH = -1;
/** Not addressed to any node (faults, workload control, checks). */
export const NO_NODE: NodeId = 0;

export interface EventSpec {
  readonly kind: EventKind;
  readonly nodeId: NodeId;
  /** The node incarnation that owns the event (timers, fsyncs), or ANY_EPOCH. */
  readonly epoch: number;
  /** A small fingerprint of the event's content for the trace hash (e.g. a message summary). */
  readonly traceKey?: number;
  /** A one-line description, built only when tracing. */
  readonly describe?: () => string;
  readonly run: () => void;
  /** Called instead of `run` when the event is dropped (e.g. a client request to a crashed node). */
  readonly onDrop?: () => void;
}

/** A queued event. A class with a fixed shape: events are the hottest allocation of the simulator. */
export class SimEvent implements QueuedEvent {
  readonly kind: EventKind;
  readonly nodeId: NodeId;
  readonly epoch: number;
  readonly traceKey: number;
  readonly describe: (() => string) | undefined;
  readonly run: () => void;
  readonly onDrop: (() => void) | undefined;

  constructor(
    readonly timeMs: number,
    readonly seq: number,
    spec: EventSpec | SimEvent,
  ) {
    this.kind = spec.kind;
    this.nodeId = spec.nodeId;
    this.epoch = spec.epoch;
    this.traceKey = spec.traceKey ?? 0;
    this.describe = spec.describe;
    this.run = spec.run;
    this.onDrop = spec.onDrop;
  }
}

/** What to do with an event addressed to a node: run it, drop it, or hold it until the node resumes. */
export type Gate = 'run' | 'drop' | 'defer';

export interface WorldHooks {
  gate(event: SimEvent): Gate;
  defer(event: SimEvent): void;
  /** An exception escaped an event's action: the code under test crashed. */
  onEventError(event: SimEvent, error: unknown): void;
}

export class World {
  nowMs = 0;
  eventsRun = 0;
  eventsDropped = 0;
  /** Whether the last step() ran its event (rather than dropping or deferring it). */
  lastEventRan = false;
  private seq = 0;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly trace = new Hasher();
  /** Receives one line per event run when tracing is on. */
  traceSink: ((line: string) => void) | null = null;

  constructor(private readonly hooks: WorldHooks) {}

  get pendingEvents(): number {
    return this.queue.size;
  }

  schedule(delayMs: number, spec: EventSpec): void {
    if (!(delayMs >= 0) || !Number.isFinite(delayMs)) throw new RangeError(`bad event delay ${delayMs}ms`);
    this.queue.push(new SimEvent(this.nowMs + delayMs, this.seq++, spec));
  }

  /** Re-queues held events at the current time, keeping their relative order. */
  requeue(events: readonly SimEvent[]): void {
    for (const event of events) this.queue.push(new SimEvent(this.nowMs, this.seq++, event));
  }

  /** Time of the next event, or null when none is left. */
  nextEventTimeMs(): number | null {
    return this.queue.peek()?.timeMs ?? null;
  }

  /** Pops and runs (or drops, or defers) the next event. Returns it, or null when the queue is empty. */
  step(): SimEvent | null {
    const event = this.queue.pop();
    if (event === undefined) return null;
    this.nowMs = event.timeMs;
    this.lastEventRan = false;
    const gate = event.nodeId === NO_NODE ? 'run' : this.hooks.gate(event);
    if (gate === 'defer') {
      this.hooks.defer(event);
      return event;
    }
    if (gate === 'drop') {
      this.eventsDropped++;
      event.onDrop?.();
      return event;
    }
    this.eventsRun++;
    this.lastEventRan = true;
    this.trace
      .number(event.timeMs)
      .word(eventKindCode[event.kind])
      .word(event.nodeId)
      .word(event.traceKey);
    if (this.traceSink !== null && event.describe !== undefined) {
      this.traceSink(`${formatTime(event.timeMs)} ${event.describe()}`);
    }
    try {
      event.run();
    } catch (error) {
      this.hooks.onEventError(event, error);
    }
    return event;
  }

  traceHash(): string {
    return this.trace.hex();
  }
}

/** Virtual time as seconds with microsecond precision, fixed width: "   12.345678s". */
export function formatTime(timeMs: number): string {
  return `${(timeMs / 1000).toFixed(6).padStart(11)}s`;
}

/** Lets every pending Promise continuation run. The simulator is the only macrotask source, so this is exact. */
export function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
