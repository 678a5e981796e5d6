"""The console's two languages: both catalogues hold the same messages (each plural with
the forms its language needs), every message the code asks for is in them, and none in
them is left unused."""

from __future__ import annotations

import json
import re
from pathlib import Path

WEB = Path(__file__).parent.parent / "clients" / "web"
PLURAL_FORMS = {"zero", "one", "two", "few", "many", "other"}
LOCALES = ("en", "zh-CN")


def _catalogue(locale: str) -> dict[str, str]:
    return dict(json.loads((WEB / f"locale-{locale}.json").read_text()))


def _base(key: str) -> str:
    head, _, tail = key.rpartition(".")
    return head if tail in PLURAL_FORMS else key


def _code() -> str:
    return "\n".join(path.read_text() for path in sorted(WEB.glob("*.js")))


def test_both_catalogues_have_every_message() -> None:
    bases = {locale: {_base(key) for key in _catalogue(locale)} for locale in LOCALES}
    assert bases["en"] == bases["zh-CN"], {
        "only in en": sorted(bases["en"] - bases["zh-CN"]),
        "only in zh-CN": sorted(bases["zh-CN"] - bases["en"]),
    }
    for locale in LOCALES:
        catalogue = _catalogue(locale)
        plurals = {_base(key) for key in catalogue if _base(key) != key}
        assert all(f"{base}.other" in catalogue for base in plurals), locale
        assert not plurals & set(catalogue), f"{locale}: a message both plural and not"
        assert all(text.strip() for text in catalogue.values()), f"{locale}: an empty message"
    # English needs "one" beside "other"; Chinese has no plural forms.
    english = _catalogue("en")
    assert all(f"{_base(k)}.one" in english for k in english if k.endswith(".other"))


def test_every_message_the_code_asks_for_is_there_and_none_is_left_unused() -> None:
    code = _code()
    page = (WEB / "index.html").read_text()
    asked = set(re.findall(r"\bt\(\"([^\"]+)\"", code))
    asked |= set(re.findall(r"data-i18n(?:-label|-title|-placeholder)?=\"([^\"]+)\"", page))
    # Keys built from a value (`state.${state}`): their prefix.
    prefixes = set(re.findall(r"\bt\(`([\w.]+)\.\$\{", code))
    # Keys handed to t() from a table (threads.js's filters).
    asked |= set(re.findall(r"\[\"[\w-]*\", \"(\w+\.[\w.]+)\"\]", code))
    catalogue = {_base(key) for key in _catalogue("en")}
    assert asked - catalogue == set(), "asked for, not in the catalogues"
    assert all(any(key.startswith(f"{prefix}.") for key in catalogue) for prefix in prefixes), prefixes
    unused = {key for key in catalogue if key not in asked and not any(key.startswith(f"{p}.") for p in prefixes)}
    assert unused == set(), "in the catalogues, asked for by nothing"


def test_placeholders_agree_between_the_languages() -> None:
    english, chinese = _catalogue("en"), _catalogue("zh-CN")
    for key, text in chinese.items():
        twin = english.get(key) or english.get(f"{_base(key)}.other", "")
        assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", twin)), key
