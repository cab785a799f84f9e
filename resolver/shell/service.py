"""The service's life: start listeners and the metrics endpoint, log the start-up line, reload on
SIGHUP, warn before policies lapse and whenever one blocks nothing, stop on SIGINT/SIGTERM.
Errors are raised to the CLI, which alone picks exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import gc
import os
import platform
import resource
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from resolver import __version__
from resolver.cache import Cache
from resolver.config import FALLBACK_UPSTREAMS, Config, ConfigError, LimitsConfig, MissingLists
from resolver.config.problems import ordered_problems
from resolver.lists import feeds, loading
from resolver.lists.catalogue import ListError
from resolver.lists.refusals import KEPT_PREVIOUS, ListAcceptance, ListRejection
from resolver.observe.audit import TICK_INTERVAL, AuditLog, read_key
from resolver.observe.metrics import Metrics, ServiceSnapshot
from resolver.observe.outputs import DnstapOutput, Privacy, SyslogOutput
from resolver.observe.stats import Stats
from resolver.pipeline import QueryPipeline
from resolver.policy import windows
from resolver.protocol import core_build
from resolver.shell import privileges
from resolver.shell.encrypted import EncryptedListeners
from resolver.shell.httpd import HealthServer, metrics_token
from resolver.shell.listeners import Listeners
from resolver.shell.workers import REPORT_INTERVAL, WorkerReport, encode_report, every
from resolver.shell.zones import ZoneFeeds
from resolver.state import ResolverState, build_state, read_resolv_conf
from resolver.upstream.pool import PoolOptions, UpstreamPool

LAPSE_WARNING_DAYS = 14
LAPSE_CHECK_INTERVAL = 86400.0
MAX_STARTUP_WARNINGS = 20
IN_FORCE = windows.Window.IN_FORCE
WINDOW_RECHECK = 5.0
"""Longest wait between looks at the policy windows: a step of the wall clock (the edges are
wall-clock times, the loop's timers monotonic; a virtual machine resumed from a pause steps its
clock) is caught within it. A look costs microseconds."""
WATCH_RETRY = 1.0
"""The pause before a background watcher that failed looks again."""
RESTART_ONLY = (
    "listen", "metrics", "dnstap", "syslog", "limits.udp_receive_buffer", "limits.udp_queues",
)
"""Settings a reload cannot apply (sockets and outputs opened at start-up): a change to one is
said (`reload_needs_restart`), and takes effect at the next start."""


def uses_public_fallback(state: ResolverState) -> bool:
    """Whether allowed queries go to the built-in public resolvers: no `upstream.servers`, and
    resolv.conf named none (or only dnswarden itself). An operator must know their traffic
    leaves for Quad9, which may be against the network's policy."""
    return not state.config.upstream.servers and state.upstreams == FALLBACK_UPSTREAMS


