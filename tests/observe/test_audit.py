"""Tests for observe/audit.py: event schema, privacy, folding, rate cap, rotation, escaping."""

from __future__ import annotations

import gc
import hashlib
import hmac
import io
import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import pytest

from resolver.observe.audit import (
    FOLD_KEYS,
    OPERATOR_EVENTS_PER_SECOND,
    AuditLog,
    pseudonym,
    truncate_address,
)
from resolver.policy.engine import Action, Decision
from resolver.protocol.names import from_text
from resolver.protocol.wire import Query, parse_query

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BLOCK_FIELDS = {"timestamp", "level", "event", "client", "group", "qname", "qtype", "policy",
                "entry", "rule", "reference", "answer"}  # fmt: skip


BLOCK = Decision(Action.BLOCK, "ministry", "tiktok-ban", "tiktok", "tiktok.com", "Decree 2023/17",
                 "null_ip")  # fmt: skip


def block(**changes: Any) -> Decision:
    return replace(BLOCK, **changes)


class Clock:
    """An injected monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(name: str | tuple[bytes, ...], qtype: str = "A") -> Query:
    qname = dns.name.Name((*name, b"")) if isinstance(name, tuple) else dns.name.from_text(name)
    return parse_query(dns.message.make_query(qname, qtype).to_wire())


def make(**options: Any) -> tuple[AuditLog, io.StringIO, Clock]:
    stream = io.StringIO()
    clock = Clock()
    return AuditLog(stream, clock=clock, **options), stream, clock


def events(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as JSON, after checking it holds only printable ASCII."""
    assert text == "" or text.endswith("\n")
    lines = text.splitlines()
    for line in lines:
        assert all(0x20 <= ord(char) < 0x7F for char in line), repr(line)
    return [json.loads(line) for line in lines]


def blocks(stream: io.StringIO) -> list[dict[str, Any]]:
    return [e for e in events(stream.getvalue()) if e["event"] == "blocked"]


# Event schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "qtype", "extra"),
    [
        (block(), "A", {}),
        (block(policy=None, reference=None), "HTTPS", {}),
        (block(cname=from_text("edge.tiktokcdn.com")), "AAAA", {"cname": "edge.tiktokcdn.com"}),
        (block(cname=None), "A", {}),
        (block(cname=b"\x04Edge\x03cdn\x00"), "A", {"cname": "Edge.cdn"}),
        (block(cname=b"\x02\n\x1b\x00"), "A", {"cname": "\\010\\027"}),
        # A block through a catalogue entry lists the entry's decisions; others write none.
        (block(decisions=("EU 2023-02-23", "BE 2023-03-10")), "A",
         {"decisions": ["EU 2023-02-23", "BE 2023-03-10"]}),
        (block(policy=None, reference="/etc/dnswarden/ops.txt", decisions=()), "A", {}),
    ],
)
def test_blocked_event_schema(decision: Decision, qtype: str, extra: dict[str, str]) -> None:
    """`cname`, set by response inspection, comes as a wire name rendered here."""
    log, stream, _ = make()
    log.blocked("192.0.2.7", query("H1.TikTok.com.", qtype), decision)
    [event] = events(stream.getvalue())
    assert set(event) == BLOCK_FIELDS | set(extra)
    assert event["event"] == "blocked"
    assert event["level"] == "info"
    assert event["client"] == "192.0.2.7"
    assert event["qname"] == "h1.tiktok.com"
    assert event["qtype"] == qtype
    for field, attribute in (("group", "group"), ("policy", "policy"), ("entry", "list_name"),
                             ("rule", "rule"), ("reference", "reference"), ("answer", "answer")):
        assert event[field] == getattr(decision, attribute)
    for field, value in extra.items():
        assert event[field] == value
    assert TIMESTAMP.fullmatch(event["timestamp"])
    written = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - written).total_seconds()) < 5


