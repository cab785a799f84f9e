"""Tests for resolver/lists/loading.py: list file lines, the bad-line cap, building the matcher, and
loading sources of every kind with the compiled cache, allow lists and refreshes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from resolver.config import Config, load_config
from resolver.lists import loading
from resolver.lists.catalogue import (
    ListError,
    catalogue_ids,
    load_catalogue_entry,
    parse_catalogue_entry,
)
from resolver.lists.fetch import FetchError, FetchResult, SourceStore
from resolver.lists.loading import ParsedList, build_blocking, parse_domain_list
from resolver.protocol.names import from_text
from resolver.state import build_state


def parse(*lines: str, max_errors: int = 100) -> ParsedList:
    return parse_domain_list("\n".join(lines), "ops.txt", "ops", max_errors=max_errors)


HOSTS_BOILERPLATE = [
    "127.0.0.1 localhost",
    "127.0.0.1 localhost.localdomain",
    "::1 ip6-localhost ip6-loopback",
    "255.255.255.255 broadcasthost",
    "fe80::1%lo0 localhost",
    "0.0.0.0 0.0.0.0",
    "ff02::1 ip6-allnodes",
    "127.0.0.1 LOCALHOST",
]


@pytest.mark.parametrize(
    ("lines", "domains", "errors"),
    [
        (["tiktok.com"], ["tiktok.com"], []),
        (["  WWW.TikTok.COM.  "], ["www.tiktok.com"], []),
        (["", "   ", "\t"], [], []),
        (["# a comment", "#tiktok.com"], [], []),
        (["tiktok.com # trailing comment"], ["tiktok.com"], []),
        (["tiktok.com#glued"], ["tiktok.com"], []),
        (["a.com", "b.com", "a.com"], ["a.com", "b.com"], []),
        (["bücher.de"], ["xn--bcher-kva.de"], []),
        (["*.capcut.test", "V*.tiktokcdn-eu.com."], ["*.capcut.test", "v*.tiktokcdn-eu.com"], []),
        # hosts-file forms: every name after a blocking address
        (["0.0.0.0 a.com b.com"], ["a.com", "b.com"], []),
        (["127.0.0.1 x.com"], ["x.com"], []),
        ([":: x.com"], ["x.com"], []),
        (["::1 x.com"], ["x.com"], []),
        (["0.0.0.0\tx.com\ty.com # ads"], ["x.com", "y.com"], []),
        # standard hosts-file entries are skipped, whatever their address
        (HOSTS_BOILERPLATE, [], []),
        (["127.0.0.1 localhost x.com"], ["x.com"], []),
        # invalid lines, with their line numbers
        (["ok.com", "bad name.com extra"], ["ok.com"], ["ops.txt:2: expected one domain per line"]),
        (["a..b"], [], ["ops.txt:1: 'a..b': empty label"]),
        (["x" * 64 + ".com"], [], ["ops.txt:1: 'xxxx"]),
        (["a/b.com"], [], ["ops.txt:1: 'a/b.com': invalid character '/'"]),
        (["a.*.com"], [], ["ops.txt:1: 'a.*.com': '*' is only allowed in the leftmost label"]),
        (["0.0.0.0 *.x.com"], [], ["ops.txt:1: '*.x.com': wildcard '*' is not allowed here"]),
        (["192.168.1.10 printer.lan"], [], ["ops.txt:1: hosts line maps to '192.168.1.10'"]),
        (["0.0.0.0"], [], ["ops.txt:1: '0.0.0.0' is an address, not a domain name"]),
        (["10.1.2.3"], [], ["ops.txt:1: '10.1.2.3' is an address"]),
        (["2001:db8::1"], [], ["ops.txt:1: '2001:db8::1' is an address"]),
        (["0.0.0.0 1.2.3.4 ok.com"], ["ok.com"], ["ops.txt:1: '1.2.3.4' is an address"]),
        (["||tiktok.com^"], [], ["ops.txt:1: '||tiktok.com^': invalid character '|'"]),
        (["ok.com", "", "# c", "evil\x1b.com"], ["ok.com"], ["ops.txt:4: 'evil\\x1b.com'"]),
        (["."], [], ["ops.txt:1: the root '.' cannot be blocked"]),
    ],
)
def test_parse_lines(lines: list[str], domains: list[str], errors: list[str]) -> None:
    parsed = parse(*lines)
    assert list(parsed.domains) == domains
    assert parsed.error_count == len(errors) == len(parsed.errors)
    for error, start in zip(parsed.errors, errors, strict=True):
        assert error.startswith(start), parsed.errors
    assert parsed.name == "ops"


def test_line_numbers_count_blank_lines_and_crlf() -> None:
    parsed = parse_domain_list("\ufeffa.com\r\n\r\n# x\r\nb..com\r\nc.com\r\n", "f", "f")
    assert parsed.domains == ("a.com", "c.com")
    assert parsed.errors == ("f:4: 'b..com': empty label",)


def test_only_newline_splits_lines() -> None:
    """A form feed or vertical tab inside a line must not shift later line numbers."""
    parsed = parse_domain_list("a.com\x0cb.com\nbad..name\n", "f", "f")
    assert parsed.error_count == 2
    assert parsed.errors[0].startswith("f:1: ")
    assert parsed.errors[1].startswith("f:2: ")


def test_duplicates_are_counted_not_errors() -> None:
    parsed = parse("a.com", "A.COM.", "0.0.0.0 a.com b.com", "b.com")
    assert parsed.domains == ("a.com", "b.com")
    assert parsed.duplicates == 3
    assert parsed.error_count == 0


@pytest.mark.parametrize(("bad_lines", "max_errors"), [(0, 0), (2, 2), (3, 100)])
def test_bad_lines_up_to_the_cap_are_skipped(bad_lines: int, max_errors: int) -> None:
    parsed = parse("ok.com", *["bad..x"] * bad_lines, max_errors=max_errors)
    assert parsed.domains == ("ok.com",)
    assert parsed.error_count == bad_lines
    assert [error.split(":")[1] for error in parsed.errors] == [
        str(n) for n in range(2, 2 + bad_lines)
    ]


@pytest.mark.parametrize(("bad_lines", "max_errors"), [(1, 0), (3, 2), (250, 100)])
def test_more_bad_lines_than_the_cap_refuse_the_list(bad_lines: int, max_errors: int) -> None:
    with pytest.raises(ListError) as info:
        parse("ok.com", *["bad..x"] * bad_lines, max_errors=max_errors)
    problems = info.value.problems
    assert len(problems) == max_errors + 1
    assert all(problem.startswith("ops.txt:") for problem in problems)
    assert problems[:max_errors] == tuple(
        f"ops.txt:{n}: 'bad..x': empty label" for n in range(2, 2 + max_errors)
    )
    assert f"{bad_lines} invalid lines" in problems[-1]
    assert f"allowed {max_errors}" in problems[-1]


# ----- build_blocking -----


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_build_from_catalogue_and_file(tmp_path: Path) -> None:
    ops = write(tmp_path, "ops.txt", "tiktok.com\nextra.example\n0.0.0.0 hosts.example\nbad..x\n")
    blocking = build_blocking(["tiktok", ops])
    tiktok_rules = len(load_catalogue_entry("tiktok").rules)
    # tiktok.com is already in the catalogue entry, which comes first and wins
    assert blocking.sizes == {"tiktok": tiktok_rules, "ops": 2}
    assert len(blocking.matcher) == tiktok_rules + 2
    hit = blocking.matcher.lookup(from_text("www.tiktok.com"))
    assert hit is not None and hit[0].list_name == "tiktok" and hit[1] == 4
    hit = blocking.matcher.lookup(from_text("a.extra.example"))
    assert hit is not None and (hit[0].list_name, hit[0].pattern) == ("ops", "extra.example")
    assert blocking.warnings == (f"{ops}:4: 'bad..x': empty label",)


def test_list_order_is_precedence(tmp_path: Path) -> None:
    ops = write(tmp_path, "ops.txt", "tiktok.com\n")
    blocking = build_blocking([ops, "tiktok"])
    hit = blocking.matcher.lookup(from_text("tiktok.com"))
    assert hit is not None and hit[0].list_name == "ops"
    assert blocking.sizes["ops"] == 1
    assert blocking.sizes["tiktok"] == len(load_catalogue_entry("tiktok").rules) - 1


def test_catalogue_answer_overrides_reach_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
id: demo
name: Demo
vendor: Demo Corp.
description: d
references:
  - {authority: a, decision: d, date: 2023-01-01, url: u, verified: false}
rules:
  - {domain: demo.example, source: s, answer: nxdomain}
  - {domain: other.example, source: s}
provenance: p
last_reviewed: 2026-01-01
"""
    monkeypatch.setattr(loading, "catalogue_ids", lambda: frozenset({"demo"}))
    monkeypatch.setattr(
        loading, "load_catalogue_entry", lambda entry_id: parse_catalogue_entry(text, "demo.yaml")
    )
    blocking = build_blocking(["demo"])
    first = blocking.matcher.lookup(from_text("demo.example"))
    second = blocking.matcher.lookup(from_text("other.example"))
    assert first is not None and first[0].answer == "nxdomain"
    assert second is not None and second[0].answer is None


