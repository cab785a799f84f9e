"""What a client sees of an upstream's answer, end to end: header flags (RA, AA, RD, AD), the
upstream's Extended DNS Errors, which SERVFAILs are answers, and health under packet loss.

The upstreams are loopback fakes that answer as the servers that exposed each fault do: an
authoritative-only server (AA=1, RA=0), a validating resolver (AD when asked with DO or AD,
SERVFAIL with EDE 6 for a bogus name), a filtering resolver (EDE 15/17), a lossy link.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from fake_upstream import (
    BIG_A_COUNT,
    BOGUS,
    Behaviour,
    FakeUpstream,
    Reply,
)
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    ede,
    fresh_name,
    make_config,
    mixed_case,
    parse_hostport,
    query,
)

pytestmark = pytest.mark.e2e

WILD = "192.0.2.99"
LAME = (22, "no reachable authority for the name")
MINISTRY = ((15, "blocked by order 12/2024"), (17, "filtered by the national resolver"))
SCENARIOS = {
    # nsd, or an AD domain controller, as the upstream: AA=1, RA=0
    "auth.wild.example.org": Behaviour(authoritative=True, validating=True),
    "big.wild.example.org": Behaviour(authoritative=True),
    "bogus.wild.example.org": BOGUS,
    "lame.wild.example.org": Behaviour(reply=Reply.SERVFAIL, ede=(LAME,)),
    # names under blocked.example.org are NXDOMAIN (with a SOA: cacheable)
    "blocked.example.org": Behaviour(ede=MINISTRY),
}


@pytest.fixture(scope="module")
def trio() -> Iterator[list[FakeUpstream]]:
    """Three validating upstreams playing the same scenarios."""
    started: list[FakeUpstream] = []
    try:
        for seed in (31, 32, 33):
            fake = FakeUpstream(behaviour=Behaviour(validating=True), by_name=SCENARIOS, seed=seed)
            started.append(fake.start())
        yield started
    finally:
        for fake in started:
            fake.stop()
    assert not [error for fake in started for error in fake.errors]


@pytest.fixture(scope="module")
def single(launch: ServerFactory, trio: list[FakeUpstream]) -> ServerProcess:
    """One upstream, the cache on: the set-up where one fault hid behind another."""
    config = make_config([trio[0].address], lists=[])
    config["upstream"].update(max_fails=3, probe_interval="5s")
    return launch(config, "single")


@pytest.fixture(scope="module")
def three(launch: ServerFactory, trio: list[FakeUpstream]) -> ServerProcess:
    config = make_config([fake.address for fake in trio], lists=[])
    config["cache"] = {"enabled": False}
    return launch(config, "three")


def asked(fake: FakeUpstream, name: str, since: float) -> list[dns.message.Message]:
    return [r.message for r in fake.queries(name, since=since) if r.message is not None]


# --- header flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["forwarded", "cached"])
@pytest.mark.parametrize("rd", [True, False], ids=["RD", "no RD"])
@pytest.mark.parametrize("scenario", ["auth", "big"])
def test_an_authoritative_upstreams_answer_is_a_recursive_one(
    single: ServerProcess, trio: list[FakeUpstream], cached: bool, rd: bool, scenario: str
) -> None:
    """RA=1, AA=0 and RD as this client sent it, forwarded or from the cache (where another
    client, with the other RD, asked first), and on the truncated UDP reply too (`big`)."""
    name = fresh_name(scenario)
    since = time.monotonic()
    if cached:
        ask(query(name, "A", rd=not rd, edns=True), single.address)
    raw, reply = ask(query(name, "A", rd=rd), single.address)
    assert reply.flags & dns.flags.RA
    assert not reply.flags & dns.flags.AA
    assert bool(reply.flags & dns.flags.RD) == rd
    if scenario == "big":
        assert reply.flags & dns.flags.TC and len(raw) <= 512
        _, whole = ask(query(name, "A", rd=rd), single.address, "tcp")
        assert sum(len(rrset) for rrset in whole.answer) == BIG_A_COUNT
        assert whole.flags & dns.flags.RA and not whole.flags & dns.flags.AA
    else:
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == [WILD]
    sent = asked(trio[0], name, since)
    assert len(sent) == 1 and sent[0].flags & dns.flags.RD, "we always ask for recursion"


# (DO, AD, CD) as the client sets them; the upstream validates, so AD=1 is the truth to tell
# every client that asks for it, and no other (RFC 6840 5.8).
COMBINATIONS = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize("cached", [False, True], ids=["forwarded", "cached"])
@pytest.mark.parametrize(
    ("do", "ad", "cd"), COMBINATIONS, ids=[f"DO{d:d}-AD{a:d}-CD{c:d}" for d, a, c in COMBINATIONS]
)
def test_ad_is_set_for_clients_that_ask_for_it(
    single: ServerProcess, trio: list[FakeUpstream], cached: bool, do: bool, ad: bool, cd: bool
) -> None:
    """Cached: a client with the opposite AD asked first (DO and CD are in the cache key, AD is
    not), the order that used to hand out the first asker's AD."""
    name = fresh_name()
    since = time.monotonic()

    def send(with_ad: bool) -> dns.message.Message:
        message = query(name, "A", dnssec=do)
        message.flags |= (dns.flags.AD if with_ad else 0) | (dns.flags.CD if cd else 0)
        return ask(message, single.address)[1]

    if cached:
        send(not ad)
    reply = send(ad)
    assert bool(reply.flags & dns.flags.AD) == (do or ad)
    assert bool(reply.flags & dns.flags.CD) == cd
    assert reply.rcode() == dns.rcode.NOERROR
    sent = asked(trio[0], name, since)
    assert len(sent) == 1, "the second client must be served from the cache"
    assert sent[0].flags & dns.flags.AD, "we always ask whether the upstream validated"


