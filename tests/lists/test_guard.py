"""Tests for lists/guard.py: what a new version of a list must be to replace the one in force."""

from __future__ import annotations

import random

import pytest

from resolver.lists.guard import DEFAULT_MAX_SHRINK, Refusal, judge, sniff

HTML_404 = b"""<!DOCTYPE html>
<html lang="en">
<head><title>404 Not Found</title></head>
<body>
<h1>Not Found</h1>
<p>The requested URL was not found on this server.</p>
<hr>
<address>Apache/2.4.57 (Debian) Server at lists.example.gov Port 443</address>
</body>
</html>
"""


def random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"tiktok.com\nbytedance.com\n", None),
        (b"# comment\n0.0.0.0 tiktok.com\n127.0.0.1 localhost\n", None),
        (b"[Adblock Plus 2.0]\n||tiktok.com^\n", None),  # starts like JSON, is not
        (b"\xef\xbb\xbftiktok.com\n", None),  # a byte-order mark is text
        ("# Liste nationale \u2014 d\u00e9cision du 10 mars\ntiktok.com\n".encode(), None),
        (b"", None),
        (random_bytes(20000), "binary"),
        (b"tiktok.com\n\x00\x00\x00", "binary"),
        (HTML_404, "html"),
        (b"<html><body>Service Unavailable</body></html>", "html"),
        (b'{"error": "not found"}', "json"),
        (b'["tiktok.com", "bytedance.com"]', "json"),
        (b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>', "xml"),
    ],
)
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a" * 990 + b"\x01" * 10, None),  # 10 odd characters in 1000: at the bound
        (b"a" * 989 + b"\x01" * 11, "binary"),
        (b"a" * 990 + b"\t\n\r\f\v" * 2, None),  # text controls are not odd
        (b"a" * 980 + b"\xe2\x01" * 10, "binary"),  # a broken character and a control: two
        (b"a" * 995 + b"\xe2\x01" * 5, None),
        ("\u00e9" * 600 + "\x1b" * 6, None),  # counted in characters, not bytes
        ("\u00e9" * 600 + "\x1b" * 7, "binary"),
    ],
)
def test_sniff_counts_odd_characters_to_the_bound(data: bytes | str, expected: str | None) -> None:
    raw = data.encode() if isinstance(data, str) else data
    assert sniff(raw) == expected


def refusal(**overrides: object) -> Refusal | None:
    facts: dict[str, object] = {
        "content": None,
        "accepted": 100,
        "invalid": 0,
        "rule_lines": 100,
        "previous": 100,
    }
    facts.update(overrides)
    return judge(**facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, None),
        ({"previous": None}, None),
        ({"content": "binary"}, "binary"),
        ({"content": "html", "accept": True}, "html"),  # --accept never loads a web page
        ({"content": "json"}, "json"),
        # an empty new version of a list in force
        ({"accepted": 0, "rule_lines": 0}, "empty"),
        ({"accepted": 0, "rule_lines": 0, "previous": None}, None),  # nothing to lose yet
        ({"accepted": 0, "rule_lines": 0, "accept": True}, None),
        # the ratio rule: as valid for 5 lines as for 5 million
        ({"accepted": 2, "invalid": 3, "rule_lines": 5, "previous": None}, "invalid"),
        ({"accepted": 4, "invalid": 1, "rule_lines": 5, "previous": 4}, None),
        ({"accepted": 1, "invalid": 79, "rule_lines": 80}, "invalid"),  # random bytes, 1 "rule"
        (
            {
                "accepted": 4_000_000,
                "invalid": 10**3,
                "rule_lines": 4_001_000,
                "previous": 4 * 10**6,
            },
            None,
        ),
        ({"accepted": 1, "invalid": 4_000_000, "rule_lines": 4_000_001}, "invalid"),
        # shrink against the version in force
        ({"accepted": 50, "previous": 100}, None),
        ({"accepted": 49, "previous": 100}, "shrink"),
        ({"accepted": 49, "previous": 100, "max_shrink": 0.6}, None),
        ({"accepted": 1, "previous": 3}, "shrink"),
        ({"accepted": 1, "previous": 3, "accept": True}, None),
        ({"accepted": 1000, "previous": 3}, None),  # growth is never refused
        # a rule that blocks a whole top-level domain
        ({"tld_rules": ["com"]}, "tld_rule"),
        ({"tld_rules": ["com"], "allow_tld_rules": True}, None),
        ({"tld_rules": ["com"], "accept": True}, "tld_rule"),
    ],
)
def test_judge(overrides: dict[str, object], reason: str | None) -> None:
    verdict = refusal(**overrides)
    assert (verdict.reason if verdict else None) == reason


def test_refusals_say_what_an_operator_needs() -> None:
    shrink = refusal(accepted=1, previous=3)
    assert shrink == Refusal(
        "shrink",
        "it has 1 rules where the version in force has 3, a shrink of 67% (max_shrink 50%)",
    )
    page = refusal(content="html")
    assert page is not None and "HTML page" in page.detail
    tld = refusal(tld_rules=[f"tld{i}" for i in range(7)] + ["com"])
    assert tld is not None and "'com'" in tld.detail and "and 3 more" in tld.detail
    assert "allow_tld_rules" in tld.detail


def test_default_max_shrink_is_half() -> None:
    assert DEFAULT_MAX_SHRINK == 0.5

