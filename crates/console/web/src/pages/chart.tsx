// Metrics charts: hand-drawn SVG line charts that refresh.
import { useState } from 'preact/hooks';
import { api, type S } from '../api';
import { ErrorBox, Spinner, bytes, usePoll } from '../lib';

const RANGES = [
  { since: '10m', label: '10 min', every: 10000 },
  { since: '1h', label: '1 hour', every: 20000 },
  { since: '1d', label: '1 day', every: 60000 },
  { since: '7d', label: '7 days', every: 120000 },
];

function fmtValue(v: number, unit: string): string {
  if (unit === 'bytes') return bytes(v);
  if (unit === 'bytes/s') return bytes(v) + '/s';
  if (unit === 'percent') return `${v.toFixed(1)}%`;
  const s = Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
  return unit ? `${s} ${unit}` : s;
}

const W = 320;
const H = 110;
const PAD = { l: 4, r: 4, t: 8, b: 16 };

/** One series as an SVG line chart (gaps in collection break the line). */
export function LineChart({ series, from, to }: { series: S['MetricSeries']; from: number; to: number }) {
  const pts = series.points ?? [];
  const values = pts.map((p) => p[1]);
  const max = Math.max(series.unit === 'percent' ? 100 : 0, ...values, 1e-9);
  const span = Math.max(1, to - from);
  const x = (t: number) => PAD.l + ((t - from) / span) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  // Split into runs at gaps (more than 2.5 steps apart).
  const runs: string[] = [];
  let cur: string[] = [];
  let last = -Infinity;
  const step = pts.length > 1 ? Math.min(...pts.slice(1).map((p, i) => p[0] - pts[i][0])) : 10;
  for (const [t, v] of pts) {
    if (t - last > step * 2.5 && cur.length) {
      runs.push(cur.join(' '));
      cur = [];
    }
    cur.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    last = t;
  }
  if (cur.length) runs.push(cur.join(' '));
  const latest = values.length ? values[values.length - 1] : null;
  return (
    <figure class="chart" data-testid="metrics-chart" data-series={series.name} data-points={pts.length}>
      <figcaption>
        <span class="trunc" title={series.name}>{series.name}</span>
        <b>{latest === null ? 'no data' : fmtValue(latest, series.unit)}</b>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${series.name}: ${pts.length} points, max ${fmtValue(max, series.unit)}`} preserveAspectRatio="none">
        <line x1={PAD.l} x2={W - PAD.r} y1={H - PAD.b} y2={H - PAD.b} class="axis" />
        <line x1={PAD.l} x2={W - PAD.r} y1={PAD.t} y2={PAD.t} class="grid" />
        {runs.map((r) =>
          r.includes(' ') ? <polyline points={r} class="line" data-testid="chart-line" /> : <circle cx={r.split(',')[0]} cy={r.split(',')[1]} r="1.8" class="dot" data-testid="chart-line" />,
        )}
        <text x={PAD.l} y={H - 3} class="tick">{new Date(from * 1000).toLocaleTimeString()}</text>
        <text x={W - PAD.r} y={H - 3} class="tick end">{new Date(to * 1000).toLocaleTimeString()}</text>
        <text x={W - PAD.r} y={PAD.t + 9} class="tick end">{fmtValue(max, series.unit)}</text>
      </svg>
    </figure>
  );
}

/** The metrics of an object, refreshed; a range picker. */
export function MetricsPanel({ kind, id, series }: { kind: 'instances' | 'hosts' | 'volumes' | 'load-balancers' | 'elastic-ips'; id: string; series?: string }) {
  const [range, setRange] = useState(RANGES[0]);
  const m = usePoll((sig) => api.metrics(kind, id, { since: range.since, series }, sig), [kind, id, range.since, series], range.every);
  return (
    <section class="card" data-testid="metrics">
      <header class="card-head">
        <h2>Metrics</h2>
        <label>
          <span class="sr-only">Time range</span>
          <select value={range.since} onChange={(e) => setRange(RANGES.find((r) => r.since === (e.target as HTMLSelectElement).value) ?? RANGES[0])} data-testid="metrics-range">
            {RANGES.map((r) => <option value={r.since}>{r.label}</option>)}
          </select>
        </label>
      </header>
      <ErrorBox error={m.error} />
      {m.loading && !m.data && <Spinner />}
      {m.data && !m.data.series.length && <p class="muted">No metrics yet: they are collected every 10 seconds while it runs.</p>}
      <div class="charts">
        {m.data?.series.map((s) => <LineChart series={s} from={m.data!.from} to={m.data!.to} />)}
      </div>
    </section>
  );
}
