// A private conversation: both sides, oldest at the top, older messages loaded on scroll,
// the team's internal notes among them, who owns it and where it stands, and a reply box.
// Opening it marks it read.

import { api } from "./api.js";
import { pendingBubble, replyBox } from "./compose.js";
import { avatar, byInstant, h, replace, time } from "./dom.js";
import { t } from "./i18n.js";
import { Presence } from "./presence.js";
import { copiedIn } from "./replies.js";

const SNOOZES = [
  ["hour", () => new Date(Date.now() + 3600_000)],
  ["tomorrow", () => atNine(1)],
  ["week", () => atNine(7)],
];

function atNine(days) {
  const when = new Date();
  when.setDate(when.getDate() + days);
  when.setHours(9, 0, 0, 0);
  return when;
}

export class ConversationView {
  constructor(root, { accountId, accountName, conversationId, replies, onRead, onBack, me = {}, templates = null }) {
    Object.assign(this, { root, accountId, accountName, conversationId, replies, onRead, onBack, me, templates });
    this.conversation = null;
    this.notes = [];
    this.presence = new Presence(() => this.renderPresence());
    this.presenceLine = h("p", { class: "presence", role: "status", "aria-live": "polite" });
    this.handling = h("div", { class: "handling", role: "group", "aria-label": t("handling.label") });
    this.guard = h("div", { class: "guard" });
    this.typingSaid = 0;
    this.messages = []; // oldest first
    this.cursor = "";
    this.hasMore = false;
    this.loading = false;
    this.list = h("ol", { class: "thread", "aria-label": t("conversation.messages"), "aria-live": "polite" });
    this.top = h("li", { class: "sentinel", "aria-hidden": "true" });
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.loadOlder();
    });
  }

  async open() {
    replace(this.root, h("p", { class: "loading" }, t("conversation.loading")));
    const [found, page, notes] = await Promise.all([
      api.conversation(this.accountId, this.conversationId),
      api.messages(this.accountId, this.conversationId, ""),
      api.notes(this.accountId, this.thread()),
    ]);
    this.conversation = found.conversation;
    this.notes = notes.notes || [];
    this.take(page);
    this.render();
    this.list.scrollTop = this.list.scrollHeight;
    await this.markRead();
  }

  async markRead() {
    if (!this.conversation || (!this.conversation.unread_count && !this.conversation.is_marked_unread)) return;
    const read = await api.markConversationRead(this.accountId, this.conversationId);
    this.conversation = { ...this.conversation, ...read.conversation, unread_count: 0 };
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
    const back = h("button", { type: "button", class: "back", onclick: () => this.onBack() }, t("back"));
    const header = h("header", { class: "detail-header" }, back, ...this.headerParts());
    const box = replyBox({
      label: t("reply.to", { who: this.customerName() }),
      // On a phone its keys are not there to tell of, nor the width to tell it in.
      placeholder: window.matchMedia("(max-width: 480px), (pointer: coarse)").matches ? t("reply.placeholder.short") : t("reply.placeholder"),
      onSend: (text) => this.send(text),
      onNote: (text) => this.addNote(text),
      onTyping: (typing) => this.sayTyping(typing),
      templates: this.templates ? this.templates.source(this.accountId, this.thread()) : null,
    });
    replace(this.root, header, this.handling, this.list, this.presenceLine, this.guard, box);
    this.root.setAttribute("aria-labelledby", "detail-title");
    this.renderHandling();
    this.renderThread();
  }

  customerName() {
    return (this.conversation.participant || {}).user_name || t("reply.the_customer");
  }

  headerParts() {
    const other = this.conversation.participant || {};
    return [
      avatar(other.user_name),
      h(
        "div",
        { class: "grow" },
        h("h2", { id: "detail-title" }, other.user_name || t("conversation.untitled")),
        h("p", { class: "muted" }, t("conversation.with", { account: this.accountName })),
      ),
      this.toggle("pin", "is_pinned", t("pin.on"), t("pin.off"), t("pin.title")),
      this.toggle("mute", "is_muted", t("mute.on"), t("mute.off"), t("mute.title")),
    ];
  }

  // ------------------------------------------------------------ the team's handling

  // The thread the handling calls name (api.js).
  thread() {
    return { conversationId: this.conversationId };
  }

  // The thread's state in an answer of a handling call.
  fromAnswer(answer) {
    return answer && answer.conversation;
  }

  owner() {
    return this.conversation.assignee || "";
  }

  renderHandling(problem = "") {
    const c = this.conversation;
    const mine = this.me.agent && this.owner() === this.me.agent;
    const state = c.thread_state || "open";
    const act = (label, cls, call, title = "") =>
      h("button", { type: "button", class: `chip ${cls}`, title, onclick: (event) => this.act(event.currentTarget, call) }, label);
    const assign = (this.me.agents || []).length
      ? h(
          "select",
          {
            class: "assign",
            "aria-label": t("handling.assign"),
            onchange: (event) => {
              const to = event.currentTarget.value;
              if (to !== "-") this.act(event.currentTarget, () => api.assign(this.accountId, this.thread(), to));
            },
          },
          h("option", { value: "-" }, t("handling.assign_to")),
          this.me.agents.map((agent) => h("option", { value: agent, selected: agent === this.owner() }, agent)),
          this.owner() ? h("option", { value: "" }, t("handling.nobody")) : null,
        )
      : null;
    const snooze = h(
      "select",
      {
        class: "snooze",
        "aria-label": t("handling.snooze"),
        onchange: (event) => {
          const choice = SNOOZES.find(([key]) => key === event.currentTarget.value);
          if (choice) this.act(event.currentTarget, () => api.setThreadState(this.accountId, this.thread(), "snoozed", choice[1]().toISOString()));
        },
      },
      h("option", { value: "-" }, t("handling.snooze_for")),
      SNOOZES.map(([key]) => h("option", { value: key }, t(`snooze.${key}`))),
    );
    replace(
      this.handling,
      h(
        "span",
        { class: `owner ${mine ? "mine" : this.owner() ? "theirs" : "nobody"}` },
        this.owner() ? (mine ? t("owner.yours") : t("owner.assigned_to", { agent: this.owner() })) : t("owner.nobody"),
      ),
      this.me.agent && !mine ? act(t("handling.claim"), "claim", () => api.claim(this.accountId, this.thread()), t("handling.claim.title")) : null,
      assign,
      h(
        "span",
        { class: `state ${state}` },
        state === "snoozed" ? [t("state.snoozed_until"), " ", time(c.snoozed_until)] : t(`state.${state}`),
      ),
      state === "open"
        ? act(t("handling.done"), "done", () => api.setThreadState(this.accountId, this.thread(), "done"))
        : act(t("handling.reopen"), "reopen", () => api.setThreadState(this.accountId, this.thread(), "open")),
      state === "open" ? snooze : null,
      act(t("handling.mark_unread"), "unread", async () => {
        await api.markUnread(this.accountId, this.thread());
        this.onBack();
      }),
      problem ? h("span", { class: "problem", role: "alert" }, problem) : null,
    );
  }

  async act(control, call) {
    control.disabled = true;
    try {
      const taken = this.fromAnswer(await call());
      if (taken) this.takeConversation(taken);
      else if (this.conversation) this.renderHandling();
    } catch (error) {
      this.renderHandling(error.message || String(error));
    }
  }

  takeConversation(conversation) {
    this.conversation = { ...this.conversation, ...conversation };
    if (!conversation.assignee) delete this.conversation.assignee;
    if (!conversation.snoozed_until) delete this.conversation.snoozed_until;
    if (!conversation.is_marked_unread) delete this.conversation.is_marked_unread;
    if (this.root.isConnected) this.renderHandling();
  }

  // Sending over another agent's claim asks first.
  async send(text) {
    const owner = this.owner();
    if (owner && owner !== this.me.agent) {
      replace(
        this.guard,
        h(
          "div",
          { class: "confirm", role: "alertdialog", "aria-label": t("guard.label") },
          h("span", {}, t("guard.question", { agent: owner })),
          h("button", { type: "button", class: "primary", onclick: () => { replace(this.guard); this.reallySend(text); this.clearBox(); } }, t("guard.send")),
          h("button", { type: "button", class: "link", onclick: () => replace(this.guard) }, t("cancel")),
        ),
      );
      return false;
    }
    this.reallySend(text);
    return true;
  }

  reallySend(text) {
    this.replies.send(this.accountId, { conversationId: this.conversationId }, text);
  }

  clearBox() {
    const input = this.root.querySelector(".reply-box textarea");
    if (input) input.value = "";
  }

  async addNote(text) {
    try {
      const added = await api.addNote(this.accountId, this.thread(), text);
      if (!this.notes.some((n) => n.note_id === added.note.note_id)) this.notes.push(added.note);
      this.takeConversation(this.fromAnswer(added));
      this.renderThread();
      this.list.scrollTop = this.list.scrollHeight;
      return true;
    } catch (error) {
      this.renderHandling(t("note.failed", { error: error.message || error }));
      return false;
    }
  }

  // Others see that this agent is writing: said again every few seconds while typing.
  sayTyping(typing) {
    if (!this.me.agent) return;
    const now = Date.now();
    if (typing && now - this.typingSaid < 3000) return;
    if (!typing && !this.typingSaid) return;
    this.typingSaid = typing ? now : 0;
    api.presence(this.accountId, this.thread(), typing).catch(() => {});
  }

  onPresence(presence) {
    if (!this.isHere(presence) || presence.agent === this.me.agent) return;
    this.presence.take(presence);
  }

  // Whether a presence is of this thread.
  isHere(presence) {
    return presence.conversation_id === this.conversationId;
  }

  renderPresence() {
    const writing = this.presence.agents();
    this.presenceLine.textContent = writing.length ? t("presence.writing", { agents: writing.join(t("list.separator")), count: writing.length }) : "";
  }

  // The handling changed (here or on another console): take it, and the notes if they did.
  async onHandled(conversation) {
    if (conversation.conversation_id !== this.conversationId) return;
    const found = await api.conversation(this.accountId, this.conversationId);
    const notesChanged = (found.conversation.note_count || 0) !== this.notes.length;
    this.takeConversation(found.conversation);
    if (notesChanged) {
      this.notes = (await api.notes(this.accountId, this.thread())).notes || [];
      this.renderThread();
    }
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
    // A reply whose platform copy is in the thread (sent, or still pending) is shown once: as the platform's.
    const outbound = this.messages.filter((m) => m.direction === "outbound");
    const copied = (r) => copiedIn(r, outbound, (m) => m.message_id, (m) => m.create_time);
    const mine = this.replies.for((r) => r.target.conversationId === this.conversationId && r.accountId === this.accountId && !copied(r));
    // The notes sit among the messages by time; older than every message loaded, they wait.
    const oldest = this.hasMore && this.messages.length ? Date.parse(this.messages[0].create_time) : 0;
    const items = byInstant([
      ...this.messages.map((m) => ({ at: m.create_time, node: () => bubble(m) })),
      ...this.notes.filter((n) => !oldest || Date.parse(n.create_time) >= oldest).map((n) => ({ at: n.create_time, node: () => noteBubble(n) })),
    ]);
    replace(
      this.list,
      this.hasMore ? this.top : null,
      items.map((item) => item.node()),
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
    this.presence.stop();
    this.sayTyping(false);
  }
}

function bubble(message) {
  const inbound = message.direction === "inbound";
  const who = inbound ? message.sender : message.receiver;
  return h(
    "li",
    { class: `bubble ${inbound ? "inbound" : "outbound"}`, dataset: { messageId: message.message_id } },
    h("span", { class: "visually-hidden" }, inbound ? t("message.wrote", { who: (message.sender || {}).user_name || t("message.customer") }) : t("message.you_wrote")),
    message.is_recalled ? h("p", { class: "text muted" }, t("message.recalled")) : h("p", { class: "text" }, message.content || `(${message.msg_type})`),
    h("div", { class: "meta" }, time(message.create_time), inbound || !who ? null : h("span", { class: "visually-hidden" }, ` ${t("message.to", { who: who.user_name })}`)),
  );
}

export function noteBubble(note) {
  return h(
    "li",
    { class: "note", dataset: { noteId: note.note_id } },
    h("p", { class: "note-who" }, h("span", { class: "note-label" }, t("note.internal")), note.agent ? ` · ${note.agent}` : ""),
    h("p", { class: "text" }, note.text),
    h("div", { class: "meta" }, time(note.create_time)),
  );
}
