"""Rate limits per client prefix and per zone: who may make us work, and how fast.

A flood from one device (malware, a stuck app, a random-subdomain attack on someone else's
zone) must not starve the other clients. Three budgets, each a token bucket kept as GCRA (one
float per bucket: the instant it is due full again), so a check is one dict lookup and a few
float operations:

- `admits(client, now)`: every query of the client's prefix (/32 and /56 by default); checked
  first on the query path, so a flood is shed before it is even parsed.
- `admits_upstream(client, qname, now)`: each name the cache cannot answer. A client that keeps
  asking names nobody asked before (`<random>.victim.example`) costs an upstream exchange each;
  its cache hits cost nothing and do not count.
- The same call also charges the name's registrable zone (`zone_of`), but only while the zone
  is *suspect*: most of its recent upstream answers were NXDOMAIN or failures (`answered`), the
  signature of random-subdomain ("water torture") floods, which may come from many clients at
  once. A busy legitimate zone (a CDN) answers NOERROR and is never limited.

Memory is bounded: at most `max_clients` client entries and `MAX_ZONES` zones. A bucket that is
full again behaves exactly like a new one, so the table is swept of full buckets when it fills;
only if most are still in use is the oldest half forgotten (a flooder so forgotten gains one
burst). Pure: `now` is passed in, in monotonic seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import islice
from typing import Final

from resolver.config import RateLimitConfig
from resolver.policy.access import client_address

QUERIES: Final = "queries"
UPSTREAM: Final = "upstream"
ZONE: Final = "zone"
LIMITS: Final = (QUERIES, UPSTREAM, ZONE)
"""The `limit` label: which budget a query exceeded."""
_LIMIT_INDEX: Final = {limit: index for index, limit in enumerate(LIMITS)}

MAX_ZONES = 16384
REPORT_INTERVAL = 0.1
"""Seconds between audit calls for queries one client prefix has shed (`ClientEntry`)."""
WINDOW = 1.0
"""Seconds per window over which a zone's upstream answers are counted."""
SUSPECT_SHARE = 0.5
"""A zone whose answers in a window are at least this share NXDOMAIN or failures, and at least
half its `zone_rate` of them, is limited in the next window (and while it is being limited)."""

_SECOND_LEVEL: Final = frozenset(
    b"ac co com edu gob gov govt gouv lg ltd mil ne net nhs nic or org plc sch".split()
)
"""Second-level labels under which country-code TLDs register names (co.uk, com.au, gov.br):
without a public-suffix list, the registrable zone of x.y.co.uk is y.co.uk, not co.uk."""


_ROUNDING = 1e-9
"""Added to a bucket's slack, so float rounding never denies a query exactly on time."""


class Bucket:
    """GCRA: `due` is when the bucket is full again; a query is admitted while `due` is at most
    `slack` ahead of now, and moves it `interval` later. Off: interval 0, slack infinite."""

    __slots__ = ("due", "interval", "slack")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.due = now
        if rate <= 0:
            self.interval = 0.0
            self.slack = math.inf
        else:
            self.interval = 1.0 / rate
            self.slack = (burst - 1) * self.interval + _ROUNDING

    def take(self, now: float) -> bool:
        due = self.due
        if due < now:
            due = now
        if due - now > self.slack:
            return False
        self.due = due + self.interval
        return True


