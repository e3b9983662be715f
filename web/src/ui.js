// Shared pieces: htm binding, hash routing, polling, the time picker, small widgets.
import { h } from 'preact';
import { useEffect, useState, useCallback } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

/** The current hash route: `{ path: ['dashboards', 'uid'], params: URLSearchParams }`. */
export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q = ''] = raw.split('?');
  return { path: p.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(q) };
}

/** Replaces the query part of the hash (shareable URLs) without adding history entries; an
 * array value repeats its key (`var-x=a&var-x=b`, as Grafana writes multi-value variables). */
export function setParams(obj) {
  const { path } = parseHash();
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    for (const x of [].concat(v)) if (x !== undefined && x !== null && x !== '') p.append(k, x);
  }
  history.replaceState(null, '', `#/${path.map(encodeURIComponent).join('/')}?${p.toString()}`);
}

/** Runs `fn` now and every `ms` (0 = once); returns [data, error, reload]. */
export function usePoll(fn, ms, deps = []) {
  const [state, setState] = useState({ data: null, error: null });
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    const run = () => fn().then(
      (data) => live && setState({ data, error: null }),
      (error) => live && setState((s) => ({ data: s.data, error })),
    );
    run();
    const t = ms ? setInterval(run, ms) : null;
    return () => { live = false; if (t) clearInterval(t); };
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return [state.data, state.error, reload];
}

export const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '24h', '2d', '7d'];
export const REFRESH = ['off', '5s', '10s', '30s', '1m', '5m'];

export function TimePicker({ range, onRange, refresh, onRefresh }) {
  return html`<span class="picker">
    <label>Range <select value=${range} onChange=${(e) => onRange(e.target.value)} aria-label="time range">
      ${RANGES.map((r) => html`<option value=${r}>last ${r}</option>`)}
    </select></label>
    ${onRefresh && html`<label>Refresh <select value=${refresh} onChange=${(e) => onRefresh(e.target.value)} aria-label="refresh">
      ${REFRESH.map((r) => html`<option value=${r}>${r}</option>`)}
    </select></label>`}
  </span>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${String(error.message || error)}</div>`;
}

export function Labels({ labels, skip = [] }) {
  return html`<span class="labels">${Object.entries(labels || {})
    .filter(([k]) => !skip.includes(k))
    .map(([k, v]) => html`<span class="label">${k}="${v}"</span>`)}</span>`;
}

export function ago(iso) {
  if (!iso) return 'never';
  const t = typeof iso === 'number' ? iso * 1000 : Date.parse(iso);
  if (!isFinite(t) || t <= 0) return 'never';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 0) return `in ${-s}s`;
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 129600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

export function Badge({ state }) {
  return html`<span class=${`badge badge-${String(state).toLowerCase()}`}>${state}</span>`;
}
