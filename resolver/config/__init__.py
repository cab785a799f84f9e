"""Configuration: YAML text in, frozen dataclasses out, every problem reported at once.

The parser works on PyYAML's node graph (`yaml.compose`) rather than on constructed Python
objects, because only nodes remember where they came from: every problem an operator sees names
the file, the 1-based line and the dotted key path, as `dnswarden check` prints them.  Unknown
keys are errors (a typo must never silently fall back to a default on a blocking resolver), and
all problems are collected before raising so one `check` run shows everything to fix.

Apart from `load_config` (which reads the file), the checks of files the config names (list
files and directories exist; the audit key and log directory exist; the metrics token file holds a
usable token; the CA file holds PEM certificates) and the default state directory (read from the
environment), nothing here does I/O: list URLs are checked for form, never fetched.  Library code
raises `ConfigError`; only the CLI prints and exits.

May import: protocol
Does I/O: __init__ (reads the config file, checks the files it names)
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from resolver.protocol import names

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SOURCE = "<default>"
MAX_CONFIG_BYTES = 1 << 20
MAX_TTL = 86400
LOG_LEVELS = ("debug", "info", "warning", "error")
LIST_FILE_SUFFIXES = (".txt", ".hosts", ".list", ".conf")
DEFAULT_GROUP = "default"
REFUSE = "refuse"
MAX_TOKEN_BYTES = 4096
MAX_REFERENCE_CHARS = 1024
MAX_AUDIT_BACKUPS = 100
MAX_SIZE_BYTES = 1 << 50
MAX_CACHE_TTL = 7 * 86400
MIN_CACHE_BYTES = 64 << 10
MIN_FAILURE_TTL = 1.0
MAX_FAILURE_TTL = 300.0
MAX_CA_BYTES = 16 << 20
DEFAULT_URL_REFRESH = 6 * 3600.0
DEFAULT_FILE_REFRESH = 10.0
UPSTREAM_PORTS = {"udp": 53, "tcp": 53, "tls": 853}
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)


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
        return 6 if ":" in self.host else 4  # `host` is always a normalised IP address

    def __str__(self) -> str:
        if self.family == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """Where and how to forward: `udp` (TCP on truncation), `tcp`, or `tls` (DNS over TLS).

    Like `Endpoint`, an IP address and never a hostname.  A TLS server carries the name its
    certificate must show (`tls_name`): without a name to check against, any certificate from
    a trusted CA, issued to anyone, would pass, and DoT would protect against nobody.
    """

    protocol: str
    host: str
    port: int
    tls_name: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in UPSTREAM_PORTS:
            raise ValueError(f"protocol must be udp, tcp or tls, got {self.protocol!r}")
        endpoint = Endpoint(self.host, self.port)
        if (self.protocol == "tls") != (self.tls_name is not None):
            raise ValueError("a certificate name is required for tls, and only for tls")
        object.__setattr__(self, "host", endpoint.host)
        if self.tls_name is not None:
            object.__setattr__(self, "tls_name", _tls_name(self.tls_name))

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4  # `host` is always a normalised IP address

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    def __str__(self) -> str:
        name = f"#{self.tls_name}" if self.tls_name is not None else ""
        return f"{self.protocol}://{self.endpoint}{name}"


class Strategy(enum.Enum):
    """How a query picks among several upstreams (of `upstream` or of one zone)."""

    FAILOVER = "failover"
    FASTEST = "fastest"
    PARALLEL = "parallel"


class ListFormat(enum.Enum):
    AUTO = "auto"
    DOMAINS = "domains"
    HOSTS = "hosts"
    ADBLOCK = "adblock"
    RPZ = "rpz"
    REGEX = "regex"


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
DEFAULT_METRICS_LISTEN = Endpoint("127.0.0.1", 9153)
FALLBACK_UPSTREAMS: tuple[UpstreamServer, ...] = (
    UpstreamServer("udp", "9.9.9.9", 53),
    UpstreamServer("udp", "149.112.112.112", 53),
)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """`max_fails` consecutive failures mark an upstream down; it is then probed every
    `probe_interval` (`. IN NS`).  `ca_file` None means the system's trust store."""

    servers: tuple[UpstreamServer, ...] = ()
    timeout: float = 1.5
    deadline: float = 4.0
    strategy: Strategy = Strategy.FAILOVER
    max_fails: int = 3
    probe_interval: float = 5.0
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """Conditional forwarding: names in `zone` (and below) go to `servers`; the longest
    matching zone wins, so `a.gov.internal` may have other servers than `gov.internal`."""

    zone: str = ""
    servers: tuple[UpstreamServer, ...] = ()
    strategy: Strategy = Strategy.FAILOVER
    line: int = 0


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Bounds and TTL rules of the answer cache (RFC 2308 negative caching, RFC 8767
    serve-stale, RFC 9520 failure caching).  TTLs are whole seconds as on the wire.

    `client_timeout` is when a client gets a stale answer while the upstream is still being
    waited for; it never exceeds `upstream.deadline` (a value left out is capped to it).
    """

    enabled: bool = True
    max_entries: int = 100000
    max_bytes: int = 64 << 20
    min_ttl: int = 0
    max_ttl: int = 86400
    negative_max_ttl: int = 3600
    failure_ttl: float = 5.0
    serve_stale: bool = True
    stale_answer_ttl: int = 30
    max_stale_age: float = 86400.0
    client_timeout: float = 1.8
    prefetch: bool = True


@dataclass(frozen=True, slots=True)
class InspectionConfig:
    """Checks of forwarded answers: CNAME chains into blocked names, answers pointing into
    `response_ip` networks, and (optional) private addresses for public names (DNS rebinding),
    except in the `rebinding_allow` zones."""

    cname: bool = True
    response_ip: tuple[IPNetwork, ...] = ()
    rebinding: bool = False
    rebinding_allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """An operator list, named so that `blocking.lists`, groups, policies and `allow` can refer
    to it.  Exactly one of `url`, `path` (a file) or `dir` (every regular file in it) is set;
    paths are absolute.  `refresh` is the fetch interval of a URL, or how often a file's or
    directory's modification time is checked."""

    name: str = ""
    url: str | None = None
    path: str | None = None
    dir: str | None = None
    format: ListFormat = ListFormat.AUTO
    refresh: float = DEFAULT_URL_REFRESH
    insecure: bool = False
    timeout: float = 30.0
    max_bytes: int = 256 << 20
    max_shrink: float = 0.5
    line: int = 0

    @property
    def location(self) -> str:
        """The URL, file or directory, for messages and logs."""
        return self.url or self.path or self.dir or ""


@dataclass(frozen=True, slots=True)
class ClientsConfig:
    """`allow` is the ACL, checked before anything else; `default_group` places allowed clients
    that fall in no group's subnets: a group name, or `refuse` (REFUSED with EDE 18)."""

    allow: tuple[IPNetwork, ...] = DEFAULT_ALLOW
    default_group: str = DEFAULT_GROUP


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
    max_regex_rules: int = 1000


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    allowed_queries: bool = False


@dataclass(frozen=True, slots=True)
class ExemptRule:
    """A name never blocked: the domain and all its subdomains, or (`exact`) that name alone.

    Exemptions exist so a scoped ban can spare the one team that needs the service (a press
    office running the official account) without carving holes in the block lists themselves.
    """

    pattern: str = ""
    exact: bool = False

    def __str__(self) -> str:
        return f"={self.pattern}" if self.exact else self.pattern


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """Clients by subnet; the longest matching prefix wins, so groups may nest."""

    name: str = ""
    subnets: tuple[IPNetwork, ...] = ()
    block: tuple[str, ...] = ()
    exempt: tuple[ExemptRule, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """A dated, referenced rule: it blocks `block` for `groups` only inside its window.

    Bans are decided by an authority for a period ("a preliminary six months"); keeping the
    decision's reference and dates in the rule lets every block be traced to its mandate and
    lets the ban start and lapse without a restart.  `answer`/`ttl` None means the global ones.
    """

    name: str = ""
    block: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    reference: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    answer: AnswerMode | None = None
    ttl: int | None = None
    exempt: tuple[ExemptRule, ...] = ()
    line: int = 0

    def active(self, now: datetime) -> bool:
        """Whether the policy applies at `now` (timezone-aware); `until` is exclusive."""
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The HTTP endpoint for /metrics, /healthz and /readyz; loopback unless configured.

    `token_file` is stored as a path, never the token, so a config dump or a log of the config
    cannot leak the secret; the server reads it when it starts.
    """

    enabled: bool = True
    listen: Endpoint = DEFAULT_METRICS_LISTEN
    token_file: str | None = None


class PrivacyMode(enum.Enum):
    RAW = "raw"
    TRUNCATE = "truncate"
    PSEUDONYMISE = "pseudonymise"


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """How client identities appear in the audit trail, where it goes and how fast it may grow.

    The key for pseudonymising is named (file path or environment variable), never inlined,
    for the same reason as the metrics token.
    """

    privacy: PrivacyMode = PrivacyMode.RAW
    key_file: str | None = None
    key_env: str | None = None
    file: str | None = None
    file_max_bytes: int = 100 * 1024 * 1024
    file_backups: int = 5
    fold_window: float = 10.0
    max_events_per_second: int = 1000


def default_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """`$XDG_STATE_HOME/dnswarden`, else `~/.local/state/dnswarden` (XDG Base Directory).

    A relative XDG_STATE_HOME is ignored, as the XDG specification requires.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "dnswarden")
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".local", "state", "dnswarden")


