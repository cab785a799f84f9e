"""Fairness under a flood: does a paced client still get its names while another floods, or
while its own address floods one zone?

    python -m bench.flood                       # dnswarden, unbound, dnsmasq; 3 scenarios, ~3 min
    python -m bench.flood --rate 40000 --duration 5 --servers dnswarden

For each server (dnswarden with its default config, unbound and dnsmasq with the benchmark's, see
`bench/peers.py`) and each scenario, in one run: start nsd (the upstream, as in bench/main.py) and
the server fresh on loopback, the server pinned to core 0 and everything else to core 1; prime the
victim's names (cached from then on; from `PRIME_HOST`, checked); then, for `--duration` seconds,
dnsperf floods the server at `--rate` qps of names never asked before while the victim (this
process, on 127.0.0.1) asks `--victim-rate` qps of its cached names and `--victim-forward-rate` qps
of new names under another zone (`FORWARD_ZONE`: each must go upstream), each paced, each waited for
at most `VICTIM_TIMEOUT`. Printed per row: the victim's answered share and p99 for each kind (an
unanswered query counts as infinitely slow), the flood's sent and answered counts from dnsperf, and
for dnswarden what it shed and why (its /metrics: `rate_limited` by limit, `dropped` by reason).

| scenario | flood source | flood names |
|---|---|---|
| `other-client` | 127.0.0.2 (`dnsperf -a`) | unique names under a wildcard (NOERROR) |
| `random-subdomain` | 127.0.0.2 | unique names under one zone that do not exist (NXDOMAIN) |
| `same-client` | 127.0.0.1, the victim's own address | as random-subdomain |

The servers run the dnswarden installed in the interpreter that runs this (a compiled build,
docs/compiled.md), as `bench/run` does, else the checkout's; the first line says which core.

Every process is started and stopped by PID (`bench.procs.Supervisor`); all traffic stays on
127.0.0.0/8; every loop is bounded by count and time. dnsperf 2.10 miscounts late replies when its
"unexpected reply" warnings are suppressed, so they are left on (in the log files); its timeout
lines are suppressed, since writing one per shed query (40,000 a second) loads the clients' core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import select
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import gen, peers, procs, results
from bench.main import core_build, installed_resolver, server_pythonpath
from bench.peers import HOST

FLOOD_HOST = "127.0.0.2"
PRIME_HOST = "127.0.0.3"
"""Where the victim's names are primed from, exempt from dnswarden's client limits: 500 names
under one zone in a second from the victim's own address would meet its `client_zone_rate`,
and a name refused then is not cached when the flood starts (6% of them were)."""
SCENARIOS = ("other-client", "random-subdomain", "same-client")
SERVERS = ("dnswarden", "unbound", "dnsmasq")
VICTIM_NAMES = 500
VICTIM_TIMEOUT = 2.0
NX_PARENT = f"nx.{gen.ZONE}"
FORWARD_ZONE = "fwd.test"
"""A second registrable zone on nsd, with a wildcard: the victim's new names, under a zone
other than the flood's (`bench.test`)."""
START_LIMIT = 60.0
SERVER_CPU = "0"
CLIENT_CPU = "1"


@dataclass
class VictimResult:
    sent: int = 0
    answered: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def answered_share(self) -> float:
        return self.answered / self.sent if self.sent else 0.0

    def p99(self) -> float:
        return results.percentile(self.latencies, 99, self.sent - self.answered)


@dataclass
class FloodRow:
    server: str
    scenario: str
    victim_sent: int
    victim_answered_pct: float
    victim_p50_ms: float
    victim_p99_ms: float
    flood_sent: int
    flood_answered: int
    shed: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    server_cpu_pct: float | None = None
    forwarded_sent: int = 0
    forwarded_answered_pct: float | None = None
    forwarded_p99_ms: float | None = None


