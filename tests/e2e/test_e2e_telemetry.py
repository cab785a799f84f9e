"""dnstap and syslog outputs of the real server, read by readers the tests start.

dnstap: a Frame Streams reader on a Unix socket (the bidirectional handshake Vector's dnstap
source does), whose frames are decoded by independent readers: `dnstap-read` from BIND
(bind9-dnsutils) on a Frame Streams file made of them, and the `dnstap-pb` protobuf bindings for
the fields `dnstap-read` does not print (`extra`). Then the reader goes away and comes back:
dnswarden counts what it drops and reconnects. A second server writes a dnstap file with
pseudonymised clients. syslog: a UDP and a TCP listener receive the audit trail, and every
message parses as RFC 5424 with the event's fields as structured data; and rsyslogd, configured
as docs/feeds.md shows, receives it and writes each event's JSON line.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
from doc_examples import DOCS, snippet
from fake_upstream import FakeUpstream
from harness import (
    ServerFactory,
    ServerProcess,
    ask,
    decision_labels,
    fresh_name,
    make_config,
    query,
)

pytestmark = pytest.mark.e2e

dnstap_pb = pytest.importorskip("dnstap_pb")

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
ACCEPT, START, STOP, READY, FINISH = 1, 2, 3, 4, 5
TYPES = {5: "CLIENT_QUERY", 6: "CLIENT_RESPONSE", 7: "FORWARDER_QUERY", 8: "FORWARDER_RESPONSE"}


def control(kind: int, content_type: bool = True) -> bytes:
    body = struct.pack(">I", kind)
    if content_type:
        body += struct.pack(">II", 1, len(CONTENT_TYPE)) + CONTENT_TYPE
    return struct.pack(">II", 0, len(body)) + body


def read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class FrameReader:
    """A dnstap reader on a Unix socket: accepts one writer at a time, checks its handshake
    (READY naming exactly our content type, our ACCEPT, then START), keeps every data frame and
    answers STOP with FINISH. `close` makes it go away; `start` brings it back at the same
    place."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: a subclass listens elsewhere
        self.frames: list[bytes] = []
        self.handshakes = 0
        self.finished = 0
        self.errors: list[str] = []
        self.start()

    def listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        return sock

    def start(self) -> None:
        self.conn: socket.socket | None = None
        self.sock = self.listen()
        self.sock.listen()
        threading.Thread(target=self._serve, args=(self.sock,), daemon=True).start()

    def _serve(self, listening: socket.socket) -> None:
        while True:
            try:
                conn, _ = listening.accept()
            except OSError:
                return
            self.conn = conn
            with conn:
                try:
                    self._session(conn)
                except (EOFError, OSError):
                    pass
                except AssertionError as error:
                    self.errors.append(str(error))

    @staticmethod
    def _control(conn: socket.socket) -> tuple[int, bytes]:
        escape, length = struct.unpack(">II", read_exact(conn, 8))
        assert escape == 0, "expected a control frame"
        body = read_exact(conn, length)
        return struct.unpack(">I", body[:4])[0], body[4:]

    def _session(self, conn: socket.socket) -> None:
        kind, fields = self._control(conn)
        assert kind == READY and fields == struct.pack(">II", 1, len(CONTENT_TYPE)) + CONTENT_TYPE
        conn.sendall(control(ACCEPT))
        kind, fields = self._control(conn)
        assert kind == START and CONTENT_TYPE in fields
        self.handshakes += 1
        while True:
            (length,) = struct.unpack(">I", read_exact(conn, 4))
            if length == 0:
                (size,) = struct.unpack(">I", read_exact(conn, 4))
                assert struct.unpack(">I", read_exact(conn, size)[:4])[0] == STOP
                conn.sendall(control(FINISH, content_type=False))
                self.finished += 1
                return
            self.frames.append(read_exact(conn, length))

    def messages(self) -> list[Any]:
        decoded = []
        for frame in list(self.frames):
            message = dnstap_pb.Dnstap()
            message.ParseFromString(frame)
            decoded.append(message)
        return decoded

    def close(self) -> None:
        """The reader goes away: its listening socket and its connection."""
        self.sock.close()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def frames_of_file(path: Path) -> list[bytes]:
    """Data frames of a Frame Streams file (START ... STOP)."""
    data = path.read_bytes()
    frames, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if length == 0:
            (size,) = struct.unpack_from(">I", data, pos)
            pos += 4 + size
            continue
        frames.append(data[pos : pos + length])
        pos += length
    return frames


