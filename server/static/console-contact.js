// The contact panel: the visitor of the open conversation, beside it (issue 19). What it shows
// comes from the agent API:
//
//   contact    GET /accounts/{id}/contacts/{contact_id} (name, email, phone, identifier and
//              whether it was proven with identifier_hash, custom attributes)
//   edit       PUT the same path {name, email, phone_number}; contact.updated keeps every
//              console's copy current
//   earlier    GET .../contacts/{contact_id}/conversations, the contact's other conversations
//   page, browser  the conversation's additional_attributes (referer, browser.user_agent)
//
// Collapsible: the choice is kept in localStorage.

import { HttpError, clockTime, h } from "./dom.js";

const COLLAPSED_KEY = "agent-console:contact-collapsed";

export class ContactPanel {
  // `host` is the console: api(), select(id), conversations (display id -> push).
  constructor(host) {
    this.host = host;
    this.conv = null;
    this.contact = null;
    this.earlier = [];
    this.editing = false;
    // Until the agent chooses, the panel starts open only where there is room for three
    // panes; on a phone it opens over the conversation.
    const chosen = localStorage.getItem(COLLAPSED_KEY);
    this.collapsed = chosen === null ? matchMedia("(max-width: 1023px)").matches : chosen === "1";
    this.el = h("aside", { class: "contact-panel", "aria-label": "Contact" });
    this.render();
  }

  // The open conversation changed (or was updated): load its contact when it is another.
  show(conv) {
    const contactId = conv && conv.meta && conv.meta.sender ? conv.meta.sender.id : null;
    const same = this.conv && conv && this.conv.id === conv.id && this.contact && this.contact.id === contactId;
    this.conv = conv;
    if (!contactId) {
      this.contact = null;
      this.earlier = [];
      this.render();
      return;
    }
    if (same) {
      if (!this.editing) this.render(); // a re-render would drop what the agent is typing
      return;
    }
    this.editing = false;
    this.contact = { ...conv.meta.sender };
    this.earlier = [];
    this.render();
    this.load(contactId).catch(() => {});
  }

  async load(contactId) {
    const [one, list] = await Promise.all([
      this.host.api("GET", `/contacts/${contactId}`),
      this.host.api("GET", `/contacts/${contactId}/conversations`),
    ]);
    if (!this.contact || this.contact.id !== contactId) return; // another one was opened since
    this.contact = one.payload;
    this.earlier = list.payload;
    this.render();
  }

  // contact.updated (the account's stream): the shown contact changed elsewhere.
  onContactUpdated(data) {
    if (!this.contact || data.id !== this.contact.id || this.editing) return;
    this.contact = { ...this.contact, ...data };
    this.render();
  }

  // On a phone the panel has no room beside the conversation: this button in the
  // conversation's header opens it over the conversation (CSS shows it on phones only).
  headerButton() {
    return h("button", {
      type: "button",
      class: "contact-show",
      "aria-expanded": String(!this.collapsed),
      text: "Contact",
      onclick: () => this.toggle(),
    });
  }

  toggle() {
    this.collapsed = !this.collapsed;
    localStorage.setItem(COLLAPSED_KEY, this.collapsed ? "1" : "0");
    this.render();
    this.host.renderViewHeader(); // its "Contact" button says whether the panel is open
  }

  async save(form) {
    const fields = Object.fromEntries(new FormData(form).entries());
    try {
      const answer = await this.host.api("PUT", `/contacts/${this.contact.id}`, { body: fields });
      this.contact = answer.payload;
      this.editing = false;
      this.render();
    } catch (err) {
      const text = err instanceof HttpError && err.body && err.body.error ? err.body.error : err.message;
      const error = form.querySelector(".contact-error");
      if (error) error.textContent = text;
    }
  }

  render() {
    this.el.classList.toggle("collapsed", this.collapsed);
    const toggle = h("button", {
      type: "button",
      class: "contact-toggle",
      "aria-expanded": String(!this.collapsed),
      title: this.collapsed ? "Show the contact" : "Hide the contact",
      text: this.collapsed ? "‹ Contact" : "Hide ›",
      onclick: () => this.toggle(),
    });
    if (this.collapsed || !this.contact) {
      this.el.replaceChildren(
        ...present(toggle, this.collapsed ? null : h("p", { class: "contact-none", text: "No conversation open." })),
      );
      return;
    }
    // replaceChildren writes a null as the text "null": only the parts there are.
    this.el.replaceChildren(
      ...present(
        h("div", { class: "contact-head" }, h("strong", { text: "Contact" }), toggle),
        this.editing ? this.renderForm() : this.renderFields(),
        this.renderVisit(),
        this.renderAttributes(),
        this.renderEarlier(),
      ),
    );
  }

