"""Wire parsing on hostile input: hex fixtures in, typed errors or located parts out."""

from __future__ import annotations

import itertools
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dnslib
import pytest

from resolver.protocol.edns import opt_record
from resolver.protocol.wire import (
    HEADER_LEN,
    BadVersion,
    Drop,
    FormError,
    NotImplementedOpcode,
    Query,
    UpstreamReply,
    WireError,
    client_reply,
    parse_query,
    read_name,
    reply_matches,
    udp_limit,
    upstream_query,
)

HEADER = "1234 0100 0001 0000 0000 0000"
HEADER_AR1 = "1234 0100 0001 0000 0000 0001"
WWW_EXAMPLE_COM = "03 777777 07 6578616d706c65 03 636f6d 00"
A_IN = "0001 0001"
OPT_4096_DO = "00 0029 1000 00 00 8000 0000"


def wire(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr.replace(" ", ""))


VALID = wire(HEADER + WWW_EXAMPLE_COM + A_IN)
VALID_EDNS = wire(HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + OPT_4096_DO)
LONG_NAME = "3f" + "61" * 63
MALFORMED = [
    ("empty", "", Drop, "short_header"),
    ("short header", "1234 0100 0001", Drop, "short_header"),
    (
        "response bit set",
        "1234 8100 0001 0000 0000 0000" + WWW_EXAMPLE_COM + A_IN,
        Drop,
        "is_response",
    ),
    (
        "opcode STATUS",
        "1234 1100 0001 0000 0000 0000" + WWW_EXAMPLE_COM + A_IN,
        NotImplementedOpcode,
        "opcode",
    ),
    ("no question", "1234 0100 0000 0000 0000 0000", FormError, "qdcount"),
    (
        "two questions",
        "1234 0100 0002 0000 0000 0000" + (WWW_EXAMPLE_COM + A_IN) * 2,
        FormError,
        "qdcount",
    ),
    (
        "answer in a query",
        "1234 0100 0001 0001 0000 0000" + WWW_EXAMPLE_COM + A_IN,
        FormError,
        "records_in_query",
    ),
    (
        "too many additional",
        "1234 0100 0001 0000 0000 0005" + WWW_EXAMPLE_COM + A_IN,
        FormError,
        "arcount",
    ),
    ("label of 64", HEADER + "40" + "61" * 64 + "00" + A_IN, FormError, "bad_label"),
    ("label type 10", HEADER + "80 61 00" + A_IN, FormError, "bad_label"),
    ("pointer in question", HEADER + "c00c" + A_IN, FormError, "compressed_question"),
    ("name over 255", HEADER + LONG_NAME * 4 + "00" + A_IN, FormError, "name_too_long"),
    ("name cut short", HEADER + "03 7777", FormError, "truncated"),
    ("no type and class", HEADER + WWW_EXAMPLE_COM + "00", FormError, "truncated"),
    ("trailing junk", HEADER + WWW_EXAMPLE_COM + A_IN + "00", FormError, "trailing_junk"),
    (
        "two OPT records",
        "1234 0100 0001 0000 0000 0002" + WWW_EXAMPLE_COM + A_IN + OPT_4096_DO * 2,
        FormError,
        "multiple_opt",
    ),
    (
        "OPT owner not root",
        HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "01 61 00 0029 1000 00 00 0000 0000",
        FormError,
        "opt_owner",
    ),
    (
        "OPT option overruns",
        HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "00 0029 1000 00 00 0000 0006 000a 0008 0102",
        FormError,
        "bad_edns_option",
    ),
    (
        "OPT rdata overruns message",
        HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "00 0029 1000 00 00 0000 0010 000a",
        FormError,
        "truncated",
    ),
    (
        "additional name points forwards",
        HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "c0ff 0001 0001 00000000 0000",
        FormError,
        "bad_pointer",
    ),
    (
        "EDNS version 1",
        HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "00 0029 1000 00 01 0000 0000",
        BadVersion,
        "badvers",
    ),
]


@pytest.mark.parametrize(
    ("case", "hexstr", "error", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED]
)
def test_malformed_queries_raise_typed_errors(
    case: str, hexstr: str, error: type[WireError], reason: str
) -> None:
    with pytest.raises(error) as raised:
        parse_query(wire(hexstr))
    assert raised.value.reason == reason


