// Modal dialogs on <dialog>: confirmations for dangerous actions, small forms, and one-time
// secrets. In a confirmation the focus starts on Cancel and the dangerous button is a plain
// button (no form submission), so Enter or Escape never confirms by accident.

import { h, field, notice, uid } from './dom.js';

function open(dialog) {
  document.body.append(dialog);
  dialog.showModal();
  dialog.addEventListener('close', () => dialog.remove(), { once: true });
}

/**
 * Asks before a dangerous action. Resolves true only when the confirm button is clicked.
 * `action(…)` (optional) runs on confirm while the dialog stays open; if it throws, its
 * message is shown in the dialog and nothing closes.
 */
export function confirm({ title, message, confirmLabel = 'Confirm', danger = true, action, extra }) {
  return new Promise((resolve) => {
    const err = notice();
    const cancel = h('button', { type: 'button', class: 'btn', autofocus: true }, 'Cancel');
    const ok = h('button', { type: 'button', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, confirmLabel);
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'dlg-title', 'aria-describedby': 'dlg-msg' },
      h('h2', { id: 'dlg-title' }, title),
      h('p', { id: 'dlg-msg' }, message),
      extra || null,
      err,
      h('div', { class: 'dialog-actions' }, cancel, ok));
    let result = false;
    dialog.addEventListener('close', () => resolve(result), { once: true });
    cancel.addEventListener('click', () => dialog.close());
    ok.addEventListener('click', async () => {
      if (action) {
        ok.disabled = true;
        try {
          await action();
        } catch (e) {
          err.show(e.message);
          ok.disabled = false;
          return;
        }
      }
      result = true;
      dialog.close();
    });
    open(dialog);
    cancel.focus();
  });
}

/**
 * A small form. `fields`: [{name, label, type?, value?, required?, hint?, options?}];
 * `options` (strings) become suggestions under a text input.
 * `submit(values)` may throw an ApiError; its message is shown and the dialog stays.
 * Resolves with submit's result, or null when cancelled.
 */
export function form({ title, fields, submitLabel = 'Save', submit }) {
  return new Promise((resolve) => {
    const err = notice();
    const controls = {};
    const rows = fields.map((f) => {
      let control;
      if (f.type === 'checkbox') {
        control = h('input', { type: 'checkbox', name: f.name, checked: !!f.value });
      } else if (f.type === 'textarea') {
        control = h('textarea', { name: f.name, rows: 8, required: !!f.required });
        control.value = f.value ?? '';
      } else {
        const listId = f.options ? uid('list') : null;
        control = h('input', { type: f.type || 'text', name: f.name, required: !!f.required, autocomplete: f.autocomplete || 'off', list: listId });
        control.value = f.value ?? '';
        if (listId) {
          controls[f.name] = control;
          return [field(f.label, control, f.hint), h('datalist', { id: listId }, f.options.map((o) => h('option', { value: o })))];
        }
      }
      controls[f.name] = control;
      return field(f.label, control, f.hint);
    });
    const submitBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, submitLabel);
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const formEl = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', {}, title), rows, err, h('div', { class: 'dialog-actions' }, cancel, submitBtn));
    const dialog = h('dialog', { class: 'dialog' }, formEl);
    let result = null;
    dialog.addEventListener('close', () => resolve(result), { once: true });
    cancel.addEventListener('click', () => dialog.close());
    formEl.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = {};
      for (const [k, c] of Object.entries(controls)) values[k] = c.type === 'checkbox' ? c.checked : c.value;
      submitBtn.disabled = true;
      err.hide();
      try {
        result = await submit(values);
        if (result === undefined) result = values;
        dialog.close();
      } catch (ex) {
        err.show(ex.message);
      } finally {
        submitBtn.disabled = false;
      }
    });
    open(dialog);
    (Object.values(controls)[0] || cancel).focus();
  });
}

/** Shows something once (a generated password, a registration command) with a copy button. */
export function reveal({ title, message, secret, note }) {
  return new Promise((resolve) => {
    const code = h('code', { class: 'secret' }, secret);
    const status = h('span', { class: 'hint', role: 'status' });
    const copy = h('button', {
      type: 'button',
      class: 'btn',
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret);
          status.textContent = 'Copied.';
        } catch {
          const sel = getSelection();
          sel.selectAllChildren(code);
          status.textContent = 'Selected: press Ctrl+C to copy.';
        }
      },
    }, 'Copy');
    const done = h('button', { type: 'button', class: 'btn btn-primary' }, 'Done');
    const dialog = h('dialog', { class: 'dialog' },
      h('h2', {}, title), message ? h('p', {}, message) : null,
      h('div', { class: 'secret-row' }, code, copy), status,
      note ? h('p', { class: 'hint' }, note) : null,
      h('div', { class: 'dialog-actions' }, done));
    dialog.addEventListener('close', () => resolve(), { once: true });
    done.addEventListener('click', () => dialog.close());
    open(dialog);
    copy.focus();
  });
}
