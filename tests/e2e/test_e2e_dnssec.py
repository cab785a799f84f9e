"""DNSSEC through dnswarden with real servers: nsd serves a zone signed with ldns-signzone, a
validating unbound resolves it (a stub zone to nsd, our key as its trust anchor), and dnswarden
forwards to unbound. What the fake upstreams only imitate is checked against the real thing: a
good signed name comes back with AD=1 to a client that sets AD, a name whose signature no longer
matches is SERVFAIL with EDE 6 (DNSSEC Bogus) and does not mark the upstream down.

Skipped when nsd, unbound, ldns-keygen or ldns-signzone is not installed (Debian: nsd, unbound,
ldnsutils; `.ci/run` installs them). Every process is stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    daemon,
    ede,
    free_port,
    make_config,
    parse_hostport,
    query,
)

pytestmark = pytest.mark.e2e

ZONE = "dnswarden.example"
GOOD = f"good.{ZONE}."
GOOD_ADDRESS = "192.0.2.1"
BROKEN = [f"broken{i}.{ZONE}." for i in range(1, 5)]
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
DNSSEC_BOGUS = 6


def signed_zone(directory: Path, keygen: str, signzone: str) -> Path:
    """The zone, signed, with the `broken*` addresses changed after signing: their RRSIGs no
    longer verify. Returns the KSK's DS file, unbound's trust anchor."""
    records = [
        f"$ORIGIN {ZONE}.",
        "$TTL 300",
        "@ IN SOA ns1 hostmaster 1 3600 600 86400 300",
        "@ IN NS ns1",
        "ns1 IN A 127.0.0.1",
        f"good IN A {GOOD_ADDRESS}",
        *(f"broken{i} IN A 192.0.2.{10 + i}" for i in range(1, 5)),
    ]
    (directory / "zone").write_text("\n".join(records) + "\n")

    def run(*command: str) -> str:
        done = subprocess.run(
            command, cwd=directory, capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout.strip()

    ksk = run(keygen, "-a", "ECDSAP256SHA256", "-k", ZONE)
    zsk = run(keygen, "-a", "ECDSAP256SHA256", ZONE)
    run(signzone, "-o", ZONE, "zone", ksk, zsk)
    signed = directory / "zone.signed"
    lines = signed.read_text().splitlines()
    for index, line in enumerate(lines):
        fields = line.split()
        if fields and fields[0].startswith("broken") and fields[3] == "A":
            lines[index] = line.replace(fields[4], fields[4].replace("192.0.2.", "198.51.100."))
    signed.write_text("\n".join(lines) + "\n")
    return directory / f"{ksk}.ds"


def nsd_config(directory: Path, port: int) -> Path:
    path = directory / "nsd.conf"
    path.write_text(
        f"""server:
  ip-address: 127.0.0.1
  port: {port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{directory}"
  database: ""
  pidfile: "{directory}/nsd.pid"
  xfrdfile: "{directory}/xfrd.state"
  xfrdir: "{directory}"
  zonelistfile: "{directory}/zone.list"
  logfile: "{directory}/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: {ZONE}
  zonefile: "{directory}/zone.signed"
"""
    )
    return path


def unbound_config(directory: Path, port: int, nsd_port: int, anchor: Path) -> Path:
    path = directory / "unbound.conf"
    path.write_text(
        f"""server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: ""
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  qname-minimisation: no
  trust-anchor-file: "{anchor}"
  ede: yes
  val-log-level: 2
remote-control:
  control-enable: no
stub-zone:
  name: "{ZONE}."
  stub-addr: 127.0.0.1@{nsd_port}
"""
    )
    return path


def answers(port: int, name: str, deadline: float) -> dns.message.Message | None:
    """The first reply to `name` from 127.0.0.1:`port` before `deadline`, asking again and
    again while the server starts."""
    message = dns.message.make_query(name, "A", use_edns=0)
    while time.monotonic() < deadline:
        try:
            return dns.query.udp(message, "127.0.0.1", timeout=0.5, port=port)
        except (dns.exception.Timeout, OSError):
            time.sleep(0.1)
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@pytest.fixture(scope="module")
def validating_resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """unbound on loopback validating a zone that nsd serves; its `host:port`."""
    tools = {name: daemon(name) for name in ("nsd", "unbound", "ldns-keygen", "ldns-signzone")}
    missing = sorted(name for name, path in tools.items() if path is None)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian: nsd, unbound, ldnsutils)")
    nsd, unbound, keygen, signzone = (str(tools[name]) for name in tools)
    directory = tmp_path_factory.mktemp("dnssec")
    anchor = signed_zone(directory, keygen, signzone)
    nsd_port, unbound_port = free_port(), free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        logs = directory / "nsd.out"
        with logs.open("wb") as out:
            started.append(
                subprocess.Popen([nsd, "-d", "-c", str(nsd_config(directory, nsd_port))],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            )  # fmt: skip
        soa = answers(nsd_port, f"{ZONE}.", time.monotonic() + START_TIMEOUT)
        assert soa is not None, f"nsd did not answer: {logs.read_text()[-2000:]}"
        config = unbound_config(directory, unbound_port, nsd_port, anchor)
        logs = directory / "unbound.out"
        with logs.open("wb") as out:
            started.append(
                subprocess.Popen([unbound, "-d", "-c", str(config)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            )  # fmt: skip
        good = answers(unbound_port, GOOD, time.monotonic() + START_TIMEOUT)
        assert good is not None, f"unbound did not answer: {logs.read_text()[-2000:]}"
        assert good.rcode() == dns.rcode.NOERROR, logs.read_text()[-2000:]
        yield f"127.0.0.1:{unbound_port}"
    finally:
        for process in reversed(started):
            stop(process)


@pytest.fixture(scope="module")
def forwarder(launch: ServerFactory, validating_resolver: str) -> ServerProcess:
    config = make_config([validating_resolver], lists=[])
    config["upstream"].update(max_fails=3)
    return launch(config, "dnssec")


def test_a_validated_name_has_ad_for_a_client_that_sets_ad(forwarder: ServerProcess) -> None:
    """glibc's `trust-ad` and dig set AD without DO; a stub that sets neither gets AD=0 from the
    same cached answer, and the next AD client AD=1 again."""
    for with_ad, expected in ((True, True), (False, False), (True, True)):
        message = query(GOOD, "A")
        if with_ad:
            message.flags |= dns.flags.AD
        _, reply = ask(message, forwarder.address)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rrset in reply.answer for rd in rrset] == [GOOD_ADDRESS]
        assert bool(reply.flags & dns.flags.AD) == expected
        assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    _, signed = ask(query(GOOD, "A", dnssec=True), forwarder.address)
    assert signed.flags & dns.flags.AD
    assert len(signed.answer) == 2  # the A RRset and its RRSIG


def test_a_bogus_name_is_servfail_with_ede_6_and_the_upstream_stays_up(
    forwarder: ServerProcess, validating_resolver: str
) -> None:
    for name in BROKEN:
        _, reply = ask(query(name, "A", edns=True), forwarder.address, timeout=5)
        assert reply.rcode() == dns.rcode.SERVFAIL
        codes = [code for code, _ in ede(reply)]
        assert DNSSEC_BOGUS in codes and 22 not in codes, ede(reply)
    assert forwarder.wait_for_event(lambda e: e.get("event") == "upstream_health", 1.0) is None
    host, port = parse_hostport(forwarder.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as response:
        ready = json.loads(response.read())
    assert ready["healthy_upstreams"] == [f"udp://{validating_resolver}"]
    _, good = ask(query(GOOD, "A"), forwarder.address)
    assert good.rcode() == dns.rcode.NOERROR
