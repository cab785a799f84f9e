"""What the metrics tests share: a fake service snapshot, and the series names the exporter can
put on /metrics, which the shipped alert rules, dashboard and README are checked against."""

from __future__ import annotations

from dataclasses import dataclass, field

from resolver.observe.metrics import FAMILIES, Family, ServiceSnapshot


@dataclass
class FakeView:
    """The service side of a scrape: each call builds a `ServiceSnapshot` from these fields, so
    a test may change them between scrapes."""

    health: dict[str, bool] = field(default_factory=lambda: {"127.0.0.1:5300": True})
    open_connections: int = 0
    entries: dict[str, int] = field(default_factory=lambda: {"tiktok": 40})
    refreshed: dict[str, float] = field(default_factory=lambda: {"tiktok": 1_700_000_000.0})
    failures: dict[str, int] = field(default_factory=dict)
    missing: dict[str, bool] = field(default_factory=lambda: {"tiktok": False})
    refused: dict[str, bool] = field(default_factory=lambda: {"tiktok": False})
    policy_rows: list[tuple[str, bool, float | None]] = field(default_factory=list)
    group_rules: dict[str, int] = field(default_factory=lambda: {"default": 40})
    cache_numbers: dict[str, int] | None = None
    audit_dropped: int = 0
    audit_file_errors: int = 0
    zones: dict[str, dict[str, float]] = field(default_factory=dict)
    rpz_skipped: dict[str, dict[str, int]] = field(
        default_factory=lambda: {"national": {"rpz-nsdname": 2}}
    )
    outputs: dict[str, int] = field(default_factory=dict)
    expiry: dict[str, float] = field(default_factory=dict)  # transport -> certificate notAfter
    build_labels: dict[str, str] = field(
        default_factory=lambda: {"version": "0.1.0", "python": "3.11.7", "loop": "asyncio"}
    )

    def __call__(self) -> ServiceSnapshot:
        return ServiceSnapshot(
            upstream_health=self.health,
            tcp_connections_open=self.open_connections,
            list_sizes=self.entries,
            list_last_refresh=self.refreshed,
            list_refresh_failures=self.failures,
            lists_missing=self.missing,
            lists_refused=self.refused,
            policies=tuple(self.policy_rows),
            group_blocked_rules=self.group_rules,
            cache=self.cache_numbers,
            audit_events_dropped=self.audit_dropped,
            audit_file_errors=self.audit_file_errors,
            build=self.build_labels,
            ready=True,
            rpz_zones=self.zones,
            rpz_skipped=self.rpz_skipped,
            outputs=self.outputs,
            certificate_expiry=self.expiry,
        )


def series_names(family: Family) -> tuple[str, ...]:
    """The series names `family` puts on /metrics in the Prometheus text format."""
    if family.kind == "counter":
        return (family.name + "_total",)
    if family.kind == "histogram":
        return (family.name + "_bucket", family.name + "_sum", family.name + "_count")
    return (family.name,)


def sample_names() -> frozenset[str]:
    """Every series name the exporter can put on /metrics (text format)."""
    return frozenset(name for family in FAMILIES.values() for name in series_names(family))
