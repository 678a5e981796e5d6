// Replies a person sent from this console: shown at once as pending, then sent or failed
// with the platform's reason; a failed one can be sent again (as a new request).

import { api, ApiError } from "./api.js";
import { requestId } from "./dom.js";

const REASONS = {
  login_expired: "the account is logged out on the platform",
  target_not_found: "the comment or conversation is gone",
  reply_blocked: "the platform refused the reply",
  rate_limited: "the platform asks to slow down",
  expired: "no worker performed it in time",
  platform_error: "the platform failed",
  outcome_unknown: "the worker stopped while sending it, so it may have been sent: look before sending it again",
};

export function reasonText(reply) {
  const reason = REASONS[reply.reason] || reply.reason || "";
  return [reason, reply.detail].filter(Boolean).join(": ");
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
