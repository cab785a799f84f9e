"""The rate limiter: GCRA buckets per client prefix, exemptions, group limits, the bounded
table, registrable zones and the random-subdomain (NXDOMAIN-heavy zone) defence."""

from __future__ import annotations

import ipaddress

import pytest

from resolver.config import GroupRates, RateLimitConfig
from resolver.policy.ratelimit import (
    CLIENT_ZONE,
    MAX_CLIENT_ZONES,
    SHED_MEMORY,
    UPSTREAM,
    ZONE,
    Bucket,
    RateLimiter,
    zone_of,
)
from resolver.protocol.names import from_text


def limiter(**settings: object) -> RateLimiter:
    groups = {"10.20.0.1": "officials"}
    return RateLimiter(RateLimitConfig(**settings),  # type: ignore[arg-type]
                       lambda client: groups.get(client, "default"))  # fmt: skip


@pytest.mark.parametrize(
    ("rate", "burst", "times", "expected"),
    [
        (10, 3, [0, 0, 0, 0], [True, True, True, False]),
        (10, 3, [0, 0, 0, 0.1], [True, True, True, True]),
        (10, 1, [0, 0.05, 0.1, 0.15, 0.2], [True, False, True, False, True]),
        (0, 1, [0] * 50, [True] * 50),  # 0: no limit
        (1000, 2000, [0] * 2001, [True] * 2000 + [False]),
    ],
)
def test_bucket_admits_a_burst_then_the_rate(
    rate: float, burst: int, times: list[float], expected: list[bool]
) -> None:
    bucket = Bucket(rate, burst, 0.0)
    assert [bucket.take(t) for t in times] == expected


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),  # /32
        ("2001:db8:0:100::1", "2001:db8:0:1ff::2", True),  # one /56
        ("2001:db8:0:100::1", "2001:db8:0:200::1", False),
        ("::ffff:10.0.0.1", "10.0.0.1", True),  # IPv4-mapped is the IPv4 client
    ],
)
def test_clients_share_the_bucket_of_their_prefix(first: str, second: str, shared: bool) -> None:
    limits = limiter(rate=1, burst=1)
    assert limits.admits(first, 0.0)
    assert limits.admits(second, 0.0) is not shared


def test_prefix_lengths_are_configurable() -> None:
    limits = limiter(rate=1, burst=1, ipv4_prefix=24)
    assert limits.admits("10.0.0.1", 0.0)
    assert not limits.admits("10.0.0.200", 0.0)
    assert limits.admits("10.0.1.1", 0.0)


def test_exempt_networks_are_never_limited() -> None:
    limits = limiter(rate=1, burst=1, upstream_rate=1, upstream_burst=1,
                     exempt=(ipaddress.ip_network("10.9.0.0/16"),))  # fmt: skip
    assert all(limits.admits("10.9.1.1", 0.0) for _ in range(100))
    qname = from_text("x.example.org")
    assert all(limits.admits_upstream("10.9.1.1", qname, 0.0) is None for _ in range(100))
    assert limits.exempt("10.9.1.1", 0.0) and not limits.exempt("10.8.1.1", 0.0)


