// /login: one form; errors inline; the focus starts on the username.

import * as api from '../api.js';
import { h, field, notice } from '../dom.js';
import { session, navigate } from '../session.js';

/** Where to go after login: only a local path (never another origin). */
function nextUrl(query) {
  const next = query.get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';
}

function message(e) {
  if (e.code === 'AUTH_FAILED' || e.status === 401) return 'Wrong username or password.';
  if (e.code === 'RATE_LIMITED' || e.status === 429) {
    const wait = e.retryAfter ? ` Try again in ${e.retryAfter} s.` : ' Wait a moment and try again.';
    return `Too many login attempts.${wait}`;
  }
  return e.message;
}

export function mount(root, { query }) {
  document.title = 'Log in · ctrl';
  const user = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const err = notice();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Log in');
  let alive = true;
  const form = h('form', { class: 'login-form', 'aria-labelledby': 'login-title', novalidate: true },
    h('h1', { id: 'login-title' }, 'Log in to ctrl'),
    field('Username', user),
    field('Password', pass),
    err,
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value.trim() || !pass.value) {
      err.show('Enter your username and password.');
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Logging in…';
    err.hide();
    try {
      const body = await api.post('/api/auth/login', { username: user.value.trim(), password: pass.value }, { quiet401: true });
      if (!alive) return;
      session.user = body.user;
      navigate(nextUrl(query), { replace: true });
    } catch (ex) {
      if (!alive) return;
      err.show(message(ex));
      pass.value = '';
      pass.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Log in';
    }
  });
  root.append(h('div', { class: 'login-wrap' }, form));
  user.focus();
  return () => { alive = false; };
}
