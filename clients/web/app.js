// The imsync console: accounts, the unified inbox, conversations and works, replies and
// live updates, over the gateway's public REST API and its event stream only.

import { AccountPanel, accountTitle, health, healthBadge } from "./account.js";
import { ApiError, api, apiKey, everyPage, setApiKey } from "./api.js";
import { CommentThreadView } from "./comment_thread.js";
import { ConversationView } from "./conversation.js";
import { avatar, badge, h, horizon, replace, time } from "./dom.js";
import { EventStream } from "./events.js";
import { LOCALES, locale, preferredLocale, t, useLocale } from "./i18n.js";
import { Notifier } from "./notify.js";
import { Replies } from "./replies.js";
import { SearchResults, hitKey, hitRow } from "./search.js";
import { TeamTemplates, TemplatesPanel } from "./templates.js";
import { FleetPanel } from "./fleet.js";
import { OWNERS, STATES, Threads, threadKey, threadRow } from "./threads.js";
import { WorkView, workCard } from "./works.js";

const TYPES = ["direct_message", "comment", "discussion", "notification"];

const state = {
  accounts: [],
  stats: new Map(),
  selected: "all",
  view: "threads", // or "inbox" (item by item) or "works"
  me: {}, // who this console is: {agent, agents, …} (GET /api/im/me)
  types: new Set(),
  unreadOnly: false,
  inbox: [], // unified items, newest first
  cursors: new Map(), // account id -> {cursor, hasMore, oldest}
  works: [],
  detail: null, // the open ConversationView or WorkView
  detailKey: "",
  active: "", // the key of the list item with the keyboard focus
};

const $ = (id) => document.getElementById(id);
let notifications = null;
const notifier = () => (notifications ||= new Notifier($("notify")));
const replies = new Replies((record) => state.detail && state.detail.onReplyChange(record));
const threads = new Threads();
// While a search is shown, the list holds its results (null otherwise).
let found = null;
const teamTemplates = new TeamTemplates(() => state.detail instanceof TemplatesPanel && state.detail.update());

// ------------------------------------------------------------------ accounts

async function loadAccounts() {
  state.accounts = await everyPage((cursor) => api.accounts(cursor), "users");
  await Promise.all(state.accounts.map((a) => refreshStats(a.account_id, false)));
  renderAccounts();
}

async function refreshStats(accountId, render = true) {
  try {
    state.stats.set(accountId, await api.stats(accountId));
  } catch (error) {
    return; // shown stale until the next update
  }
  if (render) renderAccounts();
}

function unread(accountId) {
  return (state.stats.get(accountId) || {}).total_unread || 0;
}

function renderAccounts() {
  const total = state.accounts.reduce((sum, a) => sum + unread(a.account_id), 0);
  const entry = (id, label, sub, count, picture) =>
    h(
      "li",
      {},
      h(
        "button",
        {
          type: "button",
          class: `account ${state.selected === id ? "selected" : ""}`,
          "aria-pressed": state.selected === id ? "true" : "false",
          dataset: { account: id },
          onclick: () => select(id),
        },
        picture,
        h("span", { class: "account-text" }, h("span", { class: "name" }, label), h("span", { class: "sub" }, sub)),
        badge(count, t("badge.unread", { count })),
      ),
    );
  replace(
    $("accounts"),
    entry("all", t("accounts.all"), t("accounts.count", { count: state.accounts.length }), total, h("span", { class: "avatar all", "aria-hidden": "true" }, "∗")),
    state.accounts.map((a) =>
      entry(
        a.account_id,
        accountTitle(a),
        h("span", {}, `${a.platform} · `, healthBadge(a)),
        unread(a.account_id),
        avatar(accountTitle(a)),
      ),
    ),
  );
  document.title = total ? `(${total}) imsync` : "imsync";
}

function accountIds() {
  return state.selected === "all" ? state.accounts.map((a) => a.account_id) : [state.selected];
}

function accountName(id) {
  const account = state.accounts.find((a) => a.account_id === id);
  return account ? accountTitle(account) : id;
}

async function select(id) {
  state.selected = id;
  closeDetail();
  renderAccounts();
  await reloadList();
}

function selectedAccount() {
  return state.accounts.find((a) => a.account_id === state.selected) || null;
}

