"""Configuration: YAML text in, frozen dataclasses out, every problem reported at once.

The parser works on PyYAML's node graph (`yaml.compose`) rather than on constructed Python
objects, because only nodes remember where they came from: every problem an operator sees names
the file, the 1-based line and the dotted key path, as `dnswarden check` prints them.  Unknown
keys are errors (a typo must never silently fall back to a default on a blocking resolver), and
all problems are collected before raising so one `check` run shows everything to fix.

Apart from `load_config` (which reads the file) and the existence check of local list files,
nothing here does I/O.  Library code raises `ConfigError`; only the CLI prints and exits.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SOURCE = "<default>"
MAX_CONFIG_BYTES = 1 << 20
MAX_TTL = 86400
LOG_LEVELS = ("debug", "info", "warning", "error")
LIST_FILE_SUFFIXES = (".txt", ".hosts", ".list", ".conf")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration, located precisely enough to fix without guessing."""

    source: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so the operator fixes them all in one round."""

    problems: tuple[ConfigProblem, ...]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and port; never a hostname, so finding upstreams never needs DNS."""

    host: str
    port: int

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.host)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(f"IPv6 zone ids are not supported: {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"port must be an int, got {type(self.port).__name__}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0-65535")
        object.__setattr__(self, "host", address.compressed)

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.host).version

    def __str__(self) -> str:
        if self.family == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


class AnswerMode(enum.Enum):
    NULL_IP = "null_ip"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFUSED = "refused"
    IP = "ip"


DEFAULT_ALLOW: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
DEFAULT_LISTEN: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 5353), Endpoint("::1", 5353))
FALLBACK_UPSTREAMS: tuple[Endpoint, ...] = (
    Endpoint("9.9.9.9", 53),
    Endpoint("149.112.112.112", 53),
)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    servers: tuple[Endpoint, ...] = ()
    timeout: float = 1.5
    deadline: float = 4.0


@dataclass(frozen=True, slots=True)
class ClientsConfig:
    allow: tuple[IPNetwork, ...] = DEFAULT_ALLOW


@dataclass(frozen=True, slots=True)
class BlockingConfig:
    lists: tuple[str, ...] = ("tiktok",)
    answer: AnswerMode = AnswerMode.NULL_IP
    ip: tuple[IPAddress, ...] = ()
    ttl: int = 60


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_inflight: int = 10000
    tcp_connections: int = 1000
    tcp_idle_timeout: float = 10.0
    tcp_inflight_per_connection: int = 100
    max_bad_lines: int = 100


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    allowed_queries: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    source: str = DEFAULT_SOURCE
    listen: tuple[Endpoint, ...] = DEFAULT_LISTEN
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)


DEFAULT_CONFIG_YAML = """\
# dnswarden built-in default configuration.
# Used when no -c FILE is given. It is safe anywhere: it listens on loopback only.
# Every key is optional; a key left out takes the value shown here.
# Durations accept 1.5s, 500ms, 2m, 6h, 1d, or a bare number of seconds.

# Addresses to answer DNS on, each served over UDP and TCP. IP addresses only;
# quote IPv6 ones and put them in brackets to give a port.
listen:
  - "127.0.0.1:5353"
  - "[::1]:5353"

upstream:
  # Resolvers to forward allowed queries to, tried in order (IP[:port], port 53 by
  # default). Omitted or empty: the nameservers in /etc/resolv.conf, minus any that
  # is one of our own listeners; if none remain, Quad9 (9.9.9.9, 149.112.112.112).
  # servers: ["9.9.9.9:53", "149.112.112.112:53"]
  timeout: 1.5s     # wait for one upstream before trying the next
  deadline: 4s      # total time for one query across all upstreams (>= timeout)

clients:
  # Networks allowed to query; everyone else gets REFUSED (EDE 18) and nothing is
  # forwarded, so dnswarden is never an open resolver.
  allow:
    - 127.0.0.0/8
    - ::1/128
    - 10.0.0.0/8
    - 172.16.0.0/12
    - 192.168.0.0/16
    - fc00::/7

blocking:
  # Bundled catalogue ids (e.g. tiktok) or paths to local list files (relative
  # paths are relative to the config file's directory).
  lists: [tiktok]
  # What a blocked name gets: null_ip (A 0.0.0.0, AAAA ::), nxdomain, nodata,
  # refused, or ip (the addresses listed under ip, e.g. a walled-garden page).
  answer: null_ip
  ip: []
  # How long devices may cache a block; short, so lifting a ban reaches them fast.
  ttl: 60s

limits:
  max_inflight: 10000                 # upstream queries in flight, all clients together
  tcp_connections: 1000               # open client TCP connections
  tcp_idle_timeout: 10s               # close a client TCP connection idle this long
  tcp_inflight_per_connection: 100    # pipelined queries answered at once per connection
  max_bad_lines: 100                  # invalid lines reported per list before it is refused

log:
  level: info              # debug, info, warning or error
  allowed_queries: false   # also log every allowed (forwarded) query
"""


