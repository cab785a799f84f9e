"""Every file system access of the config: reading the config file (or the embedded default)
and checking the files it names, plus the environment for the default state directory.

Reads are bounded (a path to a device or a huge file must not hang or exhaust memory), and a
file that cannot be read is a problem located like any other. List URLs are never fetched
here; only their form is checked, elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from yaml.nodes import Node

from resolver.config.nodes import Reader
from resolver.config.problems import ConfigError, ConfigProblem

MAX_CONFIG_BYTES = 1 << 20
MAX_CA_BYTES = 16 << 20
MAX_TOKEN_BYTES = 4096


def default_yaml() -> str:
    """The embedded default configuration (`default.yaml`, shipped as package data)."""
    return resources.files(__package__).joinpath("default.yaml").read_text(encoding="utf-8")


def config_text(path: str | Path) -> tuple[str, Path]:
    """The text of a config file, and the directory its relative paths are relative to."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            [ConfigProblem(source, 0, "(file)", f"cannot read: {e.strerror or e}")]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigProblem(source, 0, "(file)", f"larger than {MAX_CONFIG_BYTES} bytes")]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(source, line, "(file)", "not valid UTF-8 text")]) from None
    return text, Path(path).absolute().parent


def default_state_dir(environ: Mapping[str, str] | None = None) -> str:
    """`$XDG_STATE_HOME/dnswarden`, else `~/.local/state/dnswarden` (XDG Base Directory).

    A relative XDG_STATE_HOME is ignored, as the XDG specification requires.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "dnswarden")
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".local", "state", "dnswarden")


def local_path(reader: Reader, name: str) -> Path:
    """`name` made absolute: relative paths are relative to the config file's directory."""
    base = reader.base_dir if reader.base_dir is not None else Path.cwd()
    return Path(os.path.normpath(base / name))


def existing_file(reader: Reader, node: Node, key: str, name: str, what: str) -> Path | None:
    """The absolute path of an existing regular file, or `None` with a problem noted.

    Regular files only: opening a FIFO or a device named by mistake could hang or never end.
    """
    full = local_path(reader, name)
    if not full.exists():
        reader.problem(node, key, f"{what} {str(full)!r} does not exist")
        return None
    if not full.is_file():
        reader.problem(node, key, f"{what} {str(full)!r} is not a regular file")
        return None
    return full


def existing_dir(reader: Reader, node: Node, key: str, name: str) -> Path | None:
    """The absolute path of an existing directory, or `None` with a problem noted."""
    full = local_path(reader, name)
    if not full.exists():
        reader.problem(node, key, f"directory {str(full)!r} does not exist")
        return None
    if not full.is_dir():
        reader.problem(node, key, f"{str(full)!r} is not a directory (use path: for a single file)")
        return None
    return full


def read_head(
    reader: Reader, node: Node, key: str, name: str, what: str, limit: int
) -> tuple[Path, bytes] | None:
    """An existing regular file's path and its first `limit` + 1 bytes (one more than any
    content the caller accepts, so it can tell "too large"), or `None` with a problem noted."""
    full = existing_file(reader, node, key, name, what)
    if full is None:
        return None
    try:
        with open(full, "rb") as f:
            return full, f.read(limit + 1)
    except OSError as e:
        reader.problem(node, key, f"cannot read {what} {str(full)!r}: {e.strerror or e}")
        return None


def ca_file(reader: Reader, node: Node, key: str, name: str) -> str | None:
    """The CA bundle's absolute path, after checking it holds PEM certificates.

    Only the form is checked (no `ssl` here); a DER file or a private key named by mistake
    is caught now rather than at the first TLS handshake.
    """
    read = read_head(reader, node, key, name, "CA file", MAX_CA_BYTES)
    if read is None:
        return None
    full, data = read
    if len(data) > MAX_CA_BYTES:
        reader.problem(node, key, f"CA file {str(full)!r} is larger than {MAX_CA_BYTES} bytes")
    elif b"-----BEGIN CERTIFICATE-----" not in data:
        reader.problem(
            node,
            key,
            f"CA file {str(full)!r} holds no PEM certificate ('-----BEGIN CERTIFICATE-----')",
        )
    else:
        return str(full)
    return None


