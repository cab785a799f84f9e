"""The served certificate's expiry, read back from its PEM file: hand-built DER for the edge
cases (UTCTime's century, GeneralizedTime, no version field, long lengths, damage), and real
certificates made by openssl, checked against what openssl itself prints; and how what the
application writes leaves a TLS connection (one write per read, records joined or kept)."""

from __future__ import annotations

import asyncio
import base64
import calendar
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from resolver.shell.encrypted import served_until
from resolver.shell.tls import ServerNames, TlsConnection, certificate_not_after, server_context


def der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def certificate(not_after: bytes, tag: int = 0x17, version: bool = True,
                issuer: bytes = b"") -> bytes:  # fmt: skip
    """A certificate skeleton: only what the reader walks past, then the validity."""
    validity = der(0x30, der(0x17, b"200101000000Z") + der(tag, not_after))
    tbs = (der(0xA0, der(0x02, b"\x02")) if version else b"") + der(0x02, b"\x01\x23")
    tbs += der(0x30, der(0x06, b"\x2a\x86\x48\xce\x3d\x04\x03\x02")) + der(0x30, issuer)
    tbs += validity + der(0x30, b"subject")
    return der(0x30, der(0x30, tbs) + der(0x30, b"sigalg") + der(0x03, b"\x00sig"))


def pem(body: bytes, before: bytes = b"") -> bytes:
    text = base64.encodebytes(body)
    return before + b"-----BEGIN CERTIFICATE-----\n" + text + b"-----END CERTIFICATE-----\n"


def utc(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0)))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (certificate(b"270301120000Z"), utc(2027, 3, 1, 12, 0, 0)),
        (certificate(b"491231235959Z"), utc(2049, 12, 31, 23, 59, 59)),  # 49: 2049
        (certificate(b"500101000000Z"), utc(1950, 1, 1, 0, 0, 0)),  # 50: 1950 (RFC 5280)
        (certificate(b"20710615083000Z", tag=0x18), utc(2071, 6, 15, 8, 30, 0)),
        (certificate(b"270301120000Z", version=False), utc(2027, 3, 1, 12, 0, 0)),  # v1
        (certificate(b"270301120000Z", issuer=b"x" * 300), utc(2027, 3, 1, 12, 0, 0)),
    ],
)
def test_not_after_of_hand_built_certificates(body: bytes, expected: float) -> None:
    assert certificate_not_after(pem(body)) == expected
    # the chain's first certificate is the leaf; text before it (a bundle's comments) is skipped
    chain = pem(body, b"# leaf\n") + pem(certificate(b"300101000000Z"))
    assert certificate_not_after(chain) == expected


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\n!!notbase64!!\n-----END CERTIFICATE-----\n",
        pem(b"\x30\x05\x30\x03"),  # truncated
        pem(b"\x30\x85\x00\x00\x00\x00\x00"),  # a five-byte length
        pem(certificate(b"270301120000")),  # no Z
        pem(certificate(b"2703011200Z")),  # too short
        pem(certificate(b"27030112000aZ")),  # not digits
        pem(certificate(b" 70301120000Z")),  # int() would take the space
        pem(certificate(b"270301120000Z", tag=0x04)),  # not a time
        pem(der(0x31, b"")),  # not a SEQUENCE
    ],
)
def test_no_readable_certificate_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        certificate_not_after(text)


@pytest.mark.parametrize("days", [1, 825, 30000])  # 30000 days: past 2049, a GeneralizedTime
def test_not_after_of_openssl_certificates(days: int, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", str(days), "-subj", "/CN=dns.test"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    printed = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(cert)],
                             check=True, capture_output=True, text=True, timeout=30)  # fmt: skip
    expected = ssl.cert_time_to_seconds(printed.stdout.strip().removeprefix("notAfter="))
    assert certificate_not_after(cert.read_bytes()) == expected
    assert served_until(str(cert)) == expected


