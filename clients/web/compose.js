// The reply box and how a sent reply shows its state.

import { h, time } from "./dom.js";
import { reasonText } from "./replies.js";

// `draft` and `onDraft` keep what was typed when the box is drawn again (a live update
// re-renders the comments around it).
export function replyBox({ label, placeholder, onSend, draft = "", onDraft = () => {} }) {
  const id = `reply-${Math.random().toString(36).slice(2)}`;
  const input = h("textarea", { id, rows: "2", placeholder, "aria-label": label, maxlength: "2000" });
  input.value = draft;
  input.addEventListener("input", () => onDraft(input.value));
  const button = h("button", { type: "submit", class: "primary" }, "Send");
  const form = h(
    "form",
    {
      class: "reply-box",
      onsubmit: (event) => {
        event.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        input.value = "";
        onDraft("");
        onSend(text);
      },
    },
    h("label", { for: id, class: "visually-hidden" }, label),
    input,
    button,
  );
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  return form;
}

const STATES = { pending: "Sending…", sent: "Sent", failed: "Failed" };

export function replyStatus(record, onRetry) {
  const failed = record.state === "failed";
  return h(
    "div",
    { class: `reply-state ${record.state}`, role: failed ? "alert" : "status" },
    h("span", { class: "state-label" }, STATES[record.state] || record.state),
    // Who sent it: the agent the API key names.
    record.agent ? h("span", { class: "agent" }, ` · ${record.agent}`) : null,
    failed && reasonText(record) ? h("span", { class: "reason" }, ` — ${reasonText(record)}`) : null,
    failed ? h("button", { type: "button", class: "link", onclick: () => onRetry(record) }, "Retry") : null,
  );
}

// A reply of this console shown where the platform's copy will appear.
export function pendingBubble(record, onRetry) {
  return h(
    "li",
    { class: `bubble outbound mine ${record.state}`, dataset: { requestId: record.requestId } },
    h("p", { class: "text" }, record.text),
    h("div", { class: "meta" }, time(record.at)),
    replyStatus(record, onRetry),
  );
}