@pytest.mark.parametrize(
    ("call", "event_name", "level", "fields"),
    [
        (lambda log: log.info("startup", listeners=["127.0.0.1:53"]), "startup", "info",
         {"listeners": ["127.0.0.1:53"]}),
        (lambda log: log.warning("upstream_health", upstream="[::1]:53"), "upstream_health",
         "warning", {"upstream": "[::1]:53"}),
        (lambda log: log.error("reload_failed", problems=["x"]), "reload_failed", "error",
         {"problems": ["x"]}),
        (lambda log: log.upstream_failed("127.0.0.2:53", "timeout", query("a.example.")),
         "upstream_failed", "warning", {"upstream": "127.0.0.2:53", "reason": "timeout",
                                        "qname": "a.example", "qtype": "A"}),
        (lambda log: log.allowed("10.0.0.9", query("b.example.", "MX"), 3), "query", "info",
         {"client": "10.0.0.9", "qname": "b.example", "qtype": "MX", "rcode": 3}),
    ],
)  # fmt: skip
def test_other_events(call: Any, event_name: str, level: str, fields: dict[str, Any]) -> None:
    log, stream, _ = make()
    call(log)
    [event] = events(stream.getvalue())
    assert event["event"] == event_name
    assert event["level"] == level
    assert {key: event[key] for key in fields} == fields


@pytest.mark.parametrize(
    ("level", "written"),
    [
        ("debug", ["blocked", "query", "i", "w", "e"]),
        ("info", ["blocked", "query", "i", "w", "e"]),
        ("warning", ["w", "e"]),
        ("error", ["e"]),
    ],
)
def test_levels_filter_events(level: str, written: list[str]) -> None:
    log, stream, _ = make(level=level)
    log.blocked("10.0.0.1", query("tiktok.com."), block())
    log.allowed("10.0.0.1", query("example.org."), 0)
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in events(stream.getvalue())] == written
    assert log.info_enabled == (level in ("debug", "info"))


# Privacy -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("10.1.2.255", "10.1.2.0/24"),
        ("0.0.0.0", "0.0.0.0/24"),
        ("2001:db8:abcd:12:34::1", "2001:db8:abcd::/48"),
        ("2001:DB8:ABCD:FFFF::1", "2001:db8:abcd::/48"),
        ("::1", "::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("", "invalid"),
        ("not-an-address", "invalid"),
        ("192.0.2.1:53", "invalid"),
        ("1.2.3", "invalid"),
        ("999.1.1.1", "invalid"),
        ("10.0.0.1\n", "invalid"),
        ("\x1b[31m\x00", "invalid"),
    ],
)
def test_truncate_address(client: str, network: str) -> None:
    assert truncate_address(client) == network


def expected_pseudonym(key: bytes, canonical: str) -> str:
    data = canonical.encode("utf-8", "surrogatepass")
    return "h:" + hmac.new(key, data, hashlib.sha256).hexdigest()[:16]


@pytest.mark.parametrize(
    ("privacy", "client", "shown"),
    [
        ("raw", "192.0.2.7", "192.0.2.7"),
        ("raw", "2001:db8::7", "2001:db8::7"),
        ("truncate", "192.0.2.7", "192.0.2.0/24"),
        ("truncate", "2001:db8:1:2::7", "2001:db8:1::/48"),
        ("truncate", "garbage\n", "invalid"),
        ("pseudonymise", "192.0.2.7", expected_pseudonym(KEY, "192.0.2.7")),
        ("pseudonymise", "::ffff:192.0.2.7", expected_pseudonym(KEY, "192.0.2.7")),
        ("pseudonymise", "2001:DB8:0::7", expected_pseudonym(KEY, "2001:db8::7")),
        ("pseudonymise", "garbage", expected_pseudonym(KEY, "garbage")),
        ("pseudonymise", "\udcff\n", expected_pseudonym(KEY, "\udcff\n")),
    ],
)
def test_privacy_modes(privacy: str, client: str, shown: str) -> None:
    log, stream, _ = make(privacy=privacy, key=KEY if privacy == "pseudonymise" else None)
    log.blocked(client, query("tiktok.com."), block())
    log.allowed(client, query("example.org."), 0)
    log.info("note", client=client)
    lines = events(stream.getvalue())
    assert [e["client"] for e in lines] == [shown] * 3
    if privacy != "raw" and client:
        assert client.strip() not in stream.getvalue()


