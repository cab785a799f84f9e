"""A ban never lapses silently: the running server warns of policies outside their window at
start-up and at every reload, logs each window edge as it passes, exports what each group has
blocked now, warns when it falls back to the public resolvers, and the systemd unit's reload
stops at `dnswarden check` when the config is broken."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import dns.rdatatype
import pytest
import yaml
from fake_upstream import FakeUpstream
from harness import (
    REPO_ROOT,
    Event,
    ServerFactory,
    ServerProcess,
    ask,
    make_config,
    query,
    server_env,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

UNIT = REPO_ROOT / "deploy" / "systemd" / "dnswarden.service"
INSTALLED = "/opt/dnswarden/bin/dnswarden"
INSTALLED_CONFIG = "/etc/dnswarden/dnswarden.yaml"
EDGE_TIMEOUT = 20.0
QUIET = 1.5
"""How long a server that should not have been signalled is watched for a reload event."""

WINDOWS = {
    "lapsed": {"block": ["tiktok"], "groups": ["officials"], "reference": "decision of 2023",
               "from": "2023-03-10", "until": "2023-09-10"},
    "in-force": {"block": ["ops"], "groups": ["officials"], "from": "2024-01-01"},
    "future": {"block": ["tiktok"], "groups": ["officials"], "from": "2999-01-01"},
}  # fmt: skip


def windows_config(upstream: FakeUpstream, directory: Path) -> dict[str, Any]:
    ops = directory / "ops.txt"
    ops.write_text("first.example\nsecond.example\n")
    config = make_config([upstream.address], lists=[])
    config["groups"] = {"officials": {"subnets": ["127.0.0.0/8"]}}
    config["sources"] = {"ops": {"path": str(ops)}}
    config["policies"] = WINDOWS
    config["state_dir"] = str(directory / "state")
    return config


def events_named(server: ServerProcess, name: str, since: int = 0) -> list[Event]:
    return [e for e in server.events[since:] if e.get("event") == name]


def wait_for(server: ServerProcess, name: str, since: int, timeout: float = 5.0) -> Event | None:
    def match(event: Event) -> bool:
        return event.get("event") == name and server.events.index(event) >= since

    return server.wait_for_event(match, timeout)


def wait_for_edge(server: ServerProcess, name: str, edge: datetime.datetime) -> Event:
    """The event `name`, logged once the wall clock has passed `edge`: waited for until
    EDGE_TIMEOUT after the edge by the wall clock, which the server's windows follow (a test
    that counted from its own start would fail on a step of the clock, not on a bug)."""
    deadline = edge + datetime.timedelta(seconds=EDGE_TIMEOUT)
    for _ in range(3):  # bounded, whatever the clock does
        left = (deadline - datetime.datetime.now(datetime.UTC)).total_seconds()
        event = wait_for(server, name, 0, max(left, 0.0))
        if event is not None:
            return event
        if left <= 0:
            break
    recent = "\n".join(json.dumps(e) for e in server.events[-15:])
    raise AssertionError(
        f"no {name} within {EDGE_TIMEOUT} s of {edge.isoformat()} (now "
        f"{datetime.datetime.now(datetime.UTC).isoformat()}); the last events:\n{recent}\n"
        f"stderr:\n{server.stderr_text()[-2000:]}"
    )


def blocked(server: ServerProcess, name: str) -> bool:
    _, reply = ask(query(name), server.address)
    addresses = [r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A
                 for r in rrset]  # fmt: skip
    return addresses == ["0.0.0.0"]


def group_blocked_rules(server: ServerProcess) -> dict[str, float]:
    url = f"http://{server.startup['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return {
        sample.labels["group"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "dnswarden_group_blocked_rules"
    }


@pytest.fixture(scope="module")
def upstream() -> Any:
    fake = FakeUpstream().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_startup_and_reload_warn_of_each_policy_out_of_window(
    launch: ServerFactory, upstream: FakeUpstream, workdir: Path
) -> None:
    directory = workdir / "windows-files"
    directory.mkdir()
    server = launch(windows_config(upstream, directory), "windows")
    source = str(server.config)
    lines = server.config.read_text().splitlines()

    def line_of(policy: str) -> int:
        return lines.index(f"  {policy}:") + 1

    lapsed = wait_for(server, "policy_lapsed", 0)
    future = wait_for(server, "policy_not_started", 0)
    assert lapsed == {**lapsed, "level": "warning", "policy": "lapsed",
                      "from": "2023-03-10T00:00:00+00:00", "until": "2023-09-10T00:00:00+00:00",
                      "groups": ["officials"], "lists": ["tiktok"],
                      "reference": "decision of 2023", "config": f"{source}:{line_of('lapsed')}"}
    assert future == {**future, "level": "warning", "policy": "future",
                      "from": "2999-01-01T00:00:00+00:00", "until": None,
                      "config": f"{source}:{line_of('future')}"}  # fmt: skip
    assert [e["policy"] for e in events_named(server, "policy_lapsed")] == ["lapsed"]
    assert [e["policy"] for e in events_named(server, "policy_not_started")] == ["future"]
    assert events_named(server, "upstream_fallback") == []  # upstreams are configured
    assert group_blocked_rules(server) == {"officials": 2, "default": 0}
    assert blocked(server, "www.first.example.")
    assert not blocked(server, "www.tiktok.com.")

    since = len(server.events)
    os.kill(server.pid, signal.SIGHUP)
    assert wait_for(server, "reloaded", since, 30.0) is not None
    lapsed_again = wait_for(server, "policy_lapsed", since)
    assert lapsed_again is not None and lapsed_again["policy"] == "lapsed"
    future_again = wait_for(server, "policy_not_started", since)
    assert future_again is not None and future_again["policy"] == "future"
    order = [e["event"] for e in server.events[since:]]
    assert order.index("reloaded") < order.index("policy_lapsed")


def test_a_window_edge_while_running_is_logged_and_counted(
    launch: ServerFactory, upstream: FakeUpstream, workdir: Path
) -> None:
    """A policy starts and another lapses a few seconds after start-up, with no reload: each
    edge is logged as it passes, the gauge follows, and so do the answers."""
    directory = workdir / "edges-files"
    directory.mkdir()
    config = windows_config(upstream, directory)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    starts = now + datetime.timedelta(seconds=6)
    # Edges 8 s apart: a loaded machine that wakes the watcher late must still see them apart.
    ends = now + datetime.timedelta(seconds=14)
    config["policies"] = {
        "starting": {"block": ["ops"], "groups": ["officials"], "from": starts.isoformat()},
        "ending": {"block": ["tiktok"], "groups": ["officials"], "until": ends.isoformat()},
    }
    server = launch(config, "edges")
    assert datetime.datetime.now(datetime.UTC) < starts, "start-up took too long for this test"
    rules_before = group_blocked_rules(server)["officials"]
    assert rules_before > 2  # tiktok only
    assert blocked(server, "www.tiktok.com.") and not blocked(server, "www.first.example.")
    assert [e["policy"] for e in events_named(server, "policy_not_started")] == ["starting"]

    started = wait_for_edge(server, "policy_started", starts)
    assert started["policy"] == "starting"
    assert started["blocked_rules"] == {"officials": rules_before + 2, "default": 0}
    assert blocked(server, "www.first.example.")

    ended = wait_for_edge(server, "policy_lapsed", ends)
    assert ended["policy"] == "ending"
    assert ended["level"] == "warning" and ended["until"] == ends.isoformat()
    assert ended["blocked_rules"] == {"officials": 2, "default": 0}
    assert datetime.datetime.now(datetime.UTC) >= ends
    assert group_blocked_rules(server) == {"officials": 2, "default": 0}
    assert not blocked(server, "www.tiktok.com.")


def unshare_works() -> bool:
    """Whether this host lets us give a process its own mount and network namespaces (root,
    or a container that allows it): the way to show it an empty resolv.conf and no network."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    probe = subprocess.run([unshare, "-m", "-n", "true"], capture_output=True, timeout=10,
                           check=False)  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare -m -n")