def pem_file(reader: Reader, node: Node, key: str, name: str, what: str) -> str | None:
    """The absolute path of a PEM certificate chain or private key (`what`), after checking
    its form: a DER file or the wrong half of the pair is caught now, not at the first
    handshake. The shell loads it (here there is no `ssl`)."""
    read = read_head(reader, node, key, name, what, MAX_CA_BYTES)
    if read is None:
        return None
    full, data = read
    marker = b"PRIVATE KEY-----" if what == "private key" else b"-----BEGIN CERTIFICATE-----"
    if len(data) > MAX_CA_BYTES:
        reader.problem(node, key, f"{what} {str(full)!r} is larger than {MAX_CA_BYTES} bytes")
    elif marker not in data:
        reader.problem(
            node, key, f"{what} {str(full)!r} holds no PEM {what} ({marker.decode().strip('-')})"
        )
    else:
        return str(full)
    return None


def token_file(reader: Reader, node: Node, key: str, name: str) -> str | None:
    """The token file's absolute path, after checking it holds a usable token."""
    read = read_head(reader, node, key, name, "token file", MAX_TOKEN_BYTES)
    if read is None:
        return None
    full, data = read
    token = data.strip()
    if len(data) > MAX_TOKEN_BYTES:
        reader.problem(
            node,
            key,
            f"token file {str(full)!r} is larger than "
            f"{MAX_TOKEN_BYTES} bytes; a token is one short line",
        )
    elif not token:
        reader.problem(node, key, f"token file {str(full)!r} is empty")
    elif not all(0x21 <= byte <= 0x7E for byte in token):
        reader.problem(
            node,
            key,
            f"token file {str(full)!r}: the token must be one line of "
            "printable ASCII without spaces (it is sent in an HTTP header)",
        )
    else:
        return str(full)
    return None


def key_file(reader: Reader, node: Node, key: str, name: str) -> str | None:
    """The absolute path of an existing key file; an empty one is a problem too."""
    full = existing_file(reader, node, key, name, "key file")
    if full is not None and full.stat().st_size == 0:
        reader.problem(node, key, f"key file {str(full)!r} is empty")
    return None if full is None else str(full)


def secret_file(
    reader: Reader,
    node: Node,
    key: str,
    name: str,
    parse: Callable[[bytes], object],
    max_bytes: int,
) -> str | None:
    """The absolute path of a file holding a secret that `parse` accepts (it raises
    ValueError); the secret itself stays in the file, read again by whoever uses it."""
    read = read_head(reader, node, key, name, "secret file", max_bytes)
    if read is None:
        return None
    full, data = read
    if len(data) > max_bytes:
        reader.problem(node, key, f"secret file {str(full)!r} is larger than {max_bytes} bytes")
        return None
    try:
        parse(data)
    except ValueError as e:
        reader.problem(node, key, f"secret file {str(full)!r} {e}")
        return None
    return str(full)


def log_file(reader: Reader, node: Node, key: str, name: str) -> str | None:
    """An absolute path in an existing directory; the file itself is created when needed."""
    full = local_path(reader, name)
    if full.is_dir():
        reader.problem(node, key, f"{str(full)!r} is a directory; name a file in it")
    elif not full.parent.is_dir():
        reader.problem(node, key, f"directory {str(full.parent)!r} does not exist")
    else:
        return str(full)
    return None


def state_dir(reader: Reader, node: Node, name: str) -> str:
    """An absolute directory path; it need not exist yet (the server creates it)."""
    full = local_path(reader, name)
    if full.exists() and not full.is_dir():
        reader.problem(node, "state_dir", f"{str(full)!r} exists and is not a directory")
    return str(full)
