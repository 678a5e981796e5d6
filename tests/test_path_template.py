from __future__ import annotations

import pytest

from services.gateway.path_template import TemplateError, parse


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/api/im/accounts", "/api/im/accounts", {}),
        ("/api/im/accounts/{account_id}", "/api/im/accounts/douyin-1", {"account_id": "douyin-1"}),
        # Conversation ids hold colons; without a verb in the template they are plain text.
        (
            "/api/im/conversations/{conversation_id}/read",
            "/api/im/conversations/0:1:123:456/read",
            {"conversation_id": "0:1:123:456"},
        ),
        ("/v1/{name=accounts/*}", "/v1/accounts/a1", {"name": "accounts/a1"}),
        ("/v1/{name=accounts/*}:markRead", "/v1/accounts/a1:markRead", {"name": "accounts/a1"}),
        ("/v1/{a.b}/x", "/v1/%E4%BD%A0%20ok/x", {"a.b": "你 ok"}),
        ("/v1/files/{path=**}", "/v1/files/a/b/c", {"path": "a/b/c"}),
        ("/v1/*/items", "/v1/anything/items", {}),
    ],
)
def test_match(template: str, path: str, expected: dict[str, str]) -> None:
    assert parse(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/api/im/accounts/{account_id}", "/api/im/accounts"),
        ("/api/im/accounts/{account_id}", "/api/im/accounts/a/b"),
        ("/v1/{name=accounts/*}:markRead", "/v1/accounts/a1"),
        ("/v1/{name=accounts/*}", "/v1/users/a1"),
    ],
)
def test_no_match(template: str, path: str) -> None:
    assert parse(template).match(path) is None


def test_encoded_slash_stays_inside_one_segment() -> None:
    assert parse("/v1/items/{id}").match("/v1/items/a%2Fb") == {"id": "a/b"}


def test_literals_and_verb_are_counted() -> None:
    template = parse("/v1/{name=accounts/*}/messages:markRead")
    assert (template.literals, template.verb, template.variables) == (3, "markRead", ("name",))


@pytest.mark.parametrize("template", ["api/im", "/v1/{a", "/v1/{1bad}", "/v1/a*b"])
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(TemplateError):
        parse(template)
