"""Fairness under a flood, with the default rate limits: while a flood of names never asked
before comes from 127.0.0.2, or from the victim's own address, a paced client on 127.0.0.1 keeps
getting its cached names (and, in the own-address case, its new names under other zones).

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
from fake_upstream import FakeUpstream, Zone
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
# The own-address flood: the victim's new names under another zone, a device's pace of them.
FORWARD_RATE = 20
FORWARD_ANSWERED = 0.9
OWN_ADDRESS = "127.0.0.1"
SHED_LIMITS = ("queries", "upstream", "client_zone", "zone")


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


class Stream:
    """One paced series of the victim's queries on a socket of its own (its own IDs)."""

    def __init__(self, names: list[str], rate: float, total: int) -> None:
        self.names = names
        self.rate = rate
        self.total = total
        self.sent = 0
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((OWN_ADDRESS, 0))
        self.sock.setblocking(False)

    def due(self, began: float) -> float:
        return began + self.sent / self.rate if self.sent < self.total else math.inf

    def send(self, name: str, address: tuple[str, int]) -> None:
        self.sock.sendto(victim_packet(name, self.sent), address)
        self.sent_at[self.sent] = time.monotonic()
        self.sent += 1

    def receive(self) -> None:
        while True:
            try:
                reply = self.sock.recv(4096)
            except BlockingIOError:
                return
            started = self.sent_at.pop(struct.unpack_from("!H", reply)[0], None)
            if started is not None and time.monotonic() - started <= REPLY_TIMEOUT:
                self.latencies.append(time.monotonic() - started)


def run_victim(server: ServerProcess, names: list[str]) -> tuple[int, list[float]]:
    """(queries sent, latencies of those answered within REPLY_TIMEOUT), paced."""
    cached = Stream(names, VICTIM_RATE, int(VICTIM_RATE * VICTIM_SECONDS))
    run_streams(server, [cached], random.Random(9))
    return cached.sent, cached.latencies


def run_streams(server: ServerProcess, streams: list[Stream], rng: random.Random) -> None:
    """Send each stream's queries at its pace (a cached stream picks names at random, any other
    takes them in order) until all are sent and answered, or REPLY_TIMEOUT after the last."""
    began = time.monotonic()
    end = began + VICTIM_SECONDS + REPLY_TIMEOUT
    try:
        while time.monotonic() < end:
            if all(s.sent >= s.total and len(s.latencies) >= s.sent for s in streams):
                break
            now = time.monotonic()
            for stream in streams:
                if now >= stream.due(began):
                    name = (rng.choice(stream.names) if stream is streams[0]
                            else stream.names[stream.sent])  # fmt: skip
                    stream.send(name, server.address)
            wait = min(s.due(began) for s in streams) - time.monotonic()
            socks = [s.sock for s in streams]
            ready = select.select(socks, [], [], max(0.0, min(wait, 0.05)))[0]
            for stream in streams:
                if stream.sock in ready:
                    stream.receive()
    finally:
        for stream in streams:
            stream.sock.close()


def p99(latencies: list[float], sent: int) -> float:
    """Nearest rank over every query sent; an unanswered one counts as infinitely slow."""
    rank = math.ceil(0.99 * sent)
    ordered = sorted(latencies)
    return ordered[rank - 1] if rank <= len(ordered) else math.inf


def flood(server: ServerProcess, parent: str, source: str = FLOOD_SOURCE) -> subprocess.Popen[str]:
    argv = [sys.executable, str(FLOODER), source, *map(str, server.address),
            str(FLOOD_RATE), str(FLOOD_SECONDS), parent]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=server_env())


def primed(server: ServerProcess) -> list[str]:
    names = [fresh_name("victim") for _ in range(VICTIM_NAMES)]
    for name in names:
        _, reply = ask(query(name, "A"), server.address)
        assert reply.rcode() == dns.rcode.NOERROR
    return names


def under_flood(
    server: ServerProcess, parent: str, lead: float = 0.5
) -> tuple[int, list[float], int]:
    """The victim's figures while `parent` is flooded; it starts asking `lead` seconds into the
    flood (the flood lasts FLOOD_SECONDS, the victim VICTIM_SECONDS: keep lead + that inside)."""
    names = primed(server)
    flooder = flood(server, parent)
    try:
        time.sleep(lead)  # the flood is on before the victim asks
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
            for limit in SHED_LIMITS}  # fmt: skip
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
    assert metric(server, "dnswarden_rate_limited_total", limit="client_zone", action="drop") > 0
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
    # The victim asks from 1 s into the flood: until the zone is suspect, the flood's names go
    # upstream, a burst this in-process fake upstream partly drops; their timeouts (0.5 s) end
    # by then, and what is measured is the zone limit holding, not the fake's backlog.
    sent, latencies, flooded = under_flood(server, "nx.example.org", lead=1.0)
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


@pytest.fixture(scope="module")
def two_zones() -> FakeUpstream:
    """example.org (the victim's cached names under wild., the flood's NXDOMAIN names under
    nx.) and example.net (the victim's new names, under fwd.): two registrable zones."""
    zone = Zone([
        "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 900 86400 300",
        "*.wild.example.org. 60 IN A 192.0.2.99",
        "example.net. 3600 IN SOA ns.example.net. admin.example.net. 1 7200 900 86400 300",
        "*.fwd.example.net. 60 IN A 192.0.2.98",
    ])  # fmt: skip
    upstream = FakeUpstream(zone, seed=5).start()
    yield upstream  # type: ignore[misc]
    upstream.stop()


def test_a_random_subdomain_flood_from_the_victims_own_address_spares_its_other_queries(
    launch: ServerFactory, two_zones: FakeUpstream
) -> None:
    """One address floods `<random>.nx.example.org` (a device infected, or one of several
    behind a NAT) while it also asks cached names and new names under example.net: the flood
    is shed by the client-and-zone budget (and the zone's, once mostly NXDOMAIN), the rest is
    served, with the defaults."""
    server = launch(make_config([two_zones.address]), "flood-own")
    names = primed(server)
    forwarded = [fresh_name("victim", "fwd.example.net") for _ in range(FORWARD_RATE * 3)]
    streams = [Stream(names, VICTIM_RATE, int(VICTIM_RATE * VICTIM_SECONDS)),
               Stream(forwarded, FORWARD_RATE, int(FORWARD_RATE * VICTIM_SECONDS))]  # fmt: skip
    flooder = flood(server, "nx.example.org", OWN_ADDRESS)
    try:
        time.sleep(0.5)  # the flood is on before the victim asks
        run_streams(server, streams, random.Random(9))
        out, _ = flooder.communicate(timeout=FLOOD_SECONDS + 10)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
    flooded = int(out.strip() or 0)
    cached, new = streams
    report("own address, cached", server, cached.sent, cached.latencies, flooded)
    print(f"own address, forwarded: {len(new.latencies)}/{new.sent} answered "
          f"({100 * len(new.latencies) / new.sent:.2f}%), "
          f"p99 {p99(new.latencies, new.sent) * 1000:.1f} ms")  # fmt: skip
    assert flooded >= FLOOD_RATE * FLOOD_SECONDS * 0.5, "the flood itself fell short"
    assert len(cached.latencies) >= VICTIM_ANSWERED * cached.sent
    assert p99(cached.latencies, cached.sent) < VICTIM_P99
    assert len(new.latencies) >= FORWARD_ANSWERED * new.sent
    assert metric(server, "dnswarden_rate_limited_total", limit="client_zone") > 0
    assert metric(server, "dnswarden_rate_limited_total", limit="upstream") == 0
    assert server.alive()
