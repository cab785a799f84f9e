"""Blocklist formats: plain domains, hosts files, Adblock/AdGuard DNS rules, RPZ zones, regexes.

Operators bring the lists they already have, so every common format parses into one shape,
`ParsedRules`: canonical names with what each blocks or allows (`FLAG_*` bits), label-wildcard
rules (`v*.x.com`), regex rules, and a report (accepted, duplicates, skipped by reason, invalid
lines as ``source:LINE: message``). Invalid lines never abort a parse; `broken` decides, from the
error ratio, whether the list as a whole must be refused (an HTML error page is not a list).

This is the one parser of list lines: files, directories and feeds all reach it through
`resolver.lists.compiled.parse_job` (catalogue entries are YAML, checked by `catalogue`). Lists
run to millions of lines, so the common line shapes (``name``, ``0.0.0.0 name``, ``||name^``)
are recognised for the whole buffer at once with C-level byte operations, and only the lines
that fail that check go through the per-line parser, which also writes the error messages; both
paths give the same result for every line. Pure: bytes in, values out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from re import _parser as _sre_parse  # type: ignore[attr-defined]  # the parser `re` compiles with
from typing import Final

from resolver.protocol.names import BadName, normalise

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

FLAG_SELF = 0x01  # blocks the name itself
FLAG_BELOW = 0x02  # blocks every name below it
FLAG_WILD = 0x04  # FLAG_BELOW was written as `*.name` (reported as such)
FLAG_ALLOW_SELF = 0x08  # allows the name itself
FLAG_ALLOW_BELOW = 0x10  # allows every name below it
SUBTREE = FLAG_SELF | FLAG_BELOW
_ANSWER_SHIFT = 5
_ANSWER_MASK = 0x07 << _ANSWER_SHIFT
ANSWER_CODES: dict[str | None, int] = {
    None: 0,
    "nxdomain": 1,
    "nodata": 2,
    "null_ip": 3,
    "refused": 4,
    "drop": 5,  # RPZ actions with answers of their own (`RPZ_ANSWERS`)
    "tcp_only": 6,
    "local": 7,
}
_ANSWERS = {code: answer for answer, code in ANSWER_CODES.items()}

MAX_ERROR_RATIO = 0.05
"""More invalid lines than this share of the list's rule lines (and more than the absolute
`max_bad_lines`) marks a list broken: a truncated download or an error page, not a list."""

MAX_REGEX_LENGTH = 256
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


@dataclass(frozen=True, slots=True)
class GlobRule:
    """A rule with a `*` inside its first label (``v*.x.com``), matched like the catalogue's."""

    pattern: str
    allow: bool
    answer: str | None
    line: int


@dataclass(frozen=True, slots=True)
class RegexRule:
    """A ``/regex/`` rule, searched in the query name as text (lowercase, no final dot)."""

    pattern: str
    allow: bool
    line: int


