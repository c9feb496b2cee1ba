// /eggs (admin): the egg library; import an egg (ours, or a Pterodactyl/Pelican export) from
// a file or pasted JSON; create a server from one.

import * as api from '../api.js';
import { h, fill, notice, placeholder, failed, field } from '../dom.js';
import * as dialog from '../dialog.js';

/** Largest egg file read in the browser (the panel has its own limit). */
const MAX_EGG_BYTES = 1024 * 1024;

export function mount(root) {
  document.title = 'Eggs · ctrl';
  let alive = true;
  const msg = notice();
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading eggs…'));
  const file = h('input', { type: 'file', accept: '.json,application/json' });
  const text = h('textarea', { rows: 6, class: 'mono', spellcheck: 'false', placeholder: '{"meta": {"version": "PTDL_v2"}, …}' });
  const importBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Import egg');
  const form = h('form', { class: 'panel import-form', 'aria-labelledby': 'import-h' },
    h('h2', { id: 'import-h' }, 'Import an egg'),
    h('p', { class: 'hint' }, 'Our egg format, or an export from Pterodactyl (PTDL_v1, PTDL_v2) or Pelican (PLCN_v1 to PLCN_v3), as it is.'),
    field('Egg file', file), field('…or paste its JSON', text), importBtn);
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Eggs')), msg, list, form);

  file.addEventListener('change', async () => {
    const f = file.files[0];
    if (!f) return;
    if (f.size > MAX_EGG_BYTES) {
      msg.show(`${f.name} is ${Math.round(f.size / 1024)} KiB; eggs are far smaller. Is this the right file?`);
      return;
    }
    text.value = await f.text();
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.hide();
    let egg;
    try {
      egg = JSON.parse(text.value);
    } catch (ex) {
      msg.show(`That is not valid JSON: ${ex.message}`);
      text.focus();
      return;
    }
    importBtn.disabled = true;
    try {
      const res = await api.post('/api/eggs', egg);
      msg.show(`Imported ${res.egg?.name ?? 'the egg'}.`, 'ok');
      text.value = '';
      file.value = '';
      load();
    } catch (ex) {
      msg.show(`Not imported: ${ex.message}`);
    } finally {
      importBtn.disabled = false;
    }
  });

  async function load() {
    try {
      const body = await api.get('/api/eggs');
      if (!alive) return;
      const eggs = body.eggs || [];
      fill(list, eggs.length
        ? h('table', { class: 'data eggs' },
          h('thead', {}, h('tr', {}, ['Egg', 'Images', 'Variables', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, eggs.map(row)))
        : placeholder('empty', 'No eggs yet. Import one below.'));
    } catch (ex) {
      if (alive) fill(list, failed(ex, load));
    }
  }

  function row(egg) {
    const images = imagesOf(egg);
    return h('tr', {},
      h('th', { scope: 'row', 'data-label': 'Egg' }, egg.name || egg.id, egg.description ? h('p', { class: 'hint' }, String(egg.description).slice(0, 200)) : null),
      h('td', { 'data-label': 'Images', class: 'mono' }, images.map((i) => i.label).join(', ') || '—'),
      h('td', { 'data-label': 'Variables', class: 'num' }, String(variablesOf(egg).length)),
      h('td', { 'data-label': 'Actions' }, h('div', { class: 'row-actions' },
        h('a', { class: 'btn btn-small', href: `/new-server${api.query({ egg: egg.id })}` }, 'Create server'),
        h('button', { type: 'button', class: 'btn btn-small btn-danger-outline', onclick: () => remove(egg) }, 'Delete…'))));
  }

  async function remove(egg) {
    const ok = await dialog.confirm({
      title: `Delete the egg ${egg.name || egg.id}?`,
      message: 'Servers created from it keep running; new ones can no longer use it.',
      confirmLabel: 'Delete egg',
      action: () => api.del(`/api/eggs/${api.seg(egg.id)}`),
    });
    if (ok) load();
  }

  load();
  return () => { alive = false; };
}

/** An egg's images as [{label, ref}]: a map label → ref, a list, or our single `image`. */
export function imagesOf(egg) {
  const imgs = egg.images ?? egg.dockerImages ?? egg.docker_images;
  if (Array.isArray(imgs)) return imgs.map((i) => (typeof i === 'string' ? { label: i, ref: i } : { label: i.label ?? i.name ?? i.image, ref: i.image ?? i.ref ?? i.label }));
  if (imgs && typeof imgs === 'object') return Object.entries(imgs).map(([label, ref]) => ({ label, ref: String(ref) }));
  const one = egg.image ?? egg.eggConfig?.image;
  return one ? [{ label: one, ref: one }] : [];
}

/**
 * An egg's variables as [{env, name, description, default, rules, editable}]: from its
 * `variables` list (camelCase or Pterodactyl's snake_case), else from our egg's environment.
 */
export function variablesOf(egg) {
  if (Array.isArray(egg.variables)) {
    return egg.variables.map((v) => ({
      env: v.envVariable ?? v.env_variable ?? v.env ?? v.name,
      name: v.name ?? v.envVariable ?? v.env_variable,
      description: v.description ?? '',
      default: v.defaultValue ?? v.default_value ?? v.default ?? '',
      rules: Array.isArray(v.rules) ? v.rules.join('|') : (v.rules ?? ''),
      editable: (v.userEditable ?? v.user_editable ?? true) !== false,
      viewable: (v.userViewable ?? v.user_viewable ?? true) !== false,
    })).filter((v) => v.env);
  }
  const env = egg.environment ?? egg.eggConfig?.environment ?? {};
  return Object.entries(env).map(([k, v]) => ({ env: k, name: k, description: '', default: String(v), rules: '', editable: true, viewable: true }));
}
