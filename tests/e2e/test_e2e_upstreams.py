"""Upstream URLs, strategies, health and conditional forwarding, end to end: the real server
against loopback upstreams over UDP, TCP and DNS over TLS (with a CA made for the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dns.rcode
import pytest
from fake_upstream import SILENT, Behaviour, FakeUpstream, TestPki, make_test_pki
from harness import ServerFactory, ask, ede, fresh_name, make_config, query

pytestmark = pytest.mark.e2e

WILD = "192.0.2.99"
NETWORK_ERROR = 23


def addresses(reply: Any) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    made = make_test_pki(tmp_path_factory.mktemp("pki"))
    if made is None:
        pytest.skip("the openssl command line is needed to make a test CA; not installed")
    return made


@pytest.fixture(scope="module")
def trio(pki: TestPki) -> Iterator[list[FakeUpstream]]:
    """Three upstreams; the first also speaks DNS over TLS with the test certificate."""
    started: list[FakeUpstream] = []
    try:
        started.append(FakeUpstream(seed=11, tls=pki.server_context()).start())
        started.append(FakeUpstream(seed=12).start())
        started.append(FakeUpstream(seed=13).start())
        yield started
    finally:
        for fake in started:
            fake.stop()
    assert not [error for fake in started for error in fake.errors]


def config_with(servers: list[str], **upstream: Any) -> dict[str, Any]:
    config = make_config(servers)
    config["upstream"].update(upstream)
    config["cache"] = {"enabled": False}  # every query reaches an upstream
    return config


def test_udp_and_tcp_urls(launch: ServerFactory, trio: list[FakeUpstream]) -> None:
    first, second = trio[1], trio[2]
    server = launch(config_with([f"tcp://{first.address}", f"udp://{second.address}"]), "urls")
    names = [fresh_name() for _ in range(5)]
    for name in names:
        _, reply = ask(query(name), server.address)
        assert addresses(reply) == [WILD]
    seen = [r for name in names for r in first.queries(name)]
    assert len(seen) == 5 and {r.transport for r in seen} == {"tcp"}
    assert len({r.peer for r in seen}) == 1  # one persistent connection
    assert not any(second.queries(name) for name in names)


def test_dns_over_tls(launch: ServerFactory, trio: list[FakeUpstream], pki: TestPki) -> None:
    fake = trio[0]
    url = f"tls://127.0.0.1:{fake.tls_port}#{pki.name}"
    server = launch(config_with([url], ca_file=str(pki.ca)), "dot")
    names = [fresh_name() for _ in range(3)]
    for name in names:
        _, reply = ask(query(name, edns=True), server.address)
        assert addresses(reply) == [WILD]
    seen = [r for name in names for r in fake.queries(name)]
    assert [r.transport for r in seen] == ["tls"] * 3
    assert len({r.peer for r in seen}) == 1  # the TLS session is reused


@pytest.mark.parametrize("name_in_url", ["wrong.test", "dns.test.evil"])
def test_dns_over_tls_refuses_a_wrong_name(
    launch: ServerFactory, trio: list[FakeUpstream], pki: TestPki, name_in_url: str
) -> None:
    fake = trio[0]
    url = f"tls://127.0.0.1:{fake.tls_port}#{name_in_url}"
    server = launch(config_with([url], ca_file=str(pki.ca)), "dot-wrong")
    name = fresh_name()
    _, reply = ask(query(name, edns=True), server.address)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [code for code, _ in ede(reply)] == [NETWORK_ERROR]
    assert fake.queries(name) == []
    event = server.wait_for_event(lambda e: e.get("event") == "upstream_tls_error")
    assert event is not None and "certificate" in str(event.get("detail", "")).lower()


def test_failover_skips_a_silent_upstream(launch: ServerFactory, trio: list[FakeUpstream]) -> None:
    silent, good = trio[1], trio[2]
    silent.set_behaviour(SILENT, "failover.wild.example.org")
    server = launch(
        config_with([f"udp://{silent.address}", good.address], strategy="failover"), "failover"
    )
    name = fresh_name("failover")
    _, reply = ask(query(name), server.address)
    assert addresses(reply) == [WILD]
    assert silent.queries(name) and good.queries(name)


def test_fastest_prefers_the_fast_upstream(launch: ServerFactory, trio: list[FakeUpstream]) -> None:
    slow, fast = trio[1], trio[2]
    slow.set_behaviour(Behaviour(delay=0.15), "fastest.wild.example.org")
    server = launch(config_with([slow.address, fast.address], strategy="fastest"), "fastest")
    names = [fresh_name("fastest") for _ in range(20)]
    for name in names:
        ask(query(name), server.address)
    to_fast = sum(bool(fast.queries(name)) for name in names)
    to_slow = sum(bool(slow.queries(name)) for name in names)
    assert to_fast >= 16, (to_fast, to_slow)
    assert to_slow >= 1  # it was measured


def test_parallel_races_the_best_two(launch: ServerFactory, trio: list[FakeUpstream]) -> None:
    silent, good = trio[1], trio[2]
    silent.set_behaviour(SILENT, "parallel.wild.example.org")
    server = launch(
        config_with([silent.address, good.address], strategy="parallel", timeout="1.5s",
                    deadline="3s"),
        "parallel",
    )  # fmt: skip
    name = fresh_name("parallel")
    started = time.monotonic()
    _, reply = ask(query(name), server.address)
    assert time.monotonic() - started < 1.0  # not after the silent one's 1.5 s timeout
    assert addresses(reply) == [WILD]
    assert good.queries(name)
    assert silent.received_soon(name)  # the race asked the silent one too


def test_conditional_zones_longest_wins(launch: ServerFactory, trio: list[FakeUpstream]) -> None:
    default, corp, secret = trio
    config = config_with([default.address])
    config["zones"] = [
        {"zone": "corp.wild.example.org", "servers": [corp.address]},
        {"zone": "secret.corp.wild.example.org", "servers": [f"tcp://{secret.address}"],
         "strategy": "fastest"},
    ]  # fmt: skip
    server = launch(config, "zones")
    cases = [
        (fresh_name("plain"), default),
        (fresh_name("corp"), corp),
        (fresh_name("x", "secret.corp.wild.example.org"), secret),
    ]
    for name, expected in cases:
        _, reply = ask(query(name), server.address)
        assert addresses(reply) == [WILD]
        assert [fake for fake in trio if fake.queries(name)] == [expected], name


def test_a_failing_upstream_is_marked_down_and_probed_back(
    launch: ServerFactory, trio: list[FakeUpstream]
) -> None:
    flaky, good = trio[1], trio[2]
    flaky.set_behaviour(SILENT)
    try:
        server = launch(
            config_with([flaky.address, good.address], max_fails=2, probe_interval="0.2s",
                        timeout="0.6s"),
            "health",
        )  # fmt: skip
        for _ in range(2):
            ask(query(fresh_name()), server.address)
        down = server.wait_for_event(
            lambda e: e.get("event") == "upstream_health" and e.get("healthy") is False
        )
        assert down is not None and flaky.address in str(down.get("upstream"))
        # down: tried after the healthy one, so a query no longer waits for its timeout
        started = time.monotonic()
        name = fresh_name()
        ask(query(name), server.address)
        assert time.monotonic() - started < 0.45  # not after the silent one's 0.6 s timeout
        assert not flaky.queries(name)
    finally:
        flaky.set_behaviour(Behaviour())
    up = server.wait_for_event(
        lambda e: e.get("event") == "upstream_health" and e.get("healthy") is True, timeout=5.0
    )
    assert up is not None
    assert flaky.queries(".")  # the `. IN NS` probe brought it back
