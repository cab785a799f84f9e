"""The `privileges` section: whom the server runs as once its sockets are bound.

A gateway without systemd starts dnswarden as root so it can bind port 53; it then needs root
for nothing else, and a parser bug reachable by any client must not run as root. With `user`
set, the server binds its listeners and drops to that user (and `group`, else the user's
primary group) with no capability left. Names are checked to exist when the server starts, not
here: the config is validated on machines (CI, a laptop) that lack the gateway's accounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resolver.config.nodes import Entries, Reader
from resolver.config.problems import describe

_ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}", re.ASCII)


@dataclass(frozen=True, slots=True)
class PrivilegesConfig:
    user: str | None = None
    group: str | None = None


def read_privileges(reader: Reader, top: Entries) -> PrivilegesConfig:
    entries = reader.section(top, "privileges", PrivilegesConfig)
    user = reader.value(entries, "user", "privileges", _account, None)
    group = reader.value(entries, "group", "privileges", _account, None)
    if "group" in entries and "user" not in entries:
        reader.problem(
            entries["group"][1],
            "privileges.group",
            "a group without a user drops nothing; set privileges.user too",
        )
    return PrivilegesConfig(
        user=user if isinstance(user, str) else None,
        group=group if isinstance(group, str) else None,
    )


def _account(raw: object) -> str:
    """A user or group name (as in /etc/passwd) or a numeric id."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError(f"expected a user or group name, got {describe(raw)}")
    text = str(raw).strip()
    if not _ACCOUNT_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid user or group name")
    if text in ("root", "0"):
        raise ValueError("dropping to root drops nothing; name an unprivileged account")
    return text
