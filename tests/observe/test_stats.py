"""The hot-path recorder: what each call records, bucket edges, bounded label sets."""

from __future__ import annotations

import bisect
import pickle
import random

import pytest

from resolver.observe.stats import (
    BLOCKED_KEYS,
    DURATION_BUCKETS,
    OTHER,
    QTYPE_LABELS,
    RCODE_LABELS,
    RESULTS,
    SHED_KEYS,
    Histogram,
    Stats,
)


@pytest.mark.parametrize(
    ("qtype", "label"),
    [(1, "A"), (28, "AAAA"), (65, "HTTPS"), (64, "SVCB"), (255, "ANY"), (15, "MX"), (16, "TXT"),
     (5, "CNAME"), (2, "NS"), (12, "PTR"), (6, "SOA"), (33, "SRV"), (43, "DS"), (48, "DNSKEY"),
     (0, OTHER), (-1, OTHER), (99, OTHER), (252, OTHER), (65535, OTHER), (1 << 20, OTHER)],
)  # fmt: skip
def test_query_maps_qtype_to_bounded_label(qtype: int, label: str) -> None:
    stats = Stats()
    stats.query("udp", qtype, "answered", 0.001)
    assert stats.queries == {("udp", label, "answered"): 1}


@pytest.mark.parametrize("result", RESULTS)
@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_query_counts_each_result_and_protocol(protocol: str, result: str) -> None:
    stats = Stats()
    for _ in range(3):
        stats.query(protocol, 28, result, 0.0002)
    assert stats.queries == {(protocol, "AAAA", result): 3}
    assert sum(stats.durations[result].counts) == 3
    assert stats.durations[result].total == pytest.approx(0.0006)
    others = [r for r in RESULTS if r != result]
    assert all(sum(stats.durations[r].counts) == 0 for r in others)


@pytest.mark.parametrize("result", ["forwarded", "BLOCKED", "", "other"])
def test_unknown_result_is_refused_not_a_new_series(result: str) -> None:
    stats = Stats()
    with pytest.raises(KeyError):
        stats.query("udp", 1, result, 0.001)
    assert stats.queries == {}


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0),
        (0.00001, 0),
        (0.00005, 0),  # on a bound: `le` is inclusive
        (0.0000501, 1),
        (0.0001, 1),
        (0.0007, 4),
        (0.001, 4),
        (0.3, 12),
        (5.0, 15),
        (5.0001, 16),  # +Inf
        (60.0, 16),
    ],
)
def test_histogram_places_observation_in_le_bucket(seconds: float, bucket: int) -> None:
    histogram = Histogram()
    histogram.observe(seconds)
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    expected[bucket] = 1
    assert histogram.counts == expected
    cumulative = histogram.cumulative()
    assert [bound for bound, _ in cumulative] == [*DURATION_BUCKETS, float("inf")]
    assert [count for _, count in cumulative] == [int(i >= bucket) for i in range(len(expected))]


def test_histogram_cumulative_sums_and_total() -> None:
    histogram = Histogram()
    values = [0.00003, 0.00004, 0.0003, 0.02, 0.02, 7.0]
    for value in values:
        histogram.observe(value)
    cumulative = dict(histogram.cumulative())
    assert cumulative[0.00005] == 2
    assert cumulative[0.0005] == 3
    assert cumulative[0.025] == 5
    assert cumulative[5.0] == 5
    assert cumulative[float("inf")] == len(values) == sum(histogram.counts)
    assert histogram.total == pytest.approx(sum(values))


def test_buckets_resolve_sub_millisecond_answers() -> None:
    below_ms = [b for b in DURATION_BUCKETS if b < 0.001]
    assert len(below_ms) >= 4
    assert list(DURATION_BUCKETS) == sorted(set(DURATION_BUCKETS))


@pytest.mark.parametrize(
    ("rcode", "label"),
    [(0, "NOERROR"), (1, "FORMERR"), (2, "SERVFAIL"), (3, "NXDOMAIN"), (4, "NOTIMP"),
     (5, "REFUSED"), (9, "NOTAUTH"), (16, "BADVERS"), (11, OTHER), (15, OTHER), (23, OTHER),
     (4095, OTHER), (-3, OTHER)],
)  # fmt: skip
def test_rcode_maps_to_bounded_label(rcode: int, label: str) -> None:
    stats = Stats()
    stats.rcode(rcode)
    stats.rcode(rcode)
    assert stats.rcodes == {label: 2}