def event_loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class Service:
    """The running resolver: one pipeline, its listeners, upstreams and observability."""

    def __init__(self, state: ResolverState, load_config: Callable[[], Config], audit: AuditLog):
        self.load_config = load_config
        self.audit = audit
        self.stats = Stats()
        config = state.config
        self.pool = UpstreamPool(
            state.upstreams,
            config.upstream.timeout,
            config.upstream.deadline,
            config.limits.max_inflight,
            self.stats,
            audit,
            PoolOptions.from_config(config),
        )
        self.cache = Cache(config.cache)
        self.pipeline = QueryPipeline(state, self.pool, self.stats, audit, self.cache)
        self.listeners = Listeners(self.pipeline, config.limits, self.stats, audit)
        self.encrypted = EncryptedListeners(self.listeners, config.encrypted, self.stats, audit)
        self.zones = ZoneFeeds(lambda: self.state.config, self._zone_changed, audit, self.stats)
        self.privacy = Privacy(config.audit.privacy.value, None)
        self.dnstap: DnstapOutput | None = None
        self.syslog: SyslogOutput | None = None
        self.health: HealthServer | None = None
        self.list_loaded: dict[str, float] = dict.fromkeys(state.list_sizes, state.loaded_at)
        self.list_failures: dict[str, int] = {}
        self.refused_feeds: dict[str, str] = {}  # feed -> reason its last download was refused
        self.primary = True  # False in workers but the first: they neither log nor count guards
        self._list_watch = state.list_watch  # the list versions the last reload attempt saw
        self._retry = ListRetry()
        self.started = False
        self.kept_root = False
        self._reload_pending: asyncio.Task[None] | None = None
        self._reload_again: tuple[str, bool] | None = None
        self.blocked_rules: dict[str, int] = {}
        self._in_force: frozenset[str] = frozenset()
        self._windows_changed = asyncio.Event()
        self.track_policy_windows(announce=False)

    @property
    def state(self) -> ResolverState:
        return self.pipeline.state

    # --- what the metrics export besides `stats` (built per scrape, never on the query path) ----

    def snapshot(self) -> ServiceSnapshot:
        now = datetime.datetime.now(datetime.UTC)
        state = self.state
        return ServiceSnapshot(
            upstream_health=self.pool.health(),
            tcp_connections_open=len(self.listeners.connections),
            connections_open=self.encrypted.open_connections(),
            certificate_expiry=self.encrypted.certificate_expiry(),
            list_sizes=dict(state.list_sizes),
            list_last_refresh=dict(self.list_loaded),
            list_refresh_failures=dict(self.list_failures),
            lists_missing={
                name: name in state.missing_lists
                for name in {*state.list_sizes, *state.missing_lists}
            },
            rpz_skipped={
                name: skipped
                for name, report in state.list_reports.items()
                if (skipped := report.not_applicable())
            },
            lists_refused={
                name: bool(report.refused) or name in self.refused_feeds
                for name, report in state.list_reports.items()
            },
            policies=tuple(
                (p.name, p.active(now), p.valid_until.timestamp() if p.valid_until else None)
                for p in state.config.policies
            ),
            group_blocked_rules=dict(self.blocked_rules),
            cache=self.cache.stats() if self.cache.enabled else None,
            audit_events_dropped=self.audit.dropped_total,
            audit_file_errors=self.audit.file_errors,
            rate_limit_clients=self.pipeline.limiter.clients,
            rate_limit_suspect_zones=self.pipeline.limiter.suspect_zones(),
            udp_receive_buffer=self.listeners.receive_buffer,
            build={
                "version": __version__,
                "python": platform.python_version(),
                "loop": event_loop_name(),
            },
            ready=self.ready()[0],
            rpz_zones=self.zones.metrics(),
            outputs=self.output_counts(),
        )

    def output_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, output in (("dnstap", self.dnstap), ("syslog", self.syslog)):
            if output is not None:
                counts[f"{name}.sent"] = output.writer.sent
                counts[f"{name}.dropped"] = output.writer.dropped
        return counts

    def start_outputs(self, worker: WorkerLink | None = None) -> None:
        """dnstap and syslog writers (threads; they connect in the background). The client
        address in dnstap follows the audit trail's privacy mode and key."""
        config = self.state.config
        settings = config.audit
        if settings.privacy.value == "pseudonymise":
            self.privacy.key = read_key(settings.key_file, settings.key_env)
        if config.dnstap.enabled:
            index = worker.index if worker is not None else None
            self.dnstap = DnstapOutput(config.dnstap, self.privacy, index)
            self.pipeline.tap = self.dnstap
            if config.dnstap.forwarder:
                self.pool.tap = self.dnstap.forwarded
        if config.syslog.enabled:
            self.syslog = SyslogOutput(config.syslog)
            self.audit.forward_to(self.syslog.write)

    def close_outputs(self) -> None:
        """After the last audit event: the writers send what they hold (briefly), then stop."""
        self.pipeline.tap = None
        self.pool.tap = None
        self.audit.forward_to(None)
        for output in (self.dnstap, self.syslog):
            if output is not None:
                output.close()

    def flush_cache(self) -> int:
        """Forget every cached answer and failure (for SIGUSR1 or a control command)."""
        count = self.cache.flush()
        self.stats.count("cache.flush")
        self.audit.info("cache_flushed", entries=count)
        return count

    def ready(self) -> tuple[bool, dict[str, object]]:
        healthy = [str(e) for e in self.pool.healthy]
        # A group served fail-closed answers only what its loaded lists block: not ready
        # until its missing lists load. (With fail_open they are named, and ignored.)
        closed = self.pipeline.fail_closed(time.time())
        detail: dict[str, object] = {
            "listeners": self.started,
            "lists": dict(self.state.list_sizes),
            "lists_missing": sorted(self.state.missing_lists),
            "failing_closed": sorted(closed.groups),
            "healthy_upstreams": healthy,
        }
        if self.encrypted.active:
            detail["encrypted"] = self.encrypted.status()
        if self.zones.feeds:
            detail["rpz_zones"] = self.zones.status()
        serving = self.started and self.encrypted.serving()
        return serving and bool(healthy) and not closed.groups, detail

    def report_missing_lists(self, before: frozenset[str] = frozenset()) -> None:
        """At start, and on a reload for lists missing since `before`: which lists are missing
        and which groups must enforce them now; an error when those groups are served
        fail-closed, a warning when they are answered as if the lists were empty (fail_open)
        or when no group needs the lists now (a policy not in force yet, `allow`)."""
        state = self.state
        added = state.missing_lists - before
        if not added:
            return
        mode = state.config.blocking.missing_lists
        groups = sorted(state.waiting(time.time()).groups)
        closed = bool(groups) and mode is MissingLists.FAIL_CLOSED
        log = self.audit.error if closed else self.audit.warning
        log("lists_missing", lists=sorted(added), missing_lists=mode.value, groups=groups)

    # --- life cycle --------------------------------------------------------------------------

    async def start(self, worker: WorkerLink | None = None) -> dict[str, object]:
        config = self.state.config
        needed = open_files_needed(config.limits)
        open_files = raise_open_files_limit(needed)
        if open_files < needed:
            self.audit.warning("open_files_limit", limit=open_files, needed=needed)
        bound = await self.listeners.start(config.listen, reuse_port=worker is not None)
        fields: dict[str, object] = {"listeners": [str(e) for e in bound],
                                     **await self.encrypted.start(reuse_port=worker is not None),
                                     "open_files": open_files}  # fmt: skip
        self.started = True
        self.configure_zones(config)
        if config.metrics.enabled and worker is None:  # the supervisor serves workers' metrics
            metrics = Metrics(self.stats, self.snapshot)
            self.health = HealthServer(metrics, self.ready, metrics_token(config))
            host, port = await self.health.start(
                config.metrics.listen.host, config.metrics.listen.port
            )
            fields["metrics"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        fields.update(self.drop_privileges())
        return fields

    def warn_if_root(self) -> None:
        if self.kept_root:
            self.audit.warning("running_as_root", reason=privileges.ROOT_KEPT)

    def drop_privileges(self) -> dict[str, object]:
        """Started as root: once every socket is bound, become `privileges.user` (no capability
        left), or warn that we stay root. Fields for the start-up event."""
        if not privileges.running_as_root():
            return {}
        config = self.state.config
        if config.privileges.user is None:
            self.kept_root = True  # said after the start-up line: `warn_if_root`
            return {}
        writable = (config.state_dir, self.audit.file_path or "")
        dropped = privileges.drop(config.privileges, writable)
        return {"privileges": dropped.fields(), "capabilities": privileges.capabilities()}

    async def stop(self) -> None:
        await self.zones.close()
        if self.health is not None:
            await self.health.stop()
        self.encrypted.close_servers()
        await self.listeners.stop()
        await self.encrypted.stop()
        await self.pool.close()

    def request_reload(self, reason: str = "signal", reread: bool = True) -> None:
        """Reload in the background (SIGHUP, a changed list file, a refreshed feed). The new
        state is built in a thread (big lists in a child process), so queries keep being
        answered; reloads run one at a time, and requests that arrive meanwhile become one.
        `reread` False keeps the running config (only lists changed)."""
        if self._reload_pending is not None and not self._reload_pending.done():
            queued = self._reload_again
            self._reload_again = (reason, reread or (queued is not None and queued[1]))
            return
        self._reload_pending = asyncio.get_running_loop().create_task(
            self.reload_async(reason, reread)
        )

    async def reload_async(self, reason: str = "signal", reread: bool = True) -> None:
        while True:
            started = time.monotonic()

            def prepare(reread: bool = reread) -> tuple[Config, ResolverState]:
                new = self.load_config() if reread else self.state.config
                running = self.state
                return new, build_state(new, read_resolv_conf(), previous=running, keep=True)

            try:
                prepared: tuple[Config, ResolverState] | BaseException = await asyncio.to_thread(
                    prepare
                )
            except Exception as error:
                prepared = error
            self.reload(prepared, started, reason)
            if self._reload_again is None:
                return
            (reason, reread), self._reload_again = self._reload_again, None

    def configure_zones(self, config: Config) -> None:
        """Watch the config's zone-transfer sources; NOTIFY is answered only while there is
        one (otherwise it stays NOTIMP, like every opcode but QUERY)."""
        self.zones.configure(config)
        self.pipeline.on_notify = self.zones.notify if self.zones.feeds else None

    def _zone_changed(self, name: str, why: str = "zone transferred") -> None:
        """A zone transfer replaced the last good copy of `name` (or its expiry withdrew it or
        gave it back, `why` says): load it now."""
        self.request_reload(f"{why}: {name}", reread=False)

    async def watch_lists(self) -> None:
        """Poll local list files for changes and fetch remote lists when due; reload after
        a change. The checks run in a thread; a fetch never blocks the event loop."""
        while True:
            await asyncio.sleep(loading.poll_interval(self.state.config))
            try:
                await self.check_lists()
            except Exception as error:  # a watcher that dies would stop refreshes silently
                self.watch_failed("list_watch_failed", error)

    async def check_lists(self) -> None:
        """Fetch the feeds that are due, and reload when a feed was updated or a list file
        changed. A list whose reload failed is tried again only when its files change, or
        after a back-off (`ListRetry`): an unchanged broken list must not fill the log."""
        if self._reload_pending is not None and not self._reload_pending.done():
            return  # the running reload may already carry the change; look again next tick
        config = self.state.config
        updated = []
        for name in feeds.due_sources(config, time.time()):
            outcome = await asyncio.to_thread(feeds.refresh_source, config, name)
            if outcome.rejection is not None:
                self.refused_feeds[name] = outcome.rejection.reason
                self.report_rejection(outcome.rejection)
            elif outcome.status == "failed":
                self.list_failures[name] = self.list_failures.get(name, 0) + 1
                self.stats.count("list_refresh.failed")
                self.audit.error("list_refresh_failed", list=name, problem=outcome.detail)
            elif outcome.status == "updated":
                updated.append(name)
                self.refused_feeds.pop(name, None)
                if outcome.acceptance is not None:
                    self.report_acceptance(outcome.acceptance)
                self.audit.info(
                    "list_fetched", list=name, entries=outcome.entries, previous=outcome.previous
                )
        changed = await asyncio.to_thread(loading.local_changes, config, self._list_watch)
        retry = not changed and not updated and self._retry.due(time.monotonic())
        if changed or updated or retry:
            self._list_watch = await asyncio.to_thread(loading.watch_stamps, config)
            names = ", ".join(sorted({*changed, *updated}))
            reason = f"lists changed: {names}" if names else "retrying the lists"
            self.request_reload(reason, reread=False)

    def report_list_guards(self, before: ResolverState | None = None, repeat: bool = True) -> None:
        """Log and count what the guard refused (`list_rejected`, an error) and what was
        loaded only because the operator accepted it (`list_accepted`, a warning) in the
        state just built. `repeat` False leaves out a refusal the state `before` already had
        for the same files (a reload for another list's sake): it was said then."""
        lists = self.state.lists
        if lists is None or not self.primary:
            return
        old = before.lists if before is not None and before.lists is not None else None
        items = {name: item for item, (name, _) in lists.matchers.items()}
        for name, refused in lists.rejected.items():
            said = old.rejected.get(name) if old is not None else None
            same = said is not None and _same_refusal(said, refused)
            item = items.get(name, name)
            unchanged = old is not None and old.watch.get(item) == lists.watch.get(item)
            if repeat or not (same and unchanged):
                self.report_rejection(refused)
        for accepted in lists.accepted.values():
            self.report_acceptance(accepted)

    def report_rejection(self, refused: ListRejection) -> None:
        if self.primary:
            self.stats.count(f"list_rejected.{refused.list}")
            self.audit.error("list_rejected", **refused.fields())

    def report_acceptance(self, accepted: ListAcceptance) -> None:
        if self.primary:
            self.audit.warning("list_accepted", **accepted.fields())

    def reload(
        self,
        prepared: tuple[Config, ResolverState] | BaseException | None = None,
        started: float | None = None,
        reason: str = "signal",
    ) -> None:
        started = time.monotonic() if started is None else started
        before = self.state
        old = before.config
        old_sizes = dict(before.list_sizes)
        old_missing = before.missing_lists
        try:
            if prepared is None:
                config = self.load_config()
                state = build_state(config, read_resolv_conf(), previous=before, keep=True)
            elif isinstance(prepared, BaseException):
                raise prepared
            else:
                config, state = prepared
        except (ConfigError, ListError) as error:
            self.stats.count("reload.failed")
            for name in error.failed_lists if isinstance(error, ListError) else ():
                self.list_failures[name] = self.list_failures.get(name, 0) + 1
            self.reload_failed([str(p) for p in error.problems], reason)
            return
        except Exception as error:
            self.stats.count("reload.failed")
            self.reload_failed([repr(error)[:300]], reason)
            return
        self._retry.succeeded()
        self._list_watch = state.list_watch
        for section in RESTART_ONLY:
            if _setting(config, section) != _setting(old, section):
                self.audit.warning("reload_needs_restart", section=section)
        try:
            # Privacy and the pseudonymisation key follow the config: a new key file rotates
            # every pseudonym from this reload on. A reload for changed lists keeps the config
            # object, and skips this (it flushes folded audit events: ~20 ms under load).
            settings = config.audit
            if config is not old:
                key = read_key(settings.key_file, settings.key_env)
                self.audit.set_privacy(settings.privacy.value, key)
                self.privacy.mode, self.privacy.key = settings.privacy.value, key
        except (OSError, ValueError) as error:
            self.audit.error("reload_audit_key_failed", error=str(error))
        self.pipeline.state = state
        self.pool.configure(
            state.upstreams,
            config.upstream.timeout,
            config.upstream.deadline,
            config.limits.max_inflight,
            PoolOptions.from_config(config),
        )
        self.cache.configure(config.cache)
        if config.inspection != old.inspection:
            self.cache.flush()  # cached answers carry what the old rules looked for
        self.listeners.limits = config.limits
        if config is not old:  # a reload for changed lists keeps the certificate too
            self.encrypted.reload(config.encrypted)
        self.configure_zones(config)
        loaded_at = dict.fromkeys(state.list_sizes, state.loaded_at)
        if state.lists is not None:  # a refused list's version in force is as old as it was
            for name, refused in state.lists.rejected.items():
                if refused.kept == KEPT_PREVIOUS and name in self.list_loaded:
                    loaded_at[name] = self.list_loaded[name]
        self.list_loaded = loaded_at
        self.stats.count("reload.ok")
        self.audit.info(
            "reloaded",
            reason=reason,
            changed=loading.size_changes(old_sizes, state.list_sizes),
            blocked_domains=state.policy.domain_count,
            lists=dict(state.list_sizes),
            upstreams=[str(e) for e in state.upstreams],
            seconds=round(time.monotonic() - started, 3),
        )
        self.report_list_guards(before, repeat=reason == "signal")
        recovered = old_missing - state.missing_lists
        if recovered:
            self.audit.info("lists_recovered", lists=sorted(recovered))
        self.report_missing_lists(old_missing)
        self.track_policy_windows(announce=False, reset=True)
        self.warn_on_load()

    def reload_failed(self, problems: list[str], reason: str) -> None:
        """Log a failed reload, capped (`capped`). One that lists changes caused is tried
        again when their files change, or after a back-off (`ListRetry`), not every poll."""
        if reason != "signal":
            self._retry.failed(time.monotonic())
        self.audit.error("reload_failed", reason=reason, **capped(problems))

    def warn_on_load(self) -> None:
        """At start-up and after every reload: what the new state does not enforce."""
        self.warn_lapsing_policies()
        self.warn_policy_windows()
        self.warn_upstream_fallback()

    def warn_policy_windows(self) -> None:
        """A policy that has lapsed or not started blocks nothing: say so, with its window."""
        config = self.state.config
        now = datetime.datetime.now(datetime.UTC)
        for notice in windows.out_of_window(config.policies, config.source, now):
            self.audit.warning(notice.event, **notice.fields())

    def warn_upstream_fallback(self) -> None:
        if uses_public_fallback(self.state):
            self.audit.warning(
                "upstream_fallback",
                upstreams=[str(e) for e in self.state.upstreams],
                reason="no upstream.servers, and /etc/resolv.conf names no nameserver other "
                "than dnswarden itself",
            )

    def track_policy_windows(self, announce: bool, reset: bool = False) -> None:
        """Recompute what each group has in force (the `group_blocked_rules` gauge), and with
        `announce` log each policy that started or lapsed since the last look. `reset` (a new
        state) forgets the last look: the reload's warnings have said what is out of window."""
        state = self.state
        now = time.time()
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        self.blocked_rules = windows.blocked_rules(state.policy, state.list_sizes, now)
        in_force = frozenset(
            p.name for p in state.config.policies if windows.window(p, moment) is IN_FORCE
        )
        if announce and not reset:
            source = state.config.source
            for policy in state.config.policies:
                if policy.name in in_force and policy.name not in self._in_force:
                    self.audit.info("policy_started", **windows.policy_fields(policy, source),
                                    blocked_rules=self.blocked_rules)  # fmt: skip
                elif policy.name in self._in_force and policy.name not in in_force:
                    notice = windows.OutOfWindow(policy, windows.window(policy, moment), source)
                    self.audit.warning(notice.event, **notice.fields(),
                                       blocked_rules=self.blocked_rules)  # fmt: skip
        self._in_force = in_force
        if reset:
            self._windows_changed.set()  # the watcher's next edge may have moved

    async def watch_policy_windows(self, announce: bool) -> None:
        """Wake at each window's edge (or a reload) and track what is in force from then."""
        while True:
            now = datetime.datetime.now(datetime.UTC)
            edge = windows.next_edge(self.state.config.policies, now)
            wait = WINDOW_RECHECK
            if edge is not None:
                wait = min(wait, max((edge - now).total_seconds(), 0.0))
            self._windows_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._windows_changed.wait(), wait)
            try:
                self.track_policy_windows(announce)
            except Exception as error:  # a dead watcher would leave edges unlogged, silently
                self.watch_failed("policy_watch_failed", error)
                await asyncio.sleep(WATCH_RETRY)

    def watch_failed(self, event: str, error: Exception) -> None:
        """A background watcher caught a bug and goes on: logged at error level and counted
        with the query path's bugs (`internal_errors`, alerted on)."""
        self.stats.count("internal_error")
        self.audit.error(event, error=repr(error)[:300])

    def warn_lapsing_policies(self) -> None:
        """A ban that lapses silently is a ban lifted by accident: warn from 14 days before."""
        now = datetime.datetime.now(datetime.UTC)
        horizon = now + datetime.timedelta(days=LAPSE_WARNING_DAYS)
        for policy in self.state.config.policies:
            until = policy.valid_until
            if until is not None and now < until <= horizon:
                self.audit.warning(
                    "policy_lapsing",
                    policy=policy.name,
                    until=until.isoformat(),
                    days_left=round((until - now).total_seconds() / 86400, 1),
                    reference=policy.reference,
                )


