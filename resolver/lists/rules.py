"""What a parsed list is: `ParsedRules` and the rule shapes every format parses into.

One list parses into names with `FLAG_*` bits (what each blocks or allows) and an answer code,
label-wildcard and regex rules, RPZ address triggers and local data, plus the report an operator
reads. The parsers (`formats` for line formats, `rpz` for zone files) share these values and the
small helpers that add a name as written in a list, so a name means the same in every format.
Pure: values in, values out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from resolver.lists.nametable import NameTable
from resolver.protocol.names import BadName, normalise

FLAG_SELF = 0x01  # blocks the name itself
FLAG_BELOW = 0x02  # blocks every name below it
FLAG_WILD = 0x04  # FLAG_BELOW was written as `*.name` (reported as such)
FLAG_ALLOW_SELF = 0x08  # allows the name itself
FLAG_ALLOW_BELOW = 0x10  # allows every name below it
SUBTREE = FLAG_SELF | FLAG_BELOW
_ANSWER_SHIFT = 5
ANSWER_MASK = 0x07 << _ANSWER_SHIFT
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
    (not blank, not comments), the base of the error ratio. A big list's clean lines are
    kept in ``bulk`` instead of ``plain`` (`resolver.lists.nametable`), never both; ``has_plain``
    and ``plain_names`` see both.
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
    # Names added without a dot (`com`): the guard refuses a list that blocks a top-level
    # domain, and finding them here spares it a walk over millions of names.
    dotless: set[bytes] = field(default_factory=set)
    bulk: NameTable | None = None

    @property
    def accepted(self) -> int:
        """Distinct rules: names (whatever they block or allow), wildcard and regex rules,
        RPZ address triggers."""
        extra = sum(1 for name in self.flagged if not self.has_plain(name))
        addresses = len(self.client_ips) + len(self.response_ips)
        names = len(self.plain) + (len(self.bulk) if self.bulk is not None else 0)
        return names + extra + len(self.globs) + len(self.regexes) + addresses

    def has_plain(self, name: bytes) -> bool:
        """`name` blocks itself and everything below with no answer of its own (in ``plain``
        or ``bulk``)."""
        return name in self.plain or (self.bulk is not None and name in self.bulk)

    def plain_names(self) -> dict[bytes, None]:
        """``plain`` with the names of ``bulk`` moved into it (for the rare callers that need
        one dict: a later file of a directory, tests)."""
        if self.bulk is not None:
            merged = dict.fromkeys(self.bulk)
            merged.update(self.plain)
            self.plain, self.bulk = merged, None
        return self.plain

    def bad(self, line_no: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(f"{self.source}:{line_no}: {message}")

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, name: bytes, flags: int) -> None:
        """Merge `flags` for `name`; a rule that adds nothing new is a duplicate."""
        if b"." not in name:
            self.dotless.add(name)
        if flags == SUBTREE and not self.flagged:
            if self.has_plain(name):
                self.duplicates += 1
            else:
                self.plain[name] = None
            return
        old = self.flagged.get(name, 0)
        if self.has_plain(name):
            old |= SUBTREE
        answer = old & ANSWER_MASK or flags & ANSWER_MASK
        merged = (old | flags) & ~ANSWER_MASK | answer
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
    return _ANSWERS.get((flags & ANSWER_MASK) >> _ANSWER_SHIFT)


def answer_bits(answer: str | None) -> int:
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


def list_name(text: str, *, allow_wildcard: bool) -> tuple[str, bytes]:
    """(canonical text, canonical bytes) of a list name; raises BadName."""
    wire, canonical = normalise(text, allow_wildcard=allow_wildcard)
    if wire == b"\x00":
        raise BadName("the root '.' cannot be blocked")
    return canonical, canonical.encode("ascii")


def add_pattern(
    parsed: ParsedRules, line_no: int, text: str, *, allow: bool, answer: str | None, exact: bool
) -> None:
    """Add a name or wildcard pattern as written in a list: ``x`` (the name and below, or the
    name alone with `exact`), ``*.x`` (below x only) or ``v*.x`` (a label wildcard)."""
    try:
        canonical, name = list_name(text, allow_wildcard=True)
    except BadName as exc:
        parsed.bad(line_no, str(exc))
        return
    bits = answer_bits(answer) if not allow else 0
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


def decode_line(raw: bytes) -> str:
    """Undecodable bytes become U+FFFD and then fail as bad names, never as a crash."""
    return raw.decode("utf-8", errors="replace")


# ----- RPZ values the rest of the package reads ------------------------------------------------

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
