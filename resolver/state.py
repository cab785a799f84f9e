"""Everything a query reads, built from a Config in one go and never changed afterwards.

Start-up and every reload build a fresh `ResolverState`; the server swaps it in with a single
assignment, so a query sees either the old state or the new one, never a mixture, and a reload
that fails to build leaves the running state untouched.

A list that a group must enforce but that is not loaded (`LoadedLists.missing`: a feed never
fetched, a refused version with no good one to keep) is either waited for or ignored, as
`blocking.missing_lists` says. Policies have windows, so which groups wait changes with time
without a reload: `fail_closed(now)` gives the answer together with the interval over which it
holds, and the pipeline asks again only when `now` leaves it.

May import: protocol, config, lists, policy
Does I/O: read_resolv_conf (reads /etc/resolv.conf for the default upstreams)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resolver.config import Config, Endpoint, MissingLists, resolve_upstreams
from resolver.lists.catalogue import load_catalogue_entry
from resolver.lists.loading import ListReport, LoadedLists, load_lists
from resolver.lists.matcher import Matcher
from resolver.lists.provenance import list_provenance
from resolver.policy.access import ClientAccess
from resolver.policy.engine import Binding, Exemptions, PolicyEngine, build_engine
from resolver.protocol.answers import ANSWER_MODES, IP_MODE, SinkholeAnswer
from resolver.protocol.ddr import DesignatedResolver, EncryptedEndpoint
from resolver.protocol.edns import EdeCode

RESOLV_CONF = Path("/etc/resolv.conf")

SinkholeKey = tuple[str, int, int]  # answer mode, TTL, EDE code for negative answers


@dataclass(frozen=True, slots=True)
class ClosedGroup:
    """A group served fail-closed: lists it must enforce now are missing, so a name none of its
    loaded lists blocks is not answered (SERVFAIL, EDE 14 with `text`) unless it is certain
    that no missing list could block it either."""

    lists: tuple[str, ...]  # the missing lists in force for this group, sorted
    text: str
    bindings: tuple[Binding, ...]  # their bindings in force
    exemptions: Exemptions  # the group's own
    allows: tuple[Matcher, ...]  # the global allow lists

    def refuses(self, qname: bytes) -> bool:
        """Whether `qname` must wait: the group does not exempt it, no allow list covers it,
        and some missing list's policy does not exempt it."""
        exemptions = self.exemptions
        if exemptions.active and exemptions.match(qname) is not None:
            return False
        for allow in self.allows:
            if allow.lookup(qname) is not None:
                return False
        for binding in self.bindings:
            own = binding.exemptions
            if not own.active or own.match(qname) is None:
                return True
        return False


@dataclass(frozen=True, slots=True)
class FailClosed:
    """The groups served fail-closed, constant for every instant in [since, until)."""

    groups: Mapping[str, ClosedGroup]
    since: float = -math.inf
    until: float = math.inf


NEVER_CLOSED = FailClosed({})


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
    missing_lists: frozenset[str] = frozenset()  # configured lists with no loaded copy
    allows: tuple[Matcher, ...] = ()  # the global allow lists
    designated: DesignatedResolver | None = None  # DDR answers; None without encrypted listeners
    lists: LoadedLists | None = None  # what the matchers came from, for the next reload

    def sinkhole(self, mode: str, ttl: int, censored: bool) -> SinkholeAnswer:
        return self.sinkholes[(mode, ttl, EdeCode.CENSORED if censored else EdeCode.BLOCKED)]

    def fail_closed(self, now: float) -> FailClosed:
        """The groups to serve fail-closed at `now`: none with `missing_lists: fail_open`."""
        if self.config.blocking.missing_lists is MissingLists.FAIL_OPEN:
            return NEVER_CLOSED
        return self.waiting(now)

    def waiting(self, now: float) -> FailClosed:
        """The groups for which a list in force at `now` (a policy's within its window, a
        group's own `block`, `blocking.lists`) is missing, whatever `missing_lists` says."""
        if not self.missing_lists:
            return NEVER_CLOSED
        missing = self.missing_lists
        since, until = -math.inf, math.inf
        groups: dict[str, ClosedGroup] = {}
        for group in self.policy.groups.values():
            pending = [b for b in group.bindings if b.list_name in missing]
            for binding in pending:
                for edge in (binding.valid_from, binding.valid_until):
                    if edge is None:
                        continue
                    if edge <= now:
                        since = max(since, edge)
                    else:
                        until = min(until, edge)
            in_force = tuple(b for b in pending if b.in_force(now))
            if in_force:
                lists = tuple(sorted({b.list_name for b in in_force}))
                groups[group.name] = ClosedGroup(
                    lists, _not_ready_text(lists), in_force, group.exemptions, self.allows
                )
        return FailClosed(groups, since, until)


def build_state(
    config: Config,
    resolv_conf: str | None = None,
    *,
    previous: ResolverState | None = None,
    keep: bool = False,
) -> ResolverState:
    """Build the state for `config`; raises `ListError` naming file and line.

    Each list is loaded once, into its own matcher, however many groups and policies use it;
    big operator lists are compiled in a child process and memory-mapped (`resolver.lists.loading`).
    Each new version of a list is judged against the one in `previous` (the running state; at
    start-up, against the last good copy in the state directory), and a refused one leaves
    that in force. `keep` (the server) writes last good copies; `check` and the other commands
    only read them.
    """
    loaded = load_lists(config, previous=previous.lists if previous else None, keep=keep)
    blocking = _blocking_items(config)
    matchers = dict(loaded.matchers)
    sizes = dict(loaded.sizes)
    blocked = sum(sizes[name] for item, (name, _) in matchers.items() if item in blocking)
    provenance = list_provenance(loaded.reports, load_catalogue_entry)
    return ResolverState(
        config=config,
        access=ClientAccess(config.clients.allow),
        policy=build_engine(config, matchers, blocked, provenance),  # type: ignore[arg-type]
        sinkholes=_sinkholes(config),
        list_sizes=sizes,
        upstreams=resolve_upstreams(config, resolv_conf),
        warnings=loaded.warnings,
        list_reports=loaded.reports,
        list_watch=loaded.watch,
        designated=designated_resolver(config),
        missing_lists=loaded.missing,
        allows=tuple(matchers[item][1] for item in config.allow if item in matchers),
        lists=loaded,
    )


def _not_ready_text(lists: tuple[str, ...]) -> str:
    """The EDE text of a fail-closed answer: which lists it waits for, and why."""
    noun = "list" if len(lists) == 1 else "lists"
    return f"not ready: {noun} {', '.join(lists)} not loaded yet (missing_lists: fail_closed)"


def _blocking_items(config: Config) -> frozenset[str]:
    """The list items that block somewhere (not the `allow` sources, not the catalogue entries
    only exempted): what the blocked-domain count adds up."""
    return frozenset(
        (
            *config.blocking.lists,
            *(item for group in config.groups for item in group.block),
            *(item for policy in config.policies for item in policy.block),
        )
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
