"""The bundled app catalogue: one curated YAML file per banned app in ``blocklists/``.

Each file says what the app is, which decisions ban it, which domains block it and where every
domain came from (format: ``blocklists/README.md``). The catalogue is evidence as much as
configuration, so parsing is strict: unknown keys, missing fields, wrong types, bad or duplicate
domains are all errors, collected together and reported as ``FILE:LINE: key: message`` from the
line numbers PyYAML's composer keeps on every node. ``parse_catalogue_entry`` and
``catalogue_table`` are pure; only ``catalogue_dir``/``catalogue_ids``/``load_catalogue_entry``/
``load_catalogue`` touch the installed files.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

import resolver
from resolver.lists.matcher import ANSWER_OVERRIDES
from resolver.protocol.names import BadName, from_text, to_text

__all__ = [
    "DNS_COVERAGE",
    "TABLE_COLUMNS",
    "CatalogueEntry",
    "CatalogueRule",
    "ListError",
    "Reference",
    "catalogue_dir",
    "catalogue_ids",
    "catalogue_table",
    "load_catalogue",
    "load_catalogue_entry",
    "parse_catalogue_entry",
    "reference_label",
]

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TAG = "tag:yaml.org,2002:"
_TRUE = frozenset({"true", "yes", "on"})

DNS_COVERAGE = ("full", "partial")
"""Values of an entry's ``dns_coverage``: can DNS blocking enforce the ban on its own?"""

TABLE_COLUMNS = ("id", "name", "vendor", "domains", "references", "last_reviewed", "notes")
"""Keys of every ``catalogue_table`` row, in display order."""

# Short labels for the authorities that appear in the catalogue. The earliest match in the
# authority text wins, so "Commonwealth of Virginia (Governor), United States" is US-VA.
_AUTHORITY_LABELS = (
    ("European Commission", "EU"),
    ("European Parliament", "EU"),
    ("Council of the European Union", "EU"),
    ("Virginia", "US-VA"),
    ("Texas", "US-TX"),
    ("United States", "US"),
    ("Canada", "CA"),
    ("Belgium", "BE"),
    ("United Kingdom", "UK"),
    ("Australia", "AU"),
    ("Ukraine", "UA"),
    ("Italy", "IT"),
    ("Taiwan", "TW"),
    ("South Korea", "KR"),
)
_LABEL_MAX = 24


