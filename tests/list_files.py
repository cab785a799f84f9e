"""Helpers for the list tests: parse text, read names back, rewrite a list file."""

from __future__ import annotations

import os
from pathlib import Path

from resolver.lists.formats import SUBTREE, ParsedRules, parse_rules


def names_of(parsed: ParsedRules) -> dict[str, int]:
    """Every listed name with its flags (plain names are SUBTREE), as text."""
    out = {name.decode(): SUBTREE for name in parsed.plain}
    for name, flags in parsed.flagged.items():
        out[name.decode()] = out.get(name.decode(), 0) | flags
    return out


def parse(text: str, fmt: str = "domains", **kwargs: object) -> ParsedRules:
    return parse_rules(text.encode(), "f.txt", fmt, **kwargs)  # type: ignore[arg-type]


def rewrite(path: Path, data: bytes | str) -> None:
    """Rewrite a list file and move its mtime on, so the change is seen even within one tick."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    stamp = path.stat().st_mtime + 2
    os.utime(path, (stamp, stamp))
