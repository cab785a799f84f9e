"""The `sources` section: operator lists by name, each a URL, a file, a directory or an RPZ zone
transferred from its primaries, with its format, refresh interval and download bounds."""

from __future__ import annotations

import enum
import ipaddress
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import Node

from resolver.config import files
from resolver.config.nodes import MISSING, Entries, Reader, join, line_of
from resolver.config.problems import describe
from resolver.config.transfer import TRANSFER_KEYS, TransferConfig, read_transfer
from resolver.config.values import (
    LIST_FILE_SUFFIXES,
    choice,
    dir_text,
    path_text,
    positive_duration,
    positive_size,
    strict_bool,
)
from resolver.protocol import names

DEFAULT_URL_REFRESH = 6 * 3600.0
DEFAULT_FILE_REFRESH = 10.0


class ListFormat(enum.Enum):
    AUTO = "auto"
    DOMAINS = "domains"
    HOSTS = "hosts"
    ADBLOCK = "adblock"
    RPZ = "rpz"
    REGEX = "regex"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """An operator list, named so that `blocking.lists`, groups, policies and `allow` can refer
    to it.  Exactly one of `url`, `path` (a file), `dir` (every regular file in it) or
    `transfer` (an RPZ zone from its primaries) is set; paths are absolute.  `refresh` is the
    fetch interval of a URL, or how often a file's or directory's modification time is
    checked; a transferred zone follows its SOA's refresh and retry timers instead.
    `max_shrink` and `allow_tld_rules` feed the guard every new version of the list must pass
    (`resolver.lists.guard`)."""

    name: str = ""
    url: str | None = None
    path: str | None = None
    dir: str | None = None
    format: ListFormat = ListFormat.AUTO
    refresh: float = DEFAULT_URL_REFRESH
    insecure: bool = False
    timeout: float = 30.0
    max_bytes: int = 256 << 20
    max_shrink: float = 0.5
    allow_tld_rules: bool = False
    line: int = 0
    transfer: TransferConfig | None = None  # set for an RPZ zone taken by zone transfer

    @property
    def location(self) -> str:
        """The URL, file, directory or ``xfr://primary/zone``, for messages and logs."""
        if self.transfer is not None:
            return self.transfer.location
        return self.url or self.path or self.dir or ""

    @property
    def remote(self) -> bool:
        """Fetched or transferred into a last good copy, rather than read where it lies."""
        return bool(self.url) or self.transfer is not None


_SOURCE_KEYS = (
    "url",
    "path",
    "dir",
    "format",
    "refresh",
    "insecure",
    "timeout",
    "max_bytes",
    "max_shrink",
    *TRANSFER_KEYS,
    "allow_tld_rules",
)
_SOURCE_KINDS = ("url", "path", "dir", "primaries")
_list_format = choice(ListFormat, "format")


def read_sources(
    reader: Reader, top: Entries, catalogue: frozenset[str]
) -> tuple[tuple[SourceConfig, ...], frozenset[str]]:
    """The sources, and every usable source name (even of a source with bad settings, so
    references to it are not reported as unknown on top of its own problems).

    `catalogue` holds the bundled catalogue ids, which a source may not take as its name.
    """
    sources: list[SourceConfig] = []
    found: set[str] = set()
    for name, key_node, value_node in reader.named(top, "sources", "source"):
        path = join("sources", name)
        if name in catalogue:
            reader.problem(
                key_node,
                path,
                f"{name!r} is a bundled catalogue id; give this source another name",
            )
            continue
        if name.endswith(LIST_FILE_SUFFIXES):
            reader.problem(
                key_node,
                path,
                f"{name!r} would be read as a file path where lists are named; "
                "choose a name without a .txt/.hosts/.list/.conf ending",
            )
            continue
        found.add(name)
        entries = reader.mapping(value_node, path, _SOURCE_KEYS)
        if entries is not None:
            sources.append(_read_source(reader, name, key_node, entries))
    return tuple(sources), frozenset(found)


