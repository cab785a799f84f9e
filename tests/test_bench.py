"""Tests for bench/: the generated data, the peers' configs, dnsperf parsing and the report.

No load here: the benchmark itself is `bench/run`.  Configs are checked by the servers' own
checkers when they are installed (skipped otherwise), and dnswarden's by `resolver.config`.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.zone
import pytest
import yaml

from resolver.config import parse_config
from resolver.lists.catalogue import catalogue_ids
from resolver.policy.ratelimit import RateLimiter

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


def _has_listed_parent(name: str, domains: set[str]) -> bool:
    labels = name.split(".")
    return any(".".join(labels[i:]) in domains for i in range(1, len(labels)))


@pytest.mark.parametrize(
    ("shape", "exact_share"),
    [("exact", (1.0, 1.0)), ("subdomains", (0.0, 0.0)), ("mixed", (0.45, 0.55))],
)
def test_blocked_queries_take_the_shape_asked_for(shape: str, exact_share) -> None:
    listed = gen.blocklist_names(300)
    domains = set(listed)
    queries = gen.blocked_queries(listed, 4000, shape=shape)
    exact = [name for name in queries if name in domains]
    assert exact_share[0] <= len(exact) / len(queries) <= exact_share[1]
    assert all(_has_listed_parent(name, domains) for name in queries if name not in domains)
    if shape != "exact":
        common = sum(name.split(".")[0] in gen.SUBDOMAIN_LABELS for name in queries)
        assert 0 < common < len(queries) - len(exact)  # random labels too, not just www.
    assert gen.blocked_queries(listed, 4000, shape=shape) == queries


def test_the_hot_shape_asks_a_thousand_mixed_names_again_and_again() -> None:
    listed = gen.blocklist_names(3000)
    queries = gen.blocked_queries(listed, 5000, shape="hot")
    assert len(queries) == 5000
    assert queries[: gen.HOT_NAMES] == gen.blocked_queries(listed, gen.HOT_NAMES)
    assert queries[gen.HOT_NAMES : 2 * gen.HOT_NAMES] == queries[: gen.HOT_NAMES]
    assert len(set(queries)) <= gen.HOT_NAMES


def test_mixed_shape_sends_the_same_names_as_before_the_shapes() -> None:
    """Runs before `--list-shape` asked for these exact names: mixed must not change them."""
    import random

    listed = gen.blocklist_names(300)
    rng = random.Random(4)
    before = []
    for _ in range(3000):
        domain = rng.choice(listed)
        roll = rng.random()
        if roll < 0.5:
            before.append(domain)
        elif roll < 0.9:
            before.append(f"{rng.choice(gen.SUBDOMAIN_LABELS)}.{domain}")
        else:
            before.append(f"{gen.label(rng)}.{domain}")
    assert gen.blocked_queries(listed, 3000) == before
    assert gen.blocked_queries(listed, 3000, shape="mixed") == before


@pytest.mark.parametrize(("count", "parts"), [(100, 1), (100, 3), (100_000, 20), (7, 7)])
def test_a_split_list_keeps_every_name_once_in_near_equal_parts(count: int, parts: int) -> None:
    names = [f"n{i}.example" for i in range(count)]
    split = gen.split_list(names, parts)
    assert len(split) == parts
    assert [name for part in split for name in part] == names
    assert max(map(len, split)) - min(map(len, split)) <= 1


@pytest.mark.parametrize(("count", "parts"), [(5, 0), (5, 6), (0, 2)])
def test_a_list_cannot_be_split_into_more_parts_than_names(count: int, parts: int) -> None:
    with pytest.raises(ValueError, match="cannot split"):
        gen.split_list([f"n{i}.example" for i in range(count)], parts)


# peers


def test_dnswarden_config_is_accepted_by_resolver_config(tmp_path: Path) -> None:
    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("blocked.example\n")
    for level in ("warning", "info"):
        data = peers.dnswarden_config(5300, 5301, str(listfile), level=level)
        config = parse_config(
            yaml.safe_dump(data), "bench.yaml", base_dir=tmp_path, known_lists=catalogue_ids()
        )
        assert [str(e) for e in config.listen] == ["127.0.0.1:5300"]
        assert config.log.level == level


@pytest.mark.parametrize(("rate_limits", "active"), [(False, False), (True, True)])
def test_dnswarden_runs_without_rate_limits_unless_asked(
    tmp_path: Path, rate_limits: bool, active: bool
) -> None:
    """dnsperf is one client asking as fast as it can: every limit must be off (a new limit
    with a default rate once throttled the unique workload to 117 qps), unless the flood bench
    asks for the defaults."""
    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("blocked.example\n")
    data = peers.dnswarden_config(5300, 5301, str(listfile), rate_limits=rate_limits)
    config = parse_config(
        yaml.safe_dump(data), "bench.yaml", base_dir=tmp_path, known_lists=catalogue_ids()
    )
    assert RateLimiter(config.rate_limit, lambda client: "default").active is active


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


def test_dnswarden_config_with_several_lists_and_its_own_state_dir(tmp_path: Path) -> None:
    files = [tmp_path / f"blocklist-3x{i}.txt" for i in range(3)]
    for index, path in enumerate(files):
        path.write_text(f"blocked{index}.example\n")
    state = tmp_path / "dnswarden-state"
    data = peers.dnswarden_config(5300, 5301, [str(p) for p in files], state_dir=str(state))
    config = parse_config(
        yaml.safe_dump(data), "bench.yaml", base_dir=tmp_path, known_lists=catalogue_ids()
    )
    assert data["blocking"]["lists"] == [str(p) for p in files]
    assert len(config.blocking.lists) == 3
    assert config.state_dir == str(state)
    assert "state_dir" not in peers.dnswarden_config(5300, 5301, str(files[0]))


def _flag_values(argv, flag: str) -> list[str]:
    import itertools

    return [value for name, value in itertools.pairwise(argv) if name == flag]


def test_several_lists_reach_every_server(tmp_path: Path) -> None:
    lists = [f"/l/blocklist-3x{i}.txt" for i in range(3)]
    confs = [f"/l/block-3x{i}.conf" for i in range(3)]
    dnsmasq = peers.dnsmasq_spec(tmp_path, 5303, 5300, confs)
    assert [a for a in dnsmasq.argv if a.startswith("--conf-file=")] == [
        f"--conf-file={c}" for c in confs
    ]
    unbound = next(iter(peers.unbound_spec(tmp_path, 5301, 5300, confs).files.values()))
    assert [line.strip() for line in unbound.splitlines() if "include:" in line] == [
        f'include: "{c}"' for c in confs
    ]
    dnsdist = next(iter(peers.dnsdist_spec(tmp_path, 5302, 5300, lists).files.values()))
    assert [line for line in dnsdist.splitlines() if "io.lines" in line] == [
        f'for line in io.lines("{p}") do blocked:add(line) end' for p in lists
    ]
    assert dnsdist.count("newSuffixMatchNode()") == 1
    assert _flag_values(peers.bare_spec(5304, 5300, lists, "python3").argv, "--blocklist") == lists
    ours = peers.dnswarden_spec(tmp_path, "dnswarden", 5305, 5300, lists, "python3")
    assert yaml.safe_load(next(iter(ours.files.values())))["blocking"]["lists"] == lists


@pytest.mark.parametrize("server", ["unbound", "dnsmasq"])
def test_peer_configs_with_several_lists_pass_their_own_checkers(server, tmp_path: Path) -> None:
    parts = gen.split_list(["a.example.com", "b.example.net", "c.example.org"], 3)
    lines = peers.unbound_block_lines if server == "unbound" else peers.dnsmasq_block_lines
    confs = []
    for index, part in enumerate(parts):
        confs.append(str(tmp_path / f"{server}-block-3x{index}.conf"))
        gen.write_lines(Path(confs[-1]), lines(part))
    if server == "unbound":
        spec = peers.unbound_spec(tmp_path, 5301, 5300, confs)
        _write(spec)
        _checked(["unbound-checkconf", spec.argv[-1]])
    else:
        spec = peers.dnsmasq_spec(tmp_path, 5303, 5300, confs)
        _checked(["dnsmasq", "--test", *spec.argv[1:]])


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


def test_with_rounds_a_ratio_is_the_median_of_the_per_round_ratios() -> None:
    """Rounds pair rows measured close in time: round 2's slow peer must not be compared with
    round 1's fast dnswarden. (The ratio of the medians would be 100/150, not 0.8.)"""
    rows = [
        _row("blocked", "dnswarden", 100.0, round=0),
        _row("blocked", "dnsmasq", 200.0, round=0),
        _row("blocked", "dnswarden", 90.0, round=1),
        _row("blocked", "dnsmasq", 100.0, round=1),
        _row("blocked", "dnswarden", 120.0, round=2),
        _row("blocked", "dnsmasq", 150.0, round=2),
        _row("cached", "dnswarden", 50.0, round=0),
        _row("cached", "dnsmasq", 100.0, round=0),
        _row("cached", "dnswarden", 80.0, round=1),
        _row("cached", "dnsmasq", None, round=1, error="boom"),  # its round is left out
    ]
    table = results.ratios(rows, "dnswarden", ["dnsmasq"])
    assert table == {"blocked": {"dnsmasq": pytest.approx(0.8)}, "cached": {"dnsmasq": 0.5}}


