/**
 * Settings of the `rfs` processes: one table per command, one precedence rule.
 *
 *   flag (`--data-dir`) > environment (`RFS_DATA_DIR`) > config file (`--config path.json`) > default
 *
 * The config file is JSON: an object whose keys are flag names without the dashes. Keys at the top level
 * apply to every command that has that setting; a section named after a command (`"metadata"`,
 * `"chunkserver"`, `"cluster"`) applies to that command only and overrides the top level. A key no command
 * knows is an error (typos must not be ignored silently). docs/CONFIG.md lists every setting.
 */
import { readFileSync } from 'node:fs';

export type CommandName = 'metadata' | 'chunkserver' | 'cluster';
export type SettingType = 'string' | 'integer' | 'boolean';
export type SettingValue = string | number | boolean;
export type SettingSource = 'flag' | 'env' | 'file' | 'default';

export interface Setting {
  /** The flag name without dashes; also the config file key. */
  readonly key: string;
  readonly type: SettingType;
  readonly description: string;
  readonly default?: SettingValue;
  readonly unit?: string;
  /** Smallest accepted integer. */
  readonly min?: number;
  readonly max?: number;
}

/** A bad setting: unknown key, wrong type, out of range, unreadable config file. */
export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The environment variable of a setting: `data-dir` → `RFS_DATA_DIR`. */
export function envName(key: string): string {
  return `RFS_${key.toUpperCase().replace(/-/g, '_')}`;
}

const logLevel: Setting = { key: 'log-level', type: 'string', default: 'info', description: 'pino level: trace, debug, info, warn, error, fatal, silent' };
const portMax = 65_535;

export const configSetting: Setting = { key: 'config', type: 'string', description: 'JSON config file (format: docs/CONFIG.md)' };

