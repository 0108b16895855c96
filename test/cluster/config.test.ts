/**
 * Settings: flag > RFS_* environment > config file (top level, then the command's section) > default;
 * typed values with clear errors; docs/CONFIG.md lists every setting; the rfs command applies the rule.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, allEnvNames, envName, loadSettings, resolveSettings, settings } from '../../src/cli/config.ts';
import type { CommandName } from '../../src/cli/config.ts';
import { tempDir } from '../metadata/harness.ts';

const repoRoot = join(import.meta.dirname, '..', '..');

void t.test('env names', (t) => {
  t.equal(envName('data-dir'), 'RFS_DATA_DIR');
  t.equal(envName('scrub-mib-per-s'), 'RFS_SCRUB_MIB_PER_S');
  t.ok(allEnvNames().includes('RFS_CONFIG') && allEnvNames().includes('RFS_BASE_PORT'));
  t.end();
});

void t.test('precedence: flag > env > file > default, for each layer alone and together', (t) => {
  const file = { 'heartbeat-ms': 3000, chunkserver: { 'heartbeat-ms': 4000 } };
  const at = (flags: Record<string, unknown>, env: Record<string, string>, withFile: boolean): [number, string | undefined] => {
    const r = resolveSettings('chunkserver', { flags, env, ...(withFile ? { file } : {}) });
    return [r.integer('heartbeat-ms'), r.sources.get('heartbeat-ms')];
  };
  t.same(at({}, {}, false), [2000, 'default']);
  t.same(at({}, {}, true), [4000, 'file'], 'the section wins over the top level');
  t.same(at({}, { RFS_HEARTBEAT_MS: '5000' }, true), [5000, 'env']);
  t.same(at({ 'heartbeat-ms': '6000' }, { RFS_HEARTBEAT_MS: '5000' }, true), [6000, 'flag']);
  t.same(at({}, { RFS_HEARTBEAT_MS: '' }, true), [4000, 'file'], 'an empty variable is not set');
  const top = resolveSettings('metadata', { flags: {}, env: {}, file });
  t.equal(top.sources.get('tick-ms'), 'default', "another command's section does not apply");
  const shared = resolveSettings('metadata', { flags: {}, env: {}, file: { 'log-level': 'warn', chunkserver: { 'log-level': 'debug' } } });
  t.equal(shared.string('log-level'), 'warn', 'top-level keys apply to every command that has them');
  t.end();
});

void t.test('typed values and clear errors', (t) => {
  const r = resolveSettings('cluster', { flags: { restart: false }, env: { RFS_BASE_PORT: '9001' }, file: { cluster: { chunkservers: '4' } } });
  t.equal(r.boolean('restart'), false);
  t.equal(r.integer('base-port'), 9001);
  t.equal(r.integer('chunkservers'), 4, 'numbers may be strings in the file');
  t.equal(r.string('data-dir'), './rfs-data');
  t.equal(resolveSettings('cluster', { flags: {}, env: { RFS_RESTART: 'false' } }).boolean('restart'), false);
  t.throws(() => resolveSettings('chunkserver', { flags: { 'heartbeat-ms': '2s' }, env: {} }), { code: 'ECONFIG', message: /--heartbeat-ms.*integer/ });
  t.throws(() => resolveSettings('chunkserver', { flags: {}, env: { RFS_SCRUB_MIB_PER_S: '0' } }), { message: /RFS_SCRUB_MIB_PER_S.*at least 1/ });
  t.throws(() => resolveSettings('cluster', { flags: {}, env: {}, file: { 'base-port': 70_000 } }), { message: /config file.*at most/ });
  t.throws(() => resolveSettings('cluster', { flags: {}, env: {}, file: { 'bsae-port': 1 } }), { message: /unknown setting "bsae-port"/ });
  t.throws(() => resolveSettings('cluster', { flags: {}, env: {}, file: { cluster: { rack: 'r1' } } }), { message: /unknown setting "rack" in section "cluster"/ });
  t.throws(() => resolveSettings('cluster', { flags: {}, env: {}, file: [1] }), ConfigError);
  t.throws(() => resolveSettings('cluster', { flags: {}, env: { RFS_RESTART: 'maybe' } }), { message: /true or false/ });
  const missing = resolveSettings('chunkserver', { flags: {}, env: {} });
  t.throws(() => missing.string('rack'), { message: '--rack is required (or RFS_RACK, or "rack" in the config file)' });
  t.equal(missing.optString('advertise'), undefined);
  t.end();
});

void t.test('--config and RFS_CONFIG name the file', async (t) => {
  const tmp = await tempDir('rfs-config-');
  t.teardown(() => tmp.remove());
  const path = join(tmp.dir, 'rfs.json');
  writeFileSync(path, JSON.stringify({ cluster: { 'base-port': 9001 } }));
  t.equal(loadSettings('cluster', { config: path }, {}).integer('base-port'), 9001);
  t.equal(loadSettings('cluster', {}, { RFS_CONFIG: path }).integer('base-port'), 9001);
  t.throws(() => loadSettings('cluster', { config: join(tmp.dir, 'nope.json') }, {}), { message: /nope\.json: ENOENT/ });
  writeFileSync(path, '{ "base-port": ');
  t.throws(() => loadSettings('cluster', { config: path }, {}), { message: /not valid JSON/ });
});

void t.test('docs/CONFIG.md lists every setting with its flag, variable and default', (t) => {
  const doc = readFileSync(join(repoRoot, 'docs', 'CONFIG.md'), 'utf8');
  for (const command of Object.keys(settings) as CommandName[]) {
    const section = doc.slice(doc.indexOf(`## \`rfs ${command}`));
    const table = section.slice(0, section.indexOf('\n## ') === -1 ? undefined : section.indexOf('\n## '));
    for (const s of settings[command]) {
      const row = table.split('\n').find((line) => line.startsWith(`| ${s.key} |`));
      t.ok(row?.includes(`\`--${s.key}\``) && row.includes(`\`${envName(s.key)}\``), `${command} ${s.key}: row with flag and variable`);
      if (s.default !== undefined) t.ok(row?.includes(String(s.default)), `${command} ${s.key}: default ${String(s.default)}`);
    }
  }
  t.end();
});

void t.test('the deploy example config is valid for both server commands', (t) => {
  const file: unknown = JSON.parse(readFileSync(join(repoRoot, 'deploy', 'systemd', 'rfs.json.example'), 'utf8'));
  const meta = resolveSettings('metadata', { flags: { id: '2', 'data-dir': '/var/lib/rfs/metadata-2' }, env: {}, file });
  t.match(meta.string('peers'), /^1=10\.0\.0\.1:7001,/);
  t.equal(meta.string('listen'), '0.0.0.0:7001');
  const cs = resolveSettings('chunkserver', { flags: { 'data-dir': '/srv/disk1/rfs' }, env: { RFS_LISTEN: '0.0.0.0:7101' }, file });
  t.equal(cs.string('rack'), 'rack-a1');
  t.equal(cs.string('listen'), '0.0.0.0:7101');
  t.equal(cs.optString('metrics'), undefined, "the metadata section's metrics address does not leak to chunkservers");
  t.end();
});

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/rfs.ts', ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

void t.test('rfs chunkserver reads the file and the environment, flags win', async (t) => {
  const tmp = await tempDir('rfs-config-cli-');
  t.teardown(() => tmp.remove());
  const path = join(tmp.dir, 'rfs.json');
  writeFileSync(path, JSON.stringify({ chunkserver: { 'data-dir': tmp.dir, metadata: '127.0.0.1:1', listen: '127.0.0.1:0', 'scrub-mib-per-s': 0 } }));
  // Everything but the rack from the file (its bad scrub rate overridden by a flag): the missing setting is named.
  const noRack = await runCli(['chunkserver', '--config', path, '--scrub-mib-per-s', '1'], {});
  t.equal(noRack.code, 2);
  t.match(noRack.stderr, /--rack is required/);
  // The rack from the environment; the file's bad scrub rate is then reported, with its source.
  const badFile = await runCli(['chunkserver'], { RFS_CONFIG: path, RFS_RACK: 'r1' });
  t.equal(badFile.code, 2);
  t.match(badFile.stderr, new RegExp(`${path.replace(/[/.]/g, '\\$&')}: scrub-mib-per-s: at least 1`));
  // A flag wins over both: the environment's bad value would be reported otherwise.
  const help = await runCli(['chunkserver', '--config', path, '--rack', 'r1', '--scrub-mib-per-s', '1', '--heartbeat-ms', 'x'], { RFS_SCRUB_MIB_PER_S: '0' });
  t.equal(help.code, 2);
  t.match(help.stderr, /--heartbeat-ms: heartbeat-ms: an integer is required/, 'the flag, not RFS_SCRUB_MIB_PER_S=0 nor the file');
  const unknown = await runCli(['chunkserver', '--rakc', 'r1'], {});
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /Unknown argument: rakc/);
});
