"""Tests for resolver/lists/compiled.py: the memory-mapped matcher agrees with DomainMatcher, never
blocks a wrong name on a hash collision, and survives any input."""

from __future__ import annotations

import ipaddress
import itertools
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.lists import compiled
from resolver.lists.compiled import (
    CompiledMatcher,
    ListScreen,
    compile_rules,
    from_parsed,
    open_compiled,
    write_atomic,
)
from resolver.lists.formats import ParsedRules, parse_rules
from resolver.lists.matcher import BlockRule, DomainMatcher
from resolver.protocol.names import from_text


def wire(name: str) -> bytes:
    """Lowercase wire form built by hand, independently of resolver.protocol.names."""
    labels = name.rstrip(".").split(".")
    return b"".join(bytes([len(label)]) + label.encode() for label in labels) + b"\x00"


def matcher(text: str, fmt: str = "domains") -> CompiledMatcher:
    return from_parsed(parse_rules(text.encode(), "t.txt", fmt), "t")


def hit(m: CompiledMatcher, name: str) -> tuple[str, int, str | None] | None:
    found = m.lookup(wire(name))
    return None if found is None else (found[0].pattern, found[1], found[0].answer)


# ----- semantics ------------------------------------------------------------------------------

LIST = """\
tiktok.com
p16-tiktokcdn-com.akamaized.net
*.capcutapi.com
c.test
b.c.test
x.test
*.x.test
v*.tiktokcdn-eu.com
"""


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tiktok.com", ("tiktok.com", 0)),
        ("www.tiktok.com", ("tiktok.com", 4)),
        ("a.b.www.tiktok.com", ("tiktok.com", 8)),
        ("nottiktok.com", None),
        ("tiktok.com.evil.test", None),
        ("com", None),
        ("x.p16-tiktokcdn-com.akamaized.net", ("p16-tiktokcdn-com.akamaized.net", 2)),
        ("capcutapi.com", None),
        ("log.capcutapi.com", ("*.capcutapi.com", 0)),
        ("a.b.capcutapi.com", ("*.capcutapi.com", 2)),
        ("a.c.test", ("c.test", 2)),
        ("a.b.c.test", ("b.c.test", 2)),
        ("x.test", ("x.test", 0)),
        ("a.x.test", ("*.x.test", 0)),
        ("b.a.x.test", ("*.x.test", 2)),
        ("v16.tiktokcdn-eu.com", ("v*.tiktokcdn-eu.com", 0)),
        ("api.v19.tiktokcdn-eu.com", ("v*.tiktokcdn-eu.com", 4)),
        ("tiktokcdn-eu.com", None),
    ],
)
def test_lookup(query: str, expected: tuple[str, int] | None) -> None:
    found = hit(matcher(LIST), query)
    assert (found[:2] if found else None) == expected