class ClientEntry:
    """The budgets of one client prefix, shared by every address in it."""

    __slots__ = ("exempt", "group", "queries", "report_at", "unreported", "upstream")

    def __init__(self, group: str, queries: Bucket, upstream: Bucket, exempt: bool) -> None:
        self.group = group
        self.queries = queries
        self.upstream = upstream
        self.exempt = exempt
        # Per limit (`LIMITS` order): queries shed since the last audit call for this prefix,
        # and when the next may be made: a flood costs the audit trail a call per
        # `REPORT_INTERVAL`, not one per packet.
        self.unreported = [0, 0, 0]
        self.report_at = [-math.inf, -math.inf, -math.inf]

    def report_due(self, limit: str, now: float) -> int:
        """-1 while audit calls for `limit` are held back (this shed counted for later); else
        the sheds held back since the last call, which is to be made now."""
        index = _LIMIT_INDEX[limit]
        if now < self.report_at[index]:
            self.unreported[index] += 1
            return -1
        self.report_at[index] = now + REPORT_INTERVAL
        held = self.unreported[index]
        self.unreported[index] = 0
        return held

    def idle(self, now: float) -> bool:
        return self.queries.due <= now and self.upstream.due <= now


class ZoneEntry:
    """Upstream answers under one zone in the current window, and its bucket."""

    __slots__ = ("answers", "bucket", "denied", "failures", "suspect", "window")

    def __init__(self, bucket: Bucket, window: int) -> None:
        self.bucket = bucket
        self.window = window
        self.answers = 0
        self.failures = 0
        self.denied = 0
        self.suspect = False


def zone_of(qname: bytes) -> bytes:
    """The registrable zone of a lowercase wire name: its last two labels, or three under a
    country code's second level (`co.uk`); a name of one or two labels is its own zone."""
    starts: list[int] = []
    pos = 0
    while qname[pos]:
        starts.append(pos)
        pos += 1 + qname[pos]
    if len(starts) <= 2:
        return qname
    tld = qname[starts[-1] + 1 : pos]
    second = qname[starts[-2] + 1 : starts[-1]]
    if len(tld) == 2 and second in _SECOND_LEVEL:
        return qname[starts[-3] :]
    return qname[starts[-2] :]


GroupOf = Callable[[str], str]


