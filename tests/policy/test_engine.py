"""`decide` as a pure function: groups by longest prefix, windows, exemptions, references."""

from __future__ import annotations

import dataclasses
import datetime
import gc

import pytest

from resolver.config import parse_config
from resolver.lists.catalogue import CatalogueEntry, Reference
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.lists.provenance import catalogue_provenance, source_provenance
from resolver.policy.engine import (
    BLOCK_MEMO_LIMIT,
    EDE_TEXT_BUDGET,
    UNLISTED_MEMO_LIMIT,
    Action,
    Decision,
    PolicyEngine,
    block_cause,
    build_engine,
)
from resolver.protocol.names import from_text

BELGIAN_CASE = """
clients: {allow: [10.0.0.0/8, "fd00::/8"], default_group: refuse}
blocking: {lists: [], ttl: 60s}
groups:
  officials: {subnets: [10.20.0.0/16, "fd00:20::/48"]}
  press-office: {subnets: [10.20.5.0/24], exempt: [tiktok.com]}
  personal-wifi: {subnets: [10.30.0.0/16]}
  security: {subnets: [10.40.0.0/16], block: [wechat], exempt: ["=safe.wechat.com"]}
policies:
  be-tiktok-2023:
    block: [tiktok]
    groups: [officials, press-office]
    reference: "Belgian federal government decision, 10 March 2023"
    from: 2023-03-10
    until: 2023-09-10
  ops-wechat:
    block: [wechat]
    groups: [officials]
    exempt: [weixin.qq.com]
    answer: nxdomain
    ttl: 300s
"""

LISTS = {
    "tiktok": ["tiktok.com", "tiktokv.com", "v*.tiktokcdn-eu.com"],
    "wechat": ["wechat.com", "weixin.qq.com"],
    "doh-bypass": ["use-application-dns.net"],  # in the default blocking.lists
}


def engine_for(text: str) -> PolicyEngine:
    config = parse_config(text, "<test>", known_lists=frozenset(LISTS))
    matchers = {}
    for name, patterns in LISTS.items():
        matcher = DomainMatcher()
        for pattern in patterns:
            matcher.add(pattern, BlockRule(name, pattern))
        matchers[name] = (name, matcher)
    return build_engine(config, matchers, sum(map(len, LISTS.values())))


def at(text: str) -> float:
    moment = datetime.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()


IN_FORCE = "2023-04-01T12:00:00"

