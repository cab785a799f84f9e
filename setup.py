"""The compiled build's one addition to pyproject.toml: mypyc extension modules for the hot core.

Without DNSWARDEN_COMPILE this is a plain `setup()` and pyproject.toml says everything. With it,
mypyc compiles COMPILED (typed, pure modules on the per-query path) to C; the .py files still ship
beside them, and Python imports the extension first. A build that cannot compile fails: asked for
a compiled core, it never quietly installs a pure one. docs/compiled.md says which modules and why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup

COMPILED = [
    "resolver/protocol/wire.py",
    "resolver/protocol/names.py",
    "resolver/protocol/edns.py",
    "resolver/protocol/answers.py",
    "resolver/lists/compiled.py",
    "resolver/lists/matcher.py",
    "resolver/policy/access.py",
    "resolver/policy/engine.py",
    "resolver/policy/inspection.py",
    "resolver/policy/ratelimit.py",
    "resolver/policy/shedding.py",
    "resolver/cache.py",
    "resolver/observe/stats.py",
    "resolver/observe/audit.py",
    "resolver/pipeline.py",
]

# mypy reads the modules COMPILED imports (silently) for their types; libraries without type
# information are taken as Any.
MYPY_OPTIONS = ["--ignore-missing-imports", "--follow-imports=silent", "--python-version=3.11"]


def compile_requested() -> bool:
    return os.environ.get("DNSWARDEN_COMPILE", "").strip() not in ("", "0")


def compiler_problem() -> str | None:
    """Why a C extension cannot be built here, before mypyc spends a minute generating C."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}) on PATH: install gcc"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers}): install python3-dev"
    return None


def compiled_extensions() -> list[object]:
    problem = compiler_problem()
    if problem is not None:
        sys.exit(f"DNSWARDEN_COMPILE=1: cannot build the compiled core: {problem} "
                 "(or unset DNSWARDEN_COMPILE for the pure-Python install)")  # fmt: skip
    from mypyc.build import mypycify

    return mypycify(
        [*MYPY_OPTIONS, *COMPILED], opt_level="3", group_name="resolver_core", target_dir=BUILD
    )


if compile_requested():
    # A fresh build directory each time: an extension left in ./build by an earlier build with
    # another module list would otherwise be packed into this wheel.
    BUILD = tempfile.mkdtemp(prefix="dnswarden-mypyc-")
    atexit.register(shutil.rmtree, BUILD, ignore_errors=True)
    setup(ext_modules=compiled_extensions(), options={"build": {"build_base": BUILD}})
else:
    setup()
