// The visitor's chat widget. It uses only the public widget API (/api/v1/widget/*) and
// /cable, the same calls Chatwoot's widget makes, so it doubles as a live check of both:
//
//   boot      POST /config (with the stored X-Auth-Token, so a reload keeps the contact)
//   history   GET /conversations, GET /messages, older pages with ?before=<oldest id>
//   send      POST /messages (the first one opens a conversation); after the conversation
//             ended, "Start a new conversation" + the next message POST /conversations
//   typing    POST /conversations/toggle_typing on at the first keystroke, off after 2 s idle
//   seen      POST /conversations/update_last_seen whenever agent messages are on screen
//   realtime  RoomChannel on /cable with the contact's pubsub_token (the extended protocol:
//             a reconnect resumes the session and gets what it missed from the server);
//             when it cannot resume (first connect, history gone), GET /messages?after=<last
//             id> fetches what was missed
//   end       GET /conversations/toggle_status, where enabled_features has end_conversation
//   answer    PATCH /messages/:id: an email prompt, an option list, a form, the CSAT survey
//             (interactive.js draws them)
//
// On a host page it starts closed, as Chatwoot's does: the launcher bubble only, which counts
// the agent's messages that arrive while closed and previews the latest. Opened once, it
// stays open across the site's pages (localStorage) until the visitor closes it (the close
// button, or Escape). On a phone the open widget fills the screen.

import { Cable } from "./cable.js";
import {
  HttpError,
  MESSAGE,
  bubbleBody,
  byId,
  clockTime,
  h,
  icon,
  inDisplayOrder,
  isVoice,
  patchChildren,
  request,
} from "./dom.js";
import { emojiPicker } from "./emoji.js";
import { widgetControl } from "./interactive.js";

const API = "/api/v1/widget";
const TYPING_IDLE_MS = 2000;
const AGENT_TYPING_TIMEOUT_MS = 30000;
const PRESENCE_EVERY_MS = 20000;
const CATCH_UP_PAGE = 100; // the server's page size for ?after=
const PREVIEW_CHARS = 140;

export async function mountWidget(root, options) {
  const widget = new Widget(root, options);
  await widget.start();
  return widget;
}

class Widget {
  constructor(
    root,
    { websiteToken, authToken = null, preferGivenToken = false, embedded = false, storage = localStorage },
  ) {
    this.root = root;
    this.websiteToken = websiteToken;
    this.givenToken = authToken;
    this.preferGivenToken = preferGivenToken;
    this.embedded = embedded;
    this.storage = storage;
    this.tokenKey = `chat-widget:token:${websiteToken}`;
    this.openKey = `chat-widget:open:${websiteToken}`;
    this.messages = new Map(); // id (or "echo:<echo_id>" while sending) -> message
    this.conv = null; // {id, status}
    this.startingNew = false; // the visitor asked for a new conversation after one ended
    this.noOlder = false;
    this.loadingOlder = false;
    this.typingOn = false;
    this.typingIdle = null;
    this.agentTypingTimer = null;
    this.seenTimer = null;
    this.drafts = new Map(); // message id -> what the visitor typed into its control
    this.unread = 0; // agent messages that arrived while the widget was closed
  }

  // -- boot ---------------------------------------------------------------------------

  async start() {
    await this.boot();
    this.render();
    await this.refreshConversation();
    this.cable = new Cable(undefined, { onStatus: (s) => this.showConnection(s) });
    this.room = this.cable.subscribe(
      { channel: "RoomChannel", pubsub_token: this.pubsubToken },
      {
        connected: ({ resumed }) => resumed || this.catchUp(),
        received: (message) => this.onEvent(message.event, message.data),
      },
    );
    this.presence = setInterval(() => this.room.perform("update_presence"), PRESENCE_EVERY_MS);
    document.addEventListener("visibilitychange", () => this.markSeen());
    // Leaving the page mid-sentence must not leave the agent looking at "typing…".
    addEventListener("pagehide", () => this.stopTyping({ keepalive: true }));
  }

  async boot() {
    const stored = this.storage.getItem(this.tokenKey);
    let token = this.preferGivenToken ? this.givenToken : stored || this.givenToken;
    let answer;
    try {
      answer = await this.fetchConfig(token);
    } catch (err) {
      // A token from another server (or an expired one) is refused: start as a new visitor.
      if (!(err instanceof HttpError) || err.status !== 401 || !token) throw err;
      token = null;
      answer = await this.fetchConfig(null);
    }
    this.config = answer.website_channel_config;
    this.token = this.config.auth_token;
    this.pubsubToken = answer.contact.pubsub_token;
    this.storage.setItem(this.tokenKey, this.token);
  }

  fetchConfig(token) {
    const headers = token ? { "X-Auth-Token": token } : {};
    return request("POST", this.url("/config"), { headers, body: {} });
  }

  url(path, query = {}) {
    const params = new URLSearchParams({ website_token: this.websiteToken, ...query });
    return `${API}${path}?${params}`;
  }

  api(method, path, { query, body, keepalive } = {}) {
    return request(method, this.url(path, query), {
      body,
      keepalive,
      headers: { "X-Auth-Token": this.token },
    });
  }

  get canEnd() {
    return (this.config.enabled_features || []).includes("end_conversation");
  }

  get canAttach() {
    return (this.config.enabled_features || []).includes("attachments");
  }

  get hasEmojiPicker() {
    return (this.config.enabled_features || []).includes("emoji_picker");
  }

  // -- data ---------------------------------------------------------------------------

  async refreshConversation() {
    const fresh = await this.api("GET", "/conversations");
    const conv = fresh && fresh.id ? { id: fresh.id, status: fresh.status } : null;
    const changed = (conv && conv.id) !== (this.conv && this.conv.id);
    this.conv = conv;
    if (changed) {
      this.startingNew = false;
      this.messages.clear();
      this.noOlder = false;
      await this.loadHistory();
    }
    this.renderState();
  }

  async loadHistory() {
    const answer = await this.api("GET", "/messages");
    for (const msg of answer.payload || []) this.messages.set(msg.id, msg);
    this.noOlder = !(answer.payload || []).length;
    this.renderMessages({ stickToBottom: true });
    this.markSeen();
  }

  async loadOlder() {
    const oldest = [...this.messages.values()].sort(byId).find((m) => typeof m.id === "number");
    if (!oldest || this.noOlder || this.loadingOlder || this.startingNew) return;
    this.loadingOlder = true;
    this.olderNote.hidden = false;
    try {
      const answer = await this.api("GET", "/messages", { query: { before: oldest.id } });
      const page = answer.payload || [];
      if (!page.length) this.noOlder = true;
      const box = this.scroller;
      const fromBottom = box.scrollHeight - box.scrollTop;
      for (const msg of page) this.messages.set(msg.id, msg);
      this.renderMessages();
      box.scrollTop = box.scrollHeight - fromBottom; // keep what the visitor was reading in place
    } finally {
      this.loadingOlder = false;
      this.olderNote.hidden = true;
    }
  }

  // After a (re)subscribe that could not resume: fetch what arrived while the socket was away.
  async catchUp() {
    const last = this.lastId();
    if (last === null) {
      await this.refreshConversation();
      return;
    }
    // ?after= answers at most 100 messages at a time: keep asking while pages come back full.
    for (let round = 0, after = last; round < 20; round++) {
      const page = (await this.api("GET", "/messages", { query: { after } })).payload || [];
      for (const msg of page) {
        const missed = !this.messages.has(msg.id);
        this.upsert(msg);
        // What the agent wrote while the socket was away counts on a closed launcher too.
        if (missed && this.countsWhileClosed(msg)) this.notifyClosed(msg);
      }
      if (page.length < CATCH_UP_PAGE) break;
      after = page[page.length - 1].id;
    }
    const fresh = await this.api("GET", "/conversations");
    if (fresh && fresh.id === (this.conv && this.conv.id)) this.setStatus(fresh.status);
    else await this.refreshConversation();
    this.markSeen();
  }

  sorted() {
    return inDisplayOrder(this.messages.values());
  }

  lastId() {
    const ids = [...this.messages.keys()].filter((k) => typeof k === "number");
    return ids.length ? Math.max(...ids) : null;
  }

  upsert(msg) {
    if (msg.echo_id) this.messages.delete(`echo:${msg.echo_id}`);
    if (msg.content_attributes && msg.content_attributes.deleted) this.messages.delete(msg.id);
    else this.messages.set(msg.id, { ...(this.messages.get(msg.id) || {}), ...msg });
    this.renderMessages();
  }

  // -- actions ------------------------------------------------------------------------

