// Overview: targets and collectors, firing alerts, failing receivers, host headline figures,
// storage.
import { html, usePoll, ErrorBox, Labels, Badge, ago } from '../ui.js';
import * as api from '../api.js';
import { format } from '../units.js';

const HOST = [
  ['CPU busy', '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[2m]))', 'percentunit'],
  ['Memory used', '1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes', 'percentunit'],
  ['Root disk used', '1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}', 'percentunit'],
  ['Load (1m)', 'node_load1', 'short'],
  ['CPUs', 'count(node_cpu_seconds_total{mode="idle"})', 'short'],
  ['Uptime', 'time() - node_boot_time_seconds', 's'],
];

/** Each receiver integration whose latest delivery failed (the history is newest first). */
export function failingReceivers(history) {
  const latest = new Map();
  for (const e of history || []) {
    const key = `${e.receiver}\u0000${e.integration}\u0000${e.target}`;
    if (!latest.has(key)) latest.set(key, e);
  }
  return [...latest.values()].filter((e) => !e.success);
}

async function load() {
  const [targets, alerts, tsdb, history, ...host] = await Promise.all([
    api.get('api/v1/targets', { state: 'active' }),
    api.get('api/v1/alerts'),
    api.get('api/v1/status/tsdb', { limit: '5' }),
    api.get('api/v1/notifications').catch(() => []),
    ...HOST.map(([, q]) => api.scalar(q).catch(() => null)),
  ]);
  return { targets: targets.activeTargets, alerts: alerts.alerts, tsdb, failing: failingReceivers(history), host };
}

function Stat({ title, value, cls }) {
  return html`<div class=${`stat ${cls || ''}`}><div class="stat-title">${title}</div><div class="stat-value">${value}</div></div>`;
}

export function Overview() {
  const [d, err] = usePoll(load, 10000);
  if (!d) return html`<${ErrorBox} error=${err} /><p class="muted">Loading…</p>`;
  const collectors = d.targets.filter((t) => t.scrapeUrl.startsWith('appliance://'));
  const scraped = d.targets.filter((t) => !t.scrapeUrl.startsWith('appliance://'));
  const down = (l) => l.filter((t) => t.health !== 'up');
  const firing = d.alerts.filter((a) => a.state === 'firing');
  const pending = d.alerts.filter((a) => a.state === 'pending');
  const st = d.tsdb.storageStats || {};
  return html`<section>
    <${ErrorBox} error=${err} />
    <h2>Overview</h2>
    <div class="stats">
      <${Stat} title="Targets up" value=${`${scraped.length - down(scraped).length} / ${scraped.length}`} cls=${down(scraped).length ? 'bad' : 'good'} />
      <${Stat} title="Collectors up" value=${`${collectors.length - down(collectors).length} / ${collectors.length}`} cls=${down(collectors).length ? 'bad' : 'good'} />
      <${Stat} title="Alerts firing" value=${firing.length} cls=${firing.length ? 'bad' : 'good'} />
      <${Stat} title="Alerts pending" value=${pending.length} cls=${pending.length ? 'warn' : 'good'} />
      <${Stat} title="Receivers failing" value=${d.failing.length} cls=${d.failing.length ? 'bad' : 'good'} />
    </div>
    <h3>Host</h3>
    <div class="stats">
      ${HOST.map(([title, , unit], i) => html`<${Stat} title=${title} value=${format(d.host[i], unit)} />`)}
    </div>
    <h3>Storage</h3>
    <div class="stats">
      <${Stat} title="Head series" value=${format(d.tsdb.headStats.numSeries, 'short')} />
      <${Stat} title="Blocks" value=${(st.blocks || []).length} />
      <${Stat} title="On disk" value=${format((st.blocksBytes || 0) + (st.walBytes || 0), 'bytes')} />
      <${Stat} title="Quarantined" value=${(st.quarantined || []).length} cls=${(st.quarantined || []).length ? 'bad' : ''} />
    </div>
    ${(down(scraped).length > 0 || down(collectors).length > 0) && html`<h3>Down</h3>
      <table class="grid"><thead><tr><th>Job</th><th>Endpoint</th><th>Error</th></tr></thead><tbody>
      ${[...down(collectors), ...down(scraped)].map((t) => html`<tr><td>${t.labels.job}</td><td>${t.scrapeUrl}</td><td class="err-text">${t.lastError}</td></tr>`)}
      </tbody></table>`}
    ${d.failing.length > 0 && html`<h3>Failing receivers</h3>
      <table class="grid" id="failing-receivers"><thead><tr><th>Receiver</th><th>Integration</th><th>To</th><th>Last try</th><th>Error</th></tr></thead><tbody>
      ${d.failing.map((e) => html`<tr><td>${e.receiver}</td><td>${e.integration}</td><td>${e.target}</td><td title=${e.time}>${ago(e.time)}</td><td class="err-text">${e.error}</td></tr>`)}
      </tbody></table>
      <p class="muted">Their alerts are not reaching anyone; details on the <a href="#/notifications">Notifications</a> page.</p>`}
    <h3>Firing alerts</h3>
    ${firing.length === 0 ? html`<p class="muted">None.</p>` : html`<table class="grid"><thead><tr><th>Alert</th><th>Labels</th><th>Since</th></tr></thead><tbody>
      ${firing.map((a) => html`<tr><td><${Badge} state="firing" /> ${a.labels.alertname}</td><td><${Labels} labels=${a.labels} skip=${['alertname']} /></td><td>${a.activeAt}</td></tr>`)}
    </tbody></table>`}
  </section>`;
}
