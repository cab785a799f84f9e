"""The fake upstream on its own, queried with dnspython: the e2e tier is only as good as it is."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import (
    AUTHORITATIVE,
    BIG_A_COUNT,
    BOGUS,
    FORGED_ADDRESS,
    GARBAGE,
    REFUSED,
    SERVFAIL,
    SILENT,
    TRUNCATE_UDP,
    VALIDATING,
    Behaviour,
    Decoy,
    FakeUpstream,
)
from harness import tcp_frame, tcp_read_message


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    table = {
        "silent.example.org": SILENT,
        "servfail.example.org": SERVFAIL,
        "refused.example.org": REFUSED,
        "garbage.example.org": GARBAGE,
        "slow.example.org": Behaviour(delay=0.3),
        "big.example.org": TRUNCATE_UDP,
        "big.wild.example.org": TRUNCATE_UDP,
        "bigtxt.wild.example.org": TRUNCATE_UDP,
        "spoof.example.org": Behaviour(delay=0.05, decoys=tuple(Decoy)),
        "auth.wild.example.org": AUTHORITATIVE,
        "valid.wild.example.org": VALIDATING,
        "bogus.wild.example.org": BOGUS,
        "filtered.wild.example.org": Behaviour(ede=((15, "blocked"), (17, "filtered"))),
    }
    with FakeUpstream(by_name=table) as upstream:
        yield upstream
    assert not upstream.errors


def addresses(message: dns.message.Message) -> list[str]:
    return sorted(
        rdata.to_text()
        for rrset in message.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "expected"),
    [
        ("www.example.org.", "A", dns.rcode.NOERROR, ["192.0.2.10", "192.0.2.11"]),
        ("WWW.Example.ORG.", "AAAA", dns.rcode.NOERROR, ["2001:db8::10"]),
        ("alias.example.org.", "A", dns.rcode.NOERROR, ["192.0.2.10", "192.0.2.11"]),
        ("x.y.wild.example.org.", "A", dns.rcode.NOERROR, ["192.0.2.99"]),
        ("q.cname.example.org.", "A", dns.rcode.NOERROR, ["192.0.2.10", "192.0.2.11"]),
        ("q.nx.example.org.", "A", dns.rcode.NXDOMAIN, []),
        ("nottiktok.com.", "A", dns.rcode.NOERROR, ["192.0.2.20"]),
        ("nope.example.org.", "A", dns.rcode.NXDOMAIN, []),
        ("www.example.org.", "TXT", dns.rcode.NOERROR, []),
    ],
)
def test_answers_from_zone(
    fake: FakeUpstream, transport: str, name: str, rdtype: str, rcode: int, expected: list[str]
) -> None:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    reply = send(query, fake.host, port=fake.port, timeout=2)
    assert reply.rcode() == rcode
    assert addresses(reply) == expected
    assert reply.question[0].name.to_text() == name
    if not expected:
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


def test_wildcard_answer_is_owned_by_the_query_name(fake: FakeUpstream) -> None:
    reply = dns.query.udp(
        dns.message.make_query("a.b.wild.example.org", "MX"), fake.host, 2, port=fake.port
    )
    assert [rrset.name.to_text() for rrset in reply.answer] == ["a.b.wild.example.org."]


@pytest.mark.parametrize("name", ["signed.example.org.", "s.wild.example.org."])
@pytest.mark.parametrize(("dnssec", "types"), [(False, ["A"]), (True, ["A", "RRSIG"])])
def test_rrsig_only_with_do_bit(
    fake: FakeUpstream, name: str, dnssec: bool, types: list[str]
) -> None:
    query = dns.message.make_query(name, "A", want_dnssec=dnssec)
    reply = dns.query.udp(query, fake.host, 2, port=fake.port)
    assert [dns.rdatatype.to_text(rrset.rdtype) for rrset in reply.answer] == types
    assert {rrset.name.to_text() for rrset in reply.answer} == {name}


@pytest.mark.parametrize(
    ("name", "rcode"),
    [("x.servfail.example.org", dns.rcode.SERVFAIL), ("refused.example.org", dns.rcode.REFUSED)],
)
def test_error_rcodes_apply_to_the_subtree(fake: FakeUpstream, name: str, rcode: int) -> None:
    reply = dns.query.udp(dns.message.make_query(name, "A"), fake.host, 2, port=fake.port)
    assert reply.rcode() == rcode
    assert not reply.answer


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_silent_never_answers(fake: FakeUpstream, transport: str) -> None:
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    with pytest.raises(dns.exception.Timeout):
        send(dns.message.make_query("silent.example.org", "A"), fake.host, 0.4, port=fake.port)


def test_delay_postpones_the_answer(fake: FakeUpstream) -> None:
    start = time.monotonic()
    reply = dns.query.udp(
        dns.message.make_query("slow.example.org", "A"), fake.host, 2, port=fake.port
    )
    assert 0.28 <= time.monotonic() - start < 1.5
    assert reply.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("big.example.org", "A"),
        ("b.big.wild.example.org", "A"),
        ("b.bigtxt.wild.example.org", "TXT"),
    ],
)
def test_truncate_udp_then_full_over_tcp(fake: FakeUpstream, name: str, rdtype: str) -> None:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=4096)
    udp = dns.query.udp(query, fake.host, 2, port=fake.port, raise_on_truncation=False)
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    tcp = dns.query.tcp(query, fake.host, 2, port=fake.port)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.to_wire()) > 512
    if rdtype == "A":
        assert len(addresses(tcp)) == BIG_A_COUNT


def test_large_answer_respects_requester_payload(fake: FakeUpstream) -> None:
    """Without the truncate behaviour it still truncates what does not fit, like a real server."""
    plain = dns.message.make_query("big.example.org", "A")
    other = FakeUpstream().start()
    try:
        small = dns.query.udp(plain, other.host, 2, port=other.port, raise_on_truncation=False)
        edns = dns.message.make_query("big.example.org", "A", use_edns=0, payload=1232)
        large = dns.query.udp(edns, other.host, 2, port=other.port)
    finally:
        other.stop()
    assert small.flags & dns.flags.TC
    assert len(addresses(large)) == BIG_A_COUNT


def raw_udp_replies(
    fake: FakeUpstream, wire: bytes, count: int, timeout: float = 1.0
) -> list[tuple[bytes, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(wire, (fake.host, fake.port))
        sock.settimeout(timeout)
        out: list[tuple[bytes, int]] = []
        while len(out) < count:
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                break
            out.append((data, peer[1]))
        return out


def test_garbage_is_unparsable_but_one_copy_matches_id_and_qr(fake: FakeUpstream) -> None:
    query = dns.message.make_query("garbage.example.org", "A")
    replies = raw_udp_replies(fake, query.to_wire(), 2)
    assert len(replies) == 2
    for data, _ in replies:
        with pytest.raises(Exception):  # noqa: B017 - any parse failure will do
            dns.message.from_wire(data)
    assert any(data[:2] == query.to_wire()[:2] and data[2] & 0x80 for data, _ in replies)


def test_decoys_precede_the_genuine_reply(fake: FakeUpstream) -> None:
    query = dns.message.make_query("spoof.example.org", "A")
    replies = raw_udp_replies(fake, query.to_wire(), len(Decoy) + 1)
    assert len(replies) == len(Decoy) + 1
    *decoys, (genuine, genuine_port) = replies
    assert genuine_port == fake.port
    final = dns.message.from_wire(genuine)
    assert query.is_response(final)
    assert final.rcode() == dns.rcode.NXDOMAIN
    ports = {port for _, port in decoys}
    assert ports - {fake.port}, "the wrong-source decoy must come from another port"
    parsed = []
    for data, port in decoys:
        try:
            parsed.append((dns.message.from_wire(data), port))
        except Exception:
            continue
    assert len(parsed) == len(Decoy) - 1
    for message, port in parsed:
        assert addresses(message) == [FORGED_ADDRESS]
        spoofed_only_by_port = query.is_response(message)
        assert spoofed_only_by_port == (port != fake.port)


def test_records_queries_with_transport(fake: FakeUpstream) -> None:
    since = time.monotonic()
    query = dns.message.make_query("record.wild.example.org", "TXT")
    dns.query.udp(query, fake.host, 2, port=fake.port)
    dns.query.tcp(query, fake.host, 2, port=fake.port)
    seen = fake.queries("record.wild.example.org", since=since)
    assert [item.transport for item in seen] == ["udp", "tcp"]
    assert all(item.wire == query.to_wire() for item in seen)
    assert all(item.last_reply().answer for item in seen)
    assert fake.queries("record.wild.example.org", transport="tcp", since=since) == seen[1:]


def test_tcp_pipelining_answers_every_query(fake: FakeUpstream) -> None:
    queries = [dns.message.make_query(f"p{i}.wild.example.org", "A") for i in range(10)]
    slow = dns.message.make_query("slow.example.org", "A")
    with socket.create_connection((fake.host, fake.port), timeout=3) as sock:
        sock.sendall(b"".join(tcp_frame(q.to_wire()) for q in [slow, *queries]))
        replies = [tcp_read_message(sock) for _ in range(len(queries) + 1)]
    ids = [dns.message.from_wire(r).id for r in replies if r is not None]
    assert sorted(ids) == sorted(q.id for q in [slow, *queries])
    assert ids[-1] == slow.id, "the delayed answer must not hold back the others"


def test_set_behaviour_overrides_default_and_names() -> None:
    with FakeUpstream() as upstream:
        upstream.set_behaviour(SERVFAIL)
        upstream.set_behaviour(REFUSED, "x.example.org")
        first = dns.query.udp(
            dns.message.make_query("www.example.org", "A"), upstream.host, 2, port=upstream.port
        )
        second = dns.query.udp(
            dns.message.make_query("a.x.example.org", "A"), upstream.host, 2, port=upstream.port
        )
    assert (first.rcode(), second.rcode()) == (dns.rcode.SERVFAIL, dns.rcode.REFUSED)


def test_ipv6_loopback() -> None:
    with FakeUpstream(host="::1") as upstream:
        assert upstream.address.startswith("[::1]:")
        reply = dns.query.udp(
            dns.message.make_query("www.example.org", "AAAA"), "::1", 2, port=upstream.port
        )
    assert addresses(reply) == ["2001:db8::10"]


def test_stop_releases_the_port() -> None:
    upstream = FakeUpstream().start()
    port = upstream.port
    upstream.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))


def ask_udp(fake: FakeUpstream, message: dns.message.Message) -> dns.message.Message:
    return dns.query.udp(message, fake.host, 2, port=fake.port)


@pytest.mark.parametrize(
    ("name", "aa", "ra"),
    [("x.auth.wild.example.org.", True, False), ("x.wild.example.org.", False, True)],
)
def test_authoritative_sets_aa_and_clears_ra(
    fake: FakeUpstream, name: str, aa: bool, ra: bool
) -> None:
    reply = ask_udp(fake, dns.message.make_query(name, "A"))
    assert addresses(reply) == ["192.0.2.99"]
    assert (bool(reply.flags & dns.flags.AA), bool(reply.flags & dns.flags.RA)) == (aa, ra)


@pytest.mark.parametrize(
    ("name", "do", "ad", "expected"),
    [
        ("x.valid.wild.example.org.", False, False, False),
        ("x.valid.wild.example.org.", False, True, True),
        ("x.valid.wild.example.org.", True, False, True),
        ("x.wild.example.org.", True, True, False),  # not validating: never AD
    ],
)
def test_validating_sets_ad_only_when_asked(
    fake: FakeUpstream, name: str, do: bool, ad: bool, expected: bool
) -> None:
    query = dns.message.make_query(name, "A", use_edns=0, want_dnssec=do)
    if ad:
        query.flags |= dns.flags.AD
    assert bool(ask_udp(fake, query).flags & dns.flags.AD) == expected


@pytest.mark.parametrize(
    ("name", "rcode", "codes"),
    [
        ("x.bogus.wild.example.org.", dns.rcode.SERVFAIL, [6]),
        ("x.filtered.wild.example.org.", dns.rcode.NOERROR, [15, 17]),
    ],
)
def test_extended_errors_go_to_edns_queries_only(
    fake: FakeUpstream, name: str, rcode: int, codes: list[int]
) -> None:
    with_edns = ask_udp(fake, dns.message.make_query(name, "A", use_edns=0))
    assert with_edns.rcode() == rcode
    assert [int(option.code) for option in with_edns.options] == codes
    without = ask_udp(fake, dns.message.make_query(name, "A"))
    assert without.rcode() == rcode and without.edns == -1


def test_loss_drops_that_share_of_udp_queries() -> None:
    with FakeUpstream(behaviour=Behaviour(loss=0.5), seed=7) as upstream:
        answered = 0
        for index in range(40):
            query = dns.message.make_query(f"q{index}.wild.example.org", "A")
            try:
                dns.query.udp(query, upstream.host, 0.2, port=upstream.port)
                answered += 1
            except dns.exception.Timeout:
                pass
        received = len(upstream.queries())
    assert received == 40
    assert 8 <= answered <= 32
