/** Path syntax: what parsePath accepts and the error code of each refusal. */
import t from 'tap';
import { FsError } from '../../src/fsm/errors.ts';
import { defaultFsmLimits } from '../../src/fsm/limits.ts';
import { isStrictDescendant, parsePath } from '../../src/fsm/paths.ts';

function code(path: unknown): string {
  try {
    parsePath(path, defaultFsmLimits);
    return 'ok';
  } catch (e) {
    if (e instanceof FsError) return e.code;
    throw e;
  }
}

void t.test('accepted paths', (t) => {
  t.same(parsePath('/', defaultFsmLimits), []);
  t.same(
    parsePath('/a/b c/é', defaultFsmLimits).map((c) => c.name),
    ['a', 'b c', 'é'],
  );
  t.same([...parsePath('/é', defaultFsmLimits)[0]!.bytes], [0xc3, 0xa9], 'components are UTF-8');
  t.equal(code('/...'), 'ok', "'...' is an ordinary name");
  t.equal(code('/.a/a.'), 'ok');
  t.equal(code(`/${'x'.repeat(255)}`), 'ok');
  t.equal(code(`/${'😀'.repeat(63)}`), 'ok', '252 bytes');
  t.end();
});

void t.test('refused paths and their codes', (t) => {
  const cases: [unknown, string][] = [
    ['', 'EINVAL'],
    ['a/b', 'EINVAL'],
    [42, 'EINVAL'],
    ['//', 'EINVAL'],
    ['/a//b', 'EINVAL'],
    ['/a/', 'EINVAL'],
    ['/.', 'EINVAL'],
    ['/a/..', 'EINVAL'],
    ['/a\0', 'EINVAL'],
    ['/\uD800', 'EINVAL'],
    ['/\uDC00x', 'EINVAL'],
    [`/${'x'.repeat(256)}`, 'ENAMETOOLONG'],
    [`/${'😀'.repeat(64)}`, 'ENAMETOOLONG'],
    [`/${Array.from({ length: 17 }, () => 'y'.repeat(250)).join('/')}`, 'ENAMETOOLONG'],
    [`/${'x'.repeat(300)}/.`, 'ENAMETOOLONG'],
    [`/./${'x'.repeat(300)}`, 'EINVAL'],
  ];
  for (const [path, expected] of cases) t.equal(code(path), expected, JSON.stringify(path).slice(0, 40));
  t.end();
});

void t.test('isStrictDescendant compares whole components', (t) => {
  const p = (s: string) => parsePath(s, defaultFsmLimits);
  t.ok(isStrictDescendant(p('/a/b'), p('/a')));
  t.ok(isStrictDescendant(p('/a'), p('/')));
  t.notOk(isStrictDescendant(p('/ab'), p('/a')));
  t.notOk(isStrictDescendant(p('/a'), p('/a')));
  t.notOk(isStrictDescendant(p('/a'), p('/a/b')));
  t.end();
});