@dataclass(frozen=True, slots=True)
class Config:
    source: str = DEFAULT_SOURCE
    listen: tuple[Endpoint, ...] = DEFAULT_LISTEN
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    groups: tuple[GroupConfig, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    zones: tuple[ZoneConfig, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    inspection: InspectionConfig = field(default_factory=InspectionConfig)
    sources: tuple[SourceConfig, ...] = ()
    allow: tuple[str, ...] = ()
    state_dir: str = field(default_factory=default_state_dir)
    workers: int | str = 1  # worker processes, or "auto" (one per CPU)

    def list_source(self, name: str) -> SourceConfig | None:
        """The source called `name`, or None for a catalogue id or a path.

        (Not `source(name)`: `source` is the file the config came from.)
        """
        return next((s for s in self.sources if s.name == name), None)


def all_lists(config: Config) -> tuple[str, ...]:
    """Every list the config names (global, per group, per policy, then the `allow` sources),
    first-seen order, once each: catalogue ids, source names and absolute file paths.

    The loader needs them all up front: a policy whose window opens later must find its lists
    already loaded, since windows are evaluated per query without a reload.
    """
    found = dict.fromkeys(config.blocking.lists)
    for group in config.groups:
        found.update(dict.fromkeys(group.block))
    for policy in config.policies:
        found.update(dict.fromkeys(policy.block))
    found.update(dict.fromkeys(config.allow))
    return tuple(found)


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
  # Resolvers to forward allowed queries to. IP addresses only, never hostnames:
  #   9.9.9.9 or 9.9.9.9:53          plain DNS over UDP (TCP when truncated), port 53
  #   udp://9.9.9.9:53               the same, spelled out
  #   tcp://[2620:fe::fe]:53         plain DNS over TCP only
  #   tls://9.9.9.9:853#dns.quad9.net  DNS over TLS (port 853 by default); the name
  #                                  after "#" is required: the certificate must show it
  # Omitted or empty: the nameservers in /etc/resolv.conf (over UDP), minus any that
  # is one of our own listeners; if none remain, Quad9 (9.9.9.9, 149.112.112.112).
  # servers: ["9.9.9.9", "tls://149.112.112.112#dns.quad9.net"]
  timeout: 1.5s     # wait for one upstream before trying the next
  deadline: 4s      # total time for one query across all upstreams (>= timeout)
  # failover (in order), fastest (lowest recent latency, sometimes trying the
  # others) or parallel (race the two best).
  strategy: failover
  max_fails: 3          # failures in a row before an upstream is marked down
  probe_interval: 5s    # how often a down upstream is probed (". IN NS")
  # PEM file of CA certificates trusted for tls:// servers (relative paths are
  # relative to the config file's directory). Not set: the system's trust store.
  # ca_file: /etc/dnswarden/upstream-ca.pem

# Conditional forwarding: names in a zone (and below it) go to that zone's own
# servers instead of upstream.servers; the longest matching zone wins. None by
# default. Each entry: zone (a domain, once only), servers (as upstream.servers,
# at least one) and strategy (default: upstream.strategy).
#   - zone: gov.internal
#     servers: ["10.1.1.1", "10.1.1.2"]
#   - zone: 10.in-addr.arpa
#     servers: ["10.1.1.1"]
#     strategy: failover
zones: []

cache:
  # Upstream answers are cached, bounded by entries and bytes (least recently used
  # entries go first). Blocking is decided before the cache, so lifting or adding a
  # block takes effect at once.
  enabled: true
  max_entries: 100000     # at least 1
  max_bytes: 64MiB        # at least 64KiB
  min_ttl: 0s             # raise shorter TTLs of positive answers to this
  max_ttl: 1d             # lower longer TTLs to this (at most 7d)
  negative_max_ttl: 1h    # cap for NXDOMAIN/NODATA TTLs (RFC 2308), at most 1d
  failure_ttl: 5s         # resolution failures cached this long at first, longer
                          # if they persist (RFC 9520), 1s to 5m
  # Serve stale (RFC 8767): when the upstreams fail, or have not answered within
  # client_timeout, answer from an expired entry with TTL stale_answer_ttl
  # (marked with EDE 3 Stale Answer or 19 Stale NXDOMAIN), for up to max_stale_age
  # past its expiry, and refresh it in the background.
  serve_stale: true
  stale_answer_ttl: 30s   # 1s to 1d
  max_stale_age: 1d
  client_timeout: 1.8s    # less than upstream.deadline; left out: 1.8s or the
                          # deadline, whichever is shorter
  prefetch: true          # refresh often-used entries shortly before they expire

inspection:
  # Block a forwarded answer whose CNAME chain (or any name in it) is blocked.
  cname: true
  # Block answers with an A/AAAA address inside these networks (like RPZ rpz-ip).
  response_ip: []
  # DNS-rebinding protection: block answers that give private or loopback
  # addresses for public names, except in the rebinding_allow zones (domains).
  rebinding: false
  rebinding_allow: []

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
  # Group for allowed clients inside no group's subnets (see groups below): a
  # group name, default (the built-in group; it may be defined under groups to
  # give it lists or exemptions), or refuse (answer REFUSED with EDE 18).
  default_group: default

blocking:
  # Blocked for every client, whatever its group: bundled catalogue ids (e.g.
  # tiktok), names of sources (see sources below), or paths to local list files
  # (relative paths are relative to the config file's directory).
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
  max_regex_rules: 1000               # /regex/ rules across all sources (0: none allowed)

log:
  level: info              # debug, info, warning or error
  allowed_queries: false   # also log every allowed (forwarded) query

# Client groups by subnet (names: 1-64 of A-Z a-z 0-9 _ . -). A client is in the
# group whose subnet is the longest match for its address, so groups may nest.
# None by default.
#   officials:
#     subnets: [10.20.0.0/16, "fd00:20::/48"]  # required (may be empty for "default")
#     block: [tiktok]                # lists blocked for this group, always
#     exempt: [example.org, "=www.example.net"]  # never blocked for this group:
#                                    # a domain and its subdomains; "=" that name only
groups: {}

# Dated rules that block lists for some groups, each citing its mandate.
# None by default.
#   ban-2023:
#     block: [tiktok]                # required: catalogue ids, sources or list files
#     groups: [officials]            # required: groups under groups, or default
#     reference: "decision of 10 March 2023"   # text or URL; logged with each block
#     from: 2023-03-10               # a date (00:00 UTC) or 2023-03-10T08:00:00+01:00
#     until: 2023-09-10              # exclusive end; a time without offset is UTC
#     answer: nxdomain               # overrides blocking.answer for this policy
#     ttl: 60s                       # overrides blocking.ttl for this policy
#     exempt: [example.org]          # as for groups, for this policy only
policies: {}

# Operator list sources, by name (as for groups; not a bundled catalogue id, and
# not ending in .txt, .hosts, .list or .conf). Use a name wherever a list goes:
# blocking.lists, groups.*.block, policies.*.block, or allow below. None by default.
#   national:
#     url: https://lists.example.gov/national.txt  # exactly one of url, path, dir;
#     # path: /etc/dnswarden/national.txt   # a file (relative: to the config's dir)
#     # dir: /etc/dnswarden/lists.d         # every regular file in a directory
#     format: auto          # auto, domains, hosts, adblock, rpz or regex
#     refresh: 6h           # url: fetch interval (default 6h); path/dir: how often
#                           # the files are checked for changes (default 10s)
#     insecure: false       # true is required for a plain http:// url
#     timeout: 30s          # per download (url only)
#     max_bytes: 256MiB     # size cap of a download or a file
#     max_shrink: 0.5       # refuse an update that shrinks the list by more than
#                           # this fraction (0 to 1, or 50%)
sources: {}

# Sources whose entries are allowed for everyone, whatever blocks them. None by
# default.
allow: []

# Worker processes sharing the listeners (SO_REUSEPORT), each with its own event
# loop; `auto` is one per CPU. `dnswarden serve --workers N` overrides it.
workers: 1

# Where last-good copies of downloaded lists and compiled lists are kept; created
# by the server. Default: $XDG_STATE_HOME/dnswarden, else ~/.local/state/dnswarden.
# state_dir: /var/lib/dnswarden

metrics:
  # HTTP endpoint serving /metrics (Prometheus), /healthz and /readyz. Loopback by
  # default; port 0 picks a free port. Must not be a DNS listen address.
  enabled: true
  listen: "127.0.0.1:9153"
  # File holding a bearer token required on /metrics (relative paths are relative
  # to the config file's directory). Not set: /metrics is open.
  # token_file: /etc/dnswarden/metrics.token

audit:
  # How clients appear in the audit log: raw (the address), truncate (IPv4 /24,
  # IPv6 /48) or pseudonymise (keyed HMAC; stable, so events can be correlated).
  privacy: raw
  # Secret for pseudonymise: exactly one of a file or an environment variable.
  # key_file: /etc/dnswarden/audit.key
  # key_env: DNSWARDEN_AUDIT_KEY
  # Also write audit events to this file, rotated at file_max_bytes (bytes, or
  # with K, M, G, KiB, MiB, GiB), keeping file_backups old files (0-100).
  # file: /var/log/dnswarden/audit.jsonl
  file_max_bytes: 100MiB
  file_backups: 5
  # Identical block events (client, name, policy) within this window become one
  # event with a count; 0 turns folding off.
  fold_window: 10s
  max_events_per_second: 1000   # hard ceiling on audit events
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


_TIME_HINT = "a date such as 2023-03-10 or a time such as 2023-03-10T08:00:00+01:00"


def parse_datetime(value: object) -> datetime:
    """A timezone-aware UTC datetime from a date (00:00 UTC), a datetime, or ISO 8601 text.

    A time without an offset is taken as UTC rather than local time: the validity of a ban
    must not depend on the timezone of the machine that happens to run the resolver.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected {_TIME_HINT}, got {value!r}") from None
    try:
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                return value.replace(tzinfo=UTC)
            return value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{value} is outside the supported range of times") from None
    raise ValueError(f"expected {_TIME_HINT}, got {_describe(value)}")


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", re.ASCII)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE_HINT = "a size such as 100MiB, 500K, 2G or a number of bytes"


def parse_size(value: object) -> int:
    """Bytes from an integer or `100MiB`, `1.5G`, `500K` (K/M/G decimal, KiB/MiB/GiB binary)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {_SIZE_HINT}, got {_describe(value)}")
    if isinstance(value, int):
        size = Decimal(value)
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"expected {_SIZE_HINT}, got {value!r}")
        try:
            size = Decimal(match.group(1)) * _SIZE_UNITS[unit]
        except ArithmeticError:
            raise ValueError(f"size {value!r} is too large") from None
    if size < 0:
        raise ValueError(f"a size cannot be negative: {value!r}")
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"size {value!r} is too large (at most {MAX_SIZE_BYTES} bytes)")
    if size != size.to_integral_value():
        raise ValueError(f"a size is a whole number of bytes, got {size} from {value!r}")
    return int(size)


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