def test_groups_have_their_own_limits() -> None:
    limits = limiter(rate=100, burst=100, groups=(GroupRates("officials", rate=1, burst=2),))
    assert [limits.admits("10.20.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert all(limits.admits("10.30.0.1", 0.0) for _ in range(100))
    assert limits.group("10.20.0.1", 0.0) == "officials"


def test_upstream_budget_is_separate_and_charged_only_when_admitted() -> None:
    limits = limiter(rate=0, upstream_rate=1, upstream_burst=2)
    qname = from_text("a.example.org")
    outcomes = [limits.admits_upstream("10.0.0.1", qname, 0.0) for _ in range(3)]
    assert outcomes == [None, None, UPSTREAM]
    assert limits.admits_upstream("10.0.0.1", qname, 1.0) is None
    assert all(limits.admits("10.0.0.1", 0.0) for _ in range(100))


def test_the_client_table_is_bounded() -> None:
    limits = limiter(rate=1, burst=1, max_clients=100)
    for number in range(5000):
        limits.admits(str(ipaddress.IPv4Address(0x0A000000 + number)), number * 1e-4)
        assert limits.clients <= 100


def test_full_buckets_are_forgotten_first() -> None:
    """A full bucket is the same as a new one, so forgetting it changes nothing; a bucket in
    use (here emptied by 10.0.0.1) is kept while full ones make room."""
    limits = limiter(rate=1, burst=5, max_clients=10, exempt=(ipaddress.ip_network("10.1.0.0/16"),))
    for _ in range(5):
        limits.admits("10.0.0.1", 0.0)  # empty now
    for number in range(200):  # exempt relays: their buckets never empty
        limits.admits(f"10.1.0.{number}", 0.5)
        assert limits.clients <= 10
    assert not limits.admits("10.0.0.1", 0.5)  # remembered: still empty


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("abc.victim.example", "victim.example"),
        ("a.b.c.victim.example", "victim.example"),
        ("victim.example", "victim.example"),
        ("example", "example"),
        ("x.y.co.uk", "y.co.uk"),
        ("www.gov.br", "www.gov.br"),
        ("a.www.gov.br", "www.gov.br"),
        ("x.y.example.uk", "example.uk"),
        ("x.co.example", "co.example"),
    ],
)
def test_registrable_zone(name: str, zone: str) -> None:
    assert zone_of(from_text(name)) == from_text(zone)


def flood(limits: RateLimiter, parent: str, count: int, now: float) -> list[str | None]:
    return [limits.admits_upstream("10.0.0.1", from_text(f"r{i}.{parent}"), now)
            for i in range(count)]  # fmt: skip


def test_an_nxdomain_heavy_zone_is_limited_and_a_healthy_one_never() -> None:
    limits = limiter(rate=0, upstream_rate=0, zone_rate=10, zone_burst=20)
    for number in range(10):
        limits.answered(from_text(f"r{number}.victim.example"), True, 0.1)
        limits.answered(from_text(f"r{number}.cdn.example"), False, 0.1)
    assert limits.suspect_zones() == 1
    outcomes = flood(limits, "victim.example", 100, 0.2)
    assert outcomes.count(None) == 20 and outcomes.count(ZONE) == 80
    assert flood(limits, "cdn.example", 100, 0.2) == [None] * 100
    # The flood goes on, so the zone stays limited in the next windows...
    assert flood(limits, "victim.example", 100, 1.5).count(None) <= 20
    assert flood(limits, "victim.example", 100, 2.5).count(None) <= 20
    # ...and once it stops, a quiet window lifts the limit.
    assert flood(limits, "victim.example", 5, 4.5) == [None] * 5
    assert limits.suspect_zones() == 0


def test_a_zone_with_few_or_mostly_good_answers_is_not_suspect() -> None:
    limits = limiter(zone_rate=100)
    for number in range(40):  # fewer failures than half the zone rate
        limits.answered(from_text(f"r{number}.quiet.example"), True, 0.1)
    for number in range(300):  # many failures, but most answers are good
        limits.answered(from_text(f"r{number}.busy.example"), number % 3 == 0, 0.1)
    assert limits.suspect_zones() == 0


def test_zone_limits_off_track_nothing() -> None:
    limits = limiter(zone_rate=0)
    for number in range(100):
        limits.answered(from_text(f"r{number}.victim.example"), True, 0.1)
    assert limits.suspect_zones() == 0
    assert not limiter(rate=0, upstream_rate=0, client_zone_rate=0, zone_rate=0).active


# --- one client flooding one zone ---------------------------------------------------------------


