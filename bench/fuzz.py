"""The long fuzz campaign: many mutated packets over UDP and TCP at one running dnswarden.

    python -m bench.fuzz                        # 100,000 UDP datagrams + 50,000 TCP messages
    python -m bench.fuzz --packets 400000 --seed 7

The CI tier (`tests/e2e/test_e2e_fuzz.py`) sends 10,000 of each; this sends as many as asked,
with the same mutations (seeded, so a failure replays), at dnswarden with rate limits off (every
packet must reach the parser) and nsd as its upstream (as in bench/main.py). Every
`CHECK_EVERY` packets, and at the end, it checks the server answers a blocked and a forwarded
name, and prints the answer time and the resident size. It fails (exit 1) if the server died,
took 100 ms or more to answer after the campaign, grew by 10 MB or more, or printed a traceback.
Loopback only; every loop is bounded by count and by `--time-limit`. It reuses the e2e tier's
mutations, so it needs the test extra (`pip install '.[test]'`), unlike the rest of bench/.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench import gen, peers, procs
from bench.peers import HOST

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import contextlib

from test_e2e_fuzz import mutate, seeds, tcp_stream

CHECK_EVERY = 20_000
BURST = 200
PAUSE = 0.01
PER_CONNECTION = 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fuzzed(rng: random.Random, bases: list[bytes]) -> bytes:
    if rng.random() < 0.15:
        return rng.randbytes(rng.randint(0, 600))
    data = rng.choice(bases)
    for _ in range(rng.randint(1, 3)):
        data = mutate(rng, data)
    return data


def live_ms(port: int, name: str, expect: str) -> float:
    began = time.monotonic()
    answer = procs.query(port, name, timeout=1.0)
    if answer is None or expect not in answer[1]:
        return float("inf")
    return (time.monotonic() - began) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--packets", type=int, default=100_000, help="UDP datagrams (100000)")
    parser.add_argument("--tcp", type=int, default=50_000, help="TCP messages (50000)")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds (600)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    bases = seeds()
    sup = procs.Supervisor()
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONUNBUFFERED="1")
    names = gen.zone_names(10, seed=11)
    with tempfile.TemporaryDirectory(prefix="dnswarden-fuzz-") as tmp:
        work = Path(tmp)
        gen.write_lines(work / "bench.test.zone", gen.zone_lines(names))
        gen.write_lines(work / "block.txt", ["blocked.example"])
        try:
            nsd_port = procs.free_port()
            spec = peers.nsd_spec(work, nsd_port, "bench.test.zone")
            for path, text in spec.files.items():
                Path(path).write_text(text)
            nsd = sup.start(spec.argv, cwd=work, log=work / "nsd.log")
            procs.wait_answer(nsd, nsd_port, names[0], gen.address(0), 60)
            port = procs.free_port()
            config = peers.dnswarden_config(port, nsd_port, str(work / "block.txt"), "info")
            (work / "dnswarden.yaml").write_text(yaml.safe_dump(config))
            server = sup.start([sys.executable, "-m", "resolver", "serve", "-c",
                                str(work / "dnswarden.yaml")], cwd=work,
                               log=work / "dnswarden.log", env=env)  # fmt: skip
            procs.wait_answer(server, port, "blocked.example", peers.SINKHOLE, 60)
            procs.wait_answer(server, port, names[0], gen.address(0), 10)
            baseline = rss_kib(server.pid)
            began = time.monotonic()
            sent = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                while sent < args.packets and time.monotonic() - began < args.time_limit:
                    for _ in range(BURST):
                        with contextlib.suppress(OSError):
                            sock.sendto(fuzzed(rng, bases), (HOST, port))
                        sent += 1
                    time.sleep(PAUSE)
                    while True:
                        try:
                            sock.recv(65535)
                        except OSError:
                            break
                    if sent % CHECK_EVERY < BURST:
                        print(f"udp {sent}: answer {live_ms(port, names[0], gen.address(0)):.1f} "
                              f"ms, RSS {rss_kib(server.pid)} KiB", flush=True)  # fmt: skip
            streamed = 0
            while streamed < args.tcp and time.monotonic() - began < args.time_limit:
                batch = [fuzzed(rng, bases) for _ in range(PER_CONNECTION)]
                try:
                    with socket.create_connection((HOST, port), timeout=2.0) as tcp:
                        tcp.sendall(tcp_stream(rng, batch))
                        tcp.shutdown(socket.SHUT_WR)
                        tcp.settimeout(0.5)
                        while tcp.recv(65535):
                            pass
                except OSError:
                    pass
                streamed += PER_CONNECTION
            time.sleep(1.0)
            alive = server.poll() is None
            answer = live_ms(port, "blocked.example", peers.SINKHOLE) if alive else float("inf")
            grown = rss_kib(server.pid) - baseline if alive else 0
            log = (work / "dnswarden.log").read_text(errors="replace")
            tracebacks = log.count("Traceback")
            print(f"sent {sent} datagrams and {streamed} TCP messages in "
                  f"{time.monotonic() - began:.0f} s; alive {alive}; answer after {answer:.1f} ms;"
                  f" RSS grew {grown} KiB; tracebacks {tracebacks}")  # fmt: skip
        finally:
            sup.stop_all()
    ok = alive and answer < 100 and grown < 10 * 1024 and tracebacks == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