// With one account chosen and nothing else open, the detail area shows the account's
// health and its login.
function showAccountPanel({ focus = false } = {}) {
  const account = selectedAccount();
  if (!account) return;
  state.detail = new AccountPanel($("detail"), { account });
  state.detailKey = `account:${account.account_id}`;
  if (focus) document.body.classList.add("detail-open");
  state.detail.open();
}

// -------------------------------------------------------------------- inbox

async function reloadList() {
  if (found) {
    await runSearch(found.query);
    return;
  }
  renderToolbar();
  replace($("list"), h("li", { class: "loading" }, t("loading")));
  if (state.view === "inbox") {
    state.inbox = [];
    state.cursors = new Map(accountIds().map((id) => [id, { cursor: "", hasMore: true, oldest: "" }]));
    await loadMoreInbox();
  } else if (state.view === "threads") {
    threads.me = state.me.agent || "";
    await threads.reload(accountIds());
    renderList();
  } else {
    state.works = [];
    for (const id of accountIds()) state.works.push(...(await everyPage((cursor) => api.works(id, cursor), "contents")));
    state.works.sort((a, b) => (a.publish_time < b.publish_time ? 1 : -1));
    renderList();
  }
}

async function loadMoreInbox() {
  const pending = [...state.cursors.entries()].filter(([, c]) => c.hasMore);
  const pages = await Promise.all(
    pending.map(([id, c]) => api.inbox(id, { types: [...state.types], unreadOnly: state.unreadOnly, cursor: c.cursor })),
  );
  pending.forEach(([id, c], index) => {
    const page = pages[index];
    const items = page.messages || [];
    c.cursor = page.cursor;
    c.hasMore = page.has_more;
    if (items.length) c.oldest = items[items.length - 1].create_time;
    mergeItems(items);
  });
  renderList();
}

function mergeItems(items) {
  const known = new Map(state.inbox.map((item) => [`${item.account_id}/${item.id}`, item]));
  for (const item of items) known.set(`${item.account_id}/${item.id}`, item);
  state.inbox = [...known.values()].sort((a, b) => (a.create_time === b.create_time ? (a.id < b.id ? 1 : -1) : a.create_time < b.create_time ? 1 : -1));
}

// Items older than what every account with more pages has reached are held back, so that
// "all accounts" never shows an item above one not loaded yet.
function visibleInbox() {
  const cut = horizon(state.cursors.values());
  return state.inbox.filter((item) => passes(item) && item.create_time >= cut);
}

function passes(item) {
  return (!state.types.size || state.types.has(item.type)) && (!state.unreadOnly || !item.is_read);
}

function itemKey(item) {
  return `item:${item.account_id}:${item.id}`;
}

function inboxRow(item) {
  const message = item.message;
  const comment = item.comment;
  const notification = item.notification;
  const who = message ? message.sender || {} : comment ? comment.author || {} : (notification && notification.actor) || {};
  const kind = TYPES.includes(item.type) ? t(`kind.${item.type}`) : item.type;
  const key = itemKey(item);
  return h(
    "li",
    {
      class: `item ${item.is_read ? "read" : "unread"} ${state.detailKey === key ? "selected" : ""}`,
      role: "option",
      tabindex: state.active === key ? "0" : "-1",
      "aria-selected": state.detailKey === key ? "true" : "false",
      dataset: { key },
      onclick: () => openItem(item),
    },
    avatar(who.user_name),
    h(
      "div",
      { class: "item-body" },
      h(
        "p",
        { class: "who" },
        item.is_read ? null : h("span", { class: "dot", "aria-label": t("unread") }),
        h("strong", {}, who.user_name || t("someone")),
        h("span", { class: `kind ${item.type}` }, kind),
        state.selected === "all" ? h("span", { class: "muted small" }, accountName(item.account_id)) : null,
      ),
      h("p", { class: "text" }, (message ? message.content : comment ? comment.content : notification ? notification.text : "") || t("item.no_text")),
    ),
    time(item.create_time),
  );
}

