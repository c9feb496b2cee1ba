// /servers/{id}/files?path=P: browse a server's files; ?edit=P opens the text editor
// (Save or Ctrl+S, a dirty mark, a guard against leaving with unsaved changes). Uploads are
// raw PUTs streamed by the panel; downloads are plain links.

import * as api from '../api.js';
import { h, fill, notice, placeholder, failed } from '../dom.js';
import { bytes, dateTime, joinPath, parentPath } from '../format.js';
import * as dialog from '../dialog.js';
import { can, navigate, setLeaveGuard } from '../session.js';
import { loadServer, serverHead } from './server.js';
import { serverName } from './dashboard.js';

const ROOT = '/server';

function filesUrl(id, params) {
  return `/servers/${api.seg(id)}/files${api.query(params)}`;
}

function apiBase(id) {
  return `/api/servers/${api.seg(id)}/files`;
}

/** /server/a/b → links for /server, a, b. */
function breadcrumb(id, path) {
  const parts = path.slice(ROOT.length).split('/').filter(Boolean);
  const crumbs = [h('li', {}, h('a', { href: filesUrl(id, { path: ROOT }) }, ROOT))];
  let acc = ROOT;
  for (const p of parts) {
    acc = joinPath(acc, p);
    crumbs.push(h('li', {}, h('a', { href: filesUrl(id, { path: acc }) }, p)));
  }
  crumbs[crumbs.length - 1].firstChild.setAttribute('aria-current', 'location');
  return h('nav', { 'aria-label': 'Folder path' }, h('ol', { class: 'breadcrumb mono' }, crumbs));
}

export function mount(root, { id, query }) {
  document.title = `Files · ${id} · ctrl`;
  let alive = true;
  const cleanups = [];
  root.append(placeholder('loading', 'Loading…'));

  (async function load() {
    let server;
    try {
      server = await loadServer(id);
    } catch (e) {
      if (alive) fill(root, failed(e, load));
      return;
    }
    if (!alive) return;
    const editPath = query.get('edit');
    if (editPath) editor(root, server, editPath, cleanups);
    else browser(root, server, query.get('path') || ROOT, () => alive);
  }());

  return () => {
    alive = false;
    cleanups.forEach((fn) => fn());
  };
}

