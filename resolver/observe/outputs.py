"""dnstap and syslog outputs: what the query path and the audit trail hand over, written by a
thread of its own to a socket or a file.

The event loop never waits on a reader: it only puts an item in a bounded queue (one C-level
call), and drops it, counted, when the queue is full. The writer thread encodes (`dnstap`,
`syslog`), connects, sends in batches, and on any failure closes, waits (1 s, doubling up to
10 s) and connects again, so a reader that restarts gets the traffic again without us
restarting; while it is away the queue fills and then drops, counted. Sockets have timeouts,
so a reader that stops reading stalls this thread, never the loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from resolver import __version__
from resolver.config import AuditConfig, DnstapConfig, Endpoint, SyslogConfig
from resolver.config.syslog import FACILITIES
from resolver.observe import dnstap as tap
from resolver.observe.audit import pseudonym, truncate_address
from resolver.observe.syslog import format_message, octet_counted
from resolver.policy.engine import Decision
from resolver.protocol.wire import Query, upstream_query

CONNECT_TIMEOUT = 3.0
SEND_TIMEOUT = 5.0
MAX_BACKOFF = 10.0
BATCH = 256
_STOP = object()
_UPSTREAM_PROTOCOLS = {"udp": tap.UDP, "tcp": tap.TCP, "tls": tap.DOT}


class Connection(Protocol):
    def send(self, items: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


class WriterThread:
    """A bounded queue drained by a daemon thread into a `Connection` made by `connect`.

    `encode` turns one queued item into the messages to send (a dnstap exchange with an
    upstream is two). `put` is for the event loop; `sent` and `dropped` (messages) are read by
    the metrics at any time.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Connection],
        encode: Callable[[Any], Sequence[bytes]],
        limit: int,
    ) -> None:
        self.name = name
        self.connect = connect
        self.encode = encode
        self.limit = limit
        self.sent = 0
        self.failed = 0  # items lost in the thread (send failed, encoding failed)
        self.full = 0  # items refused by `put` (queue full)
        self.connects = 0
        self.last_error = ""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dnswarden-{name}", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.full + self.failed

    def put(self, item: Any) -> None:
        if self._queue.qsize() >= self.limit:
            self.full += 1
            return
        self._queue.put(item)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued if the reader is there (within `timeout`), then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        connection: Connection | None = None
        pending: list[Any] = []
        stop = False
        backoff = 1.0
        retry_at = 0.0
        try:  # at once, so a reader sees us (and a mistake shows) before the first message
            connection = self.connect()
            self.connects += 1
        except Exception as error:
            self.last_error = f"{type(error).__name__}: {error}"[:300]
            retry_at = time.monotonic() + backoff
        while True:
            if not pending:
                if stop:
                    break
                item = self._queue.get()
                if item is _STOP:
                    break
                pending.append(item)
                while len(pending) < BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    pending.append(item)
            if connection is None:
                wait = retry_at - time.monotonic()
                if wait > 0:
                    if self._stopping.wait(min(wait, 0.5)):
                        self.failed += len(pending)
                        return
                    continue
                try:
                    connection = self.connect()
                    self.connects += 1
                    backoff = 1.0
                except Exception as error:  # any failure to connect: try again later
                    self.last_error = f"{type(error).__name__}: {error}"[:300]
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
            frames: list[bytes] = []
            for item in pending:
                try:
                    frames.extend(self.encode(item))
                except Exception:  # a bug must cost one message, never the output
                    self.failed += 1
            pending = []
            try:
                connection.send(frames)
                self.sent += len(frames)
            except Exception as error:  # the reader went away: reconnect later
                self.last_error = f"{type(error).__name__}: {error}"[:300]
                self.failed += len(frames)
                with contextlib.suppress(Exception):
                    connection.close()
                connection = None
                retry_at = time.monotonic() + backoff
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


# --- connections ------------------------------------------------------------------------------


def _stream_socket(endpoint: Endpoint | None, path: str | None) -> socket.socket:
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = path
    else:
        assert endpoint is not None
        family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (endpoint.host, endpoint.port)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(SEND_TIMEOUT)
    return sock


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the reader closed the connection")
        data += chunk
    return data


def _read_control(sock: socket.socket) -> tuple[int, list[bytes]]:
    escape, length = struct.unpack(">II", _read_exact(sock, 8))
    if escape != 0 or length > tap.MAX_CONTROL:
        raise tap.FrameError("expected a control frame")
    return tap.parse_control(_read_exact(sock, length))


