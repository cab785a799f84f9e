"""The answer cache: upstream replies kept as wire bytes, served by patching, never re-parsed.

Storing a reply reads only the TTLs that decide its lifetime, and keeps it as one plain tuple
(`StoredAnswer`) that the garbage collector soon stops walking. Its first hit makes it a
`CachedAnswer` and walks it once: the offset of every TTL is noted and each TTL is normalised
(top bit set counts as 0, RFC 2181; never above the answer's lifetime), so names asked once never
pay for that. A hit then copies the stored bytes, writes the remaining TTLs at those offsets and
hands the result to `wire.client_reply`, exactly as a forwarded reply is handed over: the
client's ID and question bytes (its letter case), its EDNS treatment and its UDP size limit all
come from that one function. Compression pointers in the stored records point into the question,
which has the same length in every query that maps to the same key, so the bytes stay valid
whatever case the client used.

What is kept, and for how long:

- positive answers for min(TTL over the answer section), clamped to `min_ttl`..`max_ttl`;
- NXDOMAIN and NODATA for min(SOA TTL, SOA MINIMUM) when the authority section has a SOA, capped
  by `negative_max_ttl`, and not at all without one (RFC 2308 5). NXDOMAIN is kept per name (it
  answers every type), NODATA per name and type;
- never a truncated reply, SERVFAIL, REFUSED or any other error rcode, nor a reply of more than
  `MAX_RECORDS` records;
- resolution failures, as a bare marker for `failure_ttl`, doubling while they repeat up to
  `MAX_FAILURE_TTL` (RFC 9520): an outage must not turn into a retry storm;
- expired answers for `max_stale_age` more, to be served stale (RFC 8767) only when upstreams fail
  or are too slow.

Pure: the caller passes `now` (monotonic seconds) to every method; nothing here reads a clock.

May import: protocol, config, policy
Does I/O: none
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from typing import Any, Final

from resolver.config.cache import MAX_FAILURE_TTL, CacheConfig
from resolver.policy.inspection import Findings
from resolver.protocol.wire import (
    CD,
    NOERROR,
    NXDOMAIN,
    RR_FIXED,
    TYPE_SOA,
    FormError,
    Query,
    UpstreamReply,
    client_reply,
    skip_name,
)

CacheKey = tuple[bytes, int, int, bool, int]
"""(qname in lowercase wire form, qtype, qclass, DO, CD bit): the in-flight merge key too."""

NXDOMAIN_TYPE: Final = -1
"""The qtype slot of a per-name NXDOMAIN answer: no real type is negative."""

FAILURE_FORGET: Final = 3.0
"""A failure that recurs within this many times its last backoff doubles the backoff."""

MAX_FAILURES: Final = 10000
"""Failure markers are tiny, but a flood of failing names must not grow them without bound."""

ANSWER_OVERHEAD: Final = 300
"""Bytes charged per answer on top of its wire bytes (key, object, offsets), so the byte cap
tracks memory even when answers are small."""

MAX_RECORDS: Final = 256
"""Replies with more records than this are not cached: real answers are far smaller, and a
hostile 64 KB reply of thousands of records must not cost a long walk to store and patch."""

ANSWER_MEMO_LIMIT: Final = 4096
"""Answers the pipeline's `AnswerMemo` keeps at once (forgotten all at once when full)."""

SIGHTED_LIMIT = 2 * ANSWER_MEMO_LIMIT
"""Hashes of memo keys seen once that the `AnswerMemo` keeps (forgotten all at once when full):
a key is kept on its second sight only if it came back within about this many others, which is
what a memo of `ANSWER_MEMO_LIMIT` answers can help with."""

PROTECTED_SHARE: Final = 0.8
PREFETCH_MIN_HITS: Final = 3
PREFETCH_FRACTION: Final = 0.1
PREFETCH_MIN_TTL: Final = 10

_TTL: Final = struct.Struct(">I")
_STALE: Final = -1


def cache_key(query: Query) -> CacheKey:
    return (query.qname, query.qtype, query.qclass, query.dnssec_ok, query.flags & CD)


