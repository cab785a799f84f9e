"""10,000 random and mutated datagrams and 10,000 mutated TCP messages at a dedicated server;
afterwards it must still be right, answer within 100 ms, have grown by less than 10 MB and have
printed no traceback.

Seeded `random`, so a failure replays exactly. Mutations start from valid queries (blocked and
forwarded names, with and without EDNS) and flip bits, cut, insert, splice compression pointers
or rewrite header counts; a share is pure noise. Packets go out in bursts with short pauses so the
run stays bounded in time; replies are drained as they come.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest
from fake_upstream import FakeUpstream
from harness import ServerFactory, ServerProcess, ask, fresh_name, make_config, query

pytestmark = pytest.mark.e2e

SEED = 20240611
PACKETS = 10_000
BURST = 200
PAUSE = 0.02
TIME_LIMIT = 30.0
TCP_MESSAGES = 10_000
PER_CONNECTION = 200


@pytest.fixture(scope="module")
def fuzz_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(seed=3).start()
    yield upstream
    upstream.stop()
    assert not upstream.errors


@pytest.fixture(scope="module")
def fuzz_server(launch: ServerFactory, fuzz_upstream: FakeUpstream) -> ServerProcess:
    config = make_config([fuzz_upstream.address])
    # Every packet must reach the parser: the default rate limits would shed most of them.
    config["rate_limit"] = {"rate": 0, "upstream_rate": 0, "zone_rate": 0}
    return launch(config, "fuzz")


def rss_kib(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.fixture(scope="module")
def baseline_rss(fuzz_server: ServerProcess) -> int:
    """The server's resident size once warmed up (a few hundred ordinary queries)."""
    for number in range(300):
        name = "www.tiktok.com." if number % 3 == 0 else fresh_name("warm")
        ask(query(name, "A", edns=bool(number % 2)), fuzz_server.address)
    return rss_kib(fuzz_server)


def seeds() -> list[bytes]:
    """Valid queries with fixed IDs (dnspython picks random ones), so runs replay exactly."""
    cookie = dns.edns.CookieOption(bytes(range(8)), b"")
    messages = [
        query("www.tiktok.com.", "A"),
        query("Www.TikTok.com.", "AAAA", edns=True),
        query("v16.tiktokcdn-eu.com.", "HTTPS", dnssec=True),
        query("www.example.org.", "A"),
        query("alias.example.org.", "A", edns=True, options=[cookie]),
        query("x.y.wild.example.org.", "TXT", dnssec=True),
        query("nope.example.org.", "MX", edns=True, payload=512),
    ]
    for number, message in enumerate(messages):
        message.id = 0x0F00 + number
    return [message.to_wire() for message in messages]


def mutate(rng: random.Random, base: bytes) -> bytes:
    data = bytearray(base)
    if len(data) < 14:
        return bytes(data) + rng.randbytes(rng.randint(1, 16))
    kind = rng.randrange(8)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[rng.randrange(len(data)) :]
    elif kind == 2:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:
        at = rng.randrange(12, len(data))
        data[at : at + 2] = struct.pack("!H", 0xC000 | rng.randrange(len(data) + 8))
    elif kind == 4:
        struct.pack_into("!HHHH", data, 4, *(rng.choice((0, 1, 2, 0xFFFF)) for _ in range(4)))
    elif kind == 5:
        struct.pack_into("!H", data, 2, rng.randrange(0x10000))
    elif kind == 6:
        data = data * rng.randint(2, 4)
    else:
        at = rng.randrange(len(data))
        data[at] = rng.choice((0, 63, 64, 0x40, 0x80, 0xC0, 0xFF))
    return bytes(data)


def packets(rng: random.Random) -> list[bytes]:
    bases = seeds()
    out = []
    for _ in range(PACKETS):
        if rng.random() < 0.15:
            out.append(rng.randbytes(rng.randint(0, 600)))
        else:
            data = rng.choice(bases)
            for _ in range(rng.randint(1, 3)):
                data = mutate(rng, data)
            out.append(data)
    return out