_UPSTREAM_HINT = (
    'an upstream such as "9.9.9.9", "tcp://9.9.9.9:53" or "tls://9.9.9.9#dns.quad9.net"'
)


def parse_upstream(text: str) -> UpstreamServer:
    """Parse `IP[:port]` (UDP, as before URLs existed), `udp://`, `tcp://` or `tls://...#name`.

    Ports default to 53, or 853 for TLS.  The `#name` of a TLS server is required: it is what
    the certificate is verified against, and an IP address alone would verify nothing.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected {_UPSTREAM_HINT}, got {_describe(text)}")
    s = text.strip()
    scheme, sep, rest = s.partition("://")
    if not sep:
        if "#" in s:
            raise ValueError(
                f"{text!r}: a certificate name ('#name') is only for DNS over TLS; write tls://{s}"
            )
        endpoint = parse_endpoint(s)
        return UpstreamServer("udp", endpoint.host, endpoint.port)
    protocol = scheme.lower()
    if protocol not in UPSTREAM_PORTS:
        hint = "; DNS over HTTPS is not supported" if protocol in ("https", "h2", "doh") else ""
        raise ValueError(
            f"{text!r}: unknown scheme {scheme!r}: use udp://, tcp:// or tls://"
            f"{hint}{_suggest(protocol, UPSTREAM_PORTS)}"
        )
    address, hash_sign, name = rest.partition("#")
    if protocol != "tls" and hash_sign:
        raise ValueError(
            f"{text!r}: a certificate name ('#name') is only for tls:// (DNS over TLS)"
        )
    if protocol == "tls" and not name.strip():
        raise ValueError(
            f"{text!r}: DNS over TLS needs the name on the server's certificate after '#', "
            "e.g. tls://9.9.9.9:853#dns.quad9.net"
        )
    endpoint = parse_endpoint(address, default_port=UPSTREAM_PORTS[protocol])
    tls_name = _tls_name(name) if protocol == "tls" else None
    return UpstreamServer(protocol, endpoint.host, endpoint.port, tls_name)


def _tls_name(text: str) -> str:
    """The certificate name in canonical form: a domain name, or an IP address (IP SAN)."""
    name = text.strip()
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    try:
        _, canonical = names.normalise(name)
    except names.BadName as e:
        raise ValueError(f"certificate name {e}") from None
    if canonical == ".":
        raise ValueError("certificate name: the root is not a server name")
    return canonical


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


def resolve_upstreams(config: Config, resolv_conf_text: str | None) -> tuple[UpstreamServer, ...]:
    """The upstreams to use: configured ones, else the system's (minus ourselves), else Quad9.

    Dropping our own listeners matters when dnswarden is itself the system resolver: forwarding
    to ourselves would loop until the deadline on every query.  The system's nameservers speak
    plain DNS, so they become UDP upstreams.
    """
    if config.upstream.servers:
        return config.upstream.servers
    system = parse_resolv_conf(resolv_conf_text or "")
    remaining = tuple(
        UpstreamServer("udp", ns.host, ns.port)
        for ns in system
        if not _is_own_listener(ns, config.listen)
    )
    return remaining or FALLBACK_UPSTREAMS


def _loops(server: UpstreamServer, listeners: Iterable[Endpoint]) -> bool:
    """Plain DNS to one of our own listeners would come straight back; TLS cannot (we serve
    no TLS), so it is never a loop."""
    return server.protocol != "tls" and _is_own_listener(server.endpoint, listeners)


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
        new_servers = _override_upstreams(upstreams, problems)
    if not problems:
        for i, server in enumerate(new_servers):
            if _loops(server, new_listen):
                source = "--upstream" if upstreams else ("--listen" if listen else config.source)
                problems.append(
                    ConfigProblem(source, 0, f"upstream.servers[{i}]", _loop_message(server))
                )
        for i, zone in enumerate(config.zones if listen else ()):
            for j, server in enumerate(zone.servers):
                if _loops(server, new_listen):
                    key = f"zones[{i}].servers[{j}]"
                    problems.append(ConfigProblem("--listen", 0, key, _loop_message(server)))
        clash = _metrics_clash(config.metrics, new_listen)
        if listen and clash is not None:
            problems.append(ConfigProblem("--listen", 0, "metrics.listen", clash))
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


def _override_upstreams(
    values: Sequence[str], problems: list[ConfigProblem]
) -> tuple[UpstreamServer, ...]:
    servers: list[UpstreamServer] = []
    for i, text in enumerate(values):
        key = f"upstream.servers[{i}]"
        try:
            server = parse_upstream(text)
        except ValueError as e:
            problems.append(ConfigProblem("--upstream", 0, key, str(e)))
            continue
        if server.port == 0:
            problems.append(ConfigProblem("--upstream", 0, key, "port 0 is not allowed here"))
        elif server in servers:
            problems.append(ConfigProblem("--upstream", 0, key, f"{server} given twice"))
        else:
            servers.append(server)
    return tuple(servers)


def _loop_message(server: Endpoint | UpstreamServer) -> str:
    return f"{server} is one of dnswarden's own listeners; forwarding to it would loop"


def _metrics_clash(metrics: MetricsConfig, listeners: Iterable[Endpoint]) -> str | None:
    """Why the metrics endpoint cannot share a socket with a DNS listener, or None.

    A wildcard address takes the port on every address of its family (and `::` on IPv4 too,
    with the kernel's default dual-stack), so it clashes with any specific address there.
    """
    if not metrics.enabled or metrics.listen.port == 0:
        return None
    ours = _unmap(ipaddress.ip_address(metrics.listen.host))
    for index, listener in enumerate(listeners):
        if listener.port != metrics.listen.port:
            continue
        theirs = _unmap(ipaddress.ip_address(listener.host))
        wildcard = next((a for a in (ours, theirs) if a.is_unspecified), None)
        if (
            ours == theirs
            or (wildcard is not None and ours.version == theirs.version)
            or (wildcard is not None and wildcard.version == 6)
        ):
            return (
                f"{metrics.listen} would share a socket with DNS listener {listener} "
                f"(listen[{index}]); give the metrics endpoint its own port"
            )
    return None


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


class _Sinkhole(NamedTuple):
    answer: AnswerMode
    ips: tuple[IPAddress, ...]


_GROUP_KEYS = ("subnets", "block", "exempt")
_ZONE_KEYS = ("zone", "servers", "strategy")
_SOURCE_KEYS = (
    "url",
    "path",
    "dir",
    "format",
    "refresh",
    "insecure",
    "timeout",
    "max_bytes",
    "max_shrink",
)
_SOURCE_KINDS = ("url", "path", "dir")
_POLICY_KEYS = ("block", "groups", "reference", "from", "until", "answer", "ttl", "exempt")


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
        self.source_names: frozenset[str] = frozenset()
        self.source_refs: list[_Item] = []

    def problem(self, where: Node | int, key: str, message: str) -> None:
        line = where if isinstance(where, int) else where.start_mark.line + 1
        self.problems.append(ConfigProblem(self.source, line, key, message))

    @property
    def known_lists(self) -> frozenset[str]:
        if self._known_lists is None:
            from resolver.lists.catalogue import catalogue_ids

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
        sources, self.source_names = self.sources(top)
        listen = self.listen(top)
        upstream, server_items, deadline = self.upstream(top)
        zones, zone_items = self.zones(top, upstream.strategy)
        if listen is not None:
            for item in server_items + zone_items:
                if _loops(item.value, listen):
                    self.problem(item.node, item.key, _loop_message(item.value))
        blocking, blocking_entries, sinkhole = self.blocking(top)
        groups, group_names = self.groups(top)
        policies, policy_answers = self.policies(top, group_names, sinkhole)
        self.sinkhole_addresses(blocking_entries, sinkhole, policy_answers)
        allow = self.allow(top)
        config = Config(
            source=self.source,
            listen=listen or DEFAULT_LISTEN,
            upstream=upstream,
            clients=self.clients(top, group_names),
            blocking=blocking,
            limits=self.limits(top),
            log=self.log(top),
            groups=groups,
            policies=policies,
            metrics=self.metrics(top, listen),
            audit=self.audit(top),
            zones=zones,
            cache=self.cache(top, deadline),
            inspection=self.inspection(top),
            sources=sources,
            allow=allow,
            state_dir=self.state_dir(top),
            workers=self.value(top, "workers", "", _workers, 1),
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

    def upstream(self, top: Entries) -> tuple[UpstreamConfig, list[_Item], Any]:
        """The section, its server items (for the loop check), and the deadline (`_MISSING`
        when bad) for the cache's client timeout."""
        entries = self.section(top, "upstream", UpstreamConfig)
        path = "upstream"
        defaults = UpstreamConfig()
        items = self.servers(entries, path)
        timeout = self.value(entries, "timeout", path, _positive_duration, defaults.timeout)
        deadline = self.value(entries, "deadline", path, _positive_duration, defaults.deadline)
        if _MISSING not in (timeout, deadline) and deadline < timeout:
            where = entries.get("deadline") or entries["timeout"]
            self.problem(
                where[1],
                f"{path}.deadline",
                f"the deadline ({deadline:g}s) must be at least the timeout ({timeout:g}s)",
            )
        strategy = self.value(entries, "strategy", path, _strategy, defaults.strategy)
        max_fails = self.value(entries, "max_fails", path, _positive_int, defaults.max_fails)
        probe = self.value(
            entries, "probe_interval", path, _positive_duration, defaults.probe_interval
        )
        ca_file = None
        if "ca_file" in entries and not self.is_null(entries["ca_file"][1]):
            ca_file = self.ca_file(entries["ca_file"][1], f"{path}.ca_file")
        config = UpstreamConfig(
            servers=tuple(item.value for item in items),
            timeout=defaults.timeout if timeout is _MISSING else timeout,
            deadline=defaults.deadline if deadline is _MISSING else deadline,
            strategy=defaults.strategy if strategy is _MISSING else strategy,
            max_fails=defaults.max_fails if max_fails is _MISSING else max_fails,
            probe_interval=defaults.probe_interval if probe is _MISSING else probe,
            ca_file=ca_file,
        )
        return config, items, deadline

    def servers(self, entries: Entries, path: str, *, empty: str | None = None) -> list[_Item]:
        """The good, distinct upstream servers under `path.servers`."""
        items = self.items(entries, "servers", path, parse_upstream, empty=empty) or []
        for item in items:
            if item.value.port == 0:
                self.problem(item.node, item.key, "an upstream needs a port from 1 to 65535")
        return self.unique([item for item in items if item.value.port != 0])

    def ca_file(self, node: Node, key: str) -> str | None:
        """The CA bundle's absolute path, after checking it holds PEM certificates.

        Only the form is checked (no `ssl` here); a DER file or a private key named by mistake
        is caught now rather than at the first TLS handshake.
        """
        name = self.convert(node, key, _path_text)
        if name is _MISSING:
            return None
        full = self.existing_file(node, key, name, "CA file")
        if full is None:
            return None
        try:
            with open(full, "rb") as f:
                data = f.read(MAX_CA_BYTES + 1)
        except OSError as e:
            self.problem(node, key, f"cannot read CA file {str(full)!r}: {e.strerror or e}")
            return None
        if len(data) > MAX_CA_BYTES:
            self.problem(node, key, f"CA file {str(full)!r} is larger than {MAX_CA_BYTES} bytes")
        elif b"-----BEGIN CERTIFICATE-----" not in data:
            self.problem(
                node,
                key,
                f"CA file {str(full)!r} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')",
            )
        else:
            return str(full)
        return None

    def zones(
        self, top: Entries, default_strategy: Strategy
    ) -> tuple[tuple[ZoneConfig, ...], list[_Item]]:
        """The conditional-forwarding zones, and all their server items (for the loop check)."""
        if "zones" not in top:
            return (), []
        nodes = self.sequence(top["zones"][1], "zones")
        if nodes is None:
            return (), []
        zones: list[ZoneConfig] = []
        all_items: list[_Item] = []
        seen: dict[str, _Item] = {}
        for i, node in enumerate(nodes):
            path = f"zones[{i}]"
            entries = self.mapping(node, path, _ZONE_KEYS)
            if entries is None:
                continue
            for required, what in (
                ("zone", "the domain whose names go to these servers"),
                ("servers", "where names in this zone are forwarded"),
            ):
                if required not in entries:
                    self.problem(node, f"{path}.{required}", f"required: {what}")
            zone = self.value(entries, "zone", path, _zone_name, "")
            if isinstance(zone, str) and zone:
                item = _Item(f"{path}.zone", entries["zone"][1], zone)
                first = seen.setdefault(zone, item)
                if first is not item:
                    line = first.node.start_mark.line + 1
                    self.problem(
                        item.node,
                        item.key,
                        f"zone {zone} is listed twice (first as {first.key}, line {line})",
                    )
            items = self.servers(entries, path, empty="at least one server is required")
            all_items.extend(items)
            strategy = self.value(entries, "strategy", path, _strategy, default_strategy)
            zones.append(
                ZoneConfig(
                    zone="" if zone is _MISSING else zone,
                    servers=tuple(item.value for item in items),
                    strategy=default_strategy if strategy is _MISSING else strategy,
                    line=node.start_mark.line + 1,
                )
            )
        return tuple(zones), all_items

    def cache(self, top: Entries, deadline: Any) -> CacheConfig:
        entries = self.section(top, "cache", CacheConfig)
        path = "cache"
        defaults = CacheConfig()
        converters: dict[str, Callable[[Any], Any]] = {
            "enabled": _strict_bool,
            "max_entries": _positive_int,
            "max_bytes": _cache_bytes,
            "min_ttl": _ttl,
            "max_ttl": _max_cache_ttl,
            "negative_max_ttl": _ttl,
            "failure_ttl": _failure_ttl,
            "serve_stale": _strict_bool,
            "stale_answer_ttl": _stale_answer_ttl,
            "max_stale_age": _positive_duration,
            "client_timeout": _positive_duration,
            "prefetch": _strict_bool,
        }
        values: dict[str, Any] = {}
        for name, convert in converters.items():
            value = self.value(entries, name, path, convert, _MISSING)
            if value is not _MISSING:
                values[name] = value
        given = {"min_ttl", "max_ttl"} & set(entries)
        if given and given <= set(values):
            low = values.get("min_ttl", defaults.min_ttl)
            high = values.get("max_ttl", defaults.max_ttl)
            if low > high:
                where = entries.get("min_ttl") or entries["max_ttl"]
                self.problem(
                    where[1],
                    f"{path}.min_ttl",
                    f"min_ttl ({low}s) must not be more than max_ttl ({high}s)",
                )
        timeout = values.get("client_timeout")
        if deadline is not _MISSING:
            if timeout is None and "client_timeout" not in entries:
                values["client_timeout"] = min(defaults.client_timeout, deadline)
            elif timeout is not None and timeout >= deadline:
                self.problem(
                    entries["client_timeout"][1],
                    f"{path}.client_timeout",
                    f"must be less than upstream.deadline ({deadline:g}s), got {timeout:g}s: "
                    "a stale answer is only useful before the client gives up",
                )
        return CacheConfig(**values)

    def inspection(self, top: Entries) -> InspectionConfig:
        entries = self.section(top, "inspection", InspectionConfig)
        path = "inspection"
        defaults = InspectionConfig()
        cname = self.value(entries, "cname", path, _strict_bool, defaults.cname)
        networks = self.items(entries, "response_ip", path, _response_network) or []
        rebinding = self.value(entries, "rebinding", path, _strict_bool, defaults.rebinding)
        allowed = self.items(entries, "rebinding_allow", path, _zone_name) or []
        if allowed and rebinding is False:
            self.problem(
                entries["rebinding_allow"][0],
                f"{path}.rebinding_allow",
                "only used with rebinding: true (rebinding protection is off)",
            )
        return InspectionConfig(
            cname=defaults.cname if cname is _MISSING else cname,
            response_ip=tuple(item.value for item in self.unique(networks)),
            rebinding=defaults.rebinding if rebinding is _MISSING else rebinding,
            rebinding_allow=tuple(item.value for item in self.unique(allowed)),
        )

    def clients(self, top: Entries, group_names: frozenset[str]) -> ClientsConfig:
        entries = self.section(top, "clients", ClientsConfig)
        defaults = ClientsConfig()
        allow = defaults.allow
        items = self.items(
            entries,
            "allow",
            "clients",
            _client_network,
            empty="empty: every query would be refused; list at least one network",
        )
        if items is not None:
            allow = tuple(item.value for item in self.unique(items))
        default_group = self.value(
            entries, "default_group", "clients", _name_text, defaults.default_group
        )
        choices = {REFUSE, DEFAULT_GROUP} | group_names
        if default_group is not _MISSING and default_group not in choices:
            self.problem(
                entries["default_group"][1],
                "clients.default_group",
                f"unknown group {default_group!r}: use refuse, default or a group defined "
                f"under groups{_suggest(default_group, choices)}",
            )
        if default_group is _MISSING:
            default_group = defaults.default_group
        return ClientsConfig(allow=allow, default_group=default_group)

    def blocking(self, top: Entries) -> tuple[BlockingConfig, Entries, _Sinkhole | None]:
        """The section, its entries, and (answer, addresses) when both are valid.

        Whether `ip` may be set depends on the policies' answers too, so that check waits
        for them (`sinkhole_addresses`).
        """
        entries = self.section(top, "blocking", BlockingConfig)
        path = "blocking"
        defaults = BlockingConfig()
        lists = self.lists(entries, "lists", path)
        answer = self.value(entries, "answer", path, _answer_mode, defaults.answer)
        ips: tuple[IPAddress, ...] = ()
        ips_valid = True
        if "ip" in entries:
            ip_items = self.items(entries, "ip", path, _sinkhole_address)
            ips = tuple(item.value for item in self.unique(ip_items or []))
            ips_valid = ip_items is not None and len(ip_items) == len(entries["ip"][1].value)
        ttl = self.value(entries, "ttl", path, _ttl, defaults.ttl)
        config = BlockingConfig(
            lists=defaults.lists if lists is None else lists,
            answer=defaults.answer if answer is _MISSING else answer,
            ip=ips,
            ttl=defaults.ttl if ttl is _MISSING else ttl,
        )
        sinkhole = _Sinkhole(answer, ips) if answer is not _MISSING and ips_valid else None
        return config, entries, sinkhole

    def sinkhole_addresses(
        self, entries: Entries, sinkhole: _Sinkhole | None, policy_answers: list[Any]
    ) -> None:
        """`blocking.ip` is needed when the global answer is ip, and useless when nothing is."""
        if sinkhole is None or _MISSING in policy_answers:
            return
        path = "blocking"
        answer, ips = sinkhole
        if ips and answer is not AnswerMode.IP and AnswerMode.IP not in policy_answers:
            self.problem(
                entries["ip"][1],
                f"{path}.ip",
                f"addresses given but answer is {answer.value!r} and no policy has answer: ip; "
                "set answer: ip to use them, or remove them",
            )
        if answer is AnswerMode.IP and not ips:
            where = entries.get("ip") or entries["answer"]
            self.problem(
                where[1],
                f"{path}.ip",
                "answer: ip needs at least one IPv4 or IPv6 address under blocking.ip",
            )

    def lists(
        self, entries: Entries, name: str, path: str, *, empty: str | None = None
    ) -> tuple[str, ...] | None:
        """List ids and paths under `name`, resolved and deduplicated; `None` when absent."""
        items = self.items(entries, name, path, _nonempty_text, empty=empty)
        if items is None:
            return None
        resolved = [item._replace(value=self.list_entry(item)) for item in items]
        return tuple(
            item.value for item in self.unique([i for i in resolved if i.value is not None])
        )

    def list_entry(self, item: _Item) -> str | None:
        """A catalogue id or source name stays as is; a path becomes absolute and must name an
        existing file.  The three cannot be confused: source names are neither catalogue ids
        nor path-like (see `sources`)."""
        name: str = item.value
        if name in self.source_names:
            self.source_refs.append(item)
            return name
        if not ("/" in name or name.endswith(LIST_FILE_SUFFIXES)):
            known = self.known_lists
            if name in known:
                return name
            bundled = ", ".join(sorted(known)) or "(none)"
            defined = ""
            if self.source_names:
                defined = f"; sources are: {', '.join(sorted(self.source_names))}"
            self.problem(
                item.node,
                item.key,
                f"unknown list {name!r}: bundled lists are: {bundled}{defined}"
                f"{_suggest(name, known | self.source_names)}; "
                "a local file needs a '/' in its path or a .txt/.hosts/.list/.conf name",
            )
            return None
        full = self.existing_file(item.node, item.key, name, "list file")
        return None if full is None else str(full)

    def local_path(self, name: str) -> Path:
        """`name` made absolute: relative paths are relative to the config file's directory."""
        base = self.base_dir if self.base_dir is not None else Path.cwd()
        return Path(os.path.normpath(base / name))

    def existing_file(self, node: Node, key: str, name: str, what: str) -> Path | None:
        """The absolute path of an existing regular file, or `None` with a problem noted.

        Regular files only: opening a FIFO or a device named by mistake could hang or never end.
        """
        full = self.local_path(name)
        if not full.exists():
            self.problem(node, key, f"{what} {str(full)!r} does not exist")
            return None
        if not full.is_file():
            self.problem(node, key, f"{what} {str(full)!r} is not a regular file")
            return None
        return full

    def existing_dir(self, node: Node, key: str, name: str) -> Path | None:
        """The absolute path of an existing directory, or `None` with a problem noted."""
        full = self.local_path(name)
        if not full.exists():
            self.problem(node, key, f"directory {str(full)!r} does not exist")
            return None
        if not full.is_dir():
            self.problem(
                node, key, f"{str(full)!r} is not a directory (use path: for a single file)"
            )
            return None
        return full

    # --- list sources ----------------------------------------------------------------------

    def sources(self, top: Entries) -> tuple[tuple[SourceConfig, ...], frozenset[str]]:
        """The sources, and every usable source name (even of a source with bad settings, so
        references to it are not reported as unknown on top of its own problems)."""
        sources: list[SourceConfig] = []
        found: set[str] = set()
        for name, key_node, value_node in self.named(top, "sources", "source"):
            path = _join("sources", name)
            if name in self.known_lists:
                self.problem(
                    key_node,
                    path,
                    f"{name!r} is a bundled catalogue id; give this source another name",
                )
                continue
            if name.endswith(LIST_FILE_SUFFIXES):
                self.problem(
                    key_node,
                    path,
                    f"{name!r} would be read as a file path where lists are named; "
                    "choose a name without a .txt/.hosts/.list/.conf ending",
                )
                continue
            found.add(name)
            entries = self.mapping(value_node, path, _SOURCE_KEYS)
            if entries is not None:
                sources.append(self.source_entry(name, key_node, entries))
        return tuple(sources), frozenset(found)

    def source_entry(self, name: str, key_node: Node, entries: Entries) -> SourceConfig:
        path = _join("sources", name)
        defaults = SourceConfig()
        kinds = [kind for kind in entries if kind in _SOURCE_KINDS]
        if not kinds:
            self.problem(
                key_node,
                f"{path}.url",
                "required: one of url (https://...), path (a file) or dir (a directory)",
            )
        for extra in kinds[1:]:
            first = entries[kinds[0]][0].start_mark.line + 1
            self.problem(
                entries[extra][0],
                f"{path}.{extra}",
                f"give only one of url, path or dir ({kinds[0]} is given at line {first})",
            )
        kind = kinds[0] if kinds else None
        insecure = self.value(entries, "insecure", path, _strict_bool, defaults.insecure)
        location: dict[str, str | None] = dict.fromkeys(_SOURCE_KINDS)
        if kind is not None:
            location[kind] = self.source_location(kind, entries, path, insecure)
        for name_only_for_url in ("insecure", "timeout"):
            if name_only_for_url in entries and kind in ("path", "dir"):
                self.problem(
                    entries[name_only_for_url][0],
                    f"{path}.{name_only_for_url}",
                    f"only used with url (this source is a {kind})",
                )
        refresh_default = DEFAULT_URL_REFRESH if kind == "url" else DEFAULT_FILE_REFRESH
        fmt = self.value(entries, "format", path, _list_format, defaults.format)
        refresh = self.value(entries, "refresh", path, _positive_duration, refresh_default)
        timeout = self.value(entries, "timeout", path, _positive_duration, defaults.timeout)
        max_bytes = self.value(entries, "max_bytes", path, _positive_size, defaults.max_bytes)
        shrink = self.value(entries, "max_shrink", path, _fraction, defaults.max_shrink)
        return SourceConfig(
            name=name,
            url=location["url"],
            path=location["path"],
            dir=location["dir"],
            format=defaults.format if fmt is _MISSING else fmt,
            refresh=refresh_default if refresh is _MISSING else refresh,
            insecure=defaults.insecure if insecure is _MISSING else insecure,
            timeout=defaults.timeout if timeout is _MISSING else timeout,
            max_bytes=defaults.max_bytes if max_bytes is _MISSING else max_bytes,
            max_shrink=defaults.max_shrink if shrink is _MISSING else shrink,
            line=key_node.start_mark.line + 1,
        )

    def source_location(self, kind: str, entries: Entries, path: str, insecure: Any) -> str | None:
        """The URL (form checked, never fetched) or the absolute path of the file/directory."""
        node = entries[kind][1]
        key = f"{path}.{kind}"
        if kind != "url":
            name = self.convert(node, key, _path_text if kind == "path" else _dir_text)
            if name is _MISSING:
                return None
            if kind == "path":
                full = self.existing_file(node, key, name, "list file")
            else:
                full = self.existing_dir(node, key, name)
            return None if full is None else str(full)
        url = self.convert(node, key, _list_url)
        if url is _MISSING:
            return None
        plain = urlsplit(url).scheme.lower() == "http"
        if plain and insecure is False:
            self.problem(
                node,
                key,
                "plain http:// can be altered on the way (a forged list could lift a ban); "
                "use https://, or set insecure: true to accept http:// anyway",
            )
        elif not plain and insecure is True:
            self.problem(
                entries["insecure"][0],
                f"{path}.insecure",
                "insecure: true only permits plain http:// URLs; https:// certificates are "
                "always verified, so remove it",
            )
        return url

    def allow(self, top: Entries) -> tuple[str, ...]:
        """Sources whose entries are allowed everywhere; none may also be used to block."""
        items = self.items(top, "allow", "", _nonempty_text) or []
        good: list[_Item] = []
        for item in self.unique(items):
            if item.value in self.source_names:
                good.append(item)
                continue
            hint = ""
            if "/" in item.value or item.value.endswith(LIST_FILE_SUFFIXES):
                hint = "; for a local file, define a source with path: and name it here"
            self.problem(
                item.node,
                item.key,
                f"unknown source {item.value!r}: allow takes names defined under sources"
                f"{hint}{_suggest(item.value, self.source_names)}",
            )
        allowed = {item.value: item for item in good}
        for ref in self.source_refs:
            first = allowed.get(ref.value)
            if first is not None:
                line = first.node.start_mark.line + 1
                self.problem(
                    ref.node,
                    ref.key,
                    f"source {ref.value!r} is an allow source ({first.key}, line {line}); "
                    "it cannot also block",
                )
        return tuple(allowed)

    def state_dir(self, top: Entries) -> str:
        """An absolute directory path; it need not exist yet (the server creates it)."""
        if "state_dir" not in top:
            return default_state_dir()
        node = top["state_dir"][1]
        name = self.convert(node, "state_dir", _dir_text)
        if name is _MISSING:
            return ""
        if name.startswith("~"):
            self.problem(node, "state_dir", "'~' is not expanded here; write the full path")
            return ""
        full = self.local_path(name)
        if full.exists() and not full.is_dir():
            self.problem(node, "state_dir", f"{str(full)!r} exists and is not a directory")
        return str(full)

    # --- groups and policies ---------------------------------------------------------------

    def named(self, top: Entries, section: str, noun: str) -> list[tuple[str, Node, Node]]:
        """(name, key node, value node) of a `name -> settings` section, names validated."""
        if section not in top:
            return []
        node = top[section][1]
        if self.is_null(node):
            return []
        if not isinstance(node, MappingNode) or node.tag != f"{_TAG}map":
            self.problem(
                node,
                section,
                f"expected a mapping of {noun} names to settings, got {_describe_node(node)}",
            )
            return []
        found: list[tuple[str, Node, Node]] = []
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                self.problem(key_node, section, "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != f"{_TAG}str":
                got = _describe_node(key_node)
                hint = "" if "quote" in got else "; quote it"
                self.problem(key_node, section, f"a {noun} name must be text, got {got}{hint}")
                continue
            name = key_node.value
            key = _join(section, name)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.problem(
                    key_node, key, f"{noun} {name!r} is defined twice (first at line {first})"
                )
                continue
            seen[name] = key_node
            if not _NAME_RE.fullmatch(name):
                self.problem(
                    key_node,
                    key,
                    f"invalid {noun} name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-'",
                )
                continue
            found.append((name, key_node, value_node))
        return found

    def groups(self, top: Entries) -> tuple[tuple[GroupConfig, ...], frozenset[str]]:
        """The groups, and every well-formed group name (even of a group with bad settings,
        so references to it are not reported as unknown on top of its own problems)."""
        groups: list[GroupConfig] = []
        names: set[str] = set()
        owners: dict[IPNetwork, _Item] = {}
        for name, key_node, value_node in self.named(top, "groups", "group"):
            path = _join("groups", name)
            if name == REFUSE:
                self.problem(
                    key_node,
                    path,
                    "'refuse' is reserved: clients.default_group: "
                    "refuse means answering REFUSED; choose another name",
                )
                continue
            names.add(name)
            entries = self.mapping(value_node, path, _GROUP_KEYS)
            if entries is None:
                continue
            may_be_empty = name == DEFAULT_GROUP
            items = self.items(
                entries,
                "subnets",
                path,
                _group_network,
                empty=None if may_be_empty else "at least one subnet is required",
            )
            if "subnets" not in entries and not may_be_empty:
                self.problem(
                    key_node,
                    f"{path}.subnets",
                    "required: the networks (CIDRs) whose clients are in this group",
                )
            subnets: list[IPNetwork] = []
            for item in self.unique(items or []):
                first = owners.setdefault(item.value, item)
                if first is item:
                    subnets.append(item.value)
                    continue
                line = first.node.start_mark.line + 1
                self.problem(
                    item.node,
                    item.key,
                    f"{item.value} is already in {first.key} "
                    f"(line {line}); a network belongs to one group only",
                )
            groups.append(
                GroupConfig(
                    name=name,
                    subnets=tuple(subnets),
                    block=self.lists(entries, "block", path) or (),
                    exempt=self.exempt(entries, path),
                    line=key_node.start_mark.line + 1,
                )
            )
        return tuple(groups), frozenset(names)

    def exempt(self, entries: Entries, path: str) -> tuple[ExemptRule, ...]:
        items = self.items(entries, "exempt", path, _exempt_rule)
        return tuple(item.value for item in self.unique(items or []))

    def policies(
        self, top: Entries, group_names: frozenset[str], sinkhole: _Sinkhole | None
    ) -> tuple[tuple[PolicyConfig, ...], list[Any]]:
        """The policies, and their answer modes (`_MISSING` for a bad one) for the ip check."""
        policies: list[PolicyConfig] = []
        answers: list[Any] = []
        choices = group_names | {DEFAULT_GROUP}
        for name, key_node, value_node in self.named(top, "policies", "policy"):
            path = _join("policies", name)
            entries = self.mapping(value_node, path, _POLICY_KEYS)
            if entries is None:
                continue
            for required, what in (("block", "the lists it blocks"), ("groups", "who it is for")):
                if required not in entries:
                    self.problem(key_node, f"{path}.{required}", f"required: {what}")
            block = self.lists(entries, "block", path, empty="at least one list is required")
            group_items = self.items(
                entries, "groups", path, _name_text, empty="at least one group is required"
            )
            group_items = self.unique(group_items or [])
            for item in group_items:
                if item.value == REFUSE:
                    self.problem(
                        item.node,
                        item.key,
                        "'refuse' is not a group: it is a choice for clients.default_group",
                    )
                elif item.value not in choices:
                    self.problem(
                        item.node,
                        item.key,
                        f"unknown group {item.value!r}: define "
                        f"it under groups{_suggest(item.value, choices)}",
                    )
            reference = self.value(entries, "reference", path, _reference_text, None)
            valid_from = self.instant(entries, "from", path)
            valid_until = self.instant(entries, "until", path)
            if (
                isinstance(valid_from, datetime)
                and isinstance(valid_until, datetime)
                and valid_until <= valid_from
            ):
                self.problem(
                    entries["until"][1],
                    f"{path}.until",
                    f"until ({valid_until.isoformat()}) must be after "
                    f"from ({valid_from.isoformat()})",
                )
            answer = self.value(entries, "answer", path, _answer_mode, None)
            answers.append(answer)
            if answer is AnswerMode.IP and sinkhole is not None and not sinkhole.ips:
                self.problem(
                    entries["answer"][1],
                    f"{path}.answer",
                    "answer: ip needs at least one address under blocking.ip",
                )
            ttl = self.value(entries, "ttl", path, _ttl, None)
            policies.append(
                PolicyConfig(
                    name=name,
                    block=block or (),
                    groups=tuple(item.value for item in group_items),
                    reference=None if reference is _MISSING else reference,
                    valid_from=None if valid_from is _MISSING else valid_from,
                    valid_until=None if valid_until is _MISSING else valid_until,
                    answer=None if answer is _MISSING else answer,
                    ttl=None if ttl is _MISSING else ttl,
                    exempt=self.exempt(entries, path),
                    line=key_node.start_mark.line + 1,
                )
            )
        return tuple(policies), answers

    def instant(self, entries: Entries, name: str, path: str) -> Any:
        """A UTC datetime, `None` when absent, `_MISSING` when bad.

        YAML reads an unquoted `2023-03-10` as a timestamp, which the general scalar reader
        refuses (a timestamp where a duration belongs is a mistake); here it is what we want.
        """
        if name not in entries:
            return None
        key = _join(path, name)
        node = entries[name][1]
        if isinstance(node, ScalarNode) and node.tag == f"{_TAG}timestamp":
            try:
                raw = self._constructor.construct_object(node, deep=True)
                return parse_datetime(raw)
            except (yaml.YAMLError, ValueError, OverflowError) as e:
                self.problem(node, key, f"cannot read time {node.value!r}: {e}")
                return _MISSING
        return self.convert(node, key, parse_datetime)

    # --- observability ---------------------------------------------------------------------

    def metrics(self, top: Entries, listen: tuple[Endpoint, ...] | None) -> MetricsConfig:
        entries = self.section(top, "metrics", MetricsConfig)
        path = "metrics"
        defaults = MetricsConfig()
        enabled = self.value(entries, "enabled", path, _strict_bool, defaults.enabled)
        endpoint = self.value(entries, "listen", path, _metrics_endpoint, defaults.listen)
        token_file = None
        if "token_file" in entries:
            token_file = self.token_file(entries["token_file"][1], f"{path}.token_file")
        config = MetricsConfig(
            enabled=defaults.enabled if enabled is _MISSING else enabled,
            listen=defaults.listen if endpoint is _MISSING else endpoint,
            token_file=token_file,
        )
        if enabled is not _MISSING and endpoint is not _MISSING and listen is not None:
            clash = _metrics_clash(config, listen)
            if clash is not None:
                where = entries.get("listen") or entries.get("enabled") or top.get("listen")
                self.problem(where[1] if where else 0, f"{path}.listen", clash)
        return config

    def token_file(self, node: Node, key: str) -> str | None:
        """The token file's absolute path, after checking it holds a usable token."""
        name = self.convert(node, key, _path_text)
        if name is _MISSING:
            return None
        full = self.existing_file(node, key, name, "token file")
        if full is None:
            return None
        try:
            with open(full, "rb") as f:
                data = f.read(MAX_TOKEN_BYTES + 1)
        except OSError as e:
            self.problem(node, key, f"cannot read token file {str(full)!r}: {e.strerror or e}")
            return None
        token = data.strip()
        if len(data) > MAX_TOKEN_BYTES:
            self.problem(
                node,
                key,
                f"token file {str(full)!r} is larger than "
                f"{MAX_TOKEN_BYTES} bytes; a token is one short line",
            )
        elif not token:
            self.problem(node, key, f"token file {str(full)!r} is empty")
        elif not all(0x21 <= byte <= 0x7E for byte in token):
            self.problem(
                node,
                key,
                f"token file {str(full)!r}: the token must be one line of "
                "printable ASCII without spaces (it is sent in an HTTP header)",
            )
        else:
            return str(full)
        return None

    def audit(self, top: Entries) -> AuditConfig:
        entries = self.section(top, "audit", AuditConfig)
        path = "audit"
        defaults = AuditConfig()
        privacy = self.value(entries, "privacy", path, _privacy_mode, defaults.privacy)
        key_file = key_env = file = None
        if "key_file" in entries:
            node = entries["key_file"][1]
            name = self.convert(node, f"{path}.key_file", _path_text)
            if name is not _MISSING:
                full = self.existing_file(node, f"{path}.key_file", name, "key file")
                if full is not None and full.stat().st_size == 0:
                    self.problem(node, f"{path}.key_file", f"key file {str(full)!r} is empty")
                key_file = None if full is None else str(full)
        if "key_env" in entries:
            key_env = self.value(entries, "key_env", path, _env_name, None)
            key_env = None if key_env is _MISSING else key_env
        if privacy is PrivacyMode.PSEUDONYMISE:
            if "key_file" in entries and "key_env" in entries:
                self.problem(
                    entries["key_env"][0], f"{path}.key_env", "give key_file or key_env, not both"
                )
            elif "key_file" not in entries and "key_env" not in entries:
                self.problem(
                    entries["privacy"][1],
                    f"{path}.key_file",
                    "privacy: pseudonymise needs a secret: set key_file or key_env",
                )
        elif privacy is not _MISSING:
            for name in ("key_file", "key_env"):
                if name in entries:
                    self.problem(
                        entries[name][0],
                        f"{path}.{name}",
                        f"only used with privacy: pseudonymise (privacy is {privacy.value})",
                    )
        if "file" in entries:
            file = self.log_file(entries["file"][1], f"{path}.file")
        max_bytes = self.value(
            entries, "file_max_bytes", path, _positive_size, defaults.file_max_bytes
        )
        backups = self.value(entries, "file_backups", path, _backups, defaults.file_backups)
        fold = self.value(entries, "fold_window", path, parse_duration, defaults.fold_window)
        rate = self.value(
            entries, "max_events_per_second", path, _positive_int, defaults.max_events_per_second
        )
        return AuditConfig(
            privacy=defaults.privacy if privacy is _MISSING else privacy,
            key_file=key_file,
            key_env=key_env,
            file=file,
            file_max_bytes=defaults.file_max_bytes if max_bytes is _MISSING else max_bytes,
            file_backups=defaults.file_backups if backups is _MISSING else backups,
            fold_window=defaults.fold_window if fold is _MISSING else fold,
            max_events_per_second=(defaults.max_events_per_second if rate is _MISSING else rate),
        )

    def log_file(self, node: Node, key: str) -> str | None:
        """An absolute path in an existing directory; the file itself is created when needed."""
        name = self.convert(node, key, _path_text)
        if name is _MISSING:
            return None
        full = self.local_path(name)
        if full.is_dir():
            self.problem(node, key, f"{str(full)!r} is a directory; name a file in it")
        elif not full.parent.is_dir():
            self.problem(node, key, f"directory {str(full.parent)!r} does not exist")
        else:
            return str(full)
        return None

    def limits(self, top: Entries) -> LimitsConfig:
        entries = self.section(top, "limits", LimitsConfig)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(LimitsConfig):
            convert = _positive_duration if isinstance(f.default, float) else _positive_int
            if f.name == "max_regex_rules":
                convert = _count
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


def _strategy(raw: object) -> Strategy:
    choices = [s.value for s in Strategy]
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(choices)}, got {_describe(raw)}")
    try:
        return Strategy(raw.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown strategy {raw!r}: use one of {', '.join(choices)}{_suggest(raw, choices)}"
        ) from None


def _list_format(raw: object) -> ListFormat:
    choices = [f.value for f in ListFormat]
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(choices)}, got {_describe(raw)}")
    try:
        return ListFormat(raw.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown format {raw!r}: use one of {', '.join(choices)}{_suggest(raw, choices)}"
        ) from None


