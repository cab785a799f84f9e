"""Tests for lists/formats.py and lists/rules.py: every line format, detection, the bulk path,
regex guards, reports (RPZ zone files: test_rpz.py)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from list_files import names_of, parse

from resolver.lists import formats
from resolver.lists.formats import (
    FLAG_ALLOW_BELOW,
    FLAG_ALLOW_SELF,
    FLAG_BELOW,
    FLAG_SELF,
    FLAG_WILD,
    SUBTREE,
    ParsedRules,
    answer_of,
    broken,
    check_regex,
    detect_format,
    parse_rules,
)

# ----- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.com\nb.org\n", "domains"),
        ("# comment\n\nexample.com\n", "domains"),
        ("0.0.0.0 a.com\n127.0.0.1 b.com\n", "hosts"),
        (":: a.com\n", "hosts"),
        ("! Title: x\n||a.com^\n", "adblock"),
        ("[Adblock Plus 2.0]\na.com\n", "adblock"),
        ("@@||ok.com^\n", "adblock"),
        ("$TTL 300\n@ IN SOA ns. h. 1 2 3 4 5\n", "rpz"),
        ("x.com CNAME .\n", "rpz"),
        ("*.x.com IN CNAME *.\n", "rpz"),
        ("/^ads?[0-9]+\\./\n/track/\n", "regex"),
        ("", "domains"),
    ],
)
def test_detect_format(text: str, expected: str) -> None:
    fmt, why = detect_format(text.encode())
    assert fmt == expected, why
    assert why


def test_auto_reports_what_it_detected() -> None:
    parsed = parse_rules(b"# hi\n||a.com^\n", "f", "auto")
    assert parsed.format == "adblock"
    assert "line 2" in parsed.detected and "||a.com^" in parsed.detected


# ----- domains and hosts ----------------------------------------------------------------------

HOSTS_BOILERPLATE = [
    "127.0.0.1 localhost",
    "::1 ip6-localhost ip6-loopback",
    "255.255.255.255 broadcasthost",
    "0.0.0.0 0.0.0.0",
]
HOSTS_BOILERPLATE_MORE = [
    "127.0.0.1 localhost.localdomain",
    "fe80::1%lo0 localhost",
    "ff02::1 ip6-allnodes",
    "127.0.0.1 LOCALHOST",
]


@pytest.mark.parametrize(
    ("lines", "names", "errors"),
    [
        (["tiktok.com"], {"tiktok.com": SUBTREE}, []),
        (["  WWW.TikTok.COM.  "], {"www.tiktok.com": SUBTREE}, []),
        (["a.com\r", "b.com # c"], {"a.com": SUBTREE, "b.com": SUBTREE}, []),
        (["bücher.de"], {"xn--bcher-kva.de": SUBTREE}, []),
        (["0.0.0.0 a.com b.com"], {"a.com": SUBTREE, "b.com": SUBTREE}, []),
        (["127.0.0.1 x.com", ":: y.com"], {"x.com": SUBTREE, "y.com": SUBTREE}, []),
        (HOSTS_BOILERPLATE, {}, []),
        (["*.w.com"], {"w.com": FLAG_BELOW | FLAG_WILD}, []),
        (["w.com", "*.w.com"], {"w.com": SUBTREE | FLAG_WILD}, []),
        (["a..b"], {}, ["f.txt:1: 'a..b': empty label"]),
        (["ok.com", "x" * 64 + ".com"], {"ok.com": SUBTREE}, ["f.txt:2: 'xxxx"]),
        (["y" * 250 + ".com"], {}, ["f.txt:1: "]),
        (["1.2.3.4"], {}, ["f.txt:1: '1.2.3.4' is an address"]),
        (["999.1.1.1"], {"999.1.1.1": SUBTREE}, []),
        (["192.168.1.10 printer.lan"], {}, ["f.txt:1: hosts line maps to '192.168.1.10'"]),
        (["a.com b.com"], {}, ["f.txt:1: expected one domain per line"]),
        (["*"], {}, ["f.txt:1: '*': a wildcard at the top"]),
        (["a.*.com"], {}, ["f.txt:1: 'a.*.com': '*' is only allowed in the leftmost label"]),
        ([".lead.com"], {}, ["f.txt:1: '.lead.com': empty label"]),
        (["caf\ufffd.com"], {}, ["f.txt:1: "]),
        (["", "   ", "\t"], {}, []),
        (["# a comment", "#tiktok.com"], {}, []),
        (["tiktok.com#glued"], {"tiktok.com": SUBTREE}, []),
        (["::1 x.com"], {"x.com": SUBTREE}, []),
        (["0.0.0.0\tx.com\ty.com # ads"], {"x.com": SUBTREE, "y.com": SUBTREE}, []),
        (HOSTS_BOILERPLATE_MORE, {}, []),
        (["127.0.0.1 localhost x.com"], {"x.com": SUBTREE}, []),
        (["127.0.0.1 localhost", "localhost"], {"localhost": SUBTREE}, []),
        (["a/b.com"], {}, ["f.txt:1: 'a/b.com': invalid character '/'"]),
        (["0.0.0.0 *.x.com"], {}, ["f.txt:1: '*.x.com': wildcard '*' is not allowed here"]),
        (["0.0.0.0"], {}, ["f.txt:1: '0.0.0.0' is an address, not a domain name"]),
        (["2001:db8::1"], {}, ["f.txt:1: '2001:db8::1' is an address"]),
        (["0.0.0.0 1.2.3.4 ok.com"], {"ok.com": SUBTREE}, ["f.txt:1: '1.2.3.4' is an address"]),
        (["ok.com", "", "# c", "evil\x1b.com"], {"ok.com": SUBTREE}, ["f.txt:4: 'evil\\x1b.com'"]),
        (["."], {}, ["f.txt:1: the root '.' cannot be blocked"]),
    ],
)
def test_domains_and_hosts(lines: list[str], names: dict[str, int], errors: list[str]) -> None:
    parsed = parse("\n".join(lines))
    assert names_of(parsed) == names
    assert parsed.error_count == len(errors) == len(parsed.errors)
    for error, start in zip(parsed.errors, errors, strict=True):
        assert error.startswith(start), parsed.errors


def test_label_wildcards_are_glob_rules() -> None:
    parsed = parse("v*.tiktokcdn-eu.com\np16-*.x.com\n")
    assert [(g.pattern, g.allow, g.line) for g in parsed.globs] == [
        ("v*.tiktokcdn-eu.com", False, 1),
        ("p16-*.x.com", False, 2),
    ]


def test_label_wildcards_are_normalised() -> None:
    parsed = parse("*.capcut.test\nV*.tiktokcdn-eu.com.\n")
    assert names_of(parsed) == {"capcut.test": FLAG_BELOW | FLAG_WILD}
    assert [g.pattern for g in parsed.globs] == ["v*.tiktokcdn-eu.com"]


def test_counts_duplicates_and_rule_lines() -> None:
    parsed = parse("# head\na.com\nA.COM.\n\n0.0.0.0 a.com b.com\nb.com\nbad..x\n")
    assert names_of(parsed) == {"a.com": SUBTREE, "b.com": SUBTREE}
    assert parsed.duplicates == 3
    assert parsed.rule_lines == 5
    assert parsed.accepted == 2
    assert parsed.errors == ["f.txt:7: 'bad..x': empty label"]


def test_first_n_errors_are_kept_and_all_counted() -> None:
    parsed = parse("\n".join(["x..y"] * 7), max_errors=3)
    assert parsed.error_count == 7
    assert [e.split(":")[1] for e in parsed.errors] == ["1", "2", "3"]


def test_line_numbers_survive_bom_crlf_and_dirty_lines() -> None:
    data = "\ufeffa.com\r\n\r\n# x\r\nb..com\r\nc.com\r\n0.0.0.0 d.com e.com\r\nf..\r\n".encode()
    parsed = parse_rules(data, "f", "domains")
    assert names_of(parsed).keys() == {"a.com", "c.com", "d.com", "e.com"}
    assert parsed.errors == ["f:4: 'b..com': empty label", "f:7: 'f..': empty label"]


def test_only_newline_splits_lines() -> None:
    """A form feed or vertical tab inside a line must not shift later line numbers."""
    parsed = parse_rules(b"a.com\x0cb.com\nbad..name\n", "f", "domains")
    assert parsed.error_count == 2
    assert parsed.errors[0].startswith("f:1: ")
    assert parsed.errors[1].startswith("f:2: ")


def test_undecodable_bytes_are_bad_lines_not_crashes() -> None:
    parsed = parse_rules(b"ok.com\ncaf\xe9.com\n# caf\xe9 comment\n", "f", "domains")
    assert names_of(parsed) == {"ok.com": SUBTREE}
    assert len(parsed.errors) == 1 and parsed.errors[0].startswith("f:2: ")


# The bulk path must decide exactly as the line-by-line parser, which explains every error.
_LINE = st.one_of(
    st.sampled_from(
        [
            "a.com",
            "B.org.",
            "0.0.0.0 c.net",
            "0.0.0.0 c.net d.net",
            "127.0.0.1 localhost",
            "localhost",
            "# c",
            "",
            "   ",
            "x..y",
            "1.2.3.4",
            "*.w.com",
            "v*.g.com",
            "a.com # t",
            "-.x",
            "\t e.com\t",
            "1.2.3",
            "z" * 63 + ".com",
            "z" * 64 + ".com",
        ]
    ),
    st.text(alphabet="abc.-_*0 #\t", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=25))
def test_bulk_path_agrees_with_line_by_line(lines: list[str]) -> None:
    data = "\n".join(lines).encode()
    bulk = parse_rules(data, "f", "domains")
    slow = ParsedRules(source="f", format="domains")
    formats._parse_per_line(slow, data, formats._domains_line)
    assert names_of(bulk) == names_of(slow)
    assert bulk.errors == slow.errors
    assert bulk.error_count == slow.error_count
    assert [g.pattern for g in bulk.globs] == [g.pattern for g in slow.globs]
    assert bulk.rule_lines == slow.rule_lines
    assert bulk.duplicates == slow.duplicates
    assert bulk.dotless == slow.dotless


@pytest.mark.parametrize(
    ("text", "fmt", "dotless"),
    [
        ("a.com\ncom\n\n# c\nnet\nx.org", "domains", {b"com", b"net"}),
        ("com\ncom\n\n\nlast", "domains", {b"com", b"last"}),
        ("0.0.0.0 localhost\n0.0.0.0 cn\n127.0.0.1 a.cn", "hosts", {b"cn"}),
        ("||cn^\n@@||io^\n||a.cn^\n\n", "adblock", {b"cn", b"io"}),
        ("a.com\nb.net\n", "domains", set()),
    ],
)  # fmt: skip
def test_names_without_a_dot_are_found_whatever_the_path(
    text: str, fmt: str, dotless: set[bytes]
) -> None:
    assert parse(text, fmt).dotless == dotless


# ----- adblock --------------------------------------------------------------------------------

_ADBLOCK_LINE = st.one_of(
    st.sampled_from(
        [
            "||a.com^",
            "||A.com.^",
            "@@||b.org^",
            "|exact.com^",
            "||",
            "^",
            "||^",
            "! comment",
            "[Adblock Plus 2.0]",
            "0.0.0.0 c.net",
            "||x.com^$important",
            "x.com##.ad",
            "/^re/",
            "||*.w.com^",
            "||v*.g.com^",
            "||.^",
            "||bad..com^",
        ]
    ),
    st.tuples(
        st.sampled_from(["", "||", "@@||", "|"]),
        st.text(alphabet="ab.-_*0|^@!#$/ ", max_size=10),
        st.sampled_from(["", "^", ".", "^$important"]),
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ADBLOCK_LINE, max_size=25))
def test_adblock_bulk_path_agrees_with_line_by_line(lines: list[str]) -> None:
    """As for domains; only `duplicates` may differ: the bulk path takes its lines first, so of
    ``|x^`` and a later ``x`` it calls the first the duplicate, where file order calls neither."""
    data = "\n".join(lines).encode()
    bulk = parse_rules(data, "f", "adblock")
    slow = ParsedRules(source="f", format="adblock")
    formats._parse_per_line(slow, data, formats._adblock_line)
    assert names_of(bulk) == names_of(slow)
    assert bulk.errors == slow.errors
    assert bulk.error_count == slow.error_count
    assert bulk.skipped == slow.skipped
    assert [(g.pattern, g.allow) for g in bulk.globs] == [(g.pattern, g.allow) for g in slow.globs]
    assert [r.pattern for r in bulk.regexes] == [r.pattern for r in slow.regexes]
    assert bulk.rule_lines == slow.rule_lines
    assert bulk.dotless == slow.dotless


@pytest.mark.parametrize(
    ("line", "names", "skipped", "error"),
    [
        ("||tiktok.com^", {"tiktok.com": SUBTREE}, {}, ""),
        ("||TikTok.com^|", {"tiktok.com": SUBTREE}, {}, ""),
        ("||tiktok.com", {"tiktok.com": SUBTREE}, {}, ""),
        ("|exact.com^", {"exact.com": FLAG_SELF}, {}, ""),
        ("plain.com", {"plain.com": SUBTREE}, {}, ""),
        ("||*.w.com^", {"w.com": FLAG_BELOW | FLAG_WILD}, {}, ""),
        ("@@||ok.com^", {"ok.com": FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW}, {}, ""),
        ("@@|ok.com^", {"ok.com": FLAG_ALLOW_SELF}, {}, ""),
        ("||x.com^$important", {"x.com": SUBTREE}, {}, ""),
        ("||x.com^$third-party", {}, {"modifier $third-party": 1}, ""),
        ("||x.com^$dnstype=AAAA", {}, {"modifier $dnstype": 1}, ""),
        ("example.org##.banner", {}, {"cosmetic rule": 1}, ""),
        ("example.org#@#.banner", {}, {"cosmetic rule": 1}, ""),
        ("example.org$$script", {}, {"cosmetic rule": 1}, ""),
        ("||x.com/ads/*", {}, {"URL rule (path or scheme)": 1}, ""),
        ("||ads.*^", {}, {"partial-name rule": 1}, ""),
        ("0.0.0.0 h.com", {"h.com": SUBTREE}, {}, ""),
        ("! comment", {}, {}, ""),
        ("# comment", {}, {}, ""),
        ("[Adblock Plus 2.0]", {}, {}, ""),
        ("||bad..com^", {}, {}, "f.txt:1: 'bad..com': empty label"),
        ("||a|b^", {}, {}, "f.txt:1: '||a|b^': not an adblock DNS rule"),
        ("||", {}, {}, "f.txt:1: '||': not an adblock DNS rule"),
        ("^", {}, {}, "f.txt:1: '^': not an adblock DNS rule"),
        ("||^", {}, {}, "f.txt:1: '||^': not an adblock DNS rule"),
    ],
)
def test_adblock_lines(
    line: str, names: dict[str, int], skipped: dict[str, int], error: str
) -> None:
    parsed = parse(line, "adblock")
    assert names_of(parsed) == names
    assert parsed.skipped == skipped
    assert parsed.errors == ([error] if error else [])


def test_adblock_regex_and_exception_regex() -> None:
    parsed = parse("/^ads?[0-9]*\\./\n@@/^ads7\\./\n/(a+)+$/\n", "adblock")
    assert [(r.pattern, r.allow) for r in parsed.regexes] == [
        ("^ads?[0-9]*\\.", False),
        ("^ads7\\.", True),
    ]
    assert parsed.errors and parsed.errors[0].startswith("f.txt:3: '(a+)+$': nested")


# ----- regex rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"^ads?[0-9]*\.", ""),
        (r"^(.+[-_.])??adse?rv(er?|ice)?s?[0-9]*[-.]", ""),
        (r"^.*a.*b", ""),
        (r"track", ""),
        (r"(a+)+$", "nested quantifiers"),
        (r"(x*y*)*", "nested quantifiers"),
        (r"(a|ab)*c", "alternation inside a repeated group"),
        (r"(a)\1", "backreferences"),
        (r"(?P<n>a)(?P=n)", "backreferences"),
        (r"(a)?(?(1)a|b)", "backreferences"),
        (r".*a.*b", "2 unbounded quantifiers"),
        (r"^.*a.*b.*c", "3 unbounded quantifiers"),
        (r"[", "invalid regex"),
        ("a" * 300, "regex is 300 characters"),
    ],
)
def test_check_regex(pattern: str, problem: str) -> None:
    result = check_regex(pattern)
    assert (problem in result and bool(result)) if problem else result == ""


def test_accepted_regexes_stay_fast_on_hostile_names() -> None:
    """What `check_regex` lets through must not take long on a crafted 253-octet name."""
    import re

    hostile = ["a" * 250 + ".b", "a." * 126, "-" * 253, "a" * 120 + "." + "b" * 120 + ".x"]
    for pattern in [r"^.*a.*b", r"a.*b", r"^(a|b)\w+\.x$", r"^(.+[-_.])??ad[0-9]*[-.]"]:
        assert check_regex(pattern) == ""
        compiled = re.compile(pattern)
        started = time.process_time()
        for name in hostile:
            compiled.search(name)
        assert time.process_time() - started < 0.5, pattern


def test_regex_format_and_cap() -> None:
    parsed = parse("# c\n/^a/\nb$\n@@/^ok/\n/^c/\n", "regex", max_regex=2)
    assert [(r.pattern, r.allow) for r in parsed.regexes] == [("^a", False), ("b$", False)]
    assert parsed.error_count == 2
    assert all("limits.max_regex_rules" in e for e in parsed.errors)
    assert parsed.errors[0].startswith("f.txt:4: ")


# ----- reports and the broken rule ------------------------------------------------------------


@pytest.mark.parametrize(
    ("good", "bad", "max_bad", "is_broken"),
    [
        (100, 0, 0, False),
        (100, 3, 3, False),  # at the absolute cap
        (1000, 40, 3, False),  # over the cap but under 5%
        (100, 10, 3, True),  # over both
        (0, 5, 3, True),  # an HTML error page
        (0, 5, 10, False),
    ],
)
def test_broken(good: int, bad: int, max_bad: int, is_broken: bool) -> None:
    parsed = parse("\n".join([f"n{i}.com" for i in range(good)] + ["<html>"] * bad))
    message = broken(parsed, max_bad)
    assert bool(message) == is_broken
    if is_broken:
        assert message.startswith(f"f.txt: {bad} invalid lines, more than the allowed {max_bad}")


def test_directory_files_merge_into_one_result() -> None:
    first = parse_rules(b"a.com\nb.com\n", "one.txt", "domains")
    both = parse_rules(b"b.com\n*.c.com\n||d.com^\n", "two.txt", "domains", into=first)
    assert both is first
    assert names_of(both) == {
        "a.com": SUBTREE,
        "b.com": SUBTREE,
        "c.com": FLAG_BELOW | FLAG_WILD,
    }
    assert both.duplicates == 1
    assert both.errors == ["two.txt:3: '||d.com^': invalid character '|' in label '||d'"]
    mixed = parse_rules(b"||e.com^\n", "three.txt", "adblock", into=both)
    assert mixed.format == "mixed" and "e.com" in names_of(mixed)


def test_summary() -> None:
    parsed = parse("||a.com^\n||a.com^\nx.com##.ad\n/^r/\n||v*.q.com^\n", "adblock")
    summary = parsed.summary()
    assert summary == {
        "format": "adblock",
        "detected": "",
        "accepted": 3,
        "duplicates": 1,
        "invalid": 0,
        "skipped": {"cosmetic rule": 1},
        "regexes": 1,
        "wildcards": 1,
    }


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown list format"):
        parse_rules(b"a.com", "f", "csv")


@pytest.mark.parametrize(
    ("flags", "answer"),
    [(SUBTREE, None), (FLAG_SELF | 1 << 5, "nxdomain"), (4 << 5, "refused"), (3 << 5, "null_ip")],
)
def test_answer_of(flags: int, answer: str | None) -> None:
    assert answer_of(flags) == answer


def test_allow_flags_never_carry_an_answer() -> None:
    parsed = parse("ok.test CNAME rpz-passthru.\n", "rpz")
    assert parsed.flagged == {b"ok.test": FLAG_ALLOW_SELF}
    assert FLAG_ALLOW_BELOW & parsed.flagged[b"ok.test"] == 0
