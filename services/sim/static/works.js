"use strict";
(function () {
  const list = document.getElementById("works");
  let cursor = 0;
  const next = pageOnScroll(async () => {
    const data = await platformGet("/aweme/v1/creator/item/list/", { cursor, count: 10 });
    for (const work of data.item_info_list) {
      const item = element("li", undefined, "work");
      item.dataset.itemId = work.item_id;
      const link = element("a", `${work.title}（${work.comment_count} 条评论）`);
      link.href = `/creator-micro/interactive/comment?item_id=${encodeURIComponent(work.item_id)}`;
      item.append(link);
      list.append(item);
    }
    cursor = data.cursor;
    return data.has_more;
  });
  next();
})();