def _zone_name(raw: object) -> str:
    """A domain in canonical text; it stands for itself and every name below it."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a domain such as gov.internal, got {_describe(raw)}")
    text = raw.strip()
    try:
        _, canonical = names.normalise(text)
    except names.BadName as e:
        hint = "; a zone already covers every name below it" if "*" in text else ""
        raise ValueError(f"{e}{hint}") from None
    if canonical == ".":
        raise ValueError("the root would cover every name; name a domain")
    return canonical


def _response_network(raw: object) -> IPNetwork:
    network = _group_network(raw)
    if network.prefixlen == 0:
        raise ValueError(f"{str(raw).strip()!r} would block every answer with an address")
    return network


_URL_HINT = "a URL such as https://example.org/list.txt"


def _list_url(raw: object) -> str:
    """An http(s) URL with a host; whether plain http is allowed depends on `insecure`."""
    if not isinstance(raw, str):
        raise ValueError(f"expected {_URL_HINT}, got {_describe(raw)}")
    text = raw.strip()
    if not text:
        raise ValueError("empty URL")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("a URL cannot contain spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if "://" not in text or not scheme:
        raise ValueError(f"{text!r} is not a URL (expected {_URL_HINT}); use path: for a file")
    if scheme not in ("https", "http"):
        raise ValueError(
            f"unsupported scheme {parts.scheme!r}: use https:// (or http:// with insecure: true)"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"{text!r} has no host")
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is not allowed")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            names.normalise(host)
        except names.BadName as e:
            raise ValueError(f"{text!r}: bad host {e}") from None
    return text


def _fraction(raw: object) -> float:
    """A number from 0 to 1, or a percentage such as `50%`."""
    hint = "a fraction from 0 to 1 such as 0.5, or a percentage such as 50%"
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected {hint}, got {raw!r}") from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected {hint}, got {_describe(raw)}")
    else:
        value = float(raw)
    if math.isnan(value) or not 0 <= value <= 1:
        raise ValueError(f"must be from 0 to 1 (0% to 100%), got {raw}")
    return value


def _cache_bytes(raw: object) -> int:
    size = parse_size(raw)
    if size < MIN_CACHE_BYTES:
        raise ValueError(f"must be at least 64KiB ({MIN_CACHE_BYTES} bytes), got {size}")
    return size


def _whole_seconds(raw: object, low: int, high: int, high_text: str) -> int:
    seconds = parse_duration(raw)
    if seconds != int(seconds):
        raise ValueError(f"a TTL is a whole number of seconds, got {seconds:g}s")
    if seconds < low:
        raise ValueError(f"must be at least {low}s, got {seconds:g}s")
    if seconds > high:
        raise ValueError(f"at most {high} seconds ({high_text}), got {seconds:g}s")
    return int(seconds)


def _max_cache_ttl(raw: object) -> int:
    return _whole_seconds(raw, 1, MAX_CACHE_TTL, "7d")


def _stale_answer_ttl(raw: object) -> int:
    """RFC 8767: a stale answer's TTL must be above 0 (30 s recommended)."""
    return _whole_seconds(raw, 1, MAX_TTL, "1d")


