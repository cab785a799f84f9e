"""The start-up probe's DNS message, by hand: one A query out, (rcode, addresses) back.  No I/O.

The benchmark asks each server one question before loading it (is this name blocked, does that
one resolve).  Doing it by hand keeps `bench/run` on dnswarden's own dependencies, the ones
README's quick start installs: dnspython is a test dependency, and a probe needs thirty lines.
"""

from __future__ import annotations

import struct

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPE_A = 1
CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")


def query_packet(name: str, qid: int) -> bytes:
    """A recursion-desired query for `name` type A, class IN, no EDNS; ValueError for a name
    that is not a hostname of at most 255 octets."""
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".")] if name != "." else []
    if any(not 0 < len(label) < 64 for label in labels):
        raise ValueError(f"{name!r}: empty or over-long label")
    wire = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    if len(wire) > 255:
        raise ValueError(f"{name!r}: longer than 255 octets")
    return _HEADER.pack(qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", TYPE_A, CLASS_IN)


def _skip_name(packet: bytes, pos: int) -> int:
    """Offset just past the (possibly compressed) name at `pos`; ValueError when it overruns."""
    while True:
        if pos >= len(packet):
            raise ValueError("name runs past the end")
        length = packet[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise ValueError("bad label length")
        if length == 0:
            return pos + 1
        pos += length + 1


def read_reply(packet: bytes, qid: int) -> tuple[str, list[str]] | None:
    """(rcode text, A addresses of the answer section) of a response to query `qid`, or None
    for anything else: another ID, a query, a truncated or malformed message."""
    if len(packet) < _HEADER.size:
        return None
    ident, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(packet)
    if ident != qid or not flags & 0x8000:
        return None
    addresses: list[str] = []
    try:
        pos = _HEADER.size
        for _ in range(qdcount):
            pos = _skip_name(packet, pos) + 4
        for _ in range(ancount):
            pos = _skip_name(packet, pos)
            rtype, rclass, _ttl, size = _RR_FIXED.unpack_from(packet, pos)
            pos += _RR_FIXED.size
            if pos + size > len(packet):
                return None
            if rtype == TYPE_A and rclass == CLASS_IN and size == 4:
                addresses.append(".".join(str(octet) for octet in packet[pos : pos + 4]))
            pos += size
    except (ValueError, struct.error):
        return None
    if pos > len(packet):
        return None
    code = flags & 0x0F
    return RCODES.get(code, str(code)), addresses
