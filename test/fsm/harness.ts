/** A metadata state machine over a MemoryKv, fed one command per Raft entry, for the fsm tests. */
import { MetadataStateMachine } from '../../src/fsm/state-machine.ts';
import type { ApplyResult } from '../../src/fsm/state-machine.ts';
import { MemoryKv } from '../../src/fsm/kv.ts';
import type { Kv } from '../../src/fsm/kv.ts';
import { encodeCommand } from '../../src/fsm/commands.ts';
import type { Command, Op, SessionStamp } from '../../src/fsm/commands.ts';
import type { FsErrorCode, FsResult } from '../../src/fsm/errors.ts';
import type { FsmLimits } from '../../src/fsm/limits.ts';
import { checkNamespaceInvariants } from '../../src/fsm/invariants.ts';
import type { Entry } from '../../src/raft/types.ts';
import { EntryType } from '../../src/raft/types.ts';
import type { Test } from 'tap';

export interface RunOptions {
  readonly nowMs?: number;
  readonly session?: SessionStamp;
}

export class Harness {
  /** Index of the next entry. */
  index = 1;
  /** Stamped time of the next command unless given. */
  nowMs = 1_000_000;

  private constructor(
    readonly kv: Kv,
    public sm: MetadataStateMachine,
    readonly limits: Partial<FsmLimits>,
  ) {}

  static async open(limits: Partial<FsmLimits> = {}, kv: Kv = new MemoryKv()): Promise<Harness> {
    const sm = await MetadataStateMachine.open(kv, { limits });
    const h = new Harness(kv, sm, limits);
    h.index = sm.appliedIndex() + 1;
    return h;
  }

  /** Re-opens the state machine over the same store (a restart). */
  async reopen(): Promise<void> {
    this.sm = await MetadataStateMachine.open(this.kv, { limits: this.limits });
    this.index = this.sm.appliedIndex() + 1;
  }

  entry(command: Command): Entry {
    return { term: 1, index: this.index++, type: EntryType.Normal, data: encodeCommand(command) };
  }

  command(op: Op, options: RunOptions = {}): Command {
    const nowMs = options.nowMs ?? this.nowMs;
    return options.session === undefined ? { nowMs, op } : { nowMs, op, session: options.session };
  }

  async run(op: Op, options: RunOptions = {}): Promise<FsResult> {
    const [result] = await this.sm.applyBatch([this.entry(this.command(op, options))]);
    return result!;
  }

  async runBatch(ops: readonly (Op | Command)[]): Promise<ApplyResult[]> {
    return this.sm.applyBatch(ops.map((o) => this.entry('op' in o ? o : this.command(o))));
  }

  /** Runs and returns the success value; throws (failing the test) on an error result. */
  async ok<T = Record<string, unknown>>(op: Op, options: RunOptions = {}): Promise<T> {
    const r = await this.run(op, options);
    if (!r.ok) throw new Error(`${op.type} failed: ${r.code} ${r.message}`);
    return r.value as T;
  }

  /** Runs and returns the error code; throws if the command succeeded. */
  async code(op: Op, options: RunOptions = {}): Promise<FsErrorCode> {
    const r = await this.run(op, options);
    if (r.ok) throw new Error(`${op.type} succeeded: ${JSON.stringify(r.value)}`);
    return r.code;
  }

  async stat(path: string) {
    const r = await this.sm.stat(path);
    if (!r.ok) throw new Error(`stat ${path}: ${r.code}`);
    return r.value;
  }

  async names(path: string): Promise<string[]> {
    const r = await this.sm.readdir(path);
    if (!r.ok) throw new Error(`readdir ${path}: ${r.code}`);
    return r.value.entries.map((e) => e.name);
  }

  async exists(path: string): Promise<boolean> {
    const r = await this.sm.stat(path);
    if (!r.ok && r.code !== 'ENOENT' && r.code !== 'ENOTDIR') throw new Error(`stat ${path}: ${r.code}`);
    return r.ok;
  }

  invariants(): Promise<string[]> {
    return checkNamespaceInvariants(this.kv, this.sm.limits);
  }

  /** Registers `n` chunkservers, returns their ids. */
  async chunkservers(n: number): Promise<number[]> {
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      const { id } = await this.ok<{ id: number }>({
        type: 'registerChunkserver',
        address: `10.0.0.${i + 1}:7000`,
        rack: `rack${i % 3}`,
        capacityBytes: 1e12,
        usedBytes: 0,
      });
      ids.push(id);
    }
    return ids;
  }
}

/** A tap subtest with a fresh harness; the stored state's invariants are checked when the body is done. */
export function fsmTest(
  parent: Test,
  name: string,
  body: (t: Test, h: Harness) => Promise<void>,
  limits: Partial<FsmLimits> = {},
): void {
  void parent.test(name, async (t) => {
    const h = await Harness.open(limits);
    await body(t, h);
    t.same(await h.invariants(), [], 'invariants hold at the end');
  });
}
