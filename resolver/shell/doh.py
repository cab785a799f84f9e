"""DNS over HTTPS (RFC 8484): HTTP/2 through `h2` and HTTP/1.1 through `h11`, both sans-IO
libraries driven here on the decrypted stream; `resolver.protocol.doh` judges each request.

HTTP/2 streams are answered concurrently and out of order, at most `encrypted.max_streams` at a
time (the SETTINGS we announce, enforced by h2), with the header list capped at
`encrypted.max_header_bytes`; responses wait for flow-control credit when a client's window is
full. HTTP/1.1 requests are answered one after another (keep-alive, pipelined requests queued),
with the request head capped the same way. A connection with no request in flight is closed after
`encrypted.idle_timeout`, counted from the last complete request or answer, so trickled bytes buy
no time.

The client is the TLS peer (or what its trusted proxy's PROXY header said); a `Forwarded` header
names it only when that peer is one of `encrypted.trusted_proxies`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11
import hpack

from resolver.pipeline import FORWARDED, Channel
from resolver.protocol import doh
from resolver.protocol.proxy import forwarded_for

if TYPE_CHECKING:
    from resolver.shell.encrypted import EncryptedListener
    from resolver.shell.tls import TlsConnection

Headers = list[tuple[bytes, bytes]]
DISCARD_LIMIT = 1 << 20
"""Bytes of a refused HTTP/1.1 request's body read and dropped before the connection is cut:
closing at once would make the client's kernel discard our answer while it is still sending."""
Respond = Callable[[int, Headers, bytes], None]
_STATUS: Final = {status: str(status).encode() for status in doh.STATUS_TEXT}


class _Exchange(asyncio.Protocol):
    """What both HTTP versions share: who asks, the query through the pipeline, the idle timer,
    the status counters."""

    def __init__(self, owner: EncryptedListener, tls: TlsConnection) -> None:
        self.owner = owner
        self.tls = tls
        self.device = owner.device_of(tls.server_name)
        self.channel = Channel("doh", self.device or "")
        self.waiting = 0  # requests handed to the pipeline and not answered yet
        self.closed = False
        self.last_active = 0.0  # when the last request completed or the last answer went out
        self._timer: asyncio.TimerHandle | None = None

    def client_of(self, headers: Headers) -> str:
        peer = self.tls.client
        if not self.owner.trusts(peer):
            return peer
        named = forwarded_for(value for key, value in headers if key.lower() == b"forwarded")
        return named if named is not None else peer

    def ask(self, message: bytes, headers: Headers, device: str | None, respond: Respond) -> None:
        """Send one DNS message down the pipeline; `respond` gets the HTTP answer, now or later."""
        listeners = self.owner.listeners
        channel = self.channel if device is None else Channel("doh", device)
        client = self.client_of(headers)

        def later(reply: bytes | None) -> None:
            listeners.forwarded -= 1
            self.answer(reply, respond)

        self.waiting += 1
        try:
            outcome = listeners.pipeline.handle(message, client, False, later, channel)
        except Exception as error:
            listeners.internal_error(error)
            outcome = None
        if outcome is FORWARDED:
            listeners.forwarded += 1
        else:
            self.answer(outcome, respond)  # type: ignore[arg-type]

    def answer(self, reply: bytes | None, respond: Respond) -> None:
        self.waiting -= 1
        if not self.closed:
            if reply is None:
                self.refuse(doh.HttpError(503, "no answer"), respond)
            else:
                self.owner.count_status(200)
                respond(200, doh.answer_headers(reply), reply)
        self.rearm()

    def refuse(self, error: doh.HttpError, respond: Respond) -> None:
        self.owner.count_status(error.status)
        headers, body = doh.error_headers(error)
        respond(error.status, headers, body)

    def rearm(self) -> None:
        """Restart the idle clock. The timer is not cancelled and re-made per request (that cost
        more than the rest of a cached answer): it is made when there is none, and when it fires
        early it sets itself for the new deadline."""
        loop = self.owner.loop
        self.last_active = loop.time()
        if self._timer is None and not self.closed and not self.waiting:
            self._timer = loop.call_at(self.last_active + self.owner.config.idle_timeout,
                                       self._idle)  # fmt: skip

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        if self.closed or self.waiting:
            return  # the answer, when it goes out, starts the clock again
        due = self.last_active + self.owner.config.idle_timeout
        if self.owner.loop.time() < due:
            self._timer = self.owner.loop.call_at(due, self._idle)
            return
        self.owner.count("idle_closed")
        self.close()

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        self.tls.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()


class _Stream:
    """One HTTP/2 request being received."""

    __slots__ = ("body", "headers", "request")

    def __init__(self, request: doh.Request, headers: Headers) -> None:
        self.request = request
        self.headers = headers
        self.body = bytearray()


