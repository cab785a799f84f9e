"""The service's parts that need no server: how many descriptors it asks for, the timing of
garbage-collector pauses, and readiness and events while a list is missing."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resolver.config import Config, LimitsConfig, parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.lists.fetch import FetchResult
from resolver.lists.feeds import refresh_source
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.shell import service
from resolver.state import ResolverState, build_state

INFINITY = resource.RLIM_INFINITY
NEEDED = 10000 + 1000 + service.OPEN_FILES_HEADROOM  # the default limits


@pytest.mark.parametrize(
    ("soft", "hard", "set_to", "result"),
    [
        (1024, 1_048_576, NEEDED, NEEDED),  # a login shell's default: lifted
        (1024, 4096, 4096, 4096),  # only as far as the hard limit allows
        (1024, INFINITY, NEEDED, NEEDED),
        (65536, 1_048_576, None, 65536),  # already enough (the systemd unit): left alone
        (INFINITY, INFINITY, None, INFINITY),
        (4096, 4096, None, 4096),  # nothing to gain: reported as is
    ],
)
def test_open_files_limit_is_raised_towards_what_the_limits_need(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, set_to: int | None, result: int
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(service.resource, "getrlimit", lambda _which: (soft, hard))
    monkeypatch.setattr(service.resource, "setrlimit", lambda *args: calls.append(args))
    assert service.raise_open_files_limit(NEEDED) == result
    expected = [] if set_to is None else [(resource.RLIMIT_NOFILE, (set_to, hard))]
    assert calls == expected


def test_a_refused_raise_keeps_the_old_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any) -> None:
        raise ValueError("not allowed to raise the soft limit")

    monkeypatch.setattr(service.resource, "getrlimit", lambda _which: (256, 1_048_576))
    monkeypatch.setattr(service.resource, "setrlimit", refuse)
    assert service.raise_open_files_limit(NEEDED) == 256


def test_needed_grows_with_the_limits() -> None:
    small = LimitsConfig(max_inflight=100, tcp_connections=10)
    assert service.open_files_needed(small) == 110 + service.OPEN_FILES_HEADROOM
    assert service.open_files_needed(LimitsConfig()) == NEEDED


def test_gc_pauses_are_timed_per_generation_until_stopped() -> None:
    stats = Stats()
    pauses = service.GcPauses(stats)
    pauses.start()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        pauses.stop()
    seen = {generation: sum(h.counts) for generation, h in stats.gc_pauses.items()}
    assert seen["0"] >= 1 and seen["2"] >= 2
    assert stats.gc_pauses["2"].total > 0
    gc.collect()
    assert {generation: sum(h.counts) for generation, h in stats.gc_pauses.items()} == seen
    assert pauses not in gc.callbacks


# --- missing lists: readiness and the events around them ------------------------------------

FEED_CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"]}}
clients: {{allow: [127.0.0.0/8]}}
state_dir: {state_dir}
sources:
  feed: {{url: "https://127.0.0.1:1/feed.txt"}}
groups:
  officials: {{subnets: [127.0.0.2/32]}}
policies:
  ban: {{block: [{block}], groups: [officials], from: "{start}"}}
blocking: {{lists: [tiktok], missing_lists: {mode}}}
allow: [{allow}]
"""


def feed_config(
    tmp_path: Path, mode: str = "fail_closed", named_by: str = "policy", start: str = "2020-01-01"
) -> Config:
    """The feed (never fetched) named by the officials' policy, or only by `allow`."""
    text = FEED_CONFIG.format(
        state_dir=tmp_path / "state",
        mode=mode,
        block="feed" if named_by == "policy" else "tiktok",
        allow="feed" if named_by == "allow" else "",
        start=start,
    )
    return parse_config(text, "<test>", known_lists=catalogue_ids())


def in_service(state: ResolverState, check: Callable[[service.Service, io.StringIO], None]) -> None:
    """Run `check` on a service for `state` (not started: no socket is opened), in a loop."""

    async def run() -> None:
        log = io.StringIO()
        audit = AuditLog(log, "info", fold_window=0)
        running = service.Service(state, lambda: state.config, audit)
        running.started = True  # as if the listeners were bound
        try:
            check(running, log)
        finally:
            await running.pool.close()

    asyncio.run(run())


def events(log: io.StringIO) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, level, the other fields but the time) of each logged line."""
    found = []
    for line in log.getvalue().splitlines():
        fields = json.loads(line)
        del fields["timestamp"]
        found.append((fields.pop("event"), fields.pop("level"), fields))
    return found


@pytest.mark.parametrize(
    ("mode", "named_by", "start", "ready", "failing", "level"),
    [
        ("fail_closed", "policy", "2020-01-01", False, ["officials"], "error"),
        ("fail_open", "policy", "2020-01-01", True, [], "warning"),
        ("fail_closed", "policy", "2999-01-01", True, [], "warning"),  # window not open yet
        ("fail_closed", "allow", "2020-01-01", True, [], "warning"),  # an allow list blocks nothing
    ],
)
def test_readiness_and_the_start_up_event_follow_the_groups_that_wait(
    tmp_path: Path,
    mode: str,
    named_by: str,
    start: str,
    ready: bool,
    failing: list[str],
    level: str,
) -> None:
    waiting = ["officials"] if (named_by, start) == ("policy", "2020-01-01") else []

    def check(running: service.Service, log: io.StringIO) -> None:
        is_ready, detail = running.ready()
        assert (is_ready, detail["lists_missing"], detail["failing_closed"]) == (
            ready, ["feed"], failing
        )  # fmt: skip
        assert running.snapshot().lists_missing == {"tiktok": False, "feed": True}
        running.report_missing_lists()
        assert events(log) == [
            ("lists_missing", level, {"lists": ["feed"], "missing_lists": mode, "groups": waiting})
        ]

    in_service(build_state(feed_config(tmp_path, mode, named_by, start), None), check)


def test_a_reload_that_loads_the_list_reports_it_and_makes_the_service_ready(
    tmp_path: Path,
) -> None:
    config = feed_config(tmp_path)
    waiting = build_state(config, None)
    good = FetchResult(200, b"banned.example\n", None, None)
    fetched = refresh_source(config, "feed", fetcher=lambda url, **_: good)
    assert fetched.status == "updated"
    loaded = build_state(config, None)  # what the service builds after the fetch
    assert (waiting.missing_lists, loaded.missing_lists) == ({"feed"}, set())

    def check(running: service.Service, log: io.StringIO) -> None:
        assert running.ready()[0] is False
        running.reload((config, loaded))
        assert running.ready()[0] is True
        found = {(name, level): fields for name, level, fields in events(log)}
        assert found[("fail_closed_lifted", "info")] == {"groups": ["officials"]}
        assert found[("lists_recovered", "info")] == {"lists": ["feed"]}
        assert "lists_missing" not in {name for name, _ in found}

    in_service(waiting, check)
