"""SearchService: full-text search (model/search.py) in one account or in every account
the caller's key may read, newest first, keyset-paged."""

from __future__ import annotations

import base64
import binascii
import heapq

from imsync.v1 import search_pb2 as srch
from imsync.v1 import search_pb2_grpc
from services.master.api.queries import Context, Guarded
from services.master.auth.api_keys import Access
from services.master.model import search
from services.master.model.errors import InvalidArgument
from services.master.model.store import MAX_PAGE_SIZE, page_size

# The API's kinds as the stores name them.
KIND_CODES = {srch.SEARCH_KIND_MESSAGE: "m", srch.SEARCH_KIND_COMMENT: "c", srch.SEARCH_KIND_CONTENT: "w"}
CODE_OF_KIND = {kind: code for code, kind in KIND_CODES.items()}


def _cursor(text: str) -> bytes:
    if not text:
        return b""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument("not a cursor this search gave", field="cursor") from None
    if len(key) < 13:
        raise InvalidArgument("not a cursor this search gave", field="cursor")
    return key


class SearchServicer(Guarded, search_pb2_grpc.SearchServiceServicer):
    async def Search(self, request: srch.SearchRequest, context: Context) -> srch.SearchResponse:
        async def compute(access: Access) -> srch.SearchResponse:
            wanted = search.check_query(request.query)
            for position, code in enumerate(request.kinds):
                if code not in KIND_CODES:
                    raise InvalidArgument("one of SEARCH_KIND_MESSAGE, _COMMENT, _CONTENT", field=f"kinds[{position}]")
            kinds = sorted({KIND_CODES[code] for code in request.kinds}) or list(search.KINDS)
            count = page_size(request.count)
            after = _cursor(request.cursor)
            accounts = (
                [self._account(access, request.account_id)] if request.account_id else await self._readable(access)
            )
            # Each account's page, merged newest first. Where an account stopped short
            # (its scan bound), nothing after that point may be passed over: the page ends there.
            found: list[tuple[bytes, str, search.Hit]] = []
            stops: list[bytes] = []
            for account_id in accounts:
                hits, last = await self._store.search(account_id, wanted, kinds, after, count)
                found += [(hit.key, account_id, hit) for hit in hits]
                if last:
                    stops.append(last)
            merged = heapq.nsmallest(count + 1, found, key=lambda item: (item[0], item[1]))
            end = min(stops) if stops else None
            if len(merged) > count:
                end = min(end, merged[count - 1][0]) if end is not None else merged[count - 1][0]
            shown = [item for item in merged[:count] if end is None or item[0] <= end]
            response = srch.SearchResponse(has_more=end is not None)
            if end is not None:
                response.cursor = base64.urlsafe_b64encode(end).decode().rstrip("=")
            for _, account_id, hit in shown:
                out = response.hits.add(
                    account_id=account_id,
                    kind=CODE_OF_KIND[hit.kind],
                    field=hit.field,
                    before=hit.before,
                    matched=hit.matched,
                    after=hit.after,
                )
                {"m": out.message, "c": out.comment, "w": out.content}[hit.kind].CopyFrom(hit.view)
            return response

        return await self._answer(context, compute)

    async def _readable(self, access: Access) -> list[str]:
        accounts: list[str] = []
        cursor = ""
        while True:
            page = await self._store.list_accounts(
                status=0, platform=0, cursor=cursor, count=MAX_PAGE_SIZE, only=access.accounts
            )
            accounts += [account.account_id for account in page.items]
            if not page.has_more:
                return accounts
            cursor = page.cursor
