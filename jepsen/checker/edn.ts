/**
 * A small, strict reader for the subset of EDN that Jepsen histories use: nil, booleans, integers and
 * decimals, strings (with escapes), keywords, symbols, vectors, lists, maps, sets (`#{}`), `;` comments,
 * `#_` discards and commas as whitespace. No tagged literals, characters or ratios: those are errors.
 *
 * Representation: nil → null; keywords and symbols → their name as a string (`:cas` → "cas"), so a
 * keyword and a string of the same name read the same; vectors, lists and sets → arrays; maps → plain
 * objects keyed by the key's canonical text (see `canonicalKey`). Integers beyond 2^53 → bigint.
 *
 * Every error is an `EdnSyntaxError` with the 1-based line and column of the offending character.
 * No maintained npm package was vendored (jsedn is unmaintained; edn-data would fit but may not be
 * installed here), hence this reader.
 */

export type EdnValue = null | boolean | number | bigint | string | EdnValue[] | EdnMap;
export interface EdnMap {
  [key: string]: EdnValue;
}

/** Nesting of collections beyond this is refused (the reader recurses once per level). */
export const ednDepthMax = 256;

export class EdnSyntaxError extends Error {
  readonly code = 'EEDN_SYNTAX';
  constructor(
    readonly detail: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`EDN syntax error at line ${line}, column ${column}: ${detail}`);
    this.name = 'EdnSyntaxError';
  }
}

/** A value read at top level, with the position of its first character. */
export interface EdnForm {
  value: EdnValue;
  line: number;
  column: number;
  /** For a top-level vector, list or set: the position of each element. */
  items?: Array<{ line: number; column: number }>;
}

const delimiters = new Set(['(', ')', '[', ']', '{', '}', '"', ';', ',', ' ', '\t', '\n', '\r', '\f']);

/** Canonical text of a value: equal values (by EDN equality, keywords ≡ strings) give equal text. */
export function canonicalKey(value: EdnValue): string {
  if (value === null) return 'nil';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return Object.is(value, -0) ? '0' : String(value);
    case 'bigint':
      return String(value);
    case 'string':
      return JSON.stringify(value);
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalKey).join(' ')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${k} ${canonicalKey(value[k] ?? null)}`).join(', ')}}`;
}

/** Readable EDN-like text of a value, for reports. */
export function showEdn(value: EdnValue | undefined): string {
  if (value === undefined) return '?';
  if (value === null) return 'nil';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return `[${value.map(showEdn).join(' ')}]`;
  return `{${Object.keys(value)
    .map((k) => `${k} ${showEdn(value[k])}`)
    .join(', ')}}`;
}

/** Reads every top-level form of `text`. */
export function readEdnForms(text: string): EdnForm[] {
  const reader = new Reader(text);
  const forms: EdnForm[] = [];
  for (;;) {
    reader.skipSpace();
    if (reader.atEnd()) return forms;
    const line = reader.line;
    const column = reader.column;
    reader.items = [];
    const value = reader.readForm(0);
    if (value === discarded) continue;
    const form: EdnForm = { value, line, column };
    if (Array.isArray(value) && reader.items.length === value.length) form.items = reader.items;
    forms.push(form);
  }
}

const discarded = Symbol('discarded');

class Reader {
  private pos = 0;
  line = 1;
  column = 1;
  /** Positions of the elements of the top-level collection being read. */
  items: Array<{ line: number; column: number }> = [];

  constructor(private readonly text: string) {}

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  private peek(): string {
    return this.text.charAt(this.pos);
  }

  private next(): string {
    const c = this.text.charAt(this.pos);
    this.pos++;
    if (c === '\n') {
      this.line++;
      this.column = 1;
    } else {
      this.column++;
    }
    return c;
  }

  private fail(detail: string, line = this.line, column = this.column): never {
    throw new EdnSyntaxError(detail, line, column);
  }

  skipSpace(): void {
    while (!this.atEnd()) {
      const c = this.peek();
      if (c === ';') {
        while (!this.atEnd() && this.peek() !== '\n') this.next();
      } else if (c === ',' || c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f') {
        this.next();
      } else {
        return;
      }
    }
  }

  /** Reads one form; `discarded` for a `#_` form (its value is read and dropped). */
  readForm(depth: number): EdnValue | typeof discarded {
    if (depth > ednDepthMax) this.fail(`nesting deeper than ${ednDepthMax}`);
    const c = this.peek();
    switch (c) {
      case '[':
        this.next();
        return this.readSeq(']', depth);
      case '(':
        this.next();
        return this.readSeq(')', depth);
      case '{':
        return this.readMap(depth);
      case '"':
        return this.readString();
      case ':':
        return this.readKeyword();
      case '#':
        return this.readDispatch(depth);
      case ')':
      case ']':
      case '}':
        return this.fail(`unexpected '${c}'`);
      case '\\':
        return this.fail('character literals are not supported');
      default:
        return this.readAtom();
    }
  }

