"""Zone transfers and NOTIFY (`resolver.lists.transfer`): which transfer is asked of whom, what
a primary's refusal leads to, and which NOTIFY is accepted. A small primary on loopback plays
the answers; the real one (Knot DNS, with TSIG) is in tests/e2e/test_e2e_rpz_transfer.py."""

from __future__ import annotations

import base64
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.zone
import pytest

from resolver.config import SourceConfig, parse_endpoint
from resolver.config.transfer import TransferConfig, TsigConfig, parse_tsig_secret
from resolver.config.values import network
from resolver.lists.fetch import FetchError
from resolver.lists.transfer import (
    SoaTimers,
    ZoneExpiry,
    ZoneFetcher,
    is_notify,
    notify_reply,
    zone_text,
)

ZONE = "rpz.test"


def zone_of(serial: int, names: list[str]) -> dns.zone.Zone:
    text = f"@ 60 IN SOA ns.{ZONE}. admin.{ZONE}. {serial} 3600 600 86400 60\n@ 60 IN NS ns.\n"
    text += "".join(f"{name} 60 IN CNAME .\n" for name in names)
    return dns.zone.from_text(text, origin=f"{ZONE}.", relativize=False)


class FakePrimary:
    """Answers AXFR with its zone and IXFR as told: `ixfr` is "refuse", "full" (AXFR-style)
    or "current" (only the SOA: the asker is up to date). Records the query types it got."""

    def __init__(self, zone: dns.zone.Zone, ixfr: str = "refuse") -> None:
        self.zone = zone
        self.ixfr = ixfr
        self.asked: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                size = struct.unpack(">H", conn.recv(2))[0]
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                request = dns.message.from_wire(data)
                rdtype = request.question[0].rdtype
                self.asked.append(dns.rdatatype.to_text(rdtype))
                reply = dns.message.make_response(request)
                soa = self.zone.find_rrset(self.zone.origin, "SOA")
                if rdtype == dns.rdatatype.IXFR and self.ixfr == "refuse":
                    reply.set_rcode(dns.rcode.REFUSED)
                elif rdtype == dns.rdatatype.IXFR and self.ixfr == "current":
                    reply.answer = [soa]
                else:
                    records = [
                        rrset
                        for name, node in self.zone.nodes.items()
                        for rdataset in node.rdatasets
                        if (rrset := self._rrset(name, rdataset)) is not None
                    ]
                    reply.answer = [soa, *records, soa]
                wire = reply.to_wire()
                conn.sendall(struct.pack(">H", len(wire)) + wire)

    def _rrset(self, name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> object:
        if rdataset.rdtype == dns.rdatatype.SOA:
            return None
        rrset = dns.rrset.RRset(name, rdataset.rdclass, rdataset.rdtype)
        rrset.update(rdataset)
        return rrset

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def primaries() -> Iterator[list[FakePrimary]]:
    started: list[FakePrimary] = []
    yield started
    for primary in started:
        primary.close()


def source(*addresses: str, tsig: TsigConfig | None = None) -> SourceConfig:
    transfer = TransferConfig(
        zone=ZONE,
        primaries=tuple(parse_endpoint(a) for a in addresses),
        tsig=tsig,
        allow_notify=(network("127.0.0.1"),),
    )
    return SourceConfig(name="feed", transfer=transfer)


def dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_the_first_transfer_is_an_axfr_whose_text_the_rpz_parser_reads(
    primaries: list[FakePrimary], tmp_path: Path
) -> None:
    primary = FakePrimary(zone_of(7, ["a.example", "b.example"]))
    primaries.append(primary)
    fetcher = ZoneFetcher(source(primary.address), tmp_path / "feed.body")
    result = fetcher("xfr://", etag=None)
    assert (result.status, result.etag) == (200, "7")
    assert primary.asked == ["AXFR"]
    assert fetcher.report is not None
    assert (fetcher.report.kind, fetcher.report.serial) == ("axfr", 7)
    assert fetcher.report.timers == SoaTimers(3600.0, 600.0, 86400.0)
    assert result.body is not None and b"a.example.rpz.test. 60 IN CNAME ." in result.body


@pytest.mark.parametrize(
    ("behaviour", "asked", "kind", "status"),
    [
        ("refuse", ["IXFR", "AXFR"], "axfr", 200),  # IXFR refused: AXFR instead
        ("full", ["IXFR"], "axfr", 200),  # IXFR answered in full (AXFR-style)
        ("current", ["IXFR"], "current", 304),  # our serial is the primary's
    ],
)
def test_with_a_last_good_copy_an_ixfr_is_asked_first(
    primaries: list[FakePrimary],
    tmp_path: Path,
    behaviour: str,
    asked: list[str],
    kind: str,
    status: int,
) -> None:
    body = tmp_path / "feed.body"
    body.write_bytes(zone_text(zone_of(7, ["a.example"])))
    newer = 7 if behaviour == "current" else 8
    primary = FakePrimary(zone_of(newer, ["a.example", "c.example"]), ixfr=behaviour)
    primaries.append(primary)
    fetcher = ZoneFetcher(source(primary.address), body)
    result = fetcher("xfr://", etag="7")
    assert primary.asked == asked
    assert fetcher.report is not None and fetcher.report.kind == kind
    assert result.status == status
    if status == 200:
        assert result.body is not None and b"c.example.rpz.test." in result.body


def test_a_copy_whose_serial_is_not_the_etag_is_not_used_for_ixfr(
    primaries: list[FakePrimary], tmp_path: Path
) -> None:
    body = tmp_path / "feed.body"
    body.write_bytes(zone_text(zone_of(5, ["a.example"])))
    primary = FakePrimary(zone_of(8, ["a.example"]))
    primaries.append(primary)
    ZoneFetcher(source(primary.address), body)("xfr://", etag="7")
    assert primary.asked == ["AXFR"]


def test_the_next_primary_is_tried_and_all_failures_are_named(
    primaries: list[FakePrimary], tmp_path: Path
) -> None:
    dead = dead_address()
    primary = FakePrimary(zone_of(3, ["a.example"]))
    primaries.append(primary)
    fetcher = ZoneFetcher(source(dead, primary.address), tmp_path / "feed.body")
    assert fetcher("xfr://").status == 200
    assert fetcher.report is not None and fetcher.report.primary == primary.address
    other = dead_address()
    with pytest.raises(FetchError) as failed:
        ZoneFetcher(source(dead, other), tmp_path / "feed.body")("xfr://", timeout=1.0)
    assert dead in str(failed.value) and other in str(failed.value)


def test_a_zone_over_max_bytes_is_refused(primaries: list[FakePrimary], tmp_path: Path) -> None:
    primary = FakePrimary(zone_of(3, [f"n{i}.example" for i in range(50)]))
    primaries.append(primary)
    with pytest.raises(FetchError, match="max_bytes"):
        ZoneFetcher(source(primary.address), tmp_path / "feed.body")("xfr://", max_bytes=500)


def test_soa_timers_are_bounded() -> None:
    class Soa:
        refresh, retry, expire = 0, 10**9, 5

    assert SoaTimers.of(Soa()) == SoaTimers(5.0, 86400.0, 5.0)


# --- NOTIFY -----------------------------------------------------------------------------------

SECRET = base64.b64encode(bytes(range(32))).decode()


def notify_wire(zone: str = ZONE, key: tuple[str, str] | None = None) -> tuple[bytes, object]:
    message = dns.message.make_query(f"{zone}.", "SOA")
    message.flags = dns.flags.AA
    message.set_opcode(dns.opcode.NOTIFY)
    if key is not None:
        keyring = dns.tsigkeyring.from_text({key[0]: ("hmac-sha256", key[1])})
        message.use_tsig(keyring, key[0])
    wire = message.to_wire()
    return wire, message


@pytest.mark.parametrize(
    ("client", "zone", "result", "rcode"),
    [
        ("127.0.0.1", ZONE, "accepted", dns.rcode.NOERROR),
        ("::ffff:127.0.0.1", ZONE, "accepted", dns.rcode.NOERROR),  # dual-stack listener
        ("127.0.0.2", ZONE, "refused", dns.rcode.REFUSED),
        ("127.0.0.1", "other.test", "refused", dns.rcode.REFUSED),
        ("not an address", ZONE, "refused", dns.rcode.REFUSED),
    ],
)
def test_notify_is_accepted_only_from_an_allowed_address_for_the_zone(
    client: str, zone: str, result: str, rcode: int
) -> None:
    wire, _ = notify_wire(zone)
    assert is_notify(wire)
    outcome = notify_reply(wire, client, [source("127.0.0.1"), SourceConfig(name="file")])
    assert outcome.result == result
    assert outcome.source == ("feed" if result == "accepted" else None)
    assert outcome.reply is not None
    reply = dns.message.from_wire(outcome.reply)
    assert reply.opcode() == dns.opcode.NOTIFY and reply.rcode() == rcode
    assert reply.id == dns.message.from_wire(wire).id
    assert str(reply.question[0].name) == f"{zone}."


def test_a_query_is_not_a_notify() -> None:
    assert not is_notify(dns.message.make_query("x.test.", "A").to_wire())
    assert not is_notify(b"\x00\x01\x20")


def test_a_signed_notify_must_verify_and_its_reply_is_signed(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET)
    tsig = TsigConfig(name="k", algorithm="hmac-sha256", secret_file=str(key_file))
    good_wire, request = notify_wire(key=("k", SECRET))
    outcome = notify_reply(good_wire, "127.0.0.1", [source("127.0.0.1", tsig=tsig)])
    assert outcome.result == "accepted" and outcome.reply is not None
    keyring = dns.tsigkeyring.from_text({"k": ("hmac-sha256", SECRET)})
    reply = dns.message.from_wire(outcome.reply, keyring=keyring, request_mac=request.mac)
    assert reply.had_tsig
    wrong = base64.b64encode(bytes(32)).decode()
    bad_wire, _ = notify_wire(key=("k", wrong))
    outcome = notify_reply(bad_wire, "127.0.0.1", [source("127.0.0.1", tsig=tsig)])
    assert (outcome.result, outcome.source) == ("malformed", None)
    assert outcome.reply is not None and dns.message.from_wire(outcome.reply).rcode() == 5


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (SECRET, True),
        (f'key "k" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n', True),  # BIND
        (f"key:\n  - id: k\n    algorithm: hmac-sha256\n    secret: {SECRET}\n", True),  # Knot
        (base64.b64encode(b"short").decode(), False),
        ("not base64 at all!", False),
    ],
)
def test_tsig_secret_files(text: str, ok: bool) -> None:
    if ok:
        assert parse_tsig_secret(text.encode()) == bytes(range(32))
    else:
        with pytest.raises(ValueError):
            parse_tsig_secret(text.encode())