def _same_refusal(one: ListRejection, other: ListRejection) -> bool:
    return (one.location, one.reason, one.detail, one.samples) == (
        other.location, other.reason, other.detail, other.samples
    )  # fmt: skip


def capped(problems: Sequence[str], shown: int = 5, width: int = 300) -> dict[str, object]:
    """A `reload_failed` event's fields: a summary first, the first few problems (verdicts on a
    whole file before the lines they sum up; each cut to `width`), and how many more there
    are. One broken list can have thousands of bad lines; the event says enough to act on,
    and `dnswarden check` prints them all."""
    ordered = ordered_problems(problems)
    first = [p if len(p) <= width else p[:width] + "..." for p in ordered[:shown]]
    count = len(problems)
    fields: dict[str, object] = {
        "summary": f"{count} problem{'s' if count != 1 else ''}; the running state is kept "
        "(`dnswarden check` lists them all)",
        "problems": first,
    }
    if count > shown:
        fields["more"] = count - shown
    return fields


@dataclass(slots=True)
class ListRetry:
    """When to try lists again after a failed reload although none of their files changed:
    after a minute, then twice as long each time, up to an hour. (A file made readable
    again, or a directory fixed, changes no file's size or time.)"""

    FIRST: ClassVar[float] = 60.0
    LONGEST: ClassVar[float] = 3600.0
    delay: float = 0.0
    at: float | None = None

    def failed(self, now: float) -> None:
        self.delay = min(self.delay * 2 or self.FIRST, self.LONGEST)
        self.at = now + self.delay

    def succeeded(self) -> None:
        self.delay, self.at = 0.0, None

    def due(self, now: float) -> bool:
        if self.at is None or now < self.at:
            return False
        self.at = None  # the reload's outcome sets the next one
        return True


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """Set when this process is one of several workers run by `shell.workers.Supervisor`."""

    index: int
    report_fd: int