def test_median_rows_keep_the_median_run_of_each_server_in_order() -> None:
    rows = [
        _row("blocked", "dnswarden", 100.0, round=0, p99_ms=0.3),
        _row("blocked", "dnsmasq", 200.0, round=0),
        _row("blocked", "dnswarden", 300.0, round=1, p99_ms=0.9),
        _row("blocked", "dnsmasq", None, round=1, error="boom"),
        _row("blocked", "dnswarden", 200.0, round=2, p99_ms=0.5),
        _row("blocked", "unbound", None, round=0, error="no unbound"),
    ]
    chosen = results.median_rows(rows)
    assert [(r.server, r.qps, r.round) for r in chosen] == [
        ("dnswarden", 200.0, 2),
        ("dnsmasq", 200.0, 0),  # the failed round does not count
        ("unbound", None, 0),  # nothing measured: the error row stays visible
    ]
    assert results.check_targets(rows, "dnswarden")[-1].endswith(
        "0.500 ms (rounds: 0.300, 0.900, 0.500), met"
    )


@pytest.mark.parametrize(
    ("p99s", "expected"),
    [
        ((0.2, 2.8, 0.6), "0.600 ms (rounds: 0.200, 2.800, 0.600), met"),  # not the median row's
        ((1.2, 0.4, 1.1), "1.100 ms (rounds: 1.200, 0.400, 1.100), NOT met"),
        ((0.9, 1.5), "0.900 ms (rounds: 0.900, 1.500), met"),  # even: the lower middle
        ((0.7,), "0.700 ms, met"),
    ],
)
def test_p99_target_takes_the_median_of_the_rounds(p99s: tuple[float, ...], expected: str) -> None:
    rows = [
        _row("cached", "dnswarden", 100.0 * (i + 1), round=i, p99_ms=p99)
        for i, p99 in enumerate(p99s)
    ]
    rows.append(_row("cached", "dnswarden", None, round=len(p99s), error="boom", p99_ms=0.1))
    (line,) = [x for x in results.check_targets(rows, "dnswarden") if "p99" in x]
    assert line == f"cached: dnswarden p99 < 1.0 ms at the fixed rate: {expected}"


@pytest.mark.parametrize(
    ("ours", "peer", "expected"),
    [
        (60.0, 100.0, "0.60x, met"),
        (59.0, 100.0, "0.59x, NOT met"),
        (None, 100.0, "not measured"),
    ],
)
def test_targets_report_met_and_missed(ours, peer, expected: str) -> None:
    rows = [_row("blocked", "bare-loop", peer)]
    if ours is not None:
        rows.append(_row("blocked", "dnswarden", ours, p99_ms=0.4))
    lines = results.check_targets(rows, "dnswarden")
    assert lines[0].startswith("blocked: dnswarden >= 0.6x bare-loop")
    assert lines[0].split(";")[0].endswith(expected)
    if ours is not None:
        assert lines[-1].endswith("0.400 ms, met")


def test_targets_are_issue_21s_against_the_bare_loop() -> None:
    assert {(t.family, t.variant, t.peer, t.factor) for t in results.TARGETS} == {
        ("blocked", "", "bare-loop", 0.6),
        ("blocked", "-info", "bare-loop", 0.5),
        ("cached", "", "bare-loop", 0.7),
        ("unique", "", "bare-loop", 0.6),
        ("mix", "", "bare-loop", 0.6),
        ("tcp", "", "unbound", 0.8),
    }
    assert (results.P99_TARGET_MS, results.FIRST_START_S, results.RESTART_S) == (1.0, 3.0, 1.0)
    assert results.BYTES_PER_DOMAIN == 40.0


@pytest.mark.parametrize(
    ("workload", "server", "peer", "ours", "theirs", "expected"),
    [
        ("cached", "dnswarden", "bare-loop", 70.0, 100.0, "0.70x, met"),
        ("cached", "dnswarden", "bare-loop", 69.0, 100.0, "0.69x, NOT met"),
        ("unique", "dnswarden", "bare-loop", 60.0, 100.0, "0.60x, met"),
        ("mix", "dnswarden", "bare-loop", 59.0, 100.0, "0.59x, NOT met"),
        ("tcp", "dnswarden", "unbound", 80.0, 100.0, "0.80x, met"),
        ("tcp", "dnswarden", "unbound", 79.0, 100.0, "0.79x, NOT met"),
        ("blocked/exact", "dnswarden-info", "bare-loop", 50.0, 100.0, "0.50x, met"),
        ("blocked/mixed/20lists", "dnswarden-info", "bare-loop", 49.0, 100.0, "0.49x, NOT met"),
    ],
)
def test_each_target_is_judged_against_its_peer(
    workload: str, server: str, peer: str, ours: float, theirs: float, expected: str
) -> None:
    rows = [_row(workload, server, ours), _row(workload, peer, theirs)]
    (line,) = [x for x in results.check_targets(rows, "dnswarden") if x.startswith(workload)
               and f"{server} >=" in x]  # fmt: skip
    assert line.split(";")[0].endswith(expected)


@pytest.mark.parametrize(
    ("ours_cpu", "peer_cpu", "expected"),
    [
        (10.0, 5.0, "0.70x, met; CPU µs/q 10.0 (7.0 + 3.0) vs bare-loop 5.0 (3.0 + 2.0), 0.50x by "
                    "CPU (the target allows 7.1); qps and CPU disagree: the machine was busy"),
        (7.0, 5.0, "0.70x, met; CPU µs/q 7.0 (4.0 + 3.0) vs bare-loop 5.0 (3.0 + 2.0), 0.71x by "
                   "CPU (the target allows 7.1)"),
    ],
)  # fmt: skip
def test_a_qps_ratio_the_cpu_ratio_contradicts_is_flagged(ours_cpu, peer_cpu, expected) -> None:
    rows = [
        _row("cached", "dnswarden", 70.0, user_us=ours_cpu - 3.0, sys_us=3.0),
        _row("cached", "bare-loop", 100.0, user_us=peer_cpu - 2.0, sys_us=2.0),
    ]
    lines = results.check_targets(rows, "dnswarden")
    assert f"cached: dnswarden >= 0.7x bare-loop: {expected}" in lines


