"""The `encrypted` section: DNS over TLS (RFC 7858) and over HTTPS (RFC 8484) listeners, their
certificate, our server name (for device ids and DDR), and the proxies trusted to name clients.

Nothing listens unless `dot` or `doh` lists an address; then `certificate`, `key` and
`server_name` are required. The certificate and key are checked for PEM form here and loaded by
the shell, which re-reads them on every reload (SIGHUP) without dropping connections.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Item, Reader, join, line_of
from resolver.config.problems import describe
from resolver.config.values import (
    Endpoint,
    IPAddress,
    IPNetwork,
    network,
    parse_endpoint,
    parse_host,
    parse_size,
    path_text,
    positive_duration,
    positive_int,
    strict_bool,
    unmapped,
)
from resolver.protocol import names

DOT_PORT = 853
DOH_PORT = 443
MIN_HEADER_BYTES = 1024
MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class EncryptedConfig:
    """Encrypted listeners; `enabled` when at least one DoT or DoH address is configured."""

    dot: tuple[Endpoint, ...] = ()
    doh: tuple[Endpoint, ...] = ()
    certificate: str | None = None  # PEM chain, leaf first (absolute path)
    key: str | None = None  # PEM private key (absolute path); a path, never the key itself
    server_name: str | None = None  # e.g. dns.example.gov; device ids are <id>.<server_name>
    ddr: bool = True  # answer _dns.resolver.arpa SVCB with our endpoints (RFC 9462)
    hints: tuple[IPAddress, ...] = ()  # DDR ipv4hint/ipv6hint; none: the listeners' addresses
    trusted_proxies: tuple[IPNetwork, ...] = ()  # may name the client (PROXY v2, Forwarded)
    proxy_protocol: bool = False  # trusted proxies send a PROXY v2 header first
    max_connections: int = 1000  # open connections per listener kind (DoT, DoH)
    idle_timeout: float = 30.0
    handshake_timeout: float = 5.0
    max_streams: int = 100  # concurrent HTTP/2 streams per connection
    max_header_bytes: int = 16384  # HTTP request head (HTTP/1.1) or header list (HTTP/2)

    @property
    def enabled(self) -> bool:
        return bool(self.dot or self.doh)

    def ddr_hints(self) -> tuple[IPAddress, ...]:
        """The addresses DDR answers carry: `hints`, else every listener's specific address."""
        if self.hints:
            return self.hints
        found: list[IPAddress] = []
        for endpoint in (*self.doh, *self.dot):
            address = ipaddress.ip_address(endpoint.host)
            if not address.is_unspecified and address not in found:
                found.append(address)
        return tuple(found)


_KEYS = [
    "dot", "doh", "certificate", "key", "server_name", "ddr", "hints", "trusted_proxies",
    "proxy_protocol", "max_connections", "idle_timeout", "handshake_timeout", "max_streams",
    "max_header_bytes",
]  # fmt: skip
_PATH = "encrypted"