BROKEN = [*[f"DIR/broken.txt:{n}: 'x..y': empty label" for n in range(1, 4)],
          "DIR/broken.txt: 5 invalid lines, more than the allowed 3"]  # fmt: skip


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["missing.txt"], ["missing.txt: cannot read list file"]),
        (["no-such-app"], ["no-such-app: cannot read list file"]),
        (["tiktok", "tiktok"], ["tiktok: list 'tiktok' is configured twice"]),
        (["DIR/a.txt", "DIR/sub/a.txt"], ["DIR/sub/a.txt: list name 'a' (the file stem)"]),
        (["DIR/broken.txt"], BROKEN),
        (["missing.txt", "DIR/a.txt", "DIR/broken.txt"], ["missing.txt: cannot read", *BROKEN]),
    ],
)
def test_build_errors_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: list[str], expected: list[str]
) -> None:
    """Every problem of every list is reported together, each naming its file (and line)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    write(tmp_path, "a.txt", "a.com\n")
    write(tmp_path, "sub/a.txt", "b.com\n")
    write(tmp_path, "broken.txt", "x..y\n" * 5)
    with pytest.raises(ListError) as info:
        build_blocking([item.replace("DIR", str(tmp_path)) for item in items], max_bad_lines=3)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start.replace("DIR", str(tmp_path))), problems


def test_undecodable_bytes_are_bad_lines_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok.com\ncaf\xe9.com\n# caf\xe9 comment\n")
    blocking = build_blocking([str(path)])
    assert blocking.sizes == {"latin1": 1}
    assert len(blocking.warnings) == 1 and blocking.warnings[0].startswith(f"{path}:2: ")


def test_empty_configuration_blocks_nothing() -> None:
    blocking = build_blocking([])
    assert blocking.sizes == {} and len(blocking.matcher) == 0


# ----- load_lists: sources of every kind, the compiled cache, allow lists, refreshes ----------


def config_in(tmp_path: Path, text: str, files: dict[str, str]) -> Config:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    (tmp_path / "c.yaml").write_text(text + f"\nstate_dir: {tmp_path / 'state'}\n")
    return load_config(tmp_path / "c.yaml", known_lists=catalogue_ids())


def blocked(loaded: loading.LoadedLists, item: str, name: str) -> str | None:
    found = loaded.matchers[item][1].lookup(from_text(name))
    return None if found is None else found[0].pattern


SOURCES = """
sources:
  hosts: {path: h.hosts}
  dir: {dir: lists.d}
  feed: {url: "https://feed.invalid/list.txt"}
