"""DNS wire format for the hot path: header, question and record layout, parsed by hand.

dnslib costs more per message than our whole per-query budget and follows compression pointers
recursively, so every packet a client or an upstream sends us goes through this module instead.
Parsing is iterative and bounded: every read is checked against the message length, header counts
are checked before any record is touched, and every failure is a typed `WireError` whose class says
what the server should answer (`Drop`, `FormError`, `NotImplementedOpcode`, `BadVersion`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import ClassVar, Final

from resolver.protocol.names import MAX_LABEL, MAX_NAME

HEADER: Final = struct.Struct(">HHHHHH")
RR_FIXED: Final = struct.Struct(">HHIH")
HEADER_LEN: Final = 12

# Header flag bits (second 16-bit word).
QR: Final = 0x8000
OPCODE_MASK: Final = 0x7800
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
RA: Final = 0x0080
AD: Final = 0x0020
CD: Final = 0x0010
RCODE_MASK: Final = 0x000F

# Response codes (BADVERS is extended: its upper bits travel in the OPT record).
NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16

# Record types and classes used on the hot path.
TYPE_A: Final = 1
TYPE_SOA: Final = 6
TYPE_CNAME: Final = 5
TYPE_AAAA: Final = 28
TYPE_OPT: Final = 41
CLASS_IN: Final = 1

OPTION_EDE: Final = 15
"""The EDNS option code of an Extended DNS Error (RFC 8914)."""
MAX_PASSED_EDE: Final = 3
MAX_EDE_TEXT: Final = 200
"""An upstream's EDEs reach the client, bounded: at most this many, each EXTRA-TEXT cut to
this many bytes, so a hostile upstream cannot fill our answers with its text."""

_MAX_LABEL: Final = MAX_LABEL
_MAX_NAME: Final = MAX_NAME
"""`names`' limits as this module's own constants: compiled, a name imported from another
module is looked up in this one's globals at each use, a constant of its own is not."""
_LOWER: Final = bytes(b + 0x20 if 0x41 <= b <= 0x5A else b for b in range(256))
"""`bytes.lower` as a table (ASCII letters only, as `lower` does): compiled, `translate` with
it is a direct C call, where `lower()` is a method looked up on the object at each call."""

MAX_POINTER_HOPS: Final = 64
# A query carries at most an OPT, a cookie-bearing OPT's TSIG/SIG(0) companion and little else.
MAX_QUERY_ADDITIONAL: Final = 4
EDNS_MIN_PAYLOAD: Final = 512
# DNS Flag Day 2020: the buffer we advertise and the largest UDP reply we send.
EDNS_PAYLOAD: Final = 1232
TCP_MAX_MESSAGE: Final = 65535

TYPE_NAMES: Final = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}


def type_name(qtype: int) -> str:
    """Mnemonic for logs, `TYPEnnn` (RFC 3597) for the rest, so the set stays printable."""
    return TYPE_NAMES.get(qtype) or f"TYPE{qtype}"


