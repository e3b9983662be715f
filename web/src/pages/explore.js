// Explore: a PromQL editor with metric, label and function completion and the error's
// position, a graph (legend, hover values, stacking) or a table, time range and step, and
// every setting in the URL so a link shares the view.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { html, parseHash, setParams, ErrorBox, TimePicker } from '../ui.js';
import * as api from '../api.js';
import { Chart, align, legendName, hasHistograms, histogramText } from '../chart.js';
import { parseDuration, promDuration } from '../units.js';

export const FUNCTIONS = ['abs', 'absent', 'absent_over_time', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atanh',
  'avg', 'avg_over_time', 'bottomk', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'cos', 'cosh', 'count',
  'count_over_time', 'count_values', 'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month', 'deg', 'delta',
  'deriv', 'exp', 'floor', 'group', 'histogram_avg', 'histogram_count', 'histogram_fraction', 'histogram_quantile',
  'histogram_stddev', 'histogram_stdvar', 'histogram_sum', 'hour', 'idelta', 'increase', 'irate', 'label_join',
  'label_replace', 'last_over_time', 'limitk', 'limit_ratio', 'ln', 'log10', 'log2', 'mad_over_time', 'max', 'max_over_time',
  'min', 'min_over_time', 'minute', 'month', 'predict_linear', 'present_over_time', 'quantile', 'quantile_over_time',
  'rad', 'rate', 'resets', 'round', 'scalar', 'sgn', 'sin', 'sinh', 'sort', 'sort_by_label', 'sort_by_label_desc',
  'sort_desc', 'sqrt', 'stddev', 'stddev_over_time', 'stdvar', 'stdvar_over_time', 'sum', 'sum_over_time', 'tan',
  'tanh', 'time', 'timestamp', 'topk', 'vector', 'year', 'by', 'without', 'on', 'ignoring', 'group_left',
  'group_right', 'offset', 'bool', 'and', 'or', 'unless'];

/** Where in `query` the error `msg` points (0-based), or null when it cannot tell. */
export function errorPosition(query, msg) {
  // The server's `line:col:` (as Prometheus reports syntax errors) wins.
  const lc = msg.match(/(?:^|: )(\d+):(\d+): parse error/);
  if (lc) {
    const lines = query.split('\n');
    const line = Math.min(Number(lc[1]), lines.length);
    let at = 0;
    for (let i = 0; i < line - 1; i++) at += lines[i].length + 1;
    return Math.min(query.length, at + Number(lc[2]) - 1);
  }
  const named = msg.match(/'([^']+)'|"([^"]+)"/);
  const stack = [];
  let quote = null;
  let quoteAt = -1;
  for (let i = 0; i < query.length; i++) {
    const c = query[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') { quote = c; quoteAt = i; continue; }
    if ('([{'.includes(c)) stack.push(i);
    else if (')]}'.includes(c)) {
      if (!stack.length) return i;
      stack.pop();
    }
  }
  if (/unterminated quoted string/.test(msg) && quote) return quoteAt;
  if (/unclosed|end of input/.test(msg)) return stack.length ? stack[stack.length - 1] : query.length;
  if (named) {
    const word = named[1] || named[2];
    const at = query.indexOf(word);
    if (at >= 0 && word.length > 0) return at;
  }
  return null;
}

/** The word being typed at `pos` and what kind of completion it wants. */
export function completionContext(text, pos) {
  const before = text.slice(0, pos);
  const word = (before.match(/[a-zA-Z_:][a-zA-Z0-9_:]*$/) || [''])[0];
  const open = before.lastIndexOf('{');
  const close = before.lastIndexOf('}');
  if (open > close) {
    const inside = before.slice(open + 1);
    const metric = (before.slice(0, open).match(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/) || [, ''])[1];
    const val = inside.match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/);
    if (val) return { kind: 'value', label: val[1], metric, word: val[3] };
    return { kind: 'label', metric, word };
  }
  if (/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$/.test(before)) return { kind: 'label', metric: '', word };
  return { kind: 'metric', word };
}

let metricNames = null;

async function suggestions(ctx) {
  if (ctx.kind === 'metric') {
    if (!metricNames) metricNames = await api.get('api/v1/label/__name__/values').catch(() => []);
    const w = ctx.word.toLowerCase();
    if (!w) return [];
    const fns = FUNCTIONS.filter((f) => f.startsWith(w)).map((f) => ({ text: f, kind: 'function' }));
    const ms = metricNames.filter((m) => m.toLowerCase().includes(w)).slice(0, 50).map((m) => ({ text: m, kind: 'metric' }));
    return [...fns, ...ms].slice(0, 40);
  }
  const match = ctx.metric ? { 'match[]': ctx.metric } : undefined;
  if (ctx.kind === 'label') {
    const names = await api.get('api/v1/labels', match).catch(() => []);
    return names.filter((n) => n !== '__name__' && n.startsWith(ctx.word)).map((n) => ({ text: n, kind: 'label' }));
  }
  const vals = await api.get(`api/v1/label/${encodeURIComponent(ctx.label)}/values`, match).catch(() => []);
  return vals.filter((v) => v.startsWith(ctx.word)).slice(0, 50).map((v) => ({ text: v, kind: 'value' }));
}

