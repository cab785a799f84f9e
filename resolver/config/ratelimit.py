"""The `rate_limit` section: how fast one client, and one zone, may make us work.

Token buckets, each a rate per second and a burst. What they charge is the work a query costs:
the names a client prefix sends upstream because the cache had no answer (`upstream_rate`),
those under one registrable zone from one client prefix (`client_zone_rate`: a flood of
`<random>.victim.example` from one address is shed while its other names still go upstream),
and those under one registrable zone from all clients while its answers are mostly NXDOMAIN or
failures (`zone_rate`, the random-subdomain defence). `rate` limits every query of a client
prefix before it is parsed, cache hits included; it is off by default (see docs/hardening.md).
A rate of 0 turns that limit off. `groups` overrides the client limits for a group of clients;
`exempt` networks (NAT gateways, relays) have no client limit at all.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from resolver.config.groups import DEFAULT_GROUP
from resolver.config.nodes import MISSING, Entries, Reader, join, line_of
from resolver.config.problems import describe, suggest
from resolver.config.values import IPNetwork, choice, network, positive_int

CLIENT_RATE_KEYS = (
    "rate", "burst", "upstream_rate", "upstream_burst", "client_zone_rate", "client_zone_burst",
)
MAX_RATE = 10_000_000.0


class OverLimit(enum.Enum):
    """What a query over a limit gets: nothing (the cheapest, and what a flood deserves), or
    REFUSED with EDE 18 saying why (a legitimate client learns at once why it is not served)."""

    DROP = "drop"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class GroupRates:
    """A group's own client limits; None inherits the section's."""

    group: str
    rate: float | None = None
    burst: int | None = None
    upstream_rate: float | None = None
    upstream_burst: int | None = None
    client_zone_rate: float | None = None
    client_zone_burst: int | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    rate: float = 0.0
    burst: int = 2000
    upstream_rate: float = 200.0
    upstream_burst: int = 2000
    client_zone_rate: float = 50.0
    client_zone_burst: int = 250
    zone_rate: float = 100.0
    zone_burst: int = 200
    action: OverLimit = OverLimit.DROP
    ipv4_prefix: int = 32
    ipv6_prefix: int = 56
    exempt: tuple[IPNetwork, ...] = ()
    max_clients: int = 65536
    groups: tuple[GroupRates, ...] = ()

    def for_group(self, group: str) -> tuple[float, int, float, int]:
        """(rate, burst, upstream_rate, upstream_burst) for clients of `group`."""
        for rates in self.groups:
            if rates.group == group:
                return (
                    self.rate if rates.rate is None else rates.rate,
                    self.burst if rates.burst is None else rates.burst,
                    self.upstream_rate if rates.upstream_rate is None else rates.upstream_rate,
                    self.upstream_burst if rates.upstream_burst is None else rates.upstream_burst,
                )
        return self.rate, self.burst, self.upstream_rate, self.upstream_burst

    def client_zone_for_group(self, group: str) -> tuple[float, int]:
        """(client_zone_rate, client_zone_burst) for clients of `group`."""
        for rates in self.groups:
            if rates.group == group:
                rate = rates.client_zone_rate
                burst = rates.client_zone_burst
                return (
                    self.client_zone_rate if rate is None else rate,
                    self.client_zone_burst if burst is None else burst,
                )
        return self.client_zone_rate, self.client_zone_burst


_action = choice(OverLimit, "action")


def read_rate_limit(reader: Reader, top: Entries, group_names: frozenset[str]) -> RateLimitConfig:
    entries = reader.section(top, "rate_limit", RateLimitConfig)
    defaults = RateLimitConfig()
    values: dict[str, object] = {}
    for name in ("rate", "upstream_rate", "client_zone_rate", "zone_rate"):
        values[name] = reader.value(entries, name, "rate_limit", rate, getattr(defaults, name))
    for name in ("burst", "upstream_burst", "client_zone_burst", "zone_burst", "max_clients"):
        values[name] = reader.value(
            entries, name, "rate_limit", positive_int, getattr(defaults, name)
        )
    values["action"] = reader.value(entries, "action", "rate_limit", _action, defaults.action)
    values["ipv4_prefix"] = reader.value(
        entries, "ipv4_prefix", "rate_limit", _prefix(32), defaults.ipv4_prefix
    )
    values["ipv6_prefix"] = reader.value(
        entries, "ipv6_prefix", "rate_limit", _prefix(128), defaults.ipv6_prefix
    )
    items = reader.items(entries, "exempt", "rate_limit", network)
    values["exempt"] = tuple(item.value for item in reader.unique(items or []))
    values["groups"] = _read_groups(reader, entries, group_names)
    good = {k: v for k, v in values.items() if v is not MISSING}
    return RateLimitConfig(**good)  # type: ignore[arg-type]


def _read_groups(
    reader: Reader, entries: Entries, group_names: frozenset[str]
) -> tuple[GroupRates, ...]:
    known = group_names | {DEFAULT_GROUP}
    found: list[GroupRates] = []
    for name, key_node, value_node in reader.named(entries, "groups", "group"):
        path = join("rate_limit.groups", name)
        if name not in known:
            reader.problem(
                key_node,
                path,
                f"unknown group {name!r}: use default or a group defined under groups"
                f"{suggest(name, known)}",
            )
            continue
        group = reader.mapping(value_node, path, CLIENT_RATE_KEYS)
        if group is None:
            continue
        values: dict[str, object] = {}
        for key in CLIENT_RATE_KEYS:
            convert = rate if key.endswith("rate") else positive_int
            value = reader.value(group, key, path, convert, None)
            if value is not MISSING and value is not None:
                values[key] = value
        found.append(GroupRates(name, line=line_of(key_node), **values))  # type: ignore[arg-type]
    return tuple(found)


def rate(raw: object) -> float:
    """Events per second, 0 meaning no limit."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected a number per second (0: no limit), got {describe(raw)}")
    value = float(raw)
    if math.isnan(value) or value < 0:
        raise ValueError(f"a rate cannot be negative, got {raw}")
    if value > MAX_RATE:
        raise ValueError(f"a rate of at most {MAX_RATE:.0f} per second, got {raw}")
    return value


def _prefix(bits: int) -> Callable[[object], int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= bits:
            raise ValueError(f"expected a prefix length from 1 to {bits}, got {raw!r}")
        return raw

    return convert
