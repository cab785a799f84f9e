"""Sockets a supervisor that drops binds for its workers: named, handed over through the
environment and taken once; and the check that the interpreter can still be started."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from resolver.config import Endpoint
from resolver.shell import privileges
from resolver.shell.listeners import bind_pair

LOCAL = Endpoint("127.0.0.1", 0)


@pytest.fixture
def fresh_inheritance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privileges, "_inherited", None)


def test_a_worker_takes_the_pair_bound_for_it_once(
    monkeypatch: pytest.MonkeyPatch, fresh_inheritance: None
) -> None:
    udp, tcp = bind_pair(LOCAL, reuse_port=True)
    port = udp.getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port)
    handed = {privileges.socket_key("udp", endpoint): udp,
              privileges.socket_key("tcp", endpoint): tcp}  # fmt: skip
    value, fds = privileges.inheritance(handed)
    assert fds == (udp.fileno(), tcp.fileno())
    assert value == f"udp 127.0.0.1:{port}={udp.fileno()};tcp 127.0.0.1:{port}={tcp.fileno()}"
    # As in the worker: each descriptor is a new socket object over the same socket.
    duplicates = {key: os.dup(sock.fileno()) for key, sock in handed.items()}
    monkeypatch.setenv(privileges.INHERITED_VARIABLE,
                       ";".join(f"{k}={fd}" for k, fd in duplicates.items()))  # fmt: skip
    monkeypatch.setattr(privileges, "_inherited", None)  # a worker reads it at its first bind
    taken_udp, taken_tcp = bind_pair(endpoint, reuse_port=True)
    try:
        assert privileges.INHERITED_VARIABLE not in os.environ  # not passed further down
        assert (taken_udp.type, taken_tcp.type) == (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        assert taken_udp.getsockname() == udp.getsockname()
        assert taken_tcp.fileno() == duplicates[privileges.socket_key("tcp", endpoint)]
        assert not taken_udp.getblocking()
        # Taken once: asking again binds anew (here another socket in the reuseport group).
        assert privileges.inherited("udp", endpoint) is None
    finally:
        for sock in (udp, tcp, taken_udp, taken_tcp):
            sock.close()


@pytest.mark.parametrize(
    "value",
    ["", "udp 127.0.0.1:53", "udp 127.0.0.1:53=x", "=7", "tcp 127.0.0.1:53=9"],
)
def test_nothing_usable_inherited_means_binding_as_usual(
    monkeypatch: pytest.MonkeyPatch, fresh_inheritance: None, value: str
) -> None:
    monkeypatch.setenv(privileges.INHERITED_VARIABLE, value)
    assert privileges.inherited("udp", Endpoint("127.0.0.1", 53)) is None


def test_the_interpreter_check_names_what_cannot_be_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert privileges.cannot_exec(sys.executable) == ""
    script = tmp_path / "python"
    script.write_text("")
    script.chmod(0o644)
    if os.geteuid() == 0:  # root may execute nothing without an x bit, read everything
        assert "not executable" in privileges.cannot_exec(str(script))
    else:
        assert privileges.cannot_exec(str(script)) == f"{script}: not executable by this user"
