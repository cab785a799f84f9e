"""TLS for the encrypted listeners, run by us over memory BIOs rather than by the event loop.

`loop.create_server(ssl=...)` hides every handshake failure (asyncio says nothing about an
`SSLError` unless in debug mode; uvloop likewise) and reads the certificate once. Driving
`ssl.SSLObject` ourselves costs little and gives what an operator needs: each failure counted by
reason, a handshake deadline, the PROXY v2 header of a trusted load balancer before the TLS bytes,
the client's server name (for its device id) and ALPN (HTTP/2 or HTTP/1.1), and a certificate
re-read on SIGHUP: new connections take the newest context, established ones keep theirs.

`TlsConnection` is the TCP protocol; the application protocol (DoT framing, HTTP) sits on top of
it and sees it as its transport, as it would asyncio's own SSL transport.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import contextlib
import ssl
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from resolver.protocol.proxy import ProxyHeaderError, proxy_v2

if TYPE_CHECKING:
    from resolver.shell.encrypted import EncryptedListener

READ_CHUNK: Final = 65536
CIPHERS_TLS12: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are all of that)."""

FAILURE_REASONS: Final = ("timeout", "not_tls", "protocol_version", "no_shared_cipher",
                          "certificate_rejected", "closed", "proxy_header", "other")  # fmt: skip
"""The `reason` label of failed handshakes: a bounded set, whatever OpenSSL says."""
_REASONS_BY_OPENSSL: Final = {
    "WRONG_VERSION_NUMBER": "not_tls",
    "HTTP_REQUEST": "not_tls",
    "HTTPS_PROXY_REQUEST": "not_tls",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
    "NO_CIPHERS_AVAILABLE": "no_shared_cipher",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no_shared_cipher",
    "TLSV1_ALERT_UNKNOWN_CA": "certificate_rejected",
    "SSLV3_ALERT_BAD_CERTIFICATE": "certificate_rejected",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "certificate_rejected",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "certificate_rejected",
    "TLSV1_ALERT_DECRYPT_ERROR": "certificate_rejected",
    "UNEXPECTED_EOF_WHILE_READING": "closed",
}


def failure_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLEOFError):
        return "closed"
    return _REASONS_BY_OPENSSL.get(str(error.reason), "other")


