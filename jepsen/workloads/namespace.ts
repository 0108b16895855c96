/**
 * The namespace workload: concurrent mkdir, create (exclusive), rename, unlink, rmdir and readdir on small
 * trees, checked for linearizability against a sequential model of the namespace
 * (jepsen/checker/namespace-model.ts, `--model namespace`).
 *
 * Trees `/jepsen/ns/t0` … `/jepsen/ns/t(N-1)` (`--keys`), each an independent history key, created empty before
 * the run (not recorded: the model starts every tree empty, and each run has a fresh cluster; setup checks the
 * trees are empty). Inside a tree the workers use the names `a`, `b`, `c` and below each `x`, `y` (9 paths of
 * depth at most 2; a rename can carry a directory's children deeper). Each op picks a tree and paths at random:
 *   mkdir P      `fs.mkdir` (not recursive)
 *   create P     one Create command, exclusive (`fs.metadata.create`: `writeFile(…, { flag: 'wx' })` would also
 *                take a lease, stat and complete the file, and an error of those later steps, e.g. ENOENT after a
 *                concurrent unlink, would not say whether the create happened)
 *   unlink P, rmdir P, rename A B   the client calls of the same names
 *   readdir D    `fs.readdir(…, { withFileTypes: true })` of the tree (`.`) or a top-level name: one Readdir
 *                request, so one linearizable read; entries sorted, a directory's name ending with '/'
 * Outcomes: success → `ok` (a readdir's value is its listing); a POSIX code from the servers (ENOENT, EEXIST,
 * ENOTDIR, EISDIR, ENOTEMPTY, EINVAL) → `fail` whose value is the code: a definite result the model checks;
 * anything else (timeout, no leader, session lost, abort) → `info` for a mutation (mutations retry with their
 * session stamp, so it applied once or not at all) and `fail` with value null for a readdir (it changed
 * nothing and says nothing). A worker whose op ended `info` takes a new process number.
 */
import type { RfsClient } from '../../src/index.ts';
import type { OpF, OpValue } from '../harness/history.ts';
import type { SeededRandom } from '../harness/random.ts';
import { namespaceErrorCodes, treeRoot } from '../checker/namespace-model.ts';
import type { Workload, WorkloadOptions } from './types.ts';
import { connectWorkerClient } from './types.ts';

export const namespaceDir = '/jepsen/ns';
/** Names directly in a tree, and below each of them. */
export const topNames = ['a', 'b', 'c'] as const;
export const subNames = ['x', 'y'] as const;
/** Every path an operation names: depth 1 and 2. */
export const namespacePaths: readonly string[] = [...topNames, ...topNames.flatMap((t) => subNames.map((s) => `${t}/${s}`))];
/** Attempts per directory in the final read phase (each one recorded). */
export const finalReadAttemptsMax = 10;
const finalReadPauseMs = 1_000;
/** Directories listed per tree in the final read phase at most (a rename can nest directories deeper). */
const finalReadDirsMax = 64;

/** Chances of each operation (they sum to 1): reads a quarter, the rest spread over the mutations. */
export const opWeights: ReadonlyArray<readonly [OpF, number]> = [
  ['readdir', 0.25],
  ['mkdir', 0.16],
  ['create', 0.14],
  ['rename', 0.2],
  ['unlink', 0.13],
  ['rmdir', 0.12],
];

export const treeName = (k: number): string => `t${k}`;
export const treePath = (tree: string): string => `${namespaceDir}/${tree}`;
/** The absolute path of `relative` (relative to the tree; '.' is the tree itself). */
export const absolutePath = (tree: string, relative: string): string => (relative === treeRoot ? treePath(tree) : `${treePath(tree)}/${relative}`);

type Outcome = { type: 'ok' | 'fail' | 'info'; value: OpValue; error?: string };

const definiteCodes: ReadonlySet<string> = new Set(namespaceErrorCodes);

function errorCode(e: unknown): string {
  const err = e as { code?: string | number; name?: string; message?: string };
  return String(err.code ?? err.name ?? err.message ?? 'error');
}

/** A readdir's entries as the history records them: sorted, a directory's name with a trailing '/'. */
export function listingOf(entries: readonly { name: string; isDirectory(): boolean }[]): string[] {
  return entries.map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort();
}

export class NamespaceWorkload implements Workload {
  private nextProcess = 0;
  private clientsMade = 0;
  private readonly clients: RfsClient[] = [];

  constructor(private readonly options: WorkloadOptions) {}

  get trees(): string[] {
    return Array.from({ length: this.options.keys }, (_, k) => treeName(k));
  }

  private allocateProcess(): number {
    return this.nextProcess++;
  }

  private async newClient(): Promise<RfsClient> {
    return connectWorkerClient(this.options, this.clientsMade++);
  }

  /** One client per worker; every tree created, and checked empty (the model starts from empty trees). */
  async setup(): Promise<void> {
    for (let i = 0; i < this.options.clients; i++) this.clients.push(await this.newClient());
    const fs = this.clients[0]!;
    for (const tree of this.trees) {
      await fs.mkdir(treePath(tree), { recursive: true });
      const entries = await fs.readdir(treePath(tree));
      if (entries.length > 0) throw new Error(`setup: ${treePath(tree)} is not empty (${entries.join(', ')}); the namespace workload needs a fresh cluster`);
    }
  }

