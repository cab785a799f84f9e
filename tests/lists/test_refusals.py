"""Tests for resolver/lists/refusals.py and the list guard as loading and feeds apply it: a
refused version leaves the version in force (the running one, else the last good copy in
state_dir, else nothing: the list is missing); the operator's accept marker; the same for feeds.
(What the guard refuses, as a pure function: test_guard.py.)"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from list_files import rewrite

from resolver.config import Config, load_config
from resolver.lists import feeds, loading
from resolver.lists.catalogue import CatalogueEntry, catalogue_ids, parse_catalogue_entry
from resolver.lists.fetch import FetchResult, SourceStore
from resolver.lists.refusals import (
    EVENT_SAMPLES,
    KEPT_LAST_GOOD,
    KEPT_NOTHING,
    KEPT_PREVIOUS,
    ListRejection,
    accepted_key,
    write_marker,
)
from resolver.protocol.names import from_text

GOOD = "banned.example\nalso-banned.example\nthird.example\nfourth.example\n"
HTML_404 = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>404 Not Found</title>
</head>
<body>
<h1>Not Found</h1>
<p>The requested URL /lists/national.txt was not found on this server.</p>
<hr>
<address>Apache/2.4.57 (Debian) Server at lists.example.gov Port 443</address>
</body>
</html>
"""
assert HTML_404.count("\n") == 13


def random_bytes() -> bytes:
    return random.Random(20000).randbytes(20000)  # `head -c 20000 /dev/urandom`


# What an operator's list can turn into, and what the guard says: (content, reason, needs a
# version in force to be refused).
BAD_VERSIONS: dict[str, tuple[bytes, str, bool]] = {
    "random bytes": (random_bytes(), "binary", False),
    "HTML 404 page": (HTML_404.encode(), "html", False),
    "JSON error": (b'{"error": "not found"}\n', "json", False),
    "0 bytes": (b"", "empty", True),
    "shrink by more than half": (b"banned.example\n", "shrink", True),
    "single label": (b"banned.example\nalso-banned.example\ncom\nfourth.example\n", "tld_rule",
                     False),
}  # fmt: skip


def config_in(tmp_path: Path, source: str = "{path: mylist.txt}", extra: str = "") -> Config:
    text = (
        f"sources:\n  mylist: {source}\nblocking:\n  lists: [tiktok, mylist]\n"
        f"state_dir: {tmp_path / 'state'}\n{extra}"
    )
    (tmp_path / "c.yaml").write_text(text)
    return load_config(tmp_path / "c.yaml", known_lists=catalogue_ids())


def blocks(loaded: loading.LoadedLists, name: str, item: str = "mylist") -> bool:
    return loaded.matchers[item][1].lookup(from_text(name)) is not None


@pytest.fixture
def good_list(tmp_path: Path) -> Path:
    path = tmp_path / "mylist.txt"
    rewrite(path, GOOD)
    return path