def as_file(frames: list[bytes], path: Path) -> Path:
    body = b"".join(struct.pack(">I", len(f)) + f for f in frames)
    path.write_bytes(control(START) + body + control(STOP, content_type=False))
    return path


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def metrics(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://{server.startup['metrics']}/metrics", timeout=3) as r:
        return r.read().decode()


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


# --- syslog: listeners and an RFC 5424 parser -------------------------------------------------

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<hostname>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<rest>.*)$",
    re.S,
)
SD_PARAM = re.compile(r' ([^= \]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')


def parse_rfc5424(message: bytes) -> dict[str, Any]:
    """Header fields, structured data {sd_id: {name: value}} and MSG of one message."""
    text = message.decode("utf-8")
    match = RFC5424.match(text)
    assert match, text
    fields: dict[str, Any] = match.groupdict()
    rest = fields.pop("rest")
    data: dict[str, dict[str, str]] = {}
    while rest.startswith("["):
        sd_id = re.match(r"\[([^ \]]+)", rest)
        assert sd_id, rest
        pos = sd_id.end()
        params: dict[str, str] = {}
        while rest[pos] != "]":
            param = SD_PARAM.match(rest, pos)
            assert param, rest[pos:]
            params[param.group(1)] = re.sub(r"\\([\"\\\]])", r"\1", param.group(2))
            pos = param.end()
        data[sd_id.group(1)] = params
        rest = rest[pos + 1 :]
    assert rest.startswith(" ") or rest == "", rest
    fields["sd"] = data
    fields["msg"] = rest[1:]
    return fields


