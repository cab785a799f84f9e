"""A real Prometheus scrapes the running server on loopback while the test sends blocked and
allowed queries; PromQL through Prometheus's HTTP API must return exactly what was sent, and the
shipped alert rules must evaluate cleanly against the live series.

Prometheus is Debian's `prometheus` package (installed by .ci/run). It is started by this module
on 127.0.0.1 with a throw-away data directory, scrapes only the dnswarden under test, has no
Alertmanager, and is stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    fresh_name,
    make_config,
    parse_hostport,
    query,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "e2e-prometheus-token-51d0"
READY_TIMEOUT = 30.0
SCRAPE_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3

BLOCKED = [("p1.tiktok.com.", "A", "udp"), ("p2.tiktok.com.", "AAAA", "udp"),
           ("p3.tiktok.com.", "HTTPS", "tcp"), ("p4.douyin.com.", "A", "udp"),
           ("p5.tiktokv.com.", "A", "tcp"), ("p6.tiktok.com.", "A", "udp"),
           ("p7.tiktok.com.", "TXT", "udp")]  # fmt: skip
ALLOWED = 4


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """One `prometheus` process on 127.0.0.1; `query` runs PromQL through its HTTP API."""

    def __init__(self, binary: str, config: Path, data: Path, log: Path) -> None:
        self.binary = binary
        self.config = config
        self.data = data
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, f"--config.file={self.config}",
                     f"--storage.tsdb.path={self.data}",
                     f"--web.listen-address=127.0.0.1:{self.port}",
                     "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.data.parent,
                )  # fmt: skip
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"prometheus did not become ready: {self.log_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False  # e.g. the port was taken meanwhile
            try:
                with urllib.request.urlopen(self.url("/-/ready"), timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, path: str, **params: str) -> Any:
        url = self.url(path) + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            document = json.load(response)
        assert document["status"] == "success", document
        return document["data"]

    def query(self, promql: str) -> dict[str, float]:
        """An instant query: {label set as text: value}."""
        data = self.api("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return {
            json.dumps(item["metric"], sort_keys=True): float(item["value"][1])
            for item in data["result"]
        }

    def wait_for(self, promql: str, check: Callable[[dict[str, float]], bool],
                 timeout: float = SCRAPE_TIMEOUT) -> dict[str, float]:  # fmt: skip
        deadline = time.monotonic() + timeout
        result = self.query(promql)
        while not check(result):
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} never satisfied the check; last {result}; "
                                     f"log: {self.log_text()[-2000:]}")  # fmt: skip
            time.sleep(0.25)
            result = self.query(promql)
        return result

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.proc = None


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed: `apt-get install -y --no-install-recommends "
                    "prometheus` (.ci/run does this)")  # fmt: skip
    return binary


@pytest.fixture(scope="module")
def scraped(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> ServerProcess:
    token = workdir / "prometheus-scrape.token"
    token.write_text(TOKEN + "\n")
    config = make_config([upstreams[0].address, upstreams[1].address])
    config["metrics"] = {"enabled": True, "listen": "127.0.0.1:0", "token_file": str(token)}
    return launch(config, "scraped")


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, scraped: ServerProcess, workdir: Path
) -> Iterator[Prometheus]:
    home = workdir / "prometheus"
    home.mkdir()
    credentials = home / "dnswarden.token"
    credentials.write_text(TOKEN)
    host, port = parse_hostport(scraped.startup["metrics"])
    assert host.startswith("127."), "the scrape target must be loopback"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{
            "job_name": "dnswarden",
            "static_configs": [{"targets": [f"{host}:{port}"]}],
            "authorization": {"type": "Bearer", "credentials_file": str(credentials)},
        }],
    }  # fmt: skip
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = Prometheus(prometheus_binary, config_path, home / "data", home / "prometheus.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_counts_what_was_blocked(scraped: ServerProcess, prometheus: Prometheus) -> None:
    # The token in credentials_file is what lets the scrape succeed: up is 1 only with it.
    prometheus.wait_for('up{job="dnswarden"}', lambda r: list(r.values()) == [1.0])
    for name, rdtype, transport in BLOCKED:
        _, reply = ask(query(name, rdtype), scraped.address, transport)
        assert not reply.answer or reply.answer[0].to_text().split()[-1] in ("0.0.0.0", "::")
    for i in range(ALLOWED):
        _, reply = ask(query(fresh_name(), "A"), scraped.address, "udp" if i % 2 else "tcp")
        assert reply.answer

    blocked = prometheus.wait_for(
        'sum(dnswarden_blocked_total{job="dnswarden"})',
        lambda r: list(r.values()) == [float(len(BLOCKED))],
    )
    assert list(blocked.values()) == [float(len(BLOCKED))]
    by_result = prometheus.wait_for(
        'sum by (result) (dnswarden_queries_total{job="dnswarden"})',
        lambda r: r.get('{"result": "answered"}') == ALLOWED,
    )
    assert by_result == {'{"result": "blocked"}': len(BLOCKED), '{"result": "answered"}': ALLOWED}
    by_protocol = prometheus.query(
        'sum by (protocol) (dnswarden_queries_total{job="dnswarden",result="blocked"})'
    )
    tcp = sum(1 for *_, transport in BLOCKED if transport == "tcp")
    assert by_protocol == {'{"protocol": "tcp"}': tcp, '{"protocol": "udp"}': len(BLOCKED) - tcp}
    entries = prometheus.query('sum by (entry, policy) (dnswarden_blocked_total{job="dnswarden"})')
    assert entries == {'{"entry": "tiktok", "policy": "none"}': len(BLOCKED)}


def test_shipped_alert_rules_evaluate_cleanly(prometheus: Prometheus) -> None:
    """Every rule of deploy/prometheus/alerts.yml loads, evaluates against the live series
    without error, and none fires for a healthy server."""
    shipped = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    }
    deadline = time.monotonic() + SCRAPE_TIMEOUT
    while True:
        groups = prometheus.api("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        evaluated = [r for r in rules if not r.get("lastEvaluation", "0001").startswith("0001")]
        if len(evaluated) == len(shipped) == len(rules):
            break
        assert time.monotonic() < deadline, f"rules never all evaluated: {rules}"
        time.sleep(0.25)
    assert {rule["name"] for rule in rules} == shipped
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["state"] == "inactive", (rule["name"], rule["alerts"])
