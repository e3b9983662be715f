// Alerts: rule groups with state, last evaluation and errors; pending and firing alerts with
// labels and annotations; one click silences an alert (all its labels, for 2 hours).
import { useState } from 'preact/hooks';
import { html, usePoll, ErrorBox, Labels, Badge, ago } from '../ui.js';
import * as api from '../api.js';

/** Silences exactly this alert's label set for `hours`. */
export async function silenceAlert(labels, hours = 2) {
  const now = new Date();
  const body = {
    matchers: Object.entries(labels).map(([name, value]) => ({ name, value, isRegex: false, isEqual: true })),
    startsAt: now.toISOString(),
    endsAt: new Date(now.getTime() + hours * 3600e3).toISOString(),
    createdBy: 'admin',
    comment: 'Silenced from the Alerts page',
  };
  return api.postJSON('api/v2/silences', body);
}

async function load() {
  const [rules, am] = await Promise.all([
    api.get('api/v1/rules'),
    api.get('api/v2/alerts').catch(() => []),
  ]);
  return { groups: rules.groups, am: am || [] };
}

/**
 * The silences muting a rule's alert: those of the notifier's alert carrying all its labels
 * (the notifier's copy also has the external labels, so an exact match would miss it).
 */
export function silencedBy(labels, amAlerts) {
  const entries = Object.entries(labels);
  const ids = new Set();
  for (const a of amAlerts) {
    if (entries.every(([k, v]) => a.labels[k] === v)) {
      for (const id of (a.status && a.status.silencedBy) || []) ids.add(id);
    }
  }
  return [...ids];
}

export function Alerts() {
  const [d, err, reload] = usePoll(load, 10000);
  const [msg, setMsg] = useState(null);
  if (!d) return html`<${ErrorBox} error=${err} /><p class="muted">Loading…</p>`;
  const silence = async (labels) => {
    try {
      const r = await silenceAlert(labels);
      setMsg({ ok: `Silenced for 2h (silence ${r.silenceID}).` });
      reload();
    } catch (e) { setMsg({ error: e }); }
  };
  const active = [];
  for (const g of d.groups) for (const r of g.rules) if (r.type === 'alerting') for (const a of r.alerts || []) active.push({ ...a, rule: r.name });
  return html`<section>
    <${ErrorBox} error=${err || (msg && msg.error)} />
    ${msg && msg.ok && html`<div class="ok" role="status">${msg.ok}</div>`}
    <h2>Alerts</h2>
    <h3>Active (${active.length})</h3>
    ${active.length === 0 ? html`<p class="muted">No pending or firing alerts.</p>` : html`<table class="grid"><thead><tr>
      <th>Alert</th><th>State</th><th>Labels</th><th>Annotations</th><th>Active since</th><th>Value</th><th></th></tr></thead><tbody>
      ${active.map((a) => {
        const by = silencedBy(a.labels, d.am);
        return html`<tr class=${`alert-row${by.length ? ' silenced' : ''}`}>
        <td>${a.labels.alertname}</td><td><${Badge} state=${a.state} />${by.length > 0 && html` <span class="badge badge-silenced" title=${`silence ${by.join(', ')}`}>silenced</span>`}</td>
        <td><${Labels} labels=${a.labels} skip=${['alertname']} /></td>
        <td>${Object.entries(a.annotations || {}).map(([k, v]) => html`<div><b>${k}</b>: ${v}</div>`)}</td>
        <td title=${a.activeAt}>${ago(a.activeAt)}</td><td class="num">${a.value}</td>
        <td>${by.length ? html`<a href="#/silences">see silences</a>` : html`<button class="silence" onClick=${() => silence(a.labels)}>Silence 2h</button>`}</td></tr>`;
      })}
    </tbody></table>`}
    <h3>Rule groups</h3>
    ${d.groups.length === 0 && html`<p class="muted">No rule files loaded (rule_files in the config).</p>`}
    ${d.groups.map((g) => html`<div class="group">
      <h4>${g.name} <span class="muted">${g.file} · every ${g.interval}s · evaluated ${ago(g.lastEvaluation)} in ${Number(g.evaluationTime).toFixed(4)}s</span></h4>
      <table class="grid"><thead><tr><th>Rule</th><th>Type</th><th>State</th><th>Health</th><th>Last evaluation</th><th>Error</th></tr></thead><tbody>
      ${g.rules.map((r) => html`<tr>
        <td><code>${r.name}</code><div class="muted small"><code>${r.query}</code></div></td><td>${r.type}</td>
        <td>${r.type === 'alerting' ? html`<${Badge} state=${r.state} />` : ''}</td>
        <td><${Badge} state=${r.health} /></td><td>${ago(r.lastEvaluation)}</td><td class="err-text">${r.lastError || ''}</td></tr>`)}
      </tbody></table></div>`)}
  </section>`;
}
