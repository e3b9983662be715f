// Status: build, runtime, flags, the running config (secrets hidden by the server), storage
// and cardinality.
import { html, usePoll, ErrorBox } from '../ui.js';
import * as api from '../api.js';
import { format } from '../units.js';

async function load() {
  const [build, runtime, flags, config, tsdb] = await Promise.all([
    api.get('api/v1/status/buildinfo'), api.get('api/v1/status/runtimeinfo'),
    api.get('api/v1/status/flags'), api.get('api/v1/status/config'),
    api.get('api/v1/status/tsdb', { limit: '10' }),
  ]);
  return { build, runtime, flags, config, tsdb };
}

function KV({ obj }) {
  return html`<table class="grid kv"><tbody>${Object.entries(obj).map(([k, v]) => html`<tr><th>${k}</th><td>${typeof v === 'object' ? JSON.stringify(v) : String(v)}</td></tr>`)}</tbody></table>`;
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
