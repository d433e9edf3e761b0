// Interactive messages (Chatwoot's content types): what the widget shows as a control the
// visitor answers (input_email, input_select, form, input_csat; cards are shown, their links
// open), and what the console shows of the offer and of the visitor's answer.
//
// The widget answers with PATCH /api/v1/widget/messages/:id, exactly the bodies Chatwoot's
// widget sends: {contact: {email}} for an email prompt, {message: {submitted_values}} else.

import { h } from "./dom.js";

const ANSWERABLE = ["input_email", "input_select", "form", "input_csat"];
const RATINGS = [
  [1, "Very unsatisfied"],
  [2, "Unsatisfied"],
  [3, "Okay"],
  [4, "Satisfied"],
  [5, "Very satisfied"],
];

function attrs(msg) {
  return msg.content_attributes || {};
}

function items(msg) {
  return Array.isArray(attrs(msg).items) ? attrs(msg).items : [];
}

export function isInteractive(msg) {
  return ANSWERABLE.includes(msg.content_type) || msg.content_type === "cards";
}

// The visitor's answer in words, or null while there is none.
export function answerText(msg) {
  const a = attrs(msg);
  if (msg.content_type === "input_email") return a.submitted_email || null;
  const values = a.submitted_values;
  if (!values) return null;
  if (msg.content_type === "input_csat") {
    const r = values.csat_survey_response || {};
    return `Rated ${r.rating}/5${r.feedback_message ? `: ${r.feedback_message}` : ""}`;
  }
  if (!Array.isArray(values)) return null;
  if (msg.content_type === "form") return values.map((v) => `${v.title || v.name}: ${v.value}`).join(" · ");
  return values.map((v) => v.title || v.value).join(", ");
}

// -- the widget's controls ------------------------------------------------------------------

// drafts: a Map kept by the caller across re-renders (message id -> {field: value}), so what
// the visitor typed survives a re-render caused by another message arriving.
export function widgetControl(msg, { answer, drafts }) {
  if (typeof msg.id !== "number") return null;
  if (msg.content_type === "cards") return cards(msg);
  if (!ANSWERABLE.includes(msg.content_type)) return null;
  const done = answerText(msg);
  if (done) return h("div", { class: "cw-answered", text: `✓ ${done}` });
  const draft = drafts.get(msg.id) || {};
  drafts.set(msg.id, draft);
  const error = h("div", { class: "cw-answer-error", hidden: true });
  const send = async (body, form) => {
    for (const el of form.querySelectorAll("button, input, textarea, select")) el.disabled = true;
    error.hidden = true;
    try {
      await answer(msg.id, body);
      drafts.delete(msg.id);
    } catch (err) {
      error.textContent = err.message || "Could not send";
      error.hidden = false;
      for (const el of form.querySelectorAll("button, input, textarea, select")) el.disabled = false;
    }
  };
  const build = {
    input_email: emailPrompt,
    input_select: optionList,
    form: formFields,
    input_csat: csatSurvey,
  }[msg.content_type];
  return h("div", { class: `cw-control cw-control-${msg.content_type}` }, build(msg, draft, send), error);
}

function bind(input, draft, key) {
  if (draft[key] !== undefined) input.value = draft[key];
  input.addEventListener("input", () => (draft[key] = input.value));
  return input;
}

function emailPrompt(msg, draft, send) {
  const input = bind(h("input", { type: "email", class: "cw-email", placeholder: "Your email", required: true }), draft, "email");
  const form = h(
    "form",
    { onsubmit: (e) => (e.preventDefault(), send({ contact: { email: input.value.trim() } }, form)) },
    input,
    h("button", { type: "submit", class: "cw-answer-send", text: "Send" }),
  );
  return form;
}

function optionList(msg, draft, send) {
  const form = h("div", { class: "cw-options" });
  for (const item of items(msg)) {
    form.append(
      h("button", {
        type: "button",
        class: "cw-option",
        text: item.title,
        onclick: () => send({ message: { submitted_values: [{ title: item.title, value: item.value }] } }, form),
      }),
    );
  }
  return form;
}

