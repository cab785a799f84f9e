"""Tests for resolver/config/: every problem located by line and key, values typed."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shipped import shipped_configs

from resolver.config import (
    FALLBACK_UPSTREAMS,
    AnswerMode,
    AuditConfig,
    BlockingConfig,
    CacheConfig,
    ClientsConfig,
    Config,
    ConfigError,
    ConfigProblem,
    Endpoint,
    ExemptRule,
    GroupConfig,
    InspectionConfig,
    LimitsConfig,
    ListFormat,
    ListKind,
    ListRef,
    LogConfig,
    MetricsConfig,
    MissingLists,
    PolicyConfig,
    PrivacyMode,
    SourceConfig,
    Strategy,
    UpstreamConfig,
    UpstreamServer,
    ZoneConfig,
    default_state_dir,
    default_yaml,
    load_config,
    parse_config,
    parse_datetime,
    parse_duration,
    parse_endpoint,
    parse_resolv_conf,
    parse_size,
    parse_upstream,
    resolve_upstreams,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
KNOWN = frozenset({"tiktok", "facebook"})
IPAddressType = ipaddress.IPv4Address | ipaddress.IPv6Address


def bundled_lists() -> frozenset[str]:
    """The real catalogue when it exists, so shipped configs are checked against it."""
    try:
        from resolver.lists.catalogue import catalogue_ids
    except ImportError:
        return frozenset({"tiktok"})
    return catalogue_ids()


def problems_of(text: str, **kwargs: object) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", known_lists=KNOWN, **kwargs)  # type: ignore[arg-type]
    assert all(p.source == "test.yaml" for p in info.value.problems)
    return [(p.line, p.key, p.message) for p in info.value.problems]


def parse(text: str, **kwargs: object) -> Config:
    return parse_config(text, "test.yaml", known_lists=KNOWN, **kwargs)  # type: ignore[arg-type]


def all_lists(config: Config) -> tuple[str, ...]:
    return tuple(ref.name for ref in config.list_refs)


# --- one mistake -> exactly the expected problems --------------------------------------------

BAD_CONFIGS = [
    # syntax and shape
    ("listen: [::1]\n", [(1, "(document)", "quote values")]),
    ("log:\n  level: info\n level: x\n", [(3, "(document)", "YAML syntax error")]),
    ("a: 1\n---\nb: 2\n", [(2, "(document)", "single document")]),
    ("- listen\n", [(1, "(document)", "expected a mapping, got a list")]),
    ("just text\n", [(1, "(document)", "expected a mapping, got a string")]),
    ("\n\nlog: [info]\n", [(3, "log", "expected a mapping, got a list")]),
    (
        "base: &b {level: info}\nlog:\n  <<: *b\n",
        [
            (1, "base", "unknown key"),
            (3, "log", "merge keys"),
        ],
    ),
    ("1: x\n", [(1, "(document)", "keys must be names")]),
    # unknown and duplicate keys
    ("listn: []\n", [(1, "listn", "did you mean 'listen'")]),
    ("upstreams:\n  - 10.0.0.1\n", [(1, "upstreams", "did you mean 'upstream'")]),
    ("upstream:\n  timeout: 1s\n  sever: []\n", [(3, "upstream.sever", "did you mean 'servers'")]),
    ("limits:\n  max_in_flight: 5\n", [(2, "limits.max_in_flight", "did you mean 'max_inflight'")]),
    ("log: {}\nlog: {}\n", [(2, "log", "duplicate key (first given at line 1)")]),
    ("blocking:\n  ttl: 5\n  ttl: 6\n", [(3, "blocking.ttl", "duplicate key")]),
    # listen
    ('listen: "127.0.0.1:53"\n', [(1, "listen", "expected a list, got a string")]),
    ("listen:\n", [(1, "listen", "expected a list, got nothing")]),
    ("listen: []\n", [(1, "listen", "at least one address")]),
    ("listen:\n  - 127.0.0.1:53\n  - localhost:53\n", [(3, "listen[1]", "hostname")]),
    ("listen:\n  - 127.0.0.1:53\n  - 127.0.0.1:53\n", [(3, "listen[1]", "listed twice")]),
    ("listen:\n  - '[::1]:53'\n  - '[0::1]:53'\n", [(3, "listen[1]", "listed twice")]),
    ("listen:\n  - 127.0.0.1:65536\n", [(2, "listen[0]", "outside 0-65535")]),
    ("listen:\n  - 53\n", [(2, "listen[0]", "got an integer")]),
    ("listen:\n  - [127.0.0.1]\n", [(2, "listen[0]", "expected a single value, got a list")]),
    ("listen:\n  - fe80::1%eth0\n", [(2, "listen[0]", "zone ids")]),
    # upstream
    ("upstream:\n  servers: 9.9.9.9\n", [(2, "upstream.servers", "write [9.9.9.9]")]),
    ("upstream:\n  servers:\n    - dns.quad9.net\n", [(3, "upstream.servers[0]", "hostname")]),
    ("upstream:\n  servers:\n    - 9.9.9.9:0\n", [(3, "upstream.servers[0]", "port from 1")]),
    ("upstream:\n  servers: [1.1.1.1, '1.1.1.1:53']\n", [(2, "upstream.servers[1]", "twice")]),
    ("upstream:\n  servers:\n    - 1.2.3.4.5\n", [(3, "upstream.servers[0]", "not a valid")]),
    ("upstream:\n  servers:\n    - '127.0.0.1:5353'\n", [(3, "upstream.servers[0]", "loop")]),
    (
        "listen: ['0.0.0.0:53']\nupstream:\n  servers: ['127.0.0.53']\n",
        [(3, "upstream.servers[0]", "own listeners")],
    ),
    ("upstream:\n  timeout: 0s\n", [(2, "upstream.timeout", "greater than zero")]),
    ("upstream:\n  timeout: fast\n", [(2, "upstream.timeout", "expected a duration")]),
    ("upstream:\n  timeout: -1\n", [(2, "upstream.timeout", "negative")]),
    ("upstream:\n  deadline: 1s\n", [(2, "upstream.deadline", "at least the timeout (1.5s)")]),
    (
        "upstream:\n  timeout: 3s\n  deadline: 2s\n",
        [(3, "upstream.deadline", "deadline (2s) must be at least the timeout (3s)")],
    ),
    # clients
    (
        "clients:\n  allow:\n    - 10.0.0.1/8\n",
        [(3, "clients.allow[0]", "did you mean 10.0.0.0/8?")],
    ),
    (
        "clients:\n  allow:\n    - 2001:db8::1/32\n",
        [(3, "clients.allow[0]", "did you mean 2001:db8::/32?")],
    ),
    ("clients:\n  allow:\n    - 10.0.0.0/33\n", [(3, "clients.allow[0]", "not a valid network")]),
    ("clients:\n  allow:\n    - 0.0.0.0/0\n", [(3, "clients.allow[0]", "open resolver")]),
    ("clients:\n  allow:\n    - ::/0\n", [(3, "clients.allow[0]", "open resolver")]),
    ("clients:\n  allow: []\n", [(2, "clients.allow", "every query would be refused")]),
    ("clients:\n  allow: 10.0.0.0/8\n", [(2, "clients.allow", "expected a list")]),
    ("clients:\n  allow: [10.0.0.0/8, 10.0.0.0/8]\n", [(2, "clients.allow[1]", "twice")]),
    ("clients: [10.0.0.0/8]\n", [(1, "clients", "expected a mapping, got a list")]),
    # blocking
    (
        "blocking:\n  lists:\n    - tiktk\n",
        [(3, "blocking.lists[0]", "unknown list 'tiktk': bundled lists are: facebook, tiktok")],
    ),
    ("blocking:\n  lists:\n    - tiktk\n", [(3, "blocking.lists[0]", "did you mean 'tiktok'")]),
    ("blocking:\n  lists:\n    - ./missing.txt\n", [(3, "blocking.lists[0]", "does not exist")]),
    ("blocking:\n  lists:\n    - missing.hosts\n", [(3, "blocking.lists[0]", "does not exist")]),
    ("blocking:\n  lists: [tiktok, tiktok]\n", [(2, "blocking.lists[1]", "listed twice")]),
    ("blocking:\n  lists: tiktok\n", [(2, "blocking.lists", "expected a list")]),
    ("blocking:\n  lists: ['']\n", [(2, "blocking.lists[0]", "empty list name")]),
    ("blocking:\n  answer: sinkhole\n", [(2, "blocking.answer", "unknown answer")]),
    ("blocking:\n  answer: nxdomian\n", [(2, "blocking.answer", "did you mean 'nxdomain'")]),
    ("blocking:\n  answer: ip\n", [(2, "blocking.ip", "needs at least one")]),
    ("blocking:\n  answer: ip\n  ip: []\n", [(3, "blocking.ip", "needs at least one")]),
    ("blocking:\n  ip: [10.0.0.80]\n", [(2, "blocking.ip", "answer is 'null_ip'")]),
    ("blocking:\n  answer: ip\n  ip: [nowhere]\n", [(3, "blocking.ip[0]", "hostname")]),
    ("blocking:\n  missing_lists: fail_shut\n",
     [(2, "blocking.missing_lists", "did you mean 'fail_closed'")]),
    ("blocking:\n  missing_lists: true\n",
     [(2, "blocking.missing_lists", "expected one of fail_closed, fail_open")]),
    ("blocking:\n  missing_list: fail_open\n",
     [(2, "blocking.missing_list", "did you mean 'missing_lists'")]),
    ("blocking:\n  ttl: 1.5s\n", [(2, "blocking.ttl", "whole number of seconds")]),
    ("blocking:\n  ttl: 2d\n", [(2, "blocking.ttl", "at most 86400")]),
    ("blocking:\n  ttl: -5\n", [(2, "blocking.ttl", "negative")]),
    # limits
    ("limits:\n  max_inflight: 0\n", [(2, "limits.max_inflight", "at least 1")]),
    ("limits:\n  tcp_connections: -3\n", [(2, "limits.tcp_connections", "at least 1")]),
    ("limits:\n  max_bad_lines: yes\n", [(2, "limits.max_bad_lines", "YAML reads 'yes' as true")]),
    ("limits:\n  max_inflight: 1.5\n", [(2, "limits.max_inflight", "whole number")]),
    ("limits:\n  max_inflight: '100'\n", [(2, "limits.max_inflight", "got a string")]),
    ("limits:\n  tcp_idle_timeout: 0\n", [(2, "limits.tcp_idle_timeout", "greater than zero")]),
    ("limits:\n  tcp_idle_timeout: 2001-01-01\n", [(2, "limits.tcp_idle_timeout", "timestamp")]),
    # log
    ("log:\n  level: warn\n", [(2, "log.level", "did you mean 'warning'")]),
    ("log:\n  level: 3\n", [(2, "log.level", "got an integer")]),
    ("log:\n  allowed_queries: 1\n", [(2, "log.allowed_queries", "expected true or false")]),
    ("log:\n  allowed_queries: 'no'\n", [(2, "log.allowed_queries", "got a string")]),
    ("log:\n  allowed_queries: !custom x\n", [(2, "log.allowed_queries", "unsupported value")]),
    # clients.default_group
    (
        "clients:\n  default_group: oficials\ngroups:\n  officials: {subnets: [10.0.0.0/8]}\n",
        [(2, "clients.default_group", "unknown group 'oficials'")],
    ),
    (
        "clients:\n  default_group: oficials\ngroups:\n  officials: {subnets: [10.0.0.0/8]}\n",
        [(2, "clients.default_group", "did you mean 'officials'")],
    ),
    ("clients:\n  default_group: refused\n", [(2, "clients.default_group", "'refuse'")]),
    ("clients:\n  default_group: 5\n", [(2, "clients.default_group", "got an integer")]),
    ("clients:\n  default_group: ''\n", [(2, "clients.default_group", "empty group name")]),
    # groups: shape and names
    ("groups: [officials]\n", [(1, "groups", "expected a mapping of group names")]),
    ("groups: officials\n", [(1, "groups", "expected a mapping of group names")]),
    ("groups:\n  1: {subnets: [10.0.0.0/8]}\n", [(2, "groups", "must be text, got an integer")]),
    ("groups:\n  yes: {subnets: [10.0.0.0/8]}\n", [(2, "groups", "quote it")]),
    ("groups:\n  'a b': {subnets: [10.0.0.0/8]}\n", [(2, "groups.a b", "invalid group name")]),
    (
        "groups:\n  " + "g" * 65 + ": {subnets: [10.0.0.0/8]}\n",
        [(2, "groups." + "g" * 65, "1 to 64")],
    ),
    (
        "groups:\n  a: {subnets: [10.1.0.0/16]}\n  a: {subnets: [10.2.0.0/16]}\n",
        [(3, "groups.a", "defined twice (first at line 2)")],
    ),
    ("groups:\n  <<: {a: {}}\n", [(2, "groups", "merge keys")]),
    ("groups:\n  refuse: {subnets: [10.0.0.0/8]}\n", [(2, "groups.refuse", "reserved")]),
    ("groups:\n  a: [10.0.0.0/8]\n", [(2, "groups.a", "expected a mapping, got a list")]),
    (
        "groups:\n  a:\n    subnet: [10.0.0.0/8]\n",
        [
            (2, "groups.a.subnets", "required"),
            (3, "groups.a.subnet", "did you mean 'subnets'"),
        ],
    ),
    # groups: subnets
    ("groups:\n  a: {}\n", [(2, "groups.a.subnets", "required")]),
    ("groups:\n  a:\n", [(2, "groups.a.subnets", "required")]),
    ("groups:\n  a: {subnets: []}\n", [(2, "groups.a.subnets", "at least one subnet")]),
    ("groups:\n  a: {subnets: 10.0.0.0/8}\n", [(2, "groups.a.subnets", "write [10.0.0.0/8]")]),
    (
        "groups:\n  a:\n    subnets: [10.0.0.1/8]\n",
        [(3, "groups.a.subnets[0]", "did you mean 10.0.0.0/8?")],
    ),
    (
        "groups:\n  a:\n    subnets: ['fd00:20::1/48']\n",
        [(3, "groups.a.subnets[0]", "did you mean fd00:20::/48?")],
    ),
    ("groups:\n  a:\n    subnets: [10.0.0.0/33]\n", [(3, "groups.a.subnets[0]", "not a valid")]),
    ("groups:\n  a:\n    subnets: [16]\n", [(3, "groups.a.subnets[0]", "got an integer")]),
    (
        "groups:\n  a:\n    subnets: [10.1.0.0/16, 10.1.0.0/16]\n",
        [(3, "groups.a.subnets[1]", "listed twice")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.1.0.0/16]\n"
        "  b:\n    subnets: [10.2.0.0/16, 10.1.0.0/16]\n",
        [(5, "groups.b.subnets[1]", "already in groups.a.subnets[0] (line 3)")],
    ),
    (
        "groups:\n  a:\n    subnets: ['fd00:20::/48']\n  b:\n    subnets: ['fd00:20:0::/48']\n",
        [(5, "groups.b.subnets[0]", "one group only")],
    ),
    (
        "groups:\n  default:\n    subnets: [10.1.0.0/16]\n  b:\n    subnets: [10.1.0.0/16]\n",
        [(5, "groups.b.subnets[0]", "already in groups.default.subnets[0]")],
    ),
    # groups: block and exempt
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    block: [tiktk]\n",
        [(4, "groups.a.block[0]", "did you mean 'tiktok'")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    block: [./missing.txt]\n",
        [(4, "groups.a.block[0]", "does not exist")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    block: tiktok\n",
        [(4, "groups.a.block", "expected a list")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: ['*.tiktok.com']\n",
        [(4, "groups.a.exempt[0]", "without '*.'")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: ['=']\n",
        [(4, "groups.a.exempt[0]", "empty name")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: ['.']\n",
        [(4, "groups.a.exempt[0]", "root")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: [a..b]\n",
        [(4, "groups.a.exempt[0]", "empty label")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: [ex ample.org]\n",
        [(4, "groups.a.exempt[0]", "invalid character")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: [tiktok.com, TikTok.COM.]\n",
        [(4, "groups.a.exempt[1]", "tiktok.com is listed twice")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: ['=x.org', '= X.org']\n",
        [(4, "groups.a.exempt[1]", "=x.org is listed twice")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: [1]\n",
        [(4, "groups.a.exempt[0]", "got an integer")],
    ),
    # policies: shape and required keys
    ("policies: [p]\n", [(1, "policies", "expected a mapping of policy names")]),
    (
        "policies:\n  'p!': {block: [tiktok], groups: [default]}\n",
        [(2, "policies.p!", "invalid policy name")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default]}\n"
        "  p: {block: [tiktok], groups: [default]}\n",
        [(3, "policies.p", "policy 'p' is defined twice (first at line 2)")],
    ),
    ("policies:\n  p: {groups: [default]}\n", [(2, "policies.p.block", "required")]),
    ("policies:\n  p: {block: [tiktok]}\n", [(2, "policies.p.groups", "required")]),
    (
        "policies:\n  p:\n",
        [(2, "policies.p.block", "required"), (2, "policies.p.groups", "required")],
    ),
    (
        "policies:\n  p: {block: [], groups: [default]}\n",
        [(2, "policies.p.block", "at least one list")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: []}\n",
        [(2, "policies.p.groups", "at least one group")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n    untill: 2024-01-01\n",
        [(5, "policies.p.untill", "did you mean 'until'")],
    ),
    # policies: lists and groups
    (
        "policies:\n  p:\n    block: [tiktok, tiktok]\n    groups: [default]\n",
        [(3, "policies.p.block[1]", "listed twice")],
    ),
    (
        "policies:\n  p:\n    block: [tiktk]\n    groups: [default]\n",
        [(3, "policies.p.block[0]", "unknown list 'tiktk'")],
    ),
    (
        "groups:\n  officials: {subnets: [10.0.0.0/8]}\n"
        "policies:\n  p:\n    block: [tiktok]\n    groups: [oficials]\n",
        [(6, "policies.p.groups[0]", "unknown group 'oficials'")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default, default]\n",
        [(4, "policies.p.groups[1]", "listed twice")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [refuse]\n",
        [(4, "policies.p.groups[0]", "'refuse' is not a group")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [[default]]\n",
        [(4, "policies.p.groups[0]", "expected a single value")],
    ),
    # policies: reference
    (
        "policies:\n  p: {block: [tiktok], groups: [default], reference: 2023}\n",
        [(2, "policies.p.reference", "got an integer")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], reference: ' '}\n",
        [(2, "policies.p.reference", "empty reference")],
    ),
    (
        'policies:\n  p: {block: [tiktok], groups: [default], reference: "a\\ab"}\n',
        [(2, "policies.p.reference", "control characters")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], reference: " + "x" * 1025 + "}\n",
        [(2, "policies.p.reference", "at most 1024")],
    ),
    # policies: validity window
    (
        "policies:\n  p: {block: [tiktok], groups: [default], from: tomorrow}\n",
        [(2, "policies.p.from", "expected a date such as 2023-03-10")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], from: 2023-02-30}\n",
        [(2, "policies.p.from", "day is out of range")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], until: '2023-13-01'}\n",
        [(2, "policies.p.until", "expected a date")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], from: 20230310}\n",
        [(2, "policies.p.from", "got an integer")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], from: [2023-03-10]}\n",
        [(2, "policies.p.from", "expected a single value")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n"
        "    from: 2023-09-10\n    until: 2023-03-10\n",
        [(6, "policies.p.until", "must be after from (2023-09-10T00:00:00+00:00)")],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n"
        "    from: 2023-03-10T00:00:00+01:00\n    until: 2023-03-09T23:00:00Z\n",
        [(6, "policies.p.until", "until (2023-03-09T23:00:00+00:00) must be after")],
    ),
    # policies: answer, ttl, exempt
    (
        "policies:\n  p: {block: [tiktok], groups: [default], answer: sinkhole}\n",
        [(2, "policies.p.answer", "unknown answer")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], answer: ip}\n",
        [(2, "policies.p.answer", "needs at least one address under blocking.ip")],
    ),
    (
        "blocking: {ip: [10.0.0.80]}\n"
        "policies:\n  p: {block: [tiktok], groups: [default], answer: nxdomain}\n",
        [(1, "blocking.ip", "no policy has answer: ip")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], ttl: 2d}\n",
        [(2, "policies.p.ttl", "at most 86400")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], ttl: 0.5}\n",
        [(2, "policies.p.ttl", "whole number of seconds")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], exempt: ['*.x.org']}\n",
        [(2, "policies.p.exempt[0]", "without '*.'")],
    ),
    # exempt_lists: catalogue ids only, and a catalogue id is never read as a domain
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: [tiktk]\n",
        [
            (
                4,
                "groups.a.exempt_lists[0]",
                "unknown catalogue entry 'tiktk': bundled entries are: facebook, tiktok "
                "(did you mean 'tiktok'?)",
            )
        ],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: [tiktok, tiktok]\n",
        [(4, "groups.a.exempt_lists[1]", "tiktok is listed twice")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: tiktok\n",
        [(4, "groups.a.exempt_lists", "expected a list")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: [[tiktok]]\n",
        [(4, "groups.a.exempt_lists[0]", "expected a single value")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: [tiktok.com]\n",
        [(4, "groups.a.exempt_lists[0]", "exempt_lists takes catalogue ids only")],
    ),
    (
        "sources:\n  ops: {url: 'https://x.org/l'}\n"
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt_lists: [ops]\n",
        [(6, "groups.a.exempt_lists[0]", "write the names under exempt")],
    ),
    (
        "groups:\n  a:\n    subnets: [10.0.0.0/8]\n    exempt: [example.org, TikTok]\n",
        [
            (
                4,
                "groups.a.exempt[1]",
                "'tiktok' is a catalogue entry, not a domain: to exempt every name of the entry "
                "write exempt_lists: [tiktok]",
            )
        ],
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n"
        "    exempt_lists: [facebok]\n",
        [(5, "policies.p.exempt_lists[0]", "did you mean 'facebook'")],
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default], exempt: [facebook]}\n",
        [(2, "policies.p.exempt[0]", "exempt_lists: [facebook]")],
    ),
    # metrics
    ("metrics: true\n", [(1, "metrics", "expected a mapping")]),
    ("metrics:\n  port: 9153\n", [(2, "metrics.port", "unknown key")]),
    ("metrics:\n  enabled: 'yes'\n", [(2, "metrics.enabled", "got a string")]),
    ("metrics:\n  listen: localhost:9153\n", [(2, "metrics.listen", "hostname")]),
    ("metrics:\n  listen: 9153\n", [(2, "metrics.listen", "got an integer")]),
    ("metrics:\n  listen: '127.0.0.1:99999'\n", [(2, "metrics.listen", "outside 0-65535")]),
    (
        "metrics:\n  listen: '127.0.0.1:5353'\n",
        [(2, "metrics.listen", "share a socket with DNS listener 127.0.0.1:5353 (listen[0])")],
    ),
    (
        "listen: ['127.0.0.1:53', '[::1]:9153']\nmetrics:\n  listen: '[::1]:9153'\n",
        [(3, "metrics.listen", "DNS listener [::1]:9153 (listen[1])")],
    ),
    ("listen: ['0.0.0.0:9153']\n", [(1, "metrics.listen", "DNS listener 0.0.0.0:9153")]),
    ("listen: ['[::]:9153']\n", [(1, "metrics.listen", "its own port")]),
    (
        "listen: ['10.0.0.1:53']\nmetrics: {listen: '0.0.0.0:53'}\n",
        [(2, "metrics.listen", "DNS listener 10.0.0.1:53")],
    ),
    ("metrics:\n  token_file: missing.token\n", [(2, "metrics.token_file", "does not exist")]),
    ("metrics:\n  token_file: 5\n", [(2, "metrics.token_file", "expected a file path")]),
    ("metrics:\n  token_file: ''\n", [(2, "metrics.token_file", "empty path")]),
    # audit
    ("audit: []\n", [(1, "audit", "expected a mapping")]),
    ("audit:\n  privacy: hashed\n", [(2, "audit.privacy", "unknown privacy mode 'hashed'")]),
    ("audit:\n  privacy: pseudonymize\n", [(2, "audit.privacy", "did you mean 'pseudonymise'")]),
    ("audit:\n  privacy: [raw]\n", [(2, "audit.privacy", "expected a single value")]),
    ("audit:\n  privacy: pseudonymise\n", [(2, "audit.key_file", "needs a secret")]),
    (
        "audit:\n  key_env: DNSWARDEN_AUDIT_KEY\n",
        [(2, "audit.key_env", "only used with privacy: pseudonymise (privacy is raw)")],
    ),
    (
        "audit:\n  privacy: truncate\n  key_env: K\n",
        [(3, "audit.key_env", "(privacy is truncate)")],
    ),
    (
        "audit:\n  privacy: pseudonymise\n  key_env: 'my secret'\n",
        [(3, "audit.key_env", "not an environment variable name")],
    ),
    (
        "audit:\n  privacy: pseudonymise\n  key_env: 1KEY\n",
        [(3, "audit.key_env", "not starting with a digit")],
    ),
    (
        "audit:\n  privacy: pseudonymise\n  key_file: missing.key\n",
        [(3, "audit.key_file", "key file")],
    ),
    ("audit:\n  file: /nonexistent-dnswarden-dir/a.jsonl\n", [(2, "audit.file", "directory")]),
    ("audit:\n  file: [a.jsonl]\n", [(2, "audit.file", "expected a single value")]),
    ("audit:\n  file_max_bytes: 0\n", [(2, "audit.file_max_bytes", "at least 1 byte")]),
    ("audit:\n  file_max_bytes: 10XB\n", [(2, "audit.file_max_bytes", "expected a size")]),
    ("audit:\n  file_max_bytes: -1\n", [(2, "audit.file_max_bytes", "negative")]),
    ("audit:\n  file_max_bytes: 1.5\n", [(2, "audit.file_max_bytes", "got a number")]),
    ("audit:\n  file_max_bytes: '0K'\n", [(2, "audit.file_max_bytes", "at least 1 byte")]),
    ("audit:\n  file_max_bytes: 1.0001K\n", [(2, "audit.file_max_bytes", "whole number")]),
    ("audit:\n  file_backups: 101\n", [(2, "audit.file_backups", "from 0 to 100")]),
    ("audit:\n  file_backups: -1\n", [(2, "audit.file_backups", "from 0 to 100")]),
    ("audit:\n  file_backups: '5'\n", [(2, "audit.file_backups", "got a string")]),
    ("audit:\n  fold_window: -1s\n", [(2, "audit.fold_window", "negative")]),
    ("audit:\n  fold_window: soon\n", [(2, "audit.fold_window", "expected a duration")]),
    ("audit:\n  max_events_per_second: 0\n", [(2, "audit.max_events_per_second", "at least 1")]),
    ("audit:\n  max_event_per_second: 5\n", [(2, "audit.max_event_per_second", "did you mean")]),
    # upstream: URL forms
    (
        "upstream:\n  servers: ['tls://9.9.9.9']\n",
        [(2, "upstream.servers[0]", "needs the name on the server's certificate after '#'")],
    ),
    ("upstream:\n  servers: ['tls://9.9.9.9#']\n", [(2, "upstream.servers[0]", "after '#'")]),
    (
        "upstream:\n  servers: ['udp://9.9.9.9#dns.quad9.net']\n",
        [(2, "upstream.servers[0]", "only for tls://")],
    ),
    (
        "upstream:\n  servers: ['9.9.9.9#dns.quad9.net']\n",
        [(2, "upstream.servers[0]", "write tls://9.9.9.9#dns.quad9.net")],
    ),
    (
        "upstream:\n  servers: ['https://9.9.9.9/dns-query']\n",
        [(2, "upstream.servers[0]", "DNS over HTTPS is not supported")],
    ),
    ("upstream:\n  servers: ['tsl://9.9.9.9#x.org']\n", [(2, "upstream.servers[0]", "'tls'?")]),
    (
        "upstream:\n  servers: ['tls://dns.quad9.net#dns.quad9.net']\n",
        [(2, "upstream.servers[0]", "'dns.quad9.net' is a hostname")],
    ),
    (
        "upstream:\n  servers: ['tls://9.9.9.9#bad..name']\n",
        [(2, "upstream.servers[0]", "certificate name 'bad..name': empty label")],
    ),
    (
        "upstream:\n  servers: ['tls://9.9.9.9#*.quad9.net']\n",
        [(2, "upstream.servers[0]", "wildcard")],
    ),
    ("upstream:\n  servers: ['tcp://9.9.9.9:0']\n", [(2, "upstream.servers[0]", "port from 1")]),
    ("upstream:\n  servers: ['tls://[::1']\n", [(2, "upstream.servers[0]", "after '#'")]),
    ("upstream:\n  servers: ['udp://[::1']\n", [(2, "upstream.servers[0]", "missing ']'")]),
    ("upstream:\n  servers: ['udp://']\n", [(2, "upstream.servers[0]", "empty address")]),
    (
        "upstream:\n  servers: ['9.9.9.9', 'udp://9.9.9.9:53']\n",
        [(2, "upstream.servers[1]", "udp://9.9.9.9:53 is listed twice")],
    ),
    (
        "upstream:\n  servers: ['tcp://127.0.0.1:5353']\n",
        [(2, "upstream.servers[0]", "tcp://127.0.0.1:5353 is one of dnswarden's own listeners")],
    ),
    ("upstream:\n  servers: [53]\n", [(2, "upstream.servers[0]", "expected an upstream such as")]),
    # upstream: strategy and health
    ("upstream:\n  strategy: fastet\n", [(2, "upstream.strategy", "did you mean 'fastest'")]),
    ("upstream:\n  strategy: random\n", [(2, "upstream.strategy", "unknown strategy")]),
    ("upstream:\n  strategy: [failover]\n", [(2, "upstream.strategy", "a single value")]),
    ("upstream:\n  max_fails: 0\n", [(2, "upstream.max_fails", "at least 1")]),
    ("upstream:\n  max_fails: '3'\n", [(2, "upstream.max_fails", "got a string")]),
    ("upstream:\n  probe_interval: 0s\n", [(2, "upstream.probe_interval", "greater than zero")]),
    ("upstream:\n  probe_interval: often\n", [(2, "upstream.probe_interval", "a duration")]),
    ("upstream:\n  ca_file: missing.pem\n", [(2, "upstream.ca_file", "CA file")]),
    ("upstream:\n  ca_file: [a.pem]\n", [(2, "upstream.ca_file", "expected a single value")]),
    ("upstream:\n  ca_file: ''\n", [(2, "upstream.ca_file", "empty path")]),
    # zones
    ("zones: {zone: gov.internal}\n", [(1, "zones", "expected a list, got a mapping")]),
    ("zones: gov.internal\n", [(1, "zones", "write [gov.internal]")]),
    ("zones:\n", [(1, "zones", "write [] for an empty list")]),
    ("allow:\n", [(1, "allow", "write [] for an empty list")]),
    ("zones:\n  - gov.internal\n", [(2, "zones[0]", "expected a mapping, got a string")]),
    ("zones:\n  - servers: ['10.1.1.1']\n", [(2, "zones[0].zone", "required")]),
    ("zones:\n  - zone: gov.internal\n", [(2, "zones[0].servers", "required")]),
    ("zones:\n  -\n", [(2, "zones[0].zone", "required"), (2, "zones[0].servers", "required")]),
    (
        "zones:\n  - zone: gov.internal\n    servers: []\n",
        [(3, "zones[0].servers", "at least one server")],
    ),
    (
        "zones:\n  - zone: gov.internal\n    servers: 10.1.1.1\n",
        [(3, "zones[0].servers", "write [10.1.1.1]")],
    ),
    (
        "zones:\n  - zone: '*.gov.internal'\n    servers: ['10.1.1.1']\n",
        [(2, "zones[0].zone", "covers every name below it")],
    ),
    ("zones:\n  - zone: .\n    servers: ['10.1.1.1']\n", [(2, "zones[0].zone", "the root")]),
    ("zones:\n  - zone: a..b\n    servers: ['10.1.1.1']\n", [(2, "zones[0].zone", "empty label")]),
    ("zones:\n  - zone: 5\n    servers: ['10.1.1.1']\n", [(2, "zones[0].zone", "got an integer")]),
    (
        "zones:\n  - {zone: gov.internal, servers: ['10.1.1.1']}\n"
        "  - {zone: GOV.internal., servers: ['10.1.1.2']}\n",
        [
            (
                3,
                "zones[1].zone",
                "zone gov.internal is listed twice (first as zones[0].zone, line 2)",
            )
        ],
    ),
    (
        "zones:\n  - zone: gov.internal\n    servers: ['10.1.1.1', '10.1.1.1:53']\n",
        [(3, "zones[0].servers[1]", "listed twice")],
    ),
    (
        "zones:\n  - zone: gov.internal\n    servers: ['10.1.1.1', 'tls://10.1.1.1']\n",
        [(3, "zones[0].servers[1]", "certificate")],
    ),
    (
        "zones:\n  - zone: gov.internal\n    servers: ['127.0.0.1:5353']\n",
        [(3, "zones[0].servers[0]", "own listeners")],
    ),
    (
        "zones:\n  - zone: gov.internal\n    servers: ['10.1.1.1']\n    strategy: first\n",
        [(4, "zones[0].strategy", "unknown strategy")],
    ),
    (
        "zones:\n  - zone: gov.internal\n    server: ['10.1.1.1']\n",
        [(2, "zones[0].servers", "required"), (3, "zones[0].server", "did you mean 'servers'")],
    ),
    # cache
    ("cache: true\n", [(1, "cache", "expected a mapping")]),
    ("cache:\n  enabled: 'no'\n", [(2, "cache.enabled", "got a string")]),
    ("cache:\n  max_entries: 0\n", [(2, "cache.max_entries", "at least 1")]),
    ("cache:\n  max_bytes: 1KiB\n", [(2, "cache.max_bytes", "at least 64KiB")]),
    ("cache:\n  max_bytes: 65535\n", [(2, "cache.max_bytes", "at least 64KiB")]),
    ("cache:\n  max_bytes: lots\n", [(2, "cache.max_bytes", "expected a size")]),
    ("cache:\n  min_ttl: 1.5s\n", [(2, "cache.min_ttl", "whole number of seconds")]),
    ("cache:\n  min_ttl: 2d\n", [(2, "cache.min_ttl", "at most 86400")]),
    ("cache:\n  max_ttl: 0\n", [(2, "cache.max_ttl", "at least 1s")]),
    ("cache:\n  max_ttl: 8d\n", [(2, "cache.max_ttl", "at most 604800 seconds (7d)")]),
    (
        "cache:\n  min_ttl: 1h\n  max_ttl: 10m\n",
        [(2, "cache.min_ttl", "min_ttl (3600s) must not be more than max_ttl (600s)")],
    ),
    ("cache:\n  max_ttl: 30s\n  min_ttl: 1m\n", [(3, "cache.min_ttl", "max_ttl (30s)")]),
    ("cache:\n  min_ttl: 1h\n  max_ttl: 10x\n", [(3, "cache.max_ttl", "expected a duration")]),
    ("cache:\n  negative_max_ttl: 2d\n", [(2, "cache.negative_max_ttl", "at most 86400")]),
    ("cache:\n  failure_ttl: 0s\n", [(2, "cache.failure_ttl", "RFC 9520")]),
    ("cache:\n  failure_ttl: 500ms\n", [(2, "cache.failure_ttl", "from 1s to 5m")]),
    ("cache:\n  failure_ttl: 10m\n", [(2, "cache.failure_ttl", "got 600s")]),
    ("cache:\n  serve_stale: 1\n", [(2, "cache.serve_stale", "expected true or false")]),
    ("cache:\n  stale_answer_ttl: 0\n", [(2, "cache.stale_answer_ttl", "at least 1s")]),
    ("cache:\n  stale_answer_ttl: 2d\n", [(2, "cache.stale_answer_ttl", "at most 86400")]),
    ("cache:\n  max_stale_age: 0\n", [(2, "cache.max_stale_age", "greater than zero")]),
    ("cache:\n  client_timeout: 0\n", [(2, "cache.client_timeout", "greater than zero")]),
    (
        "cache:\n  client_timeout: 4s\n",
        [(2, "cache.client_timeout", "less than upstream.deadline (4s), got 4s")],
    ),
    (
        "upstream: {deadline: 2s}\ncache:\n  client_timeout: 3s\n",
        [(3, "cache.client_timeout", "less than upstream.deadline (2s), got 3s")],
    ),
    (
        "upstream: {deadline: soon}\ncache: {client_timeout: 9s}\n",
        [(1, "upstream.deadline", "expected a duration")],
    ),
    ("cache:\n  prefech: true\n", [(2, "cache.prefech", "did you mean 'prefetch'")]),
    # inspection
    ("inspection: []\n", [(1, "inspection", "expected a mapping")]),
    ("inspection:\n  cname: 'yes'\n", [(2, "inspection.cname", "got a string")]),
    (
        "inspection:\n  response_ip: [0.0.0.0/0]\n",
        [(2, "inspection.response_ip[0]", "would block every answer")],
    ),
    ("inspection:\n  response_ip: ['::/0']\n", [(2, "inspection.response_ip[0]", "every")]),
    (
        "inspection:\n  response_ip: [10.0.0.1/8]\n",
        [(2, "inspection.response_ip[0]", "did you mean 10.0.0.0/8?")],
    ),
    ("inspection:\n  response_ip: 10.0.0.0/8\n", [(2, "inspection.response_ip", "a list")]),
    (
        "inspection:\n  response_ip: [10.0.0.0/8, 10.0.0.0/8]\n",
        [(2, "inspection.response_ip[1]", "listed twice")],
    ),
    (
        "inspection:\n  rebinding_allow: [gov.internal]\n",
        [(2, "inspection.rebinding_allow", "only used with rebinding: true")],
    ),
    (
        "inspection:\n  rebinding: false\n  rebinding_allow: [gov.internal]\n",
        [(3, "inspection.rebinding_allow", "protection is off")],
    ),
    (
        "inspection:\n  rebinding: true\n  rebinding_allow: ['*.gov.internal']\n",
        [(3, "inspection.rebinding_allow[0]", "covers every name below it")],
    ),
    (
        "inspection:\n  rebinding: true\n  rebinding_allow: [gov.internal, GOV.INTERNAL.]\n",
        [(3, "inspection.rebinding_allow[1]", "gov.internal is listed twice")],
    ),
    ("inspection:\n  rebind: true\n", [(2, "inspection.rebind", "did you mean 'rebinding'")]),
    # sources: names and shape
    ("source: {}\n", [(1, "source", "did you mean 'sources'")]),
    ("sources: [tif]\n", [(1, "sources", "expected a mapping of source names")]),
    (
        "sources:\n  'a b': {url: 'https://x.org/l'}\n",
        [(2, "sources.a b", "invalid source name")],
    ),
    (
        "sources:\n  tiktok: {url: 'https://x.org/l'}\n",
        [(2, "sources.tiktok", "'tiktok' is a bundled catalogue id")],
    ),
    (
        "sources:\n  national.txt: {url: 'https://x.org/l'}\n",
        [(2, "sources.national.txt", "would be read as a file path")],
    ),
    (
        "sources:\n  tif: {url: 'https://x.org/a'}\n  tif: {url: 'https://x.org/b'}\n",
        [(3, "sources.tif", "source 'tif' is defined twice (first at line 2)")],
    ),
    ("sources:\n  tif: {}\n", [(2, "sources.tif.url", "required: one of url")]),
    ("sources:\n  tif:\n", [(2, "sources.tif.url", "required: one of url")]),
    ("sources:\n  tif: https://x.org/l\n", [(2, "sources.tif", "expected a mapping")]),
    (
        "sources:\n  tif:\n    urls: https://x.org/l\n",
        [(2, "sources.tif.url", "required"), (3, "sources.tif.urls", "did you mean 'url'")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    path: lists/local.txt\n    dir: lists\n",
        [
            (4, "sources.tif.path", "only one of url, path or dir (url is given at line 3)"),
            (5, "sources.tif.dir", "only one of url, path or dir"),
        ],
    ),
    # sources: URLs (form only, never fetched)
    ("sources:\n  tif:\n    url: ftp://x.org/l\n", [(3, "sources.tif.url", "scheme 'ftp'")]),
    ("sources:\n  tif:\n    url: http://x.org/l\n", [(3, "sources.tif.url", "insecure: true")]),
    (
        "sources:\n  tif:\n    url: http://x.org/l\n    insecure: false\n",
        [(3, "sources.tif.url", "use https://")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    insecure: true\n",
        [(4, "sources.tif.insecure", "only permits plain http:// URLs")],
    ),
    (
        "sources:\n  tif:\n    url: http://x.org/l\n    insecure: 'yes'\n",
        [(4, "sources.tif.insecure", "got a string")],
    ),
    ("sources:\n  tif:\n    url: x.org/list.txt\n", [(3, "sources.tif.url", "is not a URL")]),
    ("sources:\n  tif:\n    url: /etc/list.txt\n", [(3, "sources.tif.url", "use path:")]),
    ("sources:\n  tif:\n    url: 'https:///list.txt'\n", [(3, "sources.tif.url", "no host")]),
    (
        "sources:\n  tif:\n    url: 'https://x.org:99999/l'\n",
        [(3, "sources.tif.url", "not a valid URL")],
    ),
    ("sources:\n  tif:\n    url: 'https://x.org:0/l'\n", [(3, "sources.tif.url", "port 0")]),
    ("sources:\n  tif:\n    url: 'https://[::1/l'\n", [(3, "sources.tif.url", "not a valid")]),
    ("sources:\n  tif:\n    url: 'https://a..b/l'\n", [(3, "sources.tif.url", "bad host")]),
    ("sources:\n  tif:\n    url: 'https://x.org/a b'\n", [(3, "sources.tif.url", "spaces")]),
    ("sources:\n  tif:\n    url: ''\n", [(3, "sources.tif.url", "empty URL")]),
    ("sources:\n  tif:\n    url: 5\n", [(3, "sources.tif.url", "expected a URL")]),
    # sources: files and settings
    ("sources:\n  tif:\n    path: ./missing.txt\n", [(3, "sources.tif.path", "does not exist")]),
    ("sources:\n  tif:\n    path: 5\n", [(3, "sources.tif.path", "expected a file path")]),
    ("sources:\n  tif:\n    dir: ./missing-dir\n", [(3, "sources.tif.dir", "does not exist")]),
    ("sources:\n  tif:\n    dir: [a]\n", [(3, "sources.tif.dir", "expected a single value")]),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    format: hostz\n",
        [(4, "sources.tif.format", "did you mean 'hosts'")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    format: csv\n",
        [(4, "sources.tif.format", "unknown format 'csv'")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    refresh: 0\n",
        [(4, "sources.tif.refresh", "greater than zero")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    timeout: -1s\n",
        [(4, "sources.tif.timeout", "negative")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_bytes: 0\n",
        [(4, "sources.tif.max_bytes", "at least 1 byte")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: 1.5\n",
        [(4, "sources.tif.max_shrink", "from 0 to 1")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: 150%\n",
        [(4, "sources.tif.max_shrink", "from 0 to 1")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: -0.1\n",
        [(4, "sources.tif.max_shrink", "from 0 to 1")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: half\n",
        [(4, "sources.tif.max_shrink", "expected a fraction")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: true\n",
        [(4, "sources.tif.max_shrink", "got a boolean")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    max_shrink: .nan\n",
        [(4, "sources.tif.max_shrink", "from 0 to 1")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    allow_tld_rules: 'true'\n",
        [(4, "sources.tif.allow_tld_rules", "expected true or false")],
    ),
    (
        "sources:\n  tif:\n    url: https://x.org/l\n    allow_tld_rules: 1\n",
        [(4, "sources.tif.allow_tld_rules", "expected true or false")],
    ),
    # references to sources, and allow
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\nblocking:\n  lists: [tf]\n",
        [
            (
                4,
                "blocking.lists[0]",
                "unknown list 'tf': bundled lists are: facebook, tiktok; sources",
            )
        ],
    ),
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\nblocking:\n  lists: [tf]\n",
        [(4, "blocking.lists[0]", "did you mean 'tif'")],
    ),
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\nblocking:\n  lists: [tif, tif]\n",
        [(4, "blocking.lists[1]", "tif is listed twice")],
    ),
    (
        "sources:\n  tif: {url: 'ftp://x.org/l'}\nblocking: {lists: [tif]}\n",
        [(2, "sources.tif.url", "unsupported scheme")],
    ),
    (
        "sources:\n  tiktok: {url: 'https://x.org/l'}\nblocking: {lists: [tiktok]}\n",
        [(2, "sources.tiktok", "bundled catalogue id")],
    ),
    ("allow: [corp]\n", [(1, "allow[0]", "unknown source 'corp'")]),
    ("allow: [tiktok]\n", [(1, "allow[0]", "allow takes names defined under sources")]),
    ("allow: corp\n", [(1, "allow", "expected a list")]),
    ("allow: [./allow.txt]\n", [(1, "allow[0]", "define a source with path:")]),
    ("allow: ['']\n", [(1, "allow[0]", "empty")]),
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\nallow: [tfi]\n",
        [(3, "allow[0]", "did you mean 'tif'")],
    ),
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\nallow: [tif, tif]\n",
        [(3, "allow[1]", "listed twice")],
    ),
    (
        "sources:\n  ok: {url: 'https://x.org/l'}\nblocking:\n  lists: [tiktok, ok]\nallow: [ok]\n",
        [(4, "blocking.lists[1]", "'ok' is an allow source (allow[0], line 5)")],
    ),
    (
        "sources:\n  ok: {url: 'https://x.org/l'}\nallow: [ok]\n"
        "policies:\n  p: {block: [ok], groups: [default]}\n",
        [(5, "policies.p.block[0]", "cannot also block")],
    ),
    # state_dir and limits
    ("state_dir: 5\n", [(1, "state_dir", "expected a directory path")]),
    ("state_dir:\n", [(1, "state_dir", "got nothing")]),
    ("state_dir: ''\n", [(1, "state_dir", "empty path")]),
    ("state_dir: '~/.state'\n", [(1, "state_dir", "'~' is not expanded")]),
    ("state_dir: [/var/lib]\n", [(1, "state_dir", "expected a single value")]),
    ("limits:\n  max_regex_rules: -1\n", [(2, "limits.max_regex_rules", "at least 0")]),
    ("limits:\n  max_regex_rules: 1.5\n", [(2, "limits.max_regex_rules", "whole number")]),
    ("limits:\n  max_regex_rule: 5\n", [(2, "limits.max_regex_rule", "'max_regex_rules'")]),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_reports_each_problem_with_line_and_key(
    text: str, expected: list[tuple[int, str, str]]
) -> None:
    got = problems_of(text)
    assert [(line, key) for line, key, _ in got] == [(line, key) for line, key, _ in expected]
    for (_, _, message), (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in message


def test_all_problems_in_a_file_are_reported_together() -> None:
    path = FIXTURES / "many_errors.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, known_lists=KNOWN)
    problems = info.value.problems
    assert [(p.line, p.key) for p in problems] == [
        (4, "listen[1]"),
        (6, "upstream.servers[0]"),
        (7, "upstream.timeout"),
        (10, "clients.allow[0]"),
        (12, "blocking.lists[0]"),
        (13, "blocking.answer"),
        (15, "limits.max_inflight"),
        (17, "log.allowed_queries"),
        (18, "loggin"),
    ]
    assert {p.source for p in problems} == {str(path)}
    marked = [
        int(line.rsplit("<- ", 1)[1].split()[0])
        for line in path.read_text().splitlines()
        if "<- " in line and not line.startswith("#")
    ]
    assert marked == [p.line for p in problems]
    assert str(info.value).splitlines() == [str(p) for p in problems]


# --- valid configs -> typed values -------------------------------------------------------------


def test_empty_and_comment_only_files_give_the_defaults() -> None:
    for text in ("", "\n", "# nothing here\n", "---\n"):
        config = parse(text)
        assert config == dataclasses.replace(Config(), source="test.yaml")


def test_defaults_match_the_documented_values() -> None:
    config = Config()
    assert [str(e) for e in config.listen] == ["127.0.0.1:5353", "[::1]:5353"]
    assert [str(n) for n in config.clients.allow] == [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    assert config.upstream == UpstreamConfig(servers=(), timeout=1.5, deadline=4.0)
    assert config.upstream == UpstreamConfig((), 1.5, 4.0, Strategy.FAILOVER, 3, 5.0, None)
    assert config.blocking == BlockingConfig(("tiktok", "doh-bypass"), AnswerMode.NULL_IP, (), 60)
    assert config.limits == LimitsConfig(10000, 1000, 10.0, 100, 100)
    assert config.limits.max_regex_rules == 1000
    assert config.log == LogConfig("info", False)
    assert config.clients.default_group == "default"
    assert (config.groups, config.policies) == ((), ())
    assert config.metrics == MetricsConfig(True, Endpoint("127.0.0.1", 9153), None)
    assert config.audit == AuditConfig(
        PrivacyMode.RAW, None, None, None, 100 * 1024 * 1024, 5, 10.0, 1000
    )
    assert config.zones == ()
    assert config.cache == CacheConfig(
        True, 100000, 64 * 1024 * 1024, 0, 86400, 3600, 5.0, True, 30, 86400.0, 1.8, True
    )
    assert config.inspection == InspectionConfig(True, (), False, ())
    assert (config.sources, config.allow) == ((), ())
    assert config.state_dir == default_state_dir()


def test_embedded_default_yaml_validates_to_the_defaults() -> None:
    config = parse_config(default_yaml(), "<default>", known_lists=bundled_lists())
    assert config == Config()
    assert load_config(None, known_lists=bundled_lists()) == Config()


def all_keys() -> list[str]:
    keys = []
    for f in dataclasses.fields(Config):
        section = getattr(Config(), f.name)
        if dataclasses.is_dataclass(section):
            keys.append(f.name)
            keys.extend(f"{f.name}.{g.name}" for g in dataclasses.fields(section))
        elif f.name != "source":
            keys.append(f.name)
    return keys


SHIPPED_YAML = pytest.mark.parametrize(
    "text",
    [default_yaml(), (REPO / "deploy" / "dnswarden.yaml").read_text()],
    ids=["embedded-default", "deploy"],
)
# Top-level keys whose default cannot be written down (it depends on the environment).
COMMENTED_TOP_LEVEL = {"state_dir"}


@SHIPPED_YAML
@pytest.mark.parametrize("key", all_keys())
def test_shipped_yaml_mentions_every_key(text: str, key: str) -> None:
    """Each key appears set or as a commented-out example, under its section."""
    name = key.rsplit(".", 1)[-1]
    indent = "  " if "." in key else ""
    pattern = rf"^{indent}(# ?)?{name}:" if indent else rf"^{name}:"
    if key in COMMENTED_TOP_LEVEL:
        pattern = rf"^(# )?{name}:"
    assert re.search(pattern, text, re.MULTILINE), key


@SHIPPED_YAML
@pytest.mark.parametrize(
    "name",
    [f.name for f in dataclasses.fields(ZoneConfig) if f.name != "line"]
    + [f.name for f in dataclasses.fields(SourceConfig) if f.name not in ("name", "line")],
)
def test_shipped_yaml_documents_zone_and_source_keys(text: str, name: str) -> None:
    """Keys of list items (zones) and named entries (sources) appear in the comments."""
    assert re.search(rf"^\s*#[\s#-]*{name}\b", text, re.MULTILINE), name


def test_deploy_example_is_among_the_shipped_configs() -> None:
    assert REPO / "deploy" / "dnswarden.yaml" in shipped_configs()


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path, known_lists=bundled_lists())
    assert config.source == str(path)


VALID = [
    ("listen: ['10.1.2.3']", lambda c: c.listen == (Endpoint("10.1.2.3", 53),)),
    (
        "listen: ['[::1]', '::2', '[::3]:99']",
        lambda c: [str(e) for e in c.listen] == ["[::1]:53", "[::2]:53", "[::3]:99"],
    ),
    ("listen: ['127.0.0.1:0']", lambda c: c.listen[0].port == 0),
    ("upstream: {servers: []}", lambda c: c.upstream.servers == ()),
    ("upstream:\n", lambda c: c.upstream == UpstreamConfig()),
    (
        "upstream: {servers: ['9.9.9.9', '[2620:fe::fe]:53']}",
        lambda c: (
            [str(e) for e in c.upstream.servers] == ["udp://9.9.9.9:53", "udp://[2620:fe::fe]:53"]
        ),
    ),
    (
        "upstream: {timeout: 500ms, deadline: 2m}",
        lambda c: (c.upstream.timeout, c.upstream.deadline) == (0.5, 120.0),
    ),
    ("upstream: {timeout: 2, deadline: 2}", lambda c: c.upstream.deadline == 2.0),
    (
        "clients: {allow: [10.1.2.3, '2001:db8::1']}",
        lambda c: (
            c.clients.allow
            == (ipaddress.ip_network("10.1.2.3/32"), ipaddress.ip_network("2001:db8::1/128"))
        ),
    ),
    (
        "clients: {allow: [10.0.0.0/8]}",
        lambda c: c.clients.allow == (ipaddress.ip_network("10.0.0.0/8"),),
    ),
    ("blocking: {lists: []}", lambda c: c.blocking.lists == ()),
    ("blocking: {lists: [facebook, tiktok]}", lambda c: c.blocking.lists == ("facebook", "tiktok")),
    (
        "blocking: {answer: ip, ip: [10.0.0.80, 'fd00::80']}",
        lambda c: (
            c.blocking.ip == (ipaddress.ip_address("10.0.0.80"), ipaddress.ip_address("fd00::80"))
        ),
    ),
    ("blocking: {answer: NXDOMAIN}", lambda c: c.blocking.answer is AnswerMode.NXDOMAIN),
    ("blocking: {}", lambda c: c.blocking.missing_lists is MissingLists.FAIL_CLOSED),
    ("blocking: {missing_lists: fail_open}",
     lambda c: c.blocking.missing_lists is MissingLists.FAIL_OPEN),
    ("blocking: {missing_lists: Fail_Closed}",
     lambda c: c.blocking.missing_lists is MissingLists.FAIL_CLOSED),
    ("blocking: {answer: refused, ip: []}", lambda c: c.blocking.answer is AnswerMode.REFUSED),
    ("blocking: {ttl: 0}", lambda c: c.blocking.ttl == 0),
    ("blocking: {ttl: 1d}", lambda c: c.blocking.ttl == 86400),
    ("blocking: {ttl: 5m}", lambda c: c.blocking.ttl == 300),
    (
        "limits: {tcp_idle_timeout: 1.5, max_bad_lines: 1}",
        lambda c: (c.limits.tcp_idle_timeout, c.limits.max_bad_lines) == (1.5, 1),
    ),
    ("log: {level: DEBUG, allowed_queries: yes}", lambda c: c.log == LogConfig("debug", True)),
    # groups and policies
    ("clients: {default_group: refuse}", lambda c: c.clients.default_group == "refuse"),
    ("clients: {default_group: default}", lambda c: c.clients.default_group == "default"),
    (
        "clients: {default_group: staff}\ngroups: {staff: {subnets: [10.0.0.0/8]}}",
        lambda c: c.clients.default_group == "staff",
    ),
    ("groups:\npolicies:", lambda c: (c.groups, c.policies) == ((), ())),
    ("groups: {default: {}}", lambda c: c.groups == (GroupConfig("default", line=1),)),
    ("groups: {default: {subnets: []}}", lambda c: c.groups[0].subnets == ()),
    (
        "groups: {a.b_c-9: {subnets: [10.1.2.3, '2001:db8::/32']}}",
        lambda c: (
            c.groups[0].name == "a.b_c-9"
            and c.groups[0].subnets
            == (ipaddress.ip_network("10.1.2.3/32"), ipaddress.ip_network("2001:db8::/32"))
        ),
    ),
    ("groups: {everyone: {subnets: [0.0.0.0/0]}}", lambda c: c.groups[0].subnets[0].prefixlen == 0),
    (
        "groups:\n  officials: {subnets: [10.20.0.0/16]}\n  press: {subnets: [10.20.5.0/24]}",
        lambda c: [(g.name, g.line) for g in c.groups] == [("officials", 2), ("press", 3)],
    ),
    (
        "groups: {a: {subnets: [10.0.0.0/8], exempt: ['=WWW.Example.org.', bücher.de, ' x.org ']}}",
        lambda c: (
            c.groups[0].exempt
            == (
                ExemptRule("www.example.org", exact=True),
                ExemptRule("xn--bcher-kva.de", exact=False),
                ExemptRule("x.org", exact=False),
            )
        ),
    ),
    (
        "groups: {a: {subnets: [10.0.0.0/8], exempt: ['=x.org', x.org]}}",
        lambda c: [str(r) for r in c.groups[0].exempt] == ["=x.org", "x.org"],
    ),
    (
        "groups: {a: {subnets: [10.0.0.0/8], block: [facebook, tiktok]}}",
        lambda c: c.groups[0].block == ("facebook", "tiktok"),
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default]}}",
        lambda c: c.policies == (PolicyConfig("p", ("tiktok",), ("default",), line=1),),
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default], answer: NXDOMAIN, ttl: 5m}}",
        lambda c: (c.policies[0].answer, c.policies[0].ttl) == (AnswerMode.NXDOMAIN, 300),
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default], ttl: 0}}",
        lambda c: c.policies[0].ttl == 0,
    ),
    (
        "policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n    reference: >\n"
        "      Decision of\n      10 March 2023\n",
        lambda c: c.policies[0].reference == "Decision of 10 March 2023",
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default], reference: 'https://example.org/d'}}",
        lambda c: c.policies[0].reference == "https://example.org/d",
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default], from: 2023-03-10, until: 2023-03-11}}",
        lambda c: c.policies[0].valid_until - c.policies[0].valid_from == timedelta(days=1),
    ),
    (
        "blocking: {ip: [10.0.0.80]}\n"
        "policies: {p: {block: [tiktok], groups: [default], answer: ip}}",
        lambda c: (c.blocking.answer, c.policies[0].answer) == (AnswerMode.NULL_IP, AnswerMode.IP),
    ),
    (
        "policies: {p: {block: [tiktok], groups: [default], exempt: ['=a.example']}}",
        lambda c: c.policies[0].exempt == (ExemptRule("a.example", exact=True),),
    ),
    (
        "policies:\n  p: {block: [tiktok], groups: [default]}\n"
        "  q: {block: [facebook], groups: [default]}",
        lambda c: [p.name for p in c.policies] == ["p", "q"],
    ),
    (
        "groups: {press: {subnets: [10.0.0.0/8], exempt_lists: [tiktok, ' facebook ']}}",
        lambda c: c.groups[0].exempt_lists == ("tiktok", "facebook") and c.groups[0].exempt == (),
    ),
    (
        "groups: {press: {subnets: [10.0.0.0/8], exempt: ['=tiktok']}}",
        lambda c: c.groups[0].exempt == (ExemptRule("tiktok", exact=True),),
    ),
    (
        "policies: {p: {block: [facebook], groups: [default], exempt_lists: [tiktok]}}",
        lambda c: c.policies[0].exempt_lists == ("tiktok",),
    ),
    (
        # An entry only exempted is still loaded (its names are the exemption), after the rest.
        "blocking: {lists: [facebook]}\n"
        "groups: {press: {subnets: [10.0.0.0/8], exempt_lists: [tiktok]}}",
        lambda c: all_lists(c) == ("facebook", "tiktok"),
    ),
    # metrics
    ("metrics: {enabled: false}", lambda c: c.metrics == MetricsConfig(enabled=False)),
    ("metrics: {listen: '[::1]'}", lambda c: str(c.metrics.listen) == "[::1]:9153"),
    ("metrics: {listen: '10.0.0.1:80'}", lambda c: str(c.metrics.listen) == "10.0.0.1:80"),
    (
        "listen: ['127.0.0.1:0']\nmetrics: {listen: '127.0.0.1:0'}",
        lambda c: c.metrics.listen.port == 0,
    ),
    (
        "listen: ['127.0.0.1:9153']\nmetrics: {enabled: false}",
        lambda c: c.metrics.enabled is False,
    ),
    ("listen: ['127.0.0.2:9153']", lambda c: str(c.metrics.listen) == "127.0.0.1:9153"),
    ("listen: ['127.0.0.1:9154']", lambda c: c.metrics.enabled),
    # audit
    ("audit: {privacy: TRUNCATE}", lambda c: c.audit.privacy is PrivacyMode.TRUNCATE),
    (
        "audit: {privacy: pseudonymise, key_env: DNSWARDEN_AUDIT_KEY}",
        lambda c: (
            (c.audit.privacy, c.audit.key_env, c.audit.key_file)
            == (PrivacyMode.PSEUDONYMISE, "DNSWARDEN_AUDIT_KEY", None)
        ),
    ),
    ("audit: {file_max_bytes: 100MiB}", lambda c: c.audit.file_max_bytes == 100 * 2**20),
    ("audit: {file_max_bytes: 4096}", lambda c: c.audit.file_max_bytes == 4096),
    ("audit: {file_max_bytes: 1.5G}", lambda c: c.audit.file_max_bytes == 1_500_000_000),
    ("audit: {file_backups: 0}", lambda c: c.audit.file_backups == 0),
    ("audit: {file_backups: 100}", lambda c: c.audit.file_backups == 100),
    ("audit: {fold_window: 0}", lambda c: c.audit.fold_window == 0.0),
    ("audit: {fold_window: 1m}", lambda c: c.audit.fold_window == 60.0),
    ("audit: {max_events_per_second: 1}", lambda c: c.audit.max_events_per_second == 1),
    # upstream URL forms, strategy, health
    (
        "upstream: {servers: ['tls://9.9.9.9#dns.quad9.net', 'tcp://[2620:fe::fe]', "
        "'udp://149.112.112.112:5353', 'TLS://[2620:FE::9]:8853#Dns.Quad9.Net.']}",
        lambda c: (
            [str(s) for s in c.upstream.servers]
            == [
                "tls://9.9.9.9:853#dns.quad9.net",
                "tcp://[2620:fe::fe]:53",
                "udp://149.112.112.112:5353",
                "tls://[2620:fe::9]:8853#dns.quad9.net",
            ]
        ),
    ),
    (
        "upstream: {servers: ['udp://9.9.9.9', 'tcp://9.9.9.9', 'tls://9.9.9.9#a.example']}",
        lambda c: [s.protocol for s in c.upstream.servers] == ["udp", "tcp", "tls"],
    ),
    (
        "upstream: {servers: ['tls://127.0.0.1:5353#localhost']}",
        lambda c: c.upstream.servers == (UpstreamServer("tls", "127.0.0.1", 5353, "localhost"),),
    ),
    (
        "upstream: {strategy: PARALLEL, max_fails: 1, probe_interval: 500ms}",
        lambda c: (
            (c.upstream.strategy, c.upstream.max_fails, c.upstream.probe_interval)
            == (Strategy.PARALLEL, 1, 0.5)
        ),
    ),
    ("upstream: {strategy: fastest}", lambda c: c.upstream.strategy is Strategy.FASTEST),
    ("upstream: {ca_file: null}", lambda c: c.upstream.ca_file is None),
    # zones
    ("zones: []", lambda c: c.zones == ()),
    (
        "upstream: {strategy: parallel}\n"
        "zones:\n"
        "  - zone: Gov.Internal.\n"
        "    servers: ['10.1.1.1', 'tls://10.1.1.2#ns.gov.internal']\n"
        "  - zone: 10.in-addr.arpa\n"
        "    servers: ['10.1.1.1']\n"
        "    strategy: fastest\n"
        "  - {zone: a.gov.internal, servers: ['tcp://[fd00::53]']}\n",
        lambda c: (
            c.zones
            == (
                ZoneConfig(
                    "gov.internal",
                    (
                        UpstreamServer("udp", "10.1.1.1", 53),
                        UpstreamServer("tls", "10.1.1.2", 853, "ns.gov.internal"),
                    ),
                    Strategy.PARALLEL,
                    3,
                ),
                ZoneConfig(
                    "10.in-addr.arpa",
                    (UpstreamServer("udp", "10.1.1.1", 53),),
                    Strategy.FASTEST,
                    5,
                ),
                ZoneConfig(
                    "a.gov.internal",
                    (UpstreamServer("tcp", "fd00::53", 53),),
                    Strategy.PARALLEL,
                    8,
                ),
            )
        ),
    ),
    (
        "zones: [{zone: bücher.de, servers: ['10.1.1.1']}]",
        lambda c: c.zones[0].zone == "xn--bcher-kva.de",
    ),
    # cache
    ("cache: {enabled: false}", lambda c: c.cache == CacheConfig(enabled=False)),
    ("cache:", lambda c: c.cache == CacheConfig()),
    (
        "cache: {max_bytes: 64KiB, max_entries: 1}",
        lambda c: (c.cache.max_bytes, c.cache.max_entries) == (65536, 1),
    ),
    ("cache: {min_ttl: 1m, max_ttl: 1m}", lambda c: (c.cache.min_ttl, c.cache.max_ttl) == (60, 60)),
    ("cache: {max_ttl: 7d}", lambda c: c.cache.max_ttl == 604800),
    ("cache: {min_ttl: 1d}", lambda c: c.cache.min_ttl == 86400),
    ("cache: {max_ttl: 30s}", lambda c: (c.cache.min_ttl, c.cache.max_ttl) == (0, 30)),
    (
        "cache: {negative_max_ttl: 0, failure_ttl: 5m, stale_answer_ttl: 1s, max_stale_age: 3d}",
        lambda c: (
            (
                c.cache.negative_max_ttl,
                c.cache.failure_ttl,
                c.cache.stale_answer_ttl,
                c.cache.max_stale_age,
            )
            == (0, 300.0, 1, 259200.0)
        ),
    ),
    ("cache: {failure_ttl: 1s}", lambda c: c.cache.failure_ttl == 1.0),
    (
        "cache: {serve_stale: false, prefetch: false}",
        lambda c: (c.cache.serve_stale, c.cache.prefetch) == (False, False),
    ),
    # client_timeout: below the deadline; left out, capped to it
    ("upstream: {timeout: 1s, deadline: 1s}", lambda c: c.cache.client_timeout == 1.0),
    ("upstream: {deadline: 1.8s}", lambda c: c.cache.client_timeout == 1.8),
    ("upstream: {deadline: 10s}", lambda c: c.cache.client_timeout == 1.8),
    (
        "upstream: {deadline: 2s}\ncache: {client_timeout: 1.9s}",
        lambda c: c.cache.client_timeout == 1.9,
    ),
    (
        "upstream: {timeout: 1s, deadline: 1s}\ncache: {client_timeout: 500ms}",
        lambda c: c.cache.client_timeout == 0.5,
    ),
    # inspection
    ("inspection:", lambda c: c.inspection == InspectionConfig()),
    (
        "inspection: {cname: false, response_ip: [192.0.2.0/24, '2001:db8::1'], "
        "rebinding: true, rebinding_allow: [Gov.Internal, 10.in-addr.arpa.]}",
        lambda c: (
            c.inspection
            == InspectionConfig(
                False,
                (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::1/128")),
                True,
                ("gov.internal", "10.in-addr.arpa"),
            )
        ),
    ),
    ("inspection: {rebinding: false, rebinding_allow: []}", lambda c: not c.inspection.rebinding),
    ("inspection: {rebinding: true}", lambda c: c.inspection.rebinding_allow == ()),
    # sources
    ("sources:", lambda c: c.sources == ()),
    ("sources: {}\nallow: []", lambda c: (c.sources, c.allow) == ((), ())),
    (
        "sources:\n  tif: {url: 'https://example.org/tif.txt'}",
        lambda c: c.sources == (SourceConfig("tif", url="https://example.org/tif.txt", line=2),),
    ),
    (
        "sources:\n  tif: {url: 'https://example.org/tif.txt'}",
        lambda c: (c.sources[0].refresh, c.sources[0].format) == (21600.0, ListFormat.AUTO),
    ),
    (
        "sources:\n  feed:\n    url: 'http://10.0.0.5:8080/l?x=1'\n    insecure: true\n"
        "    format: RPZ\n    refresh: 1h\n    timeout: 5s\n    max_bytes: 1MiB\n"
        "    max_shrink: 25%\n",
        lambda c: (
            c.sources
            == (
                SourceConfig(
                    "feed",
                    url="http://10.0.0.5:8080/l?x=1",
                    format=ListFormat.RPZ,
                    refresh=3600.0,
                    insecure=True,
                    timeout=5.0,
                    max_bytes=1 << 20,
                    max_shrink=0.25,
                    line=2,
                ),
            )
        ),
    ),
    (
        "sources: {f: {url: 'HTTPS://[::1]:8443/l'}}",
        lambda c: c.sources[0].url == "HTTPS://[::1]:8443/l",
    ),
    (
        "sources: {f: {url: 'https://x.org/l', max_shrink: 0}}",
        lambda c: c.sources[0].max_shrink == 0.0,
    ),
    (
        "sources: {f: {url: 'https://x.org/l', max_shrink: 1}}",
        lambda c: c.sources[0].max_shrink == 1.0,
    ),
    (
        "sources: {f: {url: 'https://x.org/l', max_shrink: 0%}}",
        lambda c: c.sources[0].max_shrink == 0.0,
    ),
    (
        "sources: {f: {url: 'https://x.org/l'}}",
        lambda c: c.sources[0].allow_tld_rules is False,
    ),
    (
        "sources: {f: {url: 'https://x.org/l', allow_tld_rules: true, max_shrink: 20%}}",
        lambda c: (c.sources[0].allow_tld_rules, c.sources[0].max_shrink) == (True, 0.2),
    ),
    (
        "sources: {f: {url: 'https://x.org/l', format: adblock}, g: {url: 'https://x.org/g'}}",
        lambda c: (
            [(s.name, s.format) for s in c.sources]
            == [("f", ListFormat.ADBLOCK), ("g", ListFormat.AUTO)]
        ),
    ),
    (
        "sources:\n  tif: {url: 'https://x.org/l'}\n  ok: {url: 'https://y.org/l'}\n"
        "blocking: {lists: [tiktok, tif]}\n"
        "groups: {a: {subnets: [10.0.0.0/8], block: [tif, facebook]}}\n"
        "policies: {p: {block: [tif], groups: [a]}}\n"
        "allow: [ok]",
        lambda c: (
            all_lists(c) == ("tiktok", "tif", "facebook", "ok")
            and c.allow == ("ok",)
            and c.blocking.lists == ("tiktok", "tif")
            and c.groups[0].block == ("tif", "facebook")
            and c.policies[0].block == ("tif",)
        ),
    ),
    # state_dir and limits
    ("state_dir: /var/lib/dnswarden", lambda c: c.state_dir == "/var/lib/dnswarden"),
    ("state_dir: /var/lib/../lib/dnswarden/", lambda c: c.state_dir == "/var/lib/dnswarden"),
    ("limits: {max_regex_rules: 0}", lambda c: c.limits.max_regex_rules == 0),
    ("limits: {max_regex_rules: 50}", lambda c: c.limits.max_regex_rules == 50),
]


@pytest.mark.parametrize(("text", "check"), VALID, ids=[t for t, _ in VALID])
def test_valid_snippets_parse_to_typed_values(text: str, check: object) -> None:
    config = parse(text)
    assert check(config)  # type: ignore[operator]


def test_config_values_are_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_inflight = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.audit.privacy = PrivacyMode.TRUNCATE  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PolicyConfig().valid_until = None  # type: ignore[misc]


def test_relative_list_paths_resolve_against_the_config_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(FIXTURES / "with_local_list.yaml", known_lists=KNOWN)
    assert config.blocking.lists == ("tiktok", str(FIXTURES / "lists" / "local.txt"))


@pytest.mark.parametrize("entry", ["lists/local.txt", "./lists/../lists/local.txt"])
def test_parse_config_resolves_paths_against_base_dir(entry: str) -> None:
    config = parse(f"blocking: {{lists: ['{entry}']}}", base_dir=FIXTURES)
    assert config.blocking.lists == (str(FIXTURES / "lists" / "local.txt"),)


def test_a_directory_is_not_a_list_file() -> None:
    [(line, key, message)] = problems_of("blocking:\n  lists: [lists/]\n", base_dir=FIXTURES)
    assert (line, key) == (2, "blocking.lists[0]")
    assert "not a regular file" in message


def test_absolute_list_path_is_kept(tmp_path: Path) -> None:
    listed = tmp_path / "mine.list"
    listed.write_text("example.org\n")
    assert parse(f"blocking: {{lists: ['{listed}']}}").blocking.lists == (str(listed),)


# --- load_config -------------------------------------------------------------------------------


def test_unreadable_file_is_a_problem_at_line_0(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, known_lists=KNOWN)
    [problem] = info.value.problems
    assert (problem.source, problem.line) == (str(missing), 0)
    assert "cannot read" in problem.message


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"log:\n  level: info\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, known_lists=KNOWN)
    assert [(p.line, p.message) for p in info.value.problems] == [(3, "not valid UTF-8 text")]


def test_oversized_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("#" * (1 << 20) + "\nlog: {}\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path, known_lists=KNOWN)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbflog: {level: error}\n")
    assert load_config(path, known_lists=KNOWN).log.level == "error"


# --- problems and errors -----------------------------------------------------------------------


def test_problem_and_error_text() -> None:
    a = ConfigProblem("c.yaml", 3, "upstream.servers[1]", "bad")
    b = ConfigProblem("--listen", 0, "listen[0]", "worse")
    assert str(a) == "c.yaml:3: upstream.servers[1]: bad"
    error = ConfigError([a, b])
    assert str(error) == "c.yaml:3: upstream.servers[1]: bad\n--listen:0: listen[0]: worse"
    assert pickle.loads(pickle.dumps(error)).problems == (a, b)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_config_or_config_error(text: str) -> None:
    try:
        parse(text)
    except ConfigError as e:
        assert e.problems
        assert all(p.line >= 0 for p in e.problems)


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    [(_, key, message)] = problems_of("log: " + "[" * 5000 + "]" * 5000 + "\n")
    assert key == "(document)"
    assert "too deep" in message


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        (" 10 s ", 10.0),
        ("3", 3.0),
        ("1.5", 1.5),
        (".5s", 0.5),
        (0, 0.0),
        (7, 7.0),
        (2.25, 2.25),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "expected a duration"),
        ("5x", "expected a duration"),
        ("1m30s", "expected a duration"),
        ("s", "expected a duration"),
        ("-1s", "negative"),
        (-1, "negative"),
        (True, "boolean"),
        (None, "null"),
        ([1], "list"),
        (float("nan"), "NaN"),
        (float("inf"), "too large"),
        (10**400, "too large"),
        ("9" * 400 + "s", "too large"),
    ],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "family", "shown"),
    [
        ("127.0.0.1:53", "127.0.0.1", 53, 4, "127.0.0.1:53"),
        ("127.0.0.1", "127.0.0.1", 53, 4, "127.0.0.1:53"),
        ("[::1]:5353", "::1", 5353, 6, "[::1]:5353"),
        ("[::1]", "::1", 53, 6, "[::1]:53"),
        ("::1", "::1", 53, 6, "[::1]:53"),
        ("2001:DB8:0:0::1", "2001:db8::1", 53, 6, "[2001:db8::1]:53"),
        ("  10.0.0.1:0 ", "10.0.0.1", 0, 4, "10.0.0.1:0"),
        ("10.0.0.1:65535", "10.0.0.1", 65535, 4, "10.0.0.1:65535"),
    ],
)
def test_parse_endpoint_accepts(text: str, host: str, port: int, family: int, shown: str) -> None:
    endpoint = parse_endpoint(text)
    assert (endpoint.host, endpoint.port, endpoint.family, str(endpoint)) == (
        host,
        port,
        family,
        shown,
    )


def test_parse_endpoint_default_port() -> None:
    assert parse_endpoint("10.0.0.1", default_port=5353).port == 5353
    assert parse_endpoint("10.0.0.1:53", default_port=5353).port == 53


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("localhost", "hostname"),
        ("dns.example.org:53", "hostname"),
        ("", "empty"),
        ("10.0.0.1:", "missing port"),
        ("10.0.0.1:http", "not a number"),
        ("10.0.0.1:+53", "not a number"),
        ("10.0.0.1:٥٣", "not a number"),
        ("10.0.0.1:65536", "outside"),
        ("10.0.0.1:1:2", "not a valid"),
        ("[10.0.0.1]:53", "only for IPv6"),
        ("[::1", "missing ']'"),
        ("[::1]53", "expected ':port'"),
        ("[fe80::1%eth0]:53", "zone ids"),
        ("010.0.0.1", "not a valid"),
        ("300.1.1.1", "not a valid"),
    ],
)
def test_parse_endpoint_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_endpoint(text)


def test_endpoint_normalises_and_validates() -> None:
    assert Endpoint("0:0::1", 53) == Endpoint("::1", 53)
    assert Endpoint("0:0::1", 53).host == "::1"
    with pytest.raises(ValueError):
        Endpoint("localhost", 53)
    with pytest.raises(ValueError):
        Endpoint("::1", 70000)


# --- resolv.conf and upstream choice -------------------------------------------------------------

RESOLV_CONF = """\
# generated by NetworkManager
search corp.example
nameserver 10.0.0.2
nameserver 10.0.0.2
;nameserver 10.9.9.9
#nameserver 10.8.8.8
nameserver   2001:db8::53   # trailing comment
nameserver fe80::1%eth0
nameserver not-an-ip
nameserver
options edns0 trust-ad
Nameserver 10.7.7.7
nameserver 127.0.0.53
"""


def test_parse_resolv_conf() -> None:
    assert [str(e) for e in parse_resolv_conf(RESOLV_CONF)] == [
        "10.0.0.2:53",
        "[2001:db8::53]:53",
        "127.0.0.53:53",
    ]
    assert parse_resolv_conf("") == ()


def config_with(listen: tuple[str, ...], servers: tuple[str, ...] = ()) -> Config:
    return Config(
        listen=tuple(parse_endpoint(s) for s in listen),
        upstream=UpstreamConfig(servers=tuple(parse_upstream(s) for s in servers)),
    )


@pytest.mark.parametrize(
    ("listen", "servers", "resolv", "expected"),
    [
        # configured servers win, resolv.conf ignored
        (("127.0.0.1:5353",), ("10.1.1.1",), "nameserver 10.0.0.2", ["udp://10.1.1.1:53"]),
        (
            ("127.0.0.1:5353",),
            ("tls://10.1.1.1#ns.example", "tcp://10.1.1.2"),
            "nameserver 10.0.0.2",
            ["tls://10.1.1.1:853#ns.example", "tcp://10.1.1.2:53"],
        ),
        # system resolvers in order, over UDP
        (
            ("127.0.0.1:5353",),
            (),
            "nameserver 10.0.0.2\nnameserver 10.0.0.3",
            ["udp://10.0.0.2:53", "udp://10.0.0.3:53"],
        ),
        # our own listener is skipped
        (
            ("127.0.0.1:53",),
            (),
            "nameserver 127.0.0.1\nnameserver 10.0.0.2",
            ["udp://10.0.0.2:53"],
        ),
        (("[::1]:53",), (), "nameserver ::1\nnameserver 10.0.0.2", ["udp://10.0.0.2:53"]),
        # same address, other port: not us
        (("127.0.0.1:5353",), (), "nameserver 127.0.0.1", ["udp://127.0.0.1:53"]),
        # wildcard listener on port 53 catches every loopback nameserver
        (("0.0.0.0:53",), (), "nameserver 127.0.0.53\nnameserver ::1", None),
        (("[::]:53",), (), "nameserver 127.0.0.1\nnameserver 10.0.0.2", ["udp://10.0.0.2:53"]),
        # a wildcard nameserver address means this host
        (("127.0.0.1:53",), (), "nameserver 0.0.0.0", None),
        # wildcard listener does not swallow remote nameservers
        (("0.0.0.0:53",), (), "nameserver 10.0.0.2", ["udp://10.0.0.2:53"]),
        # nothing usable -> Quad9 fallback
        (("127.0.0.1:5353",), (), "", None),
        (("127.0.0.1:5353",), (), None, None),
        (("127.0.0.1:5353",), (), "nameserver fe80::1%eth0", None),
    ],
)
def test_resolve_upstreams(
    listen: tuple[str, ...],
    servers: tuple[str, ...],
    resolv: str | None,
    expected: list[str] | None,
) -> None:
    got = resolve_upstreams(config_with(listen, servers), resolv)
    if expected is None:
        assert got == FALLBACK_UPSTREAMS
    else:
        assert [str(e) for e in got] == expected


def test_fallback_is_quad9() -> None:
    assert [str(e) for e in FALLBACK_UPSTREAMS] == ["udp://9.9.9.9:53", "udp://149.112.112.112:53"]


# --- command-line overrides --------------------------------------------------------------------


def test_overrides_replace_file_values() -> None:
    base = parse("listen: ['127.0.0.1:5353']\nupstream: {servers: [10.0.0.2], timeout: 1s}\n")
    config = with_overrides(base, listen=["127.0.0.1:0", "[::1]:0"], upstreams=["127.0.0.1:5300"])
    assert [str(e) for e in config.listen] == ["127.0.0.1:0", "[::1]:0"]
    assert [str(e) for e in config.upstream.servers] == ["udp://127.0.0.1:5300"]
    assert config.upstream.timeout == 1.0
    assert config.source == "test.yaml"


def test_no_overrides_keep_the_config() -> None:
    base = parse("upstream: {servers: [10.0.0.2]}\n")
    assert with_overrides(base) == base
    assert with_overrides(base, upstreams=["10.0.0.3"]).listen == base.listen


@pytest.mark.parametrize(
    ("listen", "upstreams", "expected"),
    [
        (["localhost:53"], [], [("--listen", "listen[0]", "hostname")]),
        (["127.0.0.1:1", "127.0.0.1:99999"], [], [("--listen", "listen[1]", "outside")]),
        (["127.0.0.1:1", "127.0.0.1:1"], [], [("--listen", "listen[1]", "twice")]),
        ([], ["dns.google"], [("--upstream", "upstream.servers[0]", "hostname")]),
        ([], ["10.0.0.1:0"], [("--upstream", "upstream.servers[0]", "port 0")]),
        (
            ["1.2.3.4.5"],
            ["10.0.0.1", "10.0.0.256"],
            [
                ("--listen", "listen[0]", "not a valid"),
                ("--upstream", "upstream.servers[1]", "not a valid"),
            ],
        ),
        ([], ["127.0.0.1:5353"], [("--upstream", "upstream.servers[0]", "loop")]),
    ],
)
def test_bad_overrides(
    listen: list[str], upstreams: list[str], expected: list[tuple[str, str, str]]
) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(Config(), listen=listen, upstreams=upstreams)
    got = info.value.problems
    assert [(p.source, p.line, p.key) for p in got] == [(s, 0, k) for s, k, _ in expected]
    for problem, (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in problem.message


def test_clients_config_default_is_the_private_ranges() -> None:
    assert ClientsConfig().allow == Config().clients.allow


# --- groups, policies and the Belgian example ------------------------------------------------

BELGIUM = REPO / "deploy" / "examples" / "belgium-2023.yaml"
BELGIAN_REFERENCE = (
    "Belgium, National Security Council decision of 10 March 2023 "
    "(TikTok on federal service devices)"
)


def line_of(path: Path, prefix: str) -> int:
    """The 1-based line of the first line starting with `prefix`, read from the file itself."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(prefix))


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def belgian_policy(path: Path) -> PolicyConfig:
    return PolicyConfig(
        name="be-tiktok-2023",
        block=("tiktok",),
        groups=("officials", "press-office"),
        reference=BELGIAN_REFERENCE,
        valid_from=datetime(2023, 3, 9, 23, 0, tzinfo=UTC),
        valid_until=datetime(2023, 9, 9, 22, 0, tzinfo=UTC),
        line=line_of(path, "  be-tiktok-2023:"),
    )


