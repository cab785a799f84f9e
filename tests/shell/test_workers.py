"""The supervisor's pure parts: adding up worker counters, report frames, --workers values."""

from __future__ import annotations

import os
import pickle

import pytest

from resolver.observe.metrics import ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.shell.workers import ReportReader, Worker, WorkerReport, encode_report, worker_count


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
