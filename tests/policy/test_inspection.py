"""Response inspection as pure functions: replies built by dnspython (or by hand when hostile)."""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Sequence

import dns.message
import dns.rrset
import pytest

from resolver.config import BlockingConfig, InspectionConfig, parse_config
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.policy.engine import PolicyEngine, build_engine
from resolver.policy.inspection import (
    MAX_NAMES,
    MAX_RECORDS,
    REBINDING,
    RESPONSE_IP,
    Findings,
    Inspector,
    verdict,
)
from resolver.protocol.names import from_text
from resolver.protocol.wire import HEADER_LEN, UpstreamReply

LISTS = {"tiktok": ["tiktok.com", "tiktokv.com", "byteoversea.com"]}
POLICY = """
clients: {allow: [10.0.0.0/8]}
blocking: {lists: [], ttl: 60s, answer: nxdomain}
groups:
  officials: {subnets: [10.20.0.0/16]}
  personal: {subnets: [10.30.0.0/16]}
policies:
  ban:
    block: [tiktok]
    groups: [officials]
    reference: "decision 2023/1"
"""
OFFICIAL = "10.20.0.7"
PERSONAL = "10.30.0.7"


def engine() -> PolicyEngine:
    config = parse_config(POLICY, "<test>", known_lists=frozenset(LISTS))
    matchers = {}
    for name, patterns in LISTS.items():
        matcher = DomainMatcher()
        for pattern in patterns:
            matcher.add(pattern, BlockRule(name, pattern))
        matchers[name] = (name, matcher)
    return build_engine(config, matchers, 3)


def reply(qname: str, records: Sequence[str], qtype: str = "A") -> tuple[bytes, int, bytes]:
    """(wire, question end, lowercase wire qname) of an answer holding `records`."""
    query = dns.message.make_query(qname, qtype)
    response = dns.message.make_response(query)
    for line in records:
        owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
        response.answer.append(dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata))
    wire = response.to_wire()
    name = from_text(qname)
    end = HEADER_LEN + len(name) + 4
    UpstreamReply(wire, end - HEADER_LEN)  # the pool only ever inspects replies that parse
    return wire, end, name


def inspector(**changes: object) -> Inspector:
    values: dict[str, object] = {"cname": True, "response_ip": (), "rebinding": False,
                                 "rebinding_allow": ()}  # fmt: skip
    values.update(changes)
    values["response_ip"] = tuple(ipaddress.ip_network(n) for n in values["response_ip"])  # type: ignore[attr-defined]
    values["rebinding_allow"] = tuple(values["rebinding_allow"])  # type: ignore[call-overload]  # as the config parser makes it
    return Inspector(InspectionConfig(**values))  # type: ignore[arg-type]


# --- what extract collects ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "records", "expected"),
    [
        ("www.example.org.", ["www.example.org. 60 IN A 192.0.2.1"], None),
        ("www.example.org.", ["www.example.org. 60 IN A 192.0.2.1",
                              "www.example.org. 60 IN A 192.0.2.2"], None),
        ("cdn.example.org.", ["cdn.example.org. 60 IN CNAME edge.tiktokv.com.",
                              "edge.tiktokv.com. 60 IN A 192.0.2.3"],
         ["edge.tiktokv.com"]),
        ("a.example.org.", ["a.example.org. 60 IN CNAME b.example.net.",
                            "b.example.net. 60 IN CNAME C.Example.COM.",
                            "c.example.com. 60 IN A 192.0.2.4"],
         ["b.example.net", "c.example.com"]),
        # an owner that is neither the question nor a CNAME target still counts
        ("x.example.org.", ["x.example.org. 60 IN A 192.0.2.1",
                            "sneaky.tiktok.com. 60 IN A 192.0.2.5"],
         ["sneaky.tiktok.com"]),
        ("x.foo.example.", ["foo.example. 60 IN DNAME tiktok.com.",
                            "x.foo.example. 60 IN CNAME x.tiktok.com.",
                            "x.tiktok.com. 60 IN A 192.0.2.6"],
         ["foo.example", "tiktok.com", "x.tiktok.com"]),
    ],
)  # fmt: skip
def test_extract_collects_answer_names(
    qname: str, records: list[str], expected: list[str] | None
) -> None:
    wire, end, name = reply(qname, records)
    found = inspector().extract(wire, end, name)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.ip_block is None
        assert list(found.names) == [from_text(n) for n in expected]


