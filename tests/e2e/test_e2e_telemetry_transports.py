"""dnstap to a TCP reader and syslog over TLS and Unix sockets, from the real server to
receivers the tests start on loopback.

dnstap: a Frame Streams reader on a TCP port checks the bidirectional handshake (READY naming
the dnstap content type, our ACCEPT, START) and keeps the data frames, which the `dnstap-pb`
bindings decode; a query over each client transport (UDP, TCP, DNS over TLS, DNS over HTTPS)
is labelled with its own dnstap SocketProtocol. Then the reader goes away: the queue (8 frames)
fills and the rest is dropped and counted; the reader comes back on the same port and gets the
traffic again without a restart of dnswarden. (`dnstap-read` of BIND 9.18 prints DOT and DOH
as UDP, so only dnstap-pb can check those labels.)

syslog: a TLS listener with a certificate from a test CA made with openssl (RFC 5425: octet
counting, a close_notify before the connection closes), one that also asks for dnswarden's
client certificate (mutual authentication), a Unix datagram socket (/dev/log's
kind) and a Unix stream socket (LF-ended messages); every message parses as RFC 5424 with the
event's fields as structured data. A TLS receiver whose certificate the CA did not sign gets
nothing, and the messages are counted as dropped.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import pytest
from fake_upstream import FakeUpstream
from harness import ServerFactory, ServerProcess, ask, fresh_name, make_config, query
from test_e2e_encrypted import (
    SERVER_NAME,
    Pki,
    doh_client,
    doh_url,
    dot_query,
    free_port,
    make_pki,
    resolving_to_loopback,
)
from test_e2e_telemetry import (
    TYPES,
    FrameReader,
    metrics,
    parse_rfc5424,
    sample,
    wait_for,
)

pytestmark = pytest.mark.e2e

dnstap_pb = pytest.importorskip("dnstap_pb")

PROTOCOLS = {1: "UDP", 2: "TCP", 3: "DOT", 4: "DOH"}
assert {number: dnstap_pb.SocketProtocol.Name(number) for number in PROTOCOLS} == PROTOCOLS


class TcpFrameReader(FrameReader):
    """The same reader on a loopback TCP port (`start` after `close`: the same port again)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        super().__init__(None)

    def listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        return sock


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(seed=11).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def tcp_reader() -> Iterator[TcpFrameReader]:
    reader = TcpFrameReader()
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture(scope="module")
def tapped(
    launch: ServerFactory,
    upstream: FakeUpstream,
    tcp_reader: TcpFrameReader,
    pki: Pki,
    workdir: Path,
) -> ServerProcess:
    config = make_config([upstream.address])
    config["dnstap"] = {"tcp": f"127.0.0.1:{tcp_reader.port}", "identity": "gw-tcp",
                        "queue": 8}  # fmt: skip
    config["encrypted"] = {
        "dot": [f"127.0.0.1:{free_port()}"],
        "doh": [f"127.0.0.1:{free_port()}"],
        "certificate": str(pki.cert),
        "key": str(pki.key),
        "server_name": SERVER_NAME,
    }
    server = launch(config, "tcp-tap")
    assert wait_for(lambda: tcp_reader.handshakes), tcp_reader.errors
    return server


def qname(message: Any) -> str:
    wire = message.query_message if message.type == 5 else message.response_message
    return str(dns.message.from_wire(bytes(wire)).question[0].name)


def test_each_client_transport_has_its_own_dnstap_socket_protocol(
    tapped: ServerProcess, tcp_reader: TcpFrameReader, pki: Pki
) -> None:
    names = {transport: fresh_name() for transport in ("UDP", "TCP", "DOT", "DOH")}
    ask(query(names["UDP"], edns=True), tapped.address)
    ask(query(names["TCP"], edns=True), tapped.address, transport="tcp")
    assert dot_query(tapped, pki, names["DOT"]).answer
    with resolving_to_loopback(), doh_client(pki) as client:
        wire = query(names["DOH"]).to_wire()
        reply = client.post(doh_url(tapped), content=wire,
                            headers={"content-type": "application/dns-message"})  # fmt: skip
        assert reply.status_code == 200

    def seen() -> dict[tuple[str, str], str]:
        return {
            (qname(m.message), TYPES[m.message.type]): PROTOCOLS[m.message.socket_protocol]
            for m in tcp_reader.messages()
            if m.message.type in (5, 6)
        }

    expected = {
        (name, kind): transport
        for transport, name in names.items()
        for kind in ("CLIENT_QUERY", "CLIENT_RESPONSE")
    }
    assert wait_for(lambda: expected.items() <= seen().items()), (seen(), tcp_reader.errors)
    assert {m.identity for m in tcp_reader.messages()} == {b"gw-tcp"}
    assert tcp_reader.errors == []


