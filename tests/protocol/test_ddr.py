"""DDR answers (RFC 9462/9461): our endpoints as SVCB records, read back with dnspython."""

from __future__ import annotations

import ipaddress

import dns.message
import dns.rdatatype
import pytest

from resolver.protocol.ddr import DesignatedResolver, EncryptedEndpoint
from resolver.protocol.edns import opt_record
from resolver.protocol.wire import TCP_MAX_MESSAGE, parse_query

V4 = ipaddress.ip_address("192.0.2.53")
V6 = ipaddress.ip_address("2001:db8::53")
BOTH = DesignatedResolver(
    "dns.example.gov",
    [EncryptedEndpoint("doh", 443, (V4, V6)), EncryptedEndpoint("dot", 8853, (V4,))],
)


def ask(name: str, rdtype: str = "SVCB", edns: bool = False, limit: int = TCP_MAX_MESSAGE,
        designated: DesignatedResolver = BOTH) -> dns.message.Message | None:  # fmt: skip
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    query.id = 4242
    parsed = parse_query(query.to_wire())
    opt = opt_record(False) if edns else b""
    reply = designated.answer(parsed, opt, limit)
    return None if reply is None else dns.message.from_wire(reply)


@pytest.mark.parametrize("name", ["_dns.resolver.arpa.", "_DNS.Resolver.Arpa.",
                                  "_dns.dns.example.gov.", "_dns.DNS.example.gov."])  # fmt: skip
def test_svcb_names_our_endpoints(name: str) -> None:
    reply = ask(name)
    assert reply is not None
    assert reply.id == 4242 and reply.question[0].name.to_text() == name
    assert reply.rcode() == 0 and reply.flags & dns.flags.QR and not reply.flags & dns.flags.AA
    (rrset,) = reply.answer
    assert rrset.rdtype == dns.rdatatype.SVCB and rrset.ttl == 300
    by_priority = {rdata.priority: rdata for rdata in rrset}
    doh, dot = by_priority[1], by_priority[2]
    assert doh.target.to_text() == dot.target.to_text() == "dns.example.gov."
    assert [a.decode() for a in doh.params[dns.rdtypes.svcbbase.ParamKey.ALPN].ids] == [
        "h2",
        "http/1.1",
    ]
    keys = dns.rdtypes.svcbbase.ParamKey
    assert keys.PORT not in doh.params  # 443 is DoH's default: left out
    assert doh.params[keys.DOHPATH].value == b"/dns-query{?dns}"
    assert [str(a) for a in doh.params[keys.IPV4HINT].addresses] == ["192.0.2.53"]
    assert [str(a) for a in doh.params[keys.IPV6HINT].addresses] == ["2001:db8::53"]
    assert [a.decode() for a in dot.params[keys.ALPN].ids] == ["dot"]
    assert dot.params[keys.PORT].port == 8853
    assert keys.DOHPATH not in dot.params and keys.IPV6HINT not in dot.params


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "HTTPS", "TXT"])
def test_other_types_of_our_names_are_nodata(rdtype: str) -> None:
    reply = ask("_dns.resolver.arpa.", rdtype)
    assert reply is not None and reply.rcode() == 0 and reply.answer == []


@pytest.mark.parametrize("name", ["resolver.arpa.", "x._dns.resolver.arpa.",
                                  "_dns.example.gov.", "dns.example.gov."])  # fmt: skip
def test_other_names_are_not_ours(name: str) -> None:
    assert ask(name) is None


def test_too_big_for_the_client_is_truncated() -> None:
    reply = ask("_dns.resolver.arpa.", limit=60)
    assert reply is not None and reply.flags & dns.flags.TC and reply.answer == []


def test_edns_clients_get_an_opt() -> None:
    reply = ask("_dns.resolver.arpa.", edns=True)
    assert reply is not None and reply.edns == 0 and len(reply.answer[0]) == 2


def test_dot_only() -> None:
    only = DesignatedResolver("dns.example.gov", [EncryptedEndpoint("dot", 853)])
    reply = ask("_dns.resolver.arpa.", designated=only)
    assert reply is not None
    (rdata,) = reply.answer[0]
    assert rdata.priority == 1 and dns.rdtypes.svcbbase.ParamKey.PORT not in rdata.params
