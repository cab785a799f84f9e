"""The HTTP/2 driver in process, against h2 as a client: several requests in one read answered
in one write, answers that wait for flow-control credit, POST bodies at and over the size limit,
answers from upstream, header blocks h2 itself would accept, and the idle clock on a fake loop."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h2.utilities
import hpack
import pytest

from resolver.pipeline import FORWARDED
from resolver.protocol import doh
from resolver.shell.doh import FieldCachingEncoder, Http2Connection

QUERY = bytes.fromhex("1234010000010000000000000377777706676f6f676c6503636f6d0000010001")


def reply_to(query: bytes, padding: int = 0) -> bytes:
    """An answer with one A record (TTL 300), `padding` bytes of junk after it."""
    header = query[:2] + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0)
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + b"\x7f\x00\x00\x01"
    return header + query[12:] + record + bytes(padding)


class FakeLoop:
    """Time that moves only when told, and the timers set on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []
        self.soon: list[Callable[[], None]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(when, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in [t for t in self.timers if t.when <= self.now and not t.cancelled]:
            self.timers.remove(timer)
            timer.callback()


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Pipeline:
    """Answers at once, or (`forward`) keeps the callback for the test to call."""

    def __init__(self, padding: int = 0, forward: bool = False) -> None:
        self.padding = padding
        self.forward = forward
        self.later: list[Callable[[bytes | None], None]] = []
        self.seen: list[bytes] = []

    def handle(self, packet: bytes, client: str, over_udp: bool, later: Any, channel: Any) -> Any:
        self.seen.append(packet)
        if self.forward:
            self.later.append(lambda reply: later(reply))
            return FORWARDED
        return reply_to(packet, self.padding)


class Wire:
    """One HTTP/2 connection: our server on a fake TLS transport, h2 as the client."""

    def __init__(self, pipeline: Pipeline, client_settings: dict[int, int] | None = None,
                 idle_timeout: float = 30.0) -> None:  # fmt: skip
        self.loop = FakeLoop()
        config = SimpleNamespace(max_streams=100, max_header_bytes=8192, idle_timeout=idle_timeout)
        self.statuses: list[int] = []
        self.events: list[str] = []
        owner = SimpleNamespace(
            config=config, loop=self.loop,
            listeners=SimpleNamespace(pipeline=pipeline, forwarded=0, internal_error=print),
            trusts=lambda address: False, device_of=lambda name: None,
            count=self.events.append, count_status=self.statuses.append,
        )  # fmt: skip
        self.writes: list[bytes] = []
        self.closed = False
        tls = SimpleNamespace(client="192.0.2.1", server_name=None, write=self.writes.append,
                              close=self.close)  # fmt: skip
        self.server = Http2Connection(owner, tls)  # type: ignore[arg-type]
        self.server.connection_made(tls)  # type: ignore[arg-type]
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.responses: dict[int, dict[str, Any]] = {}
        self.exchange()

    def close(self) -> None:
        self.closed = True

    def exchange(self) -> int:
        """Client bytes to the server in one read, the server's back; the server's writes."""
        writes = 0
        for _ in range(50):
            data = self.client.data_to_send()
            if not data:
                break
            before = len(self.writes)
            self.server.data_received(data)
            writes += len(self.writes) - before
            self.deliver()
        return writes

    def deliver(self) -> None:
        for event in self.client.receive_data(b"".join(self.writes)):
            if isinstance(event, h2.events.ResponseReceived):
                self.responses[event.stream_id] = {"headers": dict(event.headers), "body": b""}
            elif isinstance(event, h2.events.DataReceived):
                self.responses[event.stream_id]["body"] += event.data
                self.client.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)  # fmt: skip
            elif isinstance(event, h2.events.StreamEnded):
                self.responses[event.stream_id]["ended"] = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise AssertionError(f"the server ended the connection: {event}")
        self.writes.clear()

    def get(self, query: bytes = QUERY, path: str = "/dns-query") -> int:
        encoded = base64.urlsafe_b64encode(query).decode().rstrip("=")
        return self.request("GET", f"{path}?dns={encoded}")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: list[tuple[str, str]] = ()) -> int:  # type: ignore[assignment]
        stream_id = self.client.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https"), (":authority", "dns.test"),
                  (":path", path), *headers]  # fmt: skip
        self.client.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self._send_body(stream_id, body)
        return stream_id

    def _send_body(self, stream_id: int, body: bytes) -> None:
        while body:
            window = min(self.client.local_flow_control_window(stream_id),
                         self.client.max_outbound_frame_size)  # fmt: skip
            if window <= 0:
                self.exchange()
                window = min(self.client.local_flow_control_window(stream_id),
                             self.client.max_outbound_frame_size)  # fmt: skip
                assert window > 0, "the server never gave back flow-control credit"
            self.client.send_data(stream_id, body[:window])
            body = body[window:]
        self.client.end_stream(stream_id)