def test_the_public_fallback_is_warned_at_startup(tmp_path: Path) -> None:
    """With no upstream.servers and an empty resolv.conf the server would ask Quad9: it must say
    so. It runs in a network namespace of its own (loopback only), so nothing can leave."""
    config = make_config([], lists=["tiktok"])
    del config["upstream"]["servers"]
    path = write_config(tmp_path, config)
    empty = tmp_path / "resolv.conf"
    empty.write_text("# no nameserver\n")
    inner = (
        f"ip link set lo up 2>/dev/null || true; mount --bind {shlex.quote(str(empty))} "
        f"/etc/resolv.conf && exec {shlex.quote(sys.executable)} -m resolver serve -c "
        f"{shlex.quote(str(path))}"
    )
    server = subprocess.Popen(
        ["unshare", "-m", "-n", "sh", "-c", inner], cwd=tmp_path, env=server_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            events.append(event)
            if event.get("event") == "upstream_fallback":
                break
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    names = [e.get("event") for e in events]
    assert names[0] == "startup", (names, server.stderr.read() if server.stderr else "")
    assert events[0]["upstreams"] == ["udp://9.9.9.9:53", "udp://149.112.112.112:53"]
    (fallback,) = [e for e in events if e.get("event") == "upstream_fallback"]
    assert fallback["level"] == "warning"
    assert fallback["upstreams"] == events[0]["upstreams"]


def unit_reload_commands() -> list[list[str]]:
    """The unit's ExecReload lines, in order, as argv lists."""
    commands = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("ExecReload="):
            commands.append(shlex.split(line.partition("=")[2]))
    return commands


def systemctl_reload(server: ServerProcess, config: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run the unit's ExecReload lines as systemd does: in order, for this server and config,
    stopping at the first that fails (none has a "-" prefix, so each failure is fatal)."""
    done = []
    for argv in unit_reload_commands():
        assert not argv[0].startswith("-"), "an ExecReload line whose failure is ignored"
        if argv[0] == INSTALLED:
            argv = [sys.executable, "-m", "resolver", *argv[1:]]
        argv = [str(config) if a == INSTALLED_CONFIG else a for a in argv]
        argv = [str(server.pid) if a == "$MAINPID" else a for a in argv]
        result = subprocess.run(argv, cwd=REPO_ROOT, env=server_env(), capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        done.append(result)
        if result.returncode != 0:
            break
    return done


def test_the_units_reload_stops_at_check_on_a_broken_config(
    launch: ServerFactory, upstream: FakeUpstream, workdir: Path
) -> None:
    directory = workdir / "unit-files"
    directory.mkdir()
    config = windows_config(upstream, directory)
    config["policies"] = {"in-force": WINDOWS["in-force"]}
    server = launch(config, "unit")
    good = server.config.read_text()

    broken = yaml.safe_load(good)
    broken["policies"]["in-force"]["groups"] = ["no-such-group"]
    server.config.write_text(yaml.safe_dump(broken, sort_keys=False))
    since = len(server.events)
    check, *rest = systemctl_reload(server, server.config)
    assert rest == [], "the SIGHUP ran although check failed"
    assert check.returncode == 1
    assert f"{server.config}:" in check.stderr and "no-such-group" in check.stderr
    time.sleep(QUIET)
    outcomes = ("reloaded", "reload_failed")
    assert [e for name in outcomes for e in events_named(server, name, since)] == []

    lapsing = yaml.safe_load(good)
    lapsing["policies"] = {"lapsed": WINDOWS["lapsed"], **lapsing["policies"]}
    server.config.write_text(yaml.safe_dump(lapsing, sort_keys=False))
    since = len(server.events)
    check, kill = systemctl_reload(server, server.config)
    assert (check.returncode, kill.returncode) == (0, 0), check.stdout + check.stderr
    assert "warning: " in check.stdout and "policies.lapsed: lapsed on" in check.stdout
    assert wait_for(server, "reloaded", since, 30.0) is not None
    warned = wait_for(server, "policy_lapsed", since)
    assert warned is not None and warned["policy"] == "lapsed"