def test_pseudonyms_are_stable_per_key_and_change_with_it() -> None:
    addresses = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    first = [pseudonym(KEY, a) for a in addresses]
    assert first == [pseudonym(KEY, a) for a in addresses]
    assert len(set(first)) == len(addresses)
    rotated = [pseudonym(OTHER_KEY, a) for a in addresses]
    assert not set(first) & set(rotated)
    assert all(re.fullmatch(r"h:[0-9a-f]{16}", p) for p in first + rotated)


def test_key_rotation_changes_pseudonyms_and_key_id() -> None:
    log, stream, _ = make(privacy="pseudonymise", key=KEY, fold_window=0)
    other, _, _ = make(privacy="pseudonymise", key=KEY)
    raw, _, _ = make(privacy="truncate", key=KEY)
    first_id = log.key_id()
    assert first_id is not None
    assert first_id == other.key_id()
    assert raw.key_id() is None
    assert KEY.hex() not in first_id and KEY.decode() not in first_id
    log.blocked("192.0.2.1", query("tiktok.com."), block())
    log.set_privacy("pseudonymise", OTHER_KEY)
    log.blocked("192.0.2.1", query("tiktok.com."), block())
    before, after = (e["client"] for e in blocks(stream))
    assert before == expected_pseudonym(KEY, "192.0.2.1")
    assert after == expected_pseudonym(OTHER_KEY, "192.0.2.1")
    assert log.key_id() not in (None, first_id)
    log.set_privacy("raw")
    assert log.key_id() is None


def test_key_change_summarises_pending_folds_under_the_old_key() -> None:
    log, stream, _ = make(privacy="pseudonymise", key=KEY)
    for _ in range(3):
        log.blocked("192.0.2.1", query("tiktok.com."), block())
    log.set_privacy("pseudonymise", OTHER_KEY)
    log.blocked("192.0.2.1", query("tiktok.com."), block())
    assert [(e["client"], e.get("repeated")) for e in blocks(stream)] == [
        (expected_pseudonym(KEY, "192.0.2.1"), None),
        (expected_pseudonym(KEY, "192.0.2.1"), 2),
        (expected_pseudonym(OTHER_KEY, "192.0.2.1"), None),
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"privacy": "pseudonymise"},
        {"privacy": "pseudonymise", "key": b"short"},
        {"privacy": "hashed", "key": KEY},
        {"level": "verbose"},
        {"fold_window": -1.0},
        {"max_events_per_second": 0},
        {"file": "x.log", "file_max_bytes": 0},
        {"file": "x.log", "file_backups": -1},
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuditLog(io.StringIO(), **options)


# Folding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("closed_by", "lines_after"),
    [("tick", 2), ("next_event", 3), ("close", 2)],
)
def test_identical_blocks_fold_into_one_summary(closed_by: str, lines_after: int) -> None:
    log, stream, clock = make(fold_window=10.0)
    for _ in range(10):
        log.blocked("192.0.2.7", query("h1.tiktok.com."), block())
        clock.now += 0.5
    log.tick()
    [first] = blocks(stream)
    assert "repeated" not in first
    if closed_by == "close":
        log.close()
    else:
        clock.now += 6.0  # 11 s after the first event: the window has closed
        if closed_by == "tick":
            log.tick()
        else:
            log.blocked("192.0.2.7", query("h1.tiktok.com."), block())
    written = blocks(stream)
    assert len(written) == lines_after
    summary = written[1]
    assert summary["repeated"] == 9
    assert summary["first_seen"] == first["timestamp"]
    assert summary["first_seen"] <= summary["last_seen"] <= summary["timestamp"]
    assert {k: v for k, v in summary.items() if k not in ("timestamp", "repeated", "first_seen",
            "last_seen")} == {k: v for k, v in first.items() if k != "timestamp"}  # fmt: skip
    if closed_by == "next_event":
        assert "repeated" not in written[2]


