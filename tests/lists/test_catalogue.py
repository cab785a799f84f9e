"""Tests for lists/catalogue.py: the catalogue lint over every bundled file, strict parsing."""

from __future__ import annotations

import dataclasses
import datetime
import textwrap
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

from resolver.lists import catalogue
from resolver.lists.catalogue import (
    TABLE_COLUMNS,
    CatalogueEntry,
    ListError,
    Reference,
    catalogue_dir,
    catalogue_ids,
    catalogue_table,
    load_catalogue,
    load_catalogue_entry,
    parse_catalogue_entry,
    reference_label,
)
from resolver.lists.loading import build_blocking
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.protocol.names import from_text

REPO = Path(__file__).resolve().parents[2]

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

# A company's main domain that also carries services nobody means to ban: block a host below it.
TOO_BROAD_PARENTS = frozenset({"qq.com", "apple.com", "icloud.com", "google.com", "cloudflare.com"})

EXPECTED_ENTRIES = frozenset(
    {"tiktok", "capcut", "wechat", "telegram", "deepseek", "kaspersky", "doh-bypass",
     "doh-endpoints"}
)  # fmt: skip

BUNDLED = sorted(catalogue_ids())


def test_catalogue_is_not_empty() -> None:
    assert "tiktok" in BUNDLED


def test_catalogue_has_every_planned_entry() -> None:
    assert set(BUNDLED) >= EXPECTED_ENTRIES


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
    return load_catalogue_entry(request.param)


def test_lint_id_equals_file_stem(entry: CatalogueEntry) -> None:
    assert Path(entry.path).name == f"{entry.id}.yaml"


def test_lint_ids_are_unique() -> None:
    ids = [load_catalogue_entry(entry_id).id for entry_id in BUNDLED]
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
    assert duplicate_rules(entry) == []


# The lint checks below return their findings, so the same code is run against every bundled
# file (expecting none) and against deliberately bad entries (expecting some).


def covered_suffix(domain: str) -> str:
    """The domain a rule puts under block: a wildcard label covers names of its parent."""
    labels = domain.split(".")
    return ".".join(labels[1:]) if "*" in labels[0] else domain


def too_broad_rules(entry: CatalogueEntry) -> list[str]:
    found = []
    for rule in entry.rules:
        covered = covered_suffix(rule.domain)
        if covered in FORBIDDEN_SUFFIXES or len(covered.split(".")) < 2:
            found.append(f"line {rule.line}: {rule.domain}: public suffix or shared CDN apex")
        elif covered in TOO_BROAD_PARENTS:
            found.append(f"line {rule.line}: {rule.domain}: too-broad parent {covered}")
    return found


def overrides_without_note(entry: CatalogueEntry) -> list[str]:
    return [
        f"line {rule.line}: {rule.domain}: answer {rule.answer} without a note saying why"
        for rule in entry.rules
        if rule.answer is not None and not (rule.note or "").strip()
    ]


def duplicate_rules(entry: CatalogueEntry) -> list[str]:
    seen: set[bytes] = set()
    found = []
    for rule in entry.rules:
        wire = from_text(rule.domain, allow_wildcard=True)
        if wire in seen:
            found.append(f"line {rule.line}: {rule.domain}: duplicate rule")
        seen.add(wire)
    return found


def test_lint_no_rule_is_a_public_suffix_cdn_apex_or_too_broad_parent(
    entry: CatalogueEntry,
) -> None:
    assert too_broad_rules(entry) == []


def test_lint_answer_overrides_say_why(entry: CatalogueEntry) -> None:
    assert overrides_without_note(entry) == []


def test_lint_partial_coverage_is_explained(entry: CatalogueEntry) -> None:
    assert entry.dns_coverage in ("full", "partial")
    assert entry.partial == (entry.coverage_note is not None)


def test_lint_no_pattern_in_two_entries() -> None:
    owner: dict[bytes, str] = {}
    clashes = []
    for entry in load_catalogue():
        for rule in entry.rules:
            wire = from_text(rule.domain, allow_wildcard=True)
            if wire in owner:
                clashes.append(f"{rule.domain}: {owner[wire]} and {entry.id}")
            owner.setdefault(wire, entry.id)
    assert clashes == []


def demo_entry(domain: str, answer: str | None = None, note: str | None = None) -> CatalogueEntry:
    """The VALID entry reduced to one given rule, for showing what the lint catches."""
    entry = parse_catalogue_entry(VALID, "demo.yaml")
    rule = dataclasses.replace(entry.rules[0], domain=domain, answer=answer, note=note)
    return dataclasses.replace(entry, rules=(rule,))


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("qq.com", "too-broad parent qq.com"),
        ("*.qq.com", "too-broad parent qq.com"),
        ("apple.com", "too-broad parent apple.com"),
        ("icloud.com", "too-broad parent icloud.com"),
        ("google.com", "too-broad parent google.com"),
        ("cloudflare.com", "too-broad parent cloudflare.com"),
        ("akamaized.net", "public suffix or shared CDN apex"),
        ("*.fastly.net", "public suffix or shared CDN apex"),
        ("p16-*.akamaized.net", "public suffix or shared CDN apex"),
        ("co.uk", "public suffix or shared CDN apex"),
        ("*.com", "public suffix or shared CDN apex"),
    ],
)
def test_lint_catches_too_broad_rules(domain: str, reason: str) -> None:
    (problem,) = too_broad_rules(demo_entry(domain))
    assert problem.endswith(f"{domain}: {reason}")


@pytest.mark.parametrize(
    "domain", ["weixin.qq.com", "mask.icloud.com", "dns.google", "p16-tiktokcdn-com.akamaized.net"]
)
def test_lint_allows_specific_hosts_below_broad_parents(domain: str) -> None:
    assert too_broad_rules(demo_entry(domain)) == []


def test_lint_catches_an_override_without_a_note() -> None:
    assert overrides_without_note(demo_entry("x.example", "nxdomain", "why")) == []
    (problem,) = overrides_without_note(demo_entry("x.example", "nxdomain"))
    assert "answer nxdomain without a note" in problem


def test_lint_catches_duplicate_rules() -> None:
    entry = demo_entry("x.example")
    assert duplicate_rules(entry) == []
    doubled = dataclasses.replace(entry, rules=(*entry.rules, entry.rules[0]))
    (problem,) = duplicate_rules(doubled)
    assert "x.example: duplicate rule" in problem


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
    entry = load_catalogue_entry("tiktok")
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


TELEGRAM_WEB = frozenset(
    {"comments.app", "contest.com", "graph.org", "quiz.directory", "t.me", "tdesktop.com",
     "telega.one", "telegra.ph", "telegram-cdn.org", "telegram.dog", "telegram.me", "telegram.org",
     "telegram.space", "telesco.pe", "tg.dev", "tx.me", "usercontent.dev"}
)  # fmt: skip


@pytest.mark.parametrize(
    ("entry_id", "domains", "authorities", "partial"),
    [
        (
            "capcut",
            {"capcut.com", "*.capcutapi.com", "*.capcutapi.us", "*.capcutw.us"},
            {"House of Representatives", "Virginia"},
            False,
        ),
        (
            "wechat",
            {"wechat.com", "weixin.qq.com", "weixin.qq.com.cn", "weixinbridge.com", "wx.qq.com"},
            {"Canada", "Virginia"},
            False,
        ),
        ("telegram", TELEGRAM_WEB, {"Ukraine"}, True),
        ("deepseek", {"deepseek.com"}, {"Italy", "Taiwan", "Australia", "South Korea"}, False),
        (
            "kaspersky",
            {"kaspersky.com", "kaspersky-labs.com"},
            {"Homeland Security", "Canada"},
            False,
        ),
        (
            "doh-bypass",
            {"use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com",
             "mask-canary.icloud.com", "mask-api.icloud.com", "mask.apple-dns.net",
             "doh.dns.apple.com", "resolver.arpa"},
            {"IETF", "Mozilla", "Apple"},
            True,
        ),
    ],
)  # fmt: skip
def test_entry_content(
    entry_id: str, domains: set[str], authorities: set[str], partial: bool
) -> None:
    entry = load_catalogue_entry(entry_id)
    assert {rule.domain for rule in entry.rules} == domains
    named = " ".join(reference.authority for reference in entry.references)
    assert {who for who in authorities if who not in named} == set()
    assert entry.partial is partial


