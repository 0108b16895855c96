/**
 * One readable line per pino record of a child process (pino-pretty is not a dependency):
 *
 *   18:20:01.532 meta1 INFO  metadata server started clientPort=7001 raftPort=7021 metricsPort=7011
 *
 * A line that is not a pino record (a crash trace on stderr) is kept as it is, under the process's name.
 */

/** One log line of a child, parsed. */
export interface LogRecord {
  /** The process: `meta1`, `cs2`, or `cluster` for the local cluster itself. */
  readonly name: string;
  /** Epoch ms (the record's own time when it has one). */
  readonly timeMs: number;
  /** pino level label, or `stderr` / `stdout` for a line that is not a record. */
  readonly level: string;
  readonly msg: string;
  /** The record's other fields (pid, hostname, time, level, msg removed). */
  readonly fields: Readonly<Record<string, unknown>>;
}

const levelLabels: Readonly<Record<number, string>> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** A printed field value longer than this is cut (a whole stack trace stays in the JSON logs only). */
const fieldCharsMax = 300;
const omitted = new Set(['pid', 'hostname', 'time', 'level', 'msg', 'v']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseLogLine(name: string, line: string, stream: 'stdout' | 'stderr', nowMs: number): LogRecord {
  if (line.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(line);
      if (isObject(parsed) && typeof parsed['level'] === 'number') {
        const fields: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(parsed)) if (!omitted.has(k)) fields[k] = v;
        return {
          name,
          timeMs: typeof parsed['time'] === 'number' ? parsed['time'] : nowMs,
          level: levelLabels[parsed['level']] ?? String(parsed['level']),
          msg: typeof parsed['msg'] === 'string' ? parsed['msg'] : '',
          fields,
        };
      }
    } catch {
      // not JSON after all: kept as text below
    }
  }
  return { name, timeMs: nowMs, level: stream, msg: line, fields: {} };
}

function fieldText(value: unknown): string {
  if (isObject(value) && typeof value['message'] === 'string') {
    // An error: its code and message, not the stack.
    const code = typeof value['code'] === 'string' && !value['message'].startsWith(value['code']) ? `${value['code']}: ` : '';
    return JSON.stringify(`${code}${value['message']}`);
  }
  const text = typeof value === 'string' ? (/[\s"=]/.test(value) || value === '' ? JSON.stringify(value) : value) : JSON.stringify(value) ?? String(value);
  return text.length > fieldCharsMax ? `${text.slice(0, fieldCharsMax)}…` : text;
}

function clock(timeMs: number): string {
  const d = new Date(timeMs);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** `time name LEVEL msg key=value …`; `nameWidth` aligns the names of one cluster. */
export function formatLogRecord(record: LogRecord, nameWidth = 5): string {
  const fields = Object.entries(record.fields).map(([k, v]) => `${k}=${fieldText(v)}`);
  const parts = [clock(record.timeMs), record.name.padEnd(nameWidth), record.level.toUpperCase().padEnd(5), record.msg, ...fields];
  return parts.filter((p) => p !== '').join(' ');
}
