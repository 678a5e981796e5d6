// The reply box and how a sent reply shows its state.

import { h, replace, time } from "./dom.js";
import { t } from "./i18n.js";
import { reasonText } from "./replies.js";

// `draft` and `onDraft` keep what was typed when the box is drawn again (a live update
// re-renders the comments around it). With `onNote`, the box has a second mode that writes
// an internal note instead (never sent to the platform). `onTyping(true|false)` is told
// when the person types and when they leave the box. `onSend` may answer false to keep
// the text in the box (a send that asks first).
//
// `templates` ({list(), render(template)}) lets "/" at the start of the box pick one of the
// team's quick replies: typed on, it narrows the choice; ↑/↓ move, Enter or Tab takes it
// (its placeholders filled for what is answered), Esc closes.
export function replyBox({ label, placeholder, onSend, draft = "", onDraft = () => {}, onNote = null, onTyping = () => {}, templates = null }) {
  const id = `reply-${Math.random().toString(36).slice(2)}`;
  const input = h("textarea", { id, rows: "2", placeholder, "aria-label": label, maxlength: "2000" });
  input.value = draft;
  let mode = "reply";
  const picker = templates ? new TemplatePicker(input, templates, (text) => onDraft(text)) : null;
  input.addEventListener("input", () => {
    onDraft(input.value);
    if (input.value.trim()) onTyping(true);
    if (picker) picker.update();
  });
  input.addEventListener("blur", () => onTyping(false));
  const button = h("button", { type: "submit", class: "primary" }, t("reply.send"));
  const modes = onNote
    ? h(
        "div",
        { class: "modes", role: "group", "aria-label": t("reply.modes") },
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
                button.textContent = kind === "note" ? t("note.add") : t("reply.send");
                input.setAttribute("aria-label", kind === "note" ? t("note.label") : label);
                input.placeholder = kind === "note" ? t("note.placeholder") : placeholder;
                input.focus();
              },
            },
            kind === "reply" ? t("reply.mode") : t("note.mode"),
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
    picker ? picker.node : null,
    h("label", { for: id, class: "visually-hidden" }, label),
    input,
    button,
  );
  input.addEventListener("keydown", (event) => {
    if (picker && picker.onKey(event)) return;
    // Enter sends, Shift+Enter starts a new line.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  return form;
}

class TemplatePicker {
  constructor(input, templates, onFill) {
    Object.assign(this, { input, templates, onFill });
    this.choices = [];
    this.active = 0;
    this.node = h("ul", { class: "template-picker", role: "listbox", "aria-label": t("templates.title"), hidden: true });
    input.setAttribute("aria-autocomplete", "list");
  }

  query() {
    const value = this.input.value;
    return value.startsWith("/") && !value.includes("\n") ? value.slice(1).trim().toLowerCase() : null;
  }

  update() {
    const query = this.query();
    if (query === null) return this.close();
    this.choices = this.templates
      .list()
      .filter((t) => !query || t.name.toLowerCase().includes(query) || t.text.toLowerCase().includes(query))
      .slice(0, 8);
    this.active = Math.min(this.active, Math.max(0, this.choices.length - 1));
    this.render();
  }

  render() {
    if (!this.choices.length) {
      replace(this.node, h("li", { class: "muted" }, t("templates.none_match")));
    } else {
      replace(
        this.node,
        this.choices.map((t, index) =>
          h(
            "li",
            {
              role: "option",
              class: "template-choice",
              "aria-selected": index === this.active ? "true" : "false",
              onmousedown: (event) => {
                event.preventDefault();
                this.pick(t);
              },
            },
            h("strong", {}, `/${t.name}`),
            h("span", { class: "muted" }, ` ${t.text}`),
          ),
        ),
      );
    }
    this.node.hidden = false;
  }

  close() {
    this.node.hidden = true;
    this.choices = [];
  }

  async pick(template) {
    this.close();
    try {
      this.input.value = await this.templates.render(template);
    } catch (error) {
      this.input.value = "";
      this.input.placeholder = t("templates.not_filled", { error: error.message || error });
    }
    this.onFill(this.input.value);
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  // True when the key was the picker's.
  onKey(event) {
    if (this.node.hidden) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.choices.length) % Math.max(1, this.choices.length);
      this.render();
      return true;
    }
    if ((event.key === "Enter" || event.key === "Tab") && this.choices.length && !event.isComposing) {
      event.preventDefault();
      this.pick(this.choices[this.active]);
      return true;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
      return true;
    }
    return false;
  }
}


export function replyStatus(record, onRetry) {
  const failed = record.state === "failed";
  return h(
    "div",
    { class: `reply-state ${record.state}`, role: failed ? "alert" : "status" },
    h("span", { class: "state-label" }, ["pending", "sent", "failed"].includes(record.state) ? t(`reply.state.${record.state}`) : record.state),
    // Who sent it: the agent the API key names.
    record.agent ? h("span", { class: "agent" }, ` · ${record.agent}`) : null,
    failed && reasonText(record) ? h("span", { class: "reason" }, ` — ${reasonText(record)}`) : null,
    failed ? h("button", { type: "button", class: "link", onclick: () => onRetry(record) }, t("reply.retry")) : null,
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