def test_belgian_example_parses_to_the_expected_groups_and_policy() -> None:
    config = load_config(BELGIUM, known_lists=bundled_lists())
    assert config.listen == (Endpoint("127.0.0.1", 5353),)
    assert config.blocking.lists == ()
    assert config.clients.default_group == "default"
    assert config.groups == (
        GroupConfig("officials", (net("10.20.0.0/16"),), line=line_of(BELGIUM, "  officials:")),
        GroupConfig(
            "press-office",
            (net("10.20.5.0/24"),),
            exempt=(ExemptRule("tiktok.com", exact=False),),
            line=line_of(BELGIUM, "  press-office:"),
        ),
        GroupConfig(
            "personal-wifi", (net("10.30.0.0/16"),), line=line_of(BELGIUM, "  personal-wifi:")
        ),
    )
    assert config.policies == (belgian_policy(BELGIUM),)
    assert all_lists(config) == ("tiktok",)


def test_deploy_config_carries_the_same_worked_example() -> None:
    path = REPO / "deploy" / "dnswarden.yaml"
    config = load_config(path, known_lists=bundled_lists())
    assert config.blocking.lists == ()
    groups = {g.name: g for g in config.groups}
    assert groups["officials"].subnets == (net("10.20.0.0/16"), net("fd00:20::/48"))
    assert groups["press-office"].subnets == (net("10.20.5.0/24"),)
    assert groups["press-office"].exempt == (ExemptRule("tiktok.com"),)
    assert groups["personal-wifi"].subnets == (net("10.30.0.0/16"),)
    assert config.policies == (belgian_policy(path),)
    assert "personal-wifi" not in config.policies[0].groups
    allowed = config.clients.allow
    for group in config.groups:
        for subnet in group.subnets:
            assert any(subnet.subnet_of(a) for a in allowed if a.version == subnet.version)


