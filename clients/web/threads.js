// The inbox by conversation: one row per conversation with its last message, unread count,
// owner and state, filtered by owner (mine, nobody's) and state (open, done, snoozed).

import { api } from "./api.js";
import { avatar, badge, h, time } from "./dom.js";
import { t } from "./i18n.js";
import { Presence } from "./presence.js";

// Filter values, each with its catalogue key.
export const OWNERS = [
  ["all", "filter.owner.all"],
  ["mine", "filter.owner.mine"],
  ["unassigned", "filter.owner.unassigned"],
];
export const STATES = [
  ["open", "filter.state.open"],
  ["snoozed", "filter.state.snoozed"],
  ["done", "filter.state.done"],
  ["", "filter.state.any"],
];

export class Threads {
  constructor() {
    this.owner = "all";
    this.state = "open";
    this.items = []; // conversations, the newest activity first
    this.cursors = new Map(); // account id -> {cursor, hasMore, oldest}
    this.typing = new Map(); // "account/conversation" -> Presence (presence.js)
  }

  filter() {
    return { mine: this.owner === "mine", unassigned: this.owner === "unassigned", threadState: this.state };
  }

  async reload(accountIds) {
    this.items = [];
    this.cursors = new Map(accountIds.map((id) => [id, { cursor: "", hasMore: true, oldest: "" }]));
    await this.more();
  }

  async more() {
    const pending = [...this.cursors.entries()].filter(([, c]) => c.hasMore);
    const pages = await Promise.all(pending.map(([id, c]) => api.conversations(id, { cursor: c.cursor, ...this.filter() })));
    pending.forEach(([, c], index) => {
      const page = pages[index];
      const items = page.conversations || [];
      c.cursor = page.cursor;
      c.hasMore = page.has_more;
      const unpinned = items.filter((item) => !item.is_pinned);
      if (unpinned.length) c.oldest = activity(unpinned[unpinned.length - 1]);
      this.merge(items);
    });
  }

  hasMore() {
    return [...this.cursors.values()].some((c) => c.hasMore);
  }

  merge(conversations) {
    const known = new Map(this.items.map((c) => [key(c), c]));
    for (const conversation of conversations) known.set(key(conversation), conversation);
    this.items = [...known.values()].sort(order);
  }

  // A conversation changed: shown as it is now, or no longer when it left the filter.
  async refresh(accountId, conversationId) {
    if (!this.cursors.has(accountId)) return false;
    let found;
    try {
      found = (await api.conversation(accountId, conversationId)).conversation;
    } catch (error) {
      return false;
    }
    this.items = this.items.filter((c) => !(c.account_id === accountId && c.conversation_id === conversationId));
    if (this.passes(found)) this.merge([found]);
    return true;
  }

  passes(conversation) {
    const owner = conversation.assignee || "";
    const me = this.me || "";
    if (this.owner === "mine" && (!me || owner !== me)) return false;
    if (this.owner === "unassigned" && owner) return false;
    return !this.state || (conversation.thread_state || "open") === this.state;
  }

  // Conversations older than what every account with more pages has reached wait, so that
  // "all accounts" never shows one above a conversation not loaded yet.
  visible() {
    const reached = [...this.cursors.values()].filter((c) => c.hasMore && c.oldest).map((c) => c.oldest);
    const horizon = reached.length ? reached.reduce((a, b) => (a > b ? a : b)) : "";
    return this.items.filter((c) => c.is_pinned || !horizon || activity(c) >= horizon);
  }

  // `onChange` is told when who writes where changed (a presence said, or one ended).
  onPresence(accountId, presence, onChange) {
    const at = `${accountId}/${presence.conversation_id}`;
    if (!this.typing.has(at)) this.typing.set(at, new Presence(onChange));
    this.typing.get(at).take(presence);
  }

  writers(conversation) {
    const writing = this.typing.get(`${conversation.account_id}/${conversation.conversation_id}`);
    return writing ? writing.agents().filter((agent) => agent !== this.me) : [];
  }
}

export function threadKey(conversation) {
  return `conv:${conversation.account_id}:${conversation.conversation_id}`;
}

function key(conversation) {
  return `${conversation.account_id}/${conversation.conversation_id}`;
}

function activity(conversation) {
  return (conversation.last_message || {}).create_time || conversation.update_time || "";
}

function order(a, b) {
  if (Boolean(a.is_pinned) !== Boolean(b.is_pinned)) return a.is_pinned ? -1 : 1;
  const x = activity(a);
  const y = activity(b);
  return x === y ? (key(a) < key(b) ? 1 : -1) : x < y ? 1 : -1;
}

export function threadRow(conversation, { selected, active, accountLabel, writers, me, onOpen }) {
  const other = conversation.participant || {};
  const unread = Number(conversation.unread_count || 0);
  const marked = unread > 0 || conversation.is_marked_unread;
  const state = conversation.thread_state || "open";
  const owner = conversation.assignee || "";
  const rowKey = threadKey(conversation);
  return h(
    "li",
    {
      class: `item thread-row ${marked ? "unread" : "read"} ${selected ? "selected" : ""}`,
      role: "option",
      tabindex: active ? "0" : "-1",
      "aria-selected": selected ? "true" : "false",
      dataset: { key: rowKey, state, owner },
      onclick: () => onOpen(conversation),
    },
    avatar(other.user_name),
    h(
      "div",
      { class: "item-body" },
      h(
        "p",
        { class: "who" },
        marked ? h("span", { class: "dot", "aria-label": t("unread") }) : null,
        h("strong", {}, other.user_name || t("someone")),
        h("span", { class: `owner-tag ${owner ? (owner === me ? "mine" : "theirs") : "nobody"}` }, owner ? (owner === me ? t("owner.yours") : owner) : t("owner.nobody")),
        state !== "open" ? h("span", { class: `state-tag ${state}` }, t(`state.${state}`)) : null,
        conversation.is_pinned ? h("span", { class: "tag" }, t("pin.on")) : null,
        accountLabel ? h("span", { class: "muted small" }, accountLabel) : null,
      ),
      writers.length
        ? h("p", { class: "text writing" }, t("presence.writing", { agents: writers.join(t("list.separator")), count: writers.length }))
        : h("p", { class: "text" }, (conversation.last_message || {}).content || t("conversation.no_messages")),
    ),
    h("div", { class: "row-end" }, time(activity(conversation)), badge(unread, t("badge.unread", { count: unread }))),
  );
}