# ---------------------------------------------------------------------------------------------
# Value parsers (public, also used by the CLI and tests)

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_HINT = "a duration such as 1.5s, 500ms, 2m, 6h, 1d or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds from `1.5s`, `500ms`, `2m`, `6h`, `1d` or a plain number; never negative."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {_DURATION_HINT}, got {_describe(value)}")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative: {value!r}")
        match = _DURATION_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"duration {value!r} is too large") from None
    if math.isnan(seconds):
        raise ValueError("a duration cannot be NaN")
    if math.isinf(seconds):
        raise ValueError(f"duration {value!r} is too large")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def parse_endpoint(text: str, *, default_port: int = 53) -> Endpoint:
    """Parse `IP`, `IP:port`, `[IPv6]`, `[IPv6]:port` or bare IPv6 (which has no port).

    Hostnames are refused on purpose: a resolver that needed DNS to find its upstreams or its
    own listening address would depend on itself.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an address such as 127.0.0.1:53, got {_describe(text)}")
    s = text.strip()
    if not s:
        raise ValueError("empty address")
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        if not rest:
            port = default_port
        elif rest.startswith(":"):
            port = _parse_port(rest[1:], text)
        else:
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        address = _parse_host(host)
        if address.version != 6:
            raise ValueError(f"{text!r}: brackets are only for IPv6 addresses")
    elif s.count(":") >= 2:
        address, port = _parse_host(s), default_port
    elif ":" in s:
        host, port_text = s.split(":")
        address, port = _parse_host(host), _parse_port(port_text, text)
    else:
        address, port = _parse_host(s), default_port
    return Endpoint(address.compressed, port)


def _parse_host(host: str) -> IPAddress:
    if "%" in host:
        raise ValueError(f"{host!r}: IPv6 zone ids (%interface) are not supported")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", host) and re.search(r"[A-Za-z]", host):
        raise ValueError(
            f"{host!r} is a hostname; use an IP address (a resolver must not need DNS "
            "to find its own listeners or upstreams)"
        )
    raise ValueError(f"{host!r} is not a valid IPv4 or IPv6 address")


def _parse_port(port_text: str, whole: str) -> int:
    if not port_text:
        raise ValueError(f"{whole!r}: missing port number after ':'")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError(f"{whole!r}: port {port_text!r} is not a number from 0 to 65535")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{whole!r}: port {port} is outside 0-65535")
    return port


def parse_resolv_conf(text: str) -> tuple[Endpoint, ...]:
    """Nameservers from resolv.conf text, port 53, in order, duplicates and junk dropped.

    Link-local addresses with a zone id (`fe80::1%eth0`) are skipped: an `Endpoint` carries no
    interface, so we could not reach them correctly.
    """
    found: list[Endpoint] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver" or "%" in fields[1]:
            continue
        try:
            endpoint = Endpoint(ipaddress.ip_address(fields[1]).compressed, 53)
        except ValueError:
            continue
        if endpoint not in found:
            found.append(endpoint)
    return tuple(found)


def resolve_upstreams(config: Config, resolv_conf_text: str | None) -> tuple[Endpoint, ...]:
    """The upstreams to use: configured ones, else the system's (minus ourselves), else Quad9.

    Dropping our own listeners matters when dnswarden is itself the system resolver: forwarding
    to ourselves would loop until the deadline on every query.
    """
    if config.upstream.servers:
        return config.upstream.servers
    system = parse_resolv_conf(resolv_conf_text or "")
    remaining = tuple(ns for ns in system if not _is_own_listener(ns, config.listen))
    return remaining or FALLBACK_UPSTREAMS


def _is_own_listener(server: Endpoint, listeners: Iterable[Endpoint]) -> bool:
    """True when packets sent to `server` would reach one of `listeners` on this host."""
    server_ip = _unmap(ipaddress.ip_address(server.host))
    local = server_ip.is_loopback or server_ip.is_unspecified
    for listener in listeners:
        if listener.port != server.port or listener.port == 0:
            continue
        listener_ip = _unmap(ipaddress.ip_address(listener.host))
        if listener_ip == server_ip:
            return True
        if local and (listener_ip.is_unspecified or server_ip.is_unspecified):
            return True
    return False


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# ---------------------------------------------------------------------------------------------
# Loading


def default_config() -> Config:
    """The embedded default configuration, parsed like any file so it is validated too."""
    return parse_config(DEFAULT_CONFIG_YAML, DEFAULT_SOURCE)


def load_config(path: str | Path | None, *, known_lists: frozenset[str] | None = None) -> Config:
    """Read and parse a config file; `None` means the embedded default.

    Reading is bounded (a config is small; a path to a device or a huge file must not hang or
    exhaust memory) and a file that cannot be read is reported like any other problem.
    """
    if path is None:
        return parse_config(DEFAULT_CONFIG_YAML, DEFAULT_SOURCE, known_lists=known_lists)
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            [ConfigProblem(source, 0, "(file)", f"cannot read: {e.strerror or e}")]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigProblem(source, 0, "(file)", f"larger than {MAX_CONFIG_BYTES} bytes")]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(source, line, "(file)", "not valid UTF-8 text")]) from None
    base_dir = Path(path).absolute().parent
    return parse_config(text, source, base_dir=base_dir, known_lists=known_lists)


def with_overrides(
    config: Config, *, listen: Sequence[str] = (), upstreams: Sequence[str] = ()
) -> Config:
    """Apply `--listen`/`--upstream` command-line values, which replace the file's values."""
    problems: list[ConfigProblem] = []
    new_listen = config.listen
    new_servers = config.upstream.servers
    if listen:
        new_listen = _override_endpoints("--listen", "listen", listen, 0, problems)
    if upstreams:
        new_servers = _override_endpoints("--upstream", "upstream.servers", upstreams, 1, problems)
    if not problems:
        for i, server in enumerate(new_servers):
            if _is_own_listener(server, new_listen):
                source = "--upstream" if upstreams else ("--listen" if listen else config.source)
                problems.append(
                    ConfigProblem(source, 0, f"upstream.servers[{i}]", _loop_message(server))
                )
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(
        config,
        listen=new_listen,
        upstream=dataclasses.replace(config.upstream, servers=new_servers),
    )


