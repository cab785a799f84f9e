"""`dnswarden profile`: the Apple configuration profile read back with plistlib, key by key,
and the inputs that cannot make one."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from resolver.commands.cli import main
from resolver.commands.profile import apple_profile, private_dns_host


def written(tmp_path: Path, *args: str) -> dict[str, object]:
    output = tmp_path / "out.mobileconfig"
    assert main(["profile", "apple", *args, "-o", str(output)]) == 0
    return plistlib.loads(output.read_bytes())


def test_doh_profile_with_a_device_id(tmp_path: Path) -> None:
    profile = written(tmp_path, "--server-url", "https://DNS.example.gov/dns-query",
                      "--device-id", "Phone-0117", "--address", "192.0.2.53",
                      "--address", "[2001:db8::53]", "--exclude-ssid", "Ministry-Office",
                      "--prohibit-disablement", "--organization", "Ministry")  # fmt: skip
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadVersion"] == 1
    assert profile["PayloadIdentifier"] == "gov.example.dnswarden"
    assert profile["PayloadScope"] == "System"
    assert profile["PayloadOrganization"] == "Ministry"
    assert profile["PayloadDisplayName"] == "dnswarden DNS over HTTPS (phone-0117)"
    (payload,) = profile["PayloadContent"]  # type: ignore[misc]
    assert payload["PayloadType"] == "com.apple.dnsSettings.managed"
    assert payload["PayloadVersion"] == 1
    assert payload["PayloadIdentifier"] == "gov.example.dnswarden.dns"
    assert payload["PayloadUUID"] != profile["PayloadUUID"]
    assert payload["DNSSettings"] == {
        "DNSProtocol": "HTTPS",
        "ServerURL": "https://dns.example.gov/dns-query/phone-0117",
        "ServerAddresses": ["192.0.2.53", "2001:db8::53"],
    }
    assert payload["OnDemandRules"] == [
        {"Action": "Disconnect", "SSIDMatch": ["Ministry-Office"]},
        {"Action": "Connect"},
    ]
    assert payload["ProhibitDisablement"] is True


def test_dot_profile_names_the_device_in_the_server_name(tmp_path: Path) -> None:
    profile = written(tmp_path, "--server-url", "tls://dns.example.gov", "--device-id", "tab-2")
    (payload,) = profile["PayloadContent"]  # type: ignore[misc]
    assert payload["DNSSettings"] == {"DNSProtocol": "TLS",
                                      "ServerName": "tab-2.dns.example.gov"}  # fmt: skip
    assert "OnDemandRules" not in payload and "ProhibitDisablement" not in payload
    assert "PayloadOrganization" not in profile


def test_the_same_input_makes_the_same_profile() -> None:
    first = apple_profile("https://dns.example.gov:8443/dns-query", "p1")
    assert first == apple_profile("https://dns.example.gov:8443/dns-query", "p1")
    assert first["PayloadContent"][0]["DNSSettings"]["ServerURL"] == (
        "https://dns.example.gov:8443/dns-query/p1"
    )
    other = apple_profile("https://dns.example.gov:8443/dns-query", "p2")
    assert other["PayloadUUID"] != first["PayloadUUID"]


def test_default_output_file_is_named_after_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "apple", "--server-url", "tls://dns.example.gov"]) == 0
    assert main(["profile", "apple", "--server-url", "tls://dns.example.gov",
                 "--device-id", "p9"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dns.example.gov.mobileconfig",
                                                          "p9.mobileconfig"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--server-url", "http://dns.example.gov/dns-query"], "expected https://"),
        (["--server-url", "https://dns.example.gov/resolve"], "the DoH path is /dns-query"),
        (["--server-url", "https://dns.example.gov/dns-query?x=1"], "the DoH path"),
        (["--server-url", "tls://dns.example.gov:8853"], "port 853"),
        (["--server-url", "https://localhost/dns-query"], "fully qualified"),
        (["--server-url", "https://dns.example.gov:x/dns-query"], "not a number"),
        (["--server-url", "tls://dns.example.gov", "--device-id", "bad_id"], "invalid device"),
        (["--server-url", "tls://dns.example.gov", "--address", "dns.example.gov"],
         "is a hostname"),
        (["--server-url", "tls://dns.example.gov", "--exclude-ssid", "x" * 33], "1 to 32 bytes"),
    ],
)  # fmt: skip
def test_unusable_input(args: list[str], problem: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["profile", "apple", *args, "-o", str(tmp_path / "x")]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("name", "device", "host"),
    [("dns.example.gov", None, "dns.example.gov"),
     ("DNS.example.gov.", "P-1", "p-1.dns.example.gov")],
)  # fmt: skip
def test_private_dns_host(name: str, device: str | None, host: str) -> None:
    assert private_dns_host(name, device) == host


def test_android_without_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "android", "--server-name", "dns.example.gov", "--device-id",
                 "phone-7", "--no-check"]) == 0  # fmt: skip
    assert capsys.readouterr().out == "Private DNS hostname: phone-7.dns.example.gov\n"
