"""The team's quick replies: what a template may hold, and how its placeholders are filled.
One definition for every store backend (memory/store.py, redis/templates.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from imsync.v1 import entities_pb2 as e
from imsync.v1 import events_pb2 as ev
from services.master.model.errors import InvalidArgument
from services.master.model.written import check_written, without_controls

MAX_NAME = 40
MAX_TEXT = 2000
MAX_TEMPLATES = 500
PLACEHOLDERS = ("customer_name", "work_title", "account_name", "agent_name")
_PLACEHOLDER = re.compile(r"\{([^{}\s]*)\}")


def check(name: str, text: str) -> tuple[str, str]:
    """A template's name and text as kept; InvalidArgument naming the field otherwise."""
    name = name.strip()
    if not name:
        raise InvalidArgument("required", field="name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidArgument(f"1 to {MAX_NAME} printable characters", field="name")
    check_written(text, "text", MAX_TEXT)
    unknown = sorted({found for found in _PLACEHOLDER.findall(text) if found not in PLACEHOLDERS})
    if unknown:
        raise InvalidArgument(
            f"unknown placeholder {{{unknown[0]}}}; known: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS),
            field="text",
        )
    return name, text


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value, without control characters (a
    name on the platform may hold one; the reply would be refused for it); a placeholder
    the target cannot fill (a work's title in a private conversation) is InvalidArgument,
    naming it."""

    def fill(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in PLACEHOLDERS:
            return found.group(0)
        if name not in values:
            raise InvalidArgument(f"{{{name}}} cannot be filled for this target", field="target")
        return without_controls(values[name])

    return _PLACEHOLDER.sub(fill, text)


def matching(templates: Iterable[e.Template], query: str) -> list[e.Template]:
    """The templates whose name or text holds `query` (any case), by name."""
    wanted = query.strip().casefold()
    found = [t for t in templates if not wanted or wanted in t.name.casefold() or wanted in t.text.casefold()]
    return sorted(found, key=lambda t: (t.name.casefold(), t.template_id))


def event_of(template: e.Template) -> ev.Event:
    """A team-wide event: it names no account."""
    event = ev.Event(type=ev.EVENT_TYPE_TEMPLATE_CHANGED, template=template)
    if template.HasField("update_time"):
        event.create_time.CopyFrom(template.update_time)
    else:
        event.create_time.GetCurrentTime()
    return event