function Editor({ value, onChange, onRun, errorAt, busy }) {
  const ta = useRef(null);
  const [items, setItems] = useState([]);
  const [sel, setSel] = useState(0);
  // Enter runs the query unless the user picked a completion with the arrow keys; Tab
  // always accepts. Typing `up` and Enter must run `up`, not some `..._up` metric.
  const [picked, setPicked] = useState(false);
  const [ctx, setCtx] = useState(null);
  const seq = useRef(0);
  const refresh = async (text, pos) => {
    const c = completionContext(text, pos);
    setCtx(c);
    const mine = ++seq.current;
    const s = await suggestions(c);
    // An answer for an older keystroke must not reopen the list.
    if (mine !== seq.current) return;
    setItems(s.filter((x) => x.text !== c.word));
    setSel(0);
    setPicked(false);
  };
  const close = () => { seq.current++; setItems([]); };
  const accept = (item) => {
    seq.current++;
    const el = ta.current;
    const pos = el.selectionStart;
    const start = pos - ctx.word.length;
    const next = value.slice(0, start) + item.text + value.slice(pos);
    onChange(next);
    setItems([]);
    requestAnimationFrame(() => { el.focus(); el.selectionStart = el.selectionEnd = start + item.text.length; });
  };
  const onKey = (e) => {
    if (items.length) {
      if (e.key === 'ArrowDown') { e.preventDefault(); setPicked(true); setSel((sel + 1) % items.length); return; }
      if (e.key === 'ArrowUp') { e.preventDefault(); setPicked(true); setSel((sel - 1 + items.length) % items.length); return; }
      if (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey && picked)) { e.preventDefault(); accept(items[sel]); return; }
      if (e.key === 'Escape') { close(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); close(); onRun(); }
  };
  return html`<div class="editor"><div class="editor-row">
    <textarea ref=${ta} rows="2" spellcheck="false" aria-label="PromQL expression" placeholder="Expression (Enter runs, Shift+Enter adds a line)"
      value=${value} onKeyDown=${onKey}
      onInput=${(e) => { onChange(e.target.value); refresh(e.target.value, e.target.selectionStart); }}
      onBlur=${() => setTimeout(close, 150)}></textarea>
    <button class="primary run" onClick=${() => { close(); onRun(); }} disabled=${busy}>${busy ? 'Running…' : 'Run query'}</button></div>
    ${errorAt !== null && errorAt !== undefined && html`<pre class="caret" aria-label="error position">${value.slice(0, errorAt).replace(/[^\n]/g, ' ').split('\n').pop()}^ here (character ${errorAt + 1})</pre>`}
    ${items.length > 0 && html`<ul class="completions" role="listbox">${items.map((it, i) => html`<li role="option" class=${i === sel && picked ? 'sel' : ''}
      onMouseDown=${(e) => { e.preventDefault(); accept(it); }}><span>${it.text}</span><small>${it.kind}</small></li>`)}</ul>`}
  </div>`;
}

