"""Blocklist formats: plain domains, hosts files, Adblock/AdGuard DNS rules, RPZ zones, regexes.

Operators bring the lists they already have, so every common format parses into one shape,
`ParsedRules` (`resolver.lists.rules`): canonical names with what each blocks or allows, label-
wildcard rules (`v*.x.com`), regex rules, and a report (accepted, duplicates, skipped by reason,
invalid lines as ``source:LINE: message``). RPZ zone files have their own parser
(`resolver.lists.rpz`), reached through `parse_rules` like every other format, whose names this
module re-exports for its callers. Invalid lines never abort a parse; `broken` decides, from the
error ratio, whether the list as a whole must be refused (an HTML error page is not a list).

This is the one parser of list lines: files, directories and feeds all reach it through
`resolver.lists.building.parse_job` (catalogue entries are YAML, checked by `catalogue`). Lists
run to millions of lines, so the common line shapes (``name``, ``0.0.0.0 name``, ``||name^``)
are recognised for the whole buffer at once with C-level byte operations, and only the lines
that fail that check go through the per-line parser, which also writes the error messages; both
paths give the same result for every line. With numpy, a big file's accepted names are not even
made into a dict: they stay in the buffer, as a `resolver.lists.nametable.NameTable`. Pure: bytes
in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable
from re import _parser as _sre_parse  # type: ignore[attr-defined]  # the parser `re` compiles with
from typing import Any

from resolver.lists.nametable import build_table, numpy_module
from resolver.lists.rpz import parse_rpz, rpz_network
from resolver.lists.rules import (
    ANSWER_CODES,
    CLIENT_IP,
    DROP,
    FLAG_ALLOW_BELOW,
    FLAG_ALLOW_SELF,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    LOCAL,
    MAX_ERROR_RATIO,
    NOT_APPLICABLE,
    PASSTHRU,
    RESPONSE_IP,
    RPZ_ANSWERS,
    SUBTREE,
    TCP_ONLY,
    GlobRule,
    IpRule,
    ParsedRules,
    Record,
    RegexRule,
    add_pattern,
    answer_of,
    broken,
    decode_line,
    is_address,
    list_name,
    show,
)
from resolver.protocol.names import BadName

__all__ = [
    "ANSWER_CODES",
    "CLIENT_IP",
    "DROP",
    "FLAG_ALLOW_BELOW",
    "FLAG_ALLOW_SELF",
    "FLAG_BELOW",
    "FLAG_SELF",
    "FLAG_WILD",
    "FORMATS",
    "LOCAL",
    "MAX_ERROR_RATIO",
    "MAX_REGEX_LENGTH",
    "NOT_APPLICABLE",
    "PASSTHRU",
    "RESPONSE_IP",
    "RPZ_ANSWERS",
    "SUBTREE",
    "TCP_ONLY",
    "GlobRule",
    "IpRule",
    "ParsedRules",
    "Record",
    "RegexRule",
    "answer_of",
    "broken",
    "check_regex",
    "detect_format",
    "parse_rules",
    "rpz_network",
]

FORMATS = ("domains", "hosts", "adblock", "rpz", "regex")
"""Format names as in the config's `sources.*.format` (plus `auto`)."""

MAX_REGEX_LENGTH = 256
BULK_TABLE_FROM = 50_000
"""Lines from which a file's clean names go to a `NameTable` (with numpy) instead of a dict:
below it, importing numpy costs more than the table saves."""
_SHAPE_NUMPY_FROM = 1 << 20
"""Bytes from which `_shape` checks a buffer with numpy, not with bytes searches."""
_BREAK_MARKS = bytes(1 if c == 0x2E else 2 if c == 0x0A else 0 for c in range(256))
"""`_shape`'s translation: a dot is 1, a newline 2, anything else 0."""
_DETECT_LINES = 2000

