"""The `syslog` section: targets, the TLS receiver's CA and the client certificate a receiver
that authenticates its senders asks for (RFC 5425 4.2), with every mistake at its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.config import ConfigError, parse_config

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    (tmp_path / "client.pem").write_text(CERT)
    (tmp_path / "client.key").write_text(KEY)
    (tmp_path / "ca.pem").write_text(CERT)
    return tmp_path


def parse(text: str, base: Path) -> object:
    return parse_config(text, "test.yaml", base_dir=base, known_lists=frozenset())


@pytest.mark.parametrize(
    ("target", "parts"),
    [
        ("udp://192.0.2.10", ("udp", "192.0.2.10:514", None, None)),
        ("tcp://192.0.2.10:1601", ("tcp", "192.0.2.10:1601", None, None)),
        ("tls://192.0.2.10#SIEM.example.gov", ("tls", "192.0.2.10:6514", None, "siem.example.gov")),
        ("unix:///dev/log", ("unix", None, "/dev/log", None)),
    ],
)
def test_targets(target: str, parts: tuple[object, ...], tmp_path: Path) -> None:
    config = parse(f"syslog:\n  target: {target}\n", tmp_path)
    transport, endpoint, path, name = config.syslog.parts  # type: ignore[attr-defined]
    assert (transport, str(endpoint) if endpoint else None, path, name) == parts


def test_a_client_certificate_for_a_receiver_that_authenticates_senders(pem: Path) -> None:
    config = parse(
        "syslog:\n  target: tls://192.0.2.10#siem.example.gov\n  ca_file: ca.pem\n"
        "  certificate: client.pem\n  key: client.key\n",
        pem,
    )
    syslog = config.syslog  # type: ignore[attr-defined]
    assert (syslog.certificate, syslog.key) == (str(pem / "client.pem"), str(pem / "client.key"))


BAD = [
    ("  target: tls://192.0.2.10\n", [(2, "syslog.target", "name the certificate")]),
    ("  target: udp://192.0.2.10\n  ca_file: ca.pem\n",
     [(3, "syslog.ca_file", "only used with tls")]),
    ("  target: tcp://192.0.2.10\n  certificate: client.pem\n  key: client.key\n",
     [(3, "syslog.certificate", "only used with tls"), (4, "syslog.key", "only used with tls")]),
    ("  target: tls://192.0.2.10#s.example\n  certificate: client.pem\n",
     [(3, "syslog.key", "required with certificate")]),
    ("  target: tls://192.0.2.10#s.example\n  key: client.key\n",
     [(3, "syslog.certificate", "required with key")]),
    ("  target: tls://192.0.2.10#s.example\n  certificate: client.key\n  key: client.pem\n",
     [(3, "syslog.certificate", "holds no PEM certificate"),
      (4, "syslog.key", "holds no PEM private key")]),
    ("  target: unix://dev/log\n", [(2, "syslog.target", "absolute path")]),
    ("  target: udp://192.0.2.10\n  facility: locl0\n", [(3, "syslog.facility", "local0")]),
    ("  target: udp://192.0.2.10\n  sd_id: dnswarden\n", [(3, "syslog.sd_id", "name@")]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_each_mistake_is_reported_with_its_line_and_key(
    text: str, expected: list[tuple[int, str, str]], pem: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        parse("syslog:\n" + text, pem)
    found = [(p.line, p.key, p.message) for p in info.value.problems]
    assert len(found) == len(expected), found
    for (line, key, message), (want_line, want_key, want_text) in zip(found, expected, strict=True):
        assert (line, key) == (want_line, want_key), found
        assert want_text in message, message
