"""The `policies` section: dated, referenced rules that block lists for some groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resolver.config.blocking import AnswerMode, Sinkhole, answer_mode
from resolver.config.groups import (
    DEFAULT_GROUP,
    REFUSE,
    ExemptRule,
    read_exempt,
    read_exempt_lists,
)
from resolver.config.listref import ListNames
from resolver.config.nodes import MISSING, Entries, Reader, join, line_of
from resolver.config.problems import describe, suggest
from resolver.config.values import name_text, ttl

MAX_REFERENCE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """A dated, referenced rule: it blocks `block` for `groups` only inside its window.

    Bans are decided by an authority for a period ("a preliminary six months"); keeping the
    decision's reference and dates in the rule lets every block be traced to its mandate and
    lets the ban start and lapse without a restart.  `answer`/`ttl` None means the global ones.
    """

    name: str = ""
    block: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    reference: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    answer: AnswerMode | None = None
    ttl: int | None = None
    exempt: tuple[ExemptRule, ...] = ()
    line: int = 0
    exempt_lists: tuple[str, ...] = ()  # catalogue ids whose names this policy never blocks

    def active(self, now: datetime) -> bool:
        """Whether the policy applies at `now` (timezone-aware); `until` is exclusive."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until


_POLICY_KEYS = (
    "block", "groups", "reference", "from", "until", "answer", "ttl", "exempt", "exempt_lists",
)  # fmt: skip


def read_policies(
    reader: Reader,
    top: Entries,
    lists: ListNames,
    group_names: frozenset[str],
    sinkhole: Sinkhole | None,
) -> tuple[tuple[PolicyConfig, ...], list[Any]]:
    """The policies, and their answer modes (`MISSING` for a bad one) for the ip check."""
    policies: list[PolicyConfig] = []
    answers: list[Any] = []
    choices = group_names | {DEFAULT_GROUP}
    for name, key_node, value_node in reader.named(top, "policies", "policy"):
        path = join("policies", name)
        entries = reader.mapping(value_node, path, _POLICY_KEYS)
        if entries is None:
            continue
        for required, what in (("block", "the lists it blocks"), ("groups", "who it is for")):
            if required not in entries:
                reader.problem(key_node, f"{path}.{required}", f"required: {what}")
        block = lists.resolve(reader, entries, "block", path, empty="at least one list is required")
        group_items = reader.items(
            entries, "groups", path, name_text, empty="at least one group is required"
        )
        group_items = reader.unique(group_items or [])
        for item in group_items:
            if item.value == REFUSE:
                reader.problem(
                    item.node,
                    item.key,
                    "'refuse' is not a group: it is a choice for clients.default_group",
                )
            elif item.value not in choices:
                reader.problem(
                    item.node,
                    item.key,
                    f"unknown group {item.value!r}: define "
                    f"it under groups{suggest(item.value, choices)}",
                )
        reference = reader.value(entries, "reference", path, _reference_text, None)
        valid_from = reader.instant(entries, "from", path)
        valid_until = reader.instant(entries, "until", path)
        if (
            isinstance(valid_from, datetime)
            and isinstance(valid_until, datetime)
            and valid_until <= valid_from
        ):
            reader.problem(
                entries["until"][1],
                f"{path}.until",
                f"until ({valid_until.isoformat()}) must be after from ({valid_from.isoformat()})",
            )
        answer = reader.value(entries, "answer", path, answer_mode, None)
        answers.append(answer)
        if answer is AnswerMode.IP and sinkhole is not None and not sinkhole.ips:
            reader.problem(
                entries["answer"][1],
                f"{path}.answer",
                "answer: ip needs at least one address under blocking.ip",
            )
        seconds = reader.value(entries, "ttl", path, ttl, None)
        policies.append(
            PolicyConfig(
                name=name,
                block=block or (),
                groups=tuple(item.value for item in group_items),
                reference=None if reference is MISSING else reference,
                valid_from=None if valid_from is MISSING else valid_from,
                valid_until=None if valid_until is MISSING else valid_until,
                answer=None if answer is MISSING else answer,
                ttl=None if seconds is MISSING else seconds,
                exempt=read_exempt(reader, entries, path, lists),
                line=line_of(key_node),
                exempt_lists=read_exempt_lists(reader, entries, path, lists),
            )
        )
    return tuple(policies), answers


def _reference_text(raw: object) -> str:
    """One line of text: it is written into audit events and EDE EXTRA-TEXT as it is."""
    if not isinstance(raw, str):
        raise ValueError(f"expected text or a URL (quote it), got {describe(raw)}")
    text = " ".join(raw.split())
    if not text:
        raise ValueError("empty reference; remove the key, or say which decision this is")
    if any(not ch.isprintable() for ch in text):
        raise ValueError("control characters are not allowed in a reference")
    if len(text) > MAX_REFERENCE_CHARS:
        raise ValueError(
            f"{len(text)} characters; at most {MAX_REFERENCE_CHARS} (cite the document, "
            "or give its URL)"
        )
    return text
