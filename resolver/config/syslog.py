"""The `syslog` section: the audit trail also sent as RFC 5424 syslog messages, over UDP, TCP,
TLS (RFC 5425) or a Unix socket, each with the event's fields as structured data, for SIEMs
that take syslog rather than JSON lines."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader, join
from resolver.config.problems import describe, suggest
from resolver.config.values import Endpoint, parse_endpoint, path_text, positive_int

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
DEFAULT_PORTS = {"udp": 514, "tcp": 601, "tls": 6514}
DEFAULT_SD_ID = "dnswarden@32473"
"""32473 is the example enterprise number of RFC 5612; set `sd_id` to your organisation's own
(``name@<your PEN>``) if your SIEM keys on it."""


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    """Where the audit trail goes besides stdout: `target` (None: off) is
    ``udp://IP:port``, ``tcp://IP:port``, ``tls://IP:port#name`` (the name the receiver's
    certificate must show, checked against `ca_file`, else the system store) or
    ``unix:///path``; `parts` gives it taken apart. `certificate` and `key` (PEM, both or
    neither) are the client certificate a TLS receiver that authenticates its senders asks for
    (RFC 5425 4.2: mutual certificate authentication)."""

    target: str | None = None
    ca_file: str | None = None
    certificate: str | None = None
    key: str | None = None
    facility: str = "local0"
    hostname: str = ""
    app_name: str = "dnswarden"
    sd_id: str = DEFAULT_SD_ID
    queue: int = 10000

    @property
    def enabled(self) -> bool:
        return self.target is not None

    @property
    def parts(self) -> tuple[str, Endpoint | None, str | None, str | None]:
        """(transport, endpoint, unix path, TLS name); the target was checked when read."""
        assert self.target is not None
        return parse_target(self.target)


def read_syslog(reader: Reader, top: Entries) -> SyslogConfig:
    entries = reader.section(top, "syslog", SyslogConfig)
    path = "syslog"
    defaults = SyslogConfig()
    target = reader.value(entries, "target", path, parse_target, None)
    ca_file = None
    if "ca_file" in entries:
        ca_node = entries["ca_file"][1]
        name = reader.convert(ca_node, join(path, "ca_file"), path_text)
        if name is not MISSING:
            ca_file = files.ca_file(reader, ca_node, join(path, "ca_file"), name)
        if target not in (None, MISSING) and target[0] != "tls":
            reader.problem(entries["ca_file"][0], join(path, "ca_file"), "only used with tls://")
    client: dict[str, str | None] = {"certificate": None, "key": None}
    for name, what in (("certificate", "certificate"), ("key", "private key")):
        if name not in entries:
            continue
        node = entries[name][1]
        text = reader.convert(node, join(path, name), path_text)
        if text is not MISSING:
            client[name] = files.pem_file(reader, node, join(path, name), text, what)
        if target not in (None, MISSING) and target[0] != "tls":
            reader.problem(entries[name][0], join(path, name), "only used with tls://")
    given = [name for name in client if name in entries]
    if len(given) == 1:
        other = "key" if given[0] == "certificate" else "certificate"
        reader.problem(entries[given[0]][0], join(path, other),
                       f"required with {given[0]}: the client certificate and its key")  # fmt: skip
    facility = reader.value(entries, "facility", path, _facility, defaults.facility)
    hostname = reader.value(entries, "hostname", path, _header_field(255), defaults.hostname)
    app_name = reader.value(entries, "app_name", path, _header_field(48), defaults.app_name)
    sd_id = reader.value(entries, "sd_id", path, _sd_id, defaults.sd_id)
    queue = reader.value(entries, "queue", path, positive_int, defaults.queue)
    usable = target is not MISSING and target is not None
    return SyslogConfig(
        target=str(entries["target"][1].value).strip() if usable else None,
        ca_file=ca_file,
        certificate=client["certificate"],
        key=client["key"],
        facility=defaults.facility if facility is MISSING else facility,
        hostname=defaults.hostname if hostname is MISSING else hostname,
        app_name=defaults.app_name if app_name is MISSING else app_name,
        sd_id=defaults.sd_id if sd_id is MISSING else sd_id,
        queue=defaults.queue if queue is MISSING else queue,
    )


_HINT = (
    "a target such as udp://192.0.2.10:514, tcp://192.0.2.10:601, "
    "tls://192.0.2.10:6514#siem.example.gov or unix:///dev/log"
)


def parse_target(raw: object) -> tuple[str, Endpoint | None, str | None, str | None]:
    """(transport, endpoint, unix path, TLS name) of a `target`."""
    if not isinstance(raw, str):
        raise ValueError(f"expected {_HINT}, got {describe(raw)}")
    text = raw.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (*DEFAULT_PORTS, "unix"):
        raise ValueError(f"{text!r}: expected {_HINT}")
    if scheme == "unix":
        path = unquote(rest)
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: give the socket's absolute path, e.g. unix:///dev/log")
        return scheme, None, path, None
    address, hash_sign, name = rest.partition("#")
    if scheme == "tls" and not (hash_sign and name):
        raise ValueError(
            f"{text!r}: name the certificate the receiver must show, e.g. "
            "tls://192.0.2.10:6514#siem.example.gov"
        )
    if scheme != "tls" and hash_sign:
        raise ValueError(f"{text!r}: a #name is only for tls://")
    endpoint = parse_endpoint(address, default_port=DEFAULT_PORTS[scheme])
    return scheme, endpoint, None, name.lower() if name else None


def _facility(raw: object) -> str:
    if not isinstance(raw, str) or raw.strip().lower() not in FACILITIES:
        shown = raw if isinstance(raw, str) else describe(raw)
        raise ValueError(
            f"unknown facility {shown!r}: use one of {', '.join(FACILITIES)}"
            f"{suggest(str(raw), FACILITIES)}"
        )
    return raw.strip().lower()


def _header_field(limit: int) -> Callable[[object], str]:
    """A converter for an RFC 5424 header field: 1 to `limit` printable ASCII, no spaces."""

    def convert(raw: object) -> str:
        if not isinstance(raw, str) or not re.fullmatch(rf"[\x21-\x7e]{{1,{limit}}}", raw):
            raise ValueError(f"1 to {limit} printable ASCII characters without spaces")
        return raw

    return convert


def _sd_id(raw: object) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r'[\x21-\x7e]{1,32}', raw) or any(
        c in raw for c in '="] '
    ):
        raise ValueError('an SD-ID: 1 to 32 printable ASCII characters, none of = ] " or space')
    if "@" not in raw:
        raise ValueError(
            f"{raw!r}: a private SD-ID is name@<enterprise number>, e.g. {DEFAULT_SD_ID}"
        )
    return raw
