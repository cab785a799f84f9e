"""What `pip install .` ships: every package folder of `resolver/`, and the data it reads.

pyproject.toml lists the packages by hand (the bundled catalogue is mapped in from `blocklists/`),
so a new layer folder that is not listed would work from a checkout and be missing from an
install: the container image, and every operator's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "setuptools"
]


def test_every_package_folder_is_listed() -> None:
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "resolver").rglob("__init__.py")
    }
    assert set(SETUPTOOLS["packages"]) == folders | {"resolver.blocklists"}


def test_data_files_the_package_reads_are_shipped() -> None:
    data = SETUPTOOLS["package-data"]
    assert "default.yaml" in data["resolver.config"]
    assert (ROOT / "resolver" / "config" / "default.yaml").is_file()
    assert "*.yaml" in data["resolver.blocklists"]


BUILD_SYSTEM = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]


def test_the_build_backend_is_in_tree_and_needs_only_setuptools() -> None:
    """The pure install asks for what it always did; mypy comes only with DNSWARDEN_COMPILE
    (tests/test_compiled_core.py), from the backend in `backend-path`."""
    assert BUILD_SYSTEM["requires"] == ["setuptools>=68"]
    [folder] = BUILD_SYSTEM["backend-path"]
    assert (ROOT / folder / f"{BUILD_SYSTEM['build-backend']}.py").is_file()


def test_the_image_build_gets_the_backend_and_setup_py() -> None:
    """The container's build stage needs both, compiled or not: pip reads `backend-path`."""
    [folder] = BUILD_SYSTEM["backend-path"]
    admitted = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {"!setup.py", f"!{folder}/"} <= set(admitted)
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copies = [line for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert any("setup.py" in line for line in copies)
    assert any(line.startswith(f"COPY {folder}/ ") for line in copies)
    assert "DNSWARDEN_COMPILE=1 /opt/dnswarden/bin/pip install" in dockerfile
