"""DNS over TCP (RFC 7766): pipelining, idle timeout (1 s here), slow and stalled peers."""

from __future__ import annotations

import socket
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from harness import (
    ServerProcess,
    ask,
    fresh_name,
    query,
    recv_exact,
    tcp_frame,
    tcp_read_message,
)

pytestmark = pytest.mark.e2e

IDLE_TIMEOUT = 1.0
PIPELINED = 100


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def wait_closed(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes the connection (EOF or reset), or None after `limit`."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_pipelined_queries_on_one_connection(server: ServerProcess) -> None:
    expected: dict[int, list[str]] = {}
    frames: list[bytes] = []
    for i in range(PIPELINED):
        if i % 3 == 0:
            sent = query(f"p{i}.tiktok.com.", "A")
            want = ["0.0.0.0"]
        elif i % 3 == 1:
            sent = query(fresh_name(), "A")
            want = ["192.0.2.99"]
        else:
            sent = query("www.example.org.", "A")
            want = ["192.0.2.10", "192.0.2.11"]
        sent.id = 1000 + i
        expected[sent.id] = want
        frames.append(tcp_frame(sent.to_wire()))

    answers: dict[int, list[str]] = {}
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"".join(frames))
        deadline = time.monotonic() + 10
        while len(answers) < PIPELINED and time.monotonic() < deadline:
            wire = tcp_read_message(sock)
            assert wire is not None, f"connection closed after {len(answers)} answers"
            reply = dns.message.from_wire(wire)
            assert reply.id not in answers, f"ID {reply.id} answered twice"
            assert reply.rcode() == dns.rcode.NOERROR
            answers[reply.id] = addresses(reply)
    assert answers == expected


@pytest.mark.parametrize("after_query", [False, True])
def test_idle_connection_is_closed(server: ServerProcess, after_query: bool) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        if after_query:
            sock.sendall(tcp_frame(query("www.tiktok.com.", "A").to_wire()))
            assert tcp_read_message(sock) is not None
        waited = wait_closed(sock, IDLE_TIMEOUT + 4)
    assert waited is not None, "idle connection was never closed"
    assert 0.5 * IDLE_TIMEOUT <= waited <= IDLE_TIMEOUT + 2


@pytest.mark.parametrize(
    "partial",
    [b"\x00", b"\x00\x40", b"\x00\x40" + b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 4],
    ids=["half-prefix", "prefix-only", "half-message"],
)
def test_stalled_peer_is_disconnected(server: ServerProcess, partial: bytes) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(partial)
        waited = wait_closed(sock, IDLE_TIMEOUT + 5)
    assert waited is not None, f"peer stalled after {partial.hex()} was never disconnected"
    _, reply = ask(query("www.example.org.", "A"), server.address, "tcp")
    assert reply.rcode() == dns.rcode.NOERROR


def test_message_split_across_writes_is_reassembled(server: ServerProcess) -> None:
    sent = query("Split.TikTok.com.", "AAAA")
    frame = tcp_frame(sent.to_wire())
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(frame), 5):
            sock.sendall(frame[i : i + 5])
            time.sleep(0.01)
        wire = tcp_read_message(sock)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == sent.id
    assert addresses(reply) == ["::"]


def test_many_sequential_queries_reuse_one_connection(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=5) as sock:
        for i in range(20):
            sent = query(f"seq{i}.douyin.com.", "A")
            sock.sendall(tcp_frame(sent.to_wire()))
            wire = tcp_read_message(sock)
            assert wire is not None, f"connection closed before answer {i}"
            assert dns.message.from_wire(wire).id == sent.id


def test_reply_is_one_length_prefixed_message(server: ServerProcess) -> None:
    sent = query("www.example.org.", "AAAA")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(tcp_frame(sent.to_wire()))
        prefix = recv_exact(sock, 2)
        assert prefix is not None
        body = recv_exact(sock, int.from_bytes(prefix, "big"))
    assert body is not None
    reply = dns.message.from_wire(body)
    assert reply.id == sent.id
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.AAAA]
