"""The list guard on the running server: a list file that turns into random bytes, an HTML 404
page, nothing, a fraction of itself or a `com` line is refused, through SIGHUP and at start-up
with a last good copy; the banned names stay blocked, an error-level `list_rejected` event says
why and the metrics count it; `check` fails on each; `reload --accept` loads an intended cut; and
neither a refused nor a broken list is tried again at every poll."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import dns.rdatatype
import pytest
from fake_upstream import FakeUpstream
from harness import (
    Event,
    ServerFactory,
    ServerProcess,
    ask,
    make_config,
    parse_hostport,
    query,
    run_cli,
)
from list_files import rewrite
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

EVENT_TIMEOUT = 30.0
QUIET_POLLS = 4.0  # seconds of watching, at one poll a second, for events that must not come
GOOD = "banned.example\nalso-banned.example\nthird.example\nfourth.example\n"
ONLY_IN_GOOD = "www.fourth.example."  # blocked by the good version, not by the cut one
HTML_404 = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>404 Not Found</title>
</head>
<body>
<h1>Not Found</h1>
<p>The requested URL /national.txt was not found on this server.</p>
<hr>
<address>Apache/2.4.57 (Debian) Server at lists.example.gov Port 443</address>
</body>
</html>
"""
CASES: dict[str, tuple[bytes, str]] = {
    "random bytes": (random.Random(20000).randbytes(20000), "binary"),  # head -c 20000
    "HTML 404 page": (HTML_404.encode(), "html"),
    "0 bytes": (b"", "empty"),
    "shrink by more than half": (b"banned.example\n", "shrink"),
    "single label com": (b"banned.example\nalso-banned.example\ncom\nfourth.example\n",
                         "tld_rule"),
}  # fmt: skip
assert HTML_404.count("\n") == 13


def guard_config(
    upstream: FakeUpstream, list_path: Path, state_dir: Path, refresh: str
) -> dict[str, Any]:
    config = make_config([upstream.address], lists=["tiktok", "mylist"])
    config["sources"] = {"mylist": {"path": str(list_path), "refresh": refresh}}
    config["state_dir"] = str(state_dir)
    return config


def blocked(server: ServerProcess, name: str) -> bool:
    _, reply = ask(query(name), server.address)
    found = [r.address for rr in reply.answer if rr.rdtype == dns.rdatatype.A for r in rr]
    return found == ["0.0.0.0"]