def _read_source(reader: Reader, name: str, key_node: Node, entries: Entries) -> SourceConfig:
    path = join("sources", name)
    defaults = SourceConfig()
    kinds = [kind for kind in entries if kind in _SOURCE_KINDS]
    if not kinds:
        reader.problem(
            key_node,
            f"{path}.url",
            "required: one of url (https://...), path (a file), dir (a directory) or "
            "primaries (an RPZ zone by zone transfer)",
        )
    for extra in kinds[1:]:
        first = line_of(entries[kinds[0]][0])
        reader.problem(
            entries[extra][0],
            f"{path}.{extra}",
            f"give only one of url, path or dir ({kinds[0]} is given at line {first})"
            if "primaries" not in kinds
            else f"give only one of url, path, dir or primaries ({kinds[0]} is given at line "
            f"{first})",
        )
    kind = kinds[0] if kinds else None
    insecure = reader.value(entries, "insecure", path, strict_bool, defaults.insecure)
    location: dict[str, str | None] = dict.fromkeys(_SOURCE_KINDS)
    transfer = None
    if kind == "primaries":
        transfer = read_transfer(reader, entries, path)
    elif kind is not None:
        location[kind] = _read_location(reader, kind, entries, path, insecure)
    for name_only_for_url in ("insecure", "timeout"):
        if name_only_for_url in entries and kind in ("path", "dir"):
            reader.problem(
                entries[name_only_for_url][0],
                f"{path}.{name_only_for_url}",
                f"only used with url (this source is a {kind})"
                + ("; timeout also applies to primaries" if name_only_for_url == "timeout" else ""),
            )
    _check_transfer_keys(reader, entries, path, kind)
    refresh_default = DEFAULT_URL_REFRESH if kind == "url" else DEFAULT_FILE_REFRESH
    fmt = reader.value(entries, "format", path, _list_format, defaults.format)
    if kind == "primaries":
        if fmt not in (MISSING, ListFormat.AUTO, ListFormat.RPZ):
            reader.problem(
                entries["format"][1],
                f"{path}.format",
                "a zone transferred from primaries is an RPZ zone: use format rpz or leave it out",
            )
        fmt = ListFormat.RPZ
    refresh = reader.value(entries, "refresh", path, positive_duration, refresh_default)
    timeout = reader.value(entries, "timeout", path, positive_duration, defaults.timeout)
    max_bytes = reader.value(entries, "max_bytes", path, positive_size, defaults.max_bytes)
    shrink = reader.value(entries, "max_shrink", path, _fraction, defaults.max_shrink)
    tld_rules = reader.value(
        entries, "allow_tld_rules", path, strict_bool, defaults.allow_tld_rules
    )
    return SourceConfig(
        name=name,
        url=location["url"],
        path=location["path"],
        dir=location["dir"],
        format=defaults.format if fmt is MISSING else fmt,
        refresh=refresh_default if refresh is MISSING else refresh,
        insecure=defaults.insecure if insecure is MISSING else insecure,
        timeout=defaults.timeout if timeout is MISSING else timeout,
        max_bytes=defaults.max_bytes if max_bytes is MISSING else max_bytes,
        max_shrink=defaults.max_shrink if shrink is MISSING else shrink,
        transfer=transfer,
        allow_tld_rules=defaults.allow_tld_rules if tld_rules is MISSING else tld_rules,
        line=line_of(key_node),
    )


def _check_transfer_keys(reader: Reader, entries: Entries, path: str, kind: str | None) -> None:
    """Keys that only make sense for one kind of source."""
    if kind == "primaries":
        for name in ("refresh", "insecure"):
            if name in entries:
                why = {
                    "refresh": "the zone's SOA refresh and retry timers decide, and a NOTIFY "
                    "from a primary starts a transfer at once",
                    "insecure": "transfers are authenticated with tsig, not TLS",
                }[name]
                reader.problem(
                    entries[name][0], f"{path}.{name}", f"not used with primaries: {why}"
                )
        return
    for name in TRANSFER_KEYS[1:]:
        if name in entries and kind is not None:
            reader.problem(
                entries[name][0],
                f"{path}.{name}",
                f"only used with primaries (this source is a {kind})",
            )


def _read_location(
    reader: Reader, kind: str, entries: Entries, path: str, insecure: Any
) -> str | None:
    """The URL (form checked, never fetched) or the absolute path of the file/directory."""
    node = entries[kind][1]
    key = f"{path}.{kind}"
    if kind != "url":
        name = reader.convert(node, key, path_text if kind == "path" else dir_text)
        if name is MISSING:
            return None
        if kind == "path":
            full = files.existing_file(reader, node, key, name, "list file")
        else:
            full = files.existing_dir(reader, node, key, name)
        return None if full is None else str(full)
    url = reader.convert(node, key, _list_url)
    if url is MISSING:
        return None
    plain = urlsplit(url).scheme.lower() == "http"
    if plain and insecure is False:
        reader.problem(
            node,
            key,
            "plain http:// can be altered on the way (a forged list could lift a ban); "
            "use https://, or set insecure: true to accept http:// anyway",
        )
    elif not plain and insecure is True:
        reader.problem(
            entries["insecure"][0],
            f"{path}.insecure",
            "insecure: true only permits plain http:// URLs; https:// certificates are "
            "always verified, so remove it",
        )
    checked: str = url
    return checked


_URL_HINT = "a URL such as https://example.org/list.txt"


def _list_url(raw: object) -> str:
    """An http(s) URL with a host; whether plain http is allowed depends on `insecure`."""
    if not isinstance(raw, str):
        raise ValueError(f"expected {_URL_HINT}, got {describe(raw)}")
    text = raw.strip()
    if not text:
        raise ValueError("empty URL")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError("a URL cannot contain spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if "://" not in text or not scheme:
        raise ValueError(f"{text!r} is not a URL (expected {_URL_HINT}); use path: for a file")
    if scheme not in ("https", "http"):
        raise ValueError(
            f"unsupported scheme {parts.scheme!r}: use https:// (or http:// with insecure: true)"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"{text!r} has no host")
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is not allowed")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            names.normalise(host)
        except names.BadName as e:
            raise ValueError(f"{text!r}: bad host {e}") from None
    return text


def _fraction(raw: object) -> float:
    """A number from 0 to 1, or a percentage such as `50%`."""
    hint = "a fraction from 0 to 1 such as 0.5, or a percentage such as 50%"
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected {hint}, got {raw!r}") from None
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected {hint}, got {describe(raw)}")
    else:
        value = float(raw)
    if math.isnan(value) or not 0 <= value <= 1:
        raise ValueError(f"must be from 0 to 1 (0% to 100%), got {raw}")
    return value
