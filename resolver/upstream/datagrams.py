"""UDP exchanges with upstreams: a fresh random port per query, driven by callbacks, no tasks.

Every exchange gets a new random source port and a new random ID (RFC 5452): an off-path
attacker must guess both while the query is in flight. The socket is not connected; a datagram
counts only if it comes from the upstream's address and port and carries our ID, QR bit and
question (`wire.reply_matches`). Anything else is counted and ignored, and the wait goes on until
the timeout: one junk packet must not end a query.

Forwarding is the one hot path that needs the kernel most, so it asks it as little as it can.
A fresh port needs no fresh socket: `sendto` on an unbound socket binds it to a random port of
the kernel's choosing, and a `connect` to AF_UNSPEC (a "disconnect") releases that port again
when the exchange ends, so the next `sendto` draws another (Linux: `__udp_disconnect` unhashes
an automatically bound port). So on Linux an exchange costs `sendto`, `recvfrom` and that
disconnect, on a socket kept in a small pool and in our epoll set for good, where a fresh socket
per query cost `socket`, `epoll_ctl`, `sendto`, `recvfrom` and `close` (measured: 20 against 29
µs of user and system CPU per exchange). A socket goes back to the pool only once an epoll poll
taken after its disconnect has shown it holds no datagram (nothing can reach it after the
disconnect): until then it rests, and one that was readable is closed. The sockets sit in an
epoll set of our own, itself watched by the event loop, so a busy loop pays one wake-up for
many replies and no per-socket loop handle. Where epoll or the disconnect is missing (not
Linux) each exchange has a socket of its own, watched by the loop itself and closed at its end.

Timeouts are one timer for all: each exchange's fd joins the set of the `SWEEP_INTERVAL` tick its
expiry falls in and leaves it when answered (a dict lookup and a set operation each way, where a
heap cost ~30 tuple comparisons per query at 10k queries in flight). Only ticks with exchanges
still waiting remain, so the timer wakes when one may be due, not every tick.

IDs come from the operating system's CSPRNG, read 4 KiB at a time rather than one syscall per
query, and taken off a list (`list.pop`, no call of ours).

An exchange is one object per query: a caller with state of its own per query (the pool's walk
through its upstreams) subclasses `UdpExchange` and is handed back to its `outcome`, rather than
allocating a second object that points at the first.
"""

from __future__ import annotations

import _socket
import asyncio
import ctypes
import os
import select
import sys
from collections.abc import Callable
from typing import Any

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

SWEEP_INTERVAL = 0.01
"""How late a timeout may fire: the sweep runs at most this often while exchanges wait."""
_TICKS = 1 / SWEEP_INTERVAL
_RECEIVE_SIZE = 65535
_NONBLOCK = getattr(_socket, "SOCK_NONBLOCK", 0)
_SOCKET_TYPE = _socket.SOCK_DGRAM | _NONBLOCK
_EPOLLIN = getattr(select, "EPOLLIN", 1)
EXPIRE_BUDGET = 64
"""Timeouts handled per turn of the loop, like `UDP_BATCH` reads per wake-up: a flood's burst of
forwarded names timing out at once waits its turn beside the queries being answered."""
_POLL_MAX = 256
"""Replies taken per wake-up; more wait for the next turn of the loop (epoll stays ready)."""
IDLE_SOCKETS = 256
"""Sockets kept for the next exchanges, per address family; more are closed."""

Outcome = Callable[[UpstreamReply | None, BaseException | None, Any], None]
"""`send`'s callback, once per exchange: (reply, None, context) or (None, error, context)."""
Ended = Callable[[UpstreamReply | None, BaseException | None, Any], None]
"""`send_to`'s callback, once per exchange: (reply, None, exchange) or (None, error, exchange)."""


Disconnect = Callable[[int, Any, int], int]
"""The C library's `connect(fd, address, length)`: 0 when done."""
UNSPECIFIED = ctypes.create_string_buffer(16)
"""A sockaddr whose family is AF_UNSPEC (0): `connect` to it is the disconnect."""