class FrameStreamSocket:
    """Frame Streams to a reader on a Unix or TCP socket: READY, ACCEPT, START, then data
    frames; STOP and FINISH at the end (the bidirectional handshake dnstap readers expect)."""

    def __init__(self, endpoint: Endpoint | None = None, path: str | None = None) -> None:
        self.sock = _stream_socket(endpoint, path)
        try:
            self.sock.sendall(tap.control_frame(tap.READY))
            kind, types = _read_control(self.sock)
            if kind != tap.ACCEPT or (types and tap.CONTENT_TYPE not in types):
                raise tap.FrameError(f"the reader did not accept dnstap (control {kind})")
            self.sock.sendall(tap.control_frame(tap.START))
        except BaseException:
            self.sock.close()
            raise

    def send(self, items: Sequence[bytes]) -> None:
        self.sock.sendall(b"".join(tap.data_frame(item) for item in items))

    def close(self) -> None:
        try:
            self.sock.sendall(tap.control_frame(tap.STOP, content_type=False))
            self.sock.settimeout(1.0)
            _read_control(self.sock)  # FINISH
        finally:
            self.sock.close()


class FrameStreamFile:
    """Frame Streams to a file (unidirectional: START, data frames, STOP). The file of the
    previous run is kept as ``<file>.1``; a reader never sees two streams in one file."""

    def __init__(self, path: str) -> None:
        if os.path.exists(path):
            os.replace(path, f"{path}.1")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self.file = open(descriptor, "wb")  # noqa: SIM115 - closed by close()
        self.file.write(tap.control_frame(tap.START))
        self.file.flush()

    def send(self, items: Sequence[bytes]) -> None:
        self.file.write(b"".join(tap.data_frame(item) for item in items))
        self.file.flush()

    def close(self) -> None:
        try:
            self.file.write(tap.control_frame(tap.STOP, content_type=False))
        finally:
            self.file.close()


class SyslogStream:
    """RFC 5424 messages over TCP (RFC 6587 octet counting) or TLS (RFC 5425)."""

    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext | None, name: str | None):
        sock = _stream_socket(endpoint, None)
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=name)
            except BaseException:
                sock.close()
                raise
        self.sock = sock

    def send(self, items: Sequence[bytes]) -> None:
        self.sock.sendall(b"".join(octet_counted(item) for item in items))

    def close(self) -> None:
        """Over TLS a close_notify first (RFC 5425 4.4), so the receiver can tell the end of
        the stream from a cut connection."""
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                self.sock.settimeout(1.0)
                with contextlib.suppress(OSError, ValueError):
                    self.sock.unwrap()
        finally:
            self.sock.close()


class SyslogUnixStream:
    """RFC 5424 messages to a Unix stream socket (syslog-ng's ``unix-stream()``, a journald
    or rsyslog set up that way), each ended by LF (RFC 6587 3.4.2): local stream readers
    split on LF, not on octet counts, and a message never holds one (the audit line is ASCII
    JSON, whose own newlines are escaped)."""

    def __init__(self, path: str) -> None:
        self.sock = _stream_socket(None, path)

    def send(self, items: Sequence[bytes]) -> None:
        self.sock.sendall(b"".join(item.replace(b"\n", b" ") + b"\n" for item in items))

    def close(self) -> None:
        self.sock.close()


class SyslogDatagrams:
    """RFC 5424 messages over UDP (RFC 5426) or a Unix datagram socket, one per datagram."""

    def __init__(self, endpoint: Endpoint | None, path: str | None) -> None:
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: Any = path
        else:
            assert endpoint is not None
            family = socket.AF_INET6 if endpoint.family == 6 else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            target = (endpoint.host, endpoint.port)
        self.sock.settimeout(SEND_TIMEOUT)
        try:
            self.sock.connect(target)
        except BaseException:
            self.sock.close()
            raise

    def send(self, items: Sequence[bytes]) -> None:
        for item in items:
            self.sock.send(item)

    def close(self) -> None:
        self.sock.close()


# --- what the service wires in ----------------------------------------------------------------


class Privacy:
    """The audit trail's privacy mode, applied to client addresses off the event loop."""

    def __init__(self, mode: str, key: bytes | None) -> None:
        self.mode = mode
        self.key = key

    def client(self, client: str) -> tuple[str | None, str | None]:
        """(address for the address field, pseudonym for `extra`)."""
        if self.mode == "raw":
            return client, None
        if self.mode == "truncate" or self.key is None:
            return truncate_address(client), None
        return None, pseudonym(self.key, client)


