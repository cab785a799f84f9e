"""The persistent, pipelined connections to `tcp://` and `tls://` upstreams (RFC 7766 6.2.1,
RFC 7858): queries share one connection per upstream, told apart by ID, and each reply counts
only when its ID, QR bit and question are those of a query waiting on it (RFC 5452).

Kept apart from the pool, whose hot path is UDP: this is the stream transport alone, with no
strategy or health of its own (the pool judges every reply and failure).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Container

from resolver.config import UpstreamServer
from resolver.observe.stats import Stats
from resolver.protocol.wire import (
    HEADER_LEN,
    FormError,
    Query,
    UpstreamReply,
    reply_matches,
    upstream_query,
)
from resolver.upstream.datagrams import BadReply

STREAM_IDLE_TIMEOUT = 10.0
"""Seconds a connection with nothing pending stays open."""
_ID_TRIES = 32


class StreamClosed(Exception):
    """The persistent connection closed before our reply came."""


class _Connection:
    """One open TCP/TLS connection and the queries waiting on it, by ID."""

    __slots__ = ("idle", "pending", "reader", "sent", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, tuple[asyncio.Future[UpstreamReply], Query]] = {}
        self.idle: asyncio.TimerHandle | None = None
        self.sent = 0


class Stream:
    """The persistent, pipelined connection to one `tcp://` or `tls://` upstream.

    Queries share the current connection, each under an ID unique on it; a reader task hands
    each reply to the query whose ID, QR bit and question it matches (anything else is counted
    and dropped). The connection closes after `idle_timeout` with nothing pending, and a query
    whose reused connection turns out closed by the server is retried once on a new one.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: UpstreamServer,
        context: ssl.SSLContext | None,
        stats: Stats,
        idle_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._server = server
        self._context = context
        self._stats = stats
        self.idle_timeout = STREAM_IDLE_TIMEOUT if idle_timeout is None else idle_timeout
        self._lock = asyncio.Lock()
        self._current: _Connection | None = None
        self.readers: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def exchange(self, query: Query, timeout: float) -> UpstreamReply:
        async with asyncio.timeout(max(timeout, 0.0)):
            for attempt in range(2):
                connection, fresh = await self._connection()
                query_id = free_id(connection.pending)
                waiter: asyncio.Future[UpstreamReply] = self._loop.create_future()
                connection.pending[query_id] = (waiter, query)
                if connection.idle is not None:
                    connection.idle.cancel()
                    connection.idle = None
                try:
                    message = upstream_query(query, query_id)
                    connection.writer.write(len(message).to_bytes(2, "big") + message)
                    connection.sent += 1
                    return await waiter
                except StreamClosed:
                    if fresh or attempt:
                        raise
                    self._stats.count("upstream.stream_retry")
                finally:
                    connection.pending.pop(query_id, None)
                    if not connection.pending and connection is self._current:
                        connection.idle = self._loop.call_later(
                            self.idle_timeout, self._close_idle, connection
                        )
        raise StreamClosed  # not reached: the loop returns or raises

    async def _connection(self) -> tuple[_Connection, bool]:
        async with self._lock:
            current = self._current
            if current is not None and not current.writer.is_closing():
                return current, False
            server = self._server
            reader, writer = await asyncio.open_connection(
                server.host,
                server.port,
                ssl=self._context,
                server_hostname=server.tls_name if self._context is not None else None,
            )
            connection = _Connection(reader, writer)
            self._current = connection
            self.connections += 1
            task = self._loop.create_task(self._read(connection))
            self.readers.add(task)
            task.add_done_callback(self.readers.discard)
            return connection, True

    async def _read(self, connection: _Connection) -> None:
        reader = connection.reader
        pending = connection.pending
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                found = pending.get((data[0] << 8) | data[1]) if size >= 2 else None
                if found is None or found[0].done():
                    self._stats.count("upstream.mismatch")
                    continue
                waiter, query = found
                deliver(waiter, data, (data[0] << 8) | data[1], query, self._stats)
        except (OSError, EOFError):
            pass
        finally:
            if self._current is connection:
                self._current = None
            if connection.idle is not None:
                connection.idle.cancel()
            connection.writer.close()
            for waiter, _ in pending.values():
                if not waiter.done():
                    waiter.set_exception(StreamClosed())

    def _close_idle(self, connection: _Connection) -> None:
        connection.idle = None
        if not connection.pending:
            if self._current is connection:
                self._current = None
            connection.writer.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.writer.close()
            self._current = None
        for task in list(self.readers):
            task.cancel()


def free_id(pending: Container[int]) -> int:
    """A random ID not in use on the connection (a scan only when random picks keep hitting)."""
    for _ in range(_ID_TRIES):
        query_id = secrets.randbits(16)
        if query_id not in pending:
            return query_id
    for query_id in range(65536):
        if query_id not in pending:
            return query_id
    raise StreamClosed  # 65536 queries pending on one connection: try it as a failure


def deliver(
    waiter: asyncio.Future[UpstreamReply], data: bytes, query_id: int, query: Query, stats: Stats
) -> None:
    """Settle `waiter` with `data` if it is the reply to `query` (RFC 5452); anything else is
    counted and ignored, and the wait goes on."""
    if not reply_matches(data, query_id, query):
        stats.count("upstream.mismatch")
        return
    try:
        waiter.set_result(UpstreamReply(data, query.question_end - HEADER_LEN))
    except FormError:
        waiter.set_exception(BadReply())
