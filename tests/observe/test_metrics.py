"""The Prometheus collector, read back with prometheus_client's own parsers, and the shipped
alert rules and dashboard checked against the names it can emit."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from metrics_support import FakeView, sample_names, series_names
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from resolver.observe.metrics import FAMILIES, NONE_LABEL, PREFIX, Metrics, ServiceSnapshot
from resolver.observe.stats import (
    DURATION_BUCKETS,
    OTHER,
    QTYPE_LABELS,
    RCODE_LABELS,
    RESULTS,
    Stats,
)

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dnswarden.json"
DOC = ROOT / "docs" / "observability.md"  # documents every metric

Labels = tuple[tuple[str, str], ...]


def scrape(stats: Stats, view: FakeView | None = None) -> dict[tuple[str, Labels], float]:
    """Every sample of a text-format scrape as {(name, sorted labels): value}."""
    body, content_type = Metrics(stats, view or FakeView()).render(None)
    assert content_type.startswith("text/plain")
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def families(stats: Stats, view: FakeView | None = None) -> dict[str, Any]:
    body, _ = Metrics(stats, view or FakeView()).render(None)
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def ours(samples: dict[tuple[str, Labels], float], name: str) -> dict[Labels, float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def test_queries_by_protocol_qtype_result() -> None:
    stats = Stats()
    for _ in range(3):
        stats.query("udp", 1, "blocked", 0.00003)
    stats.query("tcp", 65, "answered", 0.02)
    stats.query("udp", 1234, "servfail", 1.5)
    assert ours(scrape(stats), "dnswarden_queries_total") == {
        (("protocol", "udp"), ("qtype", "A"), ("result", "blocked")): 3,
        (("protocol", "tcp"), ("qtype", "HTTPS"), ("result", "answered")): 1,
        (("protocol", "udp"), ("qtype", OTHER), ("result", "servfail")): 1,
    }


def test_blocked_labels_with_empty_policy_exported_as_none() -> None:
    stats = Stats()
    stats.blocked("officials", "be-2023", "tiktok", "null_ip")
    stats.blocked("officials", "", "tiktok", "null_ip")
    stats.blocked("officials", "", "tiktok", "null_ip")
    stats.blocked("officials", NONE_LABEL, "tiktok", "null_ip")  # same series once shown
    got = ours(scrape(stats), "dnswarden_blocked_total")
    assert got == {
        (("answer", "null_ip"), ("entry", "tiktok"), ("group", "officials"),
         ("policy", "be-2023")): 1,
        (("answer", "null_ip"), ("entry", "tiktok"), ("group", "officials"),
         ("policy", NONE_LABEL)): 3,
    }  # fmt: skip


def test_request_duration_histogram_is_cumulative_with_sum_and_count() -> None:
    stats = Stats()
    for seconds in (0.00002, 0.00004, 0.0003, 0.02):
        stats.query("udp", 1, "blocked", seconds)
    samples = scrape(stats)
    buckets = {
        float(dict(labels)["le"]): value
        for labels, value in ours(samples, "dnswarden_request_duration_seconds_bucket").items()
        if dict(labels)["result"] == "blocked"
    }
    assert sorted(buckets) == [*DURATION_BUCKETS, float("inf")]
    assert buckets[0.00005] == 2
    assert buckets[0.0001] == 2
    assert buckets[0.0005] == 3
    assert buckets[0.025] == 4
    assert buckets[float("inf")] == 4
    blocked = (("result", "blocked"),)
    assert samples[("dnswarden_request_duration_seconds_count", blocked)] == 4
    assert samples[("dnswarden_request_duration_seconds_sum", blocked)] == pytest.approx(0.02036)
    # Every result has its histogram from the start, so ratios never divide by a missing series.
    counts = ours(samples, "dnswarden_request_duration_seconds_count")
    assert {dict(labels)["result"] for labels in counts} == set(RESULTS)


def test_responses_by_rcode() -> None:
    stats = Stats()
    for rcode in (0, 0, 3, 2, 16, 77):
        stats.rcode(rcode)
    assert ours(scrape(stats), "dnswarden_responses_total") == {
        (("rcode", "NOERROR"),): 2,
        (("rcode", "NXDOMAIN"),): 1,
        (("rcode", "SERVFAIL"),): 1,
        (("rcode", "BADVERS"),): 1,
        (("rcode", OTHER),): 1,
    }


def test_upstream_queries_latency_and_health() -> None:
    stats = Stats()
    stats.upstream("127.0.0.1:5300", "ok", 0.004)
    stats.upstream("127.0.0.1:5300", "ok", 0.006)
    stats.upstream("127.0.0.1:5301", "timeout", None)
    view = FakeView(health={"127.0.0.1:5300": True, "127.0.0.1:5301": False})
    samples = scrape(stats, view)
    assert ours(samples, "dnswarden_upstream_queries_total") == {
        (("outcome", "ok"), ("upstream", "127.0.0.1:5300")): 2,
        (("outcome", "timeout"), ("upstream", "127.0.0.1:5301")): 1,
    }
    assert ours(samples, "dnswarden_upstream_up") == {
        (("upstream", "127.0.0.1:5300"),): 1,
        (("upstream", "127.0.0.1:5301"),): 0,
    }
    assert ours(samples, "dnswarden_upstream_duration_seconds_count") == {
        (("upstream", "127.0.0.1:5300"),): 2
    }
    assert samples[
        ("dnswarden_upstream_duration_seconds_sum", (("upstream", "127.0.0.1:5300"),))
    ] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("key", "name", "labels"),
    [
        ("malformed.short_header", "dnswarden_malformed_packets_total",
         (("reason", "short_header"),)),
        ("malformed.compression_loop", "dnswarden_malformed_packets_total",
         (("reason", "compression_loop"),)),
        ("upstream.mismatch", "dnswarden_upstream_mismatched_replies_total", ()),
        ("upstream.merged", "dnswarden_upstream_merged_queries_total", ()),
        ("upstream.tcp_retry", "dnswarden_upstream_tcp_retries_total", ()),
        ("upstream.receive_error", "dnswarden_upstream_receive_errors_total", ()),
        ("tcp.accepted", "dnswarden_tcp_connections_total", (("event", "accepted"),)),
        ("tcp.stalled", "dnswarden_tcp_connections_total", (("event", "stalled"),)),
        ("udp.send_error", "dnswarden_udp_errors_total", (("event", "send_error"),)),
        ("dropped.overload", "dnswarden_dropped_total", (("reason", "overload"),)),
        ("reload.ok", "dnswarden_reloads_total", (("result", "success"),)),
        ("reload.failed", "dnswarden_reloads_total", (("result", "failure"),)),
        ("internal_error", "dnswarden_internal_errors_total", ()),
        ("audit.folded", "dnswarden_events_total", (("event", "audit.folded"),)),
    ],
)  # fmt: skip
def test_free_form_counters_map_to_families(key: str, name: str, labels: Labels) -> None:
    before = scrape(Stats()).get((name, labels), 0)
    stats = Stats()
    stats.count(key, 7)
    assert before == 0
    assert scrape(stats)[(name, labels)] == 7


def test_event_series_exist_before_the_first_event() -> None:
    samples = scrape(Stats())
    for name, labels in [
        ("dnswarden_reloads_total", (("result", "failure"),)),
        ("dnswarden_reloads_total", (("result", "success"),)),
        ("dnswarden_internal_errors_total", ()),
        ("dnswarden_upstream_mismatched_replies_total", ()),
        ("dnswarden_dropped_total", (("reason", "overload"),)),
    ]:
        assert samples[(name, labels)] == 0


def test_view_lists_policies_tcp_and_build() -> None:
    view = FakeView(
        open_connections=5,
        entries={"tiktok": 40, "gov-extra": 6},
        refreshed={"tiktok": 1_700_000_000.0, "gov-extra": 1_700_000_100.0},
        failures={"gov-extra": 2},
        policy_rows=[("be-2023", True, 1_800_000_000.0), ("open-ended", True, None),
                     ("future", False, 1_900_000_000.0)],
    )  # fmt: skip
    samples = scrape(Stats(), view)
    assert samples[("dnswarden_tcp_connections_open", ())] == 5
    assert ours(samples, "dnswarden_list_entries") == {
        (("list", "gov-extra"),): 6,
        (("list", "tiktok"),): 40,
    }
    assert samples[
        ("dnswarden_list_last_refresh_timestamp_seconds", (("list", "gov-extra"),))
    ] == pytest.approx(1_700_000_100.0)
    assert ours(samples, "dnswarden_list_refresh_failures_total") == {(("list", "gov-extra"),): 2}
    assert ours(samples, "dnswarden_policy_active") == {
        (("policy", "be-2023"),): 1,
        (("policy", "open-ended"),): 1,
        (("policy", "future"),): 0,
    }
    assert ours(samples, "dnswarden_policy_until_timestamp_seconds") == {
        (("policy", "be-2023"),): 1_800_000_000.0,
        (("policy", "future"),): 1_900_000_000.0,
    }
    assert ours(samples, "dnswarden_build_info") == {
        (("loop", "asyncio"), ("python", "3.11.7"), ("version", "0.1.0")): 1
    }


def test_view_exports_the_rules_each_group_has_in_force() -> None:
    view = FakeView(group_rules={"officials": 43, "personal-wifi": 0})
    assert ours(scrape(Stats(), view), "dnswarden_group_blocked_rules") == {
        (("group", "officials"),): 43,
        (("group", "personal-wifi"),): 0,  # a group blocked nothing is a series, at 0
    }
    assert ours(scrape(Stats(), FakeView(group_rules={})), "dnswarden_group_blocked_rules") == {}


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        (None, {}),
        ({"entries": 10, "bytes": 2048, "hits": 30, "misses": 12, "evictions": 1},
         {"dnswarden_cache_entries": 10, "dnswarden_cache_bytes": 2048,
          "dnswarden_cache_hits_total": 30, "dnswarden_cache_misses_total": 12,
          "dnswarden_cache_evictions_total": 1}),
    ],
)  # fmt: skip
def test_cache_metrics_only_with_a_cache(
    cache: dict[str, int] | None, expected: dict[str, float]
) -> None:
    samples = scrape(Stats(), FakeView(cache_numbers=cache))
    got = {name: value for (name, _), value in samples.items() if "_cache_" in name}
    assert got == expected
    assert "dnswarden_cache_hits" in families(Stats(), FakeView(cache_numbers=cache))


def test_every_family_is_announced_even_when_empty() -> None:
    found = families(Stats(), FakeView(health={}, entries={}, refreshed={}))
    for family in FAMILIES.values():
        assert family.name in found, family.name
        assert found[family.name].type == family.kind


def busy_stats(rng: random.Random, queries: int = 10_000) -> Stats:
    stats = Stats()
    for _ in range(queries):
        stats.query(rng.choice(("udp", "tcp")), rng.randrange(-5, 70000), rng.choice(RESULTS),
                    rng.random())  # fmt: skip
        stats.rcode(rng.randrange(0, 4096))
    return stats


def test_labels_stay_bounded_under_random_qtypes_and_rcodes() -> None:
    samples = scrape(busy_stats(random.Random(7)))
    queries = ours(samples, "dnswarden_queries_total")
    assert sum(queries.values()) == 10_000
    qtypes = {dict(labels)["qtype"] for labels in queries}
    assert qtypes <= {*QTYPE_LABELS.values(), OTHER}
    assert len(queries) <= 2 * (len(QTYPE_LABELS) + 1) * len(RESULTS)
    rcodes = {dict(labels)["rcode"] for labels in ours(samples, "dnswarden_responses_total")}
    assert rcodes <= {*RCODE_LABELS.values(), OTHER}
    assert len(samples) < 1000


def test_emitted_names_and_labels_match_the_catalogue() -> None:
    stats = busy_stats(random.Random(3), 500)
    stats.blocked("g", "", "tiktok", "nxdomain")
    stats.upstream("127.0.0.1:53", "ok", 0.01)
    stats.rate_limited("g", "queries", "drop")
    for key in ("malformed.x", "tcp.accepted", "reload.ok", "upstream.merged", "other.thing",
                "notify.accepted", "list_rejected.tiktok"):  # fmt: skip
        stats.count(key)
    view = FakeView(failures={"tiktok": 1}, policy_rows=[("p", True, 2e9)],
                    cache_numbers={"entries": 1, "bytes": 2, "hits": 3, "misses": 4,
                                   "evictions": 5},
                    zones={"national": {"serial": 7, "last_transfer": 1.7e9, "failures": 1,
                                        "transfers.ixfr": 2}},
                    outputs={"dnstap.sent": 5, "syslog.dropped": 1},
                    expiry={"dot": 1.8e9})  # fmt: skip
    allowed = sample_names()
    by_sample = {s: f for f in FAMILIES.values() for s in series_names(f)}
    seen = set()
    for (name, labels), _ in scrape(stats, view).items():
        if not name.startswith(PREFIX):
            continue  # process_* from the process collector
        assert name in allowed, name
        seen.add(by_sample[name].name)
        label_names = {k for k, _ in labels} - {"le"}
        assert label_names == set(by_sample[name].labels), name
        assert not label_names & {"client", "qname", "name", "ip"}
    assert set(FAMILIES) - seen == set()


CACHE = {"entries": 10, "bytes": 2048, "hits": 30, "misses": 12, "evictions": 1}
WORKER_0 = ServiceSnapshot(
    upstream_health={"10.0.0.2:53": True, "10.0.0.3:53": False},
    tcp_connections_open=2,
    list_sizes={"tiktok": 40},
    list_last_refresh={"tiktok": 1_700_000_000.0},
    list_refresh_failures={"gov-extra": 1},
    policies=(("be-2023", True, None),),
    cache=CACHE,
    audit_events_dropped=3,
    audit_file_errors=1,
    udp_receive_buffer=(2 << 20, 2 << 20),
    build={"version": "0.1.0", "python": "3.11.7", "loop": "uvloop"},
    ready=True,
)
WORKER_1 = ServiceSnapshot(
    upstream_health={"10.0.0.2:53": False, "10.0.0.3:53": False},
    tcp_connections_open=5,
    list_sizes={"tiktok": 40},
    cache=CACHE,
    audit_events_dropped=4,
    udp_receive_buffer=(2 << 20, 212_992),  # capped: the smaller one is what all get
    build={"version": "0.1.0", "python": "3.11.7", "loop": "uvloop"},
    ready=False,
)


@pytest.mark.parametrize(
    ("snapshots", "expected"),
    [
        ([], ServiceSnapshot()),
        ([WORKER_0], WORKER_0),
        ([WORKER_0, WORKER_1], ServiceSnapshot(
            upstream_health={"10.0.0.2:53": True, "10.0.0.3:53": False},
            tcp_connections_open=7,
            list_sizes={"tiktok": 40},
            list_last_refresh={"tiktok": 1_700_000_000.0},
            list_refresh_failures={"gov-extra": 1},
            policies=(("be-2023", True, None),),
            cache={key: 2 * value for key, value in CACHE.items()},
            audit_events_dropped=7,
            audit_file_errors=1,
            udp_receive_buffer=(2 << 20, 212_992),
            build={"version": "0.1.0", "python": "3.11.7", "loop": "uvloop"},
            ready=False,
        )),
        ([WORKER_1, ServiceSnapshot(ready=True)], ServiceSnapshot(
            upstream_health={"10.0.0.2:53": False, "10.0.0.3:53": False},
            tcp_connections_open=5,
            list_sizes={"tiktok": 40},
            cache=CACHE,
            audit_events_dropped=4,
            udp_receive_buffer=(2 << 20, 212_992),  # a worker not yet bound does not count
            build={"version": "0.1.0", "python": "3.11.7", "loop": "uvloop"},
            ready=False,
        )),
    ],
)  # fmt: skip
def test_workers_snapshots_merge_into_one(
    snapshots: list[ServiceSnapshot], expected: ServiceSnapshot
) -> None:
    """Counts add up, an upstream is up when any worker finds it so, lists, policies and build
    come from the first worker, and the whole is ready only when every worker is."""
    assert ServiceSnapshot.merge(snapshots) == expected


def test_audit_counters_are_exported() -> None:
    samples = scrape(Stats(), FakeView(audit_dropped=12, audit_file_errors=2))
    assert samples[("dnswarden_audit_events_dropped_total", ())] == 12
    assert samples[("dnswarden_audit_file_errors_total", ())] == 2


def test_counters_survive_a_reload_of_the_view() -> None:
    stats = Stats()
    view = FakeView(entries={"tiktok": 40})
    stats.query("udp", 1, "blocked", 0.0001)
    stats.count("reload.ok")
    first = scrape(stats, view)
    view.entries = {"tiktok": 41, "capcut": 9}
    second = scrape(stats, view)
    for name in ("dnswarden_queries_total", "dnswarden_reloads_total"):
        assert ours(second, name) == ours(first, name)
    assert ours(second, "dnswarden_list_entries")[(("list", "capcut"),)] == 9


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (None, False),
        ("", False),
        ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", False),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", True),
        # What Prometheus 2.42 sends.
        ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
         "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
    ],
)
def test_render_negotiates_openmetrics(accept: str | None, openmetrics: bool) -> None:
    stats = Stats()
    stats.query("udp", 1, "blocked", 0.0001)
    body, content_type = Metrics(stats, FakeView()).render(accept)
    text = body.decode()
    assert content_type.startswith("application/openmetrics-text") == openmetrics
    assert text.endswith("# EOF\n") == openmetrics
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    names = {f.name for f in parse(text)}
    assert "dnswarden_queries" in names


def test_the_exporter_uses_its_own_registry() -> None:
    from prometheus_client import REGISTRY

    metrics = Metrics(Stats(), FakeView())
    assert metrics.registry is not REGISTRY
    before = {m.name for m in REGISTRY.collect()}
    assert not any(name.startswith(PREFIX) for name in before)


# --- the shipped alert rules and dashboard ---------------------------------------------------

METRIC_NAME = re.compile(r"\b(dnswarden_[a-zA-Z0-9_]+)")


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable.get("type") == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def names_in(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("rate(dnswarden_queries_total[5m])", True),
        ("dnswarden_queries", False),  # a counter is only ever queried with _total
        ("dnswarden_request_duration_seconds_bucket", True),
        ("dnswarden_request_duration_seconds", False),  # a histogram has no bare series
        ("dnswarden_upstream_up", True),
        ("dnswarden_upstream_up_total", False),  # a gauge has no _total
        ("dnswarden_cache_hits_total", True),
        ("dnswarden_cache_entries_count", False),
        ("dnswarden_build_info", True),
    ],
)
def test_metric_name_check_follows_suffix_rules(expression: str, valid: bool) -> None:
    assert (names_in(expression) <= sample_names()) == valid


def test_every_alert_uses_only_exported_metrics() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        used = names_in(rule["expr"])
        assert used or 'up{job="dnswarden"}' in rule["expr"], rule["alert"]
        assert used <= sample_names(), f"{rule['alert']}: unknown {used - sample_names()}"


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    exprs = dashboard_expressions()
    assert len(exprs) >= 10
    for expr in exprs:
        assert names_in(expr) <= sample_names(), f"unknown in {expr!r}"


@pytest.mark.parametrize(
    "topic",
    [r"dnswarden_upstream_up", r"dnswarden_request_duration_seconds_count\{result=\"servfail\"",
     r"dnswarden_list_last_refresh_timestamp_seconds", r"dnswarden_list_refresh_failures_total",
     r"dnswarden_policy_until_timestamp_seconds", r"dnswarden_blocked_total",
     r"dnswarden_reloads_total\{result=\"failure\"", r"dnswarden_group_blocked_rules == 0",
     r"dnswarden_lists_missing", r"dnswarden_rate_limited_total",
     r"dnswarden_list_rejected_total", r"dnswarden_list_refused", r"dnswarden_rpz_zone_expired",
     r"dnswarden_tls_certificate_expiry_timestamp_seconds - time\(\)\) <= 0",
     r"dnswarden_tls_certificate_reloads_total\{result=\"failure\""],
)  # fmt: skip
def test_alerts_cover_the_required_conditions(topic: str) -> None:
    assert any(re.search(topic, rule["expr"]) for rule in alert_rules()), topic


def test_alerts_have_annotations_and_resolver_down() -> None:
    rules = alert_rules()
    for rule in rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert len(annotations.get(key, "")) > 20, f"{rule['alert']}: {key}"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}
    assert any(re.search(r"\bup\{job=\"dnswarden\"\}", rule["expr"]) for rule in rules)
    assert len({rule["alert"] for rule in rules}) == len(rules)


def test_dashboard_has_the_panels_and_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("queries/s by result", "block rate by policy", "block rate by group",
                   "top blocked entries", "upstream latency", "upstream health",
                   "cache hit ratio", "list freshness", "policy windows"):  # fmt: skip
        assert needed in titles, needed
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_scrape_example_targets_loopback_and_loads_the_alerts() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "dnswarden"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9153"]


def test_docs_table_lists_every_metric() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(dnswarden_\w+)` \| (\w+) \|", text, re.M)
    documented = {name: kind for name, kind in rows}
    expected = {
        (series_names(f)[0] if f.kind == "counter" else f.name): f.kind
        for f in FAMILIES.values()
    }
    assert documented == expected


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    return path


def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout + result.stderr


# Alert scenarios for `promtool test rules`: input series (1m apart, promtool's expanding
# notation), then (alert, minute, labels of each alert expected to fire there). Annotations are
# filled in from the rule, since promtool compares them exactly.
A = 'instance="a:9153",job="dnswarden"'
B = 'instance="b:9153",job="dnswarden"'
C = 'instance="c:9153",job="dnswarden"'
ALERT_SCENARIOS: list[tuple[dict[str, str], list[tuple[str, int, list[dict[str, str]]]]]] = [
    (
        {f"up{{{A}}}": "1 1 0x10", f"up{{{B}}}": "1x12"},
        [("DnswardenDown", 3, []),
         ("DnswardenDown", 6, [{"severity": "critical", "instance": "a:9153",
                                "job": "dnswarden"}])],
    ),
    (
        {f'dnswarden_upstream_up{{{A},upstream="10.0.0.2:53"}}': "1 1 0x10",
         f'dnswarden_upstream_up{{{A},upstream="10.0.0.3:53"}}': "1 0x11",
         f'dnswarden_upstream_up{{{B},upstream="10.0.0.2:53"}}': "0x12",
         f'dnswarden_upstream_up{{{B},upstream="10.0.0.3:53"}}': "1x12"},
        [("DnswardenNoHealthyUpstream", 2, []),
         ("DnswardenNoHealthyUpstream", 5, [{"severity": "critical", "instance": "a:9153"}]),
         ("DnswardenUpstreamDown", 3, []),
         ("DnswardenUpstreamDown", 10, [
             {"severity": "warning", "instance": "a:9153", "job": "dnswarden",
              "upstream": "10.0.0.2:53"},
             {"severity": "warning", "instance": "a:9153", "job": "dnswarden",
              "upstream": "10.0.0.3:53"},
             {"severity": "warning", "instance": "b:9153", "job": "dnswarden",
              "upstream": "10.0.0.2:53"}])],
    ),
    (
        {f'dnswarden_request_duration_seconds_count{{{A},result="servfail"}}': "0+60x30",
         f'dnswarden_request_duration_seconds_count{{{A},result="answered"}}': "0+600x30",
         f'dnswarden_request_duration_seconds_count{{{B},result="servfail"}}': "0+6x30",
         f'dnswarden_request_duration_seconds_count{{{B},result="answered"}}': "0+600x30",
         f'dnswarden_request_duration_seconds_count{{{C},result="servfail"}}': "0+3x30",
         f'dnswarden_request_duration_seconds_count{{{C},result="answered"}}': "0+3x30"},
        [("DnswardenServfailRatioHigh", 8, []),
         ("DnswardenServfailRatioHigh", 20, [{"severity": "warning", "instance": "a:9153"}])],
    ),
    (
        {f'dnswarden_list_refresh_failures_total{{{A},list="gov-extra"}}': "0 0 0 1x10",
         f'dnswarden_list_refresh_failures_total{{{A},list="tiktok"}}': "0x13",
         f'dnswarden_list_last_refresh_timestamp_seconds{{{A},list="gov-extra"}}': "-700000x20",
         f'dnswarden_list_last_refresh_timestamp_seconds{{{A},list="tiktok"}}': "0x20"},
        [("DnswardenListRefreshFailing", 2, []),
         ("DnswardenListRefreshFailing", 5, [{"severity": "warning", "instance": "a:9153",
                                              "job": "dnswarden", "list": "gov-extra"}]),
         ("DnswardenListStale", 5, []),
         ("DnswardenListStale", 15, [{"severity": "warning", "instance": "a:9153",
                                      "job": "dnswarden", "list": "gov-extra"}])],
    ),
    (
        {f'dnswarden_lists_missing{{{A},list="national"}}': "1x10",
         f'dnswarden_lists_missing{{{A},list="tiktok"}}': "0x10",
         f'dnswarden_lists_missing{{{B},list="national"}}': "1 1 0x8"},  # fetched at minute 2
        [("DnswardenListMissing", 1, []),
         ("DnswardenListMissing", 5, [{"severity": "critical", "instance": "a:9153",
                                       "job": "dnswarden", "list": "national"}])],
    ),
    (
        {  # a: the feed's download refused at minute 3 and still refused; b: an edited file
            # refused at minute 2, fixed at minute 4 (the counter keeps it for an hour)
            f'dnswarden_list_rejected_total{{{A},list="national"}}': "0 0 0 1x80",
            f'dnswarden_list_refused{{{A},list="national"}}': "0 0 0 1x80",
            f'dnswarden_list_rejected_total{{{A},list="tiktok"}}': "0x83",
            f'dnswarden_list_refused{{{A},list="tiktok"}}': "0x83",
            f'dnswarden_list_rejected_total{{{B},list="local"}}': "0 0 1x81",
            f'dnswarden_list_refused{{{B},list="local"}}': "0 0 1 1 0x80",
        },
        [("DnswardenListRejected", 1, []),
         ("DnswardenListRejected", 5, [
             {"severity": "warning", "instance": "a:9153", "job": "dnswarden",
              "list": "national"},
             {"severity": "warning", "instance": "b:9153", "job": "dnswarden", "list": "local"}]),
         ("DnswardenListRejected", 75, [{"severity": "warning", "instance": "a:9153",
                                         "job": "dnswarden", "list": "national"}])],
    ),
    (
        {f'dnswarden_policy_until_timestamp_seconds{{{A},policy="be-2023"}}': f"{10 * 86400}x5",
         f'dnswarden_policy_until_timestamp_seconds{{{A},policy="long"}}': f"{100 * 86400}x5",
         f'dnswarden_policy_until_timestamp_seconds{{{A},policy="lapsed"}}': "-86400x5"},
        [("DnswardenPolicyLapsingSoon", 2, [{"severity": "warning", "instance": "a:9153",
                                             "job": "dnswarden", "policy": "be-2023"}])],
    ),
    (
        {  # a day at one block a minute, then one a second; a busy but steady group; a quiet one
            f'dnswarden_blocked_total{{{A},group="officials",policy="be",entry="tiktok",'
            'answer="null_ip"}': "0+1x1450 1510+60x40",
            f'dnswarden_blocked_total{{{A},group="busy",policy="be",entry="tiktok",'
            'answer="null_ip"}': "0+120x1490",
            f'dnswarden_blocked_total{{{A},group="press",policy="none",entry="tiktok",'
            'answer="null_ip"}': "0+1x1490",
        },
        [("DnswardenBlockSpike", 1440, []),
         ("DnswardenBlockSpike", 1480, [{"severity": "warning", "group": "officials"}])],
    ),
    (
        {  # officials lose their blocks at minute 11; the press office keeps them; personal
            # devices never had any, so 0 there is no news
            f'dnswarden_group_blocked_rules{{{A},group="officials"}}': "43x10 0x30",
            f'dnswarden_group_blocked_rules{{{A},group="press-office"}}': "43x40",
            f'dnswarden_group_blocked_rules{{{A},group="personal-wifi"}}': "0x40",
            f'dnswarden_group_blocked_rules{{{B},group="officials"}}': "0 0 43x38",
        },
        [("DnswardenGroupBlocksNothing", 8, []),
         ("DnswardenGroupBlocksNothing", 14, []),  # pending: 0 for 3 of the 5 minutes
         ("DnswardenGroupBlocksNothing", 20, [{"severity": "critical", "instance": "a:9153",
                                               "job": "dnswarden", "group": "officials"}])],
    ),
    (
        {f'dnswarden_reloads_total{{{A},result="failure"}}': "0 0 1x40",
         f'dnswarden_reloads_total{{{A},result="success"}}': "0+1x42"},
        [("DnswardenReloadFailing", 1, []),
         ("DnswardenReloadFailing", 5, [{"severity": "warning", "instance": "a:9153",
                                         "job": "dnswarden", "result": "failure"}]),
         ("DnswardenReloadFailing", 40, [])],
    ),
    (
        {f"dnswarden_internal_errors_total{{{A}}}": "0 0 0 2x10",
         f"dnswarden_internal_errors_total{{{B}}}": "0x13"},
        [("DnswardenInternalErrors", 2, []),
         ("DnswardenInternalErrors", 5, [{"severity": "warning", "instance": "a:9153",
                                          "job": "dnswarden"}])],
    ),
    (
        {  # a flood from officials for 20 minutes; a trickle from the press office
            f'dnswarden_rate_limited_total{{{A},group="officials",limit="queries",'
            'action="drop"}': "0+6000x20 120000x10",
            f'dnswarden_rate_limited_total{{{A},group="press",limit="zone",'
            'action="drop"}': "0+60x30",
        },
        [("DnswardenRateLimiting", 4, []),
         ("DnswardenRateLimiting", 16, [{"severity": "warning", "instance": "a:9153",
                                         "group": "officials", "limit": "queries"}]),
         ("DnswardenRateLimiting", 29, [])],
    ),
    (
        {  # a: restarted at minute 2 on a stock kernel's cap (net.core.rmem_max), under the
            # 2 MiB default; b: granted what it asked for
            f'dnswarden_udp_receive_buffer_bytes{{{A},buffer="configured"}}': "2097152x5",
            f'dnswarden_udp_receive_buffer_bytes{{{A},buffer="granted"}}': "2097152 2097152 "
                                                                           "212992x3",
            f'dnswarden_udp_receive_buffer_bytes{{{B},buffer="configured"}}': "2097152x5",
            f'dnswarden_udp_receive_buffer_bytes{{{B},buffer="granted"}}': "2097152x5",
        },
        [("DnswardenReceiveBufferCapped", 1, []),
         ("DnswardenReceiveBufferCapped", 3, [{"severity": "warning", "instance": "a:9153",
                                               "job": "dnswarden"}])],
    ),
    (
        {f'dnswarden_rpz_zone_expired{{{A},list="national"}}': "0 0 1x10",
         f'dnswarden_rpz_zone_expired{{{B},list="national"}}': "0x12"},
        [("DnswardenRpzZoneExpired", 1, []),
         ("DnswardenRpzZoneExpired", 3, [{"severity": "critical", "instance": "a:9153",
                                          "job": "dnswarden", "list": "national"}])],
    ),
    (
        {f"dnswarden_audit_file_errors_total{{{A}}}": "0 0 0 3x10",
         f"dnswarden_audit_file_errors_total{{{B}}}": "0x13"},
        [("DnswardenAuditFileErrors", 2, []),
         ("DnswardenAuditFileErrors", 5, [{"severity": "warning", "instance": "a:9153",
                                           "job": "dnswarden"}])],
    ),
    (
        {  # promtool's clock starts at 0: a's DoT certificate expires at day 10 until a renewal
            # is loaded at minute 18, its DoH one at day 80; b's expires 10 minutes in
            f'dnswarden_tls_certificate_expiry_timestamp_seconds{{{A},transport="dot"}}':
                f"{10 * 86400}x17 {90 * 86400}x3",
            f'dnswarden_tls_certificate_expiry_timestamp_seconds{{{A},transport="doh"}}':
                f"{80 * 86400}x20",
            f'dnswarden_tls_certificate_expiry_timestamp_seconds{{{B},transport="dot"}}':
                "600x20",
        },
        [("DnswardenCertificateExpiringSoon", 5, [
             {"severity": "warning", "instance": "a:9153", "job": "dnswarden",
              "transport": "dot"},
             {"severity": "warning", "instance": "b:9153", "job": "dnswarden",
              "transport": "dot"}]),
         ("DnswardenCertificateExpiringSoon", 15, [
             {"severity": "warning", "instance": "a:9153", "job": "dnswarden",
              "transport": "dot"}]),
         ("DnswardenCertificateExpiringSoon", 19, []),
         ("DnswardenCertificateExpired", 5, []),
         ("DnswardenCertificateExpired", 15, [{"severity": "critical", "instance": "b:9153",
                                               "job": "dnswarden", "transport": "dot"}])],
    ),
    (
        {f'dnswarden_tls_certificate_reloads_total{{{A},result="failure"}}': "0 0 1x40",
         f'dnswarden_tls_certificate_reloads_total{{{A},result="success"}}': "0 1x41",
         f'dnswarden_tls_certificate_reloads_total{{{B},result="failure"}}': "0x42"},
        [("DnswardenCertificateReloadFailing", 1, []),
         ("DnswardenCertificateReloadFailing", 5, [{"severity": "warning", "instance": "a:9153",
                                                    "job": "dnswarden", "result": "failure"}]),
         ("DnswardenCertificateReloadFailing", 40, [])],
    ),
]  # fmt: skip

TEMPLATE_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def render_annotations(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them; only {{ $labels.x }} is allowed."""
    rendered = {}
    for key, text in rule["annotations"].items():
        value = TEMPLATE_LABEL.sub(lambda m: labels[m.group(1)], text)
        assert "{{" not in value, f"{rule['alert']}.{key}: only {{{{ $labels.x }}}} templates"
        rendered[key] = value
    return rendered


def test_promtool_alert_scenarios(tmp_path: Path) -> None:
    """Each alert fires on the series that should trigger it, and not on healthy ones."""
    rules = {rule["alert"]: rule for rule in alert_rules()}
    tests = []
    for series, cases in ALERT_SCENARIOS:
        tests.append({
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": f"{minute}m", "alertname": alert,
                 "exp_alerts": [{"exp_labels": labels,
                                 "exp_annotations": render_annotations(rules[alert], labels)}
                                for labels in expected]}
                for alert, minute, expected in cases
            ],
        })  # fmt: skip
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m",
                                    "tests": tests}))  # fmt: skip
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_scenarios_cover_every_alert_firing_and_quiet() -> None:
    every = {rule["alert"] for rule in alert_rules()}
    fired = {alert for _, cases in ALERT_SCENARIOS for alert, _, expected in cases if expected}
    quiet = {alert for _, cases in ALERT_SCENARIOS for alert, _, expected in cases if not expected}
    assert fired == every
    # The lapsing-policy scenario has its quiet series (no end soon, already lapsed) alongside.
    assert every - quiet == {"DnswardenPolicyLapsingSoon"}
