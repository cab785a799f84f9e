"""Reading a flood's packets before any parse: the question's cache key and the registrable zone
of its name, straight from the bytes, so that step 0c of the pipeline can shed a flood's
uncached names at the cost of a few dict lookups (docs/hardening.md, "Shedding is cheap").

Only plain queries are read (one question; no other record but an OPT of version 0 without
options); anything else is None and left to `wire.parse_query`, which judges it as for any
query. Pure: bytes in, values out; two bounded tables remember what follows a first label.
"""

from __future__ import annotations

import struct
from typing import Final

from resolver.policy.ratelimit import zone_of
from resolver.protocol.wire import CD, HEADER_LEN

QuestionKey = tuple[bytes, int, int, bool, int]
"""(qname in lowercase wire form, qtype, qclass, DO, CD bit): `cache.CacheKey`, which the cache
layer above names."""

_ONE_QUESTION: Final = b"\0\1\0\0\0\0\0\0"
_ONE_QUESTION_OPT: Final = b"\0\1\0\0\0\0\0\1"
_TYPE_CLASS: Final = struct.Struct("!HH")


def question_key(packet: bytes) -> QuestionKey | None:
    """The cache key of a plain query (one question; no other record but an OPT of version 0
    without options), read from its bytes without making a `Query`; None for anything else,
    which `parse_query` is left to judge. Only for shedding a flood cheaply (step 0c, through
    `flood_question`): what it cannot read costs a parse, as it did before."""
    read = flood_question(packet)
    return None if read is None else read[0]


def flood_question(packet: bytes) -> tuple[QuestionKey, bytes] | None:
    """`question_key`, and the registrable zone of its name (`ratelimit.zone_of`): step 0c's
    whole reading of a packet it may shed. The counts say which bytes end the packet (the
    question's type and class, and the OPT if one is counted); all that follows the first
    label (the rest of the name, then those) is one bounded dict lookup once seen, since a
    flood's names differ in their first label only: no walk over the labels, no parse of the
    OPT, and the zone is the same bytes object each time (its hash kept)."""
    if len(packet) < 17 or packet[2] & 0xF8:  # QR, opcode
        return None
    counts = packet[4:12]
    if counts == _ONE_QUESTION:
        seen = _AFTER_PLAIN
    elif counts == _ONE_QUESTION_OPT:
        seen = _AFTER_OPT
    else:
        return None
    first = packet[12]  # (`HEADER_LEN`: a constant is no global lookup)
    if not first or first > 63:
        return _root_question(packet, seen is _AFTER_OPT) if not first else None
    after = packet[13 + first :]
    known = seen.get(after)
    if known is None:
        known = _after_first_label(after, 15 if seen is _AFTER_OPT else 4)
        if known is None:
            return None
        if len(seen) >= _REMEMBERED:
            seen.clear()
        seen[after] = known
    end, longest, zone, qtype, qclass, dnssec_ok = known
    if first > longest:  # the name would be over 255 bytes
        return None
    name = packet[12 : end + first].lower()
    return (name, qtype, qclass, dnssec_ok, packet[3] & 0x10), name if zone is None else zone  # CD


_Known = tuple[int, int, bytes | None, int, int, bool]
_AFTER_PLAIN: Final[dict[bytes, _Known]] = {}
_AFTER_OPT: Final[dict[bytes, _Known]] = {}
"""What follows a first label (the rest of the name, type, class, and the OPT if one is
counted) → (where the name ends less the first label's length, the longest first label that
keeps the name within 255 bytes, the registrable zone of a name that ends so or None when it
is the whole name, type, class, DO): what `flood_question` read there once, in the form that
costs it the fewest operations per packet."""
_REMEMBERED = 1024
"""Entries each keeps: past that it starts afresh (a flood of odd ones costs a walk each, as
every packet did before)."""


def _after_first_label(after: bytes, tail: int) -> _Known | None:
    """Read what follows a first label, `tail` bytes of type, class and OPT at its end; None
    unless the rest of the name is well-formed (labels of at most 63 bytes ending in the root
    exactly where the tail starts) and the tail is `_question_tail`'s."""
    rest = after[:-tail]
    question = _question_tail(after[-tail:]) if len(after) > tail else None
    if question is None:
        return None
    pos = 0
    end = len(rest) - 1
    length = rest[0]
    while length:
        if length > 63:
            return None
        pos += length + 1
        if pos > end:
            return None
        length = rest[pos]
    if pos != end:
        return None
    zone = zone_of(b"\1-" + rest.lower())  # any first label: the zone depends only on the rest
    size = len(rest)
    return (HEADER_LEN + 1 + size, 254 - size, zone if len(zone) <= size else None, *question)


def _root_question(packet: bytes, with_opt: bool) -> tuple[QuestionKey, bytes] | None:
    """`flood_question` for the root name (a priming query, or a flood of them)."""
    if len(packet) != HEADER_LEN + (16 if with_opt else 5):
        return None
    question = _question_tail(packet[HEADER_LEN + 1 :])
    if question is None:
        return None
    qtype, qclass, dnssec_ok = question
    return (b"\0", qtype, qclass, dnssec_ok, packet[3] & CD), b"\0"


def _question_tail(tail: bytes) -> tuple[int, int, bool] | None:
    """(type, class, DO) of the 4 or 15 bytes after the name; None for an OPT that is not root
    owner, TYPE 41, version 0 and RDLEN 0 (no options)."""
    qtype, qclass = _TYPE_CLASS.unpack_from(tail)
    if len(tail) == 4:
        return qtype, qclass, False
    # OPT: root owner, TYPE 41, CLASS payload, TTL (extended rcode, version 0, flags), RDLEN 0
    if tail[4:7] != b"\0\0\x29" or tail[10] or tail[13:] != b"\0\0":
        return None
    return qtype, qclass, tail[11] & 0x80 != 0
