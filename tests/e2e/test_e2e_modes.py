"""Every `blocking.answer` mode, one server each, checked per query type with and without EDNS."""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import FakeUpstream
from harness import (
    BLOCK_TTL,
    ServerFactory,
    ServerProcess,
    ask,
    block_text,
    ede,
    make_config,
    query,
    question_bytes,
)

pytestmark = pytest.mark.e2e

EDE_FORGED = 4
EDE_BLOCKED = 15
SINKHOLE_V4 = ["192.0.2.7", "192.0.2.8"]
SINKHOLE_V6 = ["2001:db8::7"]
NAME = "Video.TikTok.com."


@dataclass(frozen=True)
class Expect:
    rcode: int
    addresses: tuple[str, ...] = ()
    soa: bool = False
    code: int = EDE_BLOCKED


NODATA = Expect(dns.rcode.NOERROR, soa=True)
EXPECTED: dict[str, dict[str, Expect]] = {
    "nxdomain": {t: Expect(dns.rcode.NXDOMAIN, soa=True) for t in ("A", "AAAA", "MX", "HTTPS")},
    "nodata": {t: NODATA for t in ("A", "AAAA", "MX", "HTTPS")},
    "refused": {t: Expect(dns.rcode.REFUSED) for t in ("A", "AAAA", "MX", "HTTPS")},
    "ip": {
        "A": Expect(dns.rcode.NOERROR, tuple(SINKHOLE_V4), code=EDE_FORGED),
        "AAAA": Expect(dns.rcode.NOERROR, tuple(SINKHOLE_V6), code=EDE_FORGED),
        "MX": NODATA,
        "HTTPS": NODATA,
    },
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def mode_server(
    request: pytest.FixtureRequest,
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
) -> tuple[str, ServerProcess]:
    mode: str = request.param
    config = make_config([upstreams[0].address], answer=mode, ips=[*SINKHOLE_V4, *SINKHOLE_V6])
    return mode, launch(config, f"mode-{mode}")


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "MX", "HTTPS"])
@pytest.mark.parametrize("edns", [True, False])
def test_block_mode_answer(
    mode_server: tuple[str, ServerProcess],
    upstreams: tuple[FakeUpstream, FakeUpstream],
    rdtype: str,
    edns: bool,
) -> None:
    mode, server = mode_server
    expect = EXPECTED[mode][rdtype]
    sent = query(NAME, rdtype, edns=edns)
    wire, reply = ask(sent, server.address)

    assert reply.rcode() == expect.rcode
    assert reply.id == sent.id
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA
    assert question_bytes(wire) == question_bytes(sent.to_wire())
    got = sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)
    assert got == sorted(expect.addresses)
    assert all(rrset.ttl == BLOCK_TTL for rrset in reply.answer)
    if expect.soa:
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
        soa = reply.authority[0]
        assert dns.name.from_text(NAME).is_subdomain(soa.name)
        assert min(soa.ttl, next(iter(soa)).minimum) == BLOCK_TTL
    if edns:
        assert ede(reply) == [(expect.code, block_text("tiktok"))]
    else:
        assert reply.edns == -1
    assert upstreams[0].queries(NAME) == []


def test_block_mode_is_audited(mode_server: tuple[str, ServerProcess]) -> None:
    mode, server = mode_server
    ask(query("audit.douyin.com.", "A"), server.address)
    event = server.wait_for_event(
        lambda e: (
            e.get("event") == "blocked"
            and str(e.get("qname", "")).rstrip(".") == "audit.douyin.com"
        )
    )
    assert event is not None
    assert event.get("answer") == mode


def test_unblocked_name_is_still_forwarded(mode_server: tuple[str, ServerProcess]) -> None:
    _, server = mode_server
    _, reply = ask(query("www.example.org.", "A"), server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    assert sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset) == [
        "192.0.2.10",
        "192.0.2.11",
    ]
