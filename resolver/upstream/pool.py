"""Forwarding to upstream resolvers: spoofing-resistant exchanges, strategies, health and merging.

Transports. `udp://`: every attempt uses a fresh random ID from a fresh random source port
(RFC 5452; a pooled socket that the kernel binds anew for each attempt), and accepts only a
reply from the upstream's address and port with our ID, QR bit and question
(`upstream.datagrams`, which runs these exchanges on callbacks, with no task).
A truncated reply is retried over TCP.
`tcp://` and `tls://` (DNS over TLS, RFC 7858): one persistent connection per upstream, shared by
pipelined queries told apart by ID (RFC 7766 6.2.1; `upstream.streams`), closed after
`STREAM_IDLE_TIMEOUT` without queries; TLS verifies the certificate and its name (`#name` in the
URL) against the system store or `upstream.ca_file`.

Choosing. Each query goes to the upstreams of the longest conditional-forwarding zone that contains
its name, else to the default ones, in the order their strategy gives (`upstream.routing`).
An upstream that failed `max_fails` times in a row is down: tried only after the healthy ones,
and probed in the background with `. IN NS` every `probe_interval`, one probe at a time, until it
answers. Health has hysteresis (`upstream.health`) and its `upstream_health` events come at most
once a second per upstream. The whole query is bounded by a deadline.

Answers. REFUSED, timeouts and malformed replies move on to the next upstream. A SERVFAIL
carrying a DNSSEC validation EDE (6-12) is the answer: passed on with its EDE, not retried (the
next upstream might not validate), a good answer for health. Any other SERVFAIL is the upstream
failing that one name: tried on one other upstream, then passed on (`UpstreamFailure.reply`);
it never counts against the upstream's health by itself (see `Health.servfailed`).

Sharing. Identical queries in flight (name, type, class, DO, CD) share one upstream exchange (a
`_Walk` through the plan, which calls each waiting client back when it settles: no future and
no loop turn per query; over UDP the walk is itself the datagram exchange, one object per
query): a client that stops waiting (the pipeline serves it a stale answer)
does not stop the exchange, whose answer then refreshes the cache through `after_reply`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from resolver.cache import CacheKey, cache_key
from resolver.config import Config, Endpoint, Strategy, UpstreamServer, ZoneConfig
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.policy.inspection import Findings
from resolver.protocol.edns import EdeCode, ede_codes, validation_failed
from resolver.protocol.names import from_text
from resolver.protocol.wire import (
    HEADER,
    HEADER_LEN,
    OPT_PLAIN,
    RD,
    REFUSED,
    SERVFAIL,
    FormError,
    Query,
    UpstreamReply,
    parse_query,
    reply_matches,
    upstream_query,
)
from resolver.upstream import routing
from resolver.upstream.datagrams import BadReply, Ended, UdpExchange, UdpExchanges
from resolver.upstream.health import HEALTH_DWELL, Health
from resolver.upstream.routing import Route, Routes
from resolver.upstream.streams import STREAM_IDLE_TIMEOUT, Stream, StreamClosed

MAX_FAILS = 3
MAX_BACKGROUND = 64
"""Background refreshes (prefetch, stale refresh) in flight at once; more are skipped."""
_FAILURE_LOG_INTERVAL = 1.0
SERVFAIL_TRIES = 2
"""Upstreams that may answer a plain SERVFAIL before it is the answer: the first and one other."""
# Enum members read on every query: module constants, since attribute lookups on an Enum class
# go through EnumType.__getattr__ on Python 3.11 (about 0.3 µs each).
_PARALLEL = Strategy.PARALLEL
_NO_REACHABLE_AUTHORITY = EdeCode.NO_REACHABLE_AUTHORITY

PROBE_QUERY = parse_query(
    HEADER.pack(0, RD, 1, 0, 0, 1) + b"\x00" + (2).to_bytes(2, "big") + b"\x00\x01" + OPT_PLAIN
)
"""`. IN NS`, the health probe CoreDNS uses: every recursive resolver can answer it."""


class UpstreamFailure(Exception):
    """No upstream gave a usable answer within the deadline. `reply` is an upstream's own
    SERVFAIL when one came (the client gets it, with its EDE), else None."""

    def __init__(self, ede: int, text: str, reply: UpstreamReply | None = None) -> None:
        super().__init__(text)
        self.ede = ede
        self.text = text
        self.reply = reply


def _servfail_failure(reply: UpstreamReply) -> UpstreamFailure:
    codes = ede_codes(reply.ede)
    ede = codes[0] if codes else EdeCode.NO_REACHABLE_AUTHORITY
    return UpstreamFailure(ede, "upstream answered SERVFAIL", reply)


class Overloaded(Exception):
    """Too many queries in flight upstream: the new one is dropped (the client will retry)."""


class _Failed(Exception):
    """An attempt (or a race of two) that gave no answer; `servfail` is the plain SERVFAIL one
    of them gave (`servfails` how many did), kept for when no upstream does better."""

    def __init__(self, ede: int, servfail: UpstreamReply | None = None, servfails: int = 0) -> None:
        super().__init__(ede)
        self.ede = ede
        self.servfail = servfail
        self.servfails = servfails


_ATTEMPT_ERRORS = (OSError, EOFError, BadReply, StreamClosed, FormError)
"""What ends one attempt at one upstream (TimeoutError is an OSError) and moves to the next."""
T = TypeVar("T")


def abandoned() -> UpstreamFailure:
    """The failure of an exchange that ended without an outcome (cancelled, or met a bug)."""
    return UpstreamFailure(EdeCode.NETWORK_ERROR, "query abandoned")


class Resolved(NamedTuple):
    """An upstream reply and what response inspection found in it (None: nothing to check)."""

    reply: UpstreamReply
    findings: Findings | None


ReplyHook = Callable[[Query, CacheKey, UpstreamReply], Findings | None]
FailureHook = Callable[[Query, CacheKey, UpstreamFailure], None]
"""Hooks get the exchange's key (`cache.cache_key` of the query) so no caller computes it again."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """The pool's settings beyond the server list, timeout, deadline and in-flight cap."""

    strategy: Strategy = Strategy.FAILOVER
    max_fails: int = MAX_FAILS
    probe_interval: float = 5.0
    ca_file: str | None = None
    zones: tuple[ZoneConfig, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> PoolOptions:
        upstream = config.upstream
        return cls(
            upstream.strategy,
            upstream.max_fails,
            upstream.probe_interval,
            upstream.ca_file,
            config.zones,
        )


class Upstream(Health):
    """One upstream server's running state: health, latency, probe and connection."""

    __slots__ = ("address", "family", "label", "measured", "probe", "report", "reported", "rtt",
                 "server", "stream", "udp", "unreported")  # fmt: skip

    def __init__(self, server: UpstreamServer, now: float) -> None:
        super().__init__(now)
        self.server = server
        self.label = str(server)
        # What each UDP exchange needs, worked out once rather than per query.
        self.udp = server.protocol == "udp"
        self.family = socket.AF_INET6 if server.family == 6 else socket.AF_INET
        self.address = (server.host, server.port)
        self.rtt: float | None = None
        self.measured = now
        """When `rtt` last took a measurement (loop time)."""
        self.probe: asyncio.Task[None] | None = None
        self.stream: Stream | None = None
        # The `upstream_health` event: when the last one went out, how many changes wait for
        # the next, and the timer that will send it.
        self.reported = float("-inf")
        self.unreported = 0
        self.report: asyncio.TimerHandle | None = None