class RateLimiter:
    """The client and zone budgets of one configuration; outlives reloads that keep it."""

    def __init__(self, config: RateLimitConfig, group_of: GroupOf) -> None:
        self.config = config
        self.group_of = group_of
        self.active = config.rate > 0 or config.upstream_rate > 0 or config.zone_rate > 0
        if not self.active:
            self.active = any(
                (g.rate or 0) > 0 or (g.upstream_rate or 0) > 0 for g in config.groups
            )
        self._clients: dict[str, ClientEntry] = {}
        self._prefixes: dict[tuple[int, int], ClientEntry] = {}
        self._zones: dict[bytes, ZoneEntry] = {}
        self._exempt = config.exempt
        self._zone_floor = max(config.zone_rate * SUSPECT_SHARE, 1.0)

    # --- clients -----------------------------------------------------------------------------

    def admits(self, client: str, now: float) -> bool:
        """Whether the client's prefix may have one more query answered now."""
        entry = self._clients.get(client)
        if entry is None:
            entry = self._add(client, now)
        bucket = entry.queries
        due = bucket.due
        if due < now:
            due = now
        if due - now > bucket.slack:
            return False
        bucket.due = due + bucket.interval
        return True

    def entry(self, client: str, now: float) -> ClientEntry:
        entry = self._clients.get(client)
        return entry if entry is not None else self._add(client, now)

    def group(self, client: str, now: float) -> str:
        """The client's group, as its counters are labelled."""
        return self.entry(client, now).group

    def exempt(self, client: str, now: float) -> bool:
        return self.entry(client, now).exempt

    def prefix_key(self, client: str) -> tuple[int, int] | None:
        """(IP version, prefix as an int) of `client`; None for anything not an address."""
        address = client_address(client)
        if address is None:
            return None
        config = self.config
        length = config.ipv4_prefix if address.version == 4 else config.ipv6_prefix
        shift = address.max_prefixlen - length
        return address.version, int(address) >> shift << shift

    def _add(self, client: str, now: float) -> ClientEntry:
        if len(self._clients) >= self.config.max_clients:
            self._sweep(now)
        key = self.prefix_key(client)
        entry = self._prefixes.get(key) if key is not None else None
        if entry is None:
            entry = self._new_entry(client, now)
            if key is not None:
                self._prefixes[key] = entry
        self._clients[client] = entry
        return entry

    def _new_entry(self, client: str, now: float) -> ClientEntry:
        group = self.group_of(client)
        address = client_address(client)
        exempt = address is not None and any(address in net for net in self._exempt)
        if exempt:
            return ClientEntry(group, Bucket(0, 1, now), Bucket(0, 1, now), True)
        rate, burst, upstream_rate, upstream_burst = self.config.for_group(group)
        return ClientEntry(
            group, Bucket(rate, burst, now), Bucket(upstream_rate, upstream_burst, now), False
        )

    def _sweep(self, now: float) -> None:
        """Forget full buckets (no loss: a new one is the same); if most are in use, the oldest
        half too."""
        clients = {c: e for c, e in self._clients.items() if not e.idle(now)}
        limit = self.config.max_clients
        if len(clients) >= limit * 3 // 4:
            clients = dict(islice(clients.items(), len(clients) // 2, None))
        self._clients = clients
        live = {id(e) for e in clients.values()}
        self._prefixes = {k: e for k, e in self._prefixes.items() if id(e) in live}

    @property
    def clients(self) -> int:
        return len(self._clients)

    # --- upstream: names the cache could not answer -------------------------------------------

    def admits_upstream(self, client: str, qname: bytes, now: float) -> str | None:
        """None when `client` may send `qname` upstream now, else the limit it exceeds
        (`UPSTREAM` or `ZONE`). Charged only when admitted by both."""
        entry = self._clients.get(client)
        if entry is None:
            entry = self._add(client, now)
        bucket = entry.upstream
        due = bucket.due if bucket.due > now else now
        if due - now > bucket.slack:
            return UPSTREAM
        if self._zones:
            zone = self._zones.get(zone_of(qname))
            if zone is not None:
                self._roll(zone, now)
                if zone.suspect and not zone.bucket.take(now):
                    zone.denied += 1
                    return ZONE
        bucket.due = due + bucket.interval
        return None

    def answered(self, qname: bytes, failed: bool, now: float) -> None:
        """One upstream exchange for `qname` ended: an answer (`failed` when NXDOMAIN) or a
        failure (SERVFAIL, timeout: also `failed`). Once per exchange, not per client."""
        if self.config.zone_rate <= 0:
            return
        name = zone_of(qname)
        zones = self._zones
        zone = zones.get(name)
        if zone is None:
            if len(zones) >= MAX_ZONES:
                self._sweep_zones(now)
            zone = zones[name] = ZoneEntry(
                Bucket(self.config.zone_rate, self.config.zone_burst, now), int(now / WINDOW)
            )
        else:
            self._roll(zone, now)
        zone.answers += 1
        if failed:
            zone.failures += 1
            if not zone.suspect and self._heavy(zone):
                zone.suspect = True

    def suspect_zones(self) -> int:
        return sum(1 for zone in self._zones.values() if zone.suspect)

    def _heavy(self, zone: ZoneEntry) -> bool:
        return (
            zone.failures >= self._zone_floor and zone.failures >= zone.answers * SUSPECT_SHARE
        )

    def _roll(self, zone: ZoneEntry, now: float) -> None:
        """Start a new window: a zone stays suspect while the last window was heavy or still
        had names refused (else limiting it would make it look healthy)."""
        window = int(now / WINDOW)
        if window == zone.window:
            return
        recent = window == zone.window + 1
        zone.suspect = recent and (self._heavy(zone) or zone.denied > 0)
        zone.window = window
        zone.answers = zone.failures = zone.denied = 0

    def _sweep_zones(self, now: float) -> None:
        window = int(now / WINDOW)
        kept = {k: z for k, z in self._zones.items() if z.suspect or z.window >= window - 1}
        if len(kept) >= MAX_ZONES * 3 // 4:
            kept = {k: z for k, z in kept.items() if z.suspect}
        self._zones = kept

