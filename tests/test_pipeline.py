"""The query path with a scripted upstream pool and an injected clock: which step answers, in
which order, synchronously or not, and what the cache and the audit log make of it."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from resolver.cache import Cache, CacheKey, cache_key
from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids, load_catalogue_entry, reference_label
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.pipeline import FORWARDED, QueryPipeline
from resolver.policy.inspection import Findings
from resolver.protocol.edns import EdeCode
from resolver.protocol.wire import HEADER_LEN, Query, UpstreamReply, parse_query
from resolver.state import ResolverState, build_state
from resolver.upstream.pool import Resolved, UpstreamFailure

CLIENT = "127.0.0.1"
TIKTOK_DECISIONS = [reference_label(r) for r in load_catalogue_entry("tiktok").references]
TIKTOK_REF = "; ".join(TIKTOK_DECISIONS)
CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"], timeout: 0.5s, deadline: 2s}}
clients: {{allow: [127.0.0.0/8]}}
blocking: {{lists: [tiktok{extra}], ttl: 42s}}
cache: {{client_timeout: 0.7s, stale_answer_ttl: 30s}}
inspection: {{cname: true, rebinding: true, rebinding_allow: [gov.internal]}}
"""


def state_for(
    tmp_path: Path | None = None, extra_list: Sequence[str] = (), more: str = ""
) -> ResolverState:
    """CONFIG, with `extra_list` as one more blocking list and `more` (top-level YAML) after it."""
    extra = ""
    if tmp_path is not None and extra_list:
        path = tmp_path / "local.txt"
        path.write_text("\n".join(extra_list) + "\n")
        extra = f", {path}"
    config = parse_config(CONFIG.format(extra=extra) + more, "<test>", known_lists=catalogue_ids())
    return build_state(config, None)


