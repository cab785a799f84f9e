"""Clients outside `clients.allow` get REFUSED (EDE 18) and nothing is sent upstream.

The server listens on 127.0.0.1 and ::1 but allows only ::1/128, so the same process shows both
sides: a query from 127.0.0.1 is refused, the same query from ::1 is served.
"""

from __future__ import annotations

import time

import dns.flags
import dns.rcode
import pytest
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    ede,
    fresh_name,
    make_config,
    query,
    question_bytes,
)

pytestmark = pytest.mark.e2e

EDE_PROHIBITED = 18


@pytest.fixture(scope="module")
def guarded(launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]) -> ServerProcess:
    config = make_config(
        [upstreams[0].address],
        listen=["127.0.0.1:0", "[::1]:0"],
        allow=["::1/128"],
    )
    return launch(config, "guarded")


def listener(server: ServerProcess, family_v6: bool) -> tuple[str, int]:
    for host, port in server.listeners:
        if (":" in host) == family_v6:
            return host, port
    raise AssertionError(f"no {'IPv6' if family_v6 else 'IPv4'} listener in {server.listeners}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("edns", [True, False])
@pytest.mark.parametrize("kind", ["forwarded", "blocked"])
def test_client_outside_allow_is_refused(
    guarded: ServerProcess,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    transport: str,
    edns: bool,
    kind: str,
) -> None:
    name = fresh_name() if kind == "forwarded" else "www.tiktok.com."
    since = time.monotonic()
    sent = query(name, "A", edns=edns)
    wire, reply = ask(sent, listener(guarded, False), transport)
    assert reply.rcode() == dns.rcode.REFUSED
    assert reply.id == sent.id
    assert reply.flags & dns.flags.QR
    assert question_bytes(wire) == question_bytes(sent.to_wire())
    assert not reply.answer
    if edns:
        assert [code for code, _ in ede(reply)] == [EDE_PROHIBITED]
    else:
        assert reply.edns == -1
    time.sleep(0.1)
    assert upstreams[0].queries(since=since) == [], "a refused client's query reached upstream"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_allowed_client_is_served(guarded: ServerProcess, transport: str) -> None:
    _, forwarded = ask(query(fresh_name(), "A"), listener(guarded, True), transport)
    assert forwarded.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for rrset in forwarded.answer for r in rrset] == ["192.0.2.99"]
    _, blocked = ask(query("www.tiktok.com.", "AAAA"), listener(guarded, True), transport)
    assert [r.to_text() for rrset in blocked.answer for r in rrset] == ["::"]


def test_startup_event_lists_both_listeners(guarded: ServerProcess) -> None:
    hosts = sorted(host for host, _ in guarded.listeners)
    assert hosts == ["127.0.0.1", "::1"]
    assert all(port > 0 for _, port in guarded.listeners)
