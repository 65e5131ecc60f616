// The live protocol's browser client, twin of tourserver/live/client.py (docs/live-protocol.md).
// It keeps the server clock (NTP style: the least-delay of several `time` samples), tracks
// the last durable seq, and reconnects by itself with from_seq after a drop.

export function clockSample(t0, t1, t2, t3) {
  return { offset: ((t1 - t0) + (t2 - t3)) / 2, delay: (t3 - t0) - (t2 - t1) };
}

// Close codes after which reconnecting would not help (docs/live-protocol.md §9).
const FINAL = new Set([4001, 4002, 1008, 1009]);

export class LiveConnection extends EventTarget {
  constructor(eventId, ticket, { getTicket = null } = {}) {
    super();
    this.eventId = eventId;
    this.ticket = ticket;
    this.getTicket = getTicket; // called for a new ticket after 4003 (expired)
    this.seq = null; // the last durable seq received: resume from here
    this.offset = 0;
    this.delay = null;
    this.welcome = null;
    this.closed = false;
    this.retry = 0;
    this._waiters = new Map();
  }

  serverNow() { return Date.now() + this.offset; }

  connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${proto}//${location.host}/v1/events/${encodeURIComponent(this.eventId)}/live`
      + `?ticket=${encodeURIComponent(this.ticket)}`;
    if (this.seq !== null) url += `&from_seq=${this.seq}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (e) => this._receive(JSON.parse(e.data));
    ws.onclose = (e) => this._closed(e.code, e.reason);
    return ws;
  }

  _receive(msg) {
    if (msg.type === "time" && this._waiters.has(msg.t0)) {
      this._waiters.get(msg.t0)(msg, Date.now());
      this._waiters.delete(msg.t0);
      return;
    }
    if (msg.type === "welcome") {
      this.retry = 0;
      this.welcome = msg;
      if (this.seq === null || msg.mode === "replay") this.seq = msg.seq;
      this.dispatchEvent(new CustomEvent("welcome", { detail: msg }));
      this.syncClock();
      return;
    }
    if (msg.type === "snapshot") this.seq = msg.seq;
    else if (typeof msg.seq === "number" && !msg.replay) this.seq = Math.max(this.seq ?? 0, msg.seq);
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async syncClock(samples = 8) {
    const got = [];
    for (let i = 0; i < samples && this.ws?.readyState === WebSocket.OPEN; i++) {
      const t0 = Date.now() + i / 1000; // unique per sample
      const reply = await new Promise((resolve) => {
        this._waiters.set(t0, (msg, t3) => resolve([msg, t3]));
        this.send({ type: "time", t0 });
        setTimeout(() => resolve(null), 5000);
      });
      if (reply) got.push(clockSample(t0, reply[0].t1, reply[0].t2, reply[1]));
      await new Promise((r) => setTimeout(r, 30));
    }
    if (got.length) {
      const best = got.reduce((a, b) => (b.delay < a.delay ? b : a));
      this.offset = best.offset;
      this.delay = best.delay;
      // Hosts see each attendee's sync quality in their roster.
      this.send({ type: "sync", offset_ms: best.offset, delay_ms: Math.max(0, best.delay) });
      this.dispatchEvent(new CustomEvent("clock", { detail: best }));
    }
  }

  // Run fn at the server time `at` (ms), by this clock; at once if that has passed.
  at(at, fn) {
    const wait = at - this.serverNow();
    return setTimeout(fn, Math.max(0, wait));
  }

  async _closed(code, reason) {
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
    if (this.closed || FINAL.has(code)) return;
    if (code === 4003 && this.getTicket) this.ticket = await this.getTicket();
    const delay = Math.min(10000, 250 * 2 ** this.retry++) * (0.5 + Math.random() / 2);
    setTimeout(() => { if (!this.closed) this.connect(); }, delay);
  }

  close() {
    this.closed = true;
    this.ws?.close(1000);
  }
}
