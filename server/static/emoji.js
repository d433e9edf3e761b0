// A small built-in emoji picker for a composer (the widget's when its inbox's
// enabled_features has "emoji_picker", and the console's): a button that opens a grid, and
// a click (or Enter/Space) on an emoji inserts it where the caret is. No dependency and no
// image: the emoji are text, so the message carries them as typed characters.

import { h, icon } from "./dom.js";

export const EMOJI = [
  ["😀", "grinning face"],
  ["😂", "face with tears of joy"],
  ["😊", "smiling face"],
  ["😍", "heart eyes"],
  ["😉", "winking face"],
  ["😎", "cool face"],
  ["🤔", "thinking face"],
  ["😅", "sweat smile"],
  ["😢", "crying face"],
  ["😮", "surprised face"],
  ["🙏", "folded hands"],
  ["👍", "thumbs up"],
  ["👎", "thumbs down"],
  ["👋", "waving hand"],
  ["👏", "clapping hands"],
  ["🎉", "party popper"],
  ["❤️", "red heart"],
  ["🔥", "fire"],
  ["✅", "check mark"],
  ["☕", "hot beverage"],
  ["📦", "package"],
  ["🚚", "delivery truck"],
  ["⭐", "star"],
  ["💡", "light bulb"],
];

// Inserts `text` at the caret of `input` (a textarea), as if typed: listeners of "input"
// (the typing indicator) hear it.
export function insertAtCaret(input, text) {
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  input.setRangeText(text, start, end, "end");
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.focus();
}

// {button, panel}: place both in the composer; `prefix` is the class prefix of the page
// ("cw-" in the widget, "" in the console).
export function emojiPicker(input, { prefix = "" } = {}) {
  const panel = h("div", {
    class: `${prefix}emoji-panel`,
    role: "group",
    "aria-label": "Emoji",
    hidden: true,
  });
  const button = h(
    "button",
    {
      type: "button",
      class: `${prefix}emoji-toggle`,
      title: "Insert an emoji",
      "aria-label": "Insert an emoji",
      "aria-expanded": "false",
      "aria-haspopup": "true",
    },
    icon("smile", 18),
  );
  const setOpen = (open) => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) panel.querySelector("button")?.focus();
  };
  button.addEventListener("click", () => setOpen(panel.hidden));
  for (const [emoji, name] of EMOJI) {
    panel.append(
      h("button", {
        type: "button",
        class: `${prefix}emoji`,
        title: name,
        "aria-label": name,
        text: emoji,
        onclick: () => {
          insertAtCaret(input, emoji);
          setOpen(false);
        },
      }),
    );
  }
  // Escape closes the grid only (not the widget around it) and gives the focus back.
  panel.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation();
    setOpen(false);
    button.focus();
  });
  return { button, panel, close: () => setOpen(false) };
}
