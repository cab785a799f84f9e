"""Helpers for the list-parser tests (`tests/lists/`): parse text, read names back."""

from __future__ import annotations

from resolver.lists.formats import SUBTREE, ParsedRules, parse_rules


def names_of(parsed: ParsedRules) -> dict[str, int]:
    """Every listed name with its flags (plain names are SUBTREE), as text."""
    out = {name.decode(): SUBTREE for name in parsed.plain}
    for name, flags in parsed.flagged.items():
        out[name.decode()] = out.get(name.decode(), 0) | flags
    return out


def parse(text: str, fmt: str = "domains", **kwargs: object) -> ParsedRules:
    return parse_rules(text.encode(), "f.txt", fmt, **kwargs)  # type: ignore[arg-type]