function browser(root, server, path, isAlive) {
  const id = server.serverId;
  const writable = can(server, 'files.write');
  document.title = `${path} · ${serverName(server)} · ctrl`;
  const msg = notice();
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading files…'));
  const more = h('div');
  const uploads = h('ul', { class: 'uploads', 'aria-label': 'Uploads' });
  const fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'aria-label': 'Files to upload' });
  const tools = writable ? h('div', { class: 'toolbar', role: 'group', 'aria-label': 'File actions' },
    h('button', { type: 'button', class: 'btn', onclick: newFile }, 'New file'),
    h('button', { type: 'button', class: 'btn', onclick: newFolder }, 'New folder'),
    h('button', { type: 'button', class: 'btn', onclick: () => fileInput.click() }, 'Upload…'),
    fileInput) : null;
  fill(root, serverHead(server, 'files'), breadcrumb(id, path), tools, msg, uploads, list, more);

  const body = h('tbody');
  const table = h('table', { class: 'data files' },
    h('thead', {}, h('tr', {}, ['Name', 'Size', 'Modified', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), body);
  let shown = 0;

  async function page(offset) {
    try {
      const res = await api.get(`${apiBase(id)}${api.query({ path, offset: offset || undefined })}`);
      if (!isAlive()) return;
      const d = res.data || {};
      const entries = d.entries || [];
      if (!offset) {
        body.replaceChildren();
        shown = 0;
        if (path !== ROOT) body.append(h('tr', {}, h('td', { 'data-label': 'Name', colspan: 4 }, h('a', { href: filesUrl(id, { path: parentPath(path) }) }, '↑ Parent folder'))));
      }
      for (const e of entries) body.append(entryRow(e));
      shown += entries.length;
      fill(list, shown || path !== ROOT ? table : placeholder('empty', 'This folder is empty.'));
      if (!shown && path !== ROOT) list.append(placeholder('empty', 'This folder is empty.'));
      const total = Number.isFinite(d.total) ? ` of ${d.total}` : '';
      fill(more, d.nextOffset !== undefined && d.nextOffset !== null
        ? [h('p', { class: 'muted' }, `Showing ${shown}${total} entries.`), h('button', { type: 'button', class: 'btn', onclick: () => page(d.nextOffset) }, 'Show more')]
        : d.truncated ? h('p', { class: 'muted' }, `Showing the first ${shown} entries only.`) : null);
    } catch (e) {
      if (isAlive()) fill(list, failed(e, () => page(0)));
    }
  }

  function entryRow(e) {
    const p = joinPath(path, e.name);
    const isDir = e.type === 'dir';
    const nameLink = isDir
      ? h('a', { href: filesUrl(id, { path: p }) }, `${e.name}/`)
      : h('a', { href: filesUrl(id, { edit: p }) }, e.name);
    const actions = h('div', { class: 'row-actions' },
      !isDir && can(server, 'files.read') ? h('a', { class: 'btn btn-small', href: `${apiBase(id)}/download${api.query({ path: p })}`, download: e.name, 'aria-label': `Download ${e.name}` }, 'Download') : null,
      writable ? h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Rename ${e.name}`, onclick: () => rename(e) }, 'Rename') : null,
      writable ? h('button', { type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Delete ${e.name}`, onclick: () => remove(e) }, 'Delete…') : null);
    return h('tr', {},
      h('td', { 'data-label': 'Name', class: 'mono name-cell' }, nameLink,
        e.type === 'symlink' ? h('span', { class: 'muted' }, ' (link)') : null),
      h('td', { 'data-label': 'Size', class: 'num' }, isDir ? '—' : bytes(e.size)),
      h('td', { 'data-label': 'Modified' }, dateTime(e.modified)),
      h('td', { 'data-label': 'Actions' }, actions));
  }

  async function newFile() {
    const made = await dialog.form({
      title: `New file in ${path}`,
      submitLabel: 'Create',
      fields: [{ name: 'name', label: 'File name', required: true }],
      submit: async ({ name }) => {
        const p = joinPath(path, name.trim());
        await api.put(`${apiBase(id)}/content${api.query({ path: p })}`, { content: '' });
        return p;
      },
    });
    if (made) navigate(filesUrl(id, { edit: made }));
  }

  async function newFolder() {
    const made = await dialog.form({
      title: `New folder in ${path}`,
      submitLabel: 'Create',
      fields: [{ name: 'name', label: 'Folder name', required: true }],
      submit: ({ name }) => api.post(`${apiBase(id)}/mkdir`, { path: joinPath(path, name.trim()) }),
    });
    if (made) {
      msg.show('Folder created.', 'ok');
      page(0);
    }
  }

  async function rename(e) {
    const from = joinPath(path, e.name);
    const done = await dialog.form({
      title: `Rename ${e.name}`,
      submitLabel: 'Rename',
      fields: [{ name: 'to', label: 'New name or path', value: e.name, required: true, hint: 'A name stays in this folder; a path starting with /server moves it.' }],
      submit: ({ to }) => {
        const t = to.trim();
        return api.post(`${apiBase(id)}/rename`, { from, to: t.startsWith('/') ? t : joinPath(path, t) });
      },
    });
    if (done) {
      msg.show(`Renamed ${e.name}.`, 'ok');
      page(0);
    }
  }

  async function remove(e) {
    const p = joinPath(path, e.name);
    const ok = await dialog.confirm({
      title: `Delete ${e.name}?`,
      message: e.type === 'dir' ? `The folder ${p} and everything in it will be deleted.` : `The file ${p} will be deleted.`,
      confirmLabel: 'Delete',
      action: () => api.del(`${apiBase(id)}${api.query({ path: p })}`),
    });
    if (ok) {
      msg.show(`Deleted ${e.name}.`, 'ok');
      page(0);
    }
  }

  fileInput?.addEventListener('change', async () => {
    const files = [...fileInput.files];
    fileInput.value = '';
    for (const f of files) {
      const bar = h('progress', { max: 100, value: 0, 'aria-label': `Upload of ${f.name}` });
      const state = h('span', { class: 'muted' }, ' waiting');
      const li = h('li', {}, h('span', { class: 'mono' }, f.name), ' ', bar, state);
      uploads.append(li);
      try {
        state.textContent = ' uploading';
        await api.upload(`${apiBase(id)}/upload${api.query({ path: joinPath(path, f.name) })}`, f, (done, total) => {
          bar.value = Math.floor((done / total) * 100);
        });
        bar.value = 100;
        state.textContent = ` uploaded (${bytes(f.size)})`;
        if (isAlive()) page(0);
      } catch (e) {
        state.textContent = ` failed: ${e.message}`;
        li.className = 'upload-failed';
      }
    }
  });

  page(0);
}