export const settings: Readonly<Record<CommandName, readonly Setting[]>> = {
  metadata: [
    { key: 'id', type: 'integer', min: 1, description: "this server's id; must appear in `peers` (required)" },
    { key: 'peers', type: 'string', description: "every member's client address: `ID=HOST:PORT[/RAFTPORT],…` (required)" },
    { key: 'data-dir', type: 'string', description: 'Raft log and state machine (RocksDB) (required)' },
    { key: 'listen', type: 'string', description: "client service address to bind; default: this server's address in `peers`" },
    { key: 'raft-port-offset', type: 'integer', min: 1, max: portMax, default: 1000, unit: 'ports', description: 'Raft port = client port + this, for peers given without /RAFTPORT' },
    { key: 'metrics', type: 'string', description: 'HOST:PORT of the HTTP `/metrics` endpoint; default: none' },
    { key: 'tick-ms', type: 'integer', min: 1, default: 50, unit: 'ms', description: 'one Raft tick' },
    { key: 'election-ticks', type: 'integer', min: 1, default: 10, unit: 'ticks', description: 'election timeout, drawn from [n, 2n) ticks' },
    { key: 'heartbeat-ticks', type: 'integer', min: 1, default: 2, unit: 'ticks', description: "ticks between the leader's heartbeats; less than election-ticks" },
    logLevel,
  ],
  chunkserver: [
    { key: 'data-dir', type: 'string', description: 'replicas (`chunks/`) and the id file; one per disk (required)' },
    { key: 'metadata', type: 'string', description: "metadata servers' client addresses `HOST:PORT,…` (required)" },
    { key: 'rack', type: 'string', description: 'failure domain; replicas of a chunk go to distinct racks first (required)' },
    { key: 'listen', type: 'string', description: 'data plane address to bind, HOST:PORT (required)' },
    { key: 'id', type: 'integer', min: 1, description: 'expected id: refuse a data dir saved with another id; default: no check' },
    { key: 'advertise', type: 'string', description: 'HOST:PORT others reach the data plane at; default: the listen host and port' },
    { key: 'metrics', type: 'string', description: 'HOST:PORT of the HTTP `/metrics` endpoint; default: none' },
    { key: 'heartbeat-ms', type: 'integer', min: 1, default: 2000, unit: 'ms', description: 'heartbeat interval to the metadata leader' },
    { key: 'scrub-mib-per-s', type: 'integer', min: 1, default: 10, unit: 'MiB/s', description: 'background re-verification rate of stored replicas' },
    { key: 'local-reads', type: 'boolean', default: true, description: 'let clients on this host read sealed replicas from their files (short-circuit local reads)' },
    { key: 'direct-io', type: 'boolean', default: true, description: 'write large aligned ranges of replicas with O_DIRECT, bypassing the page cache (falls back to cached writes where refused)' },
    {
      key: 'pipeline-stall-ms',
      type: 'integer',
      min: 1,
      default: 10_000,
      unit: 'ms',
      description: 'a write pipeline hop (or a copy) gives up on a replica after it that acknowledges nothing for this long × the replicas after the hop',
    },
    {
      key: 'pipeline-idle-ms',
      type: 'integer',
      min: 1,
      default: 120_000,
      unit: 'ms',
      description: "a write pipeline hop that owes its writer nothing and hears nothing from it (not even a keepalive) for this long ends the pipeline, freeing its connections (the writer stopped without closing); clients send keepalives every 30 s",
    },
    logLevel,
  ],
  cluster: [
    { key: 'data-dir', type: 'string', default: './rfs-data', description: 'folder of all servers\' data (kept across restarts)' },
    { key: 'base-port', type: 'integer', min: 0, max: portMax - 200, default: 7001, unit: 'port', description: 'first port of the layout (docs/CONFIG.md); 0: free ports, saved in the data dir' },
    { key: 'host', type: 'string', default: '127.0.0.1', description: 'address every server binds and advertises' },
    { key: 'metadata-servers', type: 'integer', min: 1, max: 9, default: 3, unit: 'servers', description: 'metadata servers (Raft members)' },
    { key: 'chunkservers', type: 'integer', min: 1, max: 9, default: 3, unit: 'servers', description: 'chunkservers (one rack each)' },
    { key: 'restart', type: 'boolean', default: true, description: 'restart a server that dies unexpectedly (after 1 s; gives up after 5 quick crashes)' },
    { key: 'ready-timeout-ms', type: 'integer', min: 1, default: 60_000, unit: 'ms', description: 'how long to wait for a leader and live chunkservers' },
    { key: 'stop-timeout-ms', type: 'integer', min: 1, default: 10_000, unit: 'ms', description: 'after SIGTERM, how long before SIGKILL' },
    { key: 'heartbeat-ms', type: 'integer', min: 1, default: 2000, unit: 'ms', description: "chunkservers' heartbeat interval" },
    logLevel,
  ],
};

/** Every RFS_* variable some command reads (the local cluster clears them for its children). */
export function allEnvNames(): string[] {
  const keys = new Set<string>([configSetting.key]);
  for (const list of Object.values(settings)) for (const s of list) keys.add(s.key);
  return [...keys].map(envName);
}

/** Values of one command's settings, typed on read, with where each came from. */
export class ResolvedSettings {
  constructor(
    private readonly command: CommandName,
    private readonly values: ReadonlyMap<string, SettingValue>,
    readonly sources: ReadonlyMap<string, SettingSource>,
  ) {}

  has(key: string): boolean {
    return this.values.has(key);
  }

  optString(key: string): string | undefined {
    return this.typed(key, 'string') as string | undefined;
  }

  optInteger(key: string): number | undefined {
    return this.typed(key, 'integer') as number | undefined;
  }

  string(key: string): string {
    return this.required(this.optString(key), key);
  }

  integer(key: string): number {
    return this.required(this.optInteger(key), key);
  }

  boolean(key: string): boolean {
    return this.required(this.typed(key, 'boolean') as boolean | undefined, key);
  }

  private typed(key: string, type: SettingType): SettingValue | undefined {
    const setting = settings[this.command].find((s) => s.key === key);
    if (setting === undefined || setting.type !== type) throw new Error(`no ${type} setting ${key} for ${this.command}`);
    return this.values.get(key);
  }

  private required<T>(value: T | undefined, key: string): T {
    if (value === undefined || value === '') throw new ConfigError(`--${key} is required (or ${envName(key)}, or "${key}" in the config file)`);
    return value;
  }
}

