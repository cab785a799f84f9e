"""Forwarding through the real server: fidelity, EDNS rebuilding, failover, spoofing, TC, merging.

The first upstream plays a scenario chosen by the query name (see `harness.PRIMARY_BEHAVIOURS`);
the second answers normally, so where an answer came from shows which path the server took.
Timeouts in the config: 0.5 s per try, 2 s per query.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import BIG_A_COUNT, FORGED_ADDRESS, FakeUpstream, Received
from harness import (
    SLOW_DELAY,
    SPOOF_DELAY,
    ServerProcess,
    ask,
    ede,
    exchange,
    fresh_name,
    make_config,
    mixed_case,
    query,
    question_bytes,
    rrsets_with_ttl,
)

pytestmark = pytest.mark.e2e

TRY_TIMEOUT = 0.5
DEADLINE = 2.0
WILD_ADDRESS = "192.0.2.99"
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23
COOKIE = 10
ECS = 8

Upstreams = tuple[FakeUpstream, FakeUpstream]


@pytest.fixture(autouse=True)
def primary_first(server: ServerProcess, upstreams: Upstreams) -> None:
    """Start every test with the first upstream trusted again.

    The server may demote an upstream after repeated failures (tried after the healthy ones) and
    these tests fail the first upstream on purpose. A `heal` query fails on the second upstream
    and succeeds on the first, so whichever order the server uses, the first upstream ends the
    query with a success, which resets its health.
    """
    since = time.monotonic()
    _, reply = ask(query(fresh_name("heal"), "A"), server.address, timeout=DEADLINE + 3)
    assert reply.rcode() == dns.rcode.NOERROR, "the heal query should be answered by upstream 1"
    assert upstreams[0].queries(since=since)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(
        rdata.to_text()
        for rrset in reply.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    )


def only_query(upstream: FakeUpstream, name: str, since: float) -> Received:
    seen = upstream.queries(name, since=since)
    assert len(seen) == 1, f"{upstream.address} saw {len(seen)} queries for {name}, expected 1"
    return seen[0]


def assert_same_sections(reply: dns.message.Message, upstream_reply: dns.message.Message) -> None:
    assert reply.rcode() == upstream_reply.rcode()
    assert rrsets_with_ttl(reply.answer) == rrsets_with_ttl(upstream_reply.answer)
    assert rrsets_with_ttl(reply.authority) == rrsets_with_ttl(upstream_reply.authority)


FIDELITY_NAMES: dict[str, Callable[[], str]] = {
    "wild": fresh_name,
    "mixed-case": lambda: mixed_case(fresh_name()),
    "cname": lambda: fresh_name("x", "cname.example.org"),
    "nxdomain": lambda: fresh_name("nx", "example.org"),
}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("kind", "rdtype"),
    [
        ("wild", "A"),
        ("wild", "AAAA"),
        ("wild", "TXT"),
        ("wild", "MX"),
        ("wild", "SRV"),
        ("mixed-case", "A"),
        ("cname", "A"),
        ("cname", "AAAA"),
        ("nxdomain", "A"),
    ],
)
def test_reply_equals_upstream_reply(
    server: ServerProcess, upstreams: Upstreams, transport: str, kind: str, rdtype: str
) -> None:
    name = FIDELITY_NAMES[kind]()
    since = time.monotonic()
    sent = query(name, rdtype)
    wire, reply = ask(sent, server.address, transport)
    upstream_reply = only_query(upstreams[0], name, since).last_reply()

    assert reply.id == sent.id
    assert question_bytes(wire) == question_bytes(sent.to_wire())
    assert reply.flags & dns.flags.QR
    assert_same_sections(reply, upstream_reply)
    if kind != "nxdomain":
        assert reply.answer or reply.authority, "the fixture should give something to compare"
    assert reply.edns == -1, "the upstream's OPT must not reach a client that sent none"
    assert upstreams[1].queries(name, since=since) == []


@pytest.mark.parametrize("dnssec", [False, True])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_upstream_query_is_rebuilt(
    server: ServerProcess, upstreams: Upstreams, dnssec: bool, transport: str
) -> None:
    """New ID, our own OPT (1232, DO copied), the client's cookie and ECS left behind."""
    since = time.monotonic()
    options = [
        dns.edns.CookieOption(bytes.fromhex("0123456789abcdef"), b""),
        dns.edns.ECSOption("198.51.100.0", 24),
    ]
    name = fresh_name()
    sent = query(name, "A", dnssec=dnssec, payload=4000, options=options)
    _, reply = ask(sent, server.address, transport)
    received = only_query(upstreams[0], name, since)
    upstream_query = received.message
    assert upstream_query is not None

    assert received.query_id != sent.id
    assert upstream_query.edns == 0
    assert upstream_query.payload == 1232
    assert bool(upstream_query.ednsflags & dns.flags.DO) == dnssec
    codes = {int(option.otype) for option in upstream_query.options}
    assert COOKIE not in codes and ECS not in codes

    assert reply.id == sent.id
    assert reply.edns == 0
    assert bool(reply.ednsflags & dns.flags.DO) == dnssec
    assert_same_sections(reply, received.last_reply())
    types = sorted(dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.answer)
    assert types == (["A", "RRSIG"] if dnssec else ["A"])