def test_blocked_counts_per_decision_labels() -> None:
    stats = Stats()
    stats.blocked("officials", "be-federal", "tiktok", "null_ip")
    stats.blocked("officials", "be-federal", "tiktok", "null_ip")
    stats.blocked("officials", "", "tiktok", "nxdomain")
    stats.blocked("press", "", "gov-extra", "null_ip")
    assert stats.blocks == {
        ("officials", "be-federal", "tiktok", "null_ip"): 2,
        ("officials", "", "tiktok", "nxdomain"): 1,
        ("press", "", "gov-extra", "null_ip"): 1,
    }


@pytest.mark.parametrize(
    ("calls", "counts", "observed"),
    [
        ([("ok", 0.002)], {"ok": 1}, 1),
        ([("timeout", None), ("timeout", None)], {"timeout": 2}, 0),
        ([("ok", 0.01), ("servfail", None), ("ok", 0.3)], {"ok": 2, "servfail": 1}, 2),
        ([("bad_reply", None), ("error", 0.1)], {"bad_reply": 1, "error": 1}, 1),
    ],
)
def test_upstream_counts_outcomes_and_latency_when_given(
    calls: list[tuple[str, float | None]], counts: dict[str, int], observed: int
) -> None:
    stats = Stats()
    for outcome, seconds in calls:
        stats.upstream("127.0.0.1:53", outcome, seconds)
    assert stats.upstreams == {("127.0.0.1:53", o): n for o, n in counts.items()}
    histogram = stats.upstream_durations.get("127.0.0.1:53")
    assert (sum(histogram.counts) if histogram else 0) == observed
    if histogram:
        expected = sum(s for _, s in calls if s is not None)
        assert histogram.total == pytest.approx(expected)


def test_upstream_latency_is_kept_per_upstream() -> None:
    stats = Stats()
    stats.upstream("127.0.0.1:53", "ok", 0.001)
    stats.upstream("[::1]:53", "ok", 0.2)
    assert sorted(stats.upstream_durations) == ["127.0.0.1:53", "[::1]:53"]
    assert stats.upstream_durations["[::1]:53"].total == pytest.approx(0.2)


def test_count_and_snapshot_keep_old_keys_and_add_results() -> None:
    stats = Stats()
    stats.count("malformed.short_header")
    stats.count("tcp.accepted", 3)
    stats.count("reload.ok")
    stats.query("udp", 1, "blocked", 0.0001)
    stats.query("tcp", 1, "blocked", 0.0001)
    stats.query("udp", 16, "answered", 0.01)
    assert stats.summary() == {
        "malformed.short_header": 1,
        "query.answered": 1,
        "query.blocked": 2,
        "reload.ok": 1,
        "tcp.accepted": 3,
    }
    assert list(stats.summary()) == sorted(stats.summary())


def test_results_lists_every_result_with_zeros() -> None:
    stats = Stats()
    stats.query("udp", 1, "refused", 0.0)
    stats.query("udp", 255, "refused", 0.0)
    totals = stats.results()
    assert list(totals) == list(RESULTS)
    assert totals["refused"] == 2
    assert sum(totals.values()) == 2


def test_labels_stay_bounded_under_random_input() -> None:
    rng = random.Random(4)
    stats = Stats()
    for _ in range(10_000):
        stats.query(rng.choice(("udp", "tcp")), rng.randrange(-10, 70000), rng.choice(RESULTS),
                    rng.random() * 10)  # fmt: skip
        stats.rcode(rng.randrange(-10, 5000))
    qtypes = {qtype for _, qtype, _ in stats.queries}
    assert qtypes <= {*QTYPE_LABELS.values(), OTHER}
    assert len(stats.queries) <= 2 * (len(QTYPE_LABELS) + 1) * len(RESULTS)
    assert set(stats.rcodes) <= {*RCODE_LABELS.values(), OTHER}
    assert sum(stats.rcodes.values()) == 10_000
    assert sum(stats.queries.values()) == 10_000
    assert sum(sum(h.counts) for h in stats.durations.values()) == 10_000


