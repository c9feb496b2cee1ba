// The shell's program: client-side routes over the history API, the session, the header
// and the tab's live-events socket. Each page is a module exporting
// `mount(root, params) → unmount()`; only one is mounted at a time.

import * as api from './api.js';
import { events } from './events.js';
import { h, fill, failed } from './dom.js';
import * as dialog from './dialog.js';
import { session, setRenderer, navigate, probe, mayLeave, setLeaveGuard } from './session.js';

/** [pattern, page module, options]; `:name` captures one path segment. */
const ROUTES = [
  ['/login', 'login', { public: true }],
  ['/', 'dashboard'],
  ['/servers/:id', 'server'],
  ['/servers/:id/files', 'files'],
  ['/servers/:id/backups', 'backups'],
  ['/servers/:id/settings', 'access'],
  ['/servers/:id/access', 'access'],
  ['/nodes', 'nodes', { admin: true }],
  ['/nodes/:id', 'node', { admin: true }],
  ['/users', 'users', { admin: true }],
  ['/eggs', 'eggs', { admin: true }],
  ['/new-server', 'create-server', { admin: true }],
  ['/keys', 'keys', { user: true }],
];

/** [href, label, who]: who is 'admin', 'user' (a real user, not the admin token) or null. */
const NAV = [
  ['/', 'Servers', null],
  ['/nodes', 'Nodes', 'admin'],
  ['/users', 'Users', 'admin'],
  ['/eggs', 'Eggs', 'admin'],
  ['/keys', 'API keys', 'user'],
];

/** The route for a path: {page, params, opts}, or null. */
export function match(path) {
  const parts = path.split('/').slice(1);
  for (const [pattern, page, opts = {}] of ROUTES) {
    const want = pattern.split('/').slice(1);
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < want.length && ok; i += 1) {
      if (want[i].startsWith(':')) {
        try {
          params[want[i].slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          ok = false;
        }
        ok &&= parts[i] !== '';
      } else ok = want[i] === parts[i];
    }
    if (ok) return { page, params, opts };
  }
  return null;
}

const main = () => document.getElementById('main');
const topbar = () => document.getElementById('topbar');
let current = null;
let seq = 0;
let lastUrl = location.pathname + location.search;
let health = { ready: false, healthy: 0, total: 0 };
let liveOff = [];

async function render() {
  const mine = ++seq;
  const path = location.pathname;
  const route = match(path);
  const user = session.user;
  if (route && !route.opts.public && !user) {
    const next = path === '/' ? '' : `?next=${encodeURIComponent(path + location.search)}`;
    navigate(`/login${next}`, { replace: true, force: true });
    return;
  }
  if (route?.page === 'login' && user) {
    navigate('/', { replace: true, force: true });
    return;
  }
  syncLive();
  let page = route?.page ?? 'not-found';
  let params = route?.params ?? {};
  if (route?.opts.admin && !user?.admin) {
    page = 'not-found';
    params = { reason: 'This page is for administrators.' };
  } else if (route?.opts.user && !user?.id) {
    page = 'not-found';
    params = { reason: 'This page is for users; the admin token has no keys.' };
  }
  let mod;
  try {
    mod = await import(`./pages/${page}.js`);
  } catch (e) {
    if (mine === seq) fill(main(), failed(new Error(`This page failed to load: ${e.message}`), () => location.reload()));
    return;
  }
  if (mine !== seq) return;
  if (current) {
    try {
      current();
    } catch (e) {
      setTimeout(() => { throw e; });
    }
  }
  current = null;
  setLeaveGuard(null);
  const root = main();
  fill(root);
  root.className = `page page-${page}`;
  const unmount = mod.mount(root, { ...params, query: new URLSearchParams(location.search) });
  current = typeof unmount === 'function' ? unmount : null;
  renderHeader(path);
  lastUrl = path + location.search;
  if (page !== 'login' && !root.contains(document.activeElement)) root.focus({ preventScroll: true });
}

