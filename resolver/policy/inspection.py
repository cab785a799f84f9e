"""Response inspection: what a forwarded answer reveals that its question did not.

A banned app can hide behind a name nobody listed: `cdn.innocent.example CNAME x.tiktokv.com`
("CNAME cloaking"). Policy judged only the question, so the answer is checked too, in two steps:

1. `Inspector.extract`, once per upstream reply: walk the answer section, collect every owner name
   and CNAME/DNAME target other than the question name, and apply the client-independent rules
   (response-IP networks, rebinding protection). The result, `Findings`, is None for the common
   answer that cannot match anything (all owners are the question, no rules apply), so a cached
   answer costs nothing more on a hit.
2. `verdict`, per client (forwarded answers and cache hits alike): each collected name goes
   through the client's policy; the first one blocked blocks the answer. The block is a
   `policy.engine.Decision`, like a block of the question, with `cname` set to the answer name.

The work is bounded whatever the upstream sends: at most `MAX_RECORDS` answer records are looked
at and at most `MAX_NAMES` names collected, each decompressed with `wire.read_name`'s hop cap, so a
hostile 64 KB reply with thousands of records costs a few hundred record headers, no more. An
answer longer than that is judged by its first `MAX_RECORDS` records: CNAME chains come first.

Pure: values in, values out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from resolver.config import BlockingConfig, InspectionConfig
from resolver.policy.engine import Action, Decision, PolicyEngine
from resolver.protocol.names import from_text
from resolver.protocol.wire import (
    CLASS_IN,
    HEADER_LEN,
    RR_FIXED,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    FormError,
    read_name,
    skip_name,
)

TYPE_DNAME: Final = 39
MAX_RECORDS: Final = 128
MAX_NAMES: Final = 16
MAX_ADDRESSES: Final = 16
RESPONSE_IP: Final = "response-ip"
REBINDING: Final = "rebinding"
IP_REFERENCES: Final = {RESPONSE_IP: "inspection.response_ip", REBINDING: "inspection.rebinding"}
"""What an address block cites: the operator's own configuration key."""

_QNAME_POINTER: Final = bytes((0xC0, HEADER_LEN))

PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
"""What rebinding protection treats as internal: RFC 1918, loopback, link-local, CGNAT, ULA and
the unspecified addresses. Written out rather than `is_private`, which also covers the
documentation ranges (192.0.2.0/24...) that public test zones use."""

ALWAYS_INTERNAL: Final = ("localhost",)
"""Names that resolve to loopback by definition (RFC 6761), never a rebinding attack."""


@dataclass(frozen=True, slots=True)
class Findings:
    """What one answer holds for inspection: `names` to check against each client's policy
    (lowercase wire form) and `ip_block`, set when a client-independent rule matched."""

    names: tuple[bytes, ...] = ()
    ip_block: tuple[str, str] | None = None  # (RESPONSE_IP or REBINDING, network or address)
    # The A/AAAA addresses of the answer, as (version, value), when a list has rpz-ip rules.
    addresses: tuple[tuple[int, int], ...] = ()


class _Networks:
    """Membership in a set of networks: one dict lookup per distinct prefix length of the
    address's version, whatever the number of networks."""

    __slots__ = ("_v4", "_v6", "texts")

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for net in networks:
            bits = net.max_prefixlen - net.prefixlen
            by_length.setdefault((net.version, bits), {})[int(net.network_address) >> bits] = str(
                net
            )
        ordered = sorted(by_length.items())
        # Per version, (bits, table) pairs: an address is tried only against its own version.
        self._v4 = tuple((bits, table) for (version, bits), table in ordered if version == 4)
        self._v6 = tuple((bits, table) for (version, bits), table in ordered if version == 6)
        self.texts = tuple(t for _, table in ordered for t in table.values())

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def match(self, version: int, value: int) -> str | None:
        for bits, table in self._v4 if version == 4 else self._v6:
            found = table.get(value >> bits)
            if found is not None:
                return found
        return None


_PRIVATE = _Networks(PRIVATE_NETWORKS)


