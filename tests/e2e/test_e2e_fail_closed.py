"""Mandated lists before service: a group whose policy names a feed that has never been fetched is
served fail-closed (SERVFAIL, EDE 14) until the feed loads, while other groups are served; with
`missing_lists: fail_open` everyone is served, with a warning. The feed is a plain-HTTP server on
loopback that the test controls: 404 until the test publishes the list."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest
from fake_upstream import FakeUpstream
from harness import (
    Event,
    ServerFactory,
    ServerProcess,
    ede,
    fresh_name,
    make_config,
    parse_hostport,
    query,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

OFFICIAL = "127.0.0.2"  # group officials, whose policy names the feed
OTHER = "127.0.0.1"  # the default group, which does not
NOT_READY = 14
RECOVERY_TIMEOUT = 15.0  # feed retried every `refresh` (1 s), lists polled every second


class Feed:
    """A list feed on loopback: `body` None answers 404 (the list is not published yet)."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = feed.body if self.path == "/feed.txt" else None
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/feed.txt") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def feed() -> Iterator[Feed]:
    """Each test stops its server before this ends: a server whose feed refuses connections
    retries with backoff, and its shutdown waits for the retries to finish."""
    server = Feed()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)


def feed_config(
    upstream: str, url: str, local_list: Path, state_dir: Path, mode: str
) -> dict[str, Any]:
    """The feed is named by a policy for the officials only; every client also gets the
    bundled tiktok entry and a local list (checked every second, which sets the poll)."""
    config = make_config([upstream], lists=["tiktok", "local"])
    config["blocking"]["missing_lists"] = mode
    config["state_dir"] = str(state_dir)
    config["sources"] = {
        "national": {"url": url, "insecure": True, "refresh": "1s"},
        "local": {"path": str(local_list), "refresh": "1s"},
    }
    config["groups"] = {"officials": {"subnets": [f"{OFFICIAL}/32"]}}
    config["policies"] = {
        "national-ban": {
            "block": ["national"],
            "groups": ["officials"],
            "reference": "national list decision",
            "from": "2020-01-01",
        }
    }
    return config


def ask_from(source: str, server: ServerProcess, name: str) -> dns.message.Message:
    """A UDP query whose source address is `source` (any 127/8 address is ours on loopback)."""
    wire = query(name, "A", edns=True).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(wire, server.address)
        reply, _ = sock.recvfrom(65535)
    return dns.message.from_wire(reply)


def addresses(reply: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


def http_get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    host, port = parse_hostport(server.startup["metrics"])
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def readyz(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    status, body = http_get(server, "/readyz")
    return status, json.loads(body)


def lists_missing_gauge(server: ServerProcess) -> dict[str, float]:
    status, body = http_get(server, "/metrics")
    assert status == 200
    return {
        sample.labels["list"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "dnswarden_lists_missing"
    }


def event_named(server: ServerProcess, name: str, timeout: float = 3.0) -> Event:
    found = server.wait_for_event(lambda e: e.get("event") == name, timeout)
    assert found is not None, f"no {name} event; log:\n{server.stdout_text()[-3000:]}"
    return found


def test_fail_closed_until_the_feed_loads_then_served_normally(
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    feed: Feed,
    local_list: Path,
    workdir: Path,
) -> None:
    state_dir = workdir / "closed-state"
    config = feed_config(upstreams[1].address, feed.url(), local_list, state_dir, "fail_closed")
    server = launch(config, "fail-closed")
    try:
        assert server.startup["missing_lists"] == "fail_closed"
        missing = event_named(server, "lists_missing")
        assert (missing["level"], missing["lists"], missing["groups"]) == (
            "error", ["national"], ["officials"]
        )  # fmt: skip

        # The officials wait for their list; their other blocks apply; everyone else is served.
        waiting = ask_from(OFFICIAL, server, fresh_name())
        assert waiting.rcode() == dns.rcode.SERVFAIL
        assert [(code, "national" in (text or "")) for code, text in ede(waiting)] == [
            (NOT_READY, True)
        ]
        assert addresses(ask_from(OFFICIAL, server, "www.tiktok.com.")) == ["0.0.0.0"]
        assert addresses(ask_from(OFFICIAL, server, "banned.example.")) == ["0.0.0.0"]
        served = ask_from(OTHER, server, fresh_name())
        assert served.rcode() == dns.rcode.NOERROR and addresses(served)
        status, detail = readyz(server)
        assert status == 503
        assert (detail["lists_missing"], detail["failing_closed"]) == (["national"], ["officials"])
        assert detail["healthy_upstreams"]  # the upstream is fine: the list is what is missing
        assert lists_missing_gauge(server)["national"] == 1.0
        event_named(server, "list_refresh_failed")  # the feed was tried, and 404'd

        # The feed comes up: within its retry interval the list loads and the group is served.
        feed.body = b"banned-by-decree.example\nalso-banned.example\n"
        recovered = event_named(server, "lists_recovered", RECOVERY_TIMEOUT)
        assert (recovered["level"], recovered["lists"]) == ("info", ["national"])
        lifted = event_named(server, "fail_closed_lifted")
        assert (lifted["level"], lifted["groups"]) == ("info", ["officials"])
        answered = ask_from(OFFICIAL, server, fresh_name())
        assert answered.rcode() == dns.rcode.NOERROR and addresses(answered)
        banned = ask_from(OFFICIAL, server, "www.banned-by-decree.example.")
        assert addresses(banned) == ["0.0.0.0"]
        cause = "blocked by policy national-ban (national; ref: national list decision)"
        assert ede(banned) == [(4, cause)]
        status, detail = readyz(server)
        assert (status, detail["lists_missing"], detail["failing_closed"]) == (200, [], [])
        assert lists_missing_gauge(server)["national"] == 0.0
    finally:
        server.stop()  # while the feed still answers (see `feed`)


def test_fail_open_serves_everyone_with_a_warning(
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    feed: Feed,
    local_list: Path,
    workdir: Path,
) -> None:
    url = feed.url("/never-published.txt")
    state_dir = workdir / "open-state"
    config = feed_config(upstreams[1].address, url, local_list, state_dir, "fail_open")
    server = launch(config, "fail-open")
    try:
        assert server.startup["missing_lists"] == "fail_open"
        missing = event_named(server, "lists_missing")
        assert (missing["level"], missing["lists"], missing["groups"]) == (
            "warning", ["national"], ["officials"]
        )  # fmt: skip
        answered = ask_from(OFFICIAL, server, fresh_name())
        assert answered.rcode() == dns.rcode.NOERROR and addresses(answered)
        assert not any(code == NOT_READY for code, _ in ede(answered))
        status, detail = readyz(server)  # fail_open: ready, but the missing list is named
        assert (status, detail["lists_missing"], detail["failing_closed"]) == (
            200, ["national"], []
        )  # fmt: skip
        assert lists_missing_gauge(server)["national"] == 1.0
        assert server.wait_for_event(lambda e: e.get("event") == "fail_closed", 0.5) is None
    finally:
        server.stop()  # while the feed still answers (see `feed`)
