"""The upstream pool against real loopback name servers (the e2e tier's `FakeUpstream`, run in
process): strategies, passive health and probes, zones, merging, persistent TCP/TLS streams."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import (
    ANSWER,
    BOGUS,
    GARBAGE,
    SERVFAIL,
    SILENT,
    Behaviour,
    FakeUpstream,
    Reply,
    make_test_pki,
)

from resolver.config import Strategy, UpstreamServer, ZoneConfig
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.protocol.edns import EdeCode
from resolver.protocol.wire import Query, UpstreamReply, parse_query
from resolver.upstream import pool as upstream_module
from resolver.upstream.pool import (
    Overloaded,
    PoolOptions,
    UpstreamFailure,
    UpstreamPool,
)

T = TypeVar("T")
WILD = "192.0.2.99"


def run(factory: Callable[[], Awaitable[T]], limit: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), limit)

    return asyncio.run(bounded())


def make(name: str, rdtype: str = "A") -> Query:
    return parse_query(dns.message.make_query(name, rdtype, use_edns=0).to_wire())


_counter = iter(range(1, 1_000_000))


def fresh(scenario: str = "plain") -> str:
    return f"u{next(_counter)}-{random.getrandbits(24):06x}.{scenario}.wild.example.org."


def addresses(reply: UpstreamReply) -> list[str]:
    message = dns.message.from_wire(reply.raw)
    return [rd.to_text() for rrset in message.answer for rd in rrset]


class Env:
    """A pool wired to a Stats and a real AuditLog writing JSON lines to memory."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.stream = io.StringIO()
        self.audit = AuditLog(self.stream, "info", fold_window=0)

    def pool(
        self,
        servers: list[UpstreamServer],
        timeout: float = 0.5,
        deadline: float = 3.0,
        **opts: Any,
    ) -> UpstreamPool:
        return UpstreamPool(
            servers, timeout, deadline, 100, self.stats, self.audit, PoolOptions(**opts),
            rng=random.Random(3),
        )  # fmt: skip

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stream.getvalue().splitlines() if line]
        return [e for e in lines if e.get("event") == name]


def udp(fake: FakeUpstream) -> UpstreamServer:
    return UpstreamServer("udp", fake.host, fake.port)


@pytest.fixture
def fakes() -> Iterator[list[FakeUpstream]]:
    started: list[FakeUpstream] = []
    try:
        for seed in range(3):
            started.append(FakeUpstream(seed=seed).start())
        yield started
    finally:
        for fake in started:
            fake.stop()
    assert not [e for fake in started for e in fake.errors]


# --- order: zones and reconfiguration (no traffic; strategies: test_routing) -------------------

S1, S2, S3 = (UpstreamServer("udp", "127.0.0.1", port) for port in (5301, 5302, 5303))


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("www.example.org.", S1),
        ("gov.internal.", S2),
        ("host.gov.internal.", S2),
        ("x.secret.gov.internal.", S3),  # longest zone wins
        ("secret.gov.internal.", S3),
        ("notgov.internal.", S1),
        ("4.3.2.10.in-addr.arpa.", S2),
    ],
)
def test_zones_longest_wins(name: str, first: UpstreamServer) -> None:
    zones = (
        ZoneConfig("gov.internal", (S2,), Strategy.FAILOVER),
        ZoneConfig("secret.gov.internal", (S3,), Strategy.FAILOVER),
        ZoneConfig("10.in-addr.arpa", (S2,), Strategy.FAILOVER),
    )

    async def scenario() -> UpstreamServer:
        pool = Env().pool([S1], zones=zones)
        return pool.plan(make(name).qname)[0].server

    assert run(scenario) == first


def test_reconfigure_keeps_state_of_kept_upstreams() -> None:
    async def scenario() -> tuple[float | None, bool]:
        pool = Env().pool([S1, S2])
        state = pool.upstream(S2)
        assert state is not None
        state.rtt = 0.42
        pool.configure([S2, S3], 0.5, 3.0, 100)
        kept = pool.upstream(S2)
        return (kept.rtt if kept is not None else None), pool.upstream(S1) is None

    assert run(scenario) == (0.42, True)


# --- exchanges ------------------------------------------------------------------------------