@pytest.fixture(params=[False, True], ids=["in process", "child process"])
def child(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every case once parsed in the server's process and once by the compile child."""
    if request.param:
        monkeypatch.setattr(loading, "CHILD_THRESHOLD", 0)
    return bool(request.param)


@pytest.mark.parametrize("case", BAD_VERSIONS)
def test_a_refused_version_leaves_the_running_one_in_force(
    tmp_path: Path, good_list: Path, child: bool, case: str
) -> None:
    data, reason, _ = BAD_VERSIONS[case]
    config = config_in(tmp_path)
    running = loading.load_lists(config, keep=True)
    assert running.sizes["mylist"] == 4 and not running.rejected
    rewrite(good_list, data)
    reloaded = loading.load_lists(config, previous=running, keep=True)
    refused = reloaded.rejected["mylist"]
    assert (refused.reason, refused.kept, refused.kept_entries) == (reason, KEPT_PREVIOUS, 4)
    assert refused.location == str(good_list)
    assert blocks(reloaded, "www.banned.example") and reloaded.sizes["mylist"] == 4
    assert reloaded.missing == frozenset() and reloaded.reports["mylist"].refused == reason
    # The refused version never became the last good copy: a restart starts from the good one.
    restarted = loading.load_lists(config, keep=True)
    assert restarted.rejected["mylist"].kept == KEPT_LAST_GOOD
    assert blocks(restarted, "www.banned.example") and restarted.sizes["mylist"] == 4


@pytest.mark.parametrize("case", BAD_VERSIONS)
def test_a_refused_version_at_start_up_uses_the_last_good_copy(
    tmp_path: Path, good_list: Path, case: str
) -> None:
    data, reason, _ = BAD_VERSIONS[case]
    config = config_in(tmp_path)
    loading.load_lists(config, keep=True)  # a server ran with the good version
    rewrite(good_list, data)
    for keep in (True, False):  # the server, then `check` (which writes nothing)
        started = loading.load_lists(config, keep=keep)
        refused = started.rejected["mylist"]
        assert (refused.reason, refused.kept, refused.kept_entries) == (reason, KEPT_LAST_GOOD, 4)
        assert blocks(started, "banned.example") and started.missing == frozenset()


@pytest.mark.parametrize("case", [c for c, (_, _, needs) in BAD_VERSIONS.items() if not needs])
def test_a_refused_version_with_no_good_copy_makes_the_list_missing(
    tmp_path: Path, good_list: Path, child: bool, case: str
) -> None:
    data, reason, _ = BAD_VERSIONS[case]
    rewrite(good_list, data)
    loaded = loading.load_lists(config_in(tmp_path), keep=True)
    refused = loaded.rejected["mylist"]
    assert (refused.reason, refused.kept) == (reason, KEPT_NOTHING)
    assert loaded.missing == frozenset({"mylist"}) and loaded.sizes["mylist"] == 0
    assert not blocks(loaded, "banned.example")
    assert not list((tmp_path / "state" / "compiled").glob("mylist-*.dwl"))


@pytest.mark.parametrize(("data", "reason"), [(b"", "empty"), (b"banned.example\n", "shrink")])
def test_emptiness_and_shrink_need_a_version_to_compare_with(
    tmp_path: Path, good_list: Path, data: bytes, reason: str
) -> None:
    """With nothing in force and no last good copy there is nothing to lose yet."""
    rewrite(good_list, data)
    config = config_in(tmp_path)
    assert not loading.load_lists(config).rejected
    loading.load_lists(config, keep=True)  # now it is the last good copy
    rewrite(good_list, data + b"\n")  # any new version is compared with it
    assert not loading.load_lists(config).rejected


def test_small_lists_get_a_last_good_copy_only_when_kept(tmp_path: Path, good_list: Path) -> None:
    config = config_in(tmp_path)
    loading.load_lists(config)  # check, explain, export: read only
    assert not (tmp_path / "state").exists()
    loading.load_lists(config, keep=True)  # the server
    (copy,) = (tmp_path / "state" / "compiled").glob("mylist-*.dwl")
    written = copy.stat().st_mtime_ns
    loading.load_lists(config, keep=True)  # the same version: not written again
    assert copy.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("text", "samples"),
    [
        ("a.example\ncom\n", ["mylist.txt:2: 'com' blocks the whole top-level domain"]),
        ("||a.example^\n! comment com\n||com^\n", ["mylist.txt:3: 'com'"]),
        ("# com here\n0.0.0.0 a.example\n0.0.0.0 COM\n", ["mylist.txt:3: 'com'"]),
        ("a.example\n*.zip\nb.example\nmov\n", ["mylist.txt:4: 'mov'", "mylist.txt:2: 'zip'"]),
    ],
)
def test_single_label_rules_are_named_by_file_and_line(
    tmp_path: Path, good_list: Path, text: str, samples: list[str]
) -> None:
    rewrite(good_list, text)
    refused = loading.load_lists(config_in(tmp_path)).rejected["mylist"]
    assert refused.reason == "tld_rule"
    assert len(refused.samples) == len(samples)
    for shown, expected in zip(refused.samples, samples, strict=True):
        assert shown.startswith(f"{tmp_path}/{expected}"), shown