function renderList() {
  const list = $("list");
  if (found) {
    renderSearch(list);
    return;
  }
  list.setAttribute("aria-label", t(`view.${state.view}`));
  const account = selectedAccount();
  const trouble = account && health(account).tone !== "ok" ? health(account) : null;
  const alert = trouble
    ? h(
        "li",
        { class: `account-alert ${trouble.tone}` },
        h("strong", {}, trouble.label),
        trouble.why ? ` — ${trouble.why}` : "",
        h("button", { type: "button", class: "link", onclick: () => { closeDetail({ showAccount: false }); showAccountPanel({ focus: true }); } }, t("account.details")),
      )
    : null;
  if (state.view === "inbox") {
    const items = visibleInbox();
    const more = [...state.cursors.values()].some((c) => c.hasMore);
    replace(
      list,
      alert,
      items.length ? items.map(inboxRow) : h("li", { class: "empty" }, state.unreadOnly ? t("inbox.nothing_unread") : t("inbox.empty")),
      more ? h("li", { class: "more" }, h("button", { type: "button", class: "link", id: "more", onclick: loadMoreInbox }, t("list.load_older"))) : null,
    );
    if (more) moreObserver.observe($("more"));
  } else if (state.view === "threads") {
    const shown = threads.visible();
    replace(
      list,
      alert,
      shown.length
        ? shown.map((thread) =>
            threadRow(thread, {
              selected: state.detailKey === threadKey(thread),
              active: state.active === threadKey(thread),
              accountLabel: state.selected === "all" ? accountName(thread.account_id) : "",
              writers: threads.writers(thread),
              me: state.me.agent || "",
              onOpen: openThread,
            }),
          )
        : h("li", { class: "empty" }, t("threads.empty")),
      threads.hasMore()
        ? h("li", { class: "more" }, h("button", { type: "button", class: "link", id: "more", onclick: moreThreads }, t("list.load_older")))
        : null,
    );
    if (threads.hasMore()) moreObserver.observe($("more"));
  } else {
    replace(
      list,
      alert,
      state.works.length
        ? state.works.map((work) => workCard(work, { selected: state.detailKey === `work:${work.account_id}:${work.content_id}`, onOpen: openWork }))
        : h("li", { class: "empty" }, t("works.empty")),
    );
  }
  const rows = [...list.querySelectorAll("[role=option]")];
  if (rows.length && !rows.some((row) => row.tabIndex === 0)) rows[0].tabIndex = 0;
}

const moreObserver = new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) {
    moreObserver.disconnect();
    if (found) moreHits();
    else if (state.view === "threads") moreThreads();
    else loadMoreInbox();
  }
});

// New items move threads up and change their counts: the list is loaded again, once for
// a burst of them.
let threadsReload = null;

function reloadThreadsSoon() {
  clearTimeout(threadsReload);
  threadsReload = setTimeout(async () => {
    if (state.view !== "threads" || found) return;
    await threads.reload(accountIds());
    renderList();
  }, 500);
}

async function moreThreads() {
  await threads.more();
  renderList();
}

function renderToolbar() {
  for (const button of document.querySelectorAll("[data-view]")) {
    button.setAttribute("aria-selected", button.dataset.view === state.view ? "true" : "false");
  }
  const filters = $("filters");
  filters.hidden = state.view === "works" || Boolean(found);
  if (state.view === "threads") {
    const chips = (choices, current, pick, label) =>
      h(
        "div",
        { class: "chips", role: "group", "aria-label": label },
        choices
          .filter(([value]) => value !== "mine" || state.me.agent)
          .map(([value, text]) =>
            h("button", { type: "button", class: "chip", dataset: { value }, "aria-pressed": current === value ? "true" : "false", onclick: () => pick(value) }, t(text)),
          ),
      );
    replace(
      filters,
      chips(OWNERS, threads.owner, (value) => { threads.owner = value; reloadList(); }, t("filter.owner")),
      chips(STATES, threads.state, (value) => { threads.state = value; reloadList(); }, t("filter.state")),
    );
    return;
  }
  replace(
    filters,
    TYPES.map((type) =>
      h(
        "button",
        { type: "button", class: "chip", "aria-pressed": state.types.has(type) ? "true" : "false", onclick: () => toggleType(type) },
        t(`filter.type.${type}`),
      ),
    ),
    h(
      "label",
      { class: "chip" },
      h("input", { type: "checkbox", checked: state.unreadOnly, onchange: (event) => setUnreadOnly(event.target.checked) }),
      ` ${t("filter.unread_only")}`,
    ),
  );
}

function toggleType(type) {
  if (state.types.has(type)) state.types.delete(type);
  else state.types.add(type);
  reloadList();
}

function setUnreadOnly(on) {
  state.unreadOnly = on;
  reloadList();
}

// ------------------------------------------------------------------ details

