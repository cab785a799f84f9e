"""Start the real dnswarden process and talk to it like a client on the network would.

The e2e tier checks the server as an operator runs it: a separate process started with
`python -m resolver serve -c FILE`, configured with loopback upstreams that the tests run
themselves (`fake_upstream`), and queried over real UDP and TCP sockets. dnspython builds and
parses messages; the raw socket helpers here send bytes and return bytes, so a test can also see
what a lenient client library would hide (exact question case, reply size, no reply at all).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import yaml
from fake_upstream import (
    GARBAGE,
    REFUSED,
    SERVFAIL,
    SILENT,
    TRUNCATE_UDP,
    Behaviour,
    Decoy,
)

import resolver
from resolver.lists.catalogue import catalogue_ids, load_catalogue_entry, reference_label

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the `resolver` these tests import lives: this checkout (an editable install, or
# PYTHONPATH=.), or an installed copy: the compiled build's (docs/compiled.md), which the servers
# the tests start must run too.
RESOLVER_HOME = Path(resolver.__file__).resolve().parents[1]
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
BLOCK_TTL = 42
"""A blocking TTL nobody would pick by accident, so tests can tell it came from the config."""

Address = tuple[str, int]
Event = dict[str, Any]

SPOOF_DELAY = 0.1
SLOW_DELAY = 0.3
PRIMARY_BEHAVIOURS: dict[str, Behaviour] = {
    "silent.wild.example.org": SILENT,
    "allsilent.wild.example.org": SILENT,
    "servfail.wild.example.org": SERVFAIL,
    "refused.wild.example.org": REFUSED,
    "garbage.wild.example.org": GARBAGE,
    "spoof-id.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=(Decoy.WRONG_ID,)),
    "spoof-qname.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=(Decoy.WRONG_QNAME,)),
    "spoof-qtype.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=(Decoy.WRONG_QTYPE,)),
    "spoof-source.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=(Decoy.WRONG_SOURCE,)),
    "junk-first.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=(Decoy.GARBAGE,)),
    "spoof-all.wild.example.org": Behaviour(delay=SPOOF_DELAY, decoys=tuple(Decoy)),
    "slow.wild.example.org": Behaviour(delay=SLOW_DELAY),
    "big.wild.example.org": TRUNCATE_UDP,
    "bigtxt.wild.example.org": TRUNCATE_UDP,
}
"""Scenarios of the first upstream, chosen by name: a test queries `<label>.<scenario>...`."""

SECONDARY_BEHAVIOURS: dict[str, Behaviour] = {
    "allsilent.wild.example.org": SILENT,
    "heal.wild.example.org": SERVFAIL,
    "big.wild.example.org": TRUNCATE_UDP,
    "bigtxt.wild.example.org": TRUNCATE_UDP,
}
"""The second upstream answers everything else normally (it is where failover lands).

`heal` fails only here: a query for it succeeds on the first upstream whatever order the server
currently tries them in, which lets a server that demotes a failing upstream trust it again.
"""

LOCAL_LIST_NAME = "gov-extra"
LOCAL_LIST = """\
# Domains banned by a local decision, in both accepted formats.

banned.example
Shouty.Banned-Too.Example.
0.0.0.0 hosts-one.example hosts-two.example
127.0.0.1 hosts-three.example
"""

_names = itertools.count(1)


def decision_labels(entry: str) -> list[str]:
    """The short labels of a catalogue entry's decisions, as blocks cite them."""
    return [reference_label(reference) for reference in load_catalogue_entry(entry).references]


def block_text(list_name: str) -> str:
    """The EDE text of a block by `list_name` outside any policy: a catalogue entry cites its
    decisions by label; an operator list only its name (its file or URL stays on the server)."""
    if list_name not in catalogue_ids():
        return f"blocked by list {list_name}"
    return f"blocked by list {list_name} (ref: {'; '.join(decision_labels(list_name))})"


def fresh_name(scenario: str = "plain", parent: str = "wild.example.org") -> str:
    """A name never queried before, so no cache or merged query can hide what a test checks."""
    return f"t{next(_names)}-{secrets.token_hex(3)}.{scenario}.{parent}."


def mixed_case(name: str) -> str:
    """Alternate letter case, to check the question comes back byte for byte."""
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