def test_a_tcp_reader_that_restarts_gets_traffic_again_and_drops_are_counted(
    tapped: ServerProcess, tcp_reader: TcpFrameReader
) -> None:
    assert wait_for(lambda: tcp_reader.frames)
    before = sample(metrics(tapped), 'dnswarden_dnstap_frames_total{outcome="dropped"}')
    tcp_reader.close()
    for _ in range(20):  # 40 frames for a queue of 8, while nobody reads
        ask(query(fresh_name(), edns=True), tapped.address)
    dropped = wait_for(
        lambda: sample(metrics(tapped), 'dnswarden_dnstap_frames_total{outcome="dropped"}')
        >= before + 20
    )
    assert dropped, metrics(tapped)
    handshakes, received = tcp_reader.handshakes, len(tcp_reader.frames)
    tcp_reader.start()  # the same port
    assert wait_for(lambda: tcp_reader.handshakes > handshakes, 15.0), "no reconnect"
    name = fresh_name()
    ask(query(name, edns=True), tapped.address)
    assert wait_for(
        lambda: any(qname(m.message) == name for m in tcp_reader.messages()[received:])
    ), tcp_reader.errors
    sent = sample(metrics(tapped), 'dnswarden_dnstap_frames_total{outcome="sent"}')
    assert sent >= len(tcp_reader.frames) - 1  # the last may still be in flight on our side


# --- syslog -----------------------------------------------------------------------------------