class ServerNames:
    """The server name each handshake asked for, taken by OpenSSL's SNI callback and read
    once the handshake is done (Python offers no other way to learn it on the server side)."""

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def __call__(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        if server_name:
            self._names[ssl_object] = server_name

    def take(self, ssl_object: ssl.SSLObject) -> str | None:
        return self._names.pop(ssl_object, None)


def server_context(
    certificate: str, key: str, alpn: Sequence[str], server_names: ServerNames
) -> ssl.SSLContext:
    """A server context for one listener kind: TLS 1.2 or later (1.3 preferred by OpenSSL),
    forward-secret AEAD suites, no compression or renegotiation. Raises OSError/SSLError when
    the files do not hold a matching certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS_TLS12)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certificate, key)
    context.set_alpn_protocols(list(alpn))
    context.sni_callback = server_names
    return context


_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_END: Final = b"-----END CERTIFICATE-----"
_SEQUENCE, _VERSION, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18


def certificate_not_after(pem: bytes) -> float:
    """The notAfter of the first (leaf) certificate of a PEM chain, in Unix seconds: when the
    certificate we serve expires. `ssl` loads a chain into a context but never shows it back,
    so the served file is read again here; ValueError when it holds no readable certificate."""
    start = pem.find(_PEM_BEGIN)
    end = pem.find(_PEM_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(pem[start + len(_PEM_BEGIN) : end].split()), validate=True)
    except binascii.Error:
        raise ValueError("the PEM certificate is not base64") from None
    _, certificate, _ = _der_item(der, 0, _SEQUENCE)
    _, at, _ = _der_item(der, certificate, _SEQUENCE)  # tbsCertificate
    if der[at : at + 1] == bytes([_VERSION]):
        at = _der_item(der, at)[2]
    for _field in ("serialNumber", "signature", "issuer"):
        at = _der_item(der, at)[2]
    _, validity, _ = _der_item(der, at, _SEQUENCE)
    not_before_end = _der_item(der, validity)[2]
    tag, start, end = _der_item(der, not_before_end)
    return _der_time(tag, der[start:end])


def _der_item(der: bytes, at: int, expect: int | None = None) -> tuple[int, int, int]:
    """(tag, where its content starts, where it ends) of the DER item at `at`, bounds-checked."""
    if at + 2 > len(der):
        raise ValueError("truncated certificate")
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or at + size > len(der):
            raise ValueError("bad length in certificate")
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der) or (expect is not None and tag != expect):
        raise ValueError("malformed certificate")
    return tag, at, at + length


def _der_time(tag: int, text: bytes) -> float:
    """UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049 per RFC 5280) or GeneralizedTime
    (`YYYYMMDDHHMMSSZ`) as Unix seconds."""
    if not text.endswith(b"Z") or not text[:-1].isdigit():
        raise ValueError("bad notAfter in certificate")
    if tag == _UTC_TIME and len(text) == 13:
        year = int(text[:2])
        digits = b"%d" % (year + (1900 if year >= 50 else 2000)) + text[2:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15:
        digits = text[:14]
    else:
        raise ValueError("bad notAfter in certificate")
    fields = [int(digits[:4]), *(int(digits[i : i + 2]) for i in range(4, 14, 2))]
    return float(calendar.timegm(tuple(fields)))


class TlsConnection(asyncio.Protocol):
    """One client connection of an encrypted listener: an optional PROXY v2 header, the TLS
    handshake within `handshake_timeout`, then the application on the decrypted stream."""

    def __init__(self, listener: EncryptedListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.client = ""  # the TCP peer, or the address a trusted proxy's header named
        self.server_name: str | None = None
        self.alpn: str | None = None
        self.app: asyncio.Protocol | None = None
        self.closed = False
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._proxy_header: bytearray | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False

    # --- asyncio.Protocol, facing the TCP socket ----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        listener = self.listener
        if not listener.admit(self):
            self.closed = True
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        if listener.expects_proxy_header(self.client):
            self._proxy_header = bytearray()
        self._tls = listener.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._timer = listener.loop.call_later(listener.config.handshake_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._proxy_header is not None:
            data = self._read_proxy_header(data)
            if not data:
                return
        self._incoming.write(data)
        if self.app is None:
            self._handshake()
        if self.app is not None:
            self._decrypt()

    def eof_received(self) -> bool | None:
        self._incoming.write_eof()
        if self.app is None:
            self._handshake()
        elif not self.closed:
            self._decrypt()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.app is None and self._tls is not None and not self.closed:
            self.listener.handshake_failed("closed")
        self.closed = True
        self.listener.release(self)
        self._cancel_timer()
        if self.app is not None:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # --- the transport the application sees ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self._tls is None:
            return
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self.abort()
            return
        self._flush()

    def close(self) -> None:
        """Send close_notify and what is still buffered, then close the socket."""
        if self.closed:
            return
        self.closed = True
        if self._tls is not None and self.app is not None:
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()
            self._decrypt()  # what arrived before the pause is still in the BIO

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (self.client, 0)
        if name == "ssl_object":
            return self._tls
        return default if self.transport is None else self.transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    # --- internals ----------------------------------------------------------------------------

    def _read_proxy_header(self, data: bytes) -> bytes:
        header = self._proxy_header
        assert header is not None
        header += data
        try:
            parsed = proxy_v2(bytes(header))
        except (ProxyHeaderError, ValueError):
            self._fail("proxy_header")
            return b""
        if parsed is None:
            return b""
        used, address = parsed
        if address is not None:
            self.client = address
        self._proxy_header = None
        return bytes(header[used:])

    def _handshake(self) -> None:
        tls = self._tls
        assert tls is not None
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as error:
            self._flush()  # the alert that tells the client why
            self._fail(failure_reason(error))
            return
        self._flush()
        self._cancel_timer()
        self.alpn = tls.selected_alpn_protocol()
        self.server_name = self.listener.server_names.take(tls)
        self.app = self.listener.application(self)
        self.app.connection_made(self)  # type: ignore[arg-type]

    def _decrypt(self) -> None:
        tls, app = self._tls, self.app
        assert tls is not None and app is not None
        while not self.closed and not self._reading_paused:
            try:
                chunk = tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                self._flush()
                self.close()
                return
            except ssl.SSLError:
                self.abort()
                return
            if not chunk:
                self.close()
                return
            app.data_received(chunk)
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(pending)

    def _too_slow(self) -> None:
        self._timer = None
        if self.app is None and not self.closed:
            self._fail("timeout")

    def _fail(self, reason: str) -> None:
        if self.closed:
            return
        self.listener.handshake_failed(reason)
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