def private_state(cwd: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`extra` with XDG_STATE_HOME in `cwd` unless it says otherwise: each test server keeps its
    state (the PID file above all) to itself, never in the user's `~/.local/state/dnswarden`
    nor in another test server's."""
    return {"XDG_STATE_HOME": str(cwd / "state"), **(extra or {})}


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process that imports the same `resolver` as the tests: this
    checkout's, or the installed one, which a `python -m resolver` started in the checkout must
    not shadow with the checkout's own `resolver/` (PYTHONSAFEPATH: no working directory on
    sys.path)."""
    env = dict(os.environ) | dict(extra or {})
    if RESOLVER_HOME == REPO_ROOT:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    else:
        env["PYTHONSAFEPATH"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def make_config(
    upstreams: Iterable[str],
    *,
    listen: Iterable[str] = ("127.0.0.1:0",),
    allow: Iterable[str] = ("127.0.0.0/8", "::1/128"),
    lists: Iterable[str] = ("tiktok",),
    answer: str = "null_ip",
    ips: Iterable[str] = (),
    ttl: str = f"{BLOCK_TTL}s",
    timeout: str = "0.5s",
    deadline: str = "2s",
    tcp_idle_timeout: str = "1s",
) -> dict[str, Any]:
    """A config in the documented shape with short timeouts, so failure paths stay fast."""
    blocking: dict[str, Any] = {"lists": list(lists), "answer": answer, "ttl": ttl}
    if answer == "ip":
        blocking["ip"] = list(ips)
    return {
        "listen": list(listen),
        "upstream": {"servers": list(upstreams), "timeout": timeout, "deadline": deadline},
        "clients": {"allow": list(allow)},
        "blocking": blocking,
        "limits": {
            "max_inflight": 10000,
            "tcp_connections": 1000,
            "tcp_idle_timeout": tcp_idle_timeout,
            "tcp_inflight_per_connection": 100,
        },
        "log": {"level": "info", "allowed_queries": False},
        # Port 0: servers of one test run never fight over the default 9153.
        "metrics": {"listen": "127.0.0.1:0"},
    }


def write_config(directory: Path, config: Mapping[str, Any], name: str = "dnswarden.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def daemon(name: str) -> str | None:
    """`name` on PATH, or in /usr/sbin and /sbin (where daemons live, and PATH may not look)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for UDP and TCP")