# Addresses that mean "block" in a hosts file; any other address maps a name somewhere real.
SINK_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})
# Standard entries of a system hosts file, kept in many published hosts-format lists.
HOSTS_BOILERPLATE = frozenset(
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
_BOILERPLATE_BYTES = frozenset(name.encode() for name in HOSTS_BOILERPLATE)

# The bulk check: bytes a clean name line may hold, and what makes a line need a closer look.
_NAME_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789-_.\n"
_LABEL_BYTES = _NAME_BYTES.translate(None, b".\n")
_LABEL_MARKS = bytes(c if c in b".\n" else 0x78 for c in range(256))  # label bytes -> "x"
_LINE_MARKS = bytes(c if c == 0x0A else 0x78 for c in range(256))  # line bytes -> "x"
_DOTTED_QUAD = re.compile(rb"\n\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\n")
# A line that is one clean name: not an IPv4 literal, at most 253 octets, labels of 1-63.
_GOOD_LINE = (
    rb"(?:(?!\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\n)(?=[^\n]{1,253}\n)"
    rb"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63})?"
)
# Starts with a literal newline so the search skips from line to line at C speed.
_BAD_LINE = re.compile(rb"\n(?!" + _GOOD_LINE + rb"\n)[^\n]*")
_HASH_COMMENT = re.compile(rb"#[^\n]*")
_BANG_COMMENT = re.compile(rb"(?<=\n)![^\n]*")
_TRAILING_BLANK = re.compile(rb"[ \t]+\n")
# ----- format detection -----------------------------------------------------------------------

_RPZ_HINT = re.compile(
    r"^(\$ORIGIN|\$TTL)\b|\s(SOA|CNAME)\s|\s(CNAME|cname)\s+(\.|\*\.|rpz-)|\sIN\s+(SOA|NS|CNAME|A)\s",
    re.I,
)


def detect_format(data: bytes) -> tuple[str, str]:
    """Guess the format from the first rule lines; returns (format, why) for the report."""
    seen = 0
    votes = dict.fromkeys(FORMATS, 0)
    first: dict[str, str] = {}
    for line_no, raw in enumerate(data[: 1 << 20].split(b"\n"), start=1):
        if seen >= _DETECT_LINES:
            break
        line = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
        if not line:
            continue
        kind = _line_kind(line)
        if kind is None:
            continue
        seen += 1
        votes[kind] += 1
        first.setdefault(kind, f"line {line_no}: {line[:60]!r}")
    if votes["rpz"]:
        fmt = "rpz"
    elif votes["adblock"]:
        fmt = "adblock"
    elif votes["regex"] * 2 > seen:
        fmt = "regex"
    elif votes["hosts"]:
        fmt = "hosts"
    else:
        fmt = "domains"
    if not seen:
        return fmt, "no rule lines found"
    return (
        fmt,
        f"{votes[fmt]} of the first {seen} rule lines look like {fmt}, first at {first[fmt]}",
    )


def _line_kind(line: str) -> str | None:
    """What one line looks like, or None for a comment or a line that says nothing."""
    if line.startswith(("#", ";")) and not line.startswith(("##", "#@#")):
        return None
    if line.startswith("[") and line.endswith("]"):
        return "adblock"
    if line.startswith("!"):
        return "adblock"
    if _RPZ_HINT.search(line):
        return "rpz"
    if line.startswith(("||", "@@", "|")) or line.endswith("^") or "##" in line or "$" in line:
        return "adblock"
    if len(line) > 2 and line.startswith("/") and line.endswith("/"):
        return "regex"
    first = line.split(None, 1)[0]
    if first in SINK_ADDRESSES or is_address(first):
        return "hosts"
    return "domains"


# ----- regex rules ------------------------------------------------------------------------------

_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}
_BACKREFS = {"GROUPREF", "GROUPREF_EXISTS"}


