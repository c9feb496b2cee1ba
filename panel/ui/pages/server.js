// /servers/{id}: status and power, the live console, CPU/memory charts for the last hour and
// players. The status badge only ever shows what the panel reported; a click shows
// "starting…" beside it until the status event arrives.

import * as api from '../api.js';
import { events, eventServer } from '../events.js';
import { h, fill, badge, notice, placeholder, failed } from '../dom.js';
import { bytes, percent, duration, toBytes } from '../format.js';
import { ConsoleView, commandInput } from '../console.js';
import { LineChart } from '../chart.js';
import * as dialog from '../dialog.js';
import { session, can, manages } from '../session.js';
import { serverName, memoryLimit } from './dashboard.js';

const PENDING = { start: 'starting…', stop: 'stopping…', restart: 'restarting…', kill: 'killing…' };
/** How many console lines are replayed when the console opens (as Wings does). */
const REPLAY_LINES = 150;

/** The server record (`GET /api/servers/{id}/info`). */
export async function loadServer(id) {
  const body = await api.get(`/api/servers/${api.seg(id)}/info`);
  return body.server ?? body.data ?? body;
}

/** The page heading and the tabs shared by the console, files and access pages. */
export function serverHead(server, active, extra) {
  const id = server.serverId;
  const base = `/servers/${api.seg(id)}`;
  const tabs = [
    ['console', base, 'Console', can(server, 'console.read') || can(server, 'power')],
    ['files', `${base}/files`, 'Files', can(server, 'files.read')],
    ['backups', `${base}/backups`, 'Backups', can(server, 'files.read')],
    ['settings', `${base}/settings`, 'Settings', manages(server)],
  ].filter((t) => t[3]);
  return [
    h('div', { class: 'page-head server-head' },
      h('h1', {}, serverName(server), h('span', { class: 'muted mono id' }, ` ${id}`)),
      extra || null),
    h('nav', { class: 'tabs', 'aria-label': 'Server sections' }, tabs.map(([key, href, label]) =>
      h('a', { href, class: 'tab', 'aria-current': key === active ? 'page' : null }, label))),
  ];
}

/** Points of a stats answer as `{t, v}` for one figure. */
export function series(points, pick) {
  return (points || []).map((p) => ({ t: Date.parse(p.t), v: pick(p) }));
}

