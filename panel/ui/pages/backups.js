// /servers/{id}/backups: the server's backups, newest first — download (files.read), take
// one now, restore (the server must be stopped) and delete (owner, admin; both ask first);
// the schedule (`schedule.js`).
// backup_* events on the live socket show progress and refresh the list.

import * as api from '../api.js';
import { events, eventServer } from '../events.js';
import { h, fill, notice, placeholder, failed } from '../dom.js';
import { bytes, dateTime } from '../format.js';
import * as dialog from '../dialog.js';
import { manages } from '../session.js';
import { loadServer, serverHead } from './server.js';
import { scheduleEditor } from './schedule.js';

export function mount(root, { id }) {
  document.title = `Backups · ${id} · ctrl`;
  let alive = true;
  let server = null;
  const base = `/api/servers/${api.seg(id)}/backups`;
  const msg = notice();
  const progress = h('p', { class: 'hint', role: 'status' });
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading backups…'));
  root.append(placeholder('loading', 'Loading…'));

  async function load() {
    try {
      server ??= await loadServer(id);
      const { backups = [] } = await api.get(base);
      if (!alive) return;
      if (!list.isConnected) {
        const take = manages(server) ? h('button', { type: 'button', class: 'btn btn-primary', onclick: create }, 'Back up now') : null;
        fill(root, serverHead(server, 'backups'), h('div', { class: 'toolbar' }, take, progress), msg, list, scheduleEditor(id, manages(server)));
      }
      fill(list, backups.length ? h('table', { class: 'data backups' },
        h('thead', {}, h('tr', {}, ['Taken', 'Size', 'Id', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, backups.map(row))) : placeholder('empty', 'No backups yet.'));
    } catch (e) {
      if (alive) fill(list.isConnected ? list : root, failed(e, load));
    }
  }

  function row(b) {
    const act = (label, title, message, call) => h('button', {
      type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `${label} ${b.id}`,
      onclick: async () => {
        if (await dialog.confirm({ title, message, confirmLabel: label, action: call })) {
          msg.show(`${label}: done.`, 'ok');
          load();
        }
      },
    }, `${label}…`);
    return h('tr', {},
      h('td', { 'data-label': 'Taken' }, dateTime(b.createdAt)),
      h('td', { 'data-label': 'Size', class: 'num' }, bytes(b.size)),
      h('td', { 'data-label': 'Id', class: 'mono muted' }, b.id),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'row-actions' },
        h('a', { class: 'btn btn-small', href: `${base}/${api.seg(b.id)}/download`, download: `${id}-${b.id}.tar.gz`, 'aria-label': `Download ${b.id}` }, 'Download'),
        manages(server) ? act('Restore', `Restore ${b.id}?`, 'The server\'s files are replaced by this backup\'s. Stop the server first.', () => api.post(`${base}/${api.seg(b.id)}/restore`)) : null,
        manages(server) ? act('Delete', `Delete ${b.id}?`, 'The backup is removed for good.', () => api.del(`${base}/${api.seg(b.id)}`)) : null)));
  }

  async function create(e) {
    const btn = e.currentTarget;
    btn.disabled = true;
    msg.hide();
    progress.textContent = 'Backing up…';
    try {
      await api.post(base);
      msg.show('Backup taken.', 'ok');
    } catch (ex) {
      msg.show(`Backup failed: ${ex.message}`);
    } finally {
      btn.disabled = false;
      progress.textContent = '';
      if (alive) load();
    }
  }

  const offs = [
    events.on((ev) => {
      if (eventServer(ev) !== id || !ev.event?.startsWith('backup_')) return;
      if (ev.event === 'backup_progress') progress.textContent = `Backing up… ${bytes(ev.data?.bytes)}`;
      else load();
    }),
    events.onReconnect(load),
  ];
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
  };
}