_LABELS = st.sampled_from(["a", "b", "c", "dd", "e-1"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=4).map(".".join)
_PATTERNS = st.tuples(st.booleans(), _NAMES).map(lambda p: ("*." if p[0] else "") + p[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATTERNS, max_size=12), st.lists(_NAMES, max_size=20))
def test_agrees_with_domain_matcher(patterns: list[str], queries: list[str]) -> None:
    """The compiled form decides (and reports) as the in-memory matcher does."""
    reference = DomainMatcher()
    for pattern in patterns:
        if pattern.startswith("*.") and len(pattern.split(".")) < 2:
            continue
        reference.add(pattern, BlockRule("t", pattern))
    fast = matcher("\n".join(patterns))
    for query in queries:
        expected = reference.lookup(wire(query))
        found = fast.lookup(wire(query))
        assert (found is None) == (expected is None), query
        if found is not None and expected is not None:
            assert found[1] == expected[1], query
            assert found[0].pattern == expected[0].pattern, query


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_malformed_input_never_raises(data: bytes) -> None:
    m = matcher("a.b\n*.c\nv*.d\n/^x/\n@@||ok.a.b^\n", "adblock")
    result = m.lookup(data)
    assert result is None or isinstance(result[0], BlockRule)


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        (b"\x05bad\x01x\x06tiktok\x03com\x00", ("tiktok.com", 6)),  # odd label, listed parent
        (b"\x03a.b\x06tiktok\x03com\x00", ("tiktok.com", 4)),  # a dot inside a label
        (b"\x03ABC\x06tiktok\x03com\x00", ("tiktok.com", 4)),
        (b"\x21" + b"a" * 33 + b"\x06tiktok\x03com\x00", ("tiktok.com", 34)),  # long label
        (b"\x06TIKTOK\x03com\x00", None),  # lookups take lowercase names
        (b"\x06tiktok\x03com", None),  # no root
        (b"\x06tiktok\x03com\x00\x00", None),  # trailing bytes
        (b"\x07tiktok\x03com\x00", None),  # label runs past the end
        (b"\xc0\x0c", None),  # a compression pointer
        (b"", None),
        (b"\x00", None),
    ],
)
def test_odd_wire_names(qname: bytes, expected: tuple[str, int] | None) -> None:
    found = matcher("tiktok.com\n").lookup(qname)
    assert (None if found is None else (found[0].pattern, found[1])) == expected


def test_a_dot_inside_a_label_is_not_a_label_boundary() -> None:
    m = matcher("a.b.com\n")
    assert m.lookup(b"\x03a.b\x03com\x00") is None  # one label "a.b", not a.b.com
    assert m.lookup(b"\x03a\x01b\x03com\x00") is None
    assert m.lookup(wire("x.a.b.com")) is not None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ads.example", ("ads.example", 0, None)),
        ("x.ads.example", ("ads.example", 2, None)),
        ("ok.ads.example", None),  # @@ beats the list's block rules
        ("a.ok.ads.example", None),
        ("exact.test", ("exact.test", 0, None)),
        ("a.exact.test", None),  # |x^ blocks x alone
        ("ads1.foo.com", ("/^ads?[0-9]*\\./", 0, None)),
        ("ads7.foo.com", None),  # allowed by @@/regex/
        ("v1.g.com", ("v*.g.com", 0, None)),
        ("vok.g.com", None),  # allowed by an @@ label wildcard
        ("plain.org", None),
    ],
)
def test_allow_rules_win_within_the_list(
    query: str, expected: tuple[str, int, str | None] | None
) -> None:
    m = matcher(
        "||ads.example^\n@@||ok.ads.example^\n|exact.test^\n/^ads?[0-9]*\\./\n@@/^ads7\\./\n"
        "||v*.g.com^\n@@||vok.g.com^\n",
        "adblock",
    )
    assert hit(m, query) == expected


def test_rpz_answers_reach_the_rule() -> None:
    m = matcher(
        "$ORIGIN rpz.\n@ SOA ns. h. 1 1 1 1 1\nnx.test CNAME .\n*.nx.test CNAME .\n"
        "nd.test CNAME *.\nnull.test A 0.0.0.0\n",
        "rpz",
    )
    assert hit(m, "a.nx.test") == ("*.nx.test", 0, "nxdomain")
    assert hit(m, "nx.test") == ("nx.test", 0, "nxdomain")
    assert hit(m, "nd.test") == ("nd.test", 0, "nodata")
    assert hit(m, "a.nd.test") is None  # no wildcard record: the name alone
    assert hit(m, "null.test") == ("null.test", 0, "null_ip")


RPZ_ACTIONS = """\
$ORIGIN rpz.
@ SOA ns. h. 1 1 1 1 1
drop.test CNAME rpz-drop.
tcp.test CNAME rpz-tcp-only.
local.test A 192.0.2.1
local.test TXT "hi"
*.local.test CNAME .
mixed.test CNAME .
*.mixed.test A 192.0.2.2
24.0.2.0.192.rpz-ip CNAME .
32.7.2.0.192.rpz-ip A 192.0.2.99
32.2.0.0.127.rpz-client-ip CNAME rpz-passthru.
48.zz.db8.2001.rpz-client-ip CNAME rpz-drop.
"""


