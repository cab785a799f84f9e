"""The upstreams actually used: the configured ones, else the system's resolv.conf nameservers
(minus dnswarden's own listeners), else Quad9; and the loop check that keeps an upstream from
being one of our own listeners."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from resolver.config.model import Config
from resolver.config.values import Endpoint, UpstreamServer, unmapped

FALLBACK_UPSTREAMS: tuple[UpstreamServer, ...] = (
    UpstreamServer("udp", "9.9.9.9", 53),
    UpstreamServer("udp", "149.112.112.112", 53),
)


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


def loops(server: UpstreamServer, listeners: Iterable[Endpoint]) -> bool:
    """Plain DNS to one of our own listeners would come straight back; TLS cannot (we serve
    no TLS), so it is never a loop."""
    return server.protocol != "tls" and _is_own_listener(server.endpoint, listeners)


def loop_message(server: Endpoint | UpstreamServer) -> str:
    return f"{server} is one of dnswarden's own listeners; forwarding to it would loop"


def _is_own_listener(server: Endpoint, listeners: Iterable[Endpoint]) -> bool:
    """True when packets sent to `server` would reach one of `listeners` on this host."""
    server_ip = unmapped(ipaddress.ip_address(server.host))
    local = server_ip.is_loopback or server_ip.is_unspecified
    for listener in listeners:
        if listener.port != server.port or listener.port == 0:
            continue
        listener_ip = unmapped(ipaddress.ip_address(listener.host))
        if listener_ip == server_ip:
            return True
        if local and (listener_ip.is_unspecified or server_ip.is_unspecified):
            return True
    return False
