// Time-series chart on uPlot: aligned timestamps, optional stacking (the legend and hover
// show each series' own value, not the stacked sum), units on the axis and in the legend.
import { h } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { format, PALETTE } from './units.js';

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

export function Chart({ series, xs, unit, stacked, fill = 10, height = 240, min, max }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current) return undefined;
    const raw = series.map((s) => s.values);
    let shown = raw;
    if (stacked) {
      const acc = new Array(xs.length).fill(0);
      shown = raw.map((col) => col.map((v, i) => {
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
        {},
        { size: 70, values: (u, vals) => vals.map((v) => format(v, unit)) },
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
            points: { show: s.values.filter((v) => v !== null).length <= 2, size: 5 },
            value: (u, v, si, idx) => (idx === null || idx === undefined ? '–' : format(raw[si - 1][idx], unit)),
          };
        }),
      ],
    };
    const plot = new uPlot(opts, [xs, ...shown], el.current);
    const ro = new ResizeObserver(() => {
      if (el.current) plot.setSize({ width: Math.max(200, el.current.clientWidth), height });
    });
    ro.observe(el.current);
    return () => { ro.disconnect(); plot.destroy(); };
  }, [series, xs, unit, stacked, fill, height, min, max]);
  return h('div', { class: 'chart', ref: el, 'data-series': series.length });
}