def test_merge_adds_another_workers_tables_and_survives_pickling() -> None:
    first, second = Stats(), Stats()
    first.query("udp", 1, "blocked", 0.0001)
    first.rcode(0)
    first.blocked("g", "", "tiktok", "null_ip")
    first.upstream("127.0.0.1:53", "ok", 0.01)
    first.count("tcp.accepted")
    first.gc_pause(0, 0.001)
    for _ in range(2):
        second.query("udp", 1, "blocked", 0.0001)
        second.query("tcp", 28, "answered", 0.03)
        second.rcode(0)
        second.blocked("g", "", "tiktok", "null_ip")
        second.upstream("127.0.0.1:53", "ok", 0.02)
        second.upstream("[::1]:53", "timeout", None)
        second.count("tcp.accepted")
        second.gc_pause(2, 0.04)
    first.merge(pickle.loads(pickle.dumps(second)))
    assert first.queries == {("udp", "A", "blocked"): 3, ("tcp", "AAAA", "answered"): 2}
    assert first.rcodes == {"NOERROR": 3}
    assert first.blocks == {("g", "", "tiktok", "null_ip"): 3}
    assert first.upstreams == {("127.0.0.1:53", "ok"): 3, ("[::1]:53", "timeout"): 2}
    assert first.counts == {"tcp.accepted": 3}
    assert sum(first.durations["blocked"].counts) == 3
    assert first.durations["answered"].total == pytest.approx(0.06)
    assert sum(first.upstream_durations["127.0.0.1:53"].counts) == 3
    assert first.upstream_durations["127.0.0.1:53"].total == pytest.approx(0.05)
    assert "[::1]:53" not in first.upstream_durations
    pauses = {generation: sum(h.counts) for generation, h in first.gc_pauses.items()}
    assert pauses == {"0": 1, "1": 0, "2": 2}
    assert first.gc_pauses["2"].total == pytest.approx(0.08)


def test_reset_zeroes_every_table_in_place() -> None:
    """The supervisor's total is reset in place before the workers' reports are added up again
    (a compiled Stats runs `__init__` only once, so that cannot be how)."""
    stats = Stats()
    stats.query("udp", 1, "blocked", 0.0001)
    stats.rcode(0)
    stats.blocked("g", "", "tiktok", "null_ip")
    stats.rate_limited("g", "queries", "drop")
    stats.upstream("127.0.0.1:53", "ok", 0.01)
    stats.count("tcp.accepted")
    stats.gc_pause(0, 0.001)
    stats.block_answered("udp", 1, 0.00002, ("g", "", "l", "null_ip"), 0)
    stats.reset()
    fresh = Stats()
    assert pickle.dumps(stats) == pickle.dumps(fresh)
    assert not any(stats.results().values()) and not stats.counts


BLOCKS = [  # (protocol, qtype, seconds, labels, rcode)
    ("udp", 1, 0.00002, ("officials", "be-federal", "tiktok", "null_ip"), 0),
    ("udp", 1, 0.00004, ("officials", "be-federal", "tiktok", "null_ip"), 0),
    ("tcp", 28, 0.0003, ("officials", "", "tiktok", "nxdomain"), 3),
    ("dot", 65, 0.002, ("press", "", "gov-extra", "refused"), 5),
    ("doh", 99, 0.5, ("press", "", "gov-extra", "null_ip"), 11),
]


@pytest.mark.parametrize("count", [1, 2, len(BLOCKS)])
def test_block_answered_records_what_query_rcode_and_blocked_would(count: int) -> None:
    one, three = Stats(), Stats()
    for protocol, qtype, seconds, labels, rcode in BLOCKS[:count]:
        one.block_answered(protocol, qtype, seconds, labels, rcode)
        three.query(protocol, qtype, "blocked", seconds)
        three.rcode(rcode)
        three.blocked(*labels)
    assert (one.queries, one.rcodes, one.blocks) == (three.queries, three.rcodes, three.blocks)
    assert one.durations["blocked"].counts == three.durations["blocked"].counts
    assert one.results() == three.results() and one.summary() == three.summary()


def test_blocks_not_yet_shared_out_survive_pickling_and_merging() -> None:
    worker = Stats()
    worker.block_answered("udp", 1, 0.00002, ("g", "", "l", "null_ip"), 0)
    total = Stats()
    total.blocked("g", "", "l", "null_ip")
    total.merge(pickle.loads(pickle.dumps(worker)))
    assert total.blocks == {("g", "", "l", "null_ip"): 2}
    assert total.queries == {("udp", "A", "blocked"): 1}
    assert total.rcodes == {"NOERROR": 1}


@pytest.mark.parametrize(
    "seconds",
    [0.0, DURATION_BUCKETS[0] / 2, DURATION_BUCKETS[0], DURATION_BUCKETS[0] * 1.000001,
     DURATION_BUCKETS[1], 0.003, DURATION_BUCKETS[-1], DURATION_BUCKETS[-1] * 2],
)  # fmt: skip
def test_every_duration_falls_in_the_slot_bisect_gives(seconds: float) -> None:
    slot = bisect.bisect_left(DURATION_BUCKETS, seconds)
    histogram = Histogram()
    histogram.observe(seconds)
    stats = Stats()
    stats.query("udp", 1, "cached", seconds)
    stats.block_answered("udp", 1, seconds, ("g", "", "l", "null_ip"), 0)
    stats.shed("g", "client_zone", "drop", "udp", 1, seconds)
    for counts in (histogram.counts, stats.durations["cached"].counts,
                   stats.durations["blocked"].counts, stats.durations["dropped"].counts):
        assert counts.index(1) == slot and sum(counts) == 1