def test_errors_after_the_question_remember_where_it_ends() -> None:
    with pytest.raises(BadVersion) as raised:
        parse_query(wire(HEADER_AR1 + WWW_EXAMPLE_COM + A_IN + "00 0029 1000 00 01 0000 0000"))
    assert raised.value.question_end == 12 + 17 + 4
    assert raised.value.has_edns


@pytest.mark.parametrize(
    ("packet", "qname", "qtype", "has_edns", "payload", "dnssec_ok"),
    [
        (VALID, WWW_EXAMPLE_COM, 1, False, 512, False),
        (VALID_EDNS, WWW_EXAMPLE_COM, 1, True, 4096, True),
        (
            wire(HEADER + "03 575757 07 4578414d504c45 03 434f4d 00 0041 0001"),
            WWW_EXAMPLE_COM,
            65,
            False,
            512,
            False,
        ),
        (
            wire(HEADER_AR1 + "00" + "0002 0001" + "00 0029 0100 00 00 0000 0000"),
            "00",
            2,
            True,
            512,
            False,
        ),  # root query; a payload below 512 counts as 512
    ],
)
def test_valid_queries_are_located(
    packet: bytes, qname: str, qtype: int, has_edns: bool, payload: int, dnssec_ok: bool
) -> None:
    query = parse_query(packet)
    assert query.qname == wire(qname)
    assert query.qtype == qtype
    assert query.has_edns is has_edns
    assert query.udp_payload == payload
    assert query.dnssec_ok is dnssec_ok
    assert query.question == packet[12 : query.question_end]


def test_queries_from_an_independent_client_parse() -> None:
    made = dns.message.make_query(
        "WwW.TikTok.CoM.",
        "HTTPS",
        use_edns=0,
        payload=1400,
        want_dnssec=True,
        options=[dns.edns.ECSOption("192.0.2.0", 24)],
    )
    query = parse_query(made.to_wire())
    assert query.qname == b"\x03www\x06tiktok\x03com\x00"
    assert query.question[:4] == b"\x03WwW"
    assert (query.qtype, query.udp_payload, query.dnssec_ok) == (65, 1400, True)
    assert udp_limit(query) == 1232


def chained_pointer_message(links: int = 1000) -> bytes:
    """~2 KB: an answer whose name is the end of a chain of `links` pointers, each pointing at
    the one before. dnslib 0.9.26 follows it recursively into RecursionError."""
    header = wire("abcd 8180 0001 0002 0000 0000")
    question = wire("01 61 00" + A_IN)
    # Answer 1: owner "a." by pointer, type NULL; its rdata is the chain, each pointer pointing
    # at the one before it and the first at the question name.
    chain_start = 12 + len(question) + 12
    pointers = [0xC000 | 12] + [0xC000 | (chain_start + 2 * i) for i in range(links - 1)]
    rdata = b"".join(p.to_bytes(2, "big") for p in pointers)
    answer1 = wire("c00c 000a 0001 00000000") + len(rdata).to_bytes(2, "big") + rdata
    last = chain_start + 2 * (links - 1)
    answer2 = (0xC000 | last).to_bytes(2, "big") + wire("0001 0001 00000000 0004 7f000001")
    return header + question + answer1 + answer2


def test_chained_pointers_stop_at_the_hop_cap_where_dnslib_recurses() -> None:
    message = chained_pointer_message()
    assert 1900 < len(message) < 2200
    with pytest.raises(RecursionError):
        dnslib.DNSRecord.parse(message)
    answer2 = len(message) - 16
    with pytest.raises(FormError) as raised:
        read_name(message, answer2)
    assert raised.value.reason == "pointer_loop"


@pytest.mark.parametrize(
    ("message", "pos", "reason"),
    [
        (wire(HEADER + "c00c"), 12, "bad_pointer"),  # points at itself
        (wire(HEADER + "c00e 01 61 00"), 12, "bad_pointer"),  # points forwards
        (wire(HEADER + "c002"), 12, "bad_pointer"),  # points into the header
        (wire(HEADER + "c0"), 12, "truncated"),
        (wire(HEADER + "01 61 00 c00f"), 15, "bad_pointer"),  # a loop through itself
    ],
)
def test_read_name_rejects_bad_pointers(message: bytes, pos: int, reason: str) -> None:
    with pytest.raises(FormError) as raised:
        read_name(message, pos)
    assert raised.value.reason == reason


