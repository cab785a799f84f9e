"""The served certificate's expiry, read back from its PEM file: hand-built DER for the edge
cases (UTCTime's century, GeneralizedTime, no version field, long lengths, damage), and real
certificates made by openssl, checked against what openssl itself prints."""

from __future__ import annotations

import base64
import calendar
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from resolver.shell.encrypted import served_until
from resolver.shell.tls import certificate_not_after


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
