"""EDNS(0) on our side of each hop: the OPT record we attach to answers, with Extended DNS Errors.

OPT is hop-by-hop (RFC 6891): nothing a client or an upstream put in theirs is passed on. Answers
carry an OPT only when the query had one, and then always our own: our buffer size, the client's DO
bit, and at most one Extended DNS Error (RFC 8914) saying why we answered as we did.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

from resolver.protocol.wire import EDNS_PAYLOAD, TYPE_OPT

OPTION_EDE: Final = 15
_OPT_FIXED: Final = struct.Struct(">BHHBBHH")


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