def check_regex(pattern: str) -> str:
    """Why `pattern` must not run on the query path (empty string: it may).

    Python's regex engine backtracks. A nested unbounded quantifier (``(a+)+``), an
    alternation under one (``(a|ab)*``) or a backreference can take exponential time on a
    crafted query name, and even a row of plain ones (``.*a.*b.*c``) is polynomial: each
    unbounded quantifier multiplies the work by the name's length (up to 253), and an
    unanchored search adds one more factor. So these are refused, as are patterns with more
    than one unbounded quantifier (two when anchored with ``^``) and long patterns.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"regex is {len(pattern)} characters (max {MAX_REGEX_LENGTH})"
    try:
        tree = _sre_parse.parse(pattern)
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"invalid regex: {exc}"
    unbounded: list[int] = []
    problem = _walk_regex(tree, unbounded, under_repeat=False)
    if problem:
        return problem
    items = list(tree)
    anchored = bool(items) and str(items[0][0]) == "AT" and str(items[0][1]) == "AT_BEGINNING"
    allowed = 2 if anchored else 1
    if len(unbounded) > allowed:
        return (
            f"{len(unbounded)} unbounded quantifiers (*, +, {{n,}}); at most {allowed} "
            f"{'with' if anchored else 'without'} a leading '^', or matching can take seconds"
        )
    return ""


def _walk_regex(
    items: Iterable[tuple[object, object]], unbounded: list[int], *, under_repeat: bool
) -> str | None:
    for op, arg in items:
        name = str(op)
        problem = None
        if name in _BACKREFS:
            return "backreferences are not allowed (they can take exponential time)"
        if name in _REPEATS:
            _low, high, body = arg  # type: ignore[misc]
            endless = high == _sre_parse.MAXREPEAT or high > 100
            if endless and under_repeat:
                return "nested quantifiers such as (a+)+ are not allowed (exponential time)"
            if endless:
                unbounded.append(1)
            problem = _walk_regex(body, unbounded, under_repeat=under_repeat or endless)
        elif name == "SUBPATTERN":
            problem = _walk_regex(arg[-1], unbounded, under_repeat=under_repeat)  # type: ignore[index]
        elif name == "ATOMIC_GROUP":
            problem = _walk_regex(arg, unbounded, under_repeat=under_repeat)  # type: ignore[arg-type]
        elif name == "BRANCH":
            if under_repeat:
                return "alternation inside a repeated group is not allowed (it can backtrack)"
            for branch in arg[1]:  # type: ignore[index]
                problem = problem or _walk_regex(branch, unbounded, under_repeat=False)
        elif name in ("ASSERT", "ASSERT_NOT"):
            problem = _walk_regex(arg[1], unbounded, under_repeat=under_repeat)  # type: ignore[index]
        if problem:
            return problem
    return None


def _add_regex(parsed: ParsedRules, line_no: int, pattern: str, *, allow: bool) -> None:
    problem = check_regex(pattern)
    if problem:
        parsed.bad(line_no, f"{show(pattern)}: {problem}")
        return
    if any(rule.pattern == pattern and rule.allow == allow for rule in parsed.regexes):
        parsed.duplicates += 1
        return
    parsed.regexes.append(RegexRule(pattern, allow, line_no))


# ----- per-line parsers (the slow path, which also explains every error) ------------------------


def _domains_line(parsed: ParsedRules, line_no: int, raw: str) -> None:
    """A domains/hosts line: a name (wildcards allowed) or a hosts line with a sink address."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return
    parsed.rule_lines += 1
    _hosts_fields(parsed, line_no, line.split())


def _hosts_fields(parsed: ParsedRules, line_no: int, fields: list[str]) -> None:
    if fields[0] in SINK_ADDRESSES or is_address(fields[0]):
        if len(fields) == 1:
            parsed.bad(line_no, f"{show(fields[0])} is an address, not a domain name")
            return
        if all(host.lower() in HOSTS_BOILERPLATE for host in fields[1:]):
            return
        if fields[0] not in SINK_ADDRESSES:
            parsed.bad(
                line_no,
                f"hosts line maps to {show(fields[0])}; only 0.0.0.0, 127.0.0.1, :: and ::1 "
                "mean 'block'",
            )
            return
        for host in fields[1:]:
            if host.lower() in HOSTS_BOILERPLATE:
                continue
            if is_address(host):
                parsed.bad(line_no, f"{show(host)} is an address, not a domain name")
                continue
            try:
                _, name = list_name(host, allow_wildcard=False)
            except BadName as exc:
                parsed.bad(line_no, str(exc))
                continue
            parsed.add(name, SUBTREE)
        return
    if len(fields) > 1:
        parsed.bad(line_no, f"expected one domain per line, got {show(' '.join(fields))}")
        return
    add_pattern(parsed, line_no, fields[0], allow=False, answer=None, exact=False)


_ADBLOCK_COSMETIC = ("##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@%#", "$$", "$@$")
_ADBLOCK_SUPPORTED_MODIFIERS = frozenset({"important"})
_ADBLOCK_RULE = re.compile(r"(\|\|?)?([^|^/$]+)(\^)?\|?(?:\$(.*))?")


