"""Scalar values as written in a config: durations, sizes, dates, addresses, upstreams, names.

Each parser takes the Python value YAML produced and returns the typed value or raises
`ValueError` with a message an operator can act on; `nodes.Reader.convert` turns that into a
located problem. The `parse_*` functions are public (the CLI and tests use them); the rest are
the converters several sections share.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeAlias, TypeVar

from resolver.config.problems import describe, suggest
from resolver.protocol import names

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_TTL = 86400
MAX_SIZE_BYTES = 1 << 50
UPSTREAM_PORTS = {"udp": 53, "tcp": 53, "tls": 853}
LIST_FILE_SUFFIXES = (".txt", ".hosts", ".list", ".conf")


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


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_HINT = "a duration such as 1.5s, 500ms, 2m, 6h, 1d or a number of seconds"


def parse_duration(value: object) -> float:
    """Seconds from `1.5s`, `500ms`, `2m`, `6h`, `1d` or a plain number; never negative."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {_DURATION_HINT}, got {describe(value)}")
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
    raise ValueError(f"expected {_TIME_HINT}, got {describe(value)}")


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
        raise ValueError(f"expected {_SIZE_HINT}, got {describe(value)}")
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
        raise ValueError(f"expected an address such as 127.0.0.1:53, got {describe(text)}")
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
        address = parse_host(host)
        if address.version != 6:
            raise ValueError(f"{text!r}: brackets are only for IPv6 addresses")
    elif s.count(":") >= 2:
        address, port = parse_host(s), default_port
    elif ":" in s:
        host, port_text = s.split(":")
        address, port = parse_host(host), _parse_port(port_text, text)
    else:
        address, port = parse_host(s), default_port
    return Endpoint(address.compressed, port)


def parse_host(host: str) -> IPAddress:
    """An IP address; a hostname is refused with the reason, anything else as invalid."""
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
        raise ValueError(f"expected {_UPSTREAM_HINT}, got {describe(text)}")
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
            f"{hint}{suggest(protocol, UPSTREAM_PORTS)}"
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


def names_a_file(list_name: str) -> bool:
    """Whether a list name is a file path: it has a '/' or a list file's ending. Catalogue ids
    and source names never do, so the three kinds of list name cannot be confused."""
    return "/" in list_name or list_name.endswith(LIST_FILE_SUFFIXES)


def unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped IPv6 one (`::ffff:a.b.c.d`), else `address`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Converters shared by several sections: raw YAML value in, typed value out or ValueError.

Member = TypeVar("Member", bound=enum.Enum)


def choice(kind: type[Member], noun: str) -> Callable[[object], Member]:
    """A converter to one member of the enum `kind`, by its value, case-insensitively."""
    choices = [member.value for member in kind]

    def convert(raw: object) -> Member:
        if not isinstance(raw, str):
            raise ValueError(f"expected one of {', '.join(choices)}, got {describe(raw)}")
        try:
            return kind(raw.strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown {noun} {raw!r}: use one of {', '.join(choices)}{suggest(raw, choices)}"
            ) from None

    return convert


def strict_bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {describe(raw)}")
    return raw


def positive_int(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected a whole number, got {describe(raw)}")
    if raw <= 0:
        raise ValueError(f"must be at least 1, got {raw}")
    return raw


def positive_duration(raw: object) -> float:
    seconds = parse_duration(raw)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def ttl(raw: object) -> int:
    """A TTL as on the wire: whole seconds, at most a day."""
    seconds = parse_duration(raw)
    if seconds != int(seconds):
        raise ValueError(f"a TTL is a whole number of seconds, got {seconds:g}s")
    if seconds > MAX_TTL:
        raise ValueError(f"at most {MAX_TTL} seconds (1d), got {seconds:g}s")
    return int(seconds)


def positive_size(raw: object) -> int:
    size = parse_size(raw)
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def path_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a file path, got {describe(raw)}")
    if not raw.strip():
        raise ValueError("empty path")
    if "\0" in raw:
        raise ValueError("a path cannot contain a NUL character")
    return raw.strip()


def dir_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a directory path, got {describe(raw)}")
    return path_text(raw)


def name_text(raw: object) -> str:
    """A group name as referred to (whether such a group exists is checked by the caller)."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a group name, got {describe(raw)}")
    if not raw.strip():
        raise ValueError("empty group name")
    return raw.strip()


def zone_name(raw: object) -> str:
    """A domain in canonical text; it stands for itself and every name below it."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a domain such as gov.internal, got {describe(raw)}")
    text = raw.strip()
    try:
        _, canonical = names.normalise(text)
    except names.BadName as e:
        hint = "; a zone already covers every name below it" if "*" in text else ""
        raise ValueError(f"{e}{hint}") from None
    if canonical == ".":
        raise ValueError("the root would cover every name; name a domain")
    return canonical


def network(raw: object) -> IPNetwork:
    """A CIDR, or a bare address meaning just that host; host bits set is refused with a hint."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a network such as 10.0.0.0/8, got {describe(raw)}")
    text = raw.strip()
    if "%" in text:
        raise ValueError(f"{text!r}: IPv6 zone ids (%interface) are not supported")
    try:
        parsed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid network (expected e.g. 10.0.0.0/8)") from None
    if "/" in text and parsed.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"{text!r} has host bits set; did you mean {parsed}?")
    return parsed
