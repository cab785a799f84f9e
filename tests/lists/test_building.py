"""Tests for resolver/lists/building.py: a compile job reads, parses, judges and writes, and the
child process runs the same job from JSON on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from resolver.lists import building
from resolver.lists.compiled import open_compiled


def job_for(tmp_path: Path, *files: Path) -> dict[str, Any]:
    return {"name": "l", "files": [str(f) for f in files], "format": "domains",
            "max_errors": 100, "max_regex": 0, "out": str(tmp_path / "l.dwl")}  # fmt: skip


def test_a_job_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("a.example\n")
    missing = tmp_path / "missing.txt"
    job = job_for(tmp_path, good, missing)
    report = building.compile_job(job)
    assert report["problems"] == [f"{missing}: cannot read list file (No such file or directory)"]
    assert not Path(job["out"]).exists()


def test_the_child_builds_what_the_job_says(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("a.example\nb.example\n")
    job = job_for(tmp_path, listed)
    done = subprocess.run([sys.executable, "-m", "resolver.lists.building"],
                          input=json.dumps(job), capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    report = json.loads(done.stdout)
    assert report["problems"] == [] and report["refusal"] is None
    matcher = open_compiled(Path(job["out"]))
    assert matcher.lookup(b"\x03www\x01a\x07example\x00") is not None
    assert matcher.lookup(b"\x01c\x07example\x00") is None