def test_read_name_follows_backward_pointers_and_lowercases() -> None:
    message = wire(HEADER + "03 575757 07 6578616d706c65 03 636f6d 00" + "01 78 c00c")
    assert read_name(message, 12) == (wire(WWW_EXAMPLE_COM), 29)
    assert read_name(message, 29) == (b"\x01x" + wire(WWW_EXAMPLE_COM), 33)


def test_upstream_query_has_our_opt_and_drops_the_clients() -> None:
    made = dns.message.make_query(
        "www.example.com",
        "A",
        use_edns=0,
        payload=4096,
        want_dnssec=True,
        options=[dns.edns.ECSOption("192.0.2.0", 24), dns.edns.CookieOption(b"12345678", b"")],
    )
    query = parse_query(made.to_wire())
    sent = dns.message.from_wire(upstream_query(query, 0xBEEF))
    assert sent.id == 0xBEEF
    assert sent.payload == 1232
    assert sent.ednsflags & dns.flags.DO
    assert sent.options == ()
    assert sent.question == made.question


def answer_for(
    query_wire: bytes, reply_id: int, *, records: int = 1, tc: bool = False, edns: bool = True
) -> bytes:
    request = dnslib.DNSRecord.parse(query_wire)
    reply = request.reply()
    reply.header.id = reply_id
    reply.header.tc = int(tc)
    for i in range(records):
        reply.add_answer(
            dnslib.RR(
                request.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(f"192.0.2.{i % 250}"), ttl=300
            )
        )
    reply.add_auth(dnslib.RR("example.com", dnslib.QTYPE.NS, rdata=dnslib.NS("ns.example.com")))
    if edns:
        reply.add_ar(dnslib.EDNS0(udp_len=1232))
    return bytes(reply.pack())  # dnslib packs a bytearray: the wire functions take bytes


def test_reply_matching_checks_id_qr_and_question() -> None:
    query = parse_query(wire(HEADER + "03 575757 07 6578616d706c65 03 636f6d 00" + A_IN))
    sent = upstream_query(query, 0x4242)
    good = answer_for(sent, 0x4242)
    assert reply_matches(good, 0x4242, query)
    assert not reply_matches(good, 0x4243, query)
    assert not reply_matches(sent, 0x4242, query)  # QR=0: our own query echoed back
    other_name = bytearray(good)
    other_name[13] = ord("v")
    assert not reply_matches(bytes(other_name), 0x4242, query)
    other_type = bytearray(good)
    other_type[12 + 17 + 1] = 28
    assert not reply_matches(bytes(other_type), 0x4242, query)
    assert not reply_matches(good[:20], 0x4242, query)


def test_client_reply_restores_id_and_case_and_rebuilds_opt() -> None:
    made = dns.message.make_query("WWW.Example.COM", "A", use_edns=0, want_dnssec=True)
    query = parse_query(made.to_wire())
    raw = answer_for(upstream_query(query, 7), 7)
    reply = UpstreamReply(raw, query.question_end - 12)
    out = dns.message.from_wire(client_reply(reply, query, 1232, opt_record(True)))
    assert out.id == made.id
    assert out.question[0].name.to_text() == "WWW.Example.COM."
    assert [rr.address for rr in out.answer[0]] == ["192.0.2.0"]
    assert out.edns == 0 and out.payload == 1232 and out.ednsflags & dns.flags.DO

    plain = parse_query(dns.message.make_query("www.example.com", "A").to_wire())
    stripped = dns.message.from_wire(client_reply(reply, plain, 512, b""))
    assert stripped.edns == -1  # no OPT for a client that sent none