def test_rpz_actions_and_local_data_survive_compiling(tmp_path: Path) -> None:
    path = tmp_path / "rpz.dwl"
    write_atomic(path, compile_rules(parse_rules(RPZ_ACTIONS.encode(), "t", "rpz"), "t"))
    m = open_compiled(path)
    assert hit(m, "drop.test") == ("drop.test", 0, "drop")
    assert hit(m, "tcp.test") == ("tcp.test", 0, "tcp_only")
    local = m.lookup(wire("local.test"))
    assert local is not None
    records = ((1, b"\xc0\x00\x02\x01"), (16, b"\x02hi"))
    assert local[0] == BlockRule("t", "local.test", "local", records)
    assert hit(m, "a.local.test") == ("*.local.test", 0, "nxdomain")
    assert hit(m, "mixed.test") == ("mixed.test", 0, "nxdomain")
    below = m.lookup(wire("a.mixed.test"))
    assert below is not None and below[0].answer == "local"
    assert below[0].data == ((1, b"\xc0\x00\x02\x02"),)
    assert len(m) == 8  # 4 names (each with its `*.` rule) and 4 address rules


@pytest.mark.parametrize(
    ("table", "address", "expected"),
    [
        ("response_ips", "192.0.2.7", ("32.7.2.0.192.rpz-ip", 32, "local")),  # longest prefix
        ("response_ips", "192.0.2.8", ("24.0.2.0.192.rpz-ip", 24, "nxdomain")),
        ("response_ips", "192.0.3.8", None),
        ("response_ips", "2001:db8::1", None),
        ("client_ips", "127.0.0.2", ("32.2.0.0.127.rpz-client-ip", 32, "passthru")),
        ("client_ips", "127.0.0.3", None),
        ("client_ips", "2001:db8:0:ffff::1", ("48.zz.db8.2001.rpz-client-ip", 48, "drop")),
        ("client_ips", "2001:db9::1", None),
    ],
)
def test_rpz_address_rules(
    table: str, address: str, expected: tuple[str, int, str] | None
) -> None:
    m = matcher(RPZ_ACTIONS, "rpz")
    rules = getattr(m, table)
    value = ipaddress.ip_address(address)
    found = rules.match(value.version, int(value))
    assert (None if found is None else (found[0].pattern, found[1], found[0].answer)) == expected
    if found is not None:
        assert found[0].list_name == "t"


def test_lists_without_address_rules_have_no_tables() -> None:
    m = matcher(LIST)
    assert m.client_ips is None and m.response_ips is None
    assert "rpz" not in m.header


# ----- hash collisions ------------------------------------------------------------------------


def _colliding_pair() -> tuple[str, str]:
    """Two names with the same 30-bit hash (a birthday search: ~2**15 names)."""
    seen: dict[int, str] = {}
    for index in itertools.count():
        name = f"n{index}.example"
        key = zlib.crc32(name.encode()) >> 2
        if key in seen:
            return seen[key], name
        seen[key] = name
    raise AssertionError("unreachable")


def test_a_hash_collision_never_blocks_the_other_name() -> None:
    first, second = _colliding_pair()
    assert zlib.crc32(first.encode()) >> 2 == zlib.crc32(second.encode()) >> 2
    only_first = matcher(first + "\n")
    assert hit(only_first, first) == (first, 0, None)
    assert hit(only_first, second) is None
    assert hit(only_first, "www." + second) is None
    both = matcher(f"{first}\n{second}\n")
    assert hit(both, second) == (second, 0, None)
    assert hit(both, "www." + first) == (first, 4, None)


# ----- the file -------------------------------------------------------------------------------


