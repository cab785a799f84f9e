"""Start and stop as an operator, a supervisor or systemd sees them.

A signal at any moment after the `startup` line gives a clean stop and a `shutdown` line, which is
the last line; every start-up failure is one bounded JSON `startup_failed` event on stdout (the
journal) naming what failed, and an exit code that says whether a restart can help; a server
never takes over, nor deletes, the PID file of another one still running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import FakeUpstream
from harness import (
    LOCAL_LIST,
    ServerProcess,
    ask,
    make_config,
    query,
    run_cli,
    server_env,
    write_config,
)

pytestmark = pytest.mark.e2e

EXIT_INVALID = 1
EXIT_CANNOT_START = 3
RACE_ROUNDS = 20
RACE_BUDGET = 40.0
"""Seconds the start-up race may take in all: on a loaded machine fewer rounds, never fewer than
`MIN_RACE_ROUNDS`."""
MIN_RACE_ROUNDS = 5
MAX_EVENT_BYTES = 4096
MAX_STDERR_BYTES = 4096


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(seed=3).start()
    try:
        yield fake
    finally:
        fake.stop()


def stdout_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def start_failing(
    directory: Path,
    config: dict[str, Any],
    *,
    prefix: tuple[str, ...] = (),
    state_home: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`serve` on a config that must not start: it has to exit on its own, quickly."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(directory, config)
    command = [*prefix, sys.executable, "-m", "resolver", "serve", "-c", str(path)]
    env = server_env({"XDG_STATE_HOME": str(state_home or directory / "state")})
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, timeout=30, check=False
    )


def only_event(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON line a failed start writes: `startup_failed`, and small."""
    events = stdout_events(result.stdout)
    assert [e.get("event") for e in events] == ["startup_failed"], (result.stdout, result.stderr)
    assert len(result.stdout.encode()) <= MAX_EVENT_BYTES, result.stdout[:500]
    assert len(result.stderr.encode()) <= MAX_STDERR_BYTES, result.stderr[:500]
    assert "Traceback" not in result.stderr
    return events[0]


# --- stopping ------------------------------------------------------------------------------


