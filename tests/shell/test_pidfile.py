"""The PID file: one live server holds it; a stale one is taken over; stopping removes only
our own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resolver.shell.pidfile import PidFile, PidFileBusy


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "dnswarden.pid"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_server_lookalike() -> Iterator[int]:
    """A live process whose command line is a dnswarden server's (an older version that never
    locked its PID file)."""
    if not Path("/proc/self").exists():
        pytest.skip("telling a dnswarden server by its command line needs /proc")
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "resolver", "serve"]
    )
    try:
        # Until the child has exec'd, its command line is still ours (pytest's).
        deadline = time.monotonic() + 10
        while b"serve" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the child never ran"
            time.sleep(0.01)
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def live_other() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_acquire_writes_our_pid_and_release_removes_it(path: Path) -> None:
    held = PidFile.acquire(path)
    assert path.read_text() == f"{os.getpid()}\n"
    held.release()
    assert not path.exists()


def test_a_held_pid_file_is_refused(path: Path) -> None:
    held = PidFile.acquire(path)
    try:
        with pytest.raises(PidFileBusy) as caught:
            PidFile.acquire(path)
        assert (caught.value.path, caught.value.holder) == (path, os.getpid())
        assert str(path) in str(caught.value) and str(os.getpid()) in str(caught.value)
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        held.release()


def test_an_unlocked_file_of_a_live_server_is_refused(
    path: Path, live_server_lookalike: int
) -> None:
    path.parent.mkdir()
    path.write_text(f"{live_server_lookalike}\n")
    with pytest.raises(PidFileBusy) as caught:
        PidFile.acquire(path)
    assert caught.value.holder == live_server_lookalike
    assert path.read_text() == f"{live_server_lookalike}\n"


@pytest.mark.parametrize("content", ["dead", "other", "garbage", "empty"])
def test_a_stale_pid_file_is_taken_over(path: Path, live_other: int, content: str) -> None:
    text = {"dead": f"{dead_pid()}\n", "other": f"{live_other}\n", "garbage": "x\n", "empty": ""}
    path.parent.mkdir()
    path.write_text(text[content])
    held = PidFile.acquire(path)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        held.release()


def test_release_leaves_a_file_that_is_no_longer_ours(path: Path) -> None:
    held = PidFile.acquire(path)
    replacement = path.with_name("other.pid")
    replacement.write_text("4242\n")
    os.replace(replacement, path)
    held.release()
    assert path.read_text() == "4242\n"


def test_after_release_another_may_acquire(path: Path) -> None:
    PidFile.acquire(path).release()
    again = PidFile.acquire(path)
    assert path.read_text() == f"{os.getpid()}\n"
    again.release()
