"""The one path every query takes, declared in one place.

    receive → rate limit → answer memo → parse → access control → DDR → policy → missing lists
    → cache → upstream budget → upstream → response inspection → reply → metrics/audit

`handle` runs the steps that need no I/O and returns their answer at once: blocked and refused
queries never leave this function, and neither does a cache hit (the hot path for every popular
name). A repeat of such a query from the same client is answered from the answer memo
(`resolver.cache.AnswerMemo`) before it is even parsed. A query that must go upstream returns
`FORWARDED`; steps 6-8 then run from a callback when the shared upstream exchange settles, and
hand the answer to the shell's `reply_to`. No step creates a task or a coroutine: per query,
they cost more than the whole answer to a block.
Each step is a small named unit elsewhere; here is only their order and why.

May import: protocol, config, lists, policy, observe, cache, upstream, state
Does I/O: the event loop only (asyncio futures and timers; never a socket or a file)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from resolver.cache import AnswerMemo, Cache, CachedAnswer, CacheKey, MemoKey, cache_key
from resolver.config import OverLimit, RateLimitConfig
from resolver.lists.formats import DROP, RPZ_ANSWERS, TCP_ONLY
from resolver.lists.transfer import is_notify
from resolver.observe.audit import AuditLog
from resolver.observe.stats import Stats
from resolver.policy.engine import Action, Decision
from resolver.policy.inspection import Findings, Inspector, verdict
from resolver.policy.ratelimit import LIMIT_INDEX, QUERIES, ClientEntry, RateLimiter
from resolver.policy.shedding import flood_question
from resolver.protocol import answers
from resolver.protocol.edns import EdeCode, opt_record
from resolver.protocol.names import to_text
from resolver.protocol.wire import (
    BADVERS,
    EDNS_PAYLOAD,
    FORMERR,
    NOTIMP,
    NXDOMAIN,
    TCP_MAX_MESSAGE,
    NotImplementedOpcode,
    Query,
    UpstreamReply,
    WireError,
    client_reply,
    parse_query,
    udp_limit,
)
from resolver.state import FailClosed, ResolverState
from resolver.upstream.pool import (
    FailureHook,
    Overloaded,
    ReplyHook,
    Settled,
    UpstreamFailure,
    abandoned,
)


@dataclass(frozen=True, slots=True)
class Channel:
    """How a query reached us when it was not plain UDP or TCP: its transport (the `protocol`
    label of the query metrics: "dot", "doh") and the device id the client presented in its
    TLS server name or DoH path ("" for none), which can pick its group and is audited."""

    transport: str
    device: str = ""


class Forwarded:
    """The type of `FORWARDED`: `handle`'s answer for a query that went upstream."""

    __slots__ = ()


FORWARDED: Final = Forwarded()
Outcome = bytes | Forwarded | None
ReplyTo = Callable[[bytes | None], None]
PeerReplyTo = Callable[[Any, bytes | None], None]
"""`reply_to` when `handle` is given a `peer`: called with it first."""


class Upstreams(Protocol):
    """What the pipeline uses of `upstream.pool.UpstreamPool`: a protocol (which the compiled
    core does not check at run time), so tests can hand it a scripted pool."""

    after_reply: ReplyHook | None
    after_failure: FailureHook | None

    def forward(
        self, query: Query, key: CacheKey | None, notify: Settled, context: Any
    ) -> None: ...

    def refresh(self, query: Query) -> bool: ...


class Tap(Protocol):
    """What the pipeline uses of `observe.outputs.DnstapOutput`: dnstap's CLIENT_QUERY and
    CLIENT_RESPONSE."""

    def client_query(self, packet: bytes, client: str, transport: str) -> float: ...

    def client_response(
        self, reply: bytes, client: str, transport: str, received: float, decision: Decision | None
    ) -> None: ...


_BLOCK: Final = 0
_HIT: Final = 1
"""The kinds of `AnswerMemo` entry: (_BLOCK, reply after the ID, query, decision) and
(_HIT, reply after the ID, query, cached answer, its age in whole seconds when made)."""
_ERROR_RESULTS = {FORMERR: "formerr", NOTIMP: "notimp", BADVERS: "badvers"}
# Enum members as plain constants: each `Action.BLOCK` on the query path is a descriptor call
# on the enum class (about half a microsecond on CPython 3.11), a global is a dict read.
_BLOCKS: Final = Action.BLOCK
_REFUSES: Final = Action.REFUSE
_CENSORED: Final = EdeCode.CENSORED
_DROP: Final = OverLimit.DROP
_DROP_LABEL: Final = str(OverLimit.DROP.value)  # the `action` label of a drop
_REFUSE: Final = OverLimit.REFUSE
_BLOCKED: Final = EdeCode.BLOCKED
_perf_counter: Final = time.perf_counter  # (compiled: one load, not a lookup in `time`)
_STALE_TEXT = b"stale answer: upstreams unavailable"
_FAILURE_TEXT = "upstream failure cached (RFC 9520)"


class Handler(Protocol):
    """`QueryPipeline.handle`: answer `packet` from `client`: reply bytes, None (send nothing),
    or `FORWARDED`: the query went upstream, and `reply_to` gets the reply bytes (or None)
    later, once. `channel` says how it came when that was DoT or DoH. With a `peer` (the UDP
    listener's address tuple), `reply_to` is called as `reply_to(peer, reply)`: the callback
    that binds them is made only for a query that goes upstream, not for every packet."""

    def __call__(
        self,
        packet: bytes,
        client: str,
        over_udp: bool,
        reply_to: ReplyTo | PeerReplyTo,
        channel: Channel | None = None,
        peer: object = None,
    ) -> Outcome: ...


def _bound(reply_to: ReplyTo | PeerReplyTo, peer: object) -> ReplyTo:
    """`reply_to` as called with the reply alone: bound to `peer` when there is one."""
    if peer is None:
        return cast(ReplyTo, reply_to)
    return functools.partial(cast(PeerReplyTo, reply_to), peer)


@functools.cache
def _plain_opt(dnssec_ok: bool, ext_rcode: int) -> bytes:
    """Our OPT without an EDE: a handful of distinct values, built once each."""
    return opt_record(dnssec_ok, ext_rcode=ext_rcode)


class _Waiting:
    """A client whose query went upstream, until its reply (or a stale answer) is sent."""

    __slots__ = ("answered", "channel", "client", "over_udp", "patience", "query", "reply_to",
                 "stale", "started")  # fmt: skip

    def __init__(
        self,
        query: Query,
        client: str,
        over_udp: bool,
        started: float,
        stale: CachedAnswer | None,
        reply_to: ReplyTo,
        channel: Channel | None,
    ) -> None:
        self.query = query
        self.channel = channel
        self.client = client
        self.over_udp = over_udp
        self.started = started
        self.stale = stale
        self.reply_to = reply_to
        self.answered = False
        self.patience: asyncio.Handle | None = None  # uvloop: a Handle for tiny delays