def _parsed(count: int) -> ParsedRules:
    text = "".join(f"host{i}.d{i % 7}.example\n" for i in range(count))
    return parse_rules(text.encode() + b"*.w.test\n|exact.test^\n", "big.txt", "adblock")


def test_write_and_map(tmp_path: Path) -> None:
    parsed = _parsed(5000)
    path = tmp_path / "big.dwl"
    write_atomic(path, compile_rules(parsed, "big", {"fingerprint": "abc"}))
    mapped = open_compiled(path)
    assert mapped.list_name == "big" and mapped.meta == {"fingerprint": "abc"}
    assert len(mapped) == 5002
    assert hit(mapped, "a.host42.d0.example") == ("host42.d0.example", 2, None)
    assert hit(mapped, "host42.d1.example") is None
    assert hit(mapped, "q.w.test") == ("*.w.test", 0, None)
    assert sorted(mapped.rules())[:1] == [("exact.test", 1)]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_replacing_the_file_keeps_the_old_mapping_valid(tmp_path: Path) -> None:
    path = tmp_path / "l.dwl"
    write_atomic(path, compile_rules(parse_rules(b"old.test\n", "l", "domains"), "l"))
    old = open_compiled(path)
    write_atomic(path, compile_rules(parse_rules(b"new.test\n", "l", "domains"), "l"))
    assert hit(old, "old.test") is not None and hit(old, "new.test") is None
    assert hit(open_compiled(path), "new.test") is not None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:10], "truncated"),
        (lambda data: b"XXXXXXXX" + data[8:], "bad magic"),
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data.replace(b'"version":1', b'"version":9'), "version 9"),
    ],
)
def test_damaged_files_are_refused(tmp_path: Path, damage: object, message: str) -> None:
    data = b"".join(compile_rules(_parsed(100), "l"))
    path = tmp_path / "l.dwl"
    path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        open_compiled(path)


def test_size_per_entry_stays_small() -> None:
    parsed = _parsed(20000)
    size = sum(map(len, compile_rules(parsed, "l")))
    names = sum(len(name) + 1 for name in set(parsed.plain) | set(parsed.flagged))
    assert (size - names) / 20002 < 14  # the index: hash, start, length, filter, bucket, flags


@pytest.mark.skipif(compiled.numpy_module() is None, reason="numpy is not installed")
def test_numpy_and_plain_python_write_the_same_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_NUMPY_FROM", 0)
    monkeypatch.setattr(compiled, "_index_python", _forbidden)
    parsed = _parsed(3000)
    fast = compile_rules(parsed, "l", accelerate=True)
    monkeypatch.undo()
    slow = compile_rules(parsed, "l", accelerate=False)
    assert b"".join(fast) == b"".join(slow)


def _forbidden(*args: object) -> object:
    raise AssertionError("the numpy path was expected")


def test_empty_list() -> None:
    empty = from_parsed(ParsedRules(source="e", format="domains"), "e")
    assert len(empty) == 0 and empty.lookup(from_text("a.com")) is None
    assert list(empty.rules()) == []


def test_regex_rules_with_inline_flags_still_work() -> None:
    m = matcher("/(?i)^ADS/\n/^track/\n", "regex")
    assert hit(m, "ads.test") == ("/(?i)^ADS/", 0, None)
    assert hit(m, "tracker.test") == ("/^track/", 0, None)
    assert hit(m, "other.test") is None


