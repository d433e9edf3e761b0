// Assignment in the console (issue 19): the "Mine / Unassigned / All" filter beside the
// status tabs, and the assign control of the conversation header.
//
//   filter   GET /accounts/{id}/conversations?assignee_type=me|unassigned|all (the list's
//            other filters kept); live events are filtered the same way (`assigneeMatches`)
//   agents   GET /accounts/{id}/inbox_members/{inbox_id}: whom the conversation may go to
//   assign   POST .../conversations/{id}/assignments {assignee_id} (null: unassigned);
//            conversation.updated brings the new assignee to every console

import { h } from "./dom.js";

export const ASSIGNEE_FILTERS = [
  ["me", "Mine"],
  ["unassigned", "Unassigned"],
  ["all", "All"],
];

const assigneeOf = (conv) => (conv.meta && conv.meta.assignee ? conv.meta.assignee.id : null);

// Whether the list shows `conv` under the assignee filter, for the agent `userId`.
export function assigneeMatches(conv, filter, userId) {
  if (filter === "me") return assigneeOf(conv) === userId;
  if (filter === "unassigned") return assigneeOf(conv) === null;
  return true;
}

// The filter bar; `onPick(filter)` reloads the list. `render(active)` marks the active one.
export function assigneeFilterBar(onPick) {
  const bar = h(
    "div",
    { class: "filters assignee-filters", role: "group", "aria-label": "Assignee" },
    ASSIGNEE_FILTERS.map(([value, label]) =>
      h("button", { type: "button", "data-assignee": value, text: label, onclick: () => onPick(value) }),
    ),
  );
  bar.render = (active) => {
    for (const button of bar.children) button.classList.toggle("active", button.dataset.assignee === active);
  };
  return bar;
}

export class Assigner {
  // `host` is the console: api(), profile, conversations, upsertConversation(), flash().
  constructor(host) {
    this.host = host;
    this.agents = new Map(); // inbox id -> [user push]
  }

  async agentsOf(inboxId) {
    if (!this.agents.has(inboxId)) {
      const answer = await this.host.api("GET", `/inbox_members/${inboxId}`);
      this.agents.set(inboxId, answer.payload);
    }
    return this.agents.get(inboxId);
  }

  async assign(conv, assigneeId) {
    try {
      const assignee = await this.host.api("POST", `/conversations/${conv.id}/assignments`, {
        body: { assignee_id: assigneeId },
      });
      const now = this.host.conversations.get(conv.id) || conv;
      this.host.upsertConversation({
        ...now,
        meta: { ...(now.meta || {}), assignee, assignee_type: assignee ? "User" : null },
      });
    } catch (err) {
      this.host.flash(`Could not assign: ${err.message}`);
    }
  }

  // The header's control: "Assign to me" when it is not the agent's, and a menu of the
  // inbox's agents (filled once they are known).
  control(conv) {
    const me = this.host.profile.id;
    const current = assigneeOf(conv);
    const menu = h("select", { class: "assign-select", "aria-label": "Assignee" });
    const fill = (agents) => {
      const known = agents.some((a) => a.id === current);
      const options = [
        h("option", { value: "", text: "Unassigned" }),
        ...agents.map((a) =>
          h("option", {
            value: String(a.id),
            text: a.id === me ? `${a.available_name || a.name} (me)` : a.available_name || a.name,
          }),
        ),
      ];
      if (current !== null && !known) {
        options.push(h("option", { value: String(current), text: conv.meta.assignee.name }));
      }
      menu.replaceChildren(...options);
      menu.value = current === null ? "" : String(current);
    };
    fill(current !== null ? [conv.meta.assignee] : []);
    this.agentsOf(conv.inbox_id)
      .then(fill)
      .catch(() => {});
    menu.addEventListener("change", () => this.assign(conv, menu.value ? Number(menu.value) : null));
    return h(
      "div",
      { class: "assign" },
      current === me
        ? null
        : h("button", { type: "button", class: "assign-me", text: "Assign to me", onclick: () => this.assign(conv, me) }),
      menu,
    );
  }
}
