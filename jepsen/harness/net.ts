/**
 * The test network: one Linux network namespace per server, each joined to one bridge in the root namespace
 * by a veth pair, one address each in `subnetPrefix`.0/24. The harness (and its clients) stay in the root
 * namespace and reach every server through the bridge at `bridgeAddress`.
 *
 * Partitions cut real traffic: a blocked pair gets a blackhole route for the peer's /32 inside BOTH
 * namespaces, so neither side's packets (data or replies) leave. Traffic between a server and the clients
 * (root namespace) is never cut: an isolated leader stays reachable, as in Jepsen.
 *
 * Every name starts with `namePrefix`, so a crashed earlier run's leftovers are found and removed at start.
 * Needs root (CAP_NET_ADMIN); `requireRoot` says so clearly.
 */
import { execFile, spawn } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const namePrefix = 'rfsj';
export const bridgeName = `${namePrefix}-br0`;
export const subnetPrefix = '10.77.0';
export const bridgeAddress = `${subnetPrefix}.254`;
/** Linux limits interface names to 15 bytes. */
const interfaceNameBytesMax = 15;
const commandTimeoutMs = 10_000;

export class NetError extends Error {
  constructor(
    readonly code: 'NOT_ROOT' | 'COMMAND_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'NetError';
  }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new NetError(
      'NOT_ROOT',
      'the Jepsen harness needs root: it creates network namespaces, veth pairs and a bridge (ip netns / ip link), ' +
        'and partitions with blackhole routes. Run it as root (CI does); there is no user-space fallback yet.',
    );
  }
}

export async function run(command: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { timeout: commandTimeoutMs });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new NetError('COMMAND_FAILED', `${command} ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

async function runQuiet(command: string, args: readonly string[]): Promise<void> {
  try {
    await run(command, args);
  } catch {
    // cleanup of something that may not exist
  }
}

export interface NetNode {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
}

export function netNode(name: string, index: number): NetNode {
  if (index < 1 || index > 250) throw new RangeError(`node index 1..250, not ${index}`);
  const namespace = `${namePrefix}-${name}`;
  if (`${namespace}h`.length > interfaceNameBytesMax) throw new RangeError(`node name too long: ${name}`);
  return { name, namespace, address: `${subnetPrefix}.${index}` };
}

/** Host side of a node's veth pair (in the root namespace, enslaved to the bridge). */
const hostVeth = (node: NetNode): string => `${node.namespace}h`;

/** Removes every namespace and link named with our prefix (a crashed earlier run's), and their processes. */
export async function cleanupLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const namespaces = (await run('ip', ['netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${namePrefix}-`));
  for (const ns of namespaces) {
    // Processes left inside (a SIGKILLed harness's children that were stopped): by pid, CONT then KILL.
    const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => '')).split('\n').filter((p) => /^\d+$/.test(p));
    for (const pid of pids.map(Number)) {
      for (const signal of ['SIGCONT', 'SIGKILL'] as const) {
        try {
          process.kill(pid, signal);
        } catch {
          // already gone
        }
      }
    }
    await runQuiet('ip', ['netns', 'delete', ns]);
    removed.push(ns);
  }
  const links = (await run('ip', ['-o', 'link', 'show']))
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(`${namePrefix}-`));
  for (const link of links) {
    await runQuiet('ip', ['link', 'delete', link]);
    removed.push(link);
  }
  return removed;
}

/** Bridge in the root namespace, then one namespace + veth pair per node. */
export async function setupNetwork(nodes: readonly NetNode[]): Promise<void> {
  await run('ip', ['link', 'add', bridgeName, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${bridgeAddress}/24`, 'dev', bridgeName]);
  await run('ip', ['link', 'set', bridgeName, 'up']);
  for (const node of nodes) {
    const ns = node.namespace;
    const host = hostVeth(node);
    const peer = `${ns}p`;
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
    await run('ip', ['link', 'set', peer, 'netns', ns]);
    await run('ip', ['link', 'set', host, 'master', bridgeName]);
    await run('ip', ['link', 'set', host, 'up']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', peer, 'name', 'eth0']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${node.address}/24`, 'dev', 'eth0']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
  }
}

export async function teardownNetwork(nodes: readonly NetNode[]): Promise<void> {
  for (const node of nodes) {
    await runQuiet('ip', ['netns', 'delete', node.namespace]);
    await runQuiet('ip', ['link', 'delete', hostVeth(node)]);
  }
  await runQuiet('ip', ['link', 'delete', bridgeName]);
}

