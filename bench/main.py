"""`bench/run`: measure dnswarden and dnsmasq, unbound, dnsdist in one run, on loopback.

For each workload and each server the server is started fresh on core 0 (its start-up time with
the list is measured up to its first correct answer), primed when the workload needs it, loaded
by dnsperf on core 1 at full speed for `--duration` seconds, then at a fixed rate for the same
time for latency, and stopped; its peak RSS is read before it stops.  nsd, the authoritative
upstream of every server, runs for the whole benchmark.  The table, dnswarden's ratio to each
peer and to the bare-loop ceiling (bench/bare.py), and issue 21's targets are printed; the raw
results are written as JSON.  The `blocked` workload runs once per list shape and split asked
for (`--list-shape`, `--list-split`), each its own row: `blocked/mixed`, `blocked/exact/20lists`.
The encrypted workloads (`dot`, `doh`: the blocked names over DNS over TLS and over HTTPS) are
opt-in; they make a self-signed certificate in the temp dir and run the servers that have such
listeners (dnswarden, unbound, dnsdist), each build's support read from its version output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gen, peers, procs, results
from bench.peers import BARE, HOST, ServerSpec

REPO = Path(__file__).resolve().parent.parent
TOOLS = {
    "dnsperf": "dnsperf",
    "nsd": "nsd",
    "dnsmasq": "dnsmasq",
    "unbound": "unbound",
    "dnsdist": "dnsdist",
    "taskset": "util-linux",
    "openssl": "openssl",
}
"""Command -> the Debian package that has it."""

POLICY_RC = "#!/bin/sh\n# bench/run: no service starts while it installs packages\nexit 101\n"
DEFAULT_WORKLOADS = ("blocked", "cached", "unique", "mix", "tcp")
ENCRYPTED_WORKLOADS = peers.ENCRYPTED_MODES
"""Opt-in (`--workloads dot doh`): the default run keeps its rows and its length."""
WORKLOADS = (*DEFAULT_WORKLOADS, *ENCRYPTED_WORKLOADS)
SERVERS = ("dnswarden", *peers.PEERS, BARE)
BARE_WORKLOADS = ("blocked", "cached", "unique", "mix")
"""bench/bare.py has no TCP, and its start-up with a big list says nothing about dnswarden."""
OURS = "dnswarden"
INFO_VARIANT = "dnswarden-info"
NOSTATS_VARIANT = "dnswarden-nostats"  # recording off: what the metrics cost (bench/nostats.py)
RESTART_VARIANT = OURS + results.RESTART_SUFFIX
"""Started with the big list right after `dnswarden`, same state_dir: the restart time."""
MAX_SPLIT = 1000
DNSPERF_TIMEOUT = 2
MAX_CLIENTS, MAX_OUTSTANDING = 8, 150
"""150 in flight saturates any one-core server on loopback and still fits the kernel's default
208 KiB UDP receive buffer, which dnsmasq, unbound and dnsdist keep: a larger window loses its
first burst there (counted as RcvbufErrors), which would measure the buffer, not the server."""
RATE_CLIENTS, RATE_OUTSTANDING = 4, 100
PRIME_OUTSTANDING = 20
START_LIMIT = 120.0
BIG_START_LIMIT = 600.0
SETTLE = 1.0
NO_CACHE_NOTE = "no cache in this checkout: hits are forwarded (identical in-flight merged)"
SLACK = 30.0


@dataclass(frozen=True, slots=True)
class Workload:
    """What one workload sends: files for the full-speed and fixed-rate runs, and how."""

    name: str
    max_file: str
    rate_file: str
    prime_file: str | None
    once: bool
    """Each name at most once (`-n 1`): unique names must not become cache hits."""
    mode: str = "udp"
    """dnsperf's transport (`-m`): udp, tcp, dot or doh."""
    split: int = 1
    """The list cut into this many files, every server given all of them."""

    @property
    def tcp(self) -> bool:
        return self.mode == "tcp"


def workloads() -> dict[str, Workload]:
    """The `--workloads` choices; `blocked` is the template `blocked_workloads` expands."""
    return {
        "blocked": Workload("blocked", "blocked.txt", "blocked.txt", None, once=False),
        "cached": Workload("cached", "hits.txt", "hits.txt", "hits.txt", once=False),
        "unique": Workload("unique", "unique-max.txt", "unique-rate.txt", None, once=True),
        "mix": Workload("mix", "mix-max.txt", "mix-rate.txt", "hits.txt", once=True),
        "tcp": Workload("tcp", "blocked.txt", "blocked.txt", None, once=False, mode="tcp"),
        "dot": Workload("dot", "blocked.txt", "blocked.txt", None, once=False, mode="dot"),
        "doh": Workload("doh", "blocked.txt", "blocked.txt", None, once=False, mode="doh"),
    }


