"""Where allowed queries are forwarded: `upstream` (servers, timeouts, strategy, health, CA)
and `zones` (conditional forwarding: names in a zone go to that zone's own servers)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Item, Reader, join, line_of
from resolver.config.values import (
    UpstreamServer,
    choice,
    parse_upstream,
    path_text,
    positive_duration,
    positive_int,
    zone_name,
)


class Strategy(enum.Enum):
    """How a query picks among several upstreams (of `upstream` or of one zone)."""

    FAILOVER = "failover"
    FASTEST = "fastest"
    PARALLEL = "parallel"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """`max_fails` consecutive failures mark an upstream down; it is then probed every
    `probe_interval` (`. IN NS`).  `ca_file` None means the system's trust store."""

    servers: tuple[UpstreamServer, ...] = ()
    timeout: float = 1.5
    deadline: float = 4.0
    strategy: Strategy = Strategy.FAILOVER
    max_fails: int = 3
    probe_interval: float = 5.0
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """Conditional forwarding: names in `zone` (and below) go to `servers`; the longest
    matching zone wins, so `a.gov.internal` may have other servers than `gov.internal`."""

    zone: str = ""
    servers: tuple[UpstreamServer, ...] = ()
    strategy: Strategy = Strategy.FAILOVER
    line: int = 0


_ZONE_KEYS = ("zone", "servers", "strategy")
_strategy = choice(Strategy, "strategy")


def read_upstream(reader: Reader, top: Entries) -> tuple[UpstreamConfig, list[Item], Any]:
    """The section, its server items (for the loop check), and the deadline (`MISSING`
    when bad) for the cache's client timeout."""
    entries = reader.section(top, "upstream", UpstreamConfig)
    path = "upstream"
    defaults = UpstreamConfig()
    items = read_servers(reader, entries, path)
    timeout = reader.value(entries, "timeout", path, positive_duration, defaults.timeout)
    deadline = reader.value(entries, "deadline", path, positive_duration, defaults.deadline)
    if MISSING not in (timeout, deadline) and deadline < timeout:
        where = entries.get("deadline") or entries["timeout"]
        reader.problem(
            where[1],
            f"{path}.deadline",
            f"the deadline ({deadline:g}s) must be at least the timeout ({timeout:g}s)",
        )
    strategy = reader.value(entries, "strategy", path, _strategy, defaults.strategy)
    max_fails = reader.value(entries, "max_fails", path, positive_int, defaults.max_fails)
    probe = reader.value(
        entries, "probe_interval", path, positive_duration, defaults.probe_interval
    )
    ca_file = None
    if "ca_file" in entries and not reader.is_null(entries["ca_file"][1]):
        node = entries["ca_file"][1]
        name = reader.convert(node, f"{path}.ca_file", path_text)
        if name is not MISSING:
            ca_file = files.ca_file(reader, node, f"{path}.ca_file", name)
    config = UpstreamConfig(
        servers=tuple(item.value for item in items),
        timeout=defaults.timeout if timeout is MISSING else timeout,
        deadline=defaults.deadline if deadline is MISSING else deadline,
        strategy=defaults.strategy if strategy is MISSING else strategy,
        max_fails=defaults.max_fails if max_fails is MISSING else max_fails,
        probe_interval=defaults.probe_interval if probe is MISSING else probe,
        ca_file=ca_file,
    )
    return config, items, deadline


def read_servers(
    reader: Reader, entries: Entries, path: str, *, empty: str | None = None
) -> list[Item]:
    """The good, distinct upstream servers under `path.servers`."""
    items = reader.items(entries, "servers", path, parse_upstream, empty=empty) or []
    for item in items:
        if item.value.port == 0:
            reader.problem(item.node, item.key, "an upstream needs a port from 1 to 65535")
    return reader.unique([item for item in items if item.value.port != 0])


def read_zones(
    reader: Reader, top: Entries, default_strategy: Strategy
) -> tuple[tuple[ZoneConfig, ...], list[Item]]:
    """The conditional-forwarding zones, and all their server items (for the loop check)."""
    if "zones" not in top:
        return (), []
    nodes = reader.sequence(top["zones"][1], "zones")
    if nodes is None:
        return (), []
    zones: list[ZoneConfig] = []
    all_items: list[Item] = []
    seen: dict[str, Item] = {}
    for i, node in enumerate(nodes):
        path = f"zones[{i}]"
        entries = reader.mapping(node, path, _ZONE_KEYS)
        if entries is None:
            continue
        for required, what in (
            ("zone", "the domain whose names go to these servers"),
            ("servers", "where names in this zone are forwarded"),
        ):
            if required not in entries:
                reader.problem(node, join(path, required), f"required: {what}")
        zone = reader.value(entries, "zone", path, zone_name, "")
        if isinstance(zone, str) and zone:
            item = Item(f"{path}.zone", entries["zone"][1], zone)
            first = seen.setdefault(zone, item)
            if first is not item:
                reader.problem(
                    item.node,
                    item.key,
                    f"zone {zone} is listed twice (first as {first.key}, line "
                    f"{line_of(first.node)})",
                )
        items = read_servers(reader, entries, path, empty="at least one server is required")
        all_items.extend(items)
        strategy = reader.value(entries, "strategy", path, _strategy, default_strategy)
        zones.append(
            ZoneConfig(
                zone="" if zone is MISSING else zone,
                servers=tuple(item.value for item in items),
                strategy=default_strategy if strategy is MISSING else strategy,
                line=line_of(node),
            )
        )
    return tuple(zones), all_items