def test_telegram_says_why_dns_blocking_is_partial() -> None:
    entry = load_catalogue_entry("telegram")
    assert entry.coverage_note is not None
    assert "IP addresses" in entry.coverage_note


@pytest.mark.parametrize(
    ("entry_id", "unverified"),
    [
        ("kaspersky", {"kaspersky.com", "kaspersky-labs.com"}),
        ("doh-bypass", {"mask-api.icloud.com", "mask.apple-dns.net", "doh.dns.apple.com"}),
        ("capcut", {"*.capcutw.us"}),
        ("wechat", set()),
    ],
)
def test_weakly_sourced_rules_are_marked_unverified(entry_id: str, unverified: set[str]) -> None:
    entry = load_catalogue_entry(entry_id)
    assert {rule.domain for rule in entry.rules if rule.unverified} == unverified


def test_kaspersky_cites_the_dhs_directive() -> None:
    references = load_catalogue_entry("kaspersky").references
    decisions = " ".join(reference.decision for reference in references)
    assert "Binding Operational Directive 17-01" in decisions


def test_public_doh_endpoints_are_a_separate_opt_in_entry() -> None:
    bypass = load_catalogue_entry("doh-bypass")
    endpoints = load_catalogue_entry("doh-endpoints")
    listed = {rule.domain for rule in endpoints.rules}
    assert {"dns.google", "cloudflare-dns.com", "dns.quad9.net", "doh.opendns.com",
            "dns.nextdns.io", "doh.mullvad.net"} <= listed  # fmt: skip
    assert listed.isdisjoint(rule.domain for rule in bypass.rules)
    assert "doh-endpoints" in bypass.description
    assert "opt-in" in endpoints.name.lower()
    assert endpoints.partial


def test_doh_bypass_rules_all_force_a_negative_answer() -> None:
    answers = {rule.domain: rule.answer for rule in load_catalogue_entry("doh-bypass").rules}
    assert answers.pop("resolver.arpa") == "nodata"
    assert set(answers.values()) == {"nxdomain"}


# ----- the catalogue through the real matcher (lists.build_blocking) -----

ALL_LISTS = build_blocking(BUNDLED)


def test_every_entry_loads_into_one_matcher() -> None:
    entries = load_catalogue()
    assert ALL_LISTS.sizes == {entry.id: len(entry.rules) for entry in entries}
    assert len(ALL_LISTS.matcher) == sum(len(entry.rules) for entry in entries)


@pytest.mark.parametrize(
    ("qname", "list_name", "answer"),
    [
        ("use-application-dns.net", "doh-bypass", "nxdomain"),
        ("mask.icloud.com", "doh-bypass", "nxdomain"),
        ("mask-h2.icloud.com", "doh-bypass", "nxdomain"),
        ("resolver.arpa", "doh-bypass", "nodata"),
        ("_dns.resolver.arpa", "doh-bypass", "nodata"),
        ("icloud.com", None, None),
        ("www.icloud.com", None, None),
        ("weixin.qq.com", "wechat", None),
        ("long.weixin.qq.com", "wechat", None),
        ("qq.com", None, None),
        ("mail.qq.com", None, None),
        ("web.telegram.org", "telegram", None),
        ("editor-api.capcutapi.com", "capcut", None),
        ("capcutapi.com", None, None),
        ("chat.deepseek.com", "deepseek", None),
        ("dns64.dns.google", "doh-endpoints", None),
        ("www.google.com", None, None),
        ("mozilla.cloudflare-dns.com", "doh-endpoints", None),
        ("www.cloudflare.com", None, None),
    ],
)
def test_names_resolve_to_the_expected_entry_and_answer(
    qname: str, list_name: str | None, answer: str | None
) -> None:
    hit = ALL_LISTS.matcher.lookup(from_text(qname))
    if list_name is None:
        assert hit is None, hit
        return
    assert hit is not None
    assert (hit[0].list_name, hit[0].answer) == (list_name, answer)


