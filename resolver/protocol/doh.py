"""DNS over HTTPS requests and responses (RFC 8484), as values: no sockets, no HTTP framing.

The shell's HTTP/2 (h2) and HTTP/1.1 (h11) drivers hand a request's method, target and headers
here as soon as they arrive, then its body; this module says which DNS message it carries and for
which device, or which HTTP status refuses it, and which headers go with an answer:

- `/dns-query` and `/dns-query/<device-id>` only (404 elsewhere, 400 for a malformed device id);
- GET with `?dns=` (base64url, padding optional) or POST with `Content-Type:
  application/dns-message`; any other method is 405, any other media type 415;
- a message over 65,535 bytes is 413 (it could not be a DNS message), one too short to be a
  query, or itself a response, is 400;
- `Cache-Control: max-age` is the smallest TTL of the answer's records (RFC 8484 §5.1), for a
  negative answer its SOA's (RFC 2308), 0 when the answer has no record.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from resolver.protocol.devices import is_device_id
from resolver.protocol.wire import (
    HEADER,
    HEADER_LEN,
    QR,
    RR_FIXED,
    TYPE_OPT,
    TYPE_SOA,
    WireError,
    skip_name,
)

DOH_PATH: Final = "/dns-query"
MEDIA_TYPE: Final = "application/dns-message"
MAX_MESSAGE: Final = 65535
MAX_TARGET: Final = 2 + (MAX_MESSAGE * 4 + 2) // 3 + 256
"""The longest request target worth reading: a path, `?dns=` and a maximal message in base64."""
ALLOWED_METHODS: Final = "GET, POST"
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}", re.ASCII)

STATUS_TEXT: Final = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 413: "Content Too Large",
                      414: "URI Too Long", 415: "Unsupported Media Type",
                      431: "Request Header Fields Too Large",
                      500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip
"""Every status a DoH listener sends (the `status` label of its metric)."""


class HttpError(Exception):
    """A request refused with `status`; `detail` is the short text sent back."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Request:
    """What a request head says: the device id in its path (None without one) and, for GET,
    the message already (POST's comes in the body)."""

    device: str | None
    message: bytes | None
    body_expected: bool


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def read_head(method: str, target: str, headers: Iterable[tuple[bytes, bytes]]) -> Request:
    """Check a request head; `HttpError` with the status that refuses it."""
    if len(target) > MAX_TARGET:
        raise HttpError(414, "request target too long")
    path, _, query = target.partition("?")
    device = _route(path)
    if method == "GET":
        return Request(device, _query_parameter(query), False)
    if method != "POST":
        raise HttpError(405, "only GET and POST")
    media = header_value(headers, b"content-type")
    if media is None or media.split(b";")[0].strip().lower() != MEDIA_TYPE.encode():
        raise HttpError(415, f"Content-Type must be {MEDIA_TYPE}")
    length = header_value(headers, b"content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HttpError(400, "bad Content-Length")
        if int(length) > MAX_MESSAGE:
            raise HttpError(413, f"a DNS message is at most {MAX_MESSAGE} bytes")
    return Request(device, None, True)


def check_head_size(target: str, headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """431 when the request line's target and the header fields exceed `limit` bytes (as
    HTTP/2 counts a header list: 32 bytes of overhead per field, RFC 9113 §6.5.2)."""
    size = len(target) + sum(len(key) + len(value) + 32 for key, value in headers)
    if size > limit:
        raise HttpError(431, "request header fields too large")


def _route(path: str) -> str | None:
    if path == DOH_PATH:
        return None
    prefix = DOH_PATH + "/"
    if not path.startswith(prefix):
        raise HttpError(404, f"DNS queries go to {DOH_PATH}")
    device = path[len(prefix) :].lower()
    if not is_device_id(device):
        raise HttpError(400, "invalid device id in the path: one DNS label of letters, digits, -")
    return device


def _query_parameter(query: str) -> bytes:
    encoded = None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "dns":
            encoded = value
            break
    if not encoded:
        raise HttpError(400, "GET needs a dns= parameter (RFC 8484)")
    if len(encoded) > (MAX_MESSAGE * 4 + 2) // 3:
        raise HttpError(413, f"a DNS message is at most {MAX_MESSAGE} bytes")
    if not _BASE64URL.fullmatch(encoded):
        raise HttpError(400, "dns= is not base64url")
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, "dns= is not base64url") from None


def check_message(message: bytes) -> bytes:
    """`message` when it can be a DNS query: a header's worth of bytes, QR clear."""
    if len(message) > MAX_MESSAGE:
        raise HttpError(413, f"a DNS message is at most {MAX_MESSAGE} bytes")
    if len(message) < HEADER_LEN or (message[2] << 8) & QR:
        raise HttpError(400, "not a DNS query")
    return message


def max_age(reply: bytes) -> int:
    """Seconds the answer may be cached by HTTP caches: the smallest TTL of its answer and
    authority records, a SOA counting no longer than its MINIMUM field; 0 without records."""
    try:
        _, _, qdcount, ancount, nscount, _ = HEADER.unpack_from(reply)
        pos = HEADER_LEN
        for _ in range(qdcount):
            pos = skip_name(reply, pos) + 4
        smallest: int | None = None
        for _ in range(ancount + nscount):
            pos = skip_name(reply, pos)
            rtype, _, ttl, length = RR_FIXED.unpack_from(reply, pos)
            pos += RR_FIXED.size
            if rtype == TYPE_SOA and pos + length <= len(reply):
                ttl = min(ttl, int.from_bytes(reply[pos + length - 4 : pos + length], "big"))
            if rtype != TYPE_OPT:
                smallest = ttl if smallest is None else min(smallest, ttl)
            pos += length
    except (WireError, struct.error):
        return 0
    return 0 if smallest is None else min(smallest, 0x7FFFFFFF)


def answer_headers(reply: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a 200 answer (`content-length` included)."""
    return [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(reply)).encode()),
        (b"cache-control", f"max-age={max_age(reply)}".encode()),
    ]


def error_headers(error: HttpError) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an error response."""
    body = (error.detail + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if error.status == 405:
        headers.append((b"allow", ALLOWED_METHODS.encode()))
    return headers, body
