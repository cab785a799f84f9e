"""The answer cache and response inspection, end to end: the real server, a loopback upstream
with short TTLs, and real clocks (so the waits here are the TTLs themselves, kept to seconds)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from fake_upstream import SILENT, Behaviour, FakeUpstream, Zone
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    block_text,
    ede,
    fresh_name,
    make_config,
    mixed_case,
    query,
    question_bytes,
)

pytestmark = pytest.mark.e2e

STALE_ANSWER = 3
STALE_NXDOMAIN = 19
FORGED_ANSWER = 4
BIG = 40


def cache_zone() -> Zone:
    return Zone(
        [
            "test. 3600 IN SOA ns.test. admin.test. 1 7200 900 86400 60",
            # NXDOMAIN below neg.test is cached for min(3600, 2) = 2 s (RFC 2308)
            "neg.test. 3600 IN SOA ns.neg.test. admin.neg.test. 1 7200 900 86400 2",
            "*.ttl.test. 10 IN A 192.0.2.10",
            "*.stale.test. 1 IN A 192.0.2.11",
            "*.slow.test. 1 IN A 192.0.2.13",
            "*.cloak.test. 300 IN CNAME www.tiktok.com.",
            "www.tiktok.com. 300 IN A 192.0.2.50",
            "*.rebind.test. 300 IN A 10.0.0.1",
            "*.corp.test. 300 IN A 10.0.0.2",
            "*.badip.test. 300 IN A 198.51.100.7",
            "*.fine.test. 300 IN A 192.0.2.12",
            *(f"*.big.test. 300 IN A 198.18.0.{i}" for i in range(1, BIG + 1)),
        ]
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(cache_zone(), seed=5).start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.errors


def with_cache(config: dict[str, Any], **cache: Any) -> dict[str, Any]:
    config["cache"] = {"failure_ttl": "1s", **cache}
    config["inspection"] = {
        "cname": True,
        "response_ip": ["198.51.100.0/24"],
        "rebinding": True,
        "rebinding_allow": ["corp.test"],
    }
    return config


@pytest.fixture(scope="module")
def server(launch: ServerFactory, upstream: FakeUpstream) -> ServerProcess:
    return launch(with_cache(make_config([upstream.address])), "cache")


@pytest.fixture(scope="module")
def patient(launch: ServerFactory, upstream: FakeUpstream) -> ServerProcess:
    """Long upstream timeouts, so only cache.client_timeout (1 s) can cut a client's wait."""
    config = make_config([upstream.address], timeout="3s", deadline="4s")
    return launch(with_cache(config, client_timeout="1s"), "patient")


def ttl_of(reply: dns.message.Message) -> int:
    return min(rrset.ttl for rrset in (*reply.answer, *reply.authority))


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset if rrset.rdtype in (1, 28)]


def test_hits_count_the_ttl_down(server: ServerProcess, upstream: FakeUpstream) -> None:
    name = fresh_name("x", "ttl.test")
    _, first = ask(query(name), server.address)
    assert ttl_of(first) == 10
    time.sleep(1.2)
    sent = query(mixed_case(name))
    wire, second = ask(sent, server.address)
    assert addresses(second) == ["192.0.2.10"]
    assert 7 <= ttl_of(second) <= 9
    assert question_bytes(wire) == question_bytes(sent.to_wire())  # the client's letter case
    _, over_tcp = ask(query(name), server.address, "tcp")
    assert addresses(over_tcp) == ["192.0.2.10"]
    assert len(upstream.queries(name)) == 1