class QueryPipeline:
    def __init__(
        self,
        state: ResolverState,
        upstreams: Upstreams,
        stats: Stats,
        audit: AuditLog,
        cache: Cache | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        # The wall clock (policy windows, fail-closed groups) and the parser are attributes so
        # tests can move the one and count the other: the compiled core binds module globals
        # early, so replacing `time` or `parse_query` in this module would not reach it.
        self.wall_clock = wall_clock
        self.parse: Callable[[bytes], Query] = parse_query
        self.state = state
        self.upstreams = upstreams
        self.stats = stats
        self.audit = audit
        # Outlives reloads (unlike `state`): a reload must not empty it.
        self.cache = cache
        self.clock = clock  # monotonic seconds for the cache, which never reads a clock itself
        # The pool calls these once per upstream exchange, however many clients share it, and
        # also for exchanges no client waits for any more (stale answer served, prefetch).
        upstreams.after_reply = self._after_reply
        upstreams.after_failure = self._after_failure
        # `_upstream_done` as one bound method, made once rather than once per forwarded query.
        self._settled: Callable[..., None] = self._upstream_done
        # NOTIFY from an RPZ zone's primary (the shell's zone feeds); None: NOTIMP like any
        # opcode but QUERY.
        self.on_notify: Callable[[bytes, str], bytes | None] | None = None
        # dnstap's CLIENT_QUERY/RESPONSE (observe.outputs.DnstapOutput), and the block the
        # last answer carried, for its `extra` field.
        self.tap = None
        self.last_block: Decision | None = None

    @property
    def tap(self) -> Tap | None:
        return self._tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._tap = tap
        # Without dnstap, `handle` is `_handle` itself: a call less on every query.
        self.handle: Handler = self._handle if tap is None else self._handle_tapped

    @property
    def state(self) -> ResolverState:
        return self._state

    @state.setter
    def state(self, state: ResolverState) -> None:
        # Replaced whole by a reload; each query reads it once, so it sees one consistent state.
        self.inspector = Inspector(state.config.inspection, state.policy.response_ip)
        self._state = state
        self._memo = AnswerMemo()  # answers made under the previous state are forgotten
        self._limit_rates(state)
        previous = getattr(self, "_closed", None)  # None: the first state, from __init__
        self._closed = state.fail_closed(self.wall_clock())
        if previous is not None:
            self._announce(previous, self._closed)

    def _limit_rates(self, state: ResolverState) -> None:
        """The rate limiter outlives a reload that changes neither its settings nor the
        groups (its buckets would start full again); otherwise it starts afresh."""
        policy = state.policy

        def group_of(client: str) -> str:
            group = policy.group_of(client)
            return group.name if group is not None else "refuse"

        config = state.config
        action = config.rate_limit.action
        self._over_limit = action, action.value  # (an enum's `value` is a property: read once)
        settings: tuple[RateLimitConfig, object] = (config.rate_limit, config.groups)
        limiter = getattr(self, "limiter", None)
        if limiter is None or getattr(self, "_limit_settings", None) != settings:
            self.limiter = RateLimiter(config.rate_limit, group_of)
            self._limit_settings = settings
        else:
            limiter.group_of = group_of

    def fail_closed(self, now: float) -> FailClosed:
        """The groups served fail-closed at `now` (for /readyz and the events)."""
        closed = self._closed
        if not closed.since <= now < closed.until:
            closed = self._reclose(now)
        return closed

    def _reclose(self, now: float) -> FailClosed:
        """A policy window opened or closed since the groups were last worked out."""
        previous = self._closed
        self._closed = self._state.fail_closed(now)
        self._announce(previous, self._closed)
        return self._closed

    def _announce(self, previous: FailClosed, current: FailClosed) -> None:
        """Log the groups that start or stop being served fail-closed."""
        started = sorted(set(current.groups) - set(previous.groups))
        if started:
            lists = sorted({name for g in started for name in current.groups[g].lists})
            self.audit.error("fail_closed", groups=started, lists=lists)
        ended = sorted(set(previous.groups) - set(current.groups))
        if ended:
            self.audit.info("fail_closed_lifted", groups=ended)

    def _handle_tapped(
        self,
        packet: bytes,
        client: str,
        over_udp: bool,
        reply_to: ReplyTo | PeerReplyTo,
        channel: Channel | None = None,
        peer: object = None,
    ) -> Outcome:
        tap = self._tap
        if tap is None:
            return self._handle(packet, client, over_udp, reply_to, channel, peer)
        bound = _bound(reply_to, peer)
        # dnstap: the query as received, and its answer whenever it is sent. A block's decision
        # is what `_blocked` left in `last_block`, read at once: nothing runs in between.
        transport = channel.transport if channel is not None else "udp" if over_udp else "tcp"
        received = tap.client_query(packet, client, transport)
        # (Typed so that mypy does not take `last_block` for None until the read below: the
        # compiled core would check it was.)
        self.last_block = cast("Decision | None", None)
        later = functools.partial(self._tapped, tap, client, transport, received, bound)
        outcome = self._handle(packet, client, over_udp, later, channel)
        if type(outcome) is bytes:
            tap.client_response(outcome, client, transport, received, self.last_block)
        self.last_block = None
        return outcome

    def _tapped(
        self,
        tap: Tap,
        client: str,
        transport: str,
        received: float,
        reply_to: ReplyTo,
        reply: bytes | None,
    ) -> None:
        if reply is not None:
            tap.client_response(reply, client, transport, received, self.last_block)
        self.last_block = None
        reply_to(reply)

    def _handle(
        self,
        packet: bytes,
        client: str,
        over_udp: bool,
        reply_to: ReplyTo | PeerReplyTo,
        channel: Channel | None = None,
        peer: object = None,
    ) -> Outcome:
        started = _perf_counter()
        # 0. Rate limit, when `rate_limit.rate` is set: a client prefix over its budget for
        #    every query is shed before its bytes are parsed. Off by default: what costs work is
        #    limited at 5a, so a flooding address's cache hits and policy answers still come.
        limiter = self.limiter
        if limiter.gates and not limiter.admits(client, started):
            return self._limited(packet, None, client, over_udp, started, QUERIES)
        # 0b. Answer memo: the same bytes from the same client, answered before without an
        #    upstream (a block, a cache hit), get the same answer after their own ID, with the
        #    same metrics and audit, until a reload or the next policy window edge. During a
        #    flood too: what it answers costs no upstream work, and less than shedding would.
        now = self.wall_clock()
        device = "" if channel is None else channel.device
        memo_key: MemoKey = (packet[2:], client, over_udp, device)
        memo = self._memo
        if memo.since <= now < memo.until:  # `memo.get`, inline
            entry = memo.answers.get(memo_key)
            if entry is not None:
                reply = self._replay(entry, packet, client, over_udp, started, channel, device)
                if reply is not None:
                    return reply
                memo.forget(memo_key)
        # 0c. Flood: while a client's names under a zone are refused upstream (5a), its next
        #    uncached ones there are shed here, read from the bytes (`shedding.flood_question`: the
        #    question's cache key and zone) before any parse, at the cost of a cache lookup, and
        #    counted by `_shed`; its cached names and other zones go on. A packet this cannot
        #    read (EDNS options, odd counts) is checked at 2a after its parse. Nobody shed in
        #    the last second: one comparison.
        screened = False
        if started < limiter.shed_until:
            read = flood_question(packet)
            if read is not None:
                screened = True
                flood_key, zone_name = read
                shedding = limiter.refusing(client, zone_name, started)
                if shedding is not None:
                    cache = self.cache  # `_answerable`, inline
                    if cache is None or not cache.enabled or not cache.answerable(
                        flood_key, self.clock()
                    ):
                        # `_shed`, inline for what nearly every packet of a flood is: a drop
                        # whose audit call is held back (`report_due`'s first branch).
                        refused = shedding.refused
                        index = LIMIT_INDEX[refused]
                        if self._over_limit[0] is not _DROP or not (
                            started < shedding.report_at[index]
                        ):
                            return self._shed(packet, client, over_udp, started, shedding,
                                              flood_key)  # fmt: skip
                        shedding.unreported[index] += 1
                        self.stats.shed(shedding.group, refused, _DROP_LABEL,
                                        "udp" if over_udp else "tcp", flood_key[1],
                                        _perf_counter() - started)  # fmt: skip
                        return None
        state = self._state
        # 1. Parse: hostile bytes become a Query, an error answer (FORMERR/NOTIMP/BADVERS) or
        #    nothing, before anything else looks at them.
        try:
            query = self.parse(packet)
        except WireError as error:
            if type(error) is NotImplementedOpcode and self.on_notify and is_notify(packet):
                return self.on_notify(packet, client)
            return self._malformed(packet, error, over_udp, started, channel)
        # 2. Access control: clients outside clients.allow are refused before any lookup, and
        #    nothing of theirs goes upstream: never an open resolver.
        if not state.access.allows(client):
            reply = answers.refused(query, EdeCode.PROHIBITED, "client not allowed")
            return self._done(query, over_udp, "refused", reply, started, None, channel)
        # 2a. Flood, for what 0c could not read: as there, once parsed.
        if started < limiter.shed_until and not screened:
            over = self._flooding(cache_key(query), client, started)
            if over is not None:
                return self._limited(packet, query, client, over_udp, started, over)
        # 2b. DDR: with encrypted listeners, `_dns.resolver.arpa` and `_dns.<our name>` are
        #    answered with them (RFC 9462), never forwarded; before the policy, whose doh-bypass
        #    entry answers resolver.arpa NODATA (what clients get without encrypted listeners).
        designated = state.designated
        if designated is not None:
            opt = _plain_opt(query.dnssec_ok, 0) if query.has_edns else b""
            limit = udp_limit(query) if over_udp else TCP_MAX_MESSAGE
            reply = designated.answer(query, opt, limit)
            if reply is not None:
                return self._done(query, over_udp, "ddr", reply, started, None, channel)
        # 3. Policy: the client's group (by device id, else by address), its policies in force
        #    now, and exemptions decide. A block is answered here, from the query's bytes; it
        #    comes before the cache so that a new block, or a lapsed one, takes effect at once.
        decision = state.policy.decide(client, query.qname, query.qtype, now, device)
        if decision.action is _BLOCKS and (over_udp or decision.answer != TCP_ONLY):
            # (RPZ's TCP-only rule truncates over UDP; over TCP the query goes on as allowed.)
            reply = self._blocked(state, query, client, decision, over_udp, started, channel)
            # (An RPZ DROP sends nothing, and is not memoised; the entry is made only for a key
            # seen before: most blocked names are asked once.)
            if reply is not None and self._admits(memo_key, now):
                self._keep(memo_key, (_BLOCK, reply[2:], query, decision))
            return reply
        if decision.action is _REFUSES:
            reply = answers.refused(query, EdeCode.PROHIBITED, decision.reason)
            return self._done(query, over_udp, "refused", reply, started, None, channel)
        # 3b. Missing lists: a list this group must enforce now has no loaded copy (a feed
        #    never fetched) and blocking.missing_lists is fail_closed, so what it might block
        #    is not answered: SERVFAIL, EDE 14. After the policy (its blocks still apply) and
        #    before the cache (a cached answer is no proof the missing list allows the name).
        #    Nothing missing: one comparison and one empty-dict test.
        closed = self._closed
        if not closed.since <= now < closed.until:
            closed = self._reclose(now)
        if closed.groups:
            group = closed.groups.get(decision.group)
            if group is not None and group.refuses(query.qname):
                self.stats.count("fail_closed")
                reply = answers.servfail(query, EdeCode.NOT_READY, group.text)
                return self._done(query, over_udp, "servfail", reply, started, None, channel)
        # 3c. ANY: answered minimally here (RFC 8482), never forwarded: it is the amplification
        #    query of choice, and no client needs the whole RRset collection.
        if query.qtype == answers.TYPE_ANY:
            self.stats.count("answers.rfc8482")
            return self._done(query, over_udp, "answered", answers.minimal_any(query), started,
                              None, channel)  # fmt: skip
        # 4. Cache: a fresh answer is served from here, synchronously; its answer names are checked
        #    against this client's policy like a forwarded answer's (step 6). While upstreams are
        #    known to fail (a cached failure), a stale answer or SERVFAIL is answered at once.
        stale: CachedAnswer | None = None
        key: CacheKey | None = None
        cache = self.cache
        if cache is not None and cache.enabled:
            key = cache_key(query)
            moment = self.clock()
            cached = cache.lookup(key, moment)
            if cached is not None and moment < cached.expires:
                if cache.prefetch_due(cached, moment):
                    self.upstreams.refresh(query)
                reply = self._cached(
                    state, cache, query, client, cached, over_udp, started, False, channel, moment
                )
                # Memoised only when nothing but the name decides (no answer names to judge
                # per client) and the hit was the name's own entry, not its NXDOMAIN.
                if reply is not None and cached.findings is None and cached.key == key and (
                    not closed.groups
                ):
                    age = int(moment - cached.stored)
                    self._remember(memo_key, (_HIT, reply[2:], query, cached, age), now)
                return reply
            failed = cache.failure(key, moment)
            if failed is not None:
                if cached is not None:
                    return self._cached(
                        state, cache, query, client, cached, over_udp, started, True, channel
                    )
                reply = answers.servfail(query, failed, _FAILURE_TEXT)
                return self._done(query, over_udp, "servfail", reply, started, None, channel)
            stale = cached
        # 5-8. Upstream, response inspection, reply, metrics/audit: see `_forward`.
        return self._forward(
            query, key, client, over_udp, started, stale, _bound(reply_to, peer), channel
        )

    def _remember(self, key: MemoKey, entry: tuple[Any, ...], now: float) -> None:
        """Keep an answer in the memo while no decision may change: between the policy
        windows' edges around `now`, and the fail-closed groups' (none while those are out of
        date)."""
        if self._admits(key, now):
            self._keep(key, entry)

    def _admits(self, key: MemoKey, now: float) -> bool:
        """Whether `_remember` would keep an answer for `key` made at `now` (and if not, the
        key is noted as seen once)."""
        memo = self._memo
        if not memo.since <= now < memo.until:
            closed = self._closed
            if not closed.since <= now < closed.until:
                return False
            since, until = self._state.policy.steady(now)
            memo.restart(max(since, closed.since), min(until, closed.until))
        return memo.second_sight(key)

    def _keep(self, key: MemoKey, entry: tuple[Any, ...]) -> None:
        answers = self._memo.answers  # `AnswerMemo.put` within the span, inline
        if len(answers) >= self._memo.limit:
            answers.clear()
        answers[key] = entry

    def _replay(
        self,
        entry: tuple[Any, ...],
        packet: bytes,
        client: str,
        over_udp: bool,
        started: float,
        channel: Channel | None,
        device: str,
    ) -> bytes | None:
        """A memoised answer to `packet`, with the side effects of the steps it skips; None
        when the entry no longer holds (its cached answer expired, aged a second, or left)."""
        if entry[0] == _BLOCK:
            _, tail, query, decision = entry
            audit = self.audit
            if audit.info_enabled:
                audit.blocked(client, query, decision, device)
            self.last_block = decision
            return self._block_done(query, over_udp, decision, packet[:2] + tail, started, channel)
        _, tail, query, cached, age = entry
        cache = self.cache
        moment = self.clock()
        if (
            cache is None
            or not cache.enabled
            or int(moment - cached.stored) != age
            or not cache.rehit(cached, moment)
        ):
            return None
        if cache.prefetch_due(cached, moment):
            self.upstreams.refresh(query)
        if self.audit.allowed_queries:
            self.audit.allowed(client, query, cached.rcode, device)
        return self._done(query, over_udp, "cached", packet[:2] + tail, started, None, channel)

    def _forward(
        self,
        query: Query,
        key: CacheKey | None,
        client: str,
        over_udp: bool,
        started: float,
        stale: CachedAnswer | None,
        reply_to: ReplyTo,
        channel: Channel | None = None,
    ) -> Outcome:
        # 5a. Upstream budget: the names a client may send upstream per second, in all and
        #    under one zone, and those under a zone flooded with random subdomains
        #    (rate_limit.upstream_rate, client_zone_rate, zone_rate), so a flood of unique names
        #    neither fills max_inflight nor floods the upstream, nor takes its sender's budget
        #    for other zones.
        limiter = self.limiter
        if limiter.active:
            over = limiter.admits_upstream(client, query.qname, started)
            if over is not None:
                if stale is not None:
                    return self._stale(query, client, over_udp, started, stale)
                return self._limited(query.packet, query, client, over_udp, started, over)
        # 5. Upstream: the strategy's order across the zone's upstreams within the deadline,
        #    merged with identical queries already in flight. With a stale answer to fall back
        #    on, a client waits at most cache.client_timeout (RFC 8767); the exchange goes on.
        waiting = _Waiting(query, client, over_udp, started, stale, reply_to, channel)
        try:
            self.upstreams.forward(query, key, self._settled, waiting)
        except Overloaded:
            self.stats.count("dropped.overload")
            if stale is not None:
                return self._stale(query, client, over_udp, started, stale, channel)
            return self._done(query, over_udp, "dropped", None, started, None, channel)
        if stale is not None:
            waiting.patience = asyncio.get_running_loop().call_later(
                self._state.config.cache.client_timeout, self._impatient, waiting
            )
        return FORWARDED

    def _flooding(self, key: CacheKey, client: str, started: float) -> str | None:
        """The limit 5a would shed the query of `key` for, when nothing in the cache answers
        it."""
        over = self.limiter.refuses_upstream(client, key[0], started)
        if over is None or self._answerable(key):
            return None
        return over

    def _answerable(self, key: CacheKey) -> bool:
        """Whether the cache has something to answer `key` with (an answer, fresh or stale, or
        a cached failure): then a flood's query is not shed."""
        cache = self.cache
        return cache is not None and cache.enabled and cache.answerable(key, self.clock())

    def _upstream_done(
        self,
        waiting: _Waiting,
        reply: UpstreamReply | None,
        findings: Findings | None,
        failure: UpstreamFailure | None,
    ) -> None:
        """The pool's callback when the exchange settles: steps 6-8 at once, in one function
        (`_answer_later` inlined), since this runs once per forwarded query."""
        if waiting.answered:
            return
        waiting.answered = True
        if waiting.patience is not None:
            waiting.patience.cancel()
        try:
            if reply is None:
                out = self._upstream_failed(waiting, failure or abandoned())
            else:
                query, client, over_udp, channel = (
                    waiting.query, waiting.client, waiting.over_udp, waiting.channel
                )  # fmt: skip
                # 6. Response inspection: a CNAME chain or owner name in the answer that this
                #    client's policy blocks, an address in a response-IP network, or a private
                #    address for a public name (rebinding) turns the answer into the blocked
                #    answer to the question.
                device = "" if channel is None else channel.device
                block = None
                if findings is not None:
                    state = self._state
                    block = verdict(findings, client, query.qtype, state.policy,
                                    state.config.blocking, self.wall_clock(), device,
                                    query.qname)  # fmt: skip
                if block is not None and (over_udp or block.answer != TCP_ONLY):
                    out = self._blocked(
                        self._state, query, client, block, over_udp, waiting.started, channel
                    )
                else:
                    # 7. Reply: the client's ID, question and EDNS back, cut to what it can
                    #    receive.
                    opt = _plain_opt(query.dnssec_ok, reply.ext_rcode) if query.has_edns else b""
                    if over_udp:  # `udp_limit`, inline
                        limit = query.udp_payload
                        if limit > EDNS_PAYLOAD:
                            limit = EDNS_PAYLOAD
                    else:
                        limit = TCP_MAX_MESSAGE
                    out = client_reply(reply, query, limit, opt)
                    # 8. Metrics/audit: allowed queries are logged only when the operator asks.
                    if self.audit.allowed_queries:
                        self.audit.allowed(client, query, reply.rcode, device)
                    out = self._done(query, over_udp, "answered", out, waiting.started,
                                     reply.rcode, channel)  # fmt: skip
        except Exception as error:  # a bug must cost one query, never the server
            self.internal_error(error)
            out = None
        waiting.reply_to(out)

    def _impatient(self, waiting: _Waiting) -> None:
        """The client waited cache.client_timeout: its stale answer now (RFC 8767)."""
        q = waiting
        self._answer_later(
            q, self._stale, q.query, q.client, q.over_udp, q.started, q.stale, q.channel
        )

    def _answer_later(
        self, waiting: _Waiting, answer: Callable[..., bytes | None], *args: Any
    ) -> None:
        """Send a forwarded query's answer, once, whichever comes first (reply or patience)."""
        if waiting.answered:
            return
        waiting.answered = True
        if waiting.patience is not None:
            waiting.patience.cancel()
        try:
            reply = answer(*args)
        except Exception as error:  # a bug must cost one query, never the server
            self.internal_error(error)
            reply = None
        waiting.reply_to(reply)

    def _upstream_failed(self, waiting: _Waiting, failure: UpstreamFailure) -> bytes | None:
        query, client, over_udp, started, channel = (
            waiting.query, waiting.client, waiting.over_udp, waiting.started, waiting.channel
        )  # fmt: skip
        if waiting.stale is not None:
            return self._stale(query, client, over_udp, started, waiting.stale, channel)
        servfail = failure.reply  # the upstream's own SERVFAIL, with its EDEs, if one came
        if servfail is None:
            out = answers.servfail(query, failure.ede, failure.text)
        else:
            opt = _plain_opt(query.dnssec_ok, servfail.ext_rcode) if query.has_edns else b""
            limit = udp_limit(query) if over_udp else TCP_MAX_MESSAGE
            out = client_reply(servfail, query, limit, opt)
        return self._done(query, over_udp, "servfail", out, started, None, channel)

    def internal_error(self, error: BaseException) -> None:
        self.stats.count("internal_error")
        self.audit.error("internal_error", error=repr(error)[:300])

    def _cached(
        self,
        state: ResolverState,
        cache: Cache,
        query: Query,
        client: str,
        cached: CachedAnswer,
        over_udp: bool,
        started: float,
        stale: bool,
        channel: Channel | None = None,
        now: float | None = None,
    ) -> bytes | None:
        """Steps 6-8 for an answer from the cache (fresh, or stale when `stale`); `now` is the
        cache clock's reading of the lookup, if the caller has one."""
        findings = cached.findings
        device = "" if channel is None else channel.device
        if findings is not None:
            block = verdict(findings, client, query.qtype, state.policy, state.config.blocking,
                            self.wall_clock(), device, query.qname)  # fmt: skip
            if block is not None and (over_udp or block.answer != TCP_ONLY):
                return self._blocked(state, query, client, block, over_udp, started, channel)
        if query.has_edns:
            if stale:
                code = EdeCode.STALE_NXDOMAIN_ANSWER if cached.nxdomain else EdeCode.STALE_ANSWER
                opt = opt_record(query.dnssec_ok, code, _STALE_TEXT, cached.ext_rcode)
            else:
                opt = _plain_opt(query.dnssec_ok, cached.ext_rcode)
        else:
            opt = b""
        limit = udp_limit(query) if over_udp else TCP_MAX_MESSAGE
        out = cache.build_reply(
            cached, query, limit, opt, self.clock() if now is None else now, stale
        )
        if self.audit.allowed_queries:
            self.audit.allowed(client, query, cached.rcode, device)
        result = "stale" if stale else "cached"
        return self._done(query, over_udp, result, out, started, None, channel)

    def _stale(
        self,
        query: Query,
        client: str,
        over_udp: bool,
        started: float,
        cached: CachedAnswer | None,
        channel: Channel | None = None,
    ) -> bytes | None:
        assert cached is not None and self.cache is not None
        return self._cached(
            self._state, self.cache, query, client, cached, over_udp, started, True, channel
        )

    def _after_reply(
        self, query: Query, key: CacheKey, reply: UpstreamReply
    ) -> Findings | None:
        """Once per upstream answer: inspect it, then cache it unless a client-independent
        rule (response IP, rebinding) blocks it. Answers whose names a policy might block are
        cached with those names, and every hit checks them against the asking client."""
        limiter = self.limiter
        if limiter.active:
            limiter.answered(query.qname, reply.rcode == NXDOMAIN, _perf_counter())
        findings = self.inspector.extract(reply.raw, query.question_end, query.qname)
        if findings is not None and findings.ip_block is not None:
            return findings
        cache = self.cache
        if cache is not None and cache.enabled:
            cache.store(key, reply, self.clock(), findings)
        return findings

    def _after_failure(self, query: Query, key: CacheKey, failure: UpstreamFailure) -> None:
        limiter = self.limiter
        if limiter.active:
            limiter.answered(query.qname, True, _perf_counter())
        cache = self.cache
        if cache is not None and cache.enabled:
            cache.fail(key, self.clock(), failure.ede)

    def _blocked(
        self,
        state: ResolverState,
        query: Query,
        client: str,
        decision: Decision,
        over_udp: bool,
        started: float,
        channel: Channel | None = None,
    ) -> bytes | None:
        # The cause (with its reference) was made when the policy was built: a block formats
        # nothing but the CNAME that led to it.
        cause = decision.cause
        cname = decision.cname
        if cname is not None:
            cause += f" via CNAME {to_text(cname)}"
        reply: bytes | None
        answer = decision.answer
        if answer in RPZ_ANSWERS:
            reply = self._rpz_answer(state, query, decision, over_udp, cause)
        else:
            # (`state.sinkhole`, inline)
            ede = _CENSORED if decision.censored else _BLOCKED
            sinkhole = state.sinkholes[(answer, decision.ttl, ede)]
            reply = sinkhole.build(query, decision.zone_offset, cause)
        audit = self.audit
        if audit.info_enabled:  # (below info, a block is no event: not even a call)
            audit.blocked(client, query, decision, "" if channel is None else channel.device)
        self.last_block = decision
        return self._block_done(query, over_udp, decision, reply, started, channel)

    def _block_done(
        self,
        query: Query,
        over_udp: bool,
        decision: Decision,
        reply: bytes | None,
        started: float,
        channel: Channel | None,
    ) -> bytes | None:
        """8. Metrics of a block (`_done`'s, and the block's labels) in one call to `stats`."""
        labels: tuple[str, ...] = (
            decision.group, decision.policy or "", decision.list_name or "", decision.answer
        )  # (of any length: one tuple, which `block_answered` keeps, not a struct boxed there)
        protocol = ("udp" if over_udp else "tcp") if channel is None else channel.transport
        stats = self.stats
        if reply is None:  # an RPZ DROP: nothing sent, so no rcode
            stats.blocked(*labels)
            stats.query(protocol, query.qtype, "blocked", _perf_counter() - started)
            return None
        rcode = reply[3] & 0x0F if len(reply) > 3 else 0
        stats.block_answered(protocol, query.qtype, _perf_counter() - started, labels, rcode)
        return reply

    @staticmethod
    def _rpz_answer(
        state: ResolverState, query: Query, decision: Decision, over_udp: bool, cause: str
    ) -> bytes | None:
        """The answers only an RPZ rule gives: DROP sends nothing, TCP-only an empty truncated
        reply (only over UDP gets here), local data the rule's records (NODATA for a type it
        has none of)."""
        if decision.answer == DROP:
            return None
        if decision.answer == TCP_ONLY:
            return answers.truncated(query)
        limit = udp_limit(query) if over_udp else TCP_MAX_MESSAGE
        reply = answers.local_data(query, decision.data, decision.ttl, cause, limit)
        if reply is None:
            nodata = state.sinkhole(answers.NODATA_MODE, decision.ttl, decision.censored)
            reply = nodata.build(query, decision.zone_offset, cause)
        return reply

    def _done(
        self,
        query: Query,
        over_udp: bool,
        result: str,
        reply: bytes | None,
        started: float,
        rcode: int | None = None,
        channel: Channel | None = None,
    ) -> bytes | None:
        """8. Metrics: one record per query, whatever path it took. `rcode` is the whole
        (extended) one when it may not fit the header's four bits: an upstream's."""
        stats = self.stats
        protocol = ("udp" if over_udp else "tcp") if channel is None else channel.transport
        stats.query(protocol, query.qtype, result, _perf_counter() - started)
        if reply is not None:
            if rcode is None:
                rcode = reply[3] & 0x0F if len(reply) > 3 else 0
            stats.rcode(rcode)
        return reply

    def _limited(
        self,
        packet: bytes,
        query: Query | None,
        client: str,
        over_udp: bool,
        started: float,
        limit: str,
        key: CacheKey | None = None,
    ) -> bytes | None:
        """A query over a rate limit: counted per group, folded into one audit event per
        client and limit, and dropped or REFUSED (EDE 18) as `rate_limit.action` says. `key`:
        its question as read from the bytes (step 0c), when it was not parsed."""
        action, label = self._over_limit
        entry = self.limiter.entry(client, started)
        held = entry.report_due(limit, started)
        if action is _REFUSE and query is None:
            try:
                query = self.parse(packet)
            except WireError:
                query = None
        qname, qtype = (
            (query.qname, query.qtype) if query is not None
            else (key[0], key[1]) if key is not None else (None, -1)
        )  # fmt: skip
        if held >= 0:
            self.audit.rate_limited(client, entry.group, limit, label, qname, held)
        if action is _DROP or query is None:  # `rate_limited` and `query` in one call
            self.stats.shed(entry.group, limit, label, "udp" if over_udp else "tcp", qtype,
                            _perf_counter() - started)  # fmt: skip
            return None
        self.stats.rate_limited(entry.group, limit, label)
        reply = answers.refused(query, EdeCode.PROHIBITED, f"rate limited ({limit})")
        return self._done(query, over_udp, "refused", reply, started)

    def _shed(
        self,
        packet: bytes,
        client: str,
        over_udp: bool,
        started: float,
        entry: ClientEntry,
        key: CacheKey,
    ) -> bytes | None:
        """`_limited` for a query shed at step 0c, its client's entry (and the limit, in
        `entry.refused`) in hand: a drop, the default action, takes one call to `stats` and no
        parse; a refusal is `_limited`'s."""
        action, label = self._over_limit
        limit = entry.refused
        if action is not _DROP:
            return self._limited(packet, None, client, over_udp, started, limit, key)
        held = entry.report_due(limit, started)
        if held >= 0:
            self.audit.rate_limited(client, entry.group, limit, label, key[0], held)
        self.stats.shed(entry.group, limit, label, "udp" if over_udp else "tcp", key[1],
                        _perf_counter() - started)  # fmt: skip
        return None

    def _malformed(
        self,
        packet: bytes,
        error: WireError,
        over_udp: bool,
        started: float,
        channel: Channel | None = None,
    ) -> bytes | None:
        stats = self.stats
        stats.count("malformed." + error.reason)
        reply = answers.error_reply(packet, error)
        result = "dropped" if reply is None else _ERROR_RESULTS.get(error.rcode or 0, "formerr")
        protocol = ("udp" if over_udp else "tcp") if channel is None else channel.transport
        stats.query(protocol, -1, result, _perf_counter() - started)
        if reply is not None:
            stats.rcode(error.rcode or 0)
        return reply