def test_fuzzed_datagrams_do_not_break_the_server(
    fuzz_server: ServerProcess, fuzz_upstream: FakeUpstream, baseline_rss: int
) -> None:
    rng = random.Random(SEED)
    batch = packets(rng)
    replies: list[bytes] = []
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.connect(fuzz_server.address)
        sock.setblocking(False)

        def drain() -> None:
            while True:
                try:
                    replies.append(sock.recv(65535))
                except (BlockingIOError, ConnectionRefusedError):
                    return

        for offset in range(0, len(batch), BURST):
            assert time.monotonic() - start < TIME_LIMIT, f"fuzzing stalled at packet {offset}"
            for packet in batch[offset : offset + BURST]:
                try:
                    sock.send(packet)
                except (BlockingIOError, ConnectionRefusedError):
                    time.sleep(PAUSE)
            time.sleep(PAUSE)
            drain()
        time.sleep(1.0)
        drain()
    assert fuzz_server.alive(), f"server died; stderr: {fuzz_server.stderr_text()[-2000:]}"
    assert replies, "the server answered none of the packets"
    assert all(len(r) >= 12 and r[2] & 0x80 for r in replies), "a reply without QR or a header"

    _, blocked = ask(query("www.tiktok.com.", "A", edns=True), fuzz_server.address)
    assert [r.to_text() for rrset in blocked.answer for r in rrset] == ["0.0.0.0"]
    name = fresh_name()
    _, forwarded = ask(query(name, "A"), fuzz_server.address)
    assert forwarded.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for rrset in forwarded.answer for r in rrset] == ["192.0.2.99"]
    _, over_tcp = ask(query(name, "AAAA"), fuzz_server.address, "tcp")
    assert [r.to_text() for rrset in over_tcp.answer for r in rrset] == ["2001:db8::99"]
    assert "Traceback" not in fuzz_server.stderr_text()
    assert "Traceback" not in fuzz_server.stdout_text()
    assert fuzz_server.alive()


def tcp_stream(rng: random.Random, messages: list[bytes]) -> bytes:
    """Messages framed as RFC 7766 does, with some frames lying about their length, empty or
    cut short, so the reader's framing is fuzzed too."""
    out = bytearray()
    for message in messages:
        kind = rng.random()
        if kind < 0.05:
            out += struct.pack("!H", 0)
        elif kind < 0.10:
            out += struct.pack("!H", rng.randrange(0x10000)) + message
        else:
            out += struct.pack("!H", len(message)) + message
    if rng.random() < 0.3:
        out = out[: rng.randrange(len(out) + 1)]
    return bytes(out)


def test_fuzzed_tcp_streams_do_not_break_the_server(
    fuzz_server: ServerProcess, baseline_rss: int
) -> None:
    rng = random.Random(SEED + 1)
    messages = packets(rng)[:TCP_MESSAGES]
    start = time.monotonic()
    replies = 0  # bytes of answers
    for offset in range(0, len(messages), PER_CONNECTION):
        assert time.monotonic() - start < TIME_LIMIT, f"TCP fuzzing stalled at {offset}"
        stream = tcp_stream(rng, messages[offset : offset + PER_CONNECTION])
        with socket.create_connection(fuzz_server.address, timeout=2.0) as sock:
            try:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(0.5)
                while chunk := sock.recv(65535):
                    replies += len(chunk)
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass
    assert fuzz_server.alive(), f"server died; stderr: {fuzz_server.stderr_text()[-2000:]}"
    assert replies, "the server answered nothing over TCP"


def test_after_fuzzing_the_server_is_live_lean_and_clean(
    fuzz_server: ServerProcess, baseline_rss: int
) -> None:
    began = time.monotonic()
    _, reply = ask(query("www.tiktok.com.", "A"), fuzz_server.address, timeout=1.0)
    live = time.monotonic() - began
    grown = rss_kib(fuzz_server) - baseline_rss
    print(f"\nafter fuzzing: answered in {live * 1000:.1f} ms, RSS grew {grown} KiB")
    assert [r.to_text() for rrset in reply.answer for r in rrset] == ["0.0.0.0"]
    assert live < 0.1
    assert grown < 10 * 1024
    assert "Traceback" not in fuzz_server.stderr_text() + fuzz_server.stdout_text()


def test_mutations_are_deterministic() -> None:
    """The same seed must give the same packets, or a failure could not be replayed."""
    first, second = packets(random.Random(SEED)), packets(random.Random(SEED))
    assert first == second
    assert len(first) == PACKETS
    assert len(set(first)) > PACKETS // 2
    parsed = 0
    for packet in first:
        try:
            dns.message.from_wire(packet)
            parsed += 1
        except Exception:
            continue
    assert parsed < PACKETS // 2, "mutations too gentle: most packets are still valid"