class SyslogReceiver:
    """Keeps every syslog message that reaches a listening socket: TLS with RFC 5425 octet
    counting (and whether each connection ended with a close_notify), a Unix datagram socket
    (one message per datagram) or a Unix stream socket (LF-ended messages)."""

    def __init__(self, kind: str, path: Path | None = None,
                 context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.kind = kind
        self.context = context
        self.messages: list[bytes] = []
        self.errors: list[str] = []
        self.clean_closes = 0
        self.unclean_closes = 0
        self.peers: list[Any] = []  # the subject of each client certificate
        if kind == "tls":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
        else:
            assert path is not None
            stream = kind == "unix-stream"
            self.sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
            )
            self.sock.bind(str(path))
        self.path = path
        if kind != "unix-dgram":
            self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def target(self) -> str:
        if self.kind == "tls":
            return f"tls://127.0.0.1:{self.sock.getsockname()[1]}#{SERVER_NAME}"
        return f"unix://{self.path}"

    def _serve(self) -> None:
        if self.kind == "unix-dgram":
            while True:
                try:
                    self.messages.append(self.sock.recv(65535))
                except OSError:
                    return
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True,
                                                suppress_ragged_eofs=False)  # fmt: skip
                peer = conn.getpeercert()  # type: ignore[attr-defined]
                if peer:
                    self.peers.append(peer["subject"])
            buffer = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except ssl.SSLEOFError:  # the peer closed without a close_notify
                    self.unclean_closes += 1
                    return
                if not chunk:
                    self.clean_closes += 1
                    return
                buffer += chunk
                buffer = self._split(buffer)
        except (OSError, AssertionError) as error:
            self.errors.append(repr(error))
        finally:
            conn.close()

    def _split(self, buffer: bytes) -> bytes:
        """Take the complete messages off `buffer`; the rest."""
        while True:
            if self.kind == "unix-stream":
                message, newline, rest = buffer.partition(b"\n")
                if not newline:
                    return buffer
            else:  # RFC 5425 4.3: MSG-LEN SP SYSLOG-MSG, MSG-LEN = NONZERO-DIGIT 0*DIGIT
                length, space, rest = buffer.partition(b" ")
                if not space:
                    return buffer
                assert length.isdigit() and length[:1] != b"0", buffer[:40]
                if len(rest) < int(length):
                    return buffer
                message, rest = rest[: int(length)], rest[int(length) :]
            self.messages.append(message)
            buffer = rest

    def events(self) -> list[dict[str, Any]]:
        return [parse_rfc5424(m) for m in list(self.messages)]

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def tls_context(pki: Pki, clients: Path | None = None) -> ssl.SSLContext:
    """The receiver's side; with `clients` (a CA), it asks for a client certificate and
    accepts only one that CA signed (RFC 5425 4.2: mutual authentication)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    if clients is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(clients)
    return context


def client_certificate(pki: Pki) -> tuple[Path, Path]:
    """A certificate for dnswarden as a TLS client (extendedKeyUsage clientAuth), from the
    test CA."""
    directory = pki.directory
    key, csr, cert, ext = (directory / f"syslog-client.{e}" for e in ("key", "csr", "pem", "ext"))
    if cert.exists():
        return cert, key
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")  # fmt: skip
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=gw-syslog"],
        ["x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", directory / "ca.key",
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.mark.parametrize("kind", ["tls", "tls-mutual", "unix-dgram", "unix-stream"])
def test_the_audit_trail_reaches_a_syslog_receiver_as_rfc5424(
    launch: ServerFactory,
    upstream: FakeUpstream,
    pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
) -> None:
    path = tmp_path_factory.mktemp("sl") / "log.sock"  # short: a socket path has 107 bytes
    tls = kind.startswith("tls")
    context = tls_context(pki, pki.ca if kind == "tls-mutual" else None) if tls else None
    receiver = SyslogReceiver("tls" if tls else kind, path, context)
    try:
        config = make_config([upstream.address])
        config["syslog"] = {"target": receiver.target, "hostname": "gw-syslog"}
        if tls:
            config["syslog"]["ca_file"] = str(pki.ca)
        if kind == "tls-mutual":
            cert, key = client_certificate(pki)
            config["syslog"].update(certificate=str(cert), key=str(key))
        server = launch(config, f"syslog-{kind}")
        ask(query("www.tiktok.com.", edns=True), server.address)
        event = server.wait_for_event(lambda e: e.get("event") == "blocked")
        assert event is not None
        assert server.stop() == 0

        def blocked() -> list[dict[str, Any]]:
            return [e for e in receiver.events() if e["msgid"] == "blocked"]

        assert wait_for(blocked), (receiver.messages[-3:], receiver.errors)
        message = blocked()[0]
        assert int(message["pri"]) == 16 * 8 + 6  # local0.info
        assert (message["hostname"], message["app"], message["procid"]) == (
            "gw-syslog", "dnswarden", str(server.pid)
        )  # fmt: skip
        assert json.loads(message["msg"]) == event
        params = message["sd"]["dnswarden@32473"]
        assert (params["qname"], params["entry"]) == (event["qname"], "tiktok")
        assert wait_for(lambda: [e for e in receiver.events() if e["msgid"] == "shutdown"])
        assert next(e["msgid"] for e in receiver.events()) == "startup"
        assert receiver.errors == []
        if tls:  # RFC 5425 4.4: close_notify, then close
            assert wait_for(lambda: receiver.clean_closes == 1)
            assert receiver.unclean_closes == 0
        if kind == "tls-mutual":
            assert receiver.peers == [((("commonName", "gw-syslog"),),)]
    finally:
        receiver.close()


def test_a_tls_receiver_the_ca_did_not_sign_gets_nothing(
    launch: ServerFactory, upstream: FakeUpstream, pki: Pki, workdir: Path
) -> None:
    other = make_pki(workdir / "other-pki")  # the same name, another CA
    receiver = SyslogReceiver("tls", context=tls_context(other))
    try:
        config = make_config([upstream.address])
        config["syslog"] = {"target": receiver.target, "ca_file": str(pki.ca), "queue": 4}
        server = launch(config, "syslog-untrusted")
        for number in range(12):  # more events than the thread holds plus the queue
            ask(query(f"n{number}.tiktok.com.", edns=True), server.address)
        assert wait_for(
            lambda: sample(metrics(server), 'dnswarden_syslog_messages_total{outcome="dropped"}')
        )
        assert sample(metrics(server), 'dnswarden_syslog_messages_total{outcome="sent"}') == 0
        assert receiver.messages == []
    finally:
        receiver.close()

