"""Several worker processes on the same sockets, and the supervisor that runs them.

One CPython process answers on one core. With `--workers N` the supervisor (this module) starts N
workers, each a complete resolver with its own event loop, all bound to the same addresses with
SO_REUSEPORT so the kernel spreads clients across them. Workers are fresh interpreters (exec, not
fork: forking a process with a running event loop is unsafe), so large lists are shared through
the page cache of their compiled, memory-mapped form rather than copied.

Started as root with `privileges.user`, the supervisor binds each worker's sockets itself and
hands them over (`privileges.inherited`), then drops to the user once the workers are up, like
they do: a worker it restarts then starts unprivileged, on the sockets it had.

The supervisor restarts a worker that dies (and counts it), forwards SIGHUP (reload) and
SIGTERM/SIGINT (stop) to every worker, and serves the metrics endpoint: each worker sends its
counters (`Stats`) and a `ServiceSnapshot` over a pipe once a second, and the supervisor adds them
up, keeping the last counters of a dead worker so that no `Stats` counter ever goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from resolver import __version__
from resolver.config import Config, Endpoint
from resolver.observe.audit import TICK_INTERVAL, AuditLog
from resolver.observe.metrics import Metrics, ServiceSnapshot
from resolver.observe.stats import Stats
from resolver.protocol import core_build
from resolver.shell import privileges
from resolver.shell.encrypted import bind_stream
from resolver.shell.httpd import HealthServer, metrics_token
from resolver.shell.listeners import bind_pair
from resolver.state import ResolverState

REPORT_INTERVAL = 1.0
READY_TIMEOUT = 60.0
STOP_GRACE = 5.0
RESTART_BACKOFF = 1.0
_FRAME = struct.Struct(">I")
_MAX_FRAME = 16 << 20


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker sends the supervisor once a second: its counters, its snapshot and the
    detail of its own /readyz verdict."""

    stats: Stats
    snapshot: ServiceSnapshot
    readiness: Mapping[str, object] = field(default_factory=dict)


def encode_report(report: WorkerReport) -> bytes:
    body = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(body)) + body