def test_every_list_shape_is_judged_on_its_own() -> None:
    rows = [
        _row("blocked/mixed", "dnswarden", 30.0),
        _row("blocked/mixed", "bare-loop", 100.0),
        _row("blocked/exact/20lists", "dnswarden", 65.0),
        _row("blocked/exact/20lists", "bare-loop", 100.0),
    ]
    lines = results.check_targets(rows, "dnswarden")
    ratio_lines = [x.split(";")[0] for x in lines if x.startswith("blocked/") and "n >= " in x]
    assert ratio_lines == [
        "blocked/mixed: dnswarden >= 0.6x bare-loop: 0.30x, NOT met",
        "blocked/exact/20lists: dnswarden >= 0.6x bare-loop: 0.65x, met",
    ]
    assert "blocked/exact/20lists: dnswarden-info >= 0.5x bare-loop: not measured" in lines
    assert "cached: dnswarden >= 0.7x bare-loop: not measured" in lines


def test_a_target_line_states_cpu_per_query_beside_the_ratio() -> None:
    rows = [
        _row("blocked/mixed", "dnswarden", 58_566.0, user_us=12.7, sys_us=4.4),
        _row("blocked/mixed", "bare-loop", 194_340.0, user_us=2.7, sys_us=2.4),
        _row("cached", "dnswarden", 102_991.0),  # no CPU reading
        _row("cached", "bare-loop", 206_047.0, user_us=2.6, sys_us=2.2),
    ]
    lines = results.check_targets(rows, "dnswarden")
    assert lines[0] == (
        "blocked/mixed: dnswarden >= 0.6x bare-loop: 0.30x, NOT met; CPU µs/q 17.1 (12.7 + 4.4)"
        " vs bare-loop 5.1 (2.7 + 2.4), 0.30x by CPU (the target allows 8.5)"
    )
    assert (
        "cached: dnswarden >= 0.7x bare-loop: 0.50x, NOT met; CPU µs/q - vs bare-loop 4.8 "
        "(2.6 + 2.2)"
    ) in lines


@pytest.mark.parametrize(
    ("blocked", "cached", "expected"),
    [
        ((12.7, 4.4), (6.6, 3.0), "CPU µs/q 17.1 (12.7 + 4.4) vs 9.6 (6.6 + 3.0) for a hit "
         "(1.78x); qps 58,566 vs 102,991, NOT met"),
        ((5.0, 4.0), (6.0, 3.0), "CPU µs/q 9.0 (5.0 + 4.0) vs 9.0 (6.0 + 3.0) for a hit "
         "(1.00x); qps 58,566 vs 102,991, met"),
        ((5.0, 4.0), None, "not measured"),
        (None, (6.0, 3.0), "not measured"),
    ],
)  # fmt: skip
def test_a_blocked_name_no_slower_than_a_cache_hit(blocked, cached, expected: str) -> None:
    def cpu(pair):
        return {} if pair is None else {"user_us": pair[0], "sys_us": pair[1]}

    rows = [
        _row("blocked/exact", "dnswarden", 58_566.0, **cpu(blocked)),
        _row("cached", "dnswarden", 102_991.0, **cpu(cached)),
    ]
    lines = results.check_targets(rows, "dnswarden")
    (line,) = [x for x in lines if "no slower than a cache hit" in x]
    assert line == f"blocked/exact: dnswarden a blocked name no slower than a cache hit: {expected}"


def _startup(server: str, start_s: float | None, rss_mb: float | None = None):
    row = _row("startup-2M", server, None, start_s=start_s, rss_mb=rss_mb)
    row.extra["domains"] = 2_000_000
    return row


@pytest.mark.parametrize(
    ("first", "restart", "rss", "expected"),
    [
        (3.1, 0.45, 42.0, ["3.10 s, NOT met", "0.45 s, met", "22.0 B (whole process's peak RSS "
                          "42.0 MB / 2,000,000 domains, an upper bound), met"]),
        (2.9, 1.2, 80.0, ["2.90 s, met", "1.20 s, NOT met", "41.9 B (whole process's peak RSS "
                          "80.0 MB / 2,000,000 domains, an upper bound), NOT met"]),
    ],
)  # fmt: skip
def test_big_list_targets_come_from_the_startup_rows(first, restart, rss, expected) -> None:
    rows = [_startup("dnswarden", first, rss), _startup("dnswarden-restart", restart),
            _startup("dnsmasq", 2.1, 192.0)]  # fmt: skip
    lines = [x for x in results.check_targets(rows, "dnswarden") if x.startswith("startup-2M")]
    assert lines == [
        "startup-2M: dnswarden first start, list compiled, <= 3 s to the first blocked answer: "
        + expected[0],
        "startup-2M: dnswarden <= 40 B per domain: " + expected[2],
        "startup-2M: dnswarden restart, compiled list reused, <= 1 s: " + expected[1],
    ]


def test_without_the_big_list_its_targets_are_not_measured() -> None:
    lines = results.check_targets([_row("blocked/mixed", "dnswarden", 10.0)], "dnswarden")
    (line,) = [x for x in lines if "B per domain" in x]
    assert line.startswith("start-up with the big list (first start <= 3 s, restart <= 1 s")
    assert line.endswith("not measured (no big list in this run: --quick or --big-list-size 0)")


def test_p99_targets_cover_every_list_shape() -> None:
    rows = [
        _row("blocked/mixed", "dnswarden", 10.0, p99_ms=0.3),
        _row("blocked/subdomains", "dnswarden", 10.0, p99_ms=1.3),
    ]
    lines = [x for x in results.check_targets(rows, "dnswarden") if "p99" in x]
    assert lines == [
        "blocked/mixed: dnswarden p99 < 1.0 ms at the fixed rate: 0.300 ms, met",
        "blocked/subdomains: dnswarden p99 < 1.0 ms at the fixed rate: 1.300 ms, NOT met",
    ]


@pytest.mark.parametrize(
    ("before", "after", "answered", "expected"),
    [
        ((1.0, 2.0), (1.5, 2.25), 10_000, (50.0, 25.0)),
        ((0.0, 0.0), (0.0, 0.01), 100, (0.0, 100.0)),
        (None, (1.0, 1.0), 10, (None, None)),  # the server was gone before the run
        ((1.0, 1.0), None, 10, (None, None)),  # ... or after it
        ((1.0, 1.0), (2.0, 2.0), 0, (None, None)),  # nothing answered: no per-query cost
    ],
)
def test_cpu_per_query_in_microseconds(before, after, answered: int, expected) -> None:
    user, system = results.cpu_per_query(before, after, answered)
    assert (user, system) == (
        pytest.approx(expected[0]) if expected[0] is not None else None,
        pytest.approx(expected[1]) if expected[1] is not None else None,
    )


def test_table_has_cpu_columns() -> None:
    text = results.render_table([_row("unique", "dnswarden", 10.0, user_us=108.66, sys_us=41.5)])
    header, _, line = text.splitlines()
    assert "user µs/q" in header and "sys µs/q" in header
    assert "108.7" in line and "41.5" in line


_BURN = "import time\nwhile time.process_time() < 0.4: pass\n"
_BURN_AND_STAY = _BURN + "print('burnt', flush=True)\ntime.sleep(20)\n"
_FAMILY = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {_BURN!r}])
print("reaped", flush=True)
child = subprocess.Popen([sys.executable, "-c", {_BURN_AND_STAY!r}])
time.sleep(20)
"""


def test_cpu_seconds_count_live_and_reaped_children() -> None:
    """What the CPU columns read: a server's workers while they run, and children it has
    already reaped (dnsmasq's TCP children). Each child burns 0.4 s of CPU; the parent none."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _FAMILY], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        reaped = procs.cpu_seconds(parent.pid)
        assert parent.stdout.readline().strip() == "burnt"
        both = procs.cpu_seconds(parent.pid)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    assert reaped is not None and both is not None
    assert 0.4 <= sum(reaped) < 0.8 + 0.3  # the reaped child, plus the parent's start-up
    assert sum(both) >= sum(reaped) + 0.3  # the live child too (ticks are coarse)
    assert procs.cpu_seconds(parent.pid) is None


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


@pytest.mark.parametrize(
    "argv",
    [["--duration", "0"], ["--rate", "0"], ["--workloads", "x"], ["--repeat", "0"],
     ["--repeat", "10"]],
)  # fmt: skip
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
        "from resolver.observe.stats import Stats\n"
        "s = Stats(); s.query('udp', 1, 'blocked', 0.001); s.count('x')\n"
        "assert s.results()['blocked'] == 0 and not s.counts, 'still recording'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("argv", "shapes", "splits"),
    [
        ([], ["mixed"], [1]),
        (["--list-shape", "exact", "subdomains", "exact"], ["exact", "subdomains"], [1]),
        (["--list-split", "1", "20", "20"], ["mixed"], [1, 20]),
        (["--list-size", "50", "--list-split", "50"], ["mixed"], [50]),
    ],
)
def test_list_shapes_and_splits_are_opt_in(argv, shapes, splits) -> None:
    args = main.parse_args(argv)
    assert (args.list_shape, args.list_split) == (shapes, splits)


@pytest.mark.parametrize(
    "argv",
    [["--list-shape", "deep"], ["--list-split", "0"], ["--list-split", "1001"],
     ["--list-size", "50", "--list-split", "51"], ["--list-split", "x"]],
)  # fmt: skip
def test_bad_list_shapes_and_splits_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(argv)


@pytest.mark.parametrize(
    ("shape", "split", "name", "file"),
    [
        ("mixed", 1, "blocked/mixed", "blocked.txt"),
        ("exact", 1, "blocked/exact", "blocked-exact.txt"),
        ("subdomains", 20, "blocked/subdomains/20lists", "blocked-subdomains.txt"),
    ],
)
def test_each_blocked_row_names_its_shape(shape: str, split: int, name: str, file: str) -> None:
    (workload,) = main.blocked_workloads([shape], [split])
    assert (workload.name, workload.max_file, workload.rate_file) == (name, file, file)
    assert workload.split == split and not workload.once and not workload.tcp
    assert results.family(workload.name) == "blocked"


def test_the_default_quick_run_measures_the_same_rows_as_before_the_shapes(tmp_path) -> None:
    """The run's cost: one `blocked` row per server and variant, as before `--list-shape`."""
    plan = _bench_with_data(tmp_path, ["--quick"]).plan()
    counts: dict[str, int] = {}
    for workload, _, _ in plan:
        counts[workload.name] = counts.get(workload.name, 0) + 1
    assert counts == {"blocked/mixed": 7, "cached": 6, "unique": 5, "mix": 5, "tcp": 4}


def test_shapes_and_splits_multiply_only_the_blocked_rows(tmp_path: Path) -> None:
    argv = [
        *("--workloads", "blocked", "cached", "--servers", "dnswarden", "dnsmasq", "bare-loop"),
        *("--list-shape", "exact", "mixed", "--list-split", "1", "20", "--repeat", "2"),
    ]
    plan = _bench_with_data(tmp_path, argv).plan()
    names = list(dict.fromkeys(w.name for w, _, _ in plan))
    assert names == ["blocked/exact", "blocked/exact/20lists", "blocked/mixed",
                     "blocked/mixed/20lists", "cached"]  # fmt: skip
    servers = {name: [s for w, r, s in plan if w.name == name and r == 0] for name in names}
    assert servers["blocked/exact"] == [
        "dnswarden", "dnswarden-nostats", "dnswarden-info", "dnsmasq", "bare-loop"
    ]  # fmt: skip
    for name in names[1:4]:  # the metrics' cost is shown once, on the first shape
        assert servers[name] == ["dnswarden", "dnswarden-info", "dnsmasq", "bare-loop"]
    assert servers["cached"] == ["dnswarden", "dnswarden-nostats", "dnsmasq", "bare-loop"]
    assert [r for w, r, s in plan if w.name == "blocked/mixed" and s == "dnsmasq"] == [0, 1]


def test_a_split_row_gives_every_server_all_the_parts(tmp_path: Path) -> None:
    bench = _bench_with_data(tmp_path, [])
    assert bench.data is not None
    bench.data.splits = (3,)
    files = main.split_files(3)
    plain = [str(tmp_path / f[0]) for f in files]
    dnsmasq = bench.spec("dnsmasq", split=3).argv
    assert [a for a in dnsmasq if a.startswith("--conf-file=")] == [
        f"--conf-file={tmp_path / f[1]}" for f in files
    ]
    unbound = next(iter(bench.spec("unbound", split=3).files.values()))
    assert [str(tmp_path / f[2]) in unbound for f in files] == [True] * 3
    assert _flag_values(bench.spec(main.BARE, split=3).argv, "--blocklist") == plain
    for server in ("dnswarden", "dnswarden-info"):
        config = yaml.safe_load(next(iter(bench.spec(server, split=3).files.values())))
        assert config["blocking"]["lists"] == plain
    with pytest.raises(ValueError, match="no list split in 4"):
        bench.spec("dnsmasq", split=4)


def test_every_dnswarden_row_shares_the_runs_own_state_dir(tmp_path: Path) -> None:
    bench = _bench_with_data(tmp_path, ["--workers", "2"])
    dirs = {
        yaml.safe_load(next(iter(bench.spec(server).files.values())))["state_dir"]
        for server in ("dnswarden", "dnswarden-info", "dnswarden-nostats", "dnswarden-w2",
                       "dnswarden-restart")
    }  # fmt: skip
    assert dirs == {str(tmp_path / "dnswarden-state")}


def test_the_big_list_is_started_again_to_time_a_restart(tmp_path: Path) -> None:
    chosen = _bench_with_data(tmp_path, ["--workers", "2"]).servers_for("startup")
    assert chosen[:3] == ["dnswarden", "dnswarden-restart", "dnswarden-w2"]
    assert "dnswarden-restart" not in _bench_with_data(tmp_path, []).servers_for("blocked/mixed")
    assert main.RESTART_VARIANT == "dnswarden" + results.RESTART_SUFFIX


# bare (bench/bare.py, the bare-loop ceiling)

bare = _bench("bare")
procs = _bench("procs")

QUERY_A = "1234 0100 0001 0000 0000 0000 01 61 07 6578616d706c65 00 0001 0001"
"""a.example. A, ID 0x1234, RD: the question ends at byte 27."""


def _label_name(*lengths: int) -> str:
    return "".join(f"{n:02x}" + "61" * n for n in lengths) + "00"


