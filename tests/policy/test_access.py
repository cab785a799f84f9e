from __future__ import annotations

import ipaddress

import pytest

from resolver.policy.access import ClientAccess

ALLOW = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "192.168.1.0/24", "::1/128", "fc00::/7", "203.0.113.7/32")
]


@pytest.mark.parametrize(
    ("client", "allowed"),
    [
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("192.168.1.255", True),
        ("192.168.2.1", False),
        ("203.0.113.7", True),
        ("203.0.113.8", False),
        ("::1", True),
        ("::2", False),
        ("fd12:3456::1", True),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", True),  # IPv4-mapped
        ("not an address", False),
        ("", False),
    ],
)
def test_allow_list(client: str, allowed: bool) -> None:
    access = ClientAccess(ALLOW)
    assert access.allows(client) is allowed
    assert access.allows(client) is allowed  # memoised answer is the same


def test_empty_allow_list_refuses_everyone() -> None:
    assert not ClientAccess([]).allows("127.0.0.1")
