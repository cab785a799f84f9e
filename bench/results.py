"""dnsperf output in, numbers out; numbers in, the table and the ratios out.  No I/O.

Absolute figures on a shared 2-core machine are noisy; what issue 7 judges is dnswarden's ratio
to each peer measured in the same run, so the ratios are computed here, next to the table, from
the same rows. With several rounds (`--repeat`) every server is measured once per round in turn;
a ratio is then the median of the per-round ratios (each from two rows measured minutes apart at
most), and the table shows each server's median row.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_FIELDS: dict[str, re.Pattern[str]] = {
    "sent": re.compile(r"Queries sent:\s+([0-9]+)"),
    "completed": re.compile(r"Queries completed:\s+([0-9]+)"),
    "lost": re.compile(r"Queries lost:\s+([0-9]+)"),
    "interrupted": re.compile(r"Queries interrupted:\s+([0-9]+)"),
    "reconnections": re.compile(r"Reconnections:\s+([0-9]+)"),
    "run_time": re.compile(rf"Run time \(s\):\s+{_NUMBER}"),
    "qps": re.compile(rf"Queries per second:\s+{_NUMBER}"),
    "avg_latency": re.compile(rf"Average Latency \(s\):\s+{_NUMBER}"),
    "min_latency": re.compile(rf"Average Latency \(s\):.*\(min {_NUMBER}"),
    "max_latency": re.compile(rf"Average Latency \(s\):.*max {_NUMBER}\)"),
}
_RCODES = re.compile(r"Response codes:\s+(.*)")
_RCODE_ITEM = re.compile(r"([A-Z]+) ([0-9]+) \(")
_VERBOSE = re.compile(r"^> (\S+) (\S+) (\S+) ([0-9]+\.[0-9]+)\s*$", re.M)
_ENDED = re.compile(r"\[Status\] Testing complete \(([^)]*)\)")


@dataclass(frozen=True, slots=True)
class DnsperfStats:
    """dnsperf's closing statistics (latencies in seconds, as dnsperf prints them)."""

    sent: int = 0
    completed: int = 0
    lost: int = 0
    interrupted: int = 0
    reconnections: int = 0
    run_time: float = 0.0
    qps: float = 0.0
    avg_latency: float = 0.0
    min_latency: float = 0.0
    max_latency: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    ended_by: str = ""


def parse_dnsperf(text: str) -> DnsperfStats:
    """The statistics block of one dnsperf run; raises ValueError if there is none."""
    if _FIELDS["qps"].search(text) is None:
        raise ValueError("no 'Queries per second' line in dnsperf output")
    values: dict[str, Any] = {}
    for key, pattern in _FIELDS.items():
        match = pattern.search(text)
        if match is None:
            continue
        raw = match.group(1)
        values[key] = float(raw) if "." in raw else int(raw)
    for key in ("run_time", "qps", "avg_latency", "min_latency", "max_latency"):
        if key in values:
            values[key] = float(values[key])
    rcodes: dict[str, int] = {}
    line = _RCODES.search(text)
    if line:
        rcodes = {code: int(count) for code, count in _RCODE_ITEM.findall(line.group(1))}
    ended = _ENDED.search(text)
    return DnsperfStats(**values, rcodes=rcodes, ended_by=ended.group(1) if ended else "")


def verbose_latencies(text: str) -> list[float]:
    """Per-query latencies (seconds) from `dnsperf -v` lines `> RCODE name type 0.000123`.

    dnsperf 2.10 has no latency histogram option; its verbose mode prints one such line per
    answered query, which is what the p99 at a fixed rate is computed from.
    """
    return [float(match.group(4)) for match in _VERBOSE.finditer(text)]