@pytest.mark.parametrize(
    ("hexdata", "expected"),
    [
        (QUERY_A, 27),
        (QUERY_A + " 00 0029 04d0 0000 0000 0000", 27),  # an OPT after the question
        ("abcd 0000 0001 0000 0000 0000 00 0001 0001", 17),  # the root name
        ("1234 0100 0001 0000 0000 0000" + _label_name(63, 63, 63, 61) + "0001 0001", 12 + 259),
        ("1234 0100 0001 0000 0000 0000" + _label_name(63, 63, 63, 62) + "0001 0001", 0),
        ("1234 8180 0001 0000 0000 0000 01 61 07 6578616d706c65 00 0001 0001", 0),  # a response
        ("1234 0100 0002 0000 0000 0000 01 61 07 6578616d706c65 00 0001 0001", 0),
        ("1234 0100 0000 0000 0000 0000 01 61 07 6578616d706c65 00 0001 0001", 0),
        ("1234 0100 0001 0000 0000 0000 01 61 07 6578616d706c65 00 0001", 0),  # no class
        ("1234 0100 0001 0000 0000 0000 01 61 07 6578616d706c", 0),  # name cut short
        ("1234 0100 0001 0000 0000 0000 40" + "61" * 64 + "00 0001 0001", 0),  # label of 64
        ("1234 0100 0001 0000 0000 0000 01 61 c00c 0001 0001", 0),  # a compression pointer
        ("1234 0100 0001 0000 00", 0),
        ("", 0),
    ],
)
def test_bare_question_end_accepts_only_one_sane_question(hexdata: str, expected: int) -> None:
    assert bare.question_end(bytes.fromhex(hexdata)) == expected


def _wire(name: str) -> bytes:
    return dns.name.from_text(name).to_wire()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tiktok.com.", True),
        ("www.tiktok.com.", True),
        ("a.b.c.tiktok.com.", True),
        ("nottiktok.com.", False),
        ("tiktok.com.evil.", False),
        ("com.", False),
        (".", False),
        ("deep.only.example.", True),
        ("only.example.", False),
    ],
)
def test_bare_suffix_walk_blocks_listed_names_and_their_subdomains(name: str, expected) -> None:
    listed = bare.wire_names("tiktok.com\ndeep.only.example\n")
    assert bare.is_blocked(_wire(name), listed) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TikTok.COM.\n", {"tiktok.com."}),
        ("# a comment\n\na.example  # why\n", {"a.example."}),
        ("bad..name\n" + "x" * 64 + ".example\nok.example\n", {"ok.example."}),
        (".\n\n#\n", set()),
        ("é.example\n", set()),
        (".".join(["a" * 63] * 4) + "\n", set()),
    ],
)
def test_bare_blocklist_is_lowercased_wire_names(text: str, expected: set[str]) -> None:
    assert bare.wire_names(text) == {_wire(name) for name in expected}


@pytest.mark.parametrize(
    ("query", "reply"),
    [
        (
            QUERY_A,
            "1234 8180 0001 0001 0000 0000 01 61 07 6578616d706c65 00 0001 0001"
            " c00c 0001 0001 0000003c 0004 00000000",
        ),
        (
            "beef 0000 0001 0000 0000 0000 01 41 07 6578616d706c65 00 001c 0001",
            "beef 8080 0001 0000 0000 0000 01 41 07 6578616d706c65 00 001c 0001",
        ),
    ],
)
def test_bare_blocked_reply_is_built_from_the_query(query: str, reply: str) -> None:
    packet = bytes.fromhex(query)
    built = bare.blocked_reply(packet, bare.question_end(packet))
    assert built == bytes.fromhex(reply)
    assert dns.message.from_wire(packet).is_response(dns.message.from_wire(built))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5300", ("127.0.0.1", 5300)),
        ("127.1.2.3:53", ("127.1.2.3", 53)),
        ("10.0.0.1:53", None),
        ("0.0.0.0:53", None),
        ("[::1]:53", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:70000", None),
        ("127.0.0.1", None),
        ("localhost:53", None),
    ],
)
def test_bare_listens_and_forwards_on_ipv4_loopback_only(text: str, expected) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            bare.loopback(text)
    else:
        assert bare.loopback(text) == expected


@pytest.mark.parametrize("flag", ["--listen", "--upstream"])
def test_bare_cli_refuses_other_addresses(flag: str, tmp_path: Path, capsys) -> None:
    argv = {"--listen": "127.0.0.1:5300", "--upstream": "127.0.0.1:5301"}
    argv[flag] = "192.0.2.1:53"
    with pytest.raises(SystemExit) as stop:
        bare.main([*(x for item in argv.items() for x in item), "--blocklist", str(tmp_path)])
    assert stop.value.code == 2
    assert "loopback" in capsys.readouterr().err


def _bench_with_data(tmp_path: Path, argv: list[str]):
    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("blocked.example\n")
    data = main.Data(tmp_path, {}, listfile, None, "blocked.example", "a.bench.test", "198.18.0.0")
    bench = main.Bench(main.parse_args(argv), tmp_path, None)
    bench.data, bench.nsd_port = data, 5301
    return bench


@pytest.mark.parametrize("workload", [*main.WORKLOADS, "startup"])
def test_bare_row_runs_by_default_except_tcp_and_startup(workload: str, tmp_path: Path) -> None:
    chosen = _bench_with_data(tmp_path, []).servers_for(workload)
    assert (main.BARE in chosen) == (workload in ("blocked", "cached", "unique", "mix"))
    assert "dnswarden" in chosen
    without = _bench_with_data(tmp_path, ["--servers", "dnswarden", "unbound"])
    assert main.BARE not in without.servers_for(workload)


def test_bare_row_gets_the_same_list_and_upstream_as_dnswarden(tmp_path: Path) -> None:
    bench = _bench_with_data(tmp_path, ["--servers", "bare-loop"])
    spec, ours = bench.spec(main.BARE), bench.spec("dnswarden")
    assert spec.argv[:3] == (sys.executable, "-m", "bench.bare")
    assert spec.kind in peers.PYTHON_KINDS and spec.name == main.BARE
    flags = dict(zip(spec.argv[3::2], spec.argv[4::2], strict=True))
    config = yaml.safe_load(next(iter(ours.files.values())))
    assert flags["--listen"] == f"127.0.0.1:{spec.port}"
    assert [flags["--upstream"]] == config["upstream"]["servers"] == ["127.0.0.1:5301"]
    assert [flags["--blocklist"]] == config["blocking"]["lists"]
    assert bench.cpus_for(main.BARE) == "0"


def test_bare_loop_argv_is_loopback_only(tmp_path: Path) -> None:
    spec = peers.bare_spec(5304, 5300, str(tmp_path / "b.txt"), "python3")
    words = [w for w in spec.argv if w.count(".") == 3]
    assert words == ["127.0.0.1:5304", "127.0.0.1:5300"]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        (list(main.SERVERS), ["dnsmasq", "unbound", "dnsdist", "bare-loop"]),
        (["dnswarden", "bare-loop", "unbound"], ["unbound", "bare-loop"]),
        (["dnswarden"], []),
    ],
)
def test_ratio_columns_end_with_the_bare_loop(servers: list[str], expected: list[str]) -> None:
    assert main.ratio_columns(servers) == expected


