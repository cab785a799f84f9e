"""RPZ zones kept current by zone transfer: one watcher per zone-transfer source.

Each zone is checked at start, then on its SOA's refresh timer (retry after a failure), and at
once when one of its primaries sends NOTIFY. A check runs `feeds.refresh_source` with a
`transfer.ZoneFetcher` in a thread (an IXFR from the last good copy's serial, AXFR when there is
none or IXFR is refused), so the zone is judged and stored like any feed, and never on the query
path; a zone that changed is loaded by a reload of the lists. With worker processes, the worker
that gets a NOTIFY transfers; the others pick the new copy up at their next list check (the
state directory's lock lets one transfer at a time).

A copy that no primary has confirmed for its SOA's EXPIRE time is expired
(`transfer.ZoneExpiry`): judged at start, after every check, and when the time comes between
checks, from the copy's sidecar, so a refresh by any worker or an earlier run counts. An
expired zone is an error event (`rpz_zone_expired`), a gauge, a field of /readyz and a
warning of `dnswarden check`. Its rules stay in force unless the source says
`on_expire: missing`: then its sidecar is marked `withdrawn`, the list loads as missing and
`blocking.missing_lists` applies, until a primary answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resolver.config import Config, SourceConfig
from resolver.config.transfer import OnExpire
from resolver.lists import feeds
from resolver.lists.fetch import SourceStore
from resolver.lists.transfer import (
    MAX_TIMER,
    MIN_TIMER,
    SoaTimers,
    ZoneExpiry,
    ZoneFetcher,
    notify_reply,
)
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats


@dataclass(slots=True)
class ZoneStatus:
    """What /readyz and /metrics say of one zone."""

    zone: str
    serial: int | None = None
    last_transfer: float | None = None  # unix time the copy in force was transferred
    last_check: float | None = None  # unix time a primary last answered (up to date or not)
    transfer: str = ""  # the last transfer's kind: axfr or ixfr
    primary: str = ""
    failures: int = 0
    last_error: str = ""
    transfers: dict[str, int] = field(default_factory=dict)  # by kind
    expires_at: float | None = None  # unix time the copy in force expires unless refreshed
    expired: bool = False

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {"zone": self.zone, "serial": self.serial,
                                  "last_transfer": self.last_transfer,
                                  "failures": self.failures}  # fmt: skip
        if self.transfer:
            out["transfer"] = self.transfer
            out["primary"] = self.primary
        if self.last_error:
            out["last_error"] = self.last_error
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
            out["expired"] = self.expired
        return out


@dataclass(slots=True)
class _Feed:
    source: SourceConfig
    status: ZoneStatus
    timers: SoaTimers
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class ZoneFeeds:
    """The zone-transfer sources of the running config, their watchers and their NOTIFYs."""

    def __init__(
        self,
        config: Callable[[], Config],
        changed: Callable[[str, str], None],
        audit: AuditLog,
        stats: Stats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._changed = changed
        self.audit = audit
        self.stats = stats
        self.clock = clock  # unix time, for the expiry of copies (tests move it)
        self.feeds: dict[str, _Feed] = {}

    def configure(self, config: Config) -> None:
        """Watch the zone-transfer sources of `config` (at start and after every reload): a
        source whose settings changed starts over, its status kept."""
        store = SourceStore(config.state_dir) if config.state_dir else None
        wanted = {s.name: s for s in config.sources if s.transfer is not None}
        for name in list(self.feeds):
            feed = self.feeds[name]
            if wanted.get(name) != feed.source:
                if feed.task is not None:
                    feed.task.cancel()
                if name not in wanted:
                    del self.feeds[name]
        for name, source in wanted.items():
            old = self.feeds.get(name)
            if old is not None and old.source == source:
                continue
            assert source.transfer is not None
            status = old.status if old is not None else _stored_status(source, store)
            feed = _Feed(source, status, _stored_timers(store, name))
            self.feeds[name] = feed
            feed.task = asyncio.get_running_loop().create_task(self._watch(feed))

    async def close(self) -> None:
        tasks = [feed.task for feed in self.feeds.values() if feed.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def notify(self, packet: bytes, client: str) -> bytes | None:
        """The pipeline's NOTIFY hook: answer, and wake the zone's watcher when accepted."""
        outcome = notify_reply(packet, client, [feed.source for feed in self.feeds.values()])
        self.stats.count("notify." + outcome.result)
        if outcome.source is not None:
            self.feeds[outcome.source].wake.set()
        return outcome.reply

    def status(self) -> dict[str, dict[str, object]]:
        return {name: feed.status.fields() for name, feed in sorted(self.feeds.items())}

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per zone: serial, last transfer time, failures and transfers by kind, as numbers."""
        out: dict[str, dict[str, float]] = {}
        for name, feed in self.feeds.items():
            status = feed.status
            values = {"failures": float(status.failures)}
            if status.serial is not None:
                values["serial"] = float(status.serial)
            if status.last_transfer is not None:
                values["last_transfer"] = status.last_transfer
            for kind, count in status.transfers.items():
                values["transfers." + kind] = float(count)
            values["expired"] = 1.0 if status.expired else 0.0
            out[name] = values
        return out

    async def _watch(self, feed: _Feed) -> None:
        delay = 0.0  # at start: IXFR from the last good copy, or the first AXFR
        with contextlib.suppress(OSError):  # a copy that expired while we were down: say so now
            await self._judge_expiry(feed)
        while True:
            expires_at = feed.status.expires_at
            if expires_at is not None and not feed.status.expired:
                delay = min(delay, max(expires_at - self.clock(), 0.0) + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.wake.wait(), delay)
            feed.wake.clear()
            try:
                delay = await self._check(feed)
            except Exception as error:  # a watcher that dies would stop the zone silently
                self.audit.error("rpz_transfer_failed", list=feed.source.name,
                                 zone=feed.status.zone, problem=repr(error)[:300])  # fmt: skip
                delay = feed.timers.retry
            with contextlib.suppress(OSError):
                await self._judge_expiry(feed)

    async def _judge_expiry(self, feed: _Feed) -> None:
        """Whether the copy in force has expired, said once when it does and once when a
        primary confirms a copy again; with `on_expire: missing`, the copy is withdrawn (and
        given back) by its sidecar and a reload of the list."""
        config = self._config()
        source = feed.source
        if not config.state_dir or config.list_source(source.name) != source:
            return
        store = SourceStore(config.state_dir)
        name = source.name
        meta = await asyncio.to_thread(_copy_meta, store, name)
        expiry = ZoneExpiry.of(meta) if meta is not None else None
        expired = expiry is not None and expiry.expired(self.clock())
        status = feed.status
        status.expires_at = expiry.expires_at if expiry is not None else None
        assert source.transfer is not None
        mode = source.transfer.on_expire
        if expired and not status.expired:
            assert expiry is not None
            self.audit.error("rpz_zone_expired", list=name, zone=status.zone,
                             serial=status.serial, refreshed_at=expiry.refreshed_at,
                             expire=expiry.expire, on_expire=mode.value,
                             rules="kept in force" if mode is OnExpire.KEEP else
                             "withdrawn: blocking.missing_lists applies")  # fmt: skip
        elif status.expired and not expired:
            self.audit.info("rpz_zone_expiry_lifted", list=name, zone=status.zone,
                            serial=status.serial)  # fmt: skip
        status.expired = expired
        withdraw = expired and mode is OnExpire.MISSING
        if meta is not None and bool(meta.get("withdrawn")) != withdraw:
            await asyncio.to_thread(store.touch, name, withdrawn=withdraw)
            self._changed(name, "zone expired" if withdraw else "zone confirmed again")

    async def _check(self, feed: _Feed) -> float:
        """One check of the zone; the seconds until the next one."""
        config = self._config()
        source = feed.source
        name = source.name
        if config.list_source(name) != source:
            return feed.timers.retry  # a reload is replacing this watcher
        store = SourceStore(config.state_dir)
        fetcher = ZoneFetcher(source, store.body_path(name))

        def check() -> feeds.RefreshOutcome:
            outcome = feeds.refresh_source(config, name, fetcher=fetcher)
            report = fetcher.report
            if report is not None and outcome.status != "failed":
                timers = report.timers
                store.touch(name, serial=report.serial, soa_refresh=timers.refresh,
                            soa_retry=timers.retry, soa_expire=timers.expire)  # fmt: skip
            return outcome

        outcome = await asyncio.to_thread(check)
        status = feed.status
        report = fetcher.report
        now = time.time()
        if report is not None:
            feed.timers = report.timers
            status.last_check = now
        if outcome.status == "failed":
            status.failures += 1
            status.last_error = outcome.detail[:500]
            self.stats.count("list_refresh.failed")
            self.audit.error("rpz_transfer_failed", list=name, zone=status.zone,
                             problem=outcome.detail)  # fmt: skip
            return feed.timers.retry
        if report is None:  # another process holds the zone's lock: look again soon
            return feed.timers.retry
        status.last_error = ""
        if report.kind != "current":
            status.transfers[report.kind] = status.transfers.get(report.kind, 0) + 1
        if outcome.status == "updated":
            status.serial = report.serial
            status.last_transfer = now
            status.transfer = report.kind
            status.primary = report.primary
            self.audit.info("rpz_transferred", list=name, zone=status.zone,
                            serial=report.serial, transfer=report.kind, primary=report.primary,
                            entries=outcome.entries, previous=outcome.previous)  # fmt: skip
            self._changed(name, "zone transferred")
        status.serial = report.serial
        return feed.timers.refresh