class WireError(Exception):
    """A message we cannot serve; `reason` is a short, bounded label for counters."""

    rcode: ClassVar[int | None] = None

    def __init__(self, reason: str, question_end: int = 0, has_edns: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # Where the question ends when it parsed cleanly (0 if not): error replies echo it.
        self.question_end = question_end
        self.has_edns = has_edns


class Drop(WireError):
    """Not worth an answer: too short to carry an ID, or itself a response (no ping-pong)."""


class FormError(WireError):
    rcode = FORMERR


class NotImplementedOpcode(WireError):
    rcode = NOTIMP


class BadVersion(WireError):
    rcode = BADVERS


class Query:
    """A client query, parsed just enough to decide and forward it.

    `qname` is the question name in lowercase wire form, the key for matching and merging.
    `packet[12:question_end]` is the question exactly as the client sent it (case kept), which
    every answer echoes.
    """

    __slots__ = (
        "dnssec_ok",
        "flags",
        "has_edns",
        "packet",
        "qclass",
        "qname",
        "qtype",
        "question_end",
        "udp_payload",
    )

    def __init__(
        self,
        packet: bytes,
        flags: int,
        qname: bytes,
        qtype: int,
        qclass: int,
        question_end: int,
        has_edns: bool,
        udp_payload: int,
        dnssec_ok: bool,
    ) -> None:
        self.packet = packet
        self.flags = flags
        self.qname = qname
        self.qtype = qtype
        self.qclass = qclass
        self.question_end = question_end
        self.has_edns = has_edns
        self.udp_payload = udp_payload
        self.dnssec_ok = dnssec_ok

    @property
    def question(self) -> bytes:
        return self.packet[HEADER_LEN : self.question_end]


def question_name_end(packet: bytes, pos: int = HEADER_LEN) -> int:
    """End offset of the uncompressed name at `pos`.

    The question is the first name of a message, so a compression pointer in it could only point
    into the header: always malformed. That keeps the question contiguous, so its bytes are the
    lookup key as they stand.
    """
    end = len(packet)
    start = pos
    while True:
        if pos >= end:
            raise FormError("truncated")
        length = packet[pos]
        if length == 0:
            return pos + 1
        if length > MAX_LABEL:
            raise FormError("compressed_question" if length >= 0xC0 else "bad_label")
        pos += length + 1
        if pos - start >= MAX_NAME:
            raise FormError("name_too_long")


def skip_name(message: bytes | bytearray, pos: int) -> int:
    """End offset of a possibly compressed name, without following pointers (so no loops)."""
    end = len(message)
    start = pos
    while True:
        if pos >= end:
            raise FormError("truncated")
        length = message[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            if pos + 2 > end:
                raise FormError("truncated")
            return pos + 2
        if length > MAX_LABEL:
            raise FormError("bad_label")
        pos += length + 1
        if pos - start >= MAX_NAME:
            raise FormError("name_too_long")


def read_name(message: bytes, pos: int) -> tuple[bytes, int]:
    """Decompress the name at `pos`: (lowercase wire name, offset just past it in place).

    Iterative, with RFC 9267's rules: a pointer must land inside the message, after the header and
    strictly before the label that holds it, and the hops are capped; the result is at most 255
    octets. The chained-pointer packets that send recursive parsers into RecursionError stop here.
    """
    end = len(message)
    labels: list[bytes] = []
    total = 1
    after: int | None = None
    hops = 0
    while True:
        if pos >= end:
            raise FormError("truncated")
        length = message[pos]
        if length == 0:
            break
        if length >= 0xC0:
            if pos + 2 > end:
                raise FormError("truncated")
            target = ((length & 0x3F) << 8) | message[pos + 1]
            if target >= pos or target < HEADER_LEN:
                raise FormError("bad_pointer")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise FormError("pointer_loop")
            if after is None:
                after = pos + 2
            pos = target
            continue
        if length > MAX_LABEL:
            raise FormError("bad_label")
        total += length + 1
        if total > MAX_NAME:
            raise FormError("name_too_long")
        if pos + 1 + length > end:
            raise FormError("truncated")
        labels.append(message[pos : pos + 1 + length])
        pos += length + 1
    return b"".join(labels).lower() + b"\x00", (pos + 1 if after is None else after)


def parse_query(packet: bytes) -> Query:
    """Validate a client query and locate its parts; raises a `WireError` subclass.

    Header counts are checked before any name is read, so hostile counts cost nothing.
    """
    size = len(packet)
    if size < HEADER_LEN:
        raise Drop("short_header")
    # The header's fields read byte by byte, not by `HEADER.unpack_from`: compiled, these are
    # machine integers, where the struct's tuple would be objects and every test on them a call.
    flags = packet[2] << 8 | packet[3]
    if flags & QR:
        raise Drop("is_response")
    if flags & OPCODE_MASK:
        raise NotImplementedOpcode("opcode")
    if packet[4] or packet[5] != 1:  # QDCOUNT
        raise FormError("qdcount")
    if packet[6] or packet[7] or packet[8] or packet[9]:  # ANCOUNT, NSCOUNT
        raise FormError("records_in_query")
    arcount = packet[10] << 8 | packet[11]
    if arcount > MAX_QUERY_ADDITIONAL:
        raise FormError("arcount")
    # `question_name_end`, inline: its loop is most of a parse.
    pos = HEADER_LEN
    while True:
        if pos >= size:
            raise FormError("truncated")
        length = packet[pos]
        if length == 0:
            break
        if length > _MAX_LABEL:
            raise FormError("compressed_question" if length >= 0xC0 else "bad_label")
        pos += length + 1
        if pos - HEADER_LEN >= _MAX_NAME:
            raise FormError("name_too_long")
    name_end = pos + 1
    question_end = name_end + 4
    if question_end > size:
        raise FormError("truncated")
    qtype = packet[name_end] << 8 | packet[name_end + 1]
    qclass = packet[name_end + 2] << 8 | packet[name_end + 3]
    if not arcount:  # no OPT, nothing to read: the common query
        if question_end != size:
            raise FormError("trailing_junk", question_end, False)
        return Query(packet, flags, packet[HEADER_LEN:name_end].translate(_LOWER), qtype,
                     qclass, question_end, False, EDNS_MIN_PAYLOAD, False)  # fmt: skip

    has_edns = False
    payload = EDNS_MIN_PAYLOAD
    dnssec_ok = False
    version = 0
    pos = question_end
    for _ in range(arcount):
        owner = pos
        pos = skip_name(packet, pos)
        if pos + 10 > size:
            raise FormError("truncated", question_end)
        rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(packet, pos)
        rdata = pos + 10
        pos = rdata + rdlength
        if pos > size:
            raise FormError("truncated", question_end)
        if rtype != TYPE_OPT:
            # Not forwarded (upstreams get our own query), but its name must decompress
            # within the hop cap like any other: a pointer chain is FORMERR, not ignored.
            try:
                read_name(packet, owner)
            except FormError as error:
                raise FormError(error.reason, question_end) from None
            continue
        if has_edns:
            raise FormError("multiple_opt", question_end)
        if rdata - owner != 11:  # the owner must be the root: a single zero octet
            raise FormError("opt_owner", question_end)
        check_options(packet, rdata, pos, question_end)
        has_edns = True
        payload = max(rclass, EDNS_MIN_PAYLOAD)
        version = (ttl >> 16) & 0xFF
        dnssec_ok = bool(ttl & 0x8000)
    if pos != size:
        raise FormError("trailing_junk", question_end, has_edns)
    if version:
        raise BadVersion("badvers", question_end, has_edns)
    return Query(
        packet,
        flags,
        packet[HEADER_LEN:name_end].translate(_LOWER),
        qtype,
        qclass,
        question_end,
        has_edns,
        payload,
        dnssec_ok,
    )


def check_options(packet: bytes, pos: int, end: int, question_end: int) -> None:
    """EDNS options must tile the OPT RDATA exactly; we read none of them, but junk is FORMERR."""
    while pos < end:
        if pos + 4 > end:
            raise FormError("bad_edns_option", question_end)
        pos += 4 + ((packet[pos + 2] << 8) | packet[pos + 3])
    if pos != end:
        raise FormError("bad_edns_option", question_end)


def upstream_query(query: Query, query_id: int) -> bytes:
    """The query we send upstream: a fresh ID, the client's question, and our own OPT.

    EDNS is hop-by-hop, so the client's OPT (cookies, ECS, its buffer size) stays here; we
    advertise 1232 bytes and pass only the DO bit on. RD and AD are always set, CD is the
    client's: the answer is cached and shared by every client with the same DO and CD (the cache
    key), so it must not depend on what the first asker set. RD because we need recursion from
    the upstream whether or not this client asked for it; AD so a validating upstream tells us
    whether it validated the answer (RFC 6840 5.7), which `client_reply` then passes on only to
    clients that ask for it.
    """
    return b"".join(
        (
            HEADER.pack(query_id, RD | AD | (query.flags & CD), 1, 0, 0, 1),
            query.packet[HEADER_LEN : query.question_end],
            OPT_DO if query.dnssec_ok else OPT_PLAIN,
        )
    )


OPT_PLAIN: Final = b"\x00" + RR_FIXED.pack(TYPE_OPT, EDNS_PAYLOAD, 0, 0)
OPT_DO: Final = b"\x00" + RR_FIXED.pack(TYPE_OPT, EDNS_PAYLOAD, 0x8000, 0)


def reply_matches(reply: bytes, query_id: int, query: Query) -> bool:
    """RFC 5452: a reply counts only if its ID, QR bit and question (name case-insensitively,
    type and class exactly) are those we sent. Anything else is ignored, and we keep waiting."""
    question_end = query.question_end
    if (
        len(reply) < question_end
        or ((reply[0] << 8) | reply[1]) != query_id
        or reply[2] < 0x80  # QR, the top bit
        or reply[4]
        or reply[5] != 1
    ):
        return False
    name_end = question_end - 4
    return (
        reply[HEADER_LEN:name_end].lower() == query.qname
        and reply[name_end:question_end] == query.packet[name_end:question_end]
    )


class UpstreamReply:
    """An upstream answer that matched our query, with its layout located once.

    Several clients may share one reply (merged queries); each gets its own copy patched from
    these offsets without another parse.
    """

    __slots__ = (
        "additional",
        "additional_count",
        "ede",
        "ext_rcode",
        "raw",
        "rcode",
        "records",
        "sections_end",
        "truncated",
    )

    def __init__(self, raw: bytes, question_len: int) -> None:
        size = len(raw)
        if size < HEADER_LEN:
            raise FormError("truncated")
        flags, ancount, nscount, arcount = _REPLY_COUNTS.unpack_from(raw, 2)
        pos = HEADER_LEN + question_len
        records: list[int] = []
        append = records.append
        for _ in range(ancount + nscount):
            # Most owner names are one compression pointer: skipped here, without a call.
            if pos < size and raw[pos] >= 0xC0:
                pos += 2
            else:
                pos = skip_name(raw, pos)
            end = pos + 10
            if end > size:
                raise FormError("truncated")
            append(pos)
            pos = end + ((raw[pos + 8] << 8) | raw[pos + 9])
            if pos > size:
                raise FormError("truncated")
        self.records: Sequence[int] = records
        """Where each answer and authority record's type field is, after its owner name."""
        self.sections_end = sections_end = pos
        # The additional records are kept as they stand but for the OPT: the bytes around it.
        opt_start = -1
        opt_end = -1
        ext_rcode = 0
        ede = b""
        for _ in range(arcount):
            start = pos
            if pos < size and raw[pos] == 0:  # the root: OPT's owner
                pos += 1
            elif pos < size and raw[pos] >= 0xC0:
                pos += 2
            else:
                pos = skip_name(raw, pos)
            rdata = pos + 10
            if rdata > size:
                raise FormError("truncated")
            rtype, extended, rdlength = _RECORD_HEAD.unpack_from(raw, pos)
            end = rdata + rdlength
            if end > size:
                raise FormError("truncated")
            if rtype == TYPE_OPT:
                if opt_start >= 0:
                    raise FormError("multiple_opt")
                opt_start = start
                opt_end = end
                ext_rcode = extended
                if end > rdata:
                    ede = _ede_options(raw, rdata, end)
            pos = end
        if pos != size:
            raise FormError("trailing_junk")
        self.raw = raw
        self.rcode = (ext_rcode << 4) | (flags & RCODE_MASK)
        self.truncated = bool(flags & TC)
        if opt_start < 0:
            self.additional = raw[sections_end:pos]
            self.additional_count = arcount
        elif opt_end == pos and opt_start == sections_end:  # the OPT alone: nothing to keep
            self.additional = b""
            self.additional_count = 0
        else:
            self.additional = raw[sections_end:opt_start] + raw[opt_end:pos]
            self.additional_count = arcount - 1
        self.ext_rcode = ext_rcode
        self.ede = ede
        """The upstream's Extended DNS Errors, as EDNS options to pass on (`_ede_options`)."""


_REPLY_COUNTS: Final = struct.Struct(">H2xHHH")
"""A reply's flags and its answer, authority and additional counts (after the ID)."""
_RECORD_HEAD: Final = struct.Struct(">H2xB3xH")
"""A record's type, the first TTL octet (an OPT's extended rcode) and its RDLENGTH."""


def _ede_options(raw: bytes, pos: int, end: int) -> bytes:
    """The EDE options among the OPT RDATA at `pos`..`end`, bounded (`MAX_PASSED_EDE`,
    `MAX_EDE_TEXT`); every other option (cookie, padding) is hop-by-hop and stays here. Junk
    in the options ends the walk: they are the upstream's business, not a reason to drop its
    answer."""
    kept: list[bytes] = []
    while pos + 4 <= end and len(kept) < MAX_PASSED_EDE:
        code = (raw[pos] << 8) | raw[pos + 1]
        body = pos + 4
        pos = body + ((raw[pos + 2] << 8) | raw[pos + 3])
        if pos > end:
            break
        if code != OPTION_EDE or pos - body < 2:
            continue
        text = raw[body + 2 : pos]
        if len(text) > MAX_EDE_TEXT:
            cut = MAX_EDE_TEXT
            while cut and text[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
                cut -= 1
            text = text[:cut]
        kept.append(
            b"".join((b"\x00\x0f", (2 + len(text)).to_bytes(2, "big"), raw[body : body + 2], text))
        )
    return b"".join(kept)


def client_reply(reply: UpstreamReply, query: Query, limit: int, opt: bytes) -> bytes:
    """The upstream's answer made the client's: its ID and question bytes back, the upstream's OPT
    replaced by `opt` (ours, empty when the client sent no EDNS) with the upstream's Extended
    DNS Errors added to it, and TC=1 with no records when the result exceeds the client's
    `limit` (RFC 1035 4.2.1, RFC 6891 7).

    The header's flags are ours, not the upstream's: we are a recursive service, so RA=1 and
    AA=0 even when the upstream is an authoritative server (RFC 1035 4.1.1); RD and CD are this
    client's; AD is the upstream's, but only for a client that set DO or AD (RFC 6840 5.8),
    since a cached or shared answer may have been asked for by someone else.
    """
    raw = reply.raw
    asked = query.flags
    kept = _KEPT_WITH_AD if asked & AD or query.dnssec_ok else _KEPT
    flags = (QR | RA) | (asked & (RD | CD)) | (((raw[2] << 8) | raw[3]) & kept)
    if opt and reply.ede:
        opt = _with_options(opt, reply.ede)
    additional = reply.additional_count + (1 if opt else 0)
    out = b"".join(
        (
            query.packet[0:2],
            flags.to_bytes(2, "big"),
            raw[4:10],
            additional.to_bytes(2, "big"),
            query.packet[HEADER_LEN : query.question_end],
            raw[query.question_end : reply.sections_end],
            reply.additional,
            opt,
        )
    )
    if len(out) <= limit:
        return out
    return truncated_reply(query, flags, opt, limit)


_KEPT: Final = TC | RCODE_MASK
_KEPT_WITH_AD: Final = TC | AD | RCODE_MASK
"""The upstream's header bits a client gets: TC and the rcode, and AD when it asked for it."""


def _with_options(opt: bytes, options: bytes) -> bytes:
    """Our OPT record (root owner, so its RDLENGTH is at 9..11) with `options` appended."""
    length = ((opt[9] << 8) | opt[10]) + len(options)
    return b"".join((opt[:9], length.to_bytes(2, "big"), opt[11:], options))


def truncated_reply(query: Query, flags: int, opt: bytes, limit: int = TCP_MAX_MESSAGE) -> bytes:
    """Header, question and OPT only, with TC=1: the client retries over TCP. The OPT loses
    its options when even that would not fit `limit`."""
    question = query.packet[HEADER_LEN : query.question_end]
    if opt and HEADER_LEN + len(question) + len(opt) > limit:
        opt = opt[:9] + b"\x00\x00"
    header = HEADER.pack(
        (query.packet[0] << 8) | query.packet[1], flags | TC | QR, 1, 0, 0, 1 if opt else 0
    )
    return header + question + opt


def udp_limit(query: Query) -> int:
    """Largest UDP reply for this client: 512 without EDNS, else its buffer, at most ours."""
    return min(query.udp_payload, EDNS_PAYLOAD)