def guard_metrics(server: ServerProcess) -> dict[str, float]:
    """This server's list guard series for `mylist`: the counter and the gauge."""
    host, port = parse_hostport(server.startup["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("list") == "mylist"
        and sample.name in ("dnswarden_list_rejected_total", "dnswarden_list_refused")
    }


def named(server: ServerProcess, name: str, since: int = 0) -> list[Event]:
    return [e for e in server.events[since:] if e.get("event") == name]


def wait_for(server: ServerProcess, name: str, since: int) -> Event:
    found = server.wait_for_event(
        lambda e: e.get("event") == name and server.events.index(e) >= since, EVENT_TIMEOUT
    )
    assert found is not None, f"no {name} event; log:\n{server.stdout_text()[-4000:]}"
    return found


def assert_refused(event: Event, path: Path, reason: str, kept: str) -> None:
    assert (event["level"], event["list"], event["file"]) == ("error", "mylist", str(path))
    assert (event["reason"], event["kept"], event["kept_entries"]) == (reason, kept, 4)
    assert len(event.get("samples", [])) <= 5
    assert len(json.dumps(event)) < 2000, "one event stays small, whatever the list holds"
    if reason == "tld_rule":
        assert event["samples"] == [f"{path}:3: 'com' blocks the whole top-level domain"]


# ----- through SIGHUP: the running version stays -----------------------------------------------


@pytest.fixture(scope="module")
def sighup_list(workdir: Path) -> Path:
    path = workdir / "sighup-list.txt"
    rewrite(path, GOOD)
    return path


@pytest.fixture(scope="module")
def sighup_server(
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    workdir: Path,
    sighup_list: Path,
) -> ServerProcess:
    """Files checked every 10 s (refresh 1h): the SIGHUP is what reloads here."""
    config = guard_config(upstreams[1], sighup_list, workdir / "sighup-state", "1h")
    return launch(config, "guard-sighup")


@pytest.mark.parametrize("case", CASES)
def test_a_refused_version_keeps_the_running_one_through_sighup(
    sighup_server: ServerProcess, sighup_list: Path, case: str
) -> None:
    server = sighup_server
    data, reason = CASES[case]
    assert blocked(server, ONLY_IN_GOOD) and blocked(server, "www.banned.example.")
    since = len(server.events)
    rewrite(sighup_list, data)
    os.kill(server.pid, signal.SIGHUP)
    assert_refused(wait_for(server, "list_rejected", since), sighup_list, reason, "previous")
    reloaded = wait_for(server, "reloaded", since)  # a refusal is not a failed reload
    assert reloaded["lists"]["mylist"] == 4 and "mylist" not in reloaded["changed"]
    assert blocked(server, ONLY_IN_GOOD) and blocked(server, "www.banned.example.")
    if reason == "tld_rule":
        assert not blocked(server, "www.example.com.")
    rejections = len(named(server, "list_rejected"))
    assert guard_metrics(server) == {
        "dnswarden_list_rejected_total": rejections,
        "dnswarden_list_refused": 1.0,
    }
    # Restored: loaded again, and no longer refused.
    since = len(server.events)
    rewrite(sighup_list, GOOD)
    os.kill(server.pid, signal.SIGHUP)
    wait_for(server, "reloaded", since)
    assert guard_metrics(server)["dnswarden_list_refused"] == 0.0
    assert named(server, "reload_failed") == []


# ----- at start-up: the last good copy in state_dir --------------------------------------------


@pytest.fixture(scope="module")
def last_good_state(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> Path:
    """A state_dir as a server that loaded the good version leaves it."""
    state_dir = workdir / "good-state"
    path = workdir / "good-list.txt"
    rewrite(path, GOOD)
    server = launch(guard_config(upstreams[1], path, state_dir, "1h"), "guard-good")
    assert blocked(server, ONLY_IN_GOOD)
    assert server.stop() == 0
    assert list((state_dir / "compiled").glob("mylist-*.dwl"))
    return state_dir


@pytest.mark.parametrize("case", CASES)
def test_a_refused_version_at_start_up_serves_the_last_good_copy(
    launch: ServerFactory,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    workdir: Path,
    last_good_state: Path,
    case: str,
) -> None:
    data, reason = CASES[case]
    slug = case.replace(" ", "-")
    state_dir = workdir / f"start-{slug}-state"
    shutil.copytree(last_good_state, state_dir)
    path = workdir / f"start-{slug}.txt"
    rewrite(path, data)
    config = guard_config(upstreams[1], path, state_dir, "1h")
    config_path = workdir / f"start-{slug}.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    checked = run_cli("check", str(config_path), cwd=workdir)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{path}: list mylist refused ({reason}): " in checked.stderr
    server = launch(config, f"guard-start-{slug}")
    try:
        assert_refused(wait_for(server, "list_rejected", 0), path, reason, "last_good")
        assert server.startup["lists"]["mylist"] == 4
        assert blocked(server, ONLY_IN_GOOD) and blocked(server, "www.banned.example.")
        assert guard_metrics(server) == {
            "dnswarden_list_rejected_total": 1.0,
            "dnswarden_list_refused": 1.0,
        }
        assert named(server, "lists_missing") == []  # the last good copy is in force
    finally:
        assert server.stop() == 0


# ----- the operator accepts a cut ------------------------------------------------------------


def test_reload_accept_loads_an_intended_cut(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> None:
    path = workdir / "accept-list.txt"
    rewrite(path, GOOD)
    server = launch(guard_config(upstreams[1], path, workdir / "accept-state", "1s"), "accept")
    try:
        since = len(server.events)
        rewrite(path, "banned.example\n")  # the decision behind three names was revoked
        refused = wait_for(server, "list_rejected", since)  # seen by the list watcher
        assert refused["reason"] == "shrink" and blocked(server, ONLY_IN_GOOD)
        since = len(server.events)
        result = run_cli("reload", "-c", str(server.config), "--accept", "mylist", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert f"accepting {path} (15 bytes) as list mylist" in result.stdout
        accepted = wait_for(server, "list_accepted", since)
        assert (accepted["level"], accepted["reason"]) == ("warning", "shrink")
        assert (accepted["entries"], accepted["previous"], accepted["file"]) == (1, 4, str(path))
        assert wait_for(server, "reloaded", since)["lists"]["mylist"] == 1
        assert not blocked(server, ONLY_IN_GOOD) and blocked(server, "www.banned.example.")
        assert guard_metrics(server)["dnswarden_list_refused"] == 0.0
    finally:
        assert server.stop() == 0


# ----- no retry at every poll ------------------------------------------------------------------


def test_neither_a_refused_nor_a_broken_list_is_tried_at_every_poll(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], workdir: Path
) -> None:
    """Lists are polled every second here. A refused version is reported once; a broken list
    (200 KB of random bytes: hundreds of invalid lines) fails the reload once, in one short
    event, until it changes."""
    path = workdir / "retry-list.txt"
    rewrite(path, GOOD)
    server = launch(guard_config(upstreams[1], path, workdir / "retry-state", "1s"), "retry")
    try:
        since = len(server.events)
        rewrite(path, HTML_404)
        wait_for(server, "list_rejected", since)
        time.sleep(QUIET_POLLS)
        assert len(named(server, "list_rejected", since)) == 1
        assert named(server, "reload_failed", since) == []
        assert blocked(server, ONLY_IN_GOOD)

        since = len(server.events)
        rewrite(path, random.Random(1).randbytes(200_000))
        failed = wait_for(server, "reload_failed", since)
        assert failed["level"] == "error" and failed["reason"] == "lists changed: mylist"
        assert "running state is kept" in failed["summary"]
        assert len(failed["problems"]) == 5 and failed["more"] > 90
        assert "refusing to load this list" in failed["problems"][0]  # the verdict leads
        line = next(line for line in server.stdout_text().splitlines() if "reload_failed" in line)
        assert len(line) < 3000, "one event stays small, whatever the list holds"
        time.sleep(QUIET_POLLS)
        assert len(named(server, "reload_failed", since)) == 1
        assert blocked(server, ONLY_IN_GOOD)  # the running state answers throughout

        since = len(server.events)
        rewrite(path, GOOD + "fifth.example\n")  # fixed: picked up at the next poll
        assert wait_for(server, "reloaded", since)["lists"]["mylist"] == 5
    finally:
        assert server.stop() == 0
