// The public IM REST API (/api/im, the IM envelope), and nothing else.

import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// The API key, when the master asks for one: kept in this browser until forgotten.
const KEY = "imsync.api-key";

export function apiKey() {
  return window.localStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) window.localStorage.setItem(KEY, key);
  else window.localStorage.removeItem(KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function call(method, path, { query, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: { ...authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    throw new ApiError(0, 14, t("api.unreachable"));
  }
  let envelope = null;
  try {
    envelope = await response.json();
  } catch (error) {
    throw new ApiError(response.status, 13, t("api.not_json", { status: response.status }));
  }
  if (!response.ok || envelope.status_code) {
    throw new ApiError(response.status, envelope.status_code, envelope.status_msg);
  }
  return envelope.data;
}

function threadPath({ conversationId, commentId }) {
  return conversationId
    ? `/api/im/conversations/${encodeURIComponent(conversationId)}`
    : `/api/im/discussions/${encodeURIComponent(commentId)}`;
}

export const api = {
  accounts: (cursor) => call("GET", "/api/im/accounts", { query: { count: 100, cursor } }),
  stats: (accountId) => call("GET", "/api/im/unified-messages/stats", { query: { account_id: accountId } }),
  inbox: (accountId, { types, unreadOnly, cursor, count = 30 }) =>
    call("GET", "/api/im/unified-messages", {
      query: { account_id: accountId, types: types.join(","), is_read: unreadOnly ? "false" : "", cursor, count },
    }),
  markItemRead: (accountId, id) =>
    call("PUT", `/api/im/unified-messages/${encodeURIComponent(id)}/read`, { body: { account_id: accountId } }),
  conversation: (accountId, conversationId) =>
    call("GET", `/api/im/conversations/${encodeURIComponent(conversationId)}`, { query: { account_id: accountId } }),
  messages: (accountId, conversationId, cursor) =>
    call("GET", "/api/im/messages", { query: { account_id: accountId, conversation_id: conversationId, cursor, count: 30 } }),
  markConversationRead: (accountId, conversationId) =>
    call("PUT", `/api/im/conversations/${encodeURIComponent(conversationId)}/read`, { body: { account_id: accountId } }),
  // on: pin (or mute) when true, unpin (unmute) when false; answers the conversation.
  pinConversation: (accountId, conversationId, on) =>
    on
      ? call("PUT", `/api/im/conversations/${encodeURIComponent(conversationId)}/pin`, { body: { account_id: accountId } })
      : call("DELETE", `/api/im/conversations/${encodeURIComponent(conversationId)}/pin`, { query: { account_id: accountId } }),
  muteConversation: (accountId, conversationId, on) =>
    on
      ? call("PUT", `/api/im/conversations/${encodeURIComponent(conversationId)}/mute`, { body: { account_id: accountId } })
      : call("DELETE", `/api/im/conversations/${encodeURIComponent(conversationId)}/mute`, { query: { account_id: accountId } }),
  me: () => call("GET", "/api/im/me"),
  // accountId: "" searches every account the key may read.
  search: (accountId, query, cursor) =>
    call("GET", "/api/im/search", { query: { account_id: accountId, query, cursor, count: 30 } }),
  // The inbox by thread: conversations and comment threads. filter: {mine, unassigned, assignee, threadState, kinds}
  threads: (accountId, { cursor, count = 30, mine, unassigned, assignee, threadState, kinds } = {}) =>
    call("GET", "/api/im/unified-threads", {
      query: {
        account_id: accountId,
        cursor,
        count,
        mine: mine ? "true" : "",
        unassigned: unassigned ? "true" : "",
        assignee,
        thread_state: threadState,
        kinds: (kinds || []).join(","),
      },
    }),
  discussion: (accountId, commentId) =>
    call("GET", `/api/im/discussions/${encodeURIComponent(commentId)}`, { query: { account_id: accountId } }),
  // The replies to a comment, newest first.
  replies: (accountId, commentId, cursor) =>
    call("GET", `/api/im/discussions/${encodeURIComponent(commentId)}/replies`, { query: { account_id: accountId, cursor, count: 50 } }),
  // The API marks at most 1,000 items a request: more go in turns.
  markItemsRead: async (accountId, ids) => {
    let marked = 0;
    for (let at = 0; at < ids.length; at += 1000) {
      const body = { account_id: accountId, ids: ids.slice(at, at + 1000) };
      marked += Number((await call("PUT", "/api/im/unified-messages/read-many", { body })).marked_count || 0);
    }
    return { marked_count: marked };
  },
  // The team's handling of a thread. thread: {conversationId} or {commentId} (a comment thread's).
  claim: (accountId, thread) => call("POST", `${threadPath(thread)}/claim`, { body: { account_id: accountId } }),
  assign: (accountId, thread, assignee) => call("PUT", `${threadPath(thread)}/assignee`, { body: { account_id: accountId, assignee } }),
  // state: "open", "done" or "snoozed" (with until, an ISO instant)
  setThreadState: (accountId, thread, state, until) =>
    call("PUT", `${threadPath(thread)}/state`, {
      body: { account_id: accountId, thread_state: state, ...(until ? { snoozed_until: until } : {}) },
    }),
  markUnread: (accountId, thread) => call("PUT", `${threadPath(thread)}/unread`, { body: { account_id: accountId } }),
  notes: (accountId, thread) => call("GET", `${threadPath(thread)}/notes`, { query: { account_id: accountId } }),
  addNote: (accountId, thread, text) => call("POST", `${threadPath(thread)}/notes`, { body: { account_id: accountId, text } }),
  presence: (accountId, thread, typing) =>
    call("PUT", `${threadPath(thread)}/presence`, { body: { account_id: accountId, is_typing: typing } }),
  templates: () => call("GET", "/api/im/templates"),
  fleetAccounts: () => call("GET", "/api/im/admin/accounts"),
  fleetWorkers: () => call("GET", "/api/im/admin/workers"),
  addFleetAccount: (account) => call("POST", "/api/im/admin/accounts", { body: account }),
  pauseFleetAccount: (accountId, paused) =>
    call("PATCH", `/api/im/admin/accounts/${encodeURIComponent(accountId)}`, { body: { paused } }),
  removeFleetAccount: (accountId) => call("DELETE", `/api/im/admin/accounts/${encodeURIComponent(accountId)}`),
  createTemplate: (name, text) => call("POST", "/api/im/templates", { body: { name, text } }),
  updateTemplate: (templateId, name, text) =>
    call("PUT", `/api/im/templates/${encodeURIComponent(templateId)}`, { body: { name, text } }),
  deleteTemplate: (templateId) => call("DELETE", `/api/im/templates/${encodeURIComponent(templateId)}`),
  // target: {conversationId} or {commentId}
  renderTemplate: (templateId, accountId, { conversationId, commentId }) =>
    call("POST", `/api/im/templates/${encodeURIComponent(templateId)}/render`, {
      body: { account_id: accountId, ...(conversationId ? { conversation_id: conversationId } : { comment_id: commentId }) },
    }),
  works: (accountId, cursor) => call("GET", "/api/im/contents", { query: { account_id: accountId, cursor, count: 50 } }),
  work: (accountId, contentId) =>
    call("GET", `/api/im/contents/${encodeURIComponent(contentId)}`, { query: { account_id: accountId } }),
  comments: (accountId, contentId, cursor) =>
    call("GET", "/api/im/discussions", { query: { account_id: accountId, content_id: contentId, cursor, count: 100 } }),
  markWorkRead: (accountId, contentId) =>
    call("PUT", `/api/im/contents/${encodeURIComponent(contentId)}/read`, { body: { account_id: accountId } }),
  sendReply: (body) => call("POST", "/api/im/replies", { body }),
  login: (accountId) => call("GET", `/api/im/accounts/${encodeURIComponent(accountId)}/login`),
  submitLoginCode: (accountId, code) =>
    call("POST", `/api/im/accounts/${encodeURIComponent(accountId)}/login/code`, { body: { code } }),
  restartLogin: (accountId) => call("POST", `/api/im/accounts/${encodeURIComponent(accountId)}/login/restart`, { body: {} }),
  reply: (requestId) => call("GET", `/api/im/replies/${encodeURIComponent(requestId)}`),
};

// Every page of a list, following cursors.
export async function everyPage(fetchPage, itemsKey) {
  const items = [];
  let cursor = "";
  for (;;) {
    const page = await fetchPage(cursor);
    items.push(...(page[itemsKey] || []));
    if (!page.has_more) return items;
    cursor = page.cursor;
  }
}