class DnstapOutput:
    """The dnstap tap: `client_query` and `client_response` from the pipeline, `forwarded`
    from the upstream pool. Each call only queues a tuple; the writer thread encodes it."""

    def __init__(self, config: DnstapConfig, privacy: Privacy, worker: int | None = None) -> None:
        self.identity = (config.identity or socket.gethostname()).encode()[:255]
        self.version = (config.version or f"dnswarden {__version__}").encode()[:255]
        self.privacy = privacy
        if config.file is not None:
            path = config.file if worker is None else f"{config.file}.{worker}"

            def connect() -> Connection:
                return FrameStreamFile(path)
        else:

            def connect() -> Connection:
                return FrameStreamSocket(config.tcp, config.socket)

        self.writer = WriterThread("dnstap", connect, self._encode, config.queue)

    def client_query(self, packet: bytes, client: str, transport: str) -> float:
        """Queue CLIENT_QUERY; the time it was received, for the response's record.
        `transport` is how the client came: udp, tcp, dot or doh."""
        now = time.time()
        self.writer.put((tap.CLIENT_QUERY, now, packet, client, transport, None, None))
        return now

    def client_response(
        self,
        reply: bytes,
        client: str,
        transport: str,
        received: float,
        decision: Decision | None,
    ) -> None:
        item = (tap.CLIENT_RESPONSE, received, reply, client, transport, decision, time.time())
        self.writer.put(item)

    def forwarded(self, server: Any, query: Query, reply: bytes, took: float) -> None:
        """FORWARDER_QUERY and _RESPONSE of one upstream exchange (`server` an
        `UpstreamServer`, `took` seconds between sending and the reply)."""
        now = time.time()
        self.writer.put(("forwarder", now - took, query, reply, server, now))

    def _encode(self, item: tuple[Any, ...]) -> tuple[bytes, ...]:
        if item[0] == "forwarder":
            return self._encode_forwarded(item)
        kind, received, message, client, transport, decision, answered = item
        protocol = tap.SOCKET_PROTOCOLS.get(transport, tap.TCP)
        shown, pseudonymous = self.privacy.client(client)
        extra: dict[str, object] = {}
        if pseudonymous is not None:
            extra["client"] = pseudonymous
        if decision is not None:
            extra.update(decision_fields(decision))
        family = None if shown else tap.address_bytes(client)
        if kind == tap.CLIENT_QUERY:
            body = tap.message(kind, protocol=protocol, query_time=received, query_message=message,
                               query_address=shown, family=family and family[0])  # fmt: skip
        else:
            body = tap.message(kind, protocol=protocol, query_time=received, response_time=answered,
                               response_message=message, query_address=shown,
                               family=family and family[0])  # fmt: skip
        extra_bytes = tap.extra_field(extra) if extra else None
        return (tap.dnstap(body, self.identity, self.version, extra_bytes),)

    def _encode_forwarded(self, item: tuple[Any, ...]) -> tuple[bytes, ...]:
        """FORWARDER_QUERY (the exact bytes we sent: our ID, the question, our OPT) and
        FORWARDER_RESPONSE."""
        _, sent, query, reply, server, answered = item
        protocol = _UPSTREAM_PROTOCOLS.get(server.protocol, tap.TCP)
        query_id = (reply[0] << 8) | reply[1] if len(reply) >= 2 else 0
        asked = tap.message(tap.FORWARDER_QUERY, protocol=protocol, query_time=sent,
                            query_message=upstream_query(query, query_id),
                            response_address=server.host, response_port=server.port)  # fmt: skip
        answer = tap.message(tap.FORWARDER_RESPONSE, protocol=protocol, query_time=sent,
                             response_time=answered, response_message=reply,
                             response_address=server.host, response_port=server.port)  # fmt: skip
        return (
            tap.dnstap(asked, self.identity, self.version),
            tap.dnstap(answer, self.identity, self.version),
        )

    def close(self) -> None:
        self.writer.close()


def decision_fields(decision: Decision) -> dict[str, object]:
    fields: dict[str, object] = {
        "action": "blocked",
        "group": decision.group,
        "policy": decision.policy,
        "list": decision.list_name,
        "rule": decision.rule,
        "reference": decision.reference,
        "answer": decision.answer,
    }
    if decision.reason:
        fields["reason"] = decision.reason
    return fields


class SyslogOutput:
    """The audit trail's lines as RFC 5424 messages: `write` is the audit sink's hook."""

    def __init__(self, config: SyslogConfig) -> None:
        transport, endpoint, path, name = config.parts
        self.facility = FACILITIES[config.facility]
        self.hostname = config.hostname or socket.gethostname()
        self.app_name = config.app_name
        self.sd_id = config.sd_id
        self.procid = os.getpid()
        context = None
        if transport == "tls":
            context = ssl.create_default_context(cafile=config.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if config.certificate and config.key:  # a receiver that authenticates senders
                context.load_cert_chain(config.certificate, config.key)

        def connect() -> Connection:
            if transport == "unix":
                assert path is not None
                try:
                    return SyslogDatagrams(None, path)
                except OSError as error:  # a stream socket: connect(2) says EPROTOTYPE
                    if error.errno != errno.EPROTOTYPE:
                        raise
                return SyslogUnixStream(path)
            if transport == "udp":
                return SyslogDatagrams(endpoint, None)
            assert endpoint is not None
            return SyslogStream(endpoint, context, name)

        self.writer = WriterThread("syslog", connect, self._encode, config.queue)

    def write(self, line: str) -> None:
        self.writer.put(line)

    def _encode(self, line: str) -> tuple[bytes]:
        return (format_message(line, facility=self.facility, hostname=self.hostname,
                              app_name=self.app_name, procid=self.procid,
                              sd_id=self.sd_id),)  # fmt: skip

    def close(self) -> None:
        self.writer.close()


def audit_privacy(config: AuditConfig, key: bytes | None) -> Privacy:
    return Privacy(config.privacy.value, key)
