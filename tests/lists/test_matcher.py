"""Tests for resolver/lists/matcher.py: suffix semantics, wildcards, precedence, offsets, scale."""

from __future__ import annotations

import fnmatch
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.protocol.names import BadName


def wire(name: str) -> bytes:
    """Lowercase wire form built by hand, independently of resolver.protocol.names."""
    if name in ("", "."):
        return b"\x00"
    labels = name.rstrip(".").lower().split(".")
    return b"".join(bytes([len(label)]) + label.encode() for label in labels) + b"\x00"


PATTERNS = [
    ("tiktok", "TikTok.COM."),
    ("tiktok", "v*.tiktokcdn-eu.com"),
    ("tiktok", "p16-tiktok-*.ibyteimg.com"),
    ("tiktok", "p16-tiktokcdn-com.akamaized.net"),
    ("capcut", "*.capcutapi.com"),
    ("ops", "c.test"),
    ("ops", "b.c.test"),
    ("ops", "x.test"),
    ("ops", "*.x.test"),
    ("ops", "special.w.test"),
    ("ops", "*.w.test"),
    ("ops", "*.t.test"),
    ("ops", "v*.t.test"),
    ("ops", "a*b*c.m.test"),
]

# (query name, expected pattern or None, offset of the covered zone in the wire query)
CASES = [
    ("tiktok.com", "TikTok.COM.", 0),
    ("www.tiktok.com", "TikTok.COM.", 4),
    ("a.b.www.tiktok.com", "TikTok.COM.", 8),
    ("tiktok.com.", "TikTok.COM.", 0),
    ("nottiktok.com", None, None),
    ("tiktok.com.evil.test", None, None),
    ("tiktok.co", None, None),
    ("com", None, None),
    (".", None, None),
    ("v16.tiktokcdn-eu.com", "v*.tiktokcdn-eu.com", 0),
    ("v16m.tiktokcdn-eu.com", "v*.tiktokcdn-eu.com", 0),
    ("api.v19.tiktokcdn-eu.com", "v*.tiktokcdn-eu.com", 4),
    ("v.tiktokcdn-eu.com", None, None),
    ("tiktokcdn-eu.com", None, None),
    ("xv16.tiktokcdn-eu.com", None, None),
    ("p16-tiktok-va.ibyteimg.com", "p16-tiktok-*.ibyteimg.com", 0),
    ("p16-tiktok-.ibyteimg.com", None, None),
    ("p16-tiktokcdn.ibyteimg.com", None, None),
    ("ibyteimg.com", None, None),
    ("p16-tiktokcdn-com.akamaized.net", "p16-tiktokcdn-com.akamaized.net", 0),
    ("x.p16-tiktokcdn-com.akamaized.net", "p16-tiktokcdn-com.akamaized.net", 2),
    ("other.akamaized.net", None, None),
    ("akamaized.net", None, None),
    ("capcutapi.com", None, None),
    ("log.capcutapi.com", "*.capcutapi.com", 0),
    ("a.b.capcutapi.com", "*.capcutapi.com", 2),
    # most specific wins: the longest covered suffix
    ("c.test", "c.test", 0),
    ("a.c.test", "c.test", 2),
    ("b.c.test", "b.c.test", 0),
    ("a.b.c.test", "b.c.test", 2),
    # a wildcard nearer the leaf beats an exact rule nearer the root
    ("x.test", "x.test", 0),
    ("a.x.test", "*.x.test", 0),
    ("b.a.x.test", "*.x.test", 2),
    # at the same position an exact rule beats a wildcard
    ("special.w.test", "special.w.test", 0),
    ("other.w.test", "*.w.test", 0),
    ("w.test", None, None),
    # among wildcards, the one with more literal characters wins
    ("v1.t.test", "v*.t.test", 0),
    ("a1.t.test", "*.t.test", 0),
    ("v.t.test", "*.t.test", 0),
    # several stars, each one or more characters
    ("axbyc.m.test", "a*b*c.m.test", 0),
    ("abbbc.m.test", "a*b*c.m.test", 0),
    ("abbc.m.test", None, None),
    ("abc.m.test", None, None),
    ("axbc.m.test", None, None),
]


def build(patterns: list[tuple[str, str]] = PATTERNS) -> DomainMatcher:
    matcher = DomainMatcher()
    for list_name, pattern in patterns:
        matcher.add(pattern, BlockRule(list_name, pattern))
    return matcher


def check(matcher: DomainMatcher, name: str, pattern: str | None, offset: int | None) -> None:
    qname = wire(name)
    hit = matcher.lookup(qname)
    if pattern is None:
        assert hit is None
        return
    assert hit is not None
    rule, zone = hit
    assert (rule.pattern, zone) == (pattern, offset)
    assert qname[zone:].endswith(b"\x00")
    # the offset sits on a label boundary and the zone is an instance of the pattern
    zone_text = name.rstrip(".")[zone:]
    assert wire(zone_text) == qname[zone:]
    assert fnmatch.fnmatchcase(zone_text, pattern.lower().rstrip("."))


@pytest.mark.parametrize(("name", "pattern", "offset"), CASES)
def test_lookup(name: str, pattern: str | None, offset: int | None) -> None:
    check(build(), name, pattern, offset)


def test_len_counts_distinct_patterns() -> None:
    matcher = build()
    assert len(matcher) == len(PATTERNS)
    matcher.add("tiktok.com", BlockRule("other", "tiktok.com"))
    matcher.add("V*.TIKTOKCDN-EU.COM.", BlockRule("other", "V*.TIKTOKCDN-EU.COM."))
    assert len(matcher) == len(PATTERNS)
    assert len(DomainMatcher()) == 0


