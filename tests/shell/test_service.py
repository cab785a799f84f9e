"""The service's process set-up that needs no server: how many descriptors it asks for, and
the timing of garbage-collector pauses."""

from __future__ import annotations

import gc
import resource
from typing import Any

import pytest

from resolver.config import LimitsConfig
from resolver.observe.stats import Stats
from resolver.shell import service

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