export function mount(root, { id }) {
  document.title = `${id} · ctrl`;
  let alive = true;
  const cleanups = [];
  const later = (fn) => cleanups.push(fn);
  root.append(placeholder('loading', 'Loading server…'));

  async function load() {
    let server;
    try {
      server = await loadServer(id);
    } catch (e) {
      if (!alive) return;
      fill(root, e.status === 404
        ? placeholder('empty', `No server "${id}" here, or you have no access to it.`, h('a', { href: '/' }, 'Back to the servers'))
        : failed(e, load));
      return;
    }
    if (alive) build(server);
  }

  function build(server) {
    document.title = `${serverName(server)} · ctrl`;
    let status = server.status || 'unknown';
    let uptime = null; // {secs, at}
    let pendingTimer = null;
    const statusSlot = h('span', { class: 'status-slot' });
    const pendingEl = h('span', { class: 'pending', role: 'status' });
    const uptimeEl = h('span', { class: 'muted' });
    const powerErr = notice();
    const node = h('span', { class: 'muted' }, server.agentId ? ['node ', h('span', { class: 'mono' }, server.agentId)] : '');
    if (session.user?.admin && server.agentId) {
      const link = h('a', { href: `/nodes/${api.seg(server.agentId)}` }, server.agentId);
      fill(node, 'node ', link);
      api.get('/api/agents').then((b) => {
        const name = b.agents?.find((a) => a.id === server.agentId)?.name;
        if (name) link.textContent = name;
      }, () => {});
    }

    const buttons = {};
    const powerBar = can(server, 'power')
      ? h('div', { class: 'power', role: 'group', 'aria-label': 'Power' }, ['start', 'stop', 'restart', 'kill'].map((a) => {
        buttons[a] = h('button', { type: 'button', class: a === 'kill' ? 'btn btn-danger' : 'btn', onclick: () => power(a) },
          a === 'kill' ? 'Kill…' : a[0].toUpperCase() + a.slice(1));
        return buttons[a];
      }))
      : null;
    const paintStatus = () => {
      fill(statusSlot, badge(status));
      const running = status === 'running';
      for (const c of [cpu, mem]) c.setEmpty(running ? 'Waiting for the first sample' : 'No history yet');
      uptimeEl.textContent = running && uptime ? `up ${duration(uptime.secs + (Date.now() - uptime.at) / 1000)}` : '';
      const busy = !!pendingEl.textContent;
      if (powerBar) {
        buttons.start.disabled = busy || running || status === 'starting';
        buttons.stop.disabled = busy || ['offline', 'stopped', 'created', 'crashed'].includes(status);
        buttons.restart.disabled = busy;
        buttons.kill.disabled = busy || ['offline', 'stopped', 'created'].includes(status);
      }
    };
    const setPending = (text) => {
      pendingEl.textContent = text || '';
      clearTimeout(pendingTimer);
      if (text) {
        // No event within a minute: say so instead of spinning forever.
        pendingTimer = setTimeout(() => {
          setPending(null);
          powerErr.show('No status change was reported yet. The server may still be working on it.', 'info');
        }, 60000);
      }
      paintStatus();
    };
    later(() => clearTimeout(pendingTimer));

    async function power(action) {
      powerErr.hide();
      if (action === 'kill') {
        const ok = await dialog.confirm({
          title: `Kill ${serverName(server)}?`,
          message: 'The server process is stopped at once, without saving: players are disconnected and unsaved progress is lost. Use Stop for a clean shutdown.',
          confirmLabel: 'Kill now',
        });
        if (!ok || !alive) return;
      }
      setPending(PENDING[action]);
      try {
        const body = await api.post(`/api/servers/${api.seg(id)}/power`, { action });
        // The agent answered with the status it already has (e.g. start while running).
        if (body?.data?.status && body.data.status === status) setPending(null);
      } catch (e) {
        if (!alive) return;
        setPending(null);
        powerErr.show(e.message);
      }
    }

    const head = serverHead(server, 'console', h('div', { class: 'head-actions' }, powerBar));
    const statusLine = h('p', { class: 'status-line' }, statusSlot, ' ', pendingEl, ' ', uptimeEl, ' ', node);

    // Console.
    let consoleBox = null;
    if (can(server, 'console.read')) consoleBox = consolePanel(server, later);
    // Charts and players.
    const cpu = new LineChart({ label: 'CPU', format: percent });
    const limit = memoryLimit(server);
    const mem = new LineChart({ label: 'Memory', format: bytes, max: Number.isFinite(limit) ? limit : null });
    later(() => { cpu.destroy(); mem.destroy(); });
    const historyNote = h('p', { class: 'hint', hidden: true });
    const noteHistory = (text) => {
      historyNote.textContent = text;
      historyNote.hidden = !text;
    };
    const players = h('div', { class: 'players', 'aria-live': 'polite' });
    const paintPlayers = (p) => {
      if (!p || !Number.isFinite(p.online)) {
        fill(players, h('h2', {}, 'Players'), h('p', { class: 'muted' }, 'Not reported'));
        return;
      }
      fill(players, h('h2', {}, `Players ${p.online}/${p.max ?? '?'}`),
        (p.list || []).length ? h('ul', { class: 'player-list' }, p.list.slice(0, 100).map((n) => h('li', {}, String(n)))) : null);
    };
    paintPlayers(server.players);

    fill(root, head, statusLine, powerErr,
      h('div', { class: 'server-grid' },
        consoleBox ? consoleBox.el : h('p', { class: 'muted' }, 'You cannot read this server\'s console.'),
        h('aside', { class: 'side', 'aria-label': 'Usage' }, cpu.el, mem.el, historyNote, players)));
    paintStatus();
    // No event carries players: while running, the agent is asked again every 30 s.
    const tick = setInterval(() => (status === 'running' ? askStatus() : paintStatus()), 30000);
    later(() => clearInterval(tick));

    // Live status, uptime and players from the agent; the record's status stays if the
    // agent cannot be asked.
    const askStatus = () => api.get(`/api/servers/${api.seg(id)}`).then((b) => {
      if (!alive) return;
      const d = b.data || {};
      if (d.status) status = d.status;
      if (Number.isFinite(d.uptime)) uptime = { secs: d.uptime, at: Date.now() };
      if (d.players) paintPlayers(d.players);
      paintStatus();
    }, () => {});

    async function refresh() {
      askStatus();
      try {
        const st = await api.get(`/api/servers/${api.seg(id)}/stats?range=1h`);
        if (!alive) return;
        cpu.set(series(st.points, (p) => p.cpu));
        mem.set(series(st.points, (p) => toBytes(p.memory)));
        noteHistory('');
      } catch (e) {
        if (alive) noteHistory(`History unavailable: ${e.message}`);
      }
      consoleBox?.replay();
    }

    later(events.on((ev) => {
      if (eventServer(ev) !== id) return;
      const d = ev.data || {};
      if (ev.event === 'server_status_changed' && d.currentStatus) {
        status = d.currentStatus;
        if (status !== 'running') uptime = null;
        else uptime = { secs: 0, at: Date.parse(ev.timestamp) || Date.now() };
        setPending(null);
      } else if (ev.event === 'resource_update') {
        const t = Date.parse(ev.timestamp) || Date.now();
        cpu.push(t, d.cpu);
        mem.push(t, toBytes(d.memory));
      } else if (ev.event === 'server_log') {
        consoleBox?.live({ ...d, timestamp: d.timestamp ?? ev.timestamp });
      } else if (ev.event === 'install_log') {
        consoleBox?.live({ ...d, message: `[install] ${d.message ?? ''}`, timestamp: d.timestamp ?? ev.timestamp });
      } else if (ev.event === 'players_update' && d.players) paintPlayers(d.players);
    }));
    later(events.onReconnect(refresh));
    refresh();
  }

  load();
  return () => {
    alive = false;
    cleanups.forEach((fn) => fn());
  };
}

