"""Groups and policies on the wire: two loopback clients, two groups, two answers for one name."""

from __future__ import annotations

import socket
from typing import Any

import dns.message
import dns.rcode
import pytest
from fake_upstream import FakeUpstream
from harness import ServerFactory, ServerProcess, ede, make_config, query

pytestmark = pytest.mark.e2e

OFFICIAL = "127.0.0.2"
PERSONAL = "127.0.0.3"
PRESS = "127.0.0.4"
STRANGER = "127.0.0.9"
REFERENCE = "Belgian federal government decision, 10 March 2023"


def policy_config(upstream: str) -> dict[str, Any]:
    config = make_config([upstream], lists=[])
    config["clients"]["default_group"] = "refuse"
    config["groups"] = {
        "officials": {"subnets": ["127.0.0.0/29"]},
        "press-office": {"subnets": [f"{PRESS}/32"], "exempt": ["tiktok.com"]},
        "personal-wifi": {"subnets": [f"{PERSONAL}/32"]},
    }
    config["policies"] = {
        "be-tiktok": {
            "block": ["tiktok"],
            "groups": ["officials", "press-office"],
            "reference": REFERENCE,
            "from": "2023-03-10",
            "until": "2099-01-01T00:00:00Z",
        },
        "lapsed-ban": {
            "block": ["tiktok"],
            "groups": ["personal-wifi"],
            "from": "2020-01-01",
            "until": "2020-07-01",
        },
    }
    return config


@pytest.fixture(scope="module")
def policy_server(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> ServerProcess:
    return launch(policy_config(upstreams[1].address), "policy")


def ask_from(source: str, server: ServerProcess, name: str) -> dns.message.Message:
    """A UDP query whose source address is `source` (any 127/8 address is ours on loopback)."""
    wire = query(name, "A", edns=True).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3.0)
        sock.sendto(wire, server.address)
        reply, _ = sock.recvfrom(65535)
    return dns.message.from_wire(reply)


def test_same_name_different_groups_different_answers(
    policy_server: ServerProcess, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    official = ask_from(OFFICIAL, policy_server, "www.tiktok.com.")
    assert [rr.to_text() for rrset in official.answer for rr in rrset] == ["0.0.0.0"]
    assert ede(official) == [(4, f"blocked by policy be-tiktok (tiktok; ref: {REFERENCE})")]

    before = len(upstreams[1].queries(qname="www.tiktok.com."))
    personal = ask_from(PERSONAL, policy_server, "www.tiktok.com.")
    assert not any(code in (4, 15, 16) for code, _ in ede(personal))
    assert len(upstreams[1].queries(qname="www.tiktok.com.")) == before + 1  # forwarded


def test_press_office_exemption_beats_the_policy(
    policy_server: ServerProcess, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    before = len(upstreams[1].queries(qname="tiktok.com."))
    reply = ask_from(PRESS, policy_server, "tiktok.com.")
    assert not any(code in (4, 15, 16) for code, _ in ede(reply))
    assert len(upstreams[1].queries(qname="tiktok.com.")) == before + 1


def test_censored_ede_for_a_referenced_policy(policy_server: ServerProcess) -> None:
    reply = ask_from(OFFICIAL, policy_server, "tiktok.com.")
    wire = query("tiktok.com.", "MX", edns=True).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((OFFICIAL, 0))
        sock.settimeout(3.0)
        sock.sendto(wire, policy_server.address)
        mx = dns.message.from_wire(sock.recvfrom(65535)[0])
    assert reply.rcode() == dns.rcode.NOERROR
    assert ede(mx) == [(16, f"blocked by policy be-tiktok (tiktok; ref: {REFERENCE})")]


def test_client_in_no_group_is_refused(policy_server: ServerProcess) -> None:
    reply = ask_from(STRANGER, policy_server, "example.org.")
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply)[0][0] == 18


def test_block_events_name_group_policy_and_reference(policy_server: ServerProcess) -> None:
    ask_from(OFFICIAL, policy_server, "api.tiktokv.com.")
    event = policy_server.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("qname") == "api.tiktokv.com"
    )
    assert event is not None
    assert event["group"] == "officials"
    assert event["policy"] == "be-tiktok"
    assert event["entry"] == "tiktok"
    assert event["rule"] == "tiktokv.com"
    assert event["reference"] == REFERENCE
