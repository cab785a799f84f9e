"""The command as an operator meets it: `check`, `--version`, startup line, overrides, signals."""

from __future__ import annotations

import re
import resource
import signal
import time
import tomllib
from pathlib import Path

import dns.rcode
import pytest
from fake_upstream import SILENT, FakeUpstream
from harness import (
    REPO_ROOT,
    ServerFactory,
    ServerProcess,
    ask,
    fresh_name,
    make_config,
    query,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.e2e

INVALID = """\
listen:
  - "127.0.0.1:0"
upstream:
  servers:
    - "not-an-address:53"
  timeout: fast
clients:
  allow:
    - 10.0.0.0/33
blocking:
  lists:
    - tiktok
    - no-such-app
  answer: sinkhole
limits:
  max_inflight: many
colour: blue
"""
INVALID_PROBLEMS = [
    (5, "upstream.servers"),
    (6, "upstream.timeout"),
    (9, "clients.allow"),
    (13, "blocking.lists"),
    (14, "blocking.answer"),
    (16, "limits.max_inflight"),
    (17, "colour"),
]
SKIPPED_DIRS = {"build", "tests", "blocklists", "dist", "node_modules"}


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, make_config(["127.0.0.1:5300", "[::1]:5301"]))
    result = run_cli("check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    result = run_cli("check", "bad.yaml", cwd=tmp_path)
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 1, "\n".join(output)
    files = "|".join(re.escape(f) for f in ("bad.yaml", str(path)))
    missing = []
    for line, key in INVALID_PROBLEMS:
        pattern = re.compile(rf"^({files}):{line}: {re.escape(key)}(\[\d+\])?: \S")
        if not any(pattern.match(text) for text in output):
            missing.append(f"{line}: {key}")
    assert missing == [], "not reported:\n" + "\n".join(missing) + "\noutput:\n" + "\n".join(output)


def test_check_rejects_a_missing_file(tmp_path: Path) -> None:
    result = run_cli("check", "absent.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.yaml" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr




def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version in result.stdout + result.stderr


def test_startup_event(launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    servers = [upstreams[0].address, upstreams[1].address]
    server = launch(make_config(servers), "startup")
    event = server.startup
    assert event["event"] == "startup"
    assert len(event["listeners"]) == 1
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    assert event["upstreams"] == [f"udp://{server}" for server in servers]
    assert isinstance(event["blocked_domains"], int) and event["blocked_domains"] >= 5
    assert event["version"] == "0.1.0"
    assert "timestamp" in event
    assert str(event.get("config", "")).endswith("dnswarden.yaml")


def test_a_low_open_files_limit_is_raised(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    """Started from a shell with `ulimit -n 256`, the server lifts its own soft limit so every
    upstream query in flight can have its socket (here: 500 + 50 + headroom)."""
    config = make_config([upstreams[0].address])
    config["limits"] |= {"max_inflight": 500, "tcp_connections": 50}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the server
    try:
        server = launch(config, "nofile")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{server.pid}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    assert int(line.split()[3]) == server.startup["open_files"] == 500 + 50 + 1024


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_either_event_loop_serves(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], loop: str
) -> None:
    """Production runs on uvloop (the `speed` extra, installed with the tests too), and falls
    back to the stock asyncio loop without it; DNSWARDEN_EVENT_LOOP forces either. Both must
    block, forward and cache: the two loops differ in details (uvloop's timer handles, its
    missing `sock_recvfrom`) that only running on each shows."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = launch(
        make_config([upstreams[0].address]), f"loop-{loop}", env={"DNSWARDEN_EVENT_LOOP": loop}
    )
    assert server.startup["loop"] == loop
    name = fresh_name()
    seen = []
    for qname in ("tiktok.com.", name, name):
        _, reply = ask(query(qname, "A"), server.address)
        seen.append((reply.rcode(), [rd.to_text() for rrset in reply.answer for rd in rrset]))
    assert seen == [
        (dns.rcode.NOERROR, ["0.0.0.0"]),
        (dns.rcode.NOERROR, ["192.0.2.99"]),
        (dns.rcode.NOERROR, ["192.0.2.99"]),
    ]
    assert len(upstreams[0].queries(name)) == 1  # the second came from the cache


def test_an_unknown_event_loop_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, make_config(["127.0.0.1:1"]))
    result = run_cli("serve", "-c", str(config), cwd=tmp_path, env={"DNSWARDEN_EVENT_LOOP": "trio"})
    assert result.returncode == 2
    assert "DNSWARDEN_EVENT_LOOP='trio'" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], sig: int
) -> None:
    server = launch(make_config([upstreams[0].address]), "signal")
    _, reply = ask(query(fresh_name(), "A"), server.address)
    assert reply.rcode() == dns.rcode.NOERROR
    start = time.monotonic()
    code = server.stop(sig)
    assert time.monotonic() - start < 5
    assert code == 0
    assert any(e.get("event") == "shutdown" for e in server.events), server.stdout_text()[-2000:]
    assert "Traceback" not in server.stderr_text()


def test_upstream_override_replaces_config(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    with FakeUpstream(behaviour=SILENT) as dead:
        config = make_config([dead.address])
        server = launch(config, "override", ["--upstream", upstreams[1].address])
        assert server.startup["upstreams"] == [f"udp://{upstreams[1].address}"]
        since = time.monotonic()
        name = fresh_name()
        _, reply = ask(query(name, "A"), server.address)
        assert reply.rcode() == dns.rcode.NOERROR
        assert dead.queries(since=since) == []
        assert upstreams[1].queries(name, since=since)


def test_ipv6_listener_and_upstream(launch: ServerFactory) -> None:
    with FakeUpstream(host="::1") as upstream:
        server: ServerProcess = launch(make_config([upstream.address], listen=["[::1]:0"]), "ipv6")
        assert server.address[0] == "::1"
        name = fresh_name()
        for transport in ("udp", "tcp"):
            _, reply = ask(query(name, "AAAA"), server.address, transport)
            assert [r.to_text() for rrset in reply.answer for r in rrset] == ["2001:db8::99"]
        _, blocked = ask(query("tiktok.com.", "AAAA"), server.address)
        assert [r.to_text() for rrset in blocked.answer for r in rrset] == ["::"]
        assert upstream.queries(name)
        server.stop()
