"""RFC 5424 syslog messages from audit events: text in, bytes out, no I/O.

Each audit event becomes one message: PRI from the facility and the event's level, the event's
own timestamp, HOSTNAME, APP-NAME, PROCID, the event name as MSGID, the event's fields as one
structured-data element (same names and values as the JSON line: strings as they are, anything
else as its JSON text), and the JSON line itself as MSG, so a SIEM that reads only MSG loses
nothing. Over TCP and TLS messages are framed by octet counting (RFC 6587 3.4.1, RFC 5425 4.3);
over UDP and Unix sockets each message is one datagram.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

NILVALUE: Final = "-"
SEVERITIES: Final = {"error": 3, "warning": 4, "info": 6, "debug": 7}
MAX_PARAM_NAME: Final = 32
_HEADER_KEYS: Final = frozenset({"timestamp", "level", "event"})
_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def _header_field(text: str, limit: int) -> str:
    """Printable ASCII without spaces, at most `limit` long; NILVALUE when nothing is left."""
    cleaned = "".join(c for c in text if "\x21" <= c <= "\x7e")[:limit]
    return cleaned or NILVALUE


def _param_name(name: str) -> str:
    cleaned = "".join(c for c in name if "\x21" <= c <= "\x7e" and c not in '="]')
    return cleaned[:MAX_PARAM_NAME] or "_"


def _param_value(value: object) -> str:
    text = value if isinstance(value, str) else _ENCODER.encode(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def structured_data(sd_id: str, fields: Mapping[str, Any]) -> str:
    """``[sd_id name="value" ...]`` of the event's fields (not timestamp, level, event)."""
    params = [
        f'{_param_name(name)}="{_param_value(value)}"'
        for name, value in fields.items()
        if name not in _HEADER_KEYS
    ]
    return f"[{' '.join([sd_id, *params])}]"


def format_message(
    line: str,
    *,
    facility: int,
    hostname: str,
    app_name: str,
    procid: int,
    sd_id: str,
) -> bytes:
    """The RFC 5424 message of one rendered audit line (ASCII JSON)."""
    try:
        fields = json.loads(line)
    except ValueError:
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    severity = SEVERITIES.get(str(fields.get("level", "")), 5)
    timestamp = str(fields.get("timestamp") or NILVALUE)
    msgid = _header_field(str(fields.get("event", "")), 32)
    header = (
        f"<{facility * 8 + severity}>1 {_header_field(timestamp, 64)} "
        f"{_header_field(hostname, 255)} {_header_field(app_name, 48)} {procid} {msgid}"
    )
    return f"{header} {structured_data(sd_id, fields)} {line}".encode("ascii", "replace")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet counting: the length in decimal, a space, the message."""
    return b"%d %s" % (len(message), message)
