"""An HTTP request bound to its RPC's request message, as grpc-gateway's runtime binds
one: the path's variables, then the body (a field of it, or all of it), then the query
parameters for the fields neither set."""

from __future__ import annotations

from urllib.parse import parse_qsl

from google.protobuf.message import Message
from starlette.requests import Request

from . import legacy
from .answers import _bounded_body
from .binding import bind_body, bind_path, bind_query, fill_update_mask
from .marshalers import Profile
from .routes import Route

# Query parameters of the gateway's own in the IM profile (not fields of any request).
_IM_PARAMS = frozenset({legacy.PARAM})


class BodyTooLarge(Exception):
    """The request's body is over answers.MAX_BODY_BYTES (413)."""


async def bind_http(route: Route, variables: dict[str, str], request: Request, profile: Profile) -> Message:
    """The request message; raises binding.BindingError naming what is wrong, or BodyTooLarge."""
    message = route.request_type()
    mask: list[str] | None = None
    bind_path(message, variables, profile.style)
    bound = set(variables)
    if route.body:
        body = await _bounded_body(request)
        if body is None:
            raise BodyTooLarge
        mask = bind_body(
            message,
            route.body,
            body,
            profile.style,
            content_type=request.headers.get("content-type", ""),
            strict=profile.strict,
            patch=request.method == "PATCH",
            rewrite=legacy.request_body if profile.envelope else None,
        )
        bound.add(route.body)
    if route.body != "*":
        _bind_query(message, request.scope.get("query_string", b""), bound, profile)
    if mask is not None:
        fill_update_mask(message, mask)
    return message


def bind_get(route: Route, variables: dict[str, str], query: bytes, profile: Profile) -> Message:
    """bind_http of a request without a body, from its path's variables and its query."""
    message = route.request_type()
    bind_path(message, variables, profile.style)
    _bind_query(message, query, set(variables), profile)
    return message


def _bind_query(message: Message, query: bytes, bound: set[str], profile: Profile) -> None:
    bind_query(
        message,
        parse_qsl(query.decode("latin-1"), keep_blank_values=True),
        bound,
        profile.style,
        split_commas=profile.split_commas,
        strict=profile.strict,
        known=_IM_PARAMS if profile.envelope else frozenset(),
    )