class ScriptedPool:
    """Stands in for `UpstreamPool`: answers from `records` (name → records, or an rcode, or
    "fail"/"slow"), and calls the hooks the way the real pool does."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}
        self.calls: list[str] = []
        self.refreshed: list[bytes] = []
        self.after_reply: Callable[[Query, CacheKey, UpstreamReply], Findings | None] | None = None
        self.after_failure: Callable[[Query, CacheKey, UpstreamFailure], None] | None = None

    def reply_for(self, query: Query) -> UpstreamReply:
        message = dns.message.from_wire(query.packet)
        name = message.question[0].name.to_text().lower()
        script = self.records.get(name, [])
        response = dns.message.make_response(message, recursion_available=True)
        if isinstance(script, int):
            response.set_rcode(script)
            response.authority.append(
                dns.rrset.from_text(
                    "example.org.", 3600, "IN", "SOA", "ns.example.org. a.example.org. 1 2 3 4 60"
                )
            )
        for line in script if isinstance(script, list) else ():
            owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
            response.answer.append(dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata))
        return UpstreamReply(response.to_wire(), query.question_end - HEADER_LEN)

    def begin(self, query: Query, key: Any = None) -> asyncio.Future[Resolved]:
        name = dns.message.from_wire(query.packet).question[0].name.to_text().lower()
        self.calls.append(name)
        shared: asyncio.Future[Resolved] = asyncio.get_running_loop().create_future()
        script = self.records.get(name)
        if script == "fail":
            failure = UpstreamFailure(EdeCode.NO_REACHABLE_AUTHORITY, "no upstream answered")
            assert self.after_failure is not None
            self.after_failure(query, cache_key(query), failure)
            shared.set_exception(failure)
        elif script != "slow":  # "slow" never answers while the test waits
            reply = self.reply_for(query)
            assert self.after_reply is not None
            shared.set_result(Resolved(reply, self.after_reply(query, cache_key(query), reply)))
        return shared

    def forward(self, query: Query, key: Any, notify: Callable[..., None], context: Any) -> None:
        """`begin` as the pipeline calls it: `notify(context, reply, findings, failure)` once
        the scripted exchange settles, never before this returns (like the real pool)."""

        def settled(shared: asyncio.Future[Resolved]) -> None:
            failure = shared.exception()
            if failure is not None:
                notify(context, None, None, failure)
            else:
                notify(context, *shared.result(), None)

        self.begin(query, key).add_done_callback(settled)

    def refresh(self, query: Query) -> bool:
        self.refreshed.append(query.qname)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(
        self, state: ResolverState | None = None, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.state = state or state_for()
        self.pool = ScriptedPool()
        self.stats = Stats()
        self.log = io.StringIO()
        self.audit = AuditLog(self.log, "info", fold_window=0)
        self.clock = Clock()
        self.cache = Cache(self.state.config.cache)
        self.pipeline = QueryPipeline(
            self.state,
            self.pool,
            self.stats,
            self.audit,
            self.cache,
            self.clock,  # type: ignore[arg-type]
            wall_clock,
        )

    def ask(
        self,
        name: str,
        rdtype: str = "A",
        *,
        edns: bool = True,
        sync: bool | None = None,
        client: str = CLIENT,
    ) -> dns.message.Message:
        message = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)

        async def exchange() -> tuple[bool, bytes | None]:
            later: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            outcome = self.pipeline.handle(message.to_wire(), client, True, later.set_result)
            if outcome is FORWARDED:
                return False, await asyncio.wait_for(later, 5)
            assert not later.done()
            return True, outcome  # type: ignore[return-value]

        is_sync, outcome = asyncio.run(exchange())
        if sync is not None:
            assert is_sync == sync, f"expected {'a' if sync else 'no'} synchronous answer"
        assert isinstance(outcome, bytes)
        reply = dns.message.from_wire(outcome)
        assert reply.id == message.id
        return reply

    def results(self) -> dict[str, int]:
        return {k: v for k, v in self.stats.results().items() if v}

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines() if line]
        return [e for e in lines if e.get("event") == name]


def rdata(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


def ede(reply: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(int(o.code), o.text) for o in reply.options if isinstance(o, dns.edns.EDEOption)]


# --- the cache step -------------------------------------------------------------------------


def test_a_cache_hit_is_answered_synchronously() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    first = env.ask("www.example.org.", sync=False)
    env.clock.now += 100
    second = env.ask("WwW.eXample.org.", sync=True)
    assert rdata(first) == rdata(second) == ["192.0.2.1"]
    assert second.question[0].name.to_text() == "WwW.eXample.org."
    assert [rrset.ttl for rrset in second.answer] == [200]
    assert len(env.pool.calls) == 1
    assert env.results() == {"answered": 1, "cached": 1}
    assert env.cache.stats()["hits"] == 1


def test_the_cache_is_off_when_disabled() -> None:
    env = Env()
    env.cache.configure(env.cache.config.__class__(enabled=False))
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    env.ask("www.example.org.", sync=False)
    env.ask("www.example.org.", sync=False)
    assert len(env.pool.calls) == 2


def test_policy_comes_before_the_cache(tmp_path: Path) -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    env.ask("www.example.org.")
    allowed = env.state
    env.pipeline.state = state_for(tmp_path, ["example.org"])  # a new ban, by reload
    blocked = env.ask("www.example.org.", sync=True)
    assert rdata(blocked) == ["0.0.0.0"]
    env.pipeline.state = allowed  # lifted: the cached answer is back at once
    assert rdata(env.ask("www.example.org.", sync=True)) == ["192.0.2.1"]
    assert env.results() == {"answered": 1, "blocked": 1, "cached": 1}


# --- serve-stale and failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "code", "rcode"),
    [
        (["www.example.org. 60 IN A 192.0.2.1"], EdeCode.STALE_ANSWER, dns.rcode.NOERROR),
        (dns.rcode.NXDOMAIN, EdeCode.STALE_NXDOMAIN_ANSWER, dns.rcode.NXDOMAIN),
    ],
)
def test_stale_answer_when_upstreams_fail(script: Any, code: int, rcode: int) -> None:
    env = Env()
    env.pool.records["www.example.org."] = script
    env.ask("www.example.org.")
    env.clock.now += 3600  # long expired, well within max_stale_age
    env.pool.records["www.example.org."] = "fail"
    stale = env.ask("www.example.org.", sync=False)
    assert stale.rcode() == rcode
    assert [code_ for code_, _ in ede(stale)] == [code]
    assert {rrset.ttl for rrset in (*stale.answer, *stale.authority)} == {30}
    # the failure is cached (RFC 9520): the next client gets the stale answer at once
    env.clock.now += 1
    again = env.ask("www.example.org.", sync=True)
    assert [code_ for code_, _ in ede(again)] == [code]
    assert len(env.pool.calls) == 2
    assert env.results() == {"answered": 1, "stale": 2}


def test_stale_answer_without_edns_carries_no_opt() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 60 IN A 192.0.2.1"]
    env.ask("www.example.org.", edns=False)
    env.clock.now += 120
    env.pool.records["www.example.org."] = "fail"
    stale = env.ask("www.example.org.", edns=False)
    assert stale.edns == -1 and rdata(stale) == ["192.0.2.1"]


def test_stale_answer_when_the_upstream_is_too_slow() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 60 IN A 192.0.2.1"]
    env.ask("www.example.org.")
    env.clock.now += 120
    env.pool.records["www.example.org."] = "slow"
    started = time.monotonic()
    stale = env.ask("www.example.org.")
    assert 0.6 < time.monotonic() - started < 1.5  # cache.client_timeout: 0.7 s
    assert env.pool.calls[-1] == "www.example.org."
    assert [c for c, _ in ede(stale)] == [EdeCode.STALE_ANSWER]


def test_a_cached_failure_without_stale_data_is_servfail_at_once() -> None:
    env = Env()
    env.pool.records["down.example.org."] = "fail"
    first = env.ask("down.example.org.", sync=False)
    second = env.ask("down.example.org.", sync=True)
    assert first.rcode() == second.rcode() == dns.rcode.SERVFAIL
    assert [c for c, _ in ede(second)] == [EdeCode.NO_REACHABLE_AUTHORITY]
    assert len(env.pool.calls) == 1
    env.clock.now += 6  # past failure_ttl (5 s): tried again
    env.ask("down.example.org.", sync=False)
    assert len(env.pool.calls) == 2


def test_hot_entries_are_prefetched() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 100 IN A 192.0.2.1"]
    env.ask("www.example.org.")
    for _ in range(3):
        env.ask("www.example.org.", sync=True)
    assert env.pool.refreshed == []
    env.clock.now += 95
    env.ask("www.example.org.", sync=True)
    assert env.pool.refreshed == [b"\x03www\x07example\x03org\x00"]


# --- response inspection --------------------------------------------------------------------


def test_cname_cloaking_into_tiktok_is_blocked_audited_and_stays_blocked_from_cache() -> None:
    env = Env()
    env.pool.records["cdn.innocent.example."] = [
        "cdn.innocent.example. 300 IN CNAME edge.tiktokv.com.",
        "edge.tiktokv.com. 300 IN A 192.0.2.77",
    ]
    first = env.ask("cdn.innocent.example.", sync=False)
    assert rdata(first) == ["0.0.0.0"]
    cause = f"blocked by list tiktok (ref: {TIKTOK_REF}) via CNAME edge.tiktokv.com"
    assert ede(first) == [(EdeCode.FORGED_ANSWER, cause)]
    second = env.ask("cdn.innocent.example.", sync=True)
    assert rdata(second) == ["0.0.0.0"]
    events = env.events("blocked")
    assert [e.get("cname") for e in events] == ["edge.tiktokv.com"] * 2
    assert events[0]["qname"] == "cdn.innocent.example" and events[0]["entry"] == "tiktok"
    # The cloaked block cites the entry's decisions like a block of the question would.
    assert (events[0]["reference"], events[0]["decisions"]) == (TIKTOK_REF, TIKTOK_DECISIONS)
    assert env.results() == {"blocked": 2}
    assert len(env.pool.calls) == 1


@pytest.mark.parametrize(
    ("name", "address", "blocked"),
    [
        ("printer.example.org.", "10.1.2.3", True),
        ("printer.gov.internal.", "10.1.2.3", False),
        ("www.example.org.", "192.0.2.8", False),
    ],
)
def test_rebinding(name: str, address: str, blocked: bool) -> None:
    env = Env()
    env.pool.records[name] = [f"{name} 300 IN A {address}"]
    reply = env.ask(name)
    assert rdata(reply) == (["0.0.0.0"] if blocked else [address])
    assert len(env.cache) == (0 if blocked else 1)  # a blocked answer is never cached
    if blocked:
        (event,) = env.events("blocked")
        assert (event["entry"], event["rule"]) == ("rebinding", address)
        assert event["reference"] == "inspection.rebinding" and "decisions" not in event


@pytest.mark.parametrize("first_octet", [10, 192])
def test_a_hostile_64k_reply_does_not_stall_the_loop(first_octet: int) -> None:
    """Inspecting a 64 KB reply of 3000 records costs milliseconds, and it is not cached."""
    env = Env()
    qname = b"\x06victim\x07example\x00"
    query_wire = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01"
    count = 3000
    records = b"".join(
        bytes((4,)) + f"{i:04x}".encode() + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4)
        + bytes((first_octet, 0, i >> 8, i & 0xFF))
        for i in range(count)
    )  # fmt: skip
    wire = struct.pack(">HHHHHH", 1, 0x8180, 1, count, 0, 0) + query_wire[12:] + records
    assert len(wire) > 60_000
    parsed = parse_query(query_wire)
    started = time.perf_counter()
    reply = UpstreamReply(wire, parsed.question_end - HEADER_LEN)
    findings = env.pipeline._after_reply(parsed, cache_key(parsed), reply)
    elapsed = time.perf_counter() - started
    assert findings is not None and (findings.ip_block is None) == (first_octet != 10)
    assert len(env.cache) == 0
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms"


# --- missing lists (blocking.missing_lists) -------------------------------------------------

OFFICIAL = "127.0.0.2"
FEED_CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"], timeout: 0.5s, deadline: 2s}}
clients: {{allow: [127.0.0.0/8]}}
state_dir: {tmp}/state
sources:
  feed: {{url: "https://127.0.0.1:1/feed.txt"}}
groups:
  officials: {{subnets: [127.0.0.2/32], block: [{block}]}}
policies:
  ban: {{block: [{policy}], groups: [officials], from: "{start}", until: "{end}"}}
blocking: {{lists: [tiktok], missing_lists: {mode}}}
"""


