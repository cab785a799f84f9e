"""Bind failures name the listener (address and protocol) and say what to do about them."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterator

import pytest

from resolver.config import Endpoint
from resolver.observe.metrics import Metrics, ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.shell.binding import (
    SO_RCVBUFFORCE,
    BindError,
    ask_receive_buffer,
    granted_receive_buffer,
)
from resolver.shell.httpd import HealthServer
from resolver.shell.listeners import bind_pair


@pytest.mark.parametrize(
    ("code", "endpoint", "protocol", "hint_words"),
    [
        (errno.EACCES, Endpoint("0.0.0.0", 53), "UDP",
         ["CAP_NET_BIND_SERVICE", "setcap cap_net_bind_service=+ep", "AmbientCapabilities",
          "root"]),
        (errno.EACCES, Endpoint("::", 853), "TCP", ["CAP_NET_BIND_SERVICE"]),
        (errno.EACCES, Endpoint("127.0.0.1", 5353), "UDP", ["SELinux"]),
        (errno.EADDRINUSE, Endpoint("127.0.0.1", 53), "UDP", ["ss -lunp 'sport = :53'"]),
        (errno.EADDRINUSE, Endpoint("127.0.0.1", 53), "TCP", ["ss -ltnp 'sport = :53'"]),
        (errno.EADDRINUSE, Endpoint("127.0.0.1", 9153), "metrics HTTP",
         ["ss -ltnp 'sport = :9153'"]),
        (errno.EADDRNOTAVAIL, Endpoint("192.0.2.1", 53), "UDP",
         ["192.0.2.1 is not an address of this host", "ip -brief address"]),
        (errno.EAFNOSUPPORT, Endpoint("::1", 53), "UDP", ["IPv6"]),
    ],
    ids=["eacces-53", "eacces-853", "eacces-high", "in-use-udp", "in-use-tcp", "in-use-metrics",
         "not-here", "no-ipv6"],
)  # fmt: skip
def test_the_error_names_the_listener_and_the_hint_says_what_to_do(
    code: int, endpoint: Endpoint, protocol: str, hint_words: list[str]
) -> None:
    error = BindError(endpoint, protocol, OSError(code, os.strerror(code)))
    assert str(error) == f"cannot listen on {endpoint} ({protocol}): {os.strerror(code)}"
    assert error.errno == code
    assert error.fields() == {
        "listener": str(endpoint),
        "protocol": protocol,
        "errno": errno.errorcode[code],
        "hint": error.hint,
    }
    for words in hint_words:
        assert words in error.hint, (words, error.hint)


def test_an_unknown_errno_has_no_hint() -> None:
    error = BindError(Endpoint("127.0.0.1", 53), "UDP", OSError(errno.ENOBUFS, "No buffer"))
    assert error.hint == ""
    assert "hint" not in error.fields()


@pytest.fixture
def held_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def held_tcp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_bind_pair_names_udp(held_udp: int) -> None:
    with pytest.raises(BindError) as caught:
        bind_pair(Endpoint("127.0.0.1", held_udp))
    assert (caught.value.protocol, caught.value.errno) == ("UDP", errno.EADDRINUSE)
    assert caught.value.address == f"127.0.0.1:{held_udp}"


def test_bind_pair_names_tcp(held_tcp: int) -> None:
    with pytest.raises(BindError) as caught:
        bind_pair(Endpoint("127.0.0.1", held_tcp))
    assert (caught.value.protocol, caught.value.errno) == ("TCP", errno.EADDRINUSE)
    assert caught.value.address == f"127.0.0.1:{held_tcp}"


def test_the_metrics_endpoint_names_itself(held_tcp: int) -> None:
    def ready() -> tuple[bool, dict[str, object]]:
        return True, {}

    server = HealthServer(Metrics(Stats(), ServiceSnapshot), ready, None)
    with pytest.raises(BindError) as caught:
        asyncio.run(server.start("127.0.0.1", held_tcp))
    assert (caught.value.protocol, caught.value.errno) == ("metrics HTTP", errno.EADDRINUSE)
    assert str(caught.value).startswith(f"cannot listen on 127.0.0.1:{held_tcp} (metrics HTTP): ")


class CappedSocket:
    """A socket as Linux treats SO_RCVBUF: it keeps twice what is asked, capped at twice
    `rmem_max` unless asked with SO_RCVBUFFORCE by a process that may (`may_force`)."""

    def __init__(self, rmem_max: int, may_force: bool) -> None:
        self.rmem_max, self.may_force = rmem_max, may_force
        self.kept = 2 * 212_992
        self.asked: list[int] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        assert level == socket.SOL_SOCKET
        self.asked.append(option)
        if option == socket.SO_RCVBUF:
            self.kept = 2 * min(value, self.rmem_max)
        elif option == SO_RCVBUFFORCE:
            if not self.may_force:
                raise PermissionError(errno.EPERM, "Operation not permitted")
            self.kept = 2 * value

    def getsockopt(self, level: int, option: int) -> int:
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_RCVBUF)
        return self.kept


@pytest.mark.parametrize(
    ("asked", "rmem_max", "may_force", "granted", "options"),
    [
        (2 << 20, 4 << 20, False, 2 << 20, [socket.SO_RCVBUF]),  # under the cap: asked once
        (2 << 20, 212_992, True, 2 << 20, [socket.SO_RCVBUF, SO_RCVBUFFORCE]),  # root lifts it
        (2 << 20, 212_992, False, 212_992, [socket.SO_RCVBUF, SO_RCVBUFFORCE]),  # capped
        (2 << 20, 2 << 20, False, 2 << 20, [socket.SO_RCVBUF]),  # exactly the cap
    ],
)
def test_ask_receive_buffer_lifts_the_cap_when_it_may_and_says_what_it_got(
    asked: int, rmem_max: int, may_force: bool, granted: int, options: list[int]
) -> None:
    sock = CappedSocket(rmem_max, may_force)
    assert ask_receive_buffer(sock, asked) == granted  # type: ignore[arg-type]
    assert sock.asked == options


def test_a_real_socket_reports_what_it_was_asked_for() -> None:
    """Below any cap, the real kernel's doubled report reads back as the size asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert ask_receive_buffer(sock, 128 << 10) == 128 << 10
        assert granted_receive_buffer(sock) == 128 << 10