def test_client_reply_truncates_to_the_client_limit() -> None:
    made = dns.message.make_query("www.example.com", "A")
    query = parse_query(made.to_wire())
    raw = answer_for(upstream_query(query, 9), 9, records=40)
    reply = UpstreamReply(raw, query.question_end - 12)
    full = client_reply(reply, query, 65535, b"")
    assert len(full) > 512
    small = client_reply(reply, query, udp_limit(query), b"")
    decoded = dns.message.from_wire(small)
    assert len(small) <= 512
    assert decoded.flags & dns.flags.TC and not decoded.answer
    assert decoded.question == made.question


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("cut inside answer", lambda raw: raw[:-20]),
        ("junk after records", lambda raw: raw + b"\x00"),
        ("answer count too high", lambda raw: raw[:6] + b"\x00\x09" + raw[8:]),
    ],
)
def test_malformed_upstream_replies_are_rejected(case: str, mutate: object) -> None:
    query = parse_query(VALID)
    raw = answer_for(upstream_query(query, 1), 1)
    with pytest.raises(FormError):
        UpstreamReply(mutate(raw), query.question_end - 12)  # type: ignore[operator]


def test_upstream_reply_layout() -> None:
    query = parse_query(VALID)
    raw = answer_for(upstream_query(query, 1), 1, tc=True)
    reply = UpstreamReply(raw, query.question_end - 12)
    assert reply.truncated
    assert reply.rcode == dns.rcode.NOERROR
    assert reply.additional_count == 0  # only the OPT, which is ours to rebuild


# --- what a client sees of an upstream's answer: header flags and Extended DNS Errors ----------


def client_query(
    name: str = "www.example.com", *, rd: bool = True, do: bool = False, ad: bool = False,
    cd: bool = False, edns: bool = True,
) -> tuple[dns.message.Message, Query]:  # fmt: skip
    made = dns.message.make_query(name, "A", use_edns=0 if edns or do else None, want_dnssec=do)
    made.flags = (
        (dns.flags.RD if rd else 0) | (dns.flags.AD if ad else 0) | (dns.flags.CD if cd else 0)
    )
    return made, parse_query(made.to_wire())


def upstream_answer(
    made: dns.message.Message,
    query: Query,
    *,
    flags: int = dns.flags.RA,
    rcode: int = dns.rcode.NOERROR,
    records: int = 1,
    options: list[dns.edns.Option] | None = None,
) -> UpstreamReply:
    """The upstream's reply to what we sent for `query`, with header `flags` as it set them."""
    sent = dns.message.from_wire(upstream_query(query, 0x0101))
    reply = dns.message.make_response(sent)
    reply.flags = dns.flags.QR | flags
    reply.set_rcode(rcode)
    for i in range(records):
        reply.answer.append(dns.rrset.from_text(made.question[0].name, 300, "IN", "A",
                                                f"192.0.2.{i % 250}"))  # fmt: skip
    reply.use_edns(0, 0, 1232, options=options or [])
    return UpstreamReply(reply.to_wire(max_size=65535), query.question_end - HEADER_LEN)


UPSTREAM_FLAGS = [
    ("recursive", dns.flags.RA),
    ("recursive, validated", dns.flags.RA | dns.flags.AD),
    ("authoritative", dns.flags.AA),  # nsd, a domain controller: AA=1, RA=0
    ("authoritative, AD", dns.flags.AA | dns.flags.AD),
    ("everything set", dns.flags.AA | dns.flags.RA | dns.flags.AD | dns.flags.CD | dns.flags.RD),
]
ASKER = list(itertools.product([False, True], repeat=4))  # (RD, DO, AD, CD)


@pytest.mark.parametrize(("rd", "do", "ad", "cd"), ASKER)
@pytest.mark.parametrize(("upstream", "flags"), UPSTREAM_FLAGS, ids=[u for u, _ in UPSTREAM_FLAGS])
@pytest.mark.parametrize("limit", [65535, 512], ids=["whole", "truncated"])
def test_client_reply_flags_are_a_recursive_services(
    rd: bool, do: bool, ad: bool, cd: bool, upstream: str, flags: int, limit: int
) -> None:
    """RA=1 and AA=0 whatever the upstream said, RD and CD the asker's, AD only when the upstream
    set it and the asker set DO or AD (RFC 1035 4.1.1, RFC 6840 5.7-5.8); on the truncated reply
    too."""
    made, query = client_query(rd=rd, do=do, ad=ad, cd=cd)
    reply = upstream_answer(made, query, flags=flags, records=40)
    out = dns.message.from_wire(client_reply(reply, query, limit, opt_record(do)))
    expected = (
        dns.flags.QR
        | dns.flags.RA
        | (dns.flags.RD if rd else 0)
        | (dns.flags.CD if cd else 0)
        | (dns.flags.AD if flags & dns.flags.AD and (do or ad) else 0)
        | (dns.flags.TC if limit == 512 else 0)
    )
    assert out.flags == expected
    assert out.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED])
