// Grafana dashboards (`dashboards/*.json`) rendered natively: rows, timeseries, stat, gauge,
// bargauge and table panels; query/custom/interval variables; Grafana's $__ variables; units,
// thresholds, legend formats; time picker and refresh. The same files provision Grafana.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { html, parseHash, setParams, usePoll, ErrorBox, TimePicker } from '../ui.js';
import * as api from '../api.js';
import { Chart, align, legendName, reduce, hasHistograms } from '../chart.js';
import { format, thresholdColor, parseDuration, parseTime, promDuration, PALETTE, color } from '../units.js';

/** Assumed scrape interval for `$__rate_interval`, as Grafana's data source default. */
const SCRAPE = 15;
const ROW_PX = 30;
// The grid's gap between rows (`.grid24`), part of a panel's height too.
const GAP_PX = 8;

export function DashboardList() {
  const [d, err] = usePoll(() => api.get('api/v1/ui/dashboards'), 0);
  return html`<section>
    <${ErrorBox} error=${err} />
    <h2>Dashboards</h2>
    ${d && html`<ul class="dash-list">${d.map((x) => html`<li><a href=${`#/dashboards/${encodeURIComponent(x.uid)}`}>${x.title}</a>
      ${x.description && html` <span class="muted">— ${x.description}</span>`}
      ${(x.tags || []).map((t) => html` <span class="tag">${t}</span>`)}</li>`)}</ul>`}
  </section>`;
}

/** Grafana's escaping for Prometheus: a value inside a PromQL string, so backslashes and
 * quotes are escaped; for multi-value or "All" variables regex metacharacters too. */
function regularEscape(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\\\'");
}
function regexEscape(v) {
  return String(v).replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&');
}

/** Grafana's interpolation of `$v`, `${v}`, `${v:fmt}` and `[[v]]`. A variable is a plain
 * string (built-ins) or `{ value, regex, raw }` (dashboard variables; `raw` for allValue). */
export function interpolate(text, vars) {
  const value = (name, fmt) => {
    if (!(name in vars)) return null;
    const v = vars[name];
    if (typeof v !== 'object' || v === null) return String(v);
    const list = [].concat(v.value);
    if (fmt === 'csv') return list.join(',');
    if (fmt === 'pipe') return list.join('|');
    if (fmt === 'raw' || v.raw) return list.join(',');
    if (fmt === 'regex') return list.length === 1 ? regexEscape(list[0]) : `(${list.map(regexEscape).join('|')})`;
    if (!v.regex) return regularEscape(list[0] ?? '');
    return list.length === 1 ? regexEscape(list[0]) : `(${list.map(regexEscape).join('|')})`;
  };
  return text.replace(/\$\{([a-zA-Z0-9_]+)(?::([a-zA-Z]+))?\}|\[\[([a-zA-Z0-9_]+)\]\]|\$([a-zA-Z0-9_]+)/g,
    (all, a, fmt, b, c) => {
      const r = value(a || b || c, fmt);
      return r === null ? all : r;
    });
}

/** The built-in `$__` variables for a time range and a panel's width in pixels. */
export function builtins(from, to, widthPx = 1000) {
  const rangeS = Math.max(1, Math.round(to - from));
  const interval = Math.max(SCRAPE, Math.ceil(rangeS / Math.max(100, widthPx)));
  const rate = Math.max(interval + SCRAPE, 4 * SCRAPE);
  return {
    __interval: promDuration(interval), __interval_ms: String(interval * 1000),
    __rate_interval: promDuration(rate), __range: `${rangeS}s`, __range_s: String(rangeS),
    __range_ms: String(rangeS * 1000), __step: interval,
  };
}

async function variableOptions(v, vars, from, to) {
  const q = typeof v.query === 'string' ? v.query : (v.query && v.query.query) || '';
  switch (v.type) {
    case 'custom':
      return q.split(',').map((s) => s.trim()).filter(Boolean).map((s) => (s.includes(' : ') ? s.split(' : ')[1] : s));
    case 'interval':
      return q.split(',').map((s) => s.trim()).filter(Boolean);
    case 'constant': case 'textbox':
      return [q];
    case 'query': {
      const expr = interpolate(q, vars);
      const p = { start: String(Math.floor(from)), end: String(Math.ceil(to)) };
      let out = [];
      let m = expr.match(/^\s*label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/);
      if (m) out = await api.get(`api/v1/label/${m[2]}/values`, { ...p, 'match[]': m[1] });
      else if ((m = expr.match(/^\s*label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/))) out = await api.get(`api/v1/label/${m[1]}/values`, p);
      else if ((m = expr.match(/^\s*metrics\((.*)\)\s*$/))) {
        const re = new RegExp(m[1].trim() || '.*');
        out = (await api.get('api/v1/label/__name__/values', p)).filter((n) => re.test(n));
      } else if ((m = expr.match(/^\s*query_result\((.+)\)\s*$/))) {
        const b = await api.instant(m[1], to);
        const r = b.data.resultType === 'vector' ? b.data.result : [];
        out = r.filter((s) => s.value).map((s) => `${legendName(s.metric, '')} ${s.value[1]} ${s.value[0] * 1000}`);
      }
      if (v.regex) {
        const mm = v.regex.match(/^\/(.*)\/([a-z]*)$/);
        const re = new RegExp(mm ? mm[1] : v.regex, mm ? mm[2] : '');
        out = out.map((s) => { const x = s.match(re); return x ? (x[1] !== undefined ? x[1] : x[0]) : null; }).filter((s) => s !== null);
      }
      out = [...new Set(out)];
      if (v.sort === 1 || v.sort === 5) out.sort();
      if (v.sort === 2 || v.sort === 6) out.sort().reverse();
      if (v.sort === 3) out.sort((a, b) => Number(a) - Number(b));
      return out;
    }
    default:
      return [];
  }
}

const ALL = '$__all';

/** Resolves every variable in order (later ones may use earlier ones). */
async function resolveVariables(list, params, from, to) {
  const vars = { datasource: 'appliance', ...builtins(from, to) };
  const state = [];
  for (const v of list || []) {
    if (v.type === 'datasource' || v.type === 'adhoc') continue;
    let options = [];
    let error = null;
    try { options = await variableOptions(v, vars, from, to); } catch (e) { error = e; }
    const fromUrl = params.getAll(`var-${v.name}`);
    const cur = v.current && v.current.value !== undefined ? [].concat(v.current.value) : [];
    let selected = fromUrl.length ? fromUrl : cur.filter((x) => x === ALL || x === '$__all' || options.includes(x));
    if (!selected.length) selected = v.includeAll ? [ALL] : options.length ? [options[0]] : [];
    if (!v.multi && selected.length > 1) selected = [selected[0]];
    const regex = !!(v.multi || v.includeAll);
    let entry;
    if (selected.includes(ALL)) {
      entry = v.allValue ? { value: v.allValue, raw: true } : options.length ? { value: [...options], regex: true } : { value: '.*', raw: true };
    } else {
      entry = { value: v.multi ? selected : selected[0] ?? '', regex };
    }
    vars[v.name] = v.type === 'interval' && entry.value === 'auto' ? vars.__interval : entry;
    state.push({ v, options, selected, error });
  }
  return { vars, state };
}

/**
 * What a multi-value selection becomes when `value` is ticked or unticked in the list:
 * "All" stands alone, ticking a value drops "All", and an empty choice falls back to "All"
 * (or the first value), as Grafana's picker does.
 */
export function toggleChoice(selected, value, options, includeAll) {
  let next;
  if (value === ALL) next = [ALL];
  else if (selected.includes(value)) next = selected.filter((x) => x !== value);
  else next = [...selected.filter((x) => x !== ALL), value];
  if (!next.length) next = includeAll ? [ALL] : options.slice(0, 1);
  return next;
}

// A multi-value variable: a button showing the choice, opening a list of checkboxes.
function MultiPicker({ v, options, selected, onChange }) {
  const [open, setOpen] = useState(false);
  const ref = useRef(null);
  useEffect(() => {
    if (!open) return undefined;
    const away = (e) => { if (ref.current && !ref.current.contains(e.target)) setOpen(false); };
    const esc = (e) => { if (e.key === 'Escape') setOpen(false); };
    addEventListener('mousedown', away);
    addEventListener('keydown', esc);
    return () => { removeEventListener('mousedown', away); removeEventListener('keydown', esc); };
  }, [open]);
  const label = selected.includes(ALL) ? 'All' : selected.join(' + ') || 'None';
  const item = (value, text) => html`<label class="pick-item"><input type="checkbox" value=${value}
    checked=${selected.includes(value)} onChange=${() => onChange(toggleChoice(selected, value, options, v.includeAll))} /> ${text}</label>`;
  return html`<span class="multi-picker" ref=${ref}>
    <button type="button" class="pick-button" aria-label=${`variable ${v.name}`} aria-haspopup="listbox" aria-expanded=${open}
      title=${label} onClick=${() => setOpen(!open)}>${label} ▾</button>
    ${open && html`<div class="pick-list" role="listbox" aria-multiselectable="true">
      ${v.includeAll && item(ALL, 'All')}
      ${options.map((o) => item(o, o))}
    </div>`}
  </span>`;
}

function Variables({ state, onChange }) {
  return html`<div class="variables">${state.filter((s) => s.v.hide !== 2).map(({ v, options, selected, error }) => html`<div class="variable">
    <span>${v.label || v.name}</span>
    ${v.multi ? html`<${MultiPicker} v=${v} options=${options} selected=${selected} onChange=${(vals) => onChange(v.name, vals)} />`
      : html`<select aria-label=${`variable ${v.name}`} onChange=${(e) => onChange(v.name, [e.target.value])}>
      ${v.includeAll && html`<option value=${ALL} selected=${selected.includes(ALL)}>All</option>`}
      ${options.map((o) => html`<option value=${o} selected=${selected.includes(o)}>${o}</option>`)}
    </select>`}${error && html`<span class="err-text" title=${String(error.message)}>!</span>`}</div>`)}</div>`;
}

export function Dashboard({ uid }) {
  const params = parseHash().params;
  const [dash, setDash] = useState(null);
  const [err, setErr] = useState(null);
  const [range, setRange] = useState(params.get('range') || null);
  const [refresh, setRefresh] = useState(params.get('refresh') || null);
  const [varSel, setVarSel] = useState(() => {
    const o = {};
    for (const [k, v] of params.entries()) if (k.startsWith('var-')) (o[k.slice(4)] = o[k.slice(4)] || []).push(v);
    return o;
  });
  const [resolved, setResolved] = useState(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    api.get(`api/v1/ui/dashboards/${encodeURIComponent(uid)}`).then((d) => {
      setDash(d);
      if (!range) setRange((d.time && d.time.from && d.time.from.replace(/^now-/, '')) || '6h');
      if (!refresh) setRefresh(d.refresh || 'off');
    }, setErr);
  }, [uid]);

  const effRange = range || '6h';
  useEffect(() => {
    if (!dash) return;
    const to = Date.now() / 1000;
    const from = parseTime(`now-${effRange}`, to);
    const p = new URLSearchParams();
    for (const [k, vs] of Object.entries(varSel)) for (const v of vs) p.append(`var-${k}`, v);
    resolveVariables(dash.templating && dash.templating.list, p, from, to)
      .then((r) => setResolved({ ...r, from, to }), setErr);
    setParams({ range: effRange, refresh, ...Object.fromEntries(Object.entries(varSel).map(([k, v]) => [`var-${k}`, v])) });
  }, [dash, effRange, varSel, tick]);

  useEffect(() => {
    const secs = refresh && refresh !== 'off' ? parseDuration(refresh) : 0;
    if (!secs) return undefined;
    const t = setInterval(() => setTick((n) => n + 1), secs * 1000);
    return () => clearInterval(t);
  }, [refresh]);

  const [collapsed, setCollapsed] = useState({});
  const panels = useMemo(() => {
    if (!dash) return [];
    const out = [];
    for (const p of dash.panels || []) {
      out.push(p);
      if (p.type === 'row' && p.collapsed && collapsed[p.id]) for (const c of p.panels || []) out.push(c);
    }
    return out;
  }, [dash, collapsed]);

  if (err) return html`<${ErrorBox} error=${err} />`;
  if (!dash || !resolved) return html`<p class="muted">Loading…</p>`;
  return html`<section class="dashboard" data-uid=${uid}>
    <div class="dash-head">
      <h2>${dash.title}</h2>
      <${TimePicker} range=${effRange} onRange=${setRange} refresh=${refresh} onRefresh=${setRefresh} />
      <button onClick=${() => setTick((n) => n + 1)} aria-label="refresh now">↻</button>
    </div>
    <${Variables} state=${resolved.state} onChange=${(name, vals) => setVarSel({ ...varSel, [name]: vals })} />
    <div class="grid24">
      ${panels.map((p) => html`<${Panel} key=${`${p.id}-${tick}`} p=${p} r=${resolved} onToggle=${() => setCollapsed({ ...collapsed, [p.id]: !collapsed[p.id] })} />`)}
    </div>
  </section>`;
}

function gridStyle(g) {
  const gp = g || { x: 0, y: 0, w: 12, h: 8 };
  return `grid-column: ${gp.x + 1} / span ${gp.w}; grid-row: ${gp.y + 1} / span ${gp.h};`;
}

function Panel({ p, r, onToggle }) {
  if (p.type === 'row') {
    return html`<div class="row-head" style=${gridStyle({ ...p.gridPos, h: 1 })} onClick=${onToggle}>${p.title}</div>`;
  }
  const Kind = {
    timeseries: TimeSeries, graph: TimeSeries, stat: Stat, singlestat: Stat, gauge: Gauge,
    bargauge: BarGauge, table: Table, 'table-old': Table, text: Text,
  }[p.type];
  // Other panel types (from a user's own dashboards) are named, not treated as failures.
  return html`<div class="panel" data-type=${p.type} data-title=${p.title} style=${gridStyle(p.gridPos)}>
    <div class="panel-title" title=${p.description || ''}>${interpolate(p.title || '', r.vars)}</div>
    <div class="panel-body">${Kind ? html`<${Kind} p=${p} r=${r} />` : html`<div class="no-data unsupported">The ${p.type} panel is shown in Grafana only</div>`}</div>
  </div>`;
}

/** A text panel: its content as plain text (markdown and HTML are not rendered). */
function Text({ p, r }) {
  const content = (p.options && p.options.content) || p.content || '';
  return html`<div class="text-panel">${interpolate(content, r.vars)}</div>`;
}

/** Runs the panel's targets; `instant` for tables and instant targets. */
function usePanelData(p, r) {
  const [s, setS] = useState({ loading: true });
  useEffect(() => {
    let live = true;
    const vars = { ...r.vars, ...builtins(r.from, r.to, 1000 * ((p.gridPos && p.gridPos.w) || 12) / 24) };
    const span = r.to - r.from;
    const step = Math.max(parseDuration(p.interval || '') || 0, Math.max(SCRAPE, Math.ceil(span / 300)));
    const targets = (p.targets || []).filter((t) => t.expr && !t.hide);
    // The last point is "now", so a stat's last value is current even on a long range.
    const from = r.to - Math.floor(span / step) * step;
    Promise.all(targets.map((t) => {
      const expr = interpolate(t.expr, vars);
      const instant = p.type === 'table' || t.format === 'table' || (t.instant && !t.range);
      return (instant ? api.instant(expr, r.to) : api.range(expr, from, r.to, step))
        .then((b) => ({ t, b, instant, expr }));
    })).then((res) => live && setS({ res, step, from, to: r.to }),
      (error) => live && setS({ error }));
    return () => { live = false; };
  }, [p, r]);
  return s;
}

function seriesOf(s, p) {
  const out = [];
  for (const { t, b } of s.res) {
    const d = b.data;
    if (d.resultType === 'matrix') {
      const [xs, ys] = align(d.result, s.from, s.to, s.step);
      d.result.forEach((m, i) => m.values && out.push({ name: legendName(m.metric, t.legendFormat), metric: m.metric, xs, values: ys[i], refId: t.refId }));
    } else if (d.resultType === 'vector') {
      // Native histogram samples have no single value; they are left out (see NoData).
      d.result.filter((m) => m.value).forEach((m) => out.push({ name: legendName(m.metric, t.legendFormat), metric: m.metric, xs: [Number(m.value[0])], values: [Number(m.value[1])], refId: t.refId }));
    } else if (d.resultType === 'scalar') {
      out.push({ name: t.legendFormat || 'scalar', metric: {}, xs: [Number(d.result[0])], values: [Number(d.result[1])], refId: t.refId });
    }
  }
  return out;
}

/** The queries of a panel answer that returned nothing plottable, as sent (variables filled
 * in); `histograms` says the answer held only native histograms. */
export function emptyQueries(res) {
  return (res || []).filter(({ b }) => {
    const d = b && b.data;
    if (!d) return true;
    if (!Array.isArray(d.result) || d.resultType === 'scalar') return false;
    return d.result.every((s) => !s.value && !s.values);
  }).map(({ t, expr, b }) => ({ refId: t.refId || '', expr, histograms: hasHistograms(b && b.data) }));
}

// "No data", saying which query found nothing, with a link that opens it in Explore.
function NoData({ s }) {
  const range = promDuration(Math.max(60, (s.to || 0) - (s.from || 0)));
  const empty = emptyQueries(s.res);
  // The link first: in a narrow panel the long query is what gets cut.
  return html`<div class="no-data"><div>No data</div>${empty.map((q) => html`<div class="no-data-query" title=${q.expr}>
    <a href=${`#/explore?expr=${encodeURIComponent(q.expr)}&range=${range}`}>Open${q.refId ? ` ${q.refId}` : ''} in Explore</a>:
    <code>${q.expr}</code> ${q.histograms
      ? 'returned native histograms: wrap it in histogram_quantile() or histogram_count() to plot it'
      : 'returned no series'}</div>`)}</div>`;
}

function Loading({ s }) {
  if (s.error) return html`<div class="panel-error" role="alert">${String(s.error.message || s.error)}</div>`;
  return html`<div class="muted">Loading…</div>`;
}

function defaults(p) {
  return (p.fieldConfig && p.fieldConfig.defaults) || {};
}

function TimeSeries({ p, r }) {
  const s = usePanelData(p, r);
  const series = useMemo(() => (s.res ? seriesOf(s, p) : []), [s]);
  if (!s.res) return html`<${Loading} s=${s} />`;
  if (!series.length) return html`<${NoData} s=${s} />`;
  const d = defaults(p);
  const custom = d.custom || {};
  const stacked = custom.stacking && custom.stacking.mode && custom.stacking.mode !== 'none';
  // The panel's height less its title and padding: the plot and its legend fill the rest.
  const rows = (p.gridPos && p.gridPos.h) || 8;
  const h = Math.max(80, rows * ROW_PX + (rows - 1) * GAP_PX - 46);
  const legend = (p.options && p.options.legend) || {};
  return html`<${Chart} xs=${series[0].xs} series=${series} unit=${d.unit} stacked=${stacked}
    fill=${custom.fillOpacity ?? 10} height=${h} min=${d.min} max=${d.max} calcs=${legend.calcs} />`;
}

function calcOf(p) {
  const ro = (p.options && p.options.reduceOptions) || {};
  return (ro.calcs && ro.calcs[0]) || 'lastNotNull';
}

function Stat({ p, r }) {
  const s = usePanelData(p, r);
  if (!s.res) return html`<${Loading} s=${s} />`;
  const series = seriesOf(s, p);
  if (!series.length) return html`<${NoData} s=${s} />`;
  const d = defaults(p);
  const mode = (p.options && p.options.colorMode) || 'value';
  return html`<div class="stat-panel">${series.map((x) => {
    const v = reduce(x.values, calcOf(p));
    const c = thresholdColor(v, d.thresholds);
    const style = mode === 'background' ? `background:${c};color:#fff` : `color:${c}`;
    return html`<div class="stat-item" style=${style}>
      <div class="stat-big">${format(v, d.unit, d.decimals)}</div>
      ${series.length > 1 && html`<div class="stat-name">${x.name}</div>`}</div>`;
  })}</div>`;
}

function Gauge({ p, r }) {
  const s = usePanelData(p, r);
  if (!s.res) return html`<${Loading} s=${s} />`;
  const series = seriesOf(s, p);
  if (!series.length) return html`<${NoData} s=${s} />`;
  const d = defaults(p);
  const min = d.min ?? 0;
  const max = d.max ?? (d.unit === 'percent' ? 100 : d.unit === 'percentunit' ? 1 : 100);
  return html`<div class="gauges">${series.map((x) => {
    const v = reduce(x.values, calcOf(p));
    const frac = v === null ? 0 : Math.min(1, Math.max(0, (v - min) / (max - min || 1)));
    const a = Math.PI * (1 - frac);
    const end = `${50 + 40 * Math.cos(a)} ${55 - 40 * Math.sin(a)}`;
    const c = thresholdColor(v, d.thresholds);
    return html`<div class="gauge"><svg viewBox="0 0 100 62" preserveAspectRatio="xMidYMid meet" role="img" aria-label=${`${x.name}: ${format(v, d.unit)}`}>
      <path d="M10 55 A40 40 0 0 1 90 55" stroke="#e4e6ea" stroke-width="9" fill="none" />
      ${frac > 0 && html`<path d=${`M10 55 A40 40 0 0 1 ${end}`} stroke=${c} stroke-width="9" fill="none" />`}
      <text x="50" y="52" text-anchor="middle" font-size="14" fill=${c}>${format(v, d.unit, d.decimals)}</text></svg>
      ${series.length > 1 && html`<div class="stat-name">${x.name}</div>`}</div>`;
  })}</div>`;
}

function BarGauge({ p, r }) {
  const s = usePanelData(p, r);
  if (!s.res) return html`<${Loading} s=${s} />`;
  const series = seriesOf(s, p);
  if (!series.length) return html`<${NoData} s=${s} />`;
  const d = defaults(p);
  const vals = series.map((x) => reduce(x.values, calcOf(p)));
  const max = d.max ?? Math.max(...vals.filter((v) => v !== null), 0);
  const min = d.min ?? 0;
  return html`<div class="bars">${series.map((x, i) => {
    const v = vals[i];
    const frac = v === null || max === min ? 0 : Math.min(1, Math.max(0, (v - min) / (max - min)));
    const c = d.color && d.color.mode === 'thresholds' ? thresholdColor(v, d.thresholds) : color(PALETTE[i % PALETTE.length]);
    return html`<div class="bar-row"><span class="bar-name" title=${x.name}>${x.name}</span>
      <span class="bar-track"><span class="bar-fill" style=${`width:${(frac * 100).toFixed(1)}%;background:${c}`}></span></span>
      <span class="bar-value">${format(v, d.unit, d.decimals)}</span></div>`;
  })}</div>`;
}

/** Instant results as Grafana's table format: one row per label set, `Value` (or
 * `Value #<refId>` with several queries, merged on equal labels), then `organize`. */
export function tableRows(res, transformations) {
  const multi = res.length > 1;
  const rows = new Map();
  const cols = new Set();
  for (const { t, b } of res) {
    const d = b.data;
    const list = d.resultType === 'vector' ? d.result : d.resultType === 'scalar' ? [{ metric: {}, value: d.result }] : [];
    const vname = multi ? `Value #${t.refId}` : 'Value';
    for (const s of list.filter((x) => x.value)) {
      const key = JSON.stringify(Object.entries(s.metric).sort());
      if (!rows.has(key)) rows.set(key, { Time: Number(s.value[0]), ...s.metric });
      rows.get(key)[vname] = Number(s.value[1]);
      cols.add('Time');
      for (const k of Object.keys(s.metric)) cols.add(k);
    }
    cols.add(vname);
  }
  let columns = [...cols].sort((a, b) => {
    const rank = (c) => (c === 'Time' ? 0 : c.startsWith('Value') ? 2 : 1);
    return rank(a) - rank(b) || (a < b ? -1 : 1);
  });
  let names = Object.fromEntries(columns.map((c) => [c, c]));
  for (const tr of transformations || []) {
    if (tr.id === 'organize') {
      const o = tr.options || {};
      columns = columns.filter((c) => !(o.excludeByName || {})[c]);
      for (const [k, v] of Object.entries(o.renameByName || {})) if (names[k] !== undefined && v) names[k] = v;
      if (o.indexByName && Object.keys(o.indexByName).length) columns.sort((a, b) => (o.indexByName[a] ?? 999) - (o.indexByName[b] ?? 999));
    }
  }
  return { columns: columns.map((c) => ({ key: c, title: names[c] })), rows: [...rows.values()] };
}

function Table({ p, r }) {
  const s = usePanelData(p, r);
  if (!s.res) return html`<${Loading} s=${s} />`;
  const { columns, rows } = tableRows(s.res, p.transformations);
  if (!rows.length) return html`<${NoData} s=${s} />`;
  const d = defaults(p);
  return html`<div class="table-wrap"><table class="grid"><thead><tr>${columns.map((c) => html`<th>${c.title}</th>`)}</tr></thead><tbody>
    ${rows.map((row) => html`<tr>${columns.map((c) => {
      const v = row[c.key];
      if (c.key.startsWith('Value')) {
        const style = d.color && d.color.mode === 'thresholds' ? `color:${thresholdColor(v, d.thresholds)}` : '';
        return html`<td class="num" style=${style}>${format(v, d.unit, d.decimals)}</td>`;
      }
      if (c.key === 'Time') return html`<td>${new Date(v * 1000).toLocaleTimeString()}</td>`;
      return html`<td title=${v ?? ''}>${v ?? ''}</td>`;
    })}</tr>`)}
  </tbody></table></div>`;
}
