"""Policies outside their window, what each group has in force, and the next window edge."""

from __future__ import annotations

import datetime

import pytest

from resolver.config import Config, parse_config
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.policy.engine import PolicyEngine, build_engine
from resolver.policy.windows import (
    Window,
    blocked_rules,
    lists_in_force,
    next_edge,
    out_of_window,
    policy_fields,
    window,
)

CONFIG = """\
clients: {allow: [10.0.0.0/8], default_group: default}
blocking: {lists: [baseline]}
groups:
  officials: {subnets: [10.20.0.0/16], block: [doh]}
  press-office: {subnets: [10.20.5.0/24], exempt: [tiktok.com]}
  personal-wifi: {subnets: [10.30.0.0/16]}
policies:
  lapsed:
    block: [tiktok]
    groups: [officials, press-office]
    reference: "decision of 10 March 2023"
    from: 2023-03-10
    until: 2023-09-10
  open-ended:
    block: [tiktok, doh]
    groups: [officials]
    from: 2024-01-01
  future:
    block: [wechat]
    groups: [personal-wifi]
    from: 2027-01-01
    until: 2028-01-01
"""
SIZES = {"baseline": 2, "doh": 3, "tiktok": 40, "wechat": 7}


def config_for(text: str = CONFIG) -> Config:
    return parse_config(text, "site.yaml", known_lists=frozenset(SIZES))


def engine_for(config: Config) -> PolicyEngine:
    matchers = {}
    for name in SIZES:
        matcher = DomainMatcher()
        matcher.add(f"{name}.example", BlockRule(name, f"{name}.example"))
        matchers[name] = (name, matcher)
    return build_engine(config, matchers, sum(SIZES.values()))


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


TODAY = utc("2026-12-07T12:00:00")


@pytest.mark.parametrize(
    ("at", "lapsed", "open_ended", "future"),
    [
        ("2023-03-09T23:59:59", Window.NOT_STARTED, Window.NOT_STARTED, Window.NOT_STARTED),
        ("2023-03-10T00:00:00", Window.IN_FORCE, Window.NOT_STARTED, Window.NOT_STARTED),
        ("2023-09-09T23:59:59", Window.IN_FORCE, Window.NOT_STARTED, Window.NOT_STARTED),
        ("2023-09-10T00:00:00", Window.LAPSED, Window.NOT_STARTED, Window.NOT_STARTED),
        ("2024-01-01T00:00:00", Window.LAPSED, Window.IN_FORCE, Window.NOT_STARTED),
        ("2026-12-07T12:00:00", Window.LAPSED, Window.IN_FORCE, Window.NOT_STARTED),
        ("2027-06-01T00:00:00", Window.LAPSED, Window.IN_FORCE, Window.IN_FORCE),
        ("2028-01-01T00:00:00", Window.LAPSED, Window.IN_FORCE, Window.LAPSED),
    ],
)
def test_window_agrees_with_active(
    at: str, lapsed: Window, open_ended: Window, future: Window
) -> None:
    moment = utc(at)
    policies = config_for().policies
    assert [window(p, moment) for p in policies] == [lapsed, open_ended, future]
    for policy in policies:
        assert (window(policy, moment) is Window.IN_FORCE) == policy.active(moment)


def test_out_of_window_names_file_line_window_and_groups() -> None:
    notices = out_of_window(config_for().policies, "site.yaml", TODAY)
    assert [(n.policy.name, n.event) for n in notices] == [
        ("lapsed", "policy_lapsed"),
        ("future", "policy_not_started"),
    ]
    assert [str(n) for n in notices] == [
        "site.yaml:8: policies.lapsed: lapsed on 2023-09-10T00:00:00+00:00 (window "
        "2023-03-10T00:00:00+00:00 to 2023-09-10T00:00:00+00:00); it blocks nothing now "
        "(for officials, press-office)",
        "site.yaml:18: policies.future: not in force yet: starts on 2027-01-01T00:00:00+00:00 "
        "(window 2027-01-01T00:00:00+00:00 to 2028-01-01T00:00:00+00:00); it blocks nothing "
        "now (for personal-wifi)",
    ]