def parse_hostport(text: str) -> Address:
    """`127.0.0.1:53` or `[::1]:53` to a (host, port) pair."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


ServerFactory = Callable[..., "ServerProcess"]
"""The `launch` fixture: config dict (and a name) in, started server out."""


class ServerProcess:
    """One running `python -m resolver serve` with its output drained by threads.

    Output is read continuously so the pipes never fill and block the server; stdout lines that
    are JSON objects become `events`. `start` returns once the startup event names the actual
    listening addresses (port 0 resolved), or raises with whatever the process printed.
    """

    def __init__(
        self,
        config: Path,
        cwd: Path,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        prefix: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.cwd = cwd
        self.extra_args = list(extra_args)
        self.env = env
        self.prefix = list(prefix)  # e.g. setpriv, to start without a capability
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.events: list[Event] = []
        self.startup: Event = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._first_line: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        serve = [sys.executable, "-m", "resolver", "serve", "-c", str(self.config)]
        self.proc = subprocess.Popen(
            [*self.prefix, *serve, *self.extra_args],
            cwd=self.cwd,
            env=server_env(private_state(self.cwd, self.env)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            first = self._first_line.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            first = None
        try:
            event = json.loads(first) if first else None
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or event.get("event") != "startup":
            self.stop()
            raise RuntimeError(
                f"server did not log a startup event first; first line {first!r}; "
                f"stderr: {self.stderr_text()[-3000:]}"
            )
        self.startup = event
        return self

    def _drain(self, stream: Any, is_stdout: bool) -> None:
        first = is_stdout
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if first:
                self._first_line.put(line)
                first = False
            with self._changed:
                if not is_stdout:
                    self.stderr_lines.append(line)
                else:
                    self.stdout_lines.append(line)
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        event = None
                    if isinstance(event, dict):
                        self.events.append(event)
                self._changed.notify_all()
        if first:
            self._first_line.put(None)

    @property
    def listeners(self) -> list[Address]:
        return [parse_hostport(item) for item in self.startup.get("listeners", [])]

    @property
    def address(self) -> Address:
        """The first listener: where tests send their queries."""
        return self.listeners[0]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self) -> list[int]:
        """The server's child processes (its workers with `--workers`), sorted."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        return sorted(int(pid) for pid in children.split())

    def wait_for_event(self, match: Callable[[Event], bool], timeout: float = 3.0) -> Event | None:
        """The first logged event that satisfies `match`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def stderr_text(self) -> str:
        with self._lock:
            return "\n".join(self.stderr_lines)

    def stdout_text(self) -> str:
        with self._lock:
            return "\n".join(self.stdout_lines)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process, wait up to STOP_TIMEOUT, then kill it; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)
        return self.proc.returncode


def run_cli(
    *args: str, cwd: Path, timeout: float = 20.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m resolver ARGS` to completion (for `check`, `--version`)."""
    return subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        cwd=cwd,
        env=server_env(private_state(cwd, env)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_exchange(wire: bytes, server: Address, timeout: float = 3.0) -> bytes | None:
    """Send one datagram from a fresh socket; return the first reply from `server`, or None."""
    with socket.socket(_family(server[0]), socket.SOCK_DGRAM) as sock:
        sock.connect(server)
        sock.send(wire)
        sock.settimeout(timeout)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly `size` bytes, or None if the peer closed first."""
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def tcp_frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def tcp_read_message(sock: socket.socket) -> bytes | None:
    prefix = recv_exact(sock, 2)
    if prefix is None:
        return None
    return recv_exact(sock, struct.unpack("!H", prefix)[0])


def tcp_exchange(wire: bytes, server: Address, timeout: float = 3.0) -> bytes | None:
    """One length-prefixed query on a fresh TCP connection; the reply, or None if closed."""
    with socket.create_connection(server, timeout=timeout) as sock:
        sock.sendall(tcp_frame(wire))
        return tcp_read_message(sock)


def exchange(wire: bytes, server: Address, transport: str, timeout: float = 3.0) -> bytes | None:
    if transport == "udp":
        return udp_exchange(wire, server, timeout)
    return tcp_exchange(wire, server, timeout)


def ask(
    query: dns.message.Message, server: Address, transport: str = "udp", timeout: float = 3.0
) -> tuple[bytes, dns.message.Message]:
    """Send a dnspython query; return the raw reply and its parse. No reply fails the test."""
    reply = exchange(query.to_wire(), server, transport, timeout)
    assert reply is not None, f"no {transport} reply to {query.question[0]}"
    return reply, dns.message.from_wire(reply)


def query(
    name: str,
    rdtype: str | int = "A",
    *,
    edns: bool = False,
    dnssec: bool = False,
    payload: int = 1232,
    options: Iterable[dns.edns.Option] = (),
    rd: bool = True,
) -> dns.message.Message:
    """A client query as a stub resolver would send it."""
    message = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(rdtype),
        use_edns=0 if (edns or dnssec or options) else None,
        want_dnssec=dnssec,
        payload=payload if (edns or dnssec or options) else None,
        options=list(options) or None,
    )
    if not rd:
        message.flags &= ~dns.flags.RD
    return message


def question_bytes(wire: bytes) -> bytes:
    """The question section of a single-question message with an uncompressed name."""
    end = 12
    while wire[end]:
        end += 1 + wire[end]
    return wire[12 : end + 1 + 4]


def ede(message: dns.message.Message) -> list[tuple[int, str | None]]:
    """Extended DNS Errors in a reply as (info-code, extra-text) pairs."""
    return [
        (int(option.code), option.text)
        for option in message.options
        if isinstance(option, dns.edns.EDEOption)
    ]


def rrsets_with_ttl(rrsets: Iterable[Any]) -> list[tuple[str, int, int, list[str]]]:
    """A comparable view of a section: owner (lower case), type, TTL and sorted rdata text."""
    return sorted(
        (
            rrset.name.to_text().lower(),
            int(rrset.rdtype),
            int(rrset.ttl),
            sorted(rdata.to_text() for rdata in rrset),
        )
        for rrset in rrsets
    )
