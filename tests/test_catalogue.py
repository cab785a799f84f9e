"""Tests for resolver/catalogue.py: the catalogue lint over every bundled file, strict parsing."""

from __future__ import annotations

import datetime
import textwrap
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

from resolver import catalogue
from resolver.catalogue import (
    CatalogueEntry,
    ListError,
    catalogue_dir,
    catalogue_ids,
    load_entry,
    parse_entry,
)
from resolver.matcher import BlockRule, DomainMatcher
from resolver.names import from_text

REPO = Path(__file__).resolve().parent.parent

# Suffixes no catalogue rule may equal (or be a wildcard directly under): public suffixes and
# shared CDN / cloud apexes, where a rule would block unrelated services.
FORBIDDEN_SUFFIXES = frozenset(
    {
        "com",
        "net",
        "org",
        "cn",
        "co.uk",
        "akamaized.net",
        "fastly.net",
        "cloudfront.net",
        "akamaiedge.net",
        "edgekey.net",
        "edgesuite.net",
        "azureedge.net",
        "cdn77.org",
        "cloudflare.net",
        "googleusercontent.com",
        "amazonaws.com",
    }
)

BUNDLED = sorted(catalogue_ids())


def test_catalogue_is_not_empty() -> None:
    assert "tiktok" in BUNDLED


def test_catalogue_dir_is_the_repo_blocklists_in_a_checkout() -> None:
    directory = catalogue_dir()
    assert (directory / "tiktok.yaml").is_file()
    assert (directory / "README.md").is_file()


def test_catalogue_dir_falls_back_when_the_data_package_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> Traversable:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(catalogue.resources, "files", missing)
    package_root = Path(catalogue.resolver.__file__).resolve().parent.parent
    assert Path(str(catalogue_dir())) == package_root / "blocklists"


# ----- the catalogue lint: every bundled file -----


@pytest.fixture(scope="module", params=BUNDLED)
def entry(request: pytest.FixtureRequest) -> CatalogueEntry:
    return load_entry(request.param)


def test_lint_id_equals_file_stem(entry: CatalogueEntry) -> None:
    assert Path(entry.path).name == f"{entry.id}.yaml"


def test_lint_ids_are_unique() -> None:
    ids = [load_entry(entry_id).id for entry_id in BUNDLED]
    assert len(ids) == len(set(ids))


def test_lint_has_references(entry: CatalogueEntry) -> None:
    assert entry.references
    for reference in entry.references:
        assert reference.authority and reference.decision and reference.url
        assert datetime.date(2000, 1, 1) < reference.date <= entry.last_reviewed


def test_lint_reviewed_date_is_not_in_the_future(entry: CatalogueEntry) -> None:
    assert entry.last_reviewed <= datetime.date.today()


def test_lint_every_rule_has_a_source(entry: CatalogueEntry) -> None:
    assert entry.rules
    assert all(rule.source.strip() for rule in entry.rules)


def test_lint_no_duplicate_rules(entry: CatalogueEntry) -> None:
    wires = [from_text(rule.domain, allow_wildcard=True) for rule in entry.rules]
    assert len(wires) == len(set(wires))


def test_lint_no_rule_is_a_public_suffix_or_shared_cdn_apex(entry: CatalogueEntry) -> None:
    for rule in entry.rules:
        labels = rule.domain.split(".")
        covered = ".".join(labels[1:]) if "*" in labels[0] else rule.domain
        assert covered not in FORBIDDEN_SUFFIXES, f"line {rule.line}: {rule.domain}"
        assert len(covered.split(".")) >= 2, f"line {rule.line}: {rule.domain}"


def test_lint_rules_load_into_a_matcher_and_match_themselves(entry: CatalogueEntry) -> None:
    matcher = DomainMatcher()
    for rule in entry.rules:
        matcher.add(rule.domain, BlockRule(entry.id, rule.domain, rule.answer))
    assert len(matcher) == len(entry.rules)
    for rule in entry.rules:
        probe = rule.domain.replace("*", "x1")
        hit = matcher.lookup(from_text(probe))
        assert hit is not None and hit[0].pattern == rule.domain, rule.domain


