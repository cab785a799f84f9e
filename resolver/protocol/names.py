"""Domain names in lowercase DNS wire format, the form used on the hot path.

Wire form (``b"\\x03www\\x06tiktok\\x03com\\x00"``) is what a query packet already carries, it is
unambiguous (a label may contain a dot byte) and every suffix of a name is a slice that starts at a
label boundary, so suffix lookups need no string splitting. This module converts between that form
and presentation text. It is pure: no I/O, no asyncio, no sockets.
"""

from __future__ import annotations

import re

__all__ = [
    "FAST_LABEL",
    "LENGTHS_TO_DOTS",
    "MAX_LABEL",
    "MAX_NAME",
    "BadName",
    "from_text",
    "normalise",
    "to_text",
]

MAX_LABEL = 63
MAX_NAME = 255

_LABEL_RE = re.compile(r"[a-z0-9_-]+")
_WILD_LABEL_RE = re.compile(r"[a-z0-9_*-]+")
_BAD_CHAR_RE = re.compile(r"[^a-z0-9_*-]")
_NAME_RE = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_WILD_NAME_RE = re.compile(r"[a-z0-9_*-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_LENGTH_BYTE = tuple(bytes((n,)) for n in range(MAX_LABEL + 1))
# Bytes `to_text` writes unchanged: printable ASCII except the escaped `"`, `.` and `\`.
_PLAIN = bytes(b for b in range(0x21, 0x7F) if b not in b'".\\')
FAST_LABEL = 0x20
LENGTHS_TO_DOTS = bytes(0x2E if 1 <= b <= FAST_LABEL else b for b in range(256))
"""Length bytes of labels up to `FAST_LABEL` octets are exactly the bytes 0x01-0x20, none of them
plain: one C-level translate turns a wire name of such labels into dotted text."""


class BadName(ValueError):
    """A domain name that cannot be used; the message says why, safe to show to an operator."""


def _escape_table() -> tuple[str, ...]:
    table = []
    for byte in range(256):
        if byte == 0x2E:
            table.append("\\.")
        elif byte == 0x5C:
            table.append("\\\\")
        elif byte == 0x22:
            table.append('\\"')
        elif 0x21 <= byte <= 0x7E:
            table.append(chr(byte))
        else:
            table.append(f"\\{byte:03d}")
    return tuple(table)


_ESCAPE = _escape_table()


def _show(text: str) -> str:
    """Quote operator input for an error message without letting control characters through."""
    return ascii(text[:80] + ("..." if len(text) > 80 else ""))


def from_text(text: str, *, allow_wildcard: bool = False) -> bytes:
    """Convert a presentation name to lowercase wire format, strictly: lists hold only clean names.

    Lists are written by people and scraped from the web, so this is strict: only letters, digits,
    ``-`` and ``_`` (underscore appears in real service names such as ``_dmarc``). Unicode names are
    converted with the IDNA codec so ``bücher.de`` and ``xn--bcher-kva.de`` are the same rule.
    With ``allow_wildcard`` a ``*`` may appear inside the leftmost label only, the one place where
    the matcher gives it meaning; anywhere else it would silently never match, so it is an error.
    """
    return normalise(text, allow_wildcard=allow_wildcard)[0]


def normalise(text: str, *, allow_wildcard: bool = False) -> tuple[bytes, str]:
    """Like ``from_text``, also returning the canonical text form (lowercase, ASCII, no dot).

    List loading needs both forms for millions of names, so the common case (a clean ASCII name)
    is one regex match and one join; the label-by-label walk only runs to explain an error.
    """
    if text == ".":
        return b"\x00", "."
    if text.isascii():
        name = text.lower()
    else:
        try:
            name = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadName(f"{_show(text)}: not a valid internationalised name ({exc})") from None
    if name.endswith("."):
        name = name[:-1]
    pattern = _WILD_NAME_RE if allow_wildcard else _NAME_RE
    if len(name) <= MAX_NAME - 2 and pattern.fullmatch(name) is not None:
        length = _LENGTH_BYTE
        wire = b"".join([length[len(label)] + label for label in name.encode().split(b".")])
        return wire + b"\x00", name
    raise _explain(text, name, allow_wildcard)


def _explain(text: str, name: str, allow_wildcard: bool) -> BadName:
    """Say precisely why ``name`` (``text`` lowered, IDNA-converted, final dot removed) is bad."""
    if not name:
        return BadName(f"{_show(text)}: empty name" if text else "empty name")
    label_re = _WILD_LABEL_RE if allow_wildcard else _LABEL_RE
    for index, label in enumerate(name.split(".")):
        if not label:
            return BadName(f"{_show(text)}: empty label")
        if len(label) > MAX_LABEL:
            return BadName(
                f"{_show(text)}: label {_show(label)} is {len(label)} octets (max {MAX_LABEL})"
            )
        if label_re.fullmatch(label) is None:
            bad = _BAD_CHAR_RE.search(label)
            if bad is None:
                return BadName(f"{_show(text)}: wildcard '*' is not allowed here")
            return BadName(
                f"{_show(text)}: invalid character {_show(bad.group())} in label {_show(label)}"
            )
        if index and "*" in label:
            return BadName(f"{_show(text)}: '*' is only allowed in the leftmost label")
    wire_len = len(name) + 2
    return BadName(f"{_show(text)}: name is {wire_len} octets on the wire (max {MAX_NAME})")


def to_text(wire: bytes) -> str:
    """Render a wire name for logs and messages: never raises, never emits a control character.

    Audit logs record names taken from hostile packets, so every byte outside printable ASCII is
    written as ``\\DDD`` and the characters that would make the text ambiguous (``.``, ``\\``,
    ``"``) are backslash-escaped, as in RFC 1035 master files. The trailing dot is left off
    (``www.tiktok.com``); the root is ``.``. Malformed input (a compression pointer or reserved
    label type, a label running past the end, a missing root byte, bytes after the root) is
    rendered best-effort: the well-formed labels, then the rest of the bytes escaped as one final
    label, so the result still shows what arrived.
    """
    end = len(wire) - 1
    pos = count = 0
    while pos < end and 0 < wire[pos] <= FAST_LABEL:
        pos += 1 + wire[pos]
        count += 1
    # Fast path for the usual name (every label plain, none over 32 octets): the only bytes that
    # are not plain are then the length bytes and the root, so counting them proves the labels
    # need no escape, and one C-level translate turns the length bytes into dots.
    if pos == end and wire[end] == 0 and len(wire.translate(None, _PLAIN)) == count + 1:
        return wire[1:end].translate(LENGTHS_TO_DOTS).decode("ascii") if count else "."
    escape = _ESCAPE
    labels: list[str] = []
    pos = 0
    end = len(wire)
    while pos < end:
        length = wire[pos]
        if length == 0:
            if pos + 1 == end:
                return ".".join(labels) if labels else "."
            break
        if length > MAX_LABEL or pos + 1 + length > end:
            break
        labels.append("".join([escape[b] for b in wire[pos + 1 : pos + 1 + length]]))
        pos += 1 + length
    labels.append("".join([escape[b] for b in wire[pos:]]))
    return ".".join(labels)