@dataclass(slots=True)
class ParsedRules:
    """One parsed list: its rules and the report an operator reads.

    ``plain`` holds the names that block themselves and everything below, with no per-rule
    answer (nearly every entry of nearly every list); ``flagged`` holds the other names with
    their ``FLAG_*`` bits and answer code. ``rule_lines`` counts lines that were meant as rules
    (not blank, not comments), the base of the error ratio.
    """

    source: str
    format: str
    detected: str = ""
    plain: dict[bytes, None] = field(default_factory=dict)  # an ordered set
    flagged: dict[bytes, int] = field(default_factory=dict)
    globs: list[GlobRule] = field(default_factory=list)
    regexes: list[RegexRule] = field(default_factory=list)
    rule_lines: int = 0
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    over_limit: int = 0  # of `error_count`: good rules beyond a limit (max_regex), not garbage
    max_errors: int = 100
    # RPZ: the action of each owner pattern whose flags cannot say it (local data, or `x` and
    # `*.x` with different actions), and the address triggers by network.
    rpz_actions: dict[str, tuple[str, list[Record]]] = field(default_factory=dict)
    client_ips: dict[str, IpRule] = field(default_factory=dict)
    response_ips: dict[str, IpRule] = field(default_factory=dict)
    zone: str = ""  # an RPZ zone's apex (its SOA owner), which its blocks cite

    @property
    def accepted(self) -> int:
        """Distinct rules: names (whatever they block or allow), wildcard and regex rules,
        RPZ address triggers."""
        extra = sum(1 for name in self.flagged if name not in self.plain)
        addresses = len(self.client_ips) + len(self.response_ips)
        return len(self.plain) + extra + len(self.globs) + len(self.regexes) + addresses

    def bad(self, line_no: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(f"{self.source}:{line_no}: {message}")

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, name: bytes, flags: int) -> None:
        """Merge `flags` for `name`; a rule that adds nothing new is a duplicate."""
        if flags == SUBTREE and not self.flagged:
            if name in self.plain:
                self.duplicates += 1
            else:
                self.plain[name] = None
            return
        old = self.flagged.get(name, 0)
        if name in self.plain:
            old |= SUBTREE
        answer = old & _ANSWER_MASK or flags & _ANSWER_MASK
        merged = (old | flags) & ~_ANSWER_MASK | answer
        if merged == old:
            self.duplicates += 1
            return
        if merged == SUBTREE and name not in self.flagged:
            self.plain[name] = None
        else:
            self.flagged[name] = merged

    def summary(self) -> dict[str, object]:
        """The report as plain values, for the reload log line and `check`."""
        report: dict[str, object] = {
            "format": self.format,
            "detected": self.detected,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "invalid": self.error_count,
            "skipped": dict(self.skipped),
            "regexes": len(self.regexes),
            "wildcards": len(self.globs),
        }
        if self.client_ips:
            report["client_ip_rules"] = len(self.client_ips)
        if self.response_ips:
            report["response_ip_rules"] = len(self.response_ips)
        note = self.note()
        if note:
            report["note"] = note
        if self.zone:
            report["zone"] = self.zone
        return report

    def note(self) -> str:
        """What a reader of the load report should know that is no error: RPZ rules that
        cannot apply to a forwarder, skipped."""
        count = sum(self.skipped.get(f"{trigger} trigger", 0) for trigger in NOT_APPLICABLE)
        if not count:
            return ""
        return (
            f"{count} rpz-nsdname/rpz-nsip rules skipped: they match the name servers a "
            "recursive resolver meets on its way down, which a forwarder never sees"
        )


def answer_of(flags: int) -> str | None:
    """The per-rule answer mode stored in `flags` (None: the list's or policy's)."""
    return _ANSWERS.get((flags & _ANSWER_MASK) >> _ANSWER_SHIFT)


def _answer_bits(answer: str | None) -> int:
    return ANSWER_CODES[answer] << _ANSWER_SHIFT


def broken(parsed: ParsedRules, max_bad_lines: int, max_ratio: float = MAX_ERROR_RATIO) -> str:
    """Why the list must not be loaded (empty string: it may). A few bad lines in a big list
    are typos; more than `max_bad_lines` that are also a large share of it mean the download
    is not the list it should be."""
    count = parsed.error_count
    if count <= max_bad_lines or count <= max_ratio * parsed.rule_lines:
        return ""
    shown = f"first {len(parsed.errors)} shown" if parsed.errors else "none shown"
    return (
        f"{parsed.source}: {count} invalid lines, more than the allowed {max_bad_lines} and "
        f"over {max_ratio:.0%} of {parsed.rule_lines} rule lines ({shown}); "
        "refusing to load this list"
    )


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


# ----- helpers ----------------------------------------------------------------------------------


