"""Provenance: where each list's rules come from and on whose authority, in the words a block
cites.

A block must be traceable to its mandate: a catalogue entry names the decisions that ban the app
(its `Reference`s), an operator list its file, directory or URL. `list_provenance` turns what
loading found into one `Provenance` per list, once per state build; the policy engine copies the
strings into its bindings, so a blocked query only passes references along and never formats a
citation. Pure: the catalogue entries are read by the function the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from resolver.lists.catalogue import CatalogueEntry, Reference, reference_label

__all__ = [
    "CATALOGUE",
    "Provenance",
    "catalogue_provenance",
    "decision_fields",
    "list_provenance",
    "source_provenance",
]

CATALOGUE = "catalogue"


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where one list comes from and which decisions it carries out.

    `citation` is what a block through this list cites when no policy reference comes first:
    a catalogue entry's decision labels (``EU 2023-02-23; BE 2023-03-10``), an operator list's
    file, directory or URL; None only when there is truly nothing to cite.
    """

    list_name: str
    kind: str  # catalogue | file | dir | url
    source: str  # the catalogue file, or the list's file, directory or URL ("" when unknown)
    decisions: tuple[Reference, ...] = ()
    labels: tuple[str, ...] = ()  # one short label per decision, such as "BE 2023-03-10"
    citation: str | None = None

    @property
    def catalogue(self) -> bool:
        return self.kind == CATALOGUE


def catalogue_provenance(entry: CatalogueEntry) -> Provenance:
    labels = tuple(reference_label(reference) for reference in entry.references)
    return Provenance(
        entry.id, CATALOGUE, entry.path, entry.references, labels, "; ".join(labels) or None
    )


def source_provenance(name: str, kind: str, location: str, zone: str = "") -> Provenance:
    """An operator list: its file, directory or URL is all it can cite, and for an RPZ zone
    its name (unless the location already says it, as a transfer's ``xfr://`` does)."""
    citation = location if not zone or zone in location else f"{location} (RPZ zone {zone})"
    return Provenance(name, kind, location, citation=citation or None)


class _Report(Protocol):
    """What `list_provenance` reads of a `loading.ListReport`."""

    @property
    def kind(self) -> str: ...
    @property
    def location(self) -> str: ...


def list_provenance(
    reports: Mapping[str, _Report], read_entry: Callable[[str], CatalogueEntry]
) -> dict[str, Provenance]:
    """One `Provenance` per loaded list, by list name; `read_entry` reads a catalogue entry by
    id (`catalogue.load_catalogue_entry`), which a catalogue report holds as its location."""
    found: dict[str, Provenance] = {}
    for name, report in reports.items():
        if report.kind == CATALOGUE:
            found[name] = catalogue_provenance(read_entry(report.location))
        else:
            zone = getattr(report, "zone", "")
            found[name] = source_provenance(name, report.kind, report.location, zone)
    return found


def decision_fields(reference: Reference) -> dict[str, Any]:
    """One decision in full, for `explain --json` and the export's comments."""
    return {
        "label": reference_label(reference),
        "authority": reference.authority,
        "decision": reference.decision,
        "date": reference.date.isoformat(),
        "url": reference.url,
        "verified": reference.verified,
    }
