"""`python -m bench` (what `bench/run` execs): check this Python first, then run bench/main.py.

The benchmark needs what dnswarden needs and nothing more (README's quick start installs it:
`pip install '.[speed]'`, uvloop included).  A Python without those packages gets one line
naming them and the command that installs them, and exit code 2, instead of a traceback from
an import deep inside the run.  Standard library only, so it works on any Python 3.11.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
INSTALL = "python3 -m venv .venv && .venv/bin/pip install '.[speed]'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def required(pyproject_text: str) -> list[str]:
    """The distribution names of dnswarden's dependencies (`[project] dependencies`); one with
    an environment marker is left out (no marker parser in the standard library)."""
    project = tomllib.loads(pyproject_text).get("project", {})
    names: list[str] = []
    for item in project.get("dependencies", []):
        match = _NAME.match(item)
        if match and ";" not in item:
            names.append(match.group(0))
    return names


def is_installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing_line(names: Sequence[str], installed: Callable[[str], bool], python: str) -> str | None:
    """The one line to print when some of `names` are not installed, else None."""
    missing = [name for name in names if not installed(name)]
    if not missing:
        return None
    return (
        f"bench: {python} lacks dnswarden's dependencies {', '.join(missing)}; "
        f"install them as README's quick start does: {INSTALL}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    line = missing_line(required(PYPROJECT.read_text()), is_installed, sys.executable)
    if line is not None:
        print(line, file=sys.stderr)
        return 2
    from bench.main import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