def test_doh_bypass_alone_gives_the_canary_nxdomain_and_resolver_arpa_nodata() -> None:
    matcher = build_blocking(["doh-bypass"]).matcher
    canary = matcher.lookup(from_text("use-application-dns.net"))
    ddr = matcher.lookup(from_text("_dns.resolver.arpa"))
    assert canary is not None and canary[0] == BlockRule(
        "doh-bypass", "use-application-dns.net", "nxdomain"
    )
    assert ddr is not None and ddr[0] == BlockRule("doh-bypass", "resolver.arpa", "nodata")


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
    entry = parse_catalogue_entry(VALID, "demo.yaml")
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


def test_dns_coverage_defaults_to_full() -> None:
    entry = parse_catalogue_entry(VALID, "demo.yaml")
    assert (entry.dns_coverage, entry.coverage_note, entry.partial) == ("full", None, False)


def test_partial_dns_coverage_keeps_its_note() -> None:
    text = VALID + "dns_coverage: partial\ncoverage_note: >-\n  Apps use\n  built-in addresses.\n"
    entry = parse_catalogue_entry(text, "demo.yaml")
    assert (entry.dns_coverage, entry.coverage_note, entry.partial) == (
        "partial",
        "Apps use built-in addresses.",
        True,
    )


def test_expected_id_must_match() -> None:
    assert parse_catalogue_entry(VALID, "demo.yaml", expected_id="demo").id == "demo"
    with pytest.raises(ListError) as info:
        parse_catalogue_entry(VALID, "other.yaml", expected_id="other")
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
        (VALID + "dns_coverage: partial\n", ["src:20: coverage_note: missing"]),
        (VALID + "dns_coverage: some\n", ["src:20: dns_coverage: must be one of: full, partial"]),
        (VALID + "dns_coverage: [partial]\n", ["src:20: dns_coverage: expected text, got a list"]),
        (
            VALID + "coverage_note: why\n",
            ["src:20: coverage_note: only allowed with dns_coverage: partial"],
        ),
        (
            VALID + "dns_coverage: full\ncoverage_note: why\n",
            ["src:21: coverage_note: only allowed with dns_coverage: partial"],
        ),
        (
            VALID + "dns_coverage: partial\ncoverage_note: ''\n",
            ["src:21: coverage_note: must not be empty"],
        ),
    ],
)
def test_parse_errors_name_file_line_and_key(text: str, expected: list[str]) -> None:
    with pytest.raises(ListError) as info:
        parse_catalogue_entry(text, "src")
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
        parse_catalogue_entry(text, "src")
    keys = [problem.split(": ")[1] for problem in info.value.problems]
    assert keys == ["name", "references[0].date", "rules[0].domain"]


def test_load_entry_unknown_id() -> None:
    with pytest.raises(ListError, match="unknown catalogue entry"):
        load_catalogue_entry("no-such-app")


# ----- load_catalogue and the table for `dnswarden catalogue` -----


def test_load_catalogue_returns_every_entry_sorted_by_id() -> None:
    entries = load_catalogue()
    assert [entry.id for entry in entries] == BUNDLED


