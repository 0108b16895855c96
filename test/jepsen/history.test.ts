/**
 * Reading histories: the EDN subset (Jepsen's format), our JSON lines, format detection, pairing of
 * invocations and completions, and a typed error with a position for every malformed input.
 */
import t from 'tap';
import fc from 'fast-check';
import { canonicalKey, EdnSyntaxError, readEdnForms } from '../../jepsen/checker/edn.ts';
import { detectFormat, HistoryError, pairOperations, parseHistory } from '../../jepsen/checker/history.ts';
import { generateHistory, toEdn, toJsonLines } from '../../jepsen/checker/generate.ts';
import { holds } from '../property/util.ts';

/** The error `fn` throws, or undefined. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

void t.test('EDN values', (t) => {
  const [form] = readEdnForms(`; a comment
    {:a nil, :b true :c [1 -2 3.5 "x\\"y\\n"] :d (:k sym) :e #{1 2} #_ :skipped :f 12345678901234567890}`);
  t.same(form?.value, {
    a: null,
    b: true,
    c: [1, -2, 3.5, 'x"y\n'],
    d: ['k', 'sym'],
    e: [1, 2],
    f: 12345678901234567890n,
  });
  t.equal(form?.line, 2);
  t.equal(canonicalKey([1, 'a', null]), canonicalKey([1, 'a', null]));
  t.not(canonicalKey([1, '1']), canonicalKey(['1', 1]));
  t.end();
});

void t.test('EDN syntax errors carry line and column', (t) => {
  const cases: Array<[string, number, number, RegExp]> = [
    ['[{:a 1}\n {:b 2]', 2, 7, /unexpected '\]'/],
    ['[{:a 1}\n {:b', 2, 5, /unterminated collection opened at line 2, column 2/],
    ['{:a}', 1, 2, /key without a value/],
    ['"abc', 1, 1, /unterminated string/],
    ['[1 #inst "x"]', 1, 4, /unsupported dispatch/],
    ['[1 \\a]', 1, 4, /character literals/],
    ['[1 2/3]', 1, 4, /bad number/],
    ['{:a 1 :a 2}', 1, 7, /duplicate map key/],
    ['[: 1]', 1, 2, /bad keyword/],
    ['"\\q"', 1, 2, /unknown string escape/],
    ['['.repeat(300), 1, 258, /nesting deeper/],
  ];
  for (const [text, line, column, message] of cases) {
    const e = thrown(() => readEdnForms(text));
    t.ok(e instanceof EdnSyntaxError && e.line === line && e.column === column && message.test(e.detail), `${JSON.stringify(text.slice(0, 20))}: ${String(e)}`);
  }
  t.end();
});

void t.test('Jepsen EDN history: vector, list or bare maps; nemesis skipped', (t) => {
  const vector = `; header
[{:process 0, :type :invoke, :f :cas, :value [1 2]}
 {:process :nemesis, :type :info, :f :start, :value "Cut off [:n3 #[:n4]]"}
 {:process 0 :type :ok :f :cas :value [1 2] :time 5}]`;
  const events = parseHistory(vector);
  t.equal(events.length, 2);
  t.same(
    events.map((e) => [e.process, e.type, e.f, e.value, e.line]),
    [
      [0, 'invoke', 'cas', [1, 2], 2],
      [0, 'ok', 'cas', [1, 2], 4],
    ],
  );
  t.equal(events[1]?.time, 5);
  t.equal(parseHistory(`({:process 0, :type :invoke, :f :read, :value nil})`).length, 1);
  t.equal(parseHistory(`{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0, :type :ok, :f :read, :value 3}`).length, 2);
  t.end();
});

void t.test('malformed events and pairings are typed errors with a line', (t) => {
  const bad: Array<[string, string, number]> = [
    ['[{:process 0, :type :invoke, :f :read}\n 42]', 'EHISTORY_SHAPE', 2],
    ['[{:process 0, :type :done, :f :read}]', 'EHISTORY_SHAPE', 1],
    ['[{:process [0], :type :ok, :f :read}]', 'EHISTORY_SHAPE', 1],
    ['[{:process 0, :type :ok}]', 'EHISTORY_SHAPE', 1],
    ['{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", "f": "read", "time": "x"}', 'EHISTORY_SHAPE', 2],
    ['{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok",', 'EHISTORY_SYNTAX', 2],
    ['[{:process 0, :type :invoke, :f :read}', 'EHISTORY_SYNTAX', 1],
    ['', 'EHISTORY_EMPTY', 0],
  ];
  for (const [text, code, line] of bad) {
    const e = thrown(() => pairOperations(parseHistory(text)));
    t.ok(e instanceof HistoryError && e.code === code && e.line === line, `${code}: ${JSON.stringify(text.slice(0, 30))}: ${String(e)}`);
  }
  const pairing: Array<[string, RegExp]> = [
    ['[{:process 0, :type :ok, :f :read}]', /without an invocation/],
    ['[{:process 0, :type :invoke, :f :read}\n{:process 0, :type :invoke, :f :write}]', /outstanding/],
    ['[{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f :write}]', /invoked read/],
  ];
  for (const [text, message] of pairing) {
    const e = thrown(() => pairOperations(parseHistory(text)));
    t.ok(e instanceof HistoryError && e.code === 'EHISTORY_PAIRING' && message.test(e.detail), `${message.source}: ${String(e)}`);
  }
  t.end();
});

void t.test('pairing: ok, fail, info and never-completed operations', (t) => {
  const ops = pairOperations(
    parseHistory(`[{:process 0, :type :invoke, :f :write, :value 1}
      {:process 1, :type :invoke, :f :read, :value nil}
      {:process 2, :type :invoke, :f :cas, :value [1 2]}
      {:process 0, :type :ok, :f :write, :value 1}
      {:process 1, :type :info, :f :read, :value nil}
      {:process 3, :type :invoke, :f :read, :value nil}
      {:process 3, :type :fail, :f :read, :value nil}]`),
  );
  t.same(
    ops.map((o) => [o.process, o.status, o.callIndex, o.returnIndex]),
    [
      [0, 'ok', 0, 3],
      [1, 'info', 1, Infinity],
      [2, 'info', 2, Infinity],
      [3, 'fail', 5, 6],
    ],
  );
  t.end();
});

void t.test('format detection, and EDN and JSON lines read the same history', (t) => {
  t.equal(detectFormat('{"process": 0}'), 'jsonl');
  t.equal(detectFormat('  {:process 0}'), 'edn');
  t.equal(detectFormat('; c\n[{:process 0}]'), 'edn');
  holds(
    t,
    'EDN and JSON lines round trips agree',
    fc.property(fc.integer(), fc.constantFrom('register' as const, 'kv' as const), (seed, workload) => {
      const events = generateHistory({ seed, processes: 4, operations: 30, workload, keys: 2 });
      const strip = (es: ReturnType<typeof parseHistory>) => es.map(({ line: _line, ...rest }) => ({ ...rest }));
      const a = strip(parseHistory(toEdn(events)));
      const b = strip(parseHistory(toJsonLines(events)));
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(a) === JSON.stringify(strip(events));
    }),
    100,
  );
  t.end();
});

void t.test('arbitrary text never crashes the reader: it parses or throws HistoryError', (t) => {
  const alphabet = fc.constantFrom(...'[]{}()":;,#_\\ \n0123456789-.abcnil:process:type:invoke'.split(''));
  holds(
    t,
    'fuzzed input',
    fc.property(fc.array(alphabet, { maxLength: 80 }), (chars) => {
      try {
        pairOperations(parseHistory(chars.join('')));
        return true;
      } catch (e) {
        return e instanceof HistoryError;
      }
    }),
    2000,
  );
  t.end();
});
