"use strict";
// The chat page: the conversation list (loaded as it is scrolled), a conversation opened in
// place with its whole history, and the platform's push socket, which brings every new
// message to the open page as it is stored.
(function () {
  const list = document.getElementById("conversations");
  const chat = document.getElementById("chat");
  const wanted = new URLSearchParams(window.location.search).get("conversation_id");
  const known = new Map(); // conversation id -> its list item
  let open = null; // the conversation shown

  function preview(conversation) {
    const last = conversation.last_message ? conversation.last_message.content : "";
    return `${conversation.participant.nickname}：${last}`;
  }

  function listItem(conversation) {
    let item = known.get(conversation.conversation_id);
    if (!item) {
      item = element("li", undefined, "conversation");
      item.dataset.conversationId = conversation.conversation_id;
      const link = element("a");
      link.href = `?conversation_id=${encodeURIComponent(conversation.conversation_id)}`;
      link.addEventListener("click", (event) => { event.preventDefault(); show(item.conversation); });
      item.append(link);
      known.set(conversation.conversation_id, item);
    }
    item.conversation = conversation;
    item.querySelector("a").textContent = preview(conversation);
    return item;
  }

  function messageItem(message) {
    const item = element("li", message.content, message.is_self ? "message own" : "message");
    item.dataset.serverId = message.server_id;
    return item;
  }

  async function show(conversation) {
    open = conversation;
    window.history.replaceState(null, "", `?conversation_id=${encodeURIComponent(conversation.conversation_id)}`);
    chat.dataset.loaded = "partial";
    chat.replaceChildren(element("h2", conversation.participant.nickname));
    const history = element("ul", undefined, "history");
    chat.append(history);
    let cursor = 0, hasMore = true;
    while (hasMore) {
      const data = await platformGet("/aweme/v1/im/message/history/", {
        conversation_id: conversation.conversation_id, cursor, count: 20,
      });
      if (open !== conversation) return; // another one was opened meanwhile
      for (const message of data.messages) {
        if (!history.querySelector(`[data-server-id="${message.server_id}"]`)) history.prepend(messageItem(message));
      }
      cursor = data.cursor; hasMore = data.has_more;
    }
    const input = element("textarea");
    input.setAttribute("aria-label", "发送私信");
    const button = element("button", "发送");
    const status = element("span", "", "status");
    button.addEventListener("click", async () => {
      button.disabled = true;
      const result = await platformPost("/aweme/v1/im/message/send/", {
        conversation_id: conversation.conversation_id, text: input.value,
      });
      status.textContent = result.status_code === 0 ? "发送成功" : result.status_msg;
      button.disabled = false;
      if (result.status_code === 0) { received(result.message, null); input.value = ""; }
    });
    chat.append(input, button, status);
    chat.dataset.loaded = "all";
  }

  function received(message, conversation) {
    if (conversation) list.prepend(listItem(conversation));
    if (!open || open.conversation_id !== message.conversation_id) return;
    const history = chat.querySelector(".history");
    if (history && !history.querySelector(`[data-server-id="${message.server_id}"]`)) history.append(messageItem(message));
  }

  function connect() {
    const socket = new WebSocket(`${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}/ws/im`);
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "new_message") received(frame.message, frame.conversation);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4001) window.location.href = "/login";
      else setTimeout(connect, 1000);
    });
  }

  let cursor = 0;
  const next = pageOnScroll(async () => {
    const data = await platformGet("/aweme/v1/im/conversation/list/", { cursor, count: 20 });
    for (const conversation of data.conversations) {
      list.append(listItem(conversation));
      if (conversation.conversation_id === wanted && !open) await show(conversation);
    }
    cursor = data.cursor;
    return data.has_more;
  });
  connect();
  next();
})();