@pytest.mark.parametrize(
    ("at", "active"),
    [
        ("2023-03-09T22:59:59.999999Z", False),
        ("2023-03-10T00:00:00+01:00", True),
        ("2023-06-01T12:00:00Z", True),
        ("2023-09-09T21:59:59.999999Z", True),
        ("2023-09-10T00:00:00+02:00", False),
        ("2023-09-09T22:00:00Z", False),
        ("2024-01-01T00:00:00Z", False),
    ],
)
def test_belgian_policy_window(at: str, active: bool) -> None:
    [policy] = load_config(BELGIUM, known_lists=bundled_lists()).policies
    assert policy.active(parse_datetime(at)) is active


T0 = datetime(2023, 3, 10, tzinfo=UTC)
T1 = datetime(2023, 9, 10, tzinfo=UTC)
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "now", "active"),
    [
        (T0, T1, T0 - TICK, False),
        (T0, T1, T0, True),
        (T0, T1, T1 - TICK, True),
        (T0, T1, T1, False),
        (T0, T1, T1.astimezone(timezone(timedelta(hours=2))), False),
        (T0, T1, (T0 - TICK).astimezone(timezone(timedelta(hours=-5))), False),
        (None, T1, datetime(1970, 1, 1, tzinfo=UTC), True),
        (None, T1, T1, False),
        (T0, None, T0 - TICK, False),
        (T0, None, datetime(9999, 1, 1, tzinfo=UTC), True),
        (None, None, T0, True),
    ],
)
def test_policy_active_at_window_edges(
    valid_from: datetime | None, valid_until: datetime | None, now: datetime, active: bool
) -> None:
    policy = PolicyConfig("p", ("tiktok",), ("default",), None, valid_from, valid_until)
    assert policy.active(now) is active


