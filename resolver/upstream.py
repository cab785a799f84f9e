"""Forwarding to upstream resolvers: spoofing-resistant exchanges, failover and query merging.

Every attempt uses a fresh random ID (`secrets`) from a fresh socket, so a fresh random source
port (RFC 5452); the socket is connected, so the kernel drops datagrams from any other address
and port, and `wire.reply_matches` drops the rest that do not carry our ID, QR and question. A
mismatch is counted and waiting goes on until the per-try timeout: one junk packet must not end
a query. ICMP errors do not end it either. A truncated reply is retried over TCP.

Upstreams are tried in configured order, except that one which failed `MAX_FAILS` times in a row
is tried after the healthy ones until it answers again. The whole query is bounded by a deadline;
identical queries in flight (name, type, class, DO, CD) share one upstream exchange.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Sequence

from resolver.audit import AuditLog
from resolver.config import Endpoint
from resolver.edns import EdeCode
from resolver.stats import Stats
from resolver.wire import (
    CD,
    HEADER_LEN,
    REFUSED,
    SERVFAIL,
    FormError,
    Query,
    UpstreamReply,
    reply_matches,
    upstream_query,
)

MAX_FAILS = 3
_FAILURE_LOG_INTERVAL = 1.0


class UpstreamFailure(Exception):
    """No upstream gave a usable answer within the deadline."""

    def __init__(self, ede: int, text: str) -> None:
        super().__init__(text)
        self.ede = ede
        self.text = text


class Overloaded(Exception):
    """Too many queries in flight upstream: the new one is dropped (the client will retry)."""


class _BadReply(Exception):
    pass


class UpstreamPool:
    def __init__(self, endpoints: Sequence[Endpoint], timeout: float, deadline: float,
                 max_inflight: int, stats: Stats, audit: AuditLog) -> None:  # fmt: skip
        self._loop = asyncio.get_running_loop()
        self._stats = stats
        self._audit = audit
        self._inflight: dict[tuple[bytes, int, int, bool, int], asyncio.Future[UpstreamReply]] = {}
        self._buffer = bytearray(65535)
        self._failures: dict[Endpoint, int] = {}
        self._last_logged: dict[tuple[Endpoint, str], float] = {}
        self.configure(endpoints, timeout, deadline, max_inflight)

    def configure(self, endpoints: Sequence[Endpoint], timeout: float, deadline: float,
                  max_inflight: int) -> None:  # fmt: skip
        """Apply new settings (start-up and reload); queries already in flight keep theirs."""
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.deadline = deadline
        self.max_inflight = max_inflight
        self._failures = {e: self._failures.get(e, 0) for e in self.endpoints}
        self._reorder()

    @property
    def healthy(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if self._failures[e] < MAX_FAILS)

    def _reorder(self) -> None:
        self._order = sorted(self.endpoints, key=lambda e: self._failures[e] >= MAX_FAILS)

    def _record(self, endpoint: Endpoint, ok: bool) -> None:
        before = self._failures.get(endpoint)
        if before is None:
            return  # removed by a reload meanwhile
        after = 0 if ok else before + 1
        self._failures[endpoint] = after
        if (before >= MAX_FAILS) != (after >= MAX_FAILS):
            self._reorder()
            self._audit.warning("upstream_health", upstream=str(endpoint),
                                healthy=after < MAX_FAILS)  # fmt: skip

    async def resolve(self, query: Query) -> UpstreamReply:
        """An upstream reply for `query`, shared with identical queries already in flight."""
        key = (query.qname, query.qtype, query.qclass, query.dnssec_ok, query.flags & CD)
        pending = self._inflight.get(key)
        if pending is not None:
            self._stats.count("upstream.merged")
            return await asyncio.shield(pending)
        if len(self._inflight) >= self.max_inflight:
            raise Overloaded
        shared: asyncio.Future[UpstreamReply] = self._loop.create_future()
        self._inflight[key] = shared
        try:
            reply = await self._try_upstreams(query)
        except BaseException as error:
            failure = error if isinstance(error, UpstreamFailure) else UpstreamFailure(
                EdeCode.NETWORK_ERROR, "query abandoned")
            shared.set_exception(failure)
            shared.exception()  # retrieved here, so a lone query leaves no warning behind
            raise
        else:
            shared.set_result(reply)
            return reply
        finally:
            del self._inflight[key]

    async def _try_upstreams(self, query: Query) -> UpstreamReply:
        loop = self._loop
        deadline = loop.time() + self.deadline
        ede = EdeCode.NO_REACHABLE_AUTHORITY
        for endpoint in self._order:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            timeout = min(self.timeout, remaining)
            try:
                reply = await self._exchange_udp(endpoint, query, timeout)
                if reply.truncated:
                    self._stats.count("upstream.tcp_retry")
                    reply = await self._exchange_tcp(endpoint, query, deadline - loop.time())
            except TimeoutError:
                self._failed(endpoint, "timeout", query)
                continue
            except (OSError, _BadReply, FormError, asyncio.IncompleteReadError) as error:
                self._failed(endpoint, "bad_reply" if not isinstance(error, OSError) else "error",
                             query)  # fmt: skip
                ede = EdeCode.NETWORK_ERROR
                continue
            if reply.rcode == SERVFAIL or reply.rcode == REFUSED:
                self._failed(endpoint, "servfail" if reply.rcode == SERVFAIL else "refused", query)
                continue
            self._stats.count("upstream.ok")
            self._record(endpoint, True)
            return reply
        raise UpstreamFailure(ede, "no upstream answered" if ede == EdeCode.NO_REACHABLE_AUTHORITY
                              else "upstream network error")  # fmt: skip

    def _failed(self, endpoint: Endpoint, reason: str, query: Query) -> None:
        """Count every failure; log at most one per upstream and reason each second, so an outage
        does not turn the audit trail into a copy of the query stream."""
        self._stats.count("upstream." + reason)
        self._record(endpoint, False)
        now = self._loop.time()
        key = (endpoint, reason)
        if now - self._last_logged.get(key, -_FAILURE_LOG_INTERVAL) >= _FAILURE_LOG_INTERVAL:
            self._last_logged[key] = now
            self._audit.upstream_failed(str(endpoint), reason, query)

    async def _exchange_udp(self, endpoint: Endpoint, query: Query,
                            timeout: float) -> UpstreamReply:  # fmt: skip
        loop = self._loop
        query_id = secrets.randbits(16)
        family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((endpoint.host, endpoint.port))
            waiter: asyncio.Future[UpstreamReply] = loop.create_future()
            fd = sock.fileno()
            loop.add_reader(fd, self._on_datagram, sock, waiter, query_id, query)
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                sock.send(upstream_query(query, query_id))
                return await waiter
            finally:
                timer.cancel()
                loop.remove_reader(fd)
        finally:
            sock.close()

    def _on_datagram(self, sock: socket.socket, waiter: asyncio.Future[UpstreamReply],
                     query_id: int, query: Query) -> None:  # fmt: skip
        buffer = self._buffer
        while not waiter.done():
            try:
                size = sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._stats.count("upstream.icmp_error")
                continue
            data = bytes(buffer[:size])
            if not reply_matches(data, query_id, query):
                self._stats.count("upstream.mismatch")
                continue
            try:
                waiter.set_result(UpstreamReply(data, query.question_end - HEADER_LEN))
            except FormError:
                waiter.set_exception(_BadReply())

    async def _exchange_tcp(self, endpoint: Endpoint, query: Query,
                            timeout: float) -> UpstreamReply:  # fmt: skip
        query_id = secrets.randbits(16)
        message = upstream_query(query, query_id)
        async with asyncio.timeout(max(timeout, 0.0)):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            try:
                writer.write(len(message).to_bytes(2, "big") + message)
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                    if reply_matches(data, query_id, query):
                        return UpstreamReply(data, query.question_end - HEADER_LEN)
                    self._stats.count("upstream.mismatch")
            finally:
                writer.close()


def _expire(waiter: asyncio.Future[UpstreamReply]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