def _adblock_line(parsed: ParsedRules, line_no: int, raw: str) -> None:
    """An Adblock/AdGuard DNS rule: ``||x^``, ``|x^`` (x alone), ``@@`` exceptions, ``/re/``,
    hosts lines and bare names; cosmetic rules and unsupported modifiers are skipped and
    counted, because they mean something to a browser, nothing to DNS."""
    line = raw.strip()
    if not line or line.startswith("!") or (line.startswith("[") and line.endswith("]")):
        return
    if any(marker in line for marker in _ADBLOCK_COSMETIC):
        parsed.skip("cosmetic rule")
        return
    if line.startswith("#"):
        return
    parsed.rule_lines += 1
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    if len(body) > 2 and body.startswith("/") and "/" in body[1:]:
        end = body.rindex("/")
        modifiers = body[end + 1 :]
        if modifiers and not (modifiers.startswith("$") and _modifiers_ok(parsed, modifiers)):
            if not modifiers.startswith("$"):
                parsed.bad(line_no, f"{show(line)}: text after the closing '/' of a regex")
            return
        _add_regex(parsed, line_no, body[1:end], allow=allow)
        return
    if (" " in body or "\t" in body) and not allow:
        _hosts_fields(parsed, line_no, body.split())
        return
    match = _ADBLOCK_RULE.fullmatch(body)
    if match is None:
        if "/" in body:
            parsed.skip("URL rule (path or scheme)")
            return
        parsed.bad(line_no, f"{show(line)}: not an adblock DNS rule")
        return
    anchor, name, _caret, modifiers = match.groups()
    if modifiers is not None and not _modifiers_ok(parsed, "$" + modifiers):
        return
    if name.startswith(".") or name.endswith(".*"):
        parsed.skip("partial-name rule")
        return
    exact = anchor == "|"
    add_pattern(parsed, line_no, name, allow=allow, answer=None, exact=exact)


def _modifiers_ok(parsed: ParsedRules, text: str) -> bool:
    """True when every ``$modifier`` is one DNS can honour; else the rule is skipped."""
    names = [item.split("=", 1)[0].strip().lstrip("~") for item in text[1:].split(",")]
    unsupported = [name for name in names if name not in _ADBLOCK_SUPPORTED_MODIFIERS]
    if unsupported:
        parsed.skip(f"modifier ${unsupported[0]}")
        return False
    return True


