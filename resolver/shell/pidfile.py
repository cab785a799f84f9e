"""The PID file `dnswarden reload` reads, held by exactly one live server.

Two servers with one state directory (a second `serve` without `-c`, a test server started
beside the operator's) used to share one PID file: the second overwrote it, so `reload`
signalled the wrong server, and the first to stop deleted it. Now a server holds an exclusive
lock (flock) on its PID file for as long as it runs, refuses to start when another holds it, and
on stopping removes the file only if it is still the one it wrote. The kernel drops the lock of
a server that dies, so a stale file never blocks a start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

_ATTEMPTS = 5


class PidFileBusy(Exception):
    """The PID file at `path` belongs to another server, still running as `holder`."""

    def __init__(self, path: Path, holder: int | None) -> None:
        self.path = path
        self.holder = holder
        who = f"dnswarden PID {holder}" if holder else "another dnswarden"
        super().__init__(
            f"PID file {path} belongs to {who}, which is still running: stop it first, or give "
            "this server a state_dir (or --pid-file) of its own"
        )


class PidFile:
    """Our PID in `path`, locked until `release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path) -> PidFile:
        """Lock `path` and write our PID into it. PidFileBusy if another live server holds it;
        OSError if it cannot be written at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise PidFileBusy(path, holder) from None
            except BaseException:
                os.close(fd)
                raise
            if not _same_file(fd, path):
                os.close(fd)  # a stopping server removed it meanwhile: lock the new one
                continue
            holder = _read_pid(fd)
            # An unlocked file naming a live server: one from before PID files were locked.
            if holder is not None and holder != os.getpid() and is_dnswarden_server(holder):
                os.close(fd)
                raise PidFileBusy(path, holder)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except BaseException:
                os.close(fd)
                raise
            return cls(path, fd)
        raise OSError(f"PID file {path} kept changing while being locked")

    def release(self) -> None:
        """Remove the file if it is still ours (never another server's), then unlock."""
        if self._fd < 0:
            return
        if _same_file(self._fd, self.path):
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_dnswarden_server(pid: int) -> bool | None:
    """Whether process `pid` is running `dnswarden serve` (or `python -m resolver serve`);
    None where /proc cannot tell (not Linux), False when no such process is running."""
    if not Path("/proc/self").exists():
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    named = any(b"resolver" in part or b"dnswarden" in part for part in argv)
    return named and b"serve" in argv
