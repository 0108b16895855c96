/**
 * Chunkservers simulated in a test process, as the metadata leader sees them over gRPC: they register,
 * heartbeat, report what they hold (changes at once, everything every 10th heartbeat) and carry out the
 * commands of every reply (copy, delete). Shared by the metadata tests that need live chunkservers without
 * a data plane.
 */
import { MetadataError } from '../../src/metadata/client.ts';
import type { MetadataClient } from '../../src/metadata/client.ts';
import type { WireReply } from '../../src/metadata/proto.ts';
import { waitFor } from './harness.ts';

interface WireCommand {
  kind: string;
  handle: string;
  version: string;
  target?: string;
}

export interface Event {
  readonly event: 'delete' | 'copy';
  readonly server: number;
  readonly handle: number;
  readonly version: number;
}

/**
 * Chunkservers as the leader sees them: each holds handle → version, reports changes at once and everything
 * every 10th heartbeat, and carries out the commands of every reply. All calls go through one queue, so a
 * full report never races an incremental one.
 */
export class FakeChunkservers {
  readonly held = new Map<number, Map<number, number>>();
  readonly events: Event[] = [];
  private beats = 0;
  private queue: Promise<unknown> = Promise.resolve();

  /**
   * Sealed lengths the test told the fleet about: a replica reports its length, and the leader lists a copy
   * only once it holds the whole chunk.
   */
  readonly lengths = new Map<number, number>();

  constructor(private readonly client: MetadataClient) {}

  async register(racks: readonly string[]): Promise<number[]> {
    const ids: number[] = [];
    for (const [i, rack] of racks.entries()) {
      const r = await this.client.call('RegisterChunkserver', { address: `10.0.1.${i + 1}:7000`, rack, capacityBytes: 1e12, usedBytes: 0 });
      const id = Number(r['id']);
      ids.push(id);
      this.held.set(id, new Map());
    }
    return ids;
  }

  /**
   * Beats until the leader's chunk manager knows every registered server: until its next pass loads the
   * registrations, a heartbeat is ENOENT (a real chunkserver retries).
   */
  async whenKnown(): Promise<void> {
    await waitFor('the chunk manager to know every chunkserver', async () => {
      try {
        await this.beatAll();
        return true;
      } catch (e) {
        if (e instanceof MetadataError && e.code === 'ENOENT') return undefined;
        throw e;
      }
    });
  }

  /** The writer's pipeline stored the chunk at `version` on `id`. */
  write(id: number, handle: number, version: number): Promise<void> {
    return this.serial(async () => {
      this.held.get(id)!.set(handle, version);
      await this.report(id, { chunks: [{ handle, version, lengthBytes: 0 }] });
    });
  }

  beatAll(): Promise<void> {
    return this.serial(async () => {
      this.beats++;
      for (const id of this.held.keys()) {
        const reply = await this.client.call('Heartbeat', { id, capacityBytes: 1e12, usedBytes: 0 });
        if (reply['fullReportWanted'] === true || this.beats % 10 === 0) {
          const chunks = [...this.held.get(id)!].map(([handle, version]) => ({ handle, version, lengthBytes: this.lengths.get(handle) ?? 0 }));
          await this.report(id, { full: true, chunks });
        }
        await this.obey(id, reply);
      }
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private async report(id: number, r: { full?: boolean; chunks?: unknown[]; removed?: number[] }): Promise<void> {
    const reply = await this.client.call('ChunkReport', { id, full: r.full ?? false, chunks: r.chunks ?? [], removed: r.removed ?? [] });
    await this.obey(id, reply);
  }

  private async obey(id: number, reply: WireReply): Promise<void> {
    for (const c of (reply['commands'] ?? []) as WireCommand[]) {
      const handle = Number(c.handle);
      const version = Number(c.version);
      const mine = this.held.get(id)!;
      const have = mine.get(handle);
      if (c.kind === 'delete' && have !== undefined && have <= version) {
        mine.delete(handle);
        this.events.push({ event: 'delete', server: id, handle, version: have });
        await this.report(id, { removed: [handle] });
      } else if (c.kind === 'replicate' && have === version) {
        const target = Number(c.target);
        this.held.get(target)?.set(handle, version);
        this.events.push({ event: 'copy', server: target, handle, version });
        await this.report(target, { chunks: [{ handle, version, lengthBytes: this.lengths.get(handle) ?? 0 }] });
      }
    }
  }
}