function parseValue(setting: Setting, raw: unknown, from: string): SettingValue {
  const where = `${from}: ${setting.key}`;
  switch (setting.type) {
    case 'string':
      if (typeof raw === 'number' && Number.isFinite(raw)) return String(raw);
      if (typeof raw !== 'string') throw new ConfigError(`${where}: a string is required`);
      return raw;
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ConfigError(`${where}: true or false is required, not ${JSON.stringify(raw)}`);
    case 'integer': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?[0-9]+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw new ConfigError(`${where}: an integer is required, not ${JSON.stringify(raw)}`);
      if (setting.min !== undefined && n < setting.min) throw new ConfigError(`${where}: at least ${setting.min} (got ${n})`);
      if (setting.max !== undefined && n > setting.max) throw new ConfigError(`${where}: at most ${setting.max} (got ${n})`);
      return n;
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The keys of a parsed config file that apply to `command`: known top-level keys, then its section.
 * Unknown keys anywhere are errors.
 */
export function configFileValues(file: unknown, command: CommandName, from = 'config file'): Map<string, unknown> {
  if (!isObject(file)) throw new ConfigError(`${from}: a JSON object is required`);
  const known = new Set<string>();
  for (const list of Object.values(settings)) for (const s of list) known.add(s.key);
  const mine = new Set(settings[command].map((s) => s.key));
  const out = new Map<string, unknown>();
  for (const [key, value] of Object.entries(file)) {
    if (key in settings) {
      if (!isObject(value)) throw new ConfigError(`${from}: section "${key}" must be an object`);
      const sectionKeys = new Set(settings[key as CommandName].map((s) => s.key));
      for (const k of Object.keys(value)) if (!sectionKeys.has(k)) throw new ConfigError(`${from}: unknown setting "${k}" in section "${key}"`);
      continue;
    }
    if (!known.has(key)) throw new ConfigError(`${from}: unknown setting "${key}"`);
    if (mine.has(key)) out.set(key, value);
  }
  const section = file[command];
  if (isObject(section)) for (const [k, v] of Object.entries(section)) out.set(k, v);
  return out;
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`config file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ConfigError(`config file ${path}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

export interface SettingInputs {
  /** Flags given on the command line (absent keys: not given). */
  readonly flags: Readonly<Record<string, unknown>>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The parsed config file, if any. */
  readonly file?: unknown;
  readonly fileName?: string;
}

/** Applies the precedence rule: flag > env > config file > default. */
export function resolveSettings(command: CommandName, inputs: SettingInputs): ResolvedSettings {
  const fileName = inputs.fileName ?? 'config file';
  const file = inputs.file === undefined ? new Map<string, unknown>() : configFileValues(inputs.file, command, fileName);
  const values = new Map<string, SettingValue>();
  const sources = new Map<string, SettingSource>();
  for (const setting of settings[command]) {
    const flag = inputs.flags[setting.key];
    const env = inputs.env[envName(setting.key)];
    if (flag !== undefined) {
      values.set(setting.key, parseValue(setting, flag, `--${setting.key}`));
      sources.set(setting.key, 'flag');
    } else if (env !== undefined && env !== '') {
      values.set(setting.key, parseValue(setting, env, envName(setting.key)));
      sources.set(setting.key, 'env');
    } else if (file.has(setting.key)) {
      values.set(setting.key, parseValue(setting, file.get(setting.key), fileName));
      sources.set(setting.key, 'file');
    } else if (setting.default !== undefined) {
      values.set(setting.key, setting.default);
      sources.set(setting.key, 'default');
    }
  }
  return new ResolvedSettings(command, values, sources);
}

/** Resolves a command's settings from parsed flags and the process environment, reading `--config` / RFS_CONFIG. */
export function loadSettings(command: CommandName, flags: Readonly<Record<string, unknown>>, env: Readonly<Record<string, string | undefined>> = process.env): ResolvedSettings {
  const configFlag = flags[configSetting.key];
  const configPath = typeof configFlag === 'string' ? configFlag : env[envName(configSetting.key)];
  if (configPath === undefined || configPath === '') return resolveSettings(command, { flags, env });
  return resolveSettings(command, { flags, env, file: readConfigFile(configPath), fileName: configPath });
}
