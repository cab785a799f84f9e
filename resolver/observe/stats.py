"""Every outcome counter in one place, so metrics and the shutdown summary read one table.

The hot path only ever touches this module: a dict increment on a short key, and for durations
a bisect into fixed buckets. Nothing here formats, exports or locks; `observe.metrics` reads these
tables when Prometheus scrapes, so the cost of exporting is paid per scrape, not per query.

Every label is drawn from a bounded set, so the tables cannot grow with traffic: query types and
rcodes outside a fixed list become "other", results are the fixed `RESULTS`, and group, policy,
list, answer and upstream come from the configuration. Never a client address or a name.

`count` takes free-form keys for events: why a packet was malformed (`malformed.<reason>`), what
upstreams and connections did (`upstream.<event>`, `tcp.<event>`, `udp.<event>`),
`dropped.<reason>`, `reload.ok|failed` and `internal_error`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from typing import Final, cast

RESULTS: Final = ("answered", "blocked", "refused", "cached", "stale", "servfail", "formerr",
                  "notimp", "badvers", "dropped", "ddr")  # fmt: skip
"""What became of a query; the `result` label. `answered` means forwarded and answered, `ddr`
answered with our own encrypted endpoints (RFC 9462)."""

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)  # fmt: skip
"""Upper bounds in seconds. A sinkhole answer takes tens of microseconds, a forwarded one
milliseconds to seconds; the default Prometheus buckets start at 5 ms and would lump every
blocked answer into one bucket. (Of any length to mypy: the compiled core keeps a fixed-length
tuple unboxed, and would make a new tuple of new floats for each `bisect_left`.)"""

_FIRST_BOUND: Final = DURATION_BUCKETS[0]
"""A cache hit, a block or a shed takes microseconds: its duration's slot is the first,
nearly always, so every observation compares with this bound before it bisects (the same
slot `bisect_left` gives, without the call)."""

QTYPE_LABELS: Final = {1: "A", 28: "AAAA", 65: "HTTPS", 64: "SVCB", 255: "ANY", 15: "MX",
                       16: "TXT", 5: "CNAME", 2: "NS", 12: "PTR", 6: "SOA", 33: "SRV", 43: "DS",
                       48: "DNSKEY"}  # fmt: skip
"""The query types worth a series of their own; every other type is `other`."""

RCODE_LABELS: Final = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
                       5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
                       10: "NOTZONE", 16: "BADVERS"}  # fmt: skip
"""Response codes by name (RFC 1035, 2136, 6891); any other value is `other`."""

OTHER: Final = "other"

SHED_KEYS: Final = 1024
"""Sheds kept apart (`Stats.shed`) before they are shared out unasked: each query type is a
key of its own there, so a flood of every type would otherwise grow the table until a scrape."""

GC_GENERATIONS: Final = (0, 1, 2)
"""CPython's garbage-collector generations, 0 the youngest; the `generation` label."""


class Histogram:
    """Bucket counts (not cumulative: one increment per observation) and their sum.

    `counts[i]` counts observations in (bounds[i-1], bounds[i]]; the last slot is +Inf. Kept
    non-cumulative so an observation costs one bisect and two additions; the exporter sums.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[0 if seconds <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, +Inf last, as exported."""
        running = 0
        out: list[tuple[float, int]] = []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total


BlockedKey = tuple[object, ...]
"""What `Stats.block_answered` counts a block by: (protocol, query type, rcode, labels), the
type a number (its label is looked up when the blocks are shared out, not per block). Of any
length to mypy: a fixed-length tuple would be kept unboxed by the compiled core, and boxed
anew for each of the dict's `get` and its store."""
BLOCKED_KEYS: Final = 1024
"""Blocks kept apart (`Stats.block_answered`) before they are shared out unasked: each query
type is a key of its own there, so blocked names asked with every type would otherwise grow
the table until a scrape."""
_BlockedFields = tuple[str, int, int, tuple[str, str, str, str]]
ShedKey = tuple[str, str, str, str, int]
"""What `Stats.shed` counts a shed query by: group, limit, action, protocol, query type (the
number: its label is looked up when the sheds are shared out, not per packet)."""