def test_client_reply_keeps_the_rcode(rcode: int) -> None:
    made, query = client_query()
    reply = upstream_answer(made, query, flags=dns.flags.AA, rcode=rcode, records=0)
    out = dns.message.from_wire(client_reply(reply, query, 1232, opt_record(False)))
    assert out.rcode() == rcode
    assert out.flags & dns.flags.RA and not out.flags & dns.flags.AA


@pytest.mark.parametrize(("rd", "do", "ad", "cd"), ASKER)
def test_upstream_query_asks_for_recursion_and_ad(rd: bool, do: bool, ad: bool, cd: bool) -> None:
    """Always RD and AD (we need recursion, and want to hear whether the upstream validated,
    whoever asks first); CD and DO as the client's, since both are in the cache key."""
    _, query = client_query(rd=rd, do=do, ad=ad, cd=cd)
    sent = dns.message.from_wire(upstream_query(query, 7))
    assert sent.flags == dns.flags.RD | dns.flags.AD | (dns.flags.CD if cd else 0)
    assert bool(sent.ednsflags & dns.flags.DO) == do


def ede_of(message: dns.message.Message) -> list[tuple[int, str | None]]:
    return [
        (int(option.code), option.text)
        for option in message.options
        if isinstance(option, dns.edns.EDEOption)
    ]


def test_upstream_reply_keeps_its_extended_errors_and_nothing_else() -> None:
    made, query = client_query()
    options = [
        dns.edns.CookieOption(b"12345678", b"abcdefgh"),
        dns.edns.EDEOption(6, "signature crypto failed"),
        dns.edns.GenericOption(12, b"\x00" * 16),  # padding
        dns.edns.EDEOption(17, None),
    ]
    reply = upstream_answer(made, query, rcode=dns.rcode.SERVFAIL, records=0, options=options)
    expected = (
        bytes.fromhex("000f 0019 0006") + b"signature crypto failed"
        + bytes.fromhex("000f00020011")
    )  # fmt: skip
    assert reply.ede == expected
    plain = upstream_answer(made, query)
    assert plain.ede == b""


@pytest.mark.parametrize(
    ("ours", "expected"),
    [
        (None, [(6, "signature crypto failed"), (17, "filtered")]),
        (3, [(3, "ours"), (6, "signature crypto failed"), (17, "filtered")]),
    ],
)
def test_client_reply_passes_upstream_extended_errors_beside_ours(
    ours: int | None, expected: list[tuple[int, str]]
) -> None:
    made, query = client_query(do=True)
    options = [dns.edns.EDEOption(6, "signature crypto failed"), dns.edns.EDEOption(17, "filtered")]
    reply = upstream_answer(made, query, rcode=dns.rcode.SERVFAIL, records=0, options=options)
    opt = opt_record(True, ours, b"ours") if ours is not None else opt_record(True)
    out = dns.message.from_wire(client_reply(reply, query, 1232, opt))
    assert ede_of(out) == expected
    assert out.ednsflags & dns.flags.DO and out.payload == 1232
    _, plain = client_query(edns=False)
    assert dns.message.from_wire(client_reply(reply, plain, 512, b"")).edns == -1


def test_upstream_extended_errors_are_bounded() -> None:
    """A hostile upstream cannot make our answers carry kilobytes of its text: at most three of
    its EDEs, each EXTRA-TEXT cut to 200 bytes on a character boundary."""
    made, query = client_query()
    options = [dns.edns.EDEOption(code, "é" * 700) for code in (6, 7, 8, 9, 10)]
    reply = upstream_answer(made, query, rcode=dns.rcode.SERVFAIL, records=0, options=options)
    out = dns.message.from_wire(client_reply(reply, query, 65535, opt_record(False)))
    found = ede_of(out)
    assert [code for code, _ in found] == [6, 7, 8]
    assert all(text == "é" * 100 for _, text in found)


