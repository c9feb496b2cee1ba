// The live console. Console text is hostile input: it only ever becomes text nodes inside
// spans whose classes come from a fixed set (ANSI SGR: 16 colours and bold); every other
// escape or control character is dropped. The DOM keeps a bounded number of lines, so a
// chatty server cannot grow the page without limit.

/** Longest line kept; the rest is cut with a marker. */
export const MAX_LINE = 4096;

// CSI sequences (ESC [ params final), OSC (ESC ] … BEL/ST), and other two-byte escapes.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/** Applies one SGR parameter list to `st` ({fg, bg, bold}); unknown codes are ignored. */
function sgr(params, st) {
  const codes = params === '' ? [0] : params.split(';').map((p) => (p === '' ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const c = codes[i];
    if (c === 0) { st.fg = null; st.bg = null; st.bold = false; }
    else if (c === 1) st.bold = true;
    else if (c === 22) st.bold = false;
    else if (c >= 30 && c <= 37) st.fg = c - 30;
    else if (c >= 90 && c <= 97) st.fg = c - 90 + 8;
    else if (c === 39) st.fg = null;
    else if (c >= 40 && c <= 47) st.bg = c - 40;
    else if (c >= 100 && c <= 107) st.bg = c - 100 + 8;
    else if (c === 49) st.bg = null;
    else if (c === 38 || c === 48) {
      // 256-colour (5;n) keeps n < 16; true colour (2;r;g;b) is skipped.
      const mode = codes[i + 1];
      if (mode === 5) {
        const n = codes[i + 2];
        if (n >= 0 && n < 16) st[c === 38 ? 'fg' : 'bg'] = n;
        i += 2;
      } else if (mode === 2) i += 4;
    }
  }
}

/**
 * Parses one line into runs `[{text, fg, bg, bold}]`; `st` carries styling across lines
 * (an SGR left open on one line still colours the next, as in a terminal).
 */
export function parseAnsi(line, st = { fg: null, bg: null, bold: false }) {
  let text = String(line);
  if (text.length > MAX_LINE) text = `${text.slice(0, MAX_LINE)} … [line cut]`;
  const runs = [];
  let last = 0;
  const push = (s) => {
    const clean = s.replace(CONTROLS, '');
    if (clean) runs.push({ text: clean, fg: st.fg, bg: st.bg, bold: st.bold });
  };
  ESCAPES.lastIndex = 0;
  for (let m = ESCAPES.exec(text); m; m = ESCAPES.exec(text)) {
    push(text.slice(last, m.index));
    if (m[2] === 'm') sgr(m[1], st);
    last = ESCAPES.lastIndex;
  }
  push(text.slice(last));
  return runs;
}

/** One line as a `div` of spans (text nodes only). */
export function renderLine(line, st, level) {
  const div = document.createElement('div');
  div.className = level && /^(WARN|WARNING|ERROR|FATAL)$/i.test(level) ? `line lvl-${level.toLowerCase().slice(0, 4)}` : 'line';
  for (const r of parseAnsi(line, st)) {
    if (r.fg === null && r.bg === null && !r.bold) {
      div.append(r.text);
      continue;
    }
    const span = document.createElement('span');
    const cls = [];
    if (r.fg !== null) cls.push(`fg${r.fg}`);
    if (r.bg !== null) cls.push(`bg${r.bg}`);
    if (r.bold) cls.push('b');
    span.className = cls.join(' ');
    span.textContent = r.text;
    div.append(span);
  }
  if (!div.firstChild) div.append('\u200b');
  return div;
}

/**
 * A scrollback of at most `maxLines` lines. New lines are queued and rendered once per
 * animation frame; the view follows new output only while the user is at the bottom.
 */
export class ConsoleView {
  constructor({ maxLines = 2000, label = 'Console output' } = {}) {
    this.maxLines = maxLines;
    this.count = 0;
    this.pending = [];
    this.state = { fg: null, bg: null, bold: false };
    this.follow = true;
    this.frame = 0;
    this.log = document.createElement('div');
    this.log.className = 'console-log';
    this.log.setAttribute('role', 'log');
    this.log.setAttribute('aria-label', label);
    this.log.tabIndex = 0;
    this.jump = document.createElement('button');
    this.jump.type = 'button';
    this.jump.className = 'console-jump';
    this.jump.textContent = '↓ Follow new output';
    this.jump.hidden = true;
    this.jump.addEventListener('click', () => this.scrollToEnd());
    this.el = document.createElement('div');
    this.el.className = 'console';
    this.el.append(this.log, this.jump);
    // Only a scroll *up* by the user stops following; reflows and trimming do not.
    this.lastTop = 0;
    this.onScroll = () => {
      const top = this.log.scrollTop;
      if (top + this.log.clientHeight >= this.log.scrollHeight - 8) this.setFollow(true);
      else if (top < this.lastTop - 2) this.setFollow(false);
      this.lastTop = top;
    };
    this.resize = new ResizeObserver(() => this.follow && this.toEnd());
    this.resize.observe(this.log);
    this.log.addEventListener('scroll', this.onScroll, { passive: true });
  }

  /** Queues a line (`level` like "WARN" tints it). */
  push(text, level) {
    this.pending.push([text, level]);
    // A flood between frames is trimmed before it reaches the DOM.
    if (this.pending.length > this.maxLines) this.pending.splice(0, this.pending.length - this.maxLines);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Renders queued lines now (also used by tests). */
  flush() {
    this.frame = 0;
    if (!this.pending.length) return;
    const frag = document.createDocumentFragment();
    for (const [text, level] of this.pending) frag.append(renderLine(text, this.state, level));
    this.count += this.pending.length;
    this.pending = [];
    this.log.append(frag);
    while (this.count > this.maxLines) {
      this.log.firstChild.remove();
      this.count -= 1;
    }
    if (this.follow) this.toEnd();
  }

  setFollow(on) {
    this.follow = on;
    this.jump.hidden = on;
  }

  toEnd() {
    this.log.scrollTop = this.log.scrollHeight;
    this.lastTop = this.log.scrollTop;
  }

  /** Empties the scrollback (before a replay). */
  clear() {
    this.pending = [];
    this.log.replaceChildren();
    this.count = 0;
    this.state = { fg: null, bg: null, bold: false };
  }

  scrollToEnd() {
    this.setFollow(true);
    this.toEnd();
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending = [];
    this.log.removeEventListener('scroll', this.onScroll);
    this.resize.disconnect();
  }
}

/**
 * The command line under the console: Enter sends, ↑/↓ walk the last `max` commands.
 * `send(cmd)` returns a promise; the input is cleared only when it resolves.
 */
export function commandInput(send, { max = 100 } = {}) {
  const history = [];
  let pos = 0;
  let draft = '';
  const input = document.createElement('input');
  input.type = 'text';
  input.className = 'console-input';
  input.autocomplete = 'off';
  input.spellcheck = false;
  input.maxLength = 4096;
  input.setAttribute('aria-label', 'Console command');
  input.placeholder = 'Type a command, Enter to send (↑/↓: history)';
  input.addEventListener('keydown', async (e) => {
    if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      if (!history.length) return;
      e.preventDefault();
      if (pos === history.length) draft = input.value;
      pos = e.key === 'ArrowUp' ? Math.max(0, pos - 1) : Math.min(history.length, pos + 1);
      input.value = pos === history.length ? draft : history[pos];
      return;
    }
    if (e.key !== 'Enter' || e.isComposing) return;
    e.preventDefault();
    const cmd = input.value;
    if (!cmd.trim()) return;
    if (history[history.length - 1] !== cmd) history.push(cmd);
    if (history.length > max) history.shift();
    pos = history.length;
    draft = '';
    input.disabled = true;
    try {
      await send(cmd);
      input.value = '';
    } finally {
      input.disabled = false;
      input.focus();
    }
  });
  return input;
}
