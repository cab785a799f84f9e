"""The encrypted listeners: DNS over TLS and DNS over HTTPS sockets, their certificate, their
connections and counters, started, reloaded and stopped by the service.

Each kind (`dot`, `doh`) is one `EncryptedListener` over all its addresses: one SSL context (its
own ALPN list), one set of open connections capped at `encrypted.max_connections`. A reload
builds new contexts from the certificate and key files; when that fails (a half-written file, a
key that does not match) the running ones stay and the failure is logged, so a bad renewal never
takes the service down. Established connections keep the context they started with.

Each listener knows when the certificate it serves expires (`not_after`, read from the file
each time a context is built from it), for the metric an alert watches: a renewal that failed,
or never ran, shows there weeks before phones refuse the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
from typing import Final

from resolver.config import EncryptedConfig, Endpoint
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.protocol.devices import device_from_server_name
from resolver.shell import privileges
from resolver.shell.doh import Http1Connection, Http2Connection
from resolver.shell.dot import DotStream
from resolver.shell.listeners import TCP_BACKLOG, Listeners
from resolver.shell.tls import (
    ServerNames,
    TlsConnection,
    certificate_not_after,
    server_context,
)

ALPN: Final = {"dot": ("dot",), "doh": ("h2", "http/1.1")}
TRANSPORTS: Final = ("dot", "doh")


class EncryptedListener:
    """Every socket of one encrypted transport and every connection open on them."""

    def __init__(self, transport: str, listeners: Listeners, config: EncryptedConfig,
                 stats: Stats, server_names: ServerNames) -> None:  # fmt: skip
        self.transport = transport
        self.listeners = listeners  # the pipeline, and the count of queries gone upstream
        self.loop = listeners.loop
        self.config = config
        self.stats = stats
        self.server_names = server_names
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # until `configure`
        self.connections: set[TlsConnection] = set()
        self.servers: list[asyncio.Server] = []
        self.bound: list[Endpoint] = []
        self.not_after: float | None = None  # the served certificate's, in Unix seconds
        self._trusted = tuple(config.trusted_proxies)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.config.dot if self.transport == "dot" else self.config.doh

    def configure(
        self, config: EncryptedConfig, context: ssl.SSLContext, not_after: float | None
    ) -> None:
        self.config = config
        self.context = context
        self.not_after = not_after
        self._trusted = tuple(config.trusted_proxies)

    # --- what TlsConnection asks ----------------------------------------------------------

    def admit(self, connection: TlsConnection) -> bool:
        if len(self.connections) >= self.config.max_connections:
            self.count("rejected")
            return False
        self.connections.add(connection)
        self.count("accepted")
        return True

    def release(self, connection: TlsConnection) -> None:
        self.connections.discard(connection)

    def trusts(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._trusted)

    def expects_proxy_header(self, peer: str) -> bool:
        return self.config.proxy_protocol and self.trusts(peer)

    def device_of(self, server_name: str | None) -> str | None:
        own = self.config.server_name
        return None if own is None else device_from_server_name(server_name, own)

    def application(self, tls: TlsConnection) -> asyncio.Protocol:
        if self.transport == "dot":
            return DotStream(self.listeners, self, self.device_of(tls.server_name))
        if tls.alpn == "h2":
            return Http2Connection(self, tls)
        return Http1Connection(self, tls)

    def handshake_failed(self, reason: str) -> None:
        self.stats.count(f"tls_failed.{self.transport}.{reason}")

    def count(self, event: str) -> None:
        self.stats.count(f"{self.transport}.{event}")

    def count_status(self, status: int) -> None:
        self.stats.count(f"doh_response.{status}")

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, reuse_port: bool) -> list[Endpoint]:
        for endpoint in self.endpoints:
            sock = bind_stream(endpoint, reuse_port)
            server = await self.loop.create_server(
                lambda: TlsConnection(self), sock=sock, backlog=TCP_BACKLOG
            )
            self.servers.append(server)
            self.bound.append(Endpoint(endpoint.host, sock.getsockname()[1]))
        return self.bound

    def close_servers(self) -> None:
        for server in self.servers:
            server.close()

    async def stop(self) -> None:
        self.close_servers()
        for connection in list(self.connections):
            connection.close()
        for server in self.servers:
            await server.wait_closed()


class EncryptedListeners:
    """DoT and DoH together, as the service starts, reloads, reports and stops them."""

    def __init__(self, listeners: Listeners, config: EncryptedConfig, stats: Stats,
                 audit: AuditLog) -> None:  # fmt: skip
        self.config = config
        self.audit = audit
        self.stats = stats
        self.server_names = ServerNames()
        self.kinds = {
            transport: EncryptedListener(transport, listeners, config, stats, self.server_names)
            for transport in TRANSPORTS
        }
        self.reload_error: str | None = None

    @property
    def active(self) -> list[EncryptedListener]:
        return [kind for kind in self.kinds.values() if kind.endpoints]

    def contexts(self, config: EncryptedConfig) -> dict[str, ssl.SSLContext]:
        """A fresh context per configured transport; OSError or SSLError when the files do not
        hold a usable certificate chain and key."""
        assert config.certificate is not None and config.key is not None
        certificate, key, names = config.certificate, config.key, self.server_names
        return {
            transport: server_context(certificate, key, ALPN[transport], names)
            for transport in TRANSPORTS
            if (config.dot if transport == "dot" else config.doh)
        }

    async def start(self, reuse_port: bool = False) -> dict[str, list[str]]:
        """Bind every encrypted listener; the start-up line's fields (`dot`, `doh`)."""
        if not self.config.enabled:
            return {}
        try:
            contexts = self.contexts(self.config)
        except (OSError, ssl.SSLError) as error:
            raise OSError(
                f"encrypted.certificate {self.config.certificate} with encrypted.key "
                f"{self.config.key}: {error}"
            ) from None
        not_after = served_until(self.config.certificate)
        fields: dict[str, list[str]] = {}
        for transport, context in contexts.items():
            kind = self.kinds[transport]
            kind.configure(self.config, context, not_after)
            fields[transport] = [str(e) for e in await kind.start(reuse_port)]
        return fields

    def reload(self, config: EncryptedConfig) -> None:
        """Re-read the certificate and key (SIGHUP); the running ones stay if that fails.
        Addresses, ports and listener kinds change only with a restart."""
        for transport, kind in self.kinds.items():
            new = config.dot if transport == "dot" else config.doh
            if new != kind.endpoints:
                self.audit.warning("reload_needs_restart", section=f"encrypted.{transport}")
        if not self.active:
            return
        running = dataclasses.replace(config, dot=self.config.dot, doh=self.config.doh)
        try:
            if running.certificate is None or running.key is None:
                raise ValueError("no certificate or key configured")
            contexts = self.contexts(running)
        except (OSError, ssl.SSLError, ValueError) as error:
            self.reload_error = str(error)[:300]
            self.stats.count("tls_reload.failed")
            self.audit.error("tls_reload_failed", error=self.reload_error,
                             certificate=running.certificate)  # fmt: skip
            return
        self.reload_error = None
        self.config = running
        not_after = served_until(running.certificate)
        for transport, context in contexts.items():
            self.kinds[transport].configure(running, context, not_after)
        self.stats.count("tls_reload.ok")
        self.audit.info("tls_reloaded", certificate=running.certificate, not_after=not_after)

    def open_connections(self) -> dict[str, int]:
        return {kind.transport: len(kind.connections) for kind in self.active}

    def certificate_expiry(self) -> dict[str, float]:
        """When each listener's served certificate expires (Unix seconds), for the metrics."""
        return {
            kind.transport: kind.not_after for kind in self.active if kind.not_after is not None
        }

    def status(self) -> dict[str, object]:
        """For /readyz: each listener's addresses and open connections, and whether the last
        certificate reload failed (the previous certificate is still served then)."""
        detail: dict[str, object] = {
            kind.transport: {
                "listening": [str(e) for e in kind.bound],
                "connections": len(kind.connections),
            }
            for kind in self.active
        }
        if self.reload_error is not None:
            detail["certificate_reload_error"] = self.reload_error
        return detail

    def serving(self) -> bool:
        return all(kind.bound for kind in self.active)

    def close_servers(self) -> None:
        for kind in self.active:
            kind.close_servers()

    async def stop(self) -> None:
        for kind in self.active:
            await kind.stop()


def served_until(certificate: str | None) -> float | None:
    """The notAfter of the certificate file just loaded into a context, or None when it cannot
    be read back (then no expiry is exported: the certificate itself did load)."""
    if certificate is None:
        return None
    try:
        with open(certificate, "rb") as file:
            return certificate_not_after(file.read(1 << 20))
    except (OSError, ValueError):
        return None


def bind_stream(endpoint: Endpoint, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; IPv6 sockets take IPv6 only, as the plain listeners do. A worker
    takes the one its supervisor bound for it, if it did (`privileges.inherited`)."""
    given = privileges.inherited("stream", endpoint)
    if given is not None:
        return given
    family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        try:
            sock.bind((endpoint.host, endpoint.port))
        except OSError as error:
            raise OSError(error.errno, f"{endpoint}: {error.strerror or error}") from None
        sock.listen(TCP_BACKLOG)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock
