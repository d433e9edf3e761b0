// A tiny ActionCable client: the subset of @rails/actioncable that Chatwoot's widget and
// console rely on, so our demo pages speak to /cable exactly the way they do.
//
// - offers the "actioncable-v1-json" subprotocol and gives up if the server picks another;
// - (re)sends every subscribe on each {"type":"welcome"};
// - counts the connection stale after `staleAfter` ms without a frame (the server pings
//   every 3 s) and reconnects with capped, jittered backoff;
// - tells each subscription when it is confirmed (with `reconnected` after the first time),
//   so the caller can catch up on what it missed while offline.

const PROTOCOL = "actioncable-v1-json";

export class Cable {
  constructor(url = defaultUrl(), { staleAfter = 6000, onStatus = () => {} } = {}) {
    this.url = url;
    this.staleAfter = staleAfter;
    this.onStatus = onStatus;
    this.subscriptions = new Map(); // identifier string -> Subscription
    this.ws = null;
    this.attempts = 0;
    this.lastFrameAt = 0;
    this.stopped = false;
    this.reconnectTimer = null;
    this.monitor = setInterval(() => this.checkStale(), 1000);
  }

  subscribe(params, handlers = {}) {
    const sub = new Subscription(this, JSON.stringify(params), handlers);
    this.subscriptions.set(sub.identifier, sub);
    if (this.isOpen()) this.send({ command: "subscribe", identifier: sub.identifier });
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
    const ws = new WebSocket(this.url, [PROTOCOL, "actioncable-unsupported"]);
    this.ws = ws;
    this.onStatus("connecting");
    ws.onopen = () => {
      if (ws.protocol !== PROTOCOL) {
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
    switch (frame.type) {
      case "welcome":
        this.welcomed = true;
        this.attempts = 0;
        this.onStatus("connected");
        for (const id of this.subscriptions.keys()) this.send({ command: "subscribe", identifier: id });
        return;
      case "ping":
        return;
      case "disconnect":
        if (frame.reconnect === false) this.stopped = true;
        ws.close();
        return;
      case "confirm_subscription":
        this.subscriptions.get(frame.identifier)?.confirmed();
        return;
      case "reject_subscription":
        this.subscriptions.get(frame.identifier)?.handlers.rejected?.();
        return;
    }
    if (frame.identifier && frame.message) {
      this.subscriptions.get(frame.identifier)?.handlers.received?.(frame.message);
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
  }

  confirmed() {
    const reconnected = this.confirmedOnce;
    this.confirmedOnce = true;
    this.handlers.connected?.({ reconnected });
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
