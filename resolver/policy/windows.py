"""Policies outside their window, what each group has in force, and when that next changes.

A policy that has lapsed, or has not started yet, blocks nothing, and no answer shows it: the
shipped example once printed "ok" for years after its ban had ended. So `dnswarden check`, the
service's start-up and every reload name each such policy (`OutOfWindow`), and the service
exports what each group has in force (`blocked_rules`). Windows are judged per query against the
clock; what is in force changes only at a window's edge, so the service recomputes the count at
the next edge (`next_edge`) rather than per query or per scrape.

Pure: `now` is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from resolver.config import PolicyConfig
from resolver.policy.engine import PolicyEngine


class Window(enum.Enum):
    """Where `now` falls in a policy's window. Outside it, the value names the warning the
    service logs (a policy in force draws none)."""

    IN_FORCE = "policy_in_force"
    LAPSED = "policy_lapsed"
    NOT_STARTED = "policy_not_started"


def window(policy: PolicyConfig, now: datetime) -> Window:
    """`until` is exclusive, `from` inclusive, as in `PolicyConfig.active`."""
    if policy.valid_until is not None and now >= policy.valid_until:
        return Window.LAPSED
    if policy.valid_from is not None and now < policy.valid_from:
        return Window.NOT_STARTED
    return Window.IN_FORCE


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def policy_fields(policy: PolicyConfig, source: str) -> dict[str, object]:
    """An audit event's fields for a policy: enough to find it, and the decision behind it."""
    return {
        "policy": policy.name,
        "from": _iso(policy.valid_from),
        "until": _iso(policy.valid_until),
        "groups": list(policy.groups),
        "lists": list(policy.block),
        "reference": policy.reference,
        "config": f"{source}:{policy.line}",
    }


@dataclass(frozen=True, slots=True)
class OutOfWindow:
    """A policy that blocks nothing at `now`, because its window has closed or not yet opened."""

    policy: PolicyConfig
    state: Window
    source: str  # the config file, for FILE:LINE

    @property
    def event(self) -> str:
        return self.state.value

    def fields(self) -> dict[str, object]:
        return policy_fields(self.policy, self.source)

    def __str__(self) -> str:
        """`FILE:LINE: policies.NAME: ...`, the shape of `check`'s problems."""
        policy = self.policy
        start, end = _iso(policy.valid_from), _iso(policy.valid_until)
        span = f"window {start or 'open'} to {end or 'open'}"
        if self.state is Window.LAPSED:
            what = f"lapsed on {end} ({span})"
        else:
            what = f"not in force yet: starts on {start} ({span})"
        return (
            f"{self.source}:{policy.line}: policies.{policy.name}: {what}; it blocks nothing "
            f"now (for {', '.join(policy.groups)})"
        )


def out_of_window(
    policies: Iterable[PolicyConfig], source: str, now: datetime
) -> list[OutOfWindow]:
    """Every policy that is not in force at `now`, in config order."""
    found = []
    for policy in policies:
        state = window(policy, now)
        if state is not Window.IN_FORCE:
            found.append(OutOfWindow(policy, state, source))
    return found


def next_edge(policies: Iterable[PolicyConfig], now: datetime) -> datetime | None:
    """The first `from` or `until` after `now`: when what is in force next changes."""
    edges = [
        moment
        for policy in policies
        for moment in (policy.valid_from, policy.valid_until)
        if moment is not None and moment > now
    ]
    return min(edges, default=None)


def lists_in_force(engine: PolicyEngine, now: float) -> dict[str, tuple[str, ...]]:
    """Per group, the lists that block for it at `now` (Unix seconds), each once, in precedence
    order: its policies in their window, its own lists, then `blocking.lists`. A group no client
    can be in (`default` with `default_group: refuse`) is left out."""
    found: dict[str, tuple[str, ...]] = {}
    for name, group in engine.groups.items():
        if not group.subnets and group is not engine.default:
            continue
        names = dict.fromkeys(b.list_name for b in group.bindings if b.in_force(now))
        found[name] = tuple(names)
    return found


def blocked_rules(engine: PolicyEngine, sizes: Mapping[str, int], now: float) -> dict[str, int]:
    """Per group, the rules of the lists in force at `now`: each list counted once, before
    exemptions (an exemption spares names, not rules). 0 means the group is blocked nothing."""
    return {
        group: sum(sizes.get(entry, 0) for entry in entries)
        for group, entries in lists_in_force(engine, now).items()
    }
