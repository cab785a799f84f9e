"""Answers dnswarden makes itself, built from the query's own bytes.

Every synthesised answer copies the client's ID and question verbatim and sets RA; the fixed parts
(records, SOA, OPT) are prepared once per answer mode, so building one is a few concatenations —
no message object, no encoder on the hot path.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from resolver.protocol.edns import EdeCode, opt_record
from resolver.protocol.wire import (
    BADVERS,
    CD,
    CLASS_IN,
    HEADER,
    HEADER_LEN,
    NOERROR,
    NXDOMAIN,
    OPCODE_MASK,
    QR,
    RA,
    RCODE_MASK,
    RD,
    REFUSED,
    RR_FIXED,
    SERVFAIL,
    TC,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_SOA,
    BadVersion,
    Drop,
    Query,
    WireError,
)

# The synthetic zone's SOA names live under .invalid (RFC 6761): they can never resolve.
_SOA_MNAME: Final = b"\x09dnswarden\x07invalid\x00"
_SOA_RNAME: Final = b"\x0ahostmaster\x09dnswarden\x07invalid\x00"
_SOA_SERIAL: Final = 1
_SOA_REFRESH: Final = 3600
_SOA_RETRY: Final = 600
_SOA_EXPIRE: Final = 86400

NULL_IP: Final = "null_ip"
NXDOMAIN_MODE: Final = "nxdomain"
NODATA_MODE: Final = "nodata"
REFUSED_MODE: Final = "refused"
IP_MODE: Final = "ip"
ANSWER_MODES: Final = (NULL_IP, NXDOMAIN_MODE, NODATA_MODE, REFUSED_MODE, IP_MODE)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _flags(query: Query, rcode: int) -> int:
    return QR | RA | (query.flags & (RD | CD)) | rcode


def _compose(
    query: Query, rcode: int, answers: tuple[int, bytes], authority: tuple[int, bytes], opt: bytes
) -> bytes:
    packet = query.packet
    header = HEADER.pack(
        (packet[0] << 8) | packet[1],
        _flags(query, rcode),
        1,
        answers[0],
        authority[0],
        1 if opt else 0,
    )
    question = packet[HEADER_LEN : query.question_end]
    return b"".join((header, question, answers[1], authority[1], opt))


_COUNTS: Final = struct.Struct(">HHHH")
_FORGED: Final = int(EdeCode.FORGED_ANSWER)
"""A plain int: an enum member read through its class is a descriptor call on CPython 3.11."""


def _opt(query: Query, ede: int, text: bytes) -> bytes:
    """Our OPT with an Extended DNS Error, only for clients that sent EDNS (RFC 8914 3)."""
    return opt_record(query.dnssec_ok, ede, text) if query.has_edns else b""


_NONE: Final = (0, b"")


class SinkholeAnswer:
    """The blocked answer for one answer mode and TTL, prepared once.

    `null_ip`: A → 0.0.0.0, AAAA → ::, every other type NODATA. `ip`: A/AAAA → the operator's
    addresses of that family (a walled-garden page), NODATA where there is none. `nxdomain`,
    `nodata`: that, with a SOA so clients cache it for the blocked TTL (RFC 2308). `refused`:
    REFUSED. The SOA sits at the apex of the blocked zone — a compression pointer into the
    question — because NXDOMAIN there denies the subtree the rule blocks (RFC 8020).
    """

    def __init__(
        self, mode: str, ttl: int, addresses: tuple[Address, ...] = (), ede: int = EdeCode.BLOCKED
    ) -> None:
        if mode not in ANSWER_MODES:
            raise ValueError(f"unknown answer mode {mode!r}")
        if mode == NULL_IP:
            addresses = (ipaddress.IPv4Address(0), ipaddress.IPv6Address(0))
        elif mode != IP_MODE:
            addresses = ()
        self.mode = mode
        self.ttl = ttl
        self.ede = ede
        self._records = {
            TYPE_A: _address_records(addresses, 4, TYPE_A, ttl),
            TYPE_AAAA: _address_records(addresses, 6, TYPE_AAAA, ttl),
        }
        self._rcode = {NXDOMAIN_MODE: NXDOMAIN, REFUSED_MODE: REFUSED}.get(mode, NOERROR)
        soa_rdata = (
            _SOA_MNAME
            + _SOA_RNAME
            + struct.pack(">IIIII", _SOA_SERIAL, _SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE, ttl)
        )
        self._soa_tail = RR_FIXED.pack(TYPE_SOA, CLASS_IN, ttl, len(soa_rdata)) + soa_rdata
        self._texts: dict[str, bytes] = {}
        # The address answer to a query without EDNS (every one a plain stub sends), by type:
        # the flags and counts after the ID, one for each of the four RD and CD bits a query
        # can carry (index RD | CD << 1), and the records after the question, ready to join.
        self._plain: dict[int, tuple[list[bytes], bytes]] = {
            rtype: ([_plain_head(bits, count) for bits in range(4)], data)
            for rtype, (count, data) in self._records.items()
            if count
        }

    def build(self, query: Query, zone_offset: int, cause: str) -> bytes:
        """Blocked answer to `query`; `zone_offset` locates the blocked zone inside the qname,
        `cause` is the EXTRA-TEXT of the Extended DNS Error (e.g. "blocked by list tiktok")."""
        if not query.has_edns and query.qclass == CLASS_IN:
            plain = self._plain.get(query.qtype)
            if plain is not None:  # `_compose` for the commonest block, with nothing to pack
                packet = query.packet
                flags = query.flags
                heads, tail = plain
                head = heads[(flags >> 8 & 0x01) | (flags >> 3 & 0x02)]  # RD | CD << 1
                question = packet[HEADER_LEN : query.question_end]
                return b"".join((packet[:2], head, question, tail))
        text = self._texts.get(cause)
        if text is None:
            text = self._texts[cause] = cause.encode("utf-8", "replace")[:200]
        if query.qclass == CLASS_IN:
            records = self._records.get(query.qtype)
            if records is not None and records[0]:
                opt = _opt(query, _FORGED, text)
                return _compose(query, NOERROR, records, _NONE, opt)
        opt = _opt(query, self.ede, text)
        if self._rcode == REFUSED:
            return _compose(query, REFUSED, _NONE, _NONE, opt)
        soa = (0xC000 | (HEADER_LEN + zone_offset)).to_bytes(2, "big") + self._soa_tail
        return _compose(query, self._rcode, _NONE, (1, soa), opt)


def _plain_head(bits: int, count: int) -> bytes:
    """Flags and counts of an address answer to a query whose RD (bit 0 of `bits`) and CD (bit
    1) are those: QR and RA set, RD and CD copied (`_flags`), NOERROR, no OPT."""
    return bytes((0x80 | (bits & 0x01), 0x80 | (bits & 0x02) << 3)) + _COUNTS.pack(1, count, 0, 0)


def _address_records(
    addresses: tuple[Address, ...], version: int, rtype: int, ttl: int
) -> tuple[int, bytes]:
    chosen = [a.packed for a in addresses if a.version == version]
    head = b"\xc0\x0c" + RR_FIXED.pack(rtype, CLASS_IN, ttl, 4 if version == 4 else 16)
    return len(chosen), b"".join(head + packed for packed in chosen)


def truncated(query: Query) -> bytes:
    """An empty answer with TC set, so the client asks again over TCP: RPZ's TCP-only action
    (a spoofed source address cannot complete a TCP handshake), and a local-data answer too
    big for the client's UDP size."""
    opt = opt_record(query.dnssec_ok) if query.has_edns else b""
    reply = _compose(query, NOERROR, _NONE, _NONE, opt)
    return reply[:2] + bytes((reply[2] | TC >> 8,)) + reply[3:]


