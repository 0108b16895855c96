/** Plain-text output helpers: human sizes, aligned tables, durations, and the put/get progress bar. */

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** 1536 -> "1.5 KiB"; below 1 KiB the exact byte count. */
export function humanBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function humanSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Rows of cells as columns separated by two spaces; the header row first. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  // A column of numbers (and '-' placeholders) aligns right.
  const numeric = header.map((_, i) => rows.some((r) => typeof r[i] === 'number') && rows.every((r) => typeof r[i] === 'number' || r[i] === '-'));
  return all
    .map((r) => r.map((cell, i) => (numeric[i] === true ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

export function isoTime(ms: number): string {
  return ms === 0 ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** How often the progress bar is redrawn, at most. */
const progressRedrawMs = 100;

/**
 * A one-line progress bar on a TTY stream: bytes done of total, percent, rate and ETA. Inactive (draws
 * nothing) when the stream is not a TTY, so scripts and pipes get clean output.
 */
export class ProgressBar {
  private done = 0;
  private lastDrawMs = 0;
  private readonly startMs = Date.now();

  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    private readonly label: string,
    private readonly totalBytes: number | undefined,
    private readonly active = stream.isTTY === true,
  ) {}

  advance(bytes: number): void {
    this.done += bytes;
    const now = Date.now();
    if (this.active && now - this.lastDrawMs >= progressRedrawMs) {
      this.lastDrawMs = now;
      this.draw(now);
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (!this.active) return;
    this.draw(Date.now());
    this.stream.write('\n');
  }

  /** Clears the line (on failure, before the error message). */
  abandon(): void {
    if (this.active) this.stream.write('\r\x1b[K');
  }

  private draw(nowMs: number): void {
    const seconds = Math.max((nowMs - this.startMs) / 1000, 0.001);
    const rate = this.done / seconds;
    let line: string;
    if (this.totalBytes !== undefined && this.totalBytes > 0) {
      const fraction = Math.min(this.done / this.totalBytes, 1);
      const barWidth = 24;
      const filled = Math.round(fraction * barWidth);
      const eta = rate > 0 ? (this.totalBytes - this.done) / rate : Infinity;
      line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${humanBytes(this.done)} / ${humanBytes(this.totalBytes)}  ${humanBytes(rate)}/s  ETA ${humanSeconds(eta)}`;
    } else {
      line = `${this.label} ${humanBytes(this.done)}  ${humanBytes(rate)}/s`;
    }
    const columns = this.stream.columns ?? 100;
    this.stream.write(`\r${line.slice(0, Math.max(columns - 1, 20))}\x1b[K`);
  }
}