def test_the_closing_event_is_the_last_line() -> None:
    """`shutdown` ends the trail: pending fold summaries and the suppression report come
    before it, and a spent operator budget cannot drop it."""
    log, stream, _ = make(fold_window=10.0)
    for _ in range(3):
        log.blocked("192.0.2.7", query("h1.tiktok.com."), block())
    for index in range(int(OPERATOR_EVENTS_PER_SECOND) + 3):
        log.info("note", index=index)
    log.close("shutdown", counts={"blocked": 3})
    written = events(stream.getvalue())
    names = [e["event"] for e in written]
    assert names[-1] == "shutdown" and names.count("shutdown") == 1
    assert (written[-1]["level"], written[-1]["counts"]) == ("info", {"blocked": 3})
    assert [e["repeated"] for e in written if "repeated" in e] == [2]
    [report] = [e for e in written if e["event"] == "audit_suppressed"]
    assert report["events"] == {"note": 3}


@pytest.mark.parametrize(
    ("second_client", "second_name", "second_decision"),
    [
        ("192.0.2.8", "h1.tiktok.com.", block()),
        ("192.0.2.7", "h2.tiktok.com.", block()),
        ("192.0.2.7", "h1.tiktok.com.", block(policy="other-ban")),
    ],
)
def test_only_identical_events_fold(second_client: str, second_name: str,
                                    second_decision: Decision) -> None:  # fmt: skip
    log, stream, clock = make()
    for _ in range(3):
        log.blocked("192.0.2.7", query("h1.tiktok.com."), block())
        log.blocked(second_client, query(second_name), second_decision)
    assert len(blocks(stream)) == 2
    clock.now += 11
    log.tick()
    assert [e.get("repeated") for e in blocks(stream)] == [None, None, 2, 2]


def test_summary_lists_every_query_type_seen() -> None:
    log, stream, clock = make()
    for qtype in ("A", "AAAA", "HTTPS", "A"):
        log.blocked("192.0.2.7", query("tiktok.com."), block())
        log.blocked("192.0.2.9", query("tiktok.com.", qtype), block())
    clock.now += 11
    log.tick()
    first, _, same_type, mixed = blocks(stream)
    assert first["qtype"] == "A"
    assert "qtypes" not in same_type
    assert mixed["qtypes"] == ["A", "AAAA", "HTTPS"]
    assert mixed["repeated"] == 3


def test_no_summary_for_a_single_event() -> None:
    log, stream, clock = make()
    log.blocked("192.0.2.7", query("tiktok.com."), block())
    clock.now += 60
    log.tick()
    log.close()
    assert len(blocks(stream)) == 1


def test_fold_window_zero_turns_folding_off() -> None:
    log, stream, _ = make(fold_window=0)
    for _ in range(10):
        log.blocked("192.0.2.7", query("tiktok.com."), block())
    log.tick()
    assert len(blocks(stream)) == 10


def test_fold_table_is_bounded() -> None:
    log, stream, clock = make(max_events_per_second=10**9)
    extra = 50
    for index in range(FOLD_KEYS + extra):
        log.blocked("192.0.2.7", query(f"n{index}.tiktok.com."), block())
    assert len(blocks(stream)) == FOLD_KEYS + extra
    # A repeat of a name that got a fold is counted; one that did not is written again.
    log.blocked("192.0.2.7", query("n0.tiktok.com."), block())
    log.blocked("192.0.2.7", query(f"n{FOLD_KEYS}.tiktok.com."), block())
    assert len(blocks(stream)) == FOLD_KEYS + extra + 1
    # Once the windows close the table empties and folding works again.
    clock.now += 11
    log.tick()
    summaries = [e for e in blocks(stream) if "repeated" in e]
    assert [(e["qname"], e["repeated"]) for e in summaries] == [("n0.tiktok.com", 1)]
    for _ in range(3):
        log.blocked("192.0.2.7", query(f"n{FOLD_KEYS}.tiktok.com."), block())
    assert len(blocks(stream)) == FOLD_KEYS + extra + 3