def test_an_open_start_or_end_is_said_so() -> None:
    text = CONFIG.replace("    from: 2023-03-10\n", "").replace(
        "    until: 2028-01-01\n", ""
    )
    notices = out_of_window(config_for(text).policies, "site.yaml", TODAY)
    assert "(window open to 2023-09-10T00:00:00+00:00)" in str(notices[0])
    assert "(window 2027-01-01T00:00:00+00:00 to open)" in str(notices[1])


def test_event_fields_cite_the_policy_and_its_decision() -> None:
    (lapsed, _) = out_of_window(config_for().policies, "site.yaml", TODAY)
    assert lapsed.fields() == {
        "policy": "lapsed",
        "from": "2023-03-10T00:00:00+00:00",
        "until": "2023-09-10T00:00:00+00:00",
        "groups": ["officials", "press-office"],
        "lists": ["tiktok"],
        "reference": "decision of 10 March 2023",
        "config": "site.yaml:8",
    }
    assert policy_fields(config_for().policies[1], "x.yaml")["until"] is None


def test_no_notice_when_every_policy_is_in_force() -> None:
    policies = config_for().policies
    assert out_of_window(policies, "site.yaml", utc("2023-06-01T00:00:00")) != []
    assert out_of_window(policies[1:2], "site.yaml", TODAY) == []
    assert out_of_window((), "site.yaml", TODAY) == []


@pytest.mark.parametrize(
    ("at", "edge"),
    [
        ("2023-01-01T00:00:00", "2023-03-10T00:00:00"),
        ("2023-03-10T00:00:00", "2023-09-10T00:00:00"),  # an edge at `now` is behind us
        ("2023-06-01T00:00:00", "2023-09-10T00:00:00"),
        ("2023-12-31T00:00:00", "2024-01-01T00:00:00"),
        ("2026-12-07T12:00:00", "2027-01-01T00:00:00"),
        ("2027-06-01T00:00:00", "2028-01-01T00:00:00"),
        ("2028-01-01T00:00:00", None),
    ],
)
def test_next_edge(at: str, edge: str | None) -> None:
    expected = None if edge is None else utc(edge)
    assert next_edge(config_for().policies, utc(at)) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # In 2023 the dated policy was in force for officials and the press office.
        ("2023-06-01T00:00:00", {"officials": ("tiktok", "doh", "baseline"),
                                 "press-office": ("tiktok", "baseline"),
                                 "personal-wifi": ("baseline",), "default": ("baseline",)}),
        # After it: the press office keeps only blocking.lists; officials have open-ended.
        ("2026-12-07T12:00:00", {"officials": ("tiktok", "doh", "baseline"),
                                 "press-office": ("baseline",),
                                 "personal-wifi": ("baseline",), "default": ("baseline",)}),
        ("2027-06-01T00:00:00", {"officials": ("tiktok", "doh", "baseline"),
                                 "press-office": ("baseline",),
                                 "personal-wifi": ("wechat", "baseline"),
                                 "default": ("baseline",)}),
    ],
)  # fmt: skip
def test_lists_in_force_each_once_in_precedence_order(
    at: str, expected: dict[str, tuple[str, ...]]
) -> None:
    engine = engine_for(config_for())
    assert lists_in_force(engine, utc(at).timestamp()) == expected


def test_blocked_rules_add_the_sizes_of_the_lists_in_force() -> None:
    engine = engine_for(config_for(CONFIG.replace("lists: [baseline]", "lists: []")))
    during = blocked_rules(engine, SIZES, utc("2023-06-01T00:00:00").timestamp())
    assert during == {"officials": 43, "press-office": 40, "personal-wifi": 0, "default": 0}
    now = blocked_rules(engine, SIZES, TODAY.timestamp())
    assert now == {"officials": 43, "press-office": 0, "personal-wifi": 0, "default": 0}


def test_a_group_no_client_can_be_in_is_left_out() -> None:
    refusing = CONFIG.replace("default_group: default", "default_group: refuse")
    engine = engine_for(config_for(refusing))
    assert "default" not in lists_in_force(engine, TODAY.timestamp())
    assert "default" in lists_in_force(engine_for(config_for()), TODAY.timestamp())