# client, name, time, action, group, policy, entry, rule
CASES = [
    ("10.20.1.1", "www.tiktok.com", IN_FORCE, Action.BLOCK, "officials", "be-tiktok-2023",
     "tiktok", "tiktok.com"),
    ("10.20.1.1", "WWW.TikTok.COM.", IN_FORCE, Action.BLOCK, "officials", "be-tiktok-2023",
     "tiktok", "tiktok.com"),
    ("10.20.1.1", "v16.tiktokcdn-eu.com", IN_FORCE, Action.BLOCK, "officials", "be-tiktok-2023",
     "tiktok", "v*.tiktokcdn-eu.com"),
    ("10.20.1.1", "nottiktok.com", IN_FORCE, Action.ALLOW, "officials", None, None, None),
    # The press office sits inside the officials' /16: the longest prefix wins, and its
    # exemption beats the policy.
    ("10.20.5.9", "www.tiktok.com", IN_FORCE, Action.ALLOW, "press-office", None, None, None),
    # Personal-device Wi-Fi is not covered by the ban.
    ("10.30.1.1", "www.tiktok.com", IN_FORCE, Action.ALLOW, "personal-wifi", None, None, None),
    ("fd00:20::5", "tiktok.com", IN_FORCE, Action.BLOCK, "officials", "be-tiktok-2023",
     "tiktok", "tiktok.com"),
    # The window: from is inclusive, until exclusive.
    ("10.20.1.1", "tiktok.com", "2023-03-09T23:59:59", Action.ALLOW, "officials", None, None,
     None),
    ("10.20.1.1", "tiktok.com", "2023-03-10T00:00:00", Action.BLOCK, "officials",
     "be-tiktok-2023", "tiktok", "tiktok.com"),
    ("10.20.1.1", "tiktok.com", "2023-09-09T23:59:59", Action.BLOCK, "officials",
     "be-tiktok-2023", "tiktok", "tiktok.com"),
    ("10.20.1.1", "tiktok.com", "2023-09-10T00:00:00", Action.ALLOW, "officials", None, None,
     None),
    # A policy without a window is always in force; its own exemption beats only itself.
    ("10.20.1.1", "www.wechat.com", IN_FORCE, Action.BLOCK, "officials", "ops-wechat", "wechat",
     "wechat.com"),
    ("10.20.1.1", "weixin.qq.com", IN_FORCE, Action.ALLOW, "officials", None, None, None),
    # A group's own list; "=name" exempts that exact name only.
    ("10.40.1.1", "wechat.com", IN_FORCE, Action.BLOCK, "security", None, "wechat",
     "wechat.com"),
    ("10.40.1.1", "safe.wechat.com", IN_FORCE, Action.ALLOW, "security", None, None, None),
    ("10.40.1.1", "x.safe.wechat.com", IN_FORCE, Action.BLOCK, "security", None, "wechat",
     "wechat.com"),
    ("10.40.1.1", "weixin.qq.com", IN_FORCE, Action.BLOCK, "security", None, "wechat",
     "weixin.qq.com"),
    # No group and default_group: refuse.
    ("10.99.0.1", "example.org", IN_FORCE, Action.REFUSE, "", None, None, None),
    ("fd99::1", "tiktok.com", IN_FORCE, Action.REFUSE, "", None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("client", "name", "when", "action", "group", "policy", "entry", "rule"), CASES
)
def test_decide(
    client: str,
    name: str,
    when: str,
    action: Action,
    group: str,
    policy: str | None,
    entry: str | None,
    rule: str | None,
) -> None:
    decision = engine_for(BELGIAN_CASE).decide(client, from_text(name), 1, at(when))
    assert decision.action is action
    assert decision.group == group
    assert (decision.policy, decision.list_name, decision.rule) == (policy, entry, rule)


def test_one_engine_answers_every_case_alike_when_names_repeat() -> None:
    """One engine remembers, per group, the names no list matches: asking again (the same name
    at another time, inside and outside a policy's window) must decide exactly as a fresh
    engine does, every time."""
    engine = engine_for(BELGIAN_CASE)
    expected = [case[3:] for case in CASES]
    for order in (CASES, CASES[::-1], CASES):
        got = {}
        for client, name, when, *_ in order:
            decision = engine.decide(client, from_text(name), 1, at(when))
            got[(client, name, when)] = (decision.action, decision.group, decision.policy,
                                         decision.list_name, decision.rule)  # fmt: skip
        assert [got[case[:3]] for case in CASES] == expected


def test_remembered_names_are_bounded_over_all_groups() -> None:
    engine = engine_for(BELGIAN_CASE)
    for i in range(UNLISTED_MEMO_LIMIT // 2 + 10):
        for client in ("10.20.1.1", "10.30.1.1"):  # two groups
            engine.decide(client, from_text(f"n{i}.example.org"), 1, at(IN_FORCE))
    remembered = sum(len(names) for names in engine._unlisted.values())
    assert 0 < remembered <= UNLISTED_MEMO_LIMIT
    assert remembered == engine._unlisted_count
    blocked = engine.decide("10.20.1.1", from_text("www.tiktok.com"), 1, at(IN_FORCE))
    assert blocked.action is Action.BLOCK


def test_new_names_leave_nothing_for_the_cyclic_gc() -> None:
    """A flood of names never asked before, listed or not, must not leave objects the cyclic GC
    tracks: each would fill its young generation, whose collections pause the event loop for
    milliseconds under load (the p99 of issue 7)."""
    engine = engine_for(BELGIAN_CASE)
    names = [from_text(f"{prefix}{i}.{zone}") for i in range(2000)
             for prefix, zone in (("a", "example.org"), ("b", "tiktok.com"))]  # fmt: skip
    engine.decide("10.20.1.1", names[0], 1, at(IN_FORCE))
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        decisions = [engine.decide("10.20.1.1", name, 1, at(IN_FORCE)) for name in names]
        after = len(gc.get_objects())
    finally:
        gc.enable()
    assert [d.action for d in decisions[:2]] == [Action.ALLOW, Action.BLOCK]
    kept = sum(d.action is Action.BLOCK for d in decisions) + 1  # new block decisions, the list
    assert after - before - kept < 20


def test_block_carries_reference_window_answer_and_ttl() -> None:
    engine = engine_for(BELGIAN_CASE)
    tiktok = engine.decide("10.20.1.1", from_text("www.tiktok.com"), 1, at(IN_FORCE))
    assert tiktok.reference == "Belgian federal government decision, 10 March 2023"
    assert tiktok.censored
    assert (tiktok.answer, tiktok.ttl) == ("null_ip", 60)
    assert tiktok.valid_from == at("2023-03-10T00:00:00")
    assert tiktok.valid_until == at("2023-09-10T00:00:00")
    assert tiktok.zone_offset == 4  # "tiktok.com" inside "www.tiktok.com"
    wechat = engine.decide("10.20.1.1", from_text("wechat.com"), 1, at(IN_FORCE))
    assert not wechat.censored
    assert (wechat.answer, wechat.ttl) == ("nxdomain", 300)


def test_policies_take_precedence_over_lists_so_the_mandate_is_cited() -> None:
    text = BELGIAN_CASE.replace("blocking: {lists: [], ttl: 60s}", "blocking: {lists: [tiktok]}")
    engine = engine_for(text)
    during = engine.decide("10.20.1.1", from_text("tiktok.com"), 1, at(IN_FORCE))
    assert during.policy == "be-tiktok-2023"
    after = engine.decide("10.20.1.1", from_text("tiktok.com"), 1, at("2024-01-01T00:00:00"))
    assert (after.action, after.policy, after.list_name) == (Action.BLOCK, None, "tiktok")
    # The press office's exemption beats blocking.lists too.
    press = engine.decide("10.20.5.1", from_text("tiktok.com"), 1, at("2024-01-01T00:00:00"))
    assert press.action is Action.ALLOW


@pytest.mark.parametrize(
    ("text", "client", "group", "action"),
    [
        ("blocking: {lists: [tiktok]}", "192.0.2.1", "default", Action.BLOCK),
        (
            "groups: {lab: {subnets: [192.0.2.0/24]}}\nclients: {default_group: lab}\n"
            "blocking: {lists: [tiktok]}",
            "198.51.100.1",
            "lab",
            Action.BLOCK,
        ),
        (
            "groups: {lab: {subnets: [192.0.2.0/24]}}\nclients: {default_group: refuse}",
            "198.51.100.1",
            "",
            Action.REFUSE,
        ),
    ],
)
def test_default_group(text: str, client: str, group: str, action: Action) -> None:
    decision = engine_for(text).decide(client, from_text("tiktok.com"), 1, at(IN_FORCE))
    assert (decision.group, decision.action) == (group, action)


def test_candidates_say_why_a_list_does_not_apply() -> None:
    engine = engine_for(BELGIAN_CASE)
    press = engine.groups["press-office"]
    (candidate,) = engine.candidates(press, from_text("www.tiktok.com"), at(IN_FORCE))
    assert not candidate.applies
    assert "exempt for group press-office by tiktok.com" in candidate.why_not
    officials = engine.groups["officials"]
    (lapsed,) = engine.candidates(officials, from_text("tiktok.com"), at("2024-01-01T00:00:00"))
    assert lapsed.why_not == "policy not in force at that time"


# --- provenance: every block cites something, computed when the engine is built -------------

DECISIONS = (
    Reference("European Commission", "suspends TikTok", datetime.date(2023, 2, 23), "ec", False),
    Reference("Belgium, National Security Council", "bans TikTok", datetime.date(2023, 3, 10),
              "https://example.gov/be", True),
)  # fmt: skip
PROVENANCE_CASE = """
clients: {allow: [10.0.0.0/8], default_group: default}
blocking: {lists: [tiktok, ops]}
groups:
  officials: {subnets: [10.20.0.0/16], block: [wechat]}
  press: {subnets: [10.20.5.0/24], exempt_lists: [tiktok]}
  quiet: {subnets: [10.50.0.0/16]}
  lab: {subnets: [10.60.0.0/16], block: [wechat]}
policies:
  mandated:
    block: [wechat]
    groups: [officials, quiet]
    reference: "Decision 7/2023"
  unreferenced:
    block: [tiktok]
    groups: [quiet]
  lenient:
    block: [ops]
    groups: [quiet]
    exempt_lists: [tiktok]
"""
OPS_PATH = "/etc/dnswarden/ops.txt"


def provenance_engine(text: str = PROVENANCE_CASE) -> PolicyEngine:
    """`tiktok` a catalogue entry with two decisions, `ops` an operator file that also lists
    tiktok.com, `wechat` a list with no provenance at all."""
    lists = {**LISTS, "ops": ["tiktok.com", "ops.example"]}
    config = parse_config(text, "<test>", known_lists=frozenset(lists))
    matchers = {}
    for name, patterns in lists.items():
        matcher = DomainMatcher()
        for pattern in patterns:
            matcher.add(pattern, BlockRule(name, pattern))
        matchers[name] = (name, matcher)
    entry = CatalogueEntry("tiktok", "TikTok", "ByteDance", "", DECISIONS, (), "", datetime.date(
        2026, 1, 1), "blocklists/tiktok.yaml")  # fmt: skip
    cited = {
        "tiktok": catalogue_provenance(entry),
        "ops": source_provenance("ops", "file", OPS_PATH),
    }
    return build_engine(config, matchers, 0, cited)


LABELS = ("EU 2023-02-23", "BE 2023-03-10")

# client, name, policy, entry, reference, decisions, EDE text, censored
PROVENANCE = [
    # A catalogue entry through blocking.lists cites its decisions, by label.
    ("10.1.1.1", "www.tiktok.com", None, "tiktok", "EU 2023-02-23; BE 2023-03-10", LABELS,
     "blocked by list tiktok (ref: EU 2023-02-23; BE 2023-03-10)", False),
    # An operator list cites its file (but the client's EDE text does not show it).
    ("10.1.1.1", "ops.example", None, "ops", OPS_PATH, (), "blocked by list ops", False),
    # A policy's own reference comes first; the entry's decisions still go along.
    ("10.20.1.1", "wechat.com", "mandated", "wechat", "Decision 7/2023", (),
     "blocked by policy mandated (wechat; ref: Decision 7/2023)", True),
    # A policy without a reference: the list's citation, and EDE 15 as before.
    ("10.50.1.1", "tiktok.com", "unreferenced", "tiktok", "EU 2023-02-23; BE 2023-03-10", LABELS,
     "blocked by policy unreferenced (tiktok; ref: EU 2023-02-23; BE 2023-03-10)", False),
    # A list that truly cites nothing: reference None, nothing invented.
    ("10.60.1.1", "weixin.qq.com", None, "wechat", None, (), "blocked by list wechat", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("client", "name", "policy", "entry", "reference", "decisions", "cause", "censored"),
    PROVENANCE,
)
def test_blocks_cite_their_provenance(
    client: str,
    name: str,
    policy: str | None,
    entry: str,
    reference: str | None,
    decisions: tuple[str, ...],
    cause: str,
    censored: bool,
) -> None:
    decision = provenance_engine().decide(client, from_text(name), 1, at(IN_FORCE))
    assert decision.action is Action.BLOCK
    assert (decision.policy, decision.list_name) == (policy, entry)
    assert (decision.reference, decision.decisions) == (reference, decisions)
    assert (decision.cause, decision.censored) == (cause, censored)


def test_block_decisions_share_the_strings_made_at_build_time() -> None:
    """Nothing is formatted per query: two blocks carry the very same string objects."""
    engine = provenance_engine()
    first = engine.decide("10.1.1.1", from_text("a.tiktok.com"), 1, at(IN_FORCE))
    second = engine.decide("10.1.1.1", from_text("b.tiktok.com"), 28, at(IN_FORCE))
    assert first.cause is second.cause and first.reference is second.reference
    assert first.decisions is second.decisions


@pytest.mark.parametrize(
    ("policy", "reference", "labels", "expected"),
    [
        (None, None, [], "blocked by list l"),
        ("p", "x" * 400, [], "blocked by policy p (l; ref: " + "x" * 127 + "...)"),
        ("p", "Décision " * 40, [], None),
        (None, None, [f"XX 2023-01-{day:02d}" for day in range(1, 29)], None),
    ],
)
def test_the_ede_text_stays_short(
    policy: str | None, reference: str | None, labels: list[str], expected: str | None
) -> None:
    references = tuple(
        Reference(label[:2], "d", datetime.date.fromisoformat(label[3:]), "u", True)
        for label in labels
    )
    entry = CatalogueEntry("l", "L", "V", "", references, (), "", datetime.date(2026, 1, 1), "p")
    cause = block_cause("l", policy, reference, catalogue_provenance(entry))
    assert len(cause.encode()) <= EDE_TEXT_BUDGET
    cause.encode().decode("utf-8")  # never cut inside a character
    if expected is not None:
        assert cause == expected
    if labels:
        assert cause.startswith("blocked by list l (ref: XX 2023-01-01; XX 2023-01-02; ")
        assert cause.endswith(" more)")


# --- exempting a whole catalogue entry --------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "name", "action", "entry"),
    [
        # The press office gets TikTok: every name of the entry, whichever list blocks it (ops
        # lists tiktok.com too), and its CNAME targets alike.
        ("10.20.5.1", "tiktok.com", Action.ALLOW, None),
        ("10.20.5.1", "a.b.tiktokv.com", Action.ALLOW, None),
        ("10.20.5.1", "v16.tiktokcdn-eu.com", Action.ALLOW, None),
        # Names outside the entry stay blocked for it.
        ("10.20.5.1", "ops.example", Action.BLOCK, "ops"),
        # The officials around it are not exempt.
        ("10.20.1.1", "tiktok.com", Action.BLOCK, "tiktok"),
        # A policy's exempt_lists spares only that policy's lists: "lenient" does not block
        # tiktok.com through ops, but "unreferenced" still blocks it for the same group.
        ("10.50.1.1", "tiktok.com", Action.BLOCK, "tiktok"),
    ],
)
def test_exempt_lists(client: str, name: str, action: Action, entry: str | None) -> None:
    decision = provenance_engine().decide(client, from_text(name), 1, at(IN_FORCE))
    assert (decision.action, decision.list_name) == (action, entry)


def test_a_policy_exempting_an_entry_lets_its_names_through_its_own_lists() -> None:
    text = PROVENANCE_CASE.replace("[tiktok]\n    groups: [quiet]", "[tiktok]\n    groups: [lab]")
    decision = provenance_engine(text).decide("10.50.1.1", from_text("tiktok.com"), 1, 0.0)
    # tiktok.com: blocking.lists still blocks it (tiktok, then ops), the policy does not.
    assert (decision.action, decision.policy, decision.list_name) == (Action.BLOCK, None, "tiktok")
    engine = provenance_engine(text)
    lenient = next(
        c
        for c in engine.candidates(engine.groups["quiet"], from_text("tiktok.com"), 0.0)
        if c.binding.policy == "lenient"
    )
    assert lenient.why_not == "exempt from policy lenient by exempt_lists: tiktok (rule tiktok.com)"


def test_candidates_show_an_exempted_entry() -> None:
    engine = provenance_engine()
    found = engine.candidates(engine.groups["press"], from_text("www.tiktok.com"), 0.0)
    assert [(c.binding.list_name, c.applies) for c in found] == [("tiktok", False), ("ops", False)]
    assert {c.why_not for c in found} == {
        "exempt for group press by exempt_lists: tiktok (rule tiktok.com)"
    }


def test_block_decisions_are_made_once_and_the_memo_stays_bounded() -> None:
    lists = {"many": [f"r{i}.example" for i in range(BLOCK_MEMO_LIMIT + 500)]}
    matcher = DomainMatcher()
    for pattern in lists["many"]:
        matcher.add(pattern, BlockRule("many", pattern))
    config = parse_config("blocking: {lists: [many]}", "<test>", known_lists=frozenset(lists))
    engine = build_engine(config, {"many": ("many", matcher)}, 0)
    first = engine.decide("10.1.1.1", from_text("www.r1.example"), 1, 0.0)
    assert engine.decide("10.1.1.1", from_text("www.r1.example"), 28, 0.0) is first
    # Another zone offset is another decision: the SOA of a negative answer sits there.
    deeper = engine.decide("10.1.1.1", from_text("a.www.r1.example"), 1, 0.0)
    assert (deeper.rule, deeper.zone_offset) == ("r1.example", first.zone_offset + 2)
    for i, pattern in enumerate(lists["many"]):
        decision = engine.decide("10.1.1.1", from_text(f"x.{pattern}"), 1, 0.0)
        assert (decision.action, decision.rule) == (Action.BLOCK, pattern), i
    held = sum(len(made) for made in engine._blocks.values())
    assert 0 < held <= BLOCK_MEMO_LIMIT and held == engine._blocks_count


def many_engine(count: int) -> PolicyEngine:
    lists = {"many": [f"r{i}.example" for i in range(count)]}
    matcher = DomainMatcher()
    for pattern in lists["many"]:
        matcher.add(pattern, BlockRule("many", pattern))
    config = parse_config("blocking: {lists: [many]}", "<test>", known_lists=frozenset(lists))
    return build_engine(config, {"many": ("many", matcher)}, 0)


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        (["r1.example"], 0),  # seen once: made, not kept
        (["r1.example", "r2.example", "r3.example"], 0),  # a stream of first sights
        (["r1.example", "r2.example", "r1.example"], 1),  # the second sight keeps it
        (["r1.example", "r1.example"], 1),  # an immediate repeat too
        (["r1.example", "r2.example", "r1.example", "r2.example", "r1.example"], 2),
    ],
)
def test_block_decisions_are_kept_from_their_second_sight(asked: list[str], kept: int) -> None:
    """A stream of distinct blocked names leaves no decision behind for the cyclic GC to walk
    (the benchmark's blocked names are 91% first sights); a repeated one is kept and reused."""
    engine = many_engine(10)
    made = [engine.decide("10.1.1.1", from_text(f"www.{name}"), 1, 0.0) for name in asked]
    assert [d.rule for d in made] == asked
    assert engine._blocks_count == kept == sum(len(held) for held in engine._blocks.values())
    for name, decision in zip(asked, made, strict=True):
        if asked.count(name) > 1:  # one object per key once kept
            again = engine.decide("10.1.1.1", from_text(f"www.{name}"), 28, 0.0)
            assert again is made[len(asked) - 1 - asked[::-1].index(name)]
            assert decision == again


