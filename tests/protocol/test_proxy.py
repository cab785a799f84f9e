"""PROXY v2 headers and `Forwarded`: strict, bounded, a bad claim is no claim."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from resolver.protocol.proxy import (
    PROXY_V2_SIGNATURE,
    ProxyHeaderError,
    forwarded_for,
    proxy_v2,
)


def header(command: int, family: int, body: bytes) -> bytes:
    return PROXY_V2_SIGNATURE + struct.pack(">BBH", command, family, len(body)) + body


V4 = header(0x21, 0x11, ipaddress.IPv4Address("198.51.100.7").packed
            + ipaddress.IPv4Address("192.0.2.1").packed
            + struct.pack(">HH", 40000, 853))  # fmt: skip
V6 = header(0x21, 0x21, ipaddress.IPv6Address("2001:db8::7").packed
            + ipaddress.IPv6Address("2001:db8::1").packed + struct.pack(">HH", 1, 853))  # fmt: skip
LOCAL = header(0x20, 0x00, b"")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (V4 + b"\x16\x03\x01", (len(V4), "198.51.100.7")),
        (V6, (len(V6), "2001:db8::7")),
        (LOCAL + b"rest", (len(LOCAL), None)),
        (V4[:10], None),  # more bytes needed
        (V4[:-1], None),
        (header(0x21, 0x11, bytes(12) + b"\x03\x00\x02ab"), (16 + 17, "0.0.0.0")),  # TLVs
    ],
)
def test_proxy_v2(data: bytes, expected: tuple[int, str | None] | None) -> None:
    assert proxy_v2(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdef",  # a TLS ClientHello
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",  # version 1 is not accepted
        header(0x22, 0x11, bytes(12)),
        header(0x21, 0x31, bytes(216)),  # AF_UNIX
        header(0x21, 0x11, bytes(4)),  # too short for its family
        PROXY_V2_SIGNATURE + struct.pack(">BBH", 0x21, 0x11, 60000),
        b"\x16",
    ],
)
def test_bad_proxy_headers(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        proxy_v2(data)


@pytest.mark.parametrize(
    ("values", "client"),
    [
        ([b"for=192.0.2.60;proto=https;by=203.0.113.43"], "192.0.2.60"),
        ([b'for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        ([b"for=192.0.2.43:47011"], "192.0.2.43"),
        ([b"for=198.51.100.1, for=192.0.2.61"], "192.0.2.61"),  # the nearest proxy's view
        ([b"for=198.51.100.1", b"For=192.0.2.62"], "192.0.2.62"),
        ([b"for=unknown"], None),
        ([b"for=_hidden"], None),
        ([b"by=203.0.113.43"], None),
        ([], None),
        ([b"for=\"[2001:db8::1\""], None),
        ([b"for=not-an-ip"], None),
    ],
)
def test_forwarded_for(values: list[bytes], client: str | None) -> None:
    assert forwarded_for(values) == client