H2_CONFIG: Final = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)
"""What each HTTP/2 connection checks. A client's header block is validated as RFC 9113 asks
(a malformed one resets its stream); merging its cookie fields is skipped, no cookie is ever read.
Our own header blocks are not re-checked per response: they come only from `resolver.protocol.doh`
(lower-case names, no connection-specific fields; a test holds them to h2's rules), and those
checks were a fifth of the cost of an answer."""


class FieldCachingEncoder(hpack.Encoder):
    """An HPACK encoder whose output for a header field never depends on the fields before it:
    each is sent as a static-table index or a literal that is not indexed, so its bytes are
    computed once and reused. Encoding the three or four fields of every answer afresh was a
    tenth of what an answer cost; the price is a few bytes more per response on the wire
    (`content-type` spelled out rather than indexed from the dynamic table)."""

    MAX_FIELDS: Final = 4096

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        parts = []
        if self.header_table.resized:  # the client changed our table size: say so first
            parts.append(self._encode_table_size_change())
            self.header_table.resized = False
        fields = self.fields
        for field in headers:
            encoded = fields.get(field)
            if encoded is None:
                if len(fields) >= self.MAX_FIELDS:
                    fields.clear()
                encoded = super().encode([hpack.NeverIndexedHeaderTuple(*field)], huffman)
                fields[field] = encoded
            parts.append(encoded)
        return b"".join(parts)


