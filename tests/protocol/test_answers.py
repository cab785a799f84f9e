"""Synthesised answers, decoded by an independent parser (dnspython)."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver.protocol.answers import (
    SinkholeAnswer,
    error_reply,
    local_data,
    refused,
    servfail,
    truncated,
)
from resolver.protocol.edns import EdeCode
from resolver.protocol.wire import WireError, parse_query

TTL = 60


def ask(
    name: str, rdtype: str, *, edns: bool = True, rd: bool = True
) -> tuple[dns.message.Message, bytes]:
    made = dns.message.make_query(name, rdtype, use_edns=0 if edns else None, want_dnssec=edns)
    if not rd:
        made.flags &= ~dns.flags.RD
    return made, made.to_wire()


def ede_of(reply: dns.message.Message) -> tuple[int, str] | None:
    for option in reply.options:
        if isinstance(option, dns.edns.EDEOption):
            return int(option.code), option.text or ""
    return None


# (mode, qtype, rcode, answer rdata, has SOA, EDE code)
CASES = [
    ("null_ip", "A", "NOERROR", ["0.0.0.0"], False, EdeCode.FORGED_ANSWER),
    ("null_ip", "AAAA", "NOERROR", ["::"], False, EdeCode.FORGED_ANSWER),
    ("null_ip", "HTTPS", "NOERROR", [], True, EdeCode.BLOCKED),
    ("null_ip", "SVCB", "NOERROR", [], True, EdeCode.BLOCKED),
    ("null_ip", "MX", "NOERROR", [], True, EdeCode.BLOCKED),
    ("null_ip", "ANY", "NOERROR", [], True, EdeCode.BLOCKED),
    ("nxdomain", "A", "NXDOMAIN", [], True, EdeCode.BLOCKED),
    ("nxdomain", "TXT", "NXDOMAIN", [], True, EdeCode.BLOCKED),
    ("nodata", "A", "NOERROR", [], True, EdeCode.BLOCKED),
    ("refused", "A", "REFUSED", [], False, EdeCode.BLOCKED),
    ("ip", "A", "NOERROR", ["192.0.2.10", "192.0.2.11"], False, EdeCode.FORGED_ANSWER),
    ("ip", "AAAA", "NOERROR", ["2001:db8::10"], False, EdeCode.FORGED_ANSWER),
]
WALLED_GARDEN = tuple(ipaddress.ip_address(a) for a in ("192.0.2.10", "192.0.2.11", "2001:db8::10"))


@pytest.mark.parametrize(("mode", "qtype", "rcode", "rdata", "has_soa", "ede"), CASES)
def test_sinkhole_answers(
    mode: str, qtype: str, rcode: str, rdata: list[str], has_soa: bool, ede: int
) -> None:
    made, packet = ask("WwW.TikTok.CoM", qtype)
    query = parse_query(packet)
    sinkhole = SinkholeAnswer(mode, TTL, WALLED_GARDEN if mode == "ip" else ())
    zone_offset = 4  # "tiktok.com" inside "www.tiktok.com"
    reply = dns.message.from_wire(sinkhole.build(query, zone_offset, "blocked by list tiktok"))
    assert reply.id == made.id
    assert reply.question == made.question
    assert reply.question[0].name.to_text() == "WwW.TikTok.CoM."  # case kept
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert sorted(rr.to_text() for rrset in reply.answer for rr in rrset) == sorted(rdata)
    assert all(rrset.ttl == TTL for rrset in reply.answer)
    if has_soa:
        (soa,) = reply.authority
        assert soa.rdtype == dns.rdatatype.SOA
        assert soa.name.to_text().lower() == "tiktok.com."
        assert soa.ttl == TTL and soa[0].minimum == TTL
    else:
        assert not reply.authority
    assert ede_of(reply) == (ede, "blocked by list tiktok")
    assert reply.ednsflags & dns.flags.DO


def test_no_opt_without_edns_and_rd_copied() -> None:
    _, packet = ask("tiktok.com", "A", edns=False, rd=False)
    reply = dns.message.from_wire(
        SinkholeAnswer("nxdomain", TTL).build(parse_query(packet), 0, "x")
    )
    assert reply.edns == -1
    assert not reply.flags & dns.flags.RD
    assert reply.authority[0].name.to_text() == "tiktok.com."


def test_ip_mode_without_an_address_of_that_family_is_nodata() -> None:
    _, packet = ask("tiktok.com", "AAAA")
    only_v4 = (ipaddress.ip_address("192.0.2.10"),)
    reply = dns.message.from_wire(
        SinkholeAnswer("ip", TTL, only_v4).build(parse_query(packet), 0, "x")
    )
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and reply.authority


@pytest.mark.parametrize(
    ("build", "rcode", "ede"),
    [
        (lambda q: refused(q, EdeCode.PROHIBITED, "client not allowed"), dns.rcode.REFUSED, 18),
        (
            lambda q: servfail(q, EdeCode.NO_REACHABLE_AUTHORITY, "no upstream"),
            dns.rcode.SERVFAIL,
            22,
        ),
    ],
)
def test_refused_and_servfail(build: object, rcode: int, ede: int) -> None:
    made, packet = ask("example.org", "A")
    reply = dns.message.from_wire(build(parse_query(packet)))  # type: ignore[operator]
    assert reply.id == made.id and reply.question == made.question
    assert reply.rcode() == rcode
    assert ede_of(reply)[0] == ede  # type: ignore[index]


@pytest.mark.parametrize(
    ("hexstr", "rcode", "qdcount"),
    [
        ("1234 0100 0002 0000 0000 0000", dns.rcode.FORMERR, 0),
        ("1234 1100 0001 0000 0000 0000 00 0001 0001", dns.rcode.NOTIMP, 0),
        (
            "1234 0100 0001 0000 0000 0001 00 0001 0001 00 0029 1000 00 01 0000 0000",
            dns.rcode.BADVERS,
            1,
        ),
        ("1234 0100 0001 0000 0000 0000 00 0001 0001 ff", dns.rcode.FORMERR, 1),
    ],
)
def test_error_replies(hexstr: str, rcode: int, qdcount: int) -> None:
    packet = bytes.fromhex(hexstr.replace(" ", ""))
    with pytest.raises(WireError) as raised:
        parse_query(packet)
    out = error_reply(packet, raised.value)
    assert out is not None
    assert out[:2] == packet[:2]
    assert int.from_bytes(out[4:6], "big") == qdcount
    reply = dns.message.from_wire(out)
    assert reply.rcode() == rcode
    if rcode == dns.rcode.BADVERS:
        assert reply.edns == 0


def test_dropped_packets_get_no_reply() -> None:
    packet = bytes.fromhex("1234 8100 0001 0000 0000 0000 00 0001 0001".replace(" ", ""))
    with pytest.raises(WireError) as raised:
        parse_query(packet)
    assert error_reply(packet, raised.value) is None


# ----- RPZ answers: the exact bytes -----------------------------------------------------------

X_TEST_QUESTION = "01 78 04 74 65 73 74 00"  # x.test
GARDEN = bytes.fromhex("06 67 61 72 64 65 6e 07 65 78 61 6d 70 6c 65 00".replace(" ", ""))
LOCAL_RECORDS = ((1, bytes([192, 0, 2, 1])), (1, bytes([192, 0, 2, 2])), (16, b"\x02hi"))


def hex_query(qtype: str, qclass: str = "0001") -> bytes:
    return bytes.fromhex(f"1234 0100 0001 0000 0000 0000 {X_TEST_QUESTION} {qtype} {qclass}"
                         .replace(" ", ""))  # fmt: skip


def test_truncated_is_an_empty_answer_with_tc() -> None:
    reply = truncated(parse_query(hex_query("0001")))
    expected = f"1234 8380 0001 0000 0000 0000 {X_TEST_QUESTION} 0001 0001"
    assert reply.hex() == expected.replace(" ", "")


@pytest.mark.parametrize(
    ("qtype", "records", "expected"),
    [
        (  # A: both A records, owned by a pointer to the question, TTL 60
            "0001",
            LOCAL_RECORDS,
            "1234 8180 0001 0002 0000 0000 {q} 0001 0001"
            " c00c 0001 0001 0000003c 0004 c0000201 c00c 0001 0001 0000003c 0004 c0000202",
        ),
        (  # TXT: its own type only
            "0010",
            LOCAL_RECORDS,
            "1234 8180 0001 0001 0000 0000 {q} 0010 0001 c00c 0010 0001 0000003c 0003 026869",
        ),
        (  # a CNAME answers every type
            "000f",
            ((5, GARDEN),),
            "1234 8180 0001 0001 0000 0000 {q} 000f 0001 c00c 0005 0001 0000003c 0010 "
            + GARDEN.hex(),
        ),
        ("001c", LOCAL_RECORDS, None),  # AAAA: none of that type (the caller answers NODATA)
    ],
)
def test_local_data_bytes(
    qtype: str, records: tuple[tuple[int, bytes], ...], expected: str | None
) -> None:
    reply = local_data(parse_query(hex_query(qtype)), records, 60, "blocked by list x", 512)
    if expected is None:
        assert reply is None
    else:
        assert reply is not None
        assert reply.hex() == expected.format(q=X_TEST_QUESTION).replace(" ", "")


def test_local_data_not_in_class_in_and_too_big() -> None:
    assert local_data(parse_query(hex_query("0001", "0003")), LOCAL_RECORDS, 60, "", 512) is None
    query = parse_query(hex_query("0001"))
    assert local_data(query, LOCAL_RECORDS, 60, "", 40) == truncated(query)


def test_local_data_carries_ede_forged_answer_with_edns() -> None:
    made, packet = ask("x.test", "A")
    reply = local_data(parse_query(packet), LOCAL_RECORDS, 60, "blocked by list x", 1232)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == made.id
    assert [rdata.to_text() for rdata in parsed.answer[0]] == ["192.0.2.1", "192.0.2.2"]
    assert ede_of(parsed) == (EdeCode.FORGED_ANSWER, "blocked by list x")
    tc = dns.message.from_wire(truncated(parse_query(packet)))
    assert tc.flags & dns.flags.TC and tc.edns == 0 and not tc.answer


@pytest.mark.parametrize("mode", ["null_ip", "ip"])
@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
@pytest.mark.parametrize("flags", [0x0000, 0x0100, 0x0010, 0x0110, 0x0130])
def test_an_address_answer_without_edns_is_the_one_compose_makes(
    mode: str, rdtype: str, flags: int
) -> None:
    """The prepared answer to a query without EDNS (`SinkholeAnswer._plain`) is byte for byte
    the one the general path composes, whatever flags the client set."""
    from resolver.protocol import answers

    _, wire = ask("WwW.Blocked.Example", rdtype, edns=False)
    query = parse_query(wire[:2] + flags.to_bytes(2, "big") + wire[4:])
    addresses = (ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::7"))
    sinkhole = SinkholeAnswer(mode, TTL, addresses)
    records = sinkhole._records[query.qtype]
    expected = answers._compose(query, 0, records, answers._NONE, b"")
    assert sinkhole.build(query, 4, "blocked by list x") == expected


@pytest.mark.parametrize(("rd", "cd"), [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize(
    ("mode", "rdtype", "addresses"),
    [
        ("null_ip", "A", ["0.0.0.0"]),
        ("null_ip", "AAAA", ["::"]),
        ("ip", "A", ["192.0.2.10", "192.0.2.11"]),
    ],
)
def test_plain_address_answer_copies_rd_and_cd(
    mode: str, rdtype: str, addresses: list[str], rd: bool, cd: bool
) -> None:
    """The prepared answer to a query without EDNS: the ID copied, QR and RA set, RD and CD as
    asked, NOERROR, the question and the addresses, no OPT."""
    made = dns.message.make_query("tiktok.com", rdtype, use_edns=None)
    made.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    query = parse_query(made.to_wire())
    reply = dns.message.from_wire(SinkholeAnswer(mode, TTL, WALLED_GARDEN).build(query, 0, "x"))
    assert reply.id == made.id and reply.rcode() == dns.rcode.NOERROR and reply.edns == -1
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA
    assert bool(reply.flags & dns.flags.RD) == rd and bool(reply.flags & dns.flags.CD) == cd
    assert reply.question == made.question
    assert [rdata.to_text() for rdata in reply.answer[0]] == addresses
