"""Discovery of Designated Resolvers (RFC 9462): our own encrypted endpoints as SVCB records.

A client that knows only our address asks `_dns.resolver.arpa` SVCB; one that knows our name asks
`_dns.<name>` SVCB. Both get one SVCB record per encrypted listener kind (RFC 9461): DoH with
`alpn=h2,http/1.1` and `dohpath=/dns-query{?dns}`, DoT with `alpn=dot`, the port when it is not
the protocol's default, and address hints. The records are built once per state build and an
answer is the client's header and question plus these bytes: nothing is encoded per query.

Any other type asked of those names gets NODATA: the names are ours, so they are never forwarded.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from resolver.protocol.names import from_text
from resolver.protocol.wire import (
    CD,
    CLASS_IN,
    HEADER,
    HEADER_LEN,
    NOERROR,
    QR,
    RA,
    RD,
    RR_FIXED,
    TC,
    Query,
)

TYPE_SVCB: Final = 64
DDR_TTL: Final = 300
"""How long clients may keep our designation; short, so a changed port or address spreads."""
RESOLVER_ARPA: Final = "_dns.resolver.arpa"
DOH_PATH_TEMPLATE: Final = "/dns-query{?dns}"
DOH_ALPN: Final = ("h2", "http/1.1")
DOT_ALPN: Final = ("dot",)
DEFAULT_PORTS: Final = {"doh": 443, "dot": 853}

# SvcParamKeys (RFC 9460 §14.3.2, RFC 9461 §5).
KEY_ALPN: Final = 1
KEY_PORT: Final = 3
KEY_IPV4HINT: Final = 4
KEY_IPV6HINT: Final = 6
KEY_DOHPATH: Final = 7

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class EncryptedEndpoint:
    """One encrypted service of ours as a client should find it."""

    transport: str  # "doh" or "dot"
    port: int
    hints: tuple[Address, ...] = ()


def _param(key: int, value: bytes) -> bytes:
    return struct.pack(">HH", key, len(value)) + value


def svcb_rdata(priority: int, target: bytes, endpoint: EncryptedEndpoint) -> bytes:
    """The RDATA of one ServiceMode SVCB record, its parameters in key order (RFC 9460 §2.2)."""
    alpn = DOH_ALPN if endpoint.transport == "doh" else DOT_ALPN
    params = [_param(KEY_ALPN, b"".join(bytes((len(a),)) + a.encode() for a in alpn))]
    if endpoint.port != DEFAULT_PORTS[endpoint.transport]:
        params.append(_param(KEY_PORT, struct.pack(">H", endpoint.port)))
    v4 = [a.packed for a in endpoint.hints if a.version == 4]
    v6 = [a.packed for a in endpoint.hints if a.version == 6]
    if v4:
        params.append(_param(KEY_IPV4HINT, b"".join(v4)))
    if v6:
        params.append(_param(KEY_IPV6HINT, b"".join(v6)))
    if endpoint.transport == "doh":
        params.append(_param(KEY_DOHPATH, DOH_PATH_TEMPLATE.encode()))
    return struct.pack(">H", priority) + target + b"".join(params)


class DesignatedResolver:
    """The SVCB answer naming our encrypted endpoints, for `_dns.resolver.arpa` and
    `_dns.<server_name>`, prepared once."""

    def __init__(
        self, server_name: str, endpoints: Iterable[EncryptedEndpoint], ttl: int = DDR_TTL
    ) -> None:
        target = from_text(server_name)
        self.owners = frozenset((from_text(RESOLVER_ARPA), from_text("_dns." + server_name)))
        # The owner is the question's name (a compression pointer to offset 12).
        records = []
        for priority, endpoint in enumerate(endpoints, start=1):
            rdata = svcb_rdata(priority, target, endpoint)
            fixed = RR_FIXED.pack(TYPE_SVCB, CLASS_IN, ttl, len(rdata))
            records.append(b"\xc0\x0c" + fixed + rdata)
        self.count = len(records)
        self.records = b"".join(records)

    def answer(self, query: Query, opt: bytes, limit: int) -> bytes | None:
        """Our answer when `query` asks one of our DDR names, else None (not ours to answer).
        SVCB gets the records, every other type NODATA; TC=1 when they do not fit `limit`."""
        if query.qname not in self.owners:
            return None
        packet = query.packet
        flags = QR | RA | (query.flags & (RD | CD)) | NOERROR
        question = packet[HEADER_LEN : query.question_end]
        count, records = 0, b""
        if query.qtype == TYPE_SVCB and query.qclass == CLASS_IN:
            count, records = self.count, self.records
        size = HEADER_LEN + len(question) + len(records) + len(opt)
        if size > limit:
            flags |= TC
            count, records = 0, b""
        header = HEADER.pack(
            (packet[0] << 8) | packet[1], flags, 1, count, 0, 1 if opt else 0
        )
        return b"".join((header, question, records, opt))