def feed_state(
    tmp_path: Path,
    mode: str = "fail_closed",
    *,
    in_group: bool = True,
    window: tuple[str, str] = ("2000-01-01", "2100-01-01"),
) -> ResolverState:
    """Group `officials` (client OFFICIAL) needs the never-fetched feed, through its own
    `block` or through a policy with `window`; other clients are in the default group."""
    text = FEED_CONFIG.format(
        tmp=tmp_path,
        block="feed" if in_group else "tiktok",
        policy="tiktok" if in_group else "feed",
        start=window[0],
        end=window[1],
        mode=mode,
    )
    return build_state(parse_config(text, "<test>", known_lists=catalogue_ids()), None)


NOT_READY = (EdeCode.NOT_READY, "not ready: list feed not loaded yet (missing_lists: fail_closed)")


def test_a_group_waiting_for_its_list_gets_servfail_not_ready(tmp_path: Path) -> None:
    env = Env(feed_state(tmp_path))
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    waiting = env.ask("www.example.org.", client=OFFICIAL, sync=True)
    assert waiting.rcode() == dns.rcode.SERVFAIL
    assert ede(waiting) == [NOT_READY]
    assert env.pool.calls == []  # nothing went upstream for it
    # Blocks from the lists it has still apply; other groups are served as usual.
    assert rdata(env.ask("www.tiktok.com.", client=OFFICIAL, sync=True)) == ["0.0.0.0"]
    assert rdata(env.ask("www.example.org.", sync=False)) == ["192.0.2.1"]
    # A cached answer is no proof the missing list allows the name.
    again = env.ask("www.example.org.", client=OFFICIAL, sync=True)
    assert (again.rcode(), ede(again)) == (dns.rcode.SERVFAIL, [NOT_READY])
    assert env.results() == {"servfail": 2, "blocked": 1, "answered": 1}
    assert env.stats.counts["fail_closed"] == 2