Settled = Callable[[Any, UpstreamReply | None, Findings | None, UpstreamFailure | None], None]
"""How an exchange tells each client how it ended: `(context, reply, findings, None)` or
`(context, None, None, failure)`, called directly when it settles (no future, no loop turn)."""


class _Walk(UdpExchange):
    """One shared exchange going through its plan of upstreams, one attempt at a time, and the
    clients waiting for it: the first in `notify`/`context`, any merged later in `more`. A UDP
    attempt sends the walk itself (`UdpExchanges.send_to`), which comes back to `_udp_ended`."""

    __slots__ = (
        "context", "deadline", "ede", "index", "key", "more", "notify", "plan", "servfail",
        "servfails", "started", "starting", "upstream",
    )  # fmt: skip

    def __init__(
        self,
        key: CacheKey,
        query: Query,
        notify: Settled,
        context: Any,
        plan: Sequence[Upstream],
        deadline: float,
    ) -> None:
        self.key = key
        self.query = query
        self.notify: Settled | None = notify
        self.context = context
        self.more: list[tuple[Settled, Any]] | None = None
        self.plan = plan
        self.deadline = deadline
        self.index = 0
        self.ede = _NO_REACHABLE_AUTHORITY
        self.upstream = plan[0] if plan else None
        self.started = 0.0
        self.servfail: UpstreamReply | None = None
        self.servfails = 0
        self.starting = True
        """Still inside `forward`: an outcome now reaches the clients on the next loop turn,
        so none is answered before `forward` has returned."""


