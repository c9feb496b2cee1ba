// /: the servers (and, for admins, the nodes) at a glance, kept live from /api/events.

import * as api from '../api.js';
import { events, eventServer } from '../events.js';
import { h, fill, badge, placeholder, failed, meter, perFrame } from '../dom.js';
import { bytes, percent, parseQuantity, toBytes } from '../format.js';
import { session } from '../session.js';

const SPARK = '▁▂▃▄▅▆▇█';
const SPARK_LEN = 8;

/** A text sparkline of recent CPU values (decorative; the number beside it is read out). */
function spark(values) {
  if (!values.length) return '';
  const top = Math.max(1, ...values);
  return values.map((v) => SPARK[Math.min(7, Math.floor((v / top) * 7.99))]).join('');
}

/** The server's display name: egg name, else its id. */
export function serverName(s) {
  return s.name || s.eggConfig?.name || s.serverId;
}

/** Memory limit in bytes from the record (egg limits), or NaN. */
export function memoryLimit(s) {
  return parseQuantity(s.eggConfig?.limits?.memory ?? s.limits?.memory);
}

/**
 * A live table of servers. `rows.update(ev)` applies an event; returns whether the server
 * is known. Cells are updated in place once per frame, never rebuilt from markup.
 */
export function serverTable(servers, agentsById) {
  const byId = new Map();
  const dirty = new Set();
  const body = h('tbody');
  for (const s of servers) {
    const row = {
      s,
      cpu: [],
      cells: {
        status: h('td', { 'data-label': 'Status' }),
        cpu: h('td', { 'data-label': 'CPU', class: 'num' }),
        mem: h('td', { 'data-label': 'Memory', class: 'num' }),
        players: h('td', { 'data-label': 'Players', class: 'num' }),
      },
    };
    if (Number.isFinite(s.resources?.cpu)) row.cpu.push(s.resources.cpu);
    const agent = agentsById?.get(s.agentId);
    row.tr = h('tr', { 'data-server': s.serverId },
      row.cells.status,
      h('td', { 'data-label': 'Server', class: 'name-cell' },
        h('a', { href: `/servers/${api.seg(s.serverId)}` }, serverName(s)),
        serverName(s) !== s.serverId ? h('span', { class: 'muted mono' }, ` ${s.serverId}`) : null),
      h('td', { 'data-label': 'Node' }, agent
        ? h('a', { href: `/nodes/${api.seg(agent.id)}` }, agent.name)
        : h('span', { class: 'muted' }, s.agentId ? (s.agentOnline === false ? 'offline' : '—') : '—')),
      row.cells.cpu, row.cells.mem, row.cells.players);
    byId.set(s.serverId, row);
    paint(row);
    body.append(row.tr);
  }
  const flush = perFrame(() => {
    for (const row of dirty) paint(row);
    dirty.clear();
  });
  const table = h('table', { class: 'data servers' },
    h('thead', {}, h('tr', {}, ['Status', 'Server', 'Node', 'CPU', 'Memory', 'Players'].map((c) => h('th', { scope: 'col' }, c)))),
    body);
  return {
    table,
    rows: byId,
    /** Applies a live event; false when the server is not in this table. */
    update(ev) {
      const row = byId.get(eventServer(ev));
      if (!row) return false;
      const d = ev.data || {};
      if (ev.event === 'server_status_changed' && d.currentStatus) row.s.status = d.currentStatus;
      else if (ev.event === 'resource_update') {
        row.s.resources = d;
        if (Number.isFinite(d.cpu)) {
          row.cpu.push(d.cpu);
          if (row.cpu.length > SPARK_LEN) row.cpu.shift();
        }
      } else if (ev.event === 'players_update' && d.players) row.s.players = d.players;
      else return true;
      dirty.add(row);
      flush();
      return true;
    },
    /** The agent's `get_status` answer for a server whose status no event has told yet. */
    peeked(id, d) {
      const row = byId.get(id);
      if (!row || row.s.status || !d.status) return;
      row.s.status = d.status;
      if (d.players) row.s.players = d.players;
      dirty.add(row);
      flush();
    },
    filter(text) {
      const q = text.trim().toLowerCase();
      let shown = 0;
      for (const row of byId.values()) {
        const hay = `${serverName(row.s)} ${row.s.serverId} ${agentsById?.get(row.s.agentId)?.name ?? ''} ${row.s.status ?? ''}`.toLowerCase();
        const hit = !q || hay.includes(q);
        row.tr.hidden = !hit;
        if (hit) shown += 1;
      }
      return shown;
    },
  };
}

function paint(row) {
  const { s, cells } = row;
  fill(cells.status, badge(s.status || 'unknown'));
  const running = s.status === 'running' || s.status === 'starting';
  const r = running ? s.resources : null;
  // Running without a sample yet: say so rather than a bare dash.
  const none = () => (running ? h('span', { class: 'muted wait' }, 'waiting for first sample') : '—');
  fill(cells.cpu, r && Number.isFinite(r.cpu)
    ? [h('span', { class: 'spark', 'aria-hidden': 'true' }, spark(row.cpu)), ` ${percent(r.cpu)}`]
    : none());
  const used = r ? toBytes(r.memory) : NaN;
  const limit = memoryLimit(s);
  fill(cells.mem, Number.isFinite(used) ? `${bytes(used)}${Number.isFinite(limit) ? ` / ${bytes(limit)}` : ''}` : none());
  const p = running ? s.players : null;
  fill(cells.players, p && Number.isFinite(p.online) ? `${p.online}/${p.max ?? '?'}` : '—');
}

/** How many status-less servers the dashboard asks their agents about when it loads. */
const PEEK = 50;

