"""The answer memo: a repeated query is answered from the bytes made for the first, with the
same metrics and audit, and never past a reload, a policy window's edge or a cache entry's
second; a query differing in any byte that shapes the answer gets its own."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
from test_pipeline import CLIENT, Env, rdata, state_for

from resolver.cache import AnswerMemo
from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.state import build_state

KEY = (b"\x01\x00", "127.0.0.1", True, "")


def test_the_memo_is_bounded_and_forgets_all_at_once_when_full() -> None:
    memo = AnswerMemo(limit=3)
    for index in range(3):
        memo.put((bytes([index]), "c", True, ""), ("entry", index), 10.0, 0.0, 100.0)
    assert len(memo) == 3
    memo.put((b"x", "c", True, ""), ("entry", 3), 10.0, 0.0, 100.0)
    assert len(memo) == 1
    assert memo.get((b"\x00", "c", True, ""), 10.0) is None
    assert memo.get((b"x", "c", True, ""), 10.0) == ("entry", 3)


@pytest.mark.parametrize(
    ("now", "kept"),
    [(10.0, True), (0.0, True), (99.999, True), (100.0, False), (150.0, False), (-1.0, False)],
)
def test_the_memo_holds_only_within_the_span_its_answers_were_made_in(
    now: float, kept: bool
) -> None:
    memo = AnswerMemo()
    memo.put(KEY, ("entry",), 10.0, 0.0, 100.0)
    assert (memo.get(KEY, now) is not None) == kept
    memo.put((b"y", "c", True, ""), ("later",), now, -10.0, 200.0)
    assert (len(memo) == 2) == kept  # answering outside the span forgets the others


def test_a_later_answer_with_a_shorter_span_narrows_the_memo() -> None:
    memo = AnswerMemo()
    memo.put(KEY, ("first",), 10.0, 0.0, 100.0)
    memo.put((b"other", "c", True, ""), ("second",), 20.0, 5.0, 50.0)
    assert (memo.since, memo.until) == (5.0, 50.0)
    assert memo.get(KEY, 60.0) is None
    memo.clear()
    assert (memo.since, memo.until, len(memo)) == (math.inf, -math.inf, 0)


def ask_wire(env: Env, message: dns.message.Message, client: str = CLIENT) -> bytes:
    outcome = env.pipeline.handle(message.to_wire(), client, True, lambda reply: None)
    assert isinstance(outcome, bytes)
    return outcome


def query(name: str = "www.tiktok.com.", rdtype: str = "A", *, rd: bool = True,
          do: bool = False, qid: int = 1) -> dns.message.Message:  # fmt: skip
    message = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=do)
    if not rd:
        message.flags &= ~dns.flags.RD
    message.id = qid
    return message


def test_a_repeated_block_is_the_same_answer_metrics_and_audit() -> None:
    """Kept on its second sight, served from the memo from the third on."""
    env = Env()
    first = ask_wire(env, query(qid=1))
    assert len(env.pipeline._memo) == 0
    second = ask_wire(env, query(qid=2))
    assert len(env.pipeline._memo) == 1
    third = ask_wire(env, query(qid=3))
    assert second[:2] == b"\x00\x02" and second[2:] == first[2:]
    assert third[:2] == b"\x00\x03" and third[2:] == first[2:]
    assert env.results() == {"blocked": 3}
    assert sum(env.stats.blocks.values()) == 3
    events = env.events("blocked")
    assert len(events) == 3
    assert {k: v for k, v in events[0].items() if k != "timestamp"} == {
        k: v for k, v in events[2].items() if k != "timestamp"
    }


def test_names_asked_once_are_not_kept() -> None:
    """A sweep of names never asked again keeps nothing alive (the collector's extra passes
    over such entries cost the p99); only their hashes, in a bounded set."""
    env = Env()
    for index in range(50):
        ask_wire(env, query(name=f"n{index}.tiktok.com.", qid=index))
    assert len(env.pipeline._memo) == 0
    assert len(env.pipeline._memo.sighted) == 50


def test_the_sighted_hashes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("resolver.cache.SIGHTED_LIMIT", 3)
    memo = AnswerMemo()
    keys = [(bytes([index]), "c", True, "") for index in range(4)]
    assert [memo.second_sight(key) for key in keys] == [False] * 4
    assert len(memo.sighted) == 1  # forgotten all at once when full
    assert memo.second_sight(keys[3]) and not memo.second_sight(keys[0])


@pytest.mark.parametrize(
    "other",
    [
        query(rd=False),
        query(do=True),
        query(rdtype="AAAA"),
        query(rdtype="HTTPS"),
        query(name="WWW.TikTok.com."),
        dns.message.make_query("www.tiktok.com.", "A"),  # no EDNS
    ],
    ids=["rd", "do", "aaaa", "https", "case", "no-edns"],
)
def test_a_query_differing_in_what_shapes_the_answer_gets_its_own(
    other: dns.message.Message,
) -> None:
    env = Env()
    ask_wire(env, query())
    ask_wire(env, query())
    other.id = 1
    ask_wire(env, other)
    memoised = ask_wire(env, other)
    fresh = ask_wire(Env(), other)
    assert memoised == fresh
    assert len(env.pipeline._memo) == 2


GROUPS_CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {servers: ["127.0.0.1:5399"]}
clients: {allow: [127.0.0.0/8]}
groups:
  staff: {subnets: [127.0.0.3/32], exempt: [tiktok.com]}
blocking: {lists: [tiktok]}
"""


