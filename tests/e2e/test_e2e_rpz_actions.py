"""Every RPZ trigger and action from the running server, asked over UDP and TCP by dnspython.

One RPZ zone file holds a rule for each action (NXDOMAIN, NODATA, DROP, TCP-only, PASSTHRU,
local data), rpz-ip rules that match addresses of forwarded answers (from the fake upstream's
default zone), and rpz-client-ip rules for loopback client addresses other than 127.0.0.1
(Linux routes all of 127.0.0.0/8 to lo, so a client socket can bind 127.0.0.2).
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from fake_upstream import FakeUpstream
from harness import ServerFactory, ServerProcess, ede, make_config, parse_hostport, query
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

LIST = "national"
EDE_FORGED = 4
EDE_BLOCKED = 15
ZONE = """\
$TTL 300
$ORIGIN rpz.test.
@ IN SOA ns.rpz.test. hostmaster.rpz.test. 1 3600 600 86400 300
@ IN NS ns.rpz.test.
nx.blocked.test          CNAME .
*.nx.blocked.test        CNAME .
nodata.blocked.test      CNAME *.
drop.blocked.test        CNAME rpz-drop.
mail.example.org         CNAME rpz-tcp-only.
txt.example.org          CNAME .
redirect.blocked.test    A     192.0.2.77
redirect.blocked.test    AAAA  2001:db8::77
redirect.blocked.test    TXT   "walled garden"
cname.blocked.test       CNAME garden.example.net.
32.10.2.0.192.rpz-ip     CNAME .
128.10.zz.db8.2001.rpz-ip CNAME *.
32.1.2.0.192.rpz-ip      A     192.0.2.99
32.2.0.0.127.rpz-client-ip CNAME .
32.3.0.0.127.rpz-client-ip CNAME rpz-passthru.
32.4.0.0.127.rpz-client-ip CNAME rpz-drop.
ns1.evil.rpz-nsdname     CNAME .
32.1.1.1.1.rpz-nsip      CNAME .
"""

TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(scope="module")
def rpz_server(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> ServerProcess:
    path = workdir / "national.rpz"
    path.write_text(ZONE)
    config = make_config([upstreams[0].address], lists=[LIST])
    config["sources"] = {LIST: {"path": str(path), "format": "rpz"}}
    return launch(config, "rpz")


def ask(
    server: ServerProcess,
    name: str,
    rdtype: str = "A",
    transport: str = "udp",
    source: str = "127.0.0.1",
    timeout: float = 3.0,
) -> dns.message.Message:
    """One query by dnspython from `source`; raises dns.exception.Timeout without a reply."""
    message = query(name, rdtype, edns=True)
    host, port = server.address
    if transport == "udp":
        return dns.query.udp(message, host, port=port, source=source, timeout=timeout)
    return dns.query.tcp(message, host, port=port, source=source, timeout=timeout)


def records(reply: dns.message.Message) -> set[tuple[str, str, str]]:
    return {
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in reply.answer
        for rdata in rrset
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("nx.blocked.test.", "A", dns.rcode.NXDOMAIN),
        ("deep.nx.blocked.test.", "AAAA", dns.rcode.NXDOMAIN),
        ("nodata.blocked.test.", "A", dns.rcode.NOERROR),
    ],
)
def test_nxdomain_and_nodata(
    rpz_server: ServerProcess, transport: str, name: str, rdtype: str, rcode: int
) -> None:
    reply = ask(rpz_server, name, rdtype, transport)
    assert reply.rcode() == rcode
    assert reply.answer == []
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]
    assert (EDE_BLOCKED, f"blocked by list {LIST}") in ede(reply)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_drop_sends_no_reply(rpz_server: ServerProcess, transport: str) -> None:
    with pytest.raises((dns.exception.Timeout, EOFError, ConnectionError)):
        ask(rpz_server, "drop.blocked.test.", "A", transport, timeout=1.0)
    event = rpz_server.wait_for_event(
        lambda e: e.get("event") == "blocked" and "drop.blocked.test" in str(e.get("qname"))
    )
    assert event is not None
    assert (event["entry"], event["rule"], event["answer"]) == (LIST, "drop.blocked.test", "drop")
    assert str(event["reference"]).endswith("national.rpz (RPZ zone rpz.test)")


def test_tcp_only_truncates_over_udp_and_resolves_over_tcp(rpz_server: ServerProcess) -> None:
    over_udp = ask(rpz_server, "mail.example.org.", "MX", "udp")
    assert over_udp.flags & dns.flags.TC
    assert over_udp.rcode() == dns.rcode.NOERROR
    assert over_udp.answer == [] and over_udp.authority == []
    over_tcp = ask(rpz_server, "mail.example.org.", "MX", "tcp")
    assert not over_tcp.flags & dns.flags.TC
    assert records(over_tcp) == {
        ("mail.example.org.", "MX", "10 mx1.example.org."),
        ("mail.example.org.", "MX", "20 mx2.example.org."),
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("redirect.blocked.test.", "A", {("redirect.blocked.test.", "A", "192.0.2.77")}),
        ("redirect.blocked.test.", "AAAA", {("redirect.blocked.test.", "AAAA", "2001:db8::77")}),
        ("redirect.blocked.test.", "TXT", {("redirect.blocked.test.", "TXT", '"walled garden"')}),
        ("cname.blocked.test.", "A", {("cname.blocked.test.", "CNAME", "garden.example.net.")}),
        ("cname.blocked.test.", "MX", {("cname.blocked.test.", "CNAME", "garden.example.net.")}),
        ("redirect.blocked.test.", "MX", set()),  # local data of other types: NODATA
    ],
)
def test_local_data(
    rpz_server: ServerProcess, transport: str, name: str, rdtype: str, expected: set[object]
) -> None:
    reply = ask(rpz_server, name, rdtype, transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert records(reply) == expected
    codes = [code for code, _ in ede(reply)]
    assert codes == ([EDE_FORGED] if expected else [EDE_BLOCKED])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rpz_ip_blocks_a_forwarded_answer_by_its_address(
    rpz_server: ServerProcess, upstreams: tuple[FakeUpstream, FakeUpstream], transport: str
) -> None:
    # www.example.org has A 192.0.2.10 (rule 32.10.2.0.192: NXDOMAIN) and AAAA 2001:db8::10
    # (rule 128.10.zz.db8.2001: NODATA); the question itself is in no list.
    reply = ask(rpz_server, "www.example.org.", "A", transport)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.answer == []
    assert upstreams[0].queries("www.example.org.")  # it was forwarded, then judged
    reply6 = ask(rpz_server, "www.example.org.", "AAAA", transport)
    assert reply6.rcode() == dns.rcode.NOERROR and reply6.answer == []
    event = rpz_server.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("rule") == "32.10.2.0.192.rpz-ip"
    )
    assert event is not None and event["entry"] == LIST


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rpz_ip_local_data_replaces_the_address(
    rpz_server: ServerProcess, transport: str
) -> None:
    reply = ask(rpz_server, "example.org.", "A", transport)  # upstream: A 192.0.2.1
    assert records(reply) == {("example.org.", "A", "192.0.2.99")}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rpz_client_ip(rpz_server: ServerProcess, transport: str) -> None:
    # 127.0.0.2 is NXDOMAIN for every name; 127.0.0.1 gets the real answer.
    blocked = ask(rpz_server, "ns.example.org.", "A", transport, source="127.0.0.2")
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    assert (EDE_BLOCKED, f"blocked by list {LIST}") in ede(blocked)
    allowed = ask(rpz_server, "ns.example.org.", "A", transport)
    assert records(allowed) == {("ns.example.org.", "A", "192.0.2.2")}
    event = rpz_server.wait_for_event(
        lambda e: e.get("event") == "blocked" and e.get("rule") == "32.2.0.0.127.rpz-client-ip"
    )
    assert event is not None and event["entry"] == LIST


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_client_ip_passthru_wins_within_the_zone(
    rpz_server: ServerProcess, transport: str
) -> None:
    # txt.example.org is NXDOMAIN by a QNAME rule, www.example.org by an rpz-ip rule; the
    # PASSTHRU rule for 127.0.0.3 comes first within the zone.
    assert ask(rpz_server, "txt.example.org.", "TXT", transport).rcode() == dns.rcode.NXDOMAIN
    passed = ask(rpz_server, "txt.example.org.", "TXT", transport, source="127.0.0.3")
    assert ("txt.example.org.", "TXT", '"v=spf1 -all" "second string"') in records(passed)
    www = ask(rpz_server, "www.example.org.", "A", transport, source="127.0.0.3")
    assert ("www.example.org.", "A", "192.0.2.10") in records(www)


def test_client_ip_drop(rpz_server: ServerProcess) -> None:
    with pytest.raises(dns.exception.Timeout):
        ask(rpz_server, "ns.example.org.", "A", "udp", source="127.0.0.4", timeout=1.0)


def test_load_counts_and_notes_what_a_forwarder_cannot_apply(rpz_server: ServerProcess) -> None:
    report = rpz_server.wait_for_event(
        lambda e: e.get("event") == "list_loaded" and e.get("list") == LIST
    )
    assert report is not None
    assert report["skipped"] == {"rpz-nsdname trigger": 1, "rpz-nsip trigger": 1}
    assert "forwarder never sees" in report["note"]


def test_metrics_count_skipped_rules_and_each_action(rpz_server: ServerProcess) -> None:
    ask(rpz_server, "nx.blocked.test.", "A", "tcp")
    with pytest.raises(dns.exception.Timeout):
        ask(rpz_server, "drop.blocked.test.", "A", "udp", timeout=0.5)
    host, port = parse_hostport(rpz_server.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    skipped = {
        dict(labels)["trigger"]: value
        for (name, labels), value in samples.items()
        if name == "dnswarden_rpz_rules_skipped" and dict(labels)["list"] == LIST
    }
    assert skipped == {"rpz-nsdname": 1, "rpz-nsip": 1}
    answers = {
        dict(labels)["answer"]
        for (name, labels), value in samples.items()
        if name == "dnswarden_blocked_total" and dict(labels)["entry"] == LIST and value
    }
    assert {"nxdomain", "drop"} <= answers


def test_loopback_aliases_are_usable() -> None:
    """The client-ip tests need 127.0.0.2-4 as source addresses (Linux: all of 127/8 is lo)."""
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
