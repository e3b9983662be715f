// Silences: list, create with matchers and a duration, expire.
import { useState } from 'preact/hooks';
import { html, usePoll, ErrorBox, Badge, ago } from '../ui.js';
import * as api from '../api.js';
import { parseDuration } from '../units.js';

/** `a="b", c=~"d.*", e!="f"` into Alertmanager API matchers. */
export function parseMatchers(text) {
  const out = [];
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  const s = text.trim().replace(/^\{|\}$/g, '');
  let i = 0;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) throw new Error(`bad matcher at character ${i + 1}: ${s.slice(i, i + 20)}`);
    out.push({ name: m[1], value: m[3].replace(/\\(.)/g, '$1'), isRegex: m[2].includes('~'), isEqual: !m[2].startsWith('!') });
    i = re.lastIndex;
  }
  if (!out.length) throw new Error('at least one matcher, e.g. alertname="HighLoad"');
  return out;
}

function fmtMatchers(ms) {
  return ms.map((m) => `${m.name}${m.isEqual === false ? '!' : '='}${m.isRegex ? '~' : ''}"${m.value}"`).join(', ');
}

export function Silences() {
  const [d, err, reload] = usePoll(() => api.get('api/v2/silences'), 10000);
  const [form, setForm] = useState({ matchers: '', duration: '2h', createdBy: 'admin', comment: '' });
  const [msg, setMsg] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    try {
      const secs = parseDuration(form.duration);
      if (!secs) throw new Error(`duration ${JSON.stringify(form.duration)}: use e.g. 30m, 2h, 1d`);
      const now = Date.now();
      const r = await api.postJSON('api/v2/silences', {
        matchers: parseMatchers(form.matchers), startsAt: new Date(now).toISOString(),
        endsAt: new Date(now + secs * 1000).toISOString(), createdBy: form.createdBy, comment: form.comment || 'created in the UI',
      });
      setMsg({ ok: `Created silence ${r.silenceID}.` });
      reload();
    } catch (e2) { setMsg({ error: e2 }); }
  };
  const expire = async (id) => {
    try { await api.del(`api/v2/silence/${encodeURIComponent(id)}`); setMsg({ ok: `Expired ${id}.` }); reload(); } catch (e) { setMsg({ error: e }); }
  };
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const list = (d || []).slice().sort((a, b) => (a.status.state > b.status.state ? 1 : -1));
  return html`<section>
    <${ErrorBox} error=${err || (msg && msg.error)} />
    ${msg && msg.ok && html`<div class="ok" role="status">${msg.ok}</div>`}
    <h2>Silences</h2>
    <form class="silence-form" onSubmit=${create}>
      <label>Matchers <input name="matchers" placeholder='alertname="HighLoad", instance=~"web.*"' value=${form.matchers} onInput=${set('matchers')} size="50" /></label>
      <label>Duration <input name="duration" value=${form.duration} onInput=${set('duration')} size="6" /></label>
      <label>Created by <input name="createdBy" value=${form.createdBy} onInput=${set('createdBy')} size="10" /></label>
      <label>Comment <input name="comment" value=${form.comment} onInput=${set('comment')} size="30" /></label>
      <button type="submit">Create silence</button>
    </form>
    ${list.length === 0 ? html`<p class="muted">No silences.</p>` : html`<table class="grid"><thead><tr>
      <th>State</th><th>Matchers</th><th>Starts</th><th>Ends</th><th>Created by</th><th>Comment</th><th></th></tr></thead><tbody>
      ${list.map((s) => html`<tr>
        <td><${Badge} state=${s.status.state} /></td><td><code>${fmtMatchers(s.matchers)}</code></td>
        <td title=${s.startsAt}>${ago(s.startsAt)}</td><td title=${s.endsAt}>${s.endsAt.slice(0, 19).replace('T', ' ')}</td>
        <td>${s.createdBy}</td><td>${s.comment}</td>
        <td>${s.status.state !== 'expired' && html`<button onClick=${() => expire(s.id)}>Expire</button>`}</td></tr>`)}
    </tbody></table>`}
  </section>`;
}