# --- Extended DNS Errors and SERVFAIL -----------------------------------------------------------


def readyz(server: ServerProcess) -> dict[str, Any]:
    host, port = parse_hostport(server.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def test_a_bogus_name_is_servfail_with_ede_6_and_the_upstream_stays_up(
    single: ServerProcess, trio: list[FakeUpstream]
) -> None:
    """Five bogus names in a row used to reach the client as EDE 22 and mark the only upstream
    down (three were enough)."""
    since = time.monotonic()
    for _ in range(5):
        _, reply = ask(query(fresh_name("bogus"), "A", edns=True), single.address)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert ede(reply) == [(6, "signature crypto failed")]
        assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    _, plain = ask(query(fresh_name("bogus"), "A"), single.address)
    assert plain.rcode() == dns.rcode.SERVFAIL and plain.edns == -1
    assert single.wait_for_event(lambda e: e.get("event") == "upstream_health", 1.0) is None
    assert readyz(single)["healthy_upstreams"] == [f"udp://{trio[0].address}"]
    _, good = ask(query(fresh_name(), "A"), single.address)
    assert good.rcode() == dns.rcode.NOERROR
    assert len(trio[0].queries(since=since)) == 7, "no query was retried"


@pytest.mark.parametrize("edns", [True, False])
def test_an_upstreams_filtering_edes_pass_through_and_are_cached(
    single: ServerProcess, trio: list[FakeUpstream], edns: bool
) -> None:
    name = fresh_name("x", "blocked.example.org")
    since = time.monotonic()
    _, first = ask(query(name, "A", edns=True), single.address)
    _, again = ask(query(mixed_case(name), "A", edns=edns), single.address)
    assert first.rcode() == again.rcode() == dns.rcode.NXDOMAIN
    assert ede(first) == list(MINISTRY)
    if edns:
        assert ede(again) == list(MINISTRY)
    else:
        assert again.edns == -1
    assert len(trio[0].queries(name, since=since)) == 1


def test_a_plain_servfail_is_tried_on_one_other_upstream_and_passed_on(
    three: ServerProcess, trio: list[FakeUpstream]
) -> None:
    name = fresh_name("lame")
    since = time.monotonic()
    _, reply = ask(query(name, "A", edns=True), three.address)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert ede(reply) == [LAME]
    assert [bool(fake.queries(name, since=since)) for fake in trio] == [True, True, False]


# --- health under packet loss ---------------------------------------------------------------


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def test_a_lossy_upstream_does_not_flap(launch: ServerFactory) -> None:
    """Half the datagrams lost, queries back to back for four seconds. The old rule (down after
    three losses in a row, up at the next answer) flapped 13-46 times in ten seconds, a few
    milliseconds apart. Now a down lasts at least the probe interval and an up at least a second,
    and `upstream_health` events come at most once a second."""
    with FakeUpstream(behaviour=Behaviour(loss=0.5), seed=5) as lossy:
        config = make_config([lossy.address], lists=[], timeout="0.05s", deadline="0.1s")
        config["upstream"].update(max_fails=3, probe_interval="0.5s")
        config["cache"] = {"enabled": False}
        server = launch(config, "lossy")
        answered = 0
        ends = time.monotonic() + 4.0
        while time.monotonic() < ends:
            _, reply = ask(query(fresh_name(), "A"), server.address)
            answered += reply.rcode() == dns.rcode.NOERROR
        time.sleep(1.1)  # the last change, if one waits, is told within a second
        events = [e for e in server.events if e.get("event") == "upstream_health"]
    assert answered > 20
    changes = sum(int(e.get("changes", 1)) for e in events)
    # each down-and-up takes at least probe_interval + 1 s = 1.5 s: 2 * 4 / 1.5 + 1 changes
    assert 1 <= changes <= 6, events
    times = [event_time(e) for e in events]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), events
