// A JSON WebSocket that reconnects with back-off (1, 2, 4, 8, 15 s plus jitter) until
// stopped. Used by the investor queue page and the witness desk.

const BACKOFF = [1000, 2000, 4000, 8000, 15000];

/** A JSON WebSocket that reconnects with back-off until stopped. */
export class LiveSocket {
  constructor(url, { onMessage, onUp, onDown, onRetry }) {
    this.url = url;
    this.handlers = { onMessage, onUp, onDown, onRetry };
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.up = false;
    this.checking = null; // {timer, resolve} of a check() waiting to hear from the server
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.up = true;
      this.handlers.onUp?.();
    });
    ws.addEventListener('message', (event) => {
      if (ws !== this.ws) return;
      this.heard();
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (data && typeof data === 'object') this.handlers.onMessage(data);
    });
    ws.addEventListener('close', () => {
      if (ws !== this.ws) return;
      this.ws = null;
      const wasUp = this.up;
      this.up = false;
      this.heard(false);
      if (this.stopped) return;
      this.handlers.onDown?.(wasUp);
      this.scheduleRetry();
    });
  }

  heard(alive = true) {
    const checking = this.checking;
    if (!checking) return;
    this.checking = null;
    clearTimeout(checking.timer);
    checking.resolve(alive);
  }

  /** Is the server still there? Sends a ping and waits up to ``timeoutMs`` for anything
   * from it (the pong, or any other message). A socket that stays silent is taken for
   * dead and replaced at once: after a phone moves from Wi-Fi to mobile data its old TCP
   * connection does not close, it just goes quiet, and the browser may go on calling it
   * open for minutes. Resolves true when the server answered, false when the socket was
   * replaced (or was down: then it is retried now instead of after its back-off). */
  check(timeoutMs = 2000) {
    if (this.stopped) return Promise.resolve(false);
    if (this.checking) return new Promise((resolve) => {
      const prev = this.checking.resolve;
      this.checking.resolve = (alive) => { prev(alive); resolve(alive); };
    });
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      if (!this.ws) this.nudge();
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.checking?.timer !== timer) return;
        this.heard(false);
        this.reconnectNow();
      }, timeoutMs);
      this.checking = { timer, resolve };
      this.send({ type: 'ping' });
    });
  }

  /** Give up on the current connection (without waiting for it to close: a dead one may
   * take minutes) and open a new one now. */
  reconnectNow() {
    if (this.stopped) return;
    const ws = this.ws;
    const wasUp = this.up;
    this.ws = null;
    this.up = false;
    this.heard(false);
    if (ws) {
      try {
        ws.close(4000);
      } catch {
        // Already closing.
      }
      this.handlers.onDown?.(wasUp);
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.attempt = 0;
    this.connect();
  }

  scheduleRetry() {
    if (this.stopped || this.timer) return;
    const base = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    this.attempt += 1;
    this.handlers.onRetry?.(this.attempt);
    this.timer = setTimeout(() => this.connect(), base + Math.random() * 500);
  }

  /** Try at once (page shown again, network back). */
  nudge() {
    if (this.stopped || this.ws) return;
    this.attempt = 0;
    this.connect();
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.up = false;
    this.heard(false);
    if (ws) ws.close(1000);
  }
}

/** ws: or wss: URL for a path on this origin. */
export function sameOriginWs(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

/** ws: or wss: URL of a path on another node (http(s) base URL, e.g. a session's node_url). */
export function nodeWs(nodeUrl, path) {
  const base = (nodeUrl || location.origin).replace(/\/+$/, '');
  return base.replace(/^http/, 'ws') + path;
}