YOUNG_GC_THRESHOLD = 2_000
"""Allocations between collections of the youngest generation (CPython 3.11's default: 700,
3.13's: 2,000)."""
OPEN_FILES_HEADROOM = 1024
"""Descriptors beyond upstream sockets and client connections: listeners, lists, logs, TCP and
TLS upstream connections, the metrics server."""


def open_files_needed(limits: LimitsConfig) -> int:
    """Every upstream query in flight holds a socket of its own (a fresh source port each), and
    every client TCP connection one more."""
    return limits.max_inflight + limits.tcp_connections + OPEN_FILES_HEADROOM


class GcPauses:
    """Times each collection of the cyclic garbage collector into `Stats.gc_pauses`: it stops
    the event loop, so every query in flight waits through it, and it is the first suspect
    when tail latency rises. A `gc.callbacks` hook, called only per collection."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.stats.gc_pause(info["generation"], time.perf_counter() - self._started)

    def start(self) -> None:
        gc.callbacks.append(self)

    def stop(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def raise_open_files_limit(needed: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards `needed` (never above the hard limit, which only
    root may raise): many shells start services with a soft limit of 1,024, and a
    socket() that fails counts against the upstream's health. The soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):  # a platform cap below the hard limit (macOS)
            return soft
        soft = wanted
    return soft


async def run_service(
    state: ResolverState,
    load_config: Callable[[], Config],
    audit: AuditLog,
    worker: WorkerLink | None = None,
) -> None:
    """Serve `state` until SIGINT/SIGTERM; SIGHUP rebuilds the state from `load_config()`.

    Signal handlers go in first and the `startup` line comes last, once the server serves:
    whoever reads that line may signal at once, and must get a clean stop and a `shutdown`
    line, which is the last line."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = Service(state, load_config, audit)
    service.primary = worker is None or worker.index == 0
    try:
        service.start_outputs(worker)
        fields = await service.start(worker)
    except BaseException:
        await service.stop()
        service.close_outputs()
        raise
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    loop.add_signal_handler(signal.SIGUSR1, service.flush_cache)

    # What start-up built lives as long as the process: keep it out of the cyclic GC's full
    # collections, which otherwise pause the loop for tens of ms under load (no reply should
    # take over 50 ms, even while lists reload).
    # A young collection walks what survived since the last one: a forwarded answer leaves
    # about three tuples (its cached answer among them), which it then stops tracking. So the
    # threshold sets the pause, not the total: per 50,000 forwarded answers 33-58 ms of
    # collections at 700, 2,000 or 20,000 alike, but pauses up to 0.35, 1.3 and 20 ms.
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    gc_pauses = GcPauses(service.stats)
    gc_pauses.start()
    timers = [
        loop.create_task(every(TICK_INTERVAL, audit.tick)),
        loop.create_task(service.watch_lists()),
        loop.create_task(service.watch_policy_windows(announce=worker is None or not worker.index)),
    ]
    if worker is None or worker.index == 0:
        timers.append(loop.create_task(every(LAPSE_CHECK_INTERVAL, service.warn_lapsing_policies)))
    # With workers, the supervisor logs one start-up line and the warnings come from worker 0.
    if worker is None:
        audit.info(
            "startup",
            version=__version__,
            core=core_build(),
            config=state.config.source,
            **fields,
            upstreams=[str(e) for e in state.upstreams],
            blocked_domains=state.policy.domain_count,
            lists=dict(state.list_sizes),
            groups=sorted(state.policy.groups),
            policies=[p.name for p in state.config.policies],
            missing_lists=state.config.blocking.missing_lists.value,
            audit_key_id=audit.key_id(),
            loop=event_loop_name(),
        )
    if worker is None or worker.index == 0:
        service.listeners.warn_capped_buffers()
    if worker is None:  # with workers, the supervisor says it
        service.warn_if_root()
    if worker is None or worker.index == 0:
        service.report_list_guards()
        service.report_missing_lists()
        for name, report in state.list_reports.items():
            if report.kind != "catalogue":
                audit.info("list_loaded", list=name, **report.fields())
        for warning in state.warnings[:MAX_STARTUP_WARNINGS]:
            audit.warning("list_line_skipped", problem=warning)
        if len(state.warnings) > MAX_STARTUP_WARNINGS:
            audit.warning("list_lines_skipped", more=len(state.warnings) - MAX_STARTUP_WARNINGS)
        service.warn_on_load()

    reporter = None
    if worker is not None:  # its first report makes this worker ready: the last step
        def supervisor_lost() -> None:
            audit.error("supervisor_lost", worker=worker.index, pid=os.getpid())
            stop.set()

        reporter = await WorkerReporter.open(service, worker, supervisor_lost)
        timers.append(loop.create_task(every(REPORT_INTERVAL, reporter.send)))
    try:
        await stop.wait()
    finally:
        gc_pauses.stop()
        for signum in (signal.SIGHUP, signal.SIGUSR1):  # stopping: neither reload nor flush
            loop.add_signal_handler(signum, _ignore)
        for timer in timers:
            timer.cancel()
        await service.stop()
        if reporter is not None:
            reporter.send()
            reporter.close()
        audit.close(
            "shutdown" if worker is None else "worker_stopped", counts=service.stats.summary()
        )
        service.close_outputs()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(signum)


