"""`dnswarden profile`: provisioning managed devices to use our encrypted listeners.

`apple` writes a configuration profile (`.mobileconfig`) with a `com.apple.dnsSettings.managed`
payload, which an MDM (or a user) installs on iOS, iPadOS and macOS: DNS over HTTPS to
`https://<name>/dns-query[/<device-id>]` or DNS over TLS to `[<device-id>.]<name>`, optionally
off on listed Wi-Fi networks (on-demand rules) and, on supervised devices, impossible to turn off.
The payload UUIDs derive from its content, so the same command makes the same profile and a
re-installed profile replaces the old one rather than stacking.

`android` prints the Private DNS hostname to enter (or push through the MDM's
`private_dns_host` policy) and checks that the certificate our DoT listener serves for that name
verifies: Android refuses the setting otherwise, and every query of the phone fails with it.
"""

from __future__ import annotations

import argparse
import plistlib
import socket
import ssl
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from resolver.config import parse_endpoint
from resolver.protocol import names
from resolver.protocol.devices import parse_device_id
from resolver.protocol.doh import DOH_PATH

DNS_SETTINGS = "com.apple.dnsSettings.managed"
DOT_PORT = 853
CHECK_TIMEOUT = 10.0


def add_parser(commands: Any) -> None:
    """The `profile` command and its two platforms, on the CLI's subparsers."""
    profile = commands.add_parser(
        "profile",
        help="provision phones and laptops for encrypted DNS: an Apple configuration profile, "
        "or Android's Private DNS hostname with a certificate check",
        description="See docs/encrypted-dns.md for the MDM flows.",
    )
    platforms = profile.add_subparsers(dest="platform", metavar="PLATFORM", required=True)
    apple = platforms.add_parser(
        "apple", help="write a .mobileconfig with a DNSSettings payload (DoH or DoT)"
    )
    apple.add_argument(
        "--server-url",
        required=True,
        metavar="URL",
        help="https://NAME[:PORT]/dns-query for DNS over HTTPS, tls://NAME for DNS over TLS",
    )
    apple.add_argument("--device-id", metavar="ID", help="this device's id (DoH path, DoT name)")
    apple.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IP",
        help="the server's addresses, so the device needs no DNS to find it; repeatable",
    )
    apple.add_argument(
        "--exclude-ssid",
        action="append",
        default=[],
        metavar="SSID",
        help="Wi-Fi networks where the setting is off (the office, already enforced); repeatable",
    )
    apple.add_argument(
        "--prohibit-disablement",
        action="store_true",
        help="supervised devices: the user cannot turn the setting off",
    )
    apple.add_argument(
        "--identifier",
        default="gov.example.dnswarden",
        metavar="ID",
        help="reverse-DNS prefix of the payload identifiers (default gov.example.dnswarden)",
    )
    apple.add_argument("--organization", default="", metavar="ORG", help="shown on the device")
    apple.add_argument("-o", "--output", metavar="FILE", help="default: ID-or-NAME.mobileconfig")
    android = platforms.add_parser(
        "android", help="print the Private DNS hostname and check the certificate served for it"
    )
    android.add_argument(
        "--server-name", required=True, metavar="NAME", help="e.g. dns.example.gov"
    )
    android.add_argument("--device-id", metavar="ID", help="this device's id")
    android.add_argument(
        "--connect",
        metavar="IP[:PORT]",
        help="the DoT listener to check (default: NAME itself, port 853)",
    )
    android.add_argument(
        "--ca-file", metavar="FILE", help="CA certificates to trust (default: the system's)"
    )
    android.add_argument("--no-check", action="store_true", help="print the hostname only")


def run(args: argparse.Namespace) -> int:
    """0 done, 1 the certificate check failed, 2 the arguments are unusable."""
    try:
        if args.platform == "apple":
            return _apple(args)
        return _android(args)
    except ValueError as error:
        print(f"dnswarden profile {args.platform}: {error}", file=sys.stderr)
        return 2


# --- Apple ---------------------------------------------------------------------------------


def apple_profile(
    server_url: str,
    device: str | None = None,
    addresses: Sequence[str] = (),
    exclude_ssids: Sequence[str] = (),
    prohibit_disablement: bool = False,
    identifier: str = "gov.example.dnswarden",
    organization: str = "",
) -> dict[str, Any]:
    """The configuration profile as a plist-ready dict; ValueError for unusable input."""
    device = parse_device_id(device) if device else None
    settings = dns_settings(server_url, device)
    if addresses:
        settings["ServerAddresses"] = [parse_endpoint(a).host for a in addresses]
    name = "DNS over HTTPS" if settings["DNSProtocol"] == "HTTPS" else "DNS over TLS"
    target = settings.get("ServerURL") or settings["ServerName"]
    seed = "|".join((identifier, target, ",".join(addresses), ",".join(exclude_ssids)))
    payload: dict[str, Any] = {
        "PayloadType": DNS_SETTINGS,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.dns",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, seed + "|dns")).upper(),
        "PayloadDisplayName": f"dnswarden {name}",
        "DNSSettings": settings,
    }
    if exclude_ssids:
        payload["OnDemandRules"] = [
            {"Action": "Disconnect", "SSIDMatch": [_ssid(s) for s in exclude_ssids]},
            {"Action": "Connect"},
        ]
    if prohibit_disablement:
        payload["ProhibitDisablement"] = True
    profile: dict[str, Any] = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, seed)).upper(),
        "PayloadDisplayName": f"dnswarden {name}" + (f" ({device})" if device else ""),
        "PayloadDescription": f"Sends this device's DNS queries to {target} ({name}).",
        "PayloadScope": "System",
        "PayloadContent": [payload],
    }
    if organization:
        profile["PayloadOrganization"] = organization
    return profile


