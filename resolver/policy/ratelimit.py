"""Rate limits per client prefix and per zone: who may make us work, and how fast.

A flood from one device (malware, a stuck app, a random-subdomain attack on someone else's
zone) must not starve the other clients, nor the flooding address's own other queries (several
devices behind one NAT address, or the infected device's own browser): what is limited is the
work a query costs, not the packet. Budgets, each a token bucket kept as GCRA (one float per
bucket: the instant it is due full again), so a check is one dict lookup and a few float
operations:

- `admits(client, now)`: every query of the client's prefix (/32 and /56 by default), checked
  before the packet is parsed. Off by default (`rate: 0`): a cache hit or a policy answer costs
  less than shedding it would save, and a ceiling low enough to matter would shed the flooding
  address's cached names too. An operator who would rather cut a device off sets it.
- `admits_upstream(client, qname, now)`: each name the cache cannot answer, in three budgets,
  charged only when all three admit it (so a name shed by one costs the others nothing):
  the client prefix and the name's registrable zone together (`CLIENT_ZONE`), so a flood of
  `<random>.victim.example` from one address is shed while the same address's names in other
  zones still go upstream; the zone from all clients together (`ZONE`), but only while it is
  *suspect*: most of its recent upstream answers were NXDOMAIN or failures (`answered`), the
  signature of random-subdomain ("water torture") floods, which may come from many clients at
  once (a busy legitimate zone, a CDN, answers NOERROR and is never limited so); and the client
  prefix over all zones (`UPSTREAM`). Cache hits cost nothing and do not count.

Memory is bounded: at most `max_clients` client entries, `MAX_ZONES` zones and
`MAX_CLIENT_ZONES` client-and-zone buckets, the last created only for names admitted upstream
(so a flood of random zones cannot fill the table faster than its client budget). A bucket that
is full again behaves exactly like a new one, so a table is swept of full buckets when it fills;
only if most are still in use is the oldest half forgotten (a flooder so forgotten gains one
burst). Pure: `now` is passed in, in monotonic seconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from itertools import islice
from typing import Final

from resolver.config import RateLimitConfig
from resolver.policy.access import client_address

QUERIES: Final = "queries"
UPSTREAM: Final = "upstream"
ZONE: Final = "zone"
CLIENT_ZONE: Final = "client_zone"
LIMITS: Final = (QUERIES, UPSTREAM, ZONE, CLIENT_ZONE)
"""The `limit` label: which budget a query exceeded."""
LIMIT_INDEX: Final = {limit: index for index, limit in enumerate(LIMITS)}
"""Where each limit's counts are in `ClientEntry.unreported` and `report_at`."""

MAX_ZONES = 16384
MAX_CLIENT_ZONES = 65536
REPORT_INTERVAL = 0.1
"""Seconds between audit calls for queries one client prefix has shed (`ClientEntry`)."""
WINDOW = 1.0
"""Seconds per window over which a zone's upstream answers are counted."""
SHED_MEMORY = 1.0
"""Seconds after a name of a client was refused upstream during which its next names are
checked early, before the policy (`refuses_upstream`), so a flood is shed at the cost of a
parse and a cache lookup."""
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

    def empty(self, now: float) -> bool:
        """Whether `take` would refuse now (nothing is charged)."""
        return self.due - now > self.slack

    def charge(self, now: float) -> None:
        """`take` without the check: the caller asked `empty` already."""
        self.due = (self.due if self.due > now else now) + self.interval


class ClientEntry:
    """The budgets of one client prefix, shared by every address in it."""

    __slots__ = ("exempt", "group", "queries", "refused", "report_at", "serial", "shed_until",
                 "unreported", "upstream", "zone_burst", "zone_rate")  # fmt: skip

    def __init__(
        self,
        group: str,
        queries: Bucket,
        upstream: Bucket,
        exempt: bool,
        serial: int = 0,
        zone_rate: float = 0.0,
        zone_burst: int = 1,
    ) -> None:
        self.group = group
        self.queries = queries
        self.upstream = upstream
        self.exempt = exempt
        # Its group's client-and-zone budget (0: none), for each zone's bucket when first made.
        self.zone_rate = zone_rate
        self.zone_burst = zone_burst
        self.serial = serial  # keys its client-and-zone buckets (an id() could be reused)
        self.shed_until = -math.inf  # a name of it was refused upstream less than SHED_MEMORY ago
        self.refused = UPSTREAM  # the limit `RateLimiter.refusing` last found it over
        # Per limit (`LIMITS` order): queries shed since the last audit call for this prefix,
        # and when the next may be made: a flood costs the audit trail a call per
        # `REPORT_INTERVAL`, not one per packet.
        self.unreported = [0] * len(LIMITS)
        self.report_at = [-math.inf] * len(LIMITS)

    def report_due(self, limit: str, now: float) -> int:
        """-1 while audit calls for `limit` are held back (this shed counted for later); else
        the sheds held back since the last call, which is to be made now."""
        index = LIMIT_INDEX[limit]
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
    third = second = last = -1  # where the last three labels start
    pos = 0
    length = qname[0]
    while length:
        third, second, last = second, last, pos
        pos += 1 + length
        length = qname[pos]
    if third < 0:
        return qname
    tld = qname[last + 1 : pos]
    if len(tld) == 2 and qname[second + 1 : last] in _SECOND_LEVEL:
        return qname[third:]
    return qname[second:]