async function openItem(item, { reply = false } = {}) {
  state.active = itemKey(item);
  if (item.notification) {
    // A notification is read where it is shown; one about a work opens the work.
    if (!item.is_read) {
      await api.markItemRead(item.account_id, item.id);
      item.is_read = true;
      renderList();
      onMarkedRead(item.account_id);
    }
    if (item.notification.content_id) await openDetail(itemKey(item), WorkView, { contentId: item.notification.content_id }, item.account_id, false);
    return;
  }
  if (item.message) await openDetail(itemKey(item), ConversationView, { conversationId: item.message.conversation_id }, item.account_id, reply);
  else await openDetail(itemKey(item), WorkView, { contentId: item.comment.content_id, focusCommentId: item.comment.comment_id }, item.account_id, reply);
}

// ------------------------------------------------------------------ search

async function runSearch(query) {
  found = new SearchResults();
  renderToolbar();
  replace($("list"), h("li", { class: "loading" }, t("loading")));
  await found.run(state.selected === "all" ? "" : state.selected, query);
  renderList();
}

function stopSearch() {
  found = null;
  $("search-input").value = "";
  reloadList();
}

function renderSearch(list) {
  list.setAttribute("aria-label", t("search.results", { query: found.query }));
  replace(
    list,
    h(
      "li",
      { class: "search-head" },
      t("search.results", { query: found.query }),
      h("button", { type: "button", class: "link", onclick: stopSearch }, t("search.clear")),
    ),
    found.problem ? h("li", { class: "error", role: "alert" }, found.problem) : null,
    found.hits.length
      ? found.hits.map((hit) =>
          hitRow(hit, {
            selected: state.detailKey === hitKey(hit),
            active: state.active === hitKey(hit),
            accountLabel: state.selected === "all" ? accountName(hit.account_id) : "",
            onOpen: openHit,
          }),
        )
      : found.problem
        ? null
        : h("li", { class: "empty" }, t("search.none")),
    found.hasMore ? h("li", { class: "more" }, h("button", { type: "button", class: "link", id: "more", onclick: moreHits }, t("list.load_older"))) : null,
  );
  if (found.hasMore) moreObserver.observe($("more"));
  const rows = [...list.querySelectorAll("[role=option]")];
  if (rows.length && !rows.some((row) => row.tabIndex === 0)) rows[0].tabIndex = 0;
}

async function moreHits() {
  if (!found) return;
  await found.more();
  renderList();
}

async function openHit(hit) {
  const key = hitKey(hit);
  state.active = key;
  if (hit.message) await openDetail(key, ConversationView, { conversationId: hit.message.conversation_id }, hit.account_id, false);
  else if (hit.comment) await openDetail(key, WorkView, { contentId: hit.comment.content_id, focusCommentId: hit.comment.comment_id }, hit.account_id, false);
  else await openDetail(key, WorkView, { contentId: hit.content.content_id }, hit.account_id, false);
}

async function openThread(thread) {
  const key = threadKey(thread);
  state.active = key;
  if (thread.kind === "comment") await openDetail(key, CommentThreadView, { thread }, thread.account_id, false);
  else await openDetail(key, ConversationView, { conversationId: thread.thread_id }, thread.account_id, false);
}

async function openWork(work) {
  const key = `work:${work.account_id}:${work.content_id}`;
  state.active = key;
  await openDetail(key, WorkView, { contentId: work.content_id }, work.account_id, false);
}

async function openDetail(key, View, options, accountId, reply) {
  closeDetail({ showAccount: false });
  state.detailKey = key;
  document.body.classList.add("detail-open");
  const root = $("detail");
  state.detail = new View(root, {
    ...options,
    accountId,
    accountName: accountName(accountId),
    replies,
    me: state.me,
    templates: teamTemplates,
    onRead: onMarkedRead,
    onBack: backToList,
  });
  renderList();
  try {
    await state.detail.open();
    if (reply) state.detail.focusReply();
  } catch (error) {
    replace(root, h("p", { class: "error", role: "alert" }, t("detail.open_failed", { error: error.message })));
  }
}

function openTemplates() {
  closeDetail({ showAccount: false });
  state.detailKey = "templates";
  document.body.classList.add("detail-open");
  state.detail = new TemplatesPanel($("detail"), { templates: teamTemplates, onBack: backToList });
  state.detail.open();
}

