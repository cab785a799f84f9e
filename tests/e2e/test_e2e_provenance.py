"""Provenance on the wire: every block's audit event and EDE text cite a decision or a source, a
group that exempts a catalogue entry gets the real answer, and the default lists close the
encrypted-DNS bypass."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest
from fake_upstream import FakeUpstream, Zone
from harness import (
    ServerFactory,
    ServerProcess,
    block_text,
    decision_labels,
    ede,
    make_config,
    query,
)

pytestmark = pytest.mark.e2e

OFFICIAL = "127.0.0.2"
PRESS = "127.0.0.4"
REFERENCE = "Decision 9/2026 of the Ministry (CapCut on service devices)"
ZONE = [
    "example. 3600 IN SOA ns.example. admin.example. 1 7200 900 86400 60",
    "www.tiktok.com. 300 IN A 192.0.2.66",
    "api.tiktokv.com. 300 IN A 192.0.2.67",
    "ops-banned.example. 300 IN A 192.0.2.68",
]
"""What the upstream answers: the real addresses an exempt group must get."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(zone=Zone(ZONE)).start()
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.errors == []


@pytest.fixture(scope="module")
def ops_list(workdir: Path) -> Path:
    path = workdir / "ops.txt"
    path.write_text("ops-banned.example\n")
    return path


def provenance_config(upstream: str, ops_list: Path) -> dict[str, Any]:
    config = make_config([upstream], lists=["tiktok", str(ops_list)])
    config["groups"] = {
        "officials": {"subnets": ["127.0.0.0/29"]},
        # Inside the officials' /29: the longest prefix wins.
        "press-office": {"subnets": [f"{PRESS}/32"], "exempt_lists": ["tiktok"]},
    }
    config["policies"] = {
        "capcut-ban": {"block": ["capcut"], "groups": ["officials"], "reference": REFERENCE},
    }
    return config


@pytest.fixture(scope="module")
def server(launch: ServerFactory, upstream: FakeUpstream, ops_list: Path) -> ServerProcess:
    return launch(provenance_config(upstream.address, ops_list), "provenance")


def ask_from(source: str, server: ServerProcess, name: str, rdtype: str = "A") -> Any:
    """A UDP query whose source address is `source` (any 127/8 address is ours on loopback)."""
    wire = query(name, rdtype, edns=True).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(wire, server.address)
        reply, _ = sock.recvfrom(65535)
    return dns.message.from_wire(reply)


def block_event(server: ServerProcess, qname: str) -> dict[str, Any]:
    event = server.wait_for_event(lambda e: e.get("event") == "blocked" and e["qname"] == qname)
    assert event is not None, f"no blocked event for {qname}"
    return event


def addresses(reply: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


def test_a_catalogue_block_cites_the_entry_decisions(server: ServerProcess) -> None:
    reply = ask_from(OFFICIAL, server, "m.tiktok.com.")
    assert addresses(reply) == ["0.0.0.0"]
    assert ede(reply) == [(4, block_text("tiktok"))]
    event = block_event(server, "m.tiktok.com")
    labels = decision_labels("tiktok")
    assert len(labels) > 1
    assert (event["policy"], event["entry"]) == (None, "tiktok")
    assert event["reference"] == "; ".join(labels)
    assert event["decisions"] == labels


def test_an_operator_list_block_cites_its_file(server: ServerProcess, ops_list: Path) -> None:
    reply = ask_from(OFFICIAL, server, "x.ops-banned.example.")
    assert ede(reply) == [(4, "blocked by list ops")]  # the server's paths stay on the server
    event = block_event(server, "x.ops-banned.example")
    assert (event["entry"], event["reference"]) == ("ops", str(ops_list))
    assert "decisions" not in event


def test_a_policy_reference_comes_first(server: ServerProcess) -> None:
    reply = ask_from(OFFICIAL, server, "capcut.com.", "MX")
    assert ede(reply) == [(16, f"blocked by policy capcut-ban (capcut; ref: {REFERENCE})")]
    event = block_event(server, "capcut.com")
    assert (event["policy"], event["reference"]) == ("capcut-ban", REFERENCE)
    assert event["decisions"] == decision_labels("capcut")


def test_a_group_exempting_a_catalogue_entry_gets_the_real_answer(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    before = len(upstream.queries(qname="www.tiktok.com."))
    press = ask_from(PRESS, server, "www.tiktok.com.")
    assert press.rcode() == dns.rcode.NOERROR
    assert addresses(press) == ["192.0.2.66"]
    assert not any(code in (4, 15, 16) for code, _ in ede(press))
    assert len(upstream.queries(qname="www.tiktok.com.")) == before + 1
    # Every name of the entry, not only the one domain an `exempt` line would name.
    assert addresses(ask_from(PRESS, server, "api.tiktokv.com.")) == ["192.0.2.67"]
    # Names outside the entry stay blocked for the press office.
    assert addresses(ask_from(PRESS, server, "ops-banned.example.")) == ["0.0.0.0"]
    # And the officials around it are still blocked.
    assert addresses(ask_from(OFFICIAL, server, "www.tiktok.com.")) == ["0.0.0.0"]


@pytest.fixture(scope="module")
def default_lists_server(launch: ServerFactory, upstream: FakeUpstream) -> ServerProcess:
    config = make_config([upstream.address])
    del config["blocking"]["lists"]  # the default: what the embedded config blocks
    return launch(config, "default-lists")


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "code"),
    [
        # Firefox's canary and iCloud Private Relay get a negative answer, as they ask.
        ("use-application-dns.net.", "A", dns.rcode.NXDOMAIN, 15),
        ("mask.icloud.com.", "AAAA", dns.rcode.NXDOMAIN, 15),
        # RFC 9462: no designated resolver to upgrade to.
        ("_dns.resolver.arpa.", "SVCB", dns.rcode.NOERROR, 15),
    ],
)
def test_the_default_lists_close_the_encrypted_dns_bypass(
    default_lists_server: ServerProcess, name: str, rdtype: str, rcode: int, code: int
) -> None:
    reply = ask_from("127.0.0.1", default_lists_server, name, rdtype)
    assert reply.rcode() == rcode
    assert not reply.answer
    assert ede(reply) == [(code, block_text("doh-bypass"))]
    event = block_event(default_lists_server, name.rstrip("."))
    assert event["entry"] == "doh-bypass"
    assert event["decisions"] == decision_labels("doh-bypass")