def test_load_catalogue_reports_the_problems_of_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "good.yaml").write_text(VALID.replace("id: demo", "id: good"), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(VALID.replace("name: Demo", "name: 5"), encoding="utf-8")
    (tmp_path / "worse.yaml").write_text("id: worse\n", encoding="utf-8")
    monkeypatch.setattr(catalogue, "catalogue_dir", lambda: tmp_path)
    with pytest.raises(ListError) as info:
        load_catalogue()
    files = {Path(problem.split(":", 1)[0]).name for problem in info.value.problems}
    assert files == {"bad.yaml", "worse.yaml"}
    assert any("bad.yaml:1: id: 'demo' must equal the file name 'bad'" in problem
               for problem in info.value.problems)  # fmt: skip


TABLE_DEMO = (
    VALID.replace(
        "  - authority: Somebody\n",
        "  - authority: Belgium, National Security Council\n",
    ).replace("date: 2023-02-23", "date: 2023-03-10")
    + textwrap.dedent(
        """\
        dns_coverage: partial
        coverage_note: Apps use built-in addresses.
        """
    )
).replace(
    "rules:\n",
    "  - {authority: IETF (Internet Engineering Task Force), decision: RFC, date: 2023-11-06,\n"
    "     url: https://www.rfc-editor.org/rfc/rfc9462, verified: true}\nrules:\n",
)


def test_catalogue_table_row() -> None:
    entry = parse_catalogue_entry(TABLE_DEMO, "demo.yaml")
    (row,) = catalogue_table([entry])
    assert list(row) == list(TABLE_COLUMNS)
    assert row == {
        "id": "demo",
        "name": "Demo",
        "vendor": "Demo Corp.",
        "domains": "3",
        "references": "BE 2023-03-10; IETF 2023-11-06",
        "last_reviewed": "2026-01-02",
        "notes": "partial DNS coverage; 1 unverified rule; 1/2 references unverified; "
        "1 answer override",
    }


def test_catalogue_table_of_a_plain_entry_has_no_notes() -> None:
    entry = parse_catalogue_entry(VALID, "demo.yaml")
    plain = dataclasses.replace(
        entry,
        rules=entry.rules[:1],
        references=tuple(dataclasses.replace(ref, verified=True) for ref in entry.references),
    )
    (row,) = catalogue_table([plain])
    assert (row["domains"], row["references"], row["notes"]) == ("1", "Somebody 2023-02-23", "")


def test_catalogue_table_of_the_bundled_entries() -> None:
    entries = load_catalogue()
    rows = catalogue_table(entries)
    assert [row["id"] for row in rows] == BUNDLED
    for entry, row in zip(entries, rows, strict=True):
        assert row["domains"] == str(len(entry.rules))
        assert ("partial DNS coverage" in row["notes"]) is entry.partial
        assert row["references"].count(";") == len(entry.references) - 1


@pytest.mark.parametrize(
    ("authority", "label"),
    [
        ("Belgium, National Security Council (chaired by the Prime Minister)", "BE"),
        ("European Commission (Corporate Management Board)", "EU"),
        ("United States Office of Management and Budget", "US"),
        ("Commonwealth of Virginia (Governor Glenn Youngkin), United States", "US-VA"),
        ("Texas (Governor Greg Abbott), United States", "US-TX"),
        ("Government of Canada (Treasury Board of Canada Secretariat)", "CA"),
        ("Ukraine, National Coordination Centre for Cybersecurity", "UA"),
        ("South Korea, Ministries of Foreign Affairs", "KR"),
        ("IETF (Internet Engineering Task Force)", "IETF"),
        ("Mozilla (Firefox)", "Mozilla"),
        ("Some Very Long Standards Organisation", "Some Very Long Standa..."),
    ],
)
def test_reference_label(authority: str, label: str) -> None:
    reference = Reference(authority, "decided", datetime.date(2024, 9, 19), "u", False)
    assert reference_label(reference) == f"{label} 2024-09-19"
