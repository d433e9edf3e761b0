// Boots the widget inside GET /widget, the iframe page Chatwoot's SDK opens. That page sets
// the globals Chatwoot's widget reads; we use the same ones. A `cw_conversation` in the URL
// means the host page chose the visitor, so its token wins over one kept in localStorage.
import { mountWidget } from "./widget.js";

const channel = window.chatwootWebChannel || {};
const params = new URLSearchParams(location.search);
mountWidget(document.getElementById("chat-widget"), {
  websiteToken: channel.websiteToken || params.get("website_token"),
  authToken: window.authToken || null,
  preferGivenToken: params.has("cw_conversation"),
  embedded: true,
}).then((widget) => {
  window.chatWidget = widget;
});
