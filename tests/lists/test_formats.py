"""Tests for lists/formats.py: every list format, detection, the bulk path, regex guards."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def names_of(parsed: ParsedRules) -> dict[str, int]:
    """Every listed name with its flags (plain names are SUBTREE), as text."""
    out = {name.decode(): SUBTREE for name in parsed.plain}
    for name, flags in parsed.flagged.items():
        out[name.decode()] = out.get(name.decode(), 0) | flags
    return out


def parse(text: str, fmt: str = "domains", **kwargs: object) -> ParsedRules:
    return parse_rules(text.encode(), "f.txt", fmt, **kwargs)  # type: ignore[arg-type]


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


# ----- RPZ ------------------------------------------------------------------------------------

RPZ_ZONE = """\
$TTL 300
$ORIGIN rpz.example.
@   IN SOA ns.rpz.example. hostmaster.rpz.example. (
        2024010101 ; serial
        3600 600 86400 300 )
    IN NS  ns.rpz.example.
tiktok.com          CNAME .
*.tiktok.com        CNAME .
nodata.test         CNAME *.
*.below.test        CNAME .
ok.tiktok.com       CNAME rpz-passthru.
*.ok.tiktok.com     CNAME rpz-passthru.
null.test   300 IN  A 0.0.0.0
null.test           AAAA ::
redirect.test       A 10.0.0.1
drop.test           CNAME rpz-drop.
abs.test.rpz.example. CNAME .
32.1.2.0.10.rpz-ip  CNAME .
ns.evil.rpz-nsdname CNAME .
walled.test         CNAME walled.garden.example.
txt.test            TXT "x ; y"
outside.example.    CNAME .
"""


def test_rpz_zone() -> None:
    parsed = parse(RPZ_ZONE, "rpz")
    nx, nodata, null, drop, local = (
        formats.ANSWER_CODES[a] << 5 for a in ("nxdomain", "nodata", "null_ip", "drop", "local")
    )
    # DROP and local data (a redirect A, a CNAME to a name, TXT) are actions of their own now.
    assert names_of(parsed) == {
        "tiktok.com": SUBTREE | FLAG_WILD | nx,
        "nodata.test": FLAG_SELF | nodata,
        "below.test": FLAG_BELOW | FLAG_WILD | nx,
        "ok.tiktok.com": FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW,
        "null.test": FLAG_SELF | null,
        "redirect.test": FLAG_SELF | local,
        "drop.test": FLAG_SELF | drop,
        "abs.test": FLAG_SELF | nx,
        "walled.test": FLAG_SELF | local,
        "txt.test": FLAG_SELF | local,
    }
    assert set(parsed.response_ips) == {"10.0.2.1/32"}
    assert parsed.skipped == {"rpz-nsdname trigger": 1}
    assert parsed.errors == ["f.txt:22: 'outside.example' is outside the zone 'rpz.example'"]
    assert parsed.duplicates == 1  # null.test A and AAAA are one rule


def test_rpz_fragment_without_soa_keeps_names() -> None:
    parsed = parse("x.com CNAME .\n*.x.com CNAME .\ny.org. IN CNAME *.\n", "rpz")
    assert set(names_of(parsed)) == {"x.com", "y.org"}
    assert answer_of(parsed.flagged[b"y.org"]) == "nodata"


@pytest.mark.parametrize(
    ("zone", "error"),
    [
        ("$INCLUDE other.zone\n", "f.txt:1: '$INCLUDE': directive not supported here"),
        ("x.com\n", "f.txt:1: record without a type"),
        ("  CNAME .\n", "f.txt:1: record without an owner name"),
        ("a..b CNAME .\n", "f.txt:1: 'a..b': empty label"),
    ],
)
def test_rpz_errors(zone: str, error: str) -> None:
    assert parse(zone, "rpz").errors == [error]


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


# ----- RPZ triggers and actions ---------------------------------------------------------------

RPZ_HEAD = (
    "$ORIGIN rpz.test.\n@ SOA ns.rpz.test. h.rpz.test. 1 3600 600 86400 300\n@ NS ns.rpz.test.\n"
)
A_1_2_3_4 = (1, bytes([1, 2, 3, 4]))


@pytest.mark.parametrize(
    ("record", "answer", "data"),
    [
        ("x.test CNAME .", "nxdomain", None),
        ("x.test CNAME *.", "nodata", None),
        ("x.test CNAME rpz-drop.", "drop", None),
        ("x.test CNAME rpz-tcp-only.", "tcp_only", None),
        ("x.test A 0.0.0.0", "null_ip", None),
        ("x.test AAAA ::", "null_ip", None),
        ("x.test A 1.2.3.4", "local", [A_1_2_3_4]),
        ("x.test 60 IN A 1.2.3.4", "local", [A_1_2_3_4]),
        ("x.test AAAA 2001:db8::1", "local", [(28, bytes.fromhex("20010db8" + "00" * 11 + "01"))]),
        ("x.test CNAME garden.example.", "local", [(5, b"\x06garden\x07example\x00")]),
        ("x.test CNAME garden", "local", [(5, b"\x06garden\x03rpz\x04test\x00")]),  # $ORIGIN
        ('x.test TXT "a b" c', "local", [(16, b"\x03a b\x01c")]),
        ("x.test MX 10 mx.example.", "local", [(15, b"\x00\x0a\x02mx\x07example\x00")]),
    ],
)
def test_rpz_qname_actions(record: str, answer: str, data: list[object] | None) -> None:
    parsed = parse(RPZ_HEAD + record + "\n", "rpz")
    assert parsed.errors == []
    assert answer_of(parsed.flagged[b"x.test"]) == answer
    assert parsed.flagged[b"x.test"] & (FLAG_SELF | FLAG_BELOW) == FLAG_SELF
    if data is None:
        assert "x.test" not in parsed.rpz_actions
    else:
        assert parsed.rpz_actions["x.test"] == (answer, data)


def test_rpz_passthru_is_an_allow_rule() -> None:
    parsed = parse(RPZ_HEAD + "ok.test CNAME rpz-passthru.\n*.ok.test CNAME rpz-passthru.\n", "rpz")
    assert parsed.flagged == {b"ok.test": FLAG_ALLOW_SELF | FLAG_ALLOW_BELOW}


def test_rpz_local_data_of_one_owner_adds_up_and_other_actions_are_skipped() -> None:
    zone = "x.test A 1.2.3.4\nx.test TXT t\nx.test A 1.2.3.4\nx.test CNAME .\n*.x.test CNAME .\n"
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.rpz_actions["x.test"] == ("local", [A_1_2_3_4, (16, b"\x01t")])
    assert parsed.duplicates == 1
    assert parsed.skipped == {"record beside another action at its owner (the first is kept)": 1}
    # `*.x.test` keeps its own action although the name's flags carry `x.test`'s (local).
    assert parsed.rpz_actions["*.x.test"] == ("nxdomain", [])
    assert parsed.flagged[b"x.test"] & SUBTREE == SUBTREE


@pytest.mark.parametrize(
    ("owner", "network"),
    [
        ("32.1.2.0.192", "192.0.2.1/32"),
        ("24.0.2.0.192", "192.0.2.0/24"),
        ("8.0.0.0.10", "10.0.0.0/8"),
        ("128.1.zz.db8.2001", "2001:db8::1/128"),
        ("48.zz.db8.2001", "2001:db8::/48"),
        ("128.8.7.6.5.4.3.2.1", "1:2:3:4:5:6:7:8/128"),
        ("128.1.zz", "::1/128"),
        ("64.zz.1.2001", "2001:1::/64"),
    ],
)
def test_rpz_network(owner: str, network: str) -> None:
    assert formats.rpz_network(owner) == network


@pytest.mark.parametrize(
    ("trigger", "key"),
    [("rpz-ip", "response_ips"), ("rpz-client-ip", "client_ips")],
)
def test_rpz_address_triggers(trigger: str, key: str) -> None:
    zone = (
        f"24.0.2.0.192.{trigger} CNAME .\n"
        f"32.5.2.0.192.{trigger} CNAME rpz-passthru.\n"
        f"32.6.2.0.192.{trigger} A 1.2.3.4\n"
        f"32.6.2.0.192.{trigger} A 1.2.3.4\n"
        f"48.zz.db8.2001.{trigger} CNAME rpz-drop.\n"
    )
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.errors == []
    rules = getattr(parsed, key)
    assert {net: (rule.action, rule.owner, rule.records) for net, rule in rules.items()} == {
        "192.0.2.0/24": ("nxdomain", f"24.0.2.0.192.{trigger}", ()),
        "192.0.2.5/32": ("passthru", f"32.5.2.0.192.{trigger}", ()),
        "192.0.2.6/32": ("local", f"32.6.2.0.192.{trigger}", (A_1_2_3_4,)),
        "2001:db8::/48": ("drop", f"48.zz.db8.2001.{trigger}", ()),
    }
    assert parsed.duplicates == 1
    assert parsed.flagged == {} and parsed.plain == {}
    assert parsed.accepted == 4


def test_rpz_name_server_triggers_are_counted_with_a_note() -> None:
    zone = "ns.evil.rpz-nsdname CNAME .\n*.evil.rpz-nsdname CNAME .\n32.1.1.1.1.rpz-nsip CNAME .\n"
    parsed = parse(RPZ_HEAD + zone, "rpz")
    assert parsed.errors == []
    assert parsed.skipped == {"rpz-nsdname trigger": 2, "rpz-nsip trigger": 1}
    summary = parsed.summary()
    assert summary["skipped"] == parsed.skipped
    assert str(summary["note"]).startswith("3 rpz-nsdname/rpz-nsip rules skipped")
    assert "note" not in parse(RPZ_HEAD + "x.test CNAME .\n", "rpz").summary()


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ("bad.rpz-ip CNAME .", "f.txt:4: 'bad.rpz-ip': an address trigger is PREFIX."),
        ("rpz-ip CNAME .", "f.txt:4: 'rpz-ip': an address trigger is PREFIX."),
        ("x.1.2.0.192.rpz-ip CNAME .", "f.txt:4: 'x.1.2.0.192.rpz-ip': prefix length 'x' is"),
        ("33.1.2.0.192.rpz-ip CNAME .", "f.txt:4: '33.1.2.0.192.rpz-ip': prefix length 33 is"),
        ("0.1.2.0.192.rpz-ip CNAME .", "f.txt:4: '0.1.2.0.192.rpz-ip': prefix length 0 is"),
        ("24.1.2.0.192.rpz-client-ip CNAME .", "f.txt:4: '24.1.2.0.192.rpz-client-ip': 192.0.2"),
        ("32.1.2.300.192.rpz-ip CNAME .", "f.txt:4: '32.1.2.300.192.rpz-ip': '192.300.2.1' is"),
        ("64.zz.1.zz.rpz-ip CNAME .", "f.txt:4: '64.zz.1.zz.rpz-ip': 'zz' may stand for one"),
        ("64.1.db8.2001.rpz-ip CNAME .", "f.txt:4: '64.1.db8.2001.rpz-ip': 3 address labels"),
        ("128.g.zz.rpz-ip CNAME .", "f.txt:4: '128.g.zz.rpz-ip': '::g' is not an IP address"),
        ("x.test CNAME rpz-nope.", "f.txt:4: 'x.test': CNAME 'rpz-nope.' is no RPZ action"),
        ("x.test CNAME a b", "f.txt:4: 'x.test': CNAME needs exactly one target name"),
        ("x.test MX ten mx.example.", "f.txt:4: 'x.test': MX 'ten mx.example.': "),
        ("x.test A 1.2.3", "f.txt:4: 'x.test': A '1.2.3': "),
        ("x.test BOGUS data", "f.txt:4: 'x.test': BOGUS 'data': unknown record type 'BOGUS'"),
        ("v*.x.test A 1.2.3.4", "f.txt:4: 'v*.x.test': local data needs a whole '*' label"),
        ("*.rpz.test. CNAME .", "f.txt:4: '*': a wildcard at the top would match every name"),
    ],
)
def test_rpz_malformed_records_name_file_line_and_owner(record: str, error: str) -> None:
    parsed = parse(RPZ_HEAD + record + "\n", "rpz")
    assert len(parsed.errors) == 1, parsed.errors
    assert parsed.errors[0].startswith(error), parsed.errors
    assert parsed.accepted == 0


def test_rpz_structure_records_are_skipped() -> None:
    zone = "x.test NS ns.example.\nx.test DNAME y.example.\nx.test RRSIG A 8 2 300 1 2 3 x. AA==\n"
    assert parse(RPZ_HEAD + zone, "rpz").skipped == {
        "NS record": 1,
        "DNAME record": 1,
        "RRSIG record": 1,
    }


def test_a_transferred_zone_reads_as_its_file_does() -> None:
    """Zone transfers are written out as text (`transfer.zone_text`) for this very parser: the
    same zone by file and by transfer gives the same rules."""
    import dns.zone

    from resolver.lists.transfer import zone_text

    text = (
        "$ORIGIN rpz.test.\n$TTL 300\n@ SOA ns.rpz.test. h.rpz.test. 7 3600 600 86400 300\n"
        "@ NS ns.rpz.test.\nnx.test CNAME .\n*.nx.test CNAME .\nnd.test CNAME *.\n"
        "ok.nx.test CNAME rpz-passthru.\ndrop.test CNAME rpz-drop.\ntcp.test CNAME rpz-tcp-only.\n"
        "local.test A 192.0.2.1\nlocal.test TXT \"a b\"\ncname.test CNAME garden.example.\n"
        "24.0.2.0.192.rpz-ip CNAME .\n48.zz.db8.2001.rpz-ip AAAA 2001:db8::1\n"
        "32.2.0.0.127.rpz-client-ip CNAME rpz-drop.\nns.evil.rpz-nsdname CNAME .\n"
    )
    by_file = parse(text, "rpz")
    zone = dns.zone.from_text(text, origin="rpz.test.", relativize=False)
    by_transfer = parse_rules(zone_text(zone), "xfr", "rpz")
    assert by_file.errors == by_transfer.errors == []
    assert names_of(by_transfer) == names_of(by_file)
    assert by_transfer.rpz_actions == by_file.rpz_actions
    assert by_transfer.client_ips == by_file.client_ips
    assert by_transfer.response_ips == by_file.response_ips
    assert by_transfer.skipped == by_file.skipped == {"rpz-nsdname trigger": 1}


def test_the_documented_rpz_zone_parses_as_documented() -> None:
    from doc_examples import DOCS, snippet

    zone = snippet(DOCS / "feeds.md", "$ORIGIN rpz.example.gov.")
    parsed = parse_rules(zone.encode(), "feeds.md", "rpz")
    assert parsed.errors == []
    answers = {name.decode(): answer_of(flags) for name, flags in parsed.flagged.items()}
    assert answers == {
        "malware.example": "nxdomain",
        "tracker.example": "nodata",
        "c2.example": "drop",
        "amplifier.example": "tcp_only",
        "phish.example": "local",
        "lure.example": "local",
        "intranet.example": None,
    }
    assert parsed.flagged[b"intranet.example"] == FLAG_ALLOW_SELF
    assert len(parsed.rpz_actions["phish.example"][1]) == 2
    assert set(parsed.response_ips) == {"203.0.113.0/24", "2001:db8::/48"}
    assert {n: r.action for n, r in parsed.client_ips.items()} == {
        "192.0.2.7/32": "nxdomain",
        "192.0.2.8/32": "passthru",
    }
    assert parsed.skipped == {"rpz-nsdname trigger": 1}