def ask_upstream(limits: RateLimiter, names: list[str], now: float,
                 client: str = "10.0.0.1") -> list[str | None]:  # fmt: skip
    return [limits.admits_upstream(client, from_text(name), now) for name in names]


def test_a_one_zone_flood_leaves_the_same_clients_other_zones_their_budget() -> None:
    """The flood under victim.example takes its client-and-zone burst, then is shed without
    touching the client's budget: the same address's names in other zones still go up."""
    limits = limiter(upstream_rate=200, upstream_burst=300, client_zone_rate=50,
                     client_zone_burst=100, zone_rate=0)  # fmt: skip
    flood = ask_upstream(limits, [f"r{i}.victim.example" for i in range(5000)], 0.0)
    assert flood.count(None) == 100 and flood.count(CLIENT_ZONE) == 4900
    others = ask_upstream(limits, [f"www.site{i}.example" for i in range(200)], 0.0)
    assert others == [None] * 200  # 100 + 200 of the client's 300
    assert ask_upstream(limits, ["www.site0.example"], 0.0) == [UPSTREAM]
    # A second later the zone's bucket has 50 more, the client's 200.
    again = ask_upstream(limits, [f"s{i}.victim.example" for i in range(100)], 1.0)
    assert again.count(None) == 50
    assert ask_upstream(limits, ["x.victim.example"], 1.0, client="10.0.0.2") == [None]


@pytest.mark.parametrize(
    ("settings", "flood", "expected"),
    [
        # Shed by the zone shared by all clients: the client-and-zone bucket is not charged.
        (
            {"zone_rate": 10, "zone_burst": 10, "client_zone_burst": 20},
            30,
            [None] * 10 + [ZONE] * 20,
        ),
        # Shed by the client-and-zone bucket: the suspect zone's bucket is not charged either.
        (
            {"zone_rate": 10, "zone_burst": 20, "client_zone_burst": 5},
            30,
            [None] * 5 + [CLIENT_ZONE] * 25,
        ),
        # Off: only the client's own budget.
        (
            {"zone_rate": 0, "client_zone_rate": 0, "upstream_burst": 7},
            10,
            [None] * 7 + [UPSTREAM] * 3,
        ),
    ],
)
def test_a_name_is_charged_only_when_every_budget_admits_it(
    settings: dict[str, object], flood: int, expected: list[str | None]
) -> None:
    limits = limiter(**settings)
    for number in range(100):  # make victim.example suspect (when zone limits are on)
        limits.answered(from_text(f"n{number}.victim.example"), True, 0.0)
    names = [f"r{i}.victim.example" for i in range(flood)]
    assert ask_upstream(limits, names, 0.1) == expected
    # Another client still has the zone's remaining budget (none here, in the first case).
    other = limits.admits_upstream("10.0.0.2", from_text("o.victim.example"), 0.1)
    assert other == (ZONE if expected.count(ZONE) else None)


@pytest.mark.parametrize(
    ("settings", "limit", "other_zone"),
    [
        ({"zone_rate": 10, "zone_burst": 10, "client_zone_burst": 20}, ZONE, None),
        ({"zone_rate": 10, "zone_burst": 20, "client_zone_burst": 5}, CLIENT_ZONE, None),
        ({"zone_rate": 0, "client_zone_rate": 0, "upstream_burst": 7}, UPSTREAM, UPSTREAM),
    ],
)
def test_refusing_names_the_limit_and_hands_back_the_client_s_entry(
    settings: dict[str, object], limit: str, other_zone: str | None
) -> None:
    """What `refusing` finds from a zone is what `refuses_upstream` finds from the name, on
    the client's own entry, and it charges nothing; a client never refused, or refused more
    than `SHED_MEMORY` ago, is not even looked at."""
    limits = limiter(**settings)
    for number in range(100):
        limits.answered(from_text(f"n{number}.victim.example"), True, 0.0)
    ask_upstream(limits, [f"r{i}.victim.example" for i in range(30)], 0.1)
    cases = [
        ("10.0.0.1", "new.victim.example", 0.1, limit),
        ("10.0.0.1", "a.b.victim.example", 0.1, limit),
        ("10.0.0.1", "www.elsewhere.example", 0.1, other_zone),
        ("10.0.0.2", "new.victim.example", 0.1, None),  # never refused
        ("10.0.0.1", "new.victim.example", 0.1 + SHED_MEMORY, None),  # too long ago
    ]
    for client, name, now, expected in cases:
        qname = from_text(name)
        entry = limits.refusing(client, zone_of(qname), now)
        assert (None if entry is None else entry.refused) == expected, (client, name, now)
        assert limits.refuses_upstream(client, qname, now) == expected
        if entry is not None:
            assert entry is limits.entry(client, now)
    # Asked again and again, nothing was charged: 5a still refuses for the same limit.
    assert limits.admits_upstream("10.0.0.1", from_text("new.victim.example"), 0.1) == limit


