// The Backups tab's schedule: how often the panel backs the server up (every N minutes,
// hours or days, 1 min to a year), checked here before the API checks it again.

import * as api from '../api.js';
import { h, fill, field, notice } from '../dom.js';
import { dateTime } from '../format.js';

const UNITS = [['minutes', 60], ['hours', 3600], ['days', 86400]];
const MIN = 60;
const MAX = 365 * 86400;

/** 7200 → "2 hours": the largest unit that divides it. */
function every(secs) {
  const [n, u] = [...UNITS].reverse().find(([, u]) => secs % u === 0) ?? ['seconds', 1];
  const k = secs / u;
  return `${k} ${k === 1 ? n.slice(0, -1) : n}`;
}

/** `intervalSecs` from the form's text and unit, or an error message. */
export function interval(text, unit) {
  const n = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) return { error: 'Enter a whole number of at least 1.' };
  const secs = n * unit;
  if (secs < MIN || secs > MAX) return { error: 'The interval must be 1 minute to 365 days.' };
  return { secs };
}

/** The schedule section; `editable` when the user manages the server. */
export function scheduleEditor(id, editable) {
  const path = `/api/servers/${api.seg(id)}/backup-schedule`;
  const now = h('p', { class: 'schedule-now', role: 'status' }, 'Loading schedule…');
  const msg = notice();
  const el = h('section', { class: 'panel schedule', 'aria-labelledby': 'sched-h' }, h('h2', { id: 'sched-h' }, 'Schedule'), now, msg);
  const show = (s) => fill(now, s ? `Every ${every(s.intervalSecs)}; next at ${dateTime(s.nextAt)}.` : 'No schedule: backups are taken by hand.');
  let off = null;
  const put = async (secs, done) => {
    msg.hide();
    try {
      const r = await api.put(path, { intervalSecs: secs });
      show(r.schedule);
      if (off) off.hidden = !r.schedule;
      msg.show(done, 'ok');
    } catch (e) {
      msg.show(e.message);
    }
  };
  if (editable) {
    const every = h('input', { type: 'text', inputmode: 'numeric', name: 'every', value: '6', size: 5, required: true });
    const unit = h('select', { name: 'unit' }, UNITS.map(([n, s]) => h('option', { value: s, selected: n === 'hours' }, n)));
    const f = field('Every', every);
    off = h('button', { type: 'button', class: 'btn btn-danger-outline', hidden: true, onclick: () => put(null, 'Schedule turned off.') }, 'Turn off');
    el.append(h('form', {
      class: 'inline-form',
      novalidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        const r = interval(every.value, Number(unit.value));
        f.setError(r.error);
        if (!r.error) put(r.secs, 'Schedule saved.');
      },
    }, f, field('Unit', unit), h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save schedule'), off));
  }
  api.get(path).then((r) => { show(r.schedule); if (off) off.hidden = !r.schedule; }, (e) => fill(now, `Schedule unavailable: ${e.message}`));
  return el;
}
