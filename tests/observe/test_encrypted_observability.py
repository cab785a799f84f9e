"""What the encrypted listeners add to the audit trail and the metrics: the device id (as the
privacy mode allows), queries by transport, connections, handshake failures, HTTP statuses."""

from __future__ import annotations

import io
import json
from typing import Any

import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resolver.observe.audit import AuditLog, pseudonym
from resolver.observe.metrics import Metrics, ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.policy.engine import Action, Decision
from resolver.protocol.wire import parse_query

BLOCK = Decision(Action.BLOCK, "phones", None, "telegram", "telegram.org", None, "null_ip")
KEY = b"k" * 32


def events(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


def query(name: str = "telegram.org") -> Any:
    return parse_query(dns.message.make_query(name, "A").to_wire())


@pytest.mark.parametrize(
    ("privacy", "key", "shown"),
    [("raw", None, "phone-1"), ("truncate", None, None),
     ("pseudonymise", KEY, pseudonym(KEY, "device:phone-1"))],
)  # fmt: skip
def test_device_in_block_and_query_events(privacy: str, key: bytes | None,
                                          shown: str | None) -> None:  # fmt: skip
    log = io.StringIO()
    audit = AuditLog(log, "info", allowed_queries=True, privacy=privacy, key=key, fold_window=0)
    audit.blocked("10.0.0.7", query(), BLOCK, "phone-1")
    audit.allowed("10.0.0.7", query("example.org"), 0, "phone-1")
    audit.blocked("10.0.0.7", query(), BLOCK)
    blocked, allowed, anonymous = events(log)
    assert blocked.get("device") == shown and allowed.get("device") == shown
    assert "device" not in anonymous
    assert ("device" in blocked) == (shown is not None)


def test_blocks_of_two_devices_behind_one_address_do_not_fold() -> None:
    log = io.StringIO()
    audit = AuditLog(log, "info", fold_window=10)
    for device in ("phone-1", "phone-2", "phone-1"):
        audit.blocked("192.0.2.1", query(), BLOCK, device)
    audit.close()
    lines = [e for e in events(log) if e["event"] == "blocked"]
    assert [(e["device"], e.get("repeated")) for e in lines] == [
        ("phone-1", None), ("phone-2", None), ("phone-1", 1)]  # fmt: skip


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(stats: Stats, snapshot: ServiceSnapshot) -> Samples:
    body, _ = Metrics(stats, lambda: snapshot).render(None)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_encrypted_series() -> None:
    stats = Stats()
    stats.query("dot", 1, "blocked", 0.001)
    stats.query("doh", 64, "ddr", 0.001)
    for key in ("dot.accepted", "dot.accepted", "doh.idle_closed", "doh.http_error",
                "tls_failed.dot.not_tls", "tls_failed.doh.certificate_rejected",
                "doh_response.415", "doh_response.200"):  # fmt: skip
        stats.count(key)
    samples = scrape(stats, ServiceSnapshot(connections_open={"dot": 3}))
    assert samples[("dnswarden_queries_total", (("protocol", "dot"), ("qtype", "A"),
                                                ("result", "blocked")))] == 1  # fmt: skip
    assert samples[("dnswarden_queries_total", (("protocol", "doh"), ("qtype", "SVCB"),
                                                ("result", "ddr")))] == 1  # fmt: skip
    connections = "dnswarden_encrypted_connections_total"
    assert samples[(connections, (("event", "accepted"), ("transport", "dot")))] == 2
    assert samples[(connections, (("event", "accepted"), ("transport", "doh")))] == 0
    assert samples[(connections, (("event", "idle_closed"), ("transport", "doh")))] == 1
    assert samples[(connections, (("event", "http_error"), ("transport", "doh")))] == 1
    failures = "dnswarden_tls_handshake_failures_total"
    assert samples[(failures, (("reason", "not_tls"), ("transport", "dot")))] == 1
    assert samples[(failures, (("reason", "certificate_rejected"), ("transport", "doh")))] == 1
    assert samples[(failures, (("reason", "timeout"), ("transport", "dot")))] == 0
    assert samples[("dnswarden_doh_responses_total", (("status", "415"),))] == 1
    assert samples[("dnswarden_connections_open", (("transport", "dot"),))] == 3
    assert samples[("dnswarden_connections_open", (("transport", "doh"),))] == 0


def test_workers_open_connections_add_up() -> None:
    merged = ServiceSnapshot.merge([
        ServiceSnapshot(connections_open={"dot": 2}),
        ServiceSnapshot(connections_open={"dot": 1, "doh": 4}),
    ])
    assert merged.connections_open == {"doh": 4, "dot": 3}


def test_certificate_expiry_and_reloads() -> None:
    stats = Stats()
    for key in ("tls_reload.ok", "tls_reload.failed", "tls_reload.failed"):
        stats.count(key)
    samples = scrape(stats, ServiceSnapshot(certificate_expiry={"dot": 1.8e9, "doh": 1.9e9}))
    expiry = "dnswarden_tls_certificate_expiry_timestamp_seconds"
    assert samples[(expiry, (("transport", "dot"),))] == 1.8e9
    assert samples[(expiry, (("transport", "doh"),))] == 1.9e9
    reloads = "dnswarden_tls_certificate_reloads_total"
    assert samples[(reloads, (("result", "success"),))] == 1
    assert samples[(reloads, (("result", "failure"),))] == 2
    assert not any(name == "dnswarden_events_total" and "tls_reload" in str(labels)
                   for name, labels in samples)  # fmt: skip


def test_without_encrypted_listeners_no_expiry_but_reloads_at_zero() -> None:
    samples = scrape(Stats(), ServiceSnapshot())
    assert not [k for k in samples if k[0] == "dnswarden_tls_certificate_expiry_timestamp_seconds"]
    reloads = "dnswarden_tls_certificate_reloads_total"
    assert samples[(reloads, (("result", "failure"),))] == 0


def test_workers_certificate_expiry_is_the_soonest() -> None:
    """A worker whose reload failed still serves the older certificate: that one counts."""
    merged = ServiceSnapshot.merge([
        ServiceSnapshot(certificate_expiry={"dot": 2.0e9, "doh": 2.0e9}),
        ServiceSnapshot(certificate_expiry={"dot": 1.7e9, "doh": 2.0e9}),
        ServiceSnapshot(),
    ])
    assert merged.certificate_expiry == {"dot": 1.7e9, "doh": 2.0e9}
