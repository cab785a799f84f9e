"""Every outcome counter in one place, so metrics and the shutdown summary read one table.

Keys are short, bounded labels (never a client address or a name): the query result
(`blocked`, `forwarded`, `refused`, `servfail`, `formerr`, `notimp`, `badvers`, `dropped`), why a
packet was malformed (`malformed.<reason>`), and what upstreams and connections did
(`upstream.<outcome>`, `tcp.<event>`, `udp.<event>`).
"""

from __future__ import annotations

from collections import Counter


class Stats:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def count(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