def _failure_ttl(raw: object) -> float:
    """RFC 9520: failures MUST be cached at least 1 s, and never beyond 5 minutes."""
    seconds = parse_duration(raw)
    if not MIN_FAILURE_TTL <= seconds <= MAX_FAILURE_TTL:
        raise ValueError(
            f"must be from 1s to 5m (RFC 9520: failures are cached for at least 1 second "
            f"and at most 5 minutes), got {seconds:g}s"
        )
    return seconds


def _count(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {_describe(raw)}")
    if raw < 0:
        raise ValueError(f"must be at least 0, got {raw}")
    return raw


def _endpoint_text(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f'expected an address such as "127.0.0.1:53", got {_describe(raw)}')
    return parse_endpoint(raw)


def _workers(raw: object) -> int | str:
    if raw == "auto":
        return "auto"
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 256:
        raise ValueError("expected a number of worker processes from 1 to 256, or auto")
    return raw


def _nonempty_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a list name or file path, got {_describe(raw)}")
    if not raw.strip():
        raise ValueError("empty list name")
    return raw.strip()


def _group_network(raw: object) -> IPNetwork:
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
    return network


def _client_network(raw: object) -> IPNetwork:
    """As for groups, and never everything: the ACL is what keeps us from being open."""
    network = _group_network(raw)
    text = str(raw).strip()
    if network.prefixlen == 0:
        raise ValueError(
            f"{text!r} allows every address on the Internet; dnswarden must not be an open "
            "resolver, list your networks instead"
        )
    return network


def _name_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a group name, got {_describe(raw)}")
    if not raw.strip():
        raise ValueError("empty group name")
    return raw.strip()


def _exempt_rule(raw: object) -> ExemptRule:
    """`example.org` (itself and subdomains) or `=www.example.org` (that name only)."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a domain such as example.org, got {_describe(raw)}")
    text = raw.strip()
    exact = text.startswith("=")
    if exact:
        text = text[1:].strip()
    try:
        _, canonical = names.normalise(text)
    except names.BadName as e:
        hint = ""
        if "*" in text:
            hint = "; an exemption already covers every subdomain, so write it without '*.'"
        raise ValueError(f"{e}{hint}") from None
    if canonical == ".":
        raise ValueError("the root would exempt every name; name a domain")
    return ExemptRule(canonical, exact)


def _reference_text(raw: object) -> str:
    """One line of text: it is written into audit events and EDE EXTRA-TEXT as it is."""
    if not isinstance(raw, str):
        raise ValueError(f"expected text or a URL (quote it), got {_describe(raw)}")
    text = " ".join(raw.split())
    if not text:
        raise ValueError("empty reference; remove the key, or say which decision this is")
    if any(not ch.isprintable() for ch in text):
        raise ValueError("control characters are not allowed in a reference")
    if len(text) > MAX_REFERENCE_CHARS:
        raise ValueError(
            f"{len(text)} characters; at most {MAX_REFERENCE_CHARS} (cite the document, "
            "or give its URL)"
        )
    return text


def _metrics_endpoint(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f'expected an address such as "127.0.0.1:9153", got {_describe(raw)}')
    return parse_endpoint(raw, default_port=DEFAULT_METRICS_LISTEN.port)


def _path_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a file path, got {_describe(raw)}")
    if not raw.strip():
        raise ValueError("empty path")
    if "\0" in raw:
        raise ValueError("a path cannot contain a NUL character")
    return raw.strip()


def _dir_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a directory path, got {_describe(raw)}")
    return _path_text(raw)


def _env_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected an environment variable name, got {_describe(raw)}")
    if not _ENV_NAME_RE.fullmatch(raw):
        raise ValueError(
            f"{raw!r} is not an environment variable name (letters, digits and '_', "
            "not starting with a digit); give the variable's name, not the key"
        )
    return raw


def _privacy_mode(raw: object) -> PrivacyMode:
    modes = [m.value for m in PrivacyMode]
    if not isinstance(raw, str):
        raise ValueError(f"expected one of {', '.join(modes)}, got {_describe(raw)}")
    try:
        return PrivacyMode(raw.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown privacy mode {raw!r}: use one of {', '.join(modes)}{_suggest(raw, modes)}"
        ) from None


def _positive_size(raw: object) -> int:
    size = parse_size(raw)
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def _backups(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {_describe(raw)}")
    if not 0 <= raw <= MAX_AUDIT_BACKUPS:
        raise ValueError(f"must be from 0 to {MAX_AUDIT_BACKUPS}, got {raw}")
    return raw


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
    `resolver.lists.catalogue` when not given.
    """
    parser = _Parser(source, base_dir, known_lists)
    root = parser.compose(text)
    config = None if parser.problems else parser.config(root)
    if config is None:
        problems = sorted(parser.problems, key=lambda p: p.line)
        raise ConfigError(problems)
    return config
