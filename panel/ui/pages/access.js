// /servers/{id}/settings (also /access): the server's owner and its subusers with their
// rights, reinstall, and (admins) a move to another node (`transfer.js`) and delete — for
// the owner and admins only. Rights are saved per user with PUT; removing someone,
// reinstalling, moving and deleting ask first.

import * as api from '../api.js';
import { h, fill, notice, placeholder, failed, field } from '../dom.js';
import * as dialog from '../dialog.js';
import { session, manages, navigate } from '../session.js';
import { loadServer, serverHead } from './server.js';
import { serverName } from './dashboard.js';
import { transferPanel } from './transfer.js';
import { failoverPanel } from './failover.js';

export const PERMISSIONS = [
  ['console.read', 'Read the console'],
  ['console.write', 'Type console commands'],
  ['power', 'Start, stop, restart, kill'],
  ['files.read', 'Browse and download files'],
  ['files.write', 'Edit, upload and delete files'],
];

export function mount(root, { id }) {
  document.title = `Settings · ${id} · ctrl`;
  let alive = true;
  const offs = [];
  let move = null; // built once: a reload of the lists keeps a move in progress on screen
  root.append(placeholder('loading', 'Loading…'));

  async function load() {
    try {
      const server = await loadServer(id);
      if (!alive) return;
      if (!manages(server)) {
        fill(root, serverHead(server, 'settings'), placeholder('empty', 'Only the server\'s owner and administrators change its settings.'));
        return;
      }
      const [subs, users] = await Promise.all([
        api.get(`/api/servers/${api.seg(id)}/users`),
        session.user.admin ? api.get('/api/users').catch(() => null) : null,
      ]);
      if (alive) build(server, subs.users || [], users?.users || null);
    } catch (e) {
      if (alive) fill(root, failed(e, load));
    }
  }

  function build(server, subusers, allUsers) {
    document.title = `Settings · ${serverName(server)} · ctrl`;
    const msg = notice();
    const nameOf = (uid) => allUsers?.find((u) => u.id === uid)?.name;
    const owner = h('section', { 'aria-labelledby': 'owner-h', class: 'panel' },
      h('h2', { id: 'owner-h' }, 'Owner'),
      h('p', {}, server.ownerId ? `${nameOf(server.ownerId) || ''} ` : 'No owner set. ',
        server.ownerId ? h('span', { class: 'mono muted' }, server.ownerId) : null),
      h('p', { class: 'hint' }, 'The owner and administrators hold every right.'),
      session.user.admin && allUsers ? ownerForm(server, allUsers, msg) : null);
    const rows = subusers.map((u) => subuserRow(server, u, msg, load));
    const list = rows.length
      ? h('table', { class: 'data access' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'User'), PERMISSIONS.map(([p]) => h('th', { scope: 'col', class: 'perm-col' }, p)), h('th', { scope: 'col' }, 'Actions'))),
        h('tbody', {}, rows))
      : placeholder('empty', 'No subusers yet.');
    fill(root, serverHead(server, 'settings'), msg, owner,
      h('section', { 'aria-labelledby': 'subs-h', class: 'panel' },
        h('div', { class: 'page-head' }, h('h2', { id: 'subs-h' }, 'Subusers'),
          h('button', { type: 'button', class: 'btn btn-primary', onclick: () => addSubuser(server, allUsers, subusers, load) }, '+ Add subuser')),
        list),
      session.user.admin ? failoverPanel(server) : null,
      session.user.admin ? (move ??= transferPanel(server, (off) => offs.push(off))) : null,
      dangerZone(server, msg));
  }

  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
  };
}

/** Reinstall (owner, admin) and delete (admin), each asking first. */
function dangerZone(server, msg) {
  const id = server.serverId;
  const name = serverName(server);
  const reinstall = async () => {
    const ok = await dialog.confirm({
      title: `Reinstall ${name}?`,
      message: 'The egg\'s install script runs again on the server\'s files. The server must be stopped first.',
      confirmLabel: 'Reinstall',
      action: () => api.post(`/api/servers/${api.seg(id)}/reinstall`),
    });
    if (ok) msg.show('Reinstall started: its output appears in the console.', 'ok');
  };
  const remove = async () => {
    const purge = h('input', { type: 'checkbox', id: 'purge' });
    const ok = await dialog.confirm({
      title: `Delete ${name}?`,
      message: `The container of ${id} is stopped and removed. Its files are kept unless you tick the box below.`,
      confirmLabel: 'Delete server',
      extra: h('label', { class: 'check' }, purge, ' Also delete its files (cannot be undone)'),
      action: () => api.del(`/api/servers/${api.seg(id)}${purge.checked ? '?purge=true' : ''}`),
    });
    if (ok) navigate('/');
  };
  return h('section', { class: 'panel reinstall', 'aria-labelledby': 'danger-h' },
    h('h2', { id: 'danger-h' }, 'Reinstall and delete'),
    h('div', { class: 'row-actions' },
      h('button', { type: 'button', class: 'btn', onclick: reinstall }, 'Reinstall…'),
      session.user.admin ? h('button', { type: 'button', class: 'btn btn-danger-outline', onclick: remove }, 'Delete server…') : null));
}

