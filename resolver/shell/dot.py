"""DNS over TLS (RFC 7858): RFC 7766 framing on the decrypted stream.

The framing, pipelining, out-of-order answers, per-connection cap on queries in flight and the
stall and idle timers are the TCP listener's (`TcpConnection`); what differs is where the bytes
come from (`resolver.shell.tls`), the query's channel (transport `dot`, the device id from the
server name) and the idle timeout (`encrypted.idle_timeout`: phones keep DoT connections open).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from resolver.pipeline import Channel
from resolver.shell.listeners import Listeners, TcpConnection

if TYPE_CHECKING:
    from resolver.shell.encrypted import EncryptedListener


class DotStream(TcpConnection):
    events = "dot."

    def __init__(self, listeners: Listeners, owner: EncryptedListener, device: str | None) -> None:
        super().__init__(listeners)
        self.owner = owner
        self.channel = Channel("dot", device or "")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The TLS layer below has admitted (and counted) the connection already.
        self.transport = transport  # type: ignore[assignment]
        self.client = transport.get_extra_info("peername")[0]
        self._rearm()

    def idle_timeout(self) -> float:
        return self.owner.config.idle_timeout