  async send(content) {
    if (!content.trim()) return;
    const echoId = `${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
    const pending = {
      id: `echo:${echoId}`,
      echo_id: echoId,
      content,
      message_type: MESSAGE.incoming,
      created_at: Date.now() / 1000,
      pending: true,
    };
    this.messages.set(pending.id, pending);
    this.renderMessages({ stickToBottom: true });
    this.stopTyping();
    const message = { content, echo_id: echoId, timestamp: new Date().toString(), referer_url: location.href };
    try {
      if (this.startingNew) {
        const conv = await this.api("POST", "/conversations", { body: { message } });
        this.startingNew = false;
        this.conv = { id: conv.id, status: conv.status };
        this.messages.clear();
        for (const msg of conv.messages || []) this.messages.set(msg.id, msg);
        this.noOlder = true;
        this.renderMessages({ stickToBottom: true });
        this.renderState();
      } else {
        const msg = await this.api("POST", "/messages", { body: { message } });
        if (!this.conv || this.conv.id !== msg.conversation_id) {
          this.conv = { id: msg.conversation_id, status: "open" };
        }
        this.upsert(msg);
        this.renderState();
      }
    } catch (err) {
      pending.pending = false;
      pending.failed = err.message || "not sent";
      this.renderMessages();
    }
  }

  // Files (the file button): one message, sent as multipart like Chatwoot's widget does.
  async sendFiles(files) {
    if (!files.length || this.startingNew) return;
    const echoId = `${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
    const pending = {
      id: `echo:${echoId}`,
      echo_id: echoId,
      content: files.map((f) => f.name).join(", "),
      message_type: MESSAGE.incoming,
      created_at: Date.now() / 1000,
      pending: true,
    };
    this.messages.set(pending.id, pending);
    this.renderMessages({ stickToBottom: true });
    const form = new FormData();
    form.append("message[echo_id]", echoId);
    form.append("message[timestamp]", new Date().toString());
    form.append("message[referer_url]", location.href);
    for (const file of files) form.append("message[attachments][]", file, file.name);
    try {
      const msg = await this.api("POST", "/messages", { body: form });
      if (!this.conv || this.conv.id !== msg.conversation_id) {
        this.conv = { id: msg.conversation_id, status: "open" };
      }
      this.upsert(msg);
      this.renderState();
    } catch (err) {
      pending.pending = false;
      pending.failed = err.message || "not sent";
      this.renderMessages();
    }
  }

  // The visitor answers an interactive message; message.updated brings the stored answer to
  // every tab, this one shows it at once.
  async answerMessage(id, body) {
    await this.api("PATCH", `/messages/${id}`, { body });
    const msg = this.messages.get(id);
    const attrs = { ...((msg && msg.content_attributes) || {}) };
    if (!msg || attrs.submitted_email || attrs.submitted_values) return; // the event came first
    if (body.contact) attrs.submitted_email = body.contact.email;
    else attrs.submitted_values = body.message.submitted_values;
    this.upsert({ ...msg, content_attributes: attrs });
  }

  typed() {
    if (!this.conv || this.conv.status === "resolved" || this.startingNew) return;
    if (!this.typingOn) {
      this.typingOn = true;
      this.api("POST", "/conversations/toggle_typing", { body: { typing_status: "on" } }).catch(() => {});
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping({ keepalive = false } = {}) {
    clearTimeout(this.typingIdle);
    if (!this.typingOn) return;
    this.typingOn = false;
    this.api("POST", "/conversations/toggle_typing", { body: { typing_status: "off" }, keepalive }).catch(() => {});
  }

  async endConversation() {
    if (!this.conv) return;
    this.endButton.disabled = true;
    try {
      await this.api("GET", "/conversations/toggle_status");
      this.setStatus("resolved");
    } finally {
      this.endButton.disabled = false;
    }
  }

  startNew() {
    this.startingNew = true;
    this.messages.clear();
    this.renderMessages();
    this.renderState();
    this.input.focus();
  }

  isShown() {
    return document.visibilityState === "visible" && (this.embedded || this.isOpen());
  }

  // Tell the server the visitor has seen the conversation (read receipts for the agent).
  markSeen() {
    clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => {
      if (!this.conv || !this.isShown() || this.startingNew) return;
      this.api("POST", "/conversations/update_last_seen", { body: {} }).catch(() => {});
    }, 200);
  }

  // -- realtime -----------------------------------------------------------------------

  onEvent(event, data) {
    switch (event) {
      case "message.created":
      case "message.updated":
        if (this.conv && data.conversation_id !== this.conv.id) {
          // A newer conversation of ours (a voice call after the end, another tab): switch.
          if (data.conversation_id > this.conv.id) this.refreshConversation().catch(() => {});
          return;
        }
        if (this.startingNew) return;
        if (!this.conv) this.conv = { id: data.conversation_id, status: "open" };
        this.upsert(data);
        if (event === "message.created" && data.message_type !== MESSAGE.incoming) {
          if (data.sender && data.sender.type === "user") this.showPresence({ [data.sender.id]: "online" });
          this.showAgentTyping(null);
          this.markSeen();
          if (this.countsWhileClosed(data)) this.notifyClosed(data);
        }
        return;
      case "conversation.created":
        this.refreshConversation().catch(() => {});
        return;
      case "conversation.status_changed":
      case "conversation.updated":
        if (this.conv && data.id === this.conv.id) this.setStatus(data.status);
        return;
      case "conversation.typing_on":
      case "conversation.typing_off":
        if (!this.conv || data.conversation.id !== this.conv.id || data.is_private) return;
        this.showAgentTyping(event === "conversation.typing_on" ? data.user : null);
        return;
      case "presence.update":
        this.showPresence(data.users || {});
        return;
    }
  }

  setStatus(status) {
    if (!this.conv || this.conv.status === status) return;
    this.conv.status = status;
    if (status !== "resolved" && this.startingNew) {
      // An agent reopened the old conversation: go back to it.
      this.startingNew = false;
      this.loadHistory().catch(() => {});
    }
    if (status === "resolved") {
      this.stopTyping();
      this.showAgentTyping(null);
    }
    this.renderState();
  }

  // -- view ---------------------------------------------------------------------------

  isOpen() {
    return this.embedded || this.storage.getItem(this.openKey) === "open";
  }

  setOpen(open) {
    this.storage.setItem(this.openKey, open ? "open" : "closed");
    this.root.classList.toggle("cw-closed", !open);
    if (open) {
      this.unread = 0;
      this.renderLauncher();
      this.renderMessages({ stickToBottom: true });
      this.markSeen();
      this.input.focus();
    } else if (this.launcher) {
      this.emoji?.close();
      this.renderLauncher();
      this.launcher.focus();
    }
  }

  // An agent's message (not the visitor's own, not an activity line) while the widget is
  // closed (and not embedded: the host page then decides).
  countsWhileClosed(msg) {
    return (
      !this.embedded &&
      !this.isOpen() &&
      msg.message_type !== MESSAGE.incoming &&
      msg.message_type !== MESSAGE.activity
    );
  }

  // An agent's message while the widget is closed: count it on the launcher, preview it.
  notifyClosed(msg) {
    this.unread += 1;
    const who = (msg.sender && (msg.sender.available_name || msg.sender.name)) || "Support";
    const files = (msg.attachments || []).length;
    const text = msg.content || (files ? "sent you a file" : "");
    this.previewWho.textContent = who;
    this.previewText.textContent = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
    this.preview.hidden = false;
    this.renderLauncher();
  }

  renderLauncher() {
    if (!this.launcher) return;
    const open = this.isOpen();
    this.badge.hidden = open || !this.unread;
    this.badge.textContent = this.unread > 99 ? "99+" : String(this.unread);
    if (open) this.preview.hidden = true;
    const unread = this.unread ? `, ${this.unread} new message${this.unread === 1 ? "" : "s"}` : "";
    this.launcher.setAttribute("aria-label", open ? "Close chat" : `Open chat${unread}`);
    this.launcher.setAttribute("aria-expanded", String(open));
  }

  render() {
    const cfg = this.config;
    const color = readableColor(cfg.widget_color || "#1f93ff");
    this.root.classList.add("cw-root");
    this.root.classList.toggle("cw-embedded", this.embedded);
    this.root.style.setProperty("--cw-color", color);
    // Two separate facts: whether an agent is around (presence), and whether this page is
    // connected (only shown while it is not).
    this.statusLine = h("span", { class: "cw-presence", hidden: true });
    this.connectionLine = h("span", { class: "cw-connection", role: "status", text: "Connecting…" });
    this.endButton = h("button", {
      class: "cw-end",
      type: "button",
      onclick: () => this.endConversation(),
      text: "End conversation",
    });
    const header = h(
      "header",
      { class: "cw-header" },
      h(
        "div",
        { class: "cw-heading" },
        h("div", { class: "cw-title", text: cfg.welcome_title || cfg.website_name || "Chat with us" }),
        h("div", { class: "cw-tagline", text: cfg.welcome_tagline || "We usually reply in a few minutes." }),
        this.statusLine,
        this.connectionLine,
      ),
      h(
        "div",
        { class: "cw-actions" },
        this.endButton,
        this.embedded
          ? null
          : h(
              "button",
              { class: "cw-close", type: "button", title: "Close", "aria-label": "Close chat", onclick: () => this.setOpen(false) },
              "×",
            ),
      ),
    );
    this.olderNote = h("div", { class: "cw-older", hidden: true, text: "Loading earlier messages…" });
    this.list = h("div", { class: "cw-list", role: "log", "aria-live": "polite", "aria-label": "Messages" });
    this.empty = h("div", { class: "cw-empty", text: "Ask us anything, we are happy to help." });
    this.scroller = h("div", { class: "cw-messages" }, this.olderNote, this.empty, this.list);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 40) this.loadOlder().catch(() => {});
    });
    this.typingNote = h("div", { class: "cw-typing", hidden: true });
    this.endedNote = h(
      "div",
      { class: "cw-ended", hidden: true },
      h("span", { text: "This conversation has ended." }),
      h("button", { type: "button", class: "cw-new", onclick: () => this.startNew(), text: "Start a new conversation" }),
    );
    this.input = h("textarea", { class: "cw-input", rows: 1, placeholder: "Type your message…", "aria-label": "Message" });
    this.input.addEventListener("input", () => this.typed());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.submit();
      }
    });
    this.fileInput = h("input", {
      type: "file",
      class: "cw-file-input",
      multiple: true,
      hidden: true,
      "aria-label": "Files to send",
    });
    this.fileInput.addEventListener("change", () => {
      const files = [...this.fileInput.files];
      this.fileInput.value = "";
      this.sendFiles(files);
    });
    this.attachButton = h("button", {
      type: "button",
      class: "cw-attach",
      title: "Send a file",
      "aria-label": "Send a file",
      text: "+",
      hidden: !this.canAttach,
      onclick: () => this.fileInput.click(),
    });
    this.emoji = this.hasEmojiPicker ? emojiPicker(this.input, { prefix: "cw-" }) : null;
    this.composer = h(
      "form",
      { class: "cw-composer", onsubmit: (event) => (event.preventDefault(), this.submit()) },
      this.emoji ? this.emoji.panel : null,
      this.fileInput,
      this.attachButton,
      this.input,
      this.emoji ? this.emoji.button : null,
      h("button", { type: "submit", class: "cw-send", text: "Send" }),
    );
    const panel = h(
      "section",
      { class: "cw-panel", role: this.embedded ? "main" : "dialog", "aria-label": cfg.website_name || "Chat" },
      header,
      this.scroller,
      this.typingNote,
      this.endedNote,
      this.composer,
    );
    this.root.replaceChildren(panel, ...(this.embedded ? [] : this.renderLauncherParts()));
    this.root.classList.toggle("cw-closed", !this.isOpen());
    this.renderLauncher();
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.embedded && this.isOpen()) {
        event.preventDefault();
        this.setOpen(false);
      }
    });
  }

  // The bubble in the corner, its unread badge, and the latest agent message's preview.
  renderLauncherParts() {
    this.badge = h("span", { class: "cw-badge", "aria-hidden": "true", hidden: true });
    this.launcher = h(
      "button",
      { class: "cw-launcher", type: "button", title: "Chat", onclick: () => this.setOpen(!this.isOpen()) },
      icon("chat", 26),
      this.badge,
    );
    this.previewWho = h("span", { class: "cw-preview-who" });
    this.previewText = h("span", { class: "cw-preview-text" });
    this.preview = h(
      "button",
      { type: "button", class: "cw-preview", hidden: true, onclick: () => this.setOpen(true) },
      this.previewWho,
      this.previewText,
    );
    // The live region stays in the page, so a screen reader hears each new preview.
    return [h("div", { class: "cw-preview-slot", "aria-live": "polite" }, this.preview), this.launcher];
  }

  submit() {
    const content = this.input.value;
    if (!content.trim()) return;
    this.input.value = "";
    this.send(content);
  }

  renderState() {
    const resolved = Boolean(this.conv && this.conv.status === "resolved") && !this.startingNew;
    this.endButton.hidden = !this.canEnd || !this.conv || resolved || this.startingNew;
    this.endedNote.hidden = !resolved;
    this.composer.hidden = resolved;
    this.root.classList.toggle("cw-resolved", resolved);
    this.input.placeholder = this.startingNew ? "Write to start a new conversation…" : "Type your message…";
    this.attachButton.hidden = !this.canAttach || this.startingNew;
  }

  renderMessages({ stickToBottom = false } = {}) {
    const box = this.scroller;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    const items = this.sorted().map((msg) => this.renderMessage(msg));
    patchChildren(this.list, items);
    this.empty.hidden = items.length > 0;
    if (stickToBottom || nearBottom) box.scrollTop = box.scrollHeight;
  }

  renderMessage(msg) {
    if (msg.message_type === MESSAGE.activity) {
      return h("div", { class: "cw-activity", "data-id": String(msg.id), text: msg.content || "" });
    }
    const mine = msg.message_type === MESSAGE.incoming;
    const classes = ["cw-message", mine ? "cw-mine" : "cw-theirs"];
    if (isVoice(msg)) classes.push("cw-voice");
    if (msg.pending) classes.push("cw-pending");
    if (msg.failed) classes.push("cw-failed");
    const who = mine ? null : (msg.sender && (msg.sender.available_name || msg.sender.name)) || "Support";
    const meta = [clockTime(msg.created_at)];
    if (msg.pending) meta.push("sending…");
    if (msg.failed) meta.push(`not sent: ${msg.failed}`);
    return h(
      "div",
      { class: classes.join(" "), "data-id": String(msg.id) },
      who && !isVoice(msg) ? h("div", { class: "cw-sender", text: who }) : null,
      h("div", { class: "cw-bubble" }, bubbleBody(msg)),
      mine ? null : widgetControl(msg, { answer: (id, body) => this.answerMessage(id, body), drafts: this.drafts }),
      h("div", { class: "cw-meta", text: meta.filter(Boolean).join(" · ") }),
    );
  }

  showAgentTyping(user) {
    clearTimeout(this.agentTypingTimer);
    if (!user) {
      this.typingNote.hidden = true;
      return;
    }
    const name = user.available_name || user.name || "An agent";
    const box = this.scroller;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    this.typingNote.textContent = `${name} is typing…`;
    this.typingNote.hidden = false;
    if (nearBottom) box.scrollTop = box.scrollHeight; // the note must not hide the last message
    this.showPresence({ [user.id]: "online" });
    this.agentTypingTimer = setTimeout(() => (this.typingNote.hidden = true), AGENT_TYPING_TIMEOUT_MS);
  }

  // presence.update (on subscribe and every 20 s), or a live sign of an agent at work: the
  // presence line and its dot say whether an agent is around, nothing else.
  showPresence(users) {
    const online = Object.values(users).some((s) => s === "online");
    this.root.dataset.presence = online ? "online" : "away";
    this.statusLine.textContent = online ? "We are online" : "We are away, leave a message";
    this.statusLine.hidden = false;
  }

  // The socket's state, in words, while it is not connected (a connected widget says nothing).
  showConnection(status) {
    this.root.dataset.connection = status;
    if (!this.connectionLine) return;
    const words = { connected: "", connecting: "Connecting…", offline: "Connection lost, reconnecting…" };
    this.connectionLine.textContent = status in words ? words[status] : "Offline: messages will not arrive";
    this.connectionLine.hidden = status === "connected";
  }
}

// The inbox's color, darkened just enough for white text on it to be readable (WCAG AA,
// 4.5:1): Chatwoot's default blue, #1f93ff, is only 3:1 with white. A color that is not
// "#rgb" or "#rrggbb" is left as it is.
export function readableColor(color) {
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color.trim());
  if (!hex) return color;
  const digits = hex[1].length === 3 ? [...hex[1]].map((d) => d + d).join("") : hex[1];
  let rgb = [0, 2, 4].map((i) => parseInt(digits.slice(i, i + 2), 16));
  const channel = (c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const contrast = (c) => 1.05 / (0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]) + 0.05);
  for (let i = 0; i < 40 && contrast(rgb) < 4.6; i++) rgb = rgb.map((c) => Math.floor(c * 0.95));
  return `#${rgb.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
}
