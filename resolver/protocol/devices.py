"""Device ids: the per-phone label an encrypted client presents, in its TLS server name
(`<device-id>.dns.example.gov`, as Android's Private DNS hostname allows) or its DoH path
(`/dns-query/<device-id>`).

An id is one DNS label of letters, digits and hyphens (RFC 1123 host syntax), 1 to 63 octets,
compared in lower case, so the same id fits both places and an audit line cannot be made to hold
anything else. It names a device; it proves nothing (a server name travels in clear and anyone
can type one), so it picks a group and fills the audit trail, never grants access.
"""

from __future__ import annotations

import re
from typing import Final

MAX_DEVICE_ID: Final = 63
_DEVICE_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def parse_device_id(text: str) -> str:
    """`text` as a device id (lower case), or ValueError saying what is wrong with it."""
    device = text.strip().lower()
    if not device:
        raise ValueError("empty device id")
    if len(device) > MAX_DEVICE_ID:
        raise ValueError(f"device id {device[:70]!r} is longer than {MAX_DEVICE_ID} characters")
    if not _DEVICE_RE.fullmatch(device):
        raise ValueError(
            f"invalid device id {device!r}: use letters, digits and '-' (not first or last), "
            "one DNS label"
        )
    return device


def is_device_id(text: str) -> bool:
    return len(text) <= MAX_DEVICE_ID and _DEVICE_RE.fullmatch(text) is not None


def device_from_server_name(server_name: str | None, our_name: str) -> str | None:
    """The device id in a TLS server name `<device-id>.<our_name>`; None for our bare name, no
    name, another name, or a first label that is no valid id (`our_name` in lower case)."""
    if not server_name:
        return None
    name = server_name.lower().rstrip(".")
    suffix = "." + our_name
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if is_device_id(label) else None