def test_allow_tld_rules_lets_a_source_block_a_whole_tld(tmp_path: Path, good_list: Path) -> None:
    rewrite(good_list, "banned.example\nzip\n")
    loaded = loading.load_lists(config_in(tmp_path, "{path: mylist.txt, allow_tld_rules: true}"))
    assert not loaded.rejected and blocks(loaded, "anything.zip")


@pytest.mark.parametrize(
    ("source", "kept"),
    [
        ("{path: mylist.txt}", True),  # default max_shrink 0.5: 4 -> 1 is refused
        ("{path: mylist.txt, max_shrink: 0.8}", False),
        ("{path: mylist.txt, max_shrink: 75%}", False),
        ("{path: mylist.txt, max_shrink: 0.7}", True),
    ],
)
def test_max_shrink_applies_to_files(
    tmp_path: Path, good_list: Path, source: str, kept: bool
) -> None:
    config = config_in(tmp_path, source)
    running = loading.load_lists(config)
    rewrite(good_list, "banned.example\n")
    reloaded = loading.load_lists(config, previous=running)
    assert ("mylist" in reloaded.rejected) == kept
    assert reloaded.sizes["mylist"] == (4 if kept else 1)


def test_a_directory_is_judged_as_one_list_and_names_the_bad_file(tmp_path: Path) -> None:
    directory = tmp_path / "lists.d"
    directory.mkdir()
    rewrite(directory / "a.txt", "a.example\nb.example\n")
    rewrite(directory / "b.txt", "c.example\n")
    config = config_in(tmp_path, "{dir: lists.d, max_shrink: 0.1}")
    running = loading.load_lists(config)
    assert running.sizes["mylist"] == 3
    rewrite(directory / "b.txt", HTML_404)
    refused = loading.load_lists(config, previous=running).rejected["mylist"]
    assert (refused.reason, refused.location) == ("html", str(directory))
    assert refused.samples == (f"{directory / 'b.txt'}: {refused.detail}",)
    rewrite(directory / "b.txt", "")  # 3 -> 2 rules: a third lost, over this source's 10%
    assert loading.load_lists(config, previous=running).rejected["mylist"].reason == "shrink"


def test_an_rpz_zone_is_guarded_like_any_list(tmp_path: Path) -> None:
    zone = tmp_path / "national.rpz"
    records = "".join(f"n{i}.example CNAME .\n" for i in range(10))
    rewrite(zone, "$ORIGIN rpz.example.\n@ SOA ns admin 1 2 3 4 5\n" + records)
    config = config_in(tmp_path, "{path: national.rpz, format: rpz}")
    running = loading.load_lists(config)
    assert running.sizes["mylist"] == 10
    rewrite(zone, "$ORIGIN rpz.example.\n@ SOA ns admin 1 2 3 4 5\nn1.example CNAME .\n")
    refused = loading.load_lists(config, previous=running).rejected["mylist"]
    assert refused.reason == "shrink" and "10" in refused.detail


def test_regex_rules_over_the_budget_are_not_garbage(tmp_path: Path) -> None:
    """Lines over `limits.max_regex_rules` are good rules beyond a limit, not invalid text:
    they do not count towards the share of invalid lines."""
    rewrite(tmp_path / "mylist.txt", "^a\n^b\n^c\n^d\n")
    config = config_in(tmp_path, "{path: mylist.txt, format: regex}",
                       "limits:\n  max_regex_rules: 1\n")  # fmt: skip
    loaded = loading.load_lists(config)
    assert not loaded.rejected and loaded.sizes["mylist"] == 1 and len(loaded.warnings) == 3