def query_file(shape: str) -> str:
    """The blocked names of `shape`; the mixed ones (also sent over TCP) keep their old name."""
    return "blocked.txt" if shape == gen.Shape.MIXED else f"blocked-{shape}.txt"


def blocked_name(shape: str, split: int) -> str:
    """The row name of one list shape: `blocked/mixed`, `blocked/exact/20lists`."""
    return f"blocked/{shape}" + (f"/{split}lists" if split > 1 else "")


def blocked_workloads(shapes: Sequence[str], splits: Sequence[int]) -> list[Workload]:
    """One `blocked` workload per shape and split, shapes outermost, in the order asked."""
    return [
        Workload(
            blocked_name(shape, split), query_file(shape), query_file(shape), None, False,
            split=split,
        )
        for shape in shapes
        for split in splits
    ]  # fmt: skip


def split_files(split: int) -> list[tuple[str, str, str]]:
    """(plain list, dnsmasq conf, unbound conf) file names of each part of a split list."""
    return [
        (f"blocklist-{split}x{i}.txt", f"dnsmasq-block-{split}x{i}.conf",
         f"unbound-block-{split}x{i}.conf")
        for i in range(split)
    ]  # fmt: skip


@dataclass(slots=True)
class Data:
    """The generated files and the two names every start-up probe asks for."""

    dir: Path
    lines: dict[str, int]
    blocklist: Path
    big_blocklist: Path | None
    blocked_probe: str
    forward_probe: str
    forward_expect: str
    splits: tuple[int, ...] = ()
    """The `--list-split` counts above 1 whose `split_files` were written."""
    certificate: Path | None = None
    key: Path | None = None
    """The self-signed certificate and key of the encrypted workloads (None without them)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="dnsperf benchmark: dnswarden vs dnsmasq, unbound and dnsdist, on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs, no 2M-list rows")
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=WORKLOADS,
        default=list(DEFAULT_WORKLOADS),
        help="what to measure (default: every workload but the encrypted ones, dot and doh)",
    )
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/DATE.json)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 10, quick 3)")
    parser.add_argument("--rate", type=int, default=5000, help="fixed rate for latency (qps)")
    parser.add_argument("--list-size", type=int, default=100_000)
    parser.add_argument(
        "--list-shape",
        nargs="+",
        choices=gen.SHAPES,
        default=[gen.Shape.MIXED],
        help="which names `blocked` asks for: listed domains (exact), subdomains of them, "
        "half and half (mixed, the default), or 1,000 mixed names again and again (hot); one "
        "row per shape",
    )
    parser.add_argument(
        "--list-split",
        nargs="+",
        type=int,
        default=[1],
        metavar="N",
        help="the list as N files of equal size, every server given all N (default 1); "
        "one `blocked` row per N and shape",
    )
    parser.add_argument(
        "--big-list-size",
        type=int,
        help="list size of the start-up/RSS rows (default 2000000; 0 or --quick: none)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[],
        help="also run dnswarden with `--workers N` for each N (server on cores 0..N-1)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="rounds per workload, every server once per round in turn; the table shows each "
        "server's median row and a ratio is the median of the per-round ratios (default 1)",
    )
    parser.add_argument("--no-info-row", action="store_true", help="skip the log level info row")
    parser.add_argument("--no-install", action="store_true", help="never call apt-get")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (debugging)")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.big_list_size is None:
        args.big_list_size = 0 if args.quick else 2_000_000
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600]")
    if not 0 < args.rate <= 100_000:
        parser.error("--rate must be in (0, 100000]")
    if not 1 <= args.repeat <= 9:
        parser.error("--repeat must be in 1..9")
    if any(not 1 <= n <= min(MAX_SPLIT, args.list_size) for n in args.list_split):
        parser.error(f"--list-split must be in 1..{MAX_SPLIT} and at most --list-size")
    args.list_shape = list(dict.fromkeys(args.list_shape))
    args.list_split = list(dict.fromkeys(args.list_split))
    return args


def ensure_tools(no_install: bool) -> None:
    """apt-get install the missing ones, with service start-up held off while it runs (a
    Debian package would otherwise start a system dnsmasq or unbound on port 53)."""
    missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if no_install or os.geteuid() != 0:
        sys.exit(f"bench: missing {', '.join(missing)}; install with: {' '.join(command)}")
    print(f"bench: installing {' '.join(missing)}", flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    placed = not policy.exists()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if placed:
            policy.write_text(POLICY_RC)
            policy.chmod(0o755)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(command, check=True, env=env, timeout=1200)
    finally:
        if placed:
            policy.unlink(missing_ok=True)


def tool_versions(python: str) -> dict[str, str]:
    def first_line(argv: Sequence[str], pick: Callable[[str], bool] = bool) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unknown ({error})"
        lines = (done.stdout + done.stderr).splitlines()
        return next((line.strip() for line in lines if pick(line)), "unknown")

    return {
        "dnsperf": first_line(["dnsperf", "-h"], lambda line: line.startswith("Version")),
        "nsd": first_line(["nsd", "-v"], lambda line: line.startswith("NSD version")),
        "dnsmasq": first_line(["dnsmasq", "--version"]),
        "unbound": first_line(["unbound", "-V"], lambda line: line.startswith("Version")),
        "dnsdist": first_line(["dnsdist", "--version"], lambda line: "dnsdist" in line),
        "openssl": first_line(["openssl", "version"]),
        "python": first_line([python, "--version"]),
    }


def encrypted_support() -> dict[str, frozenset[str]]:
    """Which encrypted modes each server's installed build serves: dnswarden both (this
    checkout), unbound and dnsdist as their version output says."""

    def output(argv: Sequence[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout + done.stderr

    return {
        OURS: frozenset(peers.ENCRYPTED_MODES),
        "unbound": peers.unbound_transports(output(["unbound", "-V"])),
        "dnsdist": peers.dnsdist_transports(output(["dnsdist", "--version"])),
    }


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """The run's self-signed certificate and key (openssl), served by every encrypted row."""
    certificate, key = workdir / "tls-cert.pem", workdir / "tls-key.pem"
    subprocess.run(peers.certificate_argv(certificate, key), check=True, capture_output=True,
                   timeout=60)  # fmt: skip
    return certificate, key


