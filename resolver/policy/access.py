"""Who may query: the allow-list of client networks. Everyone else is refused before any work.

A resolver that answers anyone is an open resolver, a reflection amplifier; the allow-list is the
first decision on the query path. Lookups are longest-prefix checks over per-prefix-length sets
(cost independent of the number of networks), memoised per client address because the same
devices ask again and again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_MEMO_LIMIT = 65536
"""At most this many client addresses in a per-client memo (the allow-list's here, the policy's
group lookup); a full memo is emptied at once."""


def client_address(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a client string names: zone id dropped, IPv4-mapped IPv6 as IPv4; None for
    anything that is not an address."""
    try:
        address = ipaddress.ip_address(client.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAccess:
    __slots__ = ("_memo", "_prefixes")

    def __init__(self, networks: Iterable[Network]) -> None:
        # version -> {prefix length -> set of network addresses as ints}
        self._prefixes: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for net in networks:
            by_len = self._prefixes[net.version]
            by_len.setdefault(net.prefixlen, set()).add(int(net.network_address))
        self._memo: dict[str, bool] = {}

    def allows(self, client: str) -> bool:
        allowed = self._memo.get(client)
        if allowed is None:
            if len(self._memo) >= CLIENT_MEMO_LIMIT:
                self._memo.clear()
            allowed = self._memo[client] = self._check(client)
        return allowed

    def _check(self, client: str) -> bool:
        address = client_address(client)
        if address is None:
            return False
        bits = address.max_prefixlen
        value = int(address)
        for prefixlen, networks in self._prefixes[address.version].items():
            if (value >> (bits - prefixlen) << (bits - prefixlen)) in networks:
                return True
        return False