class ReportReader(asyncio.Protocol):
    """Frames from one worker's report pipe (our own child: pickle is trusted here)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            (size,) = _FRAME.unpack_from(self.buffer)
            if size > _MAX_FRAME:
                self.buffer.clear()
                return
            if len(self.buffer) < 4 + size:
                return
            frame = bytes(self.buffer[4 : 4 + size])
            del self.buffer[: 4 + size]
            self.worker.receive(pickle.loads(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.reports_closed.set()


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    report: WorkerReport | None = None  # the last one; a worker is ready from its first
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reports_closed: asyncio.Event = field(default_factory=asyncio.Event)
    on_report: Callable[[], None] | None = None
    sockets: dict[str, socket.socket] = field(default_factory=dict)  # bound for it, if we drop

    def receive(self, report: WorkerReport) -> None:
        self.report = report
        self.ready.set()
        if self.on_report is not None:
            self.on_report()


class Supervisor:
    """Runs and watches the workers; exports their counters and snapshots, merged."""

    def __init__(self, config: Config, worker_args: Sequence[str], count: int,
                 audit: AuditLog) -> None:  # fmt: skip
        self.config = config
        self.worker_args = list(worker_args)
        self.count = count
        self.audit = audit
        self.total = Stats()
        self.retired = Stats()
        self.workers = [Worker(i) for i in range(count)]
        self.stopping = False
        self.restarts = 0
        self.started = time.time()
        self.unrestartable = ""  # why a worker could not be started again after the drop

    # --- what the metrics export: the workers' last reports, merged -------------------------

    def snapshot(self) -> ServiceSnapshot:
        return ServiceSnapshot.merge([w.report.snapshot for w in self.workers if w.report])

    def ready(self) -> tuple[bool, dict[str, object]]:
        """The single server's verdict and detail (`listeners`, `lists`, `lists_missing`,
        `healthy_upstreams`) over every worker, plus `workers_ready`: the lists are the same in
        every worker (one config), so the first report's stand for all; a list missing in any
        worker is missing."""
        reports = [w.report for w in self.workers if w.report is not None and _running(w)]
        alive = [
            w.index
            for w in self.workers
            if w.report is not None and w.report.snapshot.ready and _running(w)
        ]
        healthy = [name for name, up in self.snapshot().upstream_health.items() if up]
        missing = sorted({str(name) for r in reports for name in _names(r.readiness)})
        detail: dict[str, object] = {
            **(reports[0].readiness if reports else {}),
            "listeners": len(reports) == self.count
            and all(r.readiness.get("listeners") is True for r in reports),
            "lists": dict(reports[0].snapshot.list_sizes) if reports else {},
            "lists_missing": missing,
            "healthy_upstreams": healthy,
            "workers_ready": alive,
        }
        return len(alive) == self.count and bool(healthy), detail

    def _refresh_total(self) -> None:
        total = self.total
        total.reset()  # in place: the collector holds this object
        total.merge(self.retired)
        for worker in self.workers:
            if worker.report is not None:
                total.merge(worker.report.stats)
        if self.restarts:
            total.count("workers.restarted", self.restarts)

    # --- life cycle ----------------------------------------------------------------------------

    async def _spawn(self, worker: Worker, listen: Sequence[Endpoint]) -> None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        args = [sys.executable, "-m", "resolver", "serve", *self.worker_args]
        for endpoint in listen:
            args += ["--listen", str(endpoint)]
        args += ["--worker-report-fd", str(write_fd), "--worker-index", str(worker.index)]
        worker.ready = asyncio.Event()
        worker.reports_closed = asyncio.Event()
        worker.report = None
        worker.on_report = self._refresh_total
        fds, env = (write_fd,), None
        if worker.sockets:
            value, handed = privileges.inheritance(worker.sockets)
            fds, env = fds + handed, {**os.environ, privileges.INHERITED_VARIABLE: value}
        try:
            worker.process = await asyncio.create_subprocess_exec(*args, pass_fds=fds, env=env)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        await loop.connect_read_pipe(lambda: ReportReader(worker), os.fdopen(read_fd, "rb", 0))

    async def run(self, state: ResolverState) -> None:
        """Start the workers and the metrics endpoint, log `startup`, and supervise until
        SIGINT/SIGTERM. Handlers go in first: whoever reads `startup` may signal at once. A
        failure before `startup` stops whatever started and is raised (no `shutdown` line)."""
        loop = asyncio.get_running_loop()
        config = self.config
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)
        loop.add_signal_handler(signal.SIGUSR1, self._signal_all, signal.SIGUSR1)
        # Port 0 (tests) must become one concrete port that every worker shares: hold a probe
        # pair on it until the workers have bound theirs.
        probes = []
        listen: list[Endpoint] = []
        health = None
        fields: dict[str, object] = {}
        try:
            for endpoint in config.listen:
                udp, tcp = bind_pair(endpoint, reuse_port=True)
                probes += [udp, tcp]
                listen.append(Endpoint(endpoint.host, udp.getsockname()[1]))
            dropping = privileges.running_as_root() and config.privileges.user is not None
            if dropping:
                self._bind_for_workers(listen)
            for worker in self.workers:
                await self._spawn(worker, listen)
            await self._all_ready()
            fields["listeners"] = [str(e) for e in listen]
            fields.update(encrypted_listeners([w.report for w in self.workers if w.report]))
            if config.metrics.enabled:
                metrics = Metrics(self.total, self.snapshot)
                health = HealthServer(metrics, self.ready, metrics_token(config))
                host, port = await health.start(
                    config.metrics.listen.host, config.metrics.listen.port
                )
                fields["metrics"] = str(Endpoint(host, port))
            if dropping:
                fields.update(self._drop_privileges())
        except BaseException:
            self.stopping = True
            await self._stop_workers()
            if health is not None:
                await health.stop()
            self._close_worker_sockets()
            raise
        finally:
            for sock in probes:
                sock.close()
        tasks: list[asyncio.Task[None]] = []
        try:
            self.audit.info(
                "startup",
                version=__version__,
                core=core_build(),
                config=config.source,
                **fields,
                workers=self.count,
                upstreams=[str(e) for e in state.upstreams],
                blocked_domains=state.policy.domain_count,
                lists=dict(state.list_sizes),
                groups=sorted(state.policy.groups),
                policies=[p.name for p in config.policies],
                missing_lists=config.blocking.missing_lists.value,
                loop="supervisor",
            )
            if privileges.running_as_root() and config.privileges.user is None:
                self.audit.warning("running_as_root", reason=privileges.ROOT_KEPT)
            if self.unrestartable:
                self.audit.warning("workers_not_restartable", reason=self.unrestartable)
            del state  # the workers hold the lists; the supervisor needs none
            tasks = [loop.create_task(self._watch(w, listen)) for w in self.workers]
            tasks.append(loop.create_task(every(TICK_INTERVAL, self.audit.tick)))
            await stop.wait()
        finally:
            self.stopping = True
            await self._stop_workers()
            self._close_worker_sockets()
            for task in tasks:
                task.cancel()
            if health is not None:
                await health.stop()
            self._refresh_total()
            self.audit.close("shutdown", counts=self.total.summary(), restarts=self.restarts)
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(signum)

    def _bind_for_workers(self, listen: Sequence[Endpoint]) -> None:
        """Each worker's own sockets (SO_REUSEPORT), bound while we may: kept, so that a worker
        restarted after the drop gets them again."""
        config = self.config
        for worker in self.workers:
            sockets = worker.sockets
            for endpoint in listen:
                udp, tcp = bind_pair(endpoint, True, config.limits.udp_receive_buffer)
                sockets[privileges.socket_key("udp", endpoint)] = udp
                sockets[privileges.socket_key("tcp", endpoint)] = tcp
            for endpoint in (*config.encrypted.dot, *config.encrypted.doh):
                sockets[privileges.socket_key("stream", endpoint)] = bind_stream(endpoint, True)

    def _drop_privileges(self) -> dict[str, object]:
        """Once the workers (which dropped already) are up and the metrics endpoint is bound:
        become `privileges.user` as they did. Signalling them needs no more than that."""
        config = self.config
        dropped = privileges.drop(config.privileges, (config.state_dir, self.audit.file_path or ""))
        self.unrestartable = privileges.cannot_exec(sys.executable)
        return {"privileges": dropped.fields(), "capabilities": privileges.capabilities()}

    def _close_worker_sockets(self) -> None:
        for worker in self.workers:
            for sock in worker.sockets.values():
                sock.close()
            worker.sockets.clear()

    async def _all_ready(self) -> None:
        """Return once every worker has sent its first report. A worker that exits before (it
        logged its own `startup_failed`) or a start slower than READY_TIMEOUT fails the whole
        start at once: the supervisor restarts workers only once it serves."""
        ready = asyncio.ensure_future(asyncio.gather(*(w.ready.wait() for w in self.workers)))
        exits = {asyncio.ensure_future(w.process.wait()): w for w in self.workers if w.process}
        try:
            done, _ = await asyncio.wait(
                [ready, *exits], timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in [ready, *exits]:
                waiter.cancel()
        if ready in done:
            return
        for waiter, worker in exits.items():
            if waiter in done:
                raise OSError(f"worker {worker.index} exited before it was ready "
                              f"(exit code {waiter.result()})")  # fmt: skip
        raise TimeoutError(f"the workers were not ready within {READY_TIMEOUT:g} s")

    async def _watch(self, worker: Worker, listen: Sequence[Endpoint]) -> None:
        """Restart `worker` whenever it exits, unless we are stopping."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.reports_closed.wait(), 5.0)
            if self.stopping:
                return
            self.restarts += 1
            if worker.report is not None:
                self.retired.merge(worker.report.stats)
            self.audit.error("worker_died", worker=worker.index, exit_code=code,
                             restarts=self.restarts)  # fmt: skip
            await asyncio.sleep(RESTART_BACKOFF)
            while not self.stopping:
                try:
                    await self._spawn(worker, listen)
                    break
                except OSError as error:  # e.g. the interpreter, after the drop (see run)
                    self.audit.error("worker_restart_failed", worker=worker.index,
                                     error=str(error)[:300])  # fmt: skip
                    await asyncio.sleep(RESTART_BACKOFF * 10)
            if self.stopping:
                return

    def _signal_all(self, signum: int) -> None:
        """Signal every running worker; SIGHUP and SIGUSR1 only those that are ready, because
        before its handlers are installed either would kill a worker (one still starting loads
        the new config, with an empty cache, anyway)."""
        for worker in self.workers:
            if _running(worker) and (signum == signal.SIGTERM or worker.ready.is_set()):
                worker.process.send_signal(signum)  # type: ignore[union-attr]

    async def _stop_workers(self) -> None:
        self._signal_all(signal.SIGTERM)
        running = [w.process for w in self.workers if _running(w)]
        if not running:
            return
        waits = [asyncio.ensure_future(p.wait()) for p in running]  # type: ignore[union-attr]
        _, pending = await asyncio.wait(waits, timeout=STOP_GRACE)
        for process in running:
            if process.returncode is None:  # type: ignore[union-attr]
                process.kill()  # type: ignore[union-attr]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE)
        for worker in self.workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.reports_closed.wait(), 2.0)


