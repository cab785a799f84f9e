"""Whether a new version of a list may replace the one in force.

A ban must not lapse because a list broke quietly: a feed that serves its error page, a file
truncated by a full disk or overwritten with random bytes, a hand-kept national list emptied by
mistake, or a typo that leaves `com` on a line of its own. Each such version still "parses" (the
formats are lenient on purpose), so every new version of every list — catalogue entry, file,
directory, feed, RPZ zone — is judged here before it is used, and a refused one leaves the last
good version in force. The rules work for a 5-line file as for a 5M-line feed: they compare
shares and the previous size, never fixed counts alone.

Pure: the caller passes the bytes it read and the counts its parse produced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_SHRINK: Final = 0.5
"""A new version with fewer than half the rules of the one in force is refused by default."""

MOSTLY_INVALID: Final = 0.5
"""More than this share of a version's rule lines invalid: it is not a list of this format."""

SNIFF_BYTES: Final = 64 << 10
MAX_JSON_SNIFF: Final = 16 << 20
_TEXT_CONTROLS: Final = frozenset(b"\t\n\r\f\v")
_ODD_CONTROLS: Final = bytes(byte for byte in range(0x20) if byte not in _TEXT_CONTROLS)
_HTML = re.compile(rb"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]|<title>", re.I)


LIFTED_BY_ACCEPT: Final = frozenset({"empty", "shrink"})
"""The refusals an operator can overrule (`accept`): the others say the text is no list."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a version of a list is refused: `reason` is a short, stable code for metrics and
    alerts; `detail` is the sentence an operator reads."""

    reason: str  # binary | html | json | xml | empty | invalid | shrink | tld_rule
    detail: str


def sniff(data: bytes) -> str | None:
    """What `data` is when it is plainly not a list: ``binary``, ``html``, ``json`` or ``xml``.

    Only the start is read, except for JSON, where a leading ``[`` is also how an adblock list
    starts (``[Adblock Plus 2.0]``), so the whole text must parse as JSON to count as JSON.
    """
    head = data[:SNIFF_BYTES]
    if b"\x00" in head:
        return "binary"
    text = head.decode("utf-8", errors="replace")
    # A byte below 0x20 is never part of a multi-byte character: counted in the bytes, each
    # is one character of `text` (one C-level pass instead of a Python loop over 64 KiB).
    odd = text.count("\ufffd") + len(head) - len(head.translate(None, _ODD_CONTROLS))
    if text and odd > len(text) // 100:
        return "binary"
    start = text.lstrip("\ufeff \t\r\n")
    if start.startswith("<?xml"):
        return "html" if _HTML.search(head) else "xml"
    if _HTML.search(head[:4096]):
        return "html"
    if start.startswith("{"):
        return "json"
    if start.startswith("[") and len(data) <= MAX_JSON_SNIFF:
        try:
            json.loads(data)
        except ValueError:
            return None
        return "json"
    return None


_WHAT: Final = {
    "binary": "binary data",
    "html": "an HTML page (an error or login page?)",
    "json": "a JSON document",
    "xml": "an XML document",
}


def judge(
    *,
    content: str | None,
    accepted: int,
    invalid: int,
    rule_lines: int,
    previous: int | None,
    max_shrink: float = DEFAULT_MAX_SHRINK,
    tld_rules: Iterable[str] = (),
    allow_tld_rules: bool = False,
    accept: bool = False,
) -> Refusal | None:
    """The refusal of one new version of a list, or None when it may replace the one in force.

    `content` is what `sniff` said of its bytes; `accepted`, `invalid` and `rule_lines` come
    from its parse; `previous` is how many rules the version in force has (None: there is
    none). `accept` is the operator saying that this version is meant (`dnswarden reload
    --accept`): it lifts the emptiness and shrink rules, never the ones that say the text is
    not a list at all.
    """
    if content is not None:
        return Refusal(content, f"this is {_WHAT[content]}, not a list")
    if rule_lines and invalid * 1.0 > MOSTLY_INVALID * rule_lines:
        return Refusal(
            "invalid",
            f"{invalid} of its {rule_lines} rule lines are invalid: this is not a list of its "
            "format",
        )
    single_labels = sorted(set(tld_rules))
    if single_labels and not allow_tld_rules:
        shown = ", ".join(repr(label) for label in single_labels[:5])
        more = f" and {len(single_labels) - 5} more" if len(single_labels) > 5 else ""
        return Refusal(
            "tld_rule",
            f"single-label rule {shown}{more} would block a whole top-level domain "
            "(set allow_tld_rules: true on the source if that is meant)",
        )
    if accept:
        return None
    if accepted == 0 and previous:
        return Refusal("empty", f"it has no rules, where the version in force has {previous}")
    if previous and accepted < previous * (1.0 - max_shrink):
        return Refusal(
            "shrink",
            f"it has {accepted} rules where the version in force has {previous}, a shrink of "
            f"{1 - accepted / previous:.0%} (max_shrink {max_shrink:.0%})",
        )
    return None


def rule_line(data: bytes, label: str) -> int | None:
    """The number (from 1) of the first line of `data` that writes the single-label rule
    `label` (``com``, ``||com^``, ``0.0.0.0 com``, ``*.com``), for a ``file:line`` report;
    None when no line does (an RPZ owner written in full, say). Comments are skipped."""
    pattern = re.compile(
        rb"(?<![\w.*-])(?:\*\.)?" + re.escape(label.encode()) + rb"\.?(?![\w.-])", re.I
    )
    for match in pattern.finditer(data):
        start = data.rfind(b"\n", 0, match.start()) + 1
        before = data[start : match.start()]
        if b"#" in before or before.lstrip().startswith((b"!", b";")):
            continue
        return data.count(b"\n", 0, start) + 1
    return None