def is_address(text: str) -> bool:
    """True for an IPv4/IPv6 literal; the cheap pre-check keeps million-line lists fast."""
    if ":" not in text and not text.replace(".", "").isdigit():
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def show(text: str) -> str:
    return ascii(text if len(text) <= 80 else text[:80] + "...")


def _name(text: str, *, allow_wildcard: bool) -> tuple[str, bytes]:
    """(canonical text, canonical bytes) of a list name; raises BadName."""
    wire, canonical = normalise(text, allow_wildcard=allow_wildcard)
    if wire == b"\x00":
        raise BadName("the root '.' cannot be blocked")
    return canonical, canonical.encode("ascii")


def _add_pattern(
    parsed: ParsedRules, line_no: int, text: str, *, allow: bool, answer: str | None, exact: bool
) -> None:
    """Add a name or wildcard pattern as written in a list: ``x`` (the name and below, or the
    name alone with `exact`), ``*.x`` (below x only) or ``v*.x`` (a label wildcard)."""
    try:
        canonical, name = _name(text, allow_wildcard=True)
    except BadName as exc:
        parsed.bad(line_no, str(exc))
        return
    bits = _answer_bits(answer) if not allow else 0
    first, _, parent = canonical.partition(".")
    if "*" not in first:
        if allow:
            flags = FLAG_ALLOW_SELF if exact else FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW
        else:
            flags = FLAG_SELF if exact else SUBTREE
        parsed.add(name, flags | bits)
        return
    if not parent:
        parsed.bad(line_no, f"{show(text)}: a wildcard at the top would match every name")
        return
    if first == "*":
        flags = FLAG_ALLOW_BELOW if allow else FLAG_BELOW | FLAG_WILD
        parsed.add(parent.encode("ascii"), flags | bits)
        return
    if any(glob.pattern == canonical and glob.allow == allow for glob in parsed.globs):
        parsed.duplicates += 1
        return
    parsed.globs.append(GlobRule(canonical, allow, answer, line_no))


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
                _, name = _name(host, allow_wildcard=False)
            except BadName as exc:
                parsed.bad(line_no, str(exc))
                continue
            parsed.add(name, SUBTREE)
        return
    if len(fields) > 1:
        parsed.bad(line_no, f"expected one domain per line, got {show(' '.join(fields))}")
        return
    _add_pattern(parsed, line_no, fields[0], allow=False, answer=None, exact=False)


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
    _add_pattern(parsed, line_no, name, allow=allow, answer=None, exact=exact)


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


# ----- RPZ ------------------------------------------------------------------------------------

PASSTHRU: Final = "passthru"
DROP: Final = "drop"
TCP_ONLY: Final = "tcp_only"
LOCAL: Final = "local"
RPZ_ANSWERS: Final = frozenset({DROP, TCP_ONLY, LOCAL})
"""Answers only an RPZ rule gives, which no sinkhole builds: no reply at all, an empty
truncated reply (the client retries over TCP), the rule's own records."""
CLIENT_IP: Final = "rpz-client-ip"
RESPONSE_IP: Final = "rpz-ip"
NOT_APPLICABLE: Final = ("rpz-nsdname", "rpz-nsip")
"""Triggers on the name servers of the delegation a recursive resolver walks: a forwarder never
sees them, so their rules are skipped and counted, never errors."""
_RPZ_CLASSES = frozenset({"in", "ch", "hs", "any"})
_TTL_RE = re.compile(r"\d+[smhdw]?(?:\d+[smhdw])*", re.I)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\S+')
# Zone structure and DNSSEC records: never a policy (Unbound ignores them too).
_RPZ_IGNORED_TYPES = frozenset({"NS", "DNAME", "DNSKEY", "DS", "RRSIG", "NSEC", "NSEC3",
                                "NSEC3PARAM"})  # fmt: skip
_CNAME_ACTIONS = {
    ".": "nxdomain",
    "*.": "nodata",
    "rpz-passthru.": PASSTHRU,
    "rpz-drop.": DROP,
    "rpz-tcp-only.": TCP_ONLY,
}

Record = tuple[int, bytes]
"""One record of local data: its RR type and RDATA in wire form (names uncompressed)."""


@dataclass(frozen=True, slots=True)
class IpRule:
    """An ``rpz-ip`` or ``rpz-client-ip`` rule: the network its owner name encodes, its action
    (an answer mode, `PASSTHRU` or `LOCAL`), the owner name relative to the zone (what a block
    cites) and its local data."""

    network: str
    action: str
    owner: str
    records: tuple[Record, ...] = ()


class _RpzState:
    """Where a zone file parse stands: origin, the zone apex, the owner of the last record."""

    __slots__ = ("apex", "last_owner", "origin")

    def __init__(self) -> None:
        self.origin: str | None = None
        self.apex: str | None = None
        self.last_owner: str | None = None


def _rpz_records(text_lines: list[str]) -> Iterable[tuple[int, str]]:
    """Logical records: comments (``;``) removed, parenthesised continuations joined (at most
    50 lines, so one stray parenthesis cannot swallow the rest of the file)."""
    pending: list[str] = []
    start = 0
    depth = 0
    for line_no, raw in enumerate(text_lines, start=1):
        line = _strip_rpz_comment(raw)
        if not pending:
            start = line_no
        opens, closes = line.count("("), line.count(")")
        if opens or closes:
            line = line.replace("(", " ").replace(")", " ")
        depth += opens - closes
        pending.append(line)
        if depth > 0 and len(pending) < 50:
            continue
        yield start, " ".join(pending) if len(pending) > 1 else line
        pending = []
        depth = 0
    if pending:
        yield start, " ".join(pending)


def _strip_rpz_comment(raw: str) -> str:
    if ";" not in raw:
        return raw.rstrip()
    if '"' not in raw:
        return raw.split(";", 1)[0].rstrip()
    quoted = False
    for index, char in enumerate(raw):
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            return raw[:index].rstrip()
    return raw.rstrip()


def _rpz_line(parsed: ParsedRules, state: _RpzState, line_no: int, line: str) -> None:
    if not line.strip():
        return
    if line.startswith("$"):
        fields = line.split()
        directive = fields[0].upper()
        if directive == "$ORIGIN" and len(fields) >= 2:
            state.origin = _absolute(fields[1], state.origin).rstrip(".").lower()
        elif directive == "$TTL":
            return
        else:
            parsed.rule_lines += 1
            parsed.bad(line_no, f"{show(fields[0])}: directive not supported here")
        return
    tokens = list(_TOKEN.finditer(line))
    if line[0] in " \t":
        owner = state.last_owner
        if owner is None:
            parsed.rule_lines += 1
            parsed.bad(line_no, "record without an owner name")
            return
    else:
        owner = _absolute(tokens.pop(0).group(), state.origin).rstrip(".").lower()
        state.last_owner = owner
    while tokens and (
        _TTL_RE.fullmatch(tokens[0].group()) or tokens[0].group().lower() in _RPZ_CLASSES
    ):
        tokens.pop(0)
    if not tokens:
        parsed.rule_lines += 1
        parsed.bad(line_no, "record without a type")
        return
    rtype = tokens[0].group().upper()
    rdata = line[tokens[1].start() :].strip() if len(tokens) > 1 else ""
    if rtype == "SOA":
        if state.apex is None:
            state.apex = owner
        return
    if rtype == "NS" and (owner == state.apex or (state.apex is None and owner == state.origin)):
        return
    parsed.rule_lines += 1
    apex = state.apex
    if apex:
        if owner == apex:
            parsed.skip(f"{rtype} record at the zone apex")
            return
        if not owner.endswith("." + apex):
            parsed.bad(line_no, f"{show(owner)} is outside the zone {apex!r}")
            return
        owner = owner[: -len(apex) - 1]
    trigger = owner.rsplit(".", 1)[-1]
    if trigger in NOT_APPLICABLE:
        parsed.skip(f"{trigger} trigger")
        return
    if rtype in _RPZ_IGNORED_TYPES:
        parsed.skip(f"{rtype} record")
        return
    action = _rpz_action(parsed, line_no, owner, rtype, rdata, state.origin)
    if action is None:
        return
    answer, record = action
    if trigger in (CLIENT_IP, RESPONSE_IP):
        _rpz_ip_rule(parsed, line_no, owner, trigger, answer, record)
    else:
        _rpz_name_rule(parsed, line_no, owner, answer, record)