def test_ratio_table_shows_dnswarden_over_the_bare_loop() -> None:
    rows = [
        _row("unique", "dnswarden", 30.0),
        _row("unique", "unbound", 20.0),
        _row("unique", "bare-loop", 40.0),
        _row("blocked", "dnswarden", 10.0),
        _row("blocked", "bare-loop", 40.0),
    ]
    columns = main.ratio_columns(["dnswarden", "unbound", "bare-loop"])
    table = results.ratios(rows, "dnswarden", columns)
    assert table == {"unique": {"unbound": 1.5, "bare-loop": 0.75}, "blocked": {"bare-loop": 0.25}}
    lines = results.render_ratios(table, "dnswarden", columns).splitlines()
    assert lines[0].split("|")[2:4] == [" dnswarden / unbound ", " dnswarden / bare-loop "]
    assert "0.75x" in lines[2] and "0.25x" in lines[3]


class FakeUpstream:
    """A loopback UDP upstream in a thread: before each right answer (192.0.2.7) it sends a reply
    with the wrong ID and one from another port, both saying 203.0.113.9, which must be ignored."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[str, int, int]] = []  # (name, message ID, source port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, query, address: str, qid: int) -> bytes:
        import dns.rrset

        reply = dns.message.make_response(query)
        reply.id = qid
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", address))
        return reply.to_wire()

    def _run(self) -> None:
        import time

        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            self.seen.append((query.question[0].name.to_text(), query.id, source[1]))
            self.sock.sendto(self._answer(query, "203.0.113.9", query.id ^ 0x5A5A), source)
            self.other.sendto(self._answer(query, "203.0.113.9", query.id), source)
            self.sock.sendto(self._answer(query, "192.0.2.7", query.id), source)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
        self.other.close()


def _ask(port: int, name: str) -> tuple[int, list[str]]:
    import dns.query

    query = dns.message.make_query(name, "A")
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    return query.id, [item.address for rrset in reply.answer for item in rrset]


def test_bare_loop_sinkholes_forwards_with_fresh_ports_and_caches(tmp_path: Path) -> None:
    import signal
    import time

    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("# test\nblocked.example\n")
    upstream = FakeUpstream()
    port = procs.free_port()
    argv = [sys.executable, "-m", "bench.bare", "--listen", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{upstream.port}", "--blocklist", str(listfile)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "bare.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while procs.query(port, "www.blocked.example") is None:
            assert proc.poll() is None and time.monotonic() < deadline, "bare loop never answered"
            time.sleep(0.05)
        assert _ask(port, "WWW.Blocked.Example")[1] == ["0.0.0.0"]
        asked = [_ask(port, f"n{i}.fwd.test") for i in range(3)]
        assert [addresses for _, addresses in asked] == [["192.0.2.7"]] * 3
        assert _ask(port, "N1.fwd.TEST")[1] == ["192.0.2.7"]
        assert [name for name, _, _ in upstream.seen] == [f"n{i}.fwd.test." for i in range(3)]
        assert len({source for _, _, source in upstream.seen}) > 1
        assert [qid for _, qid, _ in upstream.seen] != [qid for qid, _ in asked]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        upstream.close()


def test_bare_loop_merges_every_list_into_one_set(tmp_path: Path, monkeypatch) -> None:
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    files[0].write_text("one.example\n")
    files[1].write_text("two.example\none.example\n")
    served: list[set[bytes]] = []
    monkeypatch.setattr(bare, "serve", lambda listen, upstream, blocked: served.append(blocked))
    argv = ["--listen", "127.0.0.1:5300", "--upstream", "127.0.0.1:5301"]
    assert bare.main([*argv, "--blocklist", str(files[0]), "--blocklist", str(files[1])]) == 0
    assert served == [{_wire("one.example."), _wire("two.example.")}]


# probe (bench/probe.py) and what bench/run needs installed

probe = _bench("probe")
bench_main = _bench("__main__")


@pytest.mark.parametrize("name", ["a.example", "www.Blocked.example.", "x" * 63 + ".test"])
def test_probe_query_is_a_plain_recursive_a_query(name: str) -> None:
    message = dns.message.from_wire(probe.query_packet(name, 0xBEEF))
    assert message.id == 0xBEEF
    assert message.flags == dns.flags.RD and message.edns < 0
    (question,) = message.question
    assert question.name == dns.name.from_text(name)
    assert question.rdtype == dns.rdatatype.A


@pytest.mark.parametrize("name", ["", "a..example", "x" * 64 + ".test", ".".join(["a" * 63] * 4)])
def test_probe_refuses_names_that_are_not_hostnames(name: str) -> None:
    with pytest.raises(ValueError):
        probe.query_packet(name, 1)


def _response(name: str, rcode: int = 0, *records: str, qid: int = 7) -> bytes:
    import dns.rrset

    query = dns.message.make_query(name, "A")
    query.id = qid
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for record in records:
        owner, rtype, value = record.split(" ", 2)
        reply.answer.append(dns.rrset.from_text(owner, 60, "IN", rtype, value))
    return reply.to_wire()


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (_response("b.example.", 0, "b.example. A 0.0.0.0"), ("NOERROR", ["0.0.0.0"])),
        (_response("a.test.", 0, "a.test. CNAME c.a.test.", "c.a.test. A 198.18.0.1",
                   "c.a.test. A 198.18.0.2"), ("NOERROR", ["198.18.0.1", "198.18.0.2"])),
        (_response("a.test.", 0, "a.test. AAAA ::1"), ("NOERROR", [])),
        (_response("a.test.", 3), ("NXDOMAIN", [])),
        (_response("a.test.", 5), ("REFUSED", [])),
        (_response("a.test.", 2), ("SERVFAIL", [])),
        (_response("a.test.", 0, "a.test. A 1.2.3.4", qid=8), None),  # another query's
        (_response("a.test.", 0, "a.test. A 1.2.3.4")[:-2], None),  # cut short
        (_response("a.test.", 0, "a.test. A 1.2.3.4")[:11], None),
        (bytes.fromhex(QUERY_A.replace(" ", "").replace("1234", "0007", 1)), None),  # a query
    ],
)  # fmt: skip
def test_probe_reads_rcode_and_addresses_of_the_reply_to_its_query(wire: bytes, expected) -> None:
    assert probe.read_reply(wire, 7) == expected


def test_probe_to_a_closed_port_is_no_answer() -> None:
    assert procs.query(procs.free_port(), "a.example", timeout=1.0) is None


# The fuzz campaign replays the e2e fuzz tier's own mutations (tests/e2e/test_e2e_fuzz.py, which
# builds its seed packets with dnspython): it needs the test extra, and says so.
NEEDS_TEST_EXTRA = {"fuzz.py"}


def _bench_imports() -> set[str]:
    import ast

    names: set[str] = set()
    for path in (ROOT / "bench").rglob("*.py"):
        if path.name in NEEDS_TEST_EXTRA:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_bench_imports_only_what_readmes_quick_start_installs() -> None:
    """`pip install '.[speed]'`: dnswarden's dependencies (of which the bench uses PyYAML) and
    uvloop; the bench checks for those, never for the test extra."""
    third_party = _bench_imports() - set(sys.stdlib_module_names) - {"bench", "resolver"}
    assert third_party == {"yaml", "uvloop"}
    required = bench_main.required((ROOT / "pyproject.toml").read_text())
    assert "pyyaml" in required and "pytest" not in required and "ruff" not in required


def _run_bench(prelude: str, *flags: str) -> subprocess.CompletedProcess[str]:
    code = f"import runpy, sys\n{prelude}\nsys.argv = ['bench', '--help']\n" + (
        "runpy.run_module('bench', run_name='__main__', alter_sys=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_bench_starts_without_dnspython() -> None:
    done = _run_bench("sys.modules['dns'] = None  # import dns now fails")
    assert done.returncode == 0, done.stderr
    assert "--list-shape" in done.stdout


def test_bench_without_dnswardens_dependencies_says_what_to_install() -> None:
    done = _run_bench("sys.path[:] = [p for p in sys.path if 'packages' not in p]", "-S")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("bench: ") and "pyyaml" in line
    assert line.endswith("python3 -m venv .venv && .venv/bin/pip install '.[speed]'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[project]\ndependencies = ["dnslib>=0.9", "PyYAML>=6.0", "h2"]\n',
         ["dnslib", "PyYAML", "h2"]),
        ('[project]\ndependencies = ["uvloop>=0.19; sys_platform != \'win32\'", "a-b.c[x]"]\n',
         ["a-b.c"]),
        ("[project]\nname = 'x'\n", []),
    ],
)  # fmt: skip
def test_required_are_the_projects_dependencies(text: str, expected: list[str]) -> None:
    assert bench_main.required(text) == expected


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"pyyaml", "h2"}, None),
        ({"h2"}, "bench: /py lacks dnswarden's dependencies pyyaml; install them as README's "
                 "quick start does: python3 -m venv .venv && .venv/bin/pip install '.[speed]'"),
    ],
)  # fmt: skip
def test_missing_dependencies_make_one_line(installed: set[str], expected) -> None:
    assert bench_main.missing_line(["pyyaml", "h2"], installed.__contains__, "/py") == expected


def test_a_big_list_under_2m_names_is_not_judged() -> None:
    row = _row("startup-100k", "dnswarden", None, start_s=0.6, rss_mb=38.0)
    row.extra["domains"] = 100_000
    lines = [x for x in results.check_targets([row], "dnswarden") if x.startswith("startup")]
    assert lines == [
        "startup-100k: not judged: the start-up targets are for 2,000,000 names, this list has "
        "100,000"
    ]


@pytest.mark.parametrize(
    ("answered", "p99_ms", "verdict"),
    [(100.0, 33.0, "met"), (99.0, 99.9, "met"), (98.9, 10.0, "NOT met"), (100.0, 100.0, "NOT met")],
)
def test_flood_targets_are_judged_per_dnswarden_row(
    answered: float, p99_ms: float, verdict: str
) -> None:
    from bench.flood import FloodRow, verdicts

    rows = [
        FloodRow("dnswarden", "other-client", 500, answered, 1.0, p99_ms, 240_000, 1_000),
        FloodRow("unbound", "other-client", 500, 40.0, 1.0, 900.0, 240_000, 1_000),
    ]
    (line,) = verdicts(rows)
    assert line.startswith("target other-client: victim answered")
    assert line.endswith(f": {verdict}")


# encrypted workloads (dot, doh)

DNSPERF_DOH_UNMATCHED = """\
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         329
  Queries completed:    29 (8.81%)
  Queries lost:         300 (91.19%)

  Response codes:       NOERROR 29 (100.00%)
  Average packet size:  request 39, response 66
  Run time (s):         3.000179
  Queries per second:   9.665951

  Average Latency (s):  0.001278 (min 0.000100, max 0.041214)
  Latency StdDev (s):   0.006477

