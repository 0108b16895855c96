/**
 * The workload's replicated state machine: a tiny key-value map. Commands are `key=value` in UTF-8; every
 * value a client writes is unique, so an applied entry identifies the proposal it came from.
 *
 * The state machine reports every apply and restore to an observer (the invariant checker) before it
 * changes state, and tracks `lastIndex`: the index of the last entry it applied or snapshot it restored.
 */
import type { Snapshot, Entry, SnapshotMetadata, NodeId } from '../../src/raft/types.ts';
import type { StateMachine } from '../../src/raft/node-api.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface KvCommand {
  readonly key: string;
  readonly value: string;
}

export function encodeCommand(command: KvCommand): Uint8Array {
  return encoder.encode(`${command.key}=${command.value}`);
}

/** Decodes a command; null for bytes that are not one (a corrupted or foreign entry). */
export function decodeCommand(data: Uint8Array): KvCommand | null {
  const text = decoder.decode(data);
  const eq = text.indexOf('=');
  if (eq <= 0) return null;
  return { key: text.slice(0, eq), value: text.slice(eq + 1) };
}

export interface KvObserver {
  onApply(nodeId: NodeId, entry: Entry, lastIndexBefore: number): void;
  onRestore(nodeId: NodeId, metadata: SnapshotMetadata, state: ReadonlyMap<string, string>): void;
}

interface KvSnapshotData {
  readonly lastIndex: number;
  readonly pairs: readonly (readonly [string, string])[];
}

export class KvStateMachine implements StateMachine {
  private values = new Map<string, string>();
  private lastAppliedIndex = 0;

  constructor(
    readonly nodeId: NodeId,
    private readonly observer: KvObserver,
  ) {}

  /** Index of the last entry applied or snapshot restored (0 for none). */
  get lastIndex(): number {
    return this.lastAppliedIndex;
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  /** Every key and value, sorted by key. */
  entries(): [string, string][] {
    return [...this.values.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  apply(entry: Entry): unknown {
    this.observer.onApply(this.nodeId, entry, this.lastAppliedIndex);
    this.lastAppliedIndex = entry.index;
    const command = decodeCommand(entry.data);
    if (command === null) return undefined;
    const previous = this.values.get(command.key);
    this.values.set(command.key, command.value);
    return previous;
  }

  snapshot(): Uint8Array {
    const data: KvSnapshotData = { lastIndex: this.lastAppliedIndex, pairs: this.entries() };
    return encoder.encode(JSON.stringify(data));
  }

  restore(snapshot: Snapshot): void {
    // An empty snapshot is the state before any entry: nothing applied yet.
    const data: KvSnapshotData =
      snapshot.data.length === 0 ? { lastIndex: 0, pairs: [] } : (JSON.parse(decoder.decode(snapshot.data)) as KvSnapshotData);
    this.values = new Map(data.pairs);
    this.lastAppliedIndex = snapshot.metadata.index;
    this.observer.onRestore(this.nodeId, snapshot.metadata, this.values);
  }
}