  private readValue(depth: number, closing: string, openLine: number, openColumn: number): EdnValue | typeof discarded | undefined {
    this.skipSpace();
    if (this.atEnd()) this.fail(`unterminated collection opened at line ${openLine}, column ${openColumn}`);
    if (this.peek() === closing) {
      this.next();
      return undefined;
    }
    return this.readForm(depth + 1);
  }

  private readSeq(closing: string, depth: number): EdnValue[] {
    const openLine = this.line;
    const openColumn = this.column - 1;
    const items: EdnValue[] = [];
    for (;;) {
      this.skipSpace();
      const at = { line: this.line, column: this.column };
      const v = this.readValue(depth, closing, openLine, openColumn);
      if (v === undefined) return items;
      if (v === discarded) continue;
      items.push(v);
      if (depth === 0) this.items.push(at);
    }
  }

  private readMap(depth: number): EdnMap {
    const openLine = this.line;
    const openColumn = this.column;
    this.next();
    const map: EdnMap = Object.create(null) as EdnMap;
    for (;;) {
      this.skipSpace();
      const keyLine = this.line;
      const keyColumn = this.column;
      const key = this.readValue(depth, '}', openLine, openColumn);
      if (key === undefined) return map;
      if (key === discarded) continue;
      let value: EdnValue | typeof discarded | undefined;
      do {
        value = this.readValue(depth, '}', openLine, openColumn);
      } while (value === discarded);
      if (value === undefined) this.fail('map has a key without a value', keyLine, keyColumn);
      const name = typeof key === 'string' ? key : canonicalKey(key);
      if (Object.prototype.hasOwnProperty.call(map, name)) this.fail(`duplicate map key ${showEdn(key)}`, keyLine, keyColumn);
      map[name] = value;
    }
  }

  private readDispatch(depth: number): EdnValue | typeof discarded {
    const line = this.line;
    const column = this.column;
    this.next();
    const c = this.peek();
    if (c === '{') {
      this.next();
      return this.readSeq('}', depth);
    }
    if (c === '_') {
      this.next();
      this.skipSpace();
      if (this.atEnd()) this.fail('#_ at end of input', line, column);
      this.readForm(depth + 1);
      return discarded;
    }
    return this.fail(`unsupported dispatch '#${c}'`, line, column);
  }

  private readString(): string {
    const line = this.line;
    const column = this.column;
    this.next();
    let out = '';
    for (;;) {
      if (this.atEnd()) this.fail('unterminated string', line, column);
      const c = this.next();
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      if (this.atEnd()) this.fail('unterminated string', line, column);
      const e = this.next();
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case '"':
        case '\\':
          out += e;
          break;
        case 'u': {
          const hex = this.text.slice(this.pos, this.pos + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape');
          for (let i = 0; i < 4; i++) this.next();
          out += String.fromCharCode(parseInt(hex, 16));
          break;
        }
        default:
          this.fail(`unknown string escape '\\${e}'`, this.line, this.column - 2);
      }
    }
  }

  private readToken(): string {
    const start = this.pos;
    while (!this.atEnd() && !delimiters.has(this.peek())) this.next();
    return this.text.slice(start, this.pos);
  }

  private readKeyword(): string {
    const line = this.line;
    const column = this.column;
    this.next();
    const name = this.readToken();
    if (name === '' || name.startsWith(':') || !/^[^#\\^@~`'"]+$/.test(name)) this.fail(`bad keyword ':${name}'`, line, column);
    return name;
  }

  private readAtom(): EdnValue {
    const line = this.line;
    const column = this.column;
    const token = this.readToken();
    if (token === '') this.fail(`unexpected character '${this.peek()}'`, line, column);
    if (token === 'nil') return null;
    if (token === 'true') return true;
    if (token === 'false') return false;
    if (/^[+-]?\d/.test(token)) return parseNumber(token, line, column);
    if (!/^[A-Za-z*!_?$%&=<>.+-][A-Za-z0-9*!_?$%&=<>.+\-:#/']*$/.test(token)) this.fail(`bad symbol '${token}'`, line, column);
    return token;
  }
}

function parseNumber(token: string, line: number, column: number): number | bigint {
  const integer = /^([+-]?)(0|[1-9]\d*)N?$/.exec(token);
  if (integer) {
    const digits = `${integer[1] ?? ''}${integer[2] ?? ''}`;
    const n = Number(digits);
    return Number.isSafeInteger(n) ? n : BigInt(digits);
  }
  if (/^[+-]?(0|[1-9]\d*)(\.\d*)?([eE][+-]?\d+)?M?$/.test(token)) {
    const n = Number(token.replace(/M$/, ''));
    if (Number.isFinite(n)) return n;
  }
  throw new EdnSyntaxError(`bad number '${token}'`, line, column);
}
