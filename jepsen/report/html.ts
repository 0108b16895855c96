/**
 * `index.html` of a run: a self-contained page (inline SVG and CSS, no script, no external resource) with
 *   - a summary (workload, nemesis, seed, counts, verdict),
 *   - a timeline: one row per process, one bar per operation from invoke to completion, coloured by outcome
 *     (ok green, fail red, info orange), fault intervals shaded with their names,
 *   - latency over time (one dot per completed op, log scale) and throughput per second by outcome,
 *   - the nemesis log as a table.
 * Hovering a bar or dot shows the op (SVG <title>).
 */
import type { HistoryEvent } from '../harness/history.ts';
import type { NemesisLogEntry } from '../nemesis/index.ts';

export interface ReportInput {
  readonly title: string;
  readonly summary: Readonly<Record<string, string | number>>;
  readonly history: readonly HistoryEvent[];
  readonly nemesis: readonly NemesisLogEntry[];
  readonly verdict: string;
}

interface Op {
  readonly process: number;
  readonly f: string;
  readonly key: string;
  readonly invokeValue: unknown;
  readonly startNs: number;
  readonly endNs: number;
  readonly type: 'ok' | 'fail' | 'info';
  readonly value: unknown;
  readonly error: string | undefined;
}

interface Interval {
  readonly label: string;
  readonly startNs: number;
  readonly endNs: number;
}

const colors = { ok: '#3a9d4a', fail: '#d9534f', info: '#f0a030' } as const;
const width = 1100;
const marginLeft = 60;
const marginRight = 20;
const plotWidth = width - marginLeft - marginRight;
/** Rows above this are drawn thinner rather than making the page endless. */
const timelineHeightMax = 900;

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Pairs each invoke with its completion (an op never completed ends at the last event, as info). */
export function pairOps(history: readonly HistoryEvent[]): Op[] {
  const open = new Map<number, HistoryEvent>();
  const ops: Op[] = [];
  const lastNs = history.at(-1)?.time ?? 0;
  for (const e of history) {
    if (e.type === 'invoke') {
      open.set(e.process, e);
      continue;
    }
    const inv = open.get(e.process);
    if (inv === undefined) continue;
    open.delete(e.process);
    ops.push({ process: e.process, f: e.f, key: e.key, invokeValue: inv.value, startNs: inv.time, endNs: e.time, type: e.type, value: e.value, error: e.error });
  }
  for (const inv of open.values()) {
    ops.push({ process: inv.process, f: inv.f, key: inv.key, invokeValue: inv.value, startNs: inv.time, endNs: lastNs, type: 'info', value: null, error: 'never completed' });
  }
  return ops;
}

function faultIntervals(entries: readonly NemesisLogEntry[], endNs: number): Interval[] {
  const started = new Map<number, NemesisLogEntry>();
  const out: Interval[] = [];
  for (const e of entries) {
    if (e.type === 'start') started.set(e.id, e);
    if (e.type === 'heal') {
      const s = started.get(e.id);
      if (s === undefined) continue;
      started.delete(e.id);
      out.push({ label: `${s.nemesis} ${s.variant} ${(s.targets ?? []).join(',')}`, startNs: s.time, endNs: e.time });
    }
  }
  for (const s of started.values()) out.push({ label: `${s.nemesis} ${s.variant} ${(s.targets ?? []).join(',')} (not healed)`, startNs: s.time, endNs });
  return out;
}

function opTitle(op: Op): string {
  const ms = ((op.endNs - op.startNs) / 1e6).toFixed(1);
  return `p${op.process} ${op.f} ${op.key} ${JSON.stringify(op.invokeValue)} → ${op.type} ${JSON.stringify(op.value)}${op.error !== undefined ? ` (${op.error})` : ''}, ${ms} ms, at ${(op.startNs / 1e9).toFixed(3)} s`;
}

