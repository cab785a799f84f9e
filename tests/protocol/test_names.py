"""Tests for resolver/protocol/names.py: text <-> lowercase wire names, limits, escapes, IDNA."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.protocol.names import BadName, from_text, normalise, to_text


def wire(*labels: bytes) -> bytes:
    """Build a wire name by hand, independently of the code under test."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


LABEL_63 = "a" * 63
NAME_255 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 64*3 + 62 + 1 = 255 octets
NAME_256 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])  # 256 octets


@pytest.mark.parametrize(
    ("text", "allow_wildcard", "expected"),
    [
        ("www.tiktok.com", False, wire(b"www", b"tiktok", b"com")),
        ("WWW.TikTok.com.", False, wire(b"www", b"tiktok", b"com")),
        ("tiktok.com.", False, wire(b"tiktok", b"com")),
        ("com", False, wire(b"com")),
        (".", False, b"\x00"),
        ("_dmarc.example.org", False, wire(b"_dmarc", b"example", b"org")),
        ("a-b.0-9.example", False, wire(b"a-b", b"0-9", b"example")),
        ("xn--bcher-kva.de", False, wire(b"xn--bcher-kva", b"de")),
        ("bücher.de", False, wire(b"xn--bcher-kva", b"de")),
        ("BÜCHER.de.", False, wire(b"xn--bcher-kva", b"de")),
        ("münchen.bücher.de", False, wire(b"xn--mnchen-3ya", b"xn--bcher-kva", b"de")),
        (LABEL_63 + ".com", False, wire(LABEL_63.encode(), b"com")),
        (NAME_255, False, wire(*(label.encode() for label in NAME_255.split(".")))),
        ("*.capcutapi.com", True, wire(b"*", b"capcutapi", b"com")),
        ("v*.TikTokCDN-eu.com", True, wire(b"v*", b"tiktokcdn-eu", b"com")),
        ("p16-tiktok-*.ibyteimg.com", True, wire(b"p16-tiktok-*", b"ibyteimg", b"com")),
        ("*", True, wire(b"*")),
        ("*.bücher.de", True, wire(b"*", b"xn--bcher-kva", b"de")),
        ("plain.example", True, wire(b"plain", b"example")),
    ],
)
def test_from_text(text: str, allow_wildcard: bool, expected: bytes) -> None:
    assert from_text(text, allow_wildcard=allow_wildcard) == expected


def test_name_limits_are_exact() -> None:
    assert len(from_text(NAME_255)) == 255
    with pytest.raises(BadName, match="256 octets"):
        from_text(NAME_256)


@pytest.mark.parametrize(
    ("text", "allow_wildcard", "message"),
    [
        ("", False, "empty name"),
        ("..", False, "empty label"),
        ("a..b", False, "empty label"),
        (".a", False, "empty label"),
        ("a.b..", False, "empty label"),
        ("a" * 64 + ".com", False, "64 octets"),
        (NAME_256, False, "max 255"),
        ("exa mple.com", False, "invalid character ' '"),
        ("exa\tmple.com", False, "invalid character '\\\\t'"),
        ("a/b.com", False, "invalid character '/'"),
        ("a\\.b.com", False, "invalid character"),
        ("*.x.com", False, "not allowed"),
        ("v*.x.com", False, "not allowed"),
        ("a.*.com", True, "leftmost"),
        ("*.*.com", True, "leftmost"),
        ("a.b*", True, "leftmost"),
        ("ü" * 64 + ".de", False, "internationalised"),
        ("a\u3002\u3002b", False, "internationalised"),
    ],
)
def test_from_text_rejects(text: str, allow_wildcard: bool, message: str) -> None:
    with pytest.raises(BadName, match=message):
        from_text(text, allow_wildcard=allow_wildcard)


def test_error_messages_carry_no_control_characters() -> None:
    with pytest.raises(BadName) as info:
        from_text("evil\x1b[31m.com")
    assert all(ch.isprintable() for ch in str(info.value))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("WWW.Example.COM.", "www.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        (".", "."),
    ],
)
def test_normalise_returns_both_forms(text: str, canonical: str) -> None:
    wire_form, text_form = normalise(text)
    assert text_form == canonical
    assert wire_form == from_text(text)