def test_first_rule_added_wins() -> None:
    matcher = DomainMatcher()
    first = BlockRule("first", "tiktok.com", "nxdomain")
    matcher.add("tiktok.com", first)
    matcher.add("TIKTOK.com.", BlockRule("second", "TIKTOK.com."))
    matcher.add("*.x.test", BlockRule("first", "*.x.test"))
    matcher.add("*.X.test", BlockRule("second", "*.X.test"))
    assert matcher.lookup(wire("www.tiktok.com")) == (first, 4)
    hit = matcher.lookup(wire("a.x.test"))
    assert hit is not None and hit[0].list_name == "first"


def test_exact_and_wildcard_on_the_same_parent_coexist() -> None:
    """Adding a wildcard under an existing exact rule (and the reverse) keeps both."""
    for order in (["x.test", "*.x.test"], ["*.x.test", "x.test"]):
        matcher = build([("l", pattern) for pattern in order])
        check(matcher, "x.test", "x.test", 0)
        check(matcher, "a.x.test", "*.x.test", 0)
        assert len(matcher) == 2


@pytest.mark.parametrize(
    "pattern", ["", ".", "a..b", "a.*.com", "*.*.com", "v*.t*.com", "bad name.com", "x" * 64]
)
def test_add_rejects_bad_patterns(pattern: str) -> None:
    matcher = DomainMatcher()
    with pytest.raises(BadName):
        matcher.add(pattern, BlockRule("l", pattern))
    assert len(matcher) == 0


@pytest.mark.parametrize(
    "qname", [b"", b"\x03abc", b"\xc0\x0c", b"\x06tiktok", b"\x06tiktok\x03com", b"\x3f" * 3]
)
def test_malformed_qnames_do_not_raise(qname: bytes) -> None:
    assert build().lookup(qname) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_lookup_never_raises(qname: bytes) -> None:
    hit = build().lookup(qname)
    if hit is not None:
        assert 0 <= hit[1] < len(qname)


class _CountingDict(dict):  # type: ignore[type-arg]
    probes = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        _CountingDict.probes += 1
        return super().get(key, default)


def _random_name(rng: random.Random, labels: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    return ".".join(
        "".join(rng.choice(alphabet[:-1]) + rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        for _ in range(labels)
    )


@pytest.fixture(scope="module")
def big() -> tuple[DomainMatcher, list[str]]:
    """The table's rules plus 100,000 random ones (some wildcards), added after the table's."""
    rng = random.Random(20260228)
    matcher = build()
    extra: list[str] = []
    while len(extra) < 100_000:
        name = _random_name(rng, rng.randint(2, 4)) + ".rnd"
        if rng.random() < 0.02:
            name = "w*" + name[name.index(".") :]
        extra.append(name)
        matcher.add(name, BlockRule("big", name))
    return matcher, extra


@pytest.mark.parametrize(("name", "pattern", "offset"), CASES)
def test_big_matcher_gives_the_same_answers(
    big: tuple[DomainMatcher, list[str]], name: str, pattern: str | None, offset: int | None
) -> None:
    check(big[0], name, pattern, offset)


def test_big_matcher_agrees_with_a_naive_scan(big: tuple[DomainMatcher, list[str]]) -> None:
    """Random queries under random rules: compare with a scan over every pattern as text."""
    matcher, extra = big
    rng = random.Random(7)
    patterns = sorted(set(extra))
    wildcards = [p for p in patterns if "*" in p]
    exact = set(patterns) - set(wildcards)

    def naive(name: str) -> str | None:
        labels = name.split(".")
        for start in range(len(labels)):
            suffix = ".".join(labels[start:])
            if suffix in exact:
                return suffix
            found = [p for p in wildcards if fnmatch.fnmatchcase(suffix, p)
                     and p.count(".") == suffix.count(".")]  # fmt: skip
            if found:
                return found[0]
        return None

    queries = [
        _random_name(rng, 1) + "." + rng.choice(patterns).replace("w*", "wq") for _ in range(150)
    ]
    queries += [_random_name(rng, 3) + ".rnd" for _ in range(150)]
    matched = 0
    for name in queries:
        hit = matcher.lookup(wire(name))
        expected = naive(name)
        assert (hit[0].pattern if hit else None) == expected, name
        matched += hit is not None
    assert matched >= 150


@pytest.mark.parametrize("rules", [10, 100_000])
def test_lookup_cost_depends_on_labels_not_rules(
    big: tuple[DomainMatcher, list[str]], rules: int
) -> None:
    """One dict probe per label of the query, however many rules are loaded."""
    matcher = big[0] if rules > 10 else build()
    counting = _CountingDict(matcher._nodes)
    matcher._nodes = counting
    try:
        for name, labels in [("a.b.c.d.e.nowhere.example", 7), ("x", 1), ("www.tiktok.com", 3)]:
            _CountingDict.probes = 0
            matcher.lookup(wire(name))
            assert 1 <= _CountingDict.probes <= labels + 1
    finally:
        matcher._nodes = dict(counting)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("l", "x.com"), ("l", "x.com", None, ())),
        (
            ("l", "x.com", "nxdomain", ((1, b"\x00\x00\x00\x00"),)),
            ("l", "x.com", "nxdomain", ((1, b"\x00\x00\x00\x00"),)),
        ),
    ],
)
def test_block_rule_init_sets_every_field(
    given: tuple[object, ...], expected: tuple[object, ...]
) -> None:
    """BlockRule's `__init__` is written out (compiled, docs/compiled.md): the dataclass's
    fields in order, with its defaults; equal rules hash alike."""
    rule = BlockRule(*given)  # type: ignore[arg-type]
    assert (rule.list_name, rule.pattern, rule.answer, rule.data) == expected
    assert rule == BlockRule(*expected) and hash(rule) == hash(BlockRule(*expected))  # type: ignore[arg-type]