@pytest.mark.parametrize(
    ("section", "officials", "official_passes", "other_passes"),
    [
        ({"client_zone_rate": 50, "client_zone_burst": 5}, {"client_zone_burst": 20}, 20, 5),
        ({"client_zone_rate": 50, "client_zone_burst": 5}, {"client_zone_rate": 0}, 40, 5),
        ({"client_zone_rate": 0}, {"client_zone_rate": 1, "client_zone_burst": 3}, 3, 40),
    ],
)
def test_groups_have_their_own_client_and_zone_limit(
    section: dict[str, object], officials: dict[str, object], official_passes: int,
    other_passes: int,
) -> None:
    """A group's override takes the place of the section's client-and-zone budget (0: none
    for that group), and the other groups keep the section's."""
    limits = limiter(upstream_rate=0, zone_rate=0, **section,
                     groups=(GroupRates("officials", **officials),))  # type: ignore[arg-type]
    names = [f"r{i}.victim.example" for i in range(40)]
    assert ask_upstream(limits, names, 0.0, client="10.20.0.1").count(None) == official_passes
    assert ask_upstream(limits, names, 0.0, client="10.30.0.1").count(None) == other_passes
    assert limits.active


def test_exempt_clients_have_no_client_and_zone_limit() -> None:
    limits = limiter(client_zone_rate=1, client_zone_burst=1, zone_rate=0,
                     exempt=(ipaddress.ip_network("10.9.0.0/16"),))  # fmt: skip
    names = [f"r{i}.victim.example" for i in range(50)]
    assert ask_upstream(limits, names, 0.0, client="10.9.0.1") == [None] * 50
    assert limits.client_zones == 0


def test_the_client_and_zone_table_is_bounded_and_only_admitted_names_fill_it() -> None:
    limits = limiter(upstream_rate=0, client_zone_rate=1, client_zone_burst=1, zone_rate=0)
    for number in range(MAX_CLIENT_ZONES + 5000):
        limits.admits_upstream("10.0.0.1", from_text(f"a.z{number}.example"), number * 1e-4)
        assert limits.client_zones <= MAX_CLIENT_ZONES
    shed = limiter(upstream_rate=1, upstream_burst=1, client_zone_rate=1, zone_rate=0)
    ask_upstream(shed, [f"a.z{number}.example" for number in range(1000)], 0.0)
    assert shed.client_zones == 1  # the rest were over the client's budget: no bucket made


@pytest.mark.parametrize(
    ("settings", "gates"),
    [
        ({}, False),  # the default: no limit on every query, only on what costs work
        ({"rate": 1000}, True),
        ({"groups": (GroupRates("officials", rate=10),)}, True),
    ],
)
def test_the_step_before_parsing_runs_only_with_a_rate(
    settings: dict[str, object], gates: bool
) -> None:
    limits = limiter(**settings)
    assert limits.gates is gates and limits.active