def test_a_fold_leaves_one_object_for_the_cyclic_gc() -> None:
    """Up to FOLD_KEYS folds live a window each: a flood of distinct blocks must not keep more
    than the fold itself for the cyclic GC (a set of query types did), which walks each at every
    collection that pauses the loop. The summaries stay whole (fields, query types)."""
    log, stream, clock = make(max_events_per_second=10**9)
    queries = [query(f"n{index}.tiktok.com.") for index in range(300)]
    for _ in range(2):
        gc.collect()
    before = len(gc.get_objects())
    for asked in queries:
        log.blocked("192.0.2.7", asked, block())
    for _ in range(2):
        gc.collect()
    assert 300 <= len(gc.get_objects()) - before < 330  # the folds; two each would be 600
    log.blocked("192.0.2.7", query("n7.tiktok.com.", "AAAA"), block())
    log.blocked("192.0.2.7", query("n7.tiktok.com.", "AAAA"), block())
    clock.now += 11
    log.tick()
    (summary,) = [e for e in blocks(stream) if "repeated" in e]
    assert summary.keys() >= BLOCK_FIELDS
    assert (summary["qname"], summary["qtype"], summary["qtypes"]) == ("n7.tiktok.com", "A",
                                                                      ["A", "AAAA"])  # fmt: skip
    assert (summary["repeated"], summary["reference"]) == (2, "Decree 2023/17")


# Rate cap ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "rate", "step", "fold_window"),
    [
        (5000, 100, 0.0, 10.0),  # 5,000 distinct blocks in one instant
        (5000, 100, 0.001, 10.0),  # the same over 5 s
        (5000, 100, 0.0, 0.0),  # identical blocks, folding off
        (300, 1000, 0.0, 10.0),  # under the cap: nothing dropped
    ],
)
def test_rate_cap_bounds_the_log(count: int, rate: int, step: float, fold_window: float) -> None:
    log, stream, clock = make(max_events_per_second=rate, fold_window=fold_window)
    start = clock.now
    for index in range(count):
        name = "tiktok.com." if fold_window == 0 else f"n{index}.tiktok.com."
        log.blocked("192.0.2.7", query(name), block())
        clock.now += step
        if index % 1000 == 999:
            log.tick()
    log.close()
    written = events(stream.getvalue())
    blocked = [e for e in written if e["event"] == "blocked"]
    reports = [e for e in written if e["event"] == "audit_suppressed"]
    elapsed = clock.now - start
    assert len(blocked) <= rate * (elapsed + 1) + 1
    assert len(reports) <= int(elapsed) + 2  # one a second, and the last one at close
    assert len(blocked) + sum(r["dropped"] for r in reports) == count
    assert log.dropped_total == count - len(blocked)
    if count > rate * (elapsed + 1):
        assert reports and all(r["events"] == {"blocked": r["dropped"]} for r in reports)
    else:
        assert reports == []
    if step == 0:
        assert len(blocked) == min(count, rate)


def test_five_thousand_blocks_at_a_hundred_per_second() -> None:
    log, stream, _ = make(max_events_per_second=100)
    for index in range(5000):
        log.blocked("192.0.2.7", query(f"n{index}.tiktok.com."), block())
    log.tick()
    written = events(stream.getvalue())
    assert [e["event"] for e in written] == ["blocked"] * 100 + ["audit_suppressed"]
    assert written[-1]["dropped"] == 4900
    assert written[-1]["level"] == "warning"


def test_idle_time_does_not_bank_more_than_one_second_of_events() -> None:
    log, stream, clock = make(max_events_per_second=100)
    clock.now += 3600
    for index in range(1000):
        log.blocked("192.0.2.7", query(f"n{index}.tiktok.com."), block())
    assert len(blocks(stream)) == 100


def test_traffic_events_share_the_cap_and_report_once_a_second() -> None:
    log, stream, clock = make(max_events_per_second=5)
    for _ in range(20):
        log.warning("upstream_failed")
        log.error("internal_error")
    log.tick()
    log.tick()  # a second tick in the same second must not add a report line
    written = events(stream.getvalue())
    assert len(written) == 5 + 1
    [report] = [e for e in written if e["event"] == "audit_suppressed"]
    assert report["dropped"] == 35
    assert report["events"] == {"upstream_failed": 17, "internal_error": 18}
    clock.now += 1.0
    log.tick()
    after = events(stream.getvalue())
    assert [e["event"] for e in after].count("audit_suppressed") == 1  # nothing new dropped