  renderFields() {
    const c = this.contact;
    const verified = Boolean(c.identifier_verified || (this.conv && this.conv.meta && this.conv.meta.hmac_verified));
    const fields = h(
      "dl",
      { class: "contact-fields" },
      row("Name", c.name || "—", "contact-name"),
      row("Email", c.email || "—", "contact-email"),
      row("Phone", c.phone_number || "—", "contact-phone"),
      c.identifier
        ? row(
            "Identity",
            h(
              "span",
              {},
              c.identifier,
              " ",
              h("span", {
                class: `pill ${verified ? "verified" : "unverified"}`,
                text: verified ? "verified" : "not verified",
              }),
            ),
            "contact-identity",
          )
        : null,
    );
    // The button sits beside the list: a <dl> may hold only its terms and descriptions.
    return h(
      "div",
      { class: "contact-fields-box" },
      fields,
      h("button", {
        type: "button",
        class: "contact-edit",
        text: "Edit",
        onclick: () => {
          this.editing = true;
          this.render();
        },
      }),
    );
  }

  renderForm() {
    const c = this.contact;
    const field = (name, label, value, type) =>
      h("label", {}, label, h("input", { name, type, value: value || "", maxlength: name === "name" ? 255 : 320 }));
    const form = h(
      "form",
      {
        class: "contact-form",
        onsubmit: (event) => {
          event.preventDefault();
          this.save(form);
        },
      },
      field("name", "Name", c.name, "text"),
      field("email", "Email", c.email, "email"),
      field("phone_number", "Phone (+14155552671)", c.phone_number, "tel"),
      h("p", { class: "contact-error", role: "alert" }),
      h(
        "div",
        { class: "contact-actions" },
        h("button", { type: "submit", class: "contact-save", text: "Save" }),
        h("button", {
          type: "button",
          class: "contact-cancel",
          text: "Cancel",
          onclick: () => {
            this.editing = false;
            this.render();
          },
        }),
      ),
    );
    return form;
  }

  renderVisit() {
    const attrs = (this.conv && this.conv.additional_attributes) || {};
    const agent = attrs.browser && attrs.browser.user_agent;
    if (!attrs.referer && !agent) return null;
    return h(
      "dl",
      { class: "contact-fields" },
      attrs.referer ? row("Page", h("span", { class: "contact-page", text: attrs.referer, title: attrs.referer }), "contact-page-row") : null,
      agent ? row("Browser", h("span", { text: browserName(agent), title: agent }), "contact-browser") : null,
    );
  }

  renderAttributes() {
    const attrs = this.contact.custom_attributes || {};
    const keys = Object.keys(attrs);
    if (!keys.length) return null;
    return h(
      "section",
      { class: "contact-section" },
      h("h3", { text: "Attributes" }),
      h(
        "dl",
        { class: "contact-fields contact-attributes" },
        keys.map((key) => row(key, typeof attrs[key] === "object" ? JSON.stringify(attrs[key]) : String(attrs[key]))),
      ),
    );
  }

  renderEarlier() {
    const others = this.earlier.filter((c) => !this.conv || c.id !== this.conv.id);
    return h(
      "section",
      { class: "contact-section" },
      h("h3", { text: "Other conversations" }),
      others.length
        ? h(
            "ul",
            { class: "contact-earlier" },
            others.map((c) =>
              h(
                "li",
                { "data-id": String(c.id) },
                h("button", {
                  type: "button",
                  class: "earlier-link",
                  text: `#${c.id} · ${clockTime(c.last_activity_at)}`,
                  onclick: () => this.host.select(c.id),
                }),
                h("span", { class: `pill ${c.status}`, text: c.status }),
              ),
            ),
          )
        : h("p", { class: "contact-none", text: "None" }),
    );
  }
}

function row(label, value, cls = "") {
  return h("div", { class: `contact-row ${cls}`.trim() }, h("dt", { text: label }), h("dd", {}, value));
}

// A short name for a user agent: enough for an agent to know what the visitor runs.
function browserName(agent) {
  const known = [
    ["Edg/", "Edge"],
    ["OPR/", "Opera"],
    ["Firefox/", "Firefox"],
    ["Chrome/", "Chrome"],
    ["Safari/", "Safari"],
  ];
  const found = known.find(([token]) => agent.includes(token));
  const os = ["Windows", "Android", "iPhone", "Mac OS X", "Linux"].find((name) => agent.includes(name));
  const name = found ? found[1] : "Browser";
  return os ? `${name} on ${os.replace("Mac OS X", "macOS")}` : name;
}

function present(...parts) {
  return parts.filter((part) => part !== null && part !== undefined);
}
