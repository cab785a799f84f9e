"""Tests for resolver/config.py: every problem located by line and key, values typed."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import (
    DEFAULT_CONFIG_YAML,
    FALLBACK_UPSTREAMS,
    AnswerMode,
    BlockingConfig,
    ClientsConfig,
    Config,
    ConfigError,
    ConfigProblem,
    Endpoint,
    LimitsConfig,
    LogConfig,
    UpstreamConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_endpoint,
    parse_resolv_conf,
    resolve_upstreams,
    with_overrides,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "config"
KNOWN = frozenset({"tiktok", "facebook"})


def bundled_lists() -> frozenset[str]:
    """The real catalogue when it exists, so shipped configs are checked against it."""
    try:
        from resolver.catalogue import catalogue_ids
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
    assert config.blocking == BlockingConfig(("tiktok",), AnswerMode.NULL_IP, (), 60)
    assert config.limits == LimitsConfig(10000, 1000, 10.0, 100, 100)
    assert config.log == LogConfig("info", False)


def test_embedded_default_yaml_validates_to_the_defaults() -> None:
    config = parse_config(DEFAULT_CONFIG_YAML, "<default>", known_lists=bundled_lists())
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


@pytest.mark.parametrize(
    "text", [DEFAULT_CONFIG_YAML, (REPO / "deploy" / "dnswarden.yaml").read_text()]
)
@pytest.mark.parametrize("key", all_keys())
def test_shipped_yaml_mentions_every_key(text: str, key: str) -> None:
    """Each key appears set or as a commented-out example, under its section."""
    name = key.rsplit(".", 1)[-1]
    indent = "  " if "." in key else ""
    pattern = rf"^{indent}(# ?)?{name}:" if indent else rf"^{name}:"
    assert re.search(pattern, text, re.MULTILINE), key


def shipped_configs() -> list[Path]:
    configs = []
    for path in sorted((REPO / "deploy").rglob("*.yaml")):
        tree = yaml.safe_load(path.read_text())
        if isinstance(tree, dict) and {"listen", "upstream", "blocking"} & set(tree):
            configs.append(path)
    return configs


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
        lambda c: [str(e) for e in c.upstream.servers] == ["9.9.9.9:53", "[2620:fe::fe]:53"],
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
    ("blocking: {answer: refused, ip: []}", lambda c: c.blocking.answer is AnswerMode.REFUSED),
    ("blocking: {ttl: 0}", lambda c: c.blocking.ttl == 0),
    ("blocking: {ttl: 1d}", lambda c: c.blocking.ttl == 86400),
    ("blocking: {ttl: 5m}", lambda c: c.blocking.ttl == 300),
    (
        "limits: {tcp_idle_timeout: 1.5, max_bad_lines: 1}",
        lambda c: (c.limits.tcp_idle_timeout, c.limits.max_bad_lines) == (1.5, 1),
    ),
    ("log: {level: DEBUG, allowed_queries: yes}", lambda c: c.log == LogConfig("debug", True)),
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
        upstream=UpstreamConfig(servers=tuple(parse_endpoint(s) for s in servers)),
    )


@pytest.mark.parametrize(
    ("listen", "servers", "resolv", "expected"),
    [
        # configured servers win, resolv.conf ignored
        (("127.0.0.1:5353",), ("10.1.1.1",), "nameserver 10.0.0.2", ["10.1.1.1:53"]),
        # system resolvers in order
        (
            ("127.0.0.1:5353",),
            (),
            "nameserver 10.0.0.2\nnameserver 10.0.0.3",
            ["10.0.0.2:53", "10.0.0.3:53"],
        ),
        # our own listener is skipped
        (("127.0.0.1:53",), (), "nameserver 127.0.0.1\nnameserver 10.0.0.2", ["10.0.0.2:53"]),
        (("[::1]:53",), (), "nameserver ::1\nnameserver 10.0.0.2", ["10.0.0.2:53"]),
        # same address, other port: not us
        (("127.0.0.1:5353",), (), "nameserver 127.0.0.1", ["127.0.0.1:53"]),
        # wildcard listener on port 53 catches every loopback nameserver
        (("0.0.0.0:53",), (), "nameserver 127.0.0.53\nnameserver ::1", None),
        (("[::]:53",), (), "nameserver 127.0.0.1\nnameserver 10.0.0.2", ["10.0.0.2:53"]),
        # a wildcard nameserver address means this host
        (("127.0.0.1:53",), (), "nameserver 0.0.0.0", None),
        # wildcard listener does not swallow remote nameservers
        (("0.0.0.0:53",), (), "nameserver 10.0.0.2", ["10.0.0.2:53"]),
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
    assert [str(e) for e in FALLBACK_UPSTREAMS] == ["9.9.9.9:53", "149.112.112.112:53"]


# --- command-line overrides --------------------------------------------------------------------


def test_overrides_replace_file_values() -> None:
    base = parse("listen: ['127.0.0.1:5353']\nupstream: {servers: [10.0.0.2], timeout: 1s}\n")
    config = with_overrides(base, listen=["127.0.0.1:0", "[::1]:0"], upstreams=["127.0.0.1:5300"])
    assert [str(e) for e in config.listen] == ["127.0.0.1:0", "[::1]:0"]
    assert [str(e) for e in config.upstream.servers] == ["127.0.0.1:5300"]
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
