// The console's attention signals for new visitor messages: the unread count in the tab
// title, a short sound, and a desktop notification.
//
// - The title count is the sum of the list's unread counts, so it agrees with the badges.
// - Sound and notification are for a visitor's message the agent cannot be looking at: in
//   another conversation, or while the tab is hidden.
// - Desktop notifications only after the agent asked for them (the browser's permission
//   prompt must come from a click, and an agent who never clicked is never prompted).
// - "Mute" silences both and is remembered in localStorage; the title count stays.
// The sound is two short sine tones made with WebAudio: no audio file to serve.

import { h } from "./dom.js";

const MUTED_KEY = "agent-console:muted";
const ENABLED_KEY = "agent-console:notifications";
const MAX_BODY = 120;

export class Notifier {
  constructor({ storage = localStorage, onOpen = () => {} } = {}) {
    this.storage = storage;
    this.onOpen = onOpen; // called with a conversation id when a notification is clicked
    this.baseTitle = document.title;
    this.audio = null;
    this.muteButton = h("button", {
      type: "button",
      class: "notify-mute",
      onclick: () => this.setMuted(!this.muted),
    });
    this.enableButton = h("button", {
      type: "button",
      class: "notify-enable",
      onclick: () => this.enable(),
    });
    this.renderControls();
    document.addEventListener("pointerdown", () => this.unlockAudio(), { once: true });
  }

  get muted() {
    return this.storage.getItem(MUTED_KEY) === "1";
  }

  get supported() {
    return typeof Notification !== "undefined";
  }

  // The agent clicked "Enable notifications": the browser's permission prompt.
  get enabled() {
    return this.supported && this.storage.getItem(ENABLED_KEY) === "1" && Notification.permission === "granted";
  }

  controls() {
    return h("div", { class: "notify-controls", role: "group", "aria-label": "Alerts" }, this.enableButton, this.muteButton);
  }

  renderControls() {
    const muted = this.muted;
    this.muteButton.textContent = muted ? "Unmute" : "Mute";
    this.muteButton.setAttribute("aria-pressed", String(muted));
    this.muteButton.title = muted ? "Sound and notifications are off" : "Turn sound and notifications off";
    const denied = this.supported && Notification.permission === "denied";
    this.enableButton.hidden = !this.supported || this.enabled;
    this.enableButton.disabled = denied;
    this.enableButton.textContent = denied ? "Notifications blocked" : "Enable notifications";
  }

  async enable() {
    this.unlockAudio();
    if (!this.supported) return;
    const answer = await Notification.requestPermission();
    if (answer === "granted") this.storage.setItem(ENABLED_KEY, "1");
    this.renderControls();
  }

  setMuted(muted) {
    if (muted) this.storage.setItem(MUTED_KEY, "1");
    else this.storage.removeItem(MUTED_KEY);
    this.unlockAudio();
    this.renderControls();
  }

  setUnread(count) {
    document.title = count > 0 ? `(${count > 99 ? "99+" : count}) ${this.baseTitle}` : this.baseTitle;
  }

  // A visitor's new message arrived live; `onScreen`: the agent has its conversation open.
  incoming(conversationId, { title, body, onScreen }) {
    if (this.muted || (onScreen && document.visibilityState === "visible")) return;
    this.beep();
    if (!this.enabled) return;
    const text = body.length > MAX_BODY ? `${body.slice(0, MAX_BODY - 1)}…` : body;
    const note = new Notification(title, { body: text, tag: `conversation-${conversationId}` });
    note.onclick = () => {
      window.focus();
      this.onOpen(conversationId);
      note.close();
    };
  }

  // Browsers start an AudioContext suspended until the page had a click: make it on one.
  unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    if (!this.audio) this.audio = new Context();
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
    return this.audio;
  }

  beep() {
    const ctx = this.unlockAudio();
    if (!ctx) return;
    const now = ctx.currentTime;
    [880, 1320].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      const start = now + i * 0.12;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.15, start + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.1);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + 0.11);
    });
  }
}