class ListError(Exception):
    """A catalogue entry or list file that must not be loaded; every problem found, one per line.

    Each problem reads ``FILE:LINE: key: message`` (list files: ``FILE:LINE: message``) so an
    operator can jump to it. Library code raises this; only the CLI decides the exit code.
    """

    def __init__(self, problems: Iterable[str], failed_lists: Iterable[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        # Names of the lists that could not be loaded, for the refresh-failure metric.
        self.failed_lists: tuple[str, ...] = tuple(failed_lists)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Reference:
    """A decision that bans the app; ``verified`` is False until checked against official text."""

    authority: str
    decision: str
    date: datetime.date
    url: str
    verified: bool


@dataclass(frozen=True, slots=True)
class CatalogueRule:
    """One domain pattern with its provenance; ``line`` points back into the catalogue file."""

    domain: str
    source: str
    note: str | None
    unverified: bool
    answer: str | None
    line: int


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A parsed catalogue file."""

    id: str
    name: str
    vendor: str
    description: str
    references: tuple[Reference, ...]
    rules: tuple[CatalogueRule, ...]
    provenance: str
    last_reviewed: datetime.date
    path: str
    dns_coverage: str = "full"
    coverage_note: str | None = None

    @property
    def partial(self) -> bool:
        """True when DNS blocking alone cannot enforce the ban (``coverage_note`` says why)."""
        return self.dns_coverage == "partial"


def catalogue_dir() -> Traversable:
    """Where the bundled catalogue files are, installed or in a source checkout.

    An installed package ships ``blocklists/`` as the data package ``resolver.blocklists``; a
    source checkout has no such package, so fall back to the directory next to ``resolver/``.
    """
    try:
        return resources.files("resolver.blocklists")
    except ModuleNotFoundError:
        return Path(resolver.__file__).resolve().parent.parent / "blocklists"


def catalogue_ids() -> frozenset[str]:
    """Ids of the bundled entries: the stems of the ``*.yaml`` files in the catalogue directory."""
    return frozenset(
        item.name[: -len(".yaml")]
        for item in catalogue_dir().iterdir()
        if item.name.endswith(".yaml") and item.is_file()
    )


def load_catalogue_entry(entry_id: str) -> CatalogueEntry:
    """Read and strictly parse the bundled entry ``entry_id``; raises ``ListError``."""
    known = catalogue_ids()
    if entry_id not in known:
        bundled = ", ".join(sorted(known)) or "(none)"
        raise ListError([f"{entry_id}: unknown catalogue entry (bundled: {bundled})"])
    return _read_bundled(entry_id)


def load_catalogue() -> tuple[CatalogueEntry, ...]:
    """Every bundled entry, sorted by id; raises one ``ListError`` with the problems of all files.

    The ``catalogue`` command and the lint want the whole picture at once: an operator fixing
    one file should see every other broken file in the same run.
    """
    entries: list[CatalogueEntry] = []
    problems: list[str] = []
    for entry_id in sorted(catalogue_ids()):
        try:
            entries.append(_read_bundled(entry_id))
        except ListError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ListError(problems)
    return tuple(entries)


_PARSED: dict[str, tuple[str, CatalogueEntry]] = {}


def _read_bundled(entry_id: str) -> CatalogueEntry:
    """The entry from its file, parsed again only when the text changed: every state build
    reads the entries twice (their rules, then their references for `provenance`)."""
    item = catalogue_dir() / f"{entry_id}.yaml"
    try:
        text = item.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ListError([f"{item}: cannot read catalogue file: {exc}"]) from None
    known = _PARSED.get(entry_id)
    if known is not None and known[0] == text and known[1].path == str(item):
        return known[1]
    entry = parse_catalogue_entry(text, str(item), expected_id=entry_id)
    _PARSED[entry_id] = (text, entry)
    return entry


def parse_catalogue_entry(
    text: str, source: str, *, expected_id: str | None = None
) -> CatalogueEntry:
    """Parse one catalogue file's text; ``source`` names it in errors and becomes ``path``.

    ``expected_id`` (the file stem, given by ``load_catalogue_entry``) must equal the ``id`` field,
    which keeps ids unique: two files cannot share a stem.
    """
    parser = _CatalogueEntryParser(source)
    entry = parser.parse(text, expected_id)
    if parser.problems or entry is None:
        raise ListError(parser.problems)
    return entry


def reference_label(reference: Reference) -> str:
    """A reference in a few characters, such as ``BE 2023-03-10``, for tables and one-line logs.

    Known authorities get a short region code; any other shows the authority's name up to the
    first comma or parenthesis (``IETF (Internet Engineering Task Force)`` is ``IETF``).
    """
    authority = reference.authority
    found = [
        (index, -len(needle), label)
        for needle, label in _AUTHORITY_LABELS
        if (index := authority.find(needle)) >= 0
    ]
    if found:
        label = min(found)[2]
    else:
        label = re.split(r"[,(]", authority, maxsplit=1)[0].strip() or authority
        if len(label) > _LABEL_MAX:
            label = label[: _LABEL_MAX - 3].rstrip() + "..."
    return f"{label} {reference.date.isoformat()}"


def catalogue_table(entries: Iterable[CatalogueEntry]) -> list[dict[str, str]]:
    """One row per entry, keyed by ``TABLE_COLUMNS``, all values text: what ``catalogue`` shows.

    ``domains`` counts rules (one rule also blocks every name below it). ``notes`` gathers what
    an operator must know before relying on the entry: partial DNS coverage, rules or references
    not yet verified, and rules that force their own answer.
    """
    rows: list[dict[str, str]] = []
    for entry in entries:
        notes: list[str] = []
        if entry.partial:
            notes.append("partial DNS coverage")
        unverified_rules = sum(rule.unverified for rule in entry.rules)
        if unverified_rules:
            notes.append(f"{unverified_rules} unverified {_plural(unverified_rules, 'rule')}")
        unverified_refs = sum(not reference.verified for reference in entry.references)
        if unverified_refs:
            notes.append(f"{unverified_refs}/{len(entry.references)} references unverified")
        overrides = sum(rule.answer is not None for rule in entry.rules)
        if overrides:
            notes.append(f"{overrides} answer {_plural(overrides, 'override')}")
        rows.append(
            {
                "id": entry.id,
                "name": entry.name,
                "vendor": entry.vendor,
                "domains": str(len(entry.rules)),
                "references": "; ".join(reference_label(ref) for ref in entry.references),
                "last_reviewed": entry.last_reviewed.isoformat(),
                "notes": "; ".join(notes),
            }
        )
    return rows


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


class _CatalogueEntryParser:
    """Walks composed YAML nodes, so every problem can name its line; collects all problems."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.source}:{line}: {key}: {message}")

    def parse(self, text: str, expected_id: str | None) -> CatalogueEntry | None:
        try:
            # Aliases would let one node appear in several places (and nested ones explode);
            # refuse them up front, where the event still knows the alias's own line.
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent):
                    line = event.start_mark.line + 1
                    self.problems.append(
                        f"{self.source}:{line}: yaml: alias *{event.anchor} is not allowed; "
                        "write the value out"
                    )
            if self.problems:
                return None
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            self.problems.append(f"{self.source}:{line}: yaml: {exc.problem or exc.context}")
            return None
        except yaml.YAMLError as exc:
            self.problems.append(f"{self.source}:1: yaml: {exc}")
            return None
        if root is None:
            self.problems.append(f"{self.source}:1: (file): empty catalogue file")
            return None
        fields = self.mapping(root, "(file)")
        if fields is None:
            return None
        self.check_keys(
            root,
            fields,
            "",
            required=(
                "id",
                "name",
                "vendor",
                "description",
                "references",
                "rules",
                "provenance",
                "last_reviewed",
            ),
            optional=("dns_coverage", "coverage_note"),
        )
        entry_id = self.text(fields.get("id"), "id")
        if entry_id is not None:
            if _ID_RE.fullmatch(entry_id) is None:
                self.problem(fields["id"], "id", "use lowercase letters, digits, '-' and '_'")
            elif expected_id is not None and entry_id != expected_id:
                self.problem(
                    fields["id"], "id", f"{entry_id!r} must equal the file name {expected_id!r}"
                )
        name = self.text(fields.get("name"), "name")
        vendor = self.text(fields.get("vendor"), "vendor")
        description = self.text(fields.get("description"), "description")
        provenance = self.text(fields.get("provenance"), "provenance")
        last_reviewed = self.date(fields.get("last_reviewed"), "last_reviewed")
        references = self.references(fields.get("references"))
        rules = self.rules(fields.get("rules"))
        dns_coverage, coverage_note = self.coverage(fields)
        if (
            self.problems
            or entry_id is None
            or name is None
            or vendor is None
            or description is None
            or provenance is None
            or last_reviewed is None
        ):
            return None
        return CatalogueEntry(
            id=entry_id,
            name=name,
            vendor=vendor,
            description=description,
            references=references,
            rules=rules,
            provenance=provenance,
            last_reviewed=last_reviewed,
            path=self.source,
            dns_coverage=dns_coverage,
            coverage_note=coverage_note,
        )

    def coverage(self, fields: dict[str, yaml.Node]) -> tuple[str, str | None]:
        """``dns_coverage`` and its note: a partial entry must say what DNS cannot stop."""
        coverage_node = fields.get("dns_coverage")
        note_node = fields.get("coverage_note")
        coverage: str | None = "full"
        if coverage_node is not None:
            coverage = self.text(coverage_node, "dns_coverage")
            if coverage is not None and coverage not in DNS_COVERAGE:
                choices = ", ".join(DNS_COVERAGE)
                self.problem(coverage_node, "dns_coverage", f"must be one of: {choices}")
                coverage = None
        note = self.text(note_node, "coverage_note")
        if coverage == "partial" and note_node is None:
            self.problem(coverage_node, "coverage_note", "missing (say what DNS cannot stop)")
        if coverage == "full" and note_node is not None:
            self.problem(note_node, "coverage_note", "only allowed with dns_coverage: partial")
        return coverage or "full", note

    def references(self, node: yaml.Node | None) -> tuple[Reference, ...]:
        found: list[Reference] = []
        for index, item in enumerate(self.sequence(node, "references")):
            path = f"references[{index}]"
            fields = self.mapping(item, path)
            if fields is None:
                continue
            self.check_keys(
                item,
                fields,
                path + ".",
                required=("authority", "decision", "date", "url", "verified"),
                optional=(),
            )
            authority = self.text(fields.get("authority"), path + ".authority")
            decision = self.text(fields.get("decision"), path + ".decision")
            date = self.date(fields.get("date"), path + ".date")
            url = self.text(fields.get("url"), path + ".url")
            verified = self.boolean(fields.get("verified"), path + ".verified")
            if (
                authority is None
                or decision is None
                or date is None
                or url is None
                or verified is None
            ):
                continue
            found.append(Reference(authority, decision, date, url, verified))
        return tuple(found)

    def rules(self, node: yaml.Node | None) -> tuple[CatalogueRule, ...]:
        found: list[CatalogueRule] = []
        first_line: dict[bytes, int] = {}
        for index, item in enumerate(self.sequence(node, "rules")):
            path = f"rules[{index}]"
            fields = self.mapping(item, path)
            if fields is None:
                continue
            self.check_keys(
                item,
                fields,
                path + ".",
                required=("domain", "source"),
                optional=("note", "unverified", "answer"),
            )
            line = item.start_mark.line + 1
            domain = self.text(fields.get("domain"), path + ".domain")
            source = self.text(fields.get("source"), path + ".source")
            note = self.text(fields["note"], path + ".note") if "note" in fields else None
            unverified = (
                self.boolean(fields["unverified"], path + ".unverified")
                if "unverified" in fields
                else False
            )
            answer = self.text(fields["answer"], path + ".answer") if "answer" in fields else None
            if answer is not None and answer not in ANSWER_OVERRIDES:
                choices = ", ".join(sorted(ANSWER_OVERRIDES))
                self.problem(fields["answer"], path + ".answer", f"must be one of: {choices}")
                continue
            if domain is None or source is None or unverified is None:
                continue
            wire = self.domain(fields["domain"], path + ".domain", domain)
            if wire is None:
                continue
            if wire in first_line:
                self.problem(
                    fields["domain"],
                    path + ".domain",
                    f"duplicate rule {domain!r} (first at line {first_line[wire]})",
                )
                continue
            first_line[wire] = line
            found.append(CatalogueRule(domain, source, note, unverified, answer, line))
        return tuple(found)

    def domain(self, node: yaml.Node, key: str, domain: str) -> bytes | None:
        """Validate a rule's pattern; it must be written in the canonical form it will match in."""
        try:
            wire = from_text(domain, allow_wildcard=True)
        except BadName as exc:
            self.problem(node, key, str(exc))
            return None
        canonical = to_text(wire)
        if canonical != domain:
            self.problem(node, key, f"write it in canonical form: {canonical!r}")
            return None
        labels = canonical.split(".")
        if len(labels) - ("*" in labels[0]) < 2:
            self.problem(node, key, f"{domain!r} would block a whole top-level domain")
            return None
        return wire

    # ----- node helpers -----

    def mapping(self, node: yaml.Node, key: str) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, f"expected a mapping, got {_describe(node)}")
            return None
        fields: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _TAG + "str":
                self.problem(key_node, key, f"keys must be names, got {_describe(key_node)}")
                continue
            name = key_node.value
            if name in fields:
                self.problem(key_node, _join(key, name), "duplicate key")
                continue
            fields[name] = value_node
        return fields

    def sequence(self, node: yaml.Node | None, key: str) -> list[yaml.Node]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, key, f"expected a list, got {_describe(node)}")
            return []
        if not node.value:
            self.problem(node, key, "must not be empty")
        return list(node.value)

    def check_keys(
        self,
        node: yaml.Node,
        fields: dict[str, yaml.Node],
        prefix: str,
        *,
        required: tuple[str, ...],
        optional: tuple[str, ...],
    ) -> None:
        allowed = (*required, *optional)
        for key_node, _ in node.value:
            name = key_node.value
            if name in fields and name not in allowed:
                choices = ", ".join(allowed)
                self.problem(key_node, prefix + name, f"unknown key (allowed: {choices})")
        for name in required:
            if name not in fields:
                self.problem(node, prefix + name, "missing")

    def text(self, node: yaml.Node | None, key: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG + "str":
            self.problem(node, key, f"expected text, got {_describe(node)}")
            return None
        value = node.value.strip()
        if not value:
            self.problem(node, key, "must not be empty")
            return None
        return value

    def date(self, node: yaml.Node | None, key: str) -> datetime.date | None:
        if node is None:
            return None
        if (
            not isinstance(node, yaml.ScalarNode)
            or node.tag not in (_TAG + "timestamp", _TAG + "str")
            or _DATE_RE.fullmatch(node.value) is None
        ):
            self.problem(node, key, f"expected a date YYYY-MM-DD, got {_describe(node)}")
            return None
        try:
            return datetime.date.fromisoformat(node.value)
        except ValueError as exc:
            self.problem(node, key, str(exc))
            return None

    def boolean(self, node: yaml.Node | None, key: str) -> bool | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG + "bool":
            self.problem(node, key, f"expected true or false, got {_describe(node)}")
            return None
        return node.value.lower() in _TRUE


def _join(prefix: str, name: str) -> str:
    return name if prefix in ("", "(file)") else f"{prefix}.{name}"


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = node.tag.rsplit(":", 1)[-1] if node.tag.startswith(_TAG) else node.tag
    value = node.value if len(node.value) <= 40 else node.value[:40] + "..."
    return f"{kind} {value!r}"
