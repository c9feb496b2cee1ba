// /new-server?egg=ID (admin): create a server from an egg of the library. The form shows the
// egg's variables with their defaults; the panel validates everything, and its message is
// shown at the top and beside the field it names.

import * as api from '../api.js';
import { h, fill, field, notice, placeholder, failed } from '../dom.js';
import { navigate } from '../session.js';
import { imagesOf, variablesOf } from './eggs.js';
import { healthState } from './dashboard.js';

function firstPort(egg) {
  const ports = egg.ports ?? egg.eggConfig?.ports;
  const p = ports && Object.keys(ports)[0];
  return Number(p) || 25565;
}

/** `in:a,b,c` of a Laravel-style rule string, or null. */
function choices(rules) {
  const m = /(?:^|\|)in:([^|]*)/.exec(rules || '');
  return m ? m[1].split(',') : null;
}

export function mount(root, { query }) {
  document.title = 'New server · ctrl';
  let alive = true;
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'New server')));
  const slot = h('div', {}, placeholder('loading', 'Loading eggs and nodes…'));
  root.append(slot);

  async function load() {
    try {
      const [eggs, agents, users] = await Promise.all([
        api.get('/api/eggs'),
        api.get('/api/agents').catch(() => ({ agents: [] })),
        api.get('/api/users').catch(() => ({ users: [] })),
      ]);
      if (!alive) return;
      const list = eggs.eggs || [];
      if (!list.length) {
        fill(slot, placeholder('empty', 'The egg library is empty.', h('a', { class: 'btn', href: '/eggs' }, 'Import an egg')));
        return;
      }
      build(list, agents.agents || [], users.users || []);
    } catch (e) {
      if (alive) fill(slot, failed(e, load));
    }
  }

  function build(eggs, agents, users) {
    const msg = notice();
    const eggSelect = h('select', { name: 'egg' }, eggs.map((e) => h('option', { value: e.id }, e.name || e.id)));
    const wanted = query.get('egg');
    if (wanted && eggs.some((e) => e.id === wanted)) eggSelect.value = wanted;
    const serverId = h('input', { type: 'text', name: 'serverId', autocomplete: 'off', spellcheck: 'false' });
    const node = h('select', { name: 'agentId' }, h('option', { value: '' }, 'Automatic placement'),
      agents.map((a) => {
        const st = healthState(a);
        return h('option', { value: a.id, disabled: st !== 'healthy' }, `${a.name} (${st})`);
      }));
    const owner = h('select', { name: 'ownerId' }, h('option', { value: '' }, '— nobody (admins only) —'),
      users.map((u) => h('option', { value: u.id }, u.name)));
    const eggPart = h('div', {}, placeholder('loading', 'Loading the egg…'));
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create server');
    const fields = { serverId: field('Server id (optional)', serverId, 'Letters, digits, - and _; a random id when empty.') };
    let current = null; // {egg, vars: [{v, control, wrap}], image, port, limits}
    const form = h('form', { class: 'panel create-form', novalidate: true },
      field('Egg', eggSelect), fields.serverId, eggPart,
      field('Node', node, 'Automatic placement picks a healthy node with room.'),
      users.length ? field('Owner', owner, 'The owner can start, stop and manage access.') : null,
      msg, submit);
    fill(slot, form);

    async function showEgg() {
      const id = eggSelect.value;
      fill(eggPart, placeholder('loading', 'Loading the egg…'));
      let egg;
      try {
        const body = await api.get(`/api/eggs/${api.seg(id)}`);
        egg = body.egg ?? body.data ?? body;
      } catch (e) {
        if (eggSelect.value === id) fill(eggPart, failed(e, showEgg));
        return;
      }
      if (!alive || eggSelect.value !== id) return;
      const images = imagesOf(egg);
      const image = h('select', { name: 'image' }, images.map((i) => h('option', { value: i.label }, i.label === i.ref ? i.ref : `${i.label} (${i.ref})`)));
      const startups = Array.isArray(egg.startups) ? egg.startups : [];
      const startup = h('select', { name: 'startup' }, startups.map((st) => h('option', { value: st.name }, st.name)));
      const port = h('input', { type: 'number', name: 'port', min: 1, max: 65535, value: String(firstPort(egg)) });
      const lim = egg.limits ?? egg.eggConfig?.limits ?? {};
      const limit = (name, value) => h('input', { type: 'text', name, value: value ?? '', placeholder: 'panel default' });
      const limits = { memory: limit('memory', lim.memory), cpu: limit('cpu', lim.cpu), disk: limit('disk', lim.disk) };
      const vars = variablesOf(egg).filter((v) => v.viewable).map((v) => {
        const opts = choices(v.rules);
        const required = /(^|\|)required(\||$)/.test(v.rules);
        const control = opts
          ? h('select', { name: v.env, disabled: !v.editable }, opts.map((o) => h('option', { value: o }, o)))
          : h('input', { type: 'text', name: v.env, required, readonly: !v.editable, spellcheck: 'false' });
        control.value = v.default;
        const hint = [v.description, v.rules ? `Rules: ${v.rules}` : '', v.editable ? '' : 'Set by the egg.'].filter(Boolean).join(' · ');
        const wrap = field(`${v.name}${required ? ' (required)' : ''}`, control, hint || null);
        return { v, control, wrap };
      });
      fields.port = field('Game port', port, 'Becomes SERVER_PORT, the default allocation.');
      fields.memory = field('Memory limit', limits.memory, 'For example 2g or 1536m.');
      fields.cpu = field('CPU cores', limits.cpu);
      fields.disk = field('Disk limit', limits.disk);
      current = { egg, vars, image, port, limits, startup: startups.length > 1 ? startup : null };
      fill(eggPart,
        egg.description ? h('p', { class: 'hint' }, String(egg.description).slice(0, 500)) : null,
        images.length > 1 ? field('Image', image) : null,
        startups.length > 1 ? field('Startup', startup, startups.map((st) => `${st.name}: ${st.command}`).join(' · ').slice(0, 300)) : null,
        h('fieldset', {}, h('legend', {}, 'Variables'), vars.length ? vars.map((x) => x.wrap) : h('p', { class: 'muted' }, 'This egg has no variables.')),
        h('fieldset', { class: 'limits' }, h('legend', {}, 'Port and limits'), fields.port, fields.memory, fields.cpu, fields.disk));
    }
    eggSelect.addEventListener('change', showEgg);
    showEgg();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!current) return;
      msg.hide();
      const all = [...Object.values(fields), ...current.vars.map((x) => x.wrap)];
      all.forEach((w) => w.setError(null));
      const missing = current.vars.find((x) => x.control.required && !x.control.value.trim());
      if (missing) {
        missing.wrap.setError(`${missing.v.name} is required.`);
        missing.control.focus();
        return;
      }
      const port = Number(current.port.value);
      const limits = Object.fromEntries(Object.entries(current.limits).map(([k, c]) => [k, c.value.trim()]));
      const filled = Object.values(limits).filter(Boolean).length;
      if (filled && filled < 3) {
        fields[Object.keys(limits).find((k) => !limits[k])].setError('Give all three limits, or none for the panel\'s defaults.');
        return;
      }
      const body = {
        eggId: current.egg.id ?? eggSelect.value,
        environment: Object.fromEntries(current.vars.filter((x) => x.v.editable).map((x) => [x.v.env, x.control.value])),
        ports: { [String(port)]: port },
      };
      if (filled) body.limits = limits;
      if (imagesOf(current.egg).length > 1) body.image = current.image.value;
      if (current.startup) body.startup = current.startup.value;
      if (serverId.value.trim()) body.serverId = serverId.value.trim();
      if (node.value) body.agentId = node.value;
      if (owner.value) body.ownerId = owner.value;
      submit.disabled = true;
      submit.textContent = 'Creating…';
      try {
        const res = await api.post('/api/servers', body);
        const id = res.server?.serverId ?? body.serverId;
        navigate(id ? `/servers/${api.seg(id)}` : '/');
      } catch (ex) {
        if (!alive) return;
        msg.show(`Not created: ${ex.message}`);
        // Put the message beside the field it names, too.
        const text = ex.message || '';
        const target = current.vars.find((x) => text.includes(x.v.env))?.wrap
          ?? (/port/i.test(text) ? fields.port : /memory/i.test(text) ? fields.memory : /cpu/i.test(text) ? fields.cpu
            : /disk/i.test(text) ? fields.disk : /serverId|server id/i.test(text) ? fields.serverId : null);
        target?.setError(text);
        target?.querySelector('input,select')?.focus();
      } finally {
        submit.disabled = false;
        submit.textContent = 'Create server';
      }
    });
  }

  load();
  return () => { alive = false; };
}
