// /nodes/{id} (admin): one node's health and reasons, capacity, 1 h charts, its servers, and
// Drain (optionally moving its servers away, each outcome shown) / Undrain.

import * as api from '../api.js';
import { events, eventServer } from '../events.js';
import { h, fill, badge, notice, placeholder, failed, meter } from '../dom.js';
import { bytes, percent, ago, dateTime, parseQuantity } from '../format.js';
import { LineChart } from '../chart.js';
import * as dialog from '../dialog.js';
import { committed, healthState, serverTable, peekStatuses } from './dashboard.js';
import { series } from './server.js';

export function mount(root, { id }) {
  document.title = `Node ${id} · ctrl`;
  let alive = true;
  const cleanups = [];
  const charts = {
    cpu: new LineChart({ label: 'CPU', format: percent, max: 100 }),
    memory: new LineChart({ label: 'Memory', format: percent, max: 100 }),
    disk: new LineChart({ label: 'Disk', format: percent, max: 100 }),
  };
  cleanups.push(() => Object.values(charts).forEach((c) => c.destroy()));
  const msg = notice();
  const moves = h('p', { class: 'hint drain-moves', role: 'status' });
  const head = h('div');
  const body = h('div', {}, placeholder('loading', 'Loading node…'));
  const historyNote = h('p', { class: 'hint' });
  const serversSlot = h('div', { class: 'list-slot' });
  let table = null;
  root.append(head, msg, moves, body,
    h('section', { class: 'panel', 'aria-labelledby': 'usage-h' }, h('h2', { id: 'usage-h' }, 'Last hour'),
      h('div', { class: 'chart-row' }, charts.cpu.el, charts.memory.el, charts.disk.el), historyNote),
    h('section', { class: 'panel node-servers', 'aria-labelledby': 'srv-h' }, h('h2', { id: 'srv-h' }, 'Servers on this node'), serversSlot));

  async function drain(on) {
    msg.hide();
    const move = h('input', { type: 'checkbox' });
    if (on) {
      const ok = await dialog.confirm({
        title: `Drain ${id}?`,
        message: 'A draining node gets no new servers. Its servers keep running there unless you move them.',
        confirmLabel: 'Drain node',
        extra: h('label', { class: 'check' }, move, ' Also move its servers to other nodes, one at a time'),
        action: () => api.post(`/api/agents/${api.seg(id)}/drain`, move.checked ? { migrate: true } : {}),
      });
      if (!ok) return;
    } else {
      try {
        await api.post(`/api/agents/${api.seg(id)}/undrain`);
      } catch (e) {
        msg.show(e.message);
        return;
      }
    }
    msg.show(on ? `Draining${move.checked ? ' and moving its servers' : ''}: the state changes when the panel reports it.` : 'Undrain requested.', 'info');
    load();
  }

  async function load() {
    try {
      const [ag, sv] = await Promise.all([api.get('/api/agents'), api.get('/api/servers')]);
      if (!alive) return;
      const a = ag.agents?.find((x) => x.id === id);
      if (!a) throw Object.assign(new Error(`No node "${id}".`), { status: 404 });
      const servers = (sv.servers || []).filter((s) => s.agentId === id);
      const state = healthState(a);
      document.title = `${a.name} · Nodes · ctrl`;
      fill(head, h('div', { class: 'page-head' },
        h('h1', {}, a.name, h('span', { class: 'muted mono id' }, ` ${a.id}`)),
        h('button', { type: 'button', class: state === 'draining' ? 'btn' : 'btn btn-danger-outline', onclick: () => drain(state !== 'draining') },
          state === 'draining' ? 'Undrain' : 'Drain…')));
      const c = committed(servers).get(id) || { memory: 0, cpu: 0 };
      // The panel's human message says what each reason code means (`; `-joined).
      const reasons = a.health?.reasons?.length && a.health.message ? a.health.message.split('; ') : (a.health?.reasons || []);
      const sys = a.systemLoad || {};
      fill(body, h('section', { class: 'panel node-facts' },
        h('p', {}, badge(state), a.health?.since ? h('span', { class: 'muted' }, ` since ${dateTime(a.health.since)}`) : null,
          Number.isFinite(a.health?.rttMs) ? h('span', { class: 'muted' }, ` · round trip ${a.health.rttMs} ms`) : null),
        reasons.length ? h('ul', { class: 'reasons' }, reasons.map((r) => h('li', {}, typeof r === 'string' ? r : r.message || r.code))) : null,
        h('dl', { class: 'facts' },
          h('dt', {}, 'Host'), h('dd', { class: 'mono' }, a.hostname || '—'),
          h('dt', {}, 'Connection'), h('dd', {}, a.status === 'online' ? 'connected' : `offline, last seen ${ago(a.lastSeen)}`),
          h('dt', {}, 'Docker'), h('dd', {}, a.capabilities?.dockerVersion || '—'),
          h('dt', {}, 'Load now'), h('dd', {}, Number.isFinite(sys.cpu) ? `CPU ${percent(sys.cpu)} · memory ${percent(sys.memory)} · disk ${percent(sys.disk)}` : '—')),
        meter('Memory committed', c.memory, parseQuantity(a.capabilities?.maxMemory), bytes),
        meter('CPU committed', c.cpu, Number(a.capabilities?.maxCpuCores), (v) => `${Math.round(v * 10) / 10} cores`)));
      table = servers.length ? serverTable(servers, new Map([[a.id, a]])) : null;
      if (table) peekStatuses(table, servers, () => alive);
      fill(serversSlot, table ? table.table : placeholder('empty', 'No servers on this node.'));
    } catch (e) {
      if (alive) fill(body, e.status === 404 ? placeholder('empty', `No node "${id}".`, h('a', { href: '/nodes' }, 'All nodes')) : failed(e, load));
      return;
    }
    try {
      const st = await api.get(`/api/agents/${api.seg(id)}/stats?range=1h`);
      if (!alive) return;
      charts.cpu.set(series(st.points, (p) => p.cpu));
      charts.memory.set(series(st.points, (p) => p.memory));
      charts.disk.set(series(st.points, (p) => p.disk));
      historyNote.textContent = '';
    } catch (e) {
      if (alive) historyNote.textContent = `History unavailable: ${e.message}`;
    }
  }

  cleanups.push(events.on((ev) => {
    const d = ev.data || {};
    if (ev.event === 'agent_health_changed' && ev.agentId === id) load();
    else if (ev.event === 'drain_progress' && d.drainedAgentId === id) {
      moves.textContent = `${d.serverId}: ${d.outcome}${d.error ? ` (${d.error.message})` : ''}`;
      load();
    } else if (ev.event === 'drain_completed' && ev.agentId === id) moves.textContent = `Migration done: ${d.moved} moved, ${d.failed} failed, ${d.skipped} skipped.`;
    else if (table && eventServer(ev)) table.update(ev);
  }));
  cleanups.push(events.onReconnect(load));
  load();
  return () => {
    alive = false;
    cleanups.forEach((fn) => fn());
  };
}