function openFleet() {
  closeDetail({ showAccount: false });
  state.detailKey = "fleet";
  document.body.classList.add("detail-open");
  state.detail = new FleetPanel($("detail"), { onBack: backToList });
  state.detail.open();
}

function closeDetail({ showAccount = true } = {}) {
  if (state.detail) state.detail.destroy();
  state.detail = null;
  state.detailKey = "";
  document.body.classList.remove("detail-open");
  replace($("detail"), h("p", { class: "placeholder" }, t("detail.placeholder")));
  if (showAccount) showAccountPanel();
}

function backToList() {
  const key = state.active;
  closeDetail();
  renderList();
  focusRow(key);
}

// What the console just marked read: its own lists show it at once; the event stream
// tells every other console.
async function onMarkedRead(accountId) {
  await refreshStats(accountId);
  if (state.view === "threads" && state.detail) {
    const detail = state.detail;
    const done = detail instanceof CommentThreadView
      ? threads.read(accountId, "comment", detail.commentId)
      : detail.conversationId && threads.read(accountId, "conversation", detail.conversationId);
    if (done) renderList();
  }
  if (state.view === "works") {
    const fresh = await everyPage((cursor) => api.works(accountId, cursor), "contents");
    state.works = state.works.map((w) => (w.account_id === accountId ? fresh.find((f) => f.content_id === w.content_id) || w : w));
    renderList();
  }
}

// ------------------------------------------------------------------- events

function onEvent(event) {
  const accountId = event.account_id;
  if (event.type === "new_message" || event.type === "new_comment" || event.type === "new_notification") {
    const entity = event.message || event.comment || event.notification;
    const item = event.message
      ? { id: `message:${entity.message_id}`, type: "direct_message", message: entity }
      : event.comment
        ? { id: `comment:${entity.comment_id}`, type: entity.parent_comment_id ? "discussion" : "comment", comment: entity }
        : { id: `notification:${entity.notification_id}`, type: "notification", notification: entity };
    Object.assign(item, { account_id: accountId, create_time: entity.create_time || entity.created_at, is_read: entity.is_read, is_new: true });
    if (accountIds().includes(accountId)) {
      mergeItems([item]);
      if (state.view === "inbox") renderList();
      const who = ((entity.sender || entity.author || entity.actor) || {}).user_name || t("a_customer");
      announce(t(`announce.${item.type}`, { who }));
      if (item.type !== "notification") notifyIfMineOrNobodys(accountId, entity, `${who} · ${accountName(accountId)}`, item.id);
    }
    if (state.view === "threads") reloadThreadsSoon();
    if (state.detail) {
      if (event.message && state.detail.onNewMessage) state.detail.onNewMessage(entity);
      if (event.comment && state.detail.onNewComment) state.detail.onNewComment(entity);
    }
    refreshStats(accountId);
  } else if (event.type === "own_message" || event.type === "own_comment") {
    // The account's own message or reply on the platform (sent from any console, or from
    // the platform's app): shown where it is open, in its place; never counted or notified.
    if (state.detail) {
      if (event.message && state.detail.onNewMessage) state.detail.onNewMessage(event.message);
      if (event.comment && state.detail.onNewComment) state.detail.onNewComment(event.comment);
    }
    if (state.view === "threads") reloadThreadsSoon();
  } else if (event.type === "read_state_changed") {
    const read = new Set(event.read_state.item_ids);
    for (const item of state.inbox) if (item.account_id === accountId && read.has(item.id)) item.is_read = true;
    if (state.view === "inbox") renderList();
    refreshStats(accountId);
  } else if (event.type === "conversation_handled" || event.type === "thread_handled") {
    const handled = event.conversation || event.thread;
    if (state.detail && state.detail.onHandled && state.detail.accountId === accountId) state.detail.onHandled(handled);
    const [kind, id] = event.thread ? ["comment", event.thread.thread_id] : ["conversation", event.conversation.conversation_id];
    // A thread not in the list may have come into its filter: the list is loaded again.
    if (state.view === "threads" && !found) {
      if (threads.handled(accountId, kind, id, handled)) renderList();
      else reloadThreadsSoon();
    }
  } else if (event.type === "presence") {
    if (state.detail && state.detail.onPresence && state.detail.accountId === accountId) state.detail.onPresence(event.presence);
    if (state.view === "threads" && event.presence.agent !== state.me.agent) {
      threads.onPresence(accountId, event.presence, () => state.view === "threads" && !found && renderList());
    }
  } else if (event.type === "template_changed") {
    teamTemplates.reload();
  } else if (event.type === "account_assigned") {
    if (state.detail instanceof FleetPanel) state.detail.reload();
  } else if (event.type === "reply_state_changed") {
    replies.apply(event.reply);
  } else if (event.type === "account_status_changed") {
    const index = state.accounts.findIndex((a) => a.account_id === accountId);
    const before = index >= 0 ? state.accounts[index] : null;
    if (index >= 0) state.accounts[index] = event.account;
    else state.accounts.push(event.account);
    renderAccounts();
    // Its first sync (after a login, say) brought what the lists have not loaded yet.
    if ((!before || Number(before.version) === 0) && Number(event.account.version) > 0 && accountIds().includes(accountId)) {
      refreshStats(accountId);
      reloadList();
    }
    if (state.detail instanceof AccountPanel && state.detail.account.account_id === accountId) state.detail.update(event.account);
    if (state.selected === accountId) renderList();
  }
}

