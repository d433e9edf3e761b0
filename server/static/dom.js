// Small helpers shared by the widget and the console: building DOM without innerHTML (so
// message text can never become markup), JSON requests, and message labels.

import { linkify } from "./linkify.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Puts `nodes` into `parent` in this order, keeping each child that is unchanged (same
// data-id, equal content) where it is. A message log re-rendered this way only adds what is
// new, so its aria-live region announces the new message, not the whole conversation again.
export function patchChildren(parent, nodes) {
  const old = new Map();
  for (const child of parent.children) if (child.dataset.id) old.set(child.dataset.id, child);
  let cursor = parent.firstChild;
  for (const fresh of nodes) {
    const prev = fresh.dataset && fresh.dataset.id ? old.get(fresh.dataset.id) : null;
    const node = prev && prev.isEqualNode(fresh) ? prev : fresh;
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

export class HttpError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// fetch + JSON both ways (a FormData body goes as multipart: files); throws HttpError on a
// non-2xx answer.
export async function request(method, url, { body, headers = {}, keepalive = false } = {}) {
  const init = { method, keepalive, headers: { Accept: "application/json", ...headers } };
  if (body instanceof FormData) {
    init.body = body; // the browser sets the multipart Content-Type and its boundary
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (!response.ok) throw new HttpError(response.status, data);
  return data;
}

export const MESSAGE = { incoming: 0, outgoing: 1, activity: 2, template: 3 };

export function isVoice(msg) {
  return Boolean(msg.content_attributes && msg.content_attributes.voice_transcript);
}

// "Visitor (voice)" / "AI agent (voice)": who spoke a voice transcript turn.
export function voiceLabel(msg) {
  const role = msg.content_attributes && msg.content_attributes.role;
  return role === "ai" ? "AI agent · voice" : "Visitor · voice";
}

export function clockTime(epochSeconds) {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Inline SVG icons: the pages must not depend on an emoji font being installed.
const ICONS = {
  chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
  smile:
    "M12 2a10 10 0 1 1 0 20 10 10 0 0 1 0-20zm0 2a8 8 0 1 0 0 16 8 8 0 0 0 0-16zM8.5 8a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm7 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zM7 13.5h10a5 5 0 0 1-10 0z",
  mic: "M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zm-7 9h2a5 5 0 0 0 10 0h2a7 7 0 0 1-6 6.9V21h-2v-2.1A7 7 0 0 1 5 12z",
};

export function icon(name, size = 14) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", size);
  svg.setAttribute("height", size);
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("icon", `icon-${name}`);
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

// A chat bubble's inner parts: a voice mark and label for transcript turns, the text, then
// the message's files (images inline, other files as links).
export function bubbleBody(msg) {
  const parts = [];
  if (isVoice(msg)) {
    parts.push(h("span", { class: "voice-tag", title: "Voice transcript" }, icon("mic", 12), " ", voiceLabel(msg)));
  }
  const files = msg.attachments || [];
  if (msg.content || !files.length) parts.push(h("span", { class: "text" }, linkify(msg.content ?? "")));
  for (const file of files) parts.push(attachmentView(file));
  return parts;
}

// The name a file was sent with: the signed URL's `name` (our directory engine), else the
// last segment of its path.
export function attachmentName(file) {
  try {
    const url = new URL(file.data_url, location.href);
    const disposition = url.searchParams.get("response-content-disposition") || "";
    const fromS3 = /filename="([^"]*)"/.exec(disposition);
    return url.searchParams.get("name") || (fromS3 && fromS3[1]) || url.pathname.split("/").pop();
  } catch {
    return "file";
  }
}

// One attachment: an image as its thumbnail linking to the file, anything else as a link.
// Only http(s) and same-origin URLs become links (never javascript: or data:).
export function attachmentView(file) {
  const safe = (value) => {
    try {
      const url = new URL(value, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch {
      return null;
    }
  };
  const href = safe(file.data_url);
  const name = attachmentName(file);
  if (!href) return h("span", { class: "attachment attachment-missing", text: name });
  if (file.file_type === "image") {
    return h(
      "a",
      { class: "attachment attachment-image", href, target: "_blank", rel: "noopener noreferrer" },
      h("img", { src: safe(file.thumb_url) || href, alt: name, loading: "lazy" }),
    );
  }
  return h("a", { class: "attachment attachment-file", href, target: "_blank", rel: "noopener noreferrer", text: name });
}

// Sort messages by id (ids only grow within a conversation, in commit order).
export function byId(a, b) {
  return (typeof a.id === "number" ? a.id : Infinity) - (typeof b.id === "number" ? b.id : Infinity);
}

// How a conversation's messages are shown: in id order (commit order), except the voice
// turns the server took from ElevenLabs' transcript after a call (they carry
// content_attributes.turn and come later by id than the turns said after them): each goes
// before the first message dated after it. The server's pages follow the same rule.
export function inDisplayOrder(messages) {
  const sorted = [...messages].sort(byId); // messages not sent yet (no id) last
  const placed = sorted.filter(isPlacedTurn).sort((a, b) => a.created_at - b.created_at || byId(a, b));
  if (!placed.length) return sorted;
  const shown = [];
  let next = 0;
  for (const msg of sorted) {
    if (isPlacedTurn(msg)) continue;
    const sent = typeof msg.id === "number";
    while (next < placed.length && (!sent || placed[next].created_at < msg.created_at)) {
      shown.push(placed[next++]);
    }
    shown.push(msg);
  }
  return shown.concat(placed.slice(next));
}

function isPlacedTurn(msg) {
  const attrs = msg.content_attributes || {};
  return typeof msg.id === "number" && attrs.voice_transcript === true && Number.isInteger(attrs.turn);
}
