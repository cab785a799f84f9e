"""The dnswarden configs the repository ships, for the tests that must validate every one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from resolver.config import Config

ROOT = Path(__file__).resolve().parent.parent
CONFIG_KEYS = {f.name for f in dataclasses.fields(Config)} - {"source"}


BUILD_OUTPUT = {"build", "dist"}
"""Top-level folders `pip install .` writes into the clone (gitignored copies, not shipped)."""


def shipped_configs() -> list[Path]:
    """Single-document YAML files whose top-level keys are all config keys (not lists,
    manifests, fixtures or build output)."""
    found = []
    for path in sorted(ROOT.rglob("*.yaml")):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") for p in parts) or {"blocklists", "fixtures"} & set(parts):
            continue
        if parts[0] in BUILD_OUTPUT or any(p.endswith(".egg-info") for p in parts):
            continue
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        if len(documents) != 1:
            continue
        data = documents[0]
        if isinstance(data, dict) and data and set(data) <= CONFIG_KEYS:
            found.append(path)
    return found