/** Runs `ip -batch -` inside a namespace, the commands on stdin (one process for many route changes). */
async function ipBatch(namespace: string, commands: readonly string[], ignoreErrors: boolean): Promise<void> {
  if (commands.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ip', ['-n', namespace, ...(ignoreErrors ? ['-force'] : []), '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), commandTimeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0 || ignoreErrors) resolve();
      else reject(new NetError('COMMAND_FAILED', `ip -n ${namespace} -batch: ${stderr.trim()}`));
    });
    child.stdin.end(`${commands.join('\n')}\n`);
  });
}

/** Blocks traffic between a and b (both directions). Idempotent per pair within one `Partitioner`. */
export class Partitioner {
  /** Blocked pairs, as "a|b" with a < b by name. */
  private readonly blocked = new Set<string>();

  constructor(private readonly nodes: ReadonlyMap<string, NetNode>) {}

  private node(name: string): NetNode {
    const n = this.nodes.get(name);
    if (n === undefined) throw new RangeError(`unknown node ${name}`);
    return n;
  }

  async block(a: string, b: string): Promise<void> {
    if (a === b) return;
    const key = a < b ? `${a}|${b}` : `${b}|${a}`;
    if (this.blocked.has(key)) return;
    this.blocked.add(key);
    const na = this.node(a);
    const nb = this.node(b);
    await run('ip', ['netns', 'exec', na.namespace, 'ip', 'route', 'add', 'blackhole', `${nb.address}/32`]);
    await run('ip', ['netns', 'exec', nb.namespace, 'ip', 'route', 'add', 'blackhole', `${na.address}/32`]);
  }

  /** Blocks many pairs with one `ip` process per namespace. */
  async blockAll(pairs: readonly (readonly [string, string])[]): Promise<void> {
    await this.apply(pairs, 'add');
  }

  /** Unblocks many pairs this partitioner blocked. */
  async unblockAll(pairs: readonly (readonly [string, string])[]): Promise<void> {
    await this.apply(pairs, 'del');
  }

  private async apply(pairs: readonly (readonly [string, string])[], action: 'add' | 'del'): Promise<void> {
    const commands = new Map<string, string[]>();
    const add = (from: NetNode, to: NetNode): void => {
      const list = commands.get(from.namespace) ?? [];
      list.push(`route ${action} blackhole ${to.address}/32`);
      commands.set(from.namespace, list);
    };
    for (const [a, b] of pairs) {
      if (a === b) continue;
      const key = a < b ? `${a}|${b}` : `${b}|${a}`;
      if (action === 'add' ? this.blocked.has(key) : !this.blocked.has(key)) continue;
      if (action === 'add') this.blocked.add(key);
      else this.blocked.delete(key);
      add(this.node(a), this.node(b));
      add(this.node(b), this.node(a));
    }
    await Promise.all([...commands].map(([ns, list]) => ipBatch(ns, list, action === 'del')));
  }

  /** Unblocks one pair this partitioner blocked. */
  async unblock(a: string, b: string): Promise<void> {
    const key = a < b ? `${a}|${b}` : `${b}|${a}`;
    if (!this.blocked.delete(key)) return;
    const na = this.node(a);
    const nb = this.node(b);
    await runQuiet('ip', ['netns', 'exec', na.namespace, 'ip', 'route', 'del', 'blackhole', `${nb.address}/32`]);
    await runQuiet('ip', ['netns', 'exec', nb.namespace, 'ip', 'route', 'del', 'blackhole', `${na.address}/32`]);
  }

  /** Removes every blackhole route this partitioner added. */
  async healAll(): Promise<void> {
    await this.unblockAll([...this.blocked].map((key) => key.split('|') as [string, string]));
  }

  blockedPairs(): string[] {
    return [...this.blocked].sort();
  }
}

/**
 * Whether a TCP connection from inside `fromNamespace` to host:port opens within `timeoutMs`: bash's
 * /dev/tcp under `timeout`, run through `ip netns exec` (so it really starts in that namespace; bash starts
 * far faster than node on a loaded machine). Used to show that a partition cuts traffic.
 */
export async function canConnect(fromNamespace: string, host: string, port: number, timeoutMs: number): Promise<boolean> {
  if (!/^[\d.]+$/.test(host) || !Number.isSafeInteger(port)) throw new RangeError(`bad probe target ${host}:${port}`);
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  try {
    await run('ip', ['netns', 'exec', fromNamespace, 'timeout', String(seconds), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`]);
    return true;
  } catch {
    return false;
  }
}

/** A TCP connect from the root namespace (the clients' view). */
export async function canConnectFromRoot(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, host);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
