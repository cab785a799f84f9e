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
