// The agent console. It signs in with an agent access token and then knows only what the
// agent API answers and what /cable delivers, so it doubles as a live check of both:
//
//   sign in    GET /api/v1/profile (api_access_token header; the token stays in localStorage)
//   list       GET /accounts/{id}/conversations?status=..., then kept live by
//              conversation.created / updated / status_changed / read and message.created
//   view       GET .../conversations/{id}/messages (?before= when scrolled to the top)
//   reply      POST .../messages {content, private}; typing via toggle_typing_status
//   read state "Seen" once message.updated says status "read" or conversation.read moves
//              contact_last_seen_at past the agent's last reply
//   status     POST .../toggle_status {status: resolved|open}
//   labels     GET /accounts/{id}/labels once; POST .../conversations/{id}/labels {labels}
//              replaces the set (conversation.updated carries everyone's changes)
//   interactive what a form, option list, email prompt or CSAT survey offered and the
//              visitor's answer, under the message (interactive.js)
//   visitor    the contact panel, assignment and its filters, search, the list paged on
//              scroll (console-contact.js, console-assign.js, console-search.js,
//              console-paging.js)
//   realtime   RoomChannel with the agent's pubsub_token + account_id + user_id, on the
//              extended protocol: a reconnect resumes and gets what it missed; only when it
//              cannot are the list and the open conversation fetched again (?after=)

import { Cable } from "./cable.js";
import {
  HttpError,
  MESSAGE,
  bubbleBody,
  byId,
  clockTime,
  h,
  inDisplayOrder,
  isVoice,
  patchChildren,
  request,
} from "./dom.js";
import { emojiPicker } from "./emoji.js";
import { consoleSummary } from "./interactive.js";
import { Assigner, assigneeFilterBar, assigneeMatches } from "./console-assign.js";
import { ContactPanel } from "./console-contact.js";
import { ListPager } from "./console-paging.js";
import { SearchBox } from "./console-search.js";
import { Notifier } from "./notify.js";
import { OptionsComposer } from "./console-options.js";

const TOKEN_KEY = "agent-console:token";

// The conversation's latest voice call is live (conversation.updated carries it as the call
// starts, is linked and ends).
const onVoiceCall = (conv) => Boolean(conv.voice_call && conv.voice_call.live);
const TYPING_IDLE_MS = 2000;
const TYPING_TIMEOUT_MS = 30000;
const PRESENCE_EVERY_MS = 20000;
const FILTERS = ["open", "resolved", "all"];

class AgentConsole {
  constructor(root) {
    this.root = root;
    this.conversations = new Map(); // display id -> conversation push
    this.messages = new Map(); // message id -> message, for the open conversation
    this.typing = new Map(); // display id -> {name, timer}
    this.contactsOnline = {};
    this.filter = "all";
    this.selectedId = null;
    this.noOlder = false;
    this.loadingOlder = false;
    this.typingOn = null; // {id, isPrivate} while our "typing on" is out
    this.typingIdle = null;
    this.accountLabels = []; // the account's labels: what the "Add label" menu offers
    this.assigneeFilter = "all"; // me | unassigned | all
    this.pager = new ListPager((page) => this.loadPage(page));
    this.notifier = new Notifier({ onOpen: (id) => this.select(id) });
  }

