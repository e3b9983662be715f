// Value formatting for Grafana's unit ids (the ones the dashboards and Explore use).

const SI = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
const IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

function num(v, decimals) {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  const d = decimals ?? (a === 0 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
  return v.toFixed(d).replace(/\.0+$|(\.\d*?)0+$/, '$1');
}

function scaled(v, base, units, suffix = '', decimals) {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= base && i < units.length - 1) { x /= base; i++; }
  return `${num(x, decimals)} ${(units[i] + suffix).trim()}`.trim();
}

function duration(s, d) {
  const a = Math.abs(s);
  if (a === 0) return '0 s';
  if (a < 1e-6) return `${num(s * 1e9, d)} ns`;
  if (a < 1e-3) return `${num(s * 1e6, d)} µs`;
  if (a < 1) return `${num(s * 1e3, d)} ms`;
  if (a < 60) return `${num(s, d)} s`;
  if (a < 3600) return `${num(s / 60, d)} min`;
  if (a < 86400) return `${num(s / 3600, d)} hour`;
  if (a < 86400 * 365) return `${num(s / 86400, d)} day`;
  return `${num(s / 86400 / 365, d)} year`;
}

// Grafana's date units take milliseconds (dashboards multiply `*_seconds` by 1000).
function fromNow(ms) {
  const d = (ms - Date.now()) / 1000;
  const t = duration(Math.abs(d));
  return d >= 0 ? `in ${t}` : `${t} ago`;
}

/** `v` formatted for Grafana unit `unit` (unknown units print the number). */
export function format(v, unit, decimals) {
  if (v === null || v === undefined) return '–';
  // As Grafana shows it: a NaN result (0/0 over an idle counter) is data, not a gap.
  if (Number.isNaN(v)) return 'NaN';
  switch (unit) {
    case 'percent': return `${num(v, decimals)}%`;
    case 'percentunit': return `${num(v * 100, decimals)}%`;
    case 'bytes': case 'decbytes': return scaled(v, unit === 'bytes' ? 1024 : 1000, unit === 'bytes' ? IEC : SI.map((p) => p + 'B'), '', decimals);
    case 'bits': return scaled(v, 1000, SI.map((p) => p + 'b'), '', decimals);
    case 'Bps': case 'binBps': return scaled(v, 1024, IEC, '/s', decimals);
    case 'bps': return scaled(v, 1000, SI.map((p) => p + 'b'), '/s', decimals);
    case 's': return duration(v, decimals);
    case 'ms': return duration(v / 1000, decimals);
    case 'µs': case 'us': return duration(v / 1e6, decimals);
    case 'ns': return duration(v / 1e9, decimals);
    case 'm': return duration(v * 60, decimals);
    case 'h': return duration(v * 3600, decimals);
    case 'd': return duration(v * 86400, decimals);
    case 'dtdurations': return duration(v, decimals);
    case 'ops': case 'opsps': return scaled(v, 1000, SI, ' ops/s', decimals);
    case 'reqps': return scaled(v, 1000, SI, ' req/s', decimals);
    case 'rps': return scaled(v, 1000, SI, ' rd/s', decimals);
    case 'wps': return scaled(v, 1000, SI, ' wr/s', decimals);
    case 'iops': return scaled(v, 1000, SI, ' io/s', decimals);
    case 'pps': return scaled(v, 1000, SI, ' p/s', decimals);
    case 'hertz': return scaled(v, 1000, SI, 'Hz', decimals);
    case 'celsius': return `${num(v, decimals)} °C`;
    case 'dateTimeFromNow': return fromNow(v);
    case 'dateTimeAsIso': return new Date(v).toISOString();
    case 'none': return num(v, decimals);
    case 'short': default: {
      const a = Math.abs(v);
      if (a < 1000) return num(v, decimals);
      return scaled(v, 1000, SI, '', decimals);
    }
  }
}

/** A Grafana colour name or CSS colour as CSS. */
export function color(c) {
  const named = {
    green: '#56a64b', red: '#e02f44', orange: '#ff9830', yellow: '#fade2a', blue: '#3274d9',
    purple: '#a352cc', 'dark-red': '#ad0317', 'dark-green': '#19730e', 'dark-orange': '#e55400',
    'dark-yellow': '#cc9d00', 'semi-dark-red': '#c4162a', 'semi-dark-green': '#37872d',
    text: '#333', transparent: 'transparent',
  };
  return named[c] || c || '#3274d9';
}

/** The threshold step colour for `v` (steps ascending, the first with value null). */
export function thresholdColor(v, thresholds) {
  const steps = (thresholds && thresholds.steps) || [];
  let c = steps.length ? steps[0].color : 'green';
  for (const s of steps) {
    if (s.value === null || s.value === undefined || v >= s.value) c = s.color;
  }
  return color(c);
}

export const PALETTE = ['#7eb26d', '#eab839', '#6ed0e0', '#ef843c', '#e24d42', '#1f78c1', '#ba43a9',
  '#705da0', '#508642', '#cca300', '#447ebc', '#c15c17', '#890f02', '#0a437c', '#6d1f62', '#584477'];

/** Go-style duration text for seconds (as PromQL's range selectors take). */
export function promDuration(sec) {
  sec = Math.max(1, Math.round(sec));
  if (sec % 86400 === 0) return `${sec / 86400}d`;
  if (sec % 3600 === 0) return `${sec / 3600}h`;
  if (sec % 60 === 0) return `${sec / 60}m`;
  return `${sec}s`;
}

/** Parses `5m`, `1h30m`, `2d` into seconds; null when it is not a duration. */
export function parseDuration(s) {
  const m = String(s).trim().match(/^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m(?!s))?((\d+)s)?((\d+)ms)?$/);
  if (!m || !s) return null;
  const n = (i) => Number(m[i] || 0);
  return n(2) * 31536000 + n(4) * 604800 + n(6) * 86400 + n(8) * 3600 + n(10) * 60 + n(12) + n(14) / 1000;
}

/** Grafana-style relative time `now-6h` (or a number of seconds) into Unix seconds. */
export function parseTime(s, now = Date.now() / 1000) {
  if (s === 'now') return now;
  const m = String(s).match(/^now-(.+)$/);
  if (m) {
    const d = parseDuration(m[1]);
    if (d !== null) return now - d;
  }
  const n = Number(s);
  if (isFinite(n)) return n;
  const t = Date.parse(s);
  return isFinite(t) ? t / 1000 : now;
}