def percentile(values: Sequence[float], q: float, missing: int = 0) -> float:
    """The q-th percentile (0 < q <= 100, nearest rank) of the answered latencies plus
    `missing` unanswered queries counted as infinitely slow, so loss cannot flatter a tail."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} out of (0, 100]")
    total = len(values) + missing
    if total == 0:
        return math.nan
    rank = math.ceil(q / 100 * total)
    ordered = sorted(values)
    return ordered[rank - 1] if rank <= len(ordered) else math.inf


@dataclass(slots=True)
class Row:
    """One workload x server: a max-throughput run and a fixed-rate run on one fresh start."""

    workload: str
    server: str
    qps: float | None = None
    round: int = 0
    lost: int | None = None
    sent: int | None = None
    exhausted: bool = False
    avg_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rate_lost: int | None = None
    rate_qps: float | None = None
    rss_mb: float | None = None
    user_us: float | None = None
    """CPU time of the server (and its workers) per answered query in the full-speed run."""
    sys_us: float | None = None
    start_s: float | None = None
    error: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: _finite(value) for key, value in data.items()}


def _finite(value: Any) -> Any:
    """JSON has no infinity: an unbounded tail is written as the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    return value


def _fmt(value: float | int | None, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return f"{value:,}"


COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("workload", "workload", 0),
    ("server", "server", 0),
    ("qps", "qps", 0),
    ("lost", "lost", 0),
    ("avg_ms", "avg ms@rate", 3),
    ("p99_ms", "p99 ms@rate", 3),
    ("rate_lost", "lost@rate", 0),
    ("user_us", "user µs/q", 1),
    ("sys_us", "sys µs/q", 1),
    ("rss_mb", "RSS MB", 1),
    ("start_s", "start s", 2),
)


def cpu_per_query(
    before: tuple[float, float] | None, after: tuple[float, float] | None, answered: int
) -> tuple[float | None, float | None]:
    """(user, system) CPU microseconds per answered query between two `procs.cpu_seconds`
    readings; (None, None) when either is missing or nothing was answered."""
    if before is None or after is None or answered <= 0:
        return None, None
    scale = 1e6 / answered
    return (after[0] - before[0]) * scale, (after[1] - before[1]) * scale


