"""dnsperf output in, numbers out; numbers in, the table and the ratios out.  No I/O.

Absolute figures on a shared 2-core machine are noisy; what issue 21 judges is dnswarden's ratio
to the bare-loop ceiling (and to unbound over TCP) measured in the same run, so the ratios are
computed here, next to the table, from the same rows. With several rounds (`--repeat`) every
server is measured once per round in turn; a ratio is then the median of the per-round ratios
(each from two rows measured minutes apart at most), and the table shows each server's median
row.
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
_HTTP_CODES = re.compile(r"HTTP/2 return codes:\s+(.*)")
_HTTP_ITEM = re.compile(r"([0-9]{3}): ([0-9]+)")
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
    http_codes: dict[str, int] = field(default_factory=dict)
    """DoH only: HTTP responses by status, which dnsperf counts apart from matched answers."""


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
    http = _HTTP_CODES.search(text)
    http_codes = dict(_HTTP_ITEM.findall(http.group(1))) if http else {}
    return DnsperfStats(
        **values,
        rcodes=rcodes,
        ended_by=ended.group(1) if ended else "",
        http_codes={code: int(count) for code, count in http_codes.items()},
    )


def unmatched_answers(stats: DnsperfStats) -> str | None:
    """A note when dnsperf got many more HTTP answers than it matched to its queries (its DoH
    client and dnsdist 1.7 do this: the queries are answered, then counted as lost), so such a
    row is not read as the server's speed; None otherwise."""
    answered = sum(stats.http_codes.values())
    if answered <= stats.completed * 1.05 + 10:
        return None
    return f"dnsperf matched {stats.completed:,} of {answered:,} HTTP answers: not a measurement"


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


def family(workload: str) -> str:
    """`blocked` for each list shape's row (`blocked/exact`, `blocked/mixed/20lists`): a target
    on a workload holds for every shape of it."""
    return workload.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Target:
    """One of issue 21's qps targets: dnswarden's row (`variant` appended to its name) at least
    `factor` x `peer`'s qps on every workload of `family`, each list shape on its own."""

    family: str
    peer: str
    factor: float
    variant: str = ""


CEILING = "bare-loop"
"""bench/bare.py's row: what one CPython process reaches doing only the unavoidable work."""
TARGETS: tuple[Target, ...] = (
    Target("blocked", CEILING, 0.6),
    Target("blocked", CEILING, 0.5, "-info"),  # the audit trail at its production setting
    Target("cached", CEILING, 0.7),
    Target("unique", CEILING, 0.6),
    Target("mix", CEILING, 0.6),
    Target("tcp", "unbound", 0.8),
)
P99_TARGET_MS = 1.0
P99_WORKLOADS = ("blocked", "cached")
FIRST_START_S = 3.0
RESTART_S = 1.0
BYTES_PER_DOMAIN = 40.0
BIG_DOMAINS = 2_000_000
"""The list size the start-up targets are stated for; a smaller big list is not judged."""
RESTART_SUFFIX = "-restart"
"""bench/main.py's `dnswarden-restart` row: the big list again, its compiled form reused."""


def _cpu(row: Row | None) -> str:
    """`total (user + system)` CPU µs per query of a row, or `-` without a reading."""
    if row is None or row.user_us is None or row.sys_us is None:
        return "-"
    return f"{row.user_us + row.sys_us:.1f} ({row.user_us:.1f} + {row.sys_us:.1f})"


def _workloads_of(rows: Sequence[Row], kind: str) -> list[str]:
    """The measured workloads of family `kind` in first-seen order, or `[kind]` when none."""
    found = [w for w in dict.fromkeys(row.workload for row in rows) if family(w) == kind]
    return found or [kind]


