"""The `groups` section: clients by subnet, each group with its own lists and exemptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resolver.config.listref import ListNames
from resolver.config.nodes import Entries, Item, Reader, join, line_of
from resolver.config.problems import describe, suggest
from resolver.config.values import IPNetwork, names_a_file, network
from resolver.protocol import names
from resolver.protocol.devices import parse_device_id

DEFAULT_GROUP = "default"
REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class ExemptRule:
    """A name never blocked: the domain and all its subdomains, or (`exact`) that name alone.

    Exemptions exist so a scoped ban can spare the one team that needs the service (a press
    office running the official account) without carving holes in the block lists themselves.
    """

    pattern: str = ""
    exact: bool = False

    def __str__(self) -> str:
        return f"={self.pattern}" if self.exact else self.pattern


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Clients by subnet; the longest matching prefix wins, so groups may nest. A client that
    presents a device id (over DoT or DoH) listed under `devices` is in this group whatever
    its address."""

    name: str = ""
    subnets: tuple[IPNetwork, ...] = ()
    block: tuple[str, ...] = ()
    exempt: tuple[ExemptRule, ...] = ()
    line: int = 0
    exempt_lists: tuple[str, ...] = ()  # catalogue ids: every name of the entry is exempt
    devices: tuple[str, ...] = ()


_GROUP_KEYS = ("subnets", "devices", "block", "exempt", "exempt_lists")


def read_groups(
    reader: Reader, top: Entries, lists: ListNames
) -> tuple[tuple[GroupConfig, ...], frozenset[str]]:
    """The groups, and every well-formed group name (even of a group with bad settings,
    so references to it are not reported as unknown on top of its own problems)."""
    groups: list[GroupConfig] = []
    found: set[str] = set()
    owners: dict[IPNetwork, Item] = {}
    device_owners: dict[str, Item] = {}
    for name, key_node, value_node in reader.named(top, "groups", "group"):
        path = join("groups", name)
        if name == REFUSE:
            reader.problem(
                key_node,
                path,
                "'refuse' is reserved: clients.default_group: "
                "refuse means answering REFUSED; choose another name",
            )
            continue
        found.add(name)
        entries = reader.mapping(value_node, path, _GROUP_KEYS)
        if entries is None:
            continue
        may_be_empty = name == DEFAULT_GROUP or "devices" in entries
        items = reader.items(
            entries,
            "subnets",
            path,
            network,
            empty=None if may_be_empty else "at least one subnet is required",
        )
        if "subnets" not in entries and not may_be_empty:
            reader.problem(
                key_node,
                f"{path}.subnets",
                "required: the networks (CIDRs) whose clients are in this group",
            )
        subnets: list[IPNetwork] = _owned(reader, items, owners, "", "network")
        groups.append(
            GroupConfig(
                name=name,
                subnets=tuple(subnets),
                devices=_devices(reader, entries, path, device_owners),
                block=lists.resolve(reader, entries, "block", path) or (),
                exempt=read_exempt(reader, entries, path, lists),
                line=line_of(key_node),
                exempt_lists=read_exempt_lists(reader, entries, path, lists),
            )
        )
    return tuple(groups), frozenset(found)


def _devices(
    reader: Reader, entries: Entries, path: str, owners: dict[str, Item]
) -> tuple[str, ...]:
    """The group's device ids; like a network, a device belongs to one group only."""
    items = reader.items(entries, "devices", path, _device_id)
    devices: list[str] = _owned(reader, items, owners, "device ", "device")
    return tuple(devices)


def _owned(
    reader: Reader, items: list[Item] | None, owners: dict[Any, Item], prefix: str, noun: str
) -> list[Any]:
    """The values of `items` no earlier group claimed (`owners`: value -> its first item);
    each value claimed twice is reported where it stands, naming the first claim's line."""
    values: list[Any] = []
    for item in reader.unique(items or []):
        first = owners.setdefault(item.value, item)
        if first is item:
            values.append(item.value)
            continue
        reader.problem(
            item.node,
            item.key,
            f"{prefix}{item.value} is already in {first.key} (line {line_of(first.node)}); "
            f"a {noun} belongs to one group only",
        )
    return values


def _device_id(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a device id such as phone-0117, got {describe(raw)}")
    return parse_device_id(raw)


def read_exempt(
    reader: Reader, entries: Entries, path: str, lists: ListNames
) -> tuple[ExemptRule, ...]:
    """The `exempt` entry of a group or a policy.

    A bare catalogue id there is refused: `tiktok` is a valid (single-label) domain, so
    reading it as the entry would make the meaning of a line depend on which catalogue is
    installed, and reading it as a domain would exempt nothing the operator meant. Whole
    entries go under `exempt_lists`; `=tiktok` still names the single-label domain.
    """
    items = reader.items(entries, "exempt", path, _exempt_rule)
    good: list[Item] = []
    for item in reader.unique(items or []):
        rule: ExemptRule = item.value
        if not rule.exact and rule.pattern in lists.catalogue:
            reader.problem(
                item.node,
                item.key,
                f"{rule.pattern!r} is a catalogue entry, not a domain: to exempt every name "
                f"of the entry write exempt_lists: [{rule.pattern}] (for the single-label "
                f"domain, write '={rule.pattern}')",
            )
            continue
        good.append(item)
    return tuple(item.value for item in good)


def read_exempt_lists(
    reader: Reader, entries: Entries, path: str, lists: ListNames
) -> tuple[str, ...]:
    """`exempt_lists`: catalogue ids whose every name is exempt, as if each of the entry's
    domains were written under `exempt` (the press office that needs TikTok: one line).

    Only catalogue ids: an operator's own names go under `exempt`, and a key of its own
    keeps an id from ever being read as a domain (see `read_exempt`).
    """
    items = reader.items(entries, "exempt_lists", path, _catalogue_id)
    good: list[str] = []
    for item in reader.unique(items or []):
        name: str = item.value
        if name in lists.catalogue:
            good.append(name)
            continue
        bundled = ", ".join(sorted(lists.catalogue)) or "(none)"
        hint = suggest(name, lists.catalogue)
        if name in lists.sources or names_a_file(name) or "." in name:
            hint += "; exempt_lists takes catalogue ids only: write the names under exempt"
        reader.problem(
            item.node,
            item.key,
            f"unknown catalogue entry {name!r}: bundled entries are: {bundled}{hint}",
        )
    return tuple(good)


def _catalogue_id(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected a catalogue id such as tiktok, got {describe(raw)}")
    return raw.strip()


def _exempt_rule(raw: object) -> ExemptRule:
    """`example.org` (itself and subdomains) or `=www.example.org` (that name only)."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a domain such as example.org, got {describe(raw)}")
    text = raw.strip()
    exact = text.startswith("=")
    if exact:
        text = text[1:].strip()
    try:
        _, canonical = names.normalise(text)
    except names.BadName as e:
        hint = ""
        if "*" in text:
            hint = "; an exemption already covers every subdomain, so write it without '*.'"
        raise ValueError(f"{e}{hint}") from None
    if canonical == ".":
        raise ValueError("the root would exempt every name; name a domain")
    return ExemptRule(canonical, exact)