def local_data(
    query: Query, records: tuple[tuple[int, bytes], ...], ttl: int, cause: str, limit: int
) -> bytes | None:
    """An RPZ rule's local data as the answer, owned by the question name (a pointer to it),
    as Unbound answers it: a CNAME answers every type (the client follows it), other records
    their own type, ANY gets them all. None when no record answers the question (the caller
    answers NODATA). Over `limit` bytes: `truncated`."""
    if query.qclass != CLASS_IN:
        return None
    qtype = query.qtype
    chosen = [r for r in records if r[0] == TYPE_CNAME][:1] or [
        r for r in records if r[0] == qtype or qtype == TYPE_ANY
    ]
    if not chosen:
        return None
    body = b"".join(
        b"\xc0\x0c" + RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata
        for rtype, rdata in chosen
    )
    opt = _opt(query, EdeCode.FORGED_ANSWER, cause.encode("utf-8", "replace")[:200])
    reply = _compose(query, NOERROR, (len(chosen), body), _NONE, opt)
    return reply if len(reply) <= limit else truncated(query)


TYPE_HINFO: Final = 13
TYPE_ANY: Final = 255
MINIMAL_ANY_TTL: Final = 3600
_RFC8482_RDATA: Final = b"\x07RFC8482\x00"  # HINFO: CPU "RFC8482", OS ""


def minimal_any(query: Query) -> bytes:
    """The RFC 8482 answer to an ANY query: one synthesised HINFO "RFC8482" record, never the
    name's whole RRset collection. ANY is the classic amplification query (a few dozen bytes
    in, kilobytes out) and no client needs it; the HINFO tells a debugging human why."""
    record = (
        b"\xc0\x0c"
        + RR_FIXED.pack(TYPE_HINFO, query.qclass, MINIMAL_ANY_TTL, len(_RFC8482_RDATA))
        + _RFC8482_RDATA
    )
    opt = opt_record(query.dnssec_ok) if query.has_edns else b""
    return _compose(query, NOERROR, (1, record), _NONE, opt)


def refused(query: Query, ede: int, text: str) -> bytes:
    """REFUSED, e.g. for a client outside `clients.allow` (EDE 18, Prohibited)."""
    return _compose(query, REFUSED, _NONE, _NONE, _opt(query, ede, text.encode()))


def servfail(query: Query, ede: int, text: str) -> bytes:
    """SERVFAIL when no upstream answered in time (EDE 22) or the network failed us (EDE 23)."""
    return _compose(query, SERVFAIL, _NONE, _NONE, _opt(query, ede, text.encode()))


def error_reply(packet: bytes, error: WireError) -> bytes | None:
    """The answer to a message that failed to parse: None for a `Drop`, else a header with the
    error's rcode, the question when it parsed, and for BADVERS a version-0 OPT carrying the
    rcode's upper bits (RFC 6891 6.1.3)."""
    if isinstance(error, Drop) or error.rcode is None:
        return None
    flags = (packet[2] << 8) | packet[3]
    reply_flags = QR | RA | (flags & (OPCODE_MASK | RD | CD)) | (error.rcode & RCODE_MASK)
    qdcount = 1 if error.question_end else 0
    opt = b""
    if isinstance(error, BadVersion):
        opt = opt_record(False, ext_rcode=BADVERS >> 4)
    header = HEADER.pack((packet[0] << 8) | packet[1], reply_flags, qdcount, 0, 0, 1 if opt else 0)
    return header + packet[HEADER_LEN : error.question_end if qdcount else HEADER_LEN] + opt
