"""The `encrypted` section and device ids in `groups`: values, defaults, and every mistake
reported with its line and key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from resolver.config import ConfigError, EncryptedConfig, Endpoint, parse_config

KNOWN = frozenset({"tiktok"})
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest.fixture()
def tls_dir(tmp_path: Path) -> Path:
    (tmp_path / "cert.pem").write_text(CERT)
    (tmp_path / "key.pem").write_text(KEY)
    (tmp_path / "der.bin").write_bytes(b"\x30\x82\x01\x0a")
    return tmp_path


def parse(text: str, base: Path) -> EncryptedConfig:
    return parse_config(text, "test.yaml", base_dir=base, known_lists=KNOWN).encrypted


def problems(text: str, base: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", base_dir=base, known_lists=KNOWN)
    return [(p.line, p.key, p.message) for p in info.value.problems]


GOOD = """\
encrypted:
  dot: ["192.0.2.53", "[2001:db8::53]:8853"]
  doh: ["192.0.2.53"]
  certificate: cert.pem
  key: key.pem
  server_name: DNS.Example.gov.
"""


def test_defaults_listen_nowhere() -> None:
    config = EncryptedConfig()
    assert not config.enabled and config.dot == config.doh == ()
    assert (config.ddr, config.max_connections, config.idle_timeout) == (True, 1000, 30.0)


def test_a_full_section(tls_dir: Path) -> None:
    config = parse(GOOD + "  trusted_proxies: [10.9.0.0/24]\n  proxy_protocol: true\n"
                   "  idle_timeout: 2m\n  max_header_bytes: 8KiB\n", tls_dir)  # fmt: skip
    assert config.enabled
    assert config.dot == (Endpoint("192.0.2.53", 853), Endpoint("2001:db8::53", 8853))
    assert config.doh == (Endpoint("192.0.2.53", 443),)
    assert config.certificate == str(tls_dir / "cert.pem")
    assert config.key == str(tls_dir / "key.pem")
    assert config.server_name == "dns.example.gov"
    assert config.trusted_proxies == (ipaddress.ip_network("10.9.0.0/24"),)
    assert (config.proxy_protocol, config.idle_timeout, config.max_header_bytes) == (
        True, 120.0, 8192)  # fmt: skip


def test_ddr_hints_default_to_the_specific_listener_addresses(tls_dir: Path) -> None:
    config = parse(GOOD.replace('"192.0.2.53", "[2001:db8::53]:8853"', '"0.0.0.0", "[::1]"'),
                   tls_dir)  # fmt: skip
    assert [str(a) for a in config.ddr_hints()] == ["192.0.2.53", "::1"]
    hinted = parse(GOOD + '  hints: ["198.51.100.1"]\n', tls_dir)
    assert [str(a) for a in hinted.ddr_hints()] == ["198.51.100.1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("encrypted:\n  dot: [\"127.0.0.1:853\"]\n",
         [(2, "encrypted.certificate", "required when dot or doh lists an address"),
          (2, "encrypted.key", "required when dot or doh lists an address"),
          (2, "encrypted.server_name", "required when dot or doh lists an address")]),
        (GOOD.replace("cert.pem", "missing.pem"),
         [(4, "encrypted.certificate", "does not exist")]),
        (GOOD.replace("cert.pem", "der.bin"), [(4, "encrypted.certificate", "holds no PEM")]),
        (GOOD.replace("key: key.pem", "key: cert.pem"), [(5, "encrypted.key", "holds no PEM")]),
        (GOOD.replace("DNS.Example.gov.", "localhost"),
         [(6, "encrypted.server_name", "fully qualified")]),
        (GOOD.replace("DNS.Example.gov.", "'*.dns.example.gov'"),
         [(6, "encrypted.server_name", "without '*.'")]),
        (GOOD.replace('doh: ["192.0.2.53"]', 'doh: ["dns.example.gov"]'),
         [(3, "encrypted.doh[0]", "is a hostname")]),
        (GOOD.replace('doh: ["192.0.2.53"]', 'doh: ["192.0.2.53:853"]'),
         [(3, "encrypted.doh[0]", "would share a port with encrypted.dot[0] 192.0.2.53:853")]),
        (GOOD.replace('doh: ["192.0.2.53"]', 'doh: ["0.0.0.0:5353"]')
         + 'listen: ["127.0.0.1:5353"]\n',
         [(3, "encrypted.doh[0]", "would share a port with DNS listener 127.0.0.1:5353")]),
        (GOOD.replace('doh: ["192.0.2.53"]', 'doh: ["127.0.0.1:9153"]'),
         [(3, "encrypted.doh[0]", "would share a port with the metrics endpoint")]),
        (GOOD + "  proxy_protocol: true\n",
         [(7, "encrypted.proxy_protocol", "needs trusted_proxies")]),
        (GOOD + "  trusted_proxies: [0.0.0.0/0, 10.0.0.1/8]\n",
         [(7, "encrypted.trusted_proxies[1]", "host bits set")]),
        (GOOD + "  hints: ['::']\n", [(7, "encrypted.hints[0]", "no address a client can reach")]),
        (GOOD + "  max_header_bytes: 100\n", [(7, "encrypted.max_header_bytes", "1024 bytes")]),
        (GOOD + "  max_streams: 0\n", [(7, "encrypted.max_streams", "at least 1")]),
        (GOOD + "  ddr: 1\n", [(7, "encrypted.ddr", "expected true or false")]),
        (GOOD + "  handshake_timeout: 0s\n",
         [(7, "encrypted.handshake_timeout", "greater than zero")]),
        (GOOD + "  doh_path: /x\n", [(7, "encrypted.doh_path", "unknown key")]),
    ],
)  # fmt: skip
def test_mistakes_are_located(text: str, expected: list[tuple[int, str, str]],
                              tls_dir: Path) -> None:  # fmt: skip
    found = problems(text, tls_dir)
    assert [(line, key) for line, key, _ in found] == [(line, key) for line, key, _ in expected]
    for (_, _, message), (_, _, wanted) in zip(found, expected, strict=True):
        assert wanted in message


def test_groups_take_device_ids(tls_dir: Path) -> None:
    config = parse_config(
        "groups:\n  phones:\n    devices: [Phone-0117, tab-2]\n"
        "  lab:\n    subnets: [10.1.0.0/16]\n    devices: [lab-1]\n",
        "test.yaml", base_dir=tls_dir, known_lists=KNOWN,
    )  # fmt: skip
    assert [(g.name, g.devices) for g in config.groups] == [
        ("phones", ("phone-0117", "tab-2")), ("lab", ("lab-1",))]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("groups:\n  phones:\n    devices: [phone_1]\n",
         [(3, "groups.phones.devices[0]", "invalid device id")]),
        ("groups:\n  phones:\n    devices: [7]\n",
         [(3, "groups.phones.devices[0]", "expected a device id")]),
        ("groups:\n  a:\n    devices: [p1]\n  b:\n    devices: [P1]\n",
         [(5, "groups.b.devices[0]", "already in groups.a.devices[0] (line 3)")]),
        ("groups:\n  a:\n    devices: [p1, p1]\n",
         [(3, "groups.a.devices[1]", "listed twice")]),
        ("groups:\n  a:\n    block: [tiktok]\n",
         [(2, "groups.a.subnets", "required")]),
    ],
)  # fmt: skip
def test_device_mistakes(text: str, expected: list[tuple[int, str, str]], tls_dir: Path) -> None:
    found = problems(text, tls_dir)
    assert [(line, key) for line, key, _ in found] == [(line, key) for line, key, _ in expected]
    for (_, _, message), (_, _, wanted) in zip(found, expected, strict=True):
        assert wanted in message
