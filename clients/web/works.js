// Works (the account's videos and posts) with their comment statistics, and one work's
// comments with the replies nested under them. Opening a work's comments marks them read.

import { api, everyPage } from "./api.js";
import { replyBox, replyStatus } from "./compose.js";
import { avatar, badge, h, replace, time } from "./dom.js";
import { t } from "./i18n.js";
import { copiedIn } from "./replies.js";

export function workCard(work, { selected, onOpen }) {
  const stats = work.stats || {};
  return h(
    "li",
    {
      class: `work ${selected ? "selected" : ""}`,
      role: "option",
      tabindex: "-1",
      "aria-selected": selected ? "true" : "false",
      dataset: { key: `work:${work.account_id}:${work.content_id}` },
      onclick: () => onOpen(work),
    },
    h("div", { class: "cover", "aria-hidden": "true" }, work.content_type === "video" ? "▶" : "▣"),
    h(
      "div",
      { class: "work-body" },
      h("p", { class: "title" }, work.title || work.description || t("work.untitled"), work.is_new ? h("span", { class: "tag" }, t("tag.new")) : null),
      h(
        "p",
        { class: "stats muted" },
        t("work.stats", { comments: stats.total_comments || 0, likes: stats.likes || 0, views: stats.views || 0 }),
        " · ",
        time(work.publish_time),
      ),
    ),
    badge(stats.unread_comments, t("badge.unread_comments", { count: Number(stats.unread_comments || 0) })),
  );
}

export class WorkView {
  constructor(root, { accountId, accountName, contentId, focusCommentId, replies, onRead, onBack, templates = null }) {
    Object.assign(this, { root, accountId, accountName, contentId, focusCommentId, replies, onRead, onBack, templates });
    this.work = null;
    this.comments = [];
    // Comments unread when the work was opened keep a "new" mark while it stays open.
    this.fresh = new Set();
    // What was typed in each reply box, kept across re-renders.
    this.drafts = new Map();
    this.open_replies = new Set();
  }

  async open() {
    replace(this.root, h("p", { class: "loading" }, t("work.loading")));
    const [found, comments] = await Promise.all([
      api.work(this.accountId, this.contentId),
      everyPage((cursor) => api.comments(this.accountId, this.contentId, cursor), "discussions"),
    ]);
    this.work = found.content;
    this.comments = comments;
    this.fresh = new Set(comments.filter((c) => !c.is_read).map((c) => c.comment_id));
    this.render();
    this.scrollToFocus();
    await this.markRead();
  }

  async markRead() {
    const stats = (this.work && this.work.stats) || {};
    if (!stats.unread_comments && !this.work.is_new) return;
    const done = await api.markWorkRead(this.accountId, this.contentId);
    this.work = done.content || this.work;
    for (const comment of this.comments) comment.is_read = true;
    this.onRead(this.accountId);
    this.renderHeader();
    this.renderComments();
  }

  render() {
    this.header = h("header", { class: "detail-header" });
    this.list = h("ol", { class: "comments", "aria-label": t("work.comments"), "aria-live": "polite" });
    replace(this.root, this.header, this.list);
    this.root.setAttribute("aria-labelledby", "detail-title");
    this.renderHeader();
    this.renderComments();
  }

  renderHeader() {
    const work = this.work;
    const stats = work.stats || {};
    replace(
      this.header,
      h("button", { type: "button", class: "back", onclick: () => this.onBack() }, t("back")),
      h("div", { class: "cover", "aria-hidden": "true" }, work.content_type === "video" ? "▶" : "▣"),
      h(
        "div",
        {},
        h("h2", { id: "detail-title" }, work.title || work.description || t("work.untitled")),
        h("p", { class: "muted" }, t("work.of", { account: this.accountName })),
        h(
          "p",
          { class: "muted" },
          t("work.stats_full", {
            comments: stats.total_comments || 0,
            unread: stats.unread_comments || 0,
            likes: stats.likes || 0,
            shares: stats.shares || 0,
            views: stats.views || 0,
          }),
          " ",
          time(work.publish_time),
        ),
      ),
    );
  }

  renderComments() {
    // The box being typed in is drawn again with its text and keeps the focus.
    const focused = document.activeElement && this.list && this.list.contains(document.activeElement)
      ? document.activeElement.closest("[data-thread]")
      : null;
    const refocus = focused ? focused.dataset.thread : "";
    this.drawComments();
    if (refocus) {
      const input = this.list.querySelector(`[data-thread="${CSS.escape(refocus)}"] textarea`);
      if (input) {
        input.focus();
        input.setSelectionRange(input.value.length, input.value.length);
      }
    }
  }

