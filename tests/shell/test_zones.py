"""The expiry of transferred RPZ zones (`resolver.shell.zones`), with the clock injected: a copy
no primary has confirmed for its SOA EXPIRE time is reported once, its rules kept in force or
(with `on_expire: missing`) withdrawn, and given back when a primary confirms it again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from resolver.config import Config
from resolver.config.document import parse_config
from resolver.lists.fetch import SourceStore
from resolver.lists.loading import load_lists
from resolver.lists.transfer import SoaTimers
from resolver.observe.stats import Stats
from resolver.shell.zones import ZoneFeeds, ZoneStatus, _Feed, expiry_warnings

T0 = 1_800_000_000.0
EXPIRE = 600
BODY = b"$ORIGIN rpz.test.\n@ 60 SOA ns.rpz.test. h.rpz.test. 7 3600 60 600 60\n" \
       b"evil.example 60 CNAME .\n"  # fmt: skip


class Recorder:
    """The audit log's `error`/`info`, kept as (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.events.append(("error", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))


def config(tmp_path: Path, on_expire: str | None) -> Config:
    extra = f"    on_expire: {on_expire}\n" if on_expire else ""
    text = (
        f"state_dir: {tmp_path / 'state'}\nsources:\n  national:\n"
        f"    primaries: [127.0.0.1:9]\n    zone: rpz.test\n{extra}"
        "blocking:\n  lists: [national]\n"
    )
    return parse_config(text, "test.yaml", base_dir=tmp_path, known_lists=frozenset())


def store_copy(config: Config, checked_at: float) -> SourceStore:
    store = SourceStore(config.state_dir)
    store.write_candidate("national", BODY)
    store.promote("national", {"sha256": "a" * 64, "etag": "7", "fetched_at": checked_at,
                               "checked_at": checked_at, "entries": 1})  # fmt: skip
    store.touch("national", serial=7, soa_expire=EXPIRE)
    return store


class Watch:
    """One zone's watcher, driven by hand: `judge(at)` is one expiry check at unix time `at`."""

    def __init__(self, config: Config) -> None:
        self.now = T0
        self.reloads: list[tuple[str, str]] = []
        self.audit = Recorder()
        self.zones = ZoneFeeds(lambda: config, lambda *why: self.reloads.append(why),
                               self.audit, Stats(), clock=lambda: self.now)  # type: ignore[arg-type]
        (source,) = config.sources
        self.feed = _Feed(source, ZoneStatus(zone="rpz.test", serial=7), SoaTimers())
        self.zones.feeds[source.name] = self.feed

    def judge(self, at: float) -> ZoneStatus:
        self.now = at
        asyncio.run(self.zones._judge_expiry(self.feed))
        return self.feed.status

    def events(self) -> list[tuple[str, str]]:
        return [(level, event) for level, event, _ in self.audit.events]


@pytest.mark.parametrize(
    ("on_expire", "withdrawn", "rules"),
    [
        (None, False, "kept in force"),  # the default
        ("keep", False, "kept in force"),
        ("missing", True, "withdrawn: blocking.missing_lists applies"),
    ],
)
def test_an_unconfirmed_copy_expires_once_and_comes_back_when_a_primary_answers(
    tmp_path: Path, on_expire: str | None, withdrawn: bool, rules: str
) -> None:
    settings = config(tmp_path, on_expire)
    store = store_copy(settings, checked_at=T0)
    watch = Watch(settings)

    status = watch.judge(T0 + EXPIRE - 1)
    assert (status.expired, status.expires_at, watch.events()) == (False, T0 + EXPIRE, [])

    status = watch.judge(T0 + EXPIRE)
    assert status.expired and watch.events() == [("error", "rpz_zone_expired")]
    fields = watch.audit.events[0][2]
    assert (fields["list"], fields["zone"], fields["serial"], fields["refreshed_at"],
            fields["expire"], fields["rules"]) == ("national", "rpz.test", 7, T0, EXPIRE,
                                                   rules)  # fmt: skip
    assert bool(store.meta("national").get("withdrawn")) == withdrawn
    assert watch.reloads == ([("national", "zone expired")] if withdrawn else [])
    loaded = load_lists(settings)
    assert ("national" in loaded.missing) == withdrawn
    assert ("expired, withdrawn" in loaded.reports["national"].note) == withdrawn
    assert watch.zones.metrics()["national"]["expired"] == 1.0
    assert watch.zones.status()["national"]["expired"] is True
    assert expiry_warnings(settings, T0 + EXPIRE + 5) == [
        f"xfr://127.0.0.1:9/rpz.test: RPZ zone rpz.test of list national expired 5 s ago: no "
        f"primary has confirmed it for its SOA expire of {EXPIRE} s; "
        + ("it is withdrawn and blocking.missing_lists applies (on_expire: missing)" if withdrawn
           else "its rules stay in force (on_expire: keep)")
    ]  # fmt: skip

    watch.judge(T0 + 5 * EXPIRE)  # still expired: said once
    assert watch.events() == [("error", "rpz_zone_expired")]

    store.touch("national", checked_at=T0 + 5 * EXPIRE + 10)  # a primary said "current"
    status = watch.judge(T0 + 5 * EXPIRE + 11)
    assert not status.expired and status.expires_at == T0 + 6 * EXPIRE + 10
    assert watch.events() == [("error", "rpz_zone_expired"), ("info", "rpz_zone_expiry_lifted")]
    assert not store.meta("national").get("withdrawn")
    assert watch.reloads == (
        [("national", "zone expired"), ("national", "zone confirmed again")] if withdrawn else []
    )
    assert "national" not in load_lists(settings).missing
    assert expiry_warnings(settings, T0 + 5 * EXPIRE + 11) == []


def test_a_zone_never_transferred_does_not_expire(tmp_path: Path) -> None:
    settings = config(tmp_path, "missing")
    watch = Watch(settings)
    status = watch.judge(T0 + 10 * EXPIRE)
    assert (status.expired, status.expires_at, watch.events(), watch.reloads) == (
        False, None, [], []
    )  # fmt: skip
    assert expiry_warnings(settings, T0 + 10 * EXPIRE) == []


def test_a_copy_withdrawn_under_missing_is_given_back_when_the_config_says_keep(
    tmp_path: Path,
) -> None:
    store = store_copy(config(tmp_path, "missing"), checked_at=T0)
    store.touch("national", withdrawn=True)
    settings = config(tmp_path, "keep")
    watch = Watch(settings)
    status = watch.judge(T0 + 2 * EXPIRE)
    assert status.expired and watch.events() == [("error", "rpz_zone_expired")]
    assert not store.meta("national").get("withdrawn")
    assert watch.reloads == [("national", "zone confirmed again")]
