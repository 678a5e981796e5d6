"use strict";
// The notifications page: likes, follows, mentions and system notices, loaded as scrolled.
(function () {
  const list = document.getElementById("notices");
  let cursor = 0;
  const next = pageOnScroll(async () => {
    const data = await platformGet("/aweme/v1/web/notice/", { cursor, count: 10 });
    for (const notice of data.notice_list_v2) {
      const item = element("li", `${notice.from_user.nickname} ${notice.content}`, "notice");
      item.dataset.nid = notice.nid;
      list.append(item);
    }
    cursor = data.cursor;
    return data.has_more;
  });
  next();
})();
