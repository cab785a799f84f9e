"""Tests for resolver/lists/nametable.py and the bulk parse paths that use numpy: a big list's
names kept as a `NameTable` parse, report and compile exactly as the dict path does, and the
one-pass shape check agrees with the byte searches it stands in for."""

from __future__ import annotations

import pytest

from resolver.lists import formats
from resolver.lists.compiled import CompiledMatcher, compile_rules
from resolver.lists.formats import ParsedRules, parse_rules
from resolver.lists.nametable import numpy_module

pytestmark = pytest.mark.skipif(numpy_module() is None, reason="numpy is not installed")

_MESSY = [
    "",
    "# comment",
    "0.0.0.0 localhost",
    "127.0.0.1 localhost",
    "0.0.0.0 0.0.0.0",
    "BAD..name",
    "UPPER.Example.COM",
    "com",
    "x",
    "1.2.3.4",
    "0.0.0.0 multi.test other.test",
    "*.wild.test",
    "dup.test",
    "dup.test",
    "tail.test.",
    "  spaced.test  ",
    "a" * 64 + ".test",
    "a" * 63 + ".test",
    "||adb.test^",
    "@@||allowed.test^",
    "@@||dup.test^",
    "|exact.test^",
    "ok.test\r",
    ".",
    "x.\t",
    "/re+gex/",
]


def _text(extra: list[str], count: int = 400) -> bytes:
    names = [f"n{i}.d{i % 13}.example" for i in range(count)]
    lines = [*names[:200], *extra, *names[100:], *extra]
    return "\n".join(lines).encode()


def _parse(data: bytes, fmt: str, bulk: bool, monkeypatch: pytest.MonkeyPatch) -> ParsedRules:
    monkeypatch.setattr(formats, "BULK_TABLE_FROM", 1 if bulk else 1 << 60)
    monkeypatch.setattr(formats, "_SHAPE_NUMPY_FROM", 0 if bulk else 1 << 60)
    parsed = parse_rules(data, "f.txt", fmt, max_errors=1000)
    assert (parsed.bulk is not None) == bulk
    return parsed


def _seen(parsed: ParsedRules) -> tuple[object, ...]:
    matcher = CompiledMatcher(b"".join(compile_rules(parsed, "l")))
    return (
        parsed.summary(),
        parsed.errors,
        parsed.rule_lines,
        sorted(parsed.dotless),
        sorted(matcher.rules()),
        matcher.header["has_allow"],
        dict(parsed.plain_names()),
        dict(parsed.flagged),
    )


@pytest.mark.parametrize("fmt", ["domains", "hosts", "adblock"])
@pytest.mark.parametrize(
    "extra",
    [[], ["dup.test", "dup.test", "", "n5.d5.example"], _MESSY],
    ids=["clean", "duplicates", "messy"],
)
def test_table_and_dict_parse_the_same(
    fmt: str, extra: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _text(extra)
    fast = _seen(_parse(data, fmt, True, monkeypatch))
    slow = _seen(_parse(data, fmt, False, monkeypatch))
    assert fast == slow


def test_colliding_hashes_keep_distinct_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two different names with one crc32 (found by search) and a repeat of one of them.
    data = b"plumless.test\nbuckeroo.test\n" + _text([]) + b"\nplumless.test\n"
    parsed = _parse(data, "domains", True, monkeypatch)
    assert parsed.bulk is not None
    assert len(parsed.bulk) == 402 and parsed.duplicates == 101
    assert parsed.has_plain(b"plumless.test") and parsed.has_plain(b"buckeroo.test")
    assert not parsed.has_plain(b"plumless.tes")


def test_bad_lines_are_still_reported_with_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _text(["BAD..name"])
    parsed = _parse(data, "domains", True, monkeypatch)
    assert parsed.errors[0].startswith("f.txt:201: ")
    assert parsed.error_count == 2


def test_a_later_file_merges_into_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _parse(_text([]), "domains", True, monkeypatch)
    parse_rules(b"n1.d1.example\nnew.test\n", "g.txt", "domains", into=parsed)
    assert parsed.bulk is None and parsed.duplicates == 101
    assert b"new.test" in parsed.plain and b"n399.d9.example" in parsed.plain


@pytest.mark.parametrize(
    "body",
    [
        "a.b\nc.d",
        "a.b\n\nc.d",
        "a..b",
        "a.b.\nc",
        ".a\nb",
        "a\n.\nb",
        "a.b..\nc",
        "x" * 63 + ".y",
        "x" * 64 + ".y",
        ".".join(["x" * 63] * 3) + "." + "x" * 61,
        ".".join(["x" * 63] * 3) + "." + "x" * 62,
        "a\n\n\nb",
        "",
    ],
)
def test_shape_check_agrees_with_byte_searches(body: str) -> None:
    low = b"\n" + body.encode() + b"\n"
    bytewise = (
        b".." not in low
        and b"\n." not in low
        and b".\n" not in low
        and b"x" * 64 not in low.translate(formats._LABEL_MARKS)
        and b"x" * 254 not in low.translate(formats._LINE_MARKS)
    )
    formats_shape = _shape_anyway(low)
    dotted = b".." in low or b"\n." in low or b".\n" in low
    assert (formats_shape is None) == dotted
    if formats_shape is not None:
        good, newlines = formats_shape
        assert good == bytewise
        assert newlines.tolist() == [i for i, byte in enumerate(low) if byte == 0x0A]


def _shape_anyway(low: bytes) -> tuple[bool, object] | None:
    saved = formats._SHAPE_NUMPY_FROM
    formats._SHAPE_NUMPY_FROM = 0
    try:
        return formats._shape(low)
    finally:
        formats._SHAPE_NUMPY_FROM = saved
