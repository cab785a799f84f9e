"""Everything a query reads, built from a Config in one go and never changed afterwards.

Start-up and every reload build a fresh `ResolverState`; the server swaps it in with a single
assignment, so a query sees either the old state or the new one, never a mixture, and a reload
that fails to build leaves the running state untouched.

May import: protocol, config, lists, policy
Does I/O: read_resolv_conf (reads /etc/resolv.conf for the default upstreams)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resolver.config import Config, Endpoint, resolve_upstreams
from resolver.lists.loading import ListReport, load_lists
from resolver.policy.access import ClientAccess
from resolver.policy.engine import PolicyEngine, build_engine
from resolver.protocol.answers import ANSWER_MODES, IP_MODE, SinkholeAnswer
from resolver.protocol.ddr import DesignatedResolver, EncryptedEndpoint
from resolver.protocol.edns import EdeCode

RESOLV_CONF = Path("/etc/resolv.conf")

SinkholeKey = tuple[str, int, int]  # answer mode, TTL, EDE code for negative answers


@dataclass(frozen=True, slots=True)
class ResolverState:
    config: Config
    access: ClientAccess
    policy: PolicyEngine
    sinkholes: Mapping[SinkholeKey, SinkholeAnswer]
    list_sizes: Mapping[str, int]
    upstreams: tuple[Endpoint, ...]
    warnings: tuple[str, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    list_reports: Mapping[str, ListReport] = field(default_factory=dict)
    list_watch: Mapping[str, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)
    designated: DesignatedResolver | None = None  # DDR answers; None without encrypted listeners

    def sinkhole(self, mode: str, ttl: int, censored: bool) -> SinkholeAnswer:
        return self.sinkholes[(mode, ttl, EdeCode.CENSORED if censored else EdeCode.BLOCKED)]


def build_state(config: Config, resolv_conf: str | None = None) -> ResolverState:
    """Build the state for `config`; raises `ListError` naming file and line.

    Each list is loaded once, into its own matcher, however many groups and policies use it;
    big operator lists are compiled in a child process and memory-mapped (`resolver.lists.loading`).
    """
    loaded = load_lists(config)
    allow = set(config.allow)
    matchers = dict(loaded.matchers)
    sizes = dict(loaded.sizes)
    blocked = sum(sizes[name] for item, (name, _) in matchers.items() if item not in allow)
    return ResolverState(
        config=config,
        access=ClientAccess(config.clients.allow),
        policy=build_engine(config, matchers, blocked),  # type: ignore[arg-type]
        sinkholes=_sinkholes(config),
        list_sizes=sizes,
        upstreams=resolve_upstreams(config, resolv_conf),
        warnings=loaded.warnings,
        list_reports=loaded.reports,
        list_watch=loaded.watch,
        designated=designated_resolver(config),
    )


def designated_resolver(config: Config) -> DesignatedResolver | None:
    """Our DDR answer (RFC 9462): DoH first, then DoT, each on its first configured port
    (a port 0 listener, which only tests use, is published as the protocol's default)."""
    encrypted = config.encrypted
    if not encrypted.enabled or not encrypted.ddr or encrypted.server_name is None:
        return None
    hints = encrypted.ddr_hints()
    kinds = (("doh", encrypted.doh, 443), ("dot", encrypted.dot, 853))
    endpoints = [
        EncryptedEndpoint(transport, listeners[0].port or default, hints)
        for transport, listeners, default in kinds
        if listeners
    ]
    return DesignatedResolver(encrypted.server_name, endpoints)


def _sinkholes(config: Config) -> dict[SinkholeKey, SinkholeAnswer]:
    """Every blocked answer the config can produce, prepared once."""
    blocking = config.blocking
    ttls = {blocking.ttl} | {p.ttl for p in config.policies if p.ttl is not None}
    modes = [m for m in ANSWER_MODES if m != IP_MODE or blocking.ip]
    return {
        (mode, ttl, ede): SinkholeAnswer(mode, ttl, blocking.ip, ede)
        for mode in modes
        for ttl in ttls
        for ede in (EdeCode.BLOCKED, EdeCode.CENSORED)
    }


def read_resolv_conf(path: Path = RESOLV_CONF) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