POST = [("content-type", doh.MEDIA_TYPE)]


def test_requests_of_one_read_are_answered_in_one_write() -> None:
    wire = Wire(Pipeline())
    queries = [QUERY[:1] + bytes([n]) + QUERY[2:] for n in range(8)]
    streams = [wire.get(query) for query in queries[:5]]
    streams += [wire.request("POST", "/dns-query", query, POST) for query in queries[5:]]
    assert wire.exchange() == 1
    for stream_id, query in zip(streams, queries, strict=True):
        response = wire.responses[stream_id]
        assert response["ended"]
        assert response["body"] == reply_to(query)
        assert response["headers"][b":status"] == b"200"
        assert response["headers"][b"content-type"] == doh.MEDIA_TYPE.encode()
        assert response["headers"][b"cache-control"] == b"max-age=300"
    assert wire.statuses == [200] * 8


def test_errors_and_answers_mixed_in_one_read() -> None:
    wire = Wire(Pipeline())
    ok = wire.get()
    missing = wire.request("GET", "/elsewhere")
    method = wire.request("PUT", "/dns-query", b"x", POST)
    media = wire.request("POST", "/dns-query", QUERY, [("content-type", "text/plain")])
    wire.exchange()
    streams = (ok, missing, method, media)
    status = {sid: wire.responses[sid]["headers"][b":status"] for sid in streams}
    assert status == {ok: b"200", missing: b"404", method: b"405", media: b"415"}
    assert wire.responses[method]["headers"][b"allow"] == b"GET, POST"
    assert all(wire.responses[sid].get("ended") for sid in status)


@pytest.mark.parametrize(("size", "status"), [(doh.MAX_MESSAGE, b"200"),
                                              (doh.MAX_MESSAGE + 1, b"413")])  # fmt: skip
def test_a_post_body_at_and_over_the_limit(size: int, status: bytes) -> None:
    """A body bigger than the default windows (64 KiB less one) gets through only if the server
    hands back credit as it reads; two in a row need the connection's window back too."""
    pipeline = Pipeline()
    wire = Wire(pipeline)
    for _ in range(2):
        body = QUERY + bytes(size - len(QUERY))
        stream_id = wire.request("POST", "/dns-query", body, POST)
        wire.exchange()
        assert wire.responses[stream_id]["headers"][b":status"] == status
        assert wire.responses[stream_id]["ended"]
    assert pipeline.seen == ([QUERY + bytes(size - len(QUERY))] * 2 if status == b"200" else [])


def test_an_answer_waits_for_the_clients_window() -> None:
    """A client that allows 1,000 bytes per stream gets a 20 KB answer in pieces, as it reads."""
    codes = h2.settings.SettingCodes
    wire = Wire(Pipeline(padding=20000), {codes.INITIAL_WINDOW_SIZE: 1000})
    stream_id = wire.get()
    wire.exchange()
    response = wire.responses[stream_id]
    assert response["ended"]
    assert response["body"] == reply_to(QUERY, 20000)
    assert response["headers"][b"content-length"] == str(len(response["body"])).encode()
    assert not wire.server.unsent


def test_answers_from_upstream_and_a_reset_stream() -> None:
    pipeline = Pipeline(forward=True)
    wire = Wire(pipeline)
    first, second = wire.get(), wire.get()
    assert wire.exchange() == 0 and not wire.responses
    wire.client.reset_stream(second)
    wire.exchange()
    for later in pipeline.later:
        later(reply_to(QUERY))
    wire.deliver()
    assert wire.responses[first]["body"] == reply_to(QUERY)
    assert second not in wire.responses  # the client gave up on it: nothing sent, no error