def read_encrypted(reader: Reader, top: Entries, listen: tuple[Endpoint, ...] | None,
                   metrics: Endpoint | None) -> EncryptedConfig:  # fmt: skip
    """The section; `listen` (the plain DNS listeners) and `metrics` (the metrics endpoint, None
    when disabled) must not share a TCP port with an encrypted listener."""
    node = top[_PATH][1] if _PATH in top else None
    entries = reader.mapping(node, _PATH, _KEYS)
    if entries is None:
        return EncryptedConfig()
    defaults = EncryptedConfig()
    values: dict[str, Any] = {}
    dot = _endpoints(reader, entries, "dot", DOT_PORT)
    doh = _endpoints(reader, entries, "doh", DOH_PORT)
    values["dot"] = tuple(item.value for item in dot)
    values["doh"] = tuple(item.value for item in doh)
    for name, what in (("certificate", "certificate"), ("key", "private key")):
        if name in entries:
            key_node = entries[name][1]
            text = reader.convert(key_node, join(_PATH, name), path_text)
            if text is not MISSING:
                values[name] = files.pem_file(reader, key_node, join(_PATH, name), text, what)
    server_name = reader.value(entries, "server_name", _PATH, _server_name, None)
    if server_name is not MISSING:
        values["server_name"] = server_name
    hints = reader.items(entries, "hints", _PATH, _hint)
    if hints is not None:
        values["hints"] = tuple(item.value for item in reader.unique(hints))
    proxies = reader.items(entries, "trusted_proxies", _PATH, network)
    if proxies is not None:
        values["trusted_proxies"] = tuple(item.value for item in reader.unique(proxies))
    for name, convert in (("ddr", strict_bool), ("proxy_protocol", strict_bool),
                          ("max_connections", positive_int), ("idle_timeout", positive_duration),
                          ("handshake_timeout", positive_duration),
                          ("max_streams", positive_int),
                          ("max_header_bytes", _header_bytes)):  # fmt: skip
        value = reader.value(entries, name, _PATH, convert, getattr(defaults, name))
        if value is not MISSING:
            values[name] = value
    config = EncryptedConfig(**values)
    if config.enabled:
        for name in ("certificate", "key", "server_name"):
            if name not in entries:
                reader.problem(
                    node if node is not None else 0,
                    join(_PATH, name),
                    "required when dot or doh lists an address",
                )
    if config.proxy_protocol and not config.trusted_proxies and "trusted_proxies" not in entries:
        reader.problem(
            entries["proxy_protocol"][1],
            join(_PATH, "proxy_protocol"),
            "needs trusted_proxies: only those may send a PROXY header",
        )
    _check_ports(reader, dot, doh, listen, metrics)
    return config


def _endpoints(reader: Reader, entries: Entries, name: str, port: int) -> list[Item]:
    def convert(raw: object) -> Endpoint:
        if not isinstance(raw, str):
            raise ValueError(f'expected an address such as "127.0.0.1:{port}", got {describe(raw)}')
        return parse_endpoint(raw, default_port=port)

    items = reader.items(entries, name, _PATH, convert)
    return reader.unique(items) if items is not None else []


def _server_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a host name such as dns.example.gov, got {describe(raw)}")
    text = raw.strip().rstrip(".")
    if "*" in text:
        raise ValueError("our own name, without '*.': device ids go in front of it")
    try:
        _, canonical = names.normalise(text)
    except names.BadName as e:
        raise ValueError(str(e)) from None
    if canonical.count(".") < 1:
        raise ValueError(f"{canonical!r}: a fully qualified name such as dns.example.gov")
    return canonical


def _hint(raw: object) -> IPAddress:
    if not isinstance(raw, str):
        raise ValueError(f"expected an IP address, got {describe(raw)}")
    address = parse_host(raw.strip())
    if address.is_unspecified:
        raise ValueError(f"{raw!r} is no address a client can reach")
    return address


def _header_bytes(raw: object) -> int:
    size = parse_size(raw)
    if not MIN_HEADER_BYTES <= size <= MAX_HEADER_BYTES:
        raise ValueError(f"must be from {MIN_HEADER_BYTES} bytes to 1MiB, got {size}")
    return size


def _clash(a: Endpoint, b: Endpoint) -> bool:
    """Whether two TCP listeners would need the same socket."""
    if a.port != b.port or a.port == 0:
        return False
    ours, theirs = (unmapped(ipaddress.ip_address(e.host)) for e in (a, b))
    if ours == theirs:
        return True
    wildcard = next((x for x in (ours, theirs) if x.is_unspecified), None)
    return wildcard is not None and (ours.version == theirs.version or wildcard.version == 6)


def _check_ports(
    reader: Reader,
    dot: list[Item],
    doh: list[Item],
    listen: tuple[Endpoint, ...] | None,
    metrics: Endpoint | None,
) -> None:
    taken: list[tuple[str, Endpoint]] = []
    for index, endpoint in enumerate(listen or ()):
        taken.append((f"DNS listener {endpoint} (listen[{index}])", endpoint))
    if metrics is not None:
        taken.append((f"the metrics endpoint {metrics}", metrics))
    for item in (*dot, *doh):
        other = next((what for what, e in taken if _clash(e, item.value)), None)
        if other is not None:
            reader.problem(item.node, item.key, f"{item.value} would share a port with {other}")
        taken.append((f"{item.key} {item.value} (line {line_of(item.node)})", item.value))
