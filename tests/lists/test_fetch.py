"""Tests for resolver/lists/fetch.py against a real HTTPS server on loopback with a certificate made
for the test (needs the `openssl` command), plus the last-good-copy store."""

from __future__ import annotations

import gzip
import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from resolver.config import load_config
from resolver.lists import feeds, loading
from resolver.lists.catalogue import catalogue_ids
from resolver.lists.fetch import FetchError, SourceStore, fetch, make_ssl_context
from resolver.protocol.names import from_text


@dataclass
class Route:
    """What the test server answers on one path; `statuses` are used up first, one per request."""

    body: bytes = b"a.example\n"
    etag: str | None = None
    last_modified: str | None = None
    statuses: list[int] = field(default_factory=list)
    gzip: bool = False
    location: str | None = None
    length: int | None = None


class Server:
    def __init__(self, httpd: http.server.ThreadingHTTPServer, ca: Path) -> None:
        self.httpd = httpd
        self.ca = ca
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.requests if seen == path)


def _make_handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            server.requests.append((self.path, dict(self.headers)))
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.statuses:
                status = route.statuses.pop(0)
                if status != 200:
                    self.send_error(status)
                    return
            if route.location:
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            if route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified:
                self.send_response(304)
                self.end_headers()
                return
            body = gzip.compress(route.body) if route.gzip else route.body
            self.send_response(200)
            if route.gzip:
                self.send_header("Content-Encoding", "gzip")
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.send_header("Content-Length", str(route.length or len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make the test server's certificate")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


@pytest.fixture
def server(tls_files: tuple[Path, Path]) -> Iterator[Server]:
    key, cert = tls_files
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    state = Server(httpd, cert)
    httpd.RequestHandlerClass = _make_handler(state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def quick(server: Server, path: str, **kwargs: object) -> object:
    """fetch() against the test server, trusting its CA, never sleeping."""
    sleeps: list[float] = []
    options: dict[str, object] = {
        "cafile": str(server.ca),
        "timeout": 5.0,
        "sleep": sleeps.append,
        "jitter": lambda: 1.0,
    }
    options.update(kwargs)
    result = fetch(server.url(path), **options)  # type: ignore[arg-type]
    return result, sleeps


def test_download_then_conditional_get(server: Server) -> None:
    server.routes["/l"] = Route(body=b"x.example\n", etag='"v1"', last_modified="Sat, 01 Jan 2000")
    (first, _) = quick(server, "/l")  # type: ignore[misc]
    assert (first.status, first.body, first.etag) == (200, b"x.example\n", '"v1"')
    (second, _) = quick(server, "/l", etag='"v1"')  # type: ignore[misc]
    assert (second.status, second.body) == (304, None)
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    (third, _) = quick(server, "/l", last_modified="Sat, 01 Jan 2000")  # type: ignore[misc]
    assert third.status == 304


def test_gzip_bodies_are_inflated(server: Server) -> None:
    server.routes["/z"] = Route(body=b"z.example\n" * 1000, gzip=True)
    (result, _) = quick(server, "/z")  # type: ignore[misc]
    assert result.body == b"z.example\n" * 1000


@pytest.mark.parametrize(
    ("route", "cap", "message"),
    [
        (Route(body=b"x" * 5000), 4000, "over the 4000-byte limit"),
        (Route(body=b"\0" * 5_000_000, gzip=True), 100_000, "decompressed body is over"),
    ],
)
def test_size_cap_holds_for_compressed_bodies(
    server: Server, route: Route, cap: int, message: str
) -> None:
    server.routes["/big"] = route
    with pytest.raises(FetchError, match=message):
        quick(server, "/big", max_bytes=cap)
    assert server.count("/big") == 1  # not retried


def test_retries_with_backoff_then_succeeds(server: Server) -> None:
    server.routes["/flaky"] = Route(statuses=[503, 429, 200])
    (result, sleeps) = quick(server, "/flaky", backoff=2.0)  # type: ignore[misc]
    assert result.status == 200 and server.count("/flaky") == 3
    assert sleeps == [2.0, 4.0]


def test_jitter_scales_the_wait(server: Server) -> None:
    server.routes["/flaky"] = Route(statuses=[503, 200])
    (_, sleeps) = quick(server, "/flaky", backoff=8.0, jitter=lambda: 0.25)  # type: ignore[misc]
    assert sleeps == [2.0]


def test_gives_up_after_the_retries(server: Server) -> None:
    server.routes["/down"] = Route(statuses=[503] * 10)
    with pytest.raises(FetchError, match=r"HTTP 503 .*gave up after 3 attempts"):
        quick(server, "/down", retries=2)
    assert server.count("/down") == 3


def test_client_errors_are_not_retried(server: Server) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        quick(server, "/missing")
    assert server.count("/missing") == 1


def test_certificate_is_verified(server: Server) -> None:
    server.routes["/l"] = Route()
    with pytest.raises(FetchError, match="TLS"):
        quick(server, "/l", cafile=None, ssl_context=make_ssl_context())
    assert server.count("/l") == 0  # the handshake failed before any request


def test_redirect_to_plain_http_is_refused(server: Server) -> None:
    server.routes["/moved"] = Route(location="http://127.0.0.1:9/list.txt")
    with pytest.raises(FetchError, match=r"redirect to .http://127\.0\.0\.1:9/list\.txt. refused"):
        quick(server, "/moved")


def test_plain_http_needs_insecure() -> None:
    with pytest.raises(FetchError, match="only https://"):
        fetch("http://127.0.0.1:9/list.txt", sleep=lambda _: None)
    with pytest.raises(FetchError, match="only https://"):
        fetch("ftp://127.0.0.1/list.txt")


def test_connection_refused_is_retried() -> None:
    waits: list[float] = []
    with pytest.raises(FetchError, match=r"network: .*gave up after 2 attempts"):
        fetch("https://127.0.0.1:9/x", retries=1, sleep=waits.append, jitter=lambda: 1.0)
    assert waits == [2.0]


# ----- the last good copy, end to end: fetch, refresh, restart offline ---------------------


def write_config(tmp_path: Path, url: str, ca: Path, shrink: float = 0.5) -> Path:
    path = tmp_path / "dnswarden.yaml"
    path.write_text(
        f"""
upstream:
  ca_file: {ca}
sources:
  feed:
    url: {url}
    format: domains
    max_shrink: {shrink}
blocking:
  lists: [feed]
state_dir: {tmp_path / "state"}
"""
    )
    return path


def blocks(loaded: loading.LoadedLists, name: str) -> bool:
    return loaded.matchers["feed"][1].lookup(from_text(name)) is not None


def test_feed_lifecycle(server: Server, tmp_path: Path) -> None:
    names = [f"n{i}.example" for i in range(100)]
    server.routes["/feed.txt"] = Route(body="\n".join(names).encode(), etag='"1"')
    config = load_config(
        write_config(tmp_path, server.url("/feed.txt"), server.ca), known_lists=catalogue_ids()
    )
    # Never fetched: the list loads empty and says so.
    before = loading.load_lists(config)
    assert before.sizes == {"feed": 0} and "no copy" in before.reports["feed"].note
    assert feeds.due_sources(config, now=0.0) == ["feed"]
    outcome = feeds.refresh_source(config, "feed", fetcher=_no_wait)
    assert (outcome.status, outcome.entries) == ("updated", 100)
    loaded = loading.load_lists(config)
    assert loaded.sizes == {"feed": 100} and blocks(loaded, "www.n7.example")
    assert loading.local_changes(config, before.watch) == ["feed"]
    assert loading.local_changes(config, loaded.watch) == []
    # Unchanged (304): nothing replaced.
    assert feeds.refresh_source(config, "feed", fetcher=_no_wait).status == "unchanged"
    # A truncated feed (70% smaller) is refused and the last good copy kept.
    server.routes["/feed.txt"] = Route(body="\n".join(names[:30]).encode(), etag='"2"')
    refused = feeds.refresh_source(config, "feed", fetcher=_no_wait)
    assert refused.status == "failed" and "shrink of 70%" in refused.detail
    # A broken download (an error page) is refused too.
    server.routes["/feed.txt"] = Route(body=b"<html>\n<body>oops</body>\n" * 60, etag='"3"')
    broken = feeds.refresh_source(config, "feed", fetcher=_no_wait)
    assert broken.status == "failed" and "refusing to load this list" in broken.detail
    # The feed is gone: a restart without network still enforces from the last good copy.
    server.routes.clear()
    assert feeds.refresh_source(config, "feed", fetcher=_no_wait).status == "failed"
    restarted = loading.load_lists(config)
    assert restarted.sizes == {"feed": 100} and blocks(restarted, "n99.example")
    meta = SourceStore(config.state_dir).meta("feed")
    assert meta["etag"] == '"1"' and meta["entries"] == 100 and "last_error" in meta


def test_a_growing_feed_replaces_the_copy(server: Server, tmp_path: Path) -> None:
    server.routes["/g.txt"] = Route(body=b"a.example\n")
    config = load_config(
        write_config(tmp_path, server.url("/g.txt"), server.ca, shrink=0.1),
        known_lists=catalogue_ids(),
    )
    assert feeds.refresh_source(config, "feed", fetcher=_no_wait).status == "updated"
    server.routes["/g.txt"] = Route(body=b"a.example\nb.example\n")
    grown = feeds.refresh_source(config, "feed", fetcher=_no_wait)
    assert (grown.status, grown.entries, grown.previous) == ("updated", 2, 1)
    assert blocks(loading.load_lists(config), "b.example")


def _no_wait(url: str, **kwargs: object) -> object:
    kwargs["sleep"] = lambda _: None
    kwargs["retries"] = 0
    return fetch(url, **kwargs)  # type: ignore[arg-type]
