"""Receive queues per source address: the kernel puts each client's datagrams in the queue its
address picks, always the same one, whatever its source port."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from resolver.config import Endpoint
from resolver.shell.listeners import bind_pair
from resolver.shell.steering import add_source_queues, queue_of, steering_program


@pytest.mark.parametrize(
    ("family", "queues", "program"),
    [
        # ld [SKF_NET_OFF + 12]; mod #8; ret a
        (socket.AF_INET, 8, "20000000 0c00f0ff" "94000000 08000000" "16000000 00000000"),
        # ld [SKF_NET_OFF + 20]: the last word of the IPv6 source
        (socket.AF_INET6, 3, "20000000 1400f0ff" "94000000 03000000" "16000000 00000000"),
    ],
)
def test_program(family: int, queues: int, program: str) -> None:
    assert steering_program(family, queues) == bytes.fromhex(program)


@pytest.mark.parametrize(
    ("address", "queues", "queue"),
    [
        ("127.0.0.1", 8, 1),
        ("127.0.0.2", 8, 2),
        ("10.0.0.9", 8, 1),
        ("192.168.1.20", 4, 0),
        ("::1", 8, 1),
        ("2001:db8::1:ff", 16, 0xFF % 16),
    ],
)
def test_queue_of(address: str, queues: int, queue: int) -> None:
    assert queue_of(address, queues) == queue


@pytest.fixture
def group() -> Iterator[list[socket.socket]]:
    udp, tcp = bind_pair(Endpoint("127.0.0.1", 0), True, 1 << 20)
    socks = [udp, *add_source_queues(udp, 4, 1 << 20)]
    yield socks
    for sock in (*socks, tcp):
        sock.close()


def drain(socks: list[socket.socket], expected: int) -> dict[str, set[int]]:
    """Which queues each source's datagrams arrived in (waits at most 2 s for `expected`)."""
    seen: dict[str, set[int]] = {}
    got = 0
    while got < expected:
        ready, _, _ = select.select(socks, [], [], 2.0)
        if not ready:
            break
        for sock in ready:
            _, (host, _port) = sock.recvfrom(512)
            seen.setdefault(host, set()).add(socks.index(sock))
            got += 1
    return seen


def test_each_source_keeps_to_its_queue(group: list[socket.socket]) -> None:
    assert len(group) == 4
    port = group[0].getsockname()[1]
    sources = [f"127.0.0.{n}" for n in range(2, 12)]
    for host in sources:
        for _ in range(5):  # a fresh source port each time
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind((host, 0))
                client.sendto(b"\0" * 12, ("127.0.0.1", port))
    seen = drain(group, 5 * len(sources))
    assert seen == {host: {queue_of(host, 4)} for host in sources}


@pytest.mark.parametrize(
    ("reuse_port", "queues"),
    [
        (True, 1),  # one queue: nothing to add
        (False, 4),  # no socket can join one bound without SO_REUSEPORT: none is left open
    ],
)
def test_it_keeps_one_queue(reuse_port: bool, queues: int) -> None:
    udp, tcp = bind_pair(Endpoint("127.0.0.1", 0), reuse_port, 1 << 20)
    try:
        assert add_source_queues(udp, queues, 1 << 20) == []
    finally:
        udp.close()
        tcp.close()