class Stats:
    """Lives as long as the process, so counters keep their values across reloads.

    A block is counted once, by everything that tells blocks apart (`block_answered`), and
    shared out into `queries`, `rcodes` and `blocks` when one of them is read: per block one
    dict update instead of three, and no key made for each table. A query shed over a rate
    limit likewise (`shed`), into `limited` and `queries`: a flood's packets cost one update
    each, and what a scrape reads is exact."""

    __slots__ = ("_blocked", "_blocked_time", "_blocks", "_dropped_time", "_limited", "_queries",
                 "_rcodes", "_shed", "counts", "durations", "gc_pauses", "upstream_durations",
                 "upstreams")  # fmt: skip

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._queries: dict[tuple[str, str, str], int] = {}
        # One histogram per result from the start, so every series exists from the first
        # scrape (ratios in alerts need no `or vector(0)`) and an unknown result fails loudly.
        self.durations: dict[str, Histogram] = {result: Histogram() for result in RESULTS}
        self._blocked_time = self.durations["blocked"]
        self._dropped_time = self.durations["dropped"]
        self._rcodes: dict[str, int] = {}
        self._blocks: dict[tuple[str, str, str, str], int] = {}
        # Blocks not yet shared out, each count in a list of one: a block then finds its key
        # once, and adds one in place, instead of finding it again to store the new count.
        self._blocked: dict[BlockedKey, list[int]] = {}
        self._limited: dict[tuple[str, str, str], int] = {}
        self._shed: dict[ShedKey, int] = {}  # sheds not yet shared out
        self.upstreams: dict[tuple[str, str], int] = {}
        self.upstream_durations: dict[str, Histogram] = {}
        self.gc_pauses: dict[str, Histogram] = {str(g): Histogram() for g in GC_GENERATIONS}

    def reset(self) -> None:
        """Every counter back to zero in place (the supervisor's total: its collector holds this
        object). Not by calling `__init__` again, which a compiled class runs only once."""
        fresh = Stats()
        self.counts, self._queries, self.durations = fresh.counts, fresh._queries, fresh.durations
        self._blocked_time, self._rcodes = fresh._blocked_time, fresh._rcodes
        self._blocks, self._blocked, self._limited = fresh._blocks, fresh._blocked, fresh._limited
        self._dropped_time, self._shed = fresh._dropped_time, fresh._shed
        self.upstreams, self.upstream_durations = fresh.upstreams, fresh.upstream_durations
        self.gc_pauses = fresh.gc_pauses

    @property
    def queries(self) -> dict[tuple[str, str, str], int]:
        """Queries by (protocol, query type label, result)."""
        if self._blocked:
            self._share_blocked()
        if self._shed:
            self._share_shed()
        return self._queries

    @property
    def limited(self) -> dict[tuple[str, str, str], int]:
        """Queries over a rate limit by (group, limit, action)."""
        if self._shed:
            self._share_shed()
        return self._limited

    @property
    def rcodes(self) -> dict[str, int]:
        """Responses by rcode label."""
        if self._blocked:
            self._share_blocked()
        return self._rcodes

    @property
    def blocks(self) -> dict[tuple[str, str, str, str], int]:
        """Blocked queries by (group, policy or "", list, answer)."""
        if self._blocked:
            self._share_blocked()
        return self._blocks

    def _share_blocked(self) -> None:
        blocked, self._blocked = self._blocked, {}
        queries, rcodes, blocks = self._queries, self._rcodes, self._blocks
        for counted, (value,) in blocked.items():
            protocol, qtype, rcode, labels = cast(_BlockedFields, counted)
            key = (protocol, QTYPE_LABELS.get(qtype, OTHER), "blocked")
            queries[key] = queries.get(key, 0) + value
            label = RCODE_LABELS.get(rcode, OTHER)
            rcodes[label] = rcodes.get(label, 0) + value
            blocks[labels] = blocks.get(labels, 0) + value

    def _share_shed(self) -> None:
        shed, self._shed = self._shed, {}
        queries, limited = self._queries, self._limited
        for (group, limit, action, protocol, qtype), value in shed.items():
            key = (group, limit, action)
            limited[key] = limited.get(key, 0) + value
            query = (protocol, QTYPE_LABELS.get(qtype, OTHER), "dropped")
            queries[query] = queries.get(query, 0) + value

    def count(self, key: str, amount: int = 1) -> None:
        self.counts[key] += amount

    def query(self, protocol: str, qtype: int, result: str, seconds: float) -> None:
        """One query finished: `protocol` "udp", "tcp", "dot" or "doh", `result` one of
        `RESULTS` (anything else
        raises KeyError: a typo must show up in tests, not as a new series), `seconds` from
        receipt to answer."""
        histogram = self.durations[result]
        slot = 0 if seconds <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, seconds)
        histogram.counts[slot] += 1
        histogram.total += seconds
        key = (protocol, QTYPE_LABELS.get(qtype, OTHER), result)
        queries = self._queries
        queries[key] = queries.get(key, 0) + 1

    def rcode(self, rcode: int) -> None:
        """One response sent with this (extended) rcode."""
        label = RCODE_LABELS.get(rcode, OTHER)
        rcodes = self._rcodes
        rcodes[label] = rcodes.get(label, 0) + 1

    def blocked(self, group: str, policy: str, list_name: str, answer: str) -> None:
        """One blocked query and the decision's bounded labels; `policy` is "" for a block from
        `blocking.lists` or a group's own lists (exported as "none")."""
        key = (group, policy, list_name, answer)
        blocks = self._blocks
        blocks[key] = blocks.get(key, 0) + 1

    def block_answered(self, protocol: str, qtype: int, seconds: float,
                       labels: tuple[str, ...], rcode: int) -> None:  # fmt: skip
        """One blocked query answered: `query` (result "blocked"), `rcode` and `blocked` in one
        call, since every block records all three. `labels` is what `blocked` takes: (group,
        policy or "", list, answer)."""
        histogram = self._blocked_time
        slot = 0 if seconds <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, seconds)
        histogram.counts[slot] += 1
        histogram.total += seconds
        key: BlockedKey = (protocol, qtype, rcode, labels)
        blocked = self._blocked
        count = blocked.get(key)
        if count is None:
            if len(blocked) >= BLOCKED_KEYS:  # blocks of odd types: shared out now
                self._share_blocked()
                blocked = self._blocked
            count = blocked[key] = [0]
        count[0] += 1

    def rate_limited(self, group: str, limit: str, action: str) -> None:
        """One query over a rate limit (`policy.ratelimit.LIMITS`) of a client in `group`, and
        what it got (drop or refuse)."""
        key = (group, limit, action)
        limited = self._limited
        limited[key] = limited.get(key, 0) + 1

    def shed(self, group: str, limit: str, action: str, protocol: str, qtype: int,
             seconds: float) -> None:  # fmt: skip
        """`rate_limited` and `query` (result "dropped") in one call: a query dropped over a
        rate limit, the one thing a flood's packet costs here."""
        histogram = self._dropped_time
        slot = 0 if seconds <= _FIRST_BOUND else bisect_left(DURATION_BUCKETS, seconds)
        histogram.counts[slot] += 1
        histogram.total += seconds
        key = (group, limit, action, protocol, qtype)
        shed = self._shed
        count = shed.get(key)
        if count is None:
            if len(shed) >= SHED_KEYS:  # a flood of odd types: shared out now, not per scrape
                self._share_shed()
                shed = self._shed
            count = 0
        shed[key] = count + 1

    def upstream(self, upstream: str, outcome: str, seconds: float | None) -> None:
        """One exchange with `upstream` ("ip:port"), its outcome (ok, timeout, servfail, refused,
        bad_reply or error) and, when known, how long it took."""
        key = (upstream, outcome)
        upstreams = self.upstreams
        upstreams[key] = upstreams.get(key, 0) + 1
        if seconds is not None:
            histogram = self.upstream_durations.get(upstream)
            if histogram is None:
                histogram = self.upstream_durations[upstream] = Histogram()
            histogram.observe(seconds)

    def gc_pause(self, generation: int, seconds: float) -> None:
        """One collection of the cyclic garbage collector, which stopped the event loop (and
        every query waiting on it) for `seconds`."""
        self.gc_pauses[str(generation)].observe(seconds)

    def merge(self, other: Stats) -> None:
        """Add every counter and histogram of `other` (another worker's report) to these."""
        self.counts.update(other.counts)
        for mine, theirs in ((self.queries, other.queries), (self.rcodes, other.rcodes),
                             (self.blocks, other.blocks), (self.upstreams, other.upstreams),
                             (self.limited, other.limited)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value  # type: ignore[index, arg-type]
        for own, their in ((self.durations, other.durations),
                           (self.upstream_durations, other.upstream_durations),
                           (self.gc_pauses, other.gc_pauses)):
            for key, histogram in their.items():
                target = own.get(key)
                if target is None:
                    target = own[key] = Histogram()
                target.merge(histogram)

    def results(self) -> dict[str, int]:
        """Queries per result over all protocols and types (every result, zeros included)."""
        totals = dict.fromkeys(RESULTS, 0)
        for (_, _, result), value in self.queries.items():
            totals[result] += value
        return totals

    def summary(self) -> dict[str, int]:
        """The free-form counters plus `query.<result>` totals, for the shutdown summary."""
        merged = dict(self.counts)
        for (_, limit, _), value in self.limited.items():
            merged["rate_limited." + limit] = merged.get("rate_limited." + limit, 0) + value
        for result, value in self.results().items():
            if value:
                merged["query." + result] = value
        return dict(sorted(merged.items()))