  async start() {
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) await this.signIn(token);
    else this.renderSignIn();
  }

  // -- sign in ------------------------------------------------------------------------

  renderSignIn(error = "") {
    const input = h("input", {
      class: "signin-token",
      id: "signin-token",
      "aria-describedby": "signin-hint",
      type: "password",
      placeholder: "Agent access token",
      autocomplete: "off",
      required: true,
    });
    const form = h(
      "form",
      {
        class: "signin",
        onsubmit: (event) => {
          event.preventDefault();
          this.signIn(input.value.trim());
        },
      },
      h("h1", { text: "Agent console" }),
      h(
        "p",
        { id: "signin-hint" },
        "Sign in with an agent access token. ",
        h("code", { text: "python -m server" }),
        " prints the demo agent's token on its first start.",
      ),
      h("label", { class: "signin-label", for: "signin-token", text: "Access token" }),
      input,
      h("button", { type: "submit", text: "Sign in" }),
      error ? h("p", { class: "signin-error", role: "alert", text: error }) : null,
    );
    this.root.replaceChildren(form);
    input.focus();
  }

  async signIn(token) {
    this.token = token;
    try {
      this.profile = await request("GET", "/api/v1/profile", { headers: { api_access_token: token } });
    } catch (err) {
      localStorage.removeItem(TOKEN_KEY);
      const refused = err instanceof HttpError && err.status === 401;
      this.renderSignIn(refused ? "This access token is not valid." : `Could not sign in: ${err.message}`);
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    this.accountId = this.profile.account_id;
    this.renderShell();
    await Promise.all([this.loadConversations(), this.loadLabels()]);
    const fromHash = Number(new URLSearchParams(location.hash.slice(1)).get("conversation"));
    if (fromHash) this.select(fromHash);
    // The address follows the open conversation: a link to one, or the browser's back
    // button (on a phone: from the conversation back to the list), moves the console.
    addEventListener("hashchange", () => {
      const id = Number(new URLSearchParams(location.hash.slice(1)).get("conversation")) || null;
      if (id === this.selectedId) return;
      if (id) this.select(id);
      else this.back();
    });
    this.connect();
  }

  signOut() {
    localStorage.removeItem(TOKEN_KEY);
    this.cable?.close();
    clearInterval(this.presence);
    location.hash = "";
    location.reload();
  }

  api(method, path, { query, body, keepalive } = {}) {
    const qs = query ? `?${new URLSearchParams(query)}` : "";
    return request(method, `/api/v1/accounts/${this.accountId}${path}${qs}`, {
      body,
      keepalive,
      headers: { api_access_token: this.token },
    });
  }

  connect() {
    this.cable = new Cable(undefined, { onStatus: (s) => this.showConnection(s) });
    this.room = this.cable.subscribe(
      {
        channel: "RoomChannel",
        pubsub_token: this.profile.pubsub_token,
        account_id: this.accountId,
        user_id: this.profile.id,
      },
      {
        connected: ({ reconnected, resumed }) => reconnected && !resumed && this.catchUp(),
        rejected: () => this.showConnection("rejected"),
        received: (message) => this.onEvent(message.event, message.data),
      },
    );
    this.presence = setInterval(() => this.room.perform("update_presence"), PRESENCE_EVERY_MS);
    document.addEventListener("visibilitychange", () => {
      this.markSeen();
      this.notifier.setUnread(this.unreadTotal());
    });
    addEventListener("pagehide", () => this.stopTyping({ keepalive: true }));
  }

  // -- data ---------------------------------------------------------------------------

  async loadConversations() {
    await this.pager.reset();
  }

  // One page of the list under the current filters (console-paging.js asks for the next).
  async loadPage(page) {
    const query = { status: this.filter, assignee_type: this.assigneeFilter, page };
    const answer = await this.api("GET", "/conversations", { query });
    for (const conv of answer.data.payload) this.conversations.set(conv.id, conv);
    this.renderList();
    return answer.data.payload;
  }

  async loadLabels() {
    try {
      this.accountLabels = (await this.api("GET", "/labels")).payload;
    } catch {
      this.accountLabels = [];
    }
    if (this.selectedId) this.renderViewHeader();
  }

  async setLabels(labels) {
    const id = this.selectedId;
    try {
      const answer = await this.api("POST", `/conversations/${id}/labels`, { body: { labels } });
      const conv = this.conversations.get(id);
      if (conv) this.upsertConversation({ ...conv, labels: answer.payload });
    } catch (err) {
      this.flash(`Could not change the labels: ${err.message}`);
    }
  }

  async fetchConversation(id) {
    const conv = await this.api("GET", `/conversations/${id}`);
    this.upsertConversation(conv);
    return conv;
  }

  upsertConversation(data) {
    const old = this.conversations.get(data.id) || {};
    const conv = { ...old, ...data };
    if (!(data.messages && data.messages.length) && old.messages) conv.messages = old.messages;
    this.conversations.set(conv.id, conv);
    this.renderList();
    if (conv.id === this.selectedId) {
      this.renderViewHeader();
      this.contactPanel.show(conv);
    }
  }

  async select(id) {
    this.stopTyping();
    this.selectedId = id;
    this.messages.clear();
    this.noOlder = false;
    location.hash = `conversation=${id}`;
    this.renderList();
    this.renderView();
    this.contactPanel.show(this.conversations.get(id));
    if (!this.conversations.has(id)) {
      try {
        await this.fetchConversation(id);
      } catch {
        this.selectedId = null;
        this.renderView();
        return;
      }
    }
    const answer = await this.api("GET", `/conversations/${id}/messages`);
    if (this.selectedId !== id) return;
    for (const msg of answer.payload) this.messages.set(msg.id, msg);
    this.noOlder = !answer.payload.length;
    // Not renderView(): that would replace the reply box and lose what the agent has
    // typed while the history loaded.
    this.renderViewHeader();
    this.renderMessages({ stickToBottom: true });
    this.markSeen();
  }

  async loadOlder() {
    const oldest = [...this.messages.values()].sort(byId)[0];
    if (!oldest || this.noOlder || this.loadingOlder) return;
    const id = this.selectedId;
    this.loadingOlder = true;
    try {
      const answer = await this.api("GET", `/conversations/${id}/messages`, { query: { before: oldest.id } });
      if (this.selectedId !== id) return;
      if (!answer.payload.length) this.noOlder = true;
      const box = this.scroller;
      const fromBottom = box.scrollHeight - box.scrollTop;
      for (const msg of answer.payload) this.messages.set(msg.id, msg);
      this.renderMessages();
      box.scrollTop = box.scrollHeight - fromBottom;
    } finally {
      this.loadingOlder = false;
    }
  }

  async catchUp() {
    await this.loadConversations();
    const id = this.selectedId;
    if (!id) return;
    const ids = [...this.messages.keys()];
    const query = ids.length ? { after: Math.max(...ids) } : undefined;
    const answer = await this.api("GET", `/conversations/${id}/messages`, { query });
    if (this.selectedId !== id) return;
    for (const msg of answer.payload) this.messages.set(msg.id, msg);
    this.renderMessages();
  }

  // The agent has the conversation on screen: zero its unread count.
  markSeen() {
    const id = this.selectedId;
    if (!id || document.visibilityState !== "visible") return;
    const conv = this.conversations.get(id);
    if (conv && conv.unread_count) {
      conv.unread_count = 0;
      this.renderList();
    }
    this.api("POST", `/conversations/${id}/update_last_seen`, { body: {} }).catch(() => {});
  }

  // -- actions ------------------------------------------------------------------------

  async reply() {
    const content = this.input.value;
    if (!content.trim() || !this.selectedId) return;
    const isPrivate = this.privateToggle.checked;
    // Options turn the reply into a question the visitor answers with one click.
    const offer = this.options.payload();
    if (typeof offer === "string") return this.flash(offer);
    if (offer && isPrivate) return this.flash("Options go to the visitor: untick Private note");
    this.input.value = "";
    this.stopTyping();
    try {
      const msg = await this.api("POST", `/conversations/${this.selectedId}/messages`, {
        body: { content, private: isPrivate, ...(offer || {}) },
      });
      if (offer) this.options.reset();
      if (msg.conversation_id === this.selectedId) this.upsertMessage(msg);
    } catch (err) {
      this.input.value = content;
      this.flash(`Not sent: ${err.message}`);
    }
  }

  // Files: one reply (or private note) with them, multipart as Chatwoot's API takes it.
  async replyWithFiles(files) {
    const id = this.selectedId;
    if (!files.length || !id) return;
    const form = new FormData();
    const content = this.input.value;
    if (content.trim()) form.append("content", content);
    form.append("private", this.privateToggle.checked ? "true" : "false");
    for (const file of files) form.append("attachments[]", file, file.name);
    this.input.value = "";
    try {
      const msg = await this.api("POST", `/conversations/${id}/messages`, { body: form });
      if (msg.conversation_id === this.selectedId) this.upsertMessage(msg);
    } catch (err) {
      this.input.value = content;
      this.flash(`Not sent: ${err.message}`);
    }
  }

  typed() {
    const id = this.selectedId;
    if (!id) return;
    const isPrivate = this.privateToggle.checked;
    if (!this.typingOn || this.typingOn.id !== id || this.typingOn.isPrivate !== isPrivate) {
      this.stopTyping();
      this.typingOn = { id, isPrivate };
      this.postTyping(id, "on", isPrivate);
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping({ keepalive = false } = {}) {
    clearTimeout(this.typingIdle);
    if (!this.typingOn) return;
    const { id, isPrivate } = this.typingOn;
    this.typingOn = null;
    this.postTyping(id, "off", isPrivate, keepalive);
  }

  postTyping(id, status, isPrivate, keepalive = false) {
    this.api("POST", `/conversations/${id}/toggle_typing_status`, {
      body: { typing_status: status, is_private: isPrivate },
      keepalive,
    }).catch(() => {});
  }

  async setStatus(status) {
    const id = this.selectedId;
    try {
      const answer = await this.api("POST", `/conversations/${id}/toggle_status`, { body: { status } });
      const conv = this.conversations.get(id);
      if (conv) this.upsertConversation({ ...conv, status: answer.payload.current_status });
    } catch (err) {
      this.flash(`Could not change the status: ${err.message}`);
    }
  }

  // -- realtime -----------------------------------------------------------------------

  onEvent(event, data) {
    if (!data || data.account_id !== this.accountId) return; // another account's event
    switch (event) {
      case "conversation.created":
      case "conversation.updated":
      case "conversation.status_changed":
      case "conversation.read":
        this.upsertConversation(data);
        if (data.id === this.selectedId) this.renderMessages();
        return;
      case "message.created":
      case "message.updated":
        this.onMessage(event, data);
        return;
      case "conversation.typing_on":
      case "conversation.typing_off":
        this.setTyping(data.conversation.id, event === "conversation.typing_on" ? data : null);
        return;
      case "presence.update":
        this.contactsOnline = data.contacts || {};
        this.renderList();
        return;
      case "contact.updated":
        this.onContactUpdated(data);
        return;
    }
  }

  onMessage(event, msg) {
    const conv = this.conversations.get(msg.conversation_id);
    if (!conv) {
      this.fetchConversation(msg.conversation_id).catch(() => {});
    } else if (event === "message.created") {
      if (msg.message_type !== MESSAGE.activity) conv.messages = [msg]; // the list's snippet
      if (msg.conversation) {
        conv.last_activity_at = msg.conversation.last_activity_at;
        conv.unread_count = msg.conversation.unread_count;
      }
      if (msg.message_type === MESSAGE.incoming) {
        this.setTyping(conv.id, null);
        if (msg.sender) this.contactsOnline[String(msg.sender.id)] = "online"; // a live sign
      }
    } else if (conv.messages && conv.messages[0] && conv.messages[0].id === msg.id) {
      conv.messages = [msg];
    }
    if (msg.conversation_id === this.selectedId) {
      this.upsertMessage(msg);
      if (event === "message.created" && msg.message_type === MESSAGE.incoming) this.markSeen();
    }
    if (event === "message.created" && msg.message_type === MESSAGE.incoming && !msg.private && !isVoice(msg)) {
      const files = (msg.attachments || []).length;
      this.notifier.incoming(msg.conversation_id, {
        title: `New message from ${contactName(msg.sender || {})}`,
        body: msg.content || (files ? "sent a file" : ""),
        onScreen: msg.conversation_id === this.selectedId,
      });
    }
    this.renderList();
  }

  // A contact changed (edited by an agent, attributes removed by the widget): its name in the
  // list and the contact panel.
  onContactUpdated(contact) {
    for (const conv of this.conversations.values()) {
      if (conv.meta && conv.meta.sender && conv.meta.sender.id === contact.id) {
        conv.meta = { ...conv.meta, sender: { ...conv.meta.sender, ...contact } };
      }
    }
    this.renderList();
    if (this.selectedId) this.renderViewHeader();
    this.contactPanel.onContactUpdated(contact);
  }

  upsertMessage(msg) {
    this.messages.set(msg.id, { ...(this.messages.get(msg.id) || {}), ...msg });
    this.renderMessages();
  }

  setTyping(id, data) {
    const old = this.typing.get(id);
    if (old) clearTimeout(old.timer);
    this.typing.delete(id);
    if (data) {
      const who = data.user || {};
      const name = who.type === "contact" ? contactName(who) : who.available_name || who.name || "An agent";
      const timer = setTimeout(() => this.setTyping(id, null), TYPING_TIMEOUT_MS);
      this.typing.set(id, { name, timer, isPrivate: data.is_private });
    }
    this.renderList();
    if (id === this.selectedId) this.renderTyping();
  }

  // -- view ---------------------------------------------------------------------------

  renderShell() {
    this.status = h("span", { class: "connection", text: "Connecting…" });
    this.filters = h(
      "div",
      { class: "filters", role: "group", "aria-label": "Show conversations" },
      FILTERS.map((f) =>
        h("button", { type: "button", "data-filter": f, onclick: () => this.setFilter(f), text: f[0].toUpperCase() + f.slice(1) }),
      ),
    );
    this.assigneeBar = assigneeFilterBar((filter) => this.setAssigneeFilter(filter));
    this.search = new SearchBox(this);
    this.assigner = new Assigner(this);
    this.contactPanel = new ContactPanel(this);
    this.listBox = h("ul", { class: "conv-list", "aria-label": "Conversations" });
    ListPager.onScrollEnd(this.listBox, () =>
      (this.search.active ? this.search.more() : this.pager.next()).catch(() => {}),
    );
    this.view = h("section", { class: "conv-view", "aria-label": "Conversation" });
    this.toast = h("div", { class: "toast", role: "status", hidden: true });
    this.root.replaceChildren(
      h(
        "header",
        { class: "topbar" },
        h("h1", { class: "brand", text: "Agent console" }),
        h("span", { class: "who", text: `${this.profile.name} · account ${this.accountId}` }),
        this.status,
        this.notifier.controls(),
        h("button", { type: "button", class: "signout", onclick: () => this.signOut(), text: "Sign out" }),
      ),
      h(
        "main",
        { class: "panes" },
        h(
          "aside",
          { class: "sidebar", "aria-label": "Conversation list" },
          h("h2", { class: "sidebar-title", text: "Conversations" }),
          this.search.el,
          this.filters,
          this.assigneeBar,
          this.listBox,
        ),
        this.view,
        this.contactPanel.el,
      ),
      this.toast,
    );
    this.renderView();
  }

  async setFilter(filter) {
    this.filter = filter;
    await this.loadConversations();
  }

  async setAssigneeFilter(filter) {
    this.assigneeFilter = filter;
    await this.loadConversations();
  }

  renderList() {
    if (!this.listBox) return;
    for (const button of this.filters.children) {
      button.classList.toggle("active", button.dataset.filter === this.filter);
      button.setAttribute("aria-pressed", String(button.dataset.filter === this.filter));
    }
    this.assigneeBar.render(this.assigneeFilter);
    this.root.classList.toggle("has-selection", Boolean(this.selectedId));
    this.notifier.setUnread(this.unreadTotal());
    const shown = (this.search.active ? this.search.shown() : [...this.conversations.values()])
      .filter((c) => this.search.active || this.filter === "all" || c.status === this.filter)
      .filter((c) => this.search.active || assigneeMatches(c, this.assigneeFilter, this.profile.id))
      .sort((a, b) => (b.last_activity_at || 0) - (a.last_activity_at || 0) || b.id - a.id);
    const items = shown.map((conv) => {
      const last = conv.messages && conv.messages[0];
      const typing = this.typing.get(conv.id);
      const sender = (conv.meta && conv.meta.sender) || {};
      const online = this.contactsOnline[String(sender.id)] === "online";
      const unread = conv.id === this.selectedId ? 0 : conv.unread_count || 0;
      const selected = conv.id === this.selectedId;
      return h(
        "li",
        {
          class: `conv-item${selected ? " selected" : ""}${unread ? " unread" : ""}`,
          "data-id": String(conv.id),
        },
        // A button: focusable, and Enter or Space opens the conversation.
        h(
          "button",
          {
            type: "button",
            class: "conv-open",
            "aria-current": selected ? "true" : null,
            onclick: () => this.select(conv.id),
          },
          h(
            "span",
            { class: "conv-line" },
            h("span", { class: `contact${online ? " online" : ""}`, text: contactName(sender) }),
            online ? h("span", { class: "sr-only", text: " (online)" }) : null,
            h("span", { class: "conv-time", text: clockTime(conv.last_activity_at) }),
          ),
          h(
            "span",
            { class: "conv-line" },
            h("span", {
              class: `snippet${typing ? " is-typing" : ""}`,
              text: typing ? "typing…" : last ? snippet(last) : "No messages yet",
            }),
            unread ? h("span", { class: "badge", "aria-label": `${unread} unread`, text: String(unread) }) : null,
            onVoiceCall(conv) ? h("span", { class: "pill on-call", text: "on a voice call" }) : null,
            h("span", { class: `pill ${conv.status}`, text: conv.status }),
          ),
          conv.labels && conv.labels.length
            ? h("span", { class: "conv-labels" }, conv.labels.map((l) => h("span", { class: "label-chip", text: l })))
            : null,
        ),
      );
    });
    // Events re-render the list all day: keep unchanged items (and the keyboard focus) where
    // they are.
    const focused = this.listBox.contains(document.activeElement) && document.activeElement.closest(".conv-item");
    const none = this.search.active ? (this.search.loading ? "Searching…" : "Nothing found") : "No conversations";
    patchChildren(this.listBox, items.length ? items : [h("li", { class: "conv-none", text: none })]);
    if (focused && !this.listBox.contains(document.activeElement)) {
      this.listBox.querySelector(`.conv-item[data-id="${focused.dataset.id}"] .conv-open`)?.focus();
    }
  }

  // Unread visitor messages for the tab title: the badges' sum, plus the open
  // conversation's while the tab is hidden.
  unreadTotal() {
    const visible = document.visibilityState === "visible";
    let total = 0;
    for (const conv of this.conversations.values()) {
      if (conv.id === this.selectedId && visible) continue;
      total += conv.unread_count || 0;
    }
    return total;
  }

  // Phones show one pane at a time: "back" leaves the conversation for the list.
  back() {
    const id = this.selectedId;
    this.stopTyping();
    this.selectedId = null;
    this.messages.clear();
    history.replaceState(null, "", location.pathname + location.search);
    this.renderList();
    this.renderView();
    const item = this.listBox.querySelector(`.conv-item[data-id="${id}"] .conv-open`);
    if (item) item.focus();
  }

  renderView() {
    const id = this.selectedId;
    if (!id) {
      this.view.replaceChildren(h("div", { class: "placeholder", text: "Pick a conversation on the left." }));
      this.viewHeader = null;
      return;
    }
    this.viewHeader = h("header", { class: "view-header" });
    this.list = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Messages" });
    this.scroller = h("div", { class: "scroller" }, this.list);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 40) this.loadOlder().catch(() => {});
    });
    this.typingNote = h("div", { class: "typing", hidden: true });
    this.input = h("textarea", {
      class: "reply-input",
      rows: 3,
      placeholder: "Reply to the visitor…",
      "aria-label": "Reply",
    });
    this.input.addEventListener("input", () => this.typed());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.reply();
      }
    });
    this.privateToggle = h("input", { type: "checkbox", class: "private-toggle" });
    this.privateToggle.addEventListener("change", () => {
      this.composer.classList.toggle("private", this.privateToggle.checked);
      this.input.placeholder = this.privateToggle.checked ? "Private note (only agents see it)…" : "Reply to the visitor…";
      this.stopTyping();
    });
    this.fileInput = h("input", {
      type: "file",
      class: "file-input",
      multiple: true,
      hidden: true,
      "aria-label": "Files to send",
    });
    this.fileInput.addEventListener("change", () => {
      const files = [...this.fileInput.files];
      this.fileInput.value = "";
      this.replyWithFiles(files);
    });
    this.emoji = emojiPicker(this.input);
    this.options = new OptionsComposer();
    this.composer = h(
      "form",
      { class: "composer", onsubmit: (event) => (event.preventDefault(), this.reply()) },
      this.emoji.panel,
      this.input,
      this.options.panel,
      h(
        "div",
        { class: "composer-bar" },
        h("label", { class: "private-label" }, this.privateToggle, " Private note"),
        this.emoji.button,
        this.options.button,
        this.fileInput,
        h("button", { type: "button", class: "attach", text: "Attach file", onclick: () => this.fileInput.click() }),
        h("button", { type: "submit", class: "send", text: "Send" }),
      ),
    );
    this.view.replaceChildren(this.viewHeader, this.scroller, this.typingNote, this.composer);
    this.renderViewHeader();
    this.renderMessages({ stickToBottom: true });
    this.renderTyping();
    this.input.focus();
  }

  // The header's actions act on this conversation only, apart from the list's filters.
  conversationActions(conv) {
    const resolved = conv.status === "resolved";
    return h(
      "div",
      { class: "view-actions", role: "group", "aria-label": "Conversation actions" },
      onVoiceCall(conv) ? h("span", { class: "pill on-call", text: "on a voice call" }) : null,
      this.assigner.control(conv),
      this.contactPanel.headerButton(),
      h("span", { class: `pill ${conv.status}`, text: conv.status }),
      h("button", {
        type: "button",
        class: resolved ? "reopen" : "resolve",
        onclick: () => this.setStatus(resolved ? "open" : "resolved"),
        text: resolved ? "Reopen" : "Resolve",
        "aria-label": `${resolved ? "Reopen" : "Resolve"} conversation #${conv.id}`,
      }),
    );
  }

  renderViewHeader() {
    const conv = this.conversations.get(this.selectedId);
    if (!this.viewHeader || !conv) return;
    const sender = (conv.meta && conv.meta.sender) || {};
    const labels = conv.labels || [];
    const addable = this.accountLabels.filter((l) => !labels.includes(l.title));
    const menu = h(
      "select",
      { class: "label-add", "aria-label": "Add a label" },
      h("option", { value: "", text: "Add label…" }),
      addable.map((l) => h("option", { value: l.title, text: l.title })),
    );
    menu.addEventListener("change", () => menu.value && this.setLabels([...labels, menu.value]));
    const labelBar = h(
      "div",
      { class: "view-labels" },
      labels.map((title) =>
        h(
          "span",
          { class: "label-chip", "data-label": title },
          title,
          h("button", {
            type: "button",
            class: "label-remove",
            title: `Remove ${title}`,
            text: "×",
            onclick: () => this.setLabels(labels.filter((l) => l !== title)),
          }),
        ),
      ),
      addable.length ? menu : null,
    );
    this.viewHeader.replaceChildren(
      h("button", {
        type: "button",
        class: "back",
        "aria-label": "Back to conversations",
        text: "←",
        onclick: () => this.back(),
      }),
      h(
        "div",
        { class: "view-heading" },
        h("h2", { class: "view-title", text: contactName(sender) }),
        h("div", { class: "view-sub", text: `#${conv.id} · ${sender.email || "anonymous visitor"}` }),
        labelBar,
      ),
      this.conversationActions(conv),
    );
  }

  renderMessages({ stickToBottom = false } = {}) {
    if (!this.list) return;
    const box = this.scroller;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    const conv = this.conversations.get(this.selectedId) || {};
    const sorted = inDisplayOrder(this.messages.values());
    const lastReply = [...sorted].reverse().find((m) => m.message_type === MESSAGE.outgoing && !m.private);
    const seen =
      lastReply && (lastReply.status === "read" || (conv.contact_last_seen_at || 0) >= lastReply.created_at);
    patchChildren(
      this.list,
      sorted.map((m) => this.renderMessage(m, m === lastReply ? (seen ? "Seen" : "Sent") : null)),
    );
    if (stickToBottom || nearBottom) box.scrollTop = box.scrollHeight;
  }

  renderMessage(msg, receipt) {
    if (msg.message_type === MESSAGE.activity) {
      return h("div", { class: "activity", "data-id": String(msg.id), text: msg.content || "" });
    }
    const fromVisitor = msg.message_type === MESSAGE.incoming;
    const classes = ["message", fromVisitor ? "from-visitor" : "from-agent"];
    if (msg.private) classes.push("note");
    if (isVoice(msg)) classes.push("voice");
    const who = fromVisitor
      ? contactName(msg.sender || {})
      : msg.sender
        ? msg.sender.available_name || msg.sender.name
        : isVoice(msg)
          ? "AI agent"
          : "Bot";
    const meta = [who, clockTime(msg.created_at)];
    if (msg.private) meta.push("private note");
    return h(
      "div",
      { class: classes.join(" "), "data-id": String(msg.id) },
      h("div", { class: "bubble" }, bubbleBody(msg)),
      consoleSummary(msg),
      h("div", { class: "meta", text: meta.filter(Boolean).join(" · ") }),
      receipt ? h("div", { class: `receipt ${receipt.toLowerCase()}`, text: receipt }) : null,
    );
  }

  renderTyping() {
    if (!this.typingNote) return;
    const typing = this.typing.get(this.selectedId);
    this.typingNote.hidden = !typing;
    this.typingNote.textContent = typing ? `${typing.name} is typing${typing.isPrivate ? " a private note" : ""}…` : "";
  }

  showConnection(status) {
    if (!this.status) return;
    const labels = { connected: "Live", connecting: "Connecting…", offline: "Reconnecting…", rejected: "Refused by /cable" };
    this.status.textContent = labels[status] || "Offline";
    this.status.dataset.state = status;
  }

  flash(text) {
    this.toast.textContent = text;
    this.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => (this.toast.hidden = true), 4000);
  }
}

function contactName(contact) {
  return contact.name || contact.email || (contact.id ? `Visitor ${contact.id}` : "Visitor");
}

function snippet(msg) {
  const prefix = msg.private ? "Note: " : isVoice(msg) ? "Voice: " : msg.message_type === MESSAGE.outgoing ? "↩ " : "";
  const text = `${prefix}${msg.content || ""}`;
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

const agentConsole = new AgentConsole(document.getElementById("console"));
window.agentConsole = agentConsole; // handy in the devtools console
agentConsole.start();