export function Explore() {
  const init = parseHash().params;
  const [expr, setExpr] = useState(init.get('expr') || '');
  const [range, setRange] = useState(init.get('range') || '1h');
  const [step, setStep] = useState(init.get('step') || '');
  const [tab, setTab] = useState(init.get('tab') || 'graph');
  const [stacked, setStacked] = useState(init.get('stacked') === '1');
  const [res, setRes] = useState(null);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [ran, setRan] = useState(init.get('expr') ? 1 : 0);

  const run = () => setRan((n) => n + 1);
  useEffect(() => {
    if (!ran || !expr.trim()) return;
    setParams({ expr, range, step, tab, stacked: stacked ? '1' : '' });
    const end = Date.now() / 1000;
    const secs = parseDuration(range) || 3600;
    const start = end - secs;
    const st = parseDuration(step) || Math.max(1, Math.round(secs / 250));
    setBusy(true);
    const t0 = performance.now();
    const p = tab === 'graph' ? api.range(expr, start, end, st) : api.instant(expr, end);
    p.then((b) => {
      setRes({ body: b, expr, start, end, step: st, tab, ms: performance.now() - t0 });
      setErr(null);
    }, (e) => { setErr({ error: e, at: errorPosition(expr, e.message) }); setRes(null); })
      .finally(() => setBusy(false));
  }, [ran, tab, range, step, stacked]);

  return html`<section>
    <h2>Explore</h2>
    <${Editor} value=${expr} onChange=${setExpr} onRun=${run} errorAt=${err && err.at} busy=${busy} />
    <div class="toolbar">
      <span class="tabs" role="tablist">
        <button role="tab" class=${tab === 'graph' ? 'on' : ''} onClick=${() => setTab('graph')}>Graph</button>
        <button role="tab" class=${tab === 'table' ? 'on' : ''} onClick=${() => setTab('table')}>Table</button>
      </span>
      <${TimePicker} range=${range} onRange=${setRange} />
      <label>Step <input size="5" placeholder="auto" value=${step} onChange=${(e) => setStep(e.target.value)} aria-label="step" /></label>
      <label><input type="checkbox" checked=${stacked} onChange=${(e) => setStacked(e.target.checked)} /> stacked</label>
      ${res && html`<span class="muted">${Math.round(res.ms)} ms</span>`}
    </div>
    <${ErrorBox} error=${err && err.error} />
    ${res && res.body.warnings && res.body.warnings.map((w) => html`<div class="warn">${w}</div>`)}
    ${res && (res.tab === 'graph' ? html`<${Graph} res=${res} stacked=${stacked} />` : html`<${Table} data=${res.body.data} />`)}
  </section>`;
}

/** Quantiles Explore draws for a native histogram result, as `histogram_quantile` computes
 * them on the server (so the lines are exactly what a dashboard query would give). */
export const HISTOGRAM_QUANTILES = [0.5, 0.9, 0.99];

/** The queries that draw `expr`'s native histograms as quantile lines. */
export function quantileQueries(expr) {
  return HISTOGRAM_QUANTILES.map((q) => ({ q, query: `histogram_quantile(${q}, ${expr})` }));
}

function Graph({ res, stacked }) {
  const d = res.body.data;
  const [quant, setQuant] = useState(null);
  const histos = d.resultType === 'matrix' && hasHistograms(d);
  // A native histogram has no single value to plot: draw its quantiles instead.
  useEffect(() => {
    setQuant(null);
    if (!histos) return;
    let live = true;
    Promise.all(quantileQueries(res.expr).map(({ q, query }) => api.range(query, res.start, res.end, res.step)
      .then((b) => ({ q, b }))))
      .then((all) => live && setQuant(all), (e) => live && setQuant({ error: e }));
    return () => { live = false; };
  }, [res]);
  const { xs, series } = useMemo(() => {
    if (d.resultType !== 'matrix') return { xs: [], series: [] };
    if (histos) {
      if (!quant || quant.error) return { xs: [], series: [] };
      const out = [];
      let x = [];
      for (const { q, b } of quant) {
        const [qx, ys] = align(b.data.result, res.start, res.end, res.step);
        x = qx;
        b.data.result.forEach((s, i) => out.push({ name: `${legendName(s.metric, '')} p${Math.round(q * 1000) / 10}`, values: ys[i] }));
      }
      return { xs: x, series: out };
    }
    const [x, ys] = align(d.result, res.start, res.end, res.step);
    return { xs: x, series: d.result.map((s, i) => ({ name: legendName(s.metric, ''), values: ys[i] })) };
  }, [res, quant]);
  const note = histos && html`<p class="muted histogram-note">Native histograms: showing ${HISTOGRAM_QUANTILES.map((q) => `p${q * 100}`).join(', ')} (histogram_quantile). The Table tab lists the buckets.</p>`;
  if (histos && quant && quant.error) return html`${note}<${ErrorBox} error=${quant.error} />`;
  if (!series.length) return histos && !quant ? note : html`${note}<p class="muted empty">No data in this range.</p>`;
  return html`${note}<${Chart} xs=${xs} series=${series} unit="short" stacked=${stacked} fill=${stacked ? 40 : 0} height=${360} />`;
}

function Table({ data }) {
  if (data.resultType === 'scalar' || data.resultType === 'string') {
    return html`<table class="grid result"><tbody><tr><td>scalar</td><td class="num">${data.result[1]}</td></tr></tbody></table>`;
  }
  if (!data.result.length) return html`<p class="muted empty">Empty result.</p>`;
  return html`<table class="grid result"><thead><tr><th>Series</th><th>Value</th></tr></thead><tbody>
    ${data.result.map((s) => html`<tr><td><code>${legendName(s.metric, '')}</code></td><td class="num">${
      s.value ? s.value[1] : s.histogram ? histogramText(s.histogram[1]) : s.values ? s.values.map((v) => `${v[1]} @${v[0]}`).join('\n') : ''}</td></tr>`)}
  </tbody></table>`;
}

export { promDuration };
