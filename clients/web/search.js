// Search results: one row per item found, the matched part marked, newest first; more
// pages as the reader scrolls.

import { api } from "./api.js";
import { avatar, h, time } from "./dom.js";
import { t } from "./i18n.js";

export class SearchResults {
  constructor() {
    this.query = "";
    this.hits = [];
    this.cursor = "";
    this.hasMore = false;
    this.problem = "";
  }

  async run(accountId, query) {
    this.query = query;
    this.hits = [];
    this.cursor = "";
    this.hasMore = false;
    this.problem = "";
    this.accountId = accountId;
    await this.more();
  }

  async more() {
    try {
      const page = await api.search(this.accountId, this.query, this.cursor);
      this.hits.push(...(page.hits || []));
      this.cursor = page.cursor || "";
      this.hasMore = Boolean(page.has_more);
    } catch (error) {
      this.problem = error.message || String(error);
      this.hasMore = false;
    }
  }
}

export function hitKey(hit) {
  const item = hit.message || hit.comment || hit.content || {};
  return `hit:${hit.account_id}:${hit.kind}:${item.message_id || item.comment_id || item.content_id}`;
}

export function hitRow(hit, { selected, active, accountLabel, onOpen }) {
  const message = hit.message;
  const comment = hit.comment;
  const work = hit.content;
  const who = message ? (message.direction === "outbound" ? message.receiver : message.sender) || {} : comment ? comment.author || {} : {};
  const when = message ? message.create_time : comment ? comment.created_at : work.publish_time;
  const kind = { message: "direct_message", comment: comment && comment.parent_comment_id ? "discussion" : "comment", content: "work" }[hit.kind];
  return h(
    "li",
    {
      class: `item hit ${selected ? "selected" : ""}`,
      role: "option",
      tabindex: active ? "0" : "-1",
      "aria-selected": selected ? "true" : "false",
      dataset: { key: hitKey(hit) },
      onclick: () => onOpen(hit),
    },
    work ? h("div", { class: "cover small", "aria-hidden": "true" }, "▶") : avatar(who.user_name),
    h(
      "div",
      { class: "item-body" },
      h(
        "p",
        { class: "who" },
        h("strong", {}, work ? work.title || t("work.untitled") : who.user_name || t("someone")),
        h("span", { class: `kind ${kind}` }, t(`kind.${kind}`)),
        hit.field === "customer_name" || hit.field === "title" || hit.field === "description"
          ? h("span", { class: "muted small" }, t(`search.field.${hit.field}`))
          : null,
        accountLabel ? h("span", { class: "muted small" }, accountLabel) : null,
      ),
      h("p", { class: "text snippet" }, hit.before || "", h("mark", {}, hit.matched), hit.after || ""),
    ),
    time(when),
  );
}
