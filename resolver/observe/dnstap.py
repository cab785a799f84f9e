"""dnstap messages and Frame Streams frames, encoded by hand: bytes out, no I/O.

dnstap (dnstap.info) is a protobuf message per DNS message; its schema is small and fixed, so the
few fields we set are written here with protobuf's varint and length-delimited encodings rather
than by a generated module. Frame Streams wraps each message in a length-prefixed data frame;
control frames (READY, ACCEPT, START, STOP, FINISH) carry the content type
``protobuf:dnstap.Dnstap`` and make the bidirectional handshake a socket reader expects (a file
gets only START and STOP).

What we log: CLIENT_QUERY and CLIENT_RESPONSE for every client message, optionally
FORWARDER_QUERY and FORWARDER_RESPONSE for our exchanges with upstreams. The client address
follows the audit trail's privacy mode: raw, truncated to its /24 or /48 network, or (for
pseudonymise) left out of `query_address`, the pseudonym going into `extra` instead. A blocked
answer carries the decision in `extra` as one JSON object, so a SOC pipeline sees why without
joining the audit trail: ``{"action":"blocked","group":...,"policy":...,"list":...,
"rule":...,"reference":...,"answer":...}``.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from typing import Final

CONTENT_TYPE: Final = b"protobuf:dnstap.Dnstap"

# Frame Streams control frame types and the one field type we use.
ACCEPT: Final = 0x01
START: Final = 0x02
STOP: Final = 0x03
READY: Final = 0x04
FINISH: Final = 0x05
FIELD_CONTENT_TYPE: Final = 0x01
MAX_CONTROL: Final = 512

# dnstap.Message.Type
CLIENT_QUERY: Final = 5
CLIENT_RESPONSE: Final = 6
FORWARDER_QUERY: Final = 7
FORWARDER_RESPONSE: Final = 8
# dnstap.SocketFamily / SocketProtocol
INET: Final = 1
INET6: Final = 2
UDP: Final = 1
TCP: Final = 2
DOT: Final = 3
DOH: Final = 4
SOCKET_PROTOCOLS: Final = {"udp": UDP, "tcp": TCP, "dot": DOT, "doh": DOH}
"""A client transport's SocketProtocol: DNS over TLS and over HTTPS have their own values
(dnstap.proto since 2021), so a SOC can tell encrypted clients from plain TCP ones."""

_U32: Final = struct.Struct(">I")
_EXTRA_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _uint(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, 2) + _varint(len(value)) + value


def _fixed32(field: int, value: int) -> bytes:
    return _key(field, 5) + struct.pack("<I", value)


def _time(seconds_field: int, nanos_field: int, when: float) -> bytes:
    seconds = int(when)
    nanos = min(int((when - seconds) * 1e9), 999_999_999)
    return _uint(seconds_field, seconds) + _fixed32(nanos_field, nanos)


def address_bytes(text: str) -> tuple[int, bytes] | None:
    """(socket family, packed address) of an address; IPv4-mapped IPv6 as IPv4."""
    try:
        address = ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (INET if address.version == 4 else INET6), address.packed


def message(
    kind: int,
    *,
    protocol: int,
    query_time: float,
    query_message: bytes | None = None,
    response_time: float | None = None,
    response_message: bytes | None = None,
    query_address: str | None = None,
    response_address: str | None = None,
    response_port: int | None = None,
    family: int | None = None,
) -> bytes:
    """One dnstap `Message`: its type, transport (`protocol`, a SocketProtocol value),
    addresses, times and DNS message bytes.

    `family` is the socket family when no address says it (a pseudonymised client)."""
    parts = [_uint(1, kind)]
    addresses = [address_bytes(a) if a else None for a in (query_address, response_address)]
    known = next((a[0] for a in addresses if a is not None), family)
    if known is not None:
        parts.append(_uint(2, known))
    parts.append(_uint(3, protocol))
    if addresses[0] is not None:
        parts.append(_bytes(4, addresses[0][1]))
    if addresses[1] is not None:
        parts.append(_bytes(5, addresses[1][1]))
    if response_port is not None:
        parts.append(_uint(7, response_port))
    parts.append(_time(8, 9, query_time))
    if query_message is not None:
        parts.append(_bytes(10, query_message))
    if response_time is not None:
        parts.append(_time(12, 13, response_time))
    if response_message is not None:
        parts.append(_bytes(14, response_message))
    return b"".join(parts)


def dnstap(payload: bytes, identity: bytes, version: bytes, extra: bytes | None = None) -> bytes:
    """The `Dnstap` envelope of one `Message` (type MESSAGE)."""
    parts = []
    if identity:
        parts.append(_bytes(1, identity))
    if version:
        parts.append(_bytes(2, version))
    if extra:
        parts.append(_bytes(3, extra))
    parts.append(_bytes(14, payload))
    parts.append(_uint(15, 1))
    return b"".join(parts)


def extra_field(fields: dict[str, object]) -> bytes:
    """The `extra` bytes: one compact ASCII JSON object."""
    return _EXTRA_ENCODER.encode(fields).encode("ascii")


# --- Frame Streams ----------------------------------------------------------------------------


def data_frame(payload: bytes) -> bytes:
    return _U32.pack(len(payload)) + payload


def control_frame(kind: int, content_type: bool = True) -> bytes:
    """A control frame; READY, ACCEPT and START name our content type, STOP and FINISH not."""
    body = _U32.pack(kind)
    if content_type:
        body += _U32.pack(FIELD_CONTENT_TYPE) + _U32.pack(len(CONTENT_TYPE)) + CONTENT_TYPE
    return _U32.pack(0) + _U32.pack(len(body)) + body


class FrameError(Exception):
    """The reader said something Frame Streams does not allow here."""


def parse_control(body: bytes) -> tuple[int, list[bytes]]:
    """(control type, content types) of a control frame's body (after its length)."""
    if len(body) < 4 or len(body) > MAX_CONTROL:
        raise FrameError(f"control frame of {len(body)} bytes")
    (kind,) = _U32.unpack_from(body)
    types: list[bytes] = []
    pos = 4
    while pos < len(body):
        if pos + 8 > len(body):
            raise FrameError("truncated control field")
        field, length = _U32.unpack_from(body, pos)[0], _U32.unpack_from(body, pos + 4)[0]
        pos += 8
        if pos + length > len(body):
            raise FrameError("truncated control field")
        if field == FIELD_CONTENT_TYPE:
            types.append(body[pos : pos + length])
        pos += length
    return kind, types
