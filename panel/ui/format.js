// Numbers as people read them: binary byte units, durations, times.

const UNITS = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `"1200m"`, `"2.1g"`, `"16GB"`, a bare number (MiB, as eggs write it) → bytes, or NaN. */
export function parseQuantity(q) {
  if (typeof q === 'number') return q;
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([bkmgt]?)(?:i?b?)\s*$/i.exec(String(q ?? ''));
  if (!m) return NaN;
  return Number(m[1]) * UNITS[(m[2] || 'm').toLowerCase()];
}

/** Bytes from a stats figure: a number (bytes), a quantity string or `{used}`. */
export function toBytes(v) {
  if (v === null || v === undefined) return NaN;
  if (typeof v === 'object') return toBytes(v.used ?? v.bytes);
  return typeof v === 'number' ? v : parseQuantity(v);
}

/** 1288490188 → "1.2 GiB". */
export function bytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** 12.345 → "12 %", 0.42 → "0.4 %". */
export function percent(v) {
  if (!Number.isFinite(v)) return '—';
  return `${v >= 10 || v === 0 ? Math.round(v) : v.toFixed(1)} %`;
}

/** Seconds → "3h 5m", "42s", "2d 4h". */
export function duration(secs) {
  if (!Number.isFinite(secs) || secs < 0) return '—';
  const s = Math.floor(secs);
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** An ISO time → "3 min ago" (or "—"). */
export function ago(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const secs = Math.max(0, (now - t) / 1000);
  return secs < 5 ? 'just now' : `${duration(secs).split(' ')[0]} ago`;
}

/** Unix seconds or ISO → local "2025-01-23 10:05". */
export function dateTime(v) {
  const t = typeof v === 'number' ? v * 1000 : Date.parse(v);
  if (!Number.isFinite(t)) return '—';
  const d = new Date(t);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** Joins a directory and a name into a container path under /server. */
export function joinPath(dir, name) {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/** The parent of a container path (never above /server). */
export function parentPath(p) {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  const parent = i > 0 ? p.slice(0, i) : '/server';
  return parent.length < '/server'.length ? '/server' : parent;
}
