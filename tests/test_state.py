"""Which groups a missing list leaves waiting, at which instant, and for which names: the state's
side of `blocking.missing_lists` (the pipeline's side is in test_pipeline.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.protocol.names import from_text
from resolver.state import NEVER_CLOSED, ResolverState, build_state

FROM = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
UNTIL = datetime(2024, 7, 1, tzinfo=UTC).timestamp()
BEFORE, DURING, AFTER = FROM - 1, (FROM + UNTIL) / 2, UNTIL + 1

# {where} is where the feed (never fetched: the state directory holds no copy) is named.
CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"]}}
clients: {{allow: [127.0.0.0/8]}}
state_dir: {tmp}/state
sources:
  feed: {{url: "https://127.0.0.1:1/feed.txt"}}
  local: {{path: {tmp}/local.txt}}
  corp-allow: {{path: {tmp}/allow.txt}}
allow: [corp-allow]
groups:
  officials:
    subnets: [127.0.0.2/32]
    block: [local{group_block}]
    exempt: [exempt.example]
  press: {{subnets: [127.0.0.3/32]}}
policies:
  ban:
    block: [{policy_block}]
    groups: [officials]
    from: 2024-01-01
    until: 2024-07-01
    exempt: [policy-exempt.example]
blocking: {{lists: [tiktok{global_block}], missing_lists: {mode}}}
"""


def state_with(
    tmp_path: Path, where: str = "policy", mode: str = "fail_closed", feed: str = "feed"
) -> ResolverState:
    (tmp_path / "local.txt").write_text("local-block.example\n")
    (tmp_path / "allow.txt").write_text("allowed.example\n")
    text = CONFIG.format(
        tmp=tmp_path,
        group_block=f", {feed}" if where in ("group", "both") else "",
        policy_block=feed if where in ("policy", "both") else "local",
        global_block=f", {feed}" if where == "global" else "",
        mode=mode,
    )
    return build_state(parse_config(text, "<test>", known_lists=catalogue_ids()), None)


CASES = [
    # (where the feed is named, instant, groups waiting for it, since, until)
    ("global", DURING, {"officials", "press", "default"}, -math.inf, math.inf),
    ("group", DURING, {"officials"}, -math.inf, math.inf),
    ("policy", BEFORE, set(), -math.inf, FROM),
    ("policy", FROM, {"officials"}, FROM, UNTIL),
    ("policy", DURING, {"officials"}, FROM, UNTIL),
    ("policy", UNTIL, set(), UNTIL, math.inf),
    ("policy", AFTER, set(), UNTIL, math.inf),
]


@pytest.mark.parametrize(("where", "now", "groups", "since", "until"), CASES)
def test_groups_wait_for_the_lists_in_force_now(
    tmp_path: Path, where: str, now: float, groups: set[str], since: float, until: float
) -> None:
    state = state_with(tmp_path, where)
    assert state.missing_lists == frozenset({"feed"})
    closed = state.fail_closed(now)
    assert set(closed.groups) == groups
    assert (closed.since, closed.until) == (since, until)
    assert closed.since <= now < closed.until
    for group in closed.groups.values():
        assert group.lists == ("feed",)
        assert "feed" in group.text and "not loaded" in group.text


def test_fail_open_waits_for_nothing_but_still_knows_who_would(tmp_path: Path) -> None:
    state = state_with(tmp_path, "group", mode="fail_open")
    assert state.fail_closed(DURING) is NEVER_CLOSED
    assert set(state.waiting(DURING).groups) == {"officials"}


def test_nothing_missing_is_never_closed(tmp_path: Path) -> None:
    state = state_with(tmp_path, "global", feed="local")
    assert state.missing_lists == frozenset()
    assert state.fail_closed(DURING) is NEVER_CLOSED
    assert (NEVER_CLOSED.since, NEVER_CLOSED.until) == (-math.inf, math.inf)


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("www.example.org", True),
        ("exempt.example", False),  # the group exempts it: no list can block it
        ("www.exempt.example", False),
        ("policy-exempt.example", False),  # the policy naming the feed exempts it
        ("allowed.example", False),  # a global allow list covers it
        ("local-block.example", True),  # (a loaded list blocks it before this step is asked)
    ],
)
def test_a_waiting_group_answers_only_names_no_missing_list_can_block(
    tmp_path: Path, name: str, refused: bool
) -> None:
    group = state_with(tmp_path, "policy").fail_closed(DURING).groups["officials"]
    assert group.refuses(from_text(name)) is refused


def test_a_list_missing_for_two_reasons_needs_both_exemptions(tmp_path: Path) -> None:
    """Named by the policy (which exempts a name) and by the group itself (which does not):
    the group's own binding could still block it, so the name waits."""
    group = state_with(tmp_path, "both").fail_closed(DURING).groups["officials"]
    assert len(group.bindings) == 2
    assert group.refuses(from_text("policy-exempt.example")) is True
    assert group.refuses(from_text("exempt.example")) is False


def test_the_not_ready_text_names_every_missing_list(tmp_path: Path) -> None:
    (tmp_path / "local.txt").write_text("x.example\n")
    (tmp_path / "allow.txt").write_text("")
    text = CONFIG.format(
        tmp=tmp_path, group_block="", policy_block="local", global_block=", feed, feed2",
        mode="fail_closed",
    ).replace(
        '  feed: {url: "https://127.0.0.1:1/feed.txt"}',
        '  feed: {url: "https://127.0.0.1:1/feed.txt"}\n'
        '  feed2: {url: "https://127.0.0.1:1/feed2.txt"}',
    )  # fmt: skip
    state = build_state(parse_config(text, "<test>", known_lists=catalogue_ids()), None)
    group = state.fail_closed(DURING).groups["press"]
    assert group.lists == ("feed", "feed2")
    assert "lists feed, feed2 not loaded" in group.text