function timeAxis(x: (ns: number) => number, endNs: number, y: number): string {
  const seconds = endNs / 1e9;
  const step = seconds > 300 ? 60 : seconds > 60 ? 10 : seconds > 20 ? 5 : 1;
  const parts: string[] = [];
  for (let s = 0; s <= seconds; s += step) {
    const px = x(s * 1e9);
    parts.push(`<line x1="${px}" y1="${y}" x2="${px}" y2="${y + 4}" stroke="#555"/><text x="${px}" y="${y + 15}" font-size="10" text-anchor="middle">${s}s</text>`);
  }
  return parts.join('');
}

function shading(intervals: readonly Interval[], x: (ns: number) => number, top: number, height: number, labels: boolean): string {
  return intervals
    .map((iv, i) => {
      const x0 = x(iv.startNs);
      const w = Math.max(1, x(iv.endNs) - x0);
      const label = labels ? `<text x="${x0 + 2}" y="${top + 10 + (i % 3) * 11}" font-size="9" fill="#444">${escapeHtml(iv.label)}</text>` : '';
      return `<rect x="${x0}" y="${top}" width="${w}" height="${height}" fill="#8080a0" fill-opacity="0.18"><title>${escapeHtml(iv.label)}</title></rect>${label}`;
    })
    .join('');
}

function timeline(ops: readonly Op[], intervals: readonly Interval[], endNs: number): string {
  const processes = [...new Set(ops.map((o) => o.process))].sort((a, b) => a - b);
  const row = new Map(processes.map((p, i) => [p, i]));
  const rowHeight = Math.max(2, Math.min(14, Math.floor(timelineHeightMax / Math.max(1, processes.length))));
  const top = 36;
  const height = top + processes.length * rowHeight + 24;
  const x = (ns: number): number => marginLeft + (endNs === 0 ? 0 : (ns / endNs) * plotWidth);
  const bars = ops
    .map((op) => {
      const y = top + (row.get(op.process) ?? 0) * rowHeight;
      const w = Math.max(1, x(op.endNs) - x(op.startNs));
      return `<rect x="${x(op.startNs).toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${Math.max(1, rowHeight - 1)}" fill="${colors[op.type]}"><title>${escapeHtml(opTitle(op))}</title></rect>`;
    })
    .join('');
  const labelEvery = Math.max(1, Math.ceil(10 / rowHeight));
  const labels = processes
    .map((p, i) => (i % labelEvery === 0 ? `<text x="${marginLeft - 4}" y="${top + i * rowHeight + rowHeight - 2}" font-size="9" text-anchor="end">p${p}</text>` : ''))
    .join('');
  return `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${shading(intervals, x, 0, height - 20, true)}${bars}${labels}${timeAxis(x, endNs, height - 20)}</svg>`;
}