def check_targets(rows: Sequence[Row], ours: str) -> list[str]:
    """One line per target and workload (each list shape of `blocked` on its own): the measured
    value, whether it is met (or why unknown) and, beside a ratio, the CPU µs per query of both
    rows, the same ratio by CPU (the peer's CPU per query over ours) and the CPU per query the
    target allows (the peer's over the factor).  When the machine is busy the peer may not
    fill its core, and the two ratios part: qps is what the target names, CPU the steadier.

    A ratio is the median of the per-round ratios; CPU comes from the median rows.  A p99 is
    judged by the median of its rounds' p99s, each round listed: the fixed-rate run that gives
    it is separate from the full-speed run that picks a median row, so the median row's own
    p99 is just one round's."""
    medians = {(row.workload, row.server): row for row in median_rows(rows)}
    lines: list[str] = []
    for target in TARGETS:
        server = ours + target.variant
        table = ratios(rows, server, [target.peer])
        for workload in _workloads_of(rows, target.family):
            label = f"{workload}: {server} >= {target.factor}x {target.peer}"
            value = table.get(workload, {}).get(target.peer)
            if value is None:
                lines.append(f"{label}: not measured")
                continue
            verdict = "met" if value >= target.factor else "NOT met"
            mine, theirs = medians.get((workload, server)), medians.get((workload, target.peer))
            line = (
                f"{label}: {value:.2f}x, {verdict}; CPU µs/q {_cpu(mine)}"
                f" vs {target.peer} {_cpu(theirs)}"
            )
            spent, peer_spent = _total_cpu(mine), _total_cpu(theirs)
            if spent and peer_spent:
                line += (
                    f", {peer_spent / spent:.2f}x by CPU (the target allows "
                    f"{peer_spent / target.factor:.1f})"
                )
                if (peer_spent / spent >= target.factor) != (value >= target.factor):
                    line += "; qps and CPU disagree: the machine was busy"
            lines.append(line)
    lines += _block_versus_hit(rows, medians, ours)
    lines += _startup_lines(medians, ours)
    lines += _p99_lines(rows, ours)
    return lines


def _total_cpu(row: Row | None) -> float | None:
    if row is None or row.user_us is None or row.sys_us is None:
        return None
    return row.user_us + row.sys_us


def _block_versus_hit(
    rows: Sequence[Row], medians: Mapping[tuple[str, str], Row], ours: str
) -> list[str]:
    """A blocked name no slower than a cache hit: CPU µs per query of the median rows (steadier
    than qps from two runs minutes apart), qps beside it."""
    hit = medians.get(("cached", ours))
    lines: list[str] = []
    for workload in _workloads_of(rows, "blocked"):
        block = medians.get((workload, ours))
        label = f"{workload}: {ours} a blocked name no slower than a cache hit"
        spent, budget = _total_cpu(block), _total_cpu(hit)
        if block is None or hit is None or spent is None or budget is None or not budget:
            lines.append(f"{label}: not measured")
            continue
        verdict = "met" if spent <= budget else "NOT met"
        lines.append(
            f"{label}: CPU µs/q {_cpu(block)} vs {_cpu(hit)} for a hit ({spent / budget:.2f}x); "
            f"qps {_fmt(block.qps, 0)} vs {_fmt(hit.qps, 0)}, {verdict}"
        )
    return lines


def _p99_lines(rows: Sequence[Row], ours: str) -> list[str]:
    lines: list[str] = []
    for kind in P99_WORKLOADS:
        for workload in _workloads_of(rows, kind):
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


def _startup_lines(medians: Mapping[tuple[str, str], Row], ours: str) -> list[str]:
    """The big list's targets, from the start-up rows: the first start (which compiles the
    list) and the restart after it (which maps the compiled file), each from exec to the first
    blocked answer, and memory per domain as the whole process's peak RSS over the domains,
    an upper bound on what the list itself adds (bench/lists measures that part alone)."""
    lines: list[str] = []
    for (workload, server), row in medians.items():
        if not workload.startswith("startup-") or row.error:
            continue
        domains = row.extra.get("domains") or 0
        if domains < BIG_DOMAINS:
            if server == ours:
                lines.append(
                    f"{workload}: not judged: the start-up targets are for {BIG_DOMAINS:,} "
                    f"names, this list has {domains:,}"
                )
            continue
        if server == ours and row.start_s is not None:
            verdict = "met" if row.start_s <= FIRST_START_S else "NOT met"
            lines.append(
                f"{workload}: {ours} first start, list compiled, <= {FIRST_START_S:g} s to the "
                f"first blocked answer: {row.start_s:.2f} s, {verdict}"
            )
        if server == ours + RESTART_SUFFIX and row.start_s is not None:
            verdict = "met" if row.start_s <= RESTART_S else "NOT met"
            lines.append(
                f"{workload}: {ours} restart, compiled list reused, <= {RESTART_S:g} s: "
                f"{row.start_s:.2f} s, {verdict}"
            )
        if server == ours and row.rss_mb is not None:
            per_domain = row.rss_mb * 2**20 / domains
            verdict = "met" if per_domain <= BYTES_PER_DOMAIN else "NOT met"
            lines.append(
                f"{workload}: {ours} <= {BYTES_PER_DOMAIN:g} B per domain: {per_domain:.1f} B "
                f"(whole process's peak RSS {row.rss_mb:.1f} MB / {domains:,} domains, an upper "
                f"bound), {verdict}"
            )
    if not lines:
        lines.append(
            f"start-up with the big list (first start <= {FIRST_START_S:g} s, restart <= "
            f"{RESTART_S:g} s, <= {BYTES_PER_DOMAIN:g} B per domain): not measured (no big list "
            "in this run: --quick or --big-list-size 0)"
        )
    return lines
