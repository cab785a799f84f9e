"""Sinkhole answers from the running server in its default mode (null_ip), over UDP and TCP."""

from __future__ import annotations

import secrets
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import FakeUpstream
from harness import (
    BLOCK_TTL,
    LOCAL_LIST_NAME,
    Event,
    ServerProcess,
    ask,
    block_text,
    ede,
    query,
    question_bytes,
)

pytestmark = pytest.mark.e2e

EDE_FORGED = 4
EDE_BLOCKED = 15

BLOCKED = [
    ("tiktok.com.", "tiktok"),
    ("www.tiktok.com.", "tiktok"),
    ("WwW.TikTok.CoM.", "tiktok"),
    ("a.b.c.tiktokv.com.", "tiktok"),
    ("douyin.com.", "tiktok"),
    ("m.musical.ly.", "tiktok"),
    ("v16.tiktokcdn-eu.com.", "tiktok"),
    ("banned.example.", LOCAL_LIST_NAME),
    ("deep.sub.banned.example.", LOCAL_LIST_NAME),
    ("shouty.banned-too.example.", LOCAL_LIST_NAME),
    ("hosts-one.example.", LOCAL_LIST_NAME),
    ("x.hosts-two.example.", LOCAL_LIST_NAME),
    ("hosts-three.example.", LOCAL_LIST_NAME),
]

NOT_BLOCKED = [
    ("nottiktok.com.", "192.0.2.20"),
    ("www.nottiktok.com.", "192.0.2.20"),
    ("tiktok.com.example.org.", "192.0.2.21"),
]


def assert_untouched_upstreams(upstreams: tuple[FakeUpstream, FakeUpstream], name: str) -> None:
    for upstream in upstreams:
        assert upstream.queries(name) == [], f"blocked {name} reached upstream {upstream.address}"


def assert_sinkhole_header(
    sent: dns.message.Message, wire: bytes, reply: dns.message.Message
) -> None:
    """ID kept, QR and RA set, RD copied, question echoed byte for byte (case included)."""
    assert reply.id == sent.id
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.RA
    assert bool(reply.flags & dns.flags.RD) == bool(sent.flags & dns.flags.RD)
    assert question_bytes(wire) == question_bytes(sent.to_wire())


def assert_negative_soa(name: str, reply: dns.message.Message) -> None:
    """One SOA that covers the name and makes clients cache the denial for blocking.ttl."""
    assert not reply.answer
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
    soa = reply.authority[0]
    assert dns.name.from_text(name).is_subdomain(soa.name)
    assert min(soa.ttl, next(iter(soa)).minimum) == BLOCK_TTL


@pytest.mark.parametrize(("rdtype", "address"), [("A", "0.0.0.0"), ("AAAA", "::")])
@pytest.mark.parametrize(("name", "list_name"), BLOCKED)
def test_address_queries_get_the_null_address(
    server: ServerProcess,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    name: str,
    list_name: str,
    rdtype: str,
    address: str,
) -> None:
    sent = query(name, rdtype, edns=True)
    wire, reply = ask(sent, server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    assert_sinkhole_header(sent, wire, reply)
    assert len(reply.answer) == 1
    rrset = reply.answer[0]
    assert (rrset.name, rrset.rdtype) == (dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
    assert [rdata.to_text() for rdata in rrset] == [address]
    assert rrset.ttl == BLOCK_TTL
    assert ede(reply) == [(EDE_FORGED, block_text(list_name))]
    assert_untouched_upstreams(upstreams, name)


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "HTTPS", "SVCB", "ANY", "NS", "CNAME", "SOA"])
@pytest.mark.parametrize(("name", "list_name"), [BLOCKED[1], BLOCKED[2], BLOCKED[-1]])
def test_other_types_get_nodata_with_soa(
    server: ServerProcess,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    name: str,
    list_name: str,
    rdtype: str,
) -> None:
    sent = query(name, rdtype, edns=True)
    wire, reply = ask(sent, server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    assert_sinkhole_header(sent, wire, reply)
    assert_negative_soa(name, reply)
    assert ede(reply) == [(EDE_BLOCKED, block_text(list_name))]
    assert_untouched_upstreams(upstreams, name)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize("rd", [True, False])
def test_reply_shape_over_each_transport(
    server: ServerProcess, transport: str, edns: bool, rd: bool
) -> None:
    sent = query("Www.TIKTOK.com.", "A", edns=edns, rd=rd)
    wire, reply = ask(sent, server.address, transport)
    assert_sinkhole_header(sent, wire, reply)
    assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == ["0.0.0.0"]
    if edns:
        assert reply.edns == 0
        assert ede(reply) == [(EDE_FORGED, block_text("tiktok"))]
    else:
        assert reply.edns == -1, "no OPT in the reply when the query had none"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_nodata_without_edns_has_no_opt(server: ServerProcess, transport: str) -> None:
    sent = query("tiktok.com.", "HTTPS")
    _, reply = ask(sent, server.address, transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert_negative_soa("tiktok.com.", reply)
    assert reply.edns == -1


def test_blocked_query_is_audited(server: ServerProcess) -> None:
    name = f"Audit-{secrets.token_hex(4)}.TikTok.com."
    ask(query(name, "AAAA"), server.address)
    wanted = name.lower().rstrip(".")

    def matches(event: Event) -> bool:
        return (
            event.get("event") == "blocked"
            and str(event.get("qname", "")).lower().rstrip(".") == wanted
        )

    event = server.wait_for_event(matches)
    assert event is not None, f"no blocked event for {name}"
    assert event.get("qtype") == "AAAA"
    assert event.get("entry") == "tiktok"
    assert event.get("answer") == "null_ip"
    assert "127.0.0.1" in str(event.get("client"))
    assert "timestamp" in event


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("name", "address"), NOT_BLOCKED)
def test_lookalike_names_are_forwarded(
    server: ServerProcess,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    transport: str,
    name: str,
    address: str,
) -> None:
    sent = query(name, "A", edns=True)
    _, reply = ask(sent, server.address, transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == [address]
    assert ede(reply) == []
    assert upstreams[0].queries(name), f"{name} should have been forwarded"


def test_control_characters_in_logged_names_are_escaped(server: ServerProcess) -> None:
    """A hostile label must not put raw escape sequences or newlines into the audit trail."""
    token = secrets.token_hex(4)
    label = f"evil{token}\x1b[31m\nfake\x00".encode()
    sent = dns.message.make_query(dns.name.Name((label, b"tiktok", b"com", b"")), "A")
    _, reply = ask(sent, server.address)
    assert [r.to_text() for rrset in reply.answer for r in rrset] == ["0.0.0.0"]
    event = server.wait_for_event(
        lambda e: e.get("event") == "blocked" and token in str(e.get("qname", ""))
    )
    assert event is not None, "no blocked event for the hostile name"
    qname = str(event["qname"])
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in qname), repr(qname)
    assert "tiktok.com" in qname.lower()


def test_allowed_queries_are_not_logged_by_default(server: ServerProcess) -> None:
    name = f"quiet-{secrets.token_hex(4)}.wild.example.org."
    _, reply = ask(query(name, "A"), server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    ask(query("www.tiktok.com.", "A"), server.address)
    assert server.wait_for_event(lambda e: e.get("event") == "blocked") is not None
    time.sleep(0.2)
    bare = name.rstrip(".")
    assert [line for line in server.stdout_lines if bare in line] == []
