/**
 * Installs a Debian package the harness or a benchmark needs when it is missing (they run as root on a
 * Debian machine: the clock nemesis needs libfaketime, bench:metadata needs etcd-server). Tries without
 * `apt-get update` first (fast when the package lists are fresh), then with it.
 */
import { spawnSync } from 'node:child_process';

/** Whether `have()` holds, installing `packages` first if it does not. Progress goes to `print`. */
export function ensureDebianPackages(
  packages: readonly string[],
  have: () => boolean,
  print: (line: string) => void,
): boolean {
  if (have()) return true;
  print(`${packages.join(', ')} not found: installing with apt-get`);
  let r = spawnSync('apt-get', ['install', '-y', ...packages], { stdio: 'inherit' });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    r = spawnSync('apt-get', ['install', '-y', ...packages], { stdio: 'inherit' });
  }
  return have();
}