def _disconnector() -> Disconnect | None:
    """The C library's `connect`, whose AF_UNSPEC form (`UNSPECIFIED`) releases a UDP socket's
    automatically bound port (Linux; Python's `connect` builds no AF_UNSPEC address). Called
    as it stands, without `argtypes` (ints and a buffer need none): half the instructions.
    None elsewhere, or when the C library cannot be reached."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        connect: Disconnect = ctypes.CDLL(None).connect
    except (OSError, AttributeError):
        return None
    return connect


class BadReply(Exception):
    """A datagram that matched our query but is not a well-formed DNS message."""


class RandomIds:
    """16-bit IDs from `os.urandom`, 2048 per read. The hot path pops `ids` itself and calls
    this only when it is empty."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self) -> int:
        ids = self.ids
        if not ids:
            ids.extend(memoryview(os.urandom(4096)).cast("H"))
        return ids.pop()


class UdpExchange:
    """One query on one socket, until it is answered, times out or is cancelled. The caller
    sets `query`; `send_to` fills in the rest, and `outcome` is None once it has ended (the
    same object may then be sent again, to another upstream)."""

    __slots__ = ("address", "expires", "fd", "outcome", "query", "query_id", "sock", "tick")

    address: tuple[str, int]
    expires: float
    fd: int
    outcome: Ended | None
    query: Query
    query_id: int
    sock: _socket.socket
    tick: int
    """The sweep tick whose set holds this exchange's fd."""


class _Callback(UdpExchange):
    """An exchange of `send`: its `callback` hears `context` rather than the exchange."""

    __slots__ = ("callback", "context")

    def __init__(self, query: Query, callback: Outcome, context: Any) -> None:
        self.query = query
        self.callback = callback
        self.context = context


def _call_back(reply: UpstreamReply | None, error: BaseException | None, exchange: Any) -> None:
    exchange.callback(reply, error, exchange.context)


