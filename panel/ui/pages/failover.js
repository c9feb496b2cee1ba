// Settings tab, admins: the failover switch (PATCH `failover`) and fenced-off copies.

import * as api from '../api.js';
import { h, notice } from '../dom.js';
import { dateTime } from '../format.js';

/** The failover section for `server` (a record from GET /api/servers/{id}). */
export function failoverPanel(server) {
  const id = server.serverId;
  const msg = notice();
  const box = h('input', { type: 'checkbox', name: 'failover', checked: !!server.failover });
  const copies = h('div', { class: 'quarantined' });
  const showCopies = (list) => {
    copies.replaceChildren(...(list?.length
      ? [h('h3', {}, 'Copies fenced off returning nodes'),
        h('ul', {}, list.map((q) => h('li', {},
          `Node ${q.agentId}, epoch ${q.epoch}, ${dateTime(q.at)}: `, h('span', { class: 'mono' }, q.path || '(path unknown)'))))]
      : []));
  };
  showCopies(server.quarantined);
  box.addEventListener('change', async () => {
    const want = box.checked;
    box.disabled = true;
    msg.hide();
    try {
      const r = await api.patch(`/api/servers/${api.seg(id)}`, { failover: want });
      server.failover = !!r.server?.failover;
      box.checked = server.failover;
      showCopies(r.server?.quarantined);
      msg.show(server.failover
        ? 'Failover on.'
        : 'Failover off.', 'ok');
    } catch (e) {
      box.checked = !want;
      msg.show(`Not changed: ${e.message}`);
    } finally {
      box.disabled = false;
    }
  });
  return h('section', { class: 'panel failover', 'aria-labelledby': 'failover-h' },
    h('h2', { id: 'failover-h' }, 'Failover'),
    h('label', { class: 'check' }, box, ' Bring this server back on another node when its node dies'),
    h('p', { class: 'hint' }, 'From its latest backup (later changes are lost): give it a backup schedule.'),
    msg, copies);
}