@pytest.mark.parametrize(
    ("global_lists", "group_lists", "policy_lists", "expected"),
    [
        ((), (), (), ()),
        (("tiktok",), (), (), ("tiktok",)),
        ((), (("a",), ("b", "a")), (("c", "b"),), ("a", "b", "c")),
        (
            ("tiktok", "x.txt"),
            (("wechat", "tiktok"),),
            (("x.txt", "y"),),
            ("tiktok", "x.txt", "wechat", "y"),
        ),
        (("z",), (), (("y",), ("x", "z")), ("z", "y", "x")),
    ],
)
def test_all_lists_in_first_seen_order_without_duplicates(
    global_lists: tuple[str, ...],
    group_lists: tuple[tuple[str, ...], ...],
    policy_lists: tuple[tuple[str, ...], ...],
    expected: tuple[str, ...],
) -> None:
    config = Config(
        blocking=BlockingConfig(lists=global_lists),
        groups=tuple(GroupConfig(f"g{i}", block=b) for i, b in enumerate(group_lists)),
        policies=tuple(PolicyConfig(f"p{i}", block=b) for i, b in enumerate(policy_lists)),
    )
    assert all_lists(config) == expected


def test_all_lists_of_a_parsed_config_resolves_paths() -> None:
    config = parse(
        "blocking: {lists: [tiktok]}\n"
        "groups: {a: {subnets: [10.0.0.0/8], block: [lists/local.txt, facebook]}}\n"
        "policies: {p: {block: [facebook, ./lists/local.txt], groups: [a]}}\n",
        base_dir=FIXTURES,
    )
    assert all_lists(config) == ("tiktok", str(FIXTURES / "lists" / "local.txt"), "facebook")