def test_a_malformed_request_is_a_protocol_error() -> None:
    """Inbound header checks stay on: an upper-case field name is malformed (RFC 9113 §8.2)."""
    wire = Wire(Pipeline())
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "https"),
                                    (":authority", "dns.test"), (":path", "/dns-query"),
                                    ("X-Upper", "1")])  # fmt: skip
    headers_frame = struct.pack("!I", len(block))[1:] + b"\x01\x05" + struct.pack("!I", 1)
    wire.server.data_received(headers_frame + block)
    events = wire.client.receive_data(b"".join(wire.writes))
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert wire.events == ["http_error"] and wire.statuses == [] and wire.closed


@pytest.mark.parametrize("status", sorted(doh.STATUS_TEXT))
def test_our_header_blocks_pass_h2s_own_checks(status: int) -> None:
    """The server does not re-check its own header blocks per response; these are all of them."""
    if status == 200:
        headers = doh.answer_headers(reply_to(QUERY))
    else:
        headers = doh.error_headers(doh.HttpError(status, "why"))[0]
    block = [(b":status", str(status).encode()), *headers]
    assert block == [(key.lower(), value.strip()) for key, value in block]
    flags = h2.utilities.HeaderValidationFlags(
        is_client=False, is_trailer=False, is_response_header=True, is_push_promise=False
    )
    assert list(h2.utilities.validate_outbound_headers(block, flags)) == block


def test_the_field_caching_encoder_decodes_as_hpack() -> None:
    encoder, decoder = FieldCachingEncoder(), hpack.Decoder()
    blocks = [[(b":status", b"200"), (b"content-type", b"application/dns-message"),
               (b"content-length", str(n).encode()), (b"cache-control", b"max-age=300")]
              for n in (48, 48, 512, 48)]  # fmt: skip
    encoded = [encoder.encode(block) for block in blocks]
    assert encoded[0] == encoded[1] == encoded[3]
    for block, data in zip(blocks, encoded, strict=True):
        assert [tuple(field) for field in decoder.decode(data, raw=True)] == block
    encoder.header_table_size = 256  # the client asked for a smaller table: said first
    resized = encoder.encode(blocks[0])
    assert resized != encoded[0] and resized.endswith(encoded[0])
    assert [tuple(field) for field in decoder.decode(resized, raw=True)] == blocks[0]
    assert encoder.encode(blocks[0]) == encoded[0]


def test_the_idle_clock_runs_from_the_last_answer() -> None:
    """One timer, re-set only when it fires early: a connection in use is never cut, an idle
    one is after `idle_timeout` from its last answer."""
    wire = Wire(Pipeline(), idle_timeout=10.0)
    for _ in range(5):
        wire.loop.advance(6.0)
        wire.get()
        wire.exchange()
        assert not wire.closed
    assert len([t for t in wire.loop.timers if not t.cancelled]) == 1
    wire.loop.advance(9.0)
    assert not wire.closed
    wire.loop.advance(1.5)
    assert wire.closed and wire.events == ["idle_closed"]


def test_a_request_waiting_on_upstream_keeps_the_connection() -> None:
    pipeline = Pipeline(forward=True)
    wire = Wire(pipeline, idle_timeout=10.0)
    stream_id = wire.get()
    wire.exchange()
    wire.loop.advance(25.0)
    assert not wire.closed
    pipeline.later[0](reply_to(QUERY))
    wire.deliver()
    assert wire.responses[stream_id]["ended"]
    wire.loop.advance(9.0)
    assert not wire.closed
    wire.loop.advance(1.5)
    assert wire.closed


def test_h2_rejects_what_the_server_would_send_unchecked() -> None:
    """Guard for the test above it: h2's checks do catch a bad block, so passing them means
    something (an upper-case name here)."""
    flags = h2.utilities.HeaderValidationFlags(
        is_client=False, is_trailer=False, is_response_header=True, is_push_promise=False
    )
    with pytest.raises(h2.exceptions.ProtocolError):
        block = [(b":status", b"200"), (b"connection", b"close")]
        list(h2.utilities.validate_outbound_headers(block, flags))
