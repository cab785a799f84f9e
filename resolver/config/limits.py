"""The `limits` section: the bounds on in-flight queries, TCP connections, the listeners' receive
buffers and queues, and bad list input."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import describe
from resolver.config.values import positive_duration, positive_int, positive_size


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_inflight: int = 10000
    tcp_connections: int = 1000
    tcp_idle_timeout: float = 10.0
    tcp_inflight_per_connection: int = 100
    max_bad_lines: int = 100
    max_regex_rules: int = 1000
    tcp_connections_per_client: int = 20
    udp_receive_buffer: int = 2 << 20
    udp_queues: int = 8


def read_limits(reader: Reader, top: Entries) -> LimitsConfig:
    """Durations where the default is one, counts of at least 1 elsewhere, except
    `max_regex_rules`, where 0 forbids regex rules."""
    entries = reader.section(top, "limits", LimitsConfig)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(LimitsConfig):
        convert = positive_duration if isinstance(f.default, float) else positive_int
        if f.name == "max_regex_rules":
            convert = _count
        elif f.name == "udp_receive_buffer":
            convert = _receive_buffer
        elif f.name == "udp_queues":
            convert = _queues
        value = reader.value(entries, f.name, "limits", convert, f.default)
        if value is not MISSING:
            values[f.name] = value
    return LimitsConfig(**values)


MIN_RECEIVE_BUFFER = 64 << 10
MAX_RECEIVE_BUFFER = 1 << 30


def _receive_buffer(raw: object) -> int:
    size = positive_size(raw)
    if not MIN_RECEIVE_BUFFER <= size <= MAX_RECEIVE_BUFFER:
        raise ValueError(f"expected a size from 64KiB to 1GiB, got {raw!r}")
    return size


MAX_UDP_QUEUES = 64


def _queues(raw: object) -> int:
    count = positive_int(raw)
    if count > MAX_UDP_QUEUES:
        raise ValueError(f"expected 1 to {MAX_UDP_QUEUES}, got {count}")
    return count


def _count(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {describe(raw)}")
    if raw < 0:
        raise ValueError(f"must be at least 0, got {raw}")
    return raw