def test_all_policy_problems_in_a_file_are_reported_together() -> None:
    path = FIXTURES / "policy_errors.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, known_lists=KNOWN)
    problems = info.value.problems
    assert [(p.line, p.key) for p in problems] == [
        (3, "clients.default_group"),
        (7, "groups.officials.subnets[0]"),
        (9, "groups.press.subnets[1]"),
        (10, "groups.press.exempt[0]"),
        (11, "groups.wifi.subnets"),
        (14, "policies.ban.groups[1]"),
        (15, "policies.ban.from"),
        (16, "policies.ban.until"),
        (17, "policies.ban.answer"),
        (19, "metrics.listen"),
        (21, "audit.key_file"),
        (22, "audit.file_backups"),
    ]
    marked = [
        int(line.rsplit("<- ", 1)[1].split()[0])
        for line in path.read_text().splitlines()
        if "<- " in line and not line.startswith("#")
    ]
    assert marked == [p.line for p in problems]


# --- times and sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2023, 3, 10), datetime(2023, 3, 10, tzinfo=UTC)),
        (datetime(2023, 3, 10, 8, 30), datetime(2023, 3, 10, 8, 30, tzinfo=UTC)),
        (
            datetime(2023, 3, 10, 8, 30, tzinfo=timezone(timedelta(hours=1))),
            datetime(2023, 3, 10, 7, 30, tzinfo=UTC),
        ),
        ("2023-03-10", datetime(2023, 3, 10, tzinfo=UTC)),
        (" 2023-03-10 ", datetime(2023, 3, 10, tzinfo=UTC)),
        ("2023-03-10T08:00:00Z", datetime(2023, 3, 10, 8, tzinfo=UTC)),
        ("2023-09-10T00:00:00+02:00", datetime(2023, 9, 9, 22, tzinfo=UTC)),
        ("2023-09-10T00:00:00-05:30", datetime(2023, 9, 10, 5, 30, tzinfo=UTC)),
        ("2023-03-10T08:00:00", datetime(2023, 3, 10, 8, tzinfo=UTC)),
        ("2023-03-10 08:00", datetime(2023, 3, 10, 8, tzinfo=UTC)),
    ],
)
def test_parse_datetime_gives_aware_utc(value: object, expected: datetime) -> None:
    got = parse_datetime(value)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("tomorrow", "expected a date"),
        ("", "expected a date"),
        ("2023-13-01", "expected a date"),
        ("10/03/2023", "expected a date"),
        (20230310, "got an integer"),
        (True, "got a boolean"),
        (None, "got nothing"),
        (datetime.min.replace(tzinfo=timezone(timedelta(hours=1))), "outside the supported"),
    ],
)
def test_parse_datetime_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_datetime(value)