def _regex_line(parsed: ParsedRules, line_no: int, raw: str) -> None:
    """One regex per line, with or without the surrounding slashes; ``#`` starts a comment
    only at the start of a line (a pattern may contain one)."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return
    parsed.rule_lines += 1
    allow = line.startswith("@@")
    if allow:
        line = line[2:]
    if len(line) > 2 and line.startswith("/") and line.endswith("/"):
        line = line[1:-1]
    _add_regex(parsed, line_no, line, allow=allow)


# ----- the whole buffer -----------------------------------------------------------------------

LineParser = Callable[[ParsedRules, int, str], None]


def parse_rules(
    data: bytes,
    source: str,
    fmt: str = "auto",
    *,
    max_errors: int = 100,
    max_regex: int | None = None,
    into: ParsedRules | None = None,
) -> ParsedRules:
    """Parse a list file's bytes in format `fmt` (``auto``: detected, and the guess reported).

    Never raises for bad content: every invalid line is counted, the first `max_errors` are
    kept as ``source:LINE: message`` (lines numbered from 1, split on ``\\n`` only, as editors
    count them); `broken` decides whether the list is usable. Regex rules beyond `max_regex`
    are invalid lines (each costs time on every query). With `into`, the rules are added to
    an earlier result (the files of a directory make one list); its report then covers all.
    """
    detected = ""
    if fmt == "auto":
        fmt, detected = detect_format(data)
    if into is None:
        parsed = ParsedRules(source=source, format=fmt, detected=detected, max_errors=max_errors)
    else:
        parsed = into
        parsed.source = source
        if parsed.format != fmt:
            parsed.format = "mixed"
        if detected:
            parsed.detected = detected
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if fmt == "rpz":
        parse_rpz(parsed, data)
    elif fmt == "regex":
        _parse_per_line(parsed, data, _regex_line)
    elif fmt == "adblock":
        _parse_bulk(parsed, data, _adblock_line, adblock=True)
    elif fmt in ("domains", "hosts"):
        _parse_bulk(parsed, data, _domains_line, adblock=False)
    else:
        raise ValueError(f"unknown list format {fmt!r}")
    if max_regex is not None and len(parsed.regexes) > max_regex:
        for rule in parsed.regexes[max_regex:]:
            parsed.bad(
                rule.line, f"regex rules over the limit of {max_regex} (limits.max_regex_rules)"
            )
            parsed.over_limit += 1
        del parsed.regexes[max_regex:]
    return parsed


def _parse_per_line(parsed: ParsedRules, data: bytes, parse_line: LineParser) -> None:
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        parse_line(parsed, line_no, decode_line(raw))



def _parse_bulk(parsed: ParsedRules, data: bytes, parse_line: LineParser, *, adblock: bool) -> None:
    """Accept every clean ``name`` line of the buffer at once; hand the rest to `parse_line`.

    The buffer is lowercased and the common decorations removed (hosts sink prefixes, comments,
    trailing blanks and dots; for adblock ``||`` and ``^``) without changing the line count;
    lines that are then one clean name are accepted in bulk, all others are parsed one by one
    from their original text. Bulk acceptance is only a shortcut: it takes a line exactly when
    `parse_line` would accept it as that name, so the result never depends on the path taken.
    """
    original = data
    low = b"\n" + data.lower()
    if not low.endswith(b"\n"):
        low += b"\n"
    if b"\r" in low and b"\r\n" in low:  # one byte first: memchr, many times faster
        low = low.replace(b"\r\n", b"\n")
    hosts = False
    if adblock:
        if b"!" in low and b"\n!" in low:
            low = _BANG_COMMENT.sub(b"", low)
        # `||`, `^` and `||^` alone are rules without a name (invalid), not blank lines.
        if b"|" in low and b"\n||" in low:
            while b"\n||\n" in low:
                low = low.replace(b"\n||\n", b"\n\0\n")
            low = low.replace(b"\n||", b"\n")
        if b"^" in low and b"^\n" in low:
            while b"\n^\n" in low:
                low = low.replace(b"\n^\n", b"\n\0\n")
            low = low.replace(b"^\n", b"\n")
    else:
        if b"#" in low:
            low = _HASH_COMMENT.sub(b"", low)
        if (b" " in low and b" \n" in low) or (b"\t" in low and b"\t\n" in low):
            low = _TRAILING_BLANK.sub(b"\n", low)
        for prefix in (b"\n0.0.0.0 ", b"\n127.0.0.1 "):
            if prefix in low:
                low = low.replace(prefix, b"\n")
                hosts = True
    shaped = _shape(low)
    newlines = None
    if shaped is not None:
        shape, newlines = shaped
    else:
        while b"\n.\n" in low:  # a lone "." (the root) must reach the per-line parser
            low = low.replace(b"\n.\n", b"\n\0\n")
        if b".\n" in low:
            low = low.replace(b".\n", b"\n")
        shape = (
            b".." not in low
            and b"\n." not in low
            and b".\n" not in low
            and b"x" * 64 not in low.translate(_LABEL_MARKS)
            and b"x" * 254 not in low.translate(_LINE_MARKS)
        )
    clean = (
        shape and not low.translate(None, _NAME_BYTES) and _DOTTED_QUAD.search(low) is None
    )
    lines = low.split(b"\n")[1:-1]  # the newlines added above
    bad_numbers: list[int] = []
    if not clean:
        line_no = 0
        pos = 0
        last = len(low) - 1
        for match in _BAD_LINE.finditer(low):
            if match.start() == last:
                break
            line_no += low.count(b"\n", pos, match.start() + 1)
            pos = match.start() + 1
            bad_numbers.append(line_no)
    blank = lines.count(b"")
    if hosts:
        # `0.0.0.0 localhost` lost its address above and now reads like a bare `localhost`
        # line, which is a rule where the hosts line is not: the line parser tells them apart.
        bad = {lines[number - 1] for number in bad_numbers}
        for name in _BOILERPLATE_BYTES.difference(bad):
            if b"\n" + name + b"\n" in low:
                bad_numbers.extend(_line_numbers(lines, name))
        bad_numbers.sort()
    good_lines = len(lines) - blank - len(bad_numbers)
    parsed.rule_lines += good_lines
    first = not parsed.plain and not parsed.flagged and parsed.bulk is None
    if first and len(lines) >= BULK_TABLE_FROM and numpy_module() is not None:
        table = build_table(low, lines, bad_numbers, newlines)
        parsed.bulk = table
        parsed.duplicates += good_lines - len(table)
        parsed.dotless.update(_dotless(low, lines, None, set(bad_numbers)))
        if bad_numbers:
            _parse_lines(parsed, original, bad_numbers, parse_line)
        return
    # A dict, not a set: file order is memory order, which makes every later pass over the
    # names (join, hash) several times faster than a set's scattered order.
    good = dict.fromkeys(lines)
    good.pop(b"", None)
    for number in bad_numbers:
        good.pop(lines[number - 1], None)
    parsed.dotless.update(_dotless(low, lines, good))
    parsed.duplicates += good_lines - len(good)
    if first:
        parsed.plain = good
    else:  # a later file of a directory: merge (names already flagged one by one, few)
        parsed.plain_names()
        for name in good.keys() & parsed.flagged.keys():
            parsed.add(name, SUBTREE)
            del good[name]
        parsed.duplicates += len(good.keys() & parsed.plain.keys())
        parsed.plain.update(good)
    if bad_numbers:
        _parse_lines(parsed, original, bad_numbers, parse_line)


def _shape(low: bytes) -> tuple[bool, Any] | None:
    """For a big buffer, with numpy: when no line has a dot next to a newline or another dot
    (nothing for the root and trailing-dot rewrites to do), whether every label has at most
    63 octets and every line at most 253, and where the newlines are (a numpy array); else
    None (the caller checks with bytes searches, each a pass over the buffer). `low` starts
    and ends with a newline."""
    np = numpy_module() if len(low) >= _SHAPE_NUMPY_FROM else None
    if np is None:
        return None
    marks = np.frombuffer(low.translate(_BREAK_MARKS), dtype=np.uint8)
    breaks = np.flatnonzero(marks)
    dotted = marks[breaks] == 1
    gaps = np.diff(breaks)
    if ((gaps == 1) & (dotted[1:] | dotted[:-1])).any():
        return None
    newlines = breaks[~dotted]
    good = int(gaps.max(initial=0)) <= 64 and int(np.diff(newlines).max(initial=0)) <= 254
    return good, newlines


def _parse_lines(
    parsed: ParsedRules, data: bytes, numbers: list[int], parse_line: LineParser
) -> None:
    """The lines numbered `numbers` (ascending, from 1) of `data`, one by one."""
    raw_lines = data.split(b"\n", numbers[-1])  # split no further than needed
    for number in numbers:
        parse_line(parsed, number, decode_line(raw_lines[number - 1]))


def _dotless(
    low: bytes, lines: list[bytes], good: dict[bytes, None] | None, skip: Container[int] = ()
) -> list[bytes]:
    """The names of `good` (None: of every non-blank line not numbered in `skip`) without a
    dot, found at C speed: with every label byte deleted from `low`, such a line (like a blank
    one) leaves two newlines side by side."""
    skeleton = low.translate(None, _LABEL_BYTES)
    found: list[bytes] = []
    pos = skeleton.find(b"\n\n")
    line, counted = 0, -1  # `line` newlines up to `counted`; lines[line - 1] follows the last
    while pos >= 0:
        line += skeleton.count(b"\n", counted + 1, pos + 1)
        counted = pos
        name = lines[line - 1]
        if name and (name in good if good is not None else line not in skip):
            found.append(name)
        pos = skeleton.find(b"\n\n", pos + 1)
    return found


def _line_numbers(lines: list[bytes], text: bytes) -> list[int]:
    """The numbers (from 1) of the lines equal to `text`, found at C speed."""
    numbers: list[int] = []
    index = -1
    while True:
        try:
            index = lines.index(text, index + 1)
        except ValueError:
            return numbers
        numbers.append(index + 1)