def victim_query(name: str, query_id: int) -> bytes:
    """A plain A query with RD, no EDNS (what a stub sends)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"


class VictimStream:
    """One paced series of the victim's queries, on a socket of its own (so its own IDs)."""

    def __init__(self, pick: Callable[[int], str], rate: float, total: int) -> None:
        self.pick = pick
        self.interval = 1.0 / rate
        self.total = total
        self.index = 0
        self.sent_at: dict[int, float] = {}
        self.result = VictimResult()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)

    def due(self, began: float) -> float:
        return began + self.index * self.interval if self.index < self.total else math.inf

    def send(self, port: int, now: float) -> None:
        query_id = self.index & 0xFFFF
        try:
            self.sock.sendto(victim_query(self.pick(self.index), query_id), (HOST, port))
            self.sent_at[query_id] = now
        except OSError:
            pass
        self.result.sent += 1
        self.index += 1

    def receive(self) -> None:
        while True:
            try:
                reply = self.sock.recv(4096)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(reply) < 12:
                continue
            (query_id,) = struct.unpack_from("!H", reply)
            started = self.sent_at.pop(query_id, None)
            if started is None:
                continue
            latency = time.monotonic() - started
            if latency <= VICTIM_TIMEOUT:
                self.result.answered += 1
                self.result.latencies.append(latency)

    def finished(self) -> bool:
        return self.index >= self.total and len(self.result.latencies) >= self.result.sent


def run_victim(port: int, streams: Sequence[VictimStream], duration: float) -> None:
    """Send each stream's queries at its pace for `duration` seconds, from 127.0.0.1; collect
    replies until `VICTIM_TIMEOUT` after the last one (or until all are answered)."""
    began = time.monotonic()
    deadline = began + duration + VICTIM_TIMEOUT
    try:
        while time.monotonic() < deadline and not all(s.finished() for s in streams):
            now = time.monotonic()
            for stream in streams:
                if now >= stream.due(began):
                    stream.send(port, now)
            wait = min(s.due(began) for s in streams) - time.monotonic()
            socks = [s.sock for s in streams]
            ready, _, _ = select.select(socks, [], [], max(0.0, min(wait, 0.05)))
            for stream in streams:
                if stream.sock in ready:
                    stream.receive()
    finally:
        for stream in streams:
            stream.sock.close()


def metrics_address(log: Path) -> str | None:
    """The metrics endpoint from dnswarden's `startup` event in its log."""
    for line in log.read_text(errors="replace").splitlines():
        if '"startup"' in line:
            try:
                return str(json.loads(line).get("metrics"))
            except ValueError:
                return None
    return None


SHED_SERIES = re.compile(
    r'^dnswarden_(rate_limited_total|dropped_total)\{([^}]*)\} ([0-9.e+]+)$', re.M
)


def shed_counts(address: str | None) -> dict[str, int]:
    """What dnswarden shed, by limit or reason (from its /metrics; empty if unreachable)."""
    if not address:
        return {}
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    counts: dict[str, int] = {}
    for family, labels, value in SHED_SERIES.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = found.get("limit") or found.get("reason", "?")
        prefix = "limited" if family.startswith("rate") else "dropped"
        counts[f"{prefix}.{key}"] = counts.get(f"{prefix}.{key}", 0) + int(float(value))
    return {k: v for k, v in counts.items() if v}


