"""Dropping root once the sockets are bound.

On a gateway without systemd (which would start us unprivileged with CAP_NET_BIND_SERVICE),
dnswarden is started as root to bind port 53. After binding it needs no privilege at all: it
switches to `privileges.user` (and `privileges.group`, else the user's primary group) with no
supplementary groups. A process that changes all its user ids from 0 to another loses every
capability (permitted, effective and ambient: capabilities(7)), so `CapEff` is 0 afterwards; we
check that root cannot be regained before going on.

What it must still write after the drop is handed to the user first: the state directory
(last-good copies, compiled lists, the PID file) and the audit file. The config and lists are
read again on reload, so they must be readable by the user (as /etc files usually are).

With `--workers`, the supervisor drops too, once its workers are up; a worker it restarts
afterwards starts as the user, so it could not bind port 53 again. So a supervisor that will
drop binds every worker's sockets itself first and hands each worker its own (inherited file
descriptors, named in `INHERITED_VARIABLE`); it keeps them, and a restarted worker takes them
over. Each worker's sockets are its own (SO_REUSEPORT), so the kernel still spreads clients.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from resolver.config import Endpoint, PrivilegesConfig

ROOT_KEPT = (
    "started as root and privileges.user is not set: a bug reachable by any client would run "
    "as root; set privileges.user"
)


INHERITED_VARIABLE = "DNSWARDEN_INHERITED_SOCKETS"
"""`KEY=FD;...`: the sockets a worker's supervisor bound for it (`socket_key` names them)."""


class PrivilegeError(OSError):
    """The drop cannot be done: an unknown account, or root still reachable afterwards."""


@dataclass(frozen=True, slots=True)
class Dropped:
    user: str
    uid: int
    gid: int
    handed_over: tuple[str, ...]

    def fields(self) -> dict[str, object]:
        return {"user": self.user, "uid": self.uid, "gid": self.gid,
                "handed_over": list(self.handed_over)}  # fmt: skip


def running_as_root() -> bool:
    return os.geteuid() == 0


def account(settings: PrivilegesConfig) -> tuple[str, int, int]:
    """(user name, uid, gid) the settings name; raises PrivilegeError for unknown ones."""
    assert settings.user is not None
    try:
        entry = (
            pwd.getpwuid(int(settings.user)) if settings.user.isdigit()
            else pwd.getpwnam(settings.user)
        )  # fmt: skip
    except (KeyError, OverflowError):
        raise PrivilegeError(f"privileges.user: no such user {settings.user!r}") from None
    gid = entry.pw_gid
    if settings.group is not None:
        try:
            gid = (
                int(settings.group) if settings.group.isdigit()
                else grp.getgrnam(settings.group).gr_gid
            )  # fmt: skip
        except KeyError:
            raise PrivilegeError(f"privileges.group: no such group {settings.group!r}") from None
    if entry.pw_uid == 0 or gid == 0:
        raise PrivilegeError("privileges: the account to drop to must not be root")
    return entry.pw_name, entry.pw_uid, gid


def drop(settings: PrivilegesConfig, writable: Iterable[str]) -> Dropped:
    """Become `settings.user`; first hand `writable` paths (recursively) to it."""
    name, uid, gid = account(settings)
    handed = []
    for path in writable:
        if path and _hand_over(Path(path), uid, gid):
            handed.append(path)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivilegeError("privileges: root could be regained after the drop")
    return Dropped(name, uid, gid, tuple(handed))


def _hand_over(path: Path, uid: int, gid: int) -> bool:
    if not path.exists():
        return False
    targets = [path]
    if path.is_dir() and not path.is_symlink():
        targets += list(path.rglob("*"))
    for target in targets:
        if not target.is_symlink():
            os.chown(target, uid, gid)
    return True


def capabilities() -> dict[str, str]:
    """The Cap* lines of /proc/self/status (Linux), for the start-up event and the tests."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in lines)
        if key in ("CapInh", "CapPrm", "CapEff", "CapAmb")
    }


def cannot_exec(interpreter: str) -> str:
    """Why we could not start `interpreter` on dnswarden's code now ("" if we can): a
    supervisor that dropped restarts workers so, and an interpreter under /root cannot be."""
    package = str(Path(__file__).resolve().parent.parent)
    for path, mode in ((interpreter, os.X_OK), (package, os.R_OK | os.X_OK)):
        if not os.access(path, mode):
            return f"{path}: not {'executable' if mode == os.X_OK else 'readable'} by this user"
    return ""


# --- sockets bound by a supervisor that drops, for its workers ---------------------------------


def socket_key(kind: str, endpoint: Endpoint) -> str:
    """`udp`/`tcp` (a DNS listener's pair) or `stream` (DoT, DoH), and the address asked for."""
    return f"{kind} {endpoint}"


def inheritance(sockets: Mapping[str, socket.socket]) -> tuple[str, tuple[int, ...]]:
    """The `INHERITED_VARIABLE` value for `sockets`, and the descriptors to pass along."""
    value = ";".join(f"{key}={sock.fileno()}" for key, sock in sockets.items())
    return value, tuple(sock.fileno() for sock in sockets.values())


_inherited: dict[str, int] | None = None


def inherited(kind: str, endpoint: Endpoint) -> socket.socket | None:
    """The socket our supervisor bound for us as `kind` on `endpoint`, once; None when it bound
    none (no supervisor, or one that keeps root: then we bind ourselves)."""
    global _inherited
    if _inherited is None:
        _inherited = {}
        for item in os.environ.pop(INHERITED_VARIABLE, "").split(";"):
            key, _, fd = item.rpartition("=")
            if key and fd.isdigit():
                _inherited[key] = int(fd)
    fd = _inherited.pop(socket_key(kind, endpoint), None)
    if fd is None:
        return None
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock
