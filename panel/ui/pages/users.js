// /users (admin): list, create (a generated password is shown once), reset a password,
// delete (asks first, naming the user).

import * as api from '../api.js';
import { h, fill, notice, placeholder, failed } from '../dom.js';
import * as dialog from '../dialog.js';
import { session } from '../session.js';

export function mount(root) {
  document.title = 'Users · ctrl';
  let alive = true;
  const msg = notice();
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading users…'));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Users'),
      h('button', { type: 'button', class: 'btn btn-primary', onclick: create }, '+ New user')),
    msg, list);

  async function load() {
    try {
      const body = await api.get('/api/users');
      if (!alive) return;
      const users = body.users || [];
      fill(list, users.length
        ? h('table', { class: 'data users' },
          h('thead', {}, h('tr', {}, ['User', 'Role', 'Id', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, users.map(row)))
        : placeholder('empty', 'No users yet.'));
    } catch (e) {
      if (alive) fill(list, failed(e, load));
    }
  }

  function row(u) {
    const me = u.id === session.user?.id;
    return h('tr', {},
      h('th', { scope: 'row', 'data-label': 'User' }, u.name, me ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', { 'data-label': 'Role' }, u.admin ? 'administrator' : 'user'),
      h('td', { 'data-label': 'Id', class: 'mono muted' }, u.id),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'row-actions' },
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => reset(u) }, 'Reset password…'),
        me ? null : h('button', { type: 'button', class: 'btn btn-small btn-danger-outline', onclick: () => remove(u) }, 'Delete…'))));
  }

  async function create() {
    const res = await dialog.form({
      title: 'New user',
      submitLabel: 'Create user',
      fields: [
        { name: 'name', label: 'User name', required: true },
        { name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'Leave empty to generate one; it is shown once.' },
        { name: 'admin', label: 'Administrator (every right on every server and node)', type: 'checkbox' },
      ],
      submit: (v) => api.post('/api/users', { name: v.name.trim(), admin: v.admin, ...(v.password ? { password: v.password } : {}) }),
    });
    if (!res) return;
    if (res.password) {
      await dialog.reveal({ title: `Password for ${res.user?.name}`, message: 'Give it to the user now: it is not shown again.', secret: res.password });
    }
    msg.show(`User ${res.user?.name} created.`, 'ok');
    load();
  }

  async function reset(u) {
    let answer = null;
    const ok = await dialog.confirm({
      title: `Reset the password of ${u.name}?`,
      message: `A new password is generated for ${u.name} and shown once. The old one stops working.`,
      confirmLabel: 'Reset password',
      action: async () => { answer = await api.post(`/api/users/${api.seg(u.id)}/password`, {}); },
    });
    if (ok && answer?.password) {
      await dialog.reveal({ title: `New password for ${u.name}`, message: 'Give it to the user now: it is not shown again.', secret: answer.password });
    }
  }

  async function remove(u) {
    const ok = await dialog.confirm({
      title: `Delete ${u.name}?`,
      message: `${u.name} can no longer log in, and loses access to every server. Servers ${u.name} owns keep running.`,
      confirmLabel: 'Delete user',
      action: () => api.del(`/api/users/${api.seg(u.id)}`),
    });
    if (ok) {
      msg.show(`User ${u.name} deleted.`, 'ok');
      load();
    }
  }

  load();
  return () => { alive = false; };
}
