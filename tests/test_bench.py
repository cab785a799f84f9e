"""Tests for bench/: the generated data, the peers' configs, dnsperf parsing and the report.

No load here: the benchmark itself is `bench/run`.  Configs are checked by the servers' own
checkers when they are installed (skipped otherwise), and dnswarden's by `resolver.config`.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import dns.name
import dns.rdatatype
import dns.zone
import pytest
import yaml

from resolver.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


def _bench(module: str) -> ModuleType:
    """bench/ is not an installed package: import it from the checkout the tests run from."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"bench.{module}")


gen = _bench("gen")
peers = _bench("peers")
results = _bench("results")
main = _bench("main")

DNSPERF_UDP = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 46701 -d blocked.txt -l 2 -t 2 -n 11 -c 8 -q 300
[Status] Sending queries (to 127.0.0.1:46701)
[Status] Started at: Sat Nov 28 19:07:05 2026
[Status] Stopping after 2.000000 seconds or 11 runs through file
[Timeout] Query timed out: msg id 329
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         14141
  Queries completed:    14034 (99.24%)
  Queries lost:         107 (0.76%)

  Response codes:       NOERROR 14000 (99.76%), SERVFAIL 34 (0.24%)
  Average packet size:  request 35, response 51
  Run time (s):         2.018025
  Queries per second:   6954.324154

  Average Latency (s):  0.027156 (min 0.000034, max 0.548532)
  Latency StdDev (s):   0.050369

"""

DNSPERF_TCP = """\
[Status] Stopping after 30.000000 seconds or 1 run through file
[Status] Testing complete (end of file)

Statistics:

  Queries sent:         5759
  Queries completed:    5616 (97.52%)
  Queries lost:         143 (2.48%)

  Response codes:       NOERROR 5616 (100.00%)
  Average packet size:  request 35, response 51
  Run time (s):         2.021122
  Queries per second:   2778.654628

  Average Latency (s):  0.007987 (min 0.000038, max 0.104514)
  Latency StdDev (s):   0.012276

Connection Statistics:

  Reconnections:        56

  Average Latency (s):  0.000934 (min 0.000026, max 0.015305)
  Latency StdDev (s):   0.002842