def _as_server(server: UpstreamServer | Endpoint) -> UpstreamServer:
    if isinstance(server, Endpoint):
        return UpstreamServer("udp", server.host, server.port)
    return server


class UpstreamPool:
    def __init__(
        self,
        servers: Sequence[UpstreamServer | Endpoint],
        timeout: float,
        deadline: float,
        max_inflight: int,
        stats: Stats,
        audit: AuditLog,
        options: PoolOptions | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._stats = stats
        self._audit = audit
        self._random = rng or random.Random()
        self._inflight: dict[CacheKey, asyncio.Future[Resolved]] = {}
        self._udp = UdpExchanges(self._loop, stats)
        self._udp_outcome: Ended = self._udp_ended  # one bound method, not one per query
        self._upstreams: dict[UpstreamServer, Upstream] = {}
        self._last_logged: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._background = 0
        self._context: ssl.SSLContext | None = None
        self._closed = False
        self.options = options or PoolOptions()
        self.after_reply: ReplyHook | None = None
        self.after_failure: FailureHook | None = None
        # dnstap's FORWARDER_QUERY/RESPONSE: (server, query, reply bytes, seconds it took)
        self.tap: Callable[[UpstreamServer, Query, bytes, float], None] | None = None
        self.configure(servers, timeout, deadline, max_inflight, self.options)

    def configure(
        self,
        servers: Sequence[UpstreamServer | Endpoint],
        timeout: float,
        deadline: float,
        max_inflight: int,
        options: PoolOptions | None = None,
    ) -> None:
        """Apply new settings (start-up and reload); queries already in flight keep theirs, and
        an upstream kept across a reload keeps its health, latency and connection."""
        if options is not None:
            if options.ca_file != self.options.ca_file:
                self._context = None
                for upstream in self._upstreams.values():
                    self._drop_stream(upstream)
            self.options = options
        self.timeout = timeout
        self.deadline = deadline
        self.max_inflight = max_inflight
        previous = self._upstreams
        self._upstreams = {}
        default = self._route(servers, self.options.strategy, previous)
        zones = {
            from_text(zone.zone): self._route(zone.servers, zone.strategy, previous)
            for zone in self.options.zones
        }
        for server, upstream in previous.items():
            if server not in self._upstreams:
                self._retire(upstream)
        self._routes = Routes(default, zones)
        self.endpoints = tuple(u.server for u in default.upstreams)

    def _route(
        self,
        servers: Iterable[UpstreamServer | Endpoint],
        strategy: Strategy,
        previous: dict[UpstreamServer, Upstream],
    ) -> Route[Upstream]:
        chosen: list[Upstream] = []
        for item in servers:
            server = _as_server(item)
            upstream = self._upstreams.get(server) or previous.get(server)
            if upstream is None:
                upstream = Upstream(server, self._loop.time())
            self._upstreams[server] = upstream
            if upstream not in chosen:
                chosen.append(upstream)
        return Route(tuple(chosen), strategy)

    # --- views for metrics and readiness ------------------------------------------------------

    @property
    def healthy(self) -> tuple[UpstreamServer, ...]:
        return tuple(s for s, u in self._upstreams.items() if not u.down)

    def health(self) -> dict[str, bool]:
        return {u.label: not u.down for u in self._upstreams.values()}

    def upstream(self, server: UpstreamServer) -> Upstream | None:
        return self._upstreams.get(server)

    # --- resolving ----------------------------------------------------------------------------

    def forward(self, query: Query, key: CacheKey | None, notify: Settled, context: Any) -> None:
        """Resolve `query` (whose `cache_key` is `key`, when the caller has it already): join
        the identical exchange in flight, else start one. `notify(context, ...)` hears how it
        ended, once, and never before this returns. Raises `Overloaded` at `max_inflight`.

        A client that stops waiting (the pipeline serves it a stale answer) does not stop the
        exchange, whose answer then refreshes the cache through `after_reply`. This is the hot
        path: no future, no task, no loop turn between the upstream's reply and the client's.
        """
        if key is None:
            key = cache_key(query)
        inflight = self._inflight
        walk = inflight.get(key)
        if walk is not None:
            self._stats.count("upstream.merged")
            if walk.more is None:
                walk.more = [(notify, context)]
            else:
                walk.more.append((notify, context))
            return
        if len(inflight) >= self.max_inflight:
            raise Overloaded
        routes = self._routes
        route = routes.route_for(query.qname) if routes.zones else routes.default
        plan = route.upstreams
        now = self._loop.time()
        if len(plan) != 1 or plan[0].down:
            plan = routing.plan(route, now, self._random)
        walk = _Walk(key, query, notify, context, plan, now + self.deadline)
        inflight[key] = walk
        if route.strategy is _PARALLEL and len(walk.plan) > 1:
            walk.index = 2
            race = self._spawn(self._race(walk.plan[0], walk.plan[1], query, walk.deadline))
            race.add_done_callback(functools.partial(self._task_ended, walk, True))
        else:
            self._next(walk, now)
        walk.starting = False

    def begin(self, query: Query, key: CacheKey | None = None) -> asyncio.Future[Resolved]:
        """`forward` as a future (tests, callers that await): its result is `Resolved`, or it
        fails with `UpstreamFailure`. Cancelling it stops nothing but this wait."""
        future: asyncio.Future[Resolved] = self._loop.create_future()
        self.forward(query, key, _settle_future, future)
        return future

    def refresh(self, query: Query) -> bool:
        """Resolve `query` in the background (prefetch, stale refresh): its answer reaches the
        cache through `after_reply`. False when it is already in flight or too many are."""
        key = cache_key(query)
        if key in self._inflight or self._closed:
            return False
        if self._background >= MAX_BACKGROUND:
            self._stats.count("upstream.refresh_skipped")
            return False
        try:
            self.forward(query, key, self._background_done, None)
        except Overloaded:
            return False
        self._background += 1
        return True

    def _background_done(self, context: Any, *outcome: Any) -> None:
        self._background -= 1

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def plan(self, qname: bytes) -> list[Upstream]:
        """The upstreams a query for `qname` tries, in order."""
        return list(routing.plan(self._routes.route_for(qname), self._loop.time(), self._random))

    # --- one exchange walking its plan: callbacks, no task for UDP ----------------------------

    def _next(self, walk: _Walk, now: float | None = None) -> None:
        """Try the walk's next upstream within its deadline, or end it with a failure. `now` is
        the loop's time when the caller has just read it."""
        loop = self._loop
        plan = walk.plan
        try:
            while walk.index < len(plan):
                if now is None:
                    now = loop.time()
                remaining = walk.deadline - now
                if remaining <= 0:
                    break
                upstream = plan[walk.index]
                walk.index += 1
                walk.upstream = upstream
                timeout = self.timeout if self.timeout < remaining else remaining
                walk.started = now
                if upstream.udp:
                    try:
                        self._udp.send_to(walk, upstream.family, upstream.address, now + timeout,
                                          self._udp_outcome)  # fmt: skip
                    except OSError as error:
                        walk.ede = max(walk.ede, self._attempt_failed(upstream, error, walk.query))
                        now = None
                        continue
                    return
                exchange = self._spawn(self._exchange(upstream, walk.query, timeout, walk.deadline))
                exchange.add_done_callback(functools.partial(self._task_ended, walk, False))
                return
        except Exception:
            self._broken(walk)
            return
        if walk.servfail is not None:
            self._walk_failed(walk, _servfail_failure(walk.servfail))
            return
        text = (
            "no upstream answered"
            if walk.ede == EdeCode.NO_REACHABLE_AUTHORITY
            else "upstream network error"
        )
        self._walk_failed(walk, UpstreamFailure(walk.ede, text))

    def _broken(self, walk: _Walk) -> None:
        """A bug met this walk: fail it rather than leave it in flight for good, where every
        identical query would join it."""
        self._stats.count("internal_error")
        if walk.notify is not None:
            self._walk_failed(walk, abandoned(), hook=False)

    def _udp_ended(
        self, reply: UpstreamReply | None, error: BaseException | None, walk: _Walk
    ) -> None:
        try:
            if reply is None:
                assert error is not None
                walk.ede = max(walk.ede, self._attempt_failed(walk.upstream, error, walk.query))
                self._next(walk)
            elif reply.truncated:
                self._stats.count("upstream.tcp_retry")
                server = walk.upstream.server
                retry = self._spawn(
                    self._exchange_tcp(server, walk.query, walk.deadline - self._loop.time())
                )
                retry.add_done_callback(functools.partial(self._task_ended, walk, False))
            elif self._judge(walk.upstream, reply, walk.query, walk.started):  # `_replied`
                self._walk_succeeded(walk, reply)
            elif reply.rcode != SERVFAIL or not self._servfailed(walk, reply, 1):
                walk.ede = max(walk.ede, EdeCode.NO_REACHABLE_AUTHORITY)
                self._next(walk)
        except Exception:
            self._broken(walk)

    def _task_ended(
        self, walk: _Walk, judged: bool, task: asyncio.Task[UpstreamReply]
    ) -> None:
        """A task working for the walk ended: an exchange (TCP, TLS, the TCP retry after TC), or
        a race whose reply `_attempt` has already `judged`."""
        if task.cancelled():
            self._walk_failed(walk, abandoned(), hook=False)
            return
        error = task.exception()
        if error is None:
            if judged:
                self._walk_succeeded(walk, task.result())
            else:
                self._replied(walk, task.result())
        elif isinstance(error, _Failed):
            walk.ede = max(walk.ede, error.ede)
            servfail = error.servfail
            if servfail is None or not self._servfailed(walk, servfail, error.servfails):
                self._next(walk)
        elif isinstance(error, _ATTEMPT_ERRORS):
            walk.ede = max(walk.ede, self._attempt_failed(walk.upstream, error, walk.query))
            self._next(walk)
        else:
            self._broken(walk)

    def _replied(self, walk: _Walk, reply: UpstreamReply) -> None:
        if self._judge(walk.upstream, reply, walk.query, walk.started):
            self._walk_succeeded(walk, reply)
        elif reply.rcode != SERVFAIL or not self._servfailed(walk, reply, 1):
            walk.ede = max(walk.ede, EdeCode.NO_REACHABLE_AUTHORITY)
            self._next(walk)

    def _servfailed(self, walk: _Walk, reply: UpstreamReply, count: int) -> bool:
        """Keep a plain SERVFAIL as the walk's answer of last resort; True when it ends the walk
        (`SERVFAIL_TRIES` upstreams said so)."""
        walk.servfail = reply
        walk.servfails += count
        if walk.servfails < SERVFAIL_TRIES:
            self._stats.count("upstream.servfail_retry")
            return False
        self._walk_failed(walk, _servfail_failure(reply))
        return True

    def _walk_succeeded(self, walk: _Walk, reply: UpstreamReply) -> None:
        inflight = self._inflight  # `_settle`, inline: once per answered query
        if inflight.get(walk.key) is walk:
            del inflight[walk.key]
        findings = None
        if self.after_reply is not None:
            try:
                findings = self.after_reply(walk.query, walk.key, reply)
            except Exception:
                self._stats.count("internal_error")
                failure = UpstreamFailure(EdeCode.NETWORK_ERROR, "internal error")
                self._notify(walk, None, None, failure)
                return
        self._notify(walk, reply, findings, None)

    def _walk_failed(self, walk: _Walk, failure: UpstreamFailure, hook: bool = True) -> None:
        self._settle(walk)
        if hook and self.after_failure is not None:
            self.after_failure(walk.query, walk.key, failure)
        self._notify(walk, None, None, failure)

    def _settle(self, walk: _Walk) -> None:
        inflight = self._inflight
        if inflight.get(walk.key) is walk:
            del inflight[walk.key]

    def _notify(
        self,
        walk: _Walk,
        reply: UpstreamReply | None,
        findings: Findings | None,
        failure: UpstreamFailure | None,
    ) -> None:
        """Tell every client of `walk` how it ended, once (later when it ended inside
        `forward`). A client's callback that raises costs that client, never the others."""
        notify = walk.notify
        if notify is None:
            return
        if walk.starting:
            walk.starting = False
            self._loop.call_soon(self._notify, walk, reply, findings, failure)
            return
        walk.notify = None
        more = walk.more
        try:
            notify(walk.context, reply, findings, failure)
        except Exception:
            self._stats.count("internal_error")
        if more is not None:
            for notify, context in more:
                try:
                    notify(context, reply, findings, failure)
                except Exception:
                    self._stats.count("internal_error")

    # --- attempts: bookkeeping shared by every transport --------------------------------------

    def _judge(
        self, upstream: Upstream, reply: UpstreamReply, query: Query, started: float
    ) -> bool:
        """Whether `reply` ends the query, with the upstream's health and latency updated
        either way. REFUSED is the upstream failing; a plain SERVFAIL is neither an answer nor
        a failure (the caller keeps it); a SERVFAIL that says validation failed is an answer."""
        if self.tap is not None:
            self.tap(upstream.server, query, reply.raw, self._loop.time() - started)
        rcode = reply.rcode
        if rcode == REFUSED:
            self._failed(upstream, "refused", query)
            return False
        outcome = "ok"
        if rcode == SERVFAIL:
            if not validation_failed(rcode, reply.ede):
                self._stats.upstream(upstream.label, "servfail", None)
                self._log(upstream, "servfail", query)
                if upstream.servfailed(self.options.max_fails):
                    self._check(upstream)
                return False
            self._stats.count("upstream.validation_failure")
            outcome = "servfail"
        now = self._loop.time()
        elapsed = now - started
        self._stats.upstream(upstream.label, outcome, elapsed)
        routing.observe(upstream, elapsed, now)
        if not upstream.down:  # `Health.answered` of an upstream that is up, inline
            upstream.fails = 0
            upstream.servfails = 0
            upstream.last_ok = now
        elif upstream.answered(now, max(self.options.probe_interval, HEALTH_DWELL)):
            self._mark_up(upstream)
        return True

    def _attempt_failed(self, upstream: Upstream, error: BaseException, query: Query) -> int:
        """Count a failed attempt; the EDE it stands for."""
        if isinstance(error, TimeoutError):
            self._failed(upstream, "timeout", query, self.timeout)
            return EdeCode.NO_REACHABLE_AUTHORITY
        reason = "bad_reply" if isinstance(error, BadReply | FormError) else "error"
        if isinstance(error, ssl.SSLError):
            self._stats.count("upstream.tls_error")
            self._log(upstream, "tls_error", None, detail=str(error)[:200])
        self._failed(upstream, reason, query, self.timeout)
        return EdeCode.NETWORK_ERROR

    async def _race(
        self, first: Upstream, second: Upstream, query: Query, deadline: float
    ) -> UpstreamReply:
        """Both at once; the first good answer wins and the other attempt is cancelled."""
        tasks = [
            self._loop.create_task(self._attempt(first, query, deadline)),
            self._loop.create_task(self._attempt(second, query, deadline)),
        ]
        ede = EdeCode.NO_REACHABLE_AUTHORITY
        servfail: UpstreamReply | None = None
        servfails = 0
        try:
            pending: set[asyncio.Task[UpstreamReply]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, _Failed):
                        raise error
                    ede = max(ede, error.ede)
                    if error.servfail is not None:
                        servfail = error.servfail
                        servfails += error.servfails
            raise _Failed(ede, servfail, servfails)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _attempt(self, upstream: Upstream, query: Query, deadline: float) -> UpstreamReply:
        """One try at one upstream inside a race; raises `_Failed` with an EDE."""
        loop = self._loop
        timeout = min(self.timeout, deadline - loop.time())
        started = loop.time()
        try:
            reply = await self._exchange(upstream, query, timeout, deadline)
        except asyncio.CancelledError:
            # Lost the race: it took at least this long, which the latency average should know.
            now = loop.time()
            if now - started > routing.aged(upstream, now):
                routing.observe(upstream, now - started, now)
            raise
        except _ATTEMPT_ERRORS as error:
            raise _Failed(self._attempt_failed(upstream, error, query)) from None
        if not self._judge(upstream, reply, query, started):
            if reply.rcode == SERVFAIL:
                raise _Failed(EdeCode.NO_REACHABLE_AUTHORITY, reply, 1)
            raise _Failed(EdeCode.NO_REACHABLE_AUTHORITY)
        return reply

    async def _exchange(
        self, upstream: Upstream, query: Query, timeout: float, deadline: float
    ) -> UpstreamReply:
        server = upstream.server
        if server.protocol == "udp":
            reply = await self._exchange_udp(server, query, timeout)
            if reply.truncated:
                self._stats.count("upstream.tcp_retry")
                reply = await self._exchange_tcp(server, query, deadline - self._loop.time())
            return reply
        stream = upstream.stream
        if stream is None:
            context = self._tls_context() if server.protocol == "tls" else None
            stream = upstream.stream = Stream(
                self._loop, server, context, self._stats, STREAM_IDLE_TIMEOUT
            )
        return await stream.exchange(query, timeout)

    def _tls_context(self) -> ssl.SSLContext:
        """Verification on, against `ca_file` alone when set, else the system store."""
        if self._context is None:
            context = ssl.create_default_context(cafile=self.options.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = context
        return self._context

    # --- health -------------------------------------------------------------------------------

    def _failed(
        self, upstream: Upstream, reason: str, query: Query, penalty: float | None = None
    ) -> None:
        """Count every failure; log at most one per upstream and reason each second, so an outage
        does not turn the audit trail into a copy of the query stream."""
        self._stats.upstream(upstream.label, reason, None)
        now = self._loop.time()
        if penalty is not None:
            routing.observe(upstream, penalty, now)
        if upstream.failed(now, self.options.max_fails):
            self._mark_down(upstream)
        self._log(upstream, reason, query)

    def _log(self, upstream: Upstream, reason: str, query: Query | None, detail: str = "") -> None:
        now = self._loop.time()
        key = (upstream.label, reason)
        if now - self._last_logged.get(key, -_FAILURE_LOG_INTERVAL) < _FAILURE_LOG_INTERVAL:
            return
        self._last_logged[key] = now
        if query is not None:
            self._audit.upstream_failed(upstream.label, reason, query)
        else:
            self._audit.warning("upstream_" + reason, upstream=upstream.label, detail=detail)

    def _mark_down(self, upstream: Upstream) -> None:
        """`upstream` just went down: say so, and probe it until it answers."""
        self._health_changed(upstream)
        if self._upstreams.get(upstream.server) is upstream and (
            upstream.probe is None or upstream.probe.done()
        ):
            upstream.probe = self._spawn(self._probe(upstream))

    def _mark_up(self, upstream: Upstream) -> None:
        """`upstream` just came back: say so, and stop probing it."""
        self._health_changed(upstream)
        probe = upstream.probe
        upstream.probe = None
        if probe is not None and probe is not asyncio.current_task():
            probe.cancel()

    def _check(self, upstream: Upstream) -> None:
        """Probe an upstream that is up, at once, after repeated SERVFAILs (`Health.servfailed`);
        nothing when a probe is already running."""
        if self._upstreams.get(upstream.server) is upstream and (
            upstream.probe is None or upstream.probe.done()
        ):
            self._stats.count("upstream.servfail_check")
            upstream.probe = self._spawn(self._probe(upstream, check=True))

    def _health_changed(self, upstream: Upstream) -> None:
        """Log the change as an `upstream_health` event, at most one per upstream each second
        (like `upstream_failed`): changes within the second wait for its end and go out as one
        event with the state then and how many `changes` it sums up."""
        upstream.unreported += 1
        if upstream.report is not None:
            return
        wait = upstream.reported + _FAILURE_LOG_INTERVAL - self._loop.time()
        if wait <= 0:
            self._report_health(upstream)
        else:
            upstream.report = self._loop.call_later(wait, self._report_health, upstream)

    def _report_health(self, upstream: Upstream) -> None:
        upstream.report = None
        changes = upstream.unreported
        if not changes:
            return
        upstream.unreported = 0
        upstream.reported = self._loop.time()
        fields: dict[str, object] = {"upstream": upstream.label, "healthy": not upstream.down}
        if changes > 1:
            fields["changes"] = changes
        self._audit.warning("upstream_health", **fields)

    async def _probe(self, upstream: Upstream, check: bool = False) -> None:
        """`. IN NS` every probe_interval until a down upstream answers; one probe at a time. A
        `check` probes an upstream that is up once, at once: if that fails too, it goes down and
        is probed like any other down upstream."""
        loop = self._loop
        try:
            if check:
                ok = await self._probe_once(upstream)
                if ok:
                    if upstream.probed(loop.time()):
                        self._health_changed(upstream)
                elif upstream.check_failed(loop.time()):
                    self._health_changed(upstream)
            while upstream.down and not self._closed:
                await asyncio.sleep(self.options.probe_interval)
                if not upstream.down or self._upstreams.get(upstream.server) is not upstream:
                    return
                if await self._probe_once(upstream) and upstream.probed(loop.time()):
                    self._health_changed(upstream)
        finally:
            if upstream.probe is asyncio.current_task():
                upstream.probe = None

    async def _probe_once(self, upstream: Upstream) -> bool:
        """One `. IN NS` probe: True when it was answered (not SERVFAIL, REFUSED or nothing)."""
        loop = self._loop
        try:
            reply = await self._exchange(
                upstream, PROBE_QUERY, self.timeout, loop.time() + self.timeout
            )
            ok = reply.rcode != SERVFAIL and reply.rcode != REFUSED
        except (TimeoutError, OSError, EOFError, BadReply, StreamClosed, FormError):
            ok = False
        self._stats.count("upstream.probe_ok" if ok else "upstream.probe_failed")
        return ok

    def _retire(self, upstream: Upstream) -> None:
        if upstream.probe is not None:
            upstream.probe.cancel()
            upstream.probe = None
        if upstream.report is not None:
            upstream.report.cancel()
            self._report_health(upstream)  # a change waiting to be told is told now
        self._drop_stream(upstream)

    def _drop_stream(self, upstream: Upstream) -> None:
        if upstream.stream is not None:
            upstream.stream.close()
            upstream.stream = None

    async def close(self) -> None:
        """Stop probes and exchanges, close every socket and connection, and fail every query
        still waiting (shutdown)."""
        self._closed = True
        self._udp.close()
        walks = list(self._inflight.values())
        self._inflight.clear()
        for walk in walks:
            walk.starting = False
            self._notify(walk, None, None, abandoned())
        tasks = list(self._tasks)
        for upstream in self._upstreams.values():
            if upstream.stream is not None:
                tasks.extend(upstream.stream.readers)
            self._retire(upstream)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- transports ---------------------------------------------------------------------------

    async def _exchange_udp(
        self, server: UpstreamServer, query: Query, timeout: float
    ) -> UpstreamReply:
        """A UDP exchange awaited (races, probes); the hot path uses `_udp` with callbacks."""
        waiter: asyncio.Future[UpstreamReply] = self._loop.create_future()
        exchange = self._udp.send(server, query, timeout, _settle_waiter, waiter)
        try:
            return await waiter
        finally:
            self._udp.cancel(exchange)

    async def _exchange_tcp(
        self, server: UpstreamServer, query: Query, timeout: float
    ) -> UpstreamReply:
        """The TCP retry of a truncated UDP reply, on a connection of its own."""
        query_id = secrets.randbits(16)
        message = upstream_query(query, query_id)
        async with asyncio.timeout(max(timeout, 0.0)):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                writer.write(len(message).to_bytes(2, "big") + message)
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                    if reply_matches(data, query_id, query):
                        return UpstreamReply(data, query.question_end - HEADER_LEN)
                    self._stats.count("upstream.mismatch")
            finally:
                writer.close()


def _settle_future(
    future: asyncio.Future[Resolved],
    reply: UpstreamReply | None,
    findings: Findings | None,
    failure: UpstreamFailure | None,
) -> None:
    """`UpstreamPool.begin`'s end of an exchange."""
    if future.done():
        return
    if reply is not None:
        future.set_result(Resolved(reply, findings))
    else:
        future.set_exception(failure or abandoned())
        future.exception()  # retrieved here, so a lone query leaves no warning behind


def _settle_waiter(
    reply: UpstreamReply | None, error: BaseException | None, waiter: asyncio.Future[UpstreamReply]
) -> None:
    if waiter.done():
        return
    if reply is not None:
        waiter.set_result(reply)
    else:
        waiter.set_exception(error or TimeoutError())
