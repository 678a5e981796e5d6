// The inbox by thread: one row per conversation or comment thread (a comment and its
// replies) with its newest item, unread count, owner and state, filtered by owner (mine,
// nobody's) and state (open, done, snoozed).

import { api } from "./api.js";
import { avatar, badge, h, horizon, time } from "./dom.js";
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
    this.items = []; // threads (conversations and comment threads), the newest activity first
    this.cursors = new Map(); // account id -> {cursor, hasMore, oldest}
    this.typing = new Map(); // "account/kind/thread" -> Presence (presence.js)
  }

  filter() {
    return { mine: this.owner === "mine", unassigned: this.owner === "unassigned", threadState: this.state };
  }

  async reload(accountIds) {
    const cursors = new Map(accountIds.map((id) => [id, { cursor: "", hasMore: true, oldest: "" }]));
    const items = [];
    await this.fetch(cursors, items);
    this.cursors = cursors;
    this.items = items.sort(order);
  }

  async more() {
    const items = [...this.items];
    await this.fetch(this.cursors, items);
    this.items = items.sort(order);
  }

  async fetch(cursors, items) {
    const pending = [...cursors.entries()].filter(([, c]) => c.hasMore);
    const pages = await Promise.all(pending.map(([id, c]) => api.threads(id, { cursor: c.cursor, ...this.filter() })));
    const known = new Map(items.map((thread, index) => [key(thread), index]));
    pending.forEach(([, c], index) => {
      const page = pages[index];
      const listed = page.threads || [];
      c.cursor = page.cursor;
      c.hasMore = page.has_more;
      const unpinned = listed.filter((thread) => !thread.is_pinned);
      if (unpinned.length) c.oldest = unpinned[unpinned.length - 1].latest_time || "";
      for (const thread of listed) {
        if (known.has(key(thread))) items[known.get(key(thread))] = thread;
        else known.set(key(thread), items.push(thread) - 1);
      }
    });
  }

  hasMore() {
    return [...this.cursors.values()].some((c) => c.hasMore);
  }

  // The team's handling of a thread changed (an event's conversation or thread, its
  // handling as recorded): shown at once, or no longer when it left the filter.
  handled(accountId, kind, threadId, handling) {
    const found = this.items.find((x) => x.account_id === accountId && x.kind === kind && x.thread_id === threadId);
    if (!found) return false;
    takeHandling(found, handling);
    if (!this.passes(found)) this.items = this.items.filter((x) => x !== found);
    return true;
  }

  // The console read a thread: no longer unread here.
  read(accountId, kind, threadId) {
    const found = this.items.find((x) => x.account_id === accountId && x.kind === kind && x.thread_id === threadId);
    if (!found) return false;
    found.unread_count = 0;
    delete found.is_marked_unread;
    return true;
  }

  passes(thread) {
    const owner = thread.assignee || "";
    const me = this.me || "";
    if (this.owner === "mine" && (!me || owner !== me)) return false;
    if (this.owner === "unassigned" && owner) return false;
    return !this.state || (thread.thread_state || "open") === this.state;
  }

  // Threads older than what every account with more pages has reached wait, so that
  // "all accounts" never shows one above a thread not loaded yet.
  visible() {
    const cut = horizon(this.cursors.values());
    return this.items.filter((x) => x.is_pinned || (x.latest_time || "") >= cut);
  }

  // `onChange` is told when who writes where changed (a presence said, or one ended).
  onPresence(accountId, presence, onChange) {
    const at = presenceKey(accountId, presence);
    if (!this.typing.has(at)) this.typing.set(at, new Presence(onChange));
    this.typing.get(at).take(presence);
  }

  writers(thread) {
    const writing = this.typing.get(key(thread));
    return writing ? writing.agents().filter((agent) => agent !== this.me) : [];
  }
}

// The team's handling fields of a thread (or conversation), as an answer or event has
// them, put on `target`; a field the answer leaves out (empty) is gone from it too.
export function takeHandling(target, handling) {
  for (const field of ["assignee", "thread_state", "snoozed_until", "is_marked_unread", "note_count"]) {
    if (handling[field] === undefined || handling[field] === null || handling[field] === "") delete target[field];
    else target[field] = handling[field];
  }
}

export function threadKey(thread) {
  return `thread:${thread.account_id}:${thread.kind}:${thread.thread_id}`;
}

function key(thread) {
  return `${thread.account_id}/${thread.kind}/${thread.thread_id}`;
}

function presenceKey(accountId, presence) {
  return presence.comment_id ? `${accountId}/comment/${presence.comment_id}` : `${accountId}/conversation/${presence.conversation_id}`;
}

function order(a, b) {
  if (Boolean(a.is_pinned) !== Boolean(b.is_pinned)) return a.is_pinned ? -1 : 1;
  const x = a.latest_time || "";
  const y = b.latest_time || "";
  return x === y ? (key(a) < key(b) ? 1 : -1) : x < y ? 1 : -1;
}

export function threadRow(thread, { selected, active, accountLabel, writers, me, onOpen }) {
  const customer = thread.customer || {};
  const unread = Number(thread.unread_count || 0);
  const marked = unread > 0 || thread.is_marked_unread;
  const state = thread.thread_state || "open";
  const owner = thread.assignee || "";
  const rowKey = threadKey(thread);
  const comment = thread.kind === "comment";
  const latest = comment && thread.latest_author && thread.latest_author.user_id !== customer.user_id
    ? `${thread.latest_author.user_name || t("someone")}: ${thread.latest_text || ""}`
    : thread.latest_text;
  return h(
    "li",
    {
      class: `item thread-row ${marked ? "unread" : "read"} ${selected ? "selected" : ""}`,
      role: "option",
      tabindex: active ? "0" : "-1",
      "aria-selected": selected ? "true" : "false",
      dataset: { key: rowKey, state, owner, kind: thread.kind },
      onclick: () => onOpen(thread),
    },
    avatar(customer.user_name),
    h(
      "div",
      { class: "item-body" },
      h(
        "p",
        { class: "who" },
        marked ? h("span", { class: "dot", "aria-label": t("unread") }) : null,
        h("strong", {}, customer.user_name || t("someone")),
        h("span", { class: `kind ${comment ? "comment" : "direct_message"}` }, t(comment ? "kind.comment_thread" : "kind.direct_message")),
        h("span", { class: `owner-tag ${owner ? (owner === me ? "mine" : "theirs") : "nobody"}` }, owner ? (owner === me ? t("owner.yours") : owner) : t("owner.nobody")),
        state !== "open" ? h("span", { class: `state-tag ${state}` }, t(`state.${state}`)) : null,
        thread.is_pinned ? h("span", { class: "tag" }, t("pin.on")) : null,
        accountLabel ? h("span", { class: "muted small" }, accountLabel) : null,
      ),
      writers.length
        ? h("p", { class: "text writing" }, t("presence.writing", { agents: writers.join(t("list.separator")), count: writers.length }))
        : h("p", { class: "text" }, latest || t("conversation.no_messages")),
    ),
    h("div", { class: "row-end" }, time(thread.latest_time), badge(unread, t("badge.unread", { count: unread }))),
  );
}
