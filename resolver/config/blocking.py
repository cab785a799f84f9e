"""The `blocking` section: the lists blocked for every client, what a blocked name gets, and
what happens while a list that must be enforced has not been loaded yet."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from resolver.config.listref import ListNames
from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import describe
from resolver.config.values import IPAddress, choice, parse_host, ttl


class AnswerMode(enum.Enum):
    NULL_IP = "null_ip"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFUSED = "refused"
    IP = "ip"


class MissingLists(enum.Enum):
    """While a list in force has no loaded copy (a feed never fetched): refuse to answer the
    names it might block (fail_closed), or answer them as if it were empty (fail_open)."""

    FAIL_CLOSED = "fail_closed"
    FAIL_OPEN = "fail_open"


@dataclass(frozen=True, slots=True)
class BlockingConfig:
    lists: tuple[str, ...] = ("tiktok", "doh-bypass")  # doh-bypass: bans hold (default.yaml)
    answer: AnswerMode = AnswerMode.NULL_IP
    ip: tuple[IPAddress, ...] = ()
    ttl: int = 60
    missing_lists: MissingLists = MissingLists.FAIL_CLOSED


class Sinkhole(NamedTuple):
    """The global answer and its addresses, once both are known to be valid."""

    answer: AnswerMode
    ips: tuple[IPAddress, ...]


answer_mode = choice(AnswerMode, "answer")
missing_lists_mode = choice(MissingLists, "missing_lists mode")


def read_blocking(
    reader: Reader, top: Entries, lists: ListNames
) -> tuple[BlockingConfig, Entries, Sinkhole | None]:
    """The section, its entries, and (answer, addresses) when both are valid.

    Whether `ip` may be set depends on the policies' answers too, so that check waits
    for them (`check_sinkhole`).
    """
    entries = reader.section(top, "blocking", BlockingConfig)
    path = "blocking"
    defaults = BlockingConfig()
    names = lists.resolve(reader, entries, "lists", path)
    answer = reader.value(entries, "answer", path, answer_mode, defaults.answer)
    ips: tuple[IPAddress, ...] = ()
    ips_valid = True
    if "ip" in entries:
        ip_items = reader.items(entries, "ip", path, _sinkhole_address)
        ips = tuple(item.value for item in reader.unique(ip_items or []))
        ips_valid = ip_items is not None and len(ip_items) == len(entries["ip"][1].value)
    seconds = reader.value(entries, "ttl", path, ttl, defaults.ttl)
    missing = reader.value(
        entries, "missing_lists", path, missing_lists_mode, defaults.missing_lists
    )
    config = BlockingConfig(
        lists=defaults.lists if names is None else names,
        answer=defaults.answer if answer is MISSING else answer,
        ip=ips,
        ttl=defaults.ttl if seconds is MISSING else seconds,
        missing_lists=defaults.missing_lists if missing is MISSING else missing,
    )
    sinkhole = Sinkhole(answer, ips) if answer is not MISSING and ips_valid else None
    return config, entries, sinkhole


def check_sinkhole(
    reader: Reader, entries: Entries, sinkhole: Sinkhole | None, policy_answers: list[Any]
) -> None:
    """`blocking.ip` is needed when the global answer is ip, and useless when nothing is."""
    if sinkhole is None or MISSING in policy_answers:
        return
    path = "blocking"
    answer, ips = sinkhole
    if ips and answer is not AnswerMode.IP and AnswerMode.IP not in policy_answers:
        reader.problem(
            entries["ip"][1],
            f"{path}.ip",
            f"addresses given but answer is {answer.value!r} and no policy has answer: ip; "
            "set answer: ip to use them, or remove them",
        )
    if answer is AnswerMode.IP and not ips:
        where = entries.get("ip") or entries["answer"]
        reader.problem(
            where[1],
            f"{path}.ip",
            "answer: ip needs at least one IPv4 or IPv6 address under blocking.ip",
        )


def _sinkhole_address(raw: object) -> IPAddress:
    if not isinstance(raw, str):
        raise ValueError(f"expected an IP address such as 10.0.0.80, got {describe(raw)}")
    return parse_host(raw.strip())
