"""The observability endpoint: /metrics, /healthz and /readyz over a small, bounded HTTP/1.1.

A hand-written server rather than `prometheus_client.start_http_server`, which binds 0.0.0.0 by
default, serves from a thread and has no limits. Here every request is one GET on its own
connection (`Connection: close`), the request head is capped at `MAX_HEAD` bytes and must arrive
within `read_timeout`, at most `max_connections` are open at once, and the listener binds only
the host the caller names.

/healthz answers "is the event loop alive": a heartbeat task stamps the loop's clock every
`HEARTBEAT_INTERVAL`; if the last stamp is older than `STALE_AFTER` the loop has been blocked
(or starved) and the answer is 503. /readyz is the service's own verdict (`ready()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Callable
from typing import Final

from resolver.config import Config, Endpoint
from resolver.observe.metrics import Metrics
from resolver.shell.binding import METRICS, BindError

MAX_HEAD: Final = 8192
READ_TIMEOUT: Final = 5.0
WRITE_TIMEOUT: Final = 5.0
MAX_CONNECTIONS: Final = 64
HEARTBEAT_INTERVAL: Final = 0.5
STALE_AFTER: Final = 2.0

_REASONS: Final = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                   405: "Method Not Allowed", 408: "Request Timeout",
                   431: "Request Header Fields Too Large", 500: "Internal Server Error",
                   503: "Service Unavailable"}  # fmt: skip
_TEXT: Final = "text/plain; charset=utf-8"
_JSON: Final = "application/json"
_ROUTES: Final = ("/metrics", "/healthz", "/readyz")

Ready = Callable[[], tuple[bool, dict[str, object]]]


class _Response:
    __slots__ = ("body", "content_type", "extra", "status")

    def __init__(self, status: int, body: bytes, content_type: str = _TEXT,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.content_type = content_type
        self.extra = extra

    def encode(self) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            *(f"{name}: {value}" for name, value in self.extra),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _text(status: int, message: str, *extra: tuple[str, str]) -> _Response:
    return _Response(status, (message + "\n").encode(), _TEXT, extra)


class HealthServer:
    """One listener serving the three routes; start() binds, stop() closes everything."""

    def __init__(self, metrics: Metrics, ready: Ready, token: str | None, *,
                 read_timeout: float = READ_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:  # fmt: skip
        self.metrics = metrics
        self.ready = ready
        # Compared as bytes with hmac.compare_digest: the time taken says nothing about how
        # much of a guess was right.
        self._token = token.encode() if token else None
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on `host`:`port` exactly as given (port 0 picks one); the bound address.
        A failure is a `BindError` naming the endpoint."""
        loop = asyncio.get_running_loop()
        self._last_beat = loop.time()
        try:
            self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_HEAD,
                                                      reuse_address=True)  # fmt: skip
        except OSError as error:
            raise BindError(Endpoint(host, port), METRICS, error) from error
        self._heartbeat = loop.create_task(self._beat())
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._last_beat = loop.time()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def loop_responsive(self) -> bool:
        return asyncio.get_running_loop().time() - self._last_beat <= STALE_AFTER

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._writers) >= self.max_connections or task is None:
            # Over the cap: a fixed answer, nothing read, nothing waited for.
            writer.write(_text(503, "too many connections").encode())
            writer.close()
            return
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            response = await self._respond(reader)
            if response is not None:
                writer.write(response.encode())
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> _Response | None:
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            return _text(408, "request timeout")
        except asyncio.LimitOverrunError:
            return _text(431, "request head over 8 KiB")
        except asyncio.IncompleteReadError:
            return None  # the client went away before finishing its request
        return self._route(head)

    def _route(self, head: bytes) -> _Response:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(400, "bad request line")
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if path not in _ROUTES:
            return _text(404, "not found")
        if method != "GET":
            return _text(405, "only GET", ("Allow", "GET"))
        headers = _headers(lines[1:])
        if path == "/healthz":
            if self.loop_responsive():
                return _text(200, "ok")
            return _text(503, "event loop blocked")
        if path == "/readyz":
            try:
                ready, detail = self.ready()
            except Exception as error:
                ready, detail = False, {"error": repr(error)[:300]}
            body = json.dumps({**detail, "ready": ready}, default=str, sort_keys=True)
            return _Response(200 if ready else 503, body.encode() + b"\n", _JSON)
        if self._token is not None and not self._authorised(headers.get("authorization", "")):
            return _text(401, "bearer token required", ("WWW-Authenticate", "Bearer"))
        try:
            body, content_type = self.metrics.render(headers.get("accept"))
        except Exception as error:
            return _text(500, "metrics failed: " + type(error).__name__)
        return _Response(200, body, content_type)

    def _authorised(self, authorization: str) -> bool:
        """`Bearer <token>` (scheme in any case), the token compared in constant time."""
        token = self._token or b""
        scheme, _, credentials = authorization.strip().partition(" ")
        match = hmac.compare_digest(credentials.strip().encode("latin-1"), token)
        return match and scheme.lower() == "bearer"


def _headers(lines: list[str]) -> dict[str, str]:
    """Header fields by lower-case name; a repeated field keeps its first value."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def metrics_token(config: Config) -> str | None:
    """The bearer token /metrics requires (`metrics.token_file`), read when the endpoint starts;
    None when the endpoint is open."""
    if not config.metrics.token_file:
        return None
    with open(config.metrics.token_file, encoding="utf-8") as handle:
        return handle.read().strip()
