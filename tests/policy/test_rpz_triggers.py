"""RPZ address triggers in the policy: rpz-client-ip before the question, rpz-ip on the answer.

The lists are real RPZ zones, parsed and compiled as the server does; the engine is built from a
real config. Precedence as RPZ orders it: the lists in their order, and within one list a
client rule before its name rules before its response-address rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.message
import dns.rrset
import pytest

from resolver.config import BlockingConfig, InspectionConfig, parse_config
from resolver.lists.compiled import from_parsed
from resolver.lists.formats import parse_rules
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.policy.engine import Action, PolicyEngine, build_engine
from resolver.policy.inspection import Findings, Inspector, verdict
from resolver.protocol.names import from_text
from resolver.protocol.wire import HEADER_LEN, UpstreamReply

NATIONAL = """\
$ORIGIN rpz.gov.
@ SOA ns.rpz.gov. h.rpz.gov. 1 3600 600 86400 300
blocked.example CNAME .
local.example A 192.0.2.80
passed.example CNAME rpz-passthru.
32.2.0.0.10.rpz-client-ip CNAME .
32.3.0.0.10.rpz-client-ip CNAME rpz-passthru.
32.4.0.0.10.rpz-client-ip A 192.0.2.44
16.0.0.9.10.rpz-client-ip CNAME *.
24.0.2.0.192.rpz-ip CNAME .
28.16.2.0.192.rpz-ip CNAME rpz-drop.
32.17.2.0.192.rpz-ip CNAME rpz-passthru.
32.99.2.0.192.rpz-ip A 192.0.2.98
64.zz.db8.2001.rpz-ip CNAME *.
split.example CNAME .
*.split.example CNAME *.
"""
POLICY = """
clients: {allow: [10.0.0.0/8]}
blocking: {lists: [first, national], ttl: 60s}
groups:
  exempted: {subnets: [10.9.0.0/16], exempt: [ok.example]}
  plain: {subnets: [10.8.0.0/16], block: [first]}
