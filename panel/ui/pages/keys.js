// /keys: the user's API keys (bearer tokens for scripts). Create shows the token once; the
// list never has it; revoke asks first and takes effect at once.

import * as api from '../api.js';
import { h, fill, notice, placeholder, failed } from '../dom.js';
import { dateTime } from '../format.js';
import * as dialog from '../dialog.js';

export function mount(root) {
  document.title = 'API keys · ctrl';
  let alive = true;
  const msg = notice();
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading keys…'));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'API keys'),
      h('button', { type: 'button', class: 'btn btn-primary', onclick: create }, '+ New key')),
    h('p', { class: 'hint' }, 'A key acts as you, with your rights: send it as "Authorization: Bearer KEY".'),
    msg, list);

  async function load() {
    try {
      const { keys = [] } = await api.get('/api/auth/keys');
      if (!alive) return;
      fill(list, keys.length
        ? h('table', { class: 'data keys' },
          h('thead', {}, h('tr', {}, ['Name', 'Created', 'Id', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, keys.map((k) => h('tr', {},
            h('td', { 'data-label': 'Name' }, k.name || '—'),
            h('td', { 'data-label': 'Created' }, dateTime(k.createdAt)),
            h('td', { 'data-label': 'Id', class: 'mono muted' }, k.id),
            h('td', { 'data-label': 'Actions' }, h('button', {
              type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Revoke ${k.name || k.id}`, onclick: () => revoke(k),
            }, 'Revoke…'))))))
        : placeholder('empty', 'No API keys yet.'));
    } catch (e) {
      if (alive) fill(list, failed(e, load));
    }
  }

  async function create() {
    const res = await dialog.form({
      title: 'New API key',
      submitLabel: 'Create key',
      fields: [{ name: 'name', label: 'Name', hint: 'What it is for, e.g. "backup script".' }],
      submit: ({ name }) => api.post('/api/auth/keys', name.trim() ? { name: name.trim() } : {}),
    });
    if (!res?.key) return;
    load();
    await dialog.reveal({
      title: `Key ${res.key.name || res.key.id}`,
      message: 'Copy the token now: it is not shown again.',
      secret: res.key.token,
    });
  }

  async function revoke(k) {
    const ok = await dialog.confirm({
      title: `Revoke ${k.name || k.id}?`,
      message: 'Scripts using this key stop working at once.',
      confirmLabel: 'Revoke key',
      action: () => api.del(`/api/auth/keys/${api.seg(k.id)}`),
    });
    if (ok) {
      msg.show('Key revoked.', 'ok');
      load();
    }
  }

  load();
  return () => { alive = false; };
}
