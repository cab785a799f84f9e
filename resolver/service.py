"""The service's life: start listeners, log the start-up line, reload on SIGHUP, stop on
SIGINT/SIGTERM. Errors are raised to the CLI, which alone picks exit codes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from resolver import __version__
from resolver.audit import AuditLog
from resolver.catalogue import ListError
from resolver.config import Config, ConfigError
from resolver.pipeline import QueryPipeline
from resolver.server import Listeners
from resolver.state import ResolverState, build_state, read_resolv_conf
from resolver.stats import Stats
from resolver.upstream import UpstreamPool


def event_loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def serve(state: ResolverState, load_config: Callable[[], Config], audit: AuditLog) -> None:
    """Serve `state` until SIGINT/SIGTERM; SIGHUP rebuilds the state from `load_config()`."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    config = state.config
    pool = UpstreamPool(state.upstreams, config.upstream.timeout, config.upstream.deadline,
                        config.limits.max_inflight, stats, audit)  # fmt: skip
    pipeline = QueryPipeline(state, pool, stats, audit)
    listeners = Listeners(pipeline, config.limits, stats, audit)
    try:
        bound = await listeners.start(config.listen)
    except BaseException:
        await listeners.stop(grace=0)
        raise
    audit.info("startup", version=__version__, config=config.source,
               listeners=[str(e) for e in bound], upstreams=[str(e) for e in state.upstreams],
               blocked_domains=len(state.blocking), lists=dict(state.list_sizes),
               loop=event_loop_name())  # fmt: skip

    stop = asyncio.Event()

    def reload() -> None:
        started = time.monotonic()
        try:
            new_config = load_config()
            new_state = build_state(new_config, read_resolv_conf())
        except (ConfigError, ListError) as error:
            stats.count("reload.failed")
            audit.error("reload_failed", problems=[str(p) for p in error.problems])
            return
        except Exception as error:
            stats.count("reload.failed")
            audit.error("reload_failed", problems=[repr(error)[:300]])
            return
        if new_config.listen != config.listen:
            audit.warning("reload_listen_unchanged", reason="listen changes need a restart")
        pipeline.state = new_state
        pool.configure(new_state.upstreams, new_config.upstream.timeout,
                       new_config.upstream.deadline, new_config.limits.max_inflight)  # fmt: skip
        listeners.limits = new_config.limits
        stats.count("reload.ok")
        audit.info("reloaded", blocked_domains=len(new_state.blocking),
                   lists=dict(new_state.list_sizes),
                   upstreams=[str(e) for e in new_state.upstreams],
                   seconds=round(time.monotonic() - started, 3))  # fmt: skip

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        await listeners.stop()
        audit.info("shutdown", counts=stats.snapshot())