YAML_TIMES = [
    ("2023-03-10", datetime(2023, 3, 10, tzinfo=UTC)),
    ("'2023-03-10'", datetime(2023, 3, 10, tzinfo=UTC)),
    ("2023-03-10T00:00:00Z", datetime(2023, 3, 10, tzinfo=UTC)),
    ("2023-03-10T00:00:00+02:00", datetime(2023, 3, 9, 22, tzinfo=UTC)),
    ('"2023-03-10T00:00:00+02:00"', datetime(2023, 3, 9, 22, tzinfo=UTC)),
    ("2023-03-10 08:00:00", datetime(2023, 3, 10, 8, tzinfo=UTC)),
    ("2023-03-10t08:00:00.5-01:00", datetime(2023, 3, 10, 9, 0, 0, 500000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "expected"), YAML_TIMES)
@pytest.mark.parametrize("key", ["from", "until"])
def test_policy_times_from_yaml(text: str, expected: datetime, key: str) -> None:
    config = parse(
        f"policies:\n  p:\n    block: [tiktok]\n    groups: [default]\n    {key}: {text}\n"
    )
    [policy] = config.policies
    got = policy.valid_from if key == "from" else policy.valid_until
    assert got == expected
    assert got is not None and got.tzinfo is UTC


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_parse_datetime_round_trips_iso_text(moment: datetime) -> None:
    if moment.utcoffset() is None:
        return
    # Compare with the instant the text names: a zone's local time inside a DST gap (which
    # hypothesis does generate) is not one instant, but its ISO text with an offset is.
    text = moment.isoformat()
    assert parse_datetime(text) == datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("100B", 100),
        ("1K", 1000),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("1kib", 1024),
        ("100MiB", 100 * 1024**2),
        ("100 M", 100_000_000),
        ("2G", 2_000_000_000),
        ("1GiB", 1024**3),
        ("1.5K", 1500),
        ("0.5KiB", 512),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "expected a size"),
        ("MiB", "expected a size"),
        ("10 XB", "expected a size"),
        ("1T", "expected a size"),
        ("-1K", "expected a size"),
        (-1, "negative"),
        (1.5, "got a number"),
        (True, "got a boolean"),
        (None, "got nothing"),
        ("1.0001K", "whole number"),
        ("9" * 30 + "GiB", "too large"),
        (10**20, "too large"),
    ],
)
def test_parse_size_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_size(value)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["K", "KiB", "M", "MiB"]))
def test_parse_size_multiplies_by_the_unit(number: int, unit: str) -> None:
    factor = {"K": 1000, "KiB": 1024, "M": 1000**2, "MiB": 1024**2}[unit]
    assert parse_size(f"{number}{unit}") == number * factor


