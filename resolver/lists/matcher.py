"""Suffix matching of query names against block rules, in O(number of labels).

A rule blocks its domain and every subdomain, so a query name is checked by looking up each of its
suffixes. In wire format every suffix is a slice starting at a label boundary, which makes each
check one dict lookup keyed by bytes; the cost depends on the length of the query name, never on
the number of rules. Wildcard rules (``v*.tiktokcdn-eu.com``) are indexed by their parent suffix
(``tiktokcdn-eu.com``), so the same walk finds them. Pure: no I/O.

Semantics, decided here and relied on by the catalogue and list files:

- ``x.com`` blocks ``x.com`` and every name below it. Case and a trailing dot do not matter.
- A ``*`` may appear only in the leftmost label of a pattern and stands for one or more
  characters within that single label (it never spans a dot). Several ``*`` are allowed, each
  matching at least one character.
- ``*.x.com`` therefore blocks every proper subdomain of ``x.com`` but not ``x.com`` itself;
  ``v*.x.com`` blocks ``v16.x.com`` and everything below it, but not ``v.x.com`` or ``x.com``.
- The most specific rule wins: the walk goes from the full name towards the root and stops at
  the first suffix that is covered. At one position an exact pattern beats a wildcard; among
  wildcards, the one with more literal characters wins, then the one added first. Adding a
  pattern that is already present keeps the first rule (list order is precedence).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from resolver.protocol.names import BadName, from_text, to_text

__all__ = ["ANSWER_OVERRIDES", "BlockRule", "DomainMatcher", "Matcher", "NetworkRules"]

ANSWER_OVERRIDES = frozenset({"null_ip", "nxdomain", "nodata", "refused"})
"""Answer modes a single rule may force. ``ip`` needs addresses, so it is list-wide only."""


@dataclass(slots=True, unsafe_hash=True, init=False)
class BlockRule:
    """What a match reports: which list blocked the name, by which rule, and how to answer.

    Never changed once made, but not a frozen dataclass, whose `__init__` (a field at a time
    through `object.__setattr__`) costs several times more: a compiled list makes one per hit.
    Its `__init__` is written out: the one `dataclass` generates is interpreted Python even in
    the compiled core (mypyc leaves it to the dataclasses module), the one here is compiled.
    """

    list_name: str
    pattern: str
    answer: str | None = None
    data: tuple[tuple[int, bytes], ...] = ()  # RPZ local data: (RR type, wire RDATA)

    def __init__(
        self,
        list_name: str,
        pattern: str,
        answer: str | None = None,
        data: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        self.list_name = list_name
        self.pattern = pattern
        self.answer = answer
        self.data = data


_LabelTest = Callable[[bytes], object]


def _any_label(label: bytes) -> bool:
    return True


def _label_test(label_pattern: bytes) -> _LabelTest:
    """Build the cheapest test for one wildcard label: prefix/suffix checks before a regex."""
    if label_pattern == b"*":
        return _any_label
    if label_pattern.count(b"*") == 1:
        head, tail = label_pattern.split(b"*")
        min_len = len(head) + len(tail) + 1

        def affix(label: bytes) -> bool:
            return len(label) >= min_len and label.startswith(head) and label.endswith(tail)

        return affix
    parts = [re.escape(part) for part in label_pattern.split(b"*")]
    return re.compile(b".+".join(parts), re.DOTALL).fullmatch


class _Wild:
    """A suffix whose children have wildcard rules, plus the suffix's own exact rule, if any.

    Suffixes with only an exact rule map straight to their ``BlockRule`` (no extra object per
    rule); the lookup tells the two apart by class.
    """

    __slots__ = ("rule", "wildcards")

    def __init__(self, rule: BlockRule | None) -> None:
        self.rule = rule
        # (label test, specificity, label pattern, rule), best first
        self.wildcards: tuple[tuple[_LabelTest, int, bytes, BlockRule], ...] = ()


class DomainMatcher:
    """Maps wire-format suffixes to block rules; see the module docstring for the semantics.

    One dict holds every suffix that matters, so a lookup costs one dict probe per label of the
    query name: the probe for a suffix answers both "is this suffix listed?" and "do its children
    have wildcard rules?" for the label before it.
    """

    __slots__ = ("_nodes", "_patterns")

    def __init__(self) -> None:
        self._nodes: dict[bytes, BlockRule | _Wild] = {}
        self._patterns = 0

    def __len__(self) -> int:
        return self._patterns

    def add(self, pattern: str, rule: BlockRule) -> None:
        """Add ``pattern`` (presentation form, wildcards allowed) unless it is already present.

        Raises ``BadName`` for an invalid pattern or for the root, which would block everything.
        """
        wire = from_text(pattern, allow_wildcard=True)
        if wire == b"\x00":
            raise BadName("the root '.' cannot be blocked")
        nodes = self._nodes
        first_len = wire[0]
        label = wire[1 : 1 + first_len]
        if b"*" not in label:
            current = nodes.get(wire)
            if current is None:
                nodes[wire] = rule
                self._patterns += 1
            elif isinstance(current, _Wild) and current.rule is None:
                current.rule = rule
                self._patterns += 1
            return
        parent = wire[1 + first_len :]
        holder = nodes.get(parent)
        if not isinstance(holder, _Wild):
            holder = nodes[parent] = _Wild(holder)
        if any(existing == label for _, _, existing, _ in holder.wildcards):
            return
        specificity = len(label) - label.count(b"*")
        wildcard = (_label_test(label), specificity, label, rule)
        holder.wildcards = tuple(sorted((*holder.wildcards, wildcard), key=lambda item: -item[1]))
        self._patterns += 1

    def rules(self) -> Iterator[tuple[str, BlockRule]]:
        """Every pattern (canonical text, e.g. ``*.x.com``) with its rule, for export."""
        for wire, node in self._nodes.items():
            rule = node.rule if isinstance(node, _Wild) else node
            if rule is not None:
                yield to_text(wire), rule
            if isinstance(node, _Wild):
                parent = to_text(wire)
                for _, _, label, wild_rule in node.wildcards:
                    text = label.decode("ascii")
                    yield (text if parent == "." else f"{text}.{parent}"), wild_rule

    def lookup(self, qname: bytes) -> tuple[BlockRule, int] | None:
        """Return the most specific rule covering ``qname`` and the offset of the covered zone.

        ``qname`` is lowercase wire format as sliced from a packet. ``qname[offset:]`` is the
        wire form of the blocked domain (for a wildcard: the name the wildcard matched), which a
        response builder can point at to place an SOA at the blocked zone's apex. Malformed input
        never raises; it simply stops matching where it stops making sense.
        """
        get = self._nodes.get
        end = len(qname)
        pos = 0
        node = get(qname)
        while pos < end:
            if node is not None:
                if isinstance(node, BlockRule):
                    return node, pos
                if node.rule is not None:
                    return node.rule, pos
            length = qname[pos]
            if not length:
                return None
            nxt = pos + 1 + length
            node = get(qname[nxt:])
            if isinstance(node, _Wild):
                label = qname[pos + 1 : nxt]
                for test, _, _, rule in node.wildcards:
                    if test(label):
                        return rule, pos
            pos = nxt
        return None


class Matcher(Protocol):
    """What the policy needs of a list: `DomainMatcher`, `CompiledMatcher`, `AllowFiltered`."""

    def lookup(self, qname: bytes) -> tuple[BlockRule, int] | None: ...

    def __len__(self) -> int: ...


class NetworkRules:
    """A list's RPZ address triggers (``rpz-ip`` or ``rpz-client-ip``): which rule covers an
    address. As RPZ says, the longest prefix wins; the cost is one dict lookup per distinct
    prefix length, whatever the number of rules."""

    __slots__ = ("_by_length", "count")

    def __init__(self, rules: Iterable[tuple[str, BlockRule]]) -> None:
        by_length: dict[tuple[int, int], dict[int, BlockRule]] = {}
        count = 0
        for text, rule in rules:
            net = ipaddress.ip_network(text)
            bits = net.max_prefixlen - net.prefixlen
            by_length.setdefault((net.version, bits), {})[int(net.network_address) >> bits] = rule
            count += 1
        # Longest prefix first: fewest host bits.
        self._by_length = sorted(by_length.items(), key=lambda item: item[0][1])
        self.count = count

    def __len__(self) -> int:
        return self.count

    def match(self, version: int, value: int) -> tuple[BlockRule, int] | None:
        """The rule covering the address (`version` 4 or 6, its integer `value`) and its prefix
        length, or None."""
        for (net_version, bits), table in self._by_length:
            if net_version == version:
                rule = table.get(value >> bits)
                if rule is not None:
                    return rule, (32 if version == 4 else 128) - bits
        return None
