"use strict";
// The comments page: a work's comments, loaded as the list is scrolled; under each, its
// replies, a page per click of a button that goes away once clicked (a new one follows
// while there are more), as the platform's page does.
(function () {
  const list = document.getElementById("comments");
  const picker = document.getElementById("work");
  const itemId = new URLSearchParams(window.location.search).get("item_id");

  function replyBox(comment) {
    const box = element("div", undefined, "reply-box");
    const input = element("textarea");
    input.setAttribute("aria-label", "回复评论");
    const button = element("button", "回复");
    const status = element("span", "", "status");
    button.addEventListener("click", async () => {
      button.disabled = true;
      const result = await platformPost("/aweme/v1/web/comment/publish/", {
        aweme_id: comment.aweme_id, reply_id: comment.cid, text: input.value,
      });
      status.textContent = result.status_code === 0 ? "回复成功" : result.status_msg;
      button.disabled = false;
      if (result.status_code === 0) input.value = "";
    });
    box.append(input, button, status);
    return box;
  }

  function moreButton(comment, replies, cursor, label) {
    const more = element("button", label, "more-replies");
    more.type = "button";
    more.addEventListener("click", async () => {
      more.remove();
      const data = await platformGet("/aweme/v1/web/comment/list/reply/", {
        item_id: comment.aweme_id, comment_id: comment.cid, cursor, count: cursor === 0 ? 3 : 10,
      });
      data.comments.forEach((reply) => render(reply, replies));
      if (data.has_more) replies.after(moreButton(comment, replies, data.cursor, "展开更多回复"));
    });
    return more;
  }

  function render(comment, target) {
    const item = element("li", undefined, comment.reply_id === "0" ? "comment" : "reply");
    item.dataset.cid = comment.cid;
    item.append(element("b", comment.user.nickname), element("span", `：${comment.text}`));
    if (comment.reply_id === "0") {
      const replies = element("ul", undefined, "replies");
      item.append(replyBox(comment), replies);
      if (comment.reply_comment_total > 0) replies.after(moreButton(comment, replies, 0, `展开 ${comment.reply_comment_total} 条回复`));
    }
    target.append(item);
  }

  async function start(work) {
    let cursor = 0;
    const next = pageOnScroll(async () => {
      const data = await platformGet("/aweme/v1/web/comment/list/select/", { item_id: work, cursor, count: 10 });
      data.comments.forEach((comment) => render(comment, list));
      cursor = data.cursor;
      return data.has_more;
    });
    await next();
  }

  (async () => {
    const works = await platformGet("/aweme/v1/creator/item/list/", { cursor: 0, count: 50 });
    for (const work of works.item_info_list) {
      const option = element("option", work.title);
      option.value = work.item_id;
      picker.append(option);
    }
    picker.addEventListener("change", () => { window.location.search = `?item_id=${encodeURIComponent(picker.value)}`; });
    const chosen = itemId || (works.item_info_list[0] && works.item_info_list[0].item_id);
    if (chosen) { picker.value = chosen; await start(chosen); } else document.body.dataset.loaded = "all";
  })();
})();
