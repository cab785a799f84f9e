"""Tests for resolver/lists/loading.py: catalogue entries in one matcher, and loading sources of
every kind with the compiled cache, allow lists and refreshes (list lines: test_formats.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from resolver.config import Config, load_config
from resolver.lists import feeds, loading
from resolver.lists.catalogue import (
    CatalogueEntry,
    ListError,
    catalogue_ids,
    load_catalogue_entry,
    parse_catalogue_entry,
)
from resolver.lists.fetch import FetchError, FetchResult, SourceStore
from resolver.lists.loading import build_blocking
from resolver.protocol.names import from_text
from resolver.state import build_state

# ----- build_blocking: catalogue entries in one matcher -----


DEMO = """\
id: demo
name: Demo
vendor: Demo Corp.
description: d
references:
  - {authority: a, decision: d, date: 2023-01-01, url: u, verified: false}
rules:
  - {domain: demo.example, source: s, answer: nxdomain}
  - {domain: other.example, source: s}
  - {domain: tiktok.com, source: s}
provenance: p
last_reviewed: 2026-01-01
"""


@pytest.fixture
def demo_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `demo` entry beside the bundled ones; it shares `tiktok.com` with `tiktok`."""
    bundled = loading.load_catalogue_entry

    def load(entry_id: str) -> CatalogueEntry:
        return parse_catalogue_entry(DEMO, "demo.yaml") if entry_id == "demo" else bundled(entry_id)

    monkeypatch.setattr(loading, "load_catalogue_entry", load)


def test_entry_order_is_precedence(demo_entry: None) -> None:
    blocking = build_blocking(["demo", "tiktok"])
    hit = blocking.matcher.lookup(from_text("tiktok.com"))
    assert hit is not None and hit[0].list_name == "demo"
    assert blocking.sizes["demo"] == 3
    assert blocking.sizes["tiktok"] == len(load_catalogue_entry("tiktok").rules) - 1
    hit = blocking.matcher.lookup(from_text("www.tiktok.com"))
    assert hit is not None and hit[0].list_name == "demo" and hit[1] == 4


def test_catalogue_answer_overrides_reach_the_rules(demo_entry: None) -> None:
    blocking = build_blocking(["demo"])
    first = blocking.matcher.lookup(from_text("demo.example"))
    second = blocking.matcher.lookup(from_text("other.example"))
    assert first is not None and first[0].answer == "nxdomain"
    assert second is not None and second[0].answer is None


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["no-such-app"], ["no-such-app: unknown catalogue entry (bundled: "]),
        (["tiktok", "tiktok"], ["tiktok: list 'tiktok' is configured twice"]),
        (["tiktok", "nope", "tiktok"], ["nope: unknown catalogue entry", "tiktok: list 'tiktok'"]),
    ],
)
def test_build_errors_name_the_entry(items: list[str], expected: list[str]) -> None:
    """Every problem of every entry is reported together, each naming its entry."""
    with pytest.raises(ListError) as info:
        build_blocking(items)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problems


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


def test_two_lists_may_not_share_a_name(tmp_path: Path) -> None:
    """A list file's name is its stem, and names appear in audit logs: they must be unique."""
    config = config_in(
        tmp_path,
        "blocking:\n  lists: [a.txt, sub/a.txt]\n",
        {"a.txt": "a.com\n", "sub/a.txt": "b.com\n"},
    )
    with pytest.raises(ListError) as info:
        loading.load_lists(config)
    assert info.value.problems == (
        f"{tmp_path / 'sub' / 'a.txt'}: list name 'a' is already used by another list",
    )


def test_big_lists_are_compiled_by_a_child_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "CHILD_THRESHOLD", 0)
    config = config_in(
        tmp_path,
        "sources:\n  big: {path: big.txt}\nblocking:\n  lists: [big]\n",
        {"big.txt": "".join(f"d{i}.example\n" for i in range(500)) + "bad..line\n"},
    )
    first = loading.load_lists(config, keep=True)
    assert first.sizes == {"big": 500} and not first.reports["big"].cached
    assert first.warnings == (f"{tmp_path / 'big.txt'}:501: 'bad..line': empty label",)
    compiled_files = list((tmp_path / "state" / "compiled").glob("big-*.dwl"))
    assert len(compiled_files) == 1
    again = loading.load_lists(config, keep=True)
    assert again.reports["big"].cached and again.sizes == {"big": 500}
    assert blocked(again, "big", "www.d42.example") == "d42.example"
    # A new version within max_shrink of the last good copy (a bigger cut is refused).
    (tmp_path / "big.txt").write_text("".join(f"n{i}.example\n" for i in range(300)))
    assert loading.local_changes(config, again.watch) == ["big"]
    changed = loading.load_lists(config, keep=True)
    assert not changed.reports["big"].cached and changed.sizes == {"big": 300}
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
    assert feeds.due_sources(config, now) == (["feed"] if due else [])


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
    run = feeds.refresh_source
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