class Inspector:
    """The inspection rules of one configuration, compiled once."""

    __slots__ = ("_addresses", "_allow", "_ips", "_rebinding", "active", "cname")

    def __init__(self, config: InspectionConfig, addresses: bool = False) -> None:
        """`addresses`: collect every answer's addresses for the lists' rpz-ip rules, which
        are judged per client (`verdict`), as the lists a client gets depend on its group."""
        self.cname = config.cname
        self._ips = _Networks(config.response_ip)
        self._rebinding = config.rebinding
        self._addresses = addresses
        self._allow = frozenset(from_text(z) for z in (*ALWAYS_INTERNAL, *config.rebinding_allow))
        self.active = self.cname or bool(self._ips) or self._rebinding or addresses

    def _exempt(self, qname: bytes) -> bool:
        """True when `qname` is in (or below) a rebinding_allow zone."""
        allow = self._allow
        pos = 0
        end = len(qname)
        while pos < end and qname[pos]:
            if qname[pos:] in allow:
                return True
            pos += 1 + qname[pos]
        return False

    def extract(self, raw: bytes, question_end: int, qname: bytes) -> Findings | None:
        """Findings for the reply `raw` to a question `qname` ending at `question_end`, or None
        when nothing in it could block. `raw` already parsed as an `UpstreamReply`."""
        if not self.active or len(raw) < HEADER_LEN:
            return None
        ancount = (raw[6] << 8) | raw[7]
        if not ancount:
            return None
        cname = self.cname
        ips = self._ips if self._ips else None
        # Whether `qname` is exempt (`_exempt`, a walk of its labels) is asked only of an answer
        # that holds a private address: None until then.
        check_private = self._rebinding
        exempt: bool | None = None
        collect = self._addresses
        check_ips = ips is not None or check_private or collect
        names: list[bytes] = []
        addresses: list[tuple[int, int]] = []
        ip_block: tuple[str, str] | None = None
        size = len(raw)
        pos = question_end
        try:
            for _ in range(min(ancount, MAX_RECORDS)):
                owner = pos
                if pos < size and raw[pos] >= 0xC0:  # most owners are one pointer: no call
                    pos += 2
                else:
                    pos = skip_name(raw, pos)
                if pos + 10 > size:
                    break
                rtype, rclass, _, rdlength = RR_FIXED.unpack_from(raw, pos)
                rdata = pos + 10
                pos = rdata + rdlength
                if pos > size:
                    break
                if cname and len(names) < MAX_NAMES:
                    if raw[owner : owner + 2] != _QNAME_POINTER:
                        name = read_name(raw, owner)[0]
                        if name != qname and name not in names:
                            names.append(name)
                    if rtype in (TYPE_CNAME, TYPE_DNAME):
                        target = read_name(raw, rdata)[0]
                        if target != qname and target not in names and len(names) < MAX_NAMES:
                            names.append(target)
                if not check_ips or ip_block is not None or rclass != CLASS_IN:
                    continue
                if rtype == TYPE_A and rdlength == 4:
                    version, value = 4, int.from_bytes(raw[rdata:pos], "big")
                elif rtype == TYPE_AAAA and rdlength == 16:
                    version, value = 6, int.from_bytes(raw[rdata:pos], "big")
                    if value >> 32 == 0xFFFF:  # IPv4-mapped: judge the IPv4 address
                        version, value = 4, value & 0xFFFFFFFF
                else:
                    continue
                if collect and len(addresses) < MAX_ADDRESSES:
                    addresses.append((version, value))
                network = ips.match(version, value) if ips is not None else None
                if network is not None:
                    ip_block = (RESPONSE_IP, network)
                elif check_private and _PRIVATE.match(version, value) is not None:
                    if exempt is None:
                        exempt = self._exempt(qname)
                    if exempt:
                        check_private = False
                        check_ips = ips is not None or collect
                        continue
                    address = (
                        ipaddress.IPv4Address(value)
                        if version == 4
                        else ipaddress.IPv6Address(value)
                    )
                    ip_block = (REBINDING, str(address))
        except FormError:
            pass  # judged on what parsed; the reply's layout was already checked upstream
        if not names and ip_block is None and not addresses:
            return None
        return Findings(tuple(names), ip_block, tuple(addresses))


def verdict(
    findings: Findings,
    client: str,
    qtype: int,
    policy: PolicyEngine,
    blocking: BlockingConfig,
    now: float,
    device: str = "",
    qname: bytes = b"",
) -> Decision | None:
    """The block `findings` impose on `client`'s answer, or None to let it through.

    A blocked answer is replaced by the blocked answer to the question, whose negative SOA sits at
    the question name itself: `zone_offset` is 0 whatever the matched answer name was. The
    answer's names come first, then its addresses against the client's lists' rpz-ip rules
    (RPZ puts QNAME triggers before IP triggers)."""
    if findings.ip_block is not None:
        kind, rule = findings.ip_block
        group = policy.group_of(client, device)
        cause = f"blocked by {kind} rule {rule}"
        return Decision(
            Action.BLOCK,
            group.name if group is not None else "",
            None,
            kind,
            rule,
            IP_REFERENCES[kind],
            blocking.answer.value,
            blocking.ttl,
            reason=cause,
            cause=cause,
        )
    for name in findings.names:
        decision = policy.decide(client, name, qtype, now, device)
        if decision.action is Action.BLOCK:
            return replace(decision, zone_offset=0, cname=name)
    if findings.addresses:
        return policy.response_block(client, qname, findings.addresses, now, device)
    return None
