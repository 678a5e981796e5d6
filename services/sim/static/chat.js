"use strict";
(function () {
  const list = document.getElementById("conversations");
  const chat = document.getElementById("chat");
  const wanted = new URLSearchParams(window.location.search).get("conversation_id");

  async function open(conversation) {
    chat.replaceChildren(element("h2", conversation.participant.nickname));
    const history = element("ul", undefined, "history");
    let cursor = 0, hasMore = true;
    while (hasMore) {
      const data = await platformGet("/aweme/v1/im/message/history/", {
        conversation_id: conversation.conversation_id, cursor, count: 20,
      });
      for (const message of data.messages) {
        const item = element("li", message.content, message.is_self ? "message own" : "message");
        item.dataset.serverId = message.server_id;
        history.prepend(item);
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
      if (result.status_code === 0) {
        history.append(element("li", result.message.content, "message own"));
        input.value = "";
      }
    });
    chat.append(history, input, button, status);
  }

  (async () => {
    let cursor = 0, hasMore = true;
    while (hasMore) {
      const data = await platformGet("/aweme/v1/im/conversation/list/", { cursor, count: 20 });
      for (const conversation of data.conversations) {
        const item = element("li", undefined, "conversation");
        item.dataset.conversationId = conversation.conversation_id;
        const link = element("a", `${conversation.participant.nickname}：${conversation.last_message ? conversation.last_message.content : ""}`);
        link.href = `?conversation_id=${encodeURIComponent(conversation.conversation_id)}`;
        item.append(link);
        list.append(item);
        if (conversation.conversation_id === wanted) await open(conversation);
      }
      cursor = data.cursor; hasMore = data.has_more;
    }
    document.body.dataset.loaded = "all";
  })();
})();