def test_without_edns_the_servfail_carries_no_opt(tmp_path: Path) -> None:
    env = Env(feed_state(tmp_path))
    reply = env.ask("www.example.org.", client=OFFICIAL, edns=False, sync=True)
    assert (reply.rcode(), reply.edns) == (dns.rcode.SERVFAIL, -1)


def test_fail_open_answers_as_if_the_list_were_empty(tmp_path: Path) -> None:
    env = Env(feed_state(tmp_path, "fail_open"))
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    assert rdata(env.ask("www.example.org.", client=OFFICIAL, sync=False)) == ["192.0.2.1"]
    assert env.events("fail_closed") == []


def test_a_reload_that_loads_the_list_lifts_it_and_says_so(tmp_path: Path) -> None:
    env = Env(feed_state(tmp_path))
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    assert env.ask("www.example.org.", client=OFFICIAL).rcode() == dns.rcode.SERVFAIL
    env.pipeline.state = state_for()  # the reload after the feed's first good fetch
    assert rdata(env.ask("www.example.org.", client=OFFICIAL)) == ["192.0.2.1"]
    assert [(e["level"], e["groups"]) for e in env.events("fail_closed_lifted")] == [
        ("info", ["officials"])
    ]
    env.pipeline.state = feed_state(tmp_path)  # and back (a config naming a new feed)
    assert env.ask("www.example.org.", client=OFFICIAL).rcode() == dns.rcode.SERVFAIL
    assert [(e["level"], e["groups"], e["lists"]) for e in env.events("fail_closed")] == [
        ("error", ["officials"], ["feed"])
    ]


