"""The `cache` section: bounds and TTL rules of the answer cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.values import (
    MAX_TTL,
    parse_duration,
    parse_size,
    positive_duration,
    positive_int,
    strict_bool,
    ttl,
)

MAX_CACHE_TTL = 7 * 86400
MIN_CACHE_BYTES = 64 << 10
MIN_FAILURE_TTL = 1.0
MAX_FAILURE_TTL = 300.0


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Bounds and TTL rules of the answer cache (RFC 2308 negative caching, RFC 8767
    serve-stale, RFC 9520 failure caching).  TTLs are whole seconds as on the wire.

    `client_timeout` is when a client gets a stale answer while the upstream is still being
    waited for; it never exceeds `upstream.deadline` (a value left out is capped to it).
    """

    enabled: bool = True
    max_entries: int = 100000
    max_bytes: int = 64 << 20
    min_ttl: int = 0
    max_ttl: int = 86400
    negative_max_ttl: int = 3600
    failure_ttl: float = 5.0
    serve_stale: bool = True
    stale_answer_ttl: int = 30
    max_stale_age: float = 86400.0
    client_timeout: float = 1.8
    prefetch: bool = True


def read_cache(reader: Reader, top: Entries, deadline: Any) -> CacheConfig:
    """The section; `deadline` is `upstream.deadline` (`MISSING` when bad), which caps
    `client_timeout`."""
    entries = reader.section(top, "cache", CacheConfig)
    path = "cache"
    defaults = CacheConfig()
    converters: dict[str, Callable[[Any], Any]] = {
        "enabled": strict_bool,
        "max_entries": positive_int,
        "max_bytes": _cache_bytes,
        "min_ttl": ttl,
        "max_ttl": _max_cache_ttl,
        "negative_max_ttl": ttl,
        "failure_ttl": _failure_ttl,
        "serve_stale": strict_bool,
        "stale_answer_ttl": _stale_answer_ttl,
        "max_stale_age": positive_duration,
        "client_timeout": positive_duration,
        "prefetch": strict_bool,
    }
    values: dict[str, Any] = {}
    for name, convert in converters.items():
        value = reader.value(entries, name, path, convert, MISSING)
        if value is not MISSING:
            values[name] = value
    given = {"min_ttl", "max_ttl"} & set(entries)
    if given and given <= set(values):
        low = values.get("min_ttl", defaults.min_ttl)
        high = values.get("max_ttl", defaults.max_ttl)
        if low > high:
            where = entries.get("min_ttl") or entries["max_ttl"]
            reader.problem(
                where[1],
                f"{path}.min_ttl",
                f"min_ttl ({low}s) must not be more than max_ttl ({high}s)",
            )
    timeout = values.get("client_timeout")
    if deadline is not MISSING:
        if timeout is None and "client_timeout" not in entries:
            values["client_timeout"] = min(defaults.client_timeout, deadline)
        elif timeout is not None and timeout >= deadline:
            reader.problem(
                entries["client_timeout"][1],
                f"{path}.client_timeout",
                f"must be less than upstream.deadline ({deadline:g}s), got {timeout:g}s: "
                "a stale answer is only useful before the client gives up",
            )
    return CacheConfig(**values)


def _cache_bytes(raw: object) -> int:
    size = parse_size(raw)
    if size < MIN_CACHE_BYTES:
        raise ValueError(f"must be at least 64KiB ({MIN_CACHE_BYTES} bytes), got {size}")
    return size


def _whole_seconds(raw: object, low: int, high: int, high_text: str) -> int:
    seconds = parse_duration(raw)
    if seconds != int(seconds):
        raise ValueError(f"a TTL is a whole number of seconds, got {seconds:g}s")
    if seconds < low:
        raise ValueError(f"must be at least {low}s, got {seconds:g}s")
    if seconds > high:
        raise ValueError(f"at most {high} seconds ({high_text}), got {seconds:g}s")
    return int(seconds)


def _max_cache_ttl(raw: object) -> int:
    return _whole_seconds(raw, 1, MAX_CACHE_TTL, "7d")


def _stale_answer_ttl(raw: object) -> int:
    """RFC 8767: a stale answer's TTL must be above 0 (30 s recommended)."""
    return _whole_seconds(raw, 1, MAX_TTL, "1d")


def _failure_ttl(raw: object) -> float:
    """RFC 9520: failures MUST be cached at least 1 s, and never beyond 5 minutes."""
    seconds = parse_duration(raw)
    if not MIN_FAILURE_TTL <= seconds <= MAX_FAILURE_TTL:
        raise ValueError(
            f"must be from 1s to 5m (RFC 9520: failures are cached for at least 1 second "
            f"and at most 5 minutes), got {seconds:g}s"
        )
    return seconds
