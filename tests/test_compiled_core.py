"""The optional compiled core (docs/compiled.md): what the build asks for, and which core runs.

CI runs the whole suite twice: on README's pure install, and on a `DNSWARDEN_COMPILE=1` install
with DNSWARDEN_EXPECT_COMPILED=1, where these tests fail unless the modules the tests import, and
those of a server started from the checkout's own directory, are mypyc's extensions. Without the
variable, a run from the checkout must be running the pure modules.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from harness import REPO_ROOT, RESOLVER_HOME, ServerProcess, make_config, write_config

from resolver.protocol import core_build

SETUP = REPO_ROOT / "setup.py"
BACKEND = REPO_ROOT / "build_backend"


def compiled_paths() -> list[str]:
    """setup.py's COMPILED, read without running setup.py."""
    for node in ast.parse(SETUP.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED list")


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def expected_core() -> str | None:
    """"compiled" when CI says so; "pure" for the checkout's own modules; else unknown."""
    if os.environ.get("DNSWARDEN_EXPECT_COMPILED", "") not in ("", "0"):
        return "compiled"
    return "pure" if RESOLVER_HOME == REPO_ROOT else None


def test_the_compiled_modules_exist_and_are_pure_code() -> None:
    """Only modules of the sans-I/O core, and the pipeline (whose only I/O is the event loop's
    timers): mypyc's early binding must not meet a socket."""
    paths = compiled_paths()
    assert paths and len(set(paths)) == len(paths)
    core = {"protocol", "lists", "policy", "cache.py", "observe", "pipeline.py"}
    for path in paths:
        assert (REPO_ROOT / path).is_file(), path
        assert path.split("/")[1] in core, path
    assert set(paths) <= {line.strip(" -`") for line in docs_module_lines()}


def docs_module_lines() -> list[str]:
    text = (REPO_ROOT / "docs" / "compiled.md").read_text(encoding="utf-8")
    return [line.split(":")[0] for line in text.splitlines() if line.startswith("- `resolver/")]


def test_every_module_is_what_the_run_expects() -> None:
    expected = expected_core()
    if expected is None:
        pytest.skip("an installed resolver, and DNSWARDEN_EXPECT_COMPILED is not set")
    for path in compiled_paths():
        module = importlib.import_module(module_name(path))
        extension = (module.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))
        assert extension == (expected == "compiled"), module.__file__
    assert core_build() == expected


@pytest.mark.e2e
def test_a_server_started_in_the_checkout_runs_the_same_core(tmp_path: Path) -> None:
    """From the checkout's directory, where `python -m resolver` would find the checkout's
    `resolver/` first unless the harness keeps the working directory off sys.path."""
    expected = expected_core() or core_build()
    path = write_config(tmp_path, make_config(["127.0.0.1:9"]))  # no query is sent
    server = ServerProcess(path, REPO_ROOT, (), {"XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        assert server.start().startup["core"] == expected
    finally:
        assert server.stop() == 0


def backend(code: str, compile_flag: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DNSWARDEN_COMPILE"}
    if compile_flag is not None:
        env["DNSWARDEN_COMPILE"] = compile_flag
    program = f"import sys; sys.path.insert(0, {str(BACKEND)!r}); import dnswarden_build as b\n"
    return subprocess.run([sys.executable, "-c", program + code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "mypy"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)]
)
def test_mypy_is_a_build_requirement_only_when_compiling(flag: str | None, mypy: bool) -> None:
    done = backend("print(b.get_requires_for_build_wheel())", flag)
    assert done.returncode == 0, done.stderr
    requires = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert [r for r in requires if r.startswith("mypy")] == (["mypy==2.4.1"] if mypy else [])


def test_a_compiled_editable_install_is_refused() -> None:
    done = backend("b.get_requires_for_build_editable()", "1")
    assert done.returncode != 0
    assert "pip install ." in done.stderr and "-e" in done.stderr


def test_a_compiled_build_without_a_compiler_fails_saying_so() -> None:
    """Asked for a compiled core, the build never quietly makes a pure one."""
    env = {**os.environ, "DNSWARDEN_COMPILE": "1", "CC": "/nonexistent/cc"}
    done = subprocess.run([sys.executable, str(SETUP), "--version"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "cannot build the compiled core: no C compiler (/nonexistent/cc)" in done.stderr