class CachedReply(UpstreamReply):
    """A stored answer dressed as an `UpstreamReply`, so `client_reply` serves it unchanged.

    Built from fields the cache located when it stored the reply: no parse on a hit.
    """

    __slots__ = ()

    def __init__(
        self,
        raw: bytes,
        additional: bytes,
        additional_count: int,
        rcode: int,
        ext_rcode: int,
        ede: bytes = b"",
    ) -> None:
        self.raw = raw
        self.ede = ede
        self.sections_end = len(raw)
        self.records = ()  # not needed: a hit is served as stored, never parsed again
        self.additional = additional
        self.additional_count = additional_count
        self.rcode = rcode
        self.ext_rcode = ext_rcode
        self.truncated = False


StoredAnswer = tuple[Any, ...]
"""An answer no client has asked for since it was stored, as one plain tuple (layout below).

Why not a `CachedAnswer`: every object the cyclic GC tracks is walked by each full collection,
which pauses the event loop. A cache of 100,000 `CachedAnswer` objects costs ~40 ms per full
collection, and with names asked once streaming through, one comes every 25,000 new answers. A
tuple of bytes, numbers and tuples of those is untracked at its first collection, so the names
asked once (most of a full cache) cost collections nothing; an answer's first hit makes it a
`CachedAnswer`.
"""
_KEY, _SIZE, _STALE_UNTIL, _LIFETIME = 0, 1, 3, 4
_RAW = 13
"""(key, size, expires, stale_until, ttl, floor, negative, stored, findings as (names,
ip_block, addresses) or None, additional_count, rcode, ext_rcode, the upstream's EDE options, raw,
sections_end, additional, then where each answer and authority record is): what `CachedAnswer` and
`CachedAnswer.lay_out` need of the reply."""


class CachedAnswer:
    """One cached answer that has been asked for again, and its place in the bookkeeping.

    `head` is the reply up to the end of the authority section (header, question, answer,
    authority) and `additional` its additional records without the OPT; `*_offsets` locate the
    TTLs in each and `*_ttls` hold their normalised values. `findings` is what response
    inspection found in the answer (names to check against the asking client's policy), or None.

    Made from a `StoredAnswer` at its first hit (or stale use); the byte copies and offsets are
    made then too (`lay_out`), never for names asked only once.
    """

    __slots__ = (
        "additional",
        "additional_count",
        "additional_offsets",
        "additional_ttls",
        "ede",
        "expires",
        "ext_rcode",
        "findings",
        "floor",
        "head",
        "head_offsets",
        "head_ttls",
        "hits",
        "key",
        "memo",
        "negative",
        "prefetching",
        "protected",
        "rcode",
        "size",
        "stale_until",
        "stored",
        "stored_answer",
        "ttl",
    )

    def __init__(self, stored: StoredAnswer) -> None:
        (
            self.key, self.size, self.expires, self.stale_until, self.ttl, self.floor,
            self.negative, self.stored, found, self.additional_count, self.rcode, self.ext_rcode,
            self.ede,
        ) = stored[:_RAW]  # fmt: skip
        self.findings = None if found is None else Findings(*found)
        self.stored_answer: StoredAnswer | None = stored
        self.head = b""
        self.additional = b""
        self.head_offsets: tuple[int, ...] = ()
        self.head_ttls: tuple[int, ...] = ()
        self.additional_offsets: tuple[int, ...] = ()
        self.additional_ttls: tuple[int, ...] = ()
        self.hits = 0
        self.prefetching = False
        self.protected = False
        # (age or _STALE, stale TTL, patched head, patched additional): hits within one second
        # share one patched copy, so a hot name costs a lookup and a join, not a TTL rewrite.
        self.memo: tuple[int, int, bytes, bytes] | None = None

    @property
    def nxdomain(self) -> bool:
        return self.rcode == NXDOMAIN

    def lay_out(self) -> None:
        """Copy the stored reply's bytes and note its TTLs, each normalised: a set top bit counts
        as 0 (RFC 2181 8), and none is below `floor` or above the answer's lifetime."""
        stored = self.stored_answer
        if stored is None:
            return
        raw, sections_end, additional_records = stored[_RAW : _RAW + 3]
        records = stored[_RAW + 3 :]
        ttl, floor = self.ttl, self.floor
        head = bytearray(raw[:sections_end])
        offsets = [at + 4 for at in records]
        self.head_offsets, self.head_ttls = _normalise(head, offsets, floor, ttl)
        additional = bytearray(additional_records)
        offsets = []
        pos = 0
        for _ in range(self.additional_count):
            pos = skip_name(additional, pos)
            offsets.append(pos + 4)
            pos += 10 + ((additional[pos + 8] << 8) | additional[pos + 9])
        self.additional_offsets, self.additional_ttls = _normalise(additional, offsets, floor, ttl)
        self.head = bytes(head)
        self.additional = bytes(additional)
        self.stored_answer = None