def _override_endpoints(
    source: str, key: str, values: Sequence[str], min_port: int, problems: list[ConfigProblem]
) -> tuple[Endpoint, ...]:
    endpoints: list[Endpoint] = []
    for i, text in enumerate(values):
        try:
            endpoint = parse_endpoint(text)
        except ValueError as e:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", str(e)))
            continue
        if endpoint.port < min_port:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", "port 0 is not allowed here"))
        elif endpoint in endpoints:
            problems.append(ConfigProblem(source, 0, f"{key}[{i}]", f"{endpoint} given twice"))
        else:
            endpoints.append(endpoint)
    return tuple(endpoints)


def _loop_message(server: Endpoint) -> str:
    return f"{server} is one of dnswarden's own listeners; forwarding to it would loop"


# ---------------------------------------------------------------------------------------------
# Parsing: YAML nodes -> values, collecting problems

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "bool", "int", "float", "null")}
_MISSING = object()


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _describe_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == f"{_TAG}bool":
        return f"a boolean ({node.value!r} is a boolean in YAML; quote it for text)"
    if node.tag == f"{_TAG}null":
        return "nothing (null)"
    if node.tag == f"{_TAG}int":
        return "an integer"
    if node.tag == f"{_TAG}float":
        return "a number"
    if node.tag == f"{_TAG}str":
        return "a string"
    return f"a value tagged {node.tag}"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


