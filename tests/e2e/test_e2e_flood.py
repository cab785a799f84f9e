"""Fairness under a flood, with the default rate limits: while 127.0.0.2 floods the server with
names never asked before, a paced client on 127.0.0.1 keeps getting its cached names.

The flood is its own process (`flooder.py`), paced and bounded in count and time; the victim asks
`VICTIM_RATE` queries a second of names it primed into the cache. Each test prints its figures
(victim answered share and p99, flood sent, what the server shed and why). The full-size scenario,
with dnsperf and beside unbound and dnsmasq, is `python -m bench.flood`.
"""

from __future__ import annotations

import math
import random
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.name
import dns.rcode
import pytest
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    fresh_name,
    make_config,
    parse_hostport,
    query,
    server_env,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

FLOODER = Path(__file__).with_name("flooder.py")
FLOOD_SOURCE = "127.0.0.2"
FLOOD_RATE = 20_000
FLOOD_SECONDS = 4.0
VICTIM_RATE = 200
VICTIM_SECONDS = 2.5
# The targets (>= 99% answered, p99 < 100 ms) are the benchmark's to judge, on a machine
# left to it (`python -m bench.flood`); here, beside whatever else the machine runs, the test holds
# what the defences change: without them the victim lost over half its answers and waited
# 1.3-1.5 s (issue 19's measurement), with them it loses almost none and never waits seconds.
VICTIM_ANSWERED = 0.95
VICTIM_P99 = 0.5
VICTIM_NAMES = 100
REPLY_TIMEOUT = 1.0


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    host, port = parse_hostport(server.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def victim_packet(name: str, query_id: int) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + wire + b"\0\0\1\0\1"


def run_victim(server: ServerProcess, names: list[str]) -> tuple[int, list[float]]:
    """(queries sent, latencies of those answered within REPLY_TIMEOUT), paced."""
    rng = random.Random(9)
    total = int(VICTIM_RATE * VICTIM_SECONDS)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        began = time.monotonic()
        end = began + VICTIM_SECONDS + REPLY_TIMEOUT
        index = 0
        while time.monotonic() < end and (index < total or len(latencies) < index):
            now = time.monotonic()
            if index < total and now >= began + index / VICTIM_RATE:
                sock.sendto(victim_packet(rng.choice(names), index), server.address)
                sent_at[index] = now
                index += 1
                continue
            wait = began + index / VICTIM_RATE - now if index < total else 0.05
            if select.select([sock], [], [], max(0.0, min(wait, 0.05)))[0]:
                while True:
                    try:
                        reply = sock.recv(4096)
                    except BlockingIOError:
                        break
                    started = sent_at.pop(struct.unpack_from("!H", reply)[0], None)
                    if started is not None and time.monotonic() - started <= REPLY_TIMEOUT:
                        latencies.append(time.monotonic() - started)
    return index, latencies


def p99(latencies: list[float], sent: int) -> float:
    """Nearest rank over every query sent; an unanswered one counts as infinitely slow."""
    rank = math.ceil(0.99 * sent)
    ordered = sorted(latencies)
    return ordered[rank - 1] if rank <= len(ordered) else math.inf


def flood(server: ServerProcess, parent: str) -> subprocess.Popen[str]:
    argv = [sys.executable, str(FLOODER), FLOOD_SOURCE, *map(str, server.address),
            str(FLOOD_RATE), str(FLOOD_SECONDS), parent]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=server_env())


def primed(server: ServerProcess) -> list[str]:
    names = [fresh_name("victim") for _ in range(VICTIM_NAMES)]
    for name in names:
        _, reply = ask(query(name, "A"), server.address)
        assert reply.rcode() == dns.rcode.NOERROR
    return names


def under_flood(server: ServerProcess, parent: str) -> tuple[int, list[float], int]:
    names = primed(server)
    flooder = flood(server, parent)
    try:
        time.sleep(0.5)  # the flood is on before the victim asks
        sent, latencies = run_victim(server, names)
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 10)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
    return sent, latencies, int(out.strip() or 0)


def report(label: str, server: ServerProcess, sent: int, latencies: list[float],
           flooded: int) -> None:  # fmt: skip
    shed = {limit: metric(server, "dnswarden_rate_limited_total", limit=limit)
            for limit in ("queries", "upstream", "zone")}  # fmt: skip
    print(f"\n{label}: victim {len(latencies)}/{sent} answered "
          f"({100 * len(latencies) / sent:.2f}%), p99 {p99(latencies, sent) * 1000:.1f} ms; "
          f"flood sent {flooded}; shed {shed}")  # fmt: skip


@pytest.fixture(scope="module")
def flood_upstream() -> FakeUpstream:
    upstream = FakeUpstream(seed=4).start()
    yield upstream  # type: ignore[misc]
    upstream.stop()


def test_cached_names_are_answered_while_another_client_floods(
    launch: ServerFactory, flood_upstream: FakeUpstream
) -> None:
    server = launch(make_config([flood_upstream.address]), "flood-other")
    sent, latencies, flooded = under_flood(server, "wild.example.org")
    report("other client", server, sent, latencies, flooded)
    assert flooded >= FLOOD_RATE * FLOOD_SECONDS * 0.5, "the flood itself fell short"
    assert len(latencies) >= VICTIM_ANSWERED * sent
    assert p99(latencies, sent) < VICTIM_P99
    assert metric(server, "dnswarden_rate_limited_total", limit="queries", action="drop") > 0
    assert server.alive()


def test_random_subdomains_of_one_zone_are_limited_while_nxdomain(
    launch: ServerFactory, flood_upstream: FakeUpstream
) -> None:
    """The flooding address is exempt from client limits (a relay): only the zone budget can
    stop `<random>.nx.example.org`, whose answers are all NXDOMAIN."""
    config = make_config([flood_upstream.address])
    config["rate_limit"] = {"exempt": [f"{FLOOD_SOURCE}/32"], "zone_rate": 100, "zone_burst": 200}
    server = launch(config, "flood-zone")
    since = time.monotonic()
    sent, latencies, flooded = under_flood(server, "nx.example.org")
    report("random subdomain", server, sent, latencies, flooded)
    parent = dns.name.from_text("nx.example.org")
    upstream_saw = sum(1 for r in flood_upstream.queries(since=since)
                       if r.qname is not None and r.qname.is_subdomain(parent))  # fmt: skip
    print(f"upstream saw {upstream_saw} of the {flooded} flood names")
    assert len(latencies) >= VICTIM_ANSWERED * sent
    assert p99(latencies, sent) < VICTIM_P99
    assert metric(server, "dnswarden_rate_limited_total", limit="zone") > 0
    # Until the zone turns suspect (half its zone_rate of NXDOMAIN answered in a window) what is
    # sent before those answers are back passes; then at most zone_rate a second plus the burst.
    assert upstream_saw <= FLOOD_RATE / 4 + 100 * FLOOD_SECONDS + 200
    assert metric(server, "dnswarden_rate_limit_suspect_zones") == 1
    assert server.alive()