def _absolute(name: str, origin: str | None) -> str:
    if name == "@":
        return (origin or "") + "."
    if name.endswith("."):
        return name
    return f"{name}.{origin}." if origin else name + "."


def _rpz_action(
    parsed: ParsedRules, line_no: int, owner: str, rtype: str, rdata: str, origin: str | None
) -> tuple[str, Record | None] | None:
    """(answer, local data record) of one policy record, as Unbound reads it: a CNAME to ``.``,
    ``*.``, ``rpz-passthru.``, ``rpz-drop.`` or ``rpz-tcp-only.`` is that action, ``A 0.0.0.0``
    / ``AAAA ::`` the null answer, any other record (a CNAME to a real name too) local data.
    None, with the line reported, for a record that is neither."""
    if rtype == "CNAME":
        target = rdata.lower()
        if " " in target or not target:
            parsed.bad(line_no, f"{show(owner)}: CNAME needs exactly one target name")
            return None
        known = _CNAME_ACTIONS.get(target if target.endswith(".") else target + ".")
        if known is not None:
            return known, None
        if target.rstrip(".").rsplit(".", 1)[-1].startswith("rpz-"):
            parsed.bad(
                line_no,
                f"{show(owner)}: CNAME {show(rdata)} is no RPZ action (known: rpz-passthru., "
                "rpz-drop., rpz-tcp-only.)",
            )
            return None
    elif (
        rtype in ("A", "AAAA") and is_address(rdata) and ipaddress.ip_address(rdata).is_unspecified
    ):
        return "null_ip", None
    try:
        return LOCAL, _local_record(rtype, rdata, origin)
    except ValueError as exc:
        parsed.bad(line_no, f"{show(owner)}: {rtype} {show(rdata)}: {exc}")
        return None


def _local_record(rtype: str, rdata: str, origin: str | None) -> Record:
    """The wire form of one record of local data; ValueError says why it has none. dnspython
    reads the RDATA (every type it knows, relative names against the zone's origin)."""
    import dns.exception
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    try:
        code = dns.rdatatype.from_text(rtype)
        base = dns.name.from_text(origin) if origin else dns.name.root
        value = dns.rdata.from_text(dns.rdataclass.IN, code, rdata, origin=base, relativize=False)
        return int(code), value.to_wire()
    except dns.rdatatype.UnknownRdatatype:
        raise ValueError(f"unknown record type {rtype!r}") from None
    except (dns.exception.DNSException, ValueError, TypeError) as exc:
        raise ValueError(" ".join(str(exc).split()) or type(exc).__name__) from None


