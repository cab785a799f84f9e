"""dnstap messages and Frame Streams frames (`resolver.observe.dnstap`), decoded by the
independent `dnstap-pb` protobuf bindings."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import dns.message
import pytest

from resolver.config import DnstapConfig
from resolver.observe import dnstap
from resolver.observe.outputs import DnstapOutput, Privacy
from resolver.protocol.wire import parse_query

dnstap_pb = pytest.importorskip("dnstap_pb")


def decode(data: bytes) -> object:
    message = dnstap_pb.Dnstap()
    message.ParseFromString(data)
    return message


@pytest.mark.parametrize(
    ("address", "family", "packed"),
    [
        ("192.0.2.7", 1, bytes([192, 0, 2, 7])),
        ("::ffff:192.0.2.7", 1, bytes([192, 0, 2, 7])),  # IPv4-mapped: as IPv4
        ("2001:db8::1", 2, bytes.fromhex("20010db8000000000000000000000001")),
        ("192.0.2.0/24", 1, bytes([192, 0, 2, 0])),  # a truncated client
    ],
)
def test_a_client_query_carries_its_address_time_and_bytes(
    address: str, family: int, packed: bytes
) -> None:
    body = dnstap.message(dnstap.CLIENT_QUERY, protocol=dnstap.UDP, query_time=1_700_000_000.25,
                          query_message=b"\x12\x34query", query_address=address)  # fmt: skip
    decoded: object = decode(dnstap.dnstap(body, b"gw1", b"dnswarden 0.1.0"))
    assert decoded.type == 1  # type: ignore[attr-defined]
    assert (decoded.identity, decoded.version) == (b"gw1", b"dnswarden 0.1.0")  # type: ignore[attr-defined]
    m = decoded.message  # type: ignore[attr-defined]
    assert (m.type, m.socket_family, m.socket_protocol) == (5, family, 1)
    assert bytes(m.query_address) == packed
    assert (m.query_time_sec, m.query_time_nsec) == (1_700_000_000, 250_000_000)
    assert bytes(m.query_message) == b"\x12\x34query"
    assert not m.HasField("response_message")
    assert not decoded.HasField("extra")  # type: ignore[attr-defined]


def test_a_forwarder_response_names_the_upstream_and_a_block_rides_in_extra() -> None:
    body = dnstap.message(dnstap.FORWARDER_RESPONSE, protocol=dnstap.TCP, query_time=10.5,
                          response_time=10.75, response_message=b"reply",
                          response_address="198.51.100.53", response_port=853)  # fmt: skip
    extra = dnstap.extra_field({"action": "blocked", "list": "tiktok", "policy": None})
    decoded: object = decode(dnstap.dnstap(body, b"", b"", extra))
    m = decoded.message  # type: ignore[attr-defined]
    assert (m.type, m.socket_protocol, m.socket_family) == (8, 2, 1)
    assert (bytes(m.response_address), m.response_port) == (bytes([198, 51, 100, 53]), 853)
    assert (m.response_time_sec, m.response_time_nsec) == (10, 750_000_000)
    assert bytes(m.response_message) == b"reply"
    assert json.loads(decoded.extra) == {"action": "blocked", "list": "tiktok", "policy": None}  # type: ignore[attr-defined]
    assert not decoded.HasField("identity")  # type: ignore[attr-defined]


def test_a_pseudonymised_client_has_a_family_but_no_address() -> None:
    body = dnstap.message(dnstap.CLIENT_RESPONSE, protocol=dnstap.UDP, query_time=1.0,
                          response_time=2.0, response_message=b"r",
                          family=dnstap.INET6)  # fmt: skip
    m = decode(dnstap.dnstap(body, b"", b"")).message  # type: ignore[attr-defined]
    assert m.socket_family == 2 and not m.HasField("query_address")


def test_control_frames_round_trip_and_data_frames_are_length_prefixed() -> None:
    frame = dnstap.control_frame(dnstap.READY)
    escape, length = struct.unpack(">II", frame[:8])
    assert escape == 0 and length == len(frame) - 8
    assert dnstap.parse_control(frame[8:]) == (dnstap.READY, [dnstap.CONTENT_TYPE])
    stop = dnstap.control_frame(dnstap.STOP, content_type=False)
    assert dnstap.parse_control(stop[8:]) == (dnstap.STOP, [])
    assert dnstap.data_frame(b"abc") == b"\x00\x00\x00\x03abc"


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00\x09ab",
                                  b"\x00" * 600])  # fmt: skip
def test_a_broken_control_frame_is_refused(body: bytes) -> None:
    with pytest.raises(dnstap.FrameError):
        dnstap.parse_control(body)


@pytest.mark.parametrize(
    ("transport", "protocol"),
    [("udp", "UDP"), ("tcp", "TCP"), ("dot", "DOT"), ("doh", "DOH")],
)
def test_each_client_transport_has_its_socket_protocol(
    tmp_path: Path, transport: str, protocol: str
) -> None:
    output = DnstapOutput(DnstapConfig(file=str(tmp_path / "t.fstrm")), Privacy("raw", None))
    try:
        item = (dnstap.CLIENT_QUERY, 1.0, b"q", "192.0.2.1", transport, None, None)
        (frame,) = output._encode(item)
    finally:
        output.close()
    m = decode(frame).message  # type: ignore[attr-defined]
    assert dnstap_pb.SocketProtocol.Name(m.socket_protocol) == protocol


@pytest.mark.parametrize(("upstream", "protocol"), [("udp", "UDP"), ("tcp", "TCP"), ("tls", "DOT")])
def test_forwarder_messages_name_the_upstream_transport(
    tmp_path: Path, upstream: str, protocol: str
) -> None:
    output = DnstapOutput(DnstapConfig(file=str(tmp_path / "t.fstrm")), Privacy("raw", None))
    server = SimpleNamespace(protocol=upstream, host="198.51.100.53", port=853)
    question = parse_query(dns.message.make_query("a.example.", "A").to_wire())
    try:
        frames = output._encode(("forwarder", 1.0, question, b"\x12\x34reply", server, 2.0))
    finally:
        output.close()
    assert [
        dnstap_pb.SocketProtocol.Name(decode(f).message.socket_protocol)  # type: ignore[attr-defined]
        for f in frames
    ] == [protocol, protocol]