def test_the_block_key_hashes_seen_once_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("resolver.policy.engine.SIGHTED_LIMIT", 3)
    engine = many_engine(10)
    for index in range(7):
        engine.decide("10.1.1.1", from_text(f"www.r{index}.example"), 1, 0.0)
    assert 0 < len(engine._sighted) <= 3
    assert engine._blocks_count == 0


@pytest.mark.parametrize("repeats", [1, 2, 3])
def test_a_shared_list_blocks_each_group_in_its_own_name(repeats: int) -> None:
    """The blocking lists bind once and are shared by every group: the decision reused for a
    repeat is the group's own, never the last group's."""
    lists = {"many": ["r1.example"]}
    matcher = DomainMatcher()
    matcher.add("r1.example", BlockRule("many", "r1.example"))
    config = parse_config(
        "groups:\n  officials:\n    subnets: [10.1.0.0/16]\nblocking: {lists: [many]}",
        "<test>", known_lists=frozenset(lists),
    )  # fmt: skip
    engine = build_engine(config, {"many": ("many", matcher)}, 0)
    for _ in range(repeats):
        for client, group in (("10.1.1.1", "officials"), ("10.9.9.9", "default"),
                              ("10.1.1.1", "officials")):  # fmt: skip
            decision = engine.decide(client, from_text("www.r1.example"), 1, 0.0)
            assert (decision.action, decision.group) == (Action.BLOCK, group)


