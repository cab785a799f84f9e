"""The server's own settings: the DNS listen addresses, the worker processes, the state directory.

`listen` is a list of `Endpoint`s (`values.parse_endpoint`); whether an upstream or the metrics
endpoint collides with a listener is checked across sections (`document`).
"""

from __future__ import annotations

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.problems import describe
from resolver.config.values import Endpoint, dir_text, parse_endpoint

DEFAULT_LISTEN: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 5353), Endpoint("::1", 5353))
DEFAULT_WORKERS = 1


def read_listen(reader: Reader, top: Entries) -> tuple[Endpoint, ...] | None:
    """Listeners, `None` when the list itself is unusable (then loop checks are skipped)."""
    if "listen" not in top:
        return DEFAULT_LISTEN
    items = reader.items(
        top, "listen", "", _endpoint_text, empty="at least one address is required"
    )
    if items is None:
        return None
    return tuple(item.value for item in reader.unique(items))


def read_workers(reader: Reader, top: Entries) -> int | str:
    """Worker processes sharing the listeners, or `auto` (one per CPU)."""
    workers: int | str = reader.value(top, "workers", "", _workers, DEFAULT_WORKERS)
    return workers


def read_state_dir(reader: Reader, top: Entries) -> str:
    """An absolute directory path; it need not exist yet (the server creates it)."""
    if "state_dir" not in top:
        return files.default_state_dir()
    node = top["state_dir"][1]
    name = reader.convert(node, "state_dir", dir_text)
    if name is MISSING:
        return ""
    if name.startswith("~"):
        reader.problem(node, "state_dir", "'~' is not expanded here; write the full path")
        return ""
    return files.state_dir(reader, node, name)


def _endpoint_text(raw: object) -> Endpoint:
    if not isinstance(raw, str):
        raise ValueError(f'expected an address such as "127.0.0.1:53", got {describe(raw)}')
    return parse_endpoint(raw)


def _workers(raw: object) -> int | str:
    if raw == "auto":
        return "auto"
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 256:
        raise ValueError("expected a number of worker processes from 1 to 256, or auto")
    return raw
