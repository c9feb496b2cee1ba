// Building DOM without markup: every string becomes a text node, so data from the API or a
// console can never turn into elements. Nothing in the UI parses markup.

/**
 * h('a', {href: '/x', class: 'btn', onclick: fn}, 'text', child, [more])
 * Attributes: `class`, `text`, `on<event>` (listeners), booleans (true → present, false/null →
 * absent), everything else via setAttribute. `style` is refused (the CSP forbids inline styles).
 */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'style') throw new Error('inline styles are not allowed');
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids) {
    if (k === null || k === undefined || k === false) continue;
    if (Array.isArray(k)) append(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
}

/** Removes every child of `el`. */
export function clear(el) {
  el.replaceChildren();
}

/** Replaces the children of `el` with `kids`. */
export function fill(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

let idSeq = 0;
/** A document-unique id for label/aria wiring. */
export function uid(prefix = 'id') {
  idSeq += 1;
  return `${prefix}-${idSeq}`;
}

/** A labelled form field: the label, the control and a slot for its error message. */
export function field(label, control, hint) {
  control.id ||= uid('f');
  const err = h('p', { class: 'field-error', id: `${control.id}-err`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  control.setAttribute('aria-describedby', [hintEl?.id, err.id].filter(Boolean).join(' '));
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl, err);
  wrap.setError = (msg) => {
    err.textContent = msg || '';
    err.hidden = !msg;
    if (msg) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  };
  return wrap;
}

/** An inline message area (role=alert for errors, status otherwise). */
export function notice() {
  const el = h('p', { class: 'notice', hidden: true });
  el.show = (msg, kind = 'error') => {
    el.textContent = msg;
    el.className = `notice notice-${kind}`;
    el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    el.hidden = false;
  };
  el.hide = () => {
    el.hidden = true;
    el.textContent = '';
  };
  return el;
}

const STATUS_MARK = {
  running: '●', healthy: '●', online: '●',
  starting: '◐', stopping: '◑', installing: '◐', degraded: '▲',
  offline: '○', stopped: '○', created: '○', unknown: '?',
  crashed: '✖', install_failed: '✖', dead: '✖', draining: '⇣',
};

/** A status shown as a symbol and a word (never colour alone). */
export function badge(status, extra) {
  const s = String(status || 'unknown');
  const cls = /^[a-z_]+$/.test(s) ? s : 'unknown';
  return h('span', { class: `badge st-${cls}` },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, STATUS_MARK[s] || '•'), ' ', s.replace('_', ' '),
    extra ? h('span', { class: 'badge-extra' }, ` ${extra}`) : null);
}

/** Loading / empty / error placeholders, designed rather than blank. */
export function placeholder(kind, text, action) {
  return h('div', { class: `placeholder placeholder-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('p', {}, text), action || null);
}

/** An error placeholder with a retry button. */
export function failed(err, retry) {
  return placeholder('error', err?.message || String(err),
    retry ? h('button', { type: 'button', onclick: retry }, 'Try again') : null);
}

/** A capacity bar (used of total) with its numbers written out. */
export function meter(label, used, total, fmt) {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  const bar = h('span', { class: 'meter-fill' });
  bar.style.width = `${pct.toFixed(1)}%`;
  const level = pct >= 90 ? 'high' : pct >= 70 ? 'mid' : 'low';
  return h('div', { class: `meter meter-${level}` },
    h('span', { class: 'meter-label' }, label),
    h('span', { class: 'meter-bar', role: 'img', 'aria-label': `${label}: ${Math.round(pct)} %` }, bar),
    h('span', { class: 'meter-text' }, total > 0 ? `${fmt(used)} / ${fmt(total)}` : '—'));
}

/** Coalesces calls into one per animation frame. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}