@pytest.mark.parametrize(
    "given",
    [
        {},  # every default
        {
            "policy": "p",
            "list_name": "l",
            "rule": "x.com",
            "reference": "r",
            "answer": "nxdomain",
            "ttl": 60,
            "zone_offset": 4,
            "valid_from": 1.5,
            "valid_until": 2.5,
            "reason": "why",
            "cname": b"\x01c\x00",
            "decisions": ("d",),
            "cause": "blocked",
            "censored": True,
            "data": ((1, b"\x00\x00\x00\x00"),),
        },
    ],
)
def test_decision_init_sets_every_field_as_the_dataclass_would(given: dict[str, object]) -> None:
    """Decision's `__init__` is written out (a compiled one, docs/compiled.md): every field, by
    name, with the dataclass's defaults, so `replace`, equality and hashing see what was given."""
    decision = Decision(Action.BLOCK, "g", **given)  # type: ignore[arg-type]
    for field in dataclasses.fields(Decision):
        if field.name in ("action", "group"):
            continue
        assert getattr(decision, field.name) == given.get(field.name, field.default), field.name
    assert dataclasses.replace(decision) == decision
    assert hash(dataclasses.replace(decision)) == hash(decision)


@pytest.mark.parametrize(
    "moments",
    [
        ["2023-04-01", "2023-04-01", "2024-01-01", "2024-01-01", "2023-04-01"],
        ["2024-01-01", "2023-04-01", "2024-01-01", "2023-04-01", "2023-04-01", "2024-01-01"],
    ],
)
def test_a_name_kept_for_one_binding_is_decided_again_for_another(moments: list[str]) -> None:
    """The memo keeps a decision by name with the binding that made it: a policy's window
    closing hands the name to the next list that blocks it, whose decision replaces it."""
    engine = engine_for(BELGIAN_CASE.replace("lists: []", "lists: [tiktok]"))
    for moment in moments:
        decision = engine.decide("10.20.1.1", from_text("www.tiktok.com"), 1, at(moment))
        in_force = moment == "2023-04-01"
        assert decision.policy == ("be-tiktok-2023" if in_force else None), moment
        assert decision.censored is in_force
    held = sum(len(made) for made in engine._blocks.values())
    assert held == engine._blocks_count == 1
