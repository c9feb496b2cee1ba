// Settings tab, admins only: move the server to another node with its files
// (POST …/transfer: stop, back up, create there, restore, start there if it ran). Its
// transfer_progress events show the step; the answer shows where it ended up.

import * as api from '../api.js';
import { events, eventServer } from '../events.js';
import { h, field, notice } from '../dom.js';
import * as dialog from '../dialog.js';
import { serverName, healthState } from './dashboard.js';

const STEPS = {
  stopping: 'Stopping on the source…', backing_up: 'Backing up…', creating: 'Creating on the target…',
  restoring: 'Restoring the files…', starting: 'Starting on the target…', removing: 'Removing the source copy…',
};

/** The transfer section; `later(fn)` runs fn when the page goes. */
export function transferPanel(server, later) {
  const id = server.serverId;
  const target = h('select', { name: 'target' }, h('option', { value: '' }, 'Automatic (placement picks)'));
  const step = h('p', { class: 'hint', role: 'status' });
  const msg = notice();
  const btn = h('button', { type: 'submit', class: 'btn' }, 'Move server…');
  const names = new Map();
  // Every node but the one the server is on (offline ones shown, not choosable).
  const nodes = () => api.get('/api/agents').then(({ agents = [] }) => {
    target.replaceChildren(target.firstChild);
    for (const a of agents) {
      names.set(a.id, a.name);
      if (a.id !== server.agentId) target.append(h('option', { value: a.id, disabled: a.status !== 'online' }, `${a.name} (${healthState(a)})`));
    }
  }, (e) => msg.show(`Node list unavailable: ${e.message}`));
  nodes();
  later(events.on((ev) => {
    // Only while this page's move runs: a late event must not follow the outcome.
    if (btn.disabled && ev.event === 'transfer_progress' && eventServer(ev) === id && STEPS[ev.data?.step]) step.textContent = STEPS[ev.data.step];
  }));
  const submit = async (e) => {
    e.preventDefault();
    const to = target.value;
    const ok = await dialog.confirm({
      title: `Move ${serverName(server)}?`,
      message: `The server stops while its files move to ${to ? target.selectedOptions[0].textContent : 'the node placement picks'}; it starts there again if it was running.`,
      confirmLabel: 'Move server',
    });
    if (!ok) return;
    btn.disabled = true;
    msg.hide();
    step.textContent = 'Moving…';
    try {
      const r = await api.post(`/api/servers/${api.seg(id)}/transfer`, to ? { agentId: to } : {});
      server.agentId = r.agentId;
      const name = (a) => names.get(a) || a;
      msg.show(`Moved to ${name(r.agentId)}${r.running ? ', running' : ''}.${r.sourceRemoved === false ? ` The copy on ${name(r.previousAgentId)} could not be removed (stopped).` : ''}`, 'ok');
      nodes();
    } catch (ex) {
      msg.show(`Not moved: ${ex.message}`);
    } finally {
      btn.disabled = false;
      step.textContent = '';
    }
  };
  return h('section', { class: 'panel transfer', 'aria-labelledby': 'move-h' },
    h('h2', { id: 'move-h' }, 'Move to another node'),
    h('form', { class: 'inline-form', onsubmit: submit }, field('Target node', target), btn),
    step, msg);
}
