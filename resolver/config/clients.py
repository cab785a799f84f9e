"""The `clients` section: who may query at all, and where clients in no group go."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from resolver.config.groups import DEFAULT_GROUP, REFUSE
from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import suggest
from resolver.config.values import IPNetwork, name_text, network

DEFAULT_ALLOW: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


@dataclass(frozen=True, slots=True)
class ClientsConfig:
    """`allow` is the ACL, checked before anything else; `default_group` places allowed clients
    that fall in no group's subnets: a group name, or `refuse` (REFUSED with EDE 18)."""

    allow: tuple[IPNetwork, ...] = DEFAULT_ALLOW
    default_group: str = DEFAULT_GROUP


def read_clients(reader: Reader, top: Entries, group_names: frozenset[str]) -> ClientsConfig:
    entries = reader.section(top, "clients", ClientsConfig)
    defaults = ClientsConfig()
    allow = defaults.allow
    items = reader.items(
        entries,
        "allow",
        "clients",
        _client_network,
        empty="empty: every query would be refused; list at least one network",
    )
    if items is not None:
        allow = tuple(item.value for item in reader.unique(items))
    default_group = reader.value(
        entries, "default_group", "clients", name_text, defaults.default_group
    )
    choices = {REFUSE, DEFAULT_GROUP} | group_names
    if default_group is not MISSING and default_group not in choices:
        reader.problem(
            entries["default_group"][1],
            "clients.default_group",
            f"unknown group {default_group!r}: use refuse, default or a group defined "
            f"under groups{suggest(default_group, choices)}",
        )
    if default_group is MISSING:
        default_group = defaults.default_group
    return ClientsConfig(allow=allow, default_group=default_group)


def _client_network(raw: object) -> IPNetwork:
    """As for groups, and never everything: the ACL is what keeps us from being open."""
    parsed = network(raw)
    text = str(raw).strip()
    if parsed.prefixlen == 0:
        raise ValueError(
            f"{text!r} allows every address on the Internet; dnswarden must not be an open "
            "resolver, list your networks instead"
        )
    return parsed
