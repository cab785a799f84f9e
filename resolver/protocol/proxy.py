"""Who the client is behind a reverse proxy: the PROXY protocol v2 header and HTTP `Forwarded`.

Both are claims, and only a proxy the operator trusts may make them: the listeners look at them
only on connections from `encrypted.trusted_proxies`, never from anyone else (a client that
writes its own `Forwarded: for=` header must not pick its policy group). Parsing is bounded and
strict; a claim that does not parse is no claim.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Final

PROXY_V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_PROXY_HEADER: Final = struct.Struct(">12sBBH")
MAX_PROXY_HEADER: Final = _PROXY_HEADER.size + 512
_COMMAND_LOCAL: Final = 0x20
_COMMAND_PROXY: Final = 0x21
_TCP4: Final = 0x11
_TCP6: Final = 0x21


class ProxyHeaderError(ValueError):
    """Bytes that should start with a PROXY v2 header and do not."""


def proxy_v2(data: bytes) -> tuple[int, str | None] | None:
    """Parse a PROXY v2 header at the start of `data`: None while more bytes are needed, else
    (bytes it takes, the client's address, or None for a LOCAL header such as a health check)."""
    if len(data) < _PROXY_HEADER.size:
        if not PROXY_V2_SIGNATURE.startswith(data[:12]):
            raise ProxyHeaderError("no PROXY v2 signature")
        return None
    signature, command, family, length = _PROXY_HEADER.unpack_from(data)
    if signature != PROXY_V2_SIGNATURE:
        raise ProxyHeaderError("no PROXY v2 signature")
    if command not in (_COMMAND_LOCAL, _COMMAND_PROXY):
        raise ProxyHeaderError(f"unknown PROXY v2 command 0x{command:02x}")
    total = _PROXY_HEADER.size + length
    if total > MAX_PROXY_HEADER:
        raise ProxyHeaderError("PROXY v2 header too long")
    if len(data) < total:
        return None
    body = data[_PROXY_HEADER.size : total]
    if command == _COMMAND_LOCAL:
        return total, None
    if family == _TCP4 and length >= 12:
        return total, str(ipaddress.IPv4Address(body[:4]))
    if family == _TCP6 and length >= 36:
        return total, str(ipaddress.IPv6Address(body[:16]))
    raise ProxyHeaderError(f"unsupported PROXY v2 address family 0x{family:02x}")


def forwarded_for(values: Iterable[bytes]) -> str | None:
    """The address the nearest proxy saw (the last `for=` of RFC 7239 `Forwarded` headers), or
    None when it is absent, obfuscated (`unknown`, `_hidden`) or not an IP address."""
    last: str | None = None
    for value in values:
        for element in value.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, raw = pair.strip().partition("=")
                if key.strip().lower() == "for":
                    last = raw.strip()
    if last is None:
        return None
    text = last.strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