def test_lint_rule_lines_point_at_the_rule(entry: CatalogueEntry) -> None:
    lines = Path(entry.path).read_text(encoding="utf-8").splitlines()
    for rule in entry.rules:
        assert rule.domain in lines[rule.line - 1]


def test_tiktok_entry_content() -> None:
    entry = load_entry("tiktok")
    domains = {rule.domain for rule in entry.rules}
    assert {"tiktok.com", "tiktokv.com", "v*.tiktokcdn-eu.com", "p16-tiktok-*.ibyteimg.com",
            "musical.ly", "douyin.com"} <= domains  # fmt: skip
    assert "p16-tiktokcdn-com.akamaized.net" in domains
    assert "bytedance.map.fastly.net" in domains
    # ByteDance suffixes from a Douyin CSP are deliberately left out (see the file's provenance)
    assert domains.isdisjoint({"toutiao.com", "ixigua.com", "bytedance.net", "byted.org"})
    authorities = " ".join(reference.authority for reference in entry.references)
    for who in ("European Commission", "United States", "Canada", "Belgium", "United Kingdom",
                "Australia"):  # fmt: skip
        assert who in authorities


# ----- strict parsing -----

VALID = textwrap.dedent(
    """\
    id: demo
    name: Demo
    vendor: Demo Corp.
    description: Why it is banned.
    references:
      - authority: Somebody
        decision: Banned it.
        date: 2023-02-23
        url: https://example.org/decision
        verified: false
    rules:
      - domain: demo.example
        source: a list
      - {domain: "*.cdn.demo.example", source: a list, note: wildcard, unverified: true}
      - domain: api.demo.test
        source: another list
        answer: nxdomain
    provenance: Collected by hand.
    last_reviewed: 2026-01-02
    """
)


def test_parse_valid_entry() -> None:
    entry = parse_entry(VALID, "demo.yaml")
    assert (entry.id, entry.name, entry.vendor, entry.path) == ("demo", "Demo", "Demo Corp.",
                                                                "demo.yaml")  # fmt: skip
    assert entry.last_reviewed == datetime.date(2026, 1, 2)
    (reference,) = entry.references
    assert reference.date == datetime.date(2023, 2, 23)
    assert reference.verified is False
    assert [(r.domain, r.line, r.unverified, r.answer, r.note) for r in entry.rules] == [
        ("demo.example", 12, False, None, None),
        ("*.cdn.demo.example", 14, True, None, "wildcard"),
        ("api.demo.test", 15, False, "nxdomain", None),
    ]


def test_expected_id_must_match() -> None:
    assert parse_entry(VALID, "demo.yaml", expected_id="demo").id == "demo"
    with pytest.raises(ListError) as info:
        parse_entry(VALID, "other.yaml", expected_id="other")
    assert info.value.problems == ("other.yaml:1: id: 'demo' must equal the file name 'other'",)


