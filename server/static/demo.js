// The demo host page (/): mounts our widget in the corner, for the inbox whose website
// token the server wrote into the page.
import { mountWidget } from "./widget.js";

const root = document.getElementById("chat-widget");
mountWidget(root, { websiteToken: root.dataset.websiteToken }).then((widget) => {
  window.chatWidget = widget; // handy in the devtools console
});