class SyslogListener:
    """Keeps every syslog message received over UDP (one per datagram) or TCP (octet
    counting)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.messages: list[bytes] = []
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if transport == "tcp":
            self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def target(self) -> str:
        return f"{self.transport}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        if self.transport == "udp":
            while True:
                try:
                    data, _ = self.sock.recvfrom(65535)
                except OSError:
                    return
                self.messages.append(data)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buffer = b""
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        assert length.isdigit(), buffer[:50]
                        if len(rest) < int(length):
                            break
                        self.messages.append(rest[: int(length)])
                        buffer = rest[int(length) :]

    def events(self) -> list[dict[str, Any]]:
        return [parse_rfc5424(m) for m in list(self.messages)]

    def close(self) -> None:
        self.sock.close()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(seed=9).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrameReader]:
    directory = Path(tmp_path_factory.mktemp("dnstap"))
    frame_reader = FrameReader(directory / "dnstap.sock")
    try:
        yield frame_reader
    finally:
        frame_reader.close()


@pytest.fixture(scope="module")
def udp_syslog() -> Iterator[SyslogListener]:
    listener = SyslogListener("udp")
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="module")
def tapped(
    launch: ServerFactory, upstream: FakeUpstream, reader: FrameReader, udp_syslog: SyslogListener
) -> ServerProcess:
    config = make_config([upstream.address])
    config["audit"] = {"privacy": "truncate", "fold_window": "0s"}
    # A short queue, so frames are dropped (and counted) while the reader is away.
    config["dnstap"] = {"socket": str(reader.path), "identity": "gw-test", "forwarder": True,
                        "queue": 8}  # fmt: skip
    config["syslog"] = {"target": udp_syslog.target, "hostname": "gw-test"}
    server = launch(config, "tapped")
    assert wait_for(lambda: reader.handshakes), reader.errors
    return server


def test_client_and_forwarder_traffic_reach_a_dnstap_socket_reader(
    tapped: ServerProcess, reader: FrameReader, upstream: FakeUpstream, tmp_path: Path
) -> None:
    name = fresh_name()
    ask(query(name, edns=True), tapped.address)
    ask(query("www.tiktok.com.", edns=True), tapped.address)
    assert wait_for(lambda: len(reader.frames) >= 6), len(reader.frames)
    messages = reader.messages()
    kinds = [TYPES[m.message.type] for m in messages]
    assert kinds.count("CLIENT_QUERY") >= 2 and kinds.count("CLIENT_RESPONSE") >= 2
    assert "FORWARDER_QUERY" in kinds and "FORWARDER_RESPONSE" in kinds
    assert {(m.identity, m.version) for m in messages} == {(b"gw-test", b"dnswarden 0.1.0")}
    clients = [m.message for m in messages if m.message.type in (5, 6)]
    assert {bytes(c.query_address) for c in clients} == {bytes([127, 0, 0, 0])}  # truncated
    forwarded = next(m.message for m in messages if m.message.type == 8)
    host, port = upstream.address.rsplit(":", 1)
    assert (bytes(forwarded.response_address), forwarded.response_port) == (
        socket.inet_aton(host),
        int(port),
    )
    blocked = [
        json.loads(m.extra) for m in messages if m.message.type == 6 and m.HasField("extra")
    ]
    assert blocked == [
        {"action": "blocked", "group": "default", "policy": None, "list": "tiktok",
         "rule": "tiktok.com", "reference": "; ".join(decision_labels("tiktok")),
         "answer": "null_ip"}
    ]  # fmt: skip
    read = tool("dnstap-read")
    if read is None:
        pytest.skip("dnstap-read not installed (Debian: bind9-dnsutils)")
    out = subprocess.run([read, str(as_file(list(reader.frames), tmp_path / "t.fstrm"))],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    lines = out.splitlines()
    assert any(" CQ 127.0.0.0" in line and name.rstrip(".") in line for line in lines), out
    assert any(" CR 127.0.0.0" in line and "www.tiktok.com/IN/A" in line for line in lines), out
    assert any(" FQ " in line and name.rstrip(".") in line for line in lines), out
    assert any(" FR " in line and name.rstrip(".") in line for line in lines), out


def test_a_reader_that_goes_away_costs_counted_drops_and_it_gets_traffic_again(
    tapped: ServerProcess, reader: FrameReader
) -> None:
    reader.close()
    for _ in range(20):
        ask(query(fresh_name(), edns=True), tapped.address)
    dropped = wait_for(
        lambda: sample(metrics(tapped), 'dnswarden_dnstap_frames_total{outcome="dropped"}')
    )
    assert dropped > 0
    back = FrameReader(reader.path)  # the reader restarts on the same path
    try:
        assert wait_for(lambda: back.handshakes, 15.0), "no reconnect"
        name = fresh_name()
        ask(query(name, edns=True), tapped.address)
        label = name.split(".")[0].encode()  # the frames hold the name in wire form
        assert wait_for(lambda: any(label in f for f in back.frames))
        sent = sample(metrics(tapped), 'dnswarden_dnstap_frames_total{outcome="sent"}')
        assert sent >= 6
    finally:
        back.close()


def test_the_audit_trail_reaches_a_syslog_udp_listener_as_rfc5424(
    tapped: ServerProcess, udp_syslog: SyslogListener
) -> None:
    ask(query("m.tiktok.com.", edns=True), tapped.address)

    def blocks() -> list[dict[str, Any]]:
        return [e for e in udp_syslog.events() if e["msgid"] == "blocked"]

    found = wait_for(lambda: [e for e in blocks() if "m.tiktok.com" in e["msg"]])
    assert found, udp_syslog.messages[-5:]
    event = found[0]
    assert int(event["pri"]) == 16 * 8 + 6  # local0.info
    assert (event["hostname"], event["app"]) == ("gw-test", "dnswarden")
    assert event["procid"] == str(tapped.pid)
    line = json.loads(event["msg"])
    params = event["sd"]["dnswarden@32473"]
    compact = json.JSONEncoder(separators=(",", ":")).encode  # as the syslog writer encodes
    expected = {k: v if isinstance(v, str) else compact(v) for k, v in line.items()}
    for header in ("timestamp", "level", "event"):
        expected.pop(header)
    assert params == expected
    assert params["client"] == "127.0.0.0/24" and params["entry"] == "tiktok"
    assert event["timestamp"] == line["timestamp"]
    startup = [e for e in udp_syslog.events() if e["msgid"] == "startup"]
    assert startup and int(startup[0]["pri"]) == 16 * 8 + 6


def tool(name: str) -> str | None:
    return shutil.which(name)


def test_a_dnstap_file_with_pseudonymised_clients_and_syslog_over_tcp(
    launch: ServerFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    key = tmp_path / "audit.key"
    key.write_text(secrets.token_hex(32))
    tcp_syslog = SyslogListener("tcp")
    try:
        config = make_config([upstream.address])
        config["audit"] = {"privacy": "pseudonymise", "key_file": str(key)}
        config["dnstap"] = {"file": str(tmp_path / "out.fstrm")}
        config["syslog"] = {"target": tcp_syslog.target, "facility": "auth"}
        server = launch(config, "file")
        reply = ask(query("www.tiktok.com.", edns=True), server.address)[1]
        assert reply.rcode() == dns.rcode.NOERROR
        event = server.wait_for_event(lambda e: e.get("event") == "blocked")
        assert event is not None
        assert server.stop() == 0
        frames = frames_of_file(tmp_path / "out.fstrm")
        messages = []
        for frame in frames:
            message = dnstap_pb.Dnstap()
            message.ParseFromString(frame)
            messages.append(message)
        assert [TYPES[m.message.type] for m in messages] == ["CLIENT_QUERY", "CLIENT_RESPONSE"]
        assert all(not m.message.HasField("query_address") for m in messages)
        assert {json.loads(m.extra)["client"] for m in messages} == {event["client"]}
        read = tool("dnstap-read")
        if read is not None:
            out = subprocess.run([read, str(tmp_path / "out.fstrm")], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
            assert "www.tiktok.com/IN/A" in out and " CQ " in out and " CR " in out
        events = wait_for(lambda: [e for e in tcp_syslog.events() if e["msgid"] == "shutdown"])
        assert events, tcp_syslog.messages[-3:]
        assert int(events[0]["pri"]) == 4 * 8 + 6  # auth.info
        blocked = [e for e in tcp_syslog.events() if e["msgid"] == "blocked"]
        assert blocked[0]["sd"]["dnswarden@32473"]["client"] == event["client"]
    finally:
        tcp_syslog.close()


def test_rsyslog_from_the_docs_receives_the_audit_trail(
    launch: ServerFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """docs/feeds.md's rsyslog input, run for real: rsyslogd parses our RFC 5424 messages and
    writes each event's JSON line (MSG) to its file."""
    rsyslogd = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed (Debian: rsyslog)")
    port = free_tcp_port()
    out = tmp_path / "siem.jsonl"
    text = snippet(DOCS / "feeds.md", 'module(load="imtcp")')
    text = text.replace("/var/log/siem/dnswarden.jsonl", str(out)).replace('"601"', f'"{port}"')
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\n' + text)
    log = (tmp_path / "rsyslogd.out").open("wb")
    process = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "pid")],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log)  # fmt: skip
    try:
        assert wait_for(lambda: port_open(port)), (tmp_path / "rsyslogd.out").read_text()
        config = make_config([upstream.address])
        config["syslog"] = {"target": f"tcp://127.0.0.1:{port}"}
        server = launch(config, "rsyslog")
        ask(query("www.tiktok.com.", edns=True), server.address)
        event = server.wait_for_event(lambda e: e.get("event") == "blocked")
        assert event is not None

        def received() -> list[dict[str, Any]]:
            if not out.exists():
                return []
            return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

        found = wait_for(lambda: [e for e in received() if e.get("event") == "blocked"])
        assert found == [event]
        assert any(e.get("event") == "startup" for e in received())
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
