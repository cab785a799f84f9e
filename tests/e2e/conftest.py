"""Fixtures for the e2e tier: fake upstreams and real server processes, one set per module.

Starting a server costs about half a second, so each test module shares one server per config
(module scope); tests pick a scenario by picking a name (see `harness.PRIMARY_BEHAVIOURS`) rather
than by reconfiguring anything, and use fresh names so no test sees another's traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import FakeUpstream
from harness import (
    LOCAL_LIST,
    LOCAL_LIST_NAME,
    PRIMARY_BEHAVIOURS,
    SECONDARY_BEHAVIOURS,
    ServerFactory,
    ServerProcess,
    make_config,
    write_config,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def local_list(workdir: Path) -> Path:
    path = workdir / f"{LOCAL_LIST_NAME}.txt"
    path.write_text(LOCAL_LIST)
    return path


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    """Two upstreams in config order: the first plays the scenarios, the second answers."""
    primary = FakeUpstream(by_name=PRIMARY_BEHAVIOURS, seed=1).start()
    try:
        secondary = FakeUpstream(by_name=SECONDARY_BEHAVIOURS, seed=2).start()
    except BaseException:
        primary.stop()
        raise
    try:
        yield primary, secondary
    finally:
        secondary.stop()
        primary.stop()
    assert not primary.errors + secondary.errors, "the fake upstream itself failed"


@pytest.fixture(scope="module")
def launch(workdir: Path) -> Iterator[ServerFactory]:
    """Start servers from config dicts; every one is stopped by PID when the module ends.

    Teardown then checks what every run must end with: exit code 0 after SIGTERM, a shutdown
    event, and no traceback on stderr, whatever the module's tests did to the server.
    """
    started: list[ServerProcess] = []

    def start(
        config: dict[str, Any],
        name: str = "dnswarden",
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        prefix: Iterable[str] = (),
    ) -> ServerProcess:
        directory = workdir / f"{name}-{len(started)}"
        directory.mkdir()
        path = write_config(directory, config)
        server = ServerProcess(path, directory, extra_args, env, prefix)
        started.append(server)
        return server.start()

    yield start
    problems = []
    for server in started:
        code = server.stop()
        if not server.startup:
            continue
        if code != 0:
            problems.append(f"{server.config}: exit code {code} after SIGTERM")
        if not any(event.get("event") == "shutdown" for event in server.events):
            problems.append(f"{server.config}: no shutdown event")
        if "Traceback" in server.stderr_text():
            problems.append(
                f"{server.config}: traceback on stderr:\n{server.stderr_text()[-3000:]}"
            )
    assert problems == [], "\n".join(problems)


@pytest.fixture(scope="module")
def server(
    launch: ServerFactory, upstreams: tuple[FakeUpstream, FakeUpstream], local_list: Path
) -> ServerProcess:
    """The default server: null_ip blocking of tiktok + a local list, two upstreams."""
    config = make_config(
        [upstreams[0].address, upstreams[1].address],
        lists=["tiktok", str(local_list)],
    )
    return launch(config, "main")