SHEDS = {
    "one drop": [("default", "client_zone", "drop", "udp", 1, 0.00001)],
    "a flood, two limits, two types": [
        ("default", "client_zone", "drop", "udp", 1, 0.00002),
        ("default", "client_zone", "drop", "udp", 28, 0.00003),
        ("default", "zone", "drop", "udp", 1, 0.0004),
        ("kids", "upstream", "drop", "tcp", 99, 0.2),
    ] * 3,
    "at and around the first bucket's bound": [
        ("default", "client_zone", "drop", "udp", 1, seconds)
        for seconds in (0.0, DURATION_BUCKETS[0], DURATION_BUCKETS[0] * 1.000001, 0.0001)
    ],
    "a flood of every query type, more than the table keeps apart": [
        ("default", "client_zone", "drop", "udp", qtype % 3000, 0.00001)
        for qtype in range(SHED_KEYS * 3)
    ],
}


@pytest.mark.parametrize("sheds", SHEDS.values(), ids=SHEDS.keys())
def test_shed_records_what_rate_limited_and_a_dropped_query_record(
    sheds: list[tuple[str, str, str, str, int, float]],
) -> None:
    one_call, two_calls = Stats(), Stats()
    for index, (group, limit, action, protocol, qtype, seconds) in enumerate(sheds):
        one_call.shed(group, limit, action, protocol, qtype, seconds)
        two_calls.rate_limited(group, limit, action)
        two_calls.query(protocol, qtype, "dropped", seconds)
        if index % 3 == 1:  # a scrape in the middle of the flood reads every shed so far
            assert one_call.limited == two_calls.limited
            assert one_call.queries == two_calls.queries
    assert one_call.limited == two_calls.limited
    assert one_call.queries == two_calls.queries
    assert one_call.rcodes == two_calls.rcodes == {}
    for result in RESULTS:
        assert one_call.durations[result].counts == two_calls.durations[result].counts
        assert one_call.durations[result].total == two_calls.durations[result].total
    assert one_call.summary() == two_calls.summary()
    assert sum(one_call.limited.values()) == len(sheds)
    # A worker's report, pickled before anything read it, merges the same.
    worker = Stats()
    for group, limit, action, protocol, qtype, seconds in sheds:
        worker.shed(group, limit, action, protocol, qtype, seconds)
    merged, expected = Stats(), Stats()
    merged.merge(pickle.loads(pickle.dumps(worker)))
    expected.merge(two_calls)
    assert (merged.limited, merged.queries) == (expected.limited, expected.queries)


def test_sheds_of_every_query_type_stay_bounded_unscraped() -> None:
    stats = Stats()
    for qtype in range(SHED_KEYS * 5):
        stats.shed("default", "client_zone", "drop", "udp", qtype, 0.00001)
        assert len(stats._shed) <= SHED_KEYS
    assert stats.limited == {("default", "client_zone", "drop"): SHED_KEYS * 5}
    assert sum(stats.queries.values()) == SHED_KEYS * 5


@pytest.mark.parametrize("types", [1, BLOCKED_KEYS, BLOCKED_KEYS + 1, 3 * BLOCKED_KEYS + 7])
def test_blocks_of_many_types_stay_bounded_and_counted_exactly(types: int) -> None:
    """A block is kept apart by its query type's number: blocked names asked with every type
    are shared out once `BLOCKED_KEYS` are kept, not left to grow until a scrape."""
    stats, reference = Stats(), Stats()
    for qtype in range(types):
        for _ in range(2):
            stats.block_answered("udp", qtype, 0.00002, ("g", "", "l", "null_ip"), 3)
            reference.query("udp", qtype, "blocked", 0.00002)
            reference.rcode(3)
            reference.blocked("g", "", "l", "null_ip")
        assert len(stats._blocked) <= BLOCKED_KEYS
    assert (stats.queries, stats.rcodes, stats.blocks) == (
        reference.queries, reference.rcodes, reference.blocks
    )
    assert stats.durations["blocked"].counts == reference.durations["blocked"].counts