class UdpExchanges:
    """Every UDP exchange in flight, for every upstream of one pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats) -> None:
        self._loop = loop
        self._stats = stats
        self._pending: dict[int, UdpExchange] = {}
        # Tick (expiry in SWEEP_INTERVALs, rounded up) -> fds of the exchanges waiting in it.
        self._due: dict[int, set[int]] = {}
        # uvloop hands back a plain Handle, without when(), for a delay under a millisecond.
        self._sweep: asyncio.Handle | None = None
        self._sweep_tick = 0
        self.random_id = RandomIds()
        epoll = getattr(select, "epoll", None)
        self._epoll: Any = epoll() if epoll is not None else None
        if self._epoll is not None:
            loop.add_reader(self._epoll.fileno(), self._on_ready)
        # Reused sockets (module docstring): only with our epoll set and the disconnect.
        self._disconnect = _disconnector() if self._epoll is not None else None
        self._idle: dict[int, list[_socket.socket]] = {_socket.AF_INET: [], _socket.AF_INET6: []}
        """Per address family, sockets with no port and no datagram, for the next exchanges."""
        self._resting: dict[int, _socket.socket] = {}
        """Sockets disconnected since the last poll of our epoll set, by fd."""

    def __len__(self) -> int:
        return len(self._pending)

    def send(
        self,
        server: UpstreamServer,
        query: Query,
        timeout: float,
        outcome: Outcome,
        context: Any = None,
    ) -> UdpExchange:
        """Send `query` to `server` from a fresh port; `outcome(reply, error, context)` hears
        how it ended. Raises OSError when the socket cannot be made or the datagram cannot be
        sent."""
        family = _socket.AF_INET6 if server.family == 6 else _socket.AF_INET
        exchange = _Callback(query, outcome, context)
        expires = self._loop.time() + timeout
        self.send_to(exchange, family, (server.host, server.port), expires, _call_back)
        return exchange

    def send_to(
        self,
        exchange: UdpExchange,
        family: int,
        address: tuple[str, int],
        expires: float,
        outcome: Ended,
    ) -> None:
        """Send `exchange.query` to `address` (of socket `family`) from a fresh port with a fresh
        ID, to be answered by loop time `expires`; `outcome(reply, error, exchange)` hears how
        it ended. The hot path, one call per forwarded query: the pool works out the family and
        address once per upstream and its walk is the exchange. Raises OSError as `send`."""
        ids = self.random_id.ids
        query_id = ids.pop() if ids else self.random_id()
        sock: _socket.socket | None = None
        if self._disconnect is not None:
            idle = self._idle.get(family)
            if idle is not None:
                if not idle and self._resting:
                    self._wake_resting()
                if idle:
                    sock = idle.pop()
        fresh = sock is None
        if sock is None:
            sock = _socket.socket(family, _SOCKET_TYPE)
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            # Unbound (a fresh or a disconnected socket): the kernel binds a random port.
            sock.sendto(upstream_query(exchange.query, query_id), address)
            fd = sock.fileno()
            if fresh:  # (a reused socket stays in our epoll set)
                if self._epoll is not None:
                    self._epoll.register(fd, _EPOLLIN)
                else:
                    self._loop.add_reader(fd, self._receive, exchange)
        except BaseException:
            sock.close()  # a reused one too: whatever failed, it is not used again
            raise
        exchange.sock = sock
        exchange.fd = fd
        exchange.address = address
        exchange.query_id = query_id
        exchange.expires = expires
        exchange.outcome = outcome
        self._pending[fd] = exchange
        tick = exchange.tick = int(expires * _TICKS) + 1  # `_due_at`, inline: once per query
        waiting = self._due.get(tick)
        if waiting is not None:
            waiting.add(fd)
        else:
            self._due_at(exchange, expires)

    def cancel(self, exchange: UdpExchange) -> None:
        """Stop waiting (a race was lost, the caller went away); `outcome` is not called."""
        if exchange.outcome is not None:
            exchange.outcome = None
            self._forget(exchange)

    def close(self) -> None:
        """Cancel everything (shutdown)."""
        for exchange in list(self._pending.values()):
            self.cancel(exchange)
        self._disconnect = None
        for sock in self._resting.values():
            sock.close()
        self._resting = {}
        for idle in self._idle.values():
            for sock in idle:
                sock.close()
            idle.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    # --- watching sockets ---------------------------------------------------------------------

    def _forget(self, exchange: UdpExchange) -> None:
        fd = exchange.fd
        if self._pending.get(fd) is not exchange:
            return  # forgotten already: its socket may be another exchange's by now
        del self._pending[fd]
        if self._epoll is None:
            self._loop.remove_reader(fd)
        waiting = self._due.get(exchange.tick)
        if waiting is not None:
            waiting.discard(fd)
            if not waiting:
                del self._due[exchange.tick]
        sock = exchange.sock
        disconnect = self._disconnect
        if (
            disconnect is None
            or len(self._resting) >= IDLE_SOCKETS
            or disconnect(fd, UNSPECIFIED, 16) != 0  # its port released: nothing reaches it now
        ):
            sock.close()  # closing also drops it from our epoll set
            return
        self._resting[fd] = sock

    def _on_ready(self) -> None:
        pending = self._pending
        resting = self._resting
        self._resting = {}
        events = self._epoll.poll(0, _POLL_MAX)
        for fd, _ in events:
            exchange = pending.get(fd)
            if exchange is not None:
                self._receive(exchange)
            elif resting:
                sock = resting.pop(fd, None)
                if sock is not None:  # a datagram came before its disconnect: not reused
                    sock.close()
        if resting:
            self._rested(resting, len(events) < _POLL_MAX)

    def _wake_resting(self) -> None:
        """Poll our epoll set for the resting sockets alone (no socket is free for a new
        exchange): the readiness of the exchanges' sockets is left for `_on_ready`, as the set
        is level-triggered."""
        events = self._epoll.poll(0, _POLL_MAX)
        resting = self._resting
        self._resting = {}
        for fd, _ in events:
            sock = resting.pop(fd, None)
            if sock is not None:
                sock.close()
        self._rested(resting, len(events) < _POLL_MAX)

    def _rested(self, resting: dict[int, _socket.socket], seen: bool) -> None:
        """`resting` were all polled, unready, after their disconnect: free for the next
        exchanges. Unless the poll was cut short (`seen` False): then they rest on."""
        if not seen:
            self._resting.update(resting)
            return
        idle = self._idle
        for sock in resting.values():
            free = idle.get(sock.family)
            if free is not None and len(free) < IDLE_SOCKETS:
                free.append(sock)
            else:
                sock.close()

    def _receive(self, exchange: UdpExchange) -> None:
        # `recvfrom` rather than `recvfrom_into` a buffer kept for it: the kernel copies into
        # the bytes object that is kept, where the buffer costs a second copy (and a slice).
        receive = exchange.sock.recvfrom
        while exchange.outcome is not None:
            try:
                data, source = receive(_RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a pending socket error, reported once: keep waiting
                self._stats.count("upstream.receive_error")
                return
            address = exchange.address
            # IPv4 sources compare as they come; an IPv6 one carries flow info and scope too.
            if (source != address and (source[0], source[1]) != address) or not reply_matches(
                data, exchange.query_id, exchange.query
            ):
                self._stats.count("upstream.mismatch")
                continue
            try:
                reply = UpstreamReply(data, exchange.query.question_end - HEADER_LEN)
            except FormError:
                self._end(exchange, None, BadReply())
                return
            outcome = exchange.outcome  # `_end`, inline: once per answered query
            exchange.outcome = None
            self._forget(exchange)
            outcome(reply, None, exchange)
            return

    def _end(
        self, exchange: UdpExchange, reply: UpstreamReply | None, error: BaseException | None
    ) -> None:
        outcome = exchange.outcome
        if outcome is None:
            return
        exchange.outcome = None
        self._forget(exchange)
        outcome(reply, error, exchange)

    # --- timeouts -----------------------------------------------------------------------------

    def _due_at(self, exchange: UdpExchange, expires: float) -> None:
        tick = exchange.tick = int(expires * _TICKS) + 1  # the first tick at or after `expires`
        waiting = self._due.get(tick)
        if waiting is not None:
            waiting.add(exchange.fd)
            return
        self._due[tick] = {exchange.fd}
        if self._sweep is None or tick < self._sweep_tick:
            self._arm(tick)

    def _expire(self) -> None:
        """Time out every exchange past its expiry, at most `EXPIRE_BUDGET` per turn of the
        loop (a burst of timeouts must not hold the answers waiting behind it: the rest go on
        at the next turn); wake again at the next tick with exchanges still waiting."""
        self._sweep = None
        due = self._due
        pending = self._pending
        now = self._loop.time()
        last = int(now * _TICKS)
        budget = EXPIRE_BUDGET
        for tick in sorted(tick for tick in due if tick <= last):
            waiting = due.pop(tick)
            while waiting:
                if budget <= 0:
                    due[tick] = waiting
                    self._sweep = self._loop.call_soon(self._expire)
                    self._sweep_tick = tick
                    return
                fd = waiting.pop()
                exchange = pending.get(fd)
                if exchange is None:
                    continue
                if exchange.expires <= now:
                    budget -= 1
                    self._end(exchange, None, TimeoutError())
                elif exchange.tick == tick:  # the timer fired a hair early: the next tick
                    self._due_at(exchange, now + SWEEP_INTERVAL)
        if due and self._sweep is None:
            self._arm(max(min(due), last + 1))

    def _arm(self, tick: int) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep = self._loop.call_at(tick / _TICKS, self._expire)
        self._sweep_tick = tick
