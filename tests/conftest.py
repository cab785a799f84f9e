"""Session-wide guard: the test run never touches the user's own dnswarden state.

`state_dir` (PID file, compiled lists, last good downloads) defaults to
`$XDG_STATE_HOME/dnswarden`, else `~/.local/state/dnswarden`: a test that starts a server or
builds a state without saying where would write, overwrite or delete the files of the operator's
own server (a test server's PID file once made `dnswarden reload` signal it). So the session
points XDG_STATE_HOME into a temporary directory (every child process inherits it), and fails if
the user's state directory changed anyway.

The guard cannot tell who wrote there: on a machine where another checkout's (older) tests run at
the same time, `DNSWARDEN_STATE_GUARD=off` turns the failure into a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

Snapshot = dict[str, tuple[int, int, int]]


def user_state_dir() -> Path:
    """Where a server started without XDG_STATE_HOME keeps its state: the real user's."""
    return Path.home() / ".local" / "state" / "dnswarden"


def snapshot(directory: Path) -> Snapshot:
    """Every path under `directory` (itself included) with its inode, size and mtime."""
    if not directory.exists():
        return {}
    found: Snapshot = {}
    for path in [directory, *directory.rglob("*")]:
        try:
            info = path.lstat()
        except OSError:
            continue
        found[str(path)] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    added = [f"created {path}" for path in sorted(after.keys() - before.keys())]
    removed = [f"deleted {path}" for path in sorted(before.keys() - after.keys())]
    kept = sorted(before.keys() & after.keys())
    changed = [f"changed {path}" for path in kept if before[path] != after[path]]
    return added + removed + changed


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    guarded = user_state_dir()
    before = snapshot(guarded)
    previous = os.environ.get("XDG_STATE_HOME")
    state_home = tmp_path_factory.mktemp("xdg-state")
    os.environ["XDG_STATE_HOME"] = str(state_home)
    try:
        yield state_home
    finally:
        if previous is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = previous
    touched = changes(before, snapshot(guarded))
    message = (
        f"the user's state directory {guarded} changed during the test run (a test, or another "
        "dnswarden on this machine, wrote there): " + "; ".join(touched[:20])
    )
    if touched and os.environ.get("DNSWARDEN_STATE_GUARD") == "off":
        warnings.warn(message, stacklevel=1)
        return
    assert touched == [], message
