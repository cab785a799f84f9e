"""Extended DNS Errors: our OPT record, and reading an upstream's EDEs to judge its SERVFAIL."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest

from resolver.protocol.edns import EdeCode, ede_codes, opt_record, validation_failed


def ede_option(code: int, text: bytes = b"") -> bytes:
    return struct.pack(">HHH", 15, 2 + len(text), code) + text


@pytest.mark.parametrize(
    ("options", "codes"),
    [
        (b"", []),
        (ede_option(6, b"bogus"), [6]),
        (ede_option(15) + ede_option(17, b"ministry order 12"), [15, 17]),
    ],
)
def test_ede_codes(options: bytes, codes: list[int]) -> None:
    assert ede_codes(options) == codes


@pytest.mark.parametrize(
    ("rcode", "codes", "failed"),
    [
        (2, [], False),  # a plain SERVFAIL: the upstream could not resolve the name
        (2, [5], False),  # Indeterminate: not a verdict
        *((2, [code], True) for code in range(6, 13)),  # Bogus .. NSEC Missing
        (2, [13], False),  # Cached Error
        (2, [22, 6], True),
        (2, [22], False),
        (0, [6], False),  # only a SERVFAIL can be a validation failure
        (3, [9], False),
    ],
)
def test_validation_failed(rcode: int, codes: list[int], failed: bool) -> None:
    options = b"".join(ede_option(code) for code in codes)
    assert validation_failed(rcode, options) is failed


@pytest.mark.parametrize("dnssec_ok", [False, True])
def test_opt_record_parses_with_our_ede(dnssec_ok: bool) -> None:
    header = bytes.fromhex("1234 8180 0000 0000 0000 0001".replace(" ", ""))
    opt = opt_record(dnssec_ok, EdeCode.BLOCKED, b"blocked by list x")
    message = dns.message.from_wire(header + opt)
    assert message.payload == 1232
    assert bool(message.ednsflags & 0x8000) == dnssec_ok
    [option] = message.options
    assert isinstance(option, dns.edns.EDEOption)
    assert (option.code, option.text) == (EdeCode.BLOCKED, "blocked by list x")
