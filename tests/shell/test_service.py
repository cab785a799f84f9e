"""The service's parts that need no server: how many descriptors it asks for, the timing of
garbage-collector pauses, and readiness and events while a list is missing."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resolver.config import Config, LimitsConfig, parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.lists.feeds import refresh_source
from resolver.lists.fetch import FetchResult
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


# --- the list guard in the service: events, counters, and no retry of an unchanged list ------

GUARDED_CONFIG = """
listen: ["127.0.0.1:0"]
upstream: {{servers: ["127.0.0.1:5399"]}}
clients: {{allow: [127.0.0.0/8]}}
state_dir: {state_dir}
sources:
  mylist: {{path: {path}, refresh: 1s}}
blocking: {{lists: [tiktok, mylist]}}
"""


def guarded(tmp_path: Path, text: str) -> tuple[Config, Path]:
    path = tmp_path / "mylist.txt"
    path.write_text(text)
    config = parse_config(
        GUARDED_CONFIG.format(state_dir=tmp_path / "state", path=path),
        "<test>",
        known_lists=catalogue_ids(),
    )
    return config, path


def bump(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = path.stat().st_mtime + 2
    os.utime(path, (stamp, stamp))


def test_a_refused_version_is_logged_and_counted_once_and_the_rest_reloads(
    tmp_path: Path,
) -> None:
    config, path = guarded(tmp_path, "a.example\nb.example\nc.example\nd.example\n")
    running = build_state(config, None, keep=True)
    bump(path, "<html><head><title>404 Not Found</title></head></html>\n")
    refused = build_state(config, None, previous=running, keep=True)

    def check(live: service.Service, log: io.StringIO) -> None:
        live.reload((config, refused), reason="lists changed: mylist")
        found = events(log)
        names = [name for name, _, _ in found]
        assert names.count("list_rejected") == 1 and "reloaded" in names
        (rejected,) = [fields for name, level, fields in found if name == "list_rejected"]
        assert rejected["list"] == "mylist" and rejected["file"] == str(path)
        assert (rejected["reason"], rejected["kept"], rejected["kept_entries"]) == (
            "html", "previous", 4
        )  # fmt: skip
        assert [level for name, level, _ in found if name == "list_rejected"] == ["error"]
        assert live.stats.counts["list_rejected.mylist"] == 1
        assert live.snapshot().lists_refused == {"tiktok": False, "mylist": True}
        assert live.state.list_sizes["mylist"] == 4  # the version in force stayed
        # Another list's change reloads again: the same refusal is not said twice...
        again = build_state(config, None, previous=live.state, keep=True)
        live.reload((config, again), reason="lists changed: other")
        assert [name for name, _, _ in events(log)].count("list_rejected") == 1
        # ...but an operator's SIGHUP hears it again.
        live.reload((config, build_state(config, None, previous=live.state)), reason="signal")
        assert [name for name, _, _ in events(log)].count("list_rejected") == 2
        assert live.stats.counts["list_rejected.mylist"] == 2

    in_service(running, check)


def test_a_worker_other_than_the_first_neither_logs_nor_counts(tmp_path: Path) -> None:
    config, path = guarded(tmp_path, "a.example\n")
    bump(path, "a.example\ncom\n")
    state = build_state(config, None)

    def check(live: service.Service, log: io.StringIO) -> None:
        live.primary = False
        live.report_list_guards()
        assert events(log) == [] and "list_rejected.mylist" not in live.stats.counts
        live.primary = True
        live.report_list_guards()
        assert [name for name, _, _ in events(log)] == ["list_rejected"]

    in_service(state, check)


def test_an_unchanged_broken_list_is_not_retried_every_poll(tmp_path: Path) -> None:
    """A list that fails the reload (here: it became a directory, so it cannot be read) is
    tried again when it changes, or after the back-off; never at every poll."""
    config, path = guarded(tmp_path, "a.example\n")
    state = build_state(config, None, keep=True)

    async def poll(live: service.Service) -> None:
        await live.check_lists()
        pending = live._reload_pending
        if pending is not None:
            await pending

    async def run() -> None:
        log = io.StringIO()
        audit = AuditLog(log, "info", fold_window=0)
        live = service.Service(state, lambda: config, audit)
        try:
            path.unlink()
            path.mkdir()
            for _ in range(5):
                await poll(live)
            failed = [fields for name, _, fields in events(log) if name == "reload_failed"]
            assert len(failed) == 1, events(log)
            assert failed[0]["reason"] == "lists changed: mylist"
            assert "cannot read list file" in failed[0]["problems"][0]
            assert live._retry.delay == service.ListRetry.FIRST
            live._retry.at = 0.0  # the back-off has run out: one more try
            for _ in range(3):
                await poll(live)
            failed = [fields for name, _, fields in events(log) if name == "reload_failed"]
            assert [f["reason"] for f in failed] == ["lists changed: mylist", "retrying the lists"]
            assert live._retry.delay == 2 * service.ListRetry.FIRST
            path.rmdir()
            path.write_text("a.example\nb.example\n")  # fixed: seen at the next poll
            await poll(live)
            reloaded = [fields for name, _, fields in events(log) if name == "reloaded"]
            assert len(reloaded) == 1 and live.state.list_sizes["mylist"] == 2
            assert live._retry.at is None
        finally:
            await live.pool.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("problems", "shown", "more"),
    [
        ([], [], None),
        (["a.yaml:1: listen: bad"], ["a.yaml:1: listen: bad"], None),
        ([f"l.txt:{n}: bad" for n in range(1, 101)], [f"l.txt:{n}: bad" for n in range(1, 6)],
         95),
        (["x" * 1000], ["x" * 300 + "..."], None),
        (  # a broken list: its verdict comes last from the parser, first in the event
            [*(f"l.txt:{n}: bad" for n in range(1, 9)), "l.txt: 8 invalid lines; refusing"],
            ["l.txt: 8 invalid lines; refusing", *(f"l.txt:{n}: bad" for n in range(1, 5))],
            4,
        ),
    ],
)  # fmt: skip
def test_reload_failed_carries_a_summary_a_few_problems_and_a_count(
    problems: list[str], shown: list[str], more: int | None
) -> None:
    fields = service.capped(problems)
    assert next(iter(fields)) == "summary"
    assert f"{len(problems)} problem" in str(fields["summary"])
    assert fields["problems"] == shown and fields.get("more") == more


def test_list_retry_backs_off_to_an_hour() -> None:
    retry = service.ListRetry()
    assert not retry.due(1e9)
    delays = []
    for _ in range(8):
        retry.failed(0.0)
        delays.append(retry.delay)
    assert delays == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    assert not retry.due(3599.0) and retry.due(3600.0) and not retry.due(3601.0)
    retry.succeeded()
    assert (retry.delay, retry.at) == (0.0, None)


def test_a_window_watcher_that_fails_logs_counts_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while tracking the policy windows must not end the watch: the next edge would pass
    unlogged and the gauge go stale, with nothing to say so."""
    monkeypatch.setattr(service, "WINDOW_RECHECK", 0.01)
    monkeypatch.setattr(service, "WATCH_RETRY", 0.01)
    looks: list[bool] = []

    def track(announce: bool, reset: bool = False) -> None:
        looks.append(announce)
        if len(looks) == 1:
            raise RuntimeError("boom")

    async def run() -> None:
        log = io.StringIO()
        audit = AuditLog(log, "info", fold_window=0)
        state = build_state(feed_config(tmp_path), None)
        live = service.Service(state, lambda: state.config, audit)
        monkeypatch.setattr(live, "track_policy_windows", track)
        watcher = asyncio.create_task(live.watch_policy_windows(announce=True))
        try:
            for _ in range(200):
                await asyncio.sleep(0.01)
                if len(looks) >= 3:
                    break
        finally:
            watcher.cancel()
            await live.pool.close()
        assert len(looks) >= 3, "the watcher stopped after the failure"
        failed = [(level, f) for name, level, f in events(log) if name == "policy_watch_failed"]
        assert failed == [("error", {"error": "RuntimeError('boom')"})]
        assert live.stats.counts["internal_error"] == 1

    asyncio.run(run())
