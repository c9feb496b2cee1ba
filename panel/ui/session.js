// Who is logged in, and client-side navigation. Kept apart from app.js so page modules can
// import it without importing the router.

import * as api from './api.js';

export const session = {
  /** `{id, name, admin}` or null. */
  user: null,
};

let render = () => {};
let leaveGuard = null;

/** app.js installs its renderer here. */
export function setRenderer(fn) {
  render = fn;
}

/**
 * A page with unsaved work sets `guard` (an async function resolving true when leaving is
 * fine); null removes it. app.js asks it before any in-app navigation.
 */
export function setLeaveGuard(guard) {
  leaveGuard = guard;
}

/** Whether the current page lets the user leave (asking it if it has a guard). */
export async function mayLeave() {
  return leaveGuard ? leaveGuard() : true;
}

/** Goes to an in-app URL through the history API (no reload). */
export async function navigate(url, { replace = false, force = false } = {}) {
  if (!force && !(await mayLeave())) return;
  leaveGuard = null;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/**
 * Asks the panel who we are: the user, or null when there is no session (401; also 404 from
 * a panel without sessions). Other failures are thrown (the panel is unreachable).
 */
export async function probe() {
  try {
    const body = await api.get('/api/auth/me', { quiet401: true });
    session.user = body.user || null;
  } catch (e) {
    if (e.status !== 401 && e.status !== 404) throw e;
    session.user = null;
  }
  return session.user;
}

/** Whether the current user holds `perm` on `server` (owners and admins hold all). */
export function can(server, perm) {
  const u = session.user;
  if (!u) return false;
  if (u.admin || (server?.ownerId && server.ownerId === u.id)) return true;
  return Array.isArray(server?.permissions) && server.permissions.includes(perm);
}

/** Owner or admin: may manage access to the server. */
export function manages(server) {
  const u = session.user;
  return !!u && (u.admin || (!!server?.ownerId && server.ownerId === u.id));
}