  async run(stop: AbortSignal): Promise<void> {
    await Promise.all(this.clients.map((fs, worker) => this.worker(fs, worker, this.options.random.fork(), stop)));
  }

  /** An operation drawn at random: its function and invocation value. */
  static pickOp(random: SeededRandom): { f: OpF; value: OpValue } {
    let roll = random.next();
    let f: OpF = 'readdir';
    for (const [name, weight] of opWeights) {
      f = name;
      if ((roll -= weight) < 0) break;
    }
    if (f === 'readdir') return { f, value: random.next() < 0.5 ? treeRoot : random.pick(topNames) };
    if (f === 'rename') return { f, value: [random.pick(namespacePaths), random.pick(namespacePaths)] };
    return { f, value: random.pick(namespacePaths) };
  }

  private async worker(fs: RfsClient, worker: number, random: SeededRandom, stop: AbortSignal): Promise<void> {
    let processId = this.allocateProcess();
    const { history } = this.options;
    while (!stop.aborted) {
      const tree = random.pick(this.trees);
      const { f, value } = NamespaceWorkload.pickOp(random);
      history.invoke(processId, f, tree, value);
      let outcome: Outcome;
      try {
        outcome = await this.perform(fs, tree, f, value);
      } catch (e) {
        // A bug of the workload itself: the op's outcome is unknown, never guessed.
        outcome = { type: 'info', value, error: `workload: ${errorCode(e)}` };
      }
      history.complete(processId, outcome.type, outcome.value, outcome.error);
      if (outcome.type === 'info') processId = this.allocateProcess();
      if (outcome.error === 'ESESSION') {
        fs.close();
        fs = await this.reconnect(stop);
        this.clients[worker] = fs;
      }
      await pause(random.int(0, this.options.staggerMs));
    }
  }

  private async reconnect(stop: AbortSignal): Promise<RfsClient> {
    for (;;) {
      try {
        return await this.newClient();
      } catch (e) {
        if (stop.aborted) throw e;
        await pause(1_000);
      }
    }
  }

  /** Runs one operation and classifies its outcome (see the header comment). */
  async perform(fs: RfsClient, tree: string, f: OpF, value: OpValue): Promise<Outcome> {
    const signal = AbortSignal.timeout(this.options.opTimeoutMs);
    const at = (relative: unknown): string => absolutePath(tree, String(relative));
    try {
      switch (f) {
        case 'readdir':
          return { type: 'ok', value: listingOf(await fs.readdir(at(value), { withFileTypes: true, signal })) };
        case 'mkdir':
          await fs.mkdir(at(value), { signal });
          break;
        case 'create':
          await fs.metadata.create(at(value), { exclusive: true });
          break;
        case 'unlink':
          await fs.unlink(at(value), { signal });
          break;
        case 'rmdir':
          await fs.rmdir(at(value), { signal });
          break;
        case 'rename': {
          const [from, to] = value as readonly [string, string];
          await fs.rename(at(from), at(to), { signal });
          break;
        }
        default:
          throw new RangeError(`the namespace workload has no operation ${f}`);
      }
      return { type: 'ok', value };
    } catch (e) {
      const code = errorCode(e);
      if (definiteCodes.has(code)) return { type: 'fail', value: code, error: code };
      if (f === 'readdir') return { type: 'fail', value: null, error: code };
      return { type: 'info', value, error: code };
    }
  }

  /**
   * After every fault healed: each tree listed, then every directory found in it (each listing recorded, up to
   * `finalReadAttemptsMax` attempts). The final value of a tree is its whole content, as sorted paths.
   */
  async finalReads(): Promise<Map<string, OpValue>> {
    const fs = this.clients[0] ?? (await this.newClient());
    const values = new Map<string, OpValue>();
    for (const tree of this.trees) {
      const paths: string[] = [];
      const dirs: string[] = [treeRoot];
      for (let i = 0; i < dirs.length && i < finalReadDirsMax; i++) {
        const dir = dirs[i]!;
        const listing = await this.finalRead(fs, tree, dir);
        if (listing === undefined) continue;
        for (const name of listing) {
          const path = dir === treeRoot ? name : `${dir}/${name}`;
          paths.push(path);
          if (path.endsWith('/')) dirs.push(path.slice(0, -1));
        }
      }
      values.set(tree, paths.sort());
    }
    return values;
  }

  private async finalRead(fs: RfsClient, tree: string, dir: string): Promise<string[] | undefined> {
    for (let attempt = 0; attempt < finalReadAttemptsMax; attempt++) {
      const processId = this.allocateProcess();
      this.options.history.invoke(processId, 'readdir', tree, dir);
      const outcome = await this.perform(fs, tree, 'readdir', dir);
      this.options.history.complete(processId, outcome.type, outcome.value, outcome.error);
      if (outcome.type === 'ok') return outcome.value as string[];
      // A definite error (the directory went away) is an answer too: nothing to list.
      if (outcome.value !== null) return undefined;
      await pause(finalReadPauseMs);
    }
    return undefined;
  }

  close(): void {
    for (const fs of this.clients) fs.close();
  }
}

async function pause(ms: number): Promise<void> {
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}
