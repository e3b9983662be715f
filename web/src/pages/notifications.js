// Notification history: every delivery and failure, newest first.
import { html, usePoll, ErrorBox, Badge, ago } from '../ui.js';
import * as api from '../api.js';

export function Notifications() {
  const [d, err] = usePoll(() => api.get('api/v1/notifications'), 10000);
  if (!d) return html`<${ErrorBox} error=${err} /><p class="muted">Loading…</p>`;
  const failed = d.filter((n) => !n.success).length;
  return html`<section>
    <${ErrorBox} error=${err} />
    <h2>Notifications</h2>
    <p class="muted">${d.length} deliveries, ${failed} failed.</p>
    ${d.length === 0 ? html`<p class="muted">Nothing sent yet.</p>` : html`<table class="grid"><thead><tr>
      <th>When</th><th>Receiver</th><th>Integration</th><th>To</th><th>Status</th><th>Alerts</th><th>Result</th><th>Attempts</th><th>Error</th></tr></thead><tbody>
      ${d.map((n) => html`<tr class=${n.success ? '' : 'failed'}>
        <td title=${n.time}>${ago(n.time)}</td><td>${n.receiver}</td><td>${n.integration}</td><td>${n.target}</td>
        <td><${Badge} state=${n.status} /></td><td>${(n.alerts || []).join(', ')}</td>
        <td>${n.success ? html`<${Badge} state="delivered" />` : html`<${Badge} state="failed" />`}</td>
        <td class="num">${n.attempts}</td><td class="err-text">${n.error}</td></tr>`)}
    </tbody></table>`}
  </section>`;
}