def encrypted_listeners(reports: Sequence[WorkerReport]) -> dict[str, list[str]]:
    """The start-up line's `dot` and `doh` fields, as a single process logs them: the addresses
    the workers bound (from their readiness), each once. With the fixed ports the docs ask for,
    every worker binds the same ones."""
    fields: dict[str, list[str]] = {}
    for report in reports:
        encrypted = report.readiness.get("encrypted")
        if not isinstance(encrypted, Mapping):
            continue
        for transport in ("dot", "doh"):
            listener = encrypted.get(transport)
            if isinstance(listener, Mapping):
                bound = fields.setdefault(transport, [])
                bound += [str(a) for a in listener.get("listening", ()) if str(a) not in bound]
    return fields


def _names(readiness: Mapping[str, object]) -> list[object]:
    missing = readiness.get("lists_missing")
    return list(missing) if isinstance(missing, list | tuple) else []


def _running(worker: Worker) -> bool:
    return worker.process is not None and worker.process.returncode is None


async def every(seconds: float, action: Callable[[], object]) -> None:
    """Call `action` every `seconds` until cancelled: the periodic timers of the service and the
    supervisor (audit ticks, worker reports, policy lapse checks)."""
    while True:
        await asyncio.sleep(seconds)
        action()


def worker_count(text: str) -> int:
    """`--workers N` or `auto` (one per CPU this process may run on)."""
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    count = int(text)
    if not 1 <= count <= 256:
        raise ValueError("workers must be between 1 and 256, or auto")
    return count
