"""Device ids: one DNS label, in a TLS server name or a DoH path."""

from __future__ import annotations

import pytest

from resolver.protocol.devices import device_from_server_name, is_device_id, parse_device_id


@pytest.mark.parametrize(
    ("text", "device"),
    [("phone-17", "phone-17"), ("Phone-17", "phone-17"), (" a ", "a"), ("0", "0"),
     ("x" * 63, "x" * 63)],
)  # fmt: skip
def test_valid_ids(text: str, device: str) -> None:
    assert parse_device_id(text) == device


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "empty"), ("-phone", "invalid"), ("phone-", "invalid"), ("pho_ne", "invalid"),
     ("a.b", "invalid"), ("x" * 64, "longer than 63"), ("tél", "invalid"),
     ('a"b', "invalid"), ("a\nb", "invalid")],
)  # fmt: skip
def test_invalid_ids(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_device_id(text)
    assert not is_device_id(text.strip().lower()) or not text.strip()


@pytest.mark.parametrize(
    ("server_name", "device"),
    [
        ("phone-17.dns.example.gov", "phone-17"),
        ("PHONE-17.DNS.Example.gov.", "phone-17"),
        ("dns.example.gov", None),  # our own name: no device
        (None, None),
        ("", None),
        ("a.b.dns.example.gov", None),  # two labels: no device id
        ("-x.dns.example.gov", None),
        ("phone.other.gov", None),
        ("phone-17.xdns.example.gov", None),
    ],
)
def test_device_from_server_name(server_name: str | None, device: str | None) -> None:
    assert device_from_server_name(server_name, "dns.example.gov") == device