// A desktop notification for what is this agent's or nobody's: a message in a conversation
// another agent owns is theirs to hear about.
async function notifyIfMineOrNobodys(accountId, entity, title, tag) {
  if (state.me.agent) {
    try {
      const owner = await ownerOf(accountId, entity);
      if (owner && owner !== state.me.agent) return;
    } catch (error) {
      // Not found yet: tell all the same.
    }
  }
  notifier().notify(title, entity.content || entity.text || "", tag);
}

// Who owns the thread a new message or comment is in ("" for nobody). A new comment is
// its thread's newest, so its thread is among the first comment threads listed.
async function ownerOf(accountId, entity) {
  if (entity.conversation_id) return (await api.conversation(accountId, entity.conversation_id)).conversation.assignee || "";
  const root = entity.parent_comment_id || entity.comment_id;
  const listed = (await api.threads(accountId, { kinds: ["comment"], count: 5 })).threads || [];
  const thread = listed.find((x) => x.thread_id === root);
  return (thread && thread.assignee) || "";
}

let wasOffline = false;

function onConnection(status) {
  const banner = $("connection");
  banner.dataset.state = status;
  if (status === "live" && wasOffline) {
    banner.textContent = t("connection.back");
    setTimeout(() => banner.dataset.state === "live" && renderConnection(), 5000);
    // Events missed while offline were replayed; the lists are refreshed all the same.
    loadAccounts();
    replies.refresh();
  } else {
    renderConnection();
  }
  if (status === "live") wasOffline = false;
  else if (status !== "locked") wasOffline = true;
}

// The connection's state in words (again after a change of language).
function renderConnection() {
  const banner = $("connection");
  const state = banner.dataset.state;
  if (state === "live") banner.textContent = t("connection.live");
  else if (state === "locked") banner.textContent = t("connection.locked");
  else if (state === "offline") banner.textContent = t("connection.offline");
  else banner.textContent = t("connection.connecting");
}

// The master asks for an API key: ask the person for one.
function askForKey(message) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h(
    "form",
    {
      class: "key-form",
      onsubmit: async (event) => {
        event.preventDefault();
        setApiKey(input.value.trim());
        await start();
      },
    },
    h("h2", {}, t("key.title")),
    h("p", { class: "muted" }, message),
    h("label", { for: "api-key" }, t("key.label")),
    input,
    h("button", { type: "submit", class: "primary" }, t("key.use")),
  );
  replace($("detail"), form);
  document.body.classList.add("detail-open");
  replace($("list"), h("li", { class: "empty" }, t("key.locked")));
  input.focus();
}

function forgetKey() {
  setApiKey("");
  window.location.reload();
}

function onEventsLost() {
  announce(t("announce.reloading"));
  loadAccounts().then(reloadList);
}

function announce(text) {
  $("announcer").textContent = text;
}

// ----------------------------------------------------------------- keyboard

function rows() {
  return [...$("list").querySelectorAll("[role=option]")];
}

function focusRow(key) {
  const all = rows();
  const row = all.find((r) => r.dataset.key === key) || all[0];
  if (!row) return;
  for (const r of all) r.tabIndex = r === row ? 0 : -1;
  state.active = row.dataset.key;
  row.focus();
}

