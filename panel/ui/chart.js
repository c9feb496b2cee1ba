// A time-series line chart on a canvas: a fixed window (the last hour), axes with units,
// the latest value written out, and a text alternative for screen readers. Colours come
// from the theme's custom properties, so light and dark both work.

const PAD = { left: 56, right: 10, top: 10, bottom: 22 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export class LineChart {
  /**
   * `label` ("CPU"), `format(v)` for axis and value text, `max` a fixed top (e.g. a memory
   * limit) or null for automatic, `windowMs` the span shown, `maxPoints` the bound kept,
   * `empty` what an empty chart says (written on the canvas too, never a blank plot).
   */
  constructor({ label, format, max = null, windowMs = 3600_000, maxPoints = 4000, empty = 'No history yet' }) {
    this.label = label;
    this.empty = empty;
    this.format = format;
    this.max = max;
    this.windowMs = windowMs;
    this.maxPoints = maxPoints;
    this.points = [];
    this.frame = 0;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'chart-canvas';
    this.canvas.setAttribute('role', 'img');
    this.value = document.createElement('span');
    this.value.className = 'chart-value';
    const title = document.createElement('span');
    title.className = 'chart-title';
    title.textContent = label;
    const head = document.createElement('div');
    head.className = 'chart-head';
    head.append(title, this.value);
    this.el = document.createElement('figure');
    this.el.className = 'chart';
    this.el.append(head, this.canvas);
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.canvas);
    // The window slides even when no point arrives (a stopped server).
    this.tick = setInterval(() => { this.trim(); this.schedule(); }, 30000);
    this.describe();
  }

  /** Replaces the series (`[{t: ms, v}]`, any order). */
  set(points) {
    this.points = points.filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v)).sort((a, b) => a.t - b.t);
    this.trim();
    this.schedule();
  }

  /** Appends one point (ignored when older than the last one). */
  push(t, v) {
    if (!Number.isFinite(t) || !Number.isFinite(v)) return;
    const last = this.points[this.points.length - 1];
    if (last && t < last.t) return;
    this.points.push({ t, v });
    this.trim();
    this.schedule();
  }

  /** What the chart says while it has no point. */
  setEmpty(text) {
    this.empty = text;
    this.schedule();
  }

  setMax(max) {
    this.max = max;
    this.schedule();
  }

  trim() {
    const from = Date.now() - this.windowMs;
    let cut = 0;
    while (cut < this.points.length && this.points[cut].t < from) cut += 1;
    cut = Math.max(cut, this.points.length - this.maxPoints);
    if (cut > 0) this.points.splice(0, cut);
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  describe() {
    const last = this.points[this.points.length - 1];
    const peak = this.points.reduce((m, p) => Math.max(m, p.v), -Infinity);
    this.value.textContent = last ? this.format(last.v) : '—';
    this.canvas.setAttribute('aria-label', last
      ? `${this.label} over the last hour: now ${this.format(last.v)}, peak ${this.format(peak)}`
      : `${this.label}: ${this.empty}`);
  }

  draw() {
    this.describe();
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (!w || !hgt) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const css = getComputedStyle(c);
    const muted = css.getPropertyValue('--muted').trim() || '#666';
    const grid = css.getPropertyValue('--grid').trim() || '#ddd';
    const line = css.getPropertyValue('--accent').trim() || '#06c';
    ctx.font = '11px system-ui, sans-serif';
    const now = Date.now();
    const from = now - this.windowMs;
    const top = this.max ?? niceMax(this.points.reduce((m, p) => Math.max(m, p.v), 0));
    const x = (t) => PAD.left + ((t - from) / this.windowMs) * (w - PAD.left - PAD.right);
    const y = (v) => hgt - PAD.bottom - (Math.min(v, top) / top) * (hgt - PAD.top - PAD.bottom);
    // Grid and y axis: 0, half, top.
    ctx.strokeStyle = grid;
    ctx.fillStyle = muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const f of [0, 0.5, 1]) {
      const yy = Math.round(y(top * f)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, yy);
      ctx.lineTo(w - PAD.right, yy);
      ctx.stroke();
      ctx.fillText(this.format(top * f), PAD.left - 6, yy);
    }
    // x axis: minutes before now.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const mins = this.windowMs / 60000;
    for (const f of [0, 0.5, 1]) {
      const label = f === 1 ? 'now' : `−${Math.round(mins * (1 - f))} min`;
      ctx.textAlign = f === 0 ? 'left' : f === 1 ? 'right' : 'center';
      ctx.fillText(label, f === 0 ? PAD.left : x(from + this.windowMs * f), hgt - PAD.bottom + 6);
    }
    if (!this.points.length) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(this.empty, (PAD.left + w - PAD.right) / 2, y(top * 0.75));
      return;
    }
    ctx.strokeStyle = line;
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    this.points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
    ctx.stroke();
    // A lone first sample is a dot, not an invisible line.
    const [p0] = this.points;
    if (this.points.length === 1) { ctx.fillStyle = line; ctx.fillRect(x(p0.t) - 2, y(p0.v) - 2, 4, 4); }
  }

  destroy() {
    clearInterval(this.tick);
    this.resize.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}