def test_a_truncated_reply_fits_the_limit_even_with_long_extended_errors() -> None:
    made, query = client_query("a" * 60 + ".b" * 90 + ".example")
    options = [dns.edns.EDEOption(code, "x" * 200) for code in (6, 7, 8)]
    reply = upstream_answer(made, query, records=40, options=options)
    out = client_reply(reply, query, 512, opt_record(False, 3, b"ours"))
    assert len(out) <= 512
    decoded = dns.message.from_wire(out)
    assert decoded.flags & dns.flags.TC and decoded.edns == 0


def test_malformed_upstream_options_are_ignored_not_fatal() -> None:
    """Options are the upstream's business: junk in them loses its EDEs, not the answer."""
    made, query = client_query()
    raw = bytearray(upstream_answer(made, query, options=[dns.edns.EDEOption(6, "x")]).raw)
    raw[-5] = 0xFF  # the EDE option's length now runs past the OPT's end
    reply = UpstreamReply(bytes(raw), query.question_end - HEADER_LEN)
    assert reply.ede == b"" and reply.rcode == dns.rcode.NOERROR


HEADER_BYTES = [  # (case, header after the ID, as parse_query reads it byte by byte)
    ("plain query", "0100 0001 0000 0000 0000"),
    ("256 questions (high byte only)", "0100 0100 0000 0000 0000"),
    ("257 questions", "0100 0101 0000 0000 0000"),
    ("256 answers", "0100 0001 0100 0000 0000"),
    ("one authority record", "0100 0001 0000 0001 0000"),
    ("256 authority records", "0100 0001 0000 0100 0000"),
    ("260 additional records", "0100 0001 0000 0000 0104"),
    ("four additional records", "0100 0001 0000 0000 0004"),
    ("opcode and response", "f900 0001 0000 0000 0000"),
    ("every low flag", "00ff 0001 0000 0000 0000"),
]


def reference_check(packet: bytes) -> tuple[type[WireError], str] | None:
    """The header checks as `struct` reads them (what parse_query did before reading bytes)."""
    _, flags, qdcount, ancount, nscount, arcount = struct.unpack_from(">HHHHHH", packet)
    if flags & 0x8000:
        return Drop, "is_response"
    if flags & 0x7800:
        return NotImplementedOpcode, "opcode"
    if qdcount != 1:
        return FormError, "qdcount"
    if ancount or nscount:
        return FormError, "records_in_query"
    if arcount > 4:
        return FormError, "arcount"
    return None


@pytest.mark.parametrize(("case", "header"), HEADER_BYTES, ids=[c[0] for c in HEADER_BYTES])
def test_the_header_read_byte_by_byte_checks_what_struct_would(case: str, header: str) -> None:
    packet = wire("1234" + header + WWW_EXAMPLE_COM + A_IN)
    expected = reference_check(packet)
    try:
        query = parse_query(packet)
    except WireError as error:
        if expected is None:  # past the header: its records are missing, not its counts wrong
            assert error.reason == "truncated", case
        else:
            assert (type(error), error.reason) == expected, case
    else:
        assert expected is None, case
        assert query.flags == struct.unpack_from(">H", packet, 2)[0]
        assert (query.qtype, query.qclass) == (1, 1)


@pytest.mark.parametrize(
    "name",
    [b"\x03www\x07example\x03com\x00", b"\x03WwW\x07ExAmPlE\x03COM\x00",
     b"\x05@AZ[`\x05az{\x7f\xff\x00", bytes([1, 0xC1, 1, 0xDA, 0])],
)  # fmt: skip
def test_the_question_name_is_lowered_as_bytes_lower_does(name: bytes) -> None:
    packet = wire("1234 0100 0001 0000 0000 0000") + name + wire("001c 0001")
    query = parse_query(packet)
    assert query.qname == name.lower()
    assert (query.qtype, query.qclass) == (28, 1)
