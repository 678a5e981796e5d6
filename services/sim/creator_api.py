"""The JSON the creator center's pages load, as the simulated platform answers it.

Every list pages with an offset `cursor` and `count`, newest first, as the platform's do,
so that a list read while it grows shows an item twice rather than skipping one. A
request without a session answers status_code 8 (not logged in).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .platform_data import NOT_LOGGED_IN, OK, Refused

if TYPE_CHECKING:
    from .app import Simulator

_MAX_COUNT = 50


def _paged(items: list[Any], request: Request, default_count: int) -> tuple[list[Any], int, bool]:
    try:
        cursor = max(0, int(request.query_params.get("cursor", "0")))
        count = min(_MAX_COUNT, max(1, int(request.query_params.get("count", str(default_count)))))
    except ValueError:
        cursor, count = 0, default_count
    page = items[cursor : cursor + count]
    return page, cursor + len(page), cursor + len(page) < len(items)


def routes(simulator: Simulator) -> list[Route]:
    platform = simulator.platform

    def api(handler: Callable[[Request, str], Awaitable[dict[str, Any]]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            await simulator.misbehave()
            uid = simulator.uid_of(request)
            path = request.url.path
            if uid is None:
                return simulator.json({"status_code": NOT_LOGGED_IN, "status_msg": "用户未登录"}, path)
            try:
                return simulator.json({"status_code": OK} | await handler(request, uid), path)
            except Refused as refused:
                return simulator.json({"status_code": refused.status_code, "status_msg": refused.status_msg}, path)

        return endpoint

    async def user_info(request: Request, uid: str) -> dict[str, Any]:
        return {"user": platform.accounts[uid].profile()}

    async def works(request: Request, uid: str) -> dict[str, Any]:
        items = sorted(platform.accounts[uid].works, key=lambda w: -w["create_time"])
        page, cursor, has_more = _paged(items, request, 10)
        return {"item_info_list": page, "cursor": cursor, "has_more": has_more, "total_count": len(items)}

    async def comments(request: Request, uid: str) -> dict[str, Any]:
        item_id = request.query_params.get("item_id", "")
        top = [c for c in platform.accounts[uid].comments.values() if c["aweme_id"] == item_id and c["reply_id"] == "0"]
        page, cursor, has_more = _paged(sorted(top, key=lambda c: (-c["create_time"], c["cid"])), request, 10)
        return {"comments": page, "cursor": cursor, "has_more": has_more, "total": len(top)}

    async def replies(request: Request, uid: str) -> dict[str, Any]:
        parent = request.query_params.get("comment_id", "")
        found = [c for c in platform.accounts[uid].comments.values() if c["reply_id"] == parent]
        page, cursor, has_more = _paged(sorted(found, key=lambda c: (c["create_time"], c["cid"])), request, 3)
        return {"comments": page, "cursor": cursor, "has_more": has_more, "total": len(found)}

    async def publish(request: Request, uid: str) -> dict[str, Any]:
        body = await request.json()
        comment = platform.reply(
            uid,
            str(body.get("aweme_id", "")),
            str(body.get("reply_id", "")),
            str(body.get("text", "")),
            int(time.time()),
        )
        return {"comment": comment}

    async def conversations(request: Request, uid: str) -> dict[str, Any]:
        items = sorted(platform.accounts[uid].conversations.values(), key=lambda c: -c["update_time"])
        page, cursor, has_more = _paged(items, request, 20)
        return {"conversations": page, "cursor": cursor, "has_more": has_more}

    async def history(request: Request, uid: str) -> dict[str, Any]:
        conversation_id = request.query_params.get("conversation_id", "")
        found = [m for m in platform.accounts[uid].messages.values() if m["conversation_id"] == conversation_id]
        page, cursor, has_more = _paged(sorted(found, key=lambda m: (-m["create_time"], m["server_id"])), request, 20)
        return {"messages": page, "cursor": cursor, "has_more": has_more}

    async def send(request: Request, uid: str) -> dict[str, Any]:
        body = await request.json()
        message = platform.send(uid, str(body.get("conversation_id", "")), str(body.get("text", "")), int(time.time()))
        return {"message": message}

    async def notices(request: Request, uid: str) -> dict[str, Any]:
        items = sorted(platform.accounts[uid].notices.values(), key=lambda n: (-n["create_time"], n["nid"]))
        page, cursor, has_more = _paged(items, request, 10)
        return {"notice_list_v2": page, "cursor": cursor, "has_more": has_more, "total": len(items)}

    return [
        Route("/aweme/v1/creator/user/info/", api(user_info)),
        Route("/aweme/v1/creator/item/list/", api(works)),
        Route("/aweme/v1/web/comment/list/select/", api(comments)),
        Route("/aweme/v1/web/comment/list/reply/", api(replies)),
        Route("/aweme/v1/web/comment/publish/", api(publish), methods=["POST"]),
        Route("/aweme/v1/im/conversation/list/", api(conversations)),
        Route("/aweme/v1/im/message/history/", api(history)),
        Route("/aweme/v1/im/message/send/", api(send), methods=["POST"]),
        Route("/aweme/v1/web/notice/", api(notices)),
    ]
