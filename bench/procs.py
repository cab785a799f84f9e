"""The I/O shell of the benchmark: processes, ports, probes, peak memory, CPU time.

Every process is started through `Supervisor.start`, which remembers its PID; `stop` sends
SIGTERM, waits up to five seconds, then SIGKILLs the process group it leads (nsd's and
dnsmasq's children included).  `stop_all` runs from `finally`, from `atexit` and on SIGTERM or
SIGHUP, so an interrupted run leaves nothing behind.  Probes only ever go to 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from bench import probe
from bench.peers import HOST

STOP_GRACE = 5.0
PROBE_TIMEOUT = 0.2
PROBE_INTERVAL = 0.02


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived: unwind through every `finally`, like Ctrl-C does."""


class Supervisor:
    """Owns every child process of the run, by PID."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        atexit.register(self.stop_all)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in its own session (so its children can be stopped with it), output to
        `log`, no stdin."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> int | None:
        """SIGTERM, then SIGKILL to its process group after STOP_GRACE; returns the exit code."""
        self._children.pop(proc.pid, None)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=STOP_GRACE)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(self._children.values()):
            self.stop(proc)


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port found in 50 tries")


def query(port: int, name: str, timeout: float = PROBE_TIMEOUT) -> tuple[str, list[str]] | None:
    """(rcode, A addresses) from 127.0.0.1:port over UDP, or None when nothing came back.

    Replies with another ID are skipped until `timeout`; a closed port fails at once."""
    qid = int.from_bytes(os.urandom(2), "big")
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((HOST, port))
            sock.send(probe.query_packet(name, qid))
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                reply = probe.read_reply(sock.recv(65535), qid)
                if reply is not None:
                    return reply
        except OSError:
            return None
    return None


def wait_answer(
    proc: subprocess.Popen[bytes], port: int, name: str, expect: str, limit: float
) -> float:
    """Seconds from now until `name` is answered with address `expect`.

    Raises RuntimeError when the process exits, or `limit` seconds pass, first.
    """
    began = time.monotonic()
    last: tuple[str, list[str]] | None = None
    while time.monotonic() - began < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before answering")
        last = query(port, name)
        if last is not None and expect in last[1]:
            return time.monotonic() - began
        time.sleep(PROBE_INTERVAL)
    raise RuntimeError(f"no answer {expect} for {name} within {limit:.0f} s (last: {last})")


def _children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _family_files(pid: int, name: str) -> list[str]:
    """/proc/N/`name` of `pid` and of each of its descendants now alive (a server that forks
    workers, dnswarden --workers or dnsmasq's TCP children, uses their memory and CPU too);
    empty when `pid` is gone."""
    texts: list[str] = []
    seen: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            texts.append(Path(f"/proc/{current}/{name}").read_text())
        except OSError:
            continue
        pending.extend(_children_of(current))
    return texts


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of `pid` plus its descendants now alive, in MiB; finished
    children are gone and not counted."""
    peaks = [
        int(line.split()[1])
        for status in _family_files(pid, "status")
        for line in status.splitlines()
        if line.startswith("VmHWM:")
    ]
    return sum(peaks) / 1024 if peaks else None


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of `pid` and its descendants now alive, each with what the
    children it has reaped used (dnsmasq's finished TCP children), or None when `pid` is gone.

    From /proc/PID/stat: utime + cutime, stime + cstime, in clock ticks."""
    stats = _family_files(pid, "stat")
    if not stats:
        return None
    user = system = 0
    for stat in stats:
        fields = stat[stat.rfind(")") + 2 :].split()
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    per_second = os.sysconf("SC_CLK_TCK")
    return user / per_second, system / per_second


def run_bounded(argv: Sequence[str], limit: float, supervisor: Supervisor, log: Path) -> str:
    """Run a finite command (dnsperf) under the supervisor, killed after `limit` seconds;
    returns its combined output."""
    if log.exists():
        log.unlink()
    proc = supervisor.start(argv, cwd=log.parent, log=log)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        supervisor.stop(proc)
        raise RuntimeError(f"{argv[0]} did not finish within {limit:.0f} s") from None
    finally:
        supervisor.stop(proc)
    return log.read_text(errors="replace")