def _rpz_name_rule(
    parsed: ParsedRules, line_no: int, owner: str, answer: str, record: Record | None
) -> None:
    """A QNAME trigger: ``x`` for the name alone, ``*.x`` for every name below it. Each owner
    has one action (a later record with another one is skipped, as Unbound does); local data
    records of one owner add up."""
    if answer == PASSTHRU:
        _add_pattern(parsed, line_no, owner, allow=True, answer=None, exact=True)
        return
    try:
        canonical, name = _name(owner, allow_wildcard=True)
    except BadName as exc:
        parsed.bad(line_no, str(exc))
        return
    first, _, parent = canonical.partition(".")
    if first == "*":
        if not parent:
            parsed.bad(line_no, f"{show(owner)}: a wildcard at the top would match every name")
            return
        key, half, bits = parent.encode("ascii"), FLAG_BELOW, FLAG_BELOW | FLAG_WILD
    elif "*" in first:
        if answer == LOCAL:
            parsed.bad(line_no, f"{show(owner)}: local data needs a whole '*' label or none")
            return
        _add_pattern(parsed, line_no, owner, allow=False, answer=answer, exact=True)
        return
    else:
        key, half, bits = name, FLAG_SELF, FLAG_SELF
    flags = parsed.flagged.get(key, 0)
    actions = parsed.rpz_actions
    if flags & half:
        before = actions.get(canonical)
        first_answer = before[0] if before is not None else answer_of(flags)
        if first_answer != answer:
            parsed.skip("record beside another action at its owner (the first is kept)")
        elif before is not None and record is not None and record not in before[1]:
            before[1].append(record)
        else:
            parsed.duplicates += 1
        return
    code = flags & _ANSWER_MASK
    parsed.add(key, bits | _answer_bits(answer))
    if record is not None:
        actions[canonical] = (answer, [record])
    elif code == _answer_bits(LOCAL):
        # `x` and `*.x` share the flags' one answer code: the first one read. Only local
        # data needs the other to keep its own (`x` has records, `*.x` none).
        actions[canonical] = (answer, [])


def _rpz_ip_rule(
    parsed: ParsedRules,
    line_no: int,
    owner: str,
    trigger: str,
    answer: str,
    record: Record | None,
) -> None:
    try:
        network = rpz_network(owner[: -len(trigger) - 1] if owner != trigger else "")
    except ValueError as exc:
        parsed.bad(line_no, f"{show(owner)}: {exc}")
        return
    rules = parsed.client_ips if trigger == CLIENT_IP else parsed.response_ips
    before = rules.get(network)
    records = () if record is None else (record,)
    if before is None:
        rules[network] = IpRule(network, answer, owner, records)
    elif before.action != answer:
        parsed.skip("record beside another action at its owner (the first is kept)")
    elif record is not None and record not in before.records:
        rules[network] = IpRule(network, answer, before.owner, before.records + records)
    else:
        parsed.duplicates += 1


def rpz_network(labels_text: str) -> str:
    """The network an ``rpz-ip``/``rpz-client-ip`` owner encodes, given the labels before the
    trigger: the prefix length, then the address backwards, label by label
    (``24.0.2.0.192`` is 192.0.2.0/24; ``48.zz.db8.2001`` is 2001:db8::/48, ``zz`` standing
    for the longest run of zero groups). ValueError says what is wrong."""
    labels = labels_text.split(".") if labels_text else []
    if len(labels) < 2:
        raise ValueError(
            "an address trigger is PREFIX.ADDRESS-REVERSED.<trigger> (24.0.2.0.192.rpz-ip, "
            "48.zz.db8.2001.rpz-ip)"
        )
    length_text, parts = labels[0], labels[:0:-1]
    if not length_text.isdigit():
        raise ValueError(f"prefix length {length_text!r} is not a number")
    length = int(length_text)
    if len(parts) == 4 and all(part.isdigit() for part in parts):
        text, bits = ".".join(parts), 32
    else:
        if parts.count("zz") > 1:
            raise ValueError("'zz' may stand for one run of zero groups only")
        if "zz" in parts:
            at = parts.index("zz")
            text = ":".join(parts[:at]) + "::" + ":".join(parts[at + 1 :])
        elif len(parts) == 8:
            text = ":".join(parts)
        else:
            raise ValueError(
                f"{len(parts)} address labels: IPv4 takes 4, IPv6 8 (or fewer with 'zz')"
            )
        bits = 128
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if not 1 <= length <= bits:
        raise ValueError(f"prefix length {length} is outside 1-{bits}")
    try:
        return str(ipaddress.ip_network(f"{address}/{length}"))
    except ValueError:
        raise ValueError(f"{address}/{length} has address bits set beyond the prefix") from None


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
        _parse_rpz(parsed, data)
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


