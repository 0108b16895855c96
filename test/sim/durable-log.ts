/**
 * What one node's disk holds for sure: a mirror of every LogStore write that completed (synced), kept by
 * wrapping the node's LogStore. It survives the node's crashes (it is keyed by node id, like the disk) and
 * is rebuilt from `load()` on each restart.
 *
 * The mirror keeps only terms, not entries: the checks need "which term is durable at index i".
 * Invariant: terms[k] is the term of the entry at index offset + 1 + k; entries are contiguous.
 */
import type { LoadedLog, LogStore, LogWrite } from '../../src/storage/log-store.ts';
import type { Entry, HardState, SnapshotMetadata } from '../../src/raft/types.ts';
import { emptyHardState } from '../../src/raft/types.ts';

export class DurableLogMirror {
  hardState: HardState = emptyHardState;
  snapshotIndex = 0;
  snapshotTerm = 0;
  private offset = 0;
  private terms: number[] = [];

  get lastIndex(): number {
    return Math.max(this.offset + this.terms.length, this.snapshotIndex);
  }

  /** The durable term at `index`, or null when this disk holds no entry (or snapshot) there. */
  termAt(index: number): number | null {
    if (index === this.snapshotIndex && index > 0) return this.snapshotTerm;
    if (index > this.offset && index <= this.offset + this.terms.length) return this.terms[index - this.offset - 1] ?? null;
    return null;
  }

  /** Whether the entry (index, term) is on this disk, in the log or inside a snapshot that covers it. */
  holds(index: number, term: number): boolean {
    return index <= this.snapshotIndex || this.termAt(index) === term;
  }

  reset(loaded: LoadedLog): void {
    this.hardState = loaded.hardState;
    this.snapshotIndex = loaded.snapshot?.metadata.index ?? 0;
    this.snapshotTerm = loaded.snapshot?.metadata.term ?? 0;
    const first = loaded.entries[0];
    this.offset = first !== undefined ? first.index - 1 : this.snapshotIndex;
    this.terms = loaded.entries.map((e) => e.term);
  }

  applySnapshot(metadata: SnapshotMetadata): void {
    if (this.termAt(metadata.index) === metadata.term && metadata.index <= this.offset + this.terms.length) {
      // The log holds the snapshot's last entry: keep the suffix after it.
      const keep = Math.max(0, metadata.index - this.offset);
      this.terms = this.terms.slice(keep);
    } else {
      this.terms = [];
    }
    this.offset = metadata.index;
    this.snapshotIndex = metadata.index;
    this.snapshotTerm = metadata.term;
  }

  /**
   * Appends entries, truncating any conflicting suffix first, and reports each appended entry with the
   * durable term just before it (null when unknown: below the compaction point, or after a gap).
   */
  appendEntries(entries: readonly Entry[], onAppend: (entry: Entry, prevTerm: number | null) => void): void {
    for (const entry of entries) {
      if (entry.index <= this.offset) {
        // At or below the compaction point: the snapshot already holds it; nothing to store.
        onAppend(entry, null);
        continue;
      }
      const keep = entry.index - 1 - this.offset;
      if (keep > this.terms.length) {
        // A gap (a store contract violation): forget what came before rather than misalign terms.
        this.terms = [];
        this.offset = entry.index - 1;
      } else if (keep < this.terms.length) {
        this.terms.length = keep;
      }
      onAppend(entry, this.termAt(entry.index - 1));
      this.terms.push(entry.term);
    }
  }

  compact(index: number): void {
    if (index <= this.offset) return;
    const drop = Math.min(index - this.offset, this.terms.length);
    this.terms = this.terms.slice(drop);
    this.offset = index;
  }
}

/** Told about every write that reached the disk for sure, and about every load. */
export interface DurableLogObserver {
  onLoad(loaded: LoadedLog): void;
  onSave(write: LogWrite): void;
  onCompact(index: number): void;
}

/**
 * A LogStore wrapper that reports each completed (synced) operation to an observer. It runs the observer
 * before resolving, so the observation precedes whatever the node does next (e.g. acknowledge the write).
 */
export class ObservedLogStore implements LogStore {
  constructor(
    private readonly inner: LogStore,
    private readonly observer: DurableLogObserver,
  ) {}

  async load(): Promise<LoadedLog> {
    const loaded = await this.inner.load();
    this.observer.onLoad(loaded);
    return loaded;
  }

  async save(write: LogWrite): Promise<void> {
    await this.inner.save(write);
    this.observer.onSave(write);
  }

  async compact(index: number): Promise<void> {
    await this.inner.compact(index);
    this.observer.onCompact(index);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
