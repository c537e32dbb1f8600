// The console's event stream (/ws/agent): reconnects by itself and resumes from the last seq it saw, so a
// lost connection loses no event; "resume_too_old" makes the console reload its state first.
export class EventStream {
  constructor({ onEvent, onState, onReset, onHello }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReset = onReset;
    this.onHello = onHello;
    this.lastSeq = null;
    this.ws = null;
    this.retry = 0;
    this.watchdog = null;
    this.closed = false;
  }

  start(lastSeq) {
    this.lastSeq = lastSeq;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const resume = this.lastSeq === null ? "" : `?last_seq=${this.lastSeq}`;
    const ws = new WebSocket(`${proto}://${location.host}/ws/agent${resume}`);
    this.ws = ws;
    this.onState("connecting");
    ws.onmessage = (ev) => this.frame(ev.data);
    ws.onclose = () => {
      clearTimeout(this.watchdog);
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState("offline");
      const delay = Math.min(10000, 300 * 2 ** this.retry) * (0.75 + Math.random() / 2);
      this.retry = Math.min(this.retry + 1, 6);
      setTimeout(() => this.connect(), delay);
    };
  }

  arm() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.ws && this.ws.close(), 70000);
  }

  async frame(raw) {
    this.arm();
    let f;
    try { f = JSON.parse(raw); } catch { return; }
    if (f.type === "hello") {
      this.retry = 0;
      if (this.lastSeq === null) this.lastSeq = f.seq;
      this.onState("live");
      if (this.onHello) this.onHello(f);
      return;
    }
    if (f.type === "heartbeat") return;
    if (f.type === "error") {
      if (f.code === "resume_too_old") {
        this.lastSeq = null;
        await this.onReset();
      } else if (f.code === "unauthorized") {
        this.closed = true;
        location.href = "/login";
      }
      return; // the server closes; onclose reconnects
    }
    if (f.seq) {
      if (this.lastSeq !== null && f.seq <= this.lastSeq) return; // already applied
      this.lastSeq = f.seq;
    }
    this.onEvent(f);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }
}