/**
 * `GET /api/servers` carries each server's last-known `status`; one the panel has not heard
 * since it started (null) is asked of its agent (`get_status`, four at a time, the first
 * PEEK), the rest wait for an event.
 */
export function peekStatuses(table, servers, alive) {
  const todo = servers.filter((s) => s.agentOnline && !s.status).slice(0, PEEK);
  const worker = async () => {
    for (let s = todo.shift(); s && alive(); s = todo.shift()) {
      try {
        table.peeked(s.serverId, (await api.get(`/api/servers/${api.seg(s.serverId)}`)).data || {});
      } catch { /* the row stays "unknown" until an event says more */ }
    }
  };
  return Promise.all([worker(), worker(), worker(), worker()]);
}

/** Committed memory and CPU of the servers placed on each agent. */
export function committed(servers) {
  const out = new Map();
  for (const s of servers) {
    const c = out.get(s.agentId) || { memory: 0, cpu: 0 };
    const lim = s.eggConfig?.limits || {};
    const m = parseQuantity(lim.memory);
    const cpu = Number(lim.cpu);
    if (Number.isFinite(m)) c.memory += m;
    if (Number.isFinite(cpu)) c.cpu += cpu;
    out.set(s.agentId, c);
  }
  return out;
}

/** The health state of an agent record (`health.state`, else from `status`). */
export function healthState(a) {
  return a.health?.state ?? (a.status === 'online' ? 'healthy' : 'offline');
}

function nodeCards(agents, servers) {
  const used = committed(servers);
  return h('ul', { class: 'cards nodes-grid' }, agents.map((a) => {
    const c = used.get(a.id) || { memory: 0, cpu: 0 };
    const reasons = a.health?.reasons || [];
    return h('li', { class: 'card' },
      h('div', { class: 'card-head' },
        h('a', { href: `/nodes/${api.seg(a.id)}`, class: 'card-title' }, a.name),
        badge(healthState(a))),
      reasons.length ? h('p', { class: 'reasons' }, reasons.map((r) => (typeof r === 'string' ? r : r.message || r.code)).join('; ')) : null,
      h('p', { class: 'muted' }, `${a.servers ?? 0} server${a.servers === 1 ? '' : 's'}`),
      meter('Memory', c.memory, parseQuantity(a.capabilities?.maxMemory), bytes),
      meter('CPU', c.cpu, Number(a.capabilities?.maxCpuCores), (v) => `${Math.round(v * 10) / 10} cores`));
  }));
}

export function mount(root) {
  document.title = 'Servers · ctrl';
  const admin = session.user?.admin;
  let alive = true;
  let table = null;
  let refetchTimer = null;
  const filter = h('input', { type: 'search', id: 'server-filter', placeholder: 'Name, id, node or status', autocomplete: 'off' });
  const count = h('span', { class: 'muted', role: 'status' });
  const list = h('div', { class: 'list-slot' }, placeholder('loading', 'Loading servers…'));
  const nodes = admin ? h('section', { class: 'nodes-summary', 'aria-labelledby': 'nodes-h' }, h('h2', { id: 'nodes-h' }, 'Nodes'), h('div', {}, placeholder('loading', 'Loading nodes…'))) : null;
  fill(root,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Servers'),
      admin ? h('a', { href: '/new-server', class: 'btn btn-primary' }, '+ New server') : null),
    h('div', { class: 'toolbar' }, h('label', { for: 'server-filter' }, 'Filter'), filter, count),
    list,
    nodes);

  const applyFilter = () => {
    if (!table) return;
    const shown = table.filter(filter.value);
    count.textContent = `${shown} of ${table.rows.size} servers`;
  };
  filter.addEventListener('input', applyFilter);

  async function load() {
    try {
      const [sv, ag] = await Promise.all([
        api.get('/api/servers'),
        admin ? api.get('/api/agents').catch(() => null) : null,
      ]);
      if (!alive) return;
      const servers = sv.servers || [];
      const agents = ag?.agents || [];
      const byId = new Map(agents.map((a) => [a.id, a]));
      if (!servers.length) {
        table = null;
        count.textContent = '';
        fill(list, placeholder('empty', admin ? 'No servers yet.' : 'You have no servers yet. An administrator can create one for you or give you access.',
          admin ? h('a', { href: '/new-server', class: 'btn' }, 'Create a server from an egg') : null));
      } else {
        table = serverTable(servers, byId);
        fill(list, table.table);
        applyFilter();
        peekStatuses(table, servers, () => alive);
      }
      if (nodes) {
        fill(nodes.lastChild, ag ? (agents.length ? nodeCards(agents, servers)
          : placeholder('empty', 'No nodes yet.', h('a', { href: '/nodes', class: 'btn' }, 'Add a node')))
          : placeholder('error', 'Node list unavailable.'));
      }
    } catch (e) {
      if (alive) fill(list, failed(e, load));
    }
  }

  // A server this page does not know appeared: refetch once for a burst.
  const refetchSoon = () => {
    if (refetchTimer) return;
    refetchTimer = setTimeout(() => { refetchTimer = null; if (alive) load(); }, 1000);
  };
  const offs = [
    events.on((ev) => {
      if (ev.event === 'agent_health_changed') {
        if (admin) refetchSoon();
        return;
      }
      if (!eventServer(ev)) return;
      const known = table ? table.update(ev) : false;
      if (!known && ev.event === 'server_status_changed') refetchSoon();
    }),
    events.onReconnect(load),
  ];
  load();
  return () => {
    alive = false;
    clearTimeout(refetchTimer);
    offs.forEach((off) => off());
  };
}