/** Opens or closes the live socket and the header's data to follow the session. */
function syncLive() {
  if (session.user && !liveOff.length) {
    events.start(document.getElementById('conn-banner'));
    if (session.user.admin) {
      liveOff.push(events.on((ev) => ev.event === 'agent_health_changed' && loadHealth()));
      liveOff.push(events.onReconnect(loadHealth));
      loadHealth();
    } else liveOff.push(() => {});
  } else if (!session.user && liveOff.length) {
    for (const off of liveOff) off();
    liveOff = [];
    events.stop();
    health = { ready: false, healthy: 0, total: 0 };
  }
}

let healthTimer = null;
/** Node health for the header ("nodes 3/3 healthy"); bursts of events cost one call. */
function loadHealth() {
  if (healthTimer) return;
  healthTimer = setTimeout(async () => {
    healthTimer = null;
    try {
      const body = await api.get('/api/agents');
      const agents = body.agents || [];
      health = {
        ready: true,
        total: agents.length,
        healthy: agents.filter((a) => (a.health?.state ?? (a.status === 'online' ? 'healthy' : 'offline')) === 'healthy').length,
      };
    } catch {
      health = { ready: false, healthy: 0, total: 0 };
    }
    renderHeader(location.pathname);
  }, 200);
}

function renderHeader(path) {
  const bar = topbar();
  const user = session.user;
  bar.hidden = !user;
  if (!user) {
    fill(bar);
    return;
  }
  const section = path === '/' || path.startsWith('/servers') || path === '/new-server' ? '/' : `/${path.split('/')[1]}`;
  const allowed = { admin: user.admin, user: !!user.id };
  const links = NAV.filter(([, , who]) => !who || allowed[who]).map(([href, label]) =>
    h('a', { href, class: 'nav-link', 'aria-current': section === href ? 'page' : null }, label));
  const allHealthy = health.healthy === health.total;
  const nodes = user.admin && health.ready
    ? h('a', { href: '/nodes', class: `health-summary ${allHealthy ? 'ok' : 'bad'}` },
      h('span', { 'aria-hidden': 'true' }, allHealthy ? '● ' : '▲ '), `nodes ${health.healthy}/${health.total} healthy`)
    : null;
  fill(bar,
    h('a', { href: '/', class: 'brand' }, 'ctrl'),
    h('nav', { 'aria-label': 'Main' }, links),
    nodes,
    h('div', { class: 'user-menu' },
      h('span', { class: 'user-name' }, user.name, user.admin ? ' (admin)' : ''),
      h('button', { type: 'button', class: 'btn btn-small', onclick: changePassword }, 'Password'),
      h('button', { type: 'button', class: 'btn btn-small', onclick: logout }, 'Log out')));
}

function changePassword() {
  dialog.form({
    title: 'Change your password',
    submitLabel: 'Change password',
    fields: [
      { name: 'current', label: 'Current password', type: 'password', required: true, autocomplete: 'current-password' },
      { name: 'next', label: 'New password', type: 'password', required: true, autocomplete: 'new-password', hint: 'Your other sessions will be logged out.' },
    ],
    submit: (v) => api.post('/api/auth/password', { current: v.current, new: v.next }),
  });
}

async function logout() {
  if (!(await mayLeave())) return;
  try {
    await api.post('/api/auth/logout');
  } catch {
    // The session is gone either way from this tab's point of view.
  }
  session.user = null;
  navigate('/login', { force: true });
}

function interceptLinks(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest?.('a[href]');
  if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin) return;
  const href = a.getAttribute('href');
  if (href.startsWith('#') || a.pathname.startsWith('/api/') || a.pathname.startsWith('/assets/')) return;
  e.preventDefault();
  const url = a.pathname + a.search;
  if (url !== location.pathname + location.search) navigate(url);
}

async function onPopState() {
  const url = location.pathname + location.search;
  if (!(await mayLeave())) {
    history.pushState(null, '', lastUrl);
    return;
  }
  lastUrl = url;
  render();
}

function boot() {
  setRenderer(render);
  api.setUnauthorizedHandler(() => {
    if (!session.user) return;
    session.user = null;
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true, force: true });
  });
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', onPopState);
  start();
}

/** Asks for the session, then renders; an unreachable panel gets a retry button. */
async function start() {
  try {
    await probe();
  } catch (e) {
    fill(main(), failed(e, start));
    return;
  }
  render();
}

boot();