# --- files named by metrics and audit ----------------------------------------------------------


def test_token_file_path_is_stored_not_the_token(tmp_path: Path) -> None:
    (tmp_path / "metrics.token").write_text("  s3cret-t0ken\n")
    config = parse("metrics: {token_file: metrics.token}", base_dir=tmp_path)
    assert config.metrics.token_file == str(tmp_path / "metrics.token")
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "is empty"),
        (b" \n\t\n", "is empty"),
        (b"two words\n", "without spaces"),
        (b"line1\nline2\n", "one line"),
        (b"caf\xc3\xa9\n", "printable ASCII"),
        (b"x" * 5000, "larger than 4096 bytes"),
    ],
)
def test_unusable_token_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "t").write_bytes(content)
    [(line, key, message)] = problems_of("metrics:\n  token_file: t\n", base_dir=tmp_path)
    assert (line, key) == (2, "metrics.token_file")
    assert fragment in message


def test_token_file_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    [(line, key, message)] = problems_of("metrics: {token_file: d}\n", base_dir=tmp_path)
    assert (line, key) == (1, "metrics.token_file")
    assert "not a regular file" in message


def test_key_file_is_resolved_and_must_not_be_empty(tmp_path: Path) -> None:
    (tmp_path / "audit.key").write_bytes(b"k" * 32)
    (tmp_path / "empty.key").write_bytes(b"")
    text = "audit: {privacy: pseudonymise, key_file: %s}\n"
    config = parse(text % "audit.key", base_dir=tmp_path)
    assert config.audit.key_file == str(tmp_path / "audit.key")
    assert config.audit.key_env is None
    [(line, key, message)] = problems_of(text % "empty.key", base_dir=tmp_path)
    assert (line, key) == (1, "audit.key_file")
    assert "is empty" in message


def test_key_file_and_key_env_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "audit.key").write_bytes(b"k" * 32)
    text = "audit:\n  privacy: pseudonymise\n  key_file: audit.key\n  key_env: KEY\n"
    [(line, key, message)] = problems_of(text, base_dir=tmp_path)
    assert (line, key) == (4, "audit.key_env")
    assert "not both" in message


def test_audit_file_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    config = parse("audit: {file: logs/audit.jsonl}", base_dir=tmp_path)
    assert config.audit.file == str(tmp_path / "logs" / "audit.jsonl")
    [(line, key, message)] = problems_of("audit: {file: logs}", base_dir=tmp_path)
    assert (line, key) == (1, "audit.file")
    assert "is a directory" in message
    [(line, key, message)] = problems_of("audit: {file: nope/a.jsonl}", base_dir=tmp_path)
    assert "does not exist" in message


# --- metrics endpoint and command-line overrides ----------------------------------------------


@pytest.mark.parametrize(
    ("listen", "metrics", "clash"),
    [
        (["127.0.0.1:9153"], "", True),
        (["127.0.0.1:9153"], "metrics: {enabled: false}\n", False),
        (["127.0.0.1:9154"], "", False),
        (["0.0.0.0:9153"], "", True),
        (["[::]:9153"], "", True),
        (["[::1]:9153"], "", False),
        (["127.0.0.1:0"], "metrics: {listen: '127.0.0.1:0'}\n", False),
    ],
)
def test_listen_override_is_checked_against_metrics(
    listen: list[str], metrics: str, clash: bool
) -> None:
    base = parse("listen: ['127.0.0.1:5353']\n" + metrics)
    if not clash:
        assert [str(e) for e in with_overrides(base, listen=listen).listen] == [
            str(parse_endpoint(text)) for text in listen
        ]
        return
    with pytest.raises(ConfigError) as info:
        with_overrides(base, listen=listen)
    [problem] = info.value.problems
    assert (problem.source, problem.line, problem.key) == ("--listen", 0, "metrics.listen")
    assert "own port" in problem.message


def test_group_name_refuse_is_not_defined_by_a_reserved_group() -> None:
    problems = problems_of(
        "clients: {default_group: refuse}\ngroups: {refuse: {subnets: [10.0.0.0/8]}}\n"
    )
    assert [(line, key) for line, key, _ in problems] == [(2, "groups.refuse")]


def test_a_group_with_bad_settings_is_still_a_known_name() -> None:
    """One mistake, one problem: references to a broken group are not reported again."""
    problems = problems_of(
        "clients: {default_group: a}\n"
        "groups:\n  a: {subnets: [10.0.0.1/8]}\n"
        "policies:\n  p: {block: [tiktok], groups: [a]}\n"
    )
    assert [(line, key) for line, key, _ in problems] == [(3, "groups.a.subnets[0]")]


def test_new_dataclasses_default_to_the_documented_values() -> None:
    assert GroupConfig() == GroupConfig("", (), (), (), 0)
    assert PolicyConfig().active(T0)
    assert (PolicyConfig().answer, PolicyConfig().ttl, PolicyConfig().reference) == (
        None,
        None,
        None,
    )
    assert str(ExemptRule("x.org", exact=True)) == "=x.org"
    assert str(ExemptRule("x.org")) == "x.org"


# --- upstream servers: URL forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "protocol", "host", "port", "tls_name", "shown"),
    [
        ("9.9.9.9", "udp", "9.9.9.9", 53, None, "udp://9.9.9.9:53"),
        ("9.9.9.9:5353", "udp", "9.9.9.9", 5353, None, "udp://9.9.9.9:5353"),
        ("[2620:fe::fe]", "udp", "2620:fe::fe", 53, None, "udp://[2620:fe::fe]:53"),
        ("2620:FE::FE", "udp", "2620:fe::fe", 53, None, "udp://[2620:fe::fe]:53"),
        ("udp://9.9.9.9", "udp", "9.9.9.9", 53, None, "udp://9.9.9.9:53"),
        ("UDP://9.9.9.9:53", "udp", "9.9.9.9", 53, None, "udp://9.9.9.9:53"),
        ("tcp://[2620:fe::fe]:53", "tcp", "2620:fe::fe", 53, None, "tcp://[2620:fe::fe]:53"),
        ("tcp://2620:fe::fe", "tcp", "2620:fe::fe", 53, None, "tcp://[2620:fe::fe]:53"),
        ("tls://9.9.9.9#dns.quad9.net", "tls", "9.9.9.9", 853, "dns.quad9.net", None),
        ("tls://9.9.9.9:853#dns.quad9.net", "tls", "9.9.9.9", 853, "dns.quad9.net", None),
        ("tls://9.9.9.9:8853#DNS.Quad9.NET.", "tls", "9.9.9.9", 8853, "dns.quad9.net", None),
        ("tls://[2620:fe::fe]#dns.quad9.net", "tls", "2620:fe::fe", 853, "dns.quad9.net", None),
        ("tls://1.1.1.1#1.1.1.1", "tls", "1.1.1.1", 853, "1.1.1.1", "tls://1.1.1.1:853#1.1.1.1"),
        ("tls://[::1]:853#0:0::1", "tls", "::1", 853, "::1", "tls://[::1]:853#::1"),
        ("tls://10.0.0.1# ns.gov.internal ", "tls", "10.0.0.1", 853, "ns.gov.internal", None),
        ("  tls://10.0.0.1#ns.bücher.de  ", "tls", "10.0.0.1", 853, "ns.xn--bcher-kva.de", None),
    ],
)
def test_parse_upstream_accepts(
    text: str, protocol: str, host: str, port: int, tls_name: str | None, shown: str | None
) -> None:
    server = parse_upstream(text)
    assert (server.protocol, server.host, server.port, server.tls_name) == (
        protocol,
        host,
        port,
        tls_name,
    )
    if shown is None:
        bracketed = f"[{host}]" if ":" in host else host
        shown = f"{protocol}://{bracketed}:{port}" + (f"#{tls_name}" if tls_name else "")
    assert str(server) == shown
    assert parse_upstream(str(server)) == server
    assert server.endpoint == Endpoint(host, port)
    assert server.family == (6 if ":" in host else 4)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty address"),
        ("dns.quad9.net", "hostname"),
        ("tls://9.9.9.9", "needs the name on the server's certificate"),
        ("tls://9.9.9.9# ", "needs the name"),
        ("tls://9.9.9.9#a..b", "empty label"),
        ("tls://9.9.9.9#.", "the root is not a server name"),
        ("tls://9.9.9.9#*.quad9.net", "wildcard"),
        ("tls://9.9.9.9#a b", "invalid character"),
        ("udp://9.9.9.9#dns.quad9.net", "only for tls://"),
        ("tcp://9.9.9.9:53#dns.quad9.net", "only for tls://"),
        ("9.9.9.9#dns.quad9.net", "write tls://9.9.9.9#dns.quad9.net"),
        ("https://9.9.9.9/dns-query", "DNS over HTTPS is not supported"),
        ("quic://9.9.9.9", "unknown scheme 'quic'"),
        ("://9.9.9.9", "unknown scheme ''"),
        ("udp://9.9.9.9:99999", "outside 0-65535"),
        ("udp://9.9.9.9:53/", "not a number"),
        ("tcp://[fe80::1%eth0]:53", "zone ids"),
        ("tls://dns.google#dns.google", "hostname"),
        ("udp://", "empty address"),
    ],
)
def test_parse_upstream_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_upstream(text)


