// A comment thread: a customer's comment on a work and the replies under it, the team's
// internal notes among them, who owns it and where it stands, and a reply box that answers
// under the comment. Opening it marks its comments read. It is handled as a conversation
// is (conversation.js); only what it shows, and where replies go, differ.

import { api, everyPage } from "./api.js";
import { pendingBubble } from "./compose.js";
import { avatar, byInstant, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { ConversationView, noteBubble } from "./conversation.js";
import { copiedIn } from "./replies.js";
import { takeHandling } from "./threads.js";
import { commentBody } from "./works.js";

export class CommentThreadView extends ConversationView {
  // thread: the row's Thread (the list's), its handling as last known.
  constructor(root, options) {
    super(root, { ...options, conversationId: "" });
    this.commentId = options.thread.thread_id;
    this.contentId = options.thread.content_id;
    this.conversation = { ...options.thread };
    this.fresh = new Set();
  }

  async open() {
    replace(this.root, h("p", { class: "loading" }, t("conversation.loading")));
    const [root, replies, work] = await Promise.all([
      api.discussion(this.accountId, this.commentId).then((found) => found.discussion, () => null),
      everyPage((cursor) => api.replies(this.accountId, this.commentId, cursor), "discussions"),
      api.work(this.accountId, this.contentId).then((found) => found.content, () => null),
    ]);
    this.messages = [...(root ? [root] : []), ...replies.reverse()];
    // Replies can be crawled without their comment: the thread is then named by a reply.
    if (!root && this.messages.length) this.via = this.messages[0].comment_id;
    if (root) this.contentId = root.content_id;
    this.notes = (await api.notes(this.accountId, this.thread())).notes || [];
    this.work = work;
    this.render();
    this.list.scrollTop = this.list.scrollHeight;
    await this.markRead();
    this.renderThread(); // what was unread is marked new now
  }

  thread() {
    return { commentId: this.via || this.commentId };
  }

  fromAnswer(answer) {
    return answer && answer.thread;
  }

  isHere(presence) {
    return presence.comment_id === this.commentId;
  }

  customerName() {
    return (this.conversation.customer || {}).user_name || t("reply.the_customer");
  }

  headerParts() {
    const customer = this.conversation.customer || {};
    return [
      avatar(customer.user_name),
      h(
        "div",
        { class: "grow" },
        h("h2", { id: "detail-title" }, customer.user_name || t("conversation.untitled")),
        h(
          "p",
          { class: "muted" },
          this.work && (this.work.title || this.work.description)
            ? t("comment_thread.on_work", { work: this.work.title || this.work.description, account: this.accountName })
            : t("comment_thread.on", { account: this.accountName }),
        ),
      ),
    ];
  }

  async markRead() {
    const unread = this.messages.filter((c) => !c.is_read);
    if (unread.length) {
      for (const comment of unread) this.fresh.add(comment.comment_id);
      await api.markItemsRead(this.accountId, unread.map((c) => `comment:${c.comment_id}`));
      for (const comment of unread) comment.is_read = true;
    }
    // Marked unread (or back from a snooze): read now, it is no longer.
    if (this.conversation.is_marked_unread && (this.conversation.thread_state || "open") === "open") {
      this.takeConversation(this.fromAnswer(await api.setThreadState(this.accountId, this.thread(), "open")));
    }
    if (unread.length || this.conversation.unread_count) {
      this.conversation.unread_count = 0;
      this.onRead(this.accountId);
    }
  }

  async loadOlder() {} // every reply is loaded when it opens

  reallySend(text) {
    this.replies.send(this.accountId, { contentId: this.contentId, commentId: this.commentId }, text);
  }

  takeConversation(thread) {
    if (!thread) return;
    takeHandling(this.conversation, thread);
    if (this.root.isConnected) this.renderHandling();
  }

  // The handling changed (an event's Thread, its handling as recorded).
  async onHandled(thread) {
    if (!thread || thread.thread_id !== this.commentId) return;
    const notesChanged = (thread.note_count || 0) !== this.notes.length;
    this.takeConversation(thread);
    if (notesChanged) {
      this.notes = (await api.notes(this.accountId, this.thread())).notes || [];
      this.renderThread();
    }
  }

  renderThread() {
    const ours = (r) => r.target.commentId === this.commentId && r.accountId === this.accountId;
    const copied = (r) => copiedIn(r, this.messages, (c) => c.comment_id, (c) => c.created_at);
    const mine = this.replies.for((r) => ours(r) && !copied(r));
    const items = byInstant([
      ...this.messages.map((c, index) => ({
        at: c.created_at,
        node: () => h("li", { class: index === 0 && !c.parent_comment_id ? "thread-comment" : "thread-comment reply" }, commentBody(c, this.fresh)),
      })),
      ...this.notes.map((n) => ({ at: n.create_time, node: () => noteBubble(n) })),
    ]);
    replace(this.list, items.map((item) => item.node()), mine.map((record) => pendingBubble(record, (r) => this.replies.retry(r))));
  }

  onNewMessage() {}

  onNewComment(comment) {
    const root = comment.parent_comment_id || comment.comment_id;
    if (root !== this.commentId || this.messages.some((c) => c.comment_id === comment.comment_id)) return;
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.messages.push(comment);
    for (const record of this.replies.for((r) => r.target.commentId === this.commentId && r.state === "sent")) {
      if (record.createdId === comment.comment_id || comment.content === record.text) this.replies.forget(record);
    }
    this.renderThread();
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
    if (!comment.is_read && document.visibilityState === "visible") this.markRead();
  }

  onReplyChange(record) {
    if (record.target.commentId === this.commentId) {
      this.renderThread();
      this.list.scrollTop = this.list.scrollHeight;
    }
  }
}
