"""Tests for lists/provenance.py: what each kind of list cites, made once per state build."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.lists import catalogue
from resolver.lists.catalogue import load_catalogue_entry, parse_catalogue_entry, reference_label
from resolver.lists.loading import ListReport
from resolver.lists.provenance import decision_fields, list_provenance

VALID = """\
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
  - {domain: demo.example, source: a list}
provenance: Collected by hand.
last_reviewed: 2026-01-02
"""
TWO_DECISIONS = VALID.replace(
    "\nrules:\n",
    "\n  - authority: Belgium, National Security Council\n"
    "    decision: Bans it on service devices.\n"
    "    date: 2023-03-10\n"
    "    url: https://example.gov/be\n"
    "    verified: true\n"
    "rules:\n",
)


def entry_reader(text: str):  # type: ignore[no-untyped-def]
    def read(entry_id: str):  # type: ignore[no-untyped-def]
        assert entry_id == "demo"
        return parse_catalogue_entry(text, "blocklists/demo.yaml")

    return read


@pytest.mark.parametrize(
    ("report", "kind", "source", "citation", "labels"),
    [
        (ListReport("demo", "catalogue", "demo", 3), "catalogue", "blocklists/demo.yaml",
         "Somebody 2023-02-23; BE 2023-03-10", ("Somebody 2023-02-23", "BE 2023-03-10")),
        (ListReport("ops", "file", "/etc/dnswarden/ops.txt", 9), "file", "/etc/dnswarden/ops.txt",
         "/etc/dnswarden/ops.txt", ()),
        (ListReport("feed", "url", "https://lists.example.gov/x.txt", 0, fetched=False), "url",
         "https://lists.example.gov/x.txt", "https://lists.example.gov/x.txt", ()),
        (ListReport("d", "dir", "/etc/dnswarden/lists.d", 4), "dir", "/etc/dnswarden/lists.d",
         "/etc/dnswarden/lists.d", ()),
        # An empty directory has no location to cite: nothing is invented.
        (ListReport("empty", "dir", "", 0), "dir", "", None, ()),
    ],
)  # fmt: skip
def test_each_kind_of_list_cites_what_it_has(
    report: ListReport, kind: str, source: str, citation: str | None, labels: tuple[str, ...]
) -> None:
    (found,) = list_provenance({report.name: report}, entry_reader(TWO_DECISIONS)).values()
    assert (found.list_name, found.kind, found.source) == (report.name, kind, source)
    assert (found.citation, found.labels) == (citation, labels)
    assert found.catalogue == (kind == "catalogue")
    assert len(found.decisions) == len(labels)


def test_the_bundled_tiktok_entry_cites_all_its_decisions() -> None:
    entry = load_catalogue_entry("tiktok")
    report = ListReport("tiktok", "catalogue", "tiktok", len(entry.rules))
    found = list_provenance({"tiktok": report}, load_catalogue_entry)["tiktok"]
    assert found.labels == tuple(reference_label(r) for r in entry.references)
    assert len(found.labels) >= 5
    assert found.citation == "; ".join(found.labels)
    assert [decision_fields(d)["url"] for d in found.decisions] == [
        r.url for r in entry.references
    ]


def test_decision_fields() -> None:
    entry = parse_catalogue_entry(TWO_DECISIONS, "demo.yaml")
    assert decision_fields(entry.references[1]) == {
        "label": "BE 2023-03-10",
        "authority": "Belgium, National Security Council",
        "decision": "Bans it on service devices.",
        "date": "2023-03-10",
        "url": "https://example.gov/be",
        "verified": True,
    }


def test_an_entry_read_twice_is_parsed_once_until_its_text_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every state build reads each entry twice (rules, then references): the second read must
    not parse the YAML again, and an edited file must be parsed afresh."""
    monkeypatch.setattr(catalogue, "catalogue_dir", lambda: tmp_path)
    path = tmp_path / "demo.yaml"
    path.write_text(VALID, encoding="utf-8")
    first = load_catalogue_entry("demo")
    assert load_catalogue_entry("demo") is first
    path.write_text(TWO_DECISIONS, encoding="utf-8")
    changed = load_catalogue_entry("demo")
    assert len(changed.references) == 2 and changed is not first