@pytest.mark.parametrize(
    ("wire_name", "expected"),
    [
        (b"\x00", "."),
        (wire(b"www", b"tiktok", b"com"), "www.tiktok.com"),
        (wire(b"a.b", b"com"), "a\\.b.com"),
        (wire(b"back\\slash"), "back\\\\slash"),
        (wire(b'say"hi'), 'say\\"hi'),
        (wire(b"a b"), "a\\032b"),
        (wire(b"\x00\x01\x1f\x7f"), "\\000\\001\\031\\127"),
        (wire(b"\xff\xc3\xa9"), "\\255\\195\\169"),
        (wire(b"line\nbreak", b"x"), "line\\010break.x"),
        (wire(b"\x1b[31m"), "\\027[31m"),
        (wire(b"~!$"), "~!$"),
        # malformed: what parses, then the rest of the bytes escaped as one label
        (b"", ""),
        (b"\x03abc", "abc."),
        (b"\xc0\x0c", "\\192\\012"),
        (b"\x03www\xc0\x0c", "www.\\192\\012"),
        (b"\x03www\x05", "www.\\005"),
        (b"\x01a\x20", "a.\\032"),
        (b"\x05ab", "\\005ab"),
        (b"\x01a\x00junk", "a.\\000junk"),
        (b"\x40" + b"a" * 64 + b"\x00", "@" + "a" * 64 + "\\000"),
    ],
)
def test_to_text(wire_name: bytes, expected: str) -> None:
    assert to_text(wire_name) == expected


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_to_text_never_raises_and_is_printable(data: bytes) -> None:
    text = to_text(data)
    assert all(0x21 <= ord(ch) <= 0x7E for ch in text)


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=63)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LABEL, min_size=1, max_size=6))
def test_text_wire_round_trip(labels: list[str]) -> None:
    text = ".".join(labels)
    wire_name = from_text(text.upper() + ".")
    assert wire_name == wire(*(label.encode() for label in labels))
    assert to_text(wire_name) == text
    assert from_text(to_text(wire_name)) == wire_name


def unescape(text: str) -> list[bytes]:
    """Inverse of the presentation escapes (RFC 1035 section 5.1), written separately here."""
    if text == ".":
        return []
    labels: list[bytes] = []
    current = bytearray()
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if text[pos + 1 : pos + 4].isdigit():
                current.append(int(text[pos + 1 : pos + 4]))
                pos += 4
            else:
                current.append(ord(text[pos + 1]))
                pos += 2
        elif char == ".":
            labels.append(bytes(current))
            current = bytearray()
            pos += 1
        else:
            current.append(ord(char))
            pos += 1
    labels.append(bytes(current))
    return labels


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=5))
def test_to_text_loses_nothing(labels: list[bytes]) -> None:
    """Any label bytes render to text that decodes back to exactly those labels."""
    assert unescape(to_text(wire(*labels))) == labels


def escaped(label: bytes) -> str:
    """RFC 1035 presentation escapes, byte by byte, written separately from the code under test."""
    out = []
    for byte in label:
        if byte in b'.\\"':
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


# Names on both sides of `to_text`'s fast path (plain labels of at most 32 octets).
@pytest.mark.parametrize(
    "labels",
    [
        [b"h1", b"tiktok", b"com"],
        [b"a" * 32, b"com"],
        [b"a" * 33, b"com"],
        [b"x", b"a" * 33],  # length byte 0x21 is '!'
        [b"x", b"a" * 34],  # length byte 0x22 is '"'
        [b"x", b"a" * 46],  # length byte 0x2e is '.'
        [b"a" * 63, b"b" * 32],
        [b"x" * 32] * 7,
        [b"!#$%&'()*+,-/:;<=>?@[]^_`{|}~", b"AZaz09"],
        [b"www", b"a.b", b"com"],
        [b"www", b'a"b', b"com"],
        [b"www", b"a\\b", b"com"],
        [b"sp ace", b"com"],
        [b"tab\t", b"com"],
        [b"\x01", b"\x20", b"\x21"],
        [b"del\x7f", b"com"],
        [b"hi\x80", b"com"],
        [b"\x00", b"com"],
        [b"\x3f" * 33, b"com"],
    ],
)
def test_to_text_fast_and_slow_paths_agree(labels: list[bytes]) -> None:
    assert to_text(wire(*labels)) == ".".join(escaped(label) for label in labels)


_EDGE_BYTES = st.sampled_from(b'az09-_.\\" !~\x00\x01\x1f\x20\x21\x22\x2e\x3f\x7e\x7f\x80\xff')


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40) | st.lists(_EDGE_BYTES, min_size=1,
       max_size=40).map(bytes), min_size=0, max_size=6))  # fmt: skip
def test_to_text_matches_reference(labels: list[bytes]) -> None:
    assert to_text(wire(*labels)) == (".".join(escaped(label) for label in labels) or ".")