/**
 * The console: the last lines replayed on open (and after a reconnect), then live lines;
 * a command input when the user may write to it.
 */
function consolePanel(server, later) {
  const id = server.serverId;
  const view = new ConsoleView({ maxLines: 2000, label: `Console of ${serverName(server)}` });
  later(() => view.destroy());
  const note = notice();
  let buffer = null; // live lines that arrive during a replay
  const input = can(server, 'console.write')
    ? commandInput(async (cmd) => {
      note.hide();
      try {
        await api.post(`/api/servers/${api.seg(id)}/command`, { command: cmd });
      } catch (e) {
        note.show(`Command not sent: ${e.message}`);
        throw e;
      }
    })
    : null;
  const el = h('section', { class: 'console-panel', 'aria-label': 'Console' }, view.el, note, input);
  return {
    el,
    live(d) {
      if (buffer) buffer.push(d);
      else view.push(d.message ?? '', d.logLevel);
    },
    async replay() {
      if (buffer) return;
      buffer = [];
      let lines = [];
      try {
        const body = await api.get(`/api/servers/${api.seg(id)}/logs?lines=${REPLAY_LINES}`);
        lines = body.lines || body.data?.lines || [];
        note.hide();
      } catch (e) {
        note.show(`Earlier lines unavailable: ${e.message}`, 'info');
      }
      const seen = new Set(lines.map((l) => `${l.timestamp}\u0000${l.message}`));
      view.clear();
      for (const l of lines) view.push(l.message ?? '', l.logLevel);
      const pending = buffer;
      buffer = null;
      for (const d of pending) if (!seen.has(`${d.timestamp}\u0000${d.message}`)) view.push(d.message ?? '', d.logLevel);
    },
  };
}
