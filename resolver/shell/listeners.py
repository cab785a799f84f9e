"""The I/O shell: UDP and TCP listeners that move bytes between sockets and the query pipeline.

UDP is read with `recvfrom(UDP_MAX)` from a reader callback, draining up to `UDP_BATCH` datagrams
per wake-up: stock asyncio's datagram transport allocates a 256 KiB buffer for every `recvfrom`,
which on glibc can mean an mmap/munmap per packet; 64 KiB stays below glibc's mmap threshold, and
CPython shrinks it to the datagram in place, which costs less (about 500 instructions a packet,
no system call) than `recvfrom_into` a reusable buffer and a copy out of it. Answers that need
no upstream go straight back with `sendto`; a query that goes upstream is answered from a
callback when its reply comes (no task either way, and its callback is made only then: the
pipeline is handed the address, not a closure per packet).

Under a flood, a query waits in the kernel's receive buffer behind every datagram queued before
it, so the buffer's size is a latency bound by arithmetic: its slots times what one costs us.
`limits.udp_receive_buffer` is 2 MiB (the kernel doubles it: about 5,000 small queries at 830
bytes of accounting each); a shed flood packet or a cache hit costs 5-10 µs here, so a full
buffer drains in 25-50 ms, inside a 100 ms p99. It must also absorb the bursts that arrive
while the process is not scheduled: 5,000 slots are 125 ms of a 40,000 qps flood. Measured with
`bench/flood.py` on a shared 2-core machine: 512 KiB lost 6% of the victim's queries to such
gaps, 2 MiB none, 4 MiB none but with a p99 of 120 ms. Beyond the buffer the kernel drops:
cheaper than anything we could do. The kernel caps the buffer at `net.core.rmem_max` (208 KiB on
a stock Linux) unless we may ask past it (`binding.ask_receive_buffer`); what it granted less is
said after the start-up line and exported, for the operator to lift. The reads have a budget
too: `UDP_BATCH` per wake-up (about 0.5 ms of work), then the loop runs whatever else is due
(upstream replies, timers, which also take their turn in batches), so neither side holds the
other.
Each listener has `limits.udp_queues` such buffers, one per group of source addresses
(`resolver.shell.steering`), read in turn: a flood fills only its own.

TCP follows RFC 7766: length-prefixed messages, pipelined queries answered concurrently in any
order, a cap on open connections (all together, and per client prefix) and on queries in flight
per connection, an idle timeout, and a peer that stalls in the middle of a message is cut off
after the same timeout. A connection's backlog of pipelined queries is read at most
`tcp_inflight_per_connection` at a time per wake-up, so one connection cannot hold the loop.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from resolver.config import Endpoint, LimitsConfig
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.pipeline import FORWARDED, Channel, QueryPipeline
from resolver.shell import privileges
from resolver.shell.binding import TCP, UDP, BindError, granted_receive_buffer, listening
from resolver.shell.steering import add_source_queues

UDP_BATCH = 64
UDP_MAX = 65535
"""The largest datagram, read whole: none bigger comes over IPv4, nor IPv6 without jumbograms."""
UDP_RECEIVE_BUFFER = 2 << 20
RECEIVE_BUFFER_REMEDY = (
    "raise net.core.rmem_max to at least {} (deploy/systemd/dnswarden-sysctl.conf), or start "
    "dnswarden as root or with CAP_NET_ADMIN, which may take a buffer past it"
)
TCP_BACKLOG = 1024
_BIND_ATTEMPTS = 20


class Listeners:
    """Every socket we serve on and every task still answering, so stop() can end them all."""

    def __init__(
        self, pipeline: QueryPipeline, limits: LimitsConfig, stats: Stats, audit: AuditLog
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pipeline = pipeline
        self.limits = limits
        self.stats = stats
        self.audit = audit
        self.udp: list[UdpListener] = []
        self.tcp_servers: list[asyncio.Server] = []
        self.connections: set[TcpConnection] = set()
        self.per_client: dict[object, int] = {}
        """Open connections per client prefix (the rate limiter's), for the per-client cap."""
        self.forwarded = 0
        """Queries gone upstream whose reply is still to be sent: stop() gives them a grace."""
        self.bound: list[Endpoint] = []
        self.receive_buffer = (limits.udp_receive_buffer, 0)
        """Bytes: configured, and the smallest any UDP queue was granted (0 before `start`)."""
        self.capped_buffers: dict[str, int] = {}
        """Listener -> the smallest buffer its queues were granted, where less than configured."""

    async def start(
        self, endpoints: tuple[Endpoint, ...], reuse_port: bool = False
    ) -> list[Endpoint]:
        for endpoint in endpoints:
            queues = 1 if reuse_port else self.limits.udp_queues
            buffer = self.limits.udp_receive_buffer
            try:
                udp_sock, tcp_sock = bind_pair(endpoint, reuse_port or queues > 1, buffer)
            except OSError as error:
                if not (_ipv6_unavailable(endpoint, error) and len(endpoints) > 1):
                    raise
                # The default config listens on ::1 too; a host without IPv6 still gets served.
                self.audit.warning("listener_skipped", listener=str(endpoint), error=str(error))
                continue
            extra = add_source_queues(udp_sock, queues, buffer)
            if queues > 1 and not extra:
                self.audit.warning("udp_queues_unavailable", listener=str(endpoint), queues=1)
            self._check_receive_buffer(endpoint, (udp_sock, *extra))
            for sock in (udp_sock, *extra):
                listener = UdpListener(sock, self)
                listener.start()
                self.udp.append(listener)
            server = await self.loop.create_server(
                lambda: TcpConnection(self), sock=tcp_sock, backlog=TCP_BACKLOG
            )
            self.tcp_servers.append(server)
            self.bound.append(Endpoint(endpoint.host, udp_sock.getsockname()[1]))
        if not self.bound:
            raise OSError(errno.EADDRNOTAVAIL, "no listener could be bound")
        return self.bound

    def _check_receive_buffer(self, endpoint: Endpoint, socks: tuple[socket.socket, ...]) -> None:
        """Keep the smallest receive buffer granted (exported beside the configured one), and
        what was granted less than configured, for `warn_capped_buffers`."""
        wanted, smallest = self.receive_buffer
        granted = min(granted_receive_buffer(sock) for sock in socks)
        self.receive_buffer = (wanted, min(smallest or granted, granted))
        if granted < wanted:
            self.capped_buffers[str(endpoint)] = granted

    def warn_capped_buffers(self) -> None:
        """After the start-up line: a buffer smaller than configured lets a flood's bursts
        overflow sooner, taking the flooding address's other queries with them, and only the
        operator can lift the kernel's cap."""
        wanted = self.receive_buffer[0]
        for listener, granted in self.capped_buffers.items():
            self.audit.warning(
                "udp_receive_buffer_capped", listener=listener, configured=wanted,
                granted=granted, remedy=RECEIVE_BUFFER_REMEDY.format(wanted),
            )  # fmt: skip

    def internal_error(self, error: BaseException) -> None:
        self.pipeline.internal_error(error)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop taking queries, give those gone upstream `grace` seconds to be answered, then
        close everything."""
        for listener in self.udp:
            listener.pause()
        for server in self.tcp_servers:
            server.close()
        deadline = self.loop.time() + grace
        while self.forwarded > 0 and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for listener in self.udp:
            listener.close()
        for connection in list(self.connections):
            connection.close()
        for server in self.tcp_servers:
            await server.wait_closed()


def _ipv6_unavailable(endpoint: Endpoint, error: OSError) -> bool:
    return endpoint.host == "::1" and error.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)


def bind_pair(
    endpoint: Endpoint, reuse_port: bool = False, receive_buffer: int = UDP_RECEIVE_BUFFER
) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same address and port; port 0 picks one free for both.
    A failure is a `BindError` naming the address and the protocol.

    With `reuse_port`, several worker processes bind the same address (SO_REUSEPORT) and the
    kernel spreads clients across them. A worker takes the pair its supervisor bound for it,
    if it did (`privileges.inherited`)."""
    given = privileges.inherited("udp", endpoint), privileges.inherited("tcp", endpoint)
    if given[0] is not None and given[1] is not None:
        return given[0], given[1]
    family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
    for _ in range(_BIND_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            listening(udp, reuse_port, receive_buffer)
            listening(tcp, reuse_port)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((endpoint.host, endpoint.port))
            except OSError as error:
                raise BindError(endpoint, UDP, error) from error
            port = udp.getsockname()[1]
            try:
                tcp.bind((endpoint.host, port))
            except OSError as error:
                if endpoint.port == 0 and error.errno == errno.EADDRINUSE:
                    udp.close()
                    tcp.close()
                    continue
                raise BindError(Endpoint(endpoint.host, port), TCP, error) from error
            tcp.listen(TCP_BACKLOG)
            return udp, tcp
        except BaseException:
            udp.close()
            tcp.close()
            raise
    no_port = OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")
    raise BindError(endpoint, f"{UDP} and {TCP}", no_port)


class UdpListener:
    def __init__(self, sock: socket.socket, listeners: Listeners) -> None:
        self.sock = sock
        self.listeners = listeners
        self.reading = False

    def start(self) -> None:
        self.listeners.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.reading = True

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            self.listeners.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.pause()
        self.sock.close()

    def _on_readable(self) -> None:
        receive = self.sock.recvfrom
        listeners = self.listeners
        handle = listeners.pipeline.handle
        reply_later = self._reply_later
        for _ in range(UDP_BATCH):
            try:
                packet, address = receive(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.listeners.stats.count("udp.receive_error")
                return
            try:
                outcome = handle(packet, address[0], True, reply_later, None, address)
            except Exception as error:
                listeners.internal_error(error)
                continue
            if outcome is None:  # dropped: a flood's shed packet
                continue
            if outcome.__class__ is bytes:
                self.send(outcome, address)  # type: ignore[arg-type]
            elif outcome is FORWARDED:
                listeners.forwarded += 1

    def _reply_later(self, address: Any, reply: bytes | None) -> None:
        self.listeners.forwarded -= 1
        if self.sock.fileno() >= 0:
            self.send(reply, address)

    def send(self, reply: bytes | None, address: Any) -> None:
        if reply is None:
            return
        try:
            self.sock.sendto(reply, address)
        except OSError:
            # A full send buffer or a vanished route: the client will retry; count it.
            self.listeners.stats.count("udp.send_error")


class TcpConnection(asyncio.Protocol):
    """RFC 7766 framing over a stream; DNS over TLS (`resolver.shell.dot`) runs the same on
    decrypted bytes, with its own `channel`, event prefix and idle timeout."""

    events = "tcp."  # prefix of the `Stats.count` keys of connection events
    channel: Channel | None = None

    def __init__(self, listeners: Listeners) -> None:
        self.listeners = listeners
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.prefix: object = None  # counted in `Listeners.per_client` while open
        self.buffer = bytearray()
        self.pending = 0
        self.partial_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.draining: asyncio.Handle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        listeners = self.listeners
        if len(listeners.connections) >= listeners.limits.tcp_connections:
            listeners.stats.count("tcp.rejected")
            self.closed = True
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        limiter = listeners.pipeline.limiter
        if not limiter.exempt(self.client, listeners.loop.time()):
            prefix = limiter.prefix_key(self.client)
            open_now = listeners.per_client.get(prefix, 0)
            if open_now >= listeners.limits.tcp_connections_per_client:
                listeners.stats.count("tcp.rejected_client")
                self.closed = True
                transport.abort()
                return
            listeners.per_client[prefix] = open_now + 1
            self.prefix = prefix
        listeners.connections.add(self)
        listeners.stats.count("tcp.accepted")
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.draining is not None:
            self.draining.cancel()
            self.draining = None
        self._release()
        self.listeners.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def _release(self) -> None:
        prefix = self.prefix
        if prefix is not None:
            self.prefix = None
            per_client = self.listeners.per_client
            left = per_client.get(prefix, 1) - 1
            if left > 0:
                per_client[prefix] = left
            else:
                per_client.pop(prefix, None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    def _drain(self) -> None:
        """Answer the complete messages buffered, at most `tcp_inflight_per_connection` per
        call: the rest wait for the next turn of the loop (reading paused meanwhile), so a
        client that pipelines thousands of cached names cannot hold the loop."""
        self.draining = None
        if self.closed:
            return
        buffer = self.buffer
        started_empty = self.partial_since is None
        completed = False
        budget = self.listeners.limits.tcp_inflight_per_connection
        # The messages are read where they lie (the buffer is cut once, at the end) and the
        # answers made at once go out in one write: one send per batch, not per answer.
        pos = 0
        end = len(buffer)
        answers: list[bytes] = []
        while end - pos >= 2:
            size = (buffer[pos] << 8) | buffer[pos + 1]
            if end - pos < 2 + size:
                break
            if budget <= 0:
                self._flush(pos, answers)
                self._pause_reading()
                self.draining = self.listeners.loop.call_soon(self._drain)
                return
            budget -= 1
            message = bytes(buffer[pos + 2 : pos + 2 + size])
            pos += 2 + size
            completed = True
            reply = self._answer(message)
            if self.closed:
                return
            if reply is not None:
                answers.append(len(reply).to_bytes(2, "big"))
                answers.append(reply)
        self._flush(pos, answers)
        if self.reading_paused and not self.writing_paused and (
            self.pending < self.listeners.limits.tcp_inflight_per_connection
        ):
            self._resume_reading()
        if not buffer:
            self.partial_since = None
        elif started_empty or completed or self.partial_since is None:
            self.partial_since = self.listeners.loop.time()
        self._rearm()

    def _flush(self, read: int, answers: list[bytes]) -> None:
        """Drop the `read` bytes of the messages answered and send their framed `answers`."""
        del self.buffer[:read]
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))

    def _answer(self, message: bytes) -> bytes | None:
        """The answer to `message` when it is made at once (the caller sends it), else None."""
        listeners = self.listeners
        try:
            outcome = listeners.pipeline.handle(
                message, self.client, False, self._deliver, self.channel
            )
        except Exception as error:
            listeners.internal_error(error)
            return None
        if outcome.__class__ is bytes:
            return outcome  # type: ignore[return-value]
        if outcome is FORWARDED:
            listeners.forwarded += 1
            self.pending += 1
            if self.pending >= listeners.limits.tcp_inflight_per_connection:
                if not self.reading_paused:
                    listeners.stats.count("tcp.pipeline_full")
                self._pause_reading()
        return None

    def _deliver(self, reply: bytes | None) -> None:
        self.listeners.forwarded -= 1
        self.pending -= 1
        if self.closed:
            return
        if reply is not None:
            self._write(reply)
        if (
            self.reading_paused
            and not self.writing_paused
            and self.draining is None
            and self.pending < self.listeners.limits.tcp_inflight_per_connection
        ):
            self._resume_reading()
        self._rearm()

    def _write(self, reply: bytes) -> None:
        assert self.transport is not None
        self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its questions.
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        cap = self.listeners.limits.tcp_inflight_per_connection
        if self.draining is None and self.pending < cap:
            self._resume_reading()

    def _rearm(self) -> None:
        """One timer per connection: idle (nothing in flight, nothing half-read) or stalled
        (half a message, counted from when it began, so trickling bytes buys no time)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.closed or self.pending:
            return
        loop = self.listeners.loop
        timeout = self.idle_timeout()
        start = self.partial_since if self.partial_since is not None else loop.time()
        self.timer = loop.call_at(start + timeout, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if self.closed or self.pending:
            return
        self.listeners.stats.count(self.events + ("stalled" if self.buffer else "idle_closed"))
        self.close()

    def idle_timeout(self) -> float:
        return self.listeners.limits.tcp_idle_timeout

    def close(self) -> None:
        self.closed = True
        if self.draining is not None:
            self.draining.cancel()
            self.draining = None
        self._release()
        if self.transport is not None:
            self.transport.close()
