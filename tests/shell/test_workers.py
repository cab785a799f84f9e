"""The supervisor's pure parts (adding up worker counters, report frames, --workers values,
readiness over workers) and a start whose workers cannot start."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import time
from pathlib import Path

import pytest

from resolver.config import load_config, with_overrides
from resolver.lists.catalogue import catalogue_ids
from resolver.observe.audit import AuditLog
from resolver.observe.metrics import ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.shell.workers import (
    ReportReader,
    Supervisor,
    Worker,
    WorkerReport,
    encode_report,
    encrypted_listeners,
    worker_count,
)
from resolver.state import build_state


def sample(seed: int) -> Stats:
    stats = Stats()
    for i in range(seed):
        stats.query("udp", 1, "blocked", 0.0001 * i)
        stats.query("tcp", 28, "answered", 0.01)
        stats.rcode(0)
        stats.blocked("officials", "be", "tiktok", "null_ip")
        stats.upstream("127.0.0.1:53", "ok", 0.002)
        stats.count("malformed.qdcount")
    return stats


def test_merged_stats_sum_every_table() -> None:
    total = Stats()
    for seed in (3, 5):
        total.merge(sample(seed))
    assert total.results()["blocked"] == 8
    assert total.results()["answered"] == 8
    assert total.rcodes == {"NOERROR": 8}
    assert total.blocks == {("officials", "be", "tiktok", "null_ip"): 8}
    assert total.upstreams == {("127.0.0.1:53", "ok"): 8}
    assert sum(total.upstream_durations["127.0.0.1:53"].counts) == 8
    assert sum(total.durations["blocked"].counts) == 8
    assert total.counts["malformed.qdcount"] == 8
    assert total.durations["answered"].total == pytest.approx(0.08)


def test_report_frames_survive_arbitrary_splits() -> None:
    worker = Worker(0)
    received = []
    worker.on_report = lambda: received.append(worker.report)
    reader = ReportReader(worker)
    frames = b"".join(
        encode_report(WorkerReport(sample(2), ServiceSnapshot(tcp_connections_open=n)))
        for n in range(3)
    )
    for i in range(0, len(frames), 7):
        reader.data_received(frames[i : i + 7])
    assert [r.snapshot.tcp_connections_open for r in received] == [0, 1, 2]
    assert worker.ready.is_set()
    assert pickle.loads(pickle.dumps(received[0].stats)).results()["blocked"] == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("4", 4), ("auto", max(1, len(os.sched_getaffinity(0))))],
)
def test_worker_count(text: str, expected: int) -> None:
    assert worker_count(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "257", "many"])
def test_worker_count_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        worker_count(text)


def test_a_worker_that_exits_before_it_is_ready_fails_the_start_at_once(tmp_path: Path) -> None:
    """Here the workers' config file is missing, so each exits at once (exit 1): waiting the
    full READY_TIMEOUT for them would only delay the `startup_failed` line."""
    embedded = load_config(None, known_lists=catalogue_ids())
    config = with_overrides(embedded, listen=["127.0.0.1:0"], upstreams=["127.0.0.1:1"])
    state = build_state(config, None)
    stream = io.StringIO()
    supervisor = Supervisor(config, ["-c", str(tmp_path / "missing.yaml")], 2, AuditLog(stream))
    started = time.monotonic()
    with pytest.raises(OSError, match=r"^worker [01] exited before it was ready \(exit code 1\)$"):
        asyncio.run(supervisor.run(state))
    assert time.monotonic() - started < 20
    assert "startup" not in stream.getvalue() and "shutdown" not in stream.getvalue()


def report(ready: bool, missing: list[str], listeners: bool = True) -> WorkerReport:
    snapshot = ServiceSnapshot(upstream_health={"udp://127.0.0.1:53": True},
                               list_sizes={"tiktok": 35, "feed": 0}, ready=ready)  # fmt: skip
    readiness = {"listeners": listeners, "lists": {"tiktok": 35, "feed": 0},
                 "lists_missing": missing, "healthy_upstreams": ["udp://127.0.0.1:53"]}  # fmt: skip
    return WorkerReport(Stats(), snapshot, readiness)


class Running:
    """Stands for a live worker process in `Supervisor.ready`."""

    returncode = None


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([report(True, []), report(True, [])],
         (True, {"listeners": True, "lists_missing": [], "workers_ready": [0, 1]})),
        ([report(True, []), report(False, ["feed"])],
         (False, {"listeners": True, "lists_missing": ["feed"], "workers_ready": [0]})),
        ([report(True, []), None],
         (False, {"listeners": False, "lists_missing": [], "workers_ready": [0]})),
        ([report(False, [], listeners=False), report(True, [])],
         (False, {"listeners": False, "lists_missing": [], "workers_ready": [1]})),
    ],
    ids=["all-ready", "one-missing-a-list", "one-not-reported", "one-not-listening"],
)  # fmt: skip
def test_readiness_over_workers_has_the_single_servers_fields(
    reports: list[WorkerReport | None], expected: tuple[bool, dict[str, object]]
) -> None:
    config = load_config(None, known_lists=catalogue_ids())
    supervisor = Supervisor(config, [], len(reports), AuditLog(io.StringIO()))
    for worker, sent in zip(supervisor.workers, reports, strict=True):
        worker.process = Running()  # type: ignore[assignment]
        worker.report = sent
    ready, detail = supervisor.ready()
    assert (ready, {key: detail[key] for key in expected[1]}) == expected
    assert detail["lists"] == {"tiktok": 35, "feed": 0}
    assert detail["healthy_upstreams"] == ["udp://127.0.0.1:53"]


def _bound(**listening: list[str]) -> WorkerReport:
    encrypted = {t: {"listening": a, "connections": 0} for t, a in listening.items()}
    readiness = {"listeners": True, **({"encrypted": encrypted} if listening else {})}
    return WorkerReport(Stats(), ServiceSnapshot(), readiness)


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([], {}),
        ([_bound(), _bound()], {}),  # no encrypted listener: no fields, as in one process
        ([_bound(dot=["127.0.0.1:853", "[::1]:853"], doh=["127.0.0.1:443"])] * 2,
         {"dot": ["127.0.0.1:853", "[::1]:853"], "doh": ["127.0.0.1:443"]}),
        ([_bound(dot=["127.0.0.1:853"])] * 3, {"dot": ["127.0.0.1:853"]}),
        # port 0 (which the docs warn against): each worker its own port, all listed
        ([_bound(dot=["127.0.0.1:40001"]), _bound(dot=["127.0.0.1:40002"])],
         {"dot": ["127.0.0.1:40001", "127.0.0.1:40002"]}),
    ],
)  # fmt: skip
def test_startup_line_lists_the_encrypted_listeners_the_workers_bound(reports, expected) -> None:
    assert encrypted_listeners(reports) == expected
