"""Prometheus export: read `Stats` and a snapshot of the service when scraped, never before.

The query path only increments plain dicts in `resolver.observe.stats`; this collector turns them
into metric families at scrape time, so exporting costs nothing per query. It has a registry of its
own (the global one would also collect whatever else the process imported).

Every label value comes from a bounded set: results, query types and rcodes are fixed lists in
`resolver.observe.stats`; group, policy, list, answer and upstream names come from the
configuration. No client address or query name is ever a label: per-client detail belongs in the
audit log, where its retention is controlled.

`FAMILIES` is the catalogue of everything this module can export, so tests can check alert rules,
the dashboard and the documentation against it. Every family is emitted on every scrape, with no
samples when there is nothing to report, so its name is always visible on /metrics.

`ServiceSnapshot` is the one value for what the running service knows beyond `Stats`: a single
process builds it at each scrape; a worker builds it once a second and sends it to the supervisor,
which merges its workers' snapshots into one and exports that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from resolver.observe.stats import RESULTS, Histogram, Stats

PREFIX: Final = "dnswarden_"
NONE_LABEL: Final = "none"
"""Exported for an empty label value: Prometheus treats `label=""` as no label at all."""

Kind = Literal["counter", "gauge", "histogram"]


ENCRYPTED_TRANSPORTS: Final = ("dot", "doh")
"""The `transport` label of the encrypted listeners' series (both always exported)."""

CACHE_KEYS: Final = ("entries", "bytes", "hits", "misses", "evictions")
"""What `ServiceSnapshot.cache` holds (`Cache.stats()`), each exported as `cache_<key>`."""


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """What the running service knows that `Stats` does not, at one instant; a plain value, so
    it crosses the report pipe from a worker to the supervisor as it is."""

    upstream_health: Mapping[str, bool] = field(default_factory=dict)  # upstream label -> up
    tcp_connections_open: int = 0
    connections_open: Mapping[str, int] = field(default_factory=dict)  # DoT/DoH, by transport
    certificate_expiry: Mapping[str, float] = field(default_factory=dict)  # transport -> notAfter
    list_sizes: Mapping[str, int] = field(default_factory=dict)  # domain rules per list
    list_last_refresh: Mapping[str, float] = field(default_factory=dict)  # unix time, last load
    list_refresh_failures: Mapping[str, int] = field(default_factory=dict)
    lists_missing: Mapping[str, bool] = field(default_factory=dict)  # list -> not loaded
    lists_refused: Mapping[str, bool] = field(default_factory=dict)  # newest version refused
    policies: tuple[tuple[str, bool, float | None], ...] = ()  # name, active now, until
    group_blocked_rules: Mapping[str, int] = field(default_factory=dict)  # rules in force now
    cache: Mapping[str, int] | None = None  # `CACHE_KEYS`; None without a cache
    audit_events_dropped: int = 0
    audit_file_errors: int = 0
    rate_limit_clients: int = 0  # client entries in the rate limiter's table
    rate_limit_suspect_zones: int = 0  # zones limited as random-subdomain targets now
    udp_receive_buffer: tuple[int, int] = (0, 0)  # bytes: configured, smallest granted
    build: Mapping[str, str] = field(default_factory=dict)  # version, python, loop
    ready: bool = False
    # RPZ zones by transfer: list -> serial, last_transfer, failures, transfers.<kind>
    rpz_zones: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # RPZ rules a forwarder cannot apply, skipped at load: list -> trigger -> rules
    rpz_skipped: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    outputs: Mapping[str, int] = field(default_factory=dict)  # dnstap/syslog: "<out>.<outcome>"

    @classmethod
    def merge(cls, snapshots: Sequence[ServiceSnapshot]) -> ServiceSnapshot:
        """The workers' snapshots as one: counts added up, an upstream up if any worker finds it
        so, ready when all are; lists, policies and build are the same in every worker (one
        config), so the first one's stand for all. An empty snapshot when there is none."""
        if not snapshots:
            return cls()
        first = snapshots[0]
        health: dict[str, bool] = {}
        for snapshot in snapshots:
            for name, up in snapshot.upstream_health.items():
                health[name] = health.get(name, False) or up
        caches = [s.cache for s in snapshots if s.cache]
        cache = {key: sum(c.get(key, 0) for c in caches) for key in caches[0]} if caches else None
        return cls(
            upstream_health=health,
            tcp_connections_open=sum(s.tcp_connections_open for s in snapshots),
            connections_open={
                name: sum(s.connections_open.get(name, 0) for s in snapshots)
                for name in sorted({n for s in snapshots for n in s.connections_open})
            },
            certificate_expiry=_earliest(s.certificate_expiry for s in snapshots),
            list_sizes=first.list_sizes,
            list_last_refresh=first.list_last_refresh,
            list_refresh_failures=first.list_refresh_failures,
            lists_missing=first.lists_missing,
            lists_refused=first.lists_refused,
            policies=first.policies,
            group_blocked_rules=first.group_blocked_rules,
            cache=cache,
            audit_events_dropped=sum(s.audit_events_dropped for s in snapshots),
            audit_file_errors=sum(s.audit_file_errors for s in snapshots),
            rate_limit_clients=sum(s.rate_limit_clients for s in snapshots),
            rate_limit_suspect_zones=sum(s.rate_limit_suspect_zones for s in snapshots),
            udp_receive_buffer=_smallest_buffer(snapshots),
            build=first.build,
            ready=all(s.ready for s in snapshots),
            rpz_zones=_merged_zones(snapshots),
            rpz_skipped=first.rpz_skipped,
            outputs=_summed(s.outputs for s in snapshots),
        )


