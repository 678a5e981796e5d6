// The reply box and how a sent reply shows its state.

import { h, time } from "./dom.js";
import { reasonText } from "./replies.js";

// `draft` and `onDraft` keep what was typed when the box is drawn again (a live update
// re-renders the comments around it). With `onNote`, the box has a second mode that writes
// an internal note instead (never sent to the platform). `onTyping(true|false)` is told
// when the person types and when they leave the box. `onSend` may answer false to keep
// the text in the box (a send that asks first).
export function replyBox({ label, placeholder, onSend, draft = "", onDraft = () => {}, onNote = null, onTyping = () => {} }) {
  const id = `reply-${Math.random().toString(36).slice(2)}`;
  const input = h("textarea", { id, rows: "2", placeholder, "aria-label": label, maxlength: "2000" });
  input.value = draft;
  let mode = "reply";
  input.addEventListener("input", () => {
    onDraft(input.value);
    if (input.value.trim()) onTyping(true);
  });
  input.addEventListener("blur", () => onTyping(false));
  const button = h("button", { type: "submit", class: "primary" }, "Send");
  const modes = onNote
    ? h(
        "div",
        { class: "modes", role: "group", "aria-label": "Write" },
        ["reply", "note"].map((kind) =>
          h(
            "button",
            {
              type: "button",
              class: `mode mode-${kind}`,
              "aria-pressed": kind === "reply" ? "true" : "false",
              onclick: (event) => {
                mode = kind;
                for (const other of event.currentTarget.parentNode.children) other.setAttribute("aria-pressed", other === event.currentTarget ? "true" : "false");
                form.classList.toggle("noting", kind === "note");
                button.textContent = kind === "note" ? "Add note" : "Send";
                input.setAttribute("aria-label", kind === "note" ? "Internal note (only the team sees it)" : label);
                input.placeholder = kind === "note" ? "An internal note: only the team sees it, the customer never does." : placeholder;
                input.focus();
              },
            },
            kind === "reply" ? "Reply" : "Note",
          ),
        ),
      )
    : null;
  const form = h(
    "form",
    {
      class: "reply-box",
      onsubmit: async (event) => {
        event.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        input.value = "";
        onDraft("");
        onTyping(false);
        const kept = mode === "note" ? await onNote(text) : await onSend(text);
        if (kept === false) {
          input.value = text;
          onDraft(text);
        }
      },
    },
    modes,
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