def _decode_line(raw: bytes) -> str:
    """Undecodable bytes become U+FFFD and then fail as bad names, never as a crash."""
    return raw.decode("utf-8", errors="replace")


def _parse_per_line(parsed: ParsedRules, data: bytes, parse_line: LineParser) -> None:
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        parse_line(parsed, line_no, _decode_line(raw))


def _parse_rpz(parsed: ParsedRules, data: bytes) -> None:
    state = _RpzState()
    lines = [_decode_line(raw) for raw in data.split(b"\n")]
    for line_no, line in _rpz_records(lines):
        _rpz_line(parsed, state, line_no, line)
    if state.apex and not parsed.zone:
        parsed.zone = state.apex


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
    if b"\r\n" in low:
        low = low.replace(b"\r\n", b"\n")
    hosts = False
    if adblock:
        if b"\n!" in low:
            low = _BANG_COMMENT.sub(b"", low)
        # `||`, `^` and `||^` alone are rules without a name (invalid), not blank lines.
        if b"\n||" in low:
            while b"\n||\n" in low:
                low = low.replace(b"\n||\n", b"\n\0\n")
            low = low.replace(b"\n||", b"\n")
        if b"^\n" in low:
            while b"\n^\n" in low:
                low = low.replace(b"\n^\n", b"\n\0\n")
            low = low.replace(b"^\n", b"\n")
    else:
        if b"#" in low:
            low = _HASH_COMMENT.sub(b"", low)
        if b" \n" in low or b"\t\n" in low:
            low = _TRAILING_BLANK.sub(b"\n", low)
        for prefix in (b"\n0.0.0.0 ", b"\n127.0.0.1 "):
            if prefix in low:
                low = low.replace(prefix, b"\n")
                hosts = True
    while b"\n.\n" in low:  # a lone "." (the root) must reach the per-line parser
        low = low.replace(b"\n.\n", b"\n\0\n")
    if b".\n" in low:
        low = low.replace(b".\n", b"\n")
    clean = (
        not low.translate(None, _NAME_BYTES)
        and b".." not in low
        and b"\n." not in low
        and b".\n" not in low
        and b"x" * 64 not in low.translate(_LABEL_MARKS)
        and b"x" * 254 not in low.translate(_LINE_MARKS)
        and _DOTTED_QUAD.search(low) is None
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
    # A dict, not a set: file order is memory order, which makes every later pass over the
    # names (join, hash) several times faster than a set's scattered order.
    good = dict.fromkeys(lines)
    good.pop(b"", None)
    for number in bad_numbers:
        good.pop(lines[number - 1], None)
    if hosts:
        # `0.0.0.0 localhost` lost its address above and now reads like a bare `localhost`
        # line, which is a rule where the hosts line is not: the line parser tells them apart.
        for name in _BOILERPLATE_BYTES & good.keys():
            del good[name]
            bad_numbers.extend(_line_numbers(lines, name))
        bad_numbers.sort()
    good_lines = len(lines) - blank - len(bad_numbers)
    parsed.rule_lines += good_lines
    parsed.duplicates += good_lines - len(good)
    if not parsed.plain and not parsed.flagged:
        parsed.plain = good
    else:  # a later file of a directory: merge (names already flagged one by one, few)
        for name in good.keys() & parsed.flagged.keys():
            parsed.add(name, SUBTREE)
            del good[name]
        parsed.duplicates += len(good.keys() & parsed.plain.keys())
        parsed.plain.update(good)
    if bad_numbers:
        raw_lines = original.split(b"\n", bad_numbers[-1])  # split no further than needed
        for number in bad_numbers:
            parse_line(parsed, number, _decode_line(raw_lines[number - 1]))


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