function formFields(msg, draft, send) {
  const inputs = [];
  const rows = items(msg).map((field) => {
    let input;
    if (field.type === "select") {
      input = h(
        "select",
        { name: field.name, required: field.required },
        h("option", { value: "", text: field.placeholder || "Choose…" }),
        (field.options || []).map((o) => h("option", { value: o.value, text: o.label })),
      );
    } else if (field.type === "text_area") {
      input = h("textarea", { name: field.name, rows: 3, placeholder: field.placeholder, required: field.required });
    } else {
      const type = { email: "email", number: "number" }[field.type] || "text";
      input = h("input", { type, name: field.name, placeholder: field.placeholder, required: field.required });
    }
    if (field.default && draft[field.name] === undefined) draft[field.name] = field.default;
    bind(input, draft, field.name);
    inputs.push(input);
    return h("label", { class: "cw-field" }, h("span", { text: field.label || field.name }), input);
  });
  const form = h(
    "form",
    {
      class: "cw-form",
      onsubmit: (e) => {
        e.preventDefault();
        const values = inputs.map((i) => ({ name: i.name, value: i.value }));
        send({ message: { submitted_values: values } }, form);
      },
    },
    rows,
    h("button", { type: "submit", class: "cw-answer-send", text: "Submit" }),
  );
  return form;
}

function csatSurvey(msg, draft, send) {
  const feedback = bind(h("textarea", { class: "cw-feedback", rows: 2, placeholder: "Tell us more (optional)" }), draft, "feedback");
  const buttons = RATINGS.map(([rating, label]) =>
    h("button", {
      type: "button",
      class: `cw-rating${Number(draft.rating) === rating ? " chosen" : ""}`,
      "data-rating": String(rating),
      title: label,
      text: String(rating),
      onclick: () => {
        draft.rating = rating;
        for (const b of buttons) b.classList.toggle("chosen", b === buttons[rating - 1]);
      },
    }),
  );
  const form = h(
    "form",
    {
      class: "cw-csat",
      onsubmit: (e) => {
        e.preventDefault();
        if (!draft.rating) return;
        const response = { rating: Number(draft.rating), feedback_message: feedback.value.trim() };
        send({ message: { submitted_values: { csat_survey_response: response } } }, form);
      },
    },
    h("div", { class: "cw-ratings" }, buttons),
    feedback,
    h("button", { type: "submit", class: "cw-answer-send", text: "Submit rating" }),
  );
  return form;
}

function cards(msg) {
  return h(
    "div",
    { class: "cw-cards" },
    items(msg).map((card) =>
      h(
        "div",
        { class: "cw-card" },
        card.media_url && /^https?:\/\//.test(card.media_url) ? h("img", { src: card.media_url, alt: "" }) : null,
        h("div", { class: "cw-card-title", text: card.title }),
        card.description ? h("div", { class: "cw-card-text", text: card.description }) : null,
        (card.actions || [])
          .filter((a) => a.type === "link" && /^https?:\/\//.test(a.uri || ""))
          .map((a) => h("a", { class: "cw-card-link", href: a.uri, target: "_blank", rel: "noopener noreferrer", text: a.text })),
      ),
    ),
  );
}

// -- the console's view ---------------------------------------------------------------------

// What the agent sees under an interactive message: what was offered and the answer.
export function consoleSummary(msg) {
  if (!isInteractive(msg)) return null;
  const offered = {
    input_email: "Asks for the visitor's email",
    input_select: `Options: ${items(msg).map((i) => i.title).join(" · ")}`,
    form: `Form: ${items(msg).map((f) => f.label || f.name).join(" · ")}`,
    input_csat: "CSAT survey",
    cards: `Cards: ${items(msg).map((c) => c.title).join(" · ")}`,
  }[msg.content_type];
  const done = answerText(msg);
  return h(
    "div",
    { class: "interactive" },
    h("div", { class: "offered", text: offered }),
    msg.content_type === "cards"
      ? null
      : h("div", { class: `answer${done ? " done" : ""}`, text: done ? `Answer: ${done}` : "Not answered yet" }),
  );
}
