// OPS Center: calls to the JSON API under /api, and the error a refusal
// becomes (its text in Spanish, from errors_es.js).

import { spanishError } from './errors_es.js';

/** A refusal: `message` is the page's Spanish text (errors_es.js),
 *  `serverMessage` the server's own words, kept as detail. */
export class ApiError extends Error {
  constructor(status, code, serverMessage, retryAfter) {
    const e = { status, code, serverMessage, retryAfter };
    super(spanishError(e));
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
    this.retryAfter = retryAfter;
  }
}

const unauthorizedListeners = new Set();

/** Calls `fn()` whenever the server answers 401 outside `/auth/`: the
 *  session the page was using has ended. */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

/** Calls the JSON API. Resolves to the parsed body; rejects with an
 *  ApiError carrying the server's `error` and `message`. */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', e.message);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return data;
  const code = (data && data.error) || `http_${res.status}`;
  const err = new ApiError(res.status, code, (data && data.message) || '', res.headers.get('Retry-After'));
  const route = `${method} /api${path.split('?')[0]}`;
  if (res.status === 404 && /^no route/.test(err.serverMessage)) {
    err.message = `Este servidor no ofrece ${route} (404): actualiza OPS Center a una versión que incluya esta función.`;
  } else if (res.status === 405) {
    err.message = `Este servidor no acepta ${route} (405).`;
  }
  if (res.status === 401 && !path.startsWith('/auth/')) {
    for (const fn of unauthorizedListeners) fn();
  }
  throw err;
}

/** `?k=v&…` for the params that have a value; '' when none has. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
