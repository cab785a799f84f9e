"""The `rate_limit`, `privileges` and new `limits` keys: values read, mistakes located."""

from __future__ import annotations

import ipaddress

import pytest

from resolver.config import ConfigError, GroupRates, OverLimit, RateLimitConfig, parse_config

KNOWN = frozenset({"tiktok"})


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text, "test.yaml", known_lists=KNOWN)


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_rate_limit_values_are_read() -> None:
    config = parse(
        "groups:\n  officials:\n    subnets: [10.20.0.0/16]\n"
        "rate_limit:\n  rate: 50\n  burst: 100\n  upstream_rate: 0\n  action: refuse\n"
        "  ipv6_prefix: 64\n  exempt: [10.9.0.0/16]\n"
        "  groups:\n    officials: {rate: 5.5, upstream_burst: 7, client_zone_rate: 0}\n"
        "limits:\n  tcp_connections_per_client: 4\n  udp_receive_buffer: 256KiB\n"
        "  udp_queues: 3\n"
        "privileges:\n  user: dnswarden\n"
    )
    limits = config.rate_limit
    assert (limits.rate, limits.burst, limits.upstream_rate, limits.action) == (
        50.0, 100, 0.0, OverLimit.REFUSE)  # fmt: skip
    assert limits.exempt == (ipaddress.ip_network("10.9.0.0/16"),)
    assert limits.groups == (
        GroupRates("officials", rate=5.5, upstream_burst=7, client_zone_rate=0.0, line=12),
    )
    assert limits.for_group("officials") == (5.5, 100, 0.0, 7)
    assert limits.for_group("default") == (50.0, 100, 0.0, 2000)
    assert limits.client_zone_for_group("officials") == (0.0, 250)
    assert limits.client_zone_for_group("default") == (50.0, 250)
    assert (config.limits.tcp_connections_per_client, config.limits.udp_receive_buffer) == (
        4, 256 * 1024)  # fmt: skip
    assert config.limits.udp_queues == 3
    assert config.privileges.user == "dnswarden" and config.privileges.group is None


def test_defaults() -> None:
    assert parse("{}").rate_limit == RateLimitConfig()


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("rate_limit:\n  rate: -1\n", 2, "rate_limit.rate", "cannot be negative"),
        ("rate_limit:\n  rate: fast\n", 2, "rate_limit.rate", "number per second"),
        ("rate_limit:\n  burst: 0\n", 2, "rate_limit.burst", "at least 1"),
        ("rate_limit:\n  action: tarpit\n", 2, "rate_limit.action", "drop, refuse"),
        ("rate_limit:\n  ipv4_prefix: 33\n", 2, "rate_limit.ipv4_prefix", "1 to 32"),
        ("rate_limit:\n  ipv6_prefix: 0\n", 2, "rate_limit.ipv6_prefix", "1 to 128"),
        ("rate_limit:\n  exempt: [10.0.0.1/8]\n", 2, "rate_limit.exempt[0]", "host bits"),
        ("rate_limit:\n  groups:\n    ofical: {rate: 1}\n", 3, "rate_limit.groups.ofical",
         "unknown group"),
        ("rate_limit:\n  groups:\n    default: {zone_rate: 1}\n", 3,
         "rate_limit.groups.default.zone_rate", "unknown key"),
        ("rate_limit:\n  rates: 5\n", 2, "rate_limit.rates", "did you mean 'rate'"),
        ("limits:\n  udp_receive_buffer: 1KiB\n", 2, "limits.udp_receive_buffer", "64KiB"),
        ("limits:\n  udp_queues: 0\n", 2, "limits.udp_queues", "at least 1"),
        ("limits:\n  udp_queues: 65\n", 2, "limits.udp_queues", "1 to 64"),
        ("privileges:\n  user: root\n", 2, "privileges.user", "drops nothing"),
        ("privileges:\n  group: staff\n", 2, "privileges.group", "without a user"),
        ("privileges:\n  user: 'bad name'\n", 2, "privileges.user", "not a valid"),
    ],
)  # fmt: skip
def test_mistakes_name_line_and_key(text: str, line: int, key: str, fragment: str) -> None:
    found = problems(text)
    assert [(line, key)] == [(p[0], p[1]) for p in found], found
    assert fragment in found[0][2]