def installed_resolver(python: str) -> bool:
    """Whether `python` has dnswarden installed outside this checkout (a regular install, as
    the compiled build must be: docs/compiled.md), so that is what the servers should run."""
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONSAFEPATH": "1"}
    done = subprocess.run([python, "-c", "import resolver; print(resolver.__file__)"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    found = Path(done.stdout.strip()) if done.returncode == 0 else None
    # (The venv may sit inside the checkout, as README's `.venv` does: only the checkout's own
    # `resolver/` is the checkout's copy.)
    return found is not None and not found.resolve().is_relative_to(REPO / "resolver")


def server_pythonpath(workdir: Path, installed: bool) -> list[str]:
    """What the servers' PYTHONPATH starts with: the checkout (its `resolver/`, and bench/'s own
    modules: bare, nostats); with an installed dnswarden, a directory holding bench/ alone, so
    the checkout's pure `resolver/` does not shadow the installed one."""
    if not installed:
        return [str(REPO)]
    only_bench = workdir / "pythonpath"
    only_bench.mkdir(exist_ok=True)
    if not (only_bench / "bench").exists():
        (only_bench / "bench").symlink_to(REPO / "bench", target_is_directory=True)
    return [str(only_bench)]


def core_build(python: str, env: dict[str, str]) -> str:
    """"compiled" or "pure": the dnswarden core the servers run (a checkout from before the
    compiled build has only the pure one)."""
    code = "import resolver.protocol as p; print(getattr(p, 'core_build', lambda: 'pure')())"
    # Safe path: run from the checkout, `-c` would import its pure `resolver/` first.
    done = subprocess.run([python, "-c", code], env={**env, "PYTHONSAFEPATH": "1"},
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def has_uvloop(python: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        [python, "-c", "import uvloop"], env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode == 0


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "commit": commit,
    }


def loadavg() -> float:
    return os.getloadavg()[0]


def generate(workdir: Path, args: argparse.Namespace) -> Data:
    """Every file the run needs, in `workdir`; prints what it made and how long it took."""
    began = time.monotonic()
    size = gen.sizes(args.duration, args.rate, args.list_size, args.big_list_size)
    zone = gen.zone_names(size.zone)
    lines: dict[str, int] = {}

    def write(name: str, items: Any) -> Path:
        path = workdir / name
        lines[name] = gen.write_lines(path, items)
        return path

    write("bench.test.zone", gen.zone_lines(zone))
    all_listed = gen.blocklist_names(max(size.blocklist, size.big_blocklist))
    listed = all_listed[: size.blocklist]
    blocklist = write("blocklist.txt", listed)
    write("dnsmasq-block.conf", peers.dnsmasq_block_lines(listed))
    write("unbound-block.conf", peers.unbound_block_lines(listed))
    big: Path | None = None
    if size.big_blocklist:
        big = write("bigblocklist.txt", all_listed)
        write("dnsmasq-bigblock.conf", peers.dnsmasq_block_lines(all_listed))
        write("unbound-bigblock.conf", peers.unbound_block_lines(all_listed))
    del all_listed
    splits = tuple(n for n in args.list_split if n > 1)
    for split in splits:
        parts = gen.split_list(listed, split)
        for part, (plain, dnsmasq, unbound) in zip(parts, split_files(split), strict=True):
            write(plain, part)
            write(dnsmasq, peers.dnsmasq_block_lines(part))
            write(unbound, peers.unbound_block_lines(part))
    hits = zone[1 : 1 + size.hits]
    blocked = gen.blocked_queries(listed, size.blocked_queries)
    write("hits.txt", gen.query_lines(hits))
    write(query_file(gen.Shape.MIXED), gen.query_lines(blocked))
    for shape in args.list_shape:
        if shape != gen.Shape.MIXED:
            names = gen.blocked_queries(listed, size.blocked_queries, shape=shape)
            write(query_file(shape), gen.query_lines(names))
    write("unique-max.txt", gen.query_lines(gen.unique_names(size.unique_max, "m")))
    write("unique-rate.txt", gen.query_lines(gen.unique_names(size.unique_rate, "r")))
    for tag, total in (("mix-max", size.mix_max), ("mix-rate", size.mix_rate)):
        fresh = gen.unique_names(total // 5 + 1, tag.replace("mix-", "x"))
        pairs = gen.mixed_queries(total, hits, fresh, blocked)
        write(f"{tag}.txt", gen.query_lines(name for _, name in pairs))
    certificate = key = None
    if any(name in ENCRYPTED_WORKLOADS for name in args.workloads):
        certificate, key = make_certificate(workdir)
    print(
        f"bench: generated {len(zone):,} zone names, {len(listed):,}"
        + (f" and {size.big_blocklist:,}" if big else "")
        + " blocked domains"
        + (f" (also as {', '.join(str(n) for n in splits)} lists)" if splits else "")
        + f", query files in {time.monotonic() - began:.1f} s",
        flush=True,
    )
    return Data(
        dir=workdir,
        lines=lines,
        blocklist=blocklist,
        big_blocklist=big,
        blocked_probe=listed[0],
        forward_probe=zone[0],
        forward_expect=gen.address(0),
        splits=splits,
        certificate=certificate,
        key=key,
    )


class Bench:
    """One benchmark run: the supervisor, the data, nsd, and the rows measured so far."""

    def __init__(self, args: argparse.Namespace, workdir: Path, sup: procs.Supervisor) -> None:
        self.args = args
        self.workdir = workdir
        self.sup = sup
        self.python = sys.executable
        self.env = dict(os.environ)
        installed = installed_resolver(self.python)
        others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if installed:
            others = [p for p in others if p != str(REPO)]
        self.env["PYTHONPATH"] = os.pathsep.join(server_pythonpath(workdir, installed) + others)
        self.core = core_build(self.python, self.env)
        """The dnswarden build the rows measure: each dnswarden row's `compiled` says it."""
        cpus = os.cpu_count() or 1
        self.server_cpus = "0"
        self.client_cpus = "1" if cpus >= 2 else "0"
        self.rows: list[results.Row] = []
        self.nsd_port = 0
        self.metrics_key = True
        self.has_cache = (REPO / "resolver" / "cache.py").exists()
        self.data: Data | None = None
        self.state_dir = workdir / "dnswarden-state"
        """Every dnswarden row's, for the run: compiled lists, PID file (see peers)."""
        self.encrypted: dict[str, frozenset[str]] = {}
        """Server -> the encrypted modes its build serves (`encrypted_support`), when asked."""

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # servers

    def tls(self, server: str, mode: str) -> peers.Tls:
        """The DoT and DoH listeners of `server` for an encrypted row: those its build has, each
        on a free port; RuntimeError (the row's error) when it lacks `mode`."""
        assert self.data is not None and self.data.certificate and self.data.key
        kind = OURS if server.startswith(OURS) else server
        modes = self.encrypted.get(kind, frozenset())
        if mode not in modes:
            raise RuntimeError(f"no {mode} listener in this {kind} build")
        ports = {m: procs.free_port() for m in peers.ENCRYPTED_MODES if m in modes}
        return peers.Tls(ports, str(self.data.certificate), str(self.data.key))

    def spec(
        self, server: str, big: bool = False, split: int = 1, mode: str = "udp"
    ) -> ServerSpec:
        assert self.data is not None
        tls = self.tls(server, mode) if mode in peers.ENCRYPTED_MODES else None
        port = procs.free_port()
        d, up = self.workdir, self.nsd_port
        prefix = "big" if big else ""
        lists = [str(self.data.big_blocklist if big else self.data.blocklist)]
        dnsmasq = [str(d / f"dnsmasq-{prefix}block.conf")]
        unbound = [str(d / f"unbound-{prefix}block.conf")]
        if split > 1 and not big:
            if split not in self.data.splits:
                raise ValueError(f"no list split in {split} was generated")
            files = split_files(split)
            lists, dnsmasq, unbound = ([str(d / names[k]) for names in files] for k in range(3))
        if server == "dnsmasq":
            return peers.dnsmasq_spec(d, port, up, dnsmasq)
        if server == "unbound":
            return peers.unbound_spec(d, port, up, unbound, tls)
        if server == "dnsdist":
            return peers.dnsdist_spec(d, port, up, lists, tls)
        if server == BARE:
            return peers.bare_spec(port, up, lists, self.python)
        level = "info" if server == INFO_VARIANT else "warning"
        workers = workers_of(server)
        module = "bench.nostats" if server == NOSTATS_VARIANT else "resolver"
        return peers.dnswarden_spec(
            d, server, port, up, lists, self.python, level, workers, self.metrics_key, module,
            state_dir=str(self.state_dir), tls=tls,
        )  # fmt: skip

    def cpus_for(self, server: str) -> str:
        workers = workers_of(server)
        if workers is None:
            return self.server_cpus
        return cpu_range(workers, os.cpu_count() or 1)

    def launch(self, spec: ServerSpec, cpus: str, limit: float) -> tuple[Any, float]:
        """Start a server; returns (process, seconds until its first correct blocked answer)."""
        assert self.data is not None
        for path, text in spec.files.items():
            Path(path).write_text(text)
        env = self.env if spec.kind in peers.PYTHON_KINDS else None
        began = time.monotonic()
        proc = self.sup.start(
            peers.pinned(spec.argv, cpus), cwd=self.workdir, log=self.log(spec.name), env=env
        )
        try:
            procs.wait_answer(proc, spec.port, self.data.blocked_probe, peers.SINKHOLE, limit)
            started = time.monotonic() - began
            procs.wait_answer(
                proc, spec.port, self.data.forward_probe, self.data.forward_expect, 10.0
            )
        except BaseException:
            self.sup.stop(proc)
            raise
        return proc, started

    def start_nsd(self) -> None:
        assert self.data is not None
        self.nsd_port = procs.free_port()
        spec = peers.nsd_spec(self.workdir, self.nsd_port, "bench.test.zone")
        for path, text in spec.files.items():
            Path(path).write_text(text)
        proc = self.sup.start(
            peers.pinned(spec.argv, self.client_cpus), cwd=self.workdir, log=self.log("nsd")
        )
        procs.wait_answer(
            proc, self.nsd_port, self.data.forward_probe, self.data.forward_expect, START_LIMIT
        )

    def probe_dnswarden_config(self) -> None:
        """Drop `metrics:` from our config when this checkout does not know the key yet."""
        spec = self.spec(OURS)
        path = next(iter(spec.files))
        Path(path).write_text(spec.files[path])
        done = subprocess.run(
            [self.python, "-m", "resolver", "check", path],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0 and "metrics" in done.stderr:
            self.metrics_key = False
        elif done.returncode != 0:
            raise RuntimeError(f"dnswarden check failed:\n{done.stdout}{done.stderr}")

    # dnsperf

    def dnsperf(
        self, port: int, file: str, *, once: bool, mode: str, rate: int | None, tag: str
    ) -> str:
        assert self.data is not None
        duration = self.args.duration
        argv = [
            *self.dnsperf_argv(port, file),
            "-l",
            f"{duration:g}",
            "-t",
            str(DNSPERF_TIMEOUT),
            "-n",
            "1" if once else str(self.loops(file, rate)),
        ]
        if rate is None:
            argv += ["-c", str(MAX_CLIENTS), "-q", str(MAX_OUTSTANDING)]
        else:
            argv += ["-c", str(RATE_CLIENTS), "-q", str(RATE_OUTSTANDING), "-Q", str(rate), "-v"]
        argv += peers.dnsperf_mode_args(mode)
        return procs.run_bounded(
            peers.pinned(argv, self.client_cpus),
            duration + DNSPERF_TIMEOUT + SLACK,
            self.sup,
            self.log(f"dnsperf-{tag}"),
        )

    def loops(self, file: str, rate: int | None) -> int:
        """A count bound on looped input: generous for 1M qps (or the fixed rate), never 0."""
        assert self.data is not None
        per_second = rate if rate is not None else 1_000_000
        wanted = per_second * self.args.duration
        return max(1, int(wanted // self.data.lines[file]) + 1)

    def dnsperf_argv(self, port: int, file: str) -> list[str]:
        """dnsperf aimed at our loopback server, reading one of the generated query files."""
        assert self.data is not None
        return ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(self.data.dir / file)]

    def prime(self, port: int, file: str) -> None:
        argv = [
            *self.dnsperf_argv(port, file),
            "-n",
            "1",
            "-l",
            "30",
            "-q",
            str(PRIME_OUTSTANDING),
            "-t",
            str(DNSPERF_TIMEOUT),
        ]
        procs.run_bounded(peers.pinned(argv, self.client_cpus), 60, self.sup, self.log("prime"))

    # rows

    def measure(self, workload: Workload, server: str) -> results.Row:
        row = results.Row(workload=workload.name, server=server)
        row.extra["loadavg_before"] = loadavg()
        spec = self.spec(server, split=workload.split, mode=workload.mode)
        self.mark_build(row, spec)
        if spec.kind == OURS and not self.has_cache and workload.prime_file:
            row.note = NO_CACHE_NOTE
        proc, row.start_s = self.launch(spec, self.cpus_for(server), START_LIMIT)
        try:
            if workload.prime_file:
                self.prime(spec.port, workload.prime_file)
            tag = f"{workload.name.replace('/', '-')}-{server}"
            cpu_before = procs.cpu_seconds(proc.pid)
            port = spec.port_for(workload.mode)
            text = self.dnsperf(
                port,
                workload.max_file,
                once=workload.once,
                mode=workload.mode,
                rate=None,
                tag=f"{tag}-max",
            )
            cpu_after = procs.cpu_seconds(proc.pid)
            stats = results.parse_dnsperf(text)
            row.qps, row.lost, row.sent = stats.qps, stats.lost, stats.sent
            row.user_us, row.sys_us = results.cpu_per_query(cpu_before, cpu_after, stats.completed)
            row.exhausted = stats.ended_by not in ("", "time limit")
            unmatched = results.unmatched_answers(stats)
            row.extra["max"] = stats_json(stats)
            time.sleep(SETTLE)
            text = self.dnsperf(
                port,
                workload.rate_file,
                once=workload.once,
                mode=workload.mode,
                rate=self.args.rate,
                tag=f"{tag}-rate",
            )
            stats = results.parse_dnsperf(text)
            latencies = results.verbose_latencies(text)
            missing = stats.lost + max(0, stats.completed - len(latencies))
            row.avg_ms = stats.avg_latency * 1000
            row.p50_ms = results.percentile(latencies, 50, missing) * 1000
            row.p99_ms = results.percentile(latencies, 99, missing) * 1000
            row.rate_lost, row.rate_qps = stats.lost, stats.qps
            row.extra["rate"] = stats_json(stats)
            row.rss_mb = procs.peak_rss_mb(proc.pid)
            if proc.poll() is not None:
                row.error = f"server exited with code {proc.returncode} during the run"
            elif unmatched is not None:  # the figures stay in the JSON; no ratio is taken
                row.error = unmatched
        finally:
            code = self.sup.stop(proc)
            row.extra["exit_code"] = code
            row.extra["loadavg_after"] = loadavg()
        return row

    def mark_build(self, row: results.Row, spec: ServerSpec) -> None:
        """A dnswarden row says which build it measured: `compiled` in its JSON."""
        if spec.kind == OURS:
            row.extra["compiled"] = self.core == "compiled"

    def measure_big(self, server: str) -> results.Row:
        """Start-up time and peak RSS with the big list: no load, one answer."""
        assert self.data is not None and self.data.big_blocklist is not None
        size = self.data.lines[self.data.big_blocklist.name]
        row = results.Row(workload=f"startup-{human(size)}", server=server)
        row.extra["domains"] = size
        spec = self.spec(server, big=True)
        self.mark_build(row, spec)
        proc, row.start_s = self.launch(spec, self.cpus_for(server), BIG_START_LIMIT)
        try:
            row.rss_mb = procs.peak_rss_mb(proc.pid)
        finally:
            row.extra["exit_code"] = self.sup.stop(proc)
        return row

    def record(self, row: results.Row) -> None:
        self.rows.append(row)
        where = f"  {row.workload:{max(8, len(row.workload))}} {row.server:17}"
        if self.args.repeat > 1:
            where += f" round {row.round + 1}"
        if row.error:
            print(f"{where} error: {row.error}", flush=True)
            return
        print(
            f"{where} qps {fmt(row.qps, 0):>9}  "
            f"p99@rate {fmt(row.p99_ms, 3):>7} ms  lost {row.lost}  "
            f"cpu {fmt(row.user_us, 1)}+{fmt(row.sys_us, 1)} µs/q  "
            f"rss {fmt(row.rss_mb, 1)} MB  start {fmt(row.start_s, 2)} s",
            flush=True,
        )

    def servers_for(self, workload: str) -> list[str]:
        """The rows of one workload: the chosen servers, dnswarden's variants after it (the
        metrics-off row only on `cached` and the first list shape, whose cost it shows); for
        `dot` and `doh` only the servers with such listeners (not dnsmasq, nor bare-loop)."""
        kind = results.family(workload)
        chosen = [s for s in self.args.servers if s != BARE or kind in BARE_WORKLOADS]
        if kind in ENCRYPTED_WORKLOADS:
            chosen = [s for s in chosen if s in peers.ENCRYPTED_SERVERS]
        if OURS in chosen:
            at = chosen.index(OURS) + 1
            extra = [f"{OURS}-w{n}" for n in self.args.workers]
            if kind == "blocked" and not self.args.no_info_row:
                extra.insert(0, INFO_VARIANT)
            first = self.variants("blocked")[0].name
            if workload in ("blocked", first, "cached"):
                extra.insert(0, NOSTATS_VARIANT)
            if workload == "startup":
                extra.insert(0, RESTART_VARIANT)
            chosen[at:at] = extra
        return chosen

    def variants(self, name: str) -> list[Workload]:
        """The workloads `--workloads NAME` runs: one per list shape and split for `blocked`."""
        if name == "blocked":
            return blocked_workloads(self.args.list_shape, self.args.list_split)
        return [workloads()[name]]

    def plan(self) -> list[tuple[Workload, int, str]]:
        """Every (workload, round, server) measured under load, in order: each workload's
        rounds together, every server once per round."""
        return [
            (workload, round_, server)
            for name in self.args.workloads
            for workload in self.variants(name)
            for round_ in range(self.args.repeat)
            for server in self.servers_for(workload.name)
        ]

    def run(self) -> None:
        self.data = generate(self.workdir, self.args)
        if any(name in ENCRYPTED_WORKLOADS for name in self.args.workloads):
            self.encrypted = encrypted_support()
            print("bench: encrypted listeners: " + "; ".join(
                f"{server} {' '.join(sorted(modes)) or 'none'}"
                for server, modes in self.encrypted.items()
            ), flush=True)  # fmt: skip
        self.start_nsd()
        if OURS in self.args.servers:
            self.probe_dnswarden_config()
        for workload, round_, server in self.plan():
            self.guarded(
                lambda w=workload, s=server: self.measure(w, s), workload.name, server, round_
            )
        if self.data.big_blocklist is not None:
            for server in self.servers_for("startup"):
                self.guarded(lambda s=server: self.measure_big(s), "startup", server)

    def guarded(
        self, step: Callable[[], results.Row], workload: str, server: str, round_: int = 0
    ) -> None:
        """The row of round `round_`; a failing one is recorded with its error and the run goes
        on to the next."""
        try:
            row = step()
        except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as error:
            row = results.Row(workload, server, error=str(error)[:200])
            tail = (
                self.log(server).read_text(errors="replace")[-600:]
                if (self.log(server).exists())
                else ""
            )
            row.extra["log_tail"] = tail
        row.round = round_
        self.record(row)


def ratio_columns(servers: Sequence[str]) -> list[str]:
    """The servers dnswarden's qps is divided by: the chosen peers, then the bare-loop ceiling
    (so `dnswarden / bare-loop` is how close dnswarden comes to what CPython reaches here)."""
    return [name for name in (*peers.PEERS, BARE) if name in servers]


def workers_of(server: str) -> int | None:
    """N for the row `dnswarden-wN` (dnswarden started with `--workers N`), else None."""
    match = re.fullmatch(rf"{OURS}-w([0-9]+)", server)
    return int(match.group(1)) if match else None


def cpu_range(workers: int, cpus: int) -> str:
    """The `taskset` list for N workers: cores 0..N-1, never more than the machine has."""
    count = max(1, min(workers, cpus))
    return "0" if count == 1 else f"0-{count - 1}"


def stats_json(stats: results.DnsperfStats) -> dict[str, Any]:
    return {
        "sent": stats.sent,
        "completed": stats.completed,
        "lost": stats.lost,
        "interrupted": stats.interrupted,
        "reconnections": stats.reconnections,
        "run_time": stats.run_time,
        "qps": stats.qps,
        "avg_latency_s": stats.avg_latency,
        "min_latency_s": stats.min_latency,
        "max_latency_s": stats.max_latency,
        "rcodes": stats.rcodes,
        "http_codes": stats.http_codes,
        "ended_by": stats.ended_by,
    }


def human(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def estimate_seconds(args: argparse.Namespace, rows: int) -> float:
    """Rough wall time on the 2-core machine: data generation, two runs plus start, priming and
    settling per row, and the big-list start-ups (1-2 minutes each for 2M names)."""
    per_row = 2 * (args.duration + 1) + 6
    big_share = args.big_list_size / 2_000_000
    shapes = len(args.list_shape) + sum(n > 1 for n in args.list_split)
    generation = 15 + 2 * args.duration + 100 * big_share + 2 * shapes
    big = len(args.servers) * 65 * big_share
    return generation + rows * per_row + big


def report(bench: Bench, meta: dict[str, Any], out: Path) -> None:
    peer_names = ratio_columns(bench.args.servers)
    ours = [s for s in {row.server for row in bench.rows} if s.startswith(OURS)]
    medians = results.median_rows(bench.rows)
    print()
    if bench.args.repeat > 1:
        print(f"median of {bench.args.repeat} rounds per row:")
    print(results.render_table(medians))
    print()
    ratio_json: dict[str, Any] = {}
    for variant in sorted(ours):
        table = results.ratios(bench.rows, variant, peer_names)
        if table:
            ratio_json[variant] = table
            print(results.render_ratios(table, variant, peer_names))
            print()
    targets = results.check_targets(bench.rows, OURS)
    print(
        "targets (issue 21; a ratio is the median of per-round qps ratios; CPU µs/q, user + "
        "system, from the median rows; 'by CPU' = the peer's CPU per query / ours):"
    )
    for line in targets:
        print(f"  {line}")
    print()
    cache = (
        "this checkout has resolver/cache.py, so dnswarden's cached rows use its cache (defaults). "
        if bench.has_cache
        else "dnswarden has no cache in this checkout, so its 'cached' rows and the hits in "
        "'mix' are forwarded (identical in-flight queries merged). "
    )
    print(
        f"notes: {cache}qps* = the input ran out before the time limit. p99 counts lost queries "
        "as infinitely slow. Load average (1 min) at the start "
        f"{meta['loadavg_start']:.2f}, at the end {loadavg():.2f}: the machine is shared."
    )
    meta["loadavg_end"] = loadavg()
    payload = {
        "meta": meta,
        "rows": [row.as_json() for row in bench.rows],
        "medians": [row.as_json() for row in medians],
        "ratios": ratio_json,
        "targets": targets,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"bench: raw results in {out}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tools(args.no_install)
    stamp = datetime.datetime.now(datetime.UTC)
    out = args.out or REPO / "bench" / "results" / f"{stamp:%Y-%m-%dT%H%M%SZ}.json"
    sup = procs.Supervisor()
    workdir = Path(tempfile.mkdtemp(prefix="dnswarden-bench-"))
    bench = Bench(args, workdir, sup)
    uvloop = has_uvloop(bench.python, bench.env)
    meta: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["bench/run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "versions": tool_versions(bench.python),
        "dnswarden_loop": "uvloop" if uvloop else "asyncio",
        "dnswarden_cache": bench.has_cache,
        "dnswarden_core": bench.core,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "rate_qps": args.rate,
        "list_size": args.list_size,
        "list_shapes": args.list_shape,
        "list_splits": args.list_split,
        "big_list_size": args.big_list_size,
        "pinning": {
            "server": bench.server_cpus,
            "dnsperf": bench.client_cpus,
            "nsd": bench.client_cpus,
        },
        "dnsperf": {
            "doh": " ".join(peers.dnsperf_mode_args("doh")),
            "max": f"-c {MAX_CLIENTS} -q {MAX_OUTSTANDING}",
            "rate": f"-c {RATE_CLIENTS} -q {RATE_OUTSTANDING} -Q {args.rate} -v",
            "timeout_s": DNSPERF_TIMEOUT,
        },
        "loadavg_start": loadavg(),
    }
    print(
        f"bench: dnswarden ({bench.core} core) runs on {meta['dnswarden_loop']}"
        + (" (uvloop is importable, so it is used)" if uvloop else " (uvloop not importable)")
        + f"; server on core {bench.server_cpus}, dnsperf and nsd on core {bench.client_cpus}; "
        f"about {estimate_seconds(args, len(bench.plan())) / 60:.0f} min; temp dir {workdir}",
        flush=True,
    )
    code = 0
    try:
        bench.run()
    except (KeyboardInterrupt, procs.Interrupted) as stop:
        print(f"\nbench: interrupted ({stop or 'SIGINT'}); stopping everything", flush=True)
        meta["interrupted"] = True
        code = 130
    finally:
        sup.stop_all()
        if args.keep_tmp:
            print(f"bench: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_s"] = round((datetime.datetime.now(datetime.UTC) - stamp).total_seconds(), 1)
    report(bench, meta, out)
    return code


if __name__ == "__main__":
    sys.exit(main())