Connection Statistics:

  Reconnections:        0

  Average Latency (s):  0.002513 (min 0.002513, max 0.002513)

DNS-over-HTTPS statistics:

  HTTP/2 return codes:  200: 321, 400: 2
"""

DNSDIST_VERSION = """\
dnsdist 1.7.3 (Lua 5.1.4 [LuaJIT 2.1.0-beta3])
Enabled features: cdb dns-over-tls(openssl) dns-over-https(DOH) dnscrypt ebpf fstrm ipcipher \
libsodium lmdb outgoing-dns-over-https(nghttp2) protobuf re2 recvmmsg/sendmmsg snmp systemd
"""
UNBOUND_VERSION = """\
Version 1.17.1

Configure line: --build=x86_64-linux-gnu --with-pyunbound --with-libnghttp2 --with-libevent
Linked libs: libevent 2.1.12-stable (it uses epoll), OpenSSL 3.0.22 25 Aug 2026
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DNSDIST_VERSION, {"dot", "doh"}),
        (DNSDIST_VERSION.replace(" dns-over-https(DOH)", ""), {"dot"}),  # only outgoing DoH
        ("dnsdist 1.4.0\nEnabled features: dnscrypt ebpf\n", set()),
        ("", set()),
    ],
)
def test_dnsdist_build_says_which_encrypted_listeners_it_has(text: str, expected) -> None:
    assert peers.dnsdist_transports(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (UNBOUND_VERSION, {"dot", "doh"}),
        (UNBOUND_VERSION.replace(" --with-libnghttp2", ""), {"dot"}),
        (UNBOUND_VERSION.replace(", OpenSSL 3.0.22 25 Aug 2026", ""), set()),
        ("", set()),
    ],
)
def test_unbound_build_says_which_encrypted_listeners_it_has(text: str, expected) -> None:
    assert peers.unbound_transports(text) == expected


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("udp", []),
        ("tcp", ["-m", "tcp"]),
        ("dot", ["-m", "dot"]),
        ("doh", ["-m", "doh", "-O", "doh-uri=https://127.0.0.1/dns-query", "-O",
                 "doh-method=GET"]),
    ],
)  # fmt: skip
def test_dnsperf_transport_options(mode: str, expected: list[str]) -> None:
    assert peers.dnsperf_mode_args(mode) == expected


def test_parse_dnsperf_doh_counts_http_answers_apart() -> None:
    stats = results.parse_dnsperf(DNSPERF_DOH_UNMATCHED)
    assert stats.http_codes == {"200": 321, "400": 2}
    assert results.parse_dnsperf(DNSPERF_UDP).http_codes == {}


@pytest.mark.parametrize(
    ("completed", "http", "expected"),
    [
        (29, {"200": 321, "400": 2}, "dnsperf matched 29 of 323 HTTP answers: not a measurement"),
        (5007, {"200": 5007}, None),
        (5000, {"200": 5007}, None),  # answers in flight when the run ended
        (100, {}, None),  # not DoH
    ],
)
def test_unanswered_doh_rows_are_flagged(completed: int, http, expected: str | None) -> None:
    stats = results.DnsperfStats(completed=completed, http_codes=http)
    assert results.unmatched_answers(stats) == expected


def _tls(tmp_path: Path, make: bool = False):
    cert, key = tmp_path / "tls-cert.pem", tmp_path / "tls-key.pem"
    if make:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed (bench/run installs it)")
        subprocess.run(peers.certificate_argv(cert, key), check=True, capture_output=True,
                       timeout=60)  # fmt: skip
    return peers.Tls({"dot": 5310, "doh": 5311}, str(cert), str(key))


def test_the_runs_certificate_covers_loopback_for_two_days(tmp_path: Path) -> None:
    tls = _tls(tmp_path, make=True)
    argv = peers.certificate_argv(Path(tls.certificate), Path(tls.key))
    assert argv[0] == "openssl" and argv[argv.index("-days") + 1] == "2"
    shown = ["openssl", "x509", "-noout", "-text", "-in", tls.certificate]
    text = subprocess.run(shown, check=True, capture_output=True, text=True, timeout=30).stdout
    assert "DNS:bench.test, IP Address:127.0.0.1" in text


def test_dnswarden_config_with_encrypted_listeners_is_accepted(tmp_path: Path) -> None:
    tls = _tls(tmp_path, make=True)
    listfile = tmp_path / "blocklist.txt"
    listfile.write_text("blocked.example\n")
    data = peers.dnswarden_config(5300, 5301, str(listfile), tls=tls)
    config = parse_config(
        yaml.safe_dump(data), "bench.yaml", base_dir=tmp_path, known_lists=catalogue_ids()
    )
    assert [str(e) for e in config.encrypted.dot] == ["127.0.0.1:5310"]
    assert [str(e) for e in config.encrypted.doh] == ["127.0.0.1:5311"]
    assert config.encrypted.certificate == tls.certificate
    assert "encrypted" not in peers.dnswarden_config(5300, 5301, str(listfile))


