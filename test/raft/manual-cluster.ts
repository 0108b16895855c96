/**
 * Three RaftNodes in one process on a ManualClock, over an in-memory transport that delivers on the next
 * turn of the event loop and drops every message from or to a node in `cut` (a node cut off). Started, not
 * yet led: the caller campaigns. Shared by the driver tests that step time by hand.
 */
import { RaftNode } from '../../src/raft/node.ts';
import type { RaftNodeOptions } from '../../src/raft/node.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';
import type { Entry, Message, NodeId, Snapshot } from '../../src/raft/types.ts';
import { MemoryDisk, MemoryLogStore } from '../../src/storage/memory-log-store.ts';
import { ManualClock } from '../manual-clock.ts';
import { seededRandom } from './harness.ts';

/** A state machine that keeps nothing: for driver tests about roles, reads and timing, not state. */
export class NullMachine implements StateMachine {
  apply(_entry: Entry): unknown {
    return undefined;
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0);
  }
  restore(_snapshot: Snapshot): void {}
}

export interface ManualCluster {
  readonly clock: ManualClock;
  readonly nodes: Map<NodeId, RaftNode>;
  /** Nodes whose messages (either way) are dropped. */
  readonly cut: Set<NodeId>;
}

export async function startManualCluster(options: {
  readonly tickMs: number;
  /** Node `id`'s random source is seededRandom(id * seedFactor). */
  readonly seedFactor: number;
  readonly stateMachine: () => StateMachine;
  /** More options per node (e.g. callbacks). */
  readonly extra?: (id: NodeId) => Partial<RaftNodeOptions>;
}): Promise<ManualCluster> {
  const clock = new ManualClock(1_000);
  const nodes = new Map<NodeId, RaftNode>();
  const cut = new Set<NodeId>();
  const transport = {
    send(m: Message): void {
      if (cut.has(m.from) || cut.has(m.to)) return;
      setImmediate(() => nodes.get(m.to)?.receive(m));
    },
  };
  for (const id of [1, 2, 3]) {
    nodes.set(
      id,
      new RaftNode({
        config: { id, random: seededRandom(id * options.seedFactor) },
        logStore: new MemoryLogStore(new MemoryDisk()),
        transport,
        clock,
        stateMachine: options.stateMachine(),
        tickMs: options.tickMs,
        initialVoters: [1, 2, 3],
        ...options.extra?.(id),
      }),
    );
  }
  for (const n of nodes.values()) await n.start();
  return { clock, nodes, cut };
}
