// The panel's JSON API from the browser: one fetch wrapper that turns every failure into an
// ApiError carrying the API's own code and message, so pages can show them as they are.

/** A failed call: HTTP status (0 when the panel was not reached), wire code, message. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

let onUnauthorized = null;
/** Called when a call other than the session probe or login answers 401 (session expired). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function parse(res) {
  const type = res.headers.get('content-type') || '';
  if (!type.includes('application/json')) return null;
  try {
    return await res.json();
  } catch {
    return null;
  }
}

function failure(res, body) {
  const e = body?.error;
  const retry = Number(res.headers.get('retry-after')) || undefined;
  return new ApiError(res.status, e?.code || `HTTP_${res.status}`,
    e?.message || `the panel answered ${res.status} ${res.statusText}`.trim(), retry);
}

/**
 * One JSON call. `body` is sent as JSON; `quiet401` stops the session-expired handler (for
 * the session probe and the login form, where 401 is an answer, not an expiry).
 */
export async function call(method, path, body, { signal, quiet401 = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', 'The panel cannot be reached. Check your connection and try again.');
  }
  const json = await parse(res);
  if (!res.ok || !json || json.success === false) {
    const e = failure(res, json);
    if (res.status === 401 && !quiet401 && onUnauthorized) onUnauthorized(e);
    throw e;
  }
  return json;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body ?? {}, opts);
export const put = (path, body, opts) => call('PUT', path, body, opts);
export const patch = (path, body, opts) => call('PATCH', path, body, opts);
export const del = (path, opts) => call('DELETE', path, undefined, opts);

/** `encodeURIComponent` for one path segment. */
export const seg = (s) => encodeURIComponent(String(s));

/** A query string from an object (undefined values left out). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Raw upload (`PUT` of the file's bytes) with progress, via XMLHttpRequest because fetch has
 * no upload progress. Resolves with the JSON body; rejects with an ApiError.
 */
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded, e.total);
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'The upload was interrupted.'));
    xhr.onabort = () => reject(new ApiError(0, 'ABORTED', 'The upload was cancelled.'));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body?.success !== false) {
        resolve(body);
        return;
      }
      const e = body?.error;
      const err = new ApiError(xhr.status, e?.code || `HTTP_${xhr.status}`, e?.message || `upload failed (${xhr.status})`);
      if (xhr.status === 401 && onUnauthorized) onUnauthorized(err);
      reject(err);
    };
    xhr.send(file);
  });
}