def render_table(rows: Iterable[Row]) -> str:
    """A fixed-width text table (also valid Markdown), one line per row; errors in place."""
    header = [title for _, title, _ in COLUMNS]
    body: list[list[str]] = []
    for row in rows:
        cells: list[str] = []
        for key, _, digits in COLUMNS:
            value = getattr(row, key)
            cells.append(value if isinstance(value, str) else _fmt(value, digits))
        if row.exhausted:
            cells[2] += "*"
        if row.error:
            cells[2:] = [f"error: {row.error}"] + [""] * (len(cells) - 3)
        body.append(cells)
    return _markdown(header, body)


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [len(title) for title in header]
    for cells in body:
        widths = [max(width, len(cell)) for width, cell in zip(widths, cells, strict=False)]
    lines = [
        "| " + " | ".join(t.ljust(w) for t, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for cells in body:
        padded = list(cells) + [""] * (len(header) - len(cells))
        lines.append(
            "| " + " | ".join(c.ljust(w) for c, w in zip(padded, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def ratios(rows: Iterable[Row], ours: str, peers: Sequence[str]) -> dict[str, dict[str, float]]:
    """qps(ours) / qps(peer) per workload, only where both have a measured qps: the median over
    the rounds in which both do."""
    per_round: dict[str, dict[str, list[float]]] = {}
    by_key = {(row.workload, row.server, row.round): row for row in rows}
    for (workload, server, round_), row in by_key.items():
        if server != ours or not row.qps or row.error:
            continue
        for peer in peers:
            other = by_key.get((workload, peer, round_))
            if other is None or not other.qps or other.error:
                continue
            per_round.setdefault(workload, {}).setdefault(peer, []).append(row.qps / other.qps)
    return {
        workload: {peer: statistics.median(values) for peer, values in cells.items()}
        for workload, cells in per_round.items()
    }


def median_rows(rows: Iterable[Row]) -> list[Row]:
    """One row per workload x server, in first-seen order: the measured row with the median qps
    (the lower one of an even count), or the first row when none was measured."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.workload, row.server), []).append(row)
    chosen: list[Row] = []
    for group in groups.values():
        measured = sorted((r for r in group if r.qps and not r.error), key=lambda r: r.qps or 0.0)
        chosen.append(measured[(len(measured) - 1) // 2] if measured else group[0])
    return chosen


def render_ratios(table: Mapping[str, Mapping[str, float]], ours: str, peers: Sequence[str]) -> str:
    header = ["workload", *(f"{ours} / {peer}" for peer in peers)]
    body = [
        [workload, *(f"{cells[p]:.2f}x" if p in cells else "-" for p in peers)]
        for workload, cells in table.items()
    ]
    return _markdown(header, body)


@dataclass(frozen=True, slots=True)
class Target:
    """One of issue 7's targets: dnswarden's qps at least `factor` x a peer's on a workload."""

    workload: str
    peer: str
    factor: float


TARGETS: tuple[Target, ...] = (
    Target("blocked", "dnsmasq", 0.6),
    Target("cached", "dnsmasq", 0.6),
    Target("unique", "unbound", 1.2),
)
P99_TARGET_MS = 1.0
P99_WORKLOADS = ("blocked", "cached")


def check_targets(rows: Sequence[Row], ours: str, ceiling: str | None = None) -> list[str]:
    """One line per target: the measured value and whether it is met (or why unknown).

    With a `ceiling` row (the bare loop), a qps target also says what that row reached against
    the same peer in the same rounds: a target the ceiling itself misses is one no CPython
    design doing dnswarden's work can meet on that machine that day.

    A p99 is judged by the median of its rounds' p99s, each round listed: the fixed-rate run
    that gives it is separate from the full-speed run that picks a median row, so the median
    row's own p99 is just one round's."""
    peers = sorted({t.peer for t in TARGETS})
    table = ratios(rows, ours, peers)
    limits = ratios(rows, ceiling, peers) if ceiling else {}
    lines: list[str] = []
    for target in TARGETS:
        value = table.get(target.workload, {}).get(target.peer)
        label = f"{target.workload}: {ours} >= {target.factor}x {target.peer}"
        if value is None:
            lines.append(f"{label}: not measured")
            continue
        verdict = "met" if value >= target.factor else "NOT met"
        line = f"{label}: {value:.2f}x, {verdict}"
        limit = limits.get(target.workload, {}).get(target.peer)
        if limit is not None:
            short = ", short of the target itself" if limit < target.factor else ""
            line += f" ({ceiling} {limit:.2f}x{short})"
        lines.append(line)
    for workload in P99_WORKLOADS:
        rounds = [
            row.p99_ms
            for row in sorted(rows, key=lambda r: r.round)
            if row.server == ours and row.workload == workload and row.p99_ms is not None
            and not row.error
        ]  # fmt: skip
        if not rounds:
            continue
        p99 = statistics.median_low(rounds)
        verdict = "met" if p99 < P99_TARGET_MS else "NOT met"
        each = f" (rounds: {', '.join(_fmt(v, 3) for v in rounds)})" if len(rounds) > 1 else ""
        lines.append(
            f"{workload}: {ours} p99 < {P99_TARGET_MS} ms at the fixed rate: "
            f"{_fmt(p99, 3)} ms{each}, {verdict}"
        )
    return lines


def cpu_budget(rows: Sequence[Row], ours: str, ceiling: str) -> list[str]:
    """For each qps target: the CPU time one query may cost for dnswarden to meet it (a core
    that does nothing else serves 1e6 / qps microseconds per query), beside the user and system
    time dnswarden and the `ceiling` row (the bare loop) used per query, from the median rows.

    The system part is the kernel's work on the same sockets, which no Python change removes:
    when it alone nearly fills the budget, the target is out of reach of this design."""
    chosen = {(row.workload, row.server): row for row in median_rows(rows)}
    lines: list[str] = []
    for target in TARGETS:
        peer = chosen.get((target.workload, target.peer))
        mine = chosen.get((target.workload, ours))
        if peer is None or not peer.qps or mine is None or mine.user_us is None:
            continue
        needed = target.factor * peer.qps
        line = (
            f"{target.workload}: {target.factor}x {target.peer} = {needed:,.0f} qps leaves "
            f"{1e6 / needed:.1f} µs per query; {ours} used {_fmt(mine.user_us, 1)} user + "
            f"{_fmt(mine.sys_us, 1)} system"
        )
        bare = chosen.get((target.workload, ceiling))
        if bare is not None and bare.user_us is not None:
            line += f", {ceiling} {_fmt(bare.user_us, 1)} + {_fmt(bare.sys_us, 1)}"
        lines.append(line)
    return lines
