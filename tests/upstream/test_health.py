"""An upstream's health state machine, driven with a hand-held clock: no sockets, no waiting."""

from __future__ import annotations

import itertools
import random

import pytest

from resolver.upstream.health import HEALTH_DWELL, Health

MAX_FAILS = 3
HOLD = 5.0  # what the pool passes: the probe interval (never below HEALTH_DWELL)

# One step: (seconds, what happened, whether the upstream is down afterwards).
Step = tuple[float, str, bool]


def play(steps: list[Step]) -> list[bool]:
    health = Health(0.0)
    seen = []
    for now, event, _ in steps:
        if event == "fail":
            health.failed(now, MAX_FAILS)
        elif event == "ok":
            health.answered(now, HOLD)
        elif event == "probe":
            health.probed(now)
        elif event == "servfail":
            health.servfailed(MAX_FAILS)
        elif event == "check_failed":
            health.check_failed(now)
        seen.append(health.down)
    return seen


CASES: dict[str, list[Step]] = {
    "down after max_fails in a row": [
        (0.0, "fail", False), (0.1, "fail", False), (0.2, "fail", True),
    ],
    "a good answer in between resets the count": [
        (0.0, "fail", False), (0.1, "fail", False), (0.2, "ok", False), (0.3, "fail", False),
        (0.4, "fail", False), (0.5, "fail", True),
    ],
    "answers bring it back only after the hold, and RECOVER_AFTER in a row": [
        (0.0, "fail", False), (0.1, "fail", False), (0.2, "fail", True),
        (0.3, "ok", True), (0.4, "ok", True), (0.5, "ok", True), (0.6, "ok", True),  # too soon
        (5.3, "fail", True), (5.4, "ok", True), (5.5, "ok", True),  # the failure restarts it
        (5.6, "ok", False),
    ],
    "a good probe brings it back at once": [
        (0.0, "fail", False), (0.1, "fail", False), (0.2, "fail", True), (5.2, "probe", False),
    ],
    "just back up: failures within HEALTH_DWELL do not take it down again": [
        (0.0, "fail", False), (0.1, "fail", False), (0.2, "fail", True), (5.2, "probe", False),
        (5.3, "fail", False), (5.4, "fail", False), (5.5, "fail", False),
        (5.2 + HEALTH_DWELL, "fail", True),
    ],
    "SERVFAILs alone never take it down": [
        (0.1 * i, "servfail", False) for i in range(10)
    ],
    "a failed check after SERVFAILs does": [
        (0.0, "servfail", False), (0.1, "check_failed", True),
    ],
}  # fmt: skip


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_health(steps: list[Step]) -> None:
    assert play(steps) == [down for _, _, down in steps]


@pytest.mark.parametrize(
    ("events", "due"),
    [
        (["servfail"] * (MAX_FAILS - 1), False),
        (["servfail"] * MAX_FAILS, True),
        (["servfail", "servfail", "ok", "servfail", "servfail"], False),
        (["servfail", "fail", "servfail", "servfail"], True),  # a timeout is no good answer
    ],
)
def test_servfails_in_a_row_call_for_a_check(events: list[str], due: bool) -> None:
    health = Health(0.0)
    results = []
    for event in events:
        if event == "servfail":
            results.append(health.servfailed(MAX_FAILS))
        elif event == "ok":
            health.answered(1.0, HOLD)
        else:
            health.failed(1.0, MAX_FAILS + 10)
    assert results[-1] is due


def test_changes_report_what_changed() -> None:
    health = Health(0.0)
    assert [health.failed(t, MAX_FAILS) for t in (0.0, 0.1, 0.2, 0.3)] == [
        False, False, True, False,
    ]  # fmt: skip
    assert health.probed(6.0) is True
    assert health.probed(7.0) is False  # already up


@pytest.mark.parametrize("loss", [0.2, 0.5, 0.8])
def test_a_lossy_link_does_not_flap(loss: float) -> None:
    """Ten seconds of queries 2 ms apart over a link losing `loss` of them, probes every
    HOLD: the old rule (down after three losses, up at the next answer) flapped dozens of
    times; now every down lasts at least HOLD and every up at least HEALTH_DWELL."""
    rng = random.Random(42)
    health = Health(0.0)
    changes: list[float] = []
    now = 0.0
    next_probe = None
    while now < 10.0:
        down = health.down
        if rng.random() < loss:
            health.failed(now, MAX_FAILS)
        else:
            health.answered(now, HOLD)
        if down and next_probe is not None and now >= next_probe:
            next_probe = now + HOLD
            if rng.random() >= loss:
                health.probed(now)
        if health.down != down:
            changes.append(now)
            if health.down:
                next_probe = now + HOLD
        now += 0.002
    assert len(changes) <= 2 * (1 + 10.0 // (HOLD + HEALTH_DWELL))
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    assert all(gap >= HEALTH_DWELL - 1e-9 for gap in gaps), gaps
