// A private conversation: both sides, oldest at the top, older messages loaded on scroll,
// and a reply box. Opening it marks it read.

import { api } from "./api.js";
import { pendingBubble, replyBox } from "./compose.js";
import { avatar, h, replace, time } from "./dom.js";

export class ConversationView {
  constructor(root, { accountId, accountName, conversationId, replies, onRead, onBack }) {
    Object.assign(this, { root, accountId, accountName, conversationId, replies, onRead, onBack });
    this.conversation = null;
    this.messages = []; // oldest first
    this.cursor = "";
    this.hasMore = false;
    this.loading = false;
    this.list = h("ol", { class: "thread", "aria-label": "Messages", "aria-live": "polite" });
    this.top = h("li", { class: "sentinel", "aria-hidden": "true" });
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadOlder();
    });
  }

  async open() {
    replace(this.root, h("p", { class: "loading" }, "Loading the conversation…"));
    const [found, page] = await Promise.all([
      api.conversation(this.accountId, this.conversationId),
      api.messages(this.accountId, this.conversationId, ""),
    ]);
    this.conversation = found.conversation;
    this.take(page);
    this.render();
    this.list.scrollTop = this.list.scrollHeight;
    await this.markRead();
  }

  async markRead() {
    if (!this.conversation || !this.conversation.unread_count) return;
    await api.markConversationRead(this.accountId, this.conversationId);
    this.conversation.unread_count = 0;
    this.onRead(this.accountId);
  }

  take(page) {
    const older = (page.messages || []).slice().reverse();
    const known = new Set(this.messages.map((m) => m.message_id));
    this.messages = [...older.filter((m) => !known.has(m.message_id)), ...this.messages];
    this.cursor = page.cursor;
    this.hasMore = page.has_more;
  }

  async loadOlder() {
    if (!this.hasMore || this.loading) return;
    this.loading = true;
    try {
      const before = this.list.scrollHeight - this.list.scrollTop;
      this.take(await api.messages(this.accountId, this.conversationId, this.cursor));
      this.renderThread();
      this.list.scrollTop = this.list.scrollHeight - before; // stay where the reader was
    } finally {
      this.loading = false;
    }
  }

  render() {
    const other = this.conversation.participant || {};
    const back = h("button", { type: "button", class: "back", onclick: () => this.onBack() }, "← Back");
    const header = h(
      "header",
      { class: "detail-header" },
      back,
      avatar(other.user_name),
      h("div", { class: "grow" }, h("h2", { id: "detail-title" }, other.user_name || "Conversation"), h("p", { class: "muted" }, `Private messages with ${this.accountName}`)),
      this.toggle("pin", "is_pinned", "Pinned", "Pin", "Pinned conversations come first in the account's list"),
      this.toggle("mute", "is_muted", "Muted", "Mute", "A muted conversation's messages are not counted as unread"),
    );
    const box = replyBox({
      label: `Reply to ${other.user_name || "the customer"}`,
      placeholder: "Write a reply… (Enter sends, Shift+Enter for a new line)",
      onSend: (text) => this.replies.send(this.accountId, { conversationId: this.conversationId }, text),
    });
    replace(this.root, header, this.list, box);
    this.root.setAttribute("aria-labelledby", "detail-title");
    this.renderThread();
  }

  // A pin or mute switch of the conversation (aria-pressed), which the master keeps.
  toggle(kind, field, onLabel, offLabel, title) {
    const on = Boolean(this.conversation[field]);
    return h(
      "button",
      {
        type: "button",
        class: `toggle ${kind}`,
        "aria-pressed": on ? "true" : "false",
        title,
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          try {
            const call = kind === "pin" ? api.pinConversation : api.muteConversation;
            const found = await call(this.accountId, this.conversationId, !on);
            this.conversation = { ...this.conversation, ...found.conversation };
            button.replaceWith(this.toggle(kind, field, onLabel, offLabel, title));
          } catch (error) {
            button.disabled = false;
            button.title = `${title} (${error.message || error})`;
          }
        },
      },
      on ? onLabel : offLabel,
    );
  }

  renderThread() {
    this.observer.disconnect();
    // A sent reply whose platform copy is in the thread is shown once: as the platform's.
    const copied = (r) =>
      r.state === "sent" && this.messages.some((m) => m.message_id === r.createdId || (m.direction === "outbound" && m.content === r.text));
    const mine = this.replies.for((r) => r.target.conversationId === this.conversationId && r.accountId === this.accountId && !copied(r));
    replace(
      this.list,
      this.hasMore ? this.top : null,
      this.messages.map((m) => bubble(m)),
      mine.map((record) => pendingBubble(record, (r) => this.replies.retry(r))),
    );
    if (this.hasMore) this.observer.observe(this.top);
  }

  onNewMessage(message) {
    if (message.conversation_id !== this.conversationId || this.messages.some((m) => m.message_id === message.message_id)) return;
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.messages.push(message);
    // The platform's copy of a reply sent from here replaces its pending bubble.
    for (const record of this.replies.for((r) => r.target.conversationId === this.conversationId && r.state === "sent")) {
      if (record.createdId === message.message_id || (message.direction === "outbound" && message.content === record.text)) {
        this.replies.forget(record);
      }
    }
    this.renderThread();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
    if (message.direction === "inbound" && document.visibilityState === "visible") {
      this.conversation.unread_count = 1;
      this.markRead();
    }
  }

  onReplyChange(record) {
    if (record.target.conversationId === this.conversationId) {
      this.renderThread();
      this.list.scrollTop = this.list.scrollHeight;
    }
  }

  focusReply() {
    const input = this.root.querySelector("textarea");
    if (input) input.focus();
  }

  destroy() {
    this.observer.disconnect();
  }
}

function bubble(message) {
  const inbound = message.direction === "inbound";
  const who = inbound ? message.sender : message.receiver;
  return h(
    "li",
    { class: `bubble ${inbound ? "inbound" : "outbound"}`, dataset: { messageId: message.message_id } },
    h("span", { class: "visually-hidden" }, inbound ? `${(message.sender || {}).user_name || "Customer"} wrote:` : "You wrote:"),
    message.is_recalled ? h("p", { class: "text muted" }, "(recalled)") : h("p", { class: "text" }, message.content || `(${message.msg_type})`),
    h("div", { class: "meta" }, time(message.create_time), inbound || !who ? null : h("span", { class: "visually-hidden" }, ` to ${who.user_name}`)),
  );
}