def test_another_client_in_another_group_gets_its_own_answer() -> None:
    config = parse_config(GROUPS_CONFIG, "<test>", known_lists=catalogue_ids())
    env = Env(build_state(config, None))
    env.pool.records["www.tiktok.com."] = ["www.tiktok.com. 300 IN A 192.0.2.7"]
    assert rdata(dns.message.from_wire(ask_wire(env, query()))) == ["0.0.0.0"]
    exempt = env.ask("www.tiktok.com.", client="127.0.0.3", sync=False)
    assert rdata(exempt) == ["192.0.2.7"]
    assert rdata(dns.message.from_wire(ask_wire(env, query()))) == ["0.0.0.0"]


def test_a_reload_forgets_every_memoised_answer(tmp_path: Path) -> None:
    env = Env(state_for(tmp_path, ["example.org"]))
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    assert rdata(env.ask("www.example.org.", sync=True)) == ["0.0.0.0"]
    assert rdata(env.ask("www.example.org.", sync=True)) == ["0.0.0.0"]
    env.pipeline.state = state_for()  # the ban lifted by a reload
    assert rdata(env.ask("www.example.org.", sync=False)) == ["192.0.2.1"]


WINDOW_CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {servers: ["127.0.0.1:5399"]}
clients: {allow: [127.0.0.0/8]}
policies:
  ban: {block: [tiktok], groups: [default], from: "2030-01-01T00:00:00Z",
        until: "2030-01-02T00:00:00Z"}
blocking: {lists: [doh-bypass]}
"""
OPENS = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
CLOSES = datetime(2030, 1, 2, tzinfo=UTC).timestamp()


def test_memoised_answers_end_at_a_policy_windows_edge() -> None:
    wall = [OPENS - 0.5]
    config = parse_config(WINDOW_CONFIG, "<test>", known_lists=catalogue_ids())
    env = Env(build_state(config, None), lambda: wall[0])
    env.pool.records["www.tiktok.com."] = ["www.tiktok.com. 300 IN A 192.0.2.7"]
    allowed, blocked = "192.0.2.7", "0.0.0.0"
    steps = [(OPENS - 0.5, allowed), (OPENS - 0.1, allowed), (OPENS, blocked),
             (CLOSES - 0.001, blocked), (CLOSES, allowed), (OPENS + 1, blocked)]  # fmt: skip
    for at, address in steps:
        wall[0] = at
        assert rdata(env.ask("www.tiktok.com.")) == [address], at
    assert env.results() == {"answered": 1, "cached": 2, "blocked": 3}


def test_a_memoised_cache_hit_follows_its_ttl_and_counts_as_a_hit() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    env.ask("www.example.org.", sync=False)
    ttls = []
    for step in (0, 0, 0.5, 0.6, 10):
        env.clock.now += step
        ttls.append(env.ask("www.example.org.", sync=True).answer[0].ttl)
    assert ttls == [300, 300, 300, 299, 289]
    assert env.cache.stats()["hits"] == 5
    assert env.results() == {"answered": 1, "cached": 5}


def test_a_memoised_cache_hit_ends_with_its_entry() -> None:
    env = Env()
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.1"]
    env.ask("www.example.org.", sync=False)
    env.ask("www.example.org.", sync=True)
    env.cache.flush()
    env.pool.records["www.example.org."] = ["www.example.org. 300 IN A 192.0.2.2"]
    assert rdata(env.ask("www.example.org.", sync=False)) == ["192.0.2.2"]
    env.clock.now += 301  # expired: never served from the memo
    assert rdata(env.ask("www.example.org.", sync=False)) == ["192.0.2.2"]
    assert len(env.pool.calls) == 3
