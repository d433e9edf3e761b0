// Search above the conversation list (issue 19): GET /accounts/{id}/conversations/search?q=
// finds conversations of any status by the contact (name, email, phone, identifier) or by
// message text. While a query is typed, its results replace the list (paged on scroll like
// it); clearing the box brings the list back.

import { h } from "./dom.js";

const DEBOUNCE_MS = 250;
const MIN_LENGTH = 2;
const MAX_LENGTH = 100;

export class SearchBox {
  // `host` is the console: api(), upsertConversation(), renderList(). `active` tells the
  // console to render `results` instead of its list.
  constructor(host) {
    this.host = host;
    this.query = "";
    this.results = [];
    this.page = 1;
    this.done = true;
    this.loading = false;
    this.timer = null;
    this.input = h("input", {
      type: "search",
      class: "search-input",
      placeholder: "Search name, email, phone or messages",
      "aria-label": "Search conversations",
      maxlength: MAX_LENGTH,
    });
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(this.input.value.trim()), DEBOUNCE_MS);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.clear();
    });
    this.note = h("div", { class: "search-note", hidden: true });
    this.el = h("div", { class: "search" }, this.input, this.note);
  }

  get active() {
    return this.query.length >= MIN_LENGTH;
  }

  clear() {
    this.input.value = "";
    this.run("");
  }

  async run(query) {
    this.query = query;
    this.results = [];
    this.page = 1;
    this.done = !this.active;
    this.note.hidden = !query || this.active;
    this.note.textContent = this.note.hidden ? "" : `Type at least ${MIN_LENGTH} characters`;
    if (!this.active) {
      this.host.renderList();
      return;
    }
    await this.fetchPage(query, 1);
  }

  // The next page of results, when the list is scrolled to its end.
  async more() {
    if (!this.active || this.done || this.loading) return;
    await this.fetchPage(this.query, this.page + 1);
  }

  async fetchPage(query, page) {
    this.loading = true;
    try {
      const answer = await this.host.api("GET", "/conversations/search", { query: { q: query, page } });
      if (query !== this.query) return; // typed on since
      const found = answer.data.payload;
      this.page = page;
      this.done = found.length < 25;
      this.results = page === 1 ? found.map((c) => c.id) : [...this.results, ...found.map((c) => c.id)];
      for (const conv of found) this.host.conversations.set(conv.id, { ...(this.host.conversations.get(conv.id) || {}), ...conv });
    } catch (err) {
      this.host.flash(`Search failed: ${err.message}`);
    } finally {
      this.loading = false;
    }
    this.host.renderList();
  }

  // What the list shows while searching: the results, as the console has them now.
  shown() {
    return this.results.map((id) => this.host.conversations.get(id)).filter(Boolean);
  }
}
