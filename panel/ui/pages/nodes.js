// /nodes (admin): every node with its health, reasons and committed capacity; "Add node"
// shows the one-line `agent register` command with a fresh single-use token.

import * as api from '../api.js';
import { events } from '../events.js';
import { h, fill, badge, placeholder, failed, meter } from '../dom.js';
import { bytes, ago, parseQuantity } from '../format.js';
import * as dialog from '../dialog.js';
import { committed, healthState } from './dashboard.js';

/** The `agent register` line for a new node. */
export function registerCommand(token, name = 'node-1') {
  return `agent register --panel ${location.origin} --token ${token} --name ${name} --ca-cert panel.crt`;
}

export async function addNode() {
  const made = await dialog.form({
    title: 'Add a node',
    submitLabel: 'Create registration token',
    fields: [{ name: 'name', label: 'Node name', value: 'node-1', required: true, hint: 'Letters, digits, dots and dashes; shown in the panel.' }],
    submit: async ({ name }) => ({ name: name.trim(), res: await api.post('/api/agents/registration-tokens') }),
  });
  if (!made) return;
  const { name, res } = made;
  const safe = /^[A-Za-z0-9._-]+$/.test(name) ? name : 'node-1';
  await dialog.reveal({
    title: 'Register the node',
    message: `Run this on the new machine (as the user that runs the agent). The token is single use${res.expiresAt ? ` and expires ${new Date(res.expiresAt).toLocaleString()}` : ''}.`,
    secret: registerCommand(res.token, safe),
    note: 'panel.crt is the panel\'s certificate (DATA/tls/panel.crt); leave out --ca-cert when the panel has a publicly trusted certificate. Then start it with: agent run',
  });
}

function reasonText(r) {
  return typeof r === 'string' ? r : r?.message || r?.code || JSON.stringify(r);
}

export function nodeRow(a, used) {
  const c = used.get(a.id) || { memory: 0, cpu: 0 };
  const reasons = a.health?.reasons || [];
  return h('tr', {},
    h('td', { 'data-label': 'Health' }, badge(healthState(a))),
    h('td', { 'data-label': 'Node', class: 'name-cell' }, h('a', { href: `/nodes/${api.seg(a.id)}` }, a.name), h('span', { class: 'muted' }, ` ${a.hostname || ''}`)),
    h('td', { 'data-label': 'Reasons' }, reasons.length ? reasons.map(reasonText).join('; ') : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Servers', class: 'num' }, String(a.servers ?? 0)),
    h('td', { 'data-label': 'Capacity' },
      meter('Memory', c.memory, parseQuantity(a.capabilities?.maxMemory), bytes),
      meter('CPU', c.cpu, Number(a.capabilities?.maxCpuCores), (v) => `${Math.round(v * 10) / 10} cores`)),
    h('td', { 'data-label': 'Last seen' }, a.status === 'online' ? 'connected' : ago(a.lastSeen)));
}

export function mount(root) {
  document.title = 'Nodes · ctrl';
  let alive = true;
  let timer = null;
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading nodes…'));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Nodes'),
      h('button', { type: 'button', class: 'btn btn-primary', onclick: addNode }, '+ Add node')),
    list);

  async function load() {
    try {
      const [ag, sv] = await Promise.all([api.get('/api/agents'), api.get('/api/servers')]);
      if (!alive) return;
      const agents = ag.agents || [];
      const used = committed(sv.servers || []);
      fill(list, agents.length
        ? h('table', { class: 'data nodes' },
          h('thead', {}, h('tr', {}, ['Health', 'Node', 'Reasons', 'Servers', 'Committed / capacity', 'Last seen'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, agents.map((a) => nodeRow(a, used))))
        : placeholder('empty', 'No nodes yet. Add one to run servers on it.'));
    } catch (e) {
      if (alive) fill(list, failed(e, load));
    }
  }
  const soon = () => {
    if (!timer) timer = setTimeout(() => { timer = null; if (alive) load(); }, 300);
  };
  const offs = [events.on((ev) => ev.event === 'agent_health_changed' && soon()), events.onReconnect(load)];
  load();
  return () => {
    alive = false;
    clearTimeout(timer);
    offs.forEach((off) => off());
  };
}
