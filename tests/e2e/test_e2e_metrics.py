"""/metrics, /healthz and /readyz of the running server, read after real blocked and allowed
queries over UDP and TCP: the counts must be exactly what the test sent."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import pytest
import yaml
from fake_upstream import FakeUpstream
from harness import (
    LOCAL_LIST_NAME,
    ServerFactory,
    ServerProcess,
    ask,
    fresh_name,
    make_config,
    parse_hostport,
    query,
    udp_exchange,
)
from metrics_support import sample_names
from prometheus_client.parser import text_string_to_metric_families

from resolver import __version__
from resolver.observe.metrics import FAMILIES

pytestmark = pytest.mark.e2e

TOKEN = "e2e-metrics-token-7c1f"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def token_file(workdir: Path) -> Path:
    path = workdir / "metrics.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def observed(
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    local_list: Path,
    token_file: Path,
) -> ServerProcess:
    config = make_config([upstreams[0].address, upstreams[1].address],
                         lists=["tiktok", str(local_list)])  # fmt: skip
    config["metrics"] = {"enabled": True, "listen": "127.0.0.1:0", "token_file": str(token_file)}
    # The GC test sweeps 1,500 new names under one zone from one address, which the default
    # client-and-zone budget (a burst of 250) rightly takes for a random-subdomain flood.
    config["rate_limit"] = {"client_zone_rate": 0}
    return launch(config, "metrics")


def metrics_url(server: ServerProcess, path: str = "/metrics") -> str:
    host, port = parse_hostport(server.startup["metrics"])
    return f"http://{host}:{port}{path}"


def fetch(server: ServerProcess, path: str, token: str | None = TOKEN) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(metrics_url(server, path))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def scrape(server: ServerProcess) -> tuple[Samples, str]:
    status, body, _ = fetch(server, "/metrics")
    assert status == 200
    text = body.decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
    )


def delta(before: Samples, after: Samples, name: str, **match: str) -> float:
    return total(after, name, **match) - total(before, name, **match)


def test_startup_names_a_loopback_metrics_address(observed: ServerProcess) -> None:
    host, port = parse_hostport(observed.startup["metrics"])
    assert host == "127.0.0.1"
    assert port > 0
    assert (host, port) not in observed.listeners


BLOCKED = [("x1.tiktok.com.", "A", "udp", "tiktok"), ("x2.tiktok.com.", "AAAA", "udp", "tiktok"),
           ("x3.tiktok.com.", "A", "tcp", "tiktok"), ("www.tiktok.com.", "HTTPS", "udp", "tiktok"),
           ("deep.banned.example.", "A", "tcp", LOCAL_LIST_NAME)]  # fmt: skip


def test_counts_match_the_queries_sent(observed: ServerProcess) -> None:
    before, _ = scrape(observed)
    allowed = [(fresh_name(), "A", "udp"), (fresh_name(), "AAAA", "tcp"),
               (fresh_name(), "A", "udp")]
    for name, rdtype, transport, _ in BLOCKED:
        ask(query(name, rdtype), observed.address, transport)
    for name, rdtype, transport in allowed:
        _, reply = ask(query(name, rdtype), observed.address, transport)
        assert reply.answer, name
    after, text = scrape(observed)

    blocked, answered = len(BLOCKED), len(allowed)
    assert delta(before, after, "dnswarden_queries_total", result="blocked") == blocked
    assert delta(before, after, "dnswarden_queries_total", result="answered") == answered
    assert delta(before, after, "dnswarden_queries_total", result="blocked", protocol="tcp") == 2
    assert delta(before, after, "dnswarden_queries_total", result="blocked", qtype="HTTPS") == 1
    assert delta(before, after, "dnswarden_queries_total", result="answered", qtype="AAAA") == 1
    assert delta(before, after, "dnswarden_blocked_total") == blocked
    assert delta(before, after, "dnswarden_blocked_total", entry="tiktok", policy="none") == 4
    assert delta(before, after, "dnswarden_blocked_total", entry=LOCAL_LIST_NAME) == 1
    assert delta(before, after, "dnswarden_blocked_total", answer="null_ip") == blocked
    assert delta(before, after, "dnswarden_responses_total", rcode="NOERROR") == blocked + answered
    assert (delta(before, after, "dnswarden_request_duration_seconds_count", result="blocked")
            == blocked)  # fmt: skip
    assert delta(before, after, "dnswarden_upstream_queries_total", outcome="ok") == answered
    assert delta(before, after, "dnswarden_upstream_duration_seconds_count") == answered
    # Privacy: no name any client asked for, and no per-client label, ever reaches /metrics.
    for name, *_ in BLOCKED + allowed:
        assert name.rstrip(".") not in text
    assert not re.search(r'\b(client|qname|name|ip)="', text)


def test_the_servers_garbage_collections_are_timed(observed: ServerProcess) -> None:
    """Each forwarded answer leaves its cache entry and key for the youngest generation, so
    1,500 of them (3,000 objects) make it collect at least once: the server's own hook, not
    this test, must count it."""
    before, _ = scrape(observed)
    for _ in range(1500):
        _, reply = ask(query(fresh_name("gc"), "A"), observed.address)
        assert reply.answer
    after, _ = scrape(observed)
    assert delta(before, after, "dnswarden_gc_pause_seconds_count", generation="0") >= 1
    assert delta(before, after, "dnswarden_gc_pause_seconds_sum", generation="0") > 0


def test_every_family_is_exported_with_its_type(observed: ServerProcess) -> None:
    _, body, _ = fetch(observed, "/metrics")
    found = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for family in FAMILIES.values():
        assert found.get(family.name) == family.kind, family.name
    emitted = {line.split("{")[0].split(" ")[0] for line in body.decode().splitlines()
               if line.startswith("dnswarden_")}  # fmt: skip
    assert emitted <= sample_names()


def test_view_metrics_describe_the_running_server(
    observed: ServerProcess, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    samples, _ = scrape(observed)
    up = {dict(labels)["upstream"]: value for (name, labels), value in samples.items()
          if name == "dnswarden_upstream_up"}  # fmt: skip
    for upstream in upstreams:  # labelled "ip:port", or with a scheme ("udp://ip:port")
        (label,) = [label for label in up if label.rpartition("/")[2] == upstream.address]
        assert up[label] == 1
    assert total(samples, "dnswarden_list_entries", list="tiktok") > 10
    assert total(samples, "dnswarden_list_entries", list=LOCAL_LIST_NAME) >= 5
    refreshed = total(samples, "dnswarden_list_last_refresh_timestamp_seconds", list="tiktok")
    assert time.time() - 600 < refreshed <= time.time()
    assert total(samples, "dnswarden_build_info", version=__version__) == 1


def test_malformed_packets_are_counted(observed: ServerProcess) -> None:
    before, _ = scrape(observed)
    wire = query("malformed-count.example.", "A").to_wire()
    assert udp_exchange(wire[:5], observed.address, timeout=0.3) is None  # shorter than a header
    response = bytearray(wire)
    response[2] |= 0x80  # QR=1: never answered
    assert udp_exchange(bytes(response), observed.address, timeout=0.3) is None
    after, _ = scrape(observed)
    assert delta(before, after, "dnswarden_malformed_packets_total") == 2
    assert delta(before, after, "dnswarden_queries_total", result="dropped") == 2


def test_tcp_connections_are_counted(observed: ServerProcess) -> None:
    before, _ = scrape(observed)
    with socket.create_connection(observed.address, timeout=3):
        time.sleep(0.2)
        during, _ = scrape(observed)
    assert total(during, "dnswarden_tcp_connections_open") >= 1
    assert delta(before, during, "dnswarden_tcp_connections_total", event="accepted") == 1


@pytest.mark.parametrize(
    ("token", "status"), [(None, 401), ("wrong", 401), (TOKEN + "x", 401), (TOKEN, 200)]
)
def test_metrics_needs_the_token(observed: ServerProcess, token: str | None, status: int) -> None:
    got, body, headers = fetch(observed, "/metrics", token)
    assert got == status
    if status == 401:
        assert b"dnswarden_" not in body
        assert headers["WWW-Authenticate"].startswith("Bearer")


def test_health_and_readiness_need_no_token(observed: ServerProcess) -> None:
    status, body, _ = fetch(observed, "/healthz", token=None)
    assert status == 200
    status, body, headers = fetch(observed, "/readyz", token=None)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["ready"] is True
    assert fetch(observed, "/nope", token=None)[0] == 404


def test_openmetrics_when_asked(observed: ServerProcess) -> None:
    request = urllib.request.Request(metrics_url(observed))
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Accept", "application/openmetrics-text;version=1.0.0")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().endswith(b"# EOF\n")


def test_counters_survive_a_reload(observed: ServerProcess) -> None:
    ask(query("survive-reload.tiktok.com.", "A"), observed.address)
    before, _ = scrape(observed)
    reloads = total(before, "dnswarden_reloads_total", result="success")
    assert observed.proc is not None
    observed.proc.send_signal(signal.SIGHUP)
    assert observed.wait_for_event(lambda e: e.get("event") == "reloaded", timeout=10) is not None
    deadline = time.monotonic() + 5
    after, _ = scrape(observed)
    while total(after, "dnswarden_reloads_total", result="success") == reloads:
        assert time.monotonic() < deadline, "reload not counted"
        time.sleep(0.1)
        after, _ = scrape(observed)
    assert total(after, "dnswarden_reloads_total", result="success") == reloads + 1
    for name in ("dnswarden_queries_total", "dnswarden_blocked_total",
                 "dnswarden_responses_total"):  # fmt: skip
        assert total(after, name) >= total(before, name) > 0, name


def test_answers_unchanged_by_scraping(observed: ServerProcess) -> None:
    """Scrapes between queries must not disturb answering (the endpoint shares the loop)."""
    for i in range(20):
        fetch(observed, "/metrics")
        _, reply = ask(query(f"s{i}.tiktok.com.", "A"), observed.address)
        assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["0.0.0.0"]
    assert isinstance(reply, dns.message.Message)


REPO = Path(__file__).resolve().parents[2]
METRIC_NAME = re.compile(r"\b(dnswarden_[a-zA-Z0-9_]+)")


def shipped_expressions() -> list[str]:
    """Every PromQL expression in deploy/: alert rules, dashboard targets and variables."""
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8"))
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((REPO / "deploy/grafana/dnswarden.json").read_text(encoding="utf-8"))
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def test_shipped_rules_and_dashboard_use_names_the_server_exports(observed: ServerProcess) -> None:
    """Names announced on /metrics (`# TYPE` lines, so families without samples count too),
    expanded by the text format's suffix rules, cover every name the deploy files use."""
    _, body, _ = fetch(observed, "/metrics")
    available = set()
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            available.update(name + suffix for suffix in suffixes)
    used = {name for expr in shipped_expressions() for name in METRIC_NAME.findall(expr)}
    assert len(used) > 15
    assert used - available == set()


def test_not_ready_while_a_feed_has_no_copy(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> None:
    """A configured feed that was never fetched enforces nothing: /readyz must say so."""
    config = make_config([upstreams[1].address], lists=["feed"])
    # Nothing listens on loopback port 1: every fetch fails at once, so no copy ever arrives.
    config["sources"] = {"feed": {"url": "https://127.0.0.1:1/feed.txt", "refresh": "1h"}}
    config["state_dir"] = str(workdir / "feed-state")
    server = launch(config, "feed-missing")
    status, body, _ = fetch(server, "/readyz", token=None)
    detail = json.loads(body)
    assert status == 503
    assert detail["lists_missing"] == ["feed"]
    assert detail["healthy_upstreams"]  # the upstream is fine: the list is what is missing