def _setting(config: Config, path: str) -> object:
    """The value at a dotted `path` of `config` ("limits.udp_queues")."""
    return functools.reduce(getattr, path.split("."), config)


def _ignore() -> None:
    """The handler of SIGHUP and SIGUSR1 while stopping: neither may kill nor reload."""


class SupervisorPipe(asyncio.Protocol):
    """The worker's end of its report pipe. The supervisor holds the other end until it exits,
    so the pipe closing while this worker runs means the supervisor died (SIGKILL, the OOM
    killer): the worker stops too rather than serve on, unsupervised, with lists no reload
    reaches and counters nobody reads."""

    def __init__(self, lost: Callable[[], None]) -> None:
        self.lost = lost
        self.closing = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.lost()


class WorkerReporter:
    """Sends this worker's counters and snapshot to the supervisor over a pipe, once a second."""

    MAX_BUFFERED = 1 << 20

    def __init__(
        self, service: Service, transport: asyncio.WriteTransport, pipe: SupervisorPipe
    ) -> None:
        self.service = service
        self.transport = transport
        self.pipe = pipe

    @classmethod
    async def open(
        cls, service: Service, worker: WorkerLink, lost: Callable[[], None]
    ) -> WorkerReporter:
        """The reporter, its first report sent; `lost` is called if the supervisor dies."""
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(worker.report_fd, "wb", 0)
        transport, protocol = await loop.connect_write_pipe(lambda: SupervisorPipe(lost), pipe)
        reporter = cls(service, transport, protocol)
        reporter.send()
        return reporter

    def send(self) -> None:
        """A snapshot, unless the supervisor is not reading (then this one is skipped)."""
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size() > self.MAX_BUFFERED:
            return
        service = self.service
        detail = service.ready()[1]
        transport.write(encode_report(WorkerReport(service.stats, service.snapshot(), detail)))

    def close(self) -> None:
        self.pipe.closing = True
        self.transport.close()