def test_failover_past_a_silent_upstream(fakes: list[FakeUpstream]) -> None:
    fakes[0].set_behaviour(SILENT)
    env = Env()

    async def scenario() -> UpstreamReply:
        pool = env.pool([udp(fakes[0]), udp(fakes[1])], timeout=0.2)
        try:
            return (await pool.begin(make(fresh()))).reply
        finally:
            await pool.close()

    assert addresses(run(scenario)) == [WILD]
    assert env.stats.upstreams[(str(udp(fakes[0])), "timeout")] == 1
    assert env.stats.upstreams[(str(udp(fakes[1])), "ok")] == 1


def test_every_upstream_failing_is_an_upstream_failure(fakes: list[FakeUpstream]) -> None:
    for fake in fakes[:2]:
        fake.set_behaviour(SILENT)

    async def scenario() -> None:
        pool = Env().pool([udp(fakes[0]), udp(fakes[1])], timeout=0.1, deadline=1.0)
        try:
            await pool.begin(make(fresh()))
        finally:
            await pool.close()

    with pytest.raises(UpstreamFailure) as caught:
        run(scenario)
    assert caught.value.ede == EdeCode.NO_REACHABLE_AUTHORITY


def test_max_fails_marks_down_and_the_probe_brings_it_back(fakes: list[FakeUpstream]) -> None:
    fake = fakes[0]
    fake.set_behaviour(SILENT)
    env = Env()
    server = udp(fake)

    async def scenario() -> tuple[bool, bool, float]:
        pool = env.pool([server, udp(fakes[1])], timeout=0.15, max_fails=2, probe_interval=0.1)
        try:
            for _ in range(2):
                await pool.begin(make(fresh()))
            went_down = not pool.health()[str(server)]
            await asyncio.sleep(0.8)  # a few silent probes
            fake.set_behaviour(ANSWER)
            started = time.monotonic()
            while not pool.health()[str(server)] and time.monotonic() - started < 3:
                await asyncio.sleep(0.02)
            return went_down, pool.health()[str(server)], time.monotonic() - started
        finally:
            await pool.close()

    went_down, back, _ = run(scenario)
    assert went_down and back
    probes = [r for r in fake.queries(".") if r.message is not None]
    assert probes and all(r.message.question[0].rdtype == dns.rdatatype.NS for r in probes)
    # one probe at a time: the next starts only after the previous one timed out + interval
    gaps = [b.at - a.at for a, b in itertools.pairwise(probes)]
    assert all(gap >= 0.2 for gap in gaps), gaps
    health = [e["healthy"] for e in env.events("upstream_health")]
    assert health == [False, True]
    assert env.stats.counts["upstream.probe_ok"] == 1
    assert env.stats.counts["upstream.probe_failed"] >= 2


def test_fastest_prefers_the_fast_upstream(fakes: list[FakeUpstream]) -> None:
    slow, fast = fakes[0], fakes[1]
    slow.set_behaviour(Behaviour(delay=0.12))

    async def scenario() -> None:
        pool = Env().pool([udp(slow), udp(fast)], strategy=Strategy.FASTEST)
        try:
            for _ in range(20):
                await pool.begin(make(fresh()))
        finally:
            await pool.close()

    run(scenario)
    assert len(fast.queries()) >= 16
    assert 1 <= len(slow.queries()) <= 4


def test_parallel_races_two_and_the_first_good_answer_wins(fakes: list[FakeUpstream]) -> None:
    silent, good = fakes[0], fakes[1]
    silent.set_behaviour(SILENT)
    env = Env()
    name = fresh()

    async def scenario() -> float:
        pool = env.pool([udp(silent), udp(good)], timeout=1.0, strategy=Strategy.PARALLEL)
        try:
            started = time.monotonic()
            await pool.begin(make(name))
            return time.monotonic() - started
        finally:
            await pool.close()

    assert run(scenario) < 0.5  # not after the silent one's 1 s timeout
    assert good.queries(name)
    assert silent.received_soon(name)  # the race asked the silent one too
    assert (str(udp(silent)), "timeout") not in env.stats.upstreams  # the loser was cancelled


