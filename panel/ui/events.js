// The tab's one live connection: `/api/events` over a WebSocket (the session cookie
// authenticates it). Pages subscribe to parsed events and to "reconnected" (when they
// refetch their data once, since events were missed while the socket was down). A lost
// socket is retried with jittered exponential backoff and a visible banner.

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;

/** The server an event is about: our agent's top-level `serverId`, else `data.serverId`. */
export function eventServer(ev) {
  return ev.serverId ?? ev.data?.serverId;
}

class LiveEvents {
  constructor() {
    this.listeners = new Set();
    this.reconnectListeners = new Set();
    this.ws = null;
    this.timer = null;
    this.delay = MIN_DELAY;
    this.wasOpen = false;
    this.running = false;
    this.banner = null;
  }

  /** Subscribes to every event; returns the unsubscribe function. */
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Called after the socket came back; returns the unsubscribe function. */
  onReconnect(fn) {
    this.reconnectListeners.add(fn);
    return () => this.reconnectListeners.delete(fn);
  }

  /** Opens the socket (idempotent). `banner` is the element that says "reconnecting…". */
  start(banner) {
    this.banner = banner;
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes the socket and stops retrying (logout). */
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'logout');
    this.wasOpen = false;
    this.showBanner(null);
  }

  connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/events`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      const again = this.wasOpen;
      this.wasOpen = true;
      this.delay = MIN_DELAY;
      this.showBanner(null);
      if (again) for (const fn of [...this.reconnectListeners]) safely(fn);
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') return;
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      if (!ev || typeof ev !== 'object') return;
      for (const fn of [...this.listeners]) safely(fn, ev);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.running) return;
      // Lost an established socket: "reconnected" fires when it is back, even if the first
      // retry fails too.
      const wait = this.delay * (0.5 + Math.random() / 2);
      this.delay = Math.min(MAX_DELAY, this.delay * 2);
      this.showBanner(wait);
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.running) this.connect();
      }, wait);
    };
  }

  showBanner(wait) {
    const b = this.banner;
    if (!b) return;
    if (wait === null) {
      b.hidden = true;
      return;
    }
    b.textContent = `Live updates lost — reconnecting… (next try in ${Math.ceil(wait / 1000)} s)`;
    b.hidden = false;
  }
}

function safely(fn, arg) {
  try {
    fn(arg);
  } catch (e) {
    // One page's bug must not stop the others' updates; still surface it.
    setTimeout(() => { throw e; });
  }
}

/** The tab's event stream. */
export const events = new LiveEvents();