def _normalise(
    data: bytearray, offsets: list[int], floor: int, ttl: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rewrite the TTL at each offset into floor..ttl; (offsets, the values written)."""
    values: list[int] = []
    for offset in offsets:
        (value,) = _TTL.unpack_from(data, offset)
        value = min(max(0 if value & 0x80000000 else value, floor), ttl)
        _TTL.pack_into(data, offset, value)
        values.append(value)
    return tuple(offsets), tuple(values)


class Cache:
    """Answers by key, bounded by count and bytes, with a segmented LRU (SLRU).

    Why segmented: a random-subdomain flood (`<random>.victim.example`, each name asked once)
    would, in a plain LRU, push every useful answer out. Here a new answer enters the probation
    segment; only a hit moves it to the protected segment (at most `PROTECTED_SHARE` of the cap),
    and eviction takes probation's least recently used answer first. One-shot names therefore only
    ever displace each other, while names that clients actually ask again stay. Admission on a
    second miss would also resist the flood but makes every name pay two upstream round trips;
    SLRU costs nothing extra for names asked once.
    """

    def __init__(self, config: CacheConfig) -> None:
        # Probation holds answers not asked for again (`StoredAnswer`) and demoted ones.
        self._probation: OrderedDict[CacheKey, CachedAnswer | StoredAnswer] = OrderedDict()
        self._protected: OrderedDict[CacheKey, CachedAnswer] = OrderedDict()
        self._failures: OrderedDict[CacheKey, tuple[float, float, int]] = OrderedDict()
        self._names: set[bytes] = set()
        """Every name with an answer or failure kept, and some that had one (`_named`): a name
        not in it has neither, found in one probe of its bytes (`answerable`)."""
        self._nxdomains = 0
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.configure(config)

    def configure(self, config: CacheConfig) -> None:
        """Apply new limits (start-up and reload); shrinking evicts at once."""
        self.config = config
        self.enabled = config.enabled
        self._stale_window = config.max_stale_age if config.serve_stale else 0.0
        self._protected_count = max(1, int(config.max_entries * PROTECTED_SHARE))
        self._protected_bytes = int(config.max_bytes * PROTECTED_SHARE)
        self._protected_size = sum(e.size for e in self._protected.values())
        if not config.enabled:
            self.flush()
        self._shrink()

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def stats(self) -> dict[str, int]:
        """The counters the metrics export (`observe.metrics.CACHE_KEYS`)."""
        return {
            "entries": len(self),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }

    def flush(self) -> int:
        """Forget every answer and failure (operator command); returns how many answers."""
        count = len(self)
        self._probation.clear()
        self._protected.clear()
        self._failures.clear()
        self._names.clear()
        self._nxdomains = 0
        self.bytes = 0
        self._protected_size = 0
        return count

    # --- lookup -------------------------------------------------------------------------------

    def lookup(self, key: CacheKey, now: float) -> CachedAnswer | None:
        """The answer for `key`: fresh, or expired but still within the stale window (fresh while
        `now < answer.expires`); None when there is neither. A fresh answer counts as a hit and is
        promoted; anything else counts as a miss."""
        cached = self._get(key, now)
        if (cached is None or now >= cached.expires) and self._nxdomains:
            nx = self._get((key[0], NXDOMAIN_TYPE, key[2], key[3], key[4]), now)
            if nx is not None and (cached is None or now < nx.expires):
                cached = nx
        if cached is None or now >= cached.expires:
            self.misses += 1
            return cached
        self.hits += 1
        cached.hits += 1
        self._touch(cached)
        return cached

    def rehit(self, cached: CachedAnswer, now: float) -> bool:
        """A hit on `cached` found without `lookup` (the pipeline's `AnswerMemo` held it),
        counted and promoted as `lookup` would; False when it is no longer fresh or no longer
        the answer stored under its key (evicted, replaced, flushed)."""
        if now >= cached.expires:
            return False
        segment = self._protected if cached.protected else self._probation
        if segment.get(cached.key) is not cached:
            return False
        self.hits += 1
        cached.hits += 1
        self._touch(cached)
        return True

    def _get(self, key: CacheKey, now: float) -> CachedAnswer | None:
        value = self._protected.get(key) or self._probation.get(key)
        if value is None:
            return None
        if isinstance(value, tuple):
            if now >= value[_STALE_UNTIL]:
                self._discard(value)
                return None
            cached = self._probation[key] = CachedAnswer(value)  # keeps its place in the LRU order
            return cached
        if now >= value.stale_until:
            self._discard(value)
            return None
        return value

    def _touch(self, cached: CachedAnswer) -> None:
        if cached.protected:
            self._protected.move_to_end(cached.key)
            return
        del self._probation[cached.key]
        cached.protected = True
        self._protected[cached.key] = cached
        self._protected_size += cached.size
        protected = self._protected
        while len(protected) > self._protected_count or (
            self._protected_size > self._protected_bytes and len(protected) > 1
        ):
            _, demoted = protected.popitem(last=False)
            demoted.protected = False
            self._protected_size -= demoted.size
            self._probation[demoted.key] = demoted

    # --- serving ------------------------------------------------------------------------------

    def build_reply(
        self,
        cached: CachedAnswer,
        query: Query,
        limit: int,
        opt: bytes,
        now: float,
        stale: bool = False,
    ) -> bytes:
        """The reply to `query` from `cached`: remaining TTLs (or `stale_answer_ttl` when `stale`),
        the client's ID, question and `opt`, truncated to `limit` like any forwarded reply."""
        if stale:
            age = _STALE
            stale_ttl = self.config.stale_answer_ttl
        else:
            age = int(now - cached.stored)
            stale_ttl = 0
        memo = cached.memo
        if memo is None or memo[0] != age or memo[1] != stale_ttl:
            cached.lay_out()
            head = _patch(cached.head, cached.head_offsets, cached.head_ttls, age, stale_ttl)
            additional = cached.additional
            if cached.additional_offsets:
                additional = _patch(
                    additional, cached.additional_offsets, cached.additional_ttls, age, stale_ttl
                )
            memo = cached.memo = (age, stale_ttl, head, additional)
        reply = CachedReply(
            memo[2], memo[3], cached.additional_count, cached.rcode, cached.ext_rcode, cached.ede
        )
        return client_reply(reply, query, limit, opt)

    def prefetch_due(self, cached: CachedAnswer, now: float) -> bool:
        """True once per answer when it is hot (`PREFETCH_MIN_HITS` hits) and within the last
        `PREFETCH_FRACTION` of its lifetime: refresh it now, before clients see a miss."""
        if (
            cached.prefetching
            or cached.hits < PREFETCH_MIN_HITS
            or cached.ttl < PREFETCH_MIN_TTL
            or not self.config.prefetch
            or cached.expires - now > cached.ttl * PREFETCH_FRACTION
        ):
            return False
        cached.prefetching = True
        return True

    # --- storing ------------------------------------------------------------------------------

    def store(
        self, key: CacheKey, reply: UpstreamReply, now: float, findings: Findings | None = None
    ) -> int | None:
        """Keep `reply` (which matched the query behind `key`) if it is cacheable; the TTL it is
        kept for, or None when it may not be cached."""
        if not self.enabled:
            return None
        try:
            made = self._storable(key, reply, now, findings)
        except (FormError, struct.error, IndexError):
            return None
        if made is None:
            return None
        if self._failures:
            self._failures.pop(key, None)
        key, size = made[_KEY], made[_SIZE]
        config = self.config
        old = self._protected.get(key) or self._probation.get(key)
        protected = False
        if old is not None:
            protected = type(old) is CachedAnswer and old.protected
            self._discard(old)
        if size > config.max_bytes:
            return None
        if protected:  # a hot name refreshed (prefetch): it stays protected
            cached = self._protected[key] = CachedAnswer(made)
            cached.protected = True
            self._protected_size += size
        else:
            self._probation[key] = made
        self._named(key[0])
        self.bytes += size
        if key[1] == NXDOMAIN_TYPE:
            self._nxdomains += 1
        if (
            self.bytes > config.max_bytes
            or len(self._probation) + len(self._protected) > config.max_entries
        ):
            self._shrink()
        return made[_LIFETIME]

    def _storable(
        self, key: CacheKey, reply: UpstreamReply, now: float, findings: Findings | None
    ) -> StoredAnswer | None:
        """What `reply` is kept as, or None when it may not be cached. Reads only the TTLs that
        decide its lifetime; the rest waits for a hit (`CachedAnswer.lay_out`)."""
        rcode = reply.rcode
        if reply.truncated or rcode not in (NOERROR, NXDOMAIN):
            return None
        records = reply.records
        if len(records) + reply.additional_count > MAX_RECORDS:
            return None
        raw = reply.raw
        ancount = (raw[6] << 8) | raw[7]
        config = self.config
        read = _TTL.unpack_from
        answer_min: int | None = None
        for at in records[:ancount] if len(records) > ancount else records:
            (ttl,) = read(raw, at + 4)
            if ttl & 0x80000000:
                ttl = 0
            if answer_min is None or ttl < answer_min:
                answer_min = ttl
        if rcode == NOERROR and answer_min is not None:
            floor = config.min_ttl
            ttl = answer_min if answer_min > floor else floor
            if ttl > config.max_ttl:
                ttl = config.max_ttl
            if ttl <= 0:
                return None
            return self._pack(key, reply, ttl, floor, False, now, findings)
        negative: int | None = None
        for at in records[ancount:]:
            rtype, _, ttl, rdlength = RR_FIXED.unpack_from(raw, at)
            if rtype == TYPE_SOA and rdlength >= 22:
                (minimum,) = read(raw, at + 6 + rdlength)
                negative = min(0 if ttl & 0x80000000 else ttl, minimum & 0x7FFFFFFF)
                break
        if negative is None:
            return None  # negative without a SOA: RFC 2308 5 says do not cache
        # A CNAME chain ending in NXDOMAIN lives no longer than its links either.
        ttl = min(negative, config.negative_max_ttl, answer_min or negative)
        if ttl <= 0:
            return None
        if rcode == NXDOMAIN and not ancount:
            key = (key[0], NXDOMAIN_TYPE, key[2], key[3], key[4])
        return self._pack(key, reply, ttl, 0, True, now, findings)

    def _pack(
        self,
        key: CacheKey,
        reply: UpstreamReply,
        ttl: int,
        floor: int,
        negative: bool,
        now: float,
        findings: Findings | None,
    ) -> StoredAnswer:
        expires = now + ttl
        size = reply.sections_end + len(reply.additional) + len(key[0]) + ANSWER_OVERHEAD
        found = (
            None if findings is None else (findings.names, findings.ip_block, findings.addresses)
        )
        return (
            key, size, expires, expires + self._stale_window, ttl, floor, negative, now, found,
            reply.additional_count, reply.rcode, reply.ext_rcode, reply.ede,
            reply.raw, reply.sections_end, reply.additional, *reply.records,
        )  # fmt: skip

    # --- failures (RFC 9520) ------------------------------------------------------------------

    def fail(self, key: CacheKey, now: float, ede: int) -> float:
        """Remember that resolving `key` failed; returns how long the failure is now cached.
        A failure recurring soon after the last one doubles the time, up to five minutes."""
        if not self.enabled:
            return 0.0
        failures = self._failures
        previous = failures.pop(key, None)
        backoff = self.config.failure_ttl
        if previous is not None:
            until, last, _ = previous
            if now < until + last * FAILURE_FORGET:
                backoff = min(last * 2, MAX_FAILURE_TTL)
        backoff = min(backoff, MAX_FAILURE_TTL)
        if backoff <= 0:
            return 0.0
        failures[key] = (now + backoff, backoff, ede)
        self._named(key[0])
        while len(failures) > MAX_FAILURES:
            failures.popitem(last=False)
        return backoff

    def answerable(self, key: CacheKey, now: float) -> bool:
        """Whether `lookup` or `failure` finds something for `key` (an answer, fresh or stale,
        or a cached failure), counted as `lookup` counts: the pipeline's question before it
        sheds a flood's query. A flood's name is in neither segment, and then this is a few
        dict probes in one call instead of `lookup`, two `_get`s and `failure`."""
        if key[0] not in self._names:
            self.misses += 1
            return False
        protected, probation = self._protected, self._probation
        if key in protected or key in probation or (
            self._nxdomains
            and ((nx := (key[0], NXDOMAIN_TYPE, key[2], key[3], key[4])) in protected
                 or nx in probation)
        ):  # fmt: skip
            return self.lookup(key, now) is not None or self.failure(key, now) is not None
        self.misses += 1
        found = self._failures.get(key)
        return found is not None and now < found[0]

    def failure(self, key: CacheKey, now: float) -> int | None:
        """The EDE of a failure still cached for `key`, or None."""
        found = self._failures.get(key)
        if found is None or now >= found[0]:
            return None
        return found[2]

    def _named(self, name: bytes) -> None:
        """Add the name of an entry just kept to `_names`. Names whose last entry went are left
        in it (every way out would have to mind it), so it is rebuilt from the entries when it
        holds twice as many as they do: amortized, one set insert per store."""
        names = self._names
        names.add(name)
        kept = len(self._probation) + len(self._protected) + len(self._failures)
        if len(names) > 2 * kept + 64:
            names = {key[0] for key in self._probation}
            names.update(key[0] for key in self._protected)
            names.update(key[0] for key in self._failures)
            self._names = names

    def _discard(self, value: CachedAnswer | StoredAnswer) -> None:
        if isinstance(value, tuple):
            del self._probation[value[_KEY]]
        elif value.protected:
            del self._protected[value.key]
            self._protected_size -= value.size
        else:
            del self._probation[value.key]
        self._forget(value)

    def _forget(self, value: CachedAnswer | StoredAnswer) -> None:
        """Take a value just gone from its segment out of the totals."""
        if isinstance(value, tuple):
            key, size = value[_KEY], value[_SIZE]
        else:
            key, size = value.key, value.size
        self.bytes -= size
        if key[1] == NXDOMAIN_TYPE:
            self._nxdomains -= 1

    def _shrink(self) -> None:
        config = self.config
        while len(self) > config.max_entries or self.bytes > config.max_bytes:
            victims = self._probation if self._probation else self._protected
            _, value = victims.popitem(last=False)
            if type(value) is CachedAnswer and value.protected:
                self._protected_size -= value.size
            self._forget(value)
            self.evictions += 1


def _patch(
    data: bytes, offsets: tuple[int, ...], ttls: tuple[int, ...], age: int, stale: int
) -> bytes:
    """`data` with each TTL at `offsets` reduced by `age` seconds (never below 0), or set to
    `stale` when serving a stale answer."""
    if not offsets:
        return data
    out = bytearray(data)
    pack = _TTL.pack_into
    if age == _STALE:
        for offset in offsets:
            pack(out, offset, stale)
    elif age > 0:
        for offset, ttl in zip(offsets, ttls, strict=True):
            pack(out, offset, ttl - age if ttl > age else 0)
    else:
        return data
    return bytes(out)


MemoKey = tuple[object, ...]
"""(the query after its ID, client, over UDP, device id): everything the answer depends on. Of
any length to mypy: compiled, a fixed-length tuple is kept unboxed, and boxed anew for each
dict and set that uses it (three times a first-sight block)."""


class AnswerMemo:
    """Complete answers the pipeline made without an upstream (blocks, cache hits), by the exact
    query bytes after the ID, the client, the transport and the device id.

    Why: a client asks the same blocked or popular name again and again, and everything between
    its bytes and our answer (parse, access control, group, policy, cache lookup, answer
    building) is a pure function of those bytes, the client, the state and the time. Within one
    state (a reload makes a new memo) and before `until`, the next instant at which a policy
    window opens or closes (or fail-closed groups change), a repeat is the stored answer after
    the query's own ID. The key holds every byte after the ID, so flags (RD, CD, AD), the
    question's letter case and type, EDNS (DO, UDP size) all select their own answer; the
    transport sets the size limit and the device id the group. A clock set back before `since`
    forgets them too.

    The pipeline stores what it needs to replay a hit's side effects (metrics, audit, cache
    bookkeeping) in the entry's other fields; this class only keeps them, bounded
    (`ANSWER_MEMO_LIMIT`, forgotten all at once when full, like the policy's memos) and only
    while `now` stays in [since, until). Pure: `now` (Unix seconds, the policy's clock) is
    passed in.
    """

    __slots__ = ("answers", "limit", "sighted", "since", "until")

    def __init__(self, limit: int = ANSWER_MEMO_LIMIT) -> None:
        # Public, with `since` and `until`: the pipeline reads and fills it inline on its hot
        # path, where a method call costs more than the lookup (`get` and `put` say how).
        self.answers: dict[MemoKey, tuple[Any, ...]] = {}
        self.limit = limit
        # Hashes of keys answered once: an answer is kept only when its key comes again. A
        # stream of names each asked once (a sweep of a blocklist, a flood) would otherwise
        # keep thousands of objects alive for a moment each, and the garbage collector's extra
        # passes over them cost the p99 (0.4 ms without the memo, 1.1 ms with it, at 5,000
        # blocked names a second that never repeat). Ints are not tracked by the collector.
        self.sighted: set[int] = set()
        self.since = math.inf
        self.until = -math.inf

    def __len__(self) -> int:
        return len(self.answers)

    def holds(self, now: float) -> bool:
        """Whether the answers kept may be served at `now` (within their span)."""
        return self.since <= now < self.until

    def get(self, key: MemoKey, now: float) -> tuple[Any, ...] | None:
        """The entry stored for `key`, or None; none is served once `now` leaves the span
        [since, until) in which they were made (a window's edge, a clock set back)."""
        if not self.since <= now < self.until:
            return None
        return self.answers.get(key)

    def put(self, key: MemoKey, entry: tuple[Any, ...], now: float, since: float,
            until: float) -> None:  # fmt: skip
        """Keep `entry` for `key`, made at `now` from decisions that hold in [since, until);
        outside the span of those kept, they are forgotten first. Whether to keep it at all is
        the caller's `second_sight`."""
        answers = self.answers
        if not self.since <= now < self.until:
            self.restart(since, until)
        else:
            self.since, self.until = max(self.since, since), min(self.until, until)
        if len(answers) >= self.limit:
            answers.clear()
        answers[key] = entry

    def second_sight(self, key: MemoKey) -> bool:
        """Whether `key` was answered before (since `sighted` was last emptied); if not, it is
        noted, so the next time it is."""
        sighted = self.sighted
        before = len(sighted)
        sighted.add(hash(key))  # (one set operation: it was there if the set did not grow)
        if len(sighted) == before:
            return True
        if before >= SIGHTED_LIMIT:
            sighted.clear()
            sighted.add(hash(key))
        return False

    def restart(self, since: float, until: float) -> None:
        """Forget every answer; those kept next hold in [since, until)."""
        self.answers.clear()
        self.since, self.until = since, until

    def forget(self, key: MemoKey) -> None:
        self.answers.pop(key, None)

    def clear(self) -> None:
        self.restart(math.inf, -math.inf)