"""


def engine() -> PolicyEngine:
    config = parse_config(POLICY, "<test>", known_lists=frozenset({"first", "national"}))
    first = DomainMatcher()
    first.add("first.example", BlockRule("first", "first.example"))
    national = from_parsed(parse_rules(NATIONAL.encode(), "national.rpz", "rpz"), "national")
    return build_engine(config, {"first": ("first", first), "national": ("national", national)}, 2)


def decide(policy: PolicyEngine, client: str, name: str) -> tuple[str, str | None, str | None]:
    decision = policy.decide(client, from_text(name), 1, 0.0)
    if decision.action is Action.ALLOW:
        return "allow", None, None
    return decision.answer, decision.list_name, decision.rule


@pytest.mark.parametrize(
    ("client", "name", "expected"),
    [
        ("10.0.0.1", "any.example", ("allow", None, None)),
        ("10.0.0.1", "blocked.example", ("nxdomain", "national", "blocked.example")),
        ("10.0.0.2", "any.example", ("nxdomain", "national", "32.2.0.0.10.rpz-client-ip")),
        ("10.0.0.2", "first.example", ("null_ip", "first", "first.example")),  # earlier list
        ("10.0.0.3", "blocked.example", ("allow", None, None)),  # passthru: past the zone
        ("10.0.0.3", "first.example", ("null_ip", "first", "first.example")),  # not past others
        ("10.0.0.4", "any.example", ("local", "national", "32.4.0.0.10.rpz-client-ip")),
        ("10.9.1.1", "any.example", ("nodata", "national", "16.0.0.9.10.rpz-client-ip")),
        ("10.9.1.1", "www.ok.example", ("allow", None, None)),  # the group's exemption
    ],
)
def test_client_ip_rules(client: str, name: str, expected: tuple[str, ...]) -> None:
    assert decide(engine(), client, name) == expected


def test_a_name_and_its_wildcard_answer_with_their_own_actions() -> None:
    policy = engine()
    assert decide(policy, "10.0.0.1", "split.example") == ("nxdomain", "national", "split.example")
    assert decide(policy, "10.0.0.1", "a.b.split.example") == (
        "nodata", "national", "*.split.example"
    )  # fmt: skip


def test_client_rules_are_judged_per_client_whatever_was_asked_before() -> None:
    policy = engine()
    for _ in range(2):  # the second round would hit any memo of the first
        assert decide(policy, "10.0.0.1", "again.example")[0] == "allow"
        assert decide(policy, "10.0.0.2", "again.example")[0] == "nxdomain"
    block = policy.decide("10.0.0.4", from_text("x.example"), 1, 0.0)
    assert block.data == ((1, bytes([192, 0, 2, 44])),)


def test_only_groups_with_client_rules_take_the_slow_path() -> None:
    config = parse_config(POLICY.replace("first, national", "first"), "<test>",
                          known_lists=frozenset({"first", "national"}))  # fmt: skip
    national = from_parsed(parse_rules(NATIONAL.encode(), "n", "rpz"), "national")
    first = DomainMatcher()
    policy = build_engine(config, {"first": ("first", first), "national": ("n", national)}, 1)
    assert not any(group.client_ip for group in policy.groups.values())
    assert not policy.response_ip
    assert engine().response_ip
    assert all(group.client_ip for group in engine().groups.values())


def address(text: str) -> tuple[int, int]:
    value = ipaddress.ip_address(text)
    return value.version, int(value)


@pytest.mark.parametrize(
    ("client", "addresses", "expected"),
    [
        ("10.0.0.1", ["198.51.100.1"], None),
        ("10.0.0.1", ["192.0.2.1"], ("nxdomain", "24.0.2.0.192.rpz-ip")),
        ("10.0.0.1", ["192.0.2.1", "192.0.2.18"], ("drop", "28.16.2.0.192.rpz-ip")),  # /28 wins
        ("10.0.0.1", ["192.0.2.17"], None),  # a /32 PASSTHRU beats the /28 and /24
        ("10.0.0.1", ["192.0.2.99"], ("local", "32.99.2.0.192.rpz-ip")),
        ("10.0.0.1", ["2001:db8::1"], ("nodata", "64.zz.db8.2001.rpz-ip")),
        ("10.0.0.3", ["192.0.2.1"], None),  # the client's PASSTHRU covers the whole zone
    ],
)
def test_response_ip_rules(
    client: str, addresses: list[str], expected: tuple[str, str] | None
) -> None:
    found = engine().response_block(
        client, from_text("www.example"), [address(a) for a in addresses], 0.0
    )
    assert (None if found is None else (found.answer, found.rule)) == expected
    if found is not None:
        assert (found.list_name, found.zone_offset) == ("national", 0)


def test_response_ip_rules_respect_exemptions() -> None:
    policy = engine()
    hit = [address("192.0.2.1")]
    assert policy.response_block("10.0.0.1", from_text("passed.example"), hit, 0.0) is None
    assert policy.response_block("10.9.1.1", from_text("a.ok.example"), hit, 0.0) is None
    assert policy.response_block("10.9.1.1", from_text("other.example"), hit, 0.0) is not None


def reply(qname: str, records: Sequence[str]) -> tuple[bytes, int, bytes]:
    query = dns.message.make_query(qname, "A")
    response = dns.message.make_response(query)
    for line in records:
        owner, ttl, rdclass, rdtype, rdata = line.split(maxsplit=4)
        response.answer.append(dns.rrset.from_text(owner, int(ttl), rdclass, rdtype, rdata))
    wire = response.to_wire()
    name = from_text(qname)
    end = HEADER_LEN + len(name) + 4
    UpstreamReply(wire, end - HEADER_LEN)
    return wire, end, name


def test_inspector_collects_addresses_only_when_asked() -> None:
    wire, end, name = reply(
        "www.example.", ["www.example. 60 IN A 192.0.2.1", "www.example. 60 IN AAAA ::ffff:1.2.3.4"]
    )
    assert Inspector(InspectionConfig(cname=False)).extract(wire, end, name) is None
    findings = Inspector(InspectionConfig(cname=False), addresses=True).extract(wire, end, name)
    assert findings == Findings((), None, (address("192.0.2.1"), address("1.2.3.4")))
    block = verdict(findings, "10.0.0.1", 1, engine(), BlockingConfig(), 0.0, "", name)
    assert block is not None and (block.rule, block.answer) == ("24.0.2.0.192.rpz-ip", "nxdomain")
    assert verdict(findings, "10.0.0.3", 1, engine(), BlockingConfig(), 0.0, "", name) is None


def test_global_allow_lists_beat_address_rules_too() -> None:
    from resolver.lists.loading import AllowFiltered

    config = parse_config(POLICY, "<test>", known_lists=frozenset({"first", "national"}))
    allow = DomainMatcher()
    allow.add("safe.example", BlockRule("corp-allow", "safe.example"))
    national = from_parsed(parse_rules(NATIONAL.encode(), "national.rpz", "rpz"), "national")
    matchers = {
        "first": ("first", DomainMatcher()),
        "national": ("national", AllowFiltered(national, [allow])),
    }
    policy = build_engine(config, matchers, 1)  # type: ignore[arg-type]
    assert decide(policy, "10.0.0.2", "www.safe.example") == ("allow", None, None)
    assert decide(policy, "10.0.0.2", "other.example")[0] == "nxdomain"
    hit = [address("192.0.2.1")]
    assert policy.response_block("10.0.0.1", from_text("safe.example"), hit, 0.0) is None
    assert policy.response_block("10.0.0.1", from_text("other.example"), hit, 0.0) is not None