def dns_settings(server_url: str, device: str | None) -> dict[str, Any]:
    """The DNSSettings dict for a `https://` (DoH) or `tls://` (DoT) server URL."""
    parts = urlsplit(server_url.strip())
    host = _server_name(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{server_url!r}: the port is not a number") from None
    if parts.scheme == "https":
        path = parts.path or DOH_PATH
        if path.rstrip("/") != DOH_PATH or parts.query or parts.fragment:
            raise ValueError(f"{server_url!r}: the DoH path is {DOH_PATH} (a device id goes "
                             "after it: use --device-id)")  # fmt: skip
        netloc = host if port in (None, 443) else f"{host}:{port}"
        path = DOH_PATH + (f"/{device}" if device else "")
        return {"DNSProtocol": "HTTPS", "ServerURL": f"https://{netloc}{path}"}
    if parts.scheme == "tls":
        if port not in (None, DOT_PORT) or parts.path not in ("", "/"):
            raise ValueError(f"{server_url!r}: Apple devices reach DNS over TLS on port 853 and "
                             "take no path: write tls://NAME")  # fmt: skip
        return {"DNSProtocol": "TLS", "ServerName": f"{device}.{host}" if device else host}
    raise ValueError(f"{server_url!r}: expected https://NAME/dns-query or tls://NAME")


def _server_name(host: str) -> str:
    try:
        _, canonical = names.normalise(host)
    except names.BadName as error:
        raise ValueError(f"server name: {error}") from None
    if "." not in canonical:
        raise ValueError(f"server name {host!r}: a fully qualified name such as dns.example.gov")
    return canonical


def _ssid(text: str) -> str:
    if not text or len(text.encode()) > 32:
        raise ValueError(f"SSID {text!r}: 1 to 32 bytes")
    return text


def _apple(args: argparse.Namespace) -> int:
    profile = apple_profile(
        args.server_url,
        args.device_id,
        args.address,
        args.exclude_ssid,
        args.prohibit_disablement,
        args.identifier,
        args.organization,
    )
    settings = profile["PayloadContent"][0]["DNSSettings"]
    stem = args.device_id or settings.get("ServerName") or urlsplit(settings["ServerURL"]).hostname
    output = Path(args.output or f"{str(stem).lower()}.mobileconfig")
    try:
        output.write_bytes(plistlib.dumps(profile, sort_keys=True))
    except OSError as error:
        raise ValueError(f"cannot write {output}: {error.strerror or error}") from None
    target = settings.get("ServerURL") or f"tls://{settings['ServerName']}"
    print(f"{output}: {settings['DNSProtocol']} to {target}")
    return 0


# --- Android -------------------------------------------------------------------------------


def private_dns_host(server_name: str, device: str | None) -> str:
    host = _server_name(server_name)
    return f"{parse_device_id(device)}.{host}" if device else host


def check_certificate(host: str, connect: str | None, ca_file: str | None) -> str:
    """Connect as Android would (TLS with `host` as the server name, certificate verified for
    it) and describe the certificate; ValueError saying why a phone would refuse it."""
    if connect:
        endpoint = parse_endpoint(connect, default_port=DOT_PORT)
        address: tuple[str, int] = (endpoint.host, endpoint.port)
    else:
        address = (host, DOT_PORT)
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with socket.create_connection(address, timeout=CHECK_TIMEOUT) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:  # fmt: skip
            certificate = tls.getpeercert()
            version = tls.version()
    except ssl.SSLCertVerificationError as error:
        raise ValueError(f"the certificate served for {host} does not verify: "
                         f"{error.verify_message}") from None  # fmt: skip
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot reach {address[0]}:{address[1]} over TLS: {error}") from None
    until = certificate.get("notAfter", "?") if certificate else "?"
    issuer = _issuer(certificate)
    return f"certificate ok for {host} ({version}, issued by {issuer}, valid until {until})"


def _issuer(certificate: Any) -> str:
    for rdn in (certificate or {}).get("issuer", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


def _android(args: argparse.Namespace) -> int:
    host = private_dns_host(args.server_name, args.device_id)
    print(f"Private DNS hostname: {host}")
    if args.no_check:
        return 0
    try:
        print(check_certificate(host, args.connect, args.ca_file))
    except ValueError as error:
        print(f"dnswarden profile android: {error}", file=sys.stderr)
        return 1
    return 0

