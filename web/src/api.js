// HTTP calls to the appliance. Every URL is relative: index.html's <base> points at the
// prefix the browser sees, so the UI works at the root or under a proxy's sub-path.

export class ApiError extends Error {
  constructor(message, type, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

async function call(path, opts = {}) {
  const r = await fetch(path, { credentials: 'same-origin', ...opts });
  if (r.status === 401) {
    // The session ended: back to the login page, which returns here afterwards.
    location.href = '-/login';
    throw new ApiError('login needed', 'unauthorized', 401);
  }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!r.ok || (body && body.status === 'error')) {
    const msg = (body && (body.error || body.message)) || text || r.statusText;
    throw new ApiError(msg, body && body.errorType, r.status);
  }
  return body;
}

/** GET a Prometheus-style API path; returns `data`. */
export async function get(path, params) {
  const qs = params ? '?' + new URLSearchParams(params).toString() : '';
  const b = await call(path + qs);
  return b && Object.prototype.hasOwnProperty.call(b, 'data') ? b.data : b;
}

/** POST a form to a Prometheus-style API path (queries can be long); returns the body. */
export async function postForm(path, params) {
  return call(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
}

/** POST JSON (Alertmanager API v2). */
export async function postJSON(path, obj) {
  return call(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(obj),
  });
}

export async function del(path) {
  return call(path, { method: 'DELETE' });
}

/** Instant query: the body (data, warnings, infos). */
export function instant(query, time) {
  const p = { query };
  if (time !== undefined) p.time = String(time);
  return postForm('api/v1/query', p);
}

/** Range query over [start, end] seconds. */
export function range(query, start, end, step) {
  return postForm('api/v1/query_range', {
    query, start: String(start), end: String(end), step: String(step),
  });
}

/** A scalar from an instant query's first sample, or null. */
export async function scalar(query) {
  const b = await instant(query);
  const d = b.data;
  if (d.resultType === 'scalar') return Number(d.result[1]);
  if (d.resultType === 'vector' && d.result.length) return Number(d.result[0].value[1]);
  return null;
}
