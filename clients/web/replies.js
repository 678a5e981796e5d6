// Replies a person sent from this console: shown at once as pending, then sent or failed
// with the platform's reason; a failed one can be sent again (as a new request).

import { api, ApiError } from "./api.js";
import { requestId } from "./dom.js";
import { t } from "./i18n.js";

const REASONS = ["login_expired", "target_not_found", "reply_blocked", "rate_limited", "expired", "platform_error", "outcome_unknown"];

export function reasonText(reply) {
  const reason = REASONS.includes(reply.reason) ? t(`reason.${reply.reason}`) : reply.reason || "";
  return [reason, reply.detail].filter(Boolean).join(": ");
}

// How far the platform's clock may be behind this browser's (and its times cut to the second).
const CLOCKS_APART_MS = 30_000;

// Whether the platform's copy of a reply this console sent is among `items` (the messages
// or comments shown; `idOf` and `timeOf` read them), so that the reply is shown once: as
// the platform's. Sent: the item of its created id, or of its text. Still pending: an item
// of its text no older than the reply, since the platform's copy can come before the
// worker's word that the reply was sent.
export function copiedIn(record, items, idOf, timeOf) {
  if (record.state !== "sent" && record.state !== "pending") return false;
  const since = Date.parse(record.at) - CLOCKS_APART_MS;
  return items.some(
    (item) =>
      (record.createdId && idOf(item) === record.createdId) ||
      (item.content === record.text && (record.state === "sent" || Date.parse(timeOf(item)) >= since)),
  );
}

export class Replies {
  constructor(onChange) {
    this.onChange = onChange;
    this.byId = new Map();
  }

  // target: {conversationId} or {contentId, commentId}
  async send(accountId, target, text) {
    const record = { requestId: requestId(), accountId, target, text, state: "pending", reason: "", detail: "", createdId: "", at: new Date().toISOString() };
    this.byId.set(record.requestId, record);
    this.onChange(record);
    const body = { account_id: accountId, request_id: record.requestId };
    if (target.conversationId) body.send_message = { conversation_id: target.conversationId, text };
    else body.reply_to_comment = { content_id: target.contentId, comment_id: target.commentId, text };
    try {
      const data = await api.sendReply(body);
      this.apply(data.reply);
    } catch (error) {
      // Not accepted (the gateway or the master refused it): nothing was stored.
      Object.assign(record, { state: "failed", reason: "", detail: error instanceof ApiError ? error.message : String(error) });
      this.onChange(record);
    }
    return record;
  }

  retry(record) {
    this.byId.delete(record.requestId);
    this.onChange(record);
    return this.send(record.accountId, record.target, record.text);
  }

  // A Reply from the API or from a reply_state_changed event.
  apply(reply) {
    const record = this.byId.get(reply.request_id);
    if (!record) return;
    Object.assign(record, { state: reply.state, reason: reply.reason === "unspecified" ? "" : reply.reason || "", detail: reply.detail || "", createdId: reply.created_id || "", agent: reply.agent || "" });
    this.onChange(record);
  }

  // Asks again about replies still pending (after the event stream was down).
  async refresh() {
    for (const record of this.byId.values()) {
      if (record.state !== "pending") continue;
      try {
        this.apply((await api.reply(record.requestId)).reply);
      } catch (error) {
        // still unreachable: the next reconnect asks again
      }
    }
  }

  for(predicate) {
    return [...this.byId.values()].filter(predicate);
  }

  forget(record) {
    this.byId.delete(record.requestId);
  }
}
