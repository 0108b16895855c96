// Prints every failed assertion of the last `tap` run, with its subtest path and diagnostic,
// read from tap's per-file results (.tap/test-results). `npm test` runs it only when tap fails,
// so the end of a long CI log names what failed instead of only counting it. Only result files
// written after the marker `npm test` touches before tap starts are read (older ones are stale).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const resultsDir = '.tap/test-results';
const startMarker = '.tap/run-started';
const diagnosticLinesMax = 40;
const failuresPerFileMax = 3;
const failuresMax = 20;

function startedMs(): number {
  try {
    return statSync(startMarker).mtimeMs;
  } catch {
    return 0;
  }
}

function tapFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? tapFiles(path) : path.endsWith('.tap') ? [path] : [];
  });
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

interface Failure {
  file: string;
  path: string[];
  line: string;
  diagnostic: string[];
}

function failuresIn(file: string): Failure[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: Failure[] = [];
  const subtests: { indent: number; name: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trimStart();
    const indent = indentOf(line);
    if (trimmed.startsWith('# Subtest: ')) {
      while (subtests.length > 0 && subtests[subtests.length - 1]!.indent >= indent) subtests.pop();
      subtests.push({ indent, name: trimmed.slice('# Subtest: '.length) });
      continue;
    }
    if (!trimmed.startsWith('not ok ')) continue;
    // A failed subtest repeats the failures of its children; report only the leaves,
    // i.e. failures whose YAML block does not belong to a subtest that already failed inside.
    const diagnostic: string[] = [];
    if (lines[i + 1]?.trimStart() === '---') {
      for (let j = i + 1; j < lines.length && diagnostic.length < diagnosticLinesMax; j++) {
        diagnostic.push(lines[j]!);
        if (j > i + 1 && lines[j]!.trimStart() === '...' && indentOf(lines[j]!) === indentOf(lines[i + 1]!)) break;
      }
    }
    const enclosing = subtests.filter((s) => s.indent < indent).map((s) => s.name);
    out.push({ file, path: enclosing, line: trimmed, diagnostic });
  }
  // Drop a failure that only summarises failed children (its name is a subtest that contains failures).
  return out.filter((f) => !out.some((g) => g !== f && g.path.length > f.path.length && g.path.join('\0').startsWith([...f.path, nameOf(f.line)].join('\0'))));
}

function nameOf(notOkLine: string): string {
  return notOkLine.replace(/^not ok \d+ - /, '').replace(/ # time=.*$/, '');
}

const since = startedMs();
const perFile = tapFiles(resultsDir)
  .filter((file) => statSync(file).mtimeMs >= since)
  .map(failuresIn)
  .filter((list) => list.length > 0);
const failures = perFile.flatMap((list) => list.slice(0, failuresPerFileMax));
const total = perFile.reduce((sum, list) => sum + list.length, 0);
console.log('');
console.log(`# ${total} failed assertion(s) in ${perFile.length} test file(s) of the last tap run (at most ${failuresPerFileMax} shown per file):`);
for (const f of failures.slice(0, failuresMax)) {
  console.log(`# ${relative(resultsDir, f.file).replace(/\.tap$/, '')}`);
  for (const [depth, name] of f.path.entries()) console.log(`#   ${'  '.repeat(depth)}${name}`);
  console.log(`#   ${'  '.repeat(f.path.length)}${f.line}`);
  const base = f.diagnostic.length > 0 ? indentOf(f.diagnostic[0]!) : 0;
  for (const d of f.diagnostic) console.log(`#     ${'  '.repeat(f.path.length)}${d.slice(Math.min(base, indentOf(d))).trimEnd()}`);
}
if (failures.length > failuresMax) console.log(`# … and ${failures.length - failuresMax} more`);
for (const list of perFile) console.log(`# failed: ${relative(resultsDir, list[0]!.file).replace(/\.tap$/, '')} (${list.length})`);