def test_upstream_ids_are_random(server: ServerProcess, upstreams: Upstreams) -> None:
    since = time.monotonic()
    names = [fresh_name() for _ in range(20)]
    for name in names:
        sent = query(name, "A")
        sent.id = 4242
        ask(sent, server.address)
    ids = [only_query(upstreams[0], name, since).query_id for name in names]
    assert 4242 not in ids
    assert len(set(ids)) >= 18, f"upstream IDs look predictable: {ids}"
    ports = {only_query(upstreams[0], name, since).peer[1] for name in names}
    assert len(ports) >= 10, f"upstream source ports look fixed: {sorted(ports)}"


@pytest.mark.parametrize("edns", [False, True])
def test_failover_after_silent_upstream(
    server: ServerProcess, upstreams: Upstreams, edns: bool
) -> None:
    name = fresh_name("silent")
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=edns), server.address)
    elapsed = time.monotonic() - since
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == [WILD_ADDRESS]
    assert 0.8 * TRY_TIMEOUT <= elapsed <= TRY_TIMEOUT + 1.0
    first, second = (only_query(u, name, since) for u in upstreams)
    assert first.at < second.at
    assert_same_sections(reply, second.last_reply())


@pytest.mark.parametrize("edns", [False, True])
def test_all_upstreams_silent_gives_servfail_within_deadline(
    server: ServerProcess, upstreams: Upstreams, edns: bool
) -> None:
    name = fresh_name("allsilent")
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=edns), server.address, timeout=DEADLINE + 3)
    elapsed = time.monotonic() - since
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert 0.8 * TRY_TIMEOUT <= elapsed <= DEADLINE + 1.0
    assert not reply.answer
    for upstream in upstreams:
        assert upstream.queries(name, since=since), f"{upstream.address} was never tried"
    if edns:
        codes = [code for code, _ in ede(reply)]
        assert codes and set(codes) <= {EDE_NO_REACHABLE_AUTHORITY, EDE_NETWORK_ERROR}
    else:
        assert reply.edns == -1
    second = upstreams[1].address
    logged = server.wait_for_event(
        lambda e: e.get("event") == "upstream_failed" and second in json.dumps(e)
    )
    assert logged is not None, f"no upstream_failed event names {second}"


@pytest.mark.parametrize("scenario", ["servfail", "refused"])
def test_error_rcode_from_first_upstream_moves_to_second(
    server: ServerProcess, upstreams: Upstreams, scenario: str
) -> None:
    name = fresh_name(scenario)
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=True), server.address)
    elapsed = time.monotonic() - since
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == [WILD_ADDRESS]
    only_query(upstreams[0], name, since)
    assert_same_sections(reply, only_query(upstreams[1], name, since).last_reply())
    assert elapsed < TRY_TIMEOUT, "an error reply should move on at once, not after the timeout"


@pytest.mark.parametrize(
    "scenario",
    ["spoof-id", "spoof-qname", "spoof-qtype", "spoof-source", "junk-first", "spoof-all"],
)
def test_bogus_replies_are_ignored_while_waiting(
    server: ServerProcess, upstreams: Upstreams, scenario: str
) -> None:
    """A decoy arrives first; the server must keep waiting and return the genuine reply."""
    name = fresh_name(scenario)
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=True), server.address)
    elapsed = time.monotonic() - since
    assert FORGED_ADDRESS not in addresses(reply)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == [WILD_ADDRESS]
    assert SPOOF_DELAY <= elapsed < TRY_TIMEOUT, "the decoy must not end the try early"
    assert upstreams[1].queries(name, since=since) == []


def test_garbage_from_upstream_fails_over_or_servfails(
    server: ServerProcess, upstreams: Upstreams
) -> None:
    name = fresh_name("garbage")
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=True), server.address, timeout=DEADLINE + 3)
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.SERVFAIL)
    if reply.rcode() == dns.rcode.NOERROR:
        assert_same_sections(reply, only_query(upstreams[1], name, since).last_reply())
    assert server.alive()
    _, after = ask(query(fresh_name(), "A"), server.address)
    assert addresses(after) == [WILD_ADDRESS]


