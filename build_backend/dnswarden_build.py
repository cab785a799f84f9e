"""The PEP 517 backend: setuptools as it is, plus mypyc when `DNSWARDEN_COMPILE=1` asks for it.

Only the compiled build needs mypy (its mypyc compiles the hot modules to C extensions), so it is
added to the build requirements then and only then: `pip install .` without the variable builds
and installs exactly what it did before this backend existed. setup.py reads the same variable
and picks the modules (docs/compiled.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from setuptools import build_meta
from setuptools.build_meta import build_wheel  # noqa: F401  (runs setup.py, which compiles)

# The mypy whose mypyc compiles the core. Pinned: the build must be repeatable, and mypy's type
# checking, which the compiled modules must pass, changes between releases.
MYPY = "mypy==2.4.1"


def compile_requested() -> bool:
    """DNSWARDEN_COMPILE set to anything but empty or 0."""
    return os.environ.get("DNSWARDEN_COMPILE", "").strip() not in ("", "0")


@contextmanager
def setup_without_mypyc() -> Iterator[None]:
    """Run setup.py as the pure build does: for the hooks that only ask it for requirements,
    metadata or an sdist, before mypy is installed or where compiling would be wasted."""
    saved = os.environ.get("DNSWARDEN_COMPILE")
    os.environ["DNSWARDEN_COMPILE"] = "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["DNSWARDEN_COMPILE"]
        else:
            os.environ["DNSWARDEN_COMPILE"] = saved


def get_requires_for_build_wheel(config_settings: dict[str, object] | None = None) -> list[str]:
    extra = [MYPY] if compile_requested() else []
    with setup_without_mypyc():
        return [*build_meta.get_requires_for_build_wheel(config_settings), *extra]


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, object] | None = None
) -> str:
    with setup_without_mypyc():
        return build_meta.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def get_requires_for_build_sdist(config_settings: dict[str, object] | None = None) -> list[str]:
    with setup_without_mypyc():
        return build_meta.get_requires_for_build_sdist(config_settings)


def build_sdist(sdist_directory: str, config_settings: dict[str, object] | None = None) -> str:
    with setup_without_mypyc():
        return build_meta.build_sdist(sdist_directory, config_settings)


def get_requires_for_build_editable(config_settings: dict[str, object] | None = None) -> list[str]:
    _refuse_compiled_editable()
    return build_meta.get_requires_for_build_editable(config_settings)


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: dict[str, object] | None = None
) -> str:
    return build_meta.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, object] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """An editable install runs the checkout's .py files; compiled modules beside them would
    shadow every edit, so a compiled editable install is refused rather than half made."""
    _refuse_compiled_editable()
    return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)


def _refuse_compiled_editable() -> None:
    if compile_requested():
        raise SystemExit(
            "DNSWARDEN_COMPILE=1 builds a compiled core only with a regular install "
            "(pip install .), not an editable one (pip install -e .); unset it for -e"
        )