# ----- the operator's word: accept markers ----------------------------------------------------


def test_an_accepted_shrink_loads_and_says_so(tmp_path: Path, good_list: Path) -> None:
    config = config_in(tmp_path)
    running = loading.load_lists(config, keep=True)
    rewrite(good_list, "banned.example\n")
    assert loading.load_lists(config, previous=running).rejected["mylist"].reason == "shrink"
    what = loading.accept_version(config, "mylist", now=1000.0)
    assert what == f"{good_list} (15 bytes)"
    reloaded = loading.load_lists(config, previous=running, keep=True)
    assert not reloaded.rejected and reloaded.sizes["mylist"] == 1
    accepted = reloaded.accepted["mylist"]
    assert (accepted.reason, accepted.entries, accepted.previous) == ("shrink", 1, 4)
    # From now on this version is the one in force: nothing to accept any more.
    again = loading.load_lists(config, previous=reloaded, keep=True)
    assert not again.accepted and not again.rejected
    # A later edit is judged afresh: the marker named the version that was there.
    rewrite(good_list, "")
    assert loading.load_lists(config, previous=reloaded).rejected["mylist"].reason == "empty"


def test_accept_marker_names_one_version(tmp_path: Path, good_list: Path) -> None:
    config = config_in(tmp_path)
    running = loading.load_lists(config, keep=True)
    loading.accept_version(config, "mylist", now=1000.0)
    rewrite(good_list, "banned.example\n")  # edited after the command
    assert loading.load_lists(config, previous=running).rejected["mylist"].reason == "shrink"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("tiktok", GOOD, "bundled catalogue entries change only with dnswarden itself"),
        ("nope", GOOD, "'nope' is not one of the config's operator lists (mylist)"),
        ("mylist", HTML_404, "refused as html, which no --accept lifts"),
        ("mylist", "a.example\ncom\n", "refused as tld_rule, which no --accept lifts"),
    ],
)
def test_what_cannot_be_accepted(
    tmp_path: Path, good_list: Path, name: str, data: str, message: str
) -> None:
    rewrite(good_list, data)
    with pytest.raises(ValueError, match=re.escape(message)):
        loading.accept_version(config_in(tmp_path), name, now=1000.0)
    assert accepted_key(tmp_path / "state", name) is None


def test_markers_round_trip_and_ignore_junk(tmp_path: Path) -> None:
    assert accepted_key(None, "x") is None
    assert accepted_key(tmp_path, "x") is None
    path = write_marker(tmp_path, "x/../y", "key-1", 5.0, "what")
    assert path.parent == tmp_path / "accept" and accepted_key(tmp_path, "x/../y") == "key-1"
    path.write_text("[1, 2]")
    assert accepted_key(tmp_path, "x/../y") is None


# ----- catalogue entries ----------------------------------------------------------------------

DEMO = """\
id: demo
name: Demo
vendor: Demo Corp.
description: d
references:
  - {{authority: a, decision: d, date: 2023-01-01, url: u, verified: false}}
rules:
{rules}provenance: p
last_reviewed: 2026-01-01
"""


def test_a_catalogue_entry_that_shrinks_under_a_running_server_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domains = ["a.example", "b.example", "c.example"]

    def load(entry_id: str) -> CatalogueEntry:
        rules = "".join(f"  - {{domain: {d}, source: s}}\n" for d in domains)
        return parse_catalogue_entry(DEMO.format(rules=rules), "demo.yaml")

    monkeypatch.setattr(loading, "load_catalogue_entry", load)
    (tmp_path / "c.yaml").write_text("blocking:\n  lists: [demo]\n")
    config = load_config(tmp_path / "c.yaml", known_lists=frozenset({"demo"}))
    running = loading.load_lists(config)
    del domains[1:]  # an upgrade in place, then SIGHUP
    reloaded = loading.load_lists(config, previous=running)
    refused = reloaded.rejected["demo"]
    assert (refused.reason, refused.kept, reloaded.sizes["demo"]) == ("shrink", KEPT_PREVIOUS, 3)
    assert blocks(reloaded, "c.example", "demo")
    assert not loading.load_lists(config).rejected  # a restart takes the entry as it is