@pytest.mark.parametrize("value", [None, 53, ["9.9.9.9"]])
def test_parse_upstream_rejects_non_text(value: object) -> None:
    with pytest.raises(ValueError, match="expected an upstream such as"):
        parse_upstream(value)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["udp", "tcp", "tls"]),
    st.ip_addresses(),
    st.integers(min_value=1, max_value=65535),
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
)
def test_upstream_server_text_round_trips(
    protocol: str, address: IPAddressType, port: int, name: str
) -> None:
    server = UpstreamServer(protocol, str(address), port, name if protocol == "tls" else None)
    assert parse_upstream(str(server)) == server


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("doh", "9.9.9.9", 443), "protocol must be"),
        (("tls", "9.9.9.9", 853), "certificate name is required"),
        (("udp", "9.9.9.9", 53, "dns.quad9.net"), "only for tls"),
        (("udp", "dns.quad9.net", 53), "does not appear to be an IPv4 or IPv6 address"),
        (("udp", "9.9.9.9", 65536), "outside 0-65535"),
        (("tls", "9.9.9.9", 853, "a..b"), "empty label"),
    ],
)
def test_upstream_server_validates_on_construction(args: tuple[object, ...], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        UpstreamServer(*args)  # type: ignore[arg-type]


def test_upstream_server_normalises() -> None:
    server = UpstreamServer("tls", "2620:00fe:0::fe", 853, "DNS.Quad9.net.")
    assert (server.host, server.tls_name) == ("2620:fe::fe", "dns.quad9.net")
    assert server == parse_upstream("tls://[2620:fe::fe]#dns.quad9.net")
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.port = 53  # type: ignore[misc]


# --- upstream.ca_file -------------------------------------------------------------------------

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_ca_file_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"# bundle\n" + PEM + PEM)
    config = parse("upstream: {ca_file: ca.pem}", base_dir=tmp_path)
    assert config.upstream.ca_file == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "holds no PEM certificate"),
        (b"\x30\x82\x01\x0a", "holds no PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "no PEM certificate"),
        (PEM + b"#" * (16 << 20), "larger than"),
    ],
)
def test_unusable_ca_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "ca.pem").write_bytes(content)
    [(line, key, message)] = problems_of("upstream:\n  ca_file: ca.pem\n", base_dir=tmp_path)
    assert (line, key) == (2, "upstream.ca_file")
    assert fragment in message


def test_ca_file_must_be_a_regular_file(tmp_path: Path) -> None:
    [(line, key, message)] = problems_of("upstream: {ca_file: .}\n", base_dir=tmp_path)
    assert (line, key) == (1, "upstream.ca_file")
    assert "not a regular file" in message


# --- list sources on disk, state_dir ----------------------------------------------------------


def test_path_and_dir_sources_resolve_against_the_config_directory() -> None:
    config = parse(
        "sources:\n"
        "  national: {path: lists/local.txt, format: domains}\n"
        "  feeds: {dir: ./lists/, refresh: 1m}\n"
        "blocking: {lists: [national, feeds]}\n",
        base_dir=FIXTURES,
    )
    national, feeds = config.sources
    assert national == SourceConfig(
        "national",
        path=str(FIXTURES / "lists" / "local.txt"),
        format=ListFormat.DOMAINS,
        refresh=10.0,
        line=2,
    )
    assert (feeds.url, feeds.path, feeds.dir) == (None, None, str(FIXTURES / "lists"))
    assert (feeds.refresh, feeds.location) == (60.0, str(FIXTURES / "lists"))
    assert national.location == str(FIXTURES / "lists" / "local.txt")
    assert all_lists(config) == ("national", "feeds")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources:\n  a:\n    path: lists\n", [(3, "sources.a.path", "not a regular file")]),
        ("sources:\n  a:\n    dir: lists/local.txt\n", [(3, "sources.a.dir", "use path:")]),
        (
            "sources:\n  a:\n    dir: lists\n    timeout: 5s\n",
            [(4, "sources.a.timeout", "only used with url (this source is a dir)")],
        ),
        (
            "sources:\n  a:\n    path: lists/local.txt\n    insecure: true\n",
            [(4, "sources.a.insecure", "only used with url (this source is a path)")],
        ),
        (
            "sources:\n  a:\n    path: lists/local.txt\n    url: http://x.org/l\n",
            [(4, "sources.a.url", "(path is given at line 3)")],
        ),
        ("state_dir: lists/local.txt\n", [(1, "state_dir", "is not a directory")]),
    ],
)
def test_source_files_and_state_dir_are_checked(
    text: str, expected: list[tuple[int, str, str]]
) -> None:
    got = problems_of(text, base_dir=FIXTURES)
    assert [(line, key) for line, key, _ in got] == [(line, key) for line, key, _ in expected]
    for (_, _, message), (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("state", "state"),
        ("./state/../state2", "state2"),
        ("lists", "lists"),
        ("/var/lib/dnswarden", "/var/lib/dnswarden"),
    ],
)
def test_state_dir_is_stored_absolute_and_need_not_exist(value: str, expected: str) -> None:
    config = parse(f"state_dir: {value}\n", base_dir=FIXTURES)
    assert config.state_dir == str(FIXTURES / expected)
    assert not (FIXTURES / "state").exists()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}, "/x/state/dnswarden"),
        ({"XDG_STATE_HOME": "", "HOME": "/home/u"}, "/home/u/.local/state/dnswarden"),
        ({"XDG_STATE_HOME": "relative/state", "HOME": "/home/u"}, "/home/u/.local/state/dnswarden"),
        ({"HOME": "/root"}, "/root/.local/state/dnswarden"),
    ],
)
def test_default_state_dir_follows_xdg(environ: dict[str, str], expected: str) -> None:
    assert default_state_dir(environ) == expected


def test_state_dir_default_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert parse("").state_dir == str(tmp_path / "dnswarden")
    assert Config().state_dir == str(tmp_path / "dnswarden")


def test_list_source_finds_sources_by_name() -> None:
    config = parse(
        "sources:\n  tif: {url: 'https://x.org/tif'}\n  ok: {url: 'https://x.org/ok'}\n"
        "allow: [ok]\n"
    )
    source = config.list_source("tif")
    assert source is not None
    assert source.url == "https://x.org/tif"
    assert config.list_source("ok") == config.sources[1]
    assert config.list_source("tiktok") is None
    assert config.list_source("missing") is None
    assert Config().list_source("tif") is None


def test_all_lists_ends_with_the_allow_sources() -> None:
    config = Config(
        blocking=BlockingConfig(lists=("tiktok", "a")),
        groups=(GroupConfig("g", block=("b", "a")),),
        allow=("c", "d"),
    )
    assert all_lists(config) == ("tiktok", "a", "b", "c", "d")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tiktok", ListKind.CATALOGUE),
        ("feed", ListKind.SOURCE),
        ("/etc/dnswarden/ops", ListKind.FILE),
        ("ops.txt", ListKind.FILE),
        ("ops.hosts", ListKind.FILE),
        ("ops.list", ListKind.FILE),
        ("ops.conf", ListKind.FILE),
        ("ops.rpz", ListKind.CATALOGUE),
    ],
)
def test_list_refs_tell_catalogue_ids_sources_and_files_apart(name: str, kind: ListKind) -> None:
    feed = SourceConfig("feed", url="https://x.org/feed")
    config = Config(blocking=BlockingConfig(lists=(name,)), sources=(feed,))
    assert config.list_refs == (ListRef(name, kind, feed if kind is ListKind.SOURCE else None),)


def test_list_refs_of_a_parsed_config_carry_kind_and_source() -> None:
    config = parse(
        "sources:\n  national: {path: lists/local.txt}\n  ok: {url: 'https://x.org/ok'}\n"
        "blocking: {lists: [tiktok, national, lists/local.txt]}\n"
        "groups: {a: {subnets: [10.0.0.0/8], block: [national, facebook]}}\n"
        "allow: [ok]\n",
        base_dir=FIXTURES,
    )
    national, ok = config.sources
    assert config.list_refs == (
        ListRef("tiktok", ListKind.CATALOGUE),
        ListRef("national", ListKind.SOURCE, national),
        ListRef(str(FIXTURES / "lists" / "local.txt"), ListKind.FILE),
        ListRef("facebook", ListKind.CATALOGUE),
        ListRef("ok", ListKind.SOURCE, ok),
    )


def test_new_section_dataclasses_default_to_the_documented_values() -> None:
    assert ZoneConfig() == ZoneConfig("", (), Strategy.FAILOVER, 0)
    assert SourceConfig() == SourceConfig(
        "", None, None, None, ListFormat.AUTO, 21600.0, False, 30.0, 256 << 20, 0.5, 0
    )
    assert SourceConfig().location == ""
    assert [f.value for f in ListFormat] == ["auto", "domains", "hosts", "adblock", "rpz", "regex"]
    assert [s.value for s in Strategy] == ["failover", "fastest", "parallel"]


def test_all_cache_and_source_problems_in_a_file_are_reported_together() -> None:
    path = FIXTURES / "cache_sources_errors.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, known_lists=KNOWN)
    problems = info.value.problems
    assert [(p.line, p.key) for p in problems] == [
        (4, "upstream.servers[1]"),
        (5, "upstream.servers[2]"),
        (6, "upstream.strategy"),
        (8, "zones[0].zone"),
        (11, "zones[1].servers[0]"),
        (13, "cache.max_bytes"),
        (14, "cache.client_timeout"),
        (16, "inspection.response_ip[0]"),
        (19, "sources.tiktok"),
        (22, "sources.feed.url"),
        (24, "sources.local.path"),
        (26, "blocking.lists[1]"),
        (27, "allow[0]"),
        (29, "limits.max_regex_rules"),
    ]
    marked = [
        int(line.rsplit("<- ", 1)[1].split()[0])
        for line in path.read_text().splitlines()
        if "<- " in line and not line.startswith("#")
    ]
    assert marked == [p.line for p in problems]


# --- command-line overrides with upstream URLs -------------------------------------------------


def test_upstream_override_accepts_url_forms() -> None:
    base = parse("upstream: {servers: [10.0.0.2], strategy: fastest}\n")
    config = with_overrides(
        base, upstreams=["tls://127.0.0.1:8853#localhost", "tcp://[::1]:5300", "127.0.0.1:5301"]
    )
    assert [str(s) for s in config.upstream.servers] == [
        "tls://127.0.0.1:8853#localhost",
        "tcp://[::1]:5300",
        "udp://127.0.0.1:5301",
    ]
    assert config.upstream.strategy is Strategy.FASTEST


@pytest.mark.parametrize(
    ("upstreams", "expected"),
    [
        (["tls://10.0.0.1"], [("upstream.servers[0]", "certificate")]),
        (["udp://10.0.0.1", "10.0.0.1:53"], [("upstream.servers[1]", "given twice")]),
        (["tcp://10.0.0.1:0"], [("upstream.servers[0]", "port 0")]),
        (["tcp://127.0.0.1:5353"], [("upstream.servers[0]", "loop")]),
    ],
)
def test_bad_upstream_url_overrides(upstreams: list[str], expected: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(Config(), upstreams=upstreams)
    got = info.value.problems
    assert [(p.source, p.key) for p in got] == [("--upstream", k) for k, _ in expected]
    for problem, (_, fragment) in zip(got, expected, strict=True):
        assert fragment in problem.message


def test_tls_upstream_on_a_listener_address_is_not_a_loop() -> None:
    config = with_overrides(Config(), upstreams=["tls://127.0.0.1:5353#localhost"])
    assert config.upstream.servers[0].protocol == "tls"


def test_listen_override_is_checked_against_zone_servers() -> None:
    base = parse("zones:\n  - {zone: gov.internal, servers: ['10.0.0.1', '127.0.0.1:5300']}\n")
    with pytest.raises(ConfigError) as info:
        with_overrides(base, listen=["127.0.0.1:5300"])
    [problem] = info.value.problems
    assert (problem.source, problem.key) == ("--listen", "zones[0].servers[1]")
    assert "own listeners" in problem.message
    assert with_overrides(base, listen=["127.0.0.1:5301"]).zones == base.zones


@pytest.mark.parametrize(
    ("text", "expected"), [("workers: 4", 4), ("workers: auto", "auto"), ("", 1)]
)
def test_workers_key(text: str, expected: int | str) -> None:
    assert parse_config(text, "w.yaml", known_lists=frozenset({"tiktok"})).workers == expected


@pytest.mark.parametrize("value", ["0", "257", "many", "true", "2.5"])
def test_workers_key_rejects(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"workers: {value}\n", "w.yaml", known_lists=frozenset({"tiktok"}))
    (problem,) = raised.value.problems
    assert (problem.line, problem.key) == (1, "workers")
