// Status: build, runtime, remote write queues, the Grafana sync, flags, the running config (secrets hidden by
// the server), storage and cardinality.
import { html, usePoll, ErrorBox } from '../ui.js';
import * as api from '../api.js';
import { format } from '../units.js';

async function load() {
  const [build, runtime, flags, config, tsdb, remote, grafana] = await Promise.all([
    api.get('api/v1/status/buildinfo'), api.get('api/v1/status/runtimeinfo'),
    api.get('api/v1/status/flags'), api.get('api/v1/status/config'),
    api.get('api/v1/status/tsdb', { limit: '10' }), api.get('api/v1/status/remote_write'),
    api.get('api/v1/status/grafana'),
  ]);
  return { build, runtime, flags, config, tsdb, remote, grafana };
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '—';
}

// One row per remote: how far behind it is and why, so an outage is visible without PromQL.
function Remotes({ queues }) {
  if (!queues || queues.length === 0) return html`<p class="muted">No remote_write configured.</p>`;
  return html`<table class="grid remotes"><thead><tr><th>Remote</th><th>URL</th><th>Protocol</th>
    <th class="num">Lag</th><th class="num">Pending</th><th class="num">Shards</th><th class="num">Sent</th>
    <th class="num">Failed</th><th class="num">Dropped</th><th>Last success</th><th>Last error</th></tr></thead>
    <tbody>${queues.map((q) => html`<tr class=${q.lagSeconds > 120 ? 'bad' : ''}>
      <td>${q.name}${q.catchingUp ? ' (catching up from blocks)' : ''}</td><td>${q.url}</td><td>${q.protocol}</td>
      <td class="num">${format(q.lagSeconds, 's')}</td><td class="num">${q.pendingSamples}</td>
      <td class="num">${q.shards}</td><td class="num">${q.samplesSent}</td>
      <td class="num">${q.samplesFailed}</td><td class="num">${q.samplesDropped}</td>
      <td>${when(q.lastSuccessMs)}</td>
      <td>${q.lastError ? html`${q.lastError} <span class="muted">(${when(q.lastErrorMs)})</span>` : '—'}</td>
    </tr>`)}</tbody></table>`;
}

// The Grafana sync: one row per datasource, folder and dashboard, so a refused push shows.
function Grafana({ g }) {
  if (!g || !g.enabled) return html`<p class="muted">No grafana section configured (see <code>appliance grafana provision</code> for file provisioning).</p>`;
  const items = g.items || [];
  return html`<p>${g.url} · last success ${g.lastSuccess || '—'}${g.lastError ? html` · <span class="error-text">${g.lastError}</span>` : ''}</p>
    ${items.length === 0 ? html`<p class="muted">Waiting for Grafana to answer…</p>` : html`<table class="grid grafana"><thead><tr>
      <th>Kind</th><th>Name</th><th>uid</th><th>Result</th><th>At</th><th>Error</th></tr></thead>
      <tbody>${items.map((i) => html`<tr class=${i.result === 'ok' ? '' : 'bad'}><td>${i.kind}</td><td>${i.name}</td>
        <td>${i.uid}</td><td><span class=${`badge badge-${i.result === 'ok' ? 'ok' : 'failed'}`}>${i.result}</span></td><td>${i.at}</td><td>${i.error || '—'}</td></tr>`)}</tbody></table>`}`;
}

// Figures the runtime answer gives as raw numbers, shown with their unit.
const UNITS = { residentMemoryBytes: 'bytes', uptimeSeconds: 's' };

function KV({ obj }) {
  return html`<table class="grid kv"><tbody>${Object.entries(obj).map(([k, v]) => html`<tr><th>${k}</th><td>${
    UNITS[k] ? format(v, UNITS[k]) : typeof v === 'object' ? JSON.stringify(v) : String(v)}</td></tr>`)}</tbody></table>`;
}

function Top({ title, rows }) {
  return html`<div class="top"><h4>${title}</h4><table class="grid"><tbody>${(rows || []).map((r) => html`<tr><td>${r.name}</td><td class="num">${r.value}</td></tr>`)}</tbody></table></div>`;
}

export function Status() {
  const [d, err] = usePoll(load, 0);
  if (!d) return html`<${ErrorBox} error=${err} /><p class="muted">Loading…</p>`;
  const st = d.tsdb.storageStats || {};
  return html`<section>
    <h2>Status</h2>
    <h3>Build</h3><${KV} obj=${d.build} />
    <h3>Runtime</h3><${KV} obj=${d.runtime} />
    <h3>Remote write</h3><${Remotes} queues=${d.remote} />
    <h3>Grafana</h3><${Grafana} g=${d.grafana} />
    <h3>Storage</h3>
    <${KV} obj=${{ 'head series': d.tsdb.headStats.numSeries, 'head chunks': d.tsdb.headStats.chunkCount,
      blocks: (st.blocks || []).length, 'blocks size': format(st.blocksBytes || 0, 'bytes'),
      'WAL size': format(st.walBytes || 0, 'bytes'), quarantined: (st.quarantined || []).length }} />
    <h3>Cardinality</h3>
    <div class="tops">
      <${Top} title="Series by metric" rows=${d.tsdb.seriesCountByMetricName} />
      <${Top} title="Values by label" rows=${d.tsdb.labelValueCountByLabelName} />
      <${Top} title="Series by label pair" rows=${d.tsdb.seriesCountByLabelValuePair} />
    </div>
    <h3>Flags</h3><${KV} obj=${d.flags} />
    <h3>Configuration</h3><pre class="config">${d.config.yaml}</pre>
  </section>`;
}
