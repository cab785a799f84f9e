"""EDNS(0) on our side of each hop: the OPT record we attach to answers, with Extended DNS Errors.

OPT is hop-by-hop (RFC 6891): of what a client or an upstream put in theirs, only an upstream's
Extended DNS Errors are passed on (they are part of its answer, RFC 8914 3). Answers carry an OPT
only when the query had one, and then always our own: our buffer size, the client's DO bit, at
most one Extended DNS Error of ours saying why we answered as we did, and the upstream's beside
it (`wire.client_reply`).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

from resolver.protocol.wire import EDNS_PAYLOAD, OPTION_EDE, SERVFAIL, TYPE_OPT

__all__ = ["OPTION_EDE", "EdeCode", "ede_codes", "opt_record", "validation_failed"]

_OPT_FIXED: Final = struct.Struct(">BHHBBHH")
VALIDATION_EDE: Final = frozenset(range(6, 13))
"""DNSSEC Bogus, Signature Expired, Signature Not Yet Valid, DNSKEY Missing, RRSIGs Missing,
No Zone Key Bit Set, NSEC Missing: the upstream validated the answer and it failed."""


class EdeCode(IntEnum):
    """The RFC 8914 info-codes dnswarden sends."""

    STALE_ANSWER = 3
    FORGED_ANSWER = 4
    NOT_READY = 14
    BLOCKED = 15
    CENSORED = 16
    PROHIBITED = 18
    STALE_NXDOMAIN_ANSWER = 19
    NO_REACHABLE_AUTHORITY = 22
    NETWORK_ERROR = 23


def opt_record(
    dnssec_ok: bool, ede: int | None = None, text: bytes = b"", ext_rcode: int = 0
) -> bytes:
    """Our OPT pseudo-record; `ext_rcode` is the upper 8 bits of a 12-bit rcode (BADVERS = 1)."""
    option = b""
    if ede is not None:
        option = struct.pack(">HHH", OPTION_EDE, 2 + len(text), ede) + text
    return (
        _OPT_FIXED.pack(
            0, TYPE_OPT, EDNS_PAYLOAD, ext_rcode, 0, 0x8000 if dnssec_ok else 0, len(option)
        )
        + option
    )


def ede_codes(options: bytes) -> list[int]:
    """The info-codes of EDE options as `UpstreamReply.ede` keeps them (well formed, EDE only)."""
    codes: list[int] = []
    pos = 0
    while pos + 6 <= len(options):
        codes.append((options[pos + 4] << 8) | options[pos + 5])
        pos += 4 + ((options[pos + 2] << 8) | options[pos + 3])
    return codes


def validation_failed(rcode: int, options: bytes) -> bool:
    """Whether a reply is a SERVFAIL that says DNSSEC validation failed (EDE 6-12): the upstream's
    verdict on the name, an answer rather than the upstream failing, and asking another
    upstream instead would only look for one that does not validate."""
    return rcode == SERVFAIL and any(code in VALIDATION_EDE for code in ede_codes(options))
