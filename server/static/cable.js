// A small ActionCable client for our demo pages, speaking AnyCable's extended protocol
// (actioncable-v1-ext-json) the way @anycable/core does, so that a reconnect resumes instead
// of refetching:
//
// - offers "actioncable-v1-ext-json", then "actioncable-v1-json" (a server that picks the
//   plain protocol gets @rails/actioncable's behaviour); gives up if the server picks neither;
// - keeps the session id of each welcome and reconnects with it (`?sid=`): the server
//   restores the subscriptions (`restored_ids`) and the client asks each for what it missed
//   (`history` with the last stream position it got per stream, and the server's time at its
//   last ping for streams it has no position on);
// - a subscription the server did not restore is subscribed again with that same history
//   request; a `disconnect` frame ends the session (as in @anycable/core);
// - counts the connection stale after `staleAfter` ms without a frame (the server pings every
//   3 s) and reconnects with capped, jittered backoff;
// - tells each subscription when it is connected: `{reconnected, resumed}`. `resumed` means
//   every event missed while away was delivered (confirm_history): nothing to refetch. Without
//   it (first connect, reject_history, the plain protocol) the caller catches up itself.

const EXT = "actioncable-v1-ext-json";
const PLAIN = "actioncable-v1-json";

export class Cable {
  constructor(url = defaultUrl(), { staleAfter = 6000, onStatus = () => {} } = {}) {
    this.url = url;
    this.staleAfter = staleAfter;
    this.onStatus = onStatus;
    this.subscriptions = new Map(); // identifier string -> Subscription
    this.ws = null;
    this.ext = false;
    this.sid = null; // the session to restore on the next connect
    this.serverTime = 0; // the server's clock (Unix seconds) at its last ping
    this.attempts = 0;
    this.lastFrameAt = 0;
    this.stopped = false;
    this.reconnectTimer = null;
    this.monitor = setInterval(() => this.checkStale(), 1000);
  }

  subscribe(params, handlers = {}) {
    const sub = new Subscription(this, JSON.stringify(params), handlers);
    this.subscriptions.set(sub.identifier, sub);
    if (this.isOpen()) sub.subscribe();
    else if (!this.ws) this.connect();
    return sub;
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.welcomed;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.welcomed = false;
    this.lastFrameAt = Date.now();
    const url = new URL(this.url);
    if (this.sid) url.searchParams.set("sid", this.sid);
    const ws = new WebSocket(url, [EXT, PLAIN]);
    this.ws = ws;
    this.onStatus("connecting");
    ws.onopen = () => {
      this.ext = ws.protocol === EXT;
      if (!this.ext && ws.protocol !== PLAIN) {
        // Same as @rails/actioncable: an unsupported server is not retried.
        this.stopped = true;
        ws.close();
        this.onStatus("unsupported");
      }
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = () => this.closed(ws);
  }

  receive(ws, raw) {
    if (ws !== this.ws) return;
    this.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    const sub = frame.identifier ? this.subscriptions.get(frame.identifier) : undefined;
    switch (frame.type) {
      case "welcome":
        this.welcomed = true;
        this.attempts = 0;
        this.sid = (this.ext && frame.sid) || null;
        this.onStatus("connected");
        this.resume(new Set(frame.restored ? frame.restored_ids || [] : []));
        return;
      case "ping":
        if (typeof frame.message === "number") this.serverTime = frame.message;
        return;
      case "disconnect":
        this.sid = null; // the server ended the session: subscribe afresh
        if (frame.reconnect === false) this.stopped = true;
        ws.close();
        return;
      case "confirm_subscription":
        sub?.confirmed();
        return;
      case "reject_subscription":
        sub?.handlers.rejected?.();
        return;
      case "confirm_history":
      case "reject_history":
        sub?.historyAnswered(frame.type === "confirm_history");
        return;
    }
    if (sub && frame.message) {
      if (frame.stream_id) sub.positions.set(frame.stream_id, { epoch: frame.epoch, offset: frame.offset });
      sub.handlers.received?.(frame.message);
    }
  }

  resume(restored) {
    for (const sub of this.subscriptions.values()) {
      if (restored.has(sub.identifier)) sub.restored();
      else sub.subscribe();
    }
  }

  closed(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.welcomed = false;
    for (const sub of this.subscriptions.values()) sub.handlers.disconnected?.();
    if (this.stopped) {
      this.onStatus("stopped");
      return;
    }
    this.onStatus("offline");
    const delay = Math.min(10000, 300 * 2 ** this.attempts) * (0.75 + Math.random() / 2);
    this.attempts += 1;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  checkStale() {
    if (this.ws && Date.now() - this.lastFrameAt > this.staleAfter) {
      // No ping for too long: the network is gone or the server hung. Start over.
      const ws = this.ws;
      ws.close();
      this.closed(ws);
    }
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  close() {
    this.stopped = true;
    clearInterval(this.monitor);
    clearTimeout(this.reconnectTimer);
    this.ws?.close();
  }
}

class Subscription {
  constructor(cable, identifier, handlers) {
    this.cable = cable;
    this.identifier = identifier;
    this.handlers = handlers;
    this.confirmedOnce = false;
    this.awaitingHistory = false;
    this.positions = new Map(); // stream_id -> {epoch, offset} of the last event received
  }

  // What this subscription missed, as the server is asked for it: after the last position
  // per stream, and for the streams it has none of, since the server's last ping.
  historyRequest() {
    const since = this.cable.serverTime;
    if (!this.positions.size && !since) return null;
    return { since, streams: Object.fromEntries(this.positions) };
  }

  subscribe() {
    const frame = { command: "subscribe", identifier: this.identifier };
    const history = this.cable.ext && this.confirmedOnce ? this.historyRequest() : null;
    if (history) frame.history = history;
    this.awaitingHistory = Boolean(history);
    this.cable.send(frame);
  }

  restored() {
    // Subscribed again by the server, its live events held: ask for what was missed.
    const history = this.historyRequest();
    if (!history) {
      // Nothing to ask by: let the server go live now; the caller catches up itself.
      this.cable.send({ command: "history", identifier: this.identifier });
      this.connected(false);
      return;
    }
    this.awaitingHistory = true;
    this.cable.send({ command: "history", identifier: this.identifier, history });
  }

  confirmed() {
    if (!this.awaitingHistory) this.connected(false);
  }

  historyAnswered(complete) {
    if (!this.awaitingHistory) return;
    this.awaitingHistory = false;
    this.connected(complete);
  }

  connected(resumed) {
    const reconnected = this.confirmedOnce;
    this.confirmedOnce = true;
    this.handlers.connected?.({ reconnected, resumed: reconnected && resumed });
  }

  perform(action, data = {}) {
    return this.cable.send({
      command: "message",
      identifier: this.identifier,
      data: JSON.stringify({ ...data, action }),
    });
  }

  unsubscribe() {
    this.cable.subscriptions.delete(this.identifier);
    this.cable.send({ command: "unsubscribe", identifier: this.identifier });
  }
}

export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/cable`;
}