class Http2Connection(_Exchange):
    def __init__(self, owner: EncryptedListener, tls: TlsConnection) -> None:
        super().__init__(owner, tls)
        self.h2 = h2.connection.H2Connection(config=H2_CONFIG)
        self.h2.encoder = FieldCachingEncoder()
        self.streams: dict[int, _Stream] = {}
        self.unsent: dict[int, bytes] = {}  # response bodies waiting for flow-control credit
        self.receiving = False  # answers made now go out with the rest, at the end of the read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        settings = self.owner.config
        codes = h2.settings.SettingCodes
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: settings.max_streams,
                codes.MAX_HEADER_LIST_SIZE: settings.max_header_bytes,
            },
        )
        # Both limits hold from the first byte: h2 applies a changed header-list limit only once
        # the client acknowledges our SETTINGS, which a hostile client need not wait for.
        self.h2.decoder.max_header_list_size = settings.max_header_bytes
        self.h2.initiate_connection()
        self._send()
        self.rearm()

    def data_received(self, data: bytes) -> None:
        """Every frame of `data`, then every answer it produced, in one write."""
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.owner.count("http_error")
            self._send()
            self.close()
            return
        self.receiving = True
        try:
            for event in events:
                self._on(event)
                if self.closed:
                    return
        finally:
            self.receiving = False
        self._send()

    def _on(self, event: Any) -> None:
        kind = type(event)
        if kind is h2.events.RequestReceived:
            self._request(event.stream_id, event.headers or [])
        elif kind is h2.events.StreamEnded:
            self._complete(event.stream_id)
        elif kind is h2.events.DataReceived:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data or b""
                if len(stream.body) > doh.MAX_MESSAGE:
                    del self.streams[event.stream_id]
                    self.refuse(doh.HttpError(413, "message too large"),
                                self._responder(event.stream_id))  # fmt: skip
        elif kind is h2.events.StreamReset:
            self.streams.pop(event.stream_id, None)
            self.unsent.pop(event.stream_id, None)
        elif kind is h2.events.WindowUpdated:
            for stream_id in list(self.unsent):
                self._send_body(stream_id)
        elif kind is h2.events.ConnectionTerminated:
            self.close()

    def _request(self, stream_id: int, headers: Headers) -> None:
        method = target = b""
        for key, value in headers:
            if key == b":method":
                method = value
            elif key == b":path":
                target = value
        try:
            request = doh.read_head(method.decode("latin-1"), target.decode("latin-1"), headers)
        except doh.HttpError as error:
            self.refuse(error, self._responder(stream_id))
            return
        self.streams[stream_id] = _Stream(request, headers)

    def _complete(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        request = stream.request
        respond = self._responder(stream_id)
        try:
            message = doh.check_message(
                request.message if request.message is not None else bytes(stream.body)
            )
        except doh.HttpError as error:
            self.refuse(error, respond)
            return
        self.ask(message, stream.headers, request.device, respond)

    def _responder(self, stream_id: int) -> Respond:
        def respond(status: int, headers: Headers, body: bytes) -> None:
            if self.closed:
                return
            try:
                self.h2.send_headers(stream_id, [(b":status", _STATUS[status]), *headers])
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                return  # the client reset the stream meanwhile
            self.unsent[stream_id] = body
            self._send_body(stream_id)
            if not self.receiving:
                self._send()  # an answer from upstream: the TLS layer joins those of one turn

        return respond

    def _send_body(self, stream_id: int) -> None:
        """As much of the body as flow control allows; the last DATA frame ends the stream."""
        body = self.unsent.get(stream_id)
        if body is None:
            return
        h2conn = self.h2
        try:
            while True:
                window = min(h2conn.local_flow_control_window(stream_id),
                             h2conn.max_outbound_frame_size)  # fmt: skip
                if len(body) <= window:
                    h2conn.send_data(stream_id, body, end_stream=True)
                    break
                if window <= 0:
                    self.unsent[stream_id] = body
                    return
                h2conn.send_data(stream_id, body[:window])
                body = body[window:]
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.unsent.pop(stream_id, None)

    def _send(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.tls.write(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self.h2.close_connection()
                self._send()
            except h2.exceptions.ProtocolError:
                pass
        super().close()


class Http1Connection(_Exchange):
    def __init__(self, owner: EncryptedListener, tls: TlsConnection) -> None:
        super().__init__(owner, tls)
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=owner.config.max_header_bytes
        )
        self.request: doh.Request | None = None
        self.headers: Headers = []
        self.body = bytearray()
        self.refused = False  # the request was answered with an error before its body ended
        self.discarded = 0  # bytes of a refused request's body read and dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.rearm()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self._process()
        return None

    def _process(self) -> None:
        while not self.closed and not self.waiting:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                self._protocol_error(error)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._head(event)
            elif isinstance(event, h11.Data):
                if self.refused:
                    # Read (and drop) the rest of a refused request, so the client gets to read
                    # our answer; a long one is cut off.
                    self.discarded += len(event.data)
                    if self.discarded > DISCARD_LIMIT:
                        self.close()
                elif self.request is not None:
                    self.body += event.data
                    if len(self.body) > doh.MAX_MESSAGE:
                        self.discarded = len(self.body)
                        self.body = bytearray()
                        self._refuse(doh.HttpError(413, "message too large"), close=False)
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()

    def _head(self, event: h11.Request) -> None:
        self.headers = [(key, value) for key, value in event.headers]
        self.body = bytearray()
        self.refused = False
        self.discarded = 0
        target = event.target.decode("latin-1")
        try:
            doh.check_head_size(target, self.headers, self.owner.config.max_header_bytes)
            self.request = doh.read_head(event.method.decode("latin-1"), target, self.headers)
        except doh.HttpError as error:
            self.request = None
            # The body of a refused request is read and dropped, up to DISCARD_LIMIT.
            length = doh.header_value(self.headers, b"content-length") or b"0"
            too_long = not length.isdigit() or int(length) > DISCARD_LIMIT
            self._refuse(error, close=error.status == 431 or too_long)

    def _complete(self) -> None:
        request = self.request
        if request is None or self.refused:
            self._next_cycle()
            return
        try:
            message = doh.check_message(
                request.message if request.message is not None else bytes(self.body)
            )
        except doh.HttpError as error:
            self._refuse(error, close=False)
            self._next_cycle()
            return
        self.request = None
        # One request at a time: read nothing more until it is answered, so a client that
        # keeps sending cannot grow our buffers meanwhile.
        self.tls.pause_reading()
        self.ask(message, self.headers, request.device, self._respond_and_continue)

    def _refuse(self, error: doh.HttpError, close: bool) -> None:
        self.refused = True
        self.refuse(error, self._respond)
        if close:
            self.close()

    def _respond_and_continue(self, status: int, headers: Headers, body: bytes) -> None:
        self._respond(status, headers, body)
        self._next_cycle()
        if not self.closed:
            self.owner.loop.call_soon(self._continue)

    def _continue(self) -> None:
        """Serve a pipelined request already buffered, then read again."""
        self._process()
        if not self.closed and not self.waiting:
            self.tls.resume_reading()

    def _respond(self, status: int, headers: Headers, body: bytes) -> None:
        if self.closed or self.h11.our_state is not h11.SEND_RESPONSE:
            return
        try:
            out = self.h11.send(h11.Response(status_code=status, headers=headers))
            out = (out or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            out += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            self.close()
            return
        self.tls.write(out)

    def _next_cycle(self) -> None:
        if self.closed:
            return
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
            self.close()
        elif self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()

    def _protocol_error(self, error: h11.RemoteProtocolError) -> None:
        self.owner.count("http_error")
        status = error.error_status_hint
        if status not in doh.STATUS_TEXT:
            status = 400
        self._refuse(doh.HttpError(status, "malformed HTTP request"), close=True)