blocking:
  lists: [tiktok, hosts, dir, feed]
"""
SOURCE_FILES = {
    "h.hosts": "# hosts\n0.0.0.0 one.example two.example\n",
    "lists.d/a.txt": "three.example\n",
    "lists.d/b.txt": "||four.example^\n@@||ok.four.example^\n",
    "lists.d/.hidden": "never.example\n",
}


def test_sources_of_every_kind(tmp_path: Path) -> None:
    loaded = loading.load_lists(config_in(tmp_path, SOURCES, SOURCE_FILES))
    assert loaded.sizes == {
        "tiktok": len(load_catalogue_entry("tiktok").rules),
        "hosts": 2,
        "dir": 3,
        "feed": 0,
    }
    reports = loaded.reports
    assert (reports["hosts"].format, reports["hosts"].kind) == ("hosts", "file")
    assert "look like hosts" in reports["hosts"].detected
    assert reports["dir"].format == "mixed"
    assert "no copy fetched yet" in reports["feed"].note
    assert blocked(loaded, "hosts", "a.two.example") == "two.example"
    assert blocked(loaded, "dir", "four.example") == "four.example"
    assert blocked(loaded, "dir", "ok.four.example") is None
    assert blocked(loaded, "dir", "never.example") is None
    assert not (tmp_path / "state").exists()  # small lists never touch the state directory


def test_a_feed_without_a_copy_is_missing_and_nothing_else_is(tmp_path: Path) -> None:
    loaded = loading.load_lists(config_in(tmp_path, SOURCES, SOURCE_FILES))
    assert loaded.missing == frozenset({"feed"})
    store = SourceStore(str(tmp_path / "state"))
    store.write_candidate("feed", b"five.example\n")
    store.promote("feed", {"sha256": "x", "entries": 1})  # a last good copy, as a fetch leaves
    fetched = loading.load_lists(config_in(tmp_path, SOURCES, SOURCE_FILES))
    assert (fetched.missing, fetched.sizes["feed"]) == (frozenset(), 1)


def test_big_lists_are_compiled_by_a_child_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "CHILD_THRESHOLD", 0)
    config = config_in(
        tmp_path,
        "sources:\n  big: {path: big.txt}\nblocking:\n  lists: [big]\n",
        {"big.txt": "".join(f"d{i}.example\n" for i in range(500)) + "bad..line\n"},
    )
    first = loading.load_lists(config)
    assert first.sizes == {"big": 500} and not first.reports["big"].cached
    assert first.warnings == (f"{tmp_path / 'big.txt'}:501: 'bad..line': empty label",)
    compiled_files = list((tmp_path / "state" / "compiled").glob("big-*.dwl"))
    assert len(compiled_files) == 1
    again = loading.load_lists(config)
    assert again.reports["big"].cached and again.sizes == {"big": 500}
    assert blocked(again, "big", "www.d42.example") == "d42.example"
    (tmp_path / "big.txt").write_text("new.example\n")
    assert loading.local_changes(config, again.watch) == ["big"]
    changed = loading.load_lists(config)
    assert not changed.reports["big"].cached and changed.sizes == {"big": 1}
    assert blocked(again, "big", "d1.example") == "d1.example"  # the old mapping still works
    assert blocked(changed, "big", "d1.example") is None


def test_a_broken_list_is_refused_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_in(
        tmp_path,
        "sources:\n  page: {path: page.txt}\nblocking:\n  lists: [tiktok, page]\n"
        "limits:\n  max_bad_lines: 2\n",
        {"page.txt": "<html>\n<head>\n</head>\n<body>\nok.example\n"},
    )
    for threshold in (1 << 20, 0):  # in process, then in the child process
        monkeypatch.setattr(loading, "CHILD_THRESHOLD", threshold)
        with pytest.raises(ListError) as info:
            loading.load_lists(config)
        problems = info.value.problems
        assert (
            problems[0]
            == f"{tmp_path / 'page.txt'}:1: '<html>': invalid character '<' in label '<html>'"
        )
        assert "4 invalid lines, more than the allowed 2" in problems[-1]
        assert info.value.failed_lists == ("page",)  # type: ignore[attr-defined]


def test_regex_rules_are_capped_across_sources(tmp_path: Path) -> None:
    config = config_in(
        tmp_path,
        "sources:\n  r1: {path: r1.txt, format: regex}\n  r2: {path: r2.txt, format: regex}\n"
        "blocking:\n  lists: [r1, r2]\nlimits:\n  max_regex_rules: 3\n",
        {"r1.txt": "^a\n^b\n", "r2.txt": "^c\n^d\n^e\n"},
    )
    loaded = loading.load_lists(config)
    assert loaded.sizes == {"r1": 2, "r2": 1}
    assert len(loaded.warnings) == 2
    assert all("limits.max_regex_rules" in warning for warning in loaded.warnings)


def test_allow_sources_beat_every_block_list(tmp_path: Path) -> None:
    config = config_in(
        tmp_path,
        "sources:\n  ops: {path: ops.txt}\n  corp: {path: corp.txt}\n"
        "blocking:\n  lists: [tiktok, ops]\nallow: [corp]\n",
        {"ops.txt": "cdn.example\n", "corp.txt": "ok.cdn.example\nlegal.tiktok.com\n"},
    )
    loaded = loading.load_lists(config)
    assert blocked(loaded, "ops", "x.cdn.example") == "cdn.example"
    assert blocked(loaded, "ops", "a.ok.cdn.example") is None
    assert blocked(loaded, "tiktok", "www.tiktok.com") == "tiktok.com"
    assert blocked(loaded, "tiktok", "legal.tiktok.com") is None
    state = build_state(config)
    assert state.policy.domain_count == loaded.sizes["tiktok"] + 1  # allow lists block nothing


def test_local_changes_notice_edits_and_new_files(tmp_path: Path) -> None:
    config = config_in(tmp_path, SOURCES, SOURCE_FILES)
    loaded = loading.load_lists(config)
    assert loading.local_changes(config, loaded.watch) == []
    (tmp_path / "lists.d" / "c.txt").write_text("five.example\n")
    assert loading.local_changes(config, loaded.watch) == ["dir"]
    (tmp_path / "h.hosts").write_text("0.0.0.0 one.example\n")
    assert loading.local_changes(config, loaded.watch) == ["hosts", "dir"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 3}, {"a": "1 -> 3"}),
        ({}, {"b": 2}, {"b": "added 2"}),
        ({"c": 5}, {}, {"c": "removed"}),
    ],
)
def test_size_changes(old: dict[str, int], new: dict[str, int], expected: dict[str, str]) -> None:
    assert loading.size_changes(old, new) == expected


@pytest.mark.parametrize(
    ("refreshes", "expected"),
    [([], 10.0), (["30s"], 10.0), (["3s", "5s"], 3.0), (["100ms"], 1.0)],
)
def test_poll_interval(tmp_path: Path, refreshes: list[str], expected: float) -> None:
    sources = "".join(
        f"  s{i}: {{path: s{i}.txt, refresh: {refresh}}}\n" for i, refresh in enumerate(refreshes)
    )
    files = {f"s{i}.txt": "a.example\n" for i in range(len(refreshes))}
    text = ("sources:\n" + sources if sources else "") + "blocking:\n  lists: [tiktok]\n"
    if refreshes:
        text += "allow: [" + ", ".join(f"s{i}" for i in range(len(refreshes))) + "]\n"
    assert loading.poll_interval(config_in(tmp_path, text, files)) == expected


@pytest.mark.parametrize(
    ("sidecar", "now", "due"),
    [
        (None, 0.0, True),  # never fetched
        ({"sha256": "x", "checked_at": 1000.0}, 1000.0 + 3599, False),
        ({"sha256": "x", "checked_at": 1000.0}, 1000.0 + 3600, True),
        ({"sha256": "x", "checked_at": 1000.0, "last_failure": 2000.0}, 2059.0, False),
        ({"sha256": "x", "checked_at": 1000.0, "last_failure": 2000.0}, 2060.0, True),
        ({"last_failure": 2000.0}, 2030.0, False),  # never succeeded: retried each minute
    ],
)
def test_due_sources(
    tmp_path: Path, sidecar: dict[str, object] | None, now: float, due: bool
) -> None:
    config = config_in(
        tmp_path,
        'sources:\n  feed: {url: "https://feed.invalid/l.txt", refresh: 1h}\n'
        "blocking:\n  lists: [feed]\n",
        {},
    )
    if sidecar is not None:
        SourceStore(config.state_dir).touch("feed", **sidecar)
    assert loading.due_sources(config, now) == (["feed"] if due else [])


def fake_fetcher(*results: FetchResult | FetchError) -> Callable[..., FetchResult]:
    queue = list(results)

    def fetcher(url: str, **kwargs: object) -> FetchResult:
        result = queue.pop(0)
        if isinstance(result, FetchError):
            raise result
        return result

    return fetcher


def test_refresh_outcomes(tmp_path: Path) -> None:
    config = config_in(
        tmp_path,
        'sources:\n  feed: {url: "https://feed.invalid/l.txt"}\nblocking:\n  lists: [feed]\n',
        {},
    )
    body = b"a.example\nb.example\n"
    run = loading.refresh_source
    first = run(config, "feed", fetcher=fake_fetcher(FetchResult(200, body, '"e1"', None)))
    assert (first.status, first.entries) == ("updated", 2)
    same = run(config, "feed", fetcher=fake_fetcher(FetchResult(200, body, '"e2"', None)))
    assert (same.status, same.detail) == ("unchanged", "same content")
    assert SourceStore(config.state_dir).meta("feed")["etag"] == '"e2"'
    not_modified = run(config, "feed", fetcher=fake_fetcher(FetchResult(304, None, None, None)))
    assert not_modified.status == "unchanged"
    down = run(config, "feed", fetcher=fake_fetcher(FetchError("network: refused")))
    assert down.status == "failed" and "network: refused" in down.detail
    assert loading.load_lists(config).sizes == {"feed": 2}
    assert run(config, "nope").status == "failed"


def test_compile_job_writes_nothing_for_a_broken_list(tmp_path: Path) -> None:
    source = tmp_path / "l.txt"
    source.write_text("<html>\n" * 10)
    out = tmp_path / "l.dwl"
    job = {"name": "l", "files": [str(source)], "format": "auto", "max_errors": 2,
           "max_regex": 0, "out": str(out)}  # fmt: skip
    report = loading.compile_job(job)
    assert report["problems"] and not out.exists()
    source.write_text("a.example\n")
    assert loading.compile_job(job)["problems"] == [] and out.exists()