function onListKey(event) {
  const all = rows();
  const index = all.indexOf(document.activeElement);
  if (index < 0) return;
  const move = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, Home: -index, End: all.length - 1 - index }[event.key];
  if (move !== undefined) {
    event.preventDefault();
    const next = all[Math.max(0, Math.min(all.length - 1, index + move))];
    focusRow(next.dataset.key);
  } else if (event.key === "Enter" || event.key === "o" || event.key === "r") {
    event.preventDefault();
    const key = all[index].dataset.key;
    const reply = event.key === "r";
    const item = state.inbox.find((i) => itemKey(i) === key);
    if (item) openItem(item, { reply });
    const hit = found && found.hits.find((one) => hitKey(one) === key);
    if (hit) openHit(hit);
    const thread = state.view === "threads" && threads.items.find((x) => threadKey(x) === key);
    if (thread) openThread(thread).then(() => reply && state.detail && state.detail.focusReply());
    const work = state.works.find((w) => `work:${w.account_id}:${w.content_id}` === key);
    if (work) openWork(work).then(() => reply && state.detail && state.detail.focusReply());
  }
}

function onGlobalKey(event) {
  if (event.key === "Escape" && state.detail) {
    event.preventDefault();
    backToList();
  }
}

// -------------------------------------------------------------------- start

let events = null;

// Events that came while the lists were loading: applied once they are loaded.
let loaded = false;
const early = [];

function take(event) {
  if (loaded) onEvent(event);
  else if (early.length < 1000) early.push(event);
  else onEventsLost(); // too much happened meanwhile: load again
}

async function start() {
  closeDetail();
  $("forget-key").hidden = !apiKey();
  loaded = false;
  try {
    // Who this is, first: a console without a key, or with one refused, asks for one
    // before it opens anything else (which would only be refused too).
    state.me = await api.me().catch((error) => {
      if (error instanceof ApiError && error.status === 401) throw error;
      return {};
    });
    if (!events) {
      // Subscribed before the first load, so that nothing happening in between is missed.
      let opened = () => {};
      const open = new Promise((resolve) => (opened = resolve));
      events = new EventStream({
        onEvent: take,
        onState: (status) => {
          opened();
          onConnection(status);
        },
        onLost: onEventsLost,
      });
      events.start();
      await Promise.race([open, new Promise((resolve) => setTimeout(resolve, 3000))]);
    }
    await loadAccounts();
    await teamTemplates.reload();
    $("templates").hidden = !(state.me.scopes || ["reply"]).includes("reply");
    $("fleet").hidden = !(state.me.scopes || ["admin"]).includes("admin");
    await reloadList();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      if (!events) onConnection("locked");
      askForKey(apiKey() ? t("key.refused") : t("key.ask"));
      return;
    }
    replace($("list"), h("li", { class: "error", role: "alert" }, t("load_failed", { error: error.message })));
  }
  loaded = true;
  for (const event of early.splice(0)) onEvent(event);
}

// The language: the browser's unless chosen here (remembered in this browser).
function renderLanguage() {
  const select = $("language");
  replace(select, Object.entries(LOCALES).map(([tag, name]) => h("option", { value: tag, selected: tag === locale() }, name)));
}

$("language").addEventListener("change", async (event) => {
  if (!(await useLocale(event.target.value, { remember: true }))) return; // another was chosen meanwhile
  renderLanguage();
  renderConnection();
  notifier().render();
  renderAccounts();
  renderToolbar();
  renderList();
  if (state.detail && state.detail.render) state.detail.render();
  else if (!state.detail) closeDetail();
});

$("list").addEventListener("keydown", onListKey);
document.addEventListener("keydown", onGlobalKey);
$("forget-key").addEventListener("click", forgetKey);
$("templates").addEventListener("click", openTemplates);
$("fleet").addEventListener("click", openFleet);
$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("search-input").value.trim();
  if (query) runSearch(query);
  else if (found) stopSearch();
});
$("search-input").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && found) {
    event.preventDefault();
    event.stopPropagation();
    stopSearch();
  }
});
for (const button of document.querySelectorAll("[data-view]")) {
  button.addEventListener("click", () => {
    found = null;
    $("search-input").value = "";
    state.view = button.dataset.view;
    closeDetail();
    reloadList();
  });
}
useLocale(preferredLocale()).then(() => {
  renderLanguage();
  notifier();
  start();
});
