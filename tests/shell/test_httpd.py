"""The health/metrics endpoint over a real loopback socket, its event loop in its own thread,
driven by a plain blocking client so every byte on the wire is the test's choice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from metrics_support import FakeView
from prometheus_client.parser import text_string_to_metric_families

from resolver.observe.metrics import Metrics, ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.shell.httpd import MAX_HEAD, HealthServer

TOKEN = "s3cret-token-0123456789"
Address = tuple[str, int]
Ready = Callable[[], tuple[bool, dict[str, object]]]


def always_ready() -> tuple[bool, dict[str, object]]:
    return True, {"listeners": True, "healthy_upstreams": ["127.0.0.1:5300"]}


class Running:
    """A HealthServer on its own event loop thread, as it runs beside the DNS listeners."""

    def __init__(self, server: HealthServer, loop: asyncio.AbstractEventLoop,
                 address: Address) -> None:  # fmt: skip
        self.server = server
        self.loop = loop
        self.address = address

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def block_loop(self, seconds: float) -> None:
        self.loop.call_soon_threadsafe(time.sleep, seconds)


@contextlib.contextmanager
def running(token: str | None = None, ready: Ready = always_ready, host: str = "127.0.0.1",
            stats: Stats | None = None, view: Any = None,
            **options: Any) -> Iterator[Running]:  # fmt: skip
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HealthServer(Metrics(stats or Stats(), view or FakeView()), ready, token, **options)
    try:
        bound = asyncio.run_coroutine_threadsafe(server.start(host, 0), loop).result(5)
        try:
            yield Running(server, loop, bound)
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def read_all(sock: socket.socket, limit: int = 1 << 22) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    return int(status), headers, body


def exchange(address: Address, request: bytes, timeout: float = 3.0) -> tuple[int, dict, bytes]:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        return parse(read_all(sock))


def get(address: Address, path: str, *headers: str, method: str = "GET") -> tuple[int, dict, bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers, "", ""]
    return exchange(address, "\r\n".join(lines).encode())


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/metrics", [], 200),
        ("GET", "/metrics?name[]=x", [], 200),
        ("GET", "/healthz", [], 200),
        ("GET", "/readyz", [], 200),
        ("GET", "/", [], 404),
        ("GET", "/metricsx", [], 404),
        ("GET", "/metrics/", [], 404),
        ("GET", "/../etc/passwd", [], 404),
        ("POST", "/metrics", ["Content-Length: 0"], 405),
        ("HEAD", "/healthz", [], 405),
        ("DELETE", "/readyz", [], 405),
        ("POST", "/nothing", [], 404),
    ],
)
def test_routes_without_token(method: str, path: str, headers: list[str], status: int) -> None:
    with running() as server:
        got, response_headers, _ = get(server.address, path, *headers, method=method)
    assert got == status
    assert response_headers["connection"] == "close"
    if status == 405:
        assert response_headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
        (f"BEARER   {TOKEN}  ", 200),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
        (TOKEN, 401),
        ("Bearer ", 401),
        ("Bearer", 401),
    ],
)
def test_metrics_token(authorization: str | None, status: int) -> None:
    headers = [f"Authorization: {authorization}"] if authorization is not None else []
    with running(token=TOKEN) as server:
        got, response_headers, body = get(server.address, "/metrics", *headers)
        # Health and readiness stay open: orchestrators probe them without secrets.
        assert get(server.address, "/healthz")[0] == 200
        assert get(server.address, "/readyz")[0] == 200
    assert got == status
    if status == 401:
        assert response_headers["www-authenticate"].startswith("Bearer")
        assert b"dnswarden_" not in body


def test_metrics_body_is_the_collector_output() -> None:
    stats = Stats()
    for _ in range(4):
        stats.query("udp", 1, "blocked", 0.0001)
    with running(stats=stats) as server:
        status, headers, body = get(server.address, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["cache-control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = families["dnswarden_queries"].samples
    assert sample.labels == {"protocol": "udp", "qtype": "A", "result": "blocked"}
    assert sample.value == 4


def test_metrics_in_openmetrics_when_asked() -> None:
    accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    with running() as server:
        status, headers, body = get(server.address, "/metrics", accept)
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_metrics_failure_is_a_500_and_the_server_goes_on() -> None:
    class BrokenView(FakeView):
        def __call__(self) -> ServiceSnapshot:
            raise RuntimeError("view broke")

    with running(view=BrokenView()) as server:
        status, _, body = get(server.address, "/metrics")
        assert status == 500
        assert b"RuntimeError" in body
        assert get(server.address, "/healthz")[0] == 200


@pytest.mark.parametrize(
    ("ready", "status", "detail"),
    [
        (lambda: (True, {"listeners": True, "healthy_upstreams": ["a"]}), 200,
         {"listeners": True, "healthy_upstreams": ["a"]}),
        (lambda: (False, {"listeners": True, "healthy_upstreams": []}), 503,
         {"listeners": True, "healthy_upstreams": []}),
        (lambda: (False, {"lists": {"tiktok": 0}, "since": 12.5}), 503,
         {"lists": {"tiktok": 0}, "since": 12.5}),
    ],
)  # fmt: skip
def test_readyz_reports_the_service_verdict(ready: Ready, status: int, detail: dict) -> None:
    with running(ready=ready) as server:
        got, headers, body = get(server.address, "/readyz")
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {**detail, "ready": status == 200}


def test_readyz_when_the_check_itself_fails() -> None:
    def broken() -> tuple[bool, dict[str, object]]:
        raise ValueError("no state yet")

    with running(ready=broken) as server:
        status, _, body = get(server.address, "/readyz")
    assert status == 503
    assert json.loads(body)["ready"] is False
    assert "no state yet" in json.loads(body)["error"]


def test_healthz_turns_503_when_the_loop_was_blocked() -> None:
    with running() as server:
        assert get(server.address, "/healthz")[0] == 200
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.2)  # the server is now waiting for the rest of the head
            server.block_loop(2.6)
            time.sleep(0.3)
            sock.sendall(b"\r\n")  # read by the loop as soon as it runs again
            status, _, body = parse(read_all(sock))
        assert status == 503
        assert b"blocked" in body
        time.sleep(0.2)  # one heartbeat later
        assert get(server.address, "/healthz")[0] == 200


@pytest.mark.parametrize(("size", "status"), [(MAX_HEAD - 200, 200), (MAX_HEAD + 100, 431),
                                              (64 * 1024, 431)])  # fmt: skip
def test_request_head_is_capped(size: int, status: int) -> None:
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    request = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(request) == size
    with running() as server:
        assert exchange(server.address, request)[0] == status
        assert get(server.address, "/healthz")[0] == 200


@pytest.mark.parametrize(
    "trickle",
    [b"", b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"],
)
def test_slow_client_is_cut_off(trickle: bytes) -> None:
    timeout = 0.5
    with running(read_timeout=timeout) as server:
        with socket.create_connection(server.address, timeout=5) as sock:
            started = time.monotonic()
            for byte in trickle:  # a byte at a time buys no extra time
                sock.sendall(bytes([byte]))
                if time.monotonic() - started < timeout * 0.8:
                    time.sleep(0.01)
            raw = read_all(sock)
            elapsed = time.monotonic() - started
        status, _, _ = parse(raw)
        assert status == 408
        assert timeout * 0.9 <= elapsed < timeout + 1.0
        assert get(server.address, "/healthz")[0] == 200


def test_client_vanishing_mid_request_does_no_harm() -> None:
    with running() as server:
        for _ in range(20):
            with socket.create_connection(server.address, timeout=2) as sock:
                sock.sendall(b"GET /metrics HT")
        assert get(server.address, "/metrics")[0] == 200


@pytest.mark.parametrize(
    "request_line",
    [b"GET\r\n\r\n", b"GET /metrics\r\n\r\n", b"GET /metrics SPDY/3\r\n\r\n",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"GET  /metrics HTTP/1.1\r\n\r\n"],
)  # fmt: skip
def test_bad_request_line_is_400(request_line: bytes) -> None:
    with running() as server:
        assert exchange(server.address, request_line)[0] == 400


def test_connection_cap() -> None:
    cap = 4
    with running(max_connections=cap) as server:
        idle = [socket.create_connection(server.address, timeout=5) for _ in range(cap)]
        try:
            for sock in idle:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(0.2)
            status, _, _ = get(server.address, "/healthz")
            assert status == 503
            idle[0].sendall(b"\r\n")
            assert parse(read_all(idle[0]))[0] == 200
            time.sleep(0.1)
            assert get(server.address, "/healthz")[0] == 200
        finally:
            for sock in idle:
                sock.close()


def test_defaults_match_the_documented_bounds() -> None:
    server = HealthServer(Metrics(Stats(), FakeView()), always_ready, None)
    assert (server.read_timeout, server.max_connections, MAX_HEAD) == (5.0, 64, 8192)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_binds_only_the_given_host(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError:
        pytest.skip(f"{host} is not available here")
    with running(host=host) as server:
        bound_host, port = server.address
        assert bound_host == host
        assert port > 0
        status, _, _ = get((host, port), "/healthz")
        assert status == 200
        if host != "127.0.0.1":
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_closes_the_listener() -> None:
    with running() as server:
        address = server.address
        assert get(address, "/healthz")[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1).close()
