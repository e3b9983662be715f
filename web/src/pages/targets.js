// Targets per job: endpoint, labels, last scrape, duration, error.
import { html, usePoll, ErrorBox, Labels, Badge, ago } from '../ui.js';
import * as api from '../api.js';
import { format } from '../units.js';

export function Targets() {
  const [d, err] = usePoll(() => api.get('api/v1/targets'), 10000);
  if (!d) return html`<${ErrorBox} error=${err} /><p class="muted">Loading…</p>`;
  const pools = new Map();
  for (const t of d.activeTargets) {
    if (!pools.has(t.scrapePool)) pools.set(t.scrapePool, []);
    pools.get(t.scrapePool).push(t);
  }
  return html`<section>
    <${ErrorBox} error=${err} />
    <h2>Targets</h2>
    ${[...pools.entries()].sort().map(([pool, ts]) => html`<div class="pool">
      <h3>${pool} <span class="muted">(${ts.filter((t) => t.health === 'up').length}/${ts.length} up)</span></h3>
      <table class="grid"><thead><tr><th>Endpoint</th><th>State</th><th>Labels</th><th>Last scrape</th><th>Duration</th><th>Error</th></tr></thead><tbody>
      ${ts.map((t) => html`<tr>
        <td>${t.scrapeUrl}</td><td><${Badge} state=${t.health} /></td><td><${Labels} labels=${t.labels} /></td>
        <td>${ago(t.lastScrape)}</td><td>${format(t.lastScrapeDuration, 's')}</td><td class="err-text">${t.lastError}</td></tr>`)}
      </tbody></table></div>`)}
    ${d.droppedTargets && d.droppedTargets.length > 0 && html`<p class="muted">${d.droppedTargets.length} targets dropped by relabelling.</p>`}
  </section>`;
}