def test_served_until_is_none_when_the_file_cannot_be_read_back(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    assert served_until(str(tmp_path / "key.pem")) is None
    assert served_until(str(tmp_path / "missing.pem")) is None
    assert served_until(None) is None


# --- what the application writes, and how it goes out ------------------------------------------


class _Echo(asyncio.Protocol):
    """The application: writes back each chunk it is handed."""

    def __init__(self, tls: TlsConnection) -> None:
        self.tls = tls

    def data_received(self, data: bytes) -> None:
        self.tls.write(data.upper())


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 4321) if name == "peername" else default


class _Loop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> asyncio.Handle:
        self.soon.append(callback)
        return SimpleNamespace(cancel=lambda: self.soon.remove(callback))  # type: ignore[return-value]

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return SimpleNamespace(cancel=lambda: None)  # type: ignore[return-value]

    def run_soon(self) -> None:
        while self.soon:
            self.soon.pop(0)()


@pytest.fixture(scope="module")
def server_context_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=dns.test"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    return str(cert), str(key)


class _Session:
    """A TlsConnection after its handshake with an in-memory client."""

    def __init__(self, files: tuple[str, str], join_records: bool) -> None:
        names = ServerNames()
        self.loop = _Loop()
        listener = SimpleNamespace(
            admit=lambda tls: True, release=lambda tls: None, expects_proxy_header=lambda p: False,
            context=server_context(*files, ("dot",), names), loop=self.loop,
            config=SimpleNamespace(handshake_timeout=5.0), server_names=names,
            application=_Echo, handshake_failed=lambda reason: None,
        )  # fmt: skip
        self.server = TlsConnection(listener)  # type: ignore[arg-type]
        self.server.join_records = join_records
        self.transport = _Transport()
        self.server.connection_made(self.transport)  # type: ignore[arg-type]
        client_context = ssl.create_default_context()
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_context.wrap_bio(self.incoming, self.outgoing)
        for _ in range(10):
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.server.data_received(self.outgoing.read())
                self.loop.run_soon()
                self.receive()
        self.server.data_received(self.outgoing.read())  # the client's Finished
        self.loop.run_soon()
        self.receive()
        assert self.server.app is not None

    def receive(self) -> int:
        """Hand the server's writes to the client; how many there were."""
        writes = len(self.transport.writes)
        for data in self.transport.writes:
            self.incoming.write(data)
        self.transport.writes.clear()
        return writes

    def records(self) -> list[bytes]:
        """What the client decrypts, one TLS record at a time."""
        out = []
        while True:
            try:
                chunk = self.client.read(65536)
            except ssl.SSLWantReadError:
                return out
            if not chunk:  # close_notify
                return out
            out.append(chunk)


@pytest.mark.parametrize("join_records", [True, False])
def test_the_answers_to_one_read_go_out_in_one_write(
    server_context_files: tuple[str, str], join_records: bool
) -> None:
    session = _Session(server_context_files, join_records)
    session.records()  # session tickets
    for text in (b"one", b"two", b"three"):
        session.client.write(text)  # a record each
    session.server.data_received(session.outgoing.read())
    assert session.receive() == 1
    records = session.records()
    assert b"".join(records) == b"ONETWOTHREE"
    assert records == ([b"ONETWOTHREE"] if join_records else [b"ONE", b"TWO", b"THREE"])


def test_later_writes_go_out_together_at_the_end_of_the_turn(
    server_context_files: tuple[str, str],
) -> None:
    session = _Session(server_context_files, join_records=True)
    session.records()
    session.server.write(b"late ")
    session.server.write(b"answers")
    assert session.receive() == 0
    session.loop.run_soon()
    assert session.receive() == 1
    assert session.records() == [b"late answers"]


def test_close_sends_what_was_written_first(server_context_files: tuple[str, str]) -> None:
    session = _Session(server_context_files, join_records=False)
    session.records()
    session.server.write(b"last words")
    session.server.close()
    session.receive()
    assert session.records() == [b"last words"]
    assert session.client.read(1) == b""  # then close_notify
    assert session.transport.closed and not session.loop.soon
