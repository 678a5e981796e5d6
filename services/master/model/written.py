"""Text a person writes through the API: a reply, a note, a template. It goes to a
customer's chat and to teammates' screens, and into whatever reads the API, so beside its
length it may hold no control characters but line breaks and tabs: a NUL, a bell or a
terminal's escape sequence is refused with the field named, not sent on. What the platform
wrote (a customer's name filled into a template) has them taken out instead: the person
sending could not mend it."""

from __future__ import annotations

import re

from services.master.model.errors import InvalidArgument

# C0 but tab, line feed and carriage return; DEL; C1.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_written(text: str, field: str, limit: int) -> str:
    """`text` as given; InvalidArgument naming `field` when it is blank, longer than `limit`
    characters, or holds a control character."""
    if not text.strip():
        raise InvalidArgument("must not be empty", field=field)
    if len(text) > limit:
        raise InvalidArgument(f"at most {limit} characters", field=field)
    control = _CONTROL.search(text)
    if control is not None:
        raise InvalidArgument(
            f"control character U+{ord(control.group()):04X} at {control.start()}: only line breaks and tabs may stand in it",
            field=field,
        )
    return text


def without_controls(text: str) -> str:
    """`text` without the control characters check_written refuses (the platform's own
    words, put into text a person writes)."""
    return _CONTROL.sub("", text)