def test_operator_events_have_their_own_budget() -> None:
    """A flood of blocks must never hide a reload, and operator events are bounded too."""
    log, stream, _ = make(max_events_per_second=5)
    for index in range(1000):
        log.blocked("192.0.2.7", query(f"n{index}.tiktok.com."), block())
    log.info("reloaded", lists={"tiktok": 35})
    log.error("reload_failed", problems=["x.yaml:3: listen: bad"])
    for index in range(100):
        log.info("note", index=index)
    log.tick()
    written = events(stream.getvalue())
    names = [e["event"] for e in written]
    assert names.count("blocked") == 5
    assert "reloaded" in names and "reload_failed" in names
    assert names.count("note") == OPERATOR_EVENTS_PER_SECOND - 2
    [report] = [e for e in written if e["event"] == "audit_suppressed"]
    assert report["events"]["blocked"] == 995
    assert report["events"]["note"] == 100 - (OPERATOR_EVENTS_PER_SECOND - 2)


# File output and rotation --------------------------------------------------------------------


@pytest.mark.parametrize(("max_bytes", "backups"), [(2000, 3), (700, 1), (3000, 0)])
def test_file_rotation(tmp_path: Path, max_bytes: int, backups: int) -> None:
    path = tmp_path / "audit.log"
    log, stream, _ = make(file=str(path), file_max_bytes=max_bytes, file_backups=backups,
                          fold_window=0, max_events_per_second=10**6)  # fmt: skip
    for index in range(200):
        log.blocked(f"192.0.2.{index % 250}", query(f"n{index}.tiktok.com."), block())
    log.close()
    expected = [path] + [tmp_path / f"audit.log.{n}" for n in range(1, backups + 1)]
    assert sorted(tmp_path.iterdir()) == sorted(expected)
    kept: list[str] = []
    for file in reversed(expected):  # oldest first
        text = file.read_text(encoding="ascii")
        assert len(text.encode()) <= max_bytes
        events(text)  # every line whole and valid
        kept.extend(text.splitlines())
    assert kept == stream.getvalue().splitlines()[-len(kept) :]
    assert os.stat(path).st_mode & 0o007 == 0
    assert log.file_errors == 0


def test_file_is_appended_to_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    for run in range(2):
        log, _, _ = make(file=str(path))
        log.info("startup", run=run)
        log.close()
    assert [e["run"] for e in events(path.read_text(encoding="ascii"))] == [0, 1]


# Hostile input -------------------------------------------------------------------------------


class Weird:
    def __str__(self) -> str:
        return "line\nbreak\x1b[2J"


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no")

    def __repr__(self) -> str:
        raise RuntimeError("no")


HOSTILE_LABELS = [
    (b"evil\x1b[31m\nfake\x00", b"tiktok", b"com"),
    (b"a\r\nb", b"\x7f\xff\xfe", b"tiktok", b"com"),
    (b'"quoted"', b"back\\slash", b"dot.ted", b"com"),
    (b"\xe2\x80\xa8u2028", b"\xc2\x85nel", b"com"),
]


@pytest.mark.parametrize("labels", HOSTILE_LABELS)
def test_hostile_names_stay_on_one_line(labels: tuple[bytes, ...]) -> None:
    log, stream, _ = make(fold_window=0)
    log.blocked("192.0.2.7", query(labels), block())
    log.allowed("192.0.2.7", query(labels), 0)
    log.upstream_failed("127.0.0.1:53", "timeout", query(labels))
    assert stream.getvalue().count("\n") == 3
    for event in events(stream.getvalue()):
        assert "tiktok" in event["qname"] or "com" in event["qname"]
        assert all(0x21 <= ord(char) < 0x7F for char in event["qname"])


