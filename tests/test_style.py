"""The house style is part of the suite: ruff clean, and the core free of I/O imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The thin I/O shell; every other module of the package is pure code on bytes and values.
IO_SHELL = {
    "server.py",
    "pipeline.py",
    "upstream.py",
    "datagrams.py",
    "service.py",
    "cli.py",
    "httpd.py",
    "workers.py",
    "fetch.py",
}
IO_IMPORT = re.compile(
    r"^\s*(import|from)\s+(asyncio|_?socket|select|selectors|ssl|uvloop)\b", re.M
)


def test_ruff_is_clean() -> None:
    # The test extra installs ruff beside this interpreter, which need not be on PATH: CI runs
    # `.venv/bin/pytest` without activating the venv.
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the `test` extra)")
    result = subprocess.run(
        [ruff, "check", "resolver", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_modules_do_no_io() -> None:
    offenders = [
        path.name
        for path in sorted((ROOT / "resolver").glob("*.py"))
        if path.name not in IO_SHELL and IO_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