  drawComments() {
    const tops = this.comments.filter((c) => !c.parent_comment_id || !this.comments.some((p) => p.comment_id === c.parent_comment_id));
    tops.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    const children = (id) =>
      this.comments.filter((c) => c.parent_comment_id === id).sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    replace(
      this.list,
      tops.length ? null : h("li", { class: "empty" }, t("work.no_comments")),
      tops.map((comment) => this.thread(comment, children(comment.comment_id))),
    );
  }

  thread(comment, replies) {
    const copied = (r) => copiedIn(r, replies, (c) => c.comment_id, (c) => c.created_at);
    const mine = this.replies.for((r) => r.target.commentId === comment.comment_id && r.accountId === this.accountId && !copied(r));
    const open = this.open_replies.has(comment.comment_id) || mine.some((r) => r.state === "failed");
    return h(
      "li",
      { class: "comment-thread", dataset: { thread: comment.comment_id } },
      commentBody(comment, this.fresh),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "link", "aria-expanded": open ? "true" : "false", onclick: () => this.toggleReply(comment.comment_id) }, t("reply.mode")),
      ),
      replies.length
        ? h(
            "ol",
            { class: "replies", "aria-label": t("work.replies_to", { who: (comment.author || {}).user_name || t("work.this_comment") }) },
            replies.map((r) => h("li", {}, commentBody(r, this.fresh))),
          )
        : null,
      mine.map((record) => h("div", { class: "my-reply" }, h("p", { class: "text" }, record.text), replyStatus(record, (r) => this.replies.retry(r)))),
      open
        ? replyBox({
            label: t("reply.to", { who: (comment.author || {}).user_name || t("work.this_comment") }),
            placeholder: t("reply.placeholder.comment"),
            draft: this.drafts.get(comment.comment_id) || "",
            onDraft: (text) => this.drafts.set(comment.comment_id, text),
            templates: this.templates ? this.templates.source(this.accountId, { commentId: comment.comment_id }) : null,
            onSend: (text) => {
              this.open_replies.delete(comment.comment_id);
              this.replies.send(this.accountId, { contentId: this.contentId, commentId: comment.comment_id }, text);
            },
          })
        : null,
    );
  }

  toggleReply(commentId) {
    if (this.open_replies.has(commentId)) this.open_replies.delete(commentId);
    else this.open_replies.add(commentId);
    this.renderComments();
    if (this.open_replies.has(commentId)) this.focusReply();
  }

  focusReply() {
    const input = this.root.querySelector(".reply-box textarea");
    if (input) input.focus();
    else {
      const first = this.focusCommentId || (this.comments.find((c) => !c.parent_comment_id) || {}).comment_id;
      if (first) this.toggleReply(first);
    }
  }

  scrollToFocus() {
    if (!this.focusCommentId) return;
    const node = this.root.querySelector(`[data-comment-id="${CSS.escape(this.focusCommentId)}"]`);
    if (node) {
      node.classList.add("focused");
      node.scrollIntoView({ block: "center" });
    }
  }

  onNewComment(comment) {
    if (comment.content_id !== this.contentId || this.comments.some((c) => c.comment_id === comment.comment_id)) return;
    this.comments.push(comment);
    if (!comment.is_read) this.fresh.add(comment.comment_id);
    // The platform's copy of a reply sent from here replaces the sent note.
    for (const record of this.replies.for((r) => r.target.commentId === comment.parent_comment_id && r.state === "sent")) {
      if (record.createdId === comment.comment_id || comment.content === record.text) this.replies.forget(record);
    }
    this.renderComments();
    if (!comment.is_read && document.visibilityState === "visible") {
      this.work.stats = { ...(this.work.stats || {}), unread_comments: 1 };
      this.markRead();
    }
  }

  onReplyChange(record) {
    if (record.target.contentId === this.contentId) this.renderComments();
  }

  destroy() {}
}

export function commentBody(comment, fresh) {
  const author = comment.author || {};
  const mark = !comment.is_read ? "unread" : fresh.has(comment.comment_id) ? "new" : null;
  return h(
    "article",
    { class: `comment ${mark || ""}`, dataset: { commentId: comment.comment_id } },
    avatar(author.user_name, "small"),
    h(
      "div",
      {},
      h("p", { class: "who" }, h("strong", {}, author.user_name || t("someone")), " ", time(comment.created_at), mark ? h("span", { class: "tag" }, t(`tag.${mark}`)) : null),
      h("p", { class: "text" }, comment.content),
      comment.like_count ? h("p", { class: "muted small" }, t("work.likes", { count: Number(comment.like_count) })) : null,
    ),
  );
}
