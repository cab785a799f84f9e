"""The `dnstap` section: client (and optionally forwarder) traffic as dnstap, over Frame Streams
to a Unix socket, a TCP reader or a file, for SOC pipelines that ingest DNS telemetry (Vector,
dnstap-receiver, dnstap-read)."""

from __future__ import annotations

from dataclasses import dataclass

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader, join
from resolver.config.problems import describe
from resolver.config.values import Endpoint, parse_endpoint, path_text, positive_int, strict_bool

DEFAULT_QUEUE = 10000
MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class DnstapConfig:
    """Where dnstap frames go: at most one of `socket` (a Unix socket path), `tcp` or `file`;
    none of them turns dnstap off. `identity` and `version` fill the dnstap fields of the same
    name (empty: the host name, and ``dnswarden <version>``)."""

    socket: str | None = None
    tcp: Endpoint | None = None
    file: str | None = None
    identity: str = ""
    version: str = ""
    forwarder: bool = False
    queue: int = DEFAULT_QUEUE

    @property
    def enabled(self) -> bool:
        return bool(self.socket or self.tcp or self.file)


_OUTPUTS = ("socket", "tcp", "file")


def read_dnstap(reader: Reader, top: Entries) -> DnstapConfig:
    entries = reader.section(top, "dnstap", DnstapConfig)
    path = "dnstap"
    defaults = DnstapConfig()
    given = [name for name in _OUTPUTS if name in entries]
    for extra in given[1:]:
        reader.problem(
            entries[extra][0],
            join(path, extra),
            f"give only one of socket, tcp or file ({given[0]} is given too)",
        )
    socket_path = file_path = None
    if "socket" in entries:
        socket_path = reader.value(entries, "socket", path, _socket_path, None)
    if "file" in entries:
        node = entries["file"][1]
        name = reader.convert(node, join(path, "file"), path_text)
        if name is not MISSING:
            file_path = files.log_file(reader, node, join(path, "file"), name)
    tcp = reader.value(entries, "tcp", path, _tcp_endpoint, None)
    identity = reader.value(entries, "identity", path, _text, defaults.identity)
    version = reader.value(entries, "version", path, _text, defaults.version)
    forwarder = reader.value(entries, "forwarder", path, strict_bool, defaults.forwarder)
    queue = reader.value(entries, "queue", path, positive_int, defaults.queue)
    return DnstapConfig(
        socket=None if socket_path is MISSING else socket_path,
        tcp=None if tcp is MISSING else tcp,
        file=file_path,
        identity=defaults.identity if identity is MISSING else identity,
        version=defaults.version if version is MISSING else version,
        forwarder=defaults.forwarder if forwarder is MISSING else forwarder,
        queue=defaults.queue if queue is MISSING else queue,
    )


def _socket_path(raw: object) -> str:
    text = path_text(raw)
    if not text.startswith("/"):
        raise ValueError(f"{text!r}: give the Unix socket's absolute path")
    if len(text.encode()) > 107:
        raise ValueError("a Unix socket path is at most 107 bytes")
    return text


def _tcp_endpoint(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f"expected an address such as 127.0.0.1:6000, got {describe(raw)}")
    endpoint = parse_endpoint(raw, default_port=0)
    if endpoint.port == 0:
        raise ValueError(f"{raw!r}: give the reader's port, e.g. 127.0.0.1:6000")
    return endpoint


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {describe(raw)}")
    if len(raw.encode()) > MAX_TEXT or not raw.isprintable():
        raise ValueError(f"at most {MAX_TEXT} bytes of printable text")
    return raw
