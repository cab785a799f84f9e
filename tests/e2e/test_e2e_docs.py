"""Every `console` example in README.md, docs/ and bench/RESULTS.md runs, exits 0 and prints what
the doc shows (the rules are in tests/doc_examples.py).

Each block runs in a scratch directory that mirrors the repository's top level with symlinks, so
relative paths such as deploy/examples/belgium-2023.yaml work and files an example writes stay in
the scratch directory. A block that talks to a server (it names port 5353 or 9153, or runs
`dnswarden reload`) gets a freshly started `dnswarden serve` on the embedded default config with
three changes: DNS on a free loopback port instead of 5353, the metrics endpoint on a free
loopback port instead of 9153, and a loopback fake upstream (serving the names the examples ask
for) instead of the machine's resolvers. The block's commands are rewritten to those ports
(`-p 5353`, `127.0.0.1:5353`, `127.0.0.1:9153`) and nothing else. `dnswarden` and `python3` in a
command are this checkout run by the test's interpreter, and XDG_STATE_HOME points into the
scratch directory, so `dnswarden reload` finds that server's PID file. A ```json block right after
a console block shows log lines that block makes the server write: each must have been logged,
times aside. Every command and every server is bounded in time and stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from doc_examples import CONSOLE, Block, block_after, blocks, commands, doc_files, output_matches
from fake_upstream import BOGUS, VALIDATING, FakeUpstream, Zone
from harness import REPO_ROOT, ServerProcess, server_env, write_config

from resolver.config import default_yaml

pytestmark = pytest.mark.e2e

COMMAND_TIMEOUT = 30.0
DOC_DNS_PORT = re.compile(r"(?<=-p )5353\b|(?<=127\.0\.0\.1:)5353\b")
DOC_METRICS_PORT = re.compile(r"(?<=127\.0\.0\.1:)9153\b")
NEEDS_SERVER = re.compile(r"\b(?:5353|9153)\b|\bdnswarden reload\b")
TOOLS = ("dig", "curl", "promtool")
LOG_TIME_FIELDS = frozenset({"timestamp", "first_seen", "last_seen"})

DOC_ZONE = [
    "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 900 86400 300",
    "example.org. 300 IN A 192.0.2.1",
    "www.example.org. 300 IN A 192.0.2.10",
    "cloaked.example. 3600 IN SOA ns.cloaked.example. admin.cloaked.example. 1 7200 900 86400 60",
    # CNAME cloaking, as docs/upstreams.md shows it: an unlisted name whose answer leads to TikTok.
    "cdn.cloaked.example. 300 IN CNAME edge.tiktokv.com.",
    "edge.tiktokv.com. 300 IN A 192.0.2.50",
    # DNSSEC, as docs/answers.md shows it: the upstream plays a validating resolver.
    "signed.example. 3600 IN SOA ns.signed.example. admin.signed.example. 1 7200 900 86400 60",
    "www.signed.example. 300 IN A 192.0.2.20",
    "bogus.signed.example. 300 IN A 192.0.2.21",
]
"""The names the examples ask the upstream for."""

CONSOLE_BLOCKS = [block for path in doc_files() for block in blocks(path) if block.lang == CONSOLE]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(zone=Zone(DOC_ZONE)).start()
    fake.set_behaviour(VALIDATING, "signed.example")
    fake.set_behaviour(BOGUS, "bogus.signed.example")
    try:
        yield fake
    finally:
        fake.stop()
    assert fake.errors == []


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dnswarden` and `python3` as the examples mean them: this checkout, this interpreter."""
    directory = tmp_path_factory.mktemp("bin")
    for name, command in (("dnswarden", f'"{sys.executable}" -m resolver'),
                          ("python3", f'"{sys.executable}"')):  # fmt: skip
        script = directory / name
        script.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        script.chmod(0o755)
    return directory


def scratch_directory(path: Path) -> Path:
    """A working directory whose top level links to the repository's (but for .git)."""
    path.mkdir()
    for entry in REPO_ROOT.iterdir():
        if entry.name not in {".git", ".venv"}:
            (path / entry.name).symlink_to(entry)
    return path


def server_config(upstream: FakeUpstream) -> dict[str, Any]:
    config = yaml.safe_load(default_yaml())
    config["listen"] = ["127.0.0.1:0"]
    config["upstream"]["servers"] = [upstream.address]
    config.setdefault("metrics", {})["listen"] = "127.0.0.1:0"
    return config


def rewrite(command: str, server: ServerProcess | None) -> str:
    if server is None:
        return command
    metrics_port = server.startup["metrics"].rpartition(":")[2]
    command = DOC_DNS_PORT.sub(str(server.address[1]), command)
    return DOC_METRICS_PORT.sub(metrics_port, command)


def logged(events: list[dict[str, Any]], shown: dict[str, Any]) -> bool:
    def timeless(event: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in event.items() if k not in LOG_TIME_FIELDS}

    return any(timeless(event) == timeless(shown) for event in events)


def shown_log_lines(block: Block) -> list[dict[str, Any]]:
    after = block_after(block)
    if after is None or after.lang != "json":
        return []
    return [json.loads(line) for line in after.text.splitlines() if line.strip()]


@pytest.mark.parametrize("block", CONSOLE_BLOCKS, ids=lambda block: block.id)
def test_console_example(
    block: Block, upstream: FakeUpstream, tools: Path, tmp_path: Path
) -> None:
    examples = commands(block)
    for tool in TOOLS:
        if any(re.search(rf"\b{tool}\b", c.text) for c in examples) and not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    cwd = scratch_directory(tmp_path / "work")
    env = server_env({"XDG_STATE_HOME": str(tmp_path / "state")})
    env["PATH"] = os.pathsep.join((str(tools), env.get("PATH", os.defpath)))
    server = None
    if any(NEEDS_SERVER.search(c.text) for c in examples):
        config = write_config(tmp_path, server_config(upstream))
        server = ServerProcess(config, tmp_path, env={"XDG_STATE_HOME": str(tmp_path / "state")})
        server.start()
    try:
        for example in examples:
            command = rewrite(example.text, server)
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            where = f"{block.path.name}:{example.line}: {command}"
            assert result.returncode == 0, f"{where}\nexit {result.returncode}:\n{result.stdout}"
            if example.output is not None:
                shown = "\n".join(example.output)
                assert output_matches(example.output, result.stdout), (
                    f"{where}\nthe doc shows:\n{shown}\nit printed:\n{result.stdout}"
                )
    finally:
        code = server.stop() if server is not None else 0
    if server is None:
        assert shown_log_lines(block) == [], f"{block.id}: log lines shown, but no server ran"
        return
    assert code == 0, f"exit code {code} after SIGTERM"
    assert "Traceback" not in server.stderr_text(), server.stderr_text()
    for line in shown_log_lines(block):
        assert logged(server.events, line), f"not logged: {line}\nlogged: {server.events}"
