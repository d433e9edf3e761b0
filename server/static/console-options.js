// The console composer's "Options" (issue 17's interactive messages, from the console): the
// agent writes a question and one option per line, and the reply goes out as Chatwoot's
// input_select, which the widget shows as buttons the visitor answers with one click.
// The server checks and bounds what it gets (server/interactive.py); this only shapes it.

import { h } from "./dom.js";

export const MAX_OPTIONS = 20; // server/interactive.py MAX_ITEMS
const MAX_TITLE = 255; // server/interactive.py SHORT

export class OptionsComposer {
  constructor() {
    this.list = h("textarea", {
      class: "options-input",
      rows: 3,
      placeholder: "One option per line",
      "aria-label": "Options the visitor can pick, one per line",
    });
    this.panel = h(
      "div",
      { class: "options-panel", hidden: true },
      h("label", { class: "options-label", text: "Options (the message above is the question)" }),
      this.list,
    );
    this.button = h("button", {
      type: "button",
      class: "options-toggle",
      "aria-pressed": "false",
      "aria-label": "Offer options to pick from",
      text: "Options",
      onclick: () => this.setOpen(this.panel.hidden),
    });
  }

  setOpen(open) {
    this.panel.hidden = !open;
    this.button.setAttribute("aria-pressed", String(open));
    if (open) this.list.focus();
  }

  // The options as typed (trimmed, blank lines left out, each repeated once).
  options() {
    if (this.panel.hidden) return [];
    const seen = new Set();
    return this.list.value
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && !seen.has(line) && seen.add(line));
  }

  // What to add to the reply's body; null when it is a plain message. An error (a string)
  // when the options cannot be sent as they are.
  payload() {
    const options = this.options();
    if (!options.length) return null;
    if (options.length > MAX_OPTIONS) return `At most ${MAX_OPTIONS} options`;
    if (options.some((o) => o.length > MAX_TITLE)) return `An option is at most ${MAX_TITLE} characters`;
    return {
      content_type: "input_select",
      content_attributes: { items: options.map((title) => ({ title, value: title })) },
    };
  }

  reset() {
    this.list.value = "";
    this.setOpen(false);
  }
}
