"""Everything a query reads, built from a Config in one go and never changed afterwards.

Start-up and every reload build a fresh `ResolverState`; the server swaps it in with a single
assignment, so a query sees either the old state or the new one, never a mixture, and a reload
that fails to build leaves the running state untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from resolver.access import ClientAccess
from resolver.answers import SinkholeAnswer
from resolver.config import Config, Endpoint, resolve_upstreams
from resolver.lists import build_blocking
from resolver.matcher import DomainMatcher

RESOLV_CONF = Path("/etc/resolv.conf")


@dataclass(frozen=True, slots=True)
class ResolverState:
    config: Config
    access: ClientAccess
    blocking: DomainMatcher
    # Keyed by a rule's answer override; None is the configured `blocking.answer`.
    sinkholes: Mapping[str | None, SinkholeAnswer]
    list_sizes: Mapping[str, int]
    upstreams: tuple[Endpoint, ...]


def build_state(config: Config, resolv_conf: str | None = None) -> ResolverState:
    """Build the state for `config`; raises `lists.ListError` naming file and line."""
    blocking = build_blocking(config.blocking.lists, max_bad_lines=config.limits.max_bad_lines)
    ttl = config.blocking.ttl
    default = SinkholeAnswer(config.blocking.answer.value, ttl, config.blocking.ip)
    sinkholes: dict[str | None, SinkholeAnswer] = {None: default, default.mode: default}
    for mode in ("null_ip", "nxdomain", "nodata", "refused"):
        sinkholes.setdefault(mode, SinkholeAnswer(mode, ttl))
    return ResolverState(
        config=config,
        access=ClientAccess(config.clients.allow),
        blocking=blocking.matcher,
        sinkholes=sinkholes,
        list_sizes=dict(blocking.sizes),
        upstreams=resolve_upstreams(config, resolv_conf),
    )


def read_resolv_conf(path: Path = RESOLV_CONF) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
