"""Whether an upstream is up, with hysteresis: a lossy link must not flap it up and down.

Under packet loss the old rule (down after `max_fails` failures in a row, up at the next good
answer) flipped an upstream's state every few milliseconds. Now:

- down after `max_fails` failures in a row (timeouts, network errors, malformed replies,
  REFUSED), but not within `HEALTH_DWELL` of coming back up;
- back up at the first good probe (probes start one probe interval after it went down), or after
  `RECOVER_AFTER` good answers in a row once it has been down for `hold` (the pool passes the
  probe interval, at least `HEALTH_DWELL`);
- an upstream's SERVFAIL is its answer about one name, not a sign of its own health: it never
  counts as a failure. Only `max_fails` of them with no good answer between call for a probe
  (`servfailed`), and only a failing probe then takes the upstream down (`check_failed`). A
  SERVFAIL that carries a DNSSEC validation EDE is a good answer.

So each down lasts at least one probe interval and each up at least `HEALTH_DWELL`. Pure: the
pool passes `now` (monotonic seconds) and acts on what each method returns (True: the state
changed).
"""

from __future__ import annotations

from typing import Final

HEALTH_DWELL: Final = 1.0
"""Seconds an upstream stays up after coming back before failures can take it down again."""

RECOVER_AFTER: Final = 3
"""Good answers in a row that bring a down upstream back (after the hold), without a probe."""


class Health:
    """One upstream's health and the counts behind it."""

    __slots__ = ("changed", "down", "fails", "last_ok", "servfails", "successes")

    def __init__(self, now: float) -> None:
        self.down = False
        self.fails = 0
        """Failures in a row."""
        self.successes = 0
        """Good answers in a row while down."""
        self.servfails = 0
        """Plain SERVFAILs since the last good answer."""
        self.last_ok = now
        self.changed = float("-inf")
        """When the state last changed (never, at first)."""

    def failed(self, now: float, max_fails: int) -> bool:
        """A failed exchange; True when it takes the upstream down."""
        self.fails += 1
        self.successes = 0
        if self.down or self.fails < max_fails or now - self.changed < HEALTH_DWELL:
            return False
        self._change(True, now)
        return True

    def answered(self, now: float, hold: float) -> bool:
        """A good answer; True when it brings the upstream back."""
        self.fails = 0
        self.servfails = 0
        self.last_ok = now
        if not self.down:
            return False
        self.successes += 1
        if self.successes < RECOVER_AFTER or now - self.changed < hold:
            return False
        self._change(False, now)
        return True

    def probed(self, now: float) -> bool:
        """A probe was answered; True when that brings the upstream back."""
        self.fails = 0
        self.servfails = 0
        self.last_ok = now
        if not self.down:
            return False
        self._change(False, now)
        return True

    def servfailed(self, max_fails: int) -> bool:
        """A plain SERVFAIL; True when `max_fails` came with no good answer between and the
        upstream should be probed now to tell a broken name from a broken upstream."""
        self.servfails += 1
        return not self.down and self.servfails >= max_fails

    def check_failed(self, now: float) -> bool:
        """The probe after repeated SERVFAILs failed too; True when that takes it down."""
        self.servfails = 0
        if self.down or now - self.changed < HEALTH_DWELL:
            return False
        self._change(True, now)
        return True

    def _change(self, down: bool, now: float) -> None:
        self.down = down
        self.changed = now
        self.successes = 0
        if not down:
            self.fails = 0