Entries: TypeAlias = dict[str, tuple[Node, Node]]


class _Item(NamedTuple):
    key: str
    node: Node
    value: Any


class _Parser:
    """Walks the node graph of one document; every check appends to `problems`."""

    def __init__(
        self, source: str, base_dir: Path | None, known_lists: frozenset[str] | None
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self._known_lists = known_lists
        self.problems: list[ConfigProblem] = []
        self._constructor = SafeConstructor()

    def problem(self, where: Node | int, key: str, message: str) -> None:
        line = where if isinstance(where, int) else where.start_mark.line + 1
        self.problems.append(ConfigProblem(self.source, line, key, message))

    @property
    def known_lists(self) -> frozenset[str]:
        if self._known_lists is None:
            from resolver.catalogue import catalogue_ids

            self._known_lists = catalogue_ids()
        return self._known_lists

    # --- structure -------------------------------------------------------------------------

    def compose(self, text: str) -> Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else 0
            what = " ".join(p for p in (e.context, e.problem) if p)
            hint = ""
            if e.problem and "':'" in e.problem:
                hint = ' (quote values that contain ":", e.g. "[::1]:5353" or "::1")'
            self.problem(line, "(document)", f"YAML syntax error: {what}{hint}")
        except yaml.reader.ReaderError as e:
            line = text[: e.position].count("\n") + 1
            self.problem(line, "(document)", f"YAML syntax error: {e.reason}")
        except yaml.YAMLError as e:
            self.problem(0, "(document)", f"YAML error: {e}")
        except RecursionError:
            self.problem(0, "(document)", "YAML nesting is too deep")
        return None

    def mapping(self, node: Node | None, path: str, known: Sequence[str]) -> Entries | None:
        """Check a mapping's keys (types, duplicates, unknown names); `None` value = empty."""
        if node is None or self.is_null(node):
            return {}
        label = path or "(document)"
        if not isinstance(node, MappingNode):
            self.problem(node, label, f"expected a mapping, got {_describe_node(node)}")
            return None
        if node.tag != f"{_TAG}map":
            self.problem(node, label, f"unsupported YAML tag {node.tag}")
            return None
        entries: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                self.problem(key_node, label, "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != f"{_TAG}str":
                self.problem(key_node, label, f"keys must be names, got {_describe_node(key_node)}")
                continue
            name = key_node.value
            key = _join(path, name)
            if name in entries:
                first = entries[name][0].start_mark.line + 1
                self.problem(key_node, key, f"duplicate key (first given at line {first})")
                continue
            if name not in known:
                self.problem(key_node, key, f"unknown key{_suggest(name, known)}")
                continue
            entries[name] = (key_node, value_node)
        return entries

    def sequence(self, node: Node, key: str) -> list[Node] | None:
        if isinstance(node, SequenceNode) and node.tag == f"{_TAG}seq":
            return list(node.value)
        got = _describe_node(node)
        if isinstance(node, ScalarNode) and node.tag == f"{_TAG}str":
            got += f" (write [{node.value}] for a one-item list)"
        elif self.is_null(node):
            got += "; write [] for an empty list, or remove the key for the default"
        self.problem(node, key, f"expected a list, got {got}")
        return None

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == f"{_TAG}null"

    def scalar(self, node: Node, key: str) -> object:
        """The node's Python value, or `_MISSING` (with a problem) if it is not a plain scalar."""
        if not isinstance(node, ScalarNode):
            self.problem(node, key, f"expected a single value, got {_describe_node(node)}")
            return _MISSING
        if node.tag not in _SCALAR_TAGS:
            self.problem(node, key, f"unsupported value {node.value!r} ({node.tag})")
            return _MISSING
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            self.problem(node, key, f"cannot read value {node.value!r}: {e}")
            return _MISSING

    def convert(self, node: Node, key: str, convert: Callable[[Any], Any]) -> Any:
        """Apply `convert` (which raises ValueError) to a scalar node; `_MISSING` when bad."""
        raw = self.scalar(node, key)
        if raw is _MISSING:
            return _MISSING
        try:
            return convert(raw)
        except ValueError as e:
            message = str(e)
            if node.tag == f"{_TAG}bool" and node.value.lower() not in ("true", "false"):
                message += f" (YAML reads {node.value!r} as {str(raw).lower()})"
            self.problem(node, key, message)
            return _MISSING

    def value(
        self, entries: Entries, name: str, path: str, convert: Callable[[Any], Any], default: Any
    ) -> Any:
        """Entry `name` converted, `default` when absent, `_MISSING` when bad (problem noted)."""
        if name not in entries:
            return default
        return self.convert(entries[name][1], _join(path, name), convert)

    def items(
        self,
        entries: Entries,
        name: str,
        path: str,
        convert: Callable[[Any], Any],
        *,
        empty: str | None = None,
    ) -> list[_Item] | None:
        """The good items of list entry `name`; `None` when absent or not a list.

        Bad items are reported and left out, so checks across items (duplicates) still run on
        the rest.  `empty`, when given, is the problem to report for an empty list.
        """
        if name not in entries:
            return None
        key = _join(path, name)
        node = entries[name][1]
        nodes = self.sequence(node, key)
        if nodes is None:
            return None
        if not nodes and empty is not None:
            self.problem(node, key, empty)
        good: list[_Item] = []
        for i, item_node in enumerate(nodes):
            item_key = f"{key}[{i}]"
            value = self.convert(item_node, item_key, convert)
            if value is not _MISSING:
                good.append(_Item(item_key, item_node, value))
        return good

    def unique(self, items: list[_Item]) -> list[_Item]:
        """Items whose value was not seen before; each repeat is reported where it stands."""
        seen: dict[Any, _Item] = {}
        for item in items:
            first = seen.get(item.value)
            if first is None:
                seen[item.value] = item
            else:
                line = first.node.start_mark.line + 1
                self.problem(
                    item.node,
                    item.key,
                    f"{item.value} is listed twice (first as {first.key}, line {line})",
                )
        return list(seen.values())

    # --- sections --------------------------------------------------------------------------
    # Each section returns its dataclass with defaults standing in for bad values; the result
    # is only used when no problem at all was found.  Checks across keys run only when every
    # value they compare is valid, so one mistake is never reported twice.

    def config(self, root: Node | None) -> Config | None:
        sections = [f.name for f in dataclasses.fields(Config) if f.name != "source"]
        top = self.mapping(root, "", sections)
        if top is None:
            return None
        listen = self.listen(top)
        upstream, server_items = self.upstream(top)
        if listen is not None:
            for item in server_items:
                if _is_own_listener(item.value, listen):
                    self.problem(item.node, item.key, _loop_message(item.value))
        config = Config(
            source=self.source,
            listen=listen or DEFAULT_LISTEN,
            upstream=upstream,
            clients=self.clients(top),
            blocking=self.blocking(top),
            limits=self.limits(top),
            log=self.log(top),
        )
        return None if self.problems else config

    def section(self, top: Entries, name: str, cls: type) -> Entries:
        node = top[name][1] if name in top else None
        entries = self.mapping(node, name, [f.name for f in dataclasses.fields(cls)])
        return entries if entries is not None else {}

    def listen(self, top: Entries) -> tuple[Endpoint, ...] | None:
        """Listeners, `None` when the list itself is unusable (then loop checks are skipped)."""
        if "listen" not in top:
            return DEFAULT_LISTEN
        items = self.items(
            top, "listen", "", _endpoint_text, empty="at least one address is required"
        )
        if items is None:
            return None
        return tuple(item.value for item in self.unique(items))

    def upstream(self, top: Entries) -> tuple[UpstreamConfig, list[_Item]]:
        entries = self.section(top, "upstream", UpstreamConfig)
        path = "upstream"
        defaults = UpstreamConfig()
        items = self.items(entries, "servers", path, _endpoint_text) or []
        for item in items:
            if item.value.port == 0:
                self.problem(item.node, item.key, "an upstream needs a port from 1 to 65535")
        items = self.unique([item for item in items if item.value.port != 0])
        timeout = self.value(entries, "timeout", path, _positive_duration, defaults.timeout)
        deadline = self.value(entries, "deadline", path, _positive_duration, defaults.deadline)
        if _MISSING not in (timeout, deadline) and deadline < timeout:
            where = entries.get("deadline") or entries["timeout"]
            self.problem(
                where[1],
                f"{path}.deadline",
                f"the deadline ({deadline:g}s) must be at least the timeout ({timeout:g}s)",
            )
        config = UpstreamConfig(
            servers=tuple(item.value for item in items),
            timeout=defaults.timeout if timeout is _MISSING else timeout,
            deadline=defaults.deadline if deadline is _MISSING else deadline,
        )
        return config, items

    def clients(self, top: Entries) -> ClientsConfig:
        entries = self.section(top, "clients", ClientsConfig)
        items = self.items(
            entries,
            "allow",
            "clients",
            _client_network,
            empty="empty: every query would be refused; list at least one network",
        )
        if items is None:
            return ClientsConfig()
        return ClientsConfig(tuple(item.value for item in self.unique(items)))

    def blocking(self, top: Entries) -> BlockingConfig:
        entries = self.section(top, "blocking", BlockingConfig)
        path = "blocking"
        defaults = BlockingConfig()
        lists = defaults.lists
        items = self.items(entries, "lists", path, _nonempty_text)
        if items is not None:
            resolved = [item._replace(value=self.list_entry(item)) for item in items]
            lists = tuple(
                item.value for item in self.unique([i for i in resolved if i.value is not None])
            )
        answer = self.value(entries, "answer", path, _answer_mode, defaults.answer)
        ips: tuple[IPAddress, ...] = ()
        ips_valid = True
        if "ip" in entries:
            ip_items = self.items(entries, "ip", path, _sinkhole_address)
            ips = tuple(item.value for item in self.unique(ip_items or []))
            ips_valid = ip_items is not None and len(ip_items) == len(entries["ip"][1].value)
        if answer is not _MISSING and ips_valid:
            if ips and answer is not AnswerMode.IP:
                self.problem(
                    entries["ip"][1],
                    f"{path}.ip",
                    f"addresses given but answer is {answer.value!r}; "
                    "set answer: ip to use them, or remove them",
                )
            if answer is AnswerMode.IP and not ips:
                where = entries.get("ip") or entries["answer"]
                self.problem(
                    where[1],
                    f"{path}.ip",
                    "answer: ip needs at least one IPv4 or IPv6 address under blocking.ip",
                )
        ttl = self.value(entries, "ttl", path, _ttl, defaults.ttl)
        return BlockingConfig(
            lists=lists,
            answer=defaults.answer if answer is _MISSING else answer,
            ip=ips,
            ttl=defaults.ttl if ttl is _MISSING else ttl,
        )

    def list_entry(self, item: _Item) -> str | None:
        """A catalogue id stays as is; a path becomes absolute and must name an existing file."""
        name: str = item.value
        if not ("/" in name or name.endswith(LIST_FILE_SUFFIXES)):
            known = self.known_lists
            if name in known:
                return name
            bundled = ", ".join(sorted(known)) or "(none)"
            self.problem(
                item.node,
                item.key,
                f"unknown list {name!r}: bundled lists are: {bundled}{_suggest(name, known)}; "
                "a local file needs a '/' in its path or a .txt/.hosts/.list/.conf name",
            )
            return None
        base = self.base_dir if self.base_dir is not None else Path.cwd()
        full = Path(os.path.normpath(base / name))
        if not full.exists():
            self.problem(item.node, item.key, f"list file {str(full)!r} does not exist")
            return None
        if not full.is_file():
            self.problem(item.node, item.key, f"list file {str(full)!r} is not a regular file")
            return None
        return str(full)

    def limits(self, top: Entries) -> LimitsConfig:
        entries = self.section(top, "limits", LimitsConfig)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(LimitsConfig):
            convert = _positive_duration if isinstance(f.default, float) else _positive_int
            value = self.value(entries, f.name, "limits", convert, f.default)
            if value is not _MISSING:
                values[f.name] = value
        return LimitsConfig(**values)

    def log(self, top: Entries) -> LogConfig:
        entries = self.section(top, "log", LogConfig)
        defaults = LogConfig()
        level = self.value(entries, "level", "log", _log_level, defaults.level)
        queries = self.value(
            entries, "allowed_queries", "log", _strict_bool, defaults.allowed_queries
        )
        return LogConfig(
            level=defaults.level if level is _MISSING else level,
            allowed_queries=defaults.allowed_queries if queries is _MISSING else queries,
        )


def _endpoint_text(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f'expected an address such as "127.0.0.1:53", got {_describe(raw)}')
    return parse_endpoint(raw)


def _nonempty_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a list name or file path, got {_describe(raw)}")
    if not raw.strip():
        raise ValueError("empty list name")
    return raw.strip()


def _client_network(raw: object) -> IPNetwork:
    """A CIDR, or a bare address meaning just that host; host bits set is refused with a hint."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a network such as 10.0.0.0/8, got {_describe(raw)}")
    text = raw.strip()
    if "%" in text:
        raise ValueError(f"{text!r}: IPv6 zone ids (%interface) are not supported")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid network (expected e.g. 10.0.0.0/8)") from None
    if "/" in text and network.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"{text!r} has host bits set; did you mean {network}?")
    if network.prefixlen == 0:
        raise ValueError(
            f"{text!r} allows every address on the Internet; dnswarden must not be an open "
            "resolver, list your networks instead"
        )
    return network


def _sinkhole_address(raw: object) -> IPAddress:
    if not isinstance(raw, str):
        raise ValueError(f"expected an IP address such as 10.0.0.80, got {_describe(raw)}")
    return _parse_host(raw.strip())


def _positive_duration(raw: object) -> float:
    seconds = parse_duration(raw)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def _ttl(raw: object) -> int:
    seconds = parse_duration(raw)
    if seconds != int(seconds):
        raise ValueError(f"a TTL is a whole number of seconds, got {seconds:g}s")
    if seconds > MAX_TTL:
        raise ValueError(f"at most {MAX_TTL} seconds (1d), got {seconds:g}s")
    return int(seconds)


def _positive_int(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {_describe(raw)}")
    if raw <= 0:
        raise ValueError(f"must be at least 1, got {raw}")
    return raw


def _strict_bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {_describe(raw)}")
    return raw


def _log_level(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {_describe(raw)}")
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise ValueError(
            f"unknown level {raw!r}: use one of {choices}{_suggest(level, LOG_LEVELS)}"
        )
    return level


def _answer_mode(raw: object) -> AnswerMode:
    modes = [m.value for m in AnswerMode]
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(modes)}, got {_describe(raw)}")
    try:
        return AnswerMode(raw.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown answer {raw!r}: use one of {', '.join(modes)}{_suggest(raw, modes)}"
        ) from None


def parse_config(
    text: str,
    source: str,
    *,
    base_dir: Path | None = None,
    known_lists: frozenset[str] | None = None,
) -> Config:
    """Validate YAML config text; every problem found is raised together in one `ConfigError`.

    `base_dir` anchors relative list paths (the config file's directory; the current directory
    when None); `known_lists` is the set of bundled catalogue ids, read from
    `resolver.catalogue` when not given.
    """
    parser = _Parser(source, base_dir, known_lists)
    root = parser.compose(text)
    config = None if parser.problems else parser.config(root)
    if config is None:
        problems = sorted(parser.problems, key=lambda p: p.line)
        raise ConfigError(problems)
    return config