def _stored_status(source: SourceConfig, store: SourceStore | None) -> ZoneStatus:
    """The status a restart starts from: the last good copy's serial and transfer time."""
    assert source.transfer is not None
    status = ZoneStatus(zone=source.transfer.zone)
    if store is not None and store.has_copy(source.name):
        meta = store.meta(source.name)
        serial = meta.get("serial", meta.get("etag"))
        with contextlib.suppress(TypeError, ValueError):
            status.serial = int(serial)
        fetched = meta.get("fetched_at")
        if isinstance(fetched, int | float):
            status.last_transfer = float(fetched)
    return status


def expiry_warnings(config: Config, now: float) -> list[str]:
    """For `dnswarden check`: one line per zone-transfer source whose last good copy in
    `state_dir` has expired, saying what the server does with it."""
    if not config.state_dir:
        return []
    store = SourceStore(config.state_dir)
    found = []
    for source in config.sources:
        if source.transfer is None:
            continue
        meta = _copy_meta(store, source.name)
        expiry = ZoneExpiry.of(meta) if meta is not None else None
        if expiry is None or not expiry.expired(now):
            continue
        kept = (
            "its rules stay in force (on_expire: keep)"
            if source.transfer.on_expire is OnExpire.KEEP
            else "it is withdrawn and blocking.missing_lists applies (on_expire: missing)"
        )
        found.append(
            f"{source.location}: RPZ zone {source.transfer.zone} of list {source.name} expired "
            f"{int(now - expiry.expires_at)} s ago: no primary has confirmed it for its SOA "
            f"expire of {int(expiry.expire)} s; {kept}"
        )
    return found


def _copy_meta(store: SourceStore, name: str) -> dict[str, object] | None:
    """The sidecar of the last good copy of `name`, None when there is no copy."""
    return store.meta(name) if store.has_copy(name) else None


def _stored_timers(store: SourceStore | None, name: str) -> SoaTimers:
    if store is None:
        return SoaTimers()
    meta = store.meta(name)
    try:
        refresh = min(max(float(meta.get("soa_refresh", 3600.0)), MIN_TIMER), MAX_TIMER)
        retry = min(max(float(meta.get("soa_retry", 60.0)), MIN_TIMER), MAX_TIMER)
    except (TypeError, ValueError):
        return SoaTimers()
    return SoaTimers(refresh, retry)