SHA = "a" * 64


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"sha256": SHA, "checked_at": 1000.0, "soa_expire": 600}, ZoneExpiry(1000.0, 600.0)),
        ({"sha256": SHA, "fetched_at": 1000, "soa_expire": 600}, ZoneExpiry(1000.0, 600.0)),
        ({"sha256": SHA, "checked_at": 1000.0}, ZoneExpiry(1000.0, 7 * 86400.0)),  # default
        ({"sha256": SHA, "checked_at": 1000.0, "soa_expire": "x"}, ZoneExpiry(1000.0, 604800.0)),
        ({"sha256": SHA, "checked_at": 1000.0, "soa_expire": 0}, ZoneExpiry(1000.0, 5.0)),
        ({"checked_at": 1000.0, "soa_expire": 600}, None),  # no copy
        ({"sha256": SHA}, None),  # no time
        ({}, None),
    ],
)
def test_zone_expiry_from_the_copys_sidecar(meta: dict[str, object], expected: object) -> None:
    assert ZoneExpiry.of(meta) == expected


@pytest.mark.parametrize(("now", "expired"), [(1599.0, False), (1600.0, True), (9e9, True)])
def test_a_copy_expires_expire_seconds_after_its_last_confirmation(
    now: float, expired: bool
) -> None:
    expiry = ZoneExpiry(1000.0, 600.0)
    assert expiry.expires_at == 1600.0
    assert expiry.expired(now) == expired
