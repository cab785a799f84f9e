"""Choosing upstreams: which route a query takes, and the order its upstreams are tried in.

Each query goes to the upstreams of the longest conditional-forwarding zone that contains its
name, else to the default ones, in the order their strategy gives: `failover` in configured
order; `fastest` by an exponentially weighted moving average of latency, upstreams not yet
measured first and, now and then (`EXPLORE`), a random other one first so a recovered upstream
gets measured again. An average ages while its upstream goes unasked: halved every
`RTT_HALF_LIFE` since its last measurement, so one slow moment (a pause of ours, a busy upstream)
cannot keep a fast upstream out of use for long. `parallel` sends to the two fastest at once.
Whatever the strategy, an upstream that is down is tried only after the healthy ones, the most
recently healthy first, since the probe itself may be what is broken.

Pure: the pool passes `now` (its loop's monotonic time) and its random source, and owns the
upstreams, of which this reads only what `Ranked` names.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from resolver.config import Strategy

EWMA_WEIGHT = 0.3
EXPLORE = 0.05
RTT_HALF_LIFE = 1.0
"""Seconds in which an unasked upstream's latency average halves when plans are ordered."""


class Ranked(Protocol):
    """What ordering reads of an upstream: its health and its latency average."""

    down: bool
    last_ok: float
    rtt: float | None
    measured: float
    """When `rtt` last took a measurement."""


U = TypeVar("U", bound=Ranked)


class Route(Generic[U]):
    """The upstreams of one zone (or the default ones) and their strategy."""

    __slots__ = ("strategy", "upstreams")

    def __init__(self, upstreams: tuple[U, ...], strategy: Strategy) -> None:
        self.upstreams = upstreams
        self.strategy = strategy


class Routes(Generic[U]):
    """The default route and the conditional-forwarding zones' (by name in wire form)."""

    __slots__ = ("default", "zones")

    def __init__(self, default: Route[U], zones: dict[bytes, Route[U]]) -> None:
        self.default = default
        self.zones = zones

    def route_for(self, qname: bytes) -> Route[U]:
        """The longest configured zone containing `qname`: one dict lookup per label."""
        zones = self.zones
        if zones:
            pos = 0
            while qname[pos]:
                route = zones.get(qname[pos:])
                if route is not None:
                    return route
                pos += 1 + qname[pos]
        return self.default


def plan(route: Route[U], now: float, rng: random.Random) -> Sequence[U]:
    """The order `route`'s upstreams are tried in at `now`."""
    upstreams = route.upstreams
    if len(upstreams) == 1 and not upstreams[0].down:
        return upstreams  # the route's own tuple: nothing to sort, nothing to copy
    healthy = [u for u in upstreams if not u.down]
    down = sorted((u for u in upstreams if u.down), key=lambda u: -u.last_ok)
    if route.strategy is not Strategy.FAILOVER and len(healthy) > 1:
        healthy.sort(key=lambda u: aged(u, now))
        if route.strategy is Strategy.FASTEST and rng.random() < EXPLORE:
            healthy.insert(0, healthy.pop(rng.randrange(1, len(healthy))))
    return healthy + down


def aged(upstream: Ranked, now: float) -> float:
    """The latency average as of `now`; -1 for an unmeasured upstream, which goes first."""
    rtt = upstream.rtt
    return -1.0 if rtt is None else rtt * 0.5 ** ((now - upstream.measured) / RTT_HALF_LIFE)


def observe(upstream: Ranked, seconds: float, now: float) -> None:
    """Fold one latency into the average, from its value aged to `now`."""
    rtt = aged(upstream, now)
    upstream.rtt = seconds if rtt < 0 else rtt + EWMA_WEIGHT * (seconds - rtt)
    upstream.measured = now
