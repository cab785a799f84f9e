"""Choosing upstreams without a pool: routes by zone, strategies, health and aged latencies."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from resolver.config import Strategy
from resolver.protocol.names import from_text
from resolver.upstream import routing
from resolver.upstream.routing import Route, Routes

NOW = 1000.0


@dataclass(eq=False)
class Fake:
    """An upstream as ordering sees it."""

    name: str
    rtt: float | None = None
    measured: float = NOW
    down: bool = False
    last_ok: float = 0.0


def ordered(strategy: Strategy, upstreams: list[Fake], rng: random.Random) -> list[str]:
    return [u.name for u in routing.plan(Route(tuple(upstreams), strategy), NOW, rng)]


@pytest.mark.parametrize(
    ("strategy", "rtts", "down", "last_ok", "expected"),
    [
        (Strategy.FAILOVER, (0.3, 0.1, 0.2), (), (), ["s1", "s2", "s3"]),
        (Strategy.FAILOVER, (None,) * 3, ("s1",), (), ["s2", "s3", "s1"]),
        (Strategy.FASTEST, (0.3, 0.1, 0.2), (), (), ["s2", "s3", "s1"]),
        (Strategy.FASTEST, (0.3, None, 0.2), (), (), ["s2", "s3", "s1"]),  # unmeasured first
        (Strategy.PARALLEL, (0.3, 0.1, 0.2), ("s2",), (), ["s3", "s1", "s2"]),
        # all down: the most recently healthy first
        (Strategy.FAILOVER, (None,) * 3, ("s1", "s2", "s3"), (1.0, 3.0, 2.0), ["s2", "s3", "s1"]),
    ],
)
def test_plan(
    strategy: Strategy,
    rtts: tuple[float | None, ...],
    down: tuple[str, ...],
    last_ok: tuple[float, ...],
    expected: list[str],
) -> None:
    upstreams = [
        Fake(name, rtt, down=name in down, last_ok=last_ok[index] if last_ok else 0.0)
        for index, (name, rtt) in enumerate(zip(("s1", "s2", "s3"), rtts, strict=True))
    ]
    # random.Random(0) draws 0.84 first: above EXPLORE, no exploration
    assert ordered(strategy, upstreams, random.Random(0)) == expected


def test_one_healthy_upstream_is_its_routes_own_tuple() -> None:
    route = Route((Fake("s1"),), Strategy.FASTEST)
    assert routing.plan(route, NOW, random.Random(0)) is route.upstreams


@pytest.mark.parametrize(
    ("rtts", "ages", "expected"),
    [
        ((0.30, 0.15), (0.0, 0.0), ["s2", "s1"]),
        # One slow moment two half-lives ago: 0.30 has aged to 0.075, under a fresh 0.15.
        ((0.30, 0.15), (2.0, 0.0), ["s1", "s2"]),
        ((0.30, 0.15), (0.5, 0.0), ["s2", "s1"]),  # 0.21: not yet
        ((0.01, 0.15), (0.0, 5.0), ["s2", "s1"]),  # an unasked slow one is tried again in time
    ],
)
def test_fastest_ages_unasked_latencies(
    rtts: tuple[float, float], ages: tuple[float, float], expected: list[str]
) -> None:
    upstreams = [
        Fake(name, rtt, NOW - age * routing.RTT_HALF_LIFE)
        for name, rtt, age in zip(("s1", "s2"), rtts, ages, strict=True)
    ]
    assert ordered(Strategy.FASTEST, upstreams, random.Random(0)) == expected


def test_a_measurement_folds_into_the_aged_average() -> None:
    upstream = Fake("s1", 0.8, NOW - 3 * routing.RTT_HALF_LIFE)  # aged: 0.1
    routing.observe(upstream, 0.2, NOW)
    assert upstream.rtt == pytest.approx(0.1 + routing.EWMA_WEIGHT * (0.2 - 0.1), rel=1e-3)
    assert upstream.measured == NOW


def test_a_first_measurement_is_the_average() -> None:
    upstream = Fake("s1")
    routing.observe(upstream, 0.25, NOW)
    assert upstream.rtt == 0.25


def test_fastest_explores_sometimes() -> None:
    upstreams = [Fake("s1", 0.01), Fake("s2", 0.02), Fake("s3", 0.03)]
    rng = random.Random(3)
    firsts = [ordered(Strategy.FASTEST, upstreams, rng)[0] for _ in range(4000)]
    assert firsts.count("s1") > 3600  # mostly the fastest
    assert firsts.count("s2") > 20 and firsts.count("s3") > 20  # but the others get measured too


ZONES = (("gov.internal", "gov"), ("secret.gov.internal", "secret"))


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("www.example.org.", "default"),
        ("gov.internal.", "gov"),
        ("host.gov.internal.", "gov"),
        ("x.secret.gov.internal.", "secret"),  # longest zone wins
        ("secret.gov.internal.", "secret"),
        ("notgov.internal.", "default"),
        (".", "default"),
    ],
)
def test_the_longest_zone_routes(name: str, route: str) -> None:
    routes = {
        label: Route((Fake(label),), Strategy.FAILOVER) for label in ("default", "gov", "secret")
    }
    zones = {from_text(z): routes[label] for z, label in ZONES}
    table = Routes(routes["default"], zones)
    assert table.route_for(from_text(name)) is routes[route]
