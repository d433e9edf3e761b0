// Message text with its links made clickable, for the widget and the console alike.
//
// Message text comes from strangers, so it is never parsed as markup: the result is text
// nodes and <a> elements built one by one. Only http:, https: and mailto: become links (a
// "javascript:" or "data:" URL stays plain text, whatever its case or spacing), every link
// opens in a new tab without giving that tab a handle on ours (noopener) or our address
// (noreferrer). Line breaks stay in the text nodes; the bubble's `white-space: pre-wrap`
// shows them.

// A URL runs to the next space or angle bracket; what it ends with that is punctuation of
// the sentence around it ("see https://x.test/a." or "(https://x.test)") is left out.
const CANDIDATE = /\b(?:https?:\/\/|mailto:|www\.)[^\s<>"]+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b/gi;
const TRAILING = /[.,;:!?'")\]}]+$/;
const MAX_TEXT = 20000; // longer texts are shown as they are: linkifying them is not worth it

// The link target for what the text says, or null when it must stay text.
export function safeHref(raw) {
  let candidate = raw;
  if (/^www\./i.test(candidate)) candidate = `https://${candidate}`;
  else if (!/^(https?|mailto):/i.test(candidate)) candidate = `mailto:${candidate}`;
  let url;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if (!["http:", "https:", "mailto:"].includes(url.protocol)) return null;
  if (url.protocol === "mailto:" && !/^[^@\s]+@[^@\s]+$/.test(decodeURIComponent(url.pathname))) return null;
  return url.href;
}

// Drops closing brackets the URL does not open (Wikipedia's "Foo_(bar)" keeps its own).
function trimEnd(text) {
  let out = text.replace(TRAILING, "");
  const tail = text.slice(out.length);
  for (const ch of tail) {
    const open = { ")": "(", "]": "[", "}": "{" }[ch];
    if (!open) break;
    const opens = out.split(open).length - 1;
    const closes = out.split(ch).length - 1;
    if (opens > closes) out += ch;
    else break;
  }
  return out;
}

// Text nodes and links for `text`, in order.
export function linkify(text) {
  const value = String(text ?? "");
  if (!value || value.length > MAX_TEXT) return [document.createTextNode(value)];
  const nodes = [];
  let last = 0;
  for (const match of value.matchAll(CANDIDATE)) {
    const shown = trimEnd(match[0]);
    const href = shown && safeHref(shown);
    if (!href) continue;
    if (match.index > last) nodes.push(document.createTextNode(value.slice(last, match.index)));
    nodes.push(link(href, shown));
    last = match.index + shown.length;
  }
  if (last < value.length) nodes.push(document.createTextNode(value.slice(last)));
  return nodes;
}

function link(href, text) {
  const a = document.createElement("a");
  a.className = "msg-link";
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.textContent = text;
  return a;
}