def replace(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID + "colour: red\n", ["src:20: colour: unknown key"]),
        (replace("vendor: Demo Corp.\n", ""), ["src:1: vendor: missing"]),
        (replace("id: demo", "id: Demo Thing"), ["src:1: id: use lowercase"]),
        (replace("name: Demo", "name: yes"), ["src:2: name: expected text, got bool 'yes'"]),
        (replace("name: Demo", "name: ''"), ["src:2: name: must not be empty"]),
        (replace("name: Demo", "name: [a]"), ["src:2: name: expected text, got a list"]),
        (VALID + "id: again\n", ["src:20: id: duplicate key"]),
        (
            replace("    verified: false", "    verified: maybe"),
            ["src:10: references[0].verified: expected true or false, got str 'maybe'"],
        ),
        (
            replace("    verified: false\n", ""),
            ["src:6: references[0].verified: missing"],
        ),
        (
            replace("    url: https://example.org/decision\n", "    link: x\n"),
            ["src:9: references[0].link: unknown key", "src:6: references[0].url: missing"],
        ),
        (
            replace("date: 2023-02-23", "date: 2023-02-30"),
            ["src:8: references[0].date: day is out of range"],
        ),
        (
            replace("date: 2023-02-23", "date: 23/02/2023"),
            ["src:8: references[0].date: expected a date YYYY-MM-DD"],
        ),
        (
            replace("last_reviewed: 2026-01-02", "last_reviewed: 2026-01-02 10:00:00"),
            ["src:19: last_reviewed: expected a date YYYY-MM-DD"],
        ),
        (
            replace(
                "references:\n  - authority: Somebody\n    decision: Banned it.\n"
                "    date: 2023-02-23\n    url: https://example.org/decision\n"
                "    verified: false\n",
                "references: []\n",
            ),
            ["src:5: references: must not be empty"],
        ),
        (
            replace("  - domain: demo.example", "  - domain: demo..example"),
            ["src:12: rules[0].domain: 'demo..example': empty label"],
        ),
        (
            replace("  - domain: demo.example", "  - domain: Demo.Example."),
            ["src:12: rules[0].domain: write it in canonical form: 'demo.example'"],
        ),
        (
            replace("  - domain: demo.example", "  - domain: bücher.example"),
            ["src:12: rules[0].domain: write it in canonical form: 'xn--bcher-kva.example'"],
        ),
        (
            replace("  - domain: demo.example", "  - domain: a.*.example"),
            ["src:12: rules[0].domain: 'a.*.example': '*' is only allowed in the leftmost label"],
        ),
        (
            replace("  - domain: demo.example", "  - domain: example"),
            ["src:12: rules[0].domain: 'example' would block a whole top-level domain"],
        ),
        (
            replace('"*.cdn.demo.example"', '"*.example"'),
            ["src:14: rules[1].domain: '*.example' would block a whole top-level domain"],
        ),
        (
            replace("  - domain: api.demo.test", "  - domain: demo.example"),
            ["src:15: rules[2].domain: duplicate rule 'demo.example' (first at line 12)"],
        ),
        (
            replace("    answer: nxdomain", "    answer: ip"),
            ["src:17: rules[2].answer: must be one of: nodata, null_ip, nxdomain, refused"],
        ),
        (
            replace("    source: a list\n", ""),
            ["src:12: rules[0].source: missing"],
        ),
        (
            replace("    source: a list\n", "    source: a list\n    sauce: x\n"),
            ["src:14: rules[0].sauce: unknown key (allowed: domain, source, note, unverified"],
        ),
        (
            replace("unverified: true", "unverified: 1"),
            ["src:14: rules[1].unverified: expected true or false, got int '1'"],
        ),
        (
            VALID[: VALID.index("rules:")] + "rules: demo.example\n" + VALID[VALID.index("prov") :],
            ["src:11: rules: expected a list"],
        ),
        (
            replace("description: Why it is banned.", "description: &d Why it is banned.").replace(
                "provenance: Collected by hand.", "provenance: *d"
            ),
            ["src:18: yaml: alias *d is not allowed"],
        ),
        ("id: [unclosed\n", ["src:2: yaml: "]),
        ("", ["src:1: (file): empty catalogue file"]),
        ("- a\n- b\n", ["src:1: (file): expected a mapping, got a list"]),
        ("id: a\n---\nid: b\n", ["src:2: yaml: "]),
    ],
)
def test_parse_errors_name_file_line_and_key(text: str, expected: list[str]) -> None:
    with pytest.raises(ListError) as info:
        parse_entry(text, "src")
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problems
    assert str(info.value) == "\n".join(problems)


def test_all_problems_are_reported_together() -> None:
    text = (
        replace("name: Demo", "name: 5")
        .replace("date: 2023-02-23", "date: soon")
        .replace("  - domain: demo.example", "  - domain: bad_ name.example")
    )
    with pytest.raises(ListError) as info:
        parse_entry(text, "src")
    keys = [problem.split(": ")[1] for problem in info.value.problems]
    assert keys == ["name", "references[0].date", "rules[0].domain"]


def test_load_entry_unknown_id() -> None:
    with pytest.raises(ListError, match="unknown catalogue entry"):
        load_entry("no-such-app")