# ----- feeds ----------------------------------------------------------------------------------

FEED = '{url: "https://feed.invalid/l.txt", refresh: 1h}'


def fetcher(body: bytes) -> Callable[..., FetchResult]:
    return lambda url, **_: FetchResult(200, body, None, None)


def test_a_refused_download_is_remembered_until_accepted(tmp_path: Path) -> None:
    config = config_in(tmp_path, FEED)
    store = SourceStore(config.state_dir)
    assert feeds.refresh_source(config, "mylist", fetcher=fetcher(GOOD.encode())).entries == 4
    cut = b"banned.example\n"
    refused = feeds.refresh_source(config, "mylist", fetcher=fetcher(cut))
    assert refused.status == "failed" and refused.rejection is not None
    assert (refused.rejection.reason, refused.rejection.kept) == ("shrink", KEPT_PREVIOUS)
    assert refused.rejection.location == "https://feed.invalid/l.txt"
    loaded = loading.load_lists(config)
    assert loaded.sizes["mylist"] == 4 and loaded.reports["mylist"].refused == "shrink"
    # The same content again: not judged, not reported again.
    again = feeds.refresh_source(config, "mylist", fetcher=fetcher(cut))
    assert (again.status, again.rejection) == ("unchanged", None)
    assert "refused" in again.detail
    # The operator accepts it: the feed is due at once, and the download loads.
    what = loading.accept_version(config, "mylist", now=1000.0)
    assert "SHA-256" in what
    meta = store.meta("mylist")
    assert feeds.due_sources(config, now=float(meta["checked_at"]) + 1) == ["mylist"]
    accepted = feeds.refresh_source(config, "mylist", fetcher=fetcher(cut))
    assert accepted.status == "updated" and accepted.acceptance is not None
    assert (accepted.acceptance.reason, accepted.acceptance.previous) == ("shrink", 4)
    assert "refused_sha256" not in store.meta("mylist")
    assert loading.load_lists(config).sizes["mylist"] == 1
    assert feeds.due_sources(config, now=float(store.meta("mylist")["checked_at"]) + 1) == []


def test_a_feed_that_was_never_good_refused_stays_missing(tmp_path: Path) -> None:
    config = config_in(tmp_path, FEED)
    refused = feeds.refresh_source(config, "mylist", fetcher=fetcher(HTML_404.encode()))
    assert refused.rejection is not None and refused.rejection.kept == KEPT_NOTHING
    assert "there is no good copy yet" in refused.detail
    assert loading.load_lists(config).missing == frozenset({"mylist"})
    with pytest.raises(ValueError, match="refused as html"):
        loading.accept_version(config, "mylist", now=1000.0)


# ----- what is reported ---------------------------------------------------------------------


def test_an_event_carries_the_summary_a_few_samples_and_a_count() -> None:
    samples = tuple(f"f.txt:{n}: bad" for n in range(1, 21))
    refused = ListRejection("l", "f.txt", "invalid", "most lines are bad", samples, 80,
                            KEPT_PREVIOUS, 12)  # fmt: skip
    fields = refused.fields()
    assert list(fields)[:4] == ["list", "file", "reason", "detail"]
    assert fields["samples"] == list(samples[:EVENT_SAMPLES])
    assert fields["more"] == 80 + 20 - EVENT_SAMPLES
    assert "samples" not in replace(refused, samples=(), more=0).fields()
    lines = refused.lines()
    assert lines[0] == (
        "f.txt: list l refused (invalid): most lines are bad; the version in force stays "
        "(12 rules)"
    )
    assert lines[1:21] == list(samples) and lines[-1] == "... and 80 more"
