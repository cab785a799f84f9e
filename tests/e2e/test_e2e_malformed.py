"""Hostile and broken packets over UDP: the right rcode (or silence), never a crash or a forward."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import dns.message
import dns.rcode
import dnslib
import pytest
from fake_upstream import FakeUpstream
from harness import ServerProcess, ask, exchange, fresh_name, query

pytestmark = pytest.mark.e2e

QUERY_ID = 0x2B2B
RD = 0x0100
NO_REPLY_WAIT = 0.5
POINTER_CHAIN = 1000


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = RD) -> bytes:
    return struct.pack("!HHHHHH", QUERY_ID, flags, qd, an, ns, ar)


def encode_name(name: str) -> bytes:
    return (
        b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"
    )


def question(name: str | None = None, qtype: int = 1) -> bytes:
    return encode_name(name or fresh_name()) + struct.pack("!HH", qtype, 1)


def opt(version: int = 0, owner: bytes = b"\0") -> bytes:
    """An OPT RR: payload 1232, extended rcode 0, the given version, no options."""
    return owner + struct.pack("!HHBBHH", 41, 1232, 0, version, 0, 0)


def valid() -> bytes:
    return header() + question()


def backward_pointer_chain(section: str = "additional") -> bytes:
    """~2 KB: an opaque RR whose RDATA holds 1,000 pointers each pointing 2 bytes back, and a
    second RR named by the last one, both in `section`. Every pointer points backwards, so only a
    hop cap stops the walk; dnslib 0.9.26 follows them recursively and raises RecursionError."""
    first = question("a.")
    start = 12 + len(first)
    opaque = b"\0" + struct.pack("!HHIH", 0xFF00, 1, 0, 2 * POINTER_CHAIN)
    rdata_at = start + len(opaque)
    chain = b"".join(
        struct.pack("!H", 0xC000 | (12 if i == 0 else rdata_at + 2 * (i - 1)))
        for i in range(POINTER_CHAIN)
    )
    last = rdata_at + 2 * (POINTER_CHAIN - 1)
    named = struct.pack("!HHHIH", 0xC000 | last, 1, 1, 0, 4) + bytes(4)
    counts = {"answer": {"an": 2}, "authority": {"ns": 2}, "additional": {"ar": 2}}[section]
    return header(**counts) + first + opaque + chain + named


def forward_pointer_chain() -> bytes:
    """The question name is a pointer to the next two bytes, 1,000 times over."""
    chain = b"".join(struct.pack("!H", 0xC000 | (12 + 2 * (i + 1))) for i in range(POINTER_CHAIN))
    return header() + chain + b"\0" + struct.pack("!HH", 1, 1)


def forward_pointer() -> bytes:
    """`www` then a pointer to the OPT owner that follows the question: valid bytes, wrong way."""
    name_len = 4 + 2
    target = 12 + name_len + 4
    return header(ar=1) + b"\x03www" + struct.pack("!H", 0xC000 | target) + b"\0\x01\0\x01" + opt()


def edns_version_1() -> bytes:
    return header(ar=1) + question() + opt(version=1)


Case = tuple[str, Callable[[], bytes], int | None]
CASES: list[Case] = [
    ("empty", lambda: b"", None),
    ("short-header", lambda: valid()[:11], None),
    ("qr-set", lambda: header(flags=0x8000 | RD) + question(), None),
    ("qr-set-blocked", lambda: header(flags=0x8000 | RD) + question("www.tiktok.com."), None),
    ("qdcount-0", lambda: header(qd=0), dns.rcode.FORMERR),
    ("qdcount-2", lambda: header(qd=2) + question() + question(), dns.rcode.FORMERR),
    ("qdcount-lies", lambda: header(qd=2) + question(), dns.rcode.FORMERR),
    ("opcode-status", lambda: header(flags=(2 << 11) | RD) + question(), dns.rcode.NOTIMP),
    ("opcode-notify", lambda: header(flags=4 << 11) + question(), dns.rcode.NOTIMP),
    ("opcode-update", lambda: header(flags=5 << 11) + question(), dns.rcode.NOTIMP),
    ("label-64", lambda: header() + question("a" * 64 + ".example.org."), dns.rcode.FORMERR),
    ("name-257", lambda: header() + question(".".join(["b" * 63] * 4) + "."), dns.rcode.FORMERR),
    (
        "label-type-01",
        lambda: header() + b"\x41" + b"a" * 10 + b"\0\0\x01\0\x01",
        dns.rcode.FORMERR,
    ),
    (
        "label-type-10",
        lambda: header() + b"\x81" + b"a" * 10 + b"\0\0\x01\0\x01",
        dns.rcode.FORMERR,
    ),
    ("pointer-loop", lambda: header() + b"\xc0\x0c\0\x01\0\x01", dns.rcode.FORMERR),
    ("pointer-out-of-range", lambda: header() + b"\xff\xff\0\x01\0\x01", dns.rcode.FORMERR),
    ("forward-pointer", forward_pointer, dns.rcode.FORMERR),
    ("forward-pointer-chain", forward_pointer_chain, dns.rcode.FORMERR),
    ("name-cut", lambda: header() + b"\x07example\x03or", dns.rcode.FORMERR),
    ("no-qtype", lambda: header() + encode_name(fresh_name()), dns.rcode.FORMERR),
    ("half-qclass", lambda: header() + question()[:-1], dns.rcode.FORMERR),
    ("trailing-junk", lambda: valid() + b"junk", dns.rcode.FORMERR),
    (
        "trailing-junk-blocked",
        lambda: header() + question("tiktok.com.") + b"\0",
        dns.rcode.FORMERR,
    ),
    ("arcount-lies", lambda: header(ar=3) + question(), dns.rcode.FORMERR),
    (
        "ancount-huge",
        lambda: header(an=0xFFFF, ns=0xFFFF, ar=0xFFFF) + question(),
        dns.rcode.FORMERR,
    ),
    ("two-opt", lambda: header(ar=2) + question() + opt() + opt(), dns.rcode.FORMERR),
    (
        "opt-owner-not-root",
        lambda: header(ar=1) + question() + opt(owner=b"\x01x\0"),
        dns.rcode.FORMERR,
    ),
    ("opt-cut", lambda: header(ar=1) + question() + opt()[:7], dns.rcode.FORMERR),
]


@pytest.mark.parametrize(
    ("packet", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_packet(
    server: ServerProcess,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    packet: Callable[[], bytes],
    expected: int | None,
) -> None:
    since = time.monotonic()
    wire = packet()
    reply = exchange(wire, server.address, "udp", timeout=NO_REPLY_WAIT if expected is None else 3)
    if expected is None:
        assert reply is None, f"got a reply to a packet that must be dropped: {reply!r}"
    else:
        assert reply is not None, f"no reply; expected {dns.rcode.to_text(expected)}"
        assert len(reply) >= 12
        rid, flags = struct.unpack("!HH", reply[:4])
        assert rid == QUERY_ID
        assert flags & 0x8000, "QR must be set"
        assert flags & 0xF == expected
    for upstream in upstreams:
        assert upstream.queries(since=since) == [], "a malformed query was forwarded"
    assert server.alive()


def test_badvers_for_edns_version_1(server: ServerProcess) -> None:
    """RCODE 16 is split: the low 4 bits (0) in the header, the upper 8 bits (1) in the OPT."""
    reply = exchange(edns_version_1(), server.address, "udp")
    assert reply is not None
    assert struct.unpack("!H", reply[:2])[0] == QUERY_ID
    assert reply[3] & 0xF == 0
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.BADVERS
    assert parsed.edns == 0, "BADVERS must carry a version-0 OPT"
    assert (parsed.ednsflags >> 24) & 0xFF == 1


@pytest.mark.parametrize("section", ["answer", "authority", "additional"])
def test_pointer_chain_regression(
    server: ServerProcess, upstreams: tuple[FakeUpstream, FakeUpstream], section: str
) -> None:
    """The regression packet of issue 2: FORMERR or silence, nothing forwarded, still serving."""
    packet = backward_pointer_chain(section)
    assert 1800 <= len(packet) <= 2200
    with pytest.raises(RecursionError):
        dnslib.DNSRecord.parse(packet)
    since = time.monotonic()
    reply = exchange(packet, server.address, "udp", timeout=1.0)
    if reply is not None:
        rid, flags = struct.unpack("!HH", reply[:4])
        assert (rid, flags & 0x8000, flags & 0xF) == (QUERY_ID, 0x8000, dns.rcode.FORMERR)
    assert upstreams[0].queries(since=since) == []
    _, after = ask(query("www.tiktok.com.", "A"), server.address)
    assert [r.to_text() for rrset in after.answer for r in rrset] == ["0.0.0.0"]


@pytest.mark.parametrize("transport", ["tcp"])
def test_bad_packets_over_tcp_get_the_same_treatment(server: ServerProcess, transport: str) -> None:
    wrong: list[str] = []
    for name, build, expected in CASES:
        if expected is None:
            continue
        reply = exchange(build(), server.address, transport, timeout=3)
        got = None if reply is None or len(reply) < 4 else struct.unpack("!H", reply[2:4])[0] & 0xF
        if got != expected:
            wrong.append(f"{name}: expected {dns.rcode.to_text(expected)}, got {got}")
    assert wrong == []


def test_server_still_answers_after_bad_input(server: ServerProcess) -> None:
    assert server.alive()
    _, blocked = ask(query("www.tiktok.com.", "AAAA"), server.address)
    assert [r.to_text() for rrset in blocked.answer for r in rrset] == ["::"]
    _, forwarded = ask(query(fresh_name(), "A"), server.address)
    assert [r.to_text() for rrset in forwarded.answer for r in rrset] == ["192.0.2.99"]
    assert "Traceback" not in server.stderr_text()