function editor(root, server, path, cleanups) {
  const id = server.serverId;
  const writable = can(server, 'files.write');
  const name = path.slice(path.lastIndexOf('/') + 1);
  const baseTitle = `${name} · ${serverName(server)} · ctrl`;
  document.title = baseTitle;
  const msg = notice();
  const dirtyMark = h('span', { class: 'dirty', role: 'status' });
  const gutter = h('pre', { class: 'gutter', 'aria-hidden': 'true' });
  const area = h('textarea', { class: 'editor-text', spellcheck: 'false', wrap: 'off', autocapitalize: 'off', 'aria-label': `Contents of ${path}`, readonly: !writable });
  const save = writable ? h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Save') : null;
  const back = h('a', { href: filesUrl(id, { path: parentPath(path) }), class: 'btn' }, '← Back to folder');
  const slot = h('div', { class: 'editor' }, placeholder('loading', `Opening ${path}…`));
  fill(root, serverHead(server, 'files'), breadcrumb(id, parentPath(path)),
    h('div', { class: 'toolbar' }, h('h2', { class: 'mono file-title' }, name), dirtyMark, back,
      save, save ? h('span', { class: 'hint' }, 'Ctrl+S saves') : null),
    msg, slot);

  let saved = '';
  let dirty = false;
  let lines = 0;
  const setDirty = (d) => {
    dirty = d;
    dirtyMark.textContent = d ? '● unsaved changes' : '';
    document.title = d ? `• ${baseTitle}` : baseTitle;
    if (save) save.disabled = !d;
  };
  const renumber = () => {
    let n = 1;
    for (let i = area.value.indexOf('\n'); i !== -1; i = area.value.indexOf('\n', i + 1)) n += 1;
    if (n !== lines) {
      lines = n;
      gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join('\n');
    }
  };
  area.addEventListener('input', () => {
    setDirty(area.value !== saved);
    renumber();
  });
  area.addEventListener('scroll', () => { gutter.scrollTop = area.scrollTop; }, { passive: true });

  async function doSave() {
    if (!writable || !dirty) return;
    const content = area.value;
    save.disabled = true;
    save.textContent = 'Saving…';
    msg.hide();
    try {
      await api.put(`${apiBase(id)}/content${api.query({ path })}`, { content });
      saved = content;
      setDirty(area.value !== saved);
      msg.show(`Saved ${name}.`, 'ok');
    } catch (e) {
      msg.show(`Not saved: ${e.message}`);
      setDirty(true);
    } finally {
      save.textContent = 'Save';
    }
  }
  save?.addEventListener('click', doSave);
  const onKey = (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 's') {
      e.preventDefault();
      doSave();
    }
  };
  const onUnload = (e) => {
    if (dirty) e.preventDefault();
  };
  document.addEventListener('keydown', onKey);
  window.addEventListener('beforeunload', onUnload);
  cleanups.push(() => {
    document.removeEventListener('keydown', onKey);
    window.removeEventListener('beforeunload', onUnload);
  });
  setLeaveGuard(() => (dirty
    ? dialog.confirm({ title: 'Discard unsaved changes?', message: `Your changes to ${path} have not been saved.`, confirmLabel: 'Discard changes' })
    : Promise.resolve(true)));

  (async () => {
    try {
      const res = await api.get(`${apiBase(id)}/content${api.query({ path })}`);
      const d = res.data || {};
      if (d.encoding && d.encoding !== 'utf8') {
        fill(slot, placeholder('empty', 'This file is not text, so it cannot be edited here.',
          h('a', { class: 'btn', href: `${apiBase(id)}/download${api.query({ path })}`, download: name }, 'Download it')));
        return;
      }
      saved = d.content ?? '';
      area.value = saved;
      renumber();
      fill(slot, gutter, area);
      area.setSelectionRange(0, 0);
      area.focus({ preventScroll: true });
      area.scrollTop = 0;
    } catch (e) {
      fill(slot, e.code === 'PAYLOAD_TOO_LARGE'
        ? placeholder('empty', 'This file is too large to edit in the browser.',
          h('a', { class: 'btn', href: `${apiBase(id)}/download${api.query({ path })}`, download: name }, 'Download it'))
        : failed(e));
    }
  })();
}
