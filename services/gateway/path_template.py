"""google.api.http path templates: parsing and matching.

Template = "/" Segments [ Verb ] ;
Segments = Segment { "/" Segment } ;
Segment  = "*" | "**" | LITERAL | Variable ;
Variable = "{" FieldPath [ "=" Segments ] "}" ;
Verb     = ":" LITERAL ;
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PathTemplate:
    template: str
    regex: re.Pattern[str]
    # Field paths of the variables, in the order of the regex's groups.
    variables: tuple[str, ...]
    # Literal segments: a template with more of them wins over one with fewer.
    literals: int
    verb: str

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Matches a raw (still percent-encoded) path; returns the decoded variables."""
        found = self.regex.fullmatch(raw_path)
        if found is None:
            return None
        return {
            name: "/".join(unquote(part) for part in value.split("/"))
            for name, value in zip(self.variables, found.groups(), strict=True)
        }


def _split_outside_braces(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise TemplateError("unbalanced braces")
    parts.append("".join(current))
    return parts


def _segment_regex(segment: str) -> tuple[str, int]:
    if segment == "*":
        return "[^/]+", 0
    if segment == "**":
        return ".+", 0
    if not segment or any(char in segment for char in "{}*"):
        raise TemplateError(f"bad segment {segment!r}")
    return re.escape(segment), 1


def parse(template: str) -> PathTemplate:
    if not template.startswith("/"):
        raise TemplateError(f"{template!r} must start with '/'")
    body, verb = template[1:], ""
    last = _split_outside_braces(body, "/")[-1]
    if ":" in last and "}" not in last.rpartition(":")[2]:
        body, _, verb = body.rpartition(":")
    pattern: list[str] = []
    variables: list[str] = []
    literals = 0
    for segment in _split_outside_braces(body, "/"):
        if segment.startswith("{") and segment.endswith("}"):
            name, _, inner = segment[1:-1].partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
                raise TemplateError(f"bad variable {name!r} in {template!r}")
            parts = [_segment_regex(part) for part in (inner or "*").split("/")]
            pattern.append("(" + "/".join(regex for regex, _ in parts) + ")")
            literals += sum(count for _, count in parts)
            variables.append(name)
        else:
            regex, count = _segment_regex(segment)
            pattern.append(regex)
            literals += count
    suffix = re.escape(":" + verb) if verb else ""
    return PathTemplate(template, re.compile("/" + "/".join(pattern) + suffix), tuple(variables), literals, verb)