def test_truncated_upstream_reply_is_retried_over_tcp(
    server: ServerProcess, upstreams: Upstreams
) -> None:
    name = fresh_name("big")
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=True), server.address)
    assert not reply.flags & dns.flags.TC
    assert len(addresses(reply)) == BIG_A_COUNT
    seen = upstreams[0].queries(name, since=since)
    assert [item.transport for item in seen] == ["udp", "tcp"]
    assert_same_sections(reply, seen[-1].last_reply())


@pytest.mark.parametrize(("scenario", "rdtype"), [("big", "A"), ("bigtxt", "TXT")])
def test_client_without_edns_gets_tc_over_udp_and_full_over_tcp(
    server: ServerProcess, upstreams: Upstreams, scenario: str, rdtype: str
) -> None:
    name = fresh_name(scenario)
    sent = query(name, rdtype)
    since = time.monotonic()
    wire = exchange(sent.to_wire(), server.address, "udp")
    assert wire is not None
    assert len(wire) <= 512
    truncated = dns.message.from_wire(wire)
    assert truncated.id == sent.id
    assert truncated.flags & dns.flags.TC
    assert question_bytes(wire) == question_bytes(sent.to_wire())
    assert truncated.edns == -1

    sent.id ^= 0x0101
    tcp_wire, full = ask(sent, server.address, "tcp")
    assert full.id == sent.id
    assert len(tcp_wire) > 512
    assert not full.flags & dns.flags.TC
    assert_same_sections(full, upstreams[0].queries(name, "tcp", since=since)[-1].last_reply())


@pytest.mark.parametrize(("payload", "truncated"), [(1232, False), (4096, False), (600, True)])
def test_edns_client_buffer_size_is_respected(
    server: ServerProcess, payload: int, truncated: bool
) -> None:
    sent = query(fresh_name("big"), "A", edns=True, payload=payload)
    wire = exchange(sent.to_wire(), server.address, "udp")
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert bool(reply.flags & dns.flags.TC) == truncated
    assert len(wire) <= max(512, payload)
    if not truncated:
        assert len(addresses(reply)) == BIG_A_COUNT
        assert len(wire) > 512


@pytest.mark.parametrize(
    ("dnssec_flags", "upstream_queries"), [((False,) * 5, 1), ((False, True), 2)]
)
def test_identical_inflight_queries_share_one_upstream_query(
    server: ServerProcess,
    upstreams: Upstreams,
    dnssec_flags: tuple[bool, ...],
    upstream_queries: int,
) -> None:
    """Same name, type, class and DO while the first is pending: one upstream query."""
    name = fresh_name("slow")
    since = time.monotonic()
    sent = [query(name, "A", edns=True, dnssec=do) for do in dnssec_flags]
    replies: list[dns.message.Message | None] = [None] * len(sent)

    def ask_one(index: int) -> None:
        replies[index] = ask(sent[index], server.address)[1]

    threads = [threading.Thread(target=ask_one, args=(i,)) for i in range(len(sent))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    for message, reply in zip(sent, replies, strict=True):
        assert reply is not None
        assert reply.id == message.id
        assert addresses(reply) == [WILD_ADDRESS]
    assert len(upstreams[0].queries(name, since=since)) == upstream_queries
    assert time.monotonic() - since >= SLOW_DELAY


def test_stopping_answers_the_queries_already_upstream(
    launch: Callable[..., ServerProcess], upstreams: Upstreams
) -> None:
    """SIGTERM while queries wait on a slow upstream: they are answered before the exit."""
    server = launch(make_config([upstreams[0].address]), "draining")
    sent = {transport: query(fresh_name("slow"), "A") for transport in ("udp", "tcp")}
    replies: dict[str, bytes | None] = {}

    def ask_one(transport: str) -> None:
        replies[transport] = exchange(sent[transport].to_wire(), server.address, transport)

    threads = [threading.Thread(target=ask_one, args=(t,)) for t in sent]
    for thread in threads:
        thread.start()
    time.sleep(SLOW_DELAY / 3)  # both are now waiting on the upstream
    assert server.stop() == 0
    for thread in threads:
        thread.join(5)
    for transport, message in sent.items():
        wire = replies.get(transport)
        assert wire is not None, f"{transport}: no answer before the server exited"
        reply = dns.message.from_wire(wire)
        assert reply.id == message.id and addresses(reply) == [WILD_ADDRESS]