@pytest.mark.parametrize("server", ["unbound", "dnsdist"])
def test_peer_configs_with_encrypted_listeners_pass_their_checkers(server: str, tmp_path) -> None:
    tls = _tls(tmp_path, make=True)
    if server == "unbound":
        block = tmp_path / "unbound-block.conf"
        gen.write_lines(block, peers.unbound_block_lines(["blocked.example.com"]))
        spec = peers.unbound_spec(tmp_path, 5301, 5300, str(block), tls)
        _write(spec)
        _checked(["unbound-checkconf", spec.argv[-1]])
        conf = next(iter(spec.files.values()))
        for line in ("interface: 127.0.0.1@5310", "interface: 127.0.0.1@5311", "tls-port: 5310",
                     "https-port: 5311", 'http-endpoint: "/dns-query"'):  # fmt: skip
            assert f"  {line}\n" in conf, line
    else:
        listfile = tmp_path / "blocklist.txt"
        listfile.write_text("blocked.example.com\n")
        spec = peers.dnsdist_spec(tmp_path, 5302, 5300, str(listfile), tls)
        _write(spec)
        _checked(["dnsdist", "--check-config", "-C", spec.argv[-1]])
        conf = next(iter(spec.files.values()))
        assert 'addTLSLocal("127.0.0.1:5310"' in conf and 'addDOHLocal("127.0.0.1:5311"' in conf
    assert (spec.port_for("dot"), spec.port_for("doh"), spec.port_for("udp")) == (
        5310, 5311, spec.port)  # fmt: skip


def test_encrypted_listeners_are_on_loopback_only(tmp_path: Path) -> None:
    tls = _tls(tmp_path)
    specs = [
        peers.unbound_spec(tmp_path, 5301, 5300, "b", tls),
        peers.dnsdist_spec(tmp_path, 5302, 5300, "b", tls),
        peers.dnswarden_spec(tmp_path, "dnswarden", 5304, 5300, "b", "python3", tls=tls),
    ]
    for spec in specs:
        text = " ".join(spec.argv) + "".join(spec.files.values())
        text += " ".join(peers.dnsperf_mode_args("doh"))
        addresses = {word.strip("\"'{}(),:@#/") for word in text.replace("=", " ").split()}
        addresses |= {w.split("//")[-1].split("/")[0] for w in text.split() if "//" in w}
        dotted = {a.split(":")[0].split("@")[0].split("#")[0] for a in addresses}
        ips = {a for a in dotted if a.count(".") == 3 and a.replace(".", "").isdigit()}
        assert ips <= {"127.0.0.1", "0.0.0.0"}, spec.name
        assert sorted(spec.tls_ports.values()) == [5310, 5311], spec.name


def test_a_server_without_the_listener_has_no_port_for_it(tmp_path: Path) -> None:
    spec = peers.unbound_spec(tmp_path, 5301, 5300, "b")
    assert spec.port_for("udp") == spec.port_for("tcp") == 5301
    with pytest.raises(ValueError, match="no doh listener"):
        spec.port_for("doh")


def test_encrypted_workloads_are_opt_in_and_send_the_blocked_names(tmp_path: Path) -> None:
    assert main.parse_args([]).workloads == list(main.DEFAULT_WORKLOADS)
    assert not set(main.DEFAULT_WORKLOADS) & set(main.ENCRYPTED_WORKLOADS)
    table = main.workloads()
    for mode in ("dot", "doh"):
        workload = table[mode]
        assert (workload.mode, workload.max_file, workload.rate_file) == (
            mode, "blocked.txt", "blocked.txt")  # fmt: skip
        assert not workload.once and not workload.tcp and workload.prime_file is None
    assert table["tcp"].mode == "tcp" and table["blocked"].mode == "udp"


def test_encrypted_rows_run_only_servers_with_such_listeners(tmp_path: Path) -> None:
    argv = ["--workloads", "blocked", "dot", "doh", "--workers", "2", "--no-info-row"]
    plan = _bench_with_data(tmp_path, argv).plan()
    rows = {name: [s for w, _, s in plan if w.name == name] for name in ("dot", "doh")}
    assert rows["dot"] == rows["doh"] == ["dnswarden", "dnswarden-w2", "unbound", "dnsdist"]
    assert "dnsmasq" in [s for w, _, s in plan if w.name == "blocked/mixed"]


def test_a_build_without_the_listener_is_an_error_row_not_a_silent_gap(tmp_path: Path) -> None:
    bench = _bench_with_data(tmp_path, ["--workloads", "dot", "doh"])
    assert bench.data is not None
    bench.data.certificate, bench.data.key = tmp_path / "c.pem", tmp_path / "k.pem"
    bench.encrypted = {"dnswarden": frozenset({"dot", "doh"}), "unbound": frozenset({"dot"}),
                       "dnsdist": frozenset({"dot"})}  # fmt: skip
    with pytest.raises(RuntimeError, match="no doh listener in this dnsdist build"):
        bench.spec("dnsdist", mode="doh")
    unbound = bench.spec("unbound", mode="dot")
    assert set(unbound.tls_ports) == {"dot"}  # no https-port it could not serve
    assert "https-port" not in next(iter(unbound.files.values()))
    ours = yaml.safe_load(next(iter(bench.spec("dnswarden-w2", mode="doh").files.values())))
    assert ours["encrypted"]["certificate"] == str(tmp_path / "c.pem")
    assert set(ours["encrypted"]) >= {"dot", "doh", "key", "server_name"}
    assert bench.spec("dnsdist").tls_ports == {}  # the UDP rows get no encrypted listeners


def test_servers_run_the_checkout_unless_dnswarden_is_installed(tmp_path: Path) -> None:
    """An installed dnswarden (the compiled build is one: docs/compiled.md) is what the rows
    measure; the checkout on PYTHONPATH would shadow it with the pure `resolver/`."""
    assert main.server_pythonpath(tmp_path, installed=False) == [str(ROOT)]
    [only_bench] = main.server_pythonpath(tmp_path, installed=True)
    assert only_bench != str(ROOT) and not (Path(only_bench) / "resolver").exists()
    assert (Path(only_bench) / "bench").resolve() == ROOT / "bench"
    import resolver

    # An install into a venv inside the checkout (README's .venv) is an installed one too.
    from_checkout = Path(resolver.__file__).resolve().is_relative_to(ROOT / "resolver")
    assert main.installed_resolver(sys.executable) == (not from_checkout)


def test_dnswarden_rows_say_which_core_they_measured(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONSAFEPATH": "1"}
    assert main.core_build(sys.executable, env) == "pure"  # the checkout has no extensions
    bench = _bench_with_data(tmp_path, ["--servers", "dnswarden"])
    assert bench.core in ("pure", "compiled")
    import resolver
    from resolver.protocol import core_build

    if Path(resolver.__file__).resolve().is_relative_to(ROOT / "resolver"):
        assert bench.core == "pure"
    else:
        assert bench.core == core_build()
    for server, compiled in (("dnswarden", bench.core == "compiled"), ("dnsmasq", None)):
        row = results.Row("blocked", server)
        bench.mark_build(row, bench.spec(server))
        assert row.extra.get("compiled") is compiled, server