def test_extract_does_nothing_when_inspection_is_off() -> None:
    wire, end, name = reply(
        "cdn.example.org.",
        ["cdn.example.org. 60 IN CNAME edge.tiktokv.com.", "edge.tiktokv.com. 60 IN A 10.0.0.1"],
    )
    assert inspector(cname=False).extract(wire, end, name) is None
    assert not inspector(cname=False).active


@pytest.mark.parametrize(
    ("qname", "records", "rules", "expected"),
    [
        ("w.example.org.", ["w.example.org. 60 IN A 203.0.113.9"],
         {"response_ip": ["203.0.113.0/24"]}, (RESPONSE_IP, "203.0.113.0/24")),
        ("w.example.org.", ["w.example.org. 60 IN A 203.0.114.9"],
         {"response_ip": ["203.0.113.0/24"]}, None),
        ("w.example.org.", ["w.example.org. 60 IN AAAA 2001:db8:bad::1"],
         {"response_ip": ["203.0.113.0/24", "2001:db8:bad::/48"]},
         (RESPONSE_IP, "2001:db8:bad::/48")),
        ("w.example.org.", ["w.example.org. 60 IN AAAA ::ffff:203.0.113.7"],
         {"response_ip": ["203.0.113.7/32"]}, (RESPONSE_IP, "203.0.113.7/32")),
        ("w.example.org.", ["w.example.org. 60 IN A 10.1.2.3"], {"rebinding": True},
         (REBINDING, "10.1.2.3")),
        ("w.example.org.", ["w.example.org. 60 IN A 192.168.1.1"], {"rebinding": True},
         (REBINDING, "192.168.1.1")),
        ("w.example.org.", ["w.example.org. 60 IN A 127.0.0.1"], {"rebinding": True},
         (REBINDING, "127.0.0.1")),
        ("w.example.org.", ["w.example.org. 60 IN AAAA ::1"], {"rebinding": True},
         (REBINDING, "::1")),
        ("w.example.org.", ["w.example.org. 60 IN AAAA fd12::1"], {"rebinding": True},
         (REBINDING, "fd12::1")),
        ("w.example.org.", ["w.example.org. 60 IN AAAA fe80::1"], {"rebinding": True},
         (REBINDING, "fe80::1")),
        ("w.example.org.", ["w.example.org. 60 IN AAAA ::ffff:10.0.0.1"], {"rebinding": True},
         (REBINDING, "10.0.0.1")),
        ("w.example.org.", ["w.example.org. 60 IN A 192.0.2.1"], {"rebinding": True}, None),
        ("w.example.org.", ["w.example.org. 60 IN A 10.1.2.3"], {"rebinding": False}, None),
        ("host.gov.internal.", ["host.gov.internal. 60 IN A 10.1.2.3"],
         {"rebinding": True, "rebinding_allow": ["gov.internal"]}, None),
        ("gov.internal.", ["gov.internal. 60 IN A 10.1.2.3"],
         {"rebinding": True, "rebinding_allow": ["gov.internal"]}, None),
        ("evilgov.internal.", ["evilgov.internal. 60 IN A 10.1.2.3"],
         {"rebinding": True, "rebinding_allow": ["gov.internal"]}, (REBINDING, "10.1.2.3")),
        ("localhost.", ["localhost. 60 IN A 127.0.0.1"], {"rebinding": True}, None),
    ],
)  # fmt: skip
def test_extract_applies_ip_rules(
    qname: str, records: list[str], rules: dict[str, object], expected: tuple[str, str] | None
) -> None:
    wire, end, name = reply(qname, records, "AAAA" if "AAAA" in records[0] else "A")
    found = inspector(cname=False, **rules).extract(wire, end, name)
    assert (found.ip_block if found is not None else None) == expected


# --- bounded on hostile input ---------------------------------------------------------------


