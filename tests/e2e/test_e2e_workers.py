"""`--workers 2`: two processes on one port, supervised, with their counters added up."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import dns.message
import pytest
from fake_upstream import FakeUpstream
from harness import ServerFactory, ServerProcess, make_config, parse_hostport, query

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workers_server(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> ServerProcess:
    return launch(make_config([upstreams[1].address]), "workers", ["--workers", "2"])


def metric(server: ServerProcess, name: str) -> float:
    host, port = parse_hostport(server.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def blocked_from_many_ports(server: ServerProcess, count: int) -> None:
    """Each query from its own socket, so SO_REUSEPORT spreads them over the workers."""
    for i in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3.0)
            sock.sendto(query(f"w{i}.tiktok.com.").to_wire(), server.address)
            reply = dns.message.from_wire(sock.recvfrom(65535)[0])
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["0.0.0.0"]


def test_one_startup_line_for_two_workers(workers_server: ServerProcess) -> None:
    assert workers_server.startup["workers"] == 2
    assert len(workers_server.worker_pids()) == 2


def test_counters_are_added_up_across_workers(workers_server: ServerProcess) -> None:
    before = metric(workers_server, "dnswarden_blocked_total")
    blocked_from_many_ports(workers_server, 40)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if metric(workers_server, "dnswarden_blocked_total") == before + 40:
            break
        time.sleep(0.3)
    assert metric(workers_server, "dnswarden_blocked_total") == before + 40


def test_a_dead_worker_is_restarted_and_counted(workers_server: ServerProcess) -> None:
    victim = workers_server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    event = workers_server.wait_for_event(lambda e: e.get("event") == "worker_died", 5)
    assert event is not None and event["exit_code"] == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = workers_server.worker_pids()
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.2)
    assert len(workers_server.worker_pids()) == 2 and victim not in workers_server.worker_pids()
    blocked_from_many_ports(workers_server, 10)  # both workers answer again


def ready(server: ServerProcess) -> bool:
    host, port = parse_hostport(server.startup["metrics"])
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def readiness(server: ServerProcess) -> dict[str, object]:
    """The /readyz body once every worker is ready (the documented detail, merged)."""
    host, port = parse_hostport(server.startup["metrics"])
    deadline = time.monotonic() + 10
    while not ready(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as response:
        detail: dict[str, object] = json.loads(response.read())
    return detail


def test_readyz_has_the_documented_fields_with_workers(workers_server: ServerProcess) -> None:
    detail = readiness(workers_server)
    documented = {"ready", "listeners", "lists", "lists_missing", "healthy_upstreams"}
    assert documented <= detail.keys(), detail
    assert detail["ready"] is True and detail["listeners"] is True
    assert detail["lists"] == workers_server.startup["lists"]
    assert detail["lists_missing"] == []
    assert detail["workers_ready"] == [0, 1]


def test_reload_reaches_every_worker(workers_server: ServerProcess) -> None:
    deadline = time.monotonic() + 10
    while not ready(workers_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = len([e for e in workers_server.events if e.get("event") == "reloaded"])
    os.kill(workers_server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len([e for e in workers_server.events if e.get("event") == "reloaded"]) >= seen + 2:
            break
        time.sleep(0.2)
    assert len([e for e in workers_server.events if e.get("event") == "reloaded"]) == seen + 2


def test_stop_ends_every_worker(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    server = launch(make_config([upstreams[1].address]), "workers-stop", ["--workers", "2"])
    pids = server.worker_pids()
    assert len(pids) == 2
    assert server.stop() == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")
    shutdown = [e for e in server.events if e.get("event") == "shutdown"]
    assert len(shutdown) == 1