def test_a_client_that_stops_waiting_leaves_the_exchange_on(fakes: list[FakeUpstream]) -> None:
    fakes[0].set_behaviour(Behaviour(delay=0.3))
    env = Env()
    seen: list[Query] = []

    async def scenario() -> tuple[bool, bool]:
        pool = env.pool([udp(fakes[0])])
        pool.after_reply = lambda query, key, reply: seen.append(query)  # type: ignore[func-returns-value]
        query = make(fresh())
        try:
            try:
                await asyncio.wait_for(asyncio.shield(pool.begin(query)), 0.05)
            except TimeoutError:
                gave_up = True
            else:
                gave_up = False
            merged = await pool.begin(query)  # joins the exchange still in flight
            return gave_up, bool(addresses(merged.reply))
        finally:
            await pool.close()

    assert run(scenario) == (True, True)
    assert len(seen) == 1
    assert len(fakes[0].queries()) == 1
    assert env.stats.counts["upstream.merged"] == 1


def test_forward_calls_every_client_back_once_and_never_before_it_returns(
    fakes: list[FakeUpstream],
) -> None:
    """The hot path's contract (no future): each client of a merged exchange hears its end
    once; a client whose callback raises costs only itself (counted); and an exchange that
    fails inside `forward` (every send refused) is told on the next loop turn, not before
    `forward` has returned."""
    env = Env()
    heard: list[tuple[str, str | None, str | None]] = []

    def client(label: str, *, broken: bool = False) -> Callable[..., None]:
        def settled(context: str, reply: Any, findings: Any, failure: Any) -> None:
            heard.append((context, reply and addresses(reply)[0], failure and failure.text))
            if broken:
                raise RuntimeError("a client's bug")

        return settled

    async def scenario() -> tuple[int, int]:
        pool = env.pool([udp(fakes[0])])
        query = make(fresh())
        try:
            pool.forward(query, None, client("first", broken=True), "first")
            pool.forward(query, None, client("second"), "second")
            await asyncio.sleep(0.3)
            answered = len(heard)

            def refused(*args: Any) -> Any:
                raise OSError("no route")

            pool._udp.send_to = refused  # type: ignore[method-assign]
            pool.forward(make(fresh()), None, client("failed"), "failed")
            before = len(heard)
            await asyncio.sleep(0.05)
            return answered, before
        finally:
            await pool.close()

    answered, before = run(scenario)
    assert answered == 2 and before == 2
    assert heard == [("first", WILD, None), ("second", WILD, None),
                     ("failed", None, "upstream network error")]  # fmt: skip
    assert env.stats.counts["upstream.merged"] == 1
    assert env.stats.counts["internal_error"] == 1
    assert len(fakes[0].queries()) == 1


def test_refresh_runs_in_the_background_once(fakes: list[FakeUpstream]) -> None:
    fakes[0].set_behaviour(Behaviour(delay=0.1))
    stored: list[bytes] = []

    async def scenario() -> tuple[bool, bool]:
        pool = Env().pool([udp(fakes[0])])
        pool.after_reply = lambda query, key, reply: stored.append(query.qname)  # type: ignore[func-returns-value]
        query = make(fresh())
        try:
            first = pool.refresh(query)
            again = pool.refresh(query)
            await asyncio.sleep(0.4)
            return first, again
        finally:
            await pool.close()

    assert run(scenario) == (True, False)
    assert len(stored) == 1


def test_overloaded_when_max_inflight_is_reached(fakes: list[FakeUpstream]) -> None:
    fakes[0].set_behaviour(Behaviour(delay=0.2))

    async def scenario() -> None:
        env = Env()
        pool = UpstreamPool([udp(fakes[0])], 0.5, 1.0, 1, env.stats, env.audit)
        try:
            first = asyncio.ensure_future(pool.begin(make(fresh())))
            await asyncio.sleep(0)
            with pytest.raises(Overloaded):
                await pool.begin(make(fresh()))
            await first
        finally:
            await pool.close()

    run(scenario)