def test_sigterm_at_the_startup_line_still_shuts_down_cleanly(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Whoever reads `startup` may signal the server at once (a supervisor, a test, promtool
    missing): handlers must be in place before the line is written."""
    config = make_config([upstream.address])
    failures = []
    rounds = 0
    deadline = time.monotonic() + RACE_BUDGET
    while rounds < RACE_ROUNDS and (rounds < MIN_RACE_ROUNDS or time.monotonic() < deadline):
        directory = tmp_path / f"race-{rounds}"
        directory.mkdir()
        server = ServerProcess(write_config(directory, config), directory).start()
        code = server.stop(signal.SIGTERM)
        rounds += 1
        last = server.events[-1].get("event") if server.events else None
        if code != 0 or last != "shutdown":
            failures.append(f"round {rounds}: exit {code}, last event {last!r}")
    assert failures == [], f"{len(failures)} of {rounds} rounds: " + "; ".join(failures[:5])


def test_shutdown_is_the_last_line(upstream: FakeUpstream, tmp_path: Path) -> None:
    """A block repeated within the fold window is summarised when the window closes; stopping
    before then must write that summary before `shutdown`, never after it."""
    server = ServerProcess(write_config(tmp_path, make_config([upstream.address])), tmp_path)
    server.start()
    try:
        for _ in range(3):
            ask(query("folded.tiktok.com."), server.address)
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    names = [e.get("event") for e in server.events]
    assert names[-1] == "shutdown", names[-5:]
    summaries = [e for e in server.events if e.get("event") == "blocked" and "repeated" in e]
    assert [e["repeated"] for e in summaries] == [2]


# --- the PID file --------------------------------------------------------------------------


def test_the_pid_file_is_private_to_each_test_server(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The harness keeps every server's state (its PID file above all) in the server's own
    directory, never in the user's `~/.local/state/dnswarden`."""
    server = ServerProcess(write_config(tmp_path, make_config([upstream.address])), tmp_path)
    server.start()
    try:
        pid_file = tmp_path / "state" / "dnswarden" / "dnswarden.pid"
        assert pid_file.read_text().strip() == str(server.pid)
    finally:
        assert server.stop() == 0
    assert not pid_file.exists()


def test_a_second_server_refuses_a_pid_file_held_by_a_live_one(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    first = ServerProcess(write_config(tmp_path, make_config([upstream.address])), tmp_path)
    first.start()
    pid_file = tmp_path / "state" / "dnswarden" / "dnswarden.pid"
    try:
        # Same state directory, hence the same default PID file; its own port.
        config = make_config([upstream.address])
        result = start_failing(tmp_path / "second", config, state_home=tmp_path / "state")
        assert result.returncode == EXIT_CANNOT_START, result.stderr
        event = only_event(result)
        assert (event["pid_file"], event["holder"]) == (str(pid_file), first.pid)
        assert str(first.pid) in result.stderr and "dnswarden.pid" in result.stderr
        assert first.alive()
        assert pid_file.read_text().strip() == str(first.pid)  # neither replaced nor deleted
    finally:
        assert first.stop() == 0
    assert not pid_file.exists()


def test_a_stale_pid_file_is_taken_over(upstream: FakeUpstream, tmp_path: Path) -> None:
    """A server killed with SIGKILL leaves its PID file behind: the next one may replace it."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file = tmp_path / "state" / "dnswarden" / "dnswarden.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{gone.pid}\n")
    server = ServerProcess(write_config(tmp_path, make_config([upstream.address])), tmp_path)
    server.start()
    try:
        assert pid_file.read_text().strip() == str(server.pid)
    finally:
        assert server.stop() == 0


def test_stopping_leaves_a_pid_file_that_is_no_longer_ours(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    pid_file = tmp_path / "server.pid"
    config = write_config(tmp_path, make_config([upstream.address]))
    server = ServerProcess(config, tmp_path, ["--pid-file", str(pid_file)]).start()
    try:
        assert pid_file.read_text().strip() == str(server.pid)
        replacement = tmp_path / "other.pid"
        replacement.write_text("4242\n")
        os.replace(replacement, pid_file)  # another server's file now, whoever wrote it
    finally:
        assert server.stop() == 0
    assert pid_file.read_text() == "4242\n"


# --- start-up failures ---------------------------------------------------------------------


def held_port(kind: int) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(1)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    ("held", "protocol", "code_name"),
    [
        (socket.SOCK_DGRAM, "UDP", "EADDRINUSE"),
        (socket.SOCK_STREAM, "TCP", "EADDRINUSE"),
    ],
    ids=["udp-in-use", "tcp-in-use"],
)
def test_a_listener_in_use_is_named(
    upstream: FakeUpstream, tmp_path: Path, held: int, protocol: str, code_name: str
) -> None:
    sock, port = held_port(held)
    with sock:
        config = make_config([upstream.address], listen=[f"127.0.0.1:{port}"])
        result = start_failing(tmp_path, config)
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    event = only_event(result)
    assert (event["listener"], event["protocol"], event["errno"]) == (
        f"127.0.0.1:{port}",
        protocol,
        code_name,
    )
    assert f"127.0.0.1:{port} ({protocol})" in event["error"]
    assert f"127.0.0.1:{port} ({protocol})" in result.stderr
    assert "ss -" in event["hint"]


def test_an_address_not_on_this_host_is_named(upstream: FakeUpstream, tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here; nothing is sent, the bind just fails.
    result = start_failing(tmp_path, make_config([upstream.address], listen=["192.0.2.1:5353"]))
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    event = only_event(result)
    assert (event["listener"], event["protocol"], event["errno"]) == (
        "192.0.2.1:5353",
        "UDP",
        "EADDRNOTAVAIL",
    )
    assert "192.0.2.1:5353" in result.stderr and "not an address of this host" in result.stderr


def test_a_metrics_address_in_use_is_named(upstream: FakeUpstream, tmp_path: Path) -> None:
    sock, port = held_port(socket.SOCK_STREAM)
    with sock:
        config = make_config([upstream.address])
        config["metrics"] = {"listen": f"127.0.0.1:{port}"}
        result = start_failing(tmp_path, config)
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    event = only_event(result)
    assert (event["listener"], event["protocol"]) == (f"127.0.0.1:{port}", "metrics HTTP")
    assert f"127.0.0.1:{port} (metrics HTTP)" in result.stderr


def without_bind_capability() -> tuple[str, ...]:
    """A command prefix under which binding port 53 fails with EACCES, or a skip."""
    if os.geteuid() != 0:
        start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        if start.exists() and int(start.read_text()) <= 53:
            pytest.skip("unprivileged processes may bind port 53 on this host")
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    prefix = (setpriv, "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service")
    bind_53 = "import socket; socket.socket(2, 2).bind(('127.0.0.1', 53))"
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", bind_53],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if "Permission denied" not in probe.stderr:
        pytest.skip(f"cannot drop CAP_NET_BIND_SERVICE here: {probe.stderr[-300:]}")
    return prefix


def test_port_53_without_the_capability_says_how_to_grant_it(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    prefix = without_bind_capability()
    result = start_failing(
        tmp_path, make_config([upstream.address], listen=["127.0.0.1:53"]), prefix=prefix
    )
    assert result.returncode == EXIT_CANNOT_START, result.stderr
    event = only_event(result)
    named = (event["listener"], event["protocol"], event["errno"])
    assert named == ("127.0.0.1:53", "UDP", "EACCES")
    for words in ("CAP_NET_BIND_SERVICE", "setcap", "AmbientCapabilities", "root"):
        assert words in event["hint"] and words in result.stderr, words


def test_a_broken_list_at_start_up_is_one_bounded_event(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Hundreds of bad lines: the event leads with the verdict, then a few samples and a count,
    instead of every line (33 KB of mojibake before the useful part)."""
    broken = tmp_path / "broken.txt"
    broken.write_text(LOCAL_LIST + "".join(f"bad..{i}\xe9\x00\x01 x y\n" for i in range(400)))
    config = make_config([upstream.address], lists=["tiktok", str(broken)])
    result = start_failing(tmp_path, config)
    assert result.returncode == EXIT_INVALID, result.stderr
    event = only_event(result)
    assert event["level"] == "error"
    assert "refusing to load this list" in event["error"]
    assert str(broken) in event["error"]
    assert 1 <= len(event["problems"]) <= 5
    assert event["problem_count"] > len(event["problems"])
    assert "refusing to load this list" in result.stderr.splitlines()[0]
    assert f"dnswarden check {tmp_path / 'dnswarden.yaml'}" in result.stderr


def test_an_invalid_config_at_start_up_is_an_event(tmp_path: Path) -> None:
    path = tmp_path / "dnswarden.yaml"
    path.write_text("lisen: []\n")
    result = run_cli("serve", "-c", str(path), cwd=tmp_path)
    assert result.returncode == EXIT_INVALID
    event = only_event(result)
    assert event["problems"] == [f"{path}:1: lisen: unknown key (did you mean 'listen'?)"]
    assert event["problem_count"] == 1
    assert f"{path}:1: lisen:" in result.stderr