"""


# gen


@pytest.mark.parametrize("seed", [1, 2, 3, 99])
def test_labels_are_valid_hostname_labels_of_realistic_length(seed: int) -> None:
    import random

    rng = random.Random(seed)
    labels = [gen.label(rng) for _ in range(2000)]
    lengths = [len(item) for item in labels]
    assert all(2 <= n <= 63 for n in lengths)
    assert 6 <= sum(lengths) / len(lengths) <= 12
    for item in labels:
        assert item[0].isalpha() and item[-1] != "-"
        assert set(item) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert any("-" in item for item in labels)


@pytest.mark.parametrize(
    ("make", "suffix"),
    [
        (gen.zone_names, ".bench.test"),
        (gen.blocklist_names, ""),
    ],
)
def test_names_are_distinct_deterministic_and_seeded(make, suffix: str) -> None:
    first = make(3000, seed=7)
    assert len(first) == len(set(first)) == 3000
    assert make(3000, seed=7) == first
    assert make(3000, seed=8) != first
    assert all(name.endswith(suffix) for name in first)
    for name in first:
        dns.name.from_text(name)


def test_small_blocklist_is_the_start_of_the_big_one() -> None:
    assert gen.blocklist_names(500) == gen.blocklist_names(2000)[:500]


def test_blocklist_never_touches_the_benchmark_zone() -> None:
    names = gen.blocklist_names(5000)
    assert not any(name.endswith(".test") for name in names)
    assert {name.rsplit(".", 1)[1] for name in names} <= {tld for tld, _ in gen.TLDS}


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, "198.18.0.0"),
        (1, "198.18.0.1"),
        (256, "198.18.1.0"),
        (65536, "198.19.0.0"),
        (131071, "198.19.255.255"),
        (131072, "198.18.0.0"),
    ],
)
def test_addresses_stay_in_the_benchmark_range(index: int, expected: str) -> None:
    assert gen.address(index) == expected


def test_zone_file_parses_and_answers_each_name_and_the_wildcard() -> None:
    names = gen.zone_names(300)
    zone = dns.zone.from_text(
        "\n".join(gen.zone_lines(names)) + "\n", origin=gen.ZONE, relativize=False
    )
    for index, name in enumerate(names):
        rdataset = zone.find_rdataset(name + ".", dns.rdatatype.A)
        assert [item.address for item in rdataset] == [gen.address(index)]
    wildcard = zone.find_rdataset(f"*.{gen.WILDCARD_PARENT}.", dns.rdatatype.A)
    assert wildcard.ttl == gen.ZONE_TTL
    assert zone.find_rdataset(f"{gen.ZONE}.", dns.rdatatype.SOA)


def test_unique_names_never_repeat_within_or_across_tags() -> None:
    first = gen.unique_names(5000, "m")
    second = gen.unique_names(5000, "r")
    assert len(set(first)) == len(first)
    assert not set(first) & set(second)
    assert all(name.endswith("." + gen.WILDCARD_PARENT) for name in first + second)


def test_blocked_queries_are_listed_domains_or_their_subdomains() -> None:
    listed = gen.blocklist_names(200)
    queries = gen.blocked_queries(listed, 2000)
    domains = set(listed)
    for name in queries:
        labels = name.split(".")
        assert any(".".join(labels[i:]) in domains for i in range(len(labels)))
    assert any(name in domains for name in queries)
    assert any(name not in domains for name in queries)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (10, {"hit": 7, "forwarded": 2, "blocked": 1}),
        (100, {"hit": 70, "forwarded": 20, "blocked": 10}),
        (3, {"hit": 2, "forwarded": 1, "blocked": 0}),
        (1, {"hit": 1, "forwarded": 0, "blocked": 0}),
        (0, {"hit": 0, "forwarded": 0, "blocked": 0}),
    ],
)
def test_shares_become_whole_counts_that_add_up(total: int, expected: dict[str, int]) -> None:
    counts = gen.shares_to_counts(total, gen.MIX_SHARES)
    assert counts == expected
    assert sum(counts.values()) == total


def test_mixed_queries_keep_shares_and_use_each_forwarded_name_once() -> None:
    hits, blocked = ["h1.bench.test", "h2.bench.test"], ["b.example.com"]
    forwarded = [f"f{i}.w.bench.test" for i in range(300)]
    pairs = gen.mixed_queries(1000, hits, forwarded, blocked)
    kinds = [kind for kind, _ in pairs]
    assert (kinds.count("hit"), kinds.count("forwarded"), kinds.count("blocked")) == (700, 200, 100)
    sent = [name for kind, name in pairs if kind == "forwarded"]
    assert len(set(sent)) == len(sent) == 200
    assert kinds[:50] != sorted(kinds[:50]) or kinds[50:100] != sorted(kinds[50:100])


def test_mixed_queries_refuse_to_repeat_forwarded_names() -> None:
    with pytest.raises(ValueError, match="unique names"):
        gen.mixed_queries(1000, ["h"], ["f1", "f2"], ["b"])


def test_query_files_are_in_dnsperf_format(tmp_path: Path) -> None:
    count = gen.write_lines(tmp_path / "q.txt", gen.query_lines(["a.example", "b.example"]))
    assert count == 2
    assert (tmp_path / "q.txt").read_text() == "a.example A\nb.example A\n"


@pytest.mark.parametrize("duration", [1.0, 3.0, 10.0])
def test_sizes_cover_the_fastest_peer_and_the_fixed_rate(duration: float) -> None:
    size = gen.sizes(duration, 5000, 100_000, 0)
    assert size.unique_max >= 120_000 * duration
    assert size.unique_rate >= 5000 * duration
    assert size.mix_rate // 5 >= 1000 * duration


# peers


def test_dnswarden_config_is_accepted_by_resolver_config(tmp_path: Path) -> None:
    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("blocked.example\n")
    for level in ("warning", "info"):
        data = peers.dnswarden_config(5300, 5301, str(listfile), level=level)
        config = parse_config(yaml.safe_dump(data), "bench.yaml", base_dir=tmp_path)
        assert [str(e) for e in config.listen] == ["127.0.0.1:5300"]
        assert config.log.level == level


def _write(spec) -> None:
    for path, text in spec.files.items():
        Path(path).write_text(text)


def _checked(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (bench/run installs it)")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("server", ["nsd", "unbound", "dnsdist", "dnsmasq"])
def test_peer_configs_pass_their_own_checkers(server: str, tmp_path: Path) -> None:
    listed = ["blocked.example.com", "other.example.net"]
    listfile = tmp_path / "blocklist.txt"
    gen.write_lines(listfile, listed)
    if server == "nsd":
        spec = peers.nsd_spec(tmp_path, 5300, "bench.test.zone")
        _write(spec)
        _checked(["nsd-checkconf", spec.argv[-1]])
    elif server == "unbound":
        block = tmp_path / "unbound-block.conf"
        gen.write_lines(block, peers.unbound_block_lines(listed))
        spec = peers.unbound_spec(tmp_path, 5301, 5300, str(block))
        _write(spec)
        _checked(["unbound-checkconf", spec.argv[-1]])
    elif server == "dnsdist":
        spec = peers.dnsdist_spec(tmp_path, 5302, 5300, str(listfile))
        _write(spec)
        _checked(["dnsdist", "--check-config", "-C", spec.argv[-1]])
    else:
        block = tmp_path / "dnsmasq-block.conf"
        gen.write_lines(block, peers.dnsmasq_block_lines(listed))
        spec = peers.dnsmasq_spec(tmp_path, 5303, 5300, str(block))
        _checked(["dnsmasq", "--test", *spec.argv[1:]])


def test_every_server_listens_on_loopback_only(tmp_path: Path) -> None:
    specs = [
        peers.nsd_spec(tmp_path, 5300, "z"),
        peers.unbound_spec(tmp_path, 5301, 5300, "b"),
        peers.dnsdist_spec(tmp_path, 5302, 5300, "b"),
        peers.dnsmasq_spec(tmp_path, 5303, 5300, "b"),
        peers.dnswarden_spec(tmp_path, "dnswarden", 5304, 5300, "b", "python3"),
    ]
    for spec in specs:
        text = " ".join(spec.argv) + "".join(spec.files.values())
        addresses = {word.strip("\"'{}(),:@#") for word in text.replace("=", " ").split()}
        dotted = {a.split(":")[0].split("@")[0].split("#")[0] for a in addresses}
        ips = {a for a in dotted if a.count(".") == 3 and a.replace(".", "").isdigit()}
        assert "127.0.0.1" in ips, spec.name
        assert ips <= {"127.0.0.1", "0.0.0.0"}, spec.name


def test_dnsdist_never_polls_security_outside() -> None:
    conf = next(iter(peers.dnsdist_spec(Path("/tmp"), 1, 2, "b").files.values()))
    assert 'setSecurityPollSuffix("")' in conf.splitlines()[0]


def test_pinned_commands_exec_the_server_itself() -> None:
    assert peers.pinned(("nsd", "-d"), "1") == ("taskset", "-c", "1", "nsd", "-d")


# results


def test_parse_dnsperf_udp_summary() -> None:
    stats = results.parse_dnsperf(DNSPERF_UDP)
    assert (stats.sent, stats.completed, stats.lost) == (14141, 14034, 107)
    assert stats.qps == pytest.approx(6954.324154)
    assert stats.run_time == pytest.approx(2.018025)
    assert stats.avg_latency == pytest.approx(0.027156)
    assert (stats.min_latency, stats.max_latency) == (0.000034, 0.548532)
    assert stats.rcodes == {"NOERROR": 14000, "SERVFAIL": 34}
    assert stats.ended_by == "time limit"
    assert stats.reconnections == 0


def test_parse_dnsperf_tcp_takes_query_latency_not_connection_latency() -> None:
    stats = results.parse_dnsperf(DNSPERF_TCP)
    assert stats.avg_latency == pytest.approx(0.007987)
    assert stats.reconnections == 56
    assert stats.ended_by == "end of file"


@pytest.mark.parametrize("text", ["", "dnsperf: invalid option\n", DNSPERF_UDP[:300]])
def test_parse_dnsperf_without_statistics_raises(text: str) -> None:
    with pytest.raises(ValueError):
        results.parse_dnsperf(text)


def test_verbose_latencies_read_only_answer_lines() -> None:
    text = (
        "[Status] Sending queries\n"
        "> NOERROR a.bench.test A 0.000123\n"
        "[Timeout] Query timed out: msg id 3\n"
        "> SERVFAIL b.bench.test A 0.250000\n"
        "> NOERROR c.bench.test AAAA 1.5\n"
        "  Average Latency (s):  0.000772 (min 0.000402, max 0.019581)\n"
    )
    assert results.verbose_latencies(text) == [0.000123, 0.25, 1.5]


@pytest.mark.parametrize(
    ("values", "q", "missing", "expected"),
    [
        (list(range(1, 101)), 99, 0, 99),
        (list(range(1, 101)), 50, 0, 50),
        (list(range(100, 0, -1)), 100, 0, 100),
        ([1, 2, 3, 4], 50, 0, 2),
        ([5.0], 99, 0, 5.0),
        ([1.0] * 99, 99, 1, 1.0),
        ([1.0] * 98, 99, 2, math.inf),
        ([], 99, 3, math.inf),
    ],
)
def test_percentile_counts_missing_answers_as_infinitely_slow(values, q, missing, expected) -> None:
    assert results.percentile(values, q, missing) == expected


def test_percentile_of_nothing_is_nan_and_bad_q_raises() -> None:
    assert math.isnan(results.percentile([], 99))
    with pytest.raises(ValueError):
        results.percentile([1.0], 0)
    with pytest.raises(ValueError):
        results.percentile([1.0], 101)


def _row(workload: str, server: str, qps: float | None, **kw) -> object:
    return results.Row(workload=workload, server=server, qps=qps, **kw)


def test_table_formats_numbers_marks_exhausted_and_shows_errors() -> None:
    rows = [
        _row("blocked", "dnswarden", 123456.7, lost=0, avg_ms=0.25, p99_ms=0.8, rss_mb=61.25),
        _row("unique", "dnsdist", 99000.0, exhausted=True, p99_ms=math.inf),
        _row("mix", "dnsmasq", None, error="exited with code 1"),
    ]
    text = results.render_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| workload") and "p99 ms@rate" in lines[0]
    assert set(lines[1]) <= {"|", "-"}
    assert "123,457" in lines[2] and "0.800" in lines[2] and "61.2" in lines[2]
    assert "99,000*" in lines[3] and "inf" in lines[3]
    assert "error: exited with code 1" in lines[4]
    assert len({len(line) for line in lines}) == 1


def test_ratios_only_where_both_sides_measured() -> None:
    rows = [
        _row("blocked", "dnswarden", 100.0),
        _row("blocked", "dnsmasq", 200.0),
        _row("blocked", "unbound", 50.0),
        _row("blocked", "dnsdist", 80.0, error="boom"),
        _row("cached", "dnswarden", 10.0),
        _row("unique", "dnsmasq", 10.0),
    ]
    table = results.ratios(rows, "dnswarden", ["dnsmasq", "unbound", "dnsdist"])
    assert table == {"blocked": {"dnsmasq": 0.5, "unbound": 2.0}}
    text = results.render_ratios(table, "dnswarden", ["dnsmasq", "unbound", "dnsdist"])
    assert "0.50x" in text and "2.00x" in text and "| -" in text


@pytest.mark.parametrize(
    ("ours", "peer", "expected"),
    [
        (60.0, 100.0, "0.60x, met"),
        (59.0, 100.0, "0.59x, NOT met"),
        (None, 100.0, "not measured"),
    ],
)
def test_targets_report_met_and_missed(ours, peer, expected: str) -> None:
    rows = [_row("blocked", "dnsmasq", peer)]
    if ours is not None:
        rows.append(_row("blocked", "dnswarden", ours, p99_ms=0.4))
    lines = results.check_targets(rows, "dnswarden")
    assert lines[0].startswith("blocked: dnswarden >= 0.6x dnsmasq")
    assert lines[0].endswith(expected)
    if ours is not None:
        assert lines[-1].endswith("0.400 ms, met")


def test_row_json_has_no_infinity() -> None:
    data = results.Row("unique", "dnsmasq", p99_ms=math.inf).as_json()
    assert data["p99_ms"] == "inf"
    assert data["workload"] == "unique"


# main (the pure bits)


@pytest.mark.parametrize(
    ("argv", "duration", "big"),
    [
        ([], 10.0, 2_000_000),
        (["--quick"], 3.0, 0),
        (["--quick", "--big-list-size", "5000"], 3.0, 5000),
        (["--duration", "5"], 5.0, 2_000_000),
    ],
)
def test_quick_shortens_runs_and_drops_the_big_list(argv, duration: float, big: int) -> None:
    args = main.parse_args(argv)
    assert args.duration == duration
    assert args.big_list_size == big


@pytest.mark.parametrize("argv", [["--duration", "0"], ["--rate", "0"], ["--workloads", "x"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(argv)


@pytest.mark.parametrize(
    ("count", "text"), [(100_000, "100k"), (2_000_000, "2M"), (1500, "1500"), (999, "999")]
)
def test_human_counts(count: int, text: str) -> None:
    assert main.human(count) == text


def test_every_workload_has_files_and_unique_ones_run_once() -> None:
    table = main.workloads()
    assert set(table) == set(main.WORKLOADS)
    assert table["unique"].once and table["mix"].once
    assert table["unique"].max_file != table["unique"].rate_file
    assert table["tcp"].tcp and not table["blocked"].tcp
    assert table["cached"].prime_file == table["mix"].prime_file == "hits.txt"


@pytest.mark.parametrize(
    ("server", "workers"),
    [
        ("dnswarden-w2", 2),
        ("dnswarden-w12", 12),
        ("dnswarden", None),
        ("dnswarden-info", None),
        ("dnsmasq", None),
        ("dnswarden-wx", None),
    ],
)
def test_worker_rows_are_recognised_by_name(server: str, workers: int | None) -> None:
    assert main.workers_of(server) == workers


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"), [(1, 2, "0"), (2, 2, "0-1"), (4, 2, "0-1"), (0, 2, "0")]
)
def test_workers_get_the_first_cores(workers: int, cpus: int, expected: str) -> None:
    assert main.cpu_range(workers, cpus) == expected


@pytest.mark.parametrize("workers", [None, 2])
def test_dnswarden_argv_passes_workers_only_when_asked(workers: int | None, tmp_path: Path) -> None:
    spec = peers.dnswarden_spec(tmp_path, "d", 5300, 5301, "b.txt", "python3", workers=workers)
    assert spec.argv[:5] == ("python3", "-m", "resolver", "serve", "-c")
    assert ("--workers" in spec.argv) == (workers is not None)
    if workers is not None:
        assert spec.argv[-2:] == ("--workers", "2")


def test_nostats_row_runs_the_same_server_with_recording_off(tmp_path: Path) -> None:
    spec = peers.dnswarden_spec(
        tmp_path, "dnswarden-nostats", 5300, 5301, "/l.txt", "python3", module="bench.nostats"
    )
    assert spec.argv[1:4] == ("-m", "bench.nostats", "serve")
    probe = (
        "import bench.nostats\n"
        "from resolver.stats import Stats\n"
        "s = Stats(); s.query('udp', 1, 'blocked', 0.001); s.count('x')\n"
        "assert s.results()['blocked'] == 0 and not s.counts, 'still recording'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