@pytest.mark.parametrize(
    "value",
    [
        "line1\nline2",
        "cr\rlf\r\n",
        "\x1b[31mred\x1b[0m\x07",
        "del\x7f",
        "nul\x00",
        "u2028\u2028u2029\u2029nel\x85",
        "surrogate\udcff",
        "émoji 🚫",
    ],
)
def test_hostile_field_values_round_trip_on_one_line(value: str) -> None:
    log, stream, _ = make(fold_window=0)
    log.blocked("192.0.2.7", query("tiktok.com."), block(reference=value, group=value))
    log.blocked(value, query("tiktok.com."), block(rule=value))
    log.info(value, detail=value, nested={"k": [value]})
    assert stream.getvalue().count("\n") == 3
    first, second, third = events(stream.getvalue())
    assert first["reference"] == value and first["group"] == value
    assert second["client"] == value and second["rule"] == value
    assert third["event"] == value and third["nested"] == {"k": [value]}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Weird(), "line\nbreak\x1b[2J"),
        (b"\x00bytes\n", "b'\\x00bytes\\n'"),
        ({1, 2}, "{1, 2}"),
        (Broken(), "<unrenderable Broken>"),
    ],
)
def test_unserialisable_values_become_one_line(value: object, shown: str) -> None:
    log, stream, _ = make()
    log.info("odd", value=value)
    [event] = events(stream.getvalue())
    assert event["value"] == shown


def test_a_fold_whose_first_event_was_dropped_summarises_the_same_fields() -> None:
    """Over the rate cap, a block's fields are made only if its fold's summary needs them;
    they are the ones its event would have carried."""
    capped, stream, clock = make(max_events_per_second=1, privacy="pseudonymise", key=KEY)
    free, free_stream, _ = make(max_events_per_second=10**9, privacy="pseudonymise", key=KEY)
    asked = query("www.tiktok.com.", "AAAA")
    for log in (capped, free):
        log.blocked("192.0.2.1", query("first.tiktok.com."), block())  # takes the one token
        for _ in range(3):
            log.blocked("192.0.2.7", asked, block(decisions=("Decree",)), "phone-1")
        clock.now += 1.0  # a token for the summary
        log.close()
    (summary,) = [e for e in blocks(stream) if "repeated" in e]
    (written,) = [e for e in blocks(free_stream) if e["qname"] == "www.tiktok.com"][:1]
    assert summary["repeated"] == 2
    assert {k: v for k, v in summary.items() if k not in ("timestamp", "repeated", "first_seen",
            "last_seen")} == {k: v for k, v in written.items() if k != "timestamp"}  # fmt: skip
    assert capped.dropped_total == 1


LINE_CASES = [  # (level, event, fields): what the hot events and a few odd values look like
    ("info", "blocked", {"client": "192.0.2.1", "group": "g", "qname": "x.example", "qtype": "A",
                         "policy": None, "entry": "l", "rule": "x.example", "reference": None,
                         "answer": "null_ip", "decisions": ("Decree 1", "Décret 2")}),
    ("info", "query", {"client": "h:0123", "qname": "caf\u00e9.example", "qtype": "TYPE99",
                       "rcode": 3, "device": "phone\u2028"}),
    ("warning", "upstream_failed", {"upstream": "192.0.2.53:53", "reason": "timeout"}),
    ("error", "internal_error", {"error": "ValueError('\\x00\\x1b')", "nested": {"a": [1, 2.5]}}),
    ("info", "odd", {"event": "replaced", "timestamp": "kept?", "level": "kept?", "x": object}),
]  # fmt: skip


@pytest.mark.parametrize(("level", "event", "fields"), LINE_CASES)
def test_a_line_rendered_directly_is_the_line_structlog_renders(
    level: str, event: str, fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks and the other events on the query path skip structlog (`_JsonLines.line`); the
    events that still go through it must come out in exactly the same form."""
    import resolver.observe.audit as audit_module

    moment = 1_700_000_000.1234
    monkeypatch.setattr(audit_module.time, "time", lambda: moment)
    stream = io.StringIO()
    log = AuditLog(stream, level="info")
    log._write[level](event, fields=dict(fields))
    assert log._lines.line(level, event, dict(fields), moment) + "\n" == stream.getvalue()