WINDOW = ("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")
OPENS = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
CLOSES = datetime(2030, 1, 2, tzinfo=UTC).timestamp()


def test_a_policy_window_opening_and_closing_is_followed_to_the_second(tmp_path: Path) -> None:
    """No reload at the window's edges: the pipeline notices them at the next query."""
    wall = [OPENS - 0.5]
    env = Env(feed_state(tmp_path, in_group=False, window=WINDOW), lambda: wall[0])
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    steps = [(OPENS - 0.5, dns.rcode.NOERROR), (OPENS, dns.rcode.SERVFAIL),
             (CLOSES - 0.001, dns.rcode.SERVFAIL), (CLOSES, dns.rcode.NOERROR),
             (OPENS + 1, dns.rcode.SERVFAIL)]  # fmt: skip  # (a wall clock set back)
    for at, rcode in steps:
        wall[0] = at
        assert env.ask("www.example.org.", client=OFFICIAL).rcode() == rcode, at
    assert [e["groups"] for e in env.events("fail_closed")] == [["officials"], ["officials"]]
    assert [e["groups"] for e in env.events("fail_closed_lifted")] == [["officials"]]
    assert env.pipeline.fail_closed(OPENS + 10).groups.keys() == {"officials"}
    assert env.pipeline.fail_closed(CLOSES + 10).groups == {}


# --- rate limits: a client flooding one zone ------------------------------------------------


def test_a_client_flooding_one_zone_keeps_its_cached_names_and_other_zones() -> None:
    """Over its budget for victim.example, the client's new names there are refused (5a, then
    early, 2a), while its cached name there and its names elsewhere are answered."""
    limits = "rate_limit: {action: refuse, client_zone_rate: 1, client_zone_burst: 3}\n"
    env = Env(state_for(more=limits))
    env.pool.records["www.victim.example."] = ["www.victim.example. 300 IN A 192.0.2.1"]
    assert rdata(env.ask("www.victim.example.", sync=False)) == ["192.0.2.1"]
    rcodes = [env.ask(f"r{i}.victim.example.").rcode() for i in range(6)]
    assert rcodes == [dns.rcode.NOERROR] * 2 + [dns.rcode.REFUSED] * 4
    shed = env.ask("r9.victim.example.", sync=True)
    assert ede(shed) == [(18, "rate limited (client_zone)")]
    assert rdata(env.ask("www.victim.example.", sync=True)) == ["192.0.2.1"]
    assert env.ask("www.other.example.", sync=False).rcode() == dns.rcode.NOERROR
    assert "r9.victim.example." not in [c.lower() for c in env.pool.calls]
    assert env.stats.limited == {("default", "client_zone", "refuse"): 5}


# --- metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcode", "label"),
    [
        (dns.rcode.NXDOMAIN, "NXDOMAIN"),
        (dns.rcode.BADVERS, "BADVERS"),  # 16: extended, 0 in the header's four bits
        (dns.rcode.BADCOOKIE, "other"),  # 23: 7 in the header's four bits, which is YXRRSET
    ],
)
def test_a_forwarded_answer_is_counted_under_its_whole_rcode(rcode: int, label: str) -> None:
    """An upstream's extended rcode (RFC 6891: header bits plus the OPT's upper eight) reaches
    the client whole, and the responses metric counts it whole, not by the header bits alone."""
    env = Env()
    env.pool.records["x.example.org."] = rcode
    reply = env.ask("x.example.org.", sync=False)
    assert reply.rcode() == rcode
    assert env.stats.rcodes == {label: 1}