function latencyPlot(ops: readonly Op[], intervals: readonly Interval[], endNs: number): string {
  const height = 260;
  const top = 10;
  const bottom = height - 24;
  const x = (ns: number): number => marginLeft + (endNs === 0 ? 0 : (ns / endNs) * plotWidth);
  const latencies = ops.map((o) => Math.max(0.1, (o.endNs - o.startNs) / 1e6));
  const maxMs = Math.max(10, ...latencies);
  const logMax = Math.log10(maxMs);
  const logMin = -1;
  const y = (ms: number): number => bottom - ((Math.log10(Math.max(0.1, ms)) - logMin) / (logMax - logMin)) * (bottom - top);
  const dots = ops
    .map((o, i) => `<circle cx="${x(o.endNs).toFixed(1)}" cy="${y(latencies[i]!).toFixed(1)}" r="1.6" fill="${colors[o.type]}"><title>${escapeHtml(opTitle(o))}</title></circle>`)
    .join('');
  const ticks: string[] = [];
  for (let p = 0; p <= Math.ceil(logMax); p++) {
    const ms = 10 ** p;
    if (ms > maxMs * 1.01 && p > 1) break;
    ticks.push(`<line x1="${marginLeft}" y1="${y(ms)}" x2="${width - marginRight}" y2="${y(ms)}" stroke="#ddd"/><text x="${marginLeft - 4}" y="${y(ms) + 3}" font-size="9" text-anchor="end">${ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`}</text>`);
  }
  return `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${ticks.join('')}${shading(intervals, x, top, bottom - top, false)}${dots}${timeAxis(x, endNs, bottom)}</svg>`;
}

function throughputPlot(ops: readonly Op[], intervals: readonly Interval[], endNs: number): string {
  const height = 200;
  const top = 10;
  const bottom = height - 24;
  const seconds = Math.max(1, Math.ceil(endNs / 1e9));
  const x = (ns: number): number => marginLeft + (endNs === 0 ? 0 : (ns / endNs) * plotWidth);
  const buckets = { ok: new Array<number>(seconds).fill(0), fail: new Array<number>(seconds).fill(0), info: new Array<number>(seconds).fill(0) };
  for (const o of ops) buckets[o.type][Math.min(seconds - 1, Math.floor(o.endNs / 1e9))]! += 1;
  const maxRate = Math.max(1, ...buckets.ok, ...buckets.fail, ...buckets.info);
  const y = (rate: number): number => bottom - (rate / maxRate) * (bottom - top);
  const lines = (['ok', 'fail', 'info'] as const)
    .map((t) => {
      const points = buckets[t].map((r, s) => `${x(Math.min(endNs, (s + 0.5) * 1e9)).toFixed(1)},${y(r).toFixed(1)}`).join(' ');
      return `<polyline points="${points}" fill="none" stroke="${colors[t]}" stroke-width="1.5"/>`;
    })
    .join('');
  const ticks = [0, maxRate / 2, maxRate]
    .map((r) => `<line x1="${marginLeft}" y1="${y(r)}" x2="${width - marginRight}" y2="${y(r)}" stroke="#ddd"/><text x="${marginLeft - 4}" y="${y(r) + 3}" font-size="9" text-anchor="end">${r.toFixed(0)}/s</text>`)
    .join('');
  return `<svg width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">${ticks}${shading(intervals, x, top, bottom - top, false)}${lines}${timeAxis(x, endNs, bottom)}</svg>`;
}

export function renderReport(input: ReportInput): string {
  const ops = pairOps(input.history);
  const endNs = Math.max(input.history.at(-1)?.time ?? 0, input.nemesis.at(-1)?.time ?? 0, 1);
  const intervals = faultIntervals(input.nemesis, endNs);
  const summaryRows = Object.entries(input.summary)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join('');
  const nemesisRows = input.nemesis
    .map(
      (e) =>
        `<tr><td>${(e.time / 1e9).toFixed(3)}</td><td>${e.type}</td><td>${e.id}</td><td>${escapeHtml(e.nemesis)}</td><td>${escapeHtml(e.variant)}</td><td>${escapeHtml((e.targets ?? []).join(', '))}</td><td><code>${escapeHtml(JSON.stringify(e.detail ?? {}))}</code></td></tr>`,
    )
    .join('');
  const legend = (['ok', 'fail', 'info'] as const).map((t) => `<span style="color:${colors[t]}">■</span> ${t}`).join(' &nbsp; ');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(input.title)}</title>
<style>body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}code{font-size:11px}h2{margin-top:28px}.verdict{font-size:18px;font-weight:bold}</style>
</head><body>
<h1>${escapeHtml(input.title)}</h1>
<p class="verdict">verdict: ${escapeHtml(input.verdict)}</p>
<table>${summaryRows}</table>
<h2>Timeline</h2><p>One row per process, one bar per operation (invoke to completion). ${legend} &nbsp; <span style="background:#8080a0;opacity:.4">&nbsp;&nbsp;&nbsp;</span> fault active</p>
${timeline(ops, intervals, endNs)}
<h2>Latency</h2><p>Each completed operation at its completion time (log scale).</p>
${latencyPlot(ops, intervals, endNs)}
<h2>Throughput</h2><p>Operations completed per second, by outcome.</p>
${throughputPlot(ops, intervals, endNs)}
<h2>Nemesis log</h2>
<table><tr><th>time (s)</th><th>type</th><th>id</th><th>nemesis</th><th>variant</th><th>targets</th><th>detail</th></tr>${nemesisRows}</table>
</body></html>
`;
}