def test_failures_reach_the_failure_hook(fakes: list[FakeUpstream]) -> None:
    fakes[0].set_behaviour(SILENT)
    failed: list[int] = []

    async def scenario() -> None:
        pool = Env().pool([udp(fakes[0])], timeout=0.1, deadline=0.3)
        pool.after_failure = lambda query, key, failure: failed.append(failure.ede)
        try:
            with pytest.raises(UpstreamFailure):
                await pool.begin(make(fresh()))
        finally:
            await pool.close()

    run(scenario)
    assert failed == [EdeCode.NO_REACHABLE_AUTHORITY]


@pytest.mark.parametrize("broken", ["sending", "judging the reply"])
def test_a_bug_fails_the_walk_and_frees_its_key(fakes: list[FakeUpstream], broken: str) -> None:
    """A bug inside a walk's callbacks (no task around them to catch it) costs that query a
    failure and is counted; the walk must not stay in flight, where every identical query
    would join it and wait forever."""

    async def scenario() -> tuple[str, list[str]]:
        env = Env()
        pool = env.pool([udp(fakes[0])])
        calls = {"n": 0}

        def bug_once(real: Callable[..., Any]) -> Callable[..., Any]:
            def step(*args: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("bug")
                return real(*args)

            return step

        if broken == "sending":
            pool._udp.send_to = bug_once(pool._udp.send_to)  # type: ignore[method-assign]
        else:
            pool._judge = bug_once(pool._judge)  # type: ignore[method-assign]
        name = fresh()
        try:
            with pytest.raises(UpstreamFailure) as failed:
                await asyncio.wait_for(pool.begin(make(name)), 2.0)
            again = await asyncio.wait_for(pool.begin(make(name)), 2.0)
        finally:
            await pool.close()
        assert env.stats.counts["internal_error"] == 1
        return failed.value.text, addresses(again.reply)

    assert run(scenario) == ("query abandoned", [WILD])


# --- SERVFAIL: an answer about a name, not the upstream failing --------------------------------


def ede_codes_of(reply: UpstreamReply) -> list[int]:
    return [
        int(option.code)
        for option in dns.message.from_wire(reply.raw).options
        if isinstance(option, dns.edns.EDEOption)
    ]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_validation_servfail_is_the_answer(fakes: list[FakeUpstream], strategy: Strategy) -> None:
    """SERVFAIL with EDE 6 (DNSSEC Bogus) is the upstream's verdict: passed on, not retried
    elsewhere (where a non-validating upstream would hand out the forged data), and the only
    healthy upstream stays healthy however many bogus names come in a row."""
    bogus, other = fakes[0], fakes[1]
    bogus.set_behaviour(BOGUS)
    if strategy is Strategy.PARALLEL:  # both are asked at once: the first answer wins
        other.set_behaviour(BOGUS)
    env = Env()

    async def scenario() -> list[UpstreamReply]:
        pool = env.pool([udp(bogus), udp(other)], strategy=strategy, max_fails=3)
        pool._random = random.Random(0)  # no exploration: the fastest goes first
        pool.upstream(udp(other)).rtt = 1.0  # type: ignore[union-attr]
        try:
            return [(await pool.begin(make(fresh()))).reply for _ in range(5)]
        finally:
            health = pool.health()
            await pool.close()
            assert all(health.values())

    replies = run(scenario)
    assert [reply.rcode for reply in replies] == [dns.rcode.SERVFAIL] * 5
    assert all(ede_codes_of(reply) == [6] for reply in replies)
    if strategy is not Strategy.PARALLEL:
        assert other.queries() == []
    assert env.events("upstream_health") == []
    assert env.stats.counts["upstream.validation_failure"] >= 5


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_plain_servfail_is_tried_on_one_other_upstream(
    fakes: list[FakeUpstream], strategy: Strategy
) -> None:
    """Not on all of them: the second SERVFAIL is the answer, passed on as the failure's reply."""
    for fake in fakes:
        fake.set_behaviour(SERVFAIL)
    name = fresh()

    async def scenario() -> None:
        pool = Env().pool([udp(fake) for fake in fakes], strategy=strategy)
        try:
            await pool.begin(make(name))
        finally:
            await pool.close()

    with pytest.raises(UpstreamFailure) as caught:
        run(scenario)
    assert caught.value.reply is not None and caught.value.reply.rcode == dns.rcode.SERVFAIL
    assert sum(bool(fake.queries(name)) for fake in fakes) == 2


def test_a_plain_servfail_then_silence_still_answers_with_the_servfail(
    fakes: list[FakeUpstream],
) -> None:
    """The upstream's own SERVFAIL (its EDE with it) beats our "no upstream answered"."""
    fakes[0].set_behaviour(Behaviour(reply=Reply.SERVFAIL, ede=((22, "lame delegation"),)))
    fakes[1].set_behaviour(SILENT)

    async def scenario() -> None:
        pool = Env().pool([udp(fakes[0]), udp(fakes[1])], timeout=0.1, deadline=1.0)
        try:
            await pool.begin(make(fresh()))
        finally:
            await pool.close()

    with pytest.raises(UpstreamFailure) as caught:
        run(scenario)
    assert caught.value.reply is not None and ede_codes_of(caught.value.reply) == [22]


@pytest.mark.parametrize(
    ("probe_answered", "down"),
    [(True, False), (False, True)],
    ids=["name broken", "upstream broken"],
)
def test_servfails_in_a_row_are_checked_with_a_probe(
    fakes: list[FakeUpstream], probe_answered: bool, down: bool
) -> None:
    """max_fails SERVFAILs with no good answer between: a probe tells a broken name (the probe
    is answered: still up) from a broken upstream (the probe fails too: down)."""
    fake = fakes[0]
    fake.set_behaviour(ANSWER if probe_answered else SERVFAIL)
    fake.set_behaviour(SERVFAIL, "broken.wild.example.org")
    env = Env()

    async def scenario() -> bool:
        pool = env.pool([udp(fake)], timeout=0.2, max_fails=3, probe_interval=5.0)
        try:
            for _ in range(3):
                with pytest.raises(UpstreamFailure):
                    await pool.begin(make(fresh("broken")))
            started = time.monotonic()
            while not fake.queries(".") and time.monotonic() - started < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            return not pool.health()[str(udp(fake))]
        finally:
            await pool.close()

    assert run(scenario) is down
    assert len(fake.queries(".")) == 1
    assert env.stats.counts["upstream.servfail_check"] == 1
    assert [e["healthy"] for e in env.events("upstream_health")] == ([False] if down else [])


def test_health_events_are_rate_limited(fakes: list[FakeUpstream]) -> None:
    """Down, then back up 0.05 s later at the first probe: the second event waits out the
    second after the first, and then says where the upstream stands."""
    fake = fakes[0]
    env = Env()

    async def scenario() -> tuple[list[bool], list[bool], float]:
        pool = env.pool([udp(fake)], timeout=0.1, max_fails=1, probe_interval=0.05)
        server = str(udp(fake))
        try:
            fake.set_behaviour(SILENT)
            with pytest.raises(UpstreamFailure):
                await pool.begin(make(fresh()))
            down_at = time.monotonic()
            fake.set_behaviour(ANSWER)
            while not pool.health()[server] and time.monotonic() - down_at < 2:
                await asyncio.sleep(0.01)
            early = [e["healthy"] for e in env.events("upstream_health")]
            while len(env.events("upstream_health")) < 2 and time.monotonic() - down_at < 3:
                await asyncio.sleep(0.01)
            late = [e["healthy"] for e in env.events("upstream_health")]
            return early, late, time.monotonic() - down_at
        finally:
            await pool.close()

    early, late, waited = run(scenario)
    assert early == [False]
    assert late == [False, True]
    assert waited >= 0.9


def test_a_lossy_upstream_does_not_flap(fakes: list[FakeUpstream]) -> None:
    """Half the datagrams lost, queries back to back for three seconds: the old rule flipped
    health dozens of times; now a down lasts at least the probe interval, an up at least a
    second, and the events say so."""
    fake = fakes[0]
    fake.set_behaviour(Behaviour(loss=0.5))
    env = Env()

    async def scenario() -> int:
        pool = env.pool([udp(fake)], timeout=0.05, deadline=0.1, max_fails=3,
                        probe_interval=0.5)  # fmt: skip
        answered = 0
        try:
            ends = time.monotonic() + 3.0
            while time.monotonic() < ends:
                try:
                    await pool.begin(make(fresh()))
                    answered += 1
                except UpstreamFailure:
                    pass
        finally:
            await pool.close()
        return answered

    assert run(scenario) > 10
    events = env.events("upstream_health")
    changes = sum(event.get("changes", 1) for event in events)
    # each down-and-up takes at least probe_interval + HEALTH_DWELL = 1.5 s: five changes at most
    assert 1 <= changes <= 5, events
    assert len(events) <= 5


# --- persistent streams ---------------------------------------------------------------------


def tcp(fake: FakeUpstream) -> UpstreamServer:
    return UpstreamServer("tcp", fake.host, fake.port)


def test_tcp_connection_is_reused_and_pipelined(fakes: list[FakeUpstream]) -> None:
    fake = fakes[0]

    async def scenario() -> int:
        pool = Env().pool([tcp(fake)])
        try:
            for _ in range(3):
                await pool.begin(make(fresh()))
            replies = await asyncio.gather(*(pool.begin(make(fresh())) for _ in range(20)))
            assert all(addresses(r.reply) == [WILD] for r in replies)
            state = pool.upstream(tcp(fake))
            assert state is not None and state.stream is not None
            return state.stream.connections
        finally:
            await pool.close()

    assert run(scenario) == 1
    seen = fake.queries()
    assert len(seen) == 23 and {r.transport for r in seen} == {"tcp"}
    assert len({r.peer for r in seen}) == 1  # one connection, one source port


def test_idle_connection_is_closed(
    fakes: list[FakeUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream_module, "STREAM_IDLE_TIMEOUT", 0.1)

    async def scenario() -> int:
        pool = Env().pool([tcp(fakes[0])])
        try:
            await pool.begin(make(fresh()))
            await asyncio.sleep(0.3)
            await pool.begin(make(fresh()))
            state = pool.upstream(tcp(fakes[0]))
            assert state is not None and state.stream is not None
            return state.stream.connections
        finally:
            await pool.close()

    assert run(scenario) == 2


def test_a_reused_connection_closed_under_a_query_is_retried_once(
    fakes: list[FakeUpstream],
) -> None:
    fake = fakes[0]
    fake.set_behaviour(GARBAGE, "garbage.wild.example.org")
    name = fresh("garbage")

    async def scenario() -> int:
        pool = Env().pool([tcp(fake)], timeout=1.0)
        try:
            await pool.begin(make(fresh()))
            with pytest.raises(UpstreamFailure):
                await pool.begin(make(name))
            state = pool.upstream(tcp(fake))
            assert state is not None and state.stream is not None
            return state.stream.connections
        finally:
            await pool.close()

    assert run(scenario) == 2
    assert len(fake.queries(name)) == 2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    made = make_test_pki(tmp_path_factory.mktemp("pki"))
    if made is None:
        pytest.skip("the openssl command line is needed to make a test CA; not installed")
    return made


@pytest.mark.parametrize(
    ("tls_name", "use_ca", "ok"),
    [("dns.test", True, True), ("wrong.test", True, False), ("dns.test", False, False)],
)
def test_dns_over_tls(pki: Any, tls_name: str, use_ca: bool, ok: bool) -> None:
    env = Env()
    with FakeUpstream(tls=pki.server_context()) as fake:
        server = UpstreamServer("tls", fake.host, fake.tls_port, tls_name)

        async def scenario() -> UpstreamReply:
            pool = env.pool([server], timeout=2.0, ca_file=str(pki.ca) if use_ca else None)
            try:
                first = await pool.begin(make(fresh()))
                await pool.begin(make(fresh()))
                return first.reply
            finally:
                await pool.close()

        if ok:
            assert addresses(run(scenario)) == [WILD]
            seen = fake.queries()
            assert [r.transport for r in seen] == ["tls", "tls"]
            assert len({r.peer for r in seen}) == 1  # the TLS session is reused
        else:
            with pytest.raises(UpstreamFailure) as caught:
                run(scenario)
            assert caught.value.ede == EdeCode.NETWORK_ERROR
            assert fake.queries() == []  # nothing sent before the certificate checked out
            assert env.stats.counts["upstream.tls_error"] >= 1
            assert env.events("upstream_tls_error")
