"""Blocklists at scale: the figures of issue 5, each with the command that measured it.

One run, on loopback only:

1. generates an N-domain list (default 2,000,000; `bench.gen.blocklist_names`, realistic label
   lengths and depths) and the same list as dnsmasq and unbound configuration;
2. parse + build: the list compiler exactly as the server runs it
   (`python -m resolver.lists.building`, the child process a start or reload spawns), wall time
   from exec to the compiled file;
3. cold and warm start of `python -m resolver serve`: from exec until a listed name is answered
   0.0.0.0 (warm: the compiled file of step 2's run is reused, nothing is parsed);
4. resident memory added by the list: VmRSS of the server with the list minus VmRSS of the same
   server with a 10-name list, after the same 20,000 queries, per domain; and the compiled
   file's size per domain, the bound if every page were resident;
5. lookup cost: CompiledMatcher with 1,000 and with N names, and DomainMatcher with 1,000;
6. reload under load: dnsperf at a fixed rate for blocked names while the list file changes and
   the server recompiles and swaps it; dnsperf's lost queries and slowest reply;
7. the same list in dnsmasq (`address=/name/0.0.0.0`) and unbound (`local-zone: always_null`):
   start until the first blocked answer, and RSS added per domain.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench import gen, peers, procs, results

REPO = Path(__file__).resolve().parents[2]
HOST = peers.HOST
SMALL_LIST = 10
TOUCH_QUERIES = 20_000


class Refuser:
    """A loopback 'upstream' that answers every query REFUSED at once, so the queries for
    unlisted names that warm each server up finish fast (nothing leaves the machine)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if len(data) >= 12 and not data[2] & 0x80:
                reply = data[:2] + bytes([data[2] | 0x80, (data[3] & 0xF0) | 5]) + data[4:]
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH")) if p)
    return out


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_config(path: Path, port: int, upstream_port: int, blocklist: Path, state: Path) -> None:
    config: dict[str, Any] = {
        "listen": [f"{HOST}:{port}"],
        "upstream": {"servers": [f"{HOST}:{upstream_port}"], "timeout": "1s", "deadline": "2s"},
        "clients": {"allow": ["127.0.0.0/8"]},
        "sources": {"big": {"path": str(blocklist), "format": "domains", "refresh": "1s"}},
        "blocking": {"lists": ["big"], "answer": "null_ip"},
        "log": {"level": "warning"},  # as bench/run: per-query audit lines are not measured
        "metrics": {"enabled": False},
        "state_dir": str(state),
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.dir = workdir
        self.sup = procs.Supervisor()
        self.figures: list[dict[str, Any]] = []
        self.python = sys.executable
        self.refuser = Refuser()

    def figure(self, name: str, value: Any, unit: str, command: str, **extra: Any) -> None:
        row = {"figure": name, "value": value, "unit": unit, "command": command, **extra}
        self.figures.append(row)
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<46} {shown:>12} {unit:<10} {command}", flush=True)

    # --- data -----------------------------------------------------------------------------

    def generate(self) -> None:
        count = self.args.size
        started = time.monotonic()
        self.names = gen.blocklist_names(count)
        self.big = self.dir / "big.txt"
        gen.write_lines(self.big, self.names)
        self.small = self.dir / "small.txt"
        gen.write_lines(self.small, self.names[:SMALL_LIST])
        rng = random.Random(7)
        # Unlisted names of every shape (the common case: the lookup misses); blocked names
        # would add per-name audit state to one server and not the other.
        others = [
            f"{gen.label(rng)}.{rng.choice(['com', 'net', 'org', 'cn', 'io'])}"
            if rng.random() < 0.7
            else f"{gen.label(rng)}.{gen.label(rng)}.example"
            for _ in range(TOUCH_QUERIES)
        ]
        self.touch_file = self.dir / "touch.txt"
        gen.write_lines(self.touch_file, gen.query_lines(others))
        self.blocked_file = self.dir / "blocked.txt"
        gen.write_lines(self.blocked_file, gen.query_lines(gen.blocked_queries(self.names, 50_000)))
        print(f"generated {count} names in {time.monotonic() - started:.0f} s", flush=True)

    # --- dnswarden ------------------------------------------------------------------------

    def compile_list(self) -> None:
        out = self.dir / "compile-once.dwl"
        job = {"name": "big", "files": [str(self.big)], "format": "domains",
               "max_errors": 100, "max_regex": 0, "out": str(out), "meta": {}}  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(
            [self.python, "-m", "resolver.lists.building"],
            input=json.dumps(job).encode(),
            capture_output=True,
            env=env(),
            check=True,
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(done.stdout)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        command = (
            "echo JOB | python -m resolver.lists.building  # the compile child of start/reload"
        )
        self.figure("parse + build (wall, incl. interpreter)", wall, "s", command,
                    cpu_seconds=round(cpu, 3), accepted=report["accepted"])  # fmt: skip
        self.figure("compiled file per domain", out.stat().st_size / self.args.size, "B", "ls -l")
        self.compiled_bytes = out.stat().st_size

    def start_dnswarden(self, name: str, blocklist: Path, state: Path) -> tuple[Any, int, float]:
        port = procs.free_port()
        config = self.dir / f"{name}.yaml"
        write_config(config, port, self.refuser.port, blocklist, state)
        log = self.dir / f"{name}.log"
        started = time.monotonic()
        proc = self.sup.start(
            [self.python, "-m", "resolver", "serve", "-c", str(config),
             "--pid-file", str(self.dir / f"{name}.pid")],
            cwd=self.dir, log=log, env=env(),
        )  # fmt: skip
        probe = self.names[0]
        procs.wait_answer(proc, port, probe, "0.0.0.0", self.args.start_limit)
        return proc, port, time.monotonic() - started

    def touch(self, port: int) -> None:
        """The same 20,000 queries against every server before its RSS is read."""
        procs.run_bounded(
            ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(self.touch_file), "-n", "1",
             "-c", "4", "-q", "100", "-t", "2"],
            120, self.sup, self.dir / "touch-dnsperf.log",
        )  # fmt: skip

    def dnswarden(self) -> None:
        state = self.dir / "state"
        cmd = "python -m resolver serve -c big.yaml  # exec -> first blocked answer"
        proc, port, cold = self.start_dnswarden("cold", self.big, state)
        self.sup.stop(proc)
        self.figure("dnswarden cold start (compiles the list)", cold, "s", cmd)
        proc, port, warm = self.start_dnswarden("warm", self.big, state)
        self.figure("dnswarden restart, lists unchanged", warm, "s", cmd)
        big_ready = rss_kb(proc.pid)
        self.touch(port)
        big_rss = rss_kb(proc.pid)
        self.reload_under_load(proc, port)
        self.sup.stop(proc)
        small_proc, small_port, _ = self.start_dnswarden("small", self.small, state)
        small_ready = rss_kb(small_proc.pid)
        self.touch(small_port)
        small_rss = rss_kb(small_proc.pid)
        self.sup.stop(small_proc)
        self.rss_figures("dnswarden", big_ready, small_ready, big_rss, small_rss)
        bound = self.compiled_bytes / self.args.size
        self.figure("dnswarden, every page of the list resident", bound, "B",
                    "compiled file size / domains: mmap pages are file-backed")  # fmt: skip

    def rss_figures(
        self, server: str, big_ready: int, small_ready: int, big: int, small: int
    ) -> None:
        per = 1024 / self.args.size
        self.figure(f"{server} RSS added per domain, just started", (big_ready - small_ready) * per,
                    "B", "VmRSS(list) - VmRSS(10-name list) when ready",
                    rss_big_kb=big_ready, rss_small_kb=small_ready)  # fmt: skip
        self.figure(f"{server} RSS added per domain, after 20k queries", (big - small) * per, "B",
                    "VmRSS(list) - VmRSS(10-name list) after the same 20k unlisted names",
                    rss_big_kb=big, rss_small_kb=small)  # fmt: skip

    def reload_under_load(self, proc: Any, port: int) -> None:
        """dnsperf at a fixed rate while the list changes and the server reloads it."""
        log = self.dir / "warm.log"
        marker = log.stat().st_size
        seconds = self.args.reload_seconds
        dnsperf_log = self.dir / "reload-dnsperf.log"
        argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(self.blocked_file),
                "-l", str(seconds), "-Q", str(self.args.rate), "-c", "4", "-q", "200",
                "-t", "2"]  # fmt: skip
        warmup = [*argv[: argv.index("-l") + 1], "2", *argv[argv.index("-l") + 2 :]]
        procs.run_bounded(warmup, 60, self.sup, self.dir / "warmup-dnsperf.log")
        baseline = results.parse_dnsperf(
            procs.run_bounded(argv, seconds + 60, self.sup, self.dir / "baseline-dnsperf.log")
        )
        self.figure("same load, no reload: slowest reply", baseline.max_latency * 1000, "ms",
                    " ".join(argv), lost=baseline.lost)  # fmt: skip
        runner = self.sup.start(argv, cwd=self.dir, log=dnsperf_log)
        time.sleep(1.0)
        added = "added-during-load.example"
        with self.big.open("a") as out:
            out.write(added + "\n")
        enforced = procs.wait_answer(proc, port, added, "0.0.0.0", seconds + 60)
        runner.wait(timeout=seconds + 60)
        self.sup.stop(runner)
        stats = results.parse_dnsperf(dnsperf_log.read_text(errors="replace"))
        command = " ".join(argv) + "  # while big.txt changes"
        reload_event: dict[str, Any] = {}
        with log.open("rb") as handle:
            handle.seek(marker)
            for line in handle.read().decode(errors="replace").splitlines():
                if '"event":"reloaded"' in line:
                    reload_event = json.loads(line)
        self.figure("list change enforced under load after", enforced, "s",
                    "append a name to big.txt, poll it until blocked (1 s file poll + rebuild)",
                    reloaded_event=reload_event)  # fmt: skip
        self.figure("reload under load: queries lost", stats.lost, "queries", command,
                    sent=stats.sent, completed=stats.completed)  # fmt: skip
        self.figure("reload under load: slowest reply", stats.max_latency * 1000, "ms", command)

    # --- lookups ----------------------------------------------------------------------------

    def lookups(self) -> None:
        from resolver.lists.compiled import from_parsed, open_compiled
        from resolver.lists.formats import parse_rules
        from resolver.lists.matcher import BlockRule, DomainMatcher
        from resolver.protocol.names import from_text

        thousand = self.names[:1000]
        small = from_parsed(parse_rules("\n".join(thousand).encode(), "k", "domains"), "k")
        dict_matcher = DomainMatcher()
        for name in thousand:
            dict_matcher.add(name, BlockRule("k", name))
        big = open_compiled(self.dir / "compile-once.dwl")
        rng = random.Random(3)
        queries = [from_text(f"{gen.label(rng)}.{gen.label(rng)}.example") for _ in range(20_000)]
        dict_big = DomainMatcher()
        for name in self.names:
            dict_big.add(name, BlockRule("k", name))
        for matcher, label in ((small, "compiled, 1,000"), (big, f"compiled, {self.args.size:,}"),
                               (dict_matcher, "DomainMatcher, 1,000"),
                               (dict_big, f"DomainMatcher, {self.args.size:,}")):  # fmt: skip
            best = float("inf")
            for _ in range(5):
                started = time.process_time()
                for query in queries:
                    matcher.lookup(query)
                best = min(best, (time.process_time() - started) / len(queries) * 1e6)
            self.figure(f"lookup, {label} names (miss, 3 labels)", best, "us",
                        "in process: lookup(wire) x 20,000, best of 5, CPU time")  # fmt: skip

    # --- peers ------------------------------------------------------------------------------

    def peer(self, kind: str) -> None:
        lines = peers.dnsmasq_block_lines if kind == "dnsmasq" else peers.unbound_block_lines
        rss: dict[str, int] = {}
        ready_rss: dict[str, int] = {}
        for label, names in (("big", self.names), ("small", self.names[:SMALL_LIST])):
            conf = self.dir / f"{kind}-{label}.conf"
            gen.write_lines(conf, lines(names))
            port = procs.free_port()
            spec = (peers.dnsmasq_spec if kind == "dnsmasq" else peers.unbound_spec)(
                self.dir, port, self.refuser.port, str(conf)
            )
            for path, text in spec.files.items():
                Path(path).write_text(text)
            started = time.monotonic()
            proc = self.sup.start(spec.argv, cwd=self.dir, log=self.dir / f"{kind}-{label}.log")
            procs.wait_answer(proc, port, self.names[0], "0.0.0.0", self.args.start_limit)
            ready = time.monotonic() - started
            ready_rss[label] = rss_kb(proc.pid)
            self.touch(port)
            rss[label] = rss_kb(proc.pid)
            self.sup.stop(proc)
            if label == "big":
                self.figure(f"{kind} start with the list", ready, "s",
                            " ".join(spec.argv) + "  # exec -> first blocked answer")  # fmt: skip
        self.rss_figures(kind, ready_rss["big"], ready_rss["small"], rss["big"], rss["small"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lists", description=__doc__)
    parser.add_argument("--size", type=int, default=2_000_000, help="list size (2,000,000)")
    parser.add_argument("--rate", type=int, default=5000, help="qps during the reload (5000)")
    parser.add_argument("--reload-seconds", type=int, default=15)
    parser.add_argument("--start-limit", type=float, default=600.0)
    parser.add_argument("--peers", nargs="*", default=["dnsmasq", "unbound"])
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("dnsperf", *args.peers) if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install them)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="dnswarden-lists-"))
    run = Run(args, workdir)
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0],
        "size": args.size,
    }
    try:
        run.generate()
        print(f"{'figure':<46} {'value':>12} {'unit':<10} command", flush=True)
        run.compile_list()
        run.lookups()
        run.dnswarden()
        for kind in args.peers:
            run.peer(kind)
    finally:
        run.sup.stop_all()
        run.refuser.close()
        meta["loadavg_end"] = os.getloadavg()[0]
        if args.out:
            args.out.write_text(json.dumps({"meta": meta, "figures": run.figures}, indent=1))
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(meta))
    return 0
