"""Refused and accepted versions of lists: what the loader reports, and the operator's word.

`resolver.lists.guard` judges every new version of a list. When it refuses one, the loader keeps
the last good version in force and reports a `ListRejection`, which the service logs
(`list_rejected`) and counts, and `check` prints. An operator who means a version the guard
refuses (a list really cut by half) says so with ``dnswarden reload --accept LIST``, which
writes an accept marker here naming exactly the version there is now: its files' sizes and
modification times, or a feed's refused download by digest. An edit after the command is
judged afresh, and every worker and `check` read the same answer from the same file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from resolver.lists.compiled import write_atomic

EVENT_SAMPLES: Final = 5
"""Example problems one `list_rejected` event carries; the rest are counted (`more`)."""

KEPT_PREVIOUS: Final = "previous"  # the version in force before this reload stays
KEPT_LAST_GOOD: Final = "last_good"  # the last good copy in state_dir (at start-up)
KEPT_NOTHING: Final = "nothing"  # no good version anywhere: the list is missing

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class ListRejection:
    """A new version of a list that the guard refused, and what stayed in force instead.

    `location` is the file, directory or URL; `reason` the guard's code (binary, html, json,
    xml, invalid, tld_rule, empty, shrink); `samples` are example problems with ``file:line``
    (`more` counts those left out); `kept` says which version is in force now, with
    `kept_entries` rules.
    """

    list: str
    location: str
    reason: str
    detail: str
    samples: tuple[str, ...] = ()
    more: int = 0
    kept: str = KEPT_NOTHING
    kept_entries: int = 0

    def fields(self, samples: int = EVENT_SAMPLES) -> dict[str, object]:
        """The `list_rejected` event's fields: the summary first, a few samples, a count."""
        shown = list(self.samples[:samples])
        out: dict[str, object] = {
            "list": self.list,
            "file": self.location,
            "reason": self.reason,
            "detail": self.detail,
            "kept": self.kept,
            "kept_entries": self.kept_entries,
        }
        if shown:
            out["samples"] = shown
        hidden = self.more + len(self.samples) - len(shown)
        if hidden:
            out["more"] = hidden
        return out

    def kept_text(self) -> str:
        if self.kept == KEPT_PREVIOUS:
            return f"the version in force stays ({self.kept_entries} rules)"
        if self.kept == KEPT_LAST_GOOD:
            return f"its last good copy is used ({self.kept_entries} rules)"
        return "there is no good copy: groups that must enforce it are served fail-closed"

    def lines(self) -> list[str]:
        """What `check` prints: ``LOCATION: list NAME refused (reason): detail``, then every
        sample on its own line."""
        head = f"{self.location}: list {self.list} refused ({self.reason}): {self.detail}"
        lines = [f"{head}; {self.kept_text()}", *self.samples]
        if self.more:
            lines.append(f"... and {self.more} more")
        return lines


@dataclass(frozen=True, slots=True)
class ListAcceptance:
    """A version the guard would have refused, loaded because the operator accepted it."""

    list: str
    location: str
    reason: str  # what the guard would have said
    detail: str
    entries: int
    previous: int | None

    def fields(self) -> dict[str, object]:
        return {
            "list": self.list,
            "file": self.location,
            "reason": self.reason,
            "detail": self.detail,
            "entries": self.entries,
            "previous": self.previous,
        }


def rejection(
    name: str, location: str, refusal: dict[str, object], kept: str, kept_entries: int
) -> ListRejection:
    """A `ListRejection` from a parse report's ``refusal`` (`building.parse_job`)."""
    samples = refusal.get("samples") or []
    more = refusal.get("more") or 0
    return ListRejection(
        list=name,
        location=location,
        reason=str(refusal["reason"]),
        detail=str(refusal["detail"]),
        samples=tuple(str(s) for s in samples) if isinstance(samples, list) else (),
        more=int(more) if isinstance(more, int) else 0,
        kept=kept,
        kept_entries=kept_entries,
    )


# ----- accept markers: <state_dir>/accept/<list>.json ---------------------------------------


def marker_path(state_dir: str | Path, name: str) -> Path:
    tag = hashlib.sha256(name.encode()).hexdigest()[:8]
    return Path(state_dir) / "accept" / f"{_SAFE_NAME.sub('_', name)}-{tag}.json"


def accepted_key(state_dir: str | Path | None, name: str) -> str | None:
    """The version of list `name` the operator accepted (None: no marker)."""
    if state_dir is None:
        return None
    try:
        marker = json.loads(marker_path(state_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = marker.get("key") if isinstance(marker, dict) else None
    return key if isinstance(key, str) and marker.get("list") == name else None


def write_marker(state_dir: str | Path, name: str, key: str, at: float, what: str) -> Path:
    """Record that the operator accepts version `key` of list `name`; raises OSError."""
    path = marker_path(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"list": name, "key": key, "at": at, "version": what}
    write_atomic(path, [json.dumps(body, indent=1).encode()])
    return path