function ownerForm(server, users, msg) {
  const select = h('select', {}, h('option', { value: '' }, '— choose —'),
    users.map((u) => h('option', { value: u.id, selected: u.id === server.ownerId }, `${u.name}${u.admin ? ' (admin)' : ''}`)));
  const btn = h('button', { type: 'submit', class: 'btn' }, 'Change owner');
  const form = h('form', { class: 'inline-form' }, field('New owner', select), btn);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!select.value) return;
    btn.disabled = true;
    try {
      await api.patch(`/api/servers/${api.seg(server.serverId)}`, { ownerId: select.value });
      msg.show('Owner changed.', 'ok');
      server.ownerId = select.value;
    } catch (ex) {
      msg.show(ex.message);
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

function subuserRow(server, u, msg, reload) {
  const label = u.name || u.userId;
  const boxes = PERMISSIONS.map(([p, text]) => h('input', {
    type: 'checkbox', value: p, checked: (u.permissions || []).includes(p), 'aria-label': `${label}: ${text} (${p})`,
  }));
  const save = h('button', { type: 'button', class: 'btn btn-small' }, 'Save');
  save.addEventListener('click', async () => {
    save.disabled = true;
    try {
      const permissions = boxes.filter((b) => b.checked).map((b) => b.value);
      await api.put(`/api/servers/${api.seg(server.serverId)}/users/${api.seg(u.userId)}`, { permissions });
      msg.show(`Rights of ${label} saved.`, 'ok');
    } catch (e) {
      msg.show(e.message);
    } finally {
      save.disabled = false;
    }
  });
  const remove = h('button', { type: 'button', class: 'btn btn-small btn-danger-outline' }, 'Remove…');
  remove.addEventListener('click', async () => {
    const ok = await dialog.confirm({
      title: `Remove ${label}?`,
      message: `${label} loses every right on ${serverName(server)}.`,
      confirmLabel: 'Remove access',
      action: () => api.del(`/api/servers/${api.seg(server.serverId)}/users/${api.seg(u.userId)}`),
    });
    if (ok) reload();
  });
  return h('tr', {},
    h('th', { scope: 'row', 'data-label': 'User' }, label, u.name ? h('span', { class: 'muted mono' }, ` ${u.userId}`) : null),
    boxes.map((b, i) => h('td', { 'data-label': PERMISSIONS[i][0], class: 'perm-col' }, b)),
    h('td', { 'data-label': 'Actions' }, h('div', { class: 'row-actions' }, save, remove)));
}

async function addSubuser(server, allUsers, subusers, reload) {
  const taken = new Set([server.ownerId, ...subusers.map((s) => s.userId)]);
  const choices = allUsers?.filter((u) => !taken.has(u.id) && !u.admin);
  const done = await dialog.form({
    title: `Add a subuser to ${serverName(server)}`,
    submitLabel: 'Add',
    fields: [
      {
        name: 'user',
        label: choices ? 'User name or id' : 'User id',
        required: true,
        options: choices?.map((u) => u.name),
        hint: choices ? `${choices.length} users can be added.` : 'Ask an administrator for the user\'s id.',
      },
      ...PERMISSIONS.map(([p, text]) => ({ name: p, label: `${text} (${p})`, type: 'checkbox', value: p === 'console.read' })),
    ],
    submit: (v) => {
      const input = v.user.trim();
      const match = allUsers?.find((u) => u.name === input);
      const userId = match ? match.id : input;
      const permissions = PERMISSIONS.map(([p]) => p).filter((p) => v[p]);
      return api.put(`/api/servers/${api.seg(server.serverId)}/users/${api.seg(userId)}`, { permissions });
    },
  });
  if (done) reload();
}
