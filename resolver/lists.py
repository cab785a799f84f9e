"""Operator list files and building the blocking matcher from lists and catalogue entries.

A list file is one domain per line, or hosts-file lines (``0.0.0.0 a.com b.com``), with ``#``
comments: the formats operators already have. Parsing is pure (``parse_domain_list``); bad lines
are reported with their line number and, up to a cap, skipped, but a list with more bad lines
than the cap is refused outright, because a broken or mis-downloaded list must not load
half-silently. ``build_blocking`` is the thin shell that reads files and fills a
``DomainMatcher``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.catalogue import ListError, catalogue_ids, load_entry
from resolver.matcher import BlockRule, DomainMatcher
from resolver.names import BadName, normalise

__all__ = ["BlockingSet", "ListError", "ParsedList", "build_blocking", "parse_domain_list"]

# Addresses that mean "block" in a hosts file; any other address maps a name somewhere real.
_SINK_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})

# Standard entries of a system hosts file, kept in many published hosts-format lists.
_HOSTS_BOILERPLATE = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)


@dataclass(frozen=True, slots=True)
class ParsedList:
    """A parsed list file: normalised domains in file order, plus what was wrong with it.

    ``errors`` holds the first ``max_errors`` problems as ``source:LINE: message``;
    ``error_count`` counts all of them; ``duplicates`` counts repeated domains (not errors).
    """

    name: str
    domains: tuple[str, ...]
    errors: tuple[str, ...]
    error_count: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class BlockingSet:
    """The matcher built from all configured lists, and what each list contributed.

    ``sizes`` maps each list name to the number of patterns it put into the matcher (a pattern
    already added by an earlier list counts for the earlier one). ``warnings`` carries the bad
    lines that were skipped because their list stayed under the cap, for the startup log.
    """

    matcher: DomainMatcher
    sizes: dict[str, int]
    warnings: tuple[str, ...] = ()


def _is_address(text: str) -> bool:
    """True for an IPv4/IPv6 literal; the cheap pre-check keeps million-line lists fast."""
    if ":" not in text and not text.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _show(text: str) -> str:
    return ascii(text if len(text) <= 80 else text[:80] + "...")


def parse_domain_list(text: str, source: str, name: str, *, max_errors: int = 100) -> ParsedList:
    """Parse a list file's text; raises ``ListError`` when more than ``max_errors`` lines are bad.

    Accepted per line: a domain (wildcards as in the matcher, e.g. ``*.example.com``); a hosts
    line whose address is 0.0.0.0, 127.0.0.1, :: or ::1 followed by one or more names (the
    usual ``localhost``-style entries are skipped); blank lines; ``#`` comments, whole-line or
    trailing. Lines are numbered from 1, split on ``\\n`` only, as editors count them.
    """
    domains: list[str] = []
    seen: set[bytes] = set()
    errors: list[str] = []
    error_count = 0
    duplicates = 0

    def bad(line_no: int, message: str) -> None:
        nonlocal error_count
        error_count += 1
        if len(errors) < max_errors:
            errors.append(f"{source}:{line_no}: {message}")

    def accept(line_no: int, domain: str, *, allow_wildcard: bool) -> None:
        nonlocal duplicates
        try:
            wire, canonical = normalise(domain, allow_wildcard=allow_wildcard)
        except BadName as exc:
            bad(line_no, str(exc))
            return
        if wire == b"\x00":
            bad(line_no, "the root '.' cannot be blocked")
            return
        if wire in seen:
            duplicates += 1
            return
        seen.add(wire)
        domains.append(canonical)

    if text.startswith("\ufeff"):
        text = text[1:]
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if fields[0] in _SINK_ADDRESSES or _is_address(fields[0]):
            if len(fields) == 1:
                bad(line_no, f"{_show(fields[0])} is an address, not a domain name")
                continue
            if all(host.lower() in _HOSTS_BOILERPLATE for host in fields[1:]):
                continue
            if fields[0] not in _SINK_ADDRESSES:
                bad(
                    line_no,
                    f"hosts line maps to {_show(fields[0])}; only 0.0.0.0, 127.0.0.1, :: and ::1 "
                    "mean 'block'",
                )
                continue
            for host in fields[1:]:
                if host.lower() in _HOSTS_BOILERPLATE:
                    continue
                if _is_address(host):
                    bad(line_no, f"{_show(host)} is an address, not a domain name")
                    continue
                accept(line_no, host, allow_wildcard=False)
            continue
        if len(fields) > 1:
            bad(line_no, f"expected one domain per line, got {_show(line)}")
            continue
        accept(line_no, fields[0], allow_wildcard=True)

    if error_count > max_errors:
        shown = f"first {len(errors)} shown" if errors else "none shown"
        raise ListError(
            [
                *errors,
                f"{source}: {error_count} invalid lines, more than the allowed {max_errors} "
                f"({shown}); refusing to load this list",
            ]
        )
    return ParsedList(
        name=name,
        domains=tuple(domains),
        errors=tuple(errors),
        error_count=error_count,
        duplicates=duplicates,
    )


def _read_list(path: Path) -> str:
    """Read a list file as UTF-8; undecodable bytes become U+FFFD and then fail as bad lines."""
    return path.read_bytes().decode("utf-8", errors="replace")


def build_blocking(lists: Sequence[str], *, max_bad_lines: int = 100) -> BlockingSet:
    """Build the matcher from catalogue ids and list file paths, in precedence order.

    An item without a ``/`` that names a bundled catalogue entry is that entry (its rules keep
    their per-rule answer overrides); anything else is a path to a local list file whose name
    is the file stem. List names appear in audit logs, so two lists may not share one. All
    problems from all lists are collected and raised together as one ``ListError``.
    """
    matcher = DomainMatcher()
    sizes: dict[str, int] = {}
    warnings: list[str] = []
    problems: list[str] = []
    bundled: frozenset[str] | None = None
    for item in lists:
        if bundled is None:
            bundled = catalogue_ids()
        if "/" not in item and item in bundled:
            name = item
            if name in sizes:
                problems.append(f"{item}: list {name!r} is configured twice")
                continue
            try:
                entry = load_entry(item)
            except ListError as exc:
                problems.extend(exc.problems)
                continue
            before = len(matcher)
            for rule in entry.rules:
                matcher.add(rule.domain, BlockRule(item, rule.domain, rule.answer))
            sizes[name] = len(matcher) - before
            continue
        path = Path(item)
        name = path.stem
        if name in sizes:
            problems.append(f"{item}: list name {name!r} (the file stem) is already in use")
            continue
        try:
            text = _read_list(path)
        except OSError as exc:
            known = ", ".join(sorted(bundled)) or "(none)"
            problems.append(
                f"{item}: cannot read list file ({exc.strerror or exc}); "
                f"bundled catalogue entries are: {known}"
            )
            continue
        try:
            parsed = parse_domain_list(text, item, name, max_errors=max_bad_lines)
        except ListError as exc:
            problems.extend(exc.problems)
            continue
        warnings.extend(parsed.errors)
        before = len(matcher)
        for domain in parsed.domains:
            matcher.add(domain, BlockRule(name, domain))
        sizes[name] = len(matcher) - before
    if problems:
        raise ListError(problems)
    return BlockingSet(matcher=matcher, sizes=sizes, warnings=tuple(warnings))