GroupOf = Callable[[str], str]


class RateLimiter:
    """The client and zone budgets of one configuration; outlives reloads that keep it."""

    def __init__(self, config: RateLimitConfig, group_of: GroupOf) -> None:
        self.config = config
        self.group_of = group_of
        self.gates = config.rate > 0 or any((g.rate or 0) > 0 for g in config.groups)
        """Whether `admits` can refuse anything: the step before parsing is skipped if not."""
        self.active = self.gates or config.upstream_rate > 0 or config.zone_rate > 0
        per_client_zone = config.client_zone_rate > 0 or any(
            (g.client_zone_rate or 0) > 0 for g in config.groups
        )
        self.active = self.active or per_client_zone
        if not self.active:
            self.active = any((g.upstream_rate or 0) > 0 for g in config.groups)
        self._clients: dict[str, ClientEntry] = {}
        self._prefixes: dict[tuple[int, int], ClientEntry] = {}
        self._zones: dict[bytes, ZoneEntry] = {}
        self._client_zones: dict[tuple[int, bytes], Bucket] = {}
        self.shed_until = -math.inf
        """Until when some client had a name refused upstream: before then, the query path asks
        `refuses_upstream` early (see it); after, it costs the path one comparison."""
        self._serials = itertools.count(1)
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
        config = self.config
        rate, burst, upstream_rate, upstream_burst = config.for_group(group)
        zone_rate, zone_burst = config.client_zone_for_group(group)
        queries, upstream = Bucket(rate, burst, now), Bucket(upstream_rate, upstream_burst, now)
        serial = next(self._serials)
        return ClientEntry(group, queries, upstream, False, serial, zone_rate, zone_burst)

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
        (`UPSTREAM`, `CLIENT_ZONE` or `ZONE`). Charged only when admitted by all."""
        entry = self._clients.get(client)
        if entry is None:
            entry = self._add(client, now)
        bucket = entry.upstream
        if bucket.due - now > bucket.slack:
            return self._refused(entry, UPSTREAM, now)
        per_client = entry.zone_rate > 0
        if not per_client and not self._zones:
            bucket.charge(now)
            return None
        zone_name = zone_of(qname)
        own = None
        if per_client:
            own = self._client_zones.get((entry.serial, zone_name))
            if own is not None and own.due - now > own.slack:
                return self._refused(entry, CLIENT_ZONE, now)
        zone = self._zones.get(zone_name)
        if zone is not None:
            self._roll(zone, now)
            if not zone.suspect:
                zone = None
            elif zone.bucket.empty(now):
                zone.denied += 1
                return self._refused(entry, ZONE, now)
            else:
                zone.bucket.charge(now)
        if per_client:
            if own is None:
                own = self._client_zone(entry, zone_name, now)
            own.charge(now)
        bucket.charge(now)
        return None

    def _refused(self, entry: ClientEntry, limit: str, now: float) -> str:
        entry.shed_until = self.shed_until = now + SHED_MEMORY
        return limit

    def refuses_upstream(self, client: str, qname: bytes, now: float) -> str | None:
        """What `admits_upstream` would refuse `qname` for, asked before the name is known to
        be uncached, charging nothing: None unless `client` had a name refused within
        `SHED_MEMORY` (check `shed_until` first: then this costs nothing for anyone)."""
        entry = self.refusing(client, zone_of(qname), now)
        return None if entry is None else entry.refused

    def refusing(self, client: str, zone_name: bytes, now: float) -> ClientEntry | None:
        """`refuses_upstream` for a name whose zone (`zone_of`) the caller read already: the
        client's entry, its `refused` the limit, when the name would be refused; else None.
        The entry is what the caller counts the shed by, so it costs no second lookup."""
        entry = self._clients.get(client)
        if entry is None or entry.shed_until <= now:
            return None
        bucket = entry.upstream
        if bucket.due - now > bucket.slack:
            entry.refused = UPSTREAM
            return entry
        if entry.zone_rate > 0:
            own = self._client_zones.get((entry.serial, zone_name))
            if own is not None and own.due - now > own.slack:
                entry.refused = CLIENT_ZONE
                return entry
        zone = self._zones.get(zone_name)
        if zone is not None:
            self._roll(zone, now)
            if zone.suspect and zone.bucket.empty(now):
                zone.denied += 1
                entry.refused = ZONE
                return entry
        return None

    def _client_zone(self, entry: ClientEntry, zone_name: bytes, now: float) -> Bucket:
        table = self._client_zones
        if len(table) >= MAX_CLIENT_ZONES:
            kept = {k: b for k, b in table.items() if b.due > now}
            if len(kept) >= MAX_CLIENT_ZONES * 3 // 4:
                kept = dict(islice(kept.items(), len(kept) // 2, None))
            self._client_zones = table = kept
        own = table[entry.serial, zone_name] = Bucket(entry.zone_rate, entry.zone_burst, now)
        return own

    @property
    def client_zones(self) -> int:
        return len(self._client_zones)

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