def test_negative_answers_are_cached_by_soa_minimum(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    name = fresh_name("x", "neg.test")
    _, first = ask(query(name), server.address)
    assert first.rcode() == dns.rcode.NXDOMAIN
    _, again = ask(query(name, "AAAA"), server.address)  # NXDOMAIN holds for every type
    assert again.rcode() == dns.rcode.NXDOMAIN
    assert ttl_of(again) <= 2
    assert len(upstream.queries(name)) == 1
    time.sleep(2.2)
    ask(query(name), server.address)
    assert len(upstream.queries(name)) == 2


def test_stale_answer_when_the_upstream_goes_silent(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    name = fresh_name("x", "stale.test")
    ask(query(name, edns=True), server.address)
    upstream.set_behaviour(SILENT, name)
    time.sleep(1.2)  # the 1 s TTL is over
    started = time.monotonic()
    _, stale = ask(query(name, edns=True), server.address)
    assert time.monotonic() - started < 2.0
    assert addresses(stale) == ["192.0.2.11"]
    assert [code for code, _ in ede(stale)] == [STALE_ANSWER]
    assert ttl_of(stale) == 30
    # the failure is remembered briefly: the next client is answered stale at once
    started = time.monotonic()
    _, again = ask(query(name, edns=True), server.address)
    assert time.monotonic() - started < 0.45  # not after the upstream's 0.5 s timeout
    assert [code for code, _ in ede(again)] == [STALE_ANSWER]


def test_stale_answer_after_the_client_timeout_then_refreshed(
    patient: ServerProcess, upstream: FakeUpstream
) -> None:
    name = fresh_name("x", "slow.test")
    ask(query(name, edns=True), patient.address)
    upstream.set_behaviour(Behaviour(delay=2.0), name)
    time.sleep(1.2)
    started = time.monotonic()
    _, stale = ask(query(name, edns=True), patient.address)
    waited = time.monotonic() - started
    assert 0.9 <= waited < 1.8, waited
    assert [code for code, _ in ede(stale)] == [STALE_ANSWER]
    time.sleep(1.5)  # the upstream's late answer refreshes the cache in the background
    _, fresh = ask(query(name, edns=True), patient.address)
    assert ede(fresh) == [] and addresses(fresh) == ["192.0.2.13"]
    assert len(upstream.queries(name)) == 2


def test_cname_cloaking_into_tiktok_is_blocked(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    name = fresh_name("x", "cloak.test")
    for _ in range(2):  # the second from the cache: still blocked
        _, reply = ask(query(name, edns=True), server.address)
        assert addresses(reply) == ["0.0.0.0"]
        cause = block_text("tiktok") + " via CNAME www.tiktok.com"
        assert ede(reply) == [(FORGED_ANSWER, cause)]
    assert len(upstream.queries(name)) == 1
    event = server.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("qname") == name.rstrip(".")
    )
    assert event is not None
    assert (event.get("cname"), event.get("entry")) == ("www.tiktok.com", "tiktok")


@pytest.mark.parametrize(
    ("scenario", "expected", "rule"),
    [
        ("rebind.test", "0.0.0.0", "rebinding"),
        ("corp.test", "10.0.0.2", None),  # rebinding_allow
        ("badip.test", "0.0.0.0", "response-ip"),
        ("fine.test", "192.0.2.12", None),
    ],
)
def test_answer_address_rules(
    server: ServerProcess, upstream: FakeUpstream, scenario: str, expected: str, rule: str | None
) -> None:
    name = fresh_name("x", scenario)
    for _ in range(2):
        _, reply = ask(query(name), server.address)
        assert addresses(reply) == [expected]
    # a blocked answer is never cached: each query goes upstream again
    assert len(upstream.queries(name)) == (2 if rule else 1)
    if rule is not None:
        event = server.wait_for_event(
            lambda e: e.get("event") == "blocked" and e.get("qname") == name.rstrip(".")
        )
        assert event is not None and event.get("entry") == rule


def test_cache_counters_are_exported(server: ServerProcess) -> None:
    name = fresh_name("x", "fine.test")
    for _ in range(3):
        ask(query(name), server.address)
    host, _, port = server.startup["metrics"].rpartition(":")
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("dnswarden_cache_")
    }
    assert values["dnswarden_cache_hits_total"] >= 2
    assert values["dnswarden_cache_entries"] >= 1


def test_cached_answers_are_truncated_for_small_udp_clients(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    """A cached answer gets the same UDP size treatment as a forwarded one."""
    name = fresh_name("x", "big.test")
    _, full = ask(query(name, edns=True), server.address)
    assert len(addresses(full)) == BIG
    wire, small = ask(query(name), server.address)  # no EDNS: 512 bytes at most
    assert len(wire) <= 512 and small.flags & dns.flags.TC and not small.answer
    _, over_tcp = ask(query(name), server.address, "tcp")
    assert len(addresses(over_tcp)) == BIG
    assert len(upstream.queries(name)) == 1