class FloodBench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.sup = procs.Supervisor()
        self.python = str(Path(sys.executable))
        # As bench/run: an installed dnswarden (a compiled build) runs as installed, else the
        # checkout's.
        installed = installed_resolver(self.python)
        path = os.pathsep.join(server_pythonpath(workdir, installed))
        self.env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
        self.core = core_build(self.python, self.env)
        self.victims = gen.zone_names(VICTIM_NAMES, seed=11)
        self.rows: list[FloodRow] = []

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def prepare(self) -> None:
        gen.write_lines(self.workdir / "bench.test.zone", gen.zone_lines(self.victims))
        gen.write_lines(self.workdir / f"{FORWARD_ZONE}.zone", forward_zone_lines())
        gen.write_lines(self.workdir / "block.txt", ["blocked.example"])
        (self.workdir / "empty.conf").write_text("")
        gen.write_lines(
            self.workdir / "prime.txt", gen.query_lines(self.victims)
        )
        count = int(self.args.rate * self.args.duration * 1.2) + 1000
        rng = random.Random(7)
        for scenario in SCENARIOS:
            parent = gen.WILDCARD_PARENT if scenario == "other-client" else NX_PARENT
            names = (f"{rng.getrandbits(64):016x}-{i:x}.{parent}" for i in range(count))
            gen.write_lines(self.workdir / f"flood-{scenario}.txt", gen.query_lines(names))

    def start_nsd(self) -> None:
        self.nsd_port = procs.free_port()
        spec = peers.nsd_spec(self.workdir, self.nsd_port, "bench.test.zone")
        for path, text in spec.files.items():
            extra = f'zone:\n  name: {FORWARD_ZONE}\n  zonefile: "{FORWARD_ZONE}.zone"\n'
            Path(path).write_text(text + extra if path.endswith("nsd.conf") else text)
        proc = self.sup.start(peers.pinned(spec.argv, CLIENT_CPU), cwd=self.workdir,
                              log=self.log("nsd"))  # fmt: skip
        procs.wait_answer(proc, self.nsd_port, self.victims[0], gen.address(0), START_LIMIT)

    def spec(self, server: str, port: int) -> peers.ServerSpec:
        if server == "dnswarden":
            config = peers.dnswarden_config(port, self.nsd_port, str(self.workdir / "block.txt"),
                                            level="info", rate_limits=True)  # fmt: skip
            config["metrics"] = {"listen": f"{HOST}:0"}
            config["rate_limit"] = {"exempt": [f"{PRIME_HOST}/32"]}
            if self.args.receive_buffer:
                config["limits"] = {"udp_receive_buffer": self.args.receive_buffer}
            path = self.workdir / f"dnswarden-{port}.yaml"
            return peers.ServerSpec(
                name="dnswarden", kind="dnswarden", port=port,
                argv=(self.python, "-m", "resolver", "serve", "-c", str(path)),
                files={str(path): yaml.safe_dump(config, sort_keys=False)},
            )  # fmt: skip
        empty = str(self.workdir / "empty.conf")
        if server == "unbound":
            return peers.unbound_spec(self.workdir, port, self.nsd_port, empty)
        return peers.dnsmasq_spec(self.workdir, port, self.nsd_port, empty)

    def measure(self, server: str, scenario: str) -> FloodRow:
        port = procs.free_port()
        spec = self.spec(server, port)
        for path, text in spec.files.items():
            Path(path).write_text(text)
        tag = f"{server}-{scenario}"
        env = self.env if spec.kind == "dnswarden" else None
        proc = self.sup.start(peers.pinned(spec.argv, SERVER_CPU), cwd=self.workdir,
                              log=self.log(tag), env=env)  # fmt: skip
        try:
            procs.wait_answer(proc, port, self.victims[0], gen.address(0), START_LIMIT)
            prime = ["dnsperf", "-a", PRIME_HOST, "-s", HOST, "-p", str(port), "-d",
                     str(self.workdir / "prime.txt"), "-n", "1", "-q", "20", "-t", "2"]  # fmt: skip
            primed = results.parse_dnsperf(procs.run_bounded(
                peers.pinned(prime, CLIENT_CPU), 60, self.sup, self.log("prime")))  # fmt: skip
            if primed.rcodes.get("NOERROR", 0) != VICTIM_NAMES:
                raise RuntimeError(f"{tag}: priming the victim's {VICTIM_NAMES} names got "
                                   f"{primed.rcodes}: they would not all be cached")  # fmt: skip
            source = HOST if scenario == "same-client" else FLOOD_HOST
            duration = self.args.duration
            flood = ["dnsperf", "-a", source, "-s", HOST, "-p", str(port),
                     "-d", str(self.workdir / f"flood-{scenario}.txt"), "-n", "1",
                     "-l", f"{duration:g}", "-Q", str(self.args.rate), "-c", "8", "-q", "60000",
                     "-t", "1", "-O", "suppress=timeouts"]  # fmt: skip
            flood_proc = self.sup.start(peers.pinned(flood, CLIENT_CPU), cwd=self.workdir,
                                        log=self.log(f"flood-{tag}"))  # fmt: skip
            try:
                time.sleep(min(1.0, duration / 4))  # the flood is on before the victim asks
                cached, forwarded = self.victim_streams(tag, duration - 1.0)
                cpu_before, began = procs.cpu_seconds(proc.pid), time.monotonic()
                run_victim(port, [cached, forwarded], duration - 1.0)
                cpu_after, ended = procs.cpu_seconds(proc.pid), time.monotonic()
                flood_proc.wait(timeout=duration + 30)
            finally:
                self.sup.stop(flood_proc)
            stats = results.parse_dnsperf(self.log(f"flood-{tag}").read_text(errors="replace"))
            shed = shed_counts(metrics_address(self.log(tag))) if spec.kind == "dnswarden" else {}
            rss = procs.peak_rss_mb(proc.pid)
        finally:
            self.sup.stop(proc)
        cpu = None
        if cpu_before is not None and cpu_after is not None:
            cpu = 100 * (sum(cpu_after) - sum(cpu_before)) / (ended - began)
        victim, new = cached.result, forwarded.result
        ordered = sorted(victim.latencies)
        p50 = ordered[len(ordered) // 2] * 1000 if ordered else float("nan")
        return FloodRow(server, scenario, victim.sent, round(100 * victim.answered_share, 2),
                        round(p50, 2), round(victim.p99() * 1000, 2), stats.sent,
                        stats.completed, shed, rss, cpu, new.sent,
                        round(100 * new.answered_share, 2), round(new.p99() * 1000, 2))  # fmt: skip

    def victim_streams(self, tag: str, duration: float) -> tuple[VictimStream, VictimStream]:
        """The victim's cached names (at random) and its new names under `FORWARD_ZONE`
        (each asked once, never before: `tag` keeps them apart between rows)."""
        rng = random.Random(5)
        victims = self.victims
        cached = VictimStream(lambda _: rng.choice(victims), self.args.victim_rate,
                              int(self.args.victim_rate * duration))  # fmt: skip
        rate = self.args.victim_forward_rate
        forwarded = VictimStream(lambda i: f"v{i:x}-{tag}.{FORWARD_ZONE}", rate,
                                 int(rate * duration))  # fmt: skip
        return cached, forwarded

    def run(self) -> None:
        self.prepare()
        self.start_nsd()
        for scenario in self.args.scenarios:
            for server in self.args.servers:
                row = self.measure(server, scenario)
                self.rows.append(row)
                print(render_row(row), flush=True)


def forward_zone_lines() -> list[str]:
    """`FORWARD_ZONE` for nsd: SOA, NS and a wildcard, so every new name there answers."""
    return [
        f"$ORIGIN {FORWARD_ZONE}.",
        "$TTL 3600",
        f"@ IN SOA {gen.NS_NAME}. hostmaster.{FORWARD_ZONE}. 1 3600 600 86400 3600",
        f"@ IN NS {gen.NS_NAME}.",
        f"*.{FORWARD_ZONE}. IN A {gen.address(1)}",
    ]


def render_row(row: FloodRow) -> str:
    shed = ", ".join(f"{k} {v}" for k, v in sorted(row.shed.items())) or "-"
    rss = f"{row.peak_rss_mb:.0f}" if row.peak_rss_mb is not None else "-"
    cpu = f"{row.server_cpu_pct:.0f}" if row.server_cpu_pct is not None else "-"
    if row.forwarded_answered_pct is None:
        forwarded = "- | -"
    else:
        forwarded = f"{row.forwarded_answered_pct:.2f}% | {row.forwarded_p99_ms:.1f}"
    return (f"| {row.scenario} | {row.server} | {row.victim_answered_pct:.2f}% | "
            f"{row.victim_p50_ms:.1f} | {row.victim_p99_ms:.1f} | {forwarded} | "
            f"{row.flood_sent} | {row.flood_answered} | {shed} | {cpu} | {rss} |")  # fmt: skip


# Issue 19's targets for dnswarden's victim under a flood at 4x one worker's forwarding capacity.
TARGET_ANSWERED_PCT = 99.0
TARGET_P99_MS = 100.0
TARGET_FORWARDED_PCT = 95.0


def verdicts(rows: Sequence[FloodRow]) -> list[str]:
    """One line per dnswarden row: whether its victim met the targets (its forwarded names'
    too, when the row has them)."""
    lines = []
    for row in rows:
        if row.server != "dnswarden":
            continue
        met = (row.victim_answered_pct >= TARGET_ANSWERED_PCT
               and row.victim_p99_ms < TARGET_P99_MS)  # fmt: skip
        forwarded = ""
        if row.forwarded_answered_pct is not None:
            met = met and row.forwarded_answered_pct >= TARGET_FORWARDED_PCT
            forwarded = (f"; forwarded {row.forwarded_answered_pct:.2f}% "
                         f"(>= {TARGET_FORWARDED_PCT:g}%)")  # fmt: skip
        lines.append(
            f"target {row.scenario}: victim answered {row.victim_answered_pct:.2f}% "
            f"(>= {TARGET_ANSWERED_PCT:g}%), p99 {row.victim_p99_ms:.1f} ms "
            f"(< {TARGET_P99_MS:g} ms){forwarded}: {'met' if met else 'NOT met'}"
        )
    return lines


HEADER = ("| scenario | server | victim cached answered | p50 ms | p99 ms "
          "| victim forwarded answered | p99 ms | flood sent | flood answered "
          "| shed by dnswarden | server CPU % | peak RSS MiB |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=summary)
    parser.add_argument("--rate", type=int, default=40_000, help="flood qps (default 40000)")
    parser.add_argument("--victim-rate", type=float, default=200.0,
                        help="victim qps of cached names (200)")
    parser.add_argument("--victim-forward-rate", type=float, default=20.0,
                        help=f"victim qps of new names under {FORWARD_ZONE} (20)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per row (6)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--receive-buffer", help="dnswarden's limits.udp_receive_buffer")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here too")
    args = parser.parse_args(argv)
    if not 2.0 <= args.duration <= 120.0:
        parser.error("--duration must be from 2 to 120 seconds")
    if not 1 <= args.rate <= 500_000:
        parser.error("--rate must be from 1 to 500000")
    if not (0 < args.victim_rate <= 10_000 and 0 < args.victim_forward_rate <= 10_000):
        parser.error("--victim-rate and --victim-forward-rate must be from above 0 to 10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    with tempfile.TemporaryDirectory(prefix="dnswarden-flood-") as tmp:
        bench = FloodBench(args, Path(tmp))
        print(f"flood {args.rate} qps for {args.duration:g} s; victim {args.victim_rate:g} qps "
              f"of {VICTIM_NAMES} cached names and {args.victim_forward_rate:g} qps of new names "
              f"under {FORWARD_ZONE}; dnswarden core {bench.core}; "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(HEADER, flush=True)
        try:
            bench.run()
        finally:
            bench.sup.stop_all()
        for line in verdicts(bench.rows):
            print(line)
        print(f"load average after the run: {os.getloadavg()[0]:.2f}")
        if args.out is not None:
            rows: list[dict[str, Any]] = [asdict(row) for row in bench.rows]
            args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                            "rows": rows}, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