SCREENED = [
    "a.com\nb.a.com\nshared.org\n",
    "x.net\nshared.org\nwww.deep.example\n",
    "||ads.io^\n@@||ok.ads.io^\n",
]
SCREEN_QUERIES = ["a.com", "www.b.a.com", "shared.org", "x.net", "y.x.net", "deep.example",
                  "www.deep.example", "ads.io", "ok.ads.io", "t.ok.ads.io", "none.org", "com",
                  "org", "v1.wild.com"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(SCREEN_QUERIES),
        min_size=1,
        max_size=4,
    )
)
def test_a_screen_leaves_out_only_lists_that_cannot_match(names: list[str]) -> None:
    lists = [matcher(text, "adblock" if "||" in text else "domains") for text in SCREENED]
    wild = matcher("v*.wild.com\n")  # label wildcards: never screened, always asked
    matchers = [*lists, wild, lists[0]]
    screen = ListScreen(range(len(matchers)), matchers)
    for name in names:
        asked = screen.select(wire(name))
        hits = [i for i, m in enumerate(matchers) if m.lookup(wire(name)) is not None]
        assert set(hits) <= set(asked), name
        assert 3 in asked and list(asked) == sorted(asked)


@pytest.mark.parametrize("numpy", [True, False])
def test_a_screen_asks_only_the_list_that_has_the_name(
    numpy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not numpy:
        monkeypatch.setattr(compiled, "numpy_module", lambda: None)
    elif compiled.numpy_module() is None:
        pytest.skip("numpy is not installed")
    monkeypatch.setattr(compiled, "_SCREEN_NUMPY_FROM", 0)
    lists = [matcher("\n".join(f"n{i}-{k}.com" for k in range(200)) + "\n") for i in range(20)]
    screen = ListScreen(range(20), lists)
    assert screen.select(wire("www.n7-3.com")) == (7,)
    assert screen.select(wire("n19-199.com")) == (19,)
    assert screen.select(wire("n20-0.com")) in ((), *((i,) for i in range(20)))
    assert screen.select(b"\x03bad") == ()  # malformed: nothing to ask


ODD_RULES = "\n".join(["foo.com", "a.b.example", "*.wild.net", "@@||ok.foo.com^",
                       "x" * 40 + ".long.org", "sub." + "z" * 33 + ".io", "q" * 46 + ".org",
                       "a0" + "y" * 20 + ".com"]) + "\n"  # fmt: skip
ODD_NAMES = [  # wire names whose labels are long, hold a dot or a control byte, or are broken
    b"\x03foo\x03com\x00", b"\x03www\x03foo\x03com\x00", b"\x02ok\x03foo\x03com\x00",
    b"\x03a.b\x07example\x00", b"\x01a\x01b\x07example\x00", b"\x03x\x01y\x03foo\x03com\x00",
    b"\x01v\x04wild\x03net\x00", b"\x04wild\x03net\x00", b"\x07foo.com\x00",
    bytes((40,)) + b"x" * 40 + b"\x04long\x03org\x00",
    b"\x01w" + bytes((40,)) + b"x" * 40 + b"\x04long\x03org\x00",
    b"\x03sub" + bytes((33,)) + b"z" * 33 + b"\x02io\x00",
    bytes((46,)) + b"q" * 46 + b"\x03org\x00", b"\x01a" + bytes((46,)) + b"q" * 46 + b"\x03org\x00",
    b"\x02a" + bytes((48,)) + b"y" * 48 + b"\x03com\x00",  # a length byte "0" inside the text
    b"\x03foo\x03com", b"\x03foo\x00\x03com\x00", b"\x03foo\x03com\x00\x00", b"\x00", b"",
    b"\x05foo\x03com\x00", b"\xc0\x0c", b"\x03foo\x40com\x00",
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["domains", "adblock"])
@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_walk_from_the_wire_form_finds_what_the_split_walk_finds(
    fmt: str, name: bytes
) -> None:
    """`_walk` takes plain names straight from their wire form and hands every other to
    `_walk_split` (through `_suffixes`); both must answer alike for every name."""
    listed = matcher(ODD_RULES if fmt == "adblock" else ODD_RULES.replace("@@||ok.foo.com^\n", ""),
                     fmt)  # fmt: skip
    compiled._last_query = (None, None)
    split = listed._walk_split(name)
    compiled._last_query = (None, None)
    assert listed._walk(name) == split