def _hostile(
    count: int, cname_at: int | None = None, distinct: bool = True
) -> tuple[bytes, int, bytes]:
    """An answer of `count` A records (owners distinct names below the question, or the question
    itself), and optionally a CNAME into tiktok.com at position `cname_at`."""
    qname = from_text("victim.example")
    header = struct.pack(">HHHHHH", 1, 0x8180, 1, count, 0, 0)
    question = qname + b"\x00\x01\x00\x01"
    records = []
    for i in range(count):
        if i == cname_at:
            target = from_text("x.tiktok.com")
            records.append(b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, len(target)) + target)
        else:
            owner = bytes((4,)) + f"{i:04x}".encode() + b"\xc0\x0c" if distinct else b"\xc0\x0c"
            records.append(owner + struct.pack(">HHIH", 1, 1, 60, 4) + b"\xc0\x00\x02\x01")
    wire = header + question + b"".join(records)
    UpstreamReply(wire, len(question))
    return wire, HEADER_LEN + len(question), qname


def test_a_hostile_64k_reply_is_bounded() -> None:
    wire, end, name = _hostile(3500)
    assert len(wire) > 60_000
    rules = inspector(response_ip=["198.51.100.0/24"], rebinding=True)
    started = time.perf_counter()
    found = rules.extract(wire, end, name)
    elapsed = time.perf_counter() - started
    assert found is not None
    assert len(found.names) == MAX_NAMES
    assert elapsed < 0.02, f"{elapsed * 1000:.1f} ms for one reply"


@pytest.mark.parametrize(("position", "found"), [(5, True), (MAX_RECORDS - 1, True),
                                                 (MAX_RECORDS, False)])  # fmt: skip
def test_records_past_the_cap_are_not_read(position: int, found: bool) -> None:
    wire, end, name = _hostile(MAX_RECORDS + 50, cname_at=position, distinct=False)
    result = Inspector(InspectionConfig(cname=True)).extract(wire, end, name)
    assert (result is not None and from_text("x.tiktok.com") in result.names) == found


def test_a_pointer_loop_in_a_cname_target_is_survived() -> None:
    qname = from_text("loop.example")
    header = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    question = qname + b"\x00\x01\x00\x01"
    rdata_at = HEADER_LEN + len(question) + 12
    rdata = struct.pack(">H", 0xC000 | rdata_at)  # points at itself
    wire = header + question + b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, 2) + rdata
    assert Inspector(InspectionConfig()).extract(wire, HEADER_LEN + len(question), qname) is None


# --- verdict per client ---------------------------------------------------------------------


@pytest.mark.parametrize(("client", "blocked"), [(OFFICIAL, True), (PERSONAL, False)])
def test_cname_into_a_blocked_name_blocks_only_where_policy_blocks(
    client: str, blocked: bool
) -> None:
    wire, end, name = reply(
        "cdn.example.org.",
        ["cdn.example.org. 60 IN CNAME edge.tiktokv.com.", "edge.tiktokv.com. 60 IN A 192.0.2.3"],
    )
    found = inspector().extract(wire, end, name)
    assert found is not None
    block = verdict(found, client, 1, engine(), BlockingConfig(), time.time())
    if not blocked:
        assert block is None
        return
    assert block is not None
    assert block.cname == from_text("edge.tiktokv.com")
    assert (block.group, block.policy, block.list_name, block.rule) == (
        "officials", "ban", "tiktok", "tiktokv.com")  # fmt: skip
    assert block.reference == "decision 2023/1" and block.censored
    assert block.answer == "nxdomain" and block.zone_offset == 0


def test_ip_block_verdict_uses_the_global_answer() -> None:
    findings = Findings((), (REBINDING, "10.1.2.3"))
    blocking = BlockingConfig(ttl=42)
    block = verdict(findings, PERSONAL, 1, engine(), blocking, time.time())
    assert block is not None
    assert (block.group, block.policy, block.list_name, block.rule, block.cname) == (
        "personal", None, REBINDING, "10.1.2.3", None)  # fmt: skip
    assert block.answer == blocking.answer.value and block.ttl == 42 and not block.censored


@pytest.mark.parametrize(
    ("kind", "rule", "reference"),
    [(REBINDING, "10.1.2.3", "inspection.rebinding"),
     (RESPONSE_IP, "203.0.113.0/24", "inspection.response_ip")],
)  # fmt: skip
def test_ip_block_cites_the_config_key_that_made_it(kind: str, rule: str, reference: str) -> None:
    block = verdict(Findings((), (kind, rule)), PERSONAL, 1, engine(), BlockingConfig(), 0.0)
    assert block is not None
    assert (block.reference, block.decisions) == (reference, ())
    assert block.cause == f"blocked by {kind} rule {rule}"
