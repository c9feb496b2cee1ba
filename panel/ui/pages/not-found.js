// Anything the router does not know, and admin pages for non-admins.

import { h } from '../dom.js';

export function mount(root, { reason }) {
  document.title = 'Not found · ctrl';
  root.append(h('section', { class: 'placeholder placeholder-empty' },
    h('h1', {}, reason ? 'Not available' : 'Page not found'),
    h('p', {}, reason || `Nothing lives at ${location.pathname}.`),
    h('p', {}, h('a', { href: '/' }, 'Back to the servers'))));
  return () => {};
}
