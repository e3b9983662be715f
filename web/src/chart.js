// Time-series chart on uPlot: aligned timestamps, optional stacking (the legend and hover
// show each series' own value, not the stacked sum), units on the axis and in the legend.
import { h } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { format, PALETTE } from './units.js';

// uPlot's default axis font, measured on a canvas of our own (uPlot caches its context's font).
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans", Arial, sans-serif';
let measure = null;
function textWidth(t) {
  if (!measure) {
    measure = document.createElement('canvas').getContext('2d');
    measure.font = AXIS_FONT;
  }
  return measure.measureText(t).width;
}

/** `{{label}}` templates as Grafana and Prometheus expand them; empty means the series name. */
export function legendName(metric, fmt) {
  if (fmt && fmt !== '__auto') {
    return fmt.replace(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g, (_, k) => metric[k] ?? '');
  }
  const { __name__: name = '', ...rest } = metric;
  const labels = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  if (!labels) return name || '{}';
  return `${name}{${labels}}`;
}

/** Whether a query result holds native histogram samples (which charts cannot plot). */
export function hasHistograms(data) {
  return !!data && Array.isArray(data.result)
    && data.result.some((s) => s.histogram || (s.histograms && s.histograms.length));
}

/** A native histogram sample's buckets as text: `(lower,upper]: count`, one per line, as
 * Prometheus's API describes them (boundary rule 0 `(]`, 1 `[)`, 2 `()`, 3 `[]`). */
export function histogramText(h) {
  const open = ['(', '[', '(', '['];
  const close = [']', ')', ')', ']'];
  const lines = [`count ${h.count}, sum ${h.sum}`];
  for (const [rule, lo, hi, c] of h.buckets || []) lines.push(`${open[rule] || '('}${lo},${hi}${close[rule] || ']'}: ${c}`);
  return lines.join('\n');
}

/** Aligns a matrix result onto [start, end] by `step`: uPlot's columnar data. */
export function align(result, start, end, step) {
  const xs = [];
  for (let t = start; t <= end + 1e-9; t += step) xs.push(Math.round(t * 1000) / 1000);
  const index = new Map(xs.map((t, i) => [t, i]));
  const ys = result.map((s) => {
    const col = new Array(xs.length).fill(null);
    for (const [t, v] of s.values || []) {
      const i = index.get(Math.round(t * 1000) / 1000);
      if (i !== undefined) col[i] = Number(v);
    }
    return col;
  });
  return [xs, ys];
}

/** A Grafana reducer (`calcs` id) over one series' values; NaN and gaps are skipped. */
export function reduce(values, calc) {
  const nums = values.filter((v) => v !== null && !Number.isNaN(v));
  if (!nums.length) return null;
  switch (calc) {
    case 'mean': return nums.reduce((a, b) => a + b, 0) / nums.length;
    case 'max': return Math.max(...nums);
    case 'min': return Math.min(...nums);
    case 'sum': return nums.reduce((a, b) => a + b, 0);
    case 'first': case 'firstNotNull': return nums[0];
    case 'last': return values[values.length - 1];
    case 'lastNotNull': default: return nums[nums.length - 1];
  }
}

const CALC_NAMES = { mean: 'Mean', max: 'Max', min: 'Min', sum: 'Total', first: 'First', firstNotNull: 'First', last: 'Last', lastNotNull: 'Last' };

/**
 * What a legend row shows without a cursor: the dashboard's legend calcs (Grafana's
 * `options.legend.calcs`), else the last value, so a row never reads "–" until hovered.
 */
export function legendValue(values, calcs, unit) {
  const list = calcs && calcs.length ? calcs : ['lastNotNull'];
  const one = list.length === 1 && !(calcs && calcs.length);
  return list.map((c) => {
    const v = format(reduce(values, c), unit);
    return one ? v : `${CALC_NAMES[c] || c} ${v}`;
  }).join('  ');
}

/**
 * Tick labels for `vals`: as few decimals as keep neighbouring ticks apart (0.0005 and 0.001
 * must not both read "0.001").
 */
export function tickLabels(vals, unit) {
  let labels = vals.map((v) => format(v, unit));
  for (let d = 1; d <= 6 && new Set(labels).size < vals.length; d++) {
    labels = vals.map((v) => format(v, unit, d));
  }
  return labels;
}

export function Chart({ series, xs, unit, stacked, fill = 10, height = 240, min, max, calcs }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current) return undefined;
    const raw = series.map((s) => s.values);
    // NaN and ±Inf are gaps in their own series, as Grafana draws them: uPlot takes its scale
    // from every value, so one non-finite point would leave the whole chart without a range.
    // The legend and hover still show the value itself (`raw`).
    let shown = raw.map((col) => col.map((v) => (Number.isFinite(v) ? v : null)));
    if (stacked) {
      const acc = new Array(xs.length).fill(0);
      shown = shown.map((col) => col.map((v, i) => {
        if (v === null) return null;
        acc[i] += v;
        return acc[i];
      }));
    }
    const opts = {
      width: Math.max(200, el.current.clientWidth),
      height,
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [min ?? Math.min(0, lo), max ?? (hi > lo ? hi : lo + 1)] } },
      axes: [
        // Room for "12:00" plus a date line; at 6 h the default 50 px ran labels together.
        { space: 80 },
        {
          values: (u, vals) => tickLabels(vals, unit),
          // As wide as the longest label: a fixed width clipped "1.77 MiB/s" to ".77 MiB/s".
          size: (u, values) => (values ? Math.ceil(Math.max(...values.map(textWidth))) + 18 : 50),
        },
      ],
      series: [
        {},
        ...series.map((s, i) => {
          const c = s.color || PALETTE[i % PALETTE.length];
          return {
            label: s.name,
            stroke: c,
            width: 1.25,
            fill: fill > 0 ? c + Math.round(Math.min(fill, 100) * 2.55).toString(16).padStart(2, '0') : undefined,
            spanGaps: false,
            // A series with only a point or two (a fresh appliance, a sparse metric) would
            // draw nothing as a line.
            points: { show: s.values.filter((v) => Number.isFinite(v)).length <= 2, size: 5 },
            value: (u, v, si, idx) => (idx === null || idx === undefined
              ? legendValue(raw[si - 1], calcs, unit)
              : format(raw[si - 1][idx], unit)),
          };
        }),
      ],
    };
    const plot = new uPlot(opts, [xs, ...shown], el.current);
    // The legend shares the panel's height with the plot and scrolls past 40 % of it, so
    // many series are never cut off below the panel's edge.
    const legend = plot.root.querySelector('.u-legend');
    const fit = () => {
      if (!el.current) return;
      const most = Math.floor(height * 0.4);
      if (legend) legend.style.maxHeight = `${most}px`;
      const lh = legend ? Math.min(legend.offsetHeight, most) : 0;
      plot.setSize({ width: Math.max(200, el.current.clientWidth), height: Math.max(60, height - lh) });
    };
    fit();
    const ro = new ResizeObserver(fit);
    ro.observe(el.current);
    return () => { ro.disconnect(); plot.destroy(); };
  }, [series, xs, unit, stacked, fill, height, min, max, calcs]);
  return h('div', { class: 'chart', ref: el, 'data-series': series.length });
}