def _smallest_buffer(snapshots: Sequence[ServiceSnapshot]) -> tuple[int, int]:
    """The receive buffer of the worker granted least, of those that bound their sockets."""
    bound = [s.udp_receive_buffer for s in snapshots if s.udp_receive_buffer[1]]
    return min(bound, key=lambda buffer: buffer[1]) if bound else snapshots[0].udp_receive_buffer


def _merged_zones(snapshots: Sequence[ServiceSnapshot]) -> dict[str, dict[str, float]]:
    """Each zone as the workers saw it: the newest serial and transfer, failures and transfers
    added up (each worker counts the transfers it made)."""
    merged: dict[str, dict[str, float]] = {}
    for snapshot in snapshots:
        for name, values in snapshot.rpz_zones.items():
            into = merged.setdefault(name, {})
            for key, value in values.items():
                if key in ("serial", "last_transfer", "expired"):
                    into[key] = max(into.get(key, value), value)
                else:
                    into[key] = into.get(key, 0.0) + value
    return merged


def _earliest(expiries: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each listener's certificate expiry over the workers: the soonest, since a worker whose
    reload failed still serves the older certificate."""
    soonest: dict[str, float] = {}
    for one in expiries:
        for name, when in one.items():
            soonest[name] = min(soonest.get(name, when), when)
    return soonest


def _summed(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric: `name` is the family name (a counter's samples add `_total`)."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str


def _f(name: str, kind: Kind, labels: tuple[str, ...], help: str) -> Family:
    return Family(PREFIX + name, kind, labels, help)


FAMILIES: Final = {
    f.name: f
    for f in (
        _f("queries", "counter", ("protocol", "qtype", "result"),
           "Queries answered (or dropped) by protocol, query type and result."),
        _f("blocked", "counter", ("group", "policy", "entry", "answer"),
           "Blocked queries by client group, policy (none: blocking.lists or the group's own "
           "lists), catalogue entry or list, and answer mode."),
        _f("responses", "counter", ("rcode",), "Responses sent, by response code."),
        _f("request_duration_seconds", "histogram", ("result",),
           "Time from receiving a query to having its answer, by result."),
        _f("upstream_queries", "counter", ("upstream", "outcome"),
           "Exchanges with each upstream, by outcome (ok, timeout, servfail, refused, "
           "bad_reply, error)."),
        _f("upstream_duration_seconds", "histogram", ("upstream",),
           "Time an upstream took to give a usable answer."),
        _f("upstream_up", "gauge", ("upstream",),
           "1 while the upstream is considered healthy, 0 after repeated failures."),
        _f("upstream_mismatched_replies", "counter", (),
           "Upstream replies ignored because address, ID, QR bit or question did not match."),
        _f("upstream_merged_queries", "counter", (),
           "Queries that shared an identical query already in flight upstream."),
        _f("upstream_tcp_retries", "counter", (),
           "Truncated upstream replies retried over TCP."),
        _f("upstream_receive_errors", "counter", (),
           "Errors reading an upstream UDP socket (ignored, the query keeps waiting)."),
        _f("cache_entries", "gauge", (), "Answers held in the cache."),
        _f("cache_bytes", "gauge", (), "Bytes held by cached answers."),
        _f("cache_hits", "counter", (), "Queries answered from the cache."),
        _f("cache_misses", "counter", (), "Cache lookups that found nothing usable."),
        _f("cache_evictions", "counter", (), "Cached answers evicted to stay within the size cap."),
        _f("list_entries", "gauge", ("list",), "Domain rules loaded from each block list."),
        _f("list_last_refresh_timestamp_seconds", "gauge", ("list",),
           "Unix time of the last successful load of each list."),
        _f("list_refresh_failures", "counter", ("list",),
           "Failed attempts to load or refresh each list."),
        _f("lists_missing", "gauge", ("list",),
           "1 while a configured list has no loaded copy (a feed never fetched, or a refused "
           "version with no good one to keep), else 0."),
        _f("list_rejected", "counter", ("list",),
           "New versions of each list refused by the list guard (an error page, binary data, "
           "mostly invalid lines, a rule for a whole TLD, emptied or shrunk beyond "
           "max_shrink); the last good version stayed in force."),
        _f("list_refused", "gauge", ("list",),
           "1 while the newest version of the list (its files, or a feed's last download) is "
           "refused and an older one, or none, is in force; else 0."),
        _f("rpz_zone_serial", "gauge", ("list",),
           "SOA serial of the copy in force of each RPZ zone taken by zone transfer."),
        _f("rpz_zone_last_transfer_timestamp_seconds", "gauge", ("list",),
           "Unix time of the transfer that brought each RPZ zone's copy in force."),
        _f("rpz_zone_transfers", "counter", ("list", "type"),
           "Zone transfers that brought changes, by type (axfr, ixfr)."),
        _f("rpz_zone_expired", "gauge", ("list",),
           "1 while the copy of an RPZ zone has not been confirmed by a primary for its SOA "
           "EXPIRE time (its rules stay in force unless on_expire: missing); else 0."),
        _f("rpz_zone_transfer_failures", "counter", ("list",),
           "Failed checks of each RPZ zone: no primary answered, TSIG refused, or the new "
           "version was refused as broken or shrunk (the last good copy stays in force)."),
        _f("rpz_rules_skipped", "gauge", ("list", "trigger"),
           "RPZ rules of each list skipped at its last load because a forwarder cannot apply "
           "them, by trigger (rpz-nsdname, rpz-nsip)."),
        _f("notifies", "counter", ("result",),
           "NOTIFY messages received: accepted (from a listed primary, for its zone), refused, "
           "malformed."),
        _f("dnstap_frames", "counter", ("outcome",),
           "dnstap frames: sent, dropped (queue full or no reader), by outcome."),
        _f("syslog_messages", "counter", ("outcome",),
           "Audit events sent to syslog, and dropped (queue full or no receiver), by outcome."),
        _f("policy_active", "gauge", ("policy",),
           "1 while the policy's validity window contains now, else 0."),
        _f("policy_until_timestamp_seconds", "gauge", ("policy",),
           "Unix time at which the policy lapses (only policies with an end)."),
        _f("group_blocked_rules", "gauge", ("group",),
           "Rules of the lists in force now for each client group (its policies in their "
           "window, its own lists, blocking.lists), before exemptions; 0: nothing is blocked "
           "for the group. Recomputed at each policy window's edge and on reload."),
        _f("reloads", "counter", ("result",), "Configuration reloads (SIGHUP), by result."),
        _f("malformed_packets", "counter", ("reason",),
           "Packets that failed to parse, by reason."),
        _f("tcp_connections_open", "gauge", (), "Client TCP connections open now."),
        _f("tcp_connections", "counter", ("event",),
           "Client TCP connection events: accepted, rejected (over the cap), rejected_client "
           "(over the cap per client prefix), idle_closed, stalled (cut off mid-message), "
           "pipeline_full (reading paused: as many queries in flight as the per-connection "
           "cap)."),
        _f("connections_open", "gauge", ("transport",),
           "Encrypted client connections open now, by transport (dot, doh)."),
        _f("encrypted_connections", "counter", ("transport", "event"),
           "Encrypted client connection events: accepted, rejected (over "
           "encrypted.max_connections), idle_closed, stalled (cut off mid-message), http_error "
           "(a malformed HTTP/1.1 or HTTP/2 stream)."),
        _f("tls_handshake_failures", "counter", ("transport", "reason"),
           "TLS handshakes that failed, by reason: timeout, not_tls, protocol_version, "
           "no_shared_cipher, certificate_rejected (the client refused our certificate), "
           "closed, proxy_header, other."),
        _f("tls_certificate_expiry_timestamp_seconds", "gauge", ("transport",),
           "Unix time at which the certificate each encrypted listener serves expires "
           "(notAfter), read when it was loaded: at start and on each successful reload."),
        _f("tls_certificate_reloads", "counter", ("result",),
           "Certificate re-reads on reload (SIGHUP), by result; on failure the running "
           "certificate stays in service."),
        _f("doh_responses", "counter", ("status",),
           "DNS-over-HTTPS responses by HTTP status (200, 400, 404, 405, 413, 415, ...)."),
        _f("udp_errors", "counter", ("event",),
           "UDP socket errors on the listeners: send_error, receive_error."),
        _f("dropped", "counter", ("reason",),
           "Queries dropped without an answer, by reason (overload: too many in flight)."),
        _f("rate_limited", "counter", ("group", "limit", "action"),
           "Queries over a rate limit, by client group, limit (queries: all of a client's; "
           "upstream: its names the cache could not answer; zone: names under a zone flooded "
           "with random subdomains) and action (drop, refuse)."),
        _f("rate_limit_clients", "gauge", (),
           "Client prefixes the rate limiter holds buckets for (bounded by "
           "rate_limit.max_clients)."),
        _f("udp_receive_buffer_bytes", "gauge", ("buffer",),
           "Kernel receive buffer of each UDP queue: configured (limits.udp_receive_buffer) "
           "and granted (the smallest any queue got; below configured when net.core.rmem_max "
           "caps it, and then a flood's bursts overflow sooner)."),
        _f("rate_limit_suspect_zones", "gauge", (),
           "Zones whose uncached names are limited now: most of their upstream answers were "
           "NXDOMAIN or failures (random-subdomain floods)."),
        _f("internal_errors", "counter", (),
           "Bugs caught around one query (each cost that query its answer) or in a "
           "background watcher (it carries on)."),
        _f("events", "counter", ("event",), "Other counted events, by name."),
        _f("audit_events_dropped", "counter", (),
           "Audit events not written because they came faster than "
           "audit.max_events_per_second."),
        _f("audit_file_errors", "counter", (),
           "Audit events that could not be written to audit.file (full disk, ...); stdout "
           "still had them."),
        _f("gc_pause_seconds", "histogram", ("generation",),
           "Pauses of the cyclic garbage collector, by generation (0 the youngest): every "
           "query waits through them."),
        _f("build_info", "gauge", ("version", "python", "loop"),
           "Always 1; the labels name the running version, Python and event loop."),
    )
}

# Free-form `Stats.count` keys: prefix -> family (the rest of the key is the one label value),
# and whole keys -> (family, label values). Anything else is exported under `events`.
_PREFIXED: Final = {
    "malformed.": "malformed_packets",
    "tcp.": "tcp_connections",
    "udp.": "udp_errors",
    "dropped.": "dropped",
    "list_rejected.": "list_rejected",
    "doh_response.": "doh_responses",
    "notify.": "notifies",
}
_EXACT: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "reload.ok": ("reloads", ("success",)),
    "reload.failed": ("reloads", ("failure",)),
    "internal_error": ("internal_errors", ()),
    "upstream.mismatch": ("upstream_mismatched_replies", ()),
    "upstream.merged": ("upstream_merged_queries", ()),
    "upstream.tcp_retry": ("upstream_tcp_retries", ()),
    "upstream.receive_error": ("upstream_receive_errors", ()),
    "tls_reload.ok": ("tls_certificate_reloads", ("success",)),
    "tls_reload.failed": ("tls_certificate_reloads", ("failure",)),
}
# Series present from the first scrape, so `rate()` and ratios in alerts never see a gap.
_ALWAYS: Final = (
    "reload.ok", "reload.failed", "internal_error", "upstream.mismatch", "upstream.merged",
    "upstream.tcp_retry", "upstream.receive_error", "tcp.accepted", "tcp.rejected",
    "tcp.idle_closed", "tcp.stalled", "tcp.rejected_client", "tcp.pipeline_full",
    "udp.send_error", "udp.receive_error", "dropped.overload",
    "dot.accepted", "dot.rejected", "doh.accepted", "doh.rejected", "tls_failed.dot.timeout",
    "tls_failed.doh.timeout", "doh_response.200", "tls_reload.ok", "tls_reload.failed",
)  # fmt: skip


def _label(value: str) -> str:
    return value or NONE_LABEL


class _Families:
    """The families of one scrape, built empty from the catalogue and filled by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        for family in FAMILIES.values():
            base = family.name
            labels = list(family.labels)
            metric: Metric
            if family.kind == "counter":
                metric = CounterMetricFamily(base, family.help, labels=labels)
            elif family.kind == "gauge":
                metric = GaugeMetricFamily(base, family.help, labels=labels)
            else:
                metric = HistogramMetricFamily(base, family.help, labels=labels)
            self.metrics[base[len(PREFIX) :]] = metric

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        self.metrics[name].add_metric(list(labels), value)  # type: ignore[attr-defined]

    def histogram(self, name: str, labels: Sequence[str], histogram: Histogram) -> None:
        buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
        metric = self.metrics[name]
        metric.add_metric(list(labels), buckets, histogram.total)  # type: ignore[attr-defined]


class StatsCollector:
    """The prometheus_client custom collector: everything is read inside `collect`."""

    def __init__(self, stats: Stats, snapshot: Callable[[], ServiceSnapshot]) -> None:
        self.stats = stats
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        out = _Families()
        self._stats(out)
        self._snapshot(out, self.snapshot())
        yield from out.metrics.values()

    def _stats(self, out: _Families) -> None:
        stats = self.stats
        for labels, value in sorted(stats.queries.items()):
            out.add("queries", labels, value)
        for labels, value in _merged_blocks(stats.blocks):
            out.add("blocked", labels, value)
        for labels, value in sorted(stats.limited.items()):
            out.add("rate_limited", (_label(labels[0]), labels[1], labels[2]), value)
        for rcode, value in sorted(stats.rcodes.items()):
            out.add("responses", (rcode,), value)
        for result in RESULTS:
            out.histogram("request_duration_seconds", (result,), stats.durations[result])
        for labels, value in sorted(stats.upstreams.items()):
            out.add("upstream_queries", labels, value)
        for upstream, histogram in sorted(stats.upstream_durations.items()):
            out.histogram("upstream_duration_seconds", (upstream,), histogram)
        for generation, histogram in sorted(stats.gc_pauses.items()):
            out.histogram("gc_pause_seconds", (generation,), histogram)
        counts = dict.fromkeys(_ALWAYS, 0)
        counts.update(stats.counts)
        for key, value in sorted(counts.items()):
            family, labels = _count_family(key)
            out.add(family, labels, value)

    @staticmethod
    def _snapshot(out: _Families, snapshot: ServiceSnapshot) -> None:
        for upstream, up in sorted(snapshot.upstream_health.items()):
            out.add("upstream_up", (upstream,), 1.0 if up else 0.0)
        out.add("tcp_connections_open", (), snapshot.tcp_connections_open)
        for transport in ENCRYPTED_TRANSPORTS:
            out.add("connections_open", (transport,), snapshot.connections_open.get(transport, 0))
        for transport, when in sorted(snapshot.certificate_expiry.items()):
            out.add("tls_certificate_expiry_timestamp_seconds", (transport,), when)
        for name, size in sorted(snapshot.list_sizes.items()):
            out.add("list_entries", (name,), size)
        for name, when in sorted(snapshot.list_last_refresh.items()):
            out.add("list_last_refresh_timestamp_seconds", (name,), when)
        for name, failures in sorted(snapshot.list_refresh_failures.items()):
            out.add("list_refresh_failures", (name,), failures)
        for name, missing in sorted(snapshot.lists_missing.items()):
            out.add("lists_missing", (name,), 1.0 if missing else 0.0)
        for name, refused in sorted(snapshot.lists_refused.items()):
            out.add("list_refused", (name,), 1.0 if refused else 0.0)
        for name, active, until in snapshot.policies:
            out.add("policy_active", (name,), 1.0 if active else 0.0)
            if until is not None:
                out.add("policy_until_timestamp_seconds", (name,), until)
        for group, rules in sorted(snapshot.group_blocked_rules.items()):
            out.add("group_blocked_rules", (group,), rules)
        cache = snapshot.cache
        if cache is not None:
            for key in CACHE_KEYS:
                out.add("cache_" + key, (), cache.get(key, 0))
        out.add("audit_events_dropped", (), snapshot.audit_events_dropped)
        out.add("audit_file_errors", (), snapshot.audit_file_errors)
        for name, values in sorted(snapshot.rpz_zones.items()):
            if "serial" in values:
                out.add("rpz_zone_serial", (name,), values["serial"])
            if "last_transfer" in values:
                out.add("rpz_zone_last_transfer_timestamp_seconds", (name,),
                        values["last_transfer"])  # fmt: skip
            out.add("rpz_zone_transfer_failures", (name,), values.get("failures", 0.0))
            out.add("rpz_zone_expired", (name,), values.get("expired", 0.0))
            for kind in ("axfr", "ixfr"):
                out.add("rpz_zone_transfers", (name, kind), values.get("transfers." + kind, 0.0))
        for name, triggers in sorted(snapshot.rpz_skipped.items()):
            for trigger, count in sorted(triggers.items()):
                out.add("rpz_rules_skipped", (name, trigger), count)
        for key, value in sorted(snapshot.outputs.items()):
            output, _, outcome = key.partition(".")
            family = {"dnstap": "dnstap_frames", "syslog": "syslog_messages"}.get(output)
            if family is not None:
                out.add(family, (outcome,), value)
        out.add("rate_limit_clients", (), snapshot.rate_limit_clients)
        out.add("rate_limit_suspect_zones", (), snapshot.rate_limit_suspect_zones)
        configured, granted = snapshot.udp_receive_buffer
        out.add("udp_receive_buffer_bytes", ("configured",), configured)
        out.add("udp_receive_buffer_bytes", ("granted",), granted)
        build = snapshot.build
        out.add("build_info", tuple(build.get(k, "") for k in ("version", "python", "loop")), 1)


def _merged_blocks(
    blocks: Mapping[tuple[str, str, str, str], int],
) -> list[tuple[tuple[str, str, str, str], int]]:
    """Blocks with empty labels shown as "none"; keys that then coincide are summed."""
    merged: dict[tuple[str, str, str, str], int] = {}
    for key, value in blocks.items():
        shown = (_label(key[0]), _label(key[1]), _label(key[2]), _label(key[3]))
        merged[shown] = merged.get(shown, 0) + value
    return sorted(merged.items())


# Keys with two label values: prefix -> family; the rest of the key is "first.second".
_TWO_LABELS: Final = {
    "tls_failed.": "tls_handshake_failures",
    "dot.": "encrypted_connections",
    "doh.": "encrypted_connections",
}


def _count_family(key: str) -> tuple[str, tuple[str, ...]]:
    exact = _EXACT.get(key)
    if exact is not None:
        return exact
    for prefix, family in _TWO_LABELS.items():
        if key.startswith(prefix):
            if family == "encrypted_connections":
                return family, (prefix[:-1], key[len(prefix) :])
            first, _, second = key[len(prefix) :].partition(".")
            return family, (first, second)
    for prefix, family in _PREFIXED.items():
        if key.startswith(prefix):
            return family, (key[len(prefix) :],)
    return "events", (key,)


class Metrics:
    """The /metrics body: the Prometheus text format, or OpenMetrics when the scraper asks."""

    def __init__(self, stats: Stats, snapshot: Callable[[], ServiceSnapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(stats, snapshot))  # type: ignore[arg-type]
        # process_start_time_seconds, CPU and memory: a restart shows up even between scrapes.
        ProcessCollector(registry=self.registry)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) for a scrape whose Accept header is `accept`."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
